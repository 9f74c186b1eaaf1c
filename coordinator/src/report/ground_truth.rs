//! Features of a dataset's ground truth standing in for a run's predictions: the 2D features of
//! each cell's image and mask and the 3D features of its `obj/` volume (binarised at > 127, the
//! middle of its 0..255 anti-aliasing), as one sample. This measures how well the true 3D
//! shapes classify, the ceiling a predicted shape can reach.

use dispr_proto::records::{CellFeatures, SampleFeatures, aggregate};
use dispr_proto::{CellId, RunId, SCHEMA_VERSION};
use dispr_shape::dataset::{CellData, Dataset, decode_cell};
use dispr_shape::features::{features_2d, features_3d};
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;

pub use dispr_shape::metrics::TRUTH_THRESHOLD as OBJ_THRESHOLD;

/// Cells fetched at once: bounds memory (a 64^3 obj is 256 KiB) while keeping the store busy.
const CHUNK: usize = 64;

/// The feature records of every cell of `dataset` that has a ground-truth volume, and the cells
/// left out with the reason. Fetching is async; decoding and features run on rayon's threads,
/// off the async runtime.
pub async fn records(dataset: &Dataset, run: &RunId) -> anyhow::Result<(Vec<CellFeatures>, Vec<String>)> {
    let cells: Vec<CellId> = dataset.index.cells.iter().filter(|c| c.has_obj).map(|c| c.id.clone()).collect();
    let mut skipped: Vec<String> = dataset
        .index
        .cells
        .iter()
        .filter(|c| !c.has_obj)
        .map(|c| format!("{}: no obj/{}.tif ground truth", c.id, c.id))
        .collect();
    let mut records = Vec::with_capacity(cells.len());
    for chunk in cells.chunks(CHUNK) {
        let fetched: Vec<_> = futures::stream::iter(chunk.iter().map(|id| dataset.fetch_cell(id)))
            .buffered(16)
            .try_collect()
            .await?;
        let geometry = dataset.geometry;
        let run = run.clone();
        let done = tokio::task::spawn_blocking(move || {
            fetched
                .par_iter()
                .map(|(cell, bytes)| {
                    let data = decode_cell(cell, bytes, geometry).map_err(|e| format!("{}: {e}", cell.id))?;
                    record(&data, &run).map_err(|e| format!("{}: {e}", cell.id))
                })
                .collect::<Vec<_>>()
        })
        .await?;
        for r in done {
            match r {
                Ok(rec) => records.push(rec),
                Err(reason) => skipped.push(reason),
            }
        }
    }
    Ok((records, skipped))
}

/// One cell's record from its decoded files.
pub fn record(cell: &CellData, run: &RunId) -> Result<CellFeatures, dispr_shape::features::FeatureError> {
    let [h, w] = cell.image.dims;
    let features_2d = features_2d(&cell.image.data, &cell.mask.data, h, w)?;
    let mut samples = Vec::new();
    if let Some(obj) = &cell.obj {
        let binary = dispr_shape::metrics::truth_mask(&obj.data);
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
    })
}
