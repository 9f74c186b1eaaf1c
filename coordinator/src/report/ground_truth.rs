//! Features of a dataset's ground truth: the 2D features of each cell's image and mask and the
//! 3D features of its `obj/` volume (binarised at > 127, the middle of its 0..255 anti-aliasing),
//! as one sample. They measure how well the true 3D shapes classify: the ceiling a predicted
//! shape can reach. [`records`] makes them for a whole dataset (`report --ground-truth-dataset`);
//! [`for_run`] for the cells of a run, together with each cell's reconstruction scores against
//! the extrusion floor, from one read of its files.

use super::Unclassified;
use super::reconstruction::{CellReconstruction, cell_scores};
use dispr_proto::records::{CellFeatures, SampleFeatures, aggregate};
use dispr_proto::{CellId, RunId, SCHEMA_VERSION, keys};
use dispr_shape::dataset::{CellBytes, CellData, Dataset, DatasetCell, decode_cell};
use dispr_shape::features::{features_2d, features_3d};
use dispr_shape::tiff_io;
use dispr_shape::volume::SIDE;
use dispr_store::Store;
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;

pub use dispr_shape::reconstruction::TRUTH_THRESHOLD as OBJ_THRESHOLD;

/// Cells fetched at once: bounds memory (a 64^3 obj is 256 KiB, a sample 1 MiB) while keeping
/// the store busy.
const CHUNK: usize = 32;

/// The feature records of every cell of `dataset` that has a ground-truth volume, and the cells
/// left out with the reason. Fetching is async; decoding and features run on rayon's threads,
/// off the async runtime.
pub async fn records(
    dataset: &Dataset,
    run: &RunId,
) -> anyhow::Result<(Vec<CellFeatures>, Vec<Unclassified>)> {
    let cells: Vec<CellId> = dataset.index.cells.iter().filter(|c| c.has_obj).map(|c| c.id.clone()).collect();
    let mut skipped: Vec<Unclassified> = dataset
        .index
        .cells
        .iter()
        .filter(|c| !c.has_obj)
        .map(|c| Unclassified { cell: c.id.to_string(), reason: format!("no ground truth obj/{}.tif", c.id) })
        .collect();
    let mut out = Vec::with_capacity(cells.len());
    for chunk in cells.chunks(CHUNK) {
        let reads: Vec<_> =
            futures::stream::iter(chunk.iter().map(|id| async move { (id, dataset.fetch_cell(id).await) }))
                .buffered(16)
                .collect()
                .await;
        let mut fetched = Vec::with_capacity(reads.len());
        for (id, read) in reads {
            match read {
                Ok(files) => fetched.push(files),
                // A file that cannot be one (too large, a folder, a FIFO) leaves its cell out.
                Err(e) if e.is_unusable_file() => {
                    skipped.push(Unclassified { cell: id.to_string(), reason: e.to_string() })
                }
                Err(e) => return Err(e.into()),
            }
        }
        let geometry = dataset.geometry;
        let run = run.clone();
        let done = tokio::task::spawn_blocking(move || {
            fetched
                .par_iter()
                .map(|(cell, bytes)| {
                    let data = decode_cell(cell, bytes, geometry).map_err(|e| unclassified(cell, e))?;
                    record(&data, &run).map_err(|e| unclassified(cell, e))
                })
                .collect::<Vec<_>>()
        })
        .await?;
        for r in done {
            match r {
                Ok(rec) => out.push(rec),
                Err(u) => skipped.push(u),
            }
        }
    }
    Ok((out, skipped))
}

fn unclassified(cell: &DatasetCell, e: impl std::fmt::Display) -> Unclassified {
    Unclassified { cell: cell.id.to_string(), reason: e.to_string() }
}

/// A run's cell on its way to being scored: its record, dataset entry and files, and its
/// samples' volume TIFFs (key, and the bytes unless the volume is not found).
type Fetched = (CellFeatures, DatasetCell, CellBytes, Vec<(String, Option<bytes::Bytes>)>);

/// What [`for_run`] found.
pub struct RunTruth {
    /// Ground-truth feature records of the run's cells that have usable ground truth.
    pub truth: Vec<CellFeatures>,
    /// Reconstruction scores (model and floor against `obj > 0`) of those cells.
    pub reconstruction: Vec<CellReconstruction>,
    /// The run's cells whose ground truth is missing or unusable, and why.
    pub problems: Vec<Unclassified>,
    /// Volumes of the run not found (operators expire them and keep the features): their cells
    /// keep their rows, without reconstruction scores.
    pub missing_volumes: Vec<MissingVolume>,
}

/// A volume the report wanted and the store no longer has.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MissingVolume {
    pub cell: CellId,
    /// Where it was looked for.
    pub uri: String,
}

/// The volume at `key`, or `None` when it is not found; other errors (the store is unreachable,
/// access is denied) are errors.
pub async fn volume_if_present(output: &Store, key: &str) -> anyhow::Result<Option<bytes::Bytes>> {
    match output.get(key).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", output.uri_of(key))),
    }
}

/// For each cell of `run_records` that has ground truth in `dataset`: its ground-truth features
/// record and its reconstruction scores, from its dataset files and the run's volumes. `None`
/// when the dataset has no ground truth at all. Fetching is async; the work runs on rayon's
/// threads.
pub async fn for_run(
    dataset: &Dataset,
    output: &Store,
    run: &RunId,
    run_records: &[CellFeatures],
) -> anyhow::Result<Option<RunTruth>> {
    if !dataset.index.cells.iter().any(|c| c.has_obj) {
        return Ok(None);
    }
    let mut problems = Vec::new();
    let mut wanted = Vec::new();
    for rec in run_records {
        match dataset.index.get(&rec.cell) {
            // The worker found the cell's ground truth unusable (unreadable, the wrong shape,
            // empty) and sampled the cell without it: the report says why and leaves it out.
            Some(c) if c.has_obj && rec.truth_skipped.is_some() => problems.push(Unclassified {
                cell: rec.cell.to_string(),
                reason: rec.truth_skipped.clone().unwrap_or_default(),
            }),
            Some(c) if c.has_obj => wanted.push(rec),
            Some(_) => problems.push(Unclassified {
                cell: rec.cell.to_string(),
                reason: format!(
                    "no ground truth obj/{}.tif (other cells have it, and the ceiling rows compare the same cells)",
                    rec.cell
                ),
            }),
            None => problems.push(Unclassified {
                cell: rec.cell.to_string(),
                reason: "the run has it but the dataset no longer lists it".into(),
            }),
        }
    }
    let (mut truth, mut reconstruction, mut missing_volumes) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in wanted.chunks(CHUNK) {
        let fetched: Vec<Fetched> = futures::stream::iter(chunk.iter().map(|rec| async move {
            let (cell, files) = dataset.fetch_cell(&rec.cell).await?;
            let mut volumes = Vec::with_capacity(rec.samples.len());
            for s in &rec.samples {
                let key = keys::volume(run, &rec.cell, s.k);
                let bytes = volume_if_present(output, &key).await?;
                volumes.push((key, bytes));
            }
            anyhow::Ok(((*rec).clone(), cell, files, volumes))
        }))
        .buffered(8)
        .try_collect()
        .await?;
        let geometry = dataset.geometry;
        let run = run.clone();
        let done = tokio::task::spawn_blocking(move || {
            fetched
                .par_iter()
                .map(|(rec, cell, files, volumes)| {
                    let data = decode_cell(cell, files, geometry).map_err(|e| unclassified(cell, e))?;
                    let truth =
                        record(&data, &run).map_err(|e| unclassified(cell, format!("ground truth: {e}")))?;
                    let missing: Vec<&String> =
                        volumes.iter().filter(|(_, b)| b.is_none()).map(|(key, _)| key).collect();
                    if !missing.is_empty() {
                        // Scored on its other samples it would not be comparable: no scores.
                        let missing = missing.into_iter().cloned().collect();
                        return Ok((truth, None, missing));
                    }
                    let samples = volumes
                        .iter()
                        .filter_map(|(key, bytes)| bytes.as_ref().map(|b| (key, b)))
                        .map(|(key, bytes)| {
                            tiff_io::read_volume_f32(bytes, key, "predicted volume", [SIDE, SIDE, SIDE])
                                .map(|v| v.data)
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| unclassified(cell, e))?;
                    let obj = data.obj.as_ref().map(|o| o.data.as_slice()).unwrap_or_default();
                    let scores =
                        cell_scores(cell.id.as_str(), rec.class.clone(), &samples, &data.mask.data, obj);
                    Ok((truth, scores, Vec::new()))
                })
                .collect::<Vec<Result<_, Unclassified>>>()
        })
        .await?;
        for r in done {
            match r {
                Ok((t, scores, missing)) => {
                    missing_volumes.extend(
                        missing
                            .into_iter()
                            .map(|key| MissingVolume { cell: t.cell.clone(), uri: output.uri_of(&key) }),
                    );
                    truth.push(t);
                    reconstruction.extend(scores);
                }
                Err(u) => problems.push(u),
            }
        }
    }
    Ok(Some(RunTruth { truth, reconstruction, problems, missing_volumes }))
}

/// One cell's record from its decoded files.
pub fn record(cell: &CellData, run: &RunId) -> Result<CellFeatures, dispr_shape::features::FeatureError> {
    let [h, w] = cell.image.dims;
    let features_2d = features_2d(&cell.image.data, &cell.mask.data, h, w)?;
    let mut samples = Vec::new();
    if let Some(obj) = &cell.obj {
        let binary = dispr_shape::reconstruction::truth_mask(&obj.data);
        samples.push(SampleFeatures {
            k: 0,
            seed: 0,
            features: features_3d(&binary, obj.dims)?,
            metrics: None,
        });
    }
    let (mean_3d, std_3d) = aggregate(&samples.iter().map(|s| s.features.clone()).collect::<Vec<_>>());
    Ok(CellFeatures {
        schema_version: SCHEMA_VERSION,
        run_id: run.clone(),
        cell: cell.id.clone(),
        class: Some(cell.label.class.clone()),
        subclass: cell.label.subclass.clone(),
        features_2d,
        samples,
        mean_3d,
        std_3d,
        mean_metrics: None,
        truth_skipped: None,
        // One true shape: nothing to disagree.
        uncertainty: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An obj/ entry that cannot be a file leaves its cell out of the ground-truth report with
    /// what it is, instead of failing the whole report (or hanging on a FIFO).
    #[tokio::test]
    async fn an_obj_that_is_not_a_file_leaves_only_its_cell_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let data = Store::open(root.to_str().unwrap()).unwrap();
        crate::cmd::synth::generate_into(&data, 6, 1, 7, 0).await.unwrap();
        let first = Dataset::open(data.clone()).await.unwrap().index.cells[0].id.clone();
        let obj = root.join(keys::dataset_obj(&first));
        std::fs::remove_file(&obj).unwrap();
        assert!(std::process::Command::new("mkfifo").arg(&obj).status().unwrap().success());

        let dataset = Dataset::open(data).await.unwrap();
        assert!(dataset.index.get(&first).is_some_and(|c| c.has_obj), "the FIFO is listed as the cell's obj");
        let (records, skipped) = records(&dataset, &RunId::new("truth").unwrap()).await.unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].cell, first.as_str());
        assert!(skipped[0].reason.contains("it is a FIFO (named pipe), not a file"), "{}", skipped[0].reason);
    }
}
