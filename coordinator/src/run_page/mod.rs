//! `report.html`: the page people open when a run is over. One self-contained file (pictures are
//! embedded PNGs, no scripts, no network): the run's summary, its timeline, the classification
//! results, and per cell the inputs beside the predicted shapes and the ground truth.
//!
//! [`collect`] reads what the page shows from the stores; [`render`] turns it into HTML. The
//! classification comes from [`crate::report`], which has already drawn its plots.

pub mod cells;
pub mod timeline;

use crate::classify::CvConfig;
use crate::report::{FeatureTable, Level, Report, file_tag};
use anyhow::Context as _;
use base64::Engine as _;
use dispr_proto::records::{CellFailure, CellFeatures, JobRecord, Manifest};
use dispr_proto::{CellId, RunId, keys};
use dispr_shape::dataset::Dataset;
use dispr_shape::tiff_io;
use dispr_shape::volume::SIDE;
use dispr_store::Store;
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Cells shown with pictures per class; the others are counted, not drawn, so a page of a
/// million-cell run stays a few megabytes.
pub const DEFAULT_CELLS_PER_CLASS: usize = 6;

/// One cell's panel.
pub struct CellPanel {
    pub cell: CellId,
    pub class: Option<String>,
    /// Image and mask side by side.
    pub inputs_png: Option<Vec<u8>>,
    /// One strip per sample: its projections along z, y and x.
    pub samples_png: Vec<Vec<u8>>,
    /// The ground truth's projections, where the dataset has it.
    pub truth_png: Option<Vec<u8>>,
    /// Mean reconstruction metrics over the samples (IoU, volume error, ...).
    pub metrics: BTreeMap<String, f64>,
}

/// Everything the page shows.
pub struct RunPage {
    pub manifest: Manifest,
    pub cells_in_dataset: Option<usize>,
    pub done: usize,
    pub failures: Vec<CellFailure>,
    pub jobs: Vec<JobRecord>,
    pub panels: Vec<CellPanel>,
    /// Cells with features that have no panel (beyond the per-class limit).
    pub cells_not_drawn: usize,
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

/// Reads the run's manifest, records and (for up to `per_class` cells of each class) the
/// pictures of its inputs, samples and ground truth. Decoding and drawing run on blocking threads.
pub async fn collect(output: &Store, run: &RunId, per_class: usize) -> anyhow::Result<RunPage> {
    let manifest_key = keys::manifest(run);
    let manifest = Manifest::decode(
        &output
            .get(&manifest_key)
            .await
            .with_context(|| format!("reading {}", output.uri_of(&manifest_key)))?,
    )?;
    let features = read_all(output, &keys::features_prefix(run), CellFeatures::decode).await?;
    let failures = read_all(output, &keys::failures_prefix(run), CellFailure::decode).await?;
    let jobs = read_all(output, &keys::jobs_prefix(run), JobRecord::decode).await?;

    // The dataset gives the inputs and the ground truth; a page is still made without it.
    let dataset = match Store::open(&manifest.dataset_uri) {
        Ok(store) => match Dataset::open(store).await {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(dataset = %manifest.dataset_uri, error = %e, "the report shows no inputs");
                None
            }
        },
        Err(e) => {
            tracing::warn!(dataset = %manifest.dataset_uri, error = %e, "the report shows no inputs");
            None
        }
    };

    let mut shown: BTreeMap<Option<String>, usize> = BTreeMap::new();
    let mut chosen = Vec::new();
    for rec in &features {
        let n = shown.entry(rec.class.clone()).or_default();
        if *n < per_class {
            *n += 1;
            chosen.push(rec);
        }
    }
    let panels: Vec<CellPanel> =
        futures::stream::iter(chosen.iter().map(|rec| panel(output, dataset.as_ref(), run, rec)))
            .buffered(4)
            .try_collect()
            .await?;
    Ok(RunPage {
        cells_in_dataset: dataset.as_ref().map(|d| d.index.cells.len()),
        done: features.len(),
        cells_not_drawn: features.len() - panels.len(),
        manifest,
        failures,
        jobs,
        panels,
    })
}

async fn panel(
    output: &Store,
    dataset: Option<&Dataset>,
    run: &RunId,
    rec: &CellFeatures,
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
    let (class, metrics) = (rec.class.clone(), rec.mean_metrics.clone().unwrap_or_default());
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
        Ok(CellPanel { cell, class, inputs_png, samples_png, truth_png, metrics })
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
    /// The reference study's protocol: 1000 trees of depth 10, stratified 5-fold, 6 classes.
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

/// The report of a run, from its records in `output`: the classifier (report.json, CSV tables,
/// features.csv, plots) and report.html, all under `runs/<run>/report/`. A run with too few
/// labelled cells to cross-validate still gets its page, which says why it has no classification.
pub async fn write_run_report(
    output: &Store,
    run: &RunId,
    options: &ReportOptions,
) -> anyhow::Result<Written> {
    let records = read_all(output, &keys::features_prefix(run), CellFeatures::decode).await?;
    let source = format!("run {run} features in {}", output.uri());
    write_report(output, run, records, source, options, true).await
}

/// The report of `records` (which came from `source`) under `runs/<run>/report/`; with `page`,
/// report.html too (the run must then have a manifest in `output`).
pub async fn write_report(
    output: &Store,
    run: &RunId,
    records: Vec<CellFeatures>,
    source: String,
    options: &ReportOptions,
    page: bool,
) -> anyhow::Result<Written> {
    let table = FeatureTable::from_records(&records);
    let run_name = run.to_string();
    let (level, cv) = (options.level, options.cv);
    // The forests are compute: a blocking thread, with rayon spreading the trees over the cores.
    let (report, files, warnings) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        match crate::report::build(&run_name, &source, &table, level, cv) {
            Ok(report) => {
                let (files, warnings) = crate::report::files(&report, &table)?;
                Ok((Ok(report), files, warnings))
            }
            // Too few cells is not an error of the run: the page says so instead.
            Err(why) => {
                Ok((Err(why.to_string()), vec![("features.csv".to_string(), table.to_csv()?)], Vec::new()))
            }
        }
    })
    .await??;
    let summary = match &report {
        Ok(r) => crate::report::summary(r),
        Err(why) => format!("no classification: {why}\n"),
    };
    let (mut all, mut warnings) = (files, warnings);
    if page {
        // The classification stands without the page: a run whose manifest or outputs cannot be
        // read still gets its tables, with a warning saying why the page is missing.
        match collect(output, run, options.cells_per_class).await {
            Ok(page) => {
                let plots: BTreeMap<String, Vec<u8>> =
                    all.iter().filter(|(n, _)| n.ends_with(".png")).cloned().collect();
                let html =
                    render(&page, report.as_ref().ok(), &plots, report.as_ref().err().map(String::as_str));
                all.push(("report.html".to_string(), html.into_bytes()));
            }
            Err(e) => warnings.push(format!("report.html not written: {e:#}")),
        }
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
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}img{image-rendering:pixelated;vertical-align:middle;margin:2px}\
details{margin:.3em 0}summary{cursor:pointer;font-weight:600}.muted{color:#777}.bad{color:#b00}";

/// The page: `report` and its plots (`report::files` output, by name) are the classification
/// part, absent when too few cells were labelled to cross-validate (`why_no_report` says why).
pub fn render(
    page: &RunPage,
    report: Option<&Report>,
    plots: &BTreeMap<String, Vec<u8>>,
    why_no_report: Option<&str>,
) -> String {
    let m = &page.manifest;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>DISPR run {run}</title>\
         <style>{STYLE}</style></head><body><h1>DISPR run <code>{run}</code></h1>",
        run = esc(m.run_id.as_str())
    );

    // Summary.
    let model = m
        .model
        .as_ref()
        .map(|r| format!("{} <span class=\"muted\">sha256 {}</span>", esc(&r.uri), esc(&r.sha256)));
    let rows: Vec<(&str, String)> = vec![
        ("dataset", esc(&m.dataset_uri)),
        ("output", esc(&m.output_uri)),
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
    h.push_str("<h2>Run summary</h2><table>");
    for (k, v) in rows {
        let _ = write!(h, "<tr><th class=\"l\">{k}</th><td class=\"l\">{v}</td></tr>");
    }
    h.push_str("</table>");
    if !page.failures.is_empty() {
        h.push_str("<h3 class=\"bad\">Failed cells</h3><table><tr><th class=\"l\">cell</th><th class=\"l\">reason</th><th class=\"l\">worker</th></tr>");
        for f in &page.failures {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(f.cell.as_str()),
                esc(&f.reason),
                esc(&f.worker)
            );
        }
        h.push_str("</table>");
    }

    // Timeline.
    h.push_str("<h2>Timeline</h2>");
    match timeline::timeline_png(&page.jobs) {
        Ok(Some(png)) => h.push_str(&img(&png, "timeline: jobs per worker over time")),
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

    // Cells.
    let _ = write!(
        h,
        "<h2>Cells</h2><p class=\"muted\">Per cell: input image and mask; then the maximum projections along z, y \
         and x of each predicted sample; and of the ground truth where the dataset has it.{}</p>",
        if page.cells_not_drawn > 0 {
            format!(" {} more cells are not drawn.", page.cells_not_drawn)
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
        h.push_str("<table><tr><th class=\"l\">cell</th><th>IoU</th><th>volume error</th><th class=\"l\">inputs</th><th class=\"l\">samples (z, y, x)</th><th class=\"l\">ground truth</th></tr>");
        for p in panels {
            let metric = |name: &str| p.metrics.get(name).map_or("-".into(), |v| format!("{v:.3}"));
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(p.cell.as_str()),
                metric("iou"),
                metric("volume_error"),
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
        h.push_str("</table></details>");
    }
    h.push_str("</body></html>\n");
    h
}

fn render_classification(h: &mut String, r: &Report, plots: &BTreeMap<String, Vec<u8>>) {
    let _ = write!(
        h,
        "<p>{} labelled cells in {} classes; random forest of {} trees (depth {}), {}-fold stratified \
         cross-validation, seed {}. Class imbalance: {}.</p>",
        r.cells.len(),
        r.classes.len(),
        r.cv.forest.trees,
        r.cv.forest.max_depth,
        r.cv.folds,
        r.cv.forest.seed,
        esc(&r.imbalance)
    );
    h.push_str("<table><tr><th class=\"l\">features</th><th>columns</th><th>macro F1</th><th>accuracy</th><th>reference study macro F1</th></tr>");
    for s in &r.feature_sets {
        let reference = r
            .reference_macro_f1
            .iter()
            .find(|(k, _)| *k == s.name)
            .map_or("-".into(), |(_, v)| format!("{v:.3}"));
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            esc(&s.name),
            s.features.len(),
            s.metrics.macro_f1,
            s.metrics.accuracy,
            reference
        );
    }
    h.push_str("</table><h3>F1 per class</h3><table><tr><th class=\"l\">class</th><th>cells</th>");
    for s in &r.feature_sets {
        let _ = write!(
            h,
            "<th>{} F1</th><th>{} precision</th><th>{} recall</th>",
            esc(&s.name),
            esc(&s.name),
            esc(&s.name)
        );
    }
    h.push_str("</tr>");
    for (k, c) in r.classes.iter().enumerate() {
        let _ = write!(h, "<tr><td class=\"l\">{}</td><td>{}</td>", esc(&c.class), c.cells);
        for s in &r.feature_sets {
            let m = &s.metrics.per_class[k];
            let _ =
                write!(h, "<td><b>{:.3}</b></td><td>{:.3}</td><td>{:.3}</td>", m.f1, m.precision, m.recall);
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    if let Some(png) = plots.get("f1_per_class.png") {
        h.push_str(&img(png, "per-class F1 of the three feature sets"));
    }
    h.push_str("<h3>Confusion matrices</h3>");
    for s in &r.feature_sets {
        if let Some(png) = plots.get(&format!("confusion_{}.png", file_tag(&s.name))) {
            h.push_str(&img(png, &format!("{} confusion matrix", s.name)));
        }
    }
}
