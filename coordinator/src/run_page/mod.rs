//! `report.html`: the page people open when a run is over. One self-contained file (pictures are
//! embedded PNGs, no scripts, no network): the run's summary, its timeline, the classification
//! results beside the ceiling of the true shapes, the reconstruction against the extrusion floor,
//! the cells left out and why, the uncertainty of the samples ([`uncertainty`]), and per class the
//! best, median and worst cells: inputs beside the predicted shapes and the ground truth.
//!
//! [`write_run_report`] reads what the report needs from the stores, [`crate::report`] computes
//! the classification and its plots, [`render`] turns it all into HTML.

pub mod cells;
pub mod timeline;
pub mod uncertainty;

use crate::classify::CvConfig;
use crate::report::reconstruction::CellReconstruction;
use crate::report::{FeatureTable, Level, Reconstruction, Report, Unclassified, file_tag, ground_truth};
use anyhow::Context as _;
use base64::Engine as _;
use dispr_proto::records::{CellFailure, CellFeatures, JobRecord, Manifest};
use dispr_proto::{CellId, RunId, keys};
use dispr_shape::dataset::Dataset;
use dispr_shape::tiff_io;
use dispr_shape::volume::SIDE;
use dispr_store::Store;
use futures::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Cells shown with pictures per class: the best, the median and the worst by IoU (or the first
/// ones where there is no ground truth). The others are counted, not drawn, so a page of a
/// million-cell run stays a few megabytes.
pub const DEFAULT_CELLS_PER_CLASS: usize = 3;

/// Unclassified cells listed on the page (report.json and unclassified.csv have them all).
const UNCLASSIFIED_SHOWN: usize = 200;

/// One cell's panel.
pub struct CellPanel {
    pub cell: CellId,
    pub class: Option<String>,
    /// Where the cell ranks in its class by IoU: "best", "median", "worst", "rank 3 of 40"; empty
    /// without ground truth.
    pub rank: String,
    /// Image and mask side by side.
    pub inputs_png: Option<Vec<u8>>,
    /// One strip per sample: its projections along z, y and x.
    pub samples_png: Vec<Vec<u8>>,
    /// The ground truth's projections, where the dataset has it.
    pub truth_png: Option<Vec<u8>>,
    /// The cell's reconstruction scores (model and floor against `obj > 0`), with ground truth.
    pub scores: Option<CellReconstruction>,
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
    /// The uncertainty analysis ([`write_report`] fills it in) and its pictures.
    pub uncertainty: Option<crate::report::uncertainty::UncertaintySection>,
    pub uncertainty_panels: Vec<uncertainty::Panel>,
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

/// Positions of `n` cells spread over a ranking of `m` (best first): best, median, worst for 3;
/// evenly spaced otherwise. With their names.
pub fn gallery_positions(m: usize, n: usize) -> Vec<(usize, String)> {
    if m == 0 || n == 0 {
        return Vec::new();
    }
    let n = n.min(m);
    let mut out: Vec<(usize, String)> = Vec::new();
    for i in 0..n {
        let pos = if n == 1 { 0 } else { (i * (m - 1) + (n - 1) / 2) / (n - 1) };
        if out.last().is_some_and(|(p, _)| *p == pos) {
            continue;
        }
        let name = if pos == 0 {
            "best".to_string()
        } else if pos == m - 1 {
            "worst".to_string()
        } else if pos == (m - 1) / 2 {
            "median".to_string()
        } else {
            format!("rank {} of {m}", pos + 1)
        };
        out.push((pos, name));
    }
    out
}

/// Chooses the cells drawn per class: by model IoU where the report has reconstruction scores
/// (best, median, worst), else the first cells by id.
fn choose_panels<'a>(
    records: &'a [CellFeatures],
    per_class: usize,
    reconstruction: Option<&Reconstruction>,
) -> Vec<(&'a CellFeatures, String, Option<CellReconstruction>)> {
    let mut by_class: BTreeMap<Option<String>, Vec<&CellFeatures>> = BTreeMap::new();
    for rec in records {
        by_class.entry(rec.class.clone()).or_default().push(rec);
    }
    let mut chosen = Vec::new();
    for (_, mut members) in by_class {
        members.sort_by(|a, b| a.cell.cmp(&b.cell));
        let score = |r: &CellFeatures| reconstruction.and_then(|rec| rec.cell(r.cell.as_str())).cloned();
        let scored: Vec<(&CellFeatures, CellReconstruction)> =
            members.iter().filter_map(|r| score(r).map(|s| (*r, s))).collect();
        if scored.is_empty() {
            chosen.extend(members.into_iter().take(per_class).map(|r| (r, String::new(), None)));
        } else {
            let mut ranked = scored;
            ranked.sort_by(|a, b| {
                b.1.model_iou.total_cmp(&a.1.model_iou).then_with(|| a.0.cell.cmp(&b.0.cell))
            });
            for (pos, name) in gallery_positions(ranked.len(), per_class) {
                let (rec, s) = &ranked[pos];
                chosen.push((*rec, format!("{name} IoU"), Some(s.clone())));
            }
        }
    }
    chosen
}

/// Opens the run's dataset, or says why not (the report is still made without it).
async fn open_dataset(uri: &str) -> Result<Dataset, String> {
    let store = Store::open(uri).map_err(|e| format!("{e:#}"))?;
    Dataset::open(store).await.map_err(|e| format!("{e:#}"))
}

async fn panel(
    output: &Store,
    dataset: Option<&Dataset>,
    run: &RunId,
    rec: &CellFeatures,
    rank: String,
    scores: Option<CellReconstruction>,
) -> anyhow::Result<CellPanel> {
    let cell = rec.cell.clone();
    let input = match dataset {
        Some(d) if d.index.get(&cell).is_some() => Some(d.load_cell(&cell).await?),
        _ => None,
    };
    let mut volumes = Vec::new();
    for s in &rec.samples {
        let key = keys::volume(run, &cell, s.k);
        volumes.push((
            key.clone(),
            output.get(&key).await.with_context(|| format!("reading {}", output.uri_of(&key)))?,
        ));
    }
    let class = rec.class.clone();
    tokio::task::spawn_blocking(move || {
        let samples_png = volumes
            .iter()
            .map(|(key, bytes)| {
                let v = tiff_io::read_volume_f32(bytes, key, "predicted volume", [SIDE, SIDE, SIDE])?;
                cells::strip_png(&cells::projections_f32(&v))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let inputs_png =
            input.as_ref().map(|c| cells::strip_png(&[c.image.clone(), c.mask.clone()])).transpose()?;
        let truth_png = input
            .as_ref()
            .and_then(|c| c.obj.as_ref())
            .map(|obj| cells::strip_png(&cells::projections_u8(obj)))
            .transpose()?;
        Ok(CellPanel { cell, class, rank, inputs_png, samples_png, truth_png, scores })
    })
    .await?
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

/// What a report is made of.
pub struct ReportInputs {
    /// The run's feature records (predicted shapes); empty for a report on ground truth alone.
    pub predicted: Vec<CellFeatures>,
    /// Ground-truth feature records (true shapes): the ceiling rows.
    pub truth: Vec<CellFeatures>,
    /// Cells left out before classifying, with the reason.
    pub unclassified: Vec<Unclassified>,
    pub reconstruction: Option<Reconstruction>,
    /// Where the features came from, as the report states it.
    pub source: String,
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
    let records = read_all(output, &keys::features_prefix(run), CellFeatures::decode).await?;
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
        Some(d) => match ground_truth::for_run(d, output, run, &records).await {
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
        let known: BTreeSet<&str> =
            records.iter().map(|r| r.cell.as_str()).chain(failures.iter().map(|f| f.cell.as_str())).collect();
        unclassified.extend(d.index.cells.iter().filter(|c| !known.contains(c.id.as_str())).map(|c| Unclassified {
            cell: c.id.to_string(),
            reason: "not sampled: the run has not finished it (see `dispr-coordinator status`; run it again to resume)"
                .into(),
        }));
    }
    let (truth, reconstruction) = match run_truth {
        Some(t) => {
            unclassified.extend(t.problems);
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
    let inputs = ReportInputs { predicted: records, truth, unclassified, reconstruction, source };

    let page = match manifest {
        Some(manifest) => {
            let jobs = read_all(output, &keys::jobs_prefix(run), JobRecord::decode).await?;
            let chosen =
                choose_panels(&inputs.predicted, options.cells_per_class, inputs.reconstruction.as_ref());
            let panels: Vec<CellPanel> = futures::stream::iter(
                chosen
                    .into_iter()
                    .map(|(rec, rank, scores)| panel(output, dataset.as_ref(), run, rec, rank, scores)),
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
            Some(RunPage {
                cells_in_dataset: dataset.as_ref().map(|d| d.index.cells.len()),
                done: inputs.predicted.len(),
                cells_not_drawn: inputs.predicted.len() - panels.len(),
                manifest,
                failures,
                jobs,
                panels,
                uncertainty: None,
                uncertainty_panels,
            })
        }
        None => None,
    };
    let mut written = write_report(output, run, inputs, options, page).await?;
    warnings.append(&mut written.warnings);
    written.warnings = warnings;
    Ok(written)
}

/// The uncertainty analysis of a run's records; `None` for a report without a run (ground truth
/// alone).
fn uncertainty_of(
    predicted: &[CellFeatures],
    reconstruction: &Option<Reconstruction>,
    report: Option<&Report>,
) -> Option<crate::report::uncertainty::Analysis> {
    (!predicted.is_empty())
        .then(|| crate::report::uncertainty::analyse(predicted, reconstruction.as_ref(), report))
}

/// The report of `inputs` under `runs/<run>/report/`; with `page`, report.html too.
pub async fn write_report(
    output: &Store,
    run: &RunId,
    inputs: ReportInputs,
    options: &ReportOptions,
    page: Option<RunPage>,
) -> anyhow::Result<Written> {
    let table = FeatureTable::from_sources(&inputs.predicted, &inputs.truth);
    let run_name = run.to_string();
    let (level, cv) = (options.level, options.cv);
    let ReportInputs { predicted, unclassified, reconstruction, source, .. } = inputs;
    // The forests are compute: a blocking thread, with rayon spreading the trees over the cores.
    let (report, unclassified, files, warnings, uncertainty) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let (report, unclassified, mut files, mut warnings, uncertainty) =
                match crate::report::build(&run_name, &source, &table, level, cv, unclassified.clone()) {
                    Ok(mut report) => {
                        report.reconstruction = reconstruction;
                        // After the classification: it says which cells were misclassified.
                        let uncertainty = uncertainty_of(&predicted, &report.reconstruction, Some(&report));
                        report.uncertainty = uncertainty.as_ref().map(|a| a.section.clone());
                        let (files, warnings) = crate::report::files(&report, &table)?;
                        let unclassified = report.unclassified.clone();
                        (Ok(report), unclassified, files, warnings, uncertainty)
                    }
                    // Too few cells is not an error of the run: the page says so instead.
                    Err(why) => (
                        Err(why.to_string()),
                        unclassified,
                        vec![("features.csv".to_string(), table.to_csv()?)],
                        Vec::new(),
                        uncertainty_of(&predicted, &reconstruction, None),
                    ),
                };
            // uncertainty.csv and its plots, with or without a classification.
            if let Some(a) = &uncertainty {
                let (mut more, mut w) = crate::report::uncertainty::files(a)?;
                files.append(&mut more);
                warnings.append(&mut w);
            }
            Ok((report, unclassified, files, warnings, uncertainty.map(|a| a.section)))
        })
        .await??;
    let mut summary = match &report {
        Ok(r) => crate::report::summary(r),
        Err(why) => format!("no classification: {why}\n"),
    };
    if let (Err(_), Some(u)) = (&report, &uncertainty) {
        summary.push_str(&crate::report::uncertainty::summary(u));
    }
    let (mut all, warnings) = (files, warnings);
    if let Some(mut page) = page {
        page.uncertainty = uncertainty;
        let plots: BTreeMap<String, Vec<u8>> =
            all.iter().filter(|(n, _)| n.ends_with(".png")).cloned().collect();
        let html = render(
            &page,
            report.as_ref().ok(),
            &unclassified,
            &plots,
            report.as_ref().err().map(String::as_str),
        );
        all.push(("report.html".to_string(), html.into_bytes()));
    }
    let count = all.len();
    futures::stream::iter(all.into_iter().map(|(name, bytes)| {
        let key = keys::report_file(run, &name);
        async move {
            output.put(&key, bytes.into()).await.with_context(|| format!("writing {}", output.uri_of(&key)))
        }
    }))
    .buffer_unordered(8)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(Written { summary, files: count, warnings })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn img(png: &[u8], alt: &str) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(png);
    format!("<img alt=\"{}\" src=\"data:image/png;base64,{data}\">", esc(alt))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}\
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0 1.5em}.scroll>table{margin:0}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
td{white-space:nowrap}td.l{white-space:normal}\
th{background:#f3f3f3}td.l,th.l{text-align:left}img{image-rendering:pixelated;vertical-align:middle;margin:2px}\
img.plot{image-rendering:auto;max-width:100%;height:auto}tr.ceiling td{background:#f6f6f6;font-style:italic}\
p.answer{font-size:1.1em;font-weight:600;border-left:4px solid #009e73;padding-left:.6em}\
details{margin:.3em 0}summary{cursor:pointer;font-weight:600}.muted{color:#777}.bad{color:#b00}.good{color:#070}\
code{overflow-wrap:anywhere}";

/// A table in a box of its own that scrolls sideways, so a wide table never widens the page.
fn scroll(h: &mut String, table: &str) {
    let _ = write!(h, "<div class=\"scroll\">{table}</div>");
}

/// The page: `report` and its plots (`report::files` output, by name) are the classification
/// part, absent when too few cells were labelled to cross-validate (`why_no_report` says why);
/// `unclassified` are the cells left out of it, with the reason.
pub fn render(
    page: &RunPage,
    report: Option<&Report>,
    unclassified: &[Unclassified],
    plots: &BTreeMap<String, Vec<u8>>,
    why_no_report: Option<&str>,
) -> String {
    let m = &page.manifest;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>DISPR run {run}</title><style>{STYLE}</style></head><body>\
         <h1>DISPR run <code>{run}</code></h1>",
        run = esc(m.run_id.as_str())
    );

    // Summary.
    let model = m.model.as_ref().map(|r| {
        format!(
            "<code>{}</code> <span class=\"muted\">sha256 <code>{}</code></span>",
            esc(&r.uri),
            esc(&r.sha256)
        )
    });
    let rows: Vec<(&str, String)> = vec![
        ("dataset", format!("<code>{}</code>", esc(&m.dataset_uri))),
        ("output", format!("<code>{}</code>", esc(&m.output_uri))),
        ("model", model.unwrap_or_else(|| "none (null sampler)".into())),
        ("sampler", format!("{} ({} model evaluations per sample)", m.sampler, m.sampler.steps())),
        ("samples per cell", m.samples_per_cell.to_string()),
        ("seed", m.seed.to_string()),
        ("code version", esc(&m.code_version)),
        ("cells in the dataset", page.cells_in_dataset.map_or("unknown".into(), |n| n.to_string())),
        ("cells done", page.done.to_string()),
        ("cells failed", page.failures.len().to_string()),
        ("wall time", page.wall_seconds().map_or("-".into(), |s| format!("{s:.1} s"))),
        (
            "cells per second",
            page.wall_seconds()
                .filter(|&s| s > 0.0)
                .map_or("-".into(), |s| format!("{:.3}", page.done as f64 / s)),
        ),
        (
            "compute seconds per cell",
            page.compute_seconds_per_cell().map_or("-".into(), |s| format!("{s:.2} s")),
        ),
    ];
    h.push_str("<h2>Run summary</h2>");
    let mut t = String::from("<table>");
    for (k, v) in rows {
        let _ = write!(t, "<tr><th class=\"l\">{k}</th><td class=\"l\">{v}</td></tr>");
    }
    t.push_str("</table>");
    scroll(&mut h, &t);
    if !page.failures.is_empty() {
        h.push_str("<h3 class=\"bad\">Failed cells</h3>");
        let mut t = String::from(
            "<table><tr><th class=\"l\">cell</th><th class=\"l\">reason</th><th class=\"l\">worker</th></tr>",
        );
        for f in &page.failures {
            let _ = write!(
                t,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(f.cell.as_str()),
                esc(&f.reason),
                esc(&f.worker)
            );
        }
        t.push_str("</table>");
        scroll(&mut h, &t);
    }

    // Timeline.
    h.push_str("<h2>Timeline</h2>");
    match timeline::timeline_png(&page.jobs) {
        Ok(Some(png)) => h.push_str(&img_plot(&png, "timeline: jobs per worker over time")),
        Ok(None) => h.push_str("<p class=\"muted\">No job records: the run has not finished a job yet.</p>"),
        Err(e) => {
            let _ =
                write!(h, "<p class=\"bad\">The timeline could not be drawn: {}</p>", esc(&e.to_string()));
        }
    }

    // Classification.
    h.push_str("<h2>Classification</h2>");
    match report {
        None => {
            let _ = write!(
                h,
                "<p class=\"muted\">No classification: {}</p>",
                esc(why_no_report.unwrap_or("not computed"))
            );
        }
        Some(r) => render_classification(&mut h, r, plots),
    }
    render_unclassified(&mut h, unclassified);
    if let Some(rec) = report.and_then(|r| r.reconstruction.as_ref()) {
        render_reconstruction(&mut h, rec);
    }
    uncertainty::render(&mut h, page.uncertainty.as_ref(), &page.uncertainty_panels, plots);

    // Cells.
    let by_iou = page.panels.iter().any(|p| p.scores.is_some());
    let _ = write!(
        h,
        "<h2>Cells</h2><p class=\"muted\">{} Per cell: input image and mask; then the maximum projections along \
         z, y and x of each predicted sample; and of the ground truth where the dataset has it.{}</p>",
        if by_iou {
            "Per class, the cells with the best, the median and the worst model IoU (against obj &gt; 0)."
        } else {
            "Per class, the first cells by name (the dataset has no ground truth to rank them by)."
        },
        if page.cells_not_drawn > 0 {
            format!(" {} more cells are not drawn (features.csv has them all).", page.cells_not_drawn)
        } else {
            String::new()
        }
    );
    let mut by_class: BTreeMap<String, Vec<&CellPanel>> = BTreeMap::new();
    for p in &page.panels {
        by_class.entry(p.class.clone().unwrap_or_else(|| "unlabelled".into())).or_default().push(p);
    }
    for (class, panels) in by_class {
        let _ = write!(h, "<details open><summary>{} ({} shown)</summary>", esc(&class), panels.len());
        let mut t = String::from(
            "<table><tr><th class=\"l\">cell</th><th>model IoU</th><th>floor IoU</th><th>model volume error</th>\
             <th class=\"l\">inputs</th><th class=\"l\">samples (z, y, x)</th><th class=\"l\">ground truth</th></tr>",
        );
        for p in panels {
            let score = |f: fn(&CellReconstruction) -> f64| {
                p.scores.as_ref().map_or("-".into(), |s| format!("{:.3}", f(s)))
            };
            let _ = write!(
                t,
                "<tr><td class=\"l\">{}<br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(p.cell.as_str()),
                esc(&p.rank),
                score(|s| s.model_iou),
                score(|s| s.floor_iou),
                score(|s| s.model_volume_error),
                p.inputs_png.as_ref().map_or(String::new(), |png| img(png, &format!("{} inputs", p.cell))),
                p.samples_png
                    .iter()
                    .enumerate()
                    .map(|(k, png)| img(png, &format!("{} sample {k}", p.cell)))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                p.truth_png.as_ref().map_or("<span class=\"muted\">none</span>".into(), |png| img(
                    png,
                    &format!("{} ground truth", p.cell)
                )),
            );
        }
        t.push_str("</table>");
        scroll(&mut h, &t);
        h.push_str("</details>");
    }
    h.push_str("</body></html>\n");
    h
}

fn img_plot(png: &[u8], alt: &str) -> String {
    img(png, alt).replacen("<img ", "<img class=\"plot\" ", 1)
}

fn render_classification(h: &mut String, r: &Report, plots: &BTreeMap<String, Vec<u8>>) {
    let _ = write!(h, "<p>{}. Class imbalance: {}.", esc(&r.protocol()), esc(&r.imbalance));
    if !r.minority_classes.is_empty() {
        let _ = write!(
            h,
            " Minority classes (every class but one holding half of the cells): {}.",
            esc(&r.minority_classes.join(", "))
        );
    }
    h.push_str("</p>");
    let has_ceiling = r.feature_sets.iter().any(|s| s.ceiling);
    let mut t = String::from(
        "<table><tr><th class=\"l\">features</th><th>columns</th><th>macro F1</th><th>minority macro F1</th>\
         <th>accuracy</th><th>reference study macro F1</th></tr>",
    );
    for s in &r.feature_sets {
        let reference = r
            .reference_macro_f1
            .iter()
            .find(|(k, _)| *k == s.name)
            .map_or("-".into(), |(_, v)| format!("{v:.3}"));
        let _ = write!(
            t,
            "<tr{}><td class=\"l\">{}{}</td><td>{}</td><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if s.ceiling { " class=\"ceiling\"" } else { "" },
            esc(&s.name),
            if s.ceiling { " <span class=\"muted\">(ceiling: true shapes)</span>" } else { "" },
            s.features.len(),
            s.macro_f1.show(),
            s.minority_macro_f1.map_or("-".into(), |m| m.show()),
            s.accuracy.show(),
            reference
        );
    }
    t.push_str("</table>");
    scroll(h, &t);
    match r.recovered_line() {
        Some(line) => {
            let _ = write!(h, "<p class=\"answer\">{}</p>", esc(&line));
        }
        None if !has_ceiling => h.push_str(
            "<p class=\"muted\">The dataset has no ground truth (obj/), so there is no ceiling: how much of the \
             gain true shapes would give the predicted ones recover cannot be measured here.</p>",
        ),
        None => {}
    }

    let _ = write!(h, "<h3>Per class (mean ± standard deviation over {} repetitions)</h3>", r.cv.repeats);
    let mut t = String::from("<table><tr><th class=\"l\">class</th><th>cells</th>");
    for s in &r.feature_sets {
        let _ = write!(t, "<th>{} F1</th><th>precision</th><th>recall</th>", esc(&s.name));
    }
    t.push_str("</tr>");
    for (k, c) in r.classes.iter().enumerate() {
        let minority = if r.minority_classes.contains(&c.class) {
            " <span class=\"muted\">(minority)</span>"
        } else {
            ""
        };
        let _ = write!(t, "<tr><td class=\"l\">{}{minority}</td><td>{}</td>", esc(&c.class), c.cells);
        for s in &r.feature_sets {
            let m = &s.per_class[k];
            let _ = write!(
                t,
                "<td><b>{}</b></td><td>{:.3}</td><td>{:.3}</td>",
                m.f1.show(),
                m.precision.mean,
                m.recall.mean
            );
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    scroll(h, &t);
    if let Some(png) = plots.get("f1_per_class.png") {
        h.push_str(&img_plot(png, "per-class F1 of the feature sets"));
    }
    let _ = write!(h, "<h3>Confusion matrices (summed over {} repetitions)</h3>", r.cv.repeats);
    for s in &r.feature_sets {
        if let Some(png) = plots.get(&format!("confusion_{}.png", file_tag(&s.name))) {
            h.push_str(&img_plot(png, &format!("{} confusion matrix", s.name)));
        }
    }
}

fn render_unclassified(h: &mut String, unclassified: &[Unclassified]) {
    if unclassified.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<h3 id=\"unclassified\">Cells not classified ({})</h3><p class=\"muted\">Cells of the dataset or the run \
         that are not in the tables above, and why{}.</p>",
        unclassified.len(),
        if unclassified.len() > UNCLASSIFIED_SHOWN {
            format!("; the first {UNCLASSIFIED_SHOWN} are listed, unclassified.csv has them all")
        } else {
            String::new()
        }
    );
    let mut t = String::from("<table><tr><th class=\"l\">cell</th><th class=\"l\">reason</th></tr>");
    for u in unclassified.iter().take(UNCLASSIFIED_SHOWN) {
        let _ = write!(
            t,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            esc(&u.cell),
            esc(&u.reason)
        );
    }
    t.push_str("</table>");
    scroll(h, &t);
}

fn render_reconstruction(h: &mut String, rec: &Reconstruction) {
    let _ = write!(
        h,
        "<h2>Reconstruction</h2><p>How close the predicted shapes come to the true ones, beside doing nothing. \
         Truth: {}. Floor: {}. Model: each sample binarised with Otsu, scores averaged over its samples. \
         (The per-sample metrics in features/*.json use obj &gt; 127 and are not comparable.)</p>",
        esc(&rec.truth),
        esc(&rec.floor)
    );
    let mut t = String::from(
        "<table><tr><th class=\"l\">class</th><th>cells</th><th>model IoU</th><th>floor IoU</th>\
         <th>model volume error</th><th>floor volume error</th><th>cells where the model beats the floor</th></tr>",
    );
    for g in rec.per_class.iter().chain(std::iter::once(&rec.all)) {
        let verdict = if g.model_iou > g.floor_iou { "good" } else { "bad" };
        let _ = write!(
            t,
            "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"{verdict}\"><b>{:.3}</b></td><td>{:.3}</td>\
             <td>{:.3}</td><td>{:.3}</td><td>{} of {}</td></tr>",
            esc(&g.class),
            g.cells,
            g.model_iou,
            g.floor_iou,
            g.model_volume_error,
            g.floor_volume_error,
            g.model_beats_floor,
            g.cells
        );
    }
    t.push_str("</table>");
    scroll(h, &t);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ForestConfig;
    use crate::manifest::RunSpec;
    use crate::prepare::prepare;
    use dispr_proto::SamplerSpec;

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
            cv: CvConfig { folds: 3, repeats: 2, forest: ForestConfig { trees: 10, max_depth: 4, seed: 0 } },
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
}
