//! report.html from a [`RunPage`] and the run's [`Results`]: the values the page shows, gathered
//! here, and `templates/report.html`, an askama template (checked when the crate compiles, every
//! value HTML-escaped unless marked safe) that lays them out.

use super::{CellPanel, RunPage, timeline, uncertainty};
use crate::report::reconstruction::CellReconstruction;
use crate::report::uncertainty::{self as analysis, UncertaintySection};
use crate::report::{Reconstruction, Report, Results, Tables, Unclassified, file_tag};
use askama::Template;
use base64::Engine as _;
use dispr_proto::records::Manifest;
use std::collections::BTreeMap;

/// Unclassified cells listed on the page (report.json and unclassified.csv have them all).
const UNCLASSIFIED_SHOWN: usize = 200;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}\
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0 1.5em}.scroll>table{margin:0}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
td{white-space:nowrap}td.l{white-space:normal}\
th{background:#f3f3f3}td.l,th.l{text-align:left}img{image-rendering:pixelated;vertical-align:middle;margin:2px}\
img.plot{image-rendering:auto;max-width:100%;height:auto}tr.ceiling td{background:#f6f6f6;font-style:italic}\
p.answer{font-size:1.1em;font-weight:600;border-left:4px solid #009e73;padding-left:.6em}\
details{margin:.3em 0}summary{cursor:pointer;font-weight:600}.muted{color:#777}.bad{color:#b00}.good{color:#070}\
code{overflow-wrap:anywhere}div.truth{border-top:2px solid #009e73;margin-top:.3em;padding-top:.2em}";

/// The page, as the template reads it.
#[derive(Template)]
#[template(path = "report.html")]
struct ReportHtml<'a> {
    style: &'static str,
    m: &'a Manifest,
    page: &'a RunPage,
    /// The run summary's plain rows after dataset, output, model and sampler.
    facts: Vec<(&'static str, String)>,
    timeline: Option<Picture>,
    timeline_error: Option<String>,
    classification: Option<Classification<'a>>,
    why_not_classified: &'a str,
    unclassified: &'a [Unclassified],
    /// The first [`UNCLASSIFIED_SHOWN`] of them.
    unclassified_listed: &'a [Unclassified],
    reconstruction: Option<&'a Reconstruction>,
    /// The uncertainty section (`templates/uncertainty.html`).
    uncertainty: Option<UncertaintyView<'a>>,
    /// Whether the cells drawn were chosen by IoU (best, median, worst).
    ranked_by_iou: bool,
    /// The drawn cells by class.
    classes: Vec<(String, Vec<PanelRow>)>,
}

/// The classification section.
struct Classification<'a> {
    report: &'a Report,
    tables: Tables,
    f1_plot: Option<Picture>,
    confusion: Vec<Picture>,
}

/// The uncertainty section.
struct UncertaintyView<'a> {
    u: &'a UncertaintySection,
    /// Per scalar: its name, cells and Spearman with 1 - IoU (signed, or `-`).
    correlations: Vec<(String, usize, String)>,
    /// Whether the headline ranks the errors, where its correlation could be computed.
    verdict: Option<String>,
    /// The scatter and selective-prediction plots that could be drawn.
    plots: Vec<Picture>,
    panels: Vec<UncertaintyRow>,
}

/// A pictured cell of the uncertainty section.
struct UncertaintyRow {
    cell: String,
    class: String,
    which: String,
    disagreement: String,
    iou: String,
    inputs: Option<Picture>,
    probability: Picture,
    std: Picture,
    truth: Option<Picture>,
}

/// A cell's row in the cells section.
struct PanelRow {
    cell: String,
    rank: String,
    model_iou: String,
    floor_iou: String,
    model_volume_error: String,
    inputs: Option<Picture>,
    /// `None` where the sample's volume is not found.
    samples: Vec<Option<Picture>>,
    truth: Option<Picture>,
}

/// An embedded PNG.
struct Picture {
    alt: String,
    /// The PNG in base64.
    data: String,
}

impl Picture {
    fn new(png: &[u8], alt: impl Into<String>) -> Self {
        Self { alt: alt.into(), data: base64::engine::general_purpose::STANDARD.encode(png) }
    }
}

/// The page: the classification part renders `results` (with its plots, `report::files`
/// output by name), or says why there is none.
pub fn render(page: &RunPage, results: &Results, plots: &BTreeMap<String, Vec<u8>>) -> String {
    let report = results.report();
    let (timeline, timeline_error) = match timeline::timeline_png(&page.jobs) {
        Ok(png) => (png.map(|png| Picture::new(&png, "timeline: jobs per worker over time")), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let unclassified = results.unclassified();
    let html = ReportHtml {
        style: STYLE,
        m: &page.manifest,
        page,
        facts: facts(page),
        timeline,
        timeline_error,
        classification: report.map(|r| classification(r, plots)),
        why_not_classified: results.why_not_classified().unwrap_or("not computed"),
        unclassified,
        unclassified_listed: &unclassified[..unclassified.len().min(UNCLASSIFIED_SHOWN)],
        reconstruction: report.and_then(|r| r.reconstruction.as_ref()),
        uncertainty: results
            .uncertainty
            .as_ref()
            .map(|a| uncertainty_view(&a.section, &page.uncertainty_panels, plots)),
        ranked_by_iou: page.panels.iter().any(|p| p.scores.is_some()),
        classes: panels_by_class(&page.panels),
    };
    // Rendering into a String fails only if a value's Display does, which none here does.
    let mut out = html.render().expect("report.html renders");
    out.push('\n');
    out
}

/// The run summary's rows after dataset, output, model and sampler.
fn facts(page: &RunPage) -> Vec<(&'static str, String)> {
    let m = &page.manifest;
    vec![
        ("samples per cell", m.samples_per_cell.to_string()),
        ("seed", m.seed.to_string()),
        ("code version", m.code_version.clone()),
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
    ]
}

fn classification<'a>(report: &'a Report, plots: &BTreeMap<String, Vec<u8>>) -> Classification<'a> {
    let f1_plot =
        plots.get("f1_per_class.png").map(|png| Picture::new(png, "per-class F1 of the feature sets"));
    let confusion = (report.feature_sets.iter())
        .filter_map(|s| {
            let png = plots.get(&format!("confusion_{}.png", file_tag(&s.name)))?;
            Some(Picture::new(png, format!("{} confusion matrix", s.name)))
        })
        .collect();
    Classification { report, tables: report.tables(), f1_plot, confusion }
}

fn uncertainty_view<'a>(
    u: &'a UncertaintySection,
    panels: &[uncertainty::Panel],
    plots: &BTreeMap<String, Vec<u8>>,
) -> UncertaintyView<'a> {
    let signed = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:+.3}"));
    let verdict = u.headline_spearman().and_then(|c| c.spearman).map(|rho| {
        if rho >= 0.3 {
            format!("The headline uncertainty ranks the cells' errors (Spearman {rho:+.3}).")
        } else {
            format!(
                "The headline uncertainty predicts the error poorly here (Spearman {rho:+.3}, below 0.3): do \
                 not rely on it to choose cells."
            )
        }
    });
    let plots = [
        (analysis::SCATTER_PNG, "uncertainty against the error per cell"),
        (analysis::SELECTIVE_PNG, "mean IoU of the most certain cells"),
    ]
    .into_iter()
    .filter_map(|(name, alt)| plots.get(name).map(|png| Picture::new(png, alt)))
    .collect();
    let panels = (panels.iter())
        .map(|p| {
            let c = &p.pictured;
            UncertaintyRow {
                cell: c.cell.clone(),
                class: c.class.clone(),
                which: c.which.clone(),
                disagreement: format!("{:.3}", c.disagreement),
                iou: p.iou.map_or("-".into(), |v| format!("{v:.3}")),
                inputs: p.inputs_png.as_ref().map(|png| Picture::new(png, format!("{} inputs", c.cell))),
                probability: Picture::new(&p.probability_png, format!("{} probability", c.cell)),
                std: Picture::new(&p.std_png, format!("{} standard deviation", c.cell)),
                truth: p.truth_png.as_ref().map(|png| Picture::new(png, format!("{} ground truth", c.cell))),
            }
        })
        .collect();
    UncertaintyView {
        u,
        correlations: u
            .correlations
            .iter()
            .map(|c| (c.scalar.clone(), c.cells, signed(c.spearman)))
            .collect(),
        verdict,
        plots,
        panels,
    }
}

fn panels_by_class(panels: &[CellPanel]) -> Vec<(String, Vec<PanelRow>)> {
    let mut by_class: BTreeMap<String, Vec<PanelRow>> = BTreeMap::new();
    for p in panels {
        let score = |f: fn(&CellReconstruction) -> f64| {
            p.scores.as_ref().map_or("-".into(), |s| format!("{:.3}", f(s)))
        };
        let row = PanelRow {
            cell: p.cell.to_string(),
            rank: p.rank.clone(),
            model_iou: score(|s| s.model_iou),
            floor_iou: score(|s| s.floor_iou),
            model_volume_error: score(|s| s.model_volume_error),
            inputs: p.inputs_png.as_ref().map(|png| Picture::new(png, format!("{} inputs", p.cell))),
            samples: (p.samples_png.iter().enumerate())
                .map(|(k, png)| png.as_ref().map(|png| Picture::new(png, format!("{} sample {k}", p.cell))))
                .collect(),
            truth: p.truth_png.as_ref().map(|png| Picture::new(png, format!("{} ground truth", p.cell))),
        };
        by_class.entry(p.class.clone().unwrap_or_else(|| "unlabelled".into())).or_default().push(row);
    }
    by_class.into_iter().collect()
}
