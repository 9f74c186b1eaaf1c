//! `report.html`: the page people open when a run is over. One self-contained file (pictures are
//! embedded PNGs, no scripts, no network): the run's summary, its timeline, the classification
//! results beside the ceiling of the true shapes, the reconstruction against the extrusion floor,
//! the cells left out and why, the uncertainty of the samples ([`uncertainty`]), and per class the
//! best, median and worst cells: inputs beside the predicted shapes and the ground truth.
//!
//! [`write_run_report`] reads what the report needs from the stores (the drawn cells in
//! [`panels`]); [`write_report`] has [`crate::report::results`] compute the results once and
//! writes their renderings: report.json, summary.txt, the CSV tables and plots
//! ([`crate::report::files`]) and report.html ([`html`], from an askama template).

pub mod cells;
mod html;
mod panels;
pub mod timeline;
pub mod uncertainty;

pub use panels::gallery_positions;

use crate::classify::CvConfig;
pub use crate::report::ReportInputs;
use crate::report::ground_truth::MissingVolume;
use crate::report::reconstruction::CellReconstruction;
use crate::report::{self, Level, Reconstruction, Unclassified, ground_truth};
use anyhow::Context as _;
use dispr_proto::records::{CellFailure, CellFeatures, JobRecord, Manifest};
use dispr_proto::{CellId, RunId, keys};
use dispr_shape::dataset::Dataset;
use dispr_store::Store;
use futures::{StreamExt, TryStreamExt};
use panels::{choose_panels, panel};
use std::collections::{BTreeMap, BTreeSet};

/// Cells shown with pictures per class: the best, the median and the worst by IoU (or the first
/// ones where there is no ground truth). The others are counted, not drawn, so a page of a
/// million-cell run stays a few megabytes.
pub const DEFAULT_CELLS_PER_CLASS: usize = 3;

/// One cell's panel.
pub struct CellPanel {
    pub cell: CellId,
    pub class: Option<String>,
    /// Where the cell ranks in its class by IoU: "best", "median", "worst", "rank 3 of 40"; empty
    /// without ground truth.
    pub rank: String,
    /// Image and mask side by side.
    pub inputs_png: Option<Vec<u8>>,
    /// One strip per sample: its projections along z, y and x; `None` where the sample's volume
    /// is not found (the page says so).
    pub samples_png: Vec<Option<Vec<u8>>>,
    /// The ground truth's projections, where the dataset has it.
    pub truth_png: Option<Vec<u8>>,
    /// The cell's reconstruction scores (model and floor against `obj > 0`), with ground truth.
    pub scores: Option<CellReconstruction>,
    /// The cell's volumes that are not found.
    pub missing_volumes: Vec<MissingVolume>,
}

/// Everything the page shows besides the classification.
pub struct RunPage {
    pub manifest: Manifest,
    pub cells_in_dataset: Option<usize>,
    pub done: usize,
    pub failures: Vec<CellFailure>,
    pub jobs: Vec<JobRecord>,
    pub panels: Vec<CellPanel>,
    /// Cells with features that have no panel (beyond the per-class limit).
    pub cells_not_drawn: usize,
    /// The most and least certain cell of each class, drawn (the numbers are in the results).
    pub uncertainty_panels: Vec<uncertainty::Panel>,
    /// Volumes the report read and did not find (expired, or deleted), sorted: their cells keep
    /// their rows in every table, their pictures say "volume not found", and with ground truth
    /// they have no reconstruction scores.
    pub missing_volumes: Vec<MissingVolume>,
}

impl RunPage {
    /// From the first job's start to the last job's end, in seconds.
    pub fn wall_seconds(&self) -> Option<f64> {
        let start = self.jobs.iter().map(|j| j.started_ms).min()?;
        let end = self.jobs.iter().map(|j| j.finished_ms).max()?;
        Some((end.saturating_sub(start)) as f64 / 1000.0)
    }

    /// Sampler seconds per finished cell, summed over workers.
    pub fn compute_seconds_per_cell(&self) -> Option<f64> {
        let cells: u32 = self.jobs.iter().map(|j| j.cells_done + j.cells_failed).sum();
        (cells > 0).then(|| self.jobs.iter().map(|j| j.compute_seconds).sum::<f64>() / f64::from(cells))
    }
}

async fn read_all<T>(
    store: &Store,
    prefix: &str,
    decode: fn(&[u8]) -> Result<T, dispr_proto::ProtoError>,
) -> anyhow::Result<Vec<T>> {
    let listed = store.list(prefix).await.with_context(|| format!("listing {}", store.uri_of(prefix)))?;
    futures::stream::iter(listed.into_iter().filter(|k| k.ends_with(".json")).map(|key| async move {
        let bytes = store.get(&key).await.with_context(|| format!("reading {}", store.uri_of(&key)))?;
        decode(&bytes).with_context(|| format!("decoding {}", store.uri_of(&key)))
    }))
    .buffered(16)
    .try_collect()
    .await
}

/// The ground truth of the run's cells. Only datasets with ground truth (`obj/`) get here, and
/// scoring reads every cell's volumes anyway: the records are read again in full for it (the
/// streamed [`report::RunCells`] keep none).
async fn ground_truth_for_run(
    dataset: &Dataset,
    output: &Store,
    run: &RunId,
) -> anyhow::Result<Option<ground_truth::RunTruth>> {
    if !dataset.index.cells.iter().any(|c| c.has_obj) {
        return Ok(None);
    }
    let records = read_all(output, &keys::features_prefix(run), decode_for_report).await?;
    ground_truth::for_run(dataset, output, run, &records).await
}

/// A features record as the report keeps it while it reads the others: without the 3D features
/// of each sample (the report uses their mean and spread, which the record also holds), which
/// are most of a record's memory (with K = 3, about half).
fn decode_for_report(bytes: &[u8]) -> Result<CellFeatures, dispr_proto::ProtoError> {
    let mut record = CellFeatures::decode(bytes)?;
    for sample in &mut record.samples {
        sample.features = Default::default();
        sample.metrics = None;
    }
    Ok(record)
}

/// Opens the run's dataset, or says why not (the report is still made without it).
async fn open_dataset(uri: &str) -> Result<Dataset, String> {
    let store = Store::open(uri).map_err(|e| format!("{e:#}"))?;
    Dataset::open(store).await.map_err(|e| format!("{e:#}"))
}

/// How the report of a run is made.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub level: Level,
    pub cv: CvConfig,
    /// Cells drawn per class in report.html.
    pub cells_per_class: usize,
}

impl ReportOptions {
    /// The reference study's protocol (1000 trees of depth 10, stratified 5-fold, 6 classes),
    /// repeated over 5 seeds.
    pub fn demo() -> Self {
        Self { level: Level::Class, cv: CvConfig::default(), cells_per_class: DEFAULT_CELLS_PER_CLASS }
    }
}

/// What [`write_run_report`] wrote.
pub struct Written {
    /// The printable summary: the classification table, or why there is none.
    pub summary: String,
    pub files: usize,
    pub warnings: Vec<String>,
}

/// The report of a run, from its records in `output` and, where its dataset has ground truth,
/// the true shapes: the classifier (report.json, CSV tables, features.csv, plots) and
/// report.html, all under `runs/<run>/report/`. A run with too few labelled cells to
/// cross-validate still gets its page, which says why it has no classification.
pub async fn write_run_report(
    output: &Store,
    run: &RunId,
    options: &ReportOptions,
) -> anyhow::Result<Written> {
    let cells = report::RunCells::read(output, run).await?;
    let failures = read_all(output, &keys::failures_prefix(run), CellFailure::decode).await?;
    let mut warnings = Vec::new();
    let manifest_key = keys::manifest(run);
    let manifest = match output.get(&manifest_key).await {
        Ok(bytes) => match Manifest::decode(&bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                warnings.push(format!("{}: {e}; report.html is not written", output.uri_of(&manifest_key)));
                None
            }
        },
        Err(e) => {
            warnings
                .push(format!("reading {}: {e}; report.html is not written", output.uri_of(&manifest_key)));
            None
        }
    };
    let dataset = match &manifest {
        Some(m) => match open_dataset(&m.dataset_uri).await {
            Ok(d) => Some(d),
            Err(e) => {
                warnings.push(format!(
                    "the dataset {} cannot be read ({e}): no ceiling, reconstruction or input pictures",
                    m.dataset_uri
                ));
                None
            }
        },
        None => None,
    };
    let run_truth = match &dataset {
        Some(d) => match ground_truth_for_run(d, output, run).await {
            Ok(t) => t,
            Err(e) => {
                warnings.push(format!(
                    "the ground truth could not be read ({e:#}): no ceiling or reconstruction"
                ));
                None
            }
        },
        None => None,
    };

    // Every cell of the dataset (or the run) that will not be classified, with the reason.
    let mut unclassified: Vec<Unclassified> = failures
        .iter()
        .map(|f| Unclassified { cell: f.cell.to_string(), reason: format!("failed: {}", f.reason) })
        .collect();
    if let Some(d) = &dataset {
        // The done cells are looked up in the table's sorted ids (a set of a million would be
        // tens of MB).
        let failed: BTreeSet<&str> = failures.iter().map(|f| f.cell.as_str()).collect();
        let known = |id: &str| cells.table.cells.binary_search(id).is_ok() || failed.contains(id);
        unclassified.extend(d.index.cells.iter().filter(|c| !known(c.id.as_str())).map(|c| Unclassified {
            cell: c.id.to_string(),
            reason: "not sampled: the run has not finished it (see `dispr-coordinator status`; run it again to resume)"
                .into(),
        }));
    }
    let mut missing_volumes = Vec::new();
    let (truth, reconstruction) = match run_truth {
        Some(t) => {
            unclassified.extend(t.problems);
            missing_volumes = t.missing_volumes;
            (t.truth, Reconstruction::of(t.reconstruction))
        }
        None => (Vec::new(), None),
    };
    let source = if truth.is_empty() {
        format!("run {run} features in {}", output.uri())
    } else {
        format!(
            "run {run} features in {}; true shapes from the ground truth of {} (obj > {})",
            output.uri(),
            manifest.as_ref().map_or("the dataset", |m| m.dataset_uri.as_str()),
            ground_truth::OBJ_THRESHOLD
        )
    };
    let inputs = ReportInputs { predicted: cells, truth, unclassified, reconstruction, source };

    let page = match manifest {
        Some(manifest) => {
            let jobs = read_all(output, &keys::jobs_prefix(run), JobRecord::decode).await?;
            let chosen =
                choose_panels(&inputs.predicted, options.cells_per_class, inputs.reconstruction.as_ref());
            let panels: Vec<CellPanel> = futures::stream::iter(
                chosen
                    .into_iter()
                    .map(|(cell, rank, scores)| panel(output, dataset.as_ref(), run, cell, rank, scores)),
            )
            .buffered(4)
            .try_collect()
            .await?;
            let (uncertainty_panels, mut missing) = uncertainty::panels(
                output,
                dataset.as_ref(),
                run,
                &inputs.predicted,
                inputs.reconstruction.as_ref(),
            )
            .await;
            warnings.append(&mut missing);
            missing_volumes.extend(panels.iter().flat_map(|p| p.missing_volumes.iter().cloned()));
            missing_volumes.sort();
            missing_volumes.dedup();
            if let Some(first) = missing_volumes.first() {
                warnings.push(format!(
                    "{} volume(s) not found, e.g. {} of cell {}: those cells keep their rows, without pictures{}; \
                     report.html lists them",
                    missing_volumes.len(),
                    first.uri,
                    first.cell,
                    if inputs.reconstruction.is_some() { " or reconstruction scores" } else { "" }
                ));
            }
            Some(RunPage {
                cells_in_dataset: dataset.as_ref().map(|d| d.index.cells.len()),
                done: inputs.predicted.len(),
                cells_not_drawn: inputs.predicted.len() - panels.len(),
                manifest,
                failures,
                jobs,
                panels,
                uncertainty_panels,
                missing_volumes,
            })
        }
        None => None,
    };
    let mut written = write_report(output, run, inputs, options, page).await?;
    warnings.append(&mut written.warnings);
    written.warnings = warnings;
    Ok(written)
}

/// The report of `inputs` under `runs/<run>/report/`; with `page`, report.html too.
pub async fn write_report(
    output: &Store,
    run: &RunId,
    inputs: ReportInputs,
    options: &ReportOptions,
    page: Option<RunPage>,
) -> anyhow::Result<Written> {
    let run_name = run.to_string();
    let (level, cv) = (options.level, options.cv);
    let metadata = parquet_metadata(run, page.as_ref().map(|p| &p.manifest), &inputs.source);
    // The forests are compute: a blocking thread, with rayon spreading the trees over the cores.
    let spool = tempfile::Builder::new()
        .prefix("dispr-report-")
        .tempdir()
        .context("creating a temporary folder for the report's tables (set TMPDIR to a writable place)")?;
    let spool_dir = spool.path().to_owned();
    let (results, (mut all, warnings), tables) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let results = report::results(&run_name, inputs, level, cv);
        let files = results.files()?;
        let tables = results.write_tables(&metadata, &spool_dir)?;
        Ok((results, files, tables))
    })
    .await??;
    if let Some(page) = page {
        let plots: BTreeMap<String, Vec<u8>> =
            all.iter().filter(|(n, _)| n.ends_with(".png")).cloned().collect();
        all.push(("report.html".to_string(), html::render(&page, &results, &plots).into_bytes()));
    }
    let count = all.len() + tables.len();
    // The tables of a row per cell go from disk to the store, one at a time.
    for (name, path) in &tables {
        let key = keys::report_file(run, name);
        output.put_file(&key, path).await.with_context(|| format!("writing {}", output.uri_of(&key)))?;
    }
    drop(spool);
    futures::stream::iter(all.into_iter().map(|(name, bytes)| {
        let key = keys::report_file(run, &name);
        async move {
            output.put(&key, bytes.into()).await.with_context(|| format!("writing {}", output.uri_of(&key)))
        }
    }))
    .buffer_unordered(8)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(Written { summary: results.summary(), files: count, warnings })
}

/// What features.parquet says of where its rows come from: the run, and with its manifest the
/// model (its record's sha256), sampler, volume format and release.
fn parquet_metadata(run: &RunId, manifest: Option<&Manifest>, source: &str) -> Vec<(&'static str, String)> {
    let mut metadata = vec![("dispr.run_id", run.to_string()), ("dispr.source", source.to_string())];
    if let Some(m) = manifest {
        if let Some(model) = &m.model {
            metadata.push(("dispr.model_uri", model.uri.clone()));
            metadata.push(("dispr.model_sha256", model.sha256.clone()));
        }
        metadata.push(("dispr.sampler", m.sampler.to_string()));
        metadata.push(("dispr.samples_per_cell", m.samples_per_cell.to_string()));
        metadata.push(("dispr.volumes", m.volumes.to_string()));
        metadata.push(("dispr.code_version", m.code_version.clone()));
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ForestConfig;
    use crate::manifest::RunSpec;
    use crate::prepare::prepare;
    use crate::report::Report;
    use dispr_proto::SamplerSpec;
    use dispr_shape::tiff_io;
    use dispr_shape::volume::SIDE;

    #[test]
    fn the_gallery_takes_best_median_and_worst() {
        let names =
            |m, n| gallery_positions(m, n).into_iter().map(|(p, s)| format!("{p}:{s}")).collect::<Vec<_>>();
        assert_eq!(names(9, 3), ["0:best", "4:median", "8:worst"]);
        assert_eq!(names(2, 3), ["0:best", "1:worst"]);
        assert_eq!(names(1, 3), ["0:best"]);
        assert_eq!(names(10, 4), ["0:best", "3:rank 4 of 10", "6:rank 7 of 10", "9:worst"]);
        assert!(names(0, 3).is_empty());
    }

    fn options() -> ReportOptions {
        ReportOptions {
            level: Level::Class,
            cv: CvConfig {
                folds: 3,
                repeats: 2,
                forest: ForestConfig { trees: 10, max_depth: 4, seed: 0 },
                cap_per_class: None,
            },
            cells_per_class: 3,
        }
    }

    /// A synthetic dataset of 24 cells (4 per class) run with the null sampler, `samples` per cell,
    /// one cell's mask emptied (it fails) and one cell added after the run (unfinished); with and
    /// without obj/.
    pub(super) async fn run_and_report(
        with_truth: bool,
        samples: u32,
    ) -> (Report, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let data = Store::open(dir.path().join("data").to_str().unwrap()).unwrap();
        crate::cmd::synth::generate_into(&data, 24, 4, 7, 0).await.unwrap();
        let index = Dataset::open(data.clone()).await.unwrap().index;
        let (blank, copied) = (index.cells[0].id.clone(), index.cells[1].id.clone());
        let zeros = dispr_shape::volume::Image2d { dims: [SIDE, SIDE], data: vec![0u8; SIDE * SIDE] };
        data.put(&keys::dataset_mask(&blank), tiff_io::encode_image_u8(&zeros).unwrap().into())
            .await
            .unwrap();
        if !with_truth {
            for c in &index.cells {
                data.delete(&keys::dataset_obj(&c.id)).await.unwrap();
            }
        }
        let spec = RunSpec {
            run_id: RunId::new("page").unwrap(),
            dataset_uri: dir.path().join("data").to_string_lossy().into_owned(),
            output_uri: dir.path().join("out").to_string_lossy().into_owned(),
            model_uri: None,
            sampler: SamplerSpec::Null,
            samples_per_cell: samples,
            seed: 3,
            volumes: None,
        };
        let prepared = prepare(&spec).await.unwrap();
        crate::local::run(&prepared, 4, 2, &indicatif::ProgressBar::hidden()).await.unwrap();
        // A cell that joins the dataset after the run: not sampled.
        let late =
            CellId::new(format!("{}late", copied.as_str().trim_end_matches(|c: char| c.is_ascii_digit())))
                .unwrap();
        for (from, to) in [
            (keys::dataset_image(&copied), keys::dataset_image(&late)),
            (keys::dataset_mask(&copied), keys::dataset_mask(&late)),
        ] {
            data.put(&to, data.get(&from).await.unwrap()).await.unwrap();
        }
        let labels = String::from_utf8(data.get(keys::DATASET_LABELS).await.unwrap().to_vec()).unwrap();
        let row = labels.lines().find(|l| l.starts_with(&format!("{copied},"))).unwrap();
        let labels = format!("{labels}{}\n", row.replacen(copied.as_str(), late.as_str(), 1));
        data.put(keys::DATASET_LABELS, labels.into()).await.unwrap();
        let written = write_run_report(&prepared.output, &spec.run_id, &options()).await.unwrap();
        assert!(written.warnings.is_empty(), "{:?}", written.warnings);
        let json = prepared.output.get(&keys::report_file(&spec.run_id, "report.json")).await.unwrap();
        let html = prepared.output.get(&keys::report_file(&spec.run_id, "report.html")).await.unwrap();
        let report: Report = serde_json::from_slice(&json).unwrap();
        let unclassified: Vec<&str> = report.unclassified.iter().map(|u| u.cell.as_str()).collect();
        assert_eq!(unclassified.len(), 2, "{:?}", report.unclassified);
        let why =
            |cell: &CellId| &report.unclassified.iter().find(|u| u.cell == cell.as_str()).unwrap().reason;
        assert!(
            why(&blank).starts_with("failed:") && why(&blank).contains(&keys::dataset_mask(&blank)),
            "{}",
            why(&blank)
        );
        assert!(why(&late).starts_with("not sampled"), "{}", why(&late));
        assert_eq!(report.cells.len(), 23);
        let html = String::from_utf8(html.to_vec()).unwrap();
        assert!(html.contains(blank.as_str()) && html.contains("Cells not classified (2)"));
        (report, html, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_ground_truth_the_report_has_the_ceiling_the_floor_and_ranked_cells() {
        let (report, html, _dir) = run_and_report(true, 1).await;
        let rows: Vec<_> = report.feature_sets.iter().map(|s| (s.name.as_str(), s.ceiling)).collect();
        assert_eq!(
            rows,
            [
                ("2D", false),
                ("predicted 3D", false),
                ("2D + predicted 3D", false),
                ("true 3D", true),
                ("2D + true 3D", true)
            ]
        );
        assert!(report.recovered.is_some());
        let rec = report.reconstruction.as_ref().expect("reconstruction against the floor");
        assert_eq!(rec.all.cells, 23);
        assert_eq!(rec.per_class.len(), 6);
        // The null sampler extrudes the mask into a lens: it scores, and not perfectly.
        assert!(rec.all.model_iou > 0.1 && rec.all.model_iou < 1.0, "{:?}", rec.all);
        assert!(rec.all.floor_iou > 0.1 && rec.all.floor_iou < 1.0, "{:?}", rec.all);
        for needle in [
            "2D + true 3D",
            "(ceiling: true shapes)",
            "of the gain true shapes give over 2D",
            "floor IoU",
            "best IoU",
            "median IoU",
            "worst IoU",
        ] {
            assert!(html.contains(needle), "report.html lacks {needle:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_ground_truth_there_are_no_ceiling_rows() {
        let (report, html, _dir) = run_and_report(false, 1).await;
        assert!(report.feature_sets.iter().all(|s| !s.ceiling) && report.feature_sets.len() == 3);
        assert_eq!((report.recovered, report.reconstruction.as_ref()), (None, None));
        assert!(!html.contains("2D + true 3D") && html.contains("so there is no ceiling"));
        assert!(!html.contains("best IoU"));
    }

    /// Runs a test-time Python reference check from tests/python with `args`; its output.
    pub(crate) fn python_check(script: &str, args: &[&std::path::Path]) -> String {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python").join(script);
        let out = std::process::Command::new("python3").arg(&path).args(args).output().unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): install python3 and `pip install numpy pandas pyarrow tifffile`"
            )
        });
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{script} failed:\n{text}");
        text
    }

    /// Operators expire volumes and keep features: a report whose run lost some volumes still
    /// succeeds, keeps every cell's row and lists the volumes; with ground truth those cells
    /// lose their reconstruction scores, and a drawn cell's picture says "volume not found".
    /// features.parquet beside features.csv reads back in pyarrow and pandas.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_volumes_degrade_the_report_and_features_parquet_reads_back() {
        let run = RunId::new("page").unwrap();
        let html_of = |out: &Store| {
            let out = out.clone();
            let run = run.clone();
            async move {
                let html = out.get(&keys::report_file(&run, "report.html")).await.unwrap();
                String::from_utf8(html.to_vec()).unwrap()
            }
        };
        let delete = |out: &Store, cell: &str, k: u32| {
            let (out, key) = (out.clone(), keys::volume(&run, &CellId::new(cell).unwrap(), k));
            async move { out.delete(&key).await.unwrap() }
        };

        // With ground truth, the report reads every cell's volumes for its scores.
        let (report, html, dir) = run_and_report(true, 2).await;
        let out = Store::open(dir.path().join("out").to_str().unwrap()).unwrap();
        assert_eq!(report.reconstruction.as_ref().unwrap().all.cells, 23);
        let drawn = report.cells.iter().find(|c| html.contains(&format!("{c} sample 0"))).unwrap().clone();
        let other = report.cells.iter().find(|c| !html.contains(&format!("{c} sample 0"))).unwrap().clone();
        delete(&out, &drawn, 1).await;
        delete(&out, &other, 0).await;
        let written = write_run_report(&out, &run, &options()).await.unwrap();
        assert!(
            written.warnings.iter().any(|w| w.contains("2 volume(s) not found")),
            "{:?}",
            written.warnings
        );
        let json = out.get(&keys::report_file(&run, "report.json")).await.unwrap();
        let again: Report = serde_json::from_slice(&json).unwrap();
        assert_eq!(again.cells.len(), 23, "every cell keeps its row");
        assert_eq!(again.reconstruction.as_ref().unwrap().all.cells, 21, "without their scores");
        let html = html_of(&out).await;
        assert!(html.contains("Volumes not found"));
        for cell in [&drawn, &other] {
            let listed = format!("<tr><td class=\"l\">{cell}</td>");
            assert!(html.contains(&listed), "report.html lists {cell}");
        }

        // Without, it reads the drawn cells' volumes only: their pictures say what is missing.
        let (report, html, dir2) = run_and_report(false, 2).await;
        let out2 = Store::open(dir2.path().join("out").to_str().unwrap()).unwrap();
        let drawn = report.cells.iter().find(|c| html.contains(&format!("{c} sample 0"))).unwrap().clone();
        delete(&out2, &drawn, 1).await;
        let written = write_run_report(&out2, &run, &options()).await.unwrap();
        assert!(
            written.warnings.iter().any(|w| w.contains("1 volume(s) not found")),
            "{:?}",
            written.warnings
        );
        let html = html_of(&out2).await;
        assert!(html.contains("sample 1: volume not found"), "the drawn cell's picture says so");
        assert!(html.contains(&format!("<tr><td class=\"l\">{drawn}</td>")));

        let report_dir = dir.path().join("out/runs/page/report");
        let csv = std::fs::read_to_string(report_dir.join("features.csv")).unwrap();
        assert_eq!(csv.lines().count(), 24);
        let text = python_check("check_features_parquet.py", &[&report_dir, std::path::Path::new("page")]);
        assert!(text.contains("ok, 23 cells"), "{text}");
    }
}
