//! The run's ensemble uncertainty: which cells' shapes the model is unsure of, and whether that
//! is worth anything. From each done cell's features record (the scalars the worker measured on
//! its K samples, `dispr_shape::uncertainty`), and where the dataset has ground truth its IoU:
//!
//! - one row per done cell, most uncertain first (`uncertainty.csv`): the list an experimenter
//!   works down when choosing cells for real 3D imaging;
//! - is the uncertainty honest: the Spearman correlation of each scalar with the cell's error
//!   (1 - IoU), and the selective-prediction curve (mean IoU of the most certain x% of cells);
//! - are the uncertain cells the misclassified ones: the classifier's error rate in the most and
//!   the least uncertain quartiles;
//! - which cells to picture: the most and least certain of each class.
//!
//! Cells sampled once have no uncertainty: they are rows with empty scalars ("unknown"), listed
//! after all the others and left out of every figure, never counted as certain.
//!
//! Pure computation on plain values (cheap: sorting and ranking), so the report can run it on its
//! blocking thread beside the classifier.

use super::plots::{render, text};
use super::reconstruction::Reconstruction;
use super::run_cells::{CellSummary, RunCells, Scalars};
use super::{Report, SET_2D, SET_2D_PREDICTED, SET_PREDICTED};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The headline uncertainty, as the report names it.
pub const HEADLINE: &str = "disagreement";
/// Its definition, as the report states it.
pub const HEADLINE_DEFINITION: &str = "1 - mean pairwise IoU of the cell's binarised samples: the share of their shape on which \
     two samples disagree (0 when all agree)";

/// A scalar of a cell's uncertainty record: its name and how to read it.
pub type Scalar = (&'static str, fn(&Scalars) -> Option<f64>);

/// The scalars compared with the error, each oriented so that more means less sure: name and
/// value (`None` where the record lacks it).
pub const SCALARS: [Scalar; 5] = [
    (HEADLINE, |u| Some(u.disagreement())),
    ("uncertain_fraction", |u| Some(u.uncertain_fraction)),
    ("mean_entropy", |u| Some(u.mean_entropy)),
    ("volume_cv", |u| u.volume_cv),
    ("mean_feature_cv", |u| u.mean_feature_cv),
];

/// The selective-prediction curve's coverages, in percent.
pub const COVERAGES: [u32; 10] = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];

/// One done cell: a row of the run's cells (its id, class and samples are there, see
/// [`Analysis::cell`]) with what the analysis adds. No strings: a million of them are sorted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellUncertainty {
    /// The cell's row in the run's cells (and in their coefficients of variation).
    pub row: usize,
    /// `None`: unknown (one sample, or a record of an earlier release).
    pub uncertainty: Option<Scalars>,
    /// The model's mean IoU over the samples against the truth (`obj > 0`), where it exists.
    pub iou: Option<f64>,
    /// The classifier's out-of-fold prediction for the cell (see [`QuartileErrors::feature_set`]),
    /// and the label it is compared with: indices into the report's classes
    /// ([`Analysis::labels`]).
    pub predicted: Option<u32>,
    pub truth: Option<u32>,
}

impl CellUncertainty {
    /// The headline uncertainty; `None` when unknown.
    pub fn headline(&self) -> Option<f64> {
        self.uncertainty.as_ref().map(Scalars::disagreement)
    }
}

/// Spearman's rank correlation of one scalar with the error 1 - IoU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    pub scalar: String,
    /// Cells with both the scalar and an IoU.
    pub cells: usize,
    /// `None` with fewer than 3 such cells, or when either side does not vary.
    pub spearman: Option<f64>,
}

/// A point of the selective-prediction curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectivePoint {
    /// Share of the cells kept, the most certain first, in percent.
    pub coverage: u32,
    pub cells: usize,
    pub mean_iou: f64,
}

/// The classifier's errors among some cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRate {
    pub cells: usize,
    pub misclassified: usize,
    pub rate: f64,
}

/// Whether the uncertain cells are the misclassified ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuartileErrors {
    /// The feature set whose predictions are compared (the first cross-validation repetition's).
    pub feature_set: String,
    pub most_uncertain: ErrorRate,
    pub least_uncertain: ErrorRate,
    pub all: ErrorRate,
}

/// A cell drawn in the report: the most or least certain of its class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pictured {
    pub cell: String,
    pub class: String,
    /// "most certain" or "least certain" ("only cell" for a class of one).
    pub which: String,
    pub disagreement: f64,
}

/// The uncertainty section of `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UncertaintySection {
    pub headline: String,
    pub headline_definition: String,
    /// Done cells, and those of them whose uncertainty is unknown (sampled once).
    pub cells: usize,
    pub unknown: usize,
    /// Mean of the headline over the cells that have it.
    pub mean_disagreement: Option<f64>,
    /// Per scalar, against the error; empty without ground truth.
    pub correlations: Vec<Correlation>,
    /// Empty without ground truth.
    pub selective: Vec<SelectivePoint>,
    /// `None` without a classification.
    pub quartiles: Option<QuartileErrors>,
    pub pictured: Vec<Pictured>,
}

impl UncertaintySection {
    /// The headline's correlation with the error, where it could be computed.
    pub fn headline_spearman(&self) -> Option<&Correlation> {
        self.correlations.iter().find(|c| c.scalar == HEADLINE)
    }
}

/// The section and the rows it was computed from (most uncertain first).
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub section: UncertaintySection,
    pub rows: Vec<CellUncertainty>,
    /// The run's cells the rows point into ([`CellUncertainty::row`]): ids, classes, samples,
    /// and per cell the coefficient of variation of each feature.
    pub cells: RunCells,
    /// The report's classes, which [`CellUncertainty::predicted`] and `truth` index; empty
    /// without a classification.
    pub labels: Vec<String>,
}

impl Analysis {
    /// The cell of `row`.
    pub fn cell(&self, row: &CellUncertainty) -> CellSummary<'_> {
        self.cells.cell(row.row)
    }

    /// The class name of a label index of a row.
    fn label(&self, index: Option<u32>) -> Option<&str> {
        index.and_then(|i| self.labels.get(i as usize)).map(String::as_str)
    }
}

/// The feature set whose predictions say whether a cell was misclassified: the one with the
/// predicted shapes (2D + predicted 3D), else predicted 3D, else 2D.
fn classifier_set(report: &Report) -> Option<&super::FeatureSetResult> {
    [SET_2D_PREDICTED, SET_PREDICTED, SET_2D].into_iter().find_map(|name| report.set(name))
}

/// The rows of a run's done cells, most uncertain first; cells whose uncertainty is unknown last,
/// by id. `reconstruction` gives the IoU where there is ground truth, `report` the classifier's
/// predictions where there is a classification (as indices into its classes).
pub fn rows(
    cells: &RunCells,
    reconstruction: Option<&Reconstruction>,
    report: Option<&Report>,
) -> Vec<CellUncertainty> {
    let mut rows: Vec<CellUncertainty> = cells
        .cells()
        .map(|c| CellUncertainty {
            row: c.row,
            uncertainty: c.uncertainty,
            iou: reconstruction.and_then(|rec| rec.cell(c.id)).map(|s| s.model_iou),
            predicted: None,
            truth: None,
        })
        .collect();
    if let Some((r, set)) = report.and_then(|r| Some((r, classifier_set(r)?))) {
        let index =
            |name: &str| r.classes.iter().position(|c| c.class == name).and_then(|i| u32::try_from(i).ok());
        for ((cell, truth), predicted) in r.cells.iter().zip(&r.truth).zip(&set.predictions) {
            if let Ok(row) = cells.table.cells.binary_search(cell) {
                rows[row].truth = index(truth);
                rows[row].predicted = index(predicted);
            }
        }
    }
    // Rows are in id order, so the row breaks ties as the id would; no two rows are equal, so
    // an unstable sort (which needs no buffer beside a million rows) gives the one order.
    rows.sort_unstable_by(|a, b| match (a.headline(), b.headline()) {
        (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| a.row.cmp(&b.row)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.row.cmp(&b.row),
    });
    rows
}

/// Spearman's rank correlation of `x` and `y` (pairs): Pearson's correlation of their ranks,
/// ties sharing the mean of their ranks (as scipy.stats.spearmanr). `None` for fewer than 3 pairs
/// or when either side is constant. (A dozen lines: not worth a statistics dependency.)
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let rx = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let ry = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Ranks 1..n of `v`, ties getting the mean of the ranks they span.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Mean IoU of the most certain `coverage`% of `scored` (sorted most certain first), rounding
/// the count up so that 10% of 25 cells is 3.
fn selective(scored: &[(f64, f64)]) -> Vec<SelectivePoint> {
    if scored.is_empty() {
        return Vec::new();
    }
    COVERAGES
        .iter()
        .map(|&coverage| {
            let cells = (scored.len() * coverage as usize).div_ceil(100).max(1);
            let mean_iou = scored[..cells].iter().map(|s| s.1).sum::<f64>() / cells as f64;
            SelectivePoint { coverage, cells, mean_iou }
        })
        .collect()
}

fn error_rate<'a>(rows: impl Iterator<Item = &'a CellUncertainty>) -> ErrorRate {
    let (mut cells, mut misclassified) = (0, 0);
    for r in rows {
        if let (Some(p), Some(t)) = (&r.predicted, &r.truth) {
            cells += 1;
            misclassified += usize::from(p != t);
        }
    }
    ErrorRate {
        cells,
        misclassified,
        rate: if cells > 0 { misclassified as f64 / cells as f64 } else { 0.0 },
    }
}

/// The most and least certain known cell of each class (by the headline), in class order.
/// `rows` point into `cells`.
pub fn pictured(rows: &[CellUncertainty], cells: &RunCells) -> Vec<Pictured> {
    // `rows` is sorted most uncertain first: per class, the first known row is the least
    // certain, the last the most certain. Per class: those two and how many there are.
    type Ends<'a> = ((&'a CellUncertainty, f64), (&'a CellUncertainty, f64), usize);
    let mut by_class: BTreeMap<&str, Ends<'_>> = BTreeMap::new();
    for r in rows {
        if let Some(h) = r.headline() {
            let class = cells.table.class.get(r.row).unwrap_or("unlabelled");
            by_class
                .entry(class)
                .and_modify(|(_, last, n)| {
                    *last = (r, h);
                    *n += 1;
                })
                .or_insert(((r, h), (r, h), 1));
        }
    }
    let mut out = Vec::new();
    for (class, (least, most, n)) in by_class {
        let pick = |(r, h): (&CellUncertainty, f64), which: &str| Pictured {
            cell: cells.table.cells[r.row].to_string(),
            class: class.to_string(),
            which: which.to_string(),
            disagreement: h,
        };
        if n == 1 {
            out.push(pick(least, "only cell"));
        } else {
            out.push(pick(most, "most certain"));
            out.push(pick(least, "least certain"));
        }
    }
    out
}

/// The analysis of the run's cells (see [`rows`] for the other inputs).
pub fn analyse(
    cells: RunCells,
    reconstruction: Option<&Reconstruction>,
    report: Option<&Report>,
) -> Analysis {
    let rows = rows(&cells, reconstruction, report);
    let known: Vec<&CellUncertainty> = rows.iter().filter(|r| r.uncertainty.is_some()).collect();
    let correlations = if known.iter().any(|r| r.iou.is_some()) {
        SCALARS
            .iter()
            .map(|(name, get)| {
                let pairs: Vec<(f64, f64)> = known
                    .iter()
                    .filter_map(|r| Some((get(r.uncertainty.as_ref()?)?, 1.0 - r.iou?)))
                    .collect();
                Correlation { scalar: name.to_string(), cells: pairs.len(), spearman: spearman(&pairs) }
            })
            .collect()
    } else {
        Vec::new()
    };
    // Most certain first for the curve: the rows are most uncertain first.
    let scored: Vec<(f64, f64)> = known.iter().rev().filter_map(|r| Some((r.headline()?, r.iou?))).collect();
    let quartiles = report.and_then(classifier_set).and_then(|set| {
        let classified: Vec<&CellUncertainty> =
            known.iter().copied().filter(|r| r.predicted.is_some() && r.truth.is_some()).collect();
        if classified.len() < 4 {
            return None;
        }
        let q = (classified.len() as f64 / 4.0).round().max(1.0) as usize;
        Some(QuartileErrors {
            feature_set: set.name.clone(),
            most_uncertain: error_rate(classified[..q].iter().copied()),
            least_uncertain: error_rate(classified[classified.len() - q..].iter().copied()),
            all: error_rate(classified.iter().copied()),
        })
    });
    let headlines: Vec<f64> = known.iter().filter_map(|r| r.headline()).collect();
    let section = UncertaintySection {
        headline: HEADLINE.into(),
        headline_definition: HEADLINE_DEFINITION.into(),
        cells: rows.len(),
        unknown: rows.len() - known.len(),
        mean_disagreement: (!headlines.is_empty())
            .then(|| headlines.iter().sum::<f64>() / headlines.len() as f64),
        correlations,
        selective: selective(&scored),
        quartiles,
        pictured: pictured(&rows, &cells),
    };
    let labels = report.map(|r| r.classes.iter().map(|c| c.class.clone()).collect()).unwrap_or_default();
    Analysis { section, rows, cells, labels }
}

/// Lines for the text summary.
pub fn summary(u: &UncertaintySection) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\nUncertainty of the samples ({} done cells)", u.cells);
    let Some(mean) = u.mean_disagreement else {
        let _ = writeln!(
            s,
            "unknown for every cell: each was sampled once (run with --samples 2 or more to measure it)"
        );
        return s;
    };
    let _ = writeln!(s, "headline: {} = {}; mean {:.3}", u.headline, u.headline_definition, mean);
    if u.unknown > 0 {
        let _ = writeln!(
            s,
            "{} cell(s) sampled once: uncertainty unknown (listed last in uncertainty.csv)",
            u.unknown
        );
    }
    if !u.correlations.is_empty() {
        let _ = writeln!(s, "Spearman correlation with the error (1 - IoU):");
        for c in &u.correlations {
            let _ = writeln!(s, "  {:<20} {:>7} ({} cells)", c.scalar, show(c.spearman), c.cells);
        }
        let curve: Vec<String> =
            u.selective.iter().map(|p| format!("{}% {:.3}", p.coverage, p.mean_iou)).collect();
        let _ = writeln!(s, "mean IoU of the most certain cells: {}", curve.join(", "));
    }
    if let Some(q) = &u.quartiles {
        let _ = writeln!(
            s,
            "classifier ({}) error rate: most uncertain quarter {:.3} ({}/{}), least uncertain quarter {:.3} ({}/{}), all {:.3}",
            q.feature_set,
            q.most_uncertain.rate,
            q.most_uncertain.misclassified,
            q.most_uncertain.cells,
            q.least_uncertain.rate,
            q.least_uncertain.misclassified,
            q.least_uncertain.cells,
            q.all.rate
        );
    }
    s
}

fn show(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:+.3}"))
}

/// `uncertainty.csv`: one row per done cell, most uncertain first; empty fields where a value is
/// unknown (the uncertainty of a cell sampled once, the IoU without ground truth). The per-feature
/// coefficients of variation follow as `cv_<feature>` columns.
pub fn csv(a: &Analysis) -> anyhow::Result<Vec<u8>> {
    write_csv(a, Vec::new())
}

/// [`csv`] into `out`, row by row.
pub fn write_csv<W: std::io::Write>(a: &Analysis, out: W) -> anyhow::Result<W> {
    let (rows, cv) = (&a.rows, &a.cells.cv);
    // The features any cell has a coefficient for, by name (the cv table's columns are sorted).
    let cv_names: Vec<(usize, &String)> = (cv.columns.iter().enumerate())
        .filter(|(c, _)| rows.iter().any(|r| r.uncertainty.is_some() && cv.value(r.row, *c).is_some()))
        .collect();
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<String> = ["rank", "cell", "class", "samples"].map(String::from).to_vec();
    header.extend(SCALARS.iter().map(|(n, _)| n.to_string()));
    header
        .extend(["mean_pairwise_iou", "iou", "error", "predicted_class", "misclassified"].map(String::from));
    header.extend(cv_names.iter().map(|(_, n)| format!("cv_{n}")));
    w.write_record(&header)?;
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for (i, r) in rows.iter().enumerate() {
        let u = r.uncertainty.as_ref();
        let cell = a.cell(r);
        let mut rec = vec![
            // Unknown cells have no rank: they are not "the least uncertain".
            if u.is_some() { (i + 1).to_string() } else { String::new() },
            cell.id.to_string(),
            cell.class.unwrap_or_default().to_string(),
            cell.samples.to_string(),
        ];
        rec.extend(SCALARS.iter().map(|(_, get)| opt(u.and_then(get))));
        rec.push(opt(u.map(|u| u.mean_pairwise_iou)));
        rec.push(opt(r.iou));
        rec.push(opt(r.iou.map(|v| 1.0 - v)));
        rec.push(a.label(r.predicted).unwrap_or_default().to_string());
        rec.push(match (a.label(r.predicted), a.label(r.truth)) {
            (Some(p), Some(t)) => (p != t).to_string(),
            _ => String::new(),
        });
        rec.extend(cv_names.iter().map(|(c, _)| opt(u.and(cv.value(r.row, *c)))));
        w.write_record(&rec)?;
    }
    Ok(w.into_inner().map_err(|e| e.into_error())?)
}

/// The plots of the analysis, where there is ground truth: the scatter plot and the
/// selective-prediction curve (`uncertainty.csv`, a row per cell, is written by [`write_csv`]). A plot that cannot be drawn is left out with a warning.
pub fn files(a: &Analysis) -> anyhow::Result<super::ReportFiles> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut plot = |name: &str, png: anyhow::Result<Option<Vec<u8>>>| match png {
        Ok(Some(png)) => out.push((name.to_string(), png)),
        Ok(None) => {}
        Err(e) => warnings.push(format!("{name} not drawn: {e}")),
    };
    plot(SCATTER_PNG, scatter_png(a));
    plot(SELECTIVE_PNG, selective_png(&a.section));
    Ok((out, warnings))
}

pub const SCATTER_PNG: &str = "uncertainty_vs_error.png";
pub const SELECTIVE_PNG: &str = "uncertainty_selective.png";

/// Colours of the classes in the scatter plot (Okabe-Ito), in class order.
const CLASS_COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Axes of a plot: a frame of `(left, top, width, height)` with 5 ticks on each axis, labelled
/// with `x.3` and `y.3` decimals.
fn axes(
    root: &Area<'_>,
    frame: (i32, i32, i32, i32),
    x: (f64, f64, &str, usize),
    y: (f64, f64, &str, usize),
) -> anyhow::Result<()> {
    let (left, top, w, h) = frame;
    let err = |e: plotters::drawing::DrawingAreaErrorKind<_>| anyhow::anyhow!("{e}");
    root.draw(&Rectangle::new([(left, top), (left + w, top + h)], BLACK.stroke_width(1))).map_err(err)?;
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let (px, py) = (left + (f * f64::from(w)) as i32, top + h - (f * f64::from(h)) as i32);
        root.draw(&PathElement::new(vec![(left, py), (left + w, py)], RGBColor(230, 230, 230)))
            .map_err(err)?;
        let (xv, yv) = (x.0 + f * (x.1 - x.0), y.0 + f * (y.1 - y.0));
        text(root, &format!("{xv:.*}", x.3), (px, top + h + 6), 12, Pos::new(HPos::Center, VPos::Top))?;
        text(root, &format!("{yv:.*}", y.3), (left - 6, py), 12, Pos::new(HPos::Right, VPos::Center))?;
    }
    text(root, x.2, (left + w / 2, top + h + 28), 14, Pos::new(HPos::Center, VPos::Top))?;
    text(root, y.2, (left, top - 12), 14, Pos::new(HPos::Left, VPos::Bottom))?;
    Ok(())
}

/// A range around `values` with a little margin (a unit range around a single value).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5f64.max(lo.abs() * 0.1) };
    (lo - pad, hi + pad)
}

/// The headline uncertainty against the error, one dot per cell coloured by class; `None`
/// without cells that have both.
pub fn scatter_png(a: &Analysis) -> anyhow::Result<Option<Vec<u8>>> {
    let points: Vec<(&CellUncertainty, f64, f64)> =
        a.rows.iter().filter_map(|r| Some((r, r.headline()?, 1.0 - r.iou?))).collect();
    if points.is_empty() {
        return Ok(None);
    }
    let classes: Vec<String> = points
        .iter()
        .map(|p| a.cell(p.0).class.unwrap_or("unlabelled").to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (x0, x1) = range(points.iter().map(|p| p.1));
    let (y0, y1) = range(points.iter().map(|p| p.2));
    let (left, top, w, h) = (80, 70, 560, 400);
    let size = (left as u32 + w as u32 + 220, top as u32 + h as u32 + 70);
    let rho = a.section.headline_spearman().and_then(|c| c.spearman);
    let png = render(size, |root| {
        let title = format!(
            "Is the uncertainty honest? {} vs error, {} cells, Spearman {}",
            HEADLINE,
            points.len(),
            show(rho)
        );
        text(root, &title, (size.0 as i32 / 2, 20), 17, Pos::new(HPos::Center, VPos::Center))?;
        axes(
            root,
            (left, top, w, h),
            (x0, x1, "disagreement = 1 - mean pairwise IoU of the samples", 3),
            (y0, y1, "error = 1 - IoU against the truth", 3),
        )?;
        let err = |e: plotters::drawing::DrawingAreaErrorKind<_>| anyhow::anyhow!("{e}");
        for (r, x, y) in &points {
            let class = a.cell(r).class.unwrap_or("unlabelled").to_string();
            let c = classes.iter().position(|k| *k == class).unwrap_or(0);
            let px = left + ((x - x0) / (x1 - x0) * f64::from(w)) as i32;
            let py = top + h - ((y - y0) / (y1 - y0) * f64::from(h)) as i32;
            root.draw(&Circle::new((px, py), 5, CLASS_COLOURS[c % CLASS_COLOURS.len()].filled()))
                .map_err(err)?;
        }
        for (c, class) in classes.iter().enumerate() {
            let (lx, ly) = (left + w + 20, top + 10 + 22 * c as i32);
            root.draw(&Circle::new((lx, ly), 5, CLASS_COLOURS[c % CLASS_COLOURS.len()].filled()))
                .map_err(err)?;
            text(root, class, (lx + 12, ly), 13, Pos::new(HPos::Left, VPos::Center))?;
        }
        Ok(())
    })?;
    Ok(Some(png))
}

/// Mean IoU of the most certain x% of cells against x, beside the mean IoU of all cells (what
/// keeping cells at random gives); `None` without ground truth.
pub fn selective_png(u: &UncertaintySection) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(all) = u.selective.last() else { return Ok(None) };
    let (y0, y1) = range(u.selective.iter().map(|p| p.mean_iou));
    let (left, top, w, h) = (80, 70, 560, 360);
    let size = (left as u32 + w as u32 + 40, top as u32 + h as u32 + 70);
    let png = render(size, |root| {
        text(
            root,
            &format!("Selective prediction: mean IoU of the most certain cells ({} cells)", all.cells),
            (size.0 as i32 / 2, 20),
            17,
            Pos::new(HPos::Center, VPos::Center),
        )?;
        axes(
            root,
            (left, top, w, h),
            (0.0, 100.0, "cells kept, most certain first (%)", 0),
            (y0, y1, "mean IoU against the truth", 3),
        )?;
        let err = |e: plotters::drawing::DrawingAreaErrorKind<_>| anyhow::anyhow!("{e}");
        let at = |coverage: f64, iou: f64| {
            (
                left + (coverage / 100.0 * f64::from(w)) as i32,
                top + h - ((iou - y0) / (y1 - y0) * f64::from(h)) as i32,
            )
        };
        let base = at(0.0, all.mean_iou).1;
        root.draw(&PathElement::new(
            vec![(left, base), (left + w, base)],
            RGBColor(150, 150, 150).stroke_width(1),
        ))
        .map_err(err)?;
        text(root, "all cells (random order)", (left + 6, base - 4), 12, Pos::new(HPos::Left, VPos::Bottom))?;
        let line: Vec<(i32, i32)> =
            u.selective.iter().map(|p| at(f64::from(p.coverage), p.mean_iou)).collect();
        root.draw(&PathElement::new(line.clone(), RGBColor(0, 114, 178).stroke_width(2))).map_err(err)?;
        for p in line {
            root.draw(&Circle::new(p, 4, RGBColor(0, 114, 178).filled())).map_err(err)?;
        }
        Ok(())
    })?;
    Ok(Some(png))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::reconstruction::CellReconstruction;
    use dispr_proto::records::{CellFeatures, FeatureMap, Uncertainty};
    use dispr_proto::{CellId, RunId, SCHEMA_VERSION, SampleFeatures};

    fn record(cell: &str, class: &str, pairwise: Option<f64>) -> CellFeatures {
        let k = if pairwise.is_some() { 3 } else { 1 };
        CellFeatures {
            schema_version: SCHEMA_VERSION,
            run_id: RunId::new("r").unwrap(),
            cell: CellId::new(cell).unwrap(),
            class: Some(class.into()),
            subclass: None,
            features_2d: FeatureMap::new(),
            samples: (0..k)
                .map(|k| SampleFeatures { k, seed: 0, features: FeatureMap::new(), metrics: None })
                .collect(),
            mean_3d: FeatureMap::new(),
            std_3d: FeatureMap::new(),
            mean_metrics: None,
            truth_skipped: None,
            uncertainty: pairwise.map(|p| Uncertainty {
                samples: k,
                mean_pairwise_iou: p,
                uncertain_fraction: 1.0 - p,
                mean_entropy: (1.0 - p) / 10.0,
                feature_cv: FeatureMap::from([("volume".to_string(), 1.0 - p)]),
            }),
        }
    }

    fn reconstruction(ious: &[(&str, f64)]) -> Reconstruction {
        Reconstruction::of(
            ious.iter()
                .map(|(c, iou)| CellReconstruction {
                    cell: c.to_string(),
                    class: None,
                    model_iou: *iou,
                    model_volume_error: 0.0,
                    floor_iou: 0.5,
                    floor_volume_error: 0.0,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn spearman_matches_scipy_including_ties() {
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) = 0.8207826816681233
        let pairs = [(1.0, 5.0), (2.0, 6.0), (3.0, 7.0), (4.0, 8.0), (5.0, 7.0)];
        assert!((spearman(&pairs).unwrap() - 0.8207826816681233).abs() < 1e-12);
        let inverse: Vec<(f64, f64)> = (0..6).map(|i| (f64::from(i), -f64::from(i * i))).collect();
        assert_eq!(spearman(&inverse), Some(-1.0));
        assert_eq!(spearman(&[(1.0, 1.0), (2.0, 2.0)]), None);
        assert_eq!(spearman(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn rows_are_sorted_most_uncertain_first_with_unknown_cells_last() {
        let records = [
            record("a1", "a", Some(0.9)),
            record("a2", "a", None),
            record("b1", "b", Some(0.5)),
            record("a3", "a", Some(0.7)),
            record("b2", "b", Some(0.95)),
        ];
        let a = analyse(RunCells::from_records(&records), None, None);
        let order: Vec<&str> = a.rows.iter().map(|r| a.cell(r).id).collect();
        assert_eq!(order, ["b1", "a3", "a1", "b2", "a2"]);
        assert_eq!((a.section.cells, a.section.unknown), (5, 1));
        // Without ground truth there is nothing to correlate with, and no classification.
        assert!(a.section.correlations.is_empty() && a.section.selective.is_empty());
        assert_eq!(a.section.quartiles, None);
        let picked: Vec<(&str, &str)> =
            a.section.pictured.iter().map(|p| (p.cell.as_str(), p.which.as_str())).collect();
        assert_eq!(
            picked,
            [
                ("a1", "most certain"),
                ("a3", "least certain"),
                ("b2", "most certain"),
                ("b1", "least certain")
            ]
        );

        let csv = String::from_utf8(csv(&a).unwrap()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + records.len(), "a row for every done cell");
        assert!(lines[0].starts_with("rank,cell,class,samples,disagreement,"), "{}", lines[0]);
        assert!(lines[0].ends_with(",cv_volume"), "{}", lines[0]);
        assert!(lines[1].starts_with("1,b1,b,3,0.5,"), "{}", lines[1]);
        // The cell sampled once: no rank and no uncertainty, never a zero.
        assert!(lines[5].starts_with(",a2,a,1,,,,,,,"), "{}", lines[5]);
        assert!(summary(&a.section).contains("1 cell(s) sampled once"));
    }

    #[test]
    fn an_honest_uncertainty_correlates_and_keeps_the_best_cells() {
        // IoU falls as disagreement grows, except one outlier.
        let mut records = Vec::new();
        let mut ious = Vec::new();
        let names: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
        for (i, name) in names.iter().enumerate() {
            let d = i as f64 / 100.0;
            records.push(record(name, if i % 2 == 0 { "a" } else { "b" }, Some(1.0 - d)));
            ious.push((name.as_str(), if i == 3 { 0.2 } else { 0.9 - d }));
        }
        records.push(record("late", "a", None));
        let rec = reconstruction(&ious);
        let a = analyse(RunCells::from_records(&records), Some(&rec), None);
        let rho = a.section.headline_spearman().unwrap();
        assert_eq!(rho.cells, 20);
        assert!(rho.spearman.unwrap() > 0.7, "{rho:?}");
        assert_eq!(a.section.correlations.len(), SCALARS.len());
        let curve = &a.section.selective;
        assert_eq!(curve.iter().map(|p| p.coverage).collect::<Vec<_>>(), COVERAGES);
        assert_eq!((curve[0].cells, curve[9].cells), (2, 20));
        assert!(curve[0].mean_iou > curve[9].mean_iou);
        assert!((curve[0].mean_iou - 0.895).abs() < 1e-12, "{curve:?}");
        let (files, warnings) = files(&a).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [SCATTER_PNG, SELECTIVE_PNG]);
        assert!(files[0].1.starts_with(b"\x89PNG") && files[1].1.starts_with(b"\x89PNG"));
        let text = summary(&a.section);
        assert!(text.contains("Spearman correlation with the error") && text.contains("10% 0.895"), "{text}");
    }

    #[test]
    fn every_cell_sampled_once_is_unknown() {
        let records = [record("a1", "a", None), record("b1", "b", None)];
        let rec = reconstruction(&[("a1", 0.5), ("b1", 0.6)]);
        let a = analyse(RunCells::from_records(&records), Some(&rec), None);
        assert_eq!((a.section.unknown, a.section.mean_disagreement), (2, None));
        assert!(a.section.correlations.is_empty() && a.section.selective.is_empty());
        assert!(a.section.pictured.is_empty());
        assert!(summary(&a.section).contains("unknown for every cell"));
        let (files, _) = files(&a).unwrap();
        assert!(files.is_empty(), "no plots (the CSV is written by write_csv)");
    }
}
