//! The classification report of a run: which cell types the 2D features, the predicted 3D
//! features and both together tell apart, by a cross-validated random forest, and (where the
//! dataset has ground truth) the same for the true 3D shapes, the ceiling: the question a run
//! answers is how much of the gain true shapes give over 2D the predicted shapes recover.
//!
//! [`results`] computes a run's results once, as a value ([`Results`]: the [`Report`], plain
//! serialisable structs, or why there is none); everything else renders that value: report.json
//! is the report itself, [`Report::tables`] formats its tables once for both summary.txt
//! ([`summary`]) and report.html (the run page), and [`files`] writes them with the CSV
//! tables and plots under `runs/<run>/report/`.

mod features_parquet;
mod files;
pub mod ground_truth;
pub mod plots;
pub mod reconstruction;
pub mod run_cells;
pub mod table;
pub mod uncertainty;

use crate::classify::{CvConfig, Scores, capped_sample, evaluate, repeated_cross_val_predict};
use dispr_proto::records::CellFeatures;
pub use features_parquet::to_parquet;
pub use files::{ReportFiles, files, summary};
pub use reconstruction::Reconstruction;
pub use run_cells::RunCells;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
pub use table::FeatureTable;

/// Feature-set names, in report order.
pub const SET_2D: &str = "2D";
pub const SET_PREDICTED: &str = "predicted 3D";
pub const SET_2D_PREDICTED: &str = "2D + predicted 3D";
pub const SET_TRUE: &str = "true 3D";
pub const SET_2D_TRUE: &str = "2D + true 3D";

/// The reference study's macro F1 (2D features, DISPR 3D features), printed beside ours.
pub const REFERENCE_MACRO_F1: [(&str, f64); 2] = [(SET_2D, 0.375), (SET_PREDICTED, 0.399)];

/// A ceiling gain smaller than this (macro F1) makes the recovered share meaningless.
pub const MIN_CEILING_GAIN: f64 = 0.01;

/// How class imbalance is handled, stated in the report.
pub const IMBALANCE: &str = "class-weighted trees: each bootstrap sample weighted n/(k*n_c) on the training fold \
                             (scikit-learn class_weight='balanced')";

/// Which labels the classifier predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The 6 classes.
    Class,
    /// The sub-classes where the dataset gives them (the 7 SDE shapes), the class elsewhere.
    Subclass,
}

/// Mean and sample standard deviation of a figure over the cross-validation's repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
}

impl Stat {
    /// Mean and standard deviation (n - 1 in the denominator; 0 for a single value).
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len();
        if n == 0 {
            return Stat { mean: 0.0, std: 0.0 };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var =
            if n > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        Stat { mean, std: var.sqrt() }
    }

    /// `0.598 ± 0.012`.
    pub fn show(&self) -> String {
        format!("{:.3} ± {:.3}", self.mean, self.std)
    }
}

/// One class's precision, recall and F1 over the repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStat {
    pub class: String,
    pub precision: Stat,
    pub recall: Stat,
    pub f1: Stat,
    /// Cells of the class (each repetition classifies every cell once).
    pub support: usize,
}

/// One feature set's cross-validated results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSetResult {
    /// [`SET_2D`], [`SET_PREDICTED`], [`SET_2D_PREDICTED`], [`SET_TRUE`] or [`SET_2D_TRUE`].
    pub name: String,
    /// Computed from the dataset's true shapes: the ceiling, not a result of the run.
    pub ceiling: bool,
    pub features: Vec<String>,
    pub macro_f1: Stat,
    /// Macro F1 over [`Report::minority_classes`]; `None` when there are none.
    pub minority_macro_f1: Option<Stat>,
    pub accuracy: Stat,
    /// Per class, in [`Report::classes`] order.
    pub per_class: Vec<ClassStat>,
    /// `confusion[true][predicted]`, summed over the repetitions.
    pub confusion: Vec<Vec<usize>>,
    /// Each repetition's metrics, in seed order.
    pub repetitions: Vec<Scores>,
    /// The first repetition's out-of-fold prediction per cell (class names), in
    /// [`Report::cells`] order.
    pub predictions: Vec<String>,
}

/// The stratified sample a capped cross-validation used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CvSample {
    /// Cells cross-validated.
    pub cells: usize,
    /// Labelled cells of the run.
    pub labelled: usize,
    pub cap_per_class: usize,
}

/// Cells per class (of all the labelled cells, sampled or not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassCount {
    pub class: String,
    pub cells: usize,
}

/// A cell of the dataset or the run that is not in the classification, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unclassified {
    pub cell: String,
    pub reason: String,
}

/// The share of the ceiling's gain over 2D that the predicted shapes recover:
/// (F1(2D + predicted 3D) - F1(2D)) / (F1(2D + true 3D) - F1(2D)), on mean F1s. `None` where the
/// true shapes gain less than [`MIN_CEILING_GAIN`] over 2D (nothing to recover).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recovered {
    pub macro_f1: Option<f64>,
    pub minority_macro_f1: Option<f64>,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    /// Where the features came from: the run's records and/or a dataset's ground truth.
    pub source: String,
    pub level: Level,
    /// The cells classified, sorted.
    pub cells: Vec<String>,
    pub truth: Vec<String>,
    pub classes: Vec<ClassCount>,
    /// The classes outside the majority: every class but one holding at least half of the
    /// classified cells (all classes when none does).
    pub minority_classes: Vec<String>,
    pub cv: CvConfig,
    pub imbalance: String,
    pub feature_sets: Vec<FeatureSetResult>,
    /// Present when the cross-validation used a capped sample of the labelled cells
    /// ([`CvConfig::cap_per_class`]); [`Report::cells`] are then the sampled cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_sample: Option<CvSample>,
    /// Present when both the predicted and the ceiling rows are.
    pub recovered: Option<Recovered>,
    pub reference_macro_f1: Vec<(String, f64)>,
    /// Model against extrusion floor, where the dataset has ground truth and the run has volumes.
    pub reconstruction: Option<Reconstruction>,
    /// Cells left out of the classification, with the reason (sorted by cell).
    pub unclassified: Vec<Unclassified>,
    pub seconds: f64,
    /// How unsure the model is of each cell's shape, and whether that predicts its error
    /// (absent in reports of earlier releases).
    #[serde(default)]
    pub uncertainty: Option<uncertainty::UncertaintySection>,
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{labelled} cell(s) have a {level} label, in {classes} class(es); a {folds}-fold report needs at least \
         {folds} labelled cells in at least 2 classes (labels come from labels.csv or the cell-name prefix)"
    )]
    TooFewLabelled { labelled: usize, classes: usize, folds: usize, level: &'static str },
}

/// The feature sets of the study: name, column prefixes, whether it is a ceiling row. A set is
/// reported when the table has columns of each of its prefixes.
pub fn feature_sets() -> [(&'static str, Vec<&'static str>, bool); 5] {
    use table::{PREFIX_2D, PREFIX_3D_MEAN, PREFIX_TRUE_3D};
    [
        (SET_2D, vec![PREFIX_2D], false),
        (SET_PREDICTED, vec![PREFIX_3D_MEAN], false),
        (SET_2D_PREDICTED, vec![PREFIX_2D, PREFIX_3D_MEAN], false),
        (SET_TRUE, vec![PREFIX_TRUE_3D], true),
        (SET_2D_TRUE, vec![PREFIX_2D, PREFIX_TRUE_3D], true),
    ]
}

/// The minority classes of `counts`: all but a class holding at least half of the cells.
pub fn minority_classes(counts: &[ClassCount]) -> Vec<String> {
    let total: usize = counts.iter().map(|c| c.cells).sum();
    counts.iter().filter(|c| 2 * c.cells < total || total == 0).map(|c| c.class.clone()).collect()
}

/// The results of one feature set from its repetitions' predictions.
fn summarise_set(
    name: &str,
    ceiling: bool,
    features: Vec<String>,
    class_names: &[String],
    minority: &[usize],
    y: &[usize],
    runs: &[Vec<usize>],
) -> FeatureSetResult {
    let repetitions: Vec<Scores> = runs.iter().map(|p| evaluate(class_names, y, p)).collect();
    let over = |f: &dyn Fn(&Scores) -> f64| Stat::of(&repetitions.iter().map(f).collect::<Vec<_>>());
    let k = class_names.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for m in &repetitions {
        for (row, add) in confusion.iter_mut().zip(&m.confusion) {
            for (v, a) in row.iter_mut().zip(add) {
                *v += a;
            }
        }
    }
    let per_class = (0..k)
        .map(|c| ClassStat {
            class: class_names[c].clone(),
            precision: over(&|m| m.per_class[c].precision),
            recall: over(&|m| m.per_class[c].recall),
            f1: over(&|m| m.per_class[c].f1),
            support: y.iter().filter(|&&v| v == c).count(),
        })
        .collect();
    let minority_macro_f1 = (!minority.is_empty())
        .then(|| over(&|m| minority.iter().map(|&c| m.per_class[c].f1).sum::<f64>() / minority.len() as f64));
    FeatureSetResult {
        name: name.to_string(),
        ceiling,
        features,
        macro_f1: over(&|m| m.macro_f1),
        minority_macro_f1,
        accuracy: over(&|m| m.accuracy),
        per_class,
        confusion,
        predictions: runs
            .first()
            .map(|p| p.iter().map(|&c| class_names[c].clone()).collect())
            .unwrap_or_default(),
        repetitions,
    }
}

/// Cross-validates a random forest on each feature set of `table`, `cv.repeats` times.
/// `unclassified` are the cells the caller already left out (failed, unfinished, without ground
/// truth), with reasons; cells of `table` without a label join them. Compute-heavy (a minute or
/// more on 2 cores): call it from a blocking thread, never on the async runtime.
pub fn build(
    run_id: &str,
    source: &str,
    table: &FeatureTable,
    level: Level,
    cv: CvConfig,
    mut unclassified: Vec<Unclassified>,
) -> Result<Report, ReportError> {
    let started = std::time::Instant::now();
    // Borrowed from the table (its labels are interned): a million cells' labels as strings
    // would be another 50 MB or so.
    let labels: Vec<Option<&str>> = match level {
        Level::Class => table.class.iter().collect(),
        // Cells without a sub-class keep their class: 12 labels on the RBC dataset.
        Level::Subclass => table.subclass.iter().zip(table.class.iter()).map(|(s, c)| s.or(c)).collect(),
    };
    let labelled: Vec<usize> = (0..table.cells.len()).filter(|&i| labels[i].is_some()).collect();
    // A cell in the table is classified (or left out below for want of a label), whatever else
    // the caller found about it.
    unclassified.retain(|u| table.cells.binary_search(&u.cell).is_err());
    unclassified.extend((0..table.cells.len()).filter(|&i| labels[i].is_none()).map(|i| Unclassified {
        cell: table.cells[i].to_string(),
        reason: "no label: labels.csv does not list it and its name has no class prefix".into(),
    }));
    unclassified.sort();
    let class_names: Vec<String> = labels
        .iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    if labelled.len() < cv.folds || class_names.len() < 2 {
        return Err(ReportError::TooFewLabelled {
            labelled: labelled.len(),
            classes: class_names.len(),
            folds: cv.folds,
            level: if level == Level::Class { "class" } else { "subclass" },
        });
    }
    let label_of =
        |i: usize| labels[i].map_or(0, |c| class_names.binary_search_by(|k| k.as_str().cmp(c)).unwrap_or(0));
    let all_y: Vec<usize> = labelled.iter().map(|&i| label_of(i)).collect();
    let classes: Vec<ClassCount> = class_names
        .iter()
        .enumerate()
        .map(|(k, c)| ClassCount { class: c.clone(), cells: all_y.iter().filter(|&&v| v == k).count() })
        .collect();
    // The minority classes are those of the whole run, whatever the sample below.
    let minority = minority_classes(&classes);
    let mut cv_sample = None;
    let labelled: Vec<usize> = match cv.cap_per_class {
        Some(cap) if classes.iter().any(|c| c.cells > cap) => {
            let kept = capped_sample(&all_y, cap, cv.forest.seed);
            cv_sample = Some(CvSample { cells: kept.len(), labelled: labelled.len(), cap_per_class: cap });
            kept.into_iter().map(|k| labelled[k]).collect()
        }
        _ => labelled,
    };
    let truth_names: Vec<String> = labelled.iter().filter_map(|&i| labels[i].map(str::to_string)).collect();
    let y: Vec<usize> = labelled.iter().map(|&i| label_of(i)).collect();
    let minority_idx: Vec<usize> =
        (0..class_names.len()).filter(|&k| minority.contains(&class_names[k])).collect();

    let mut results = Vec::new();
    for (name, prefixes, ceiling) in feature_sets() {
        if prefixes.iter().any(|p| table.columns_with(&[p]).is_empty()) {
            continue;
        }
        let columns = table.columns_with(&prefixes);
        let x = table.dense(&labelled, &columns);
        let runs = repeated_cross_val_predict(&x, &y, class_names.len(), &cv);
        let features = columns.iter().map(|&c| table.columns[c].clone()).collect();
        results.push(summarise_set(name, ceiling, features, &class_names, &minority_idx, &y, &runs));
    }
    let mut report = Report {
        run_id: run_id.to_string(),
        source: source.to_string(),
        level,
        cells: labelled.iter().map(|&i| table.cells[i].to_string()).collect(),
        truth: truth_names,
        classes,
        minority_classes: minority,
        cv,
        imbalance: IMBALANCE.to_string(),
        feature_sets: results,
        cv_sample,
        recovered: None,
        reference_macro_f1: REFERENCE_MACRO_F1.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        reconstruction: None,
        unclassified,
        seconds: 0.0,
        uncertainty: None,
    };
    report.recovered = recovered(&report);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The recovered share of `report`'s ceiling gain, when it has the rows it needs.
fn recovered(report: &Report) -> Option<Recovered> {
    let set = |name: &str| report.feature_sets.iter().find(|s| s.name == name);
    let (base, predicted, ceiling) = (set(SET_2D)?, set(SET_2D_PREDICTED)?, set(SET_2D_TRUE)?);
    let share = |f: fn(&FeatureSetResult) -> Option<f64>| {
        let (b, p, c) = (f(base)?, f(predicted)?, f(ceiling)?);
        (c - b >= MIN_CEILING_GAIN).then(|| (p - b) / (c - b))
    };
    Some(Recovered {
        macro_f1: share(|s| Some(s.macro_f1.mean)),
        minority_macro_f1: share(|s| s.minority_macro_f1.map(|m| m.mean)),
    })
}

impl Report {
    /// The tables of the report, formatted for display.
    pub fn tables(&self) -> Tables {
        let results = (self.feature_sets.iter())
            .map(|s| ResultRow {
                name: s.name.clone(),
                ceiling: s.ceiling,
                columns: s.features.len(),
                macro_f1: s.macro_f1.show(),
                minority_macro_f1: s.minority_macro_f1.map_or("-".into(), |m| m.show()),
                accuracy: s.accuracy.show(),
                reference: (self.reference_macro_f1.iter())
                    .find(|(k, _)| *k == s.name)
                    .map_or("-".into(), |(_, v)| format!("{v:.3}")),
            })
            .collect();
        let per_class = (self.classes.iter().enumerate())
            .map(|(k, c)| ClassRow {
                class: c.class.clone(),
                cells: c.cells,
                minority: self.minority_classes.contains(&c.class),
                per_set: (self.feature_sets.iter())
                    .map(|s| {
                        let m = &s.per_class[k];
                        ClassScores {
                            f1: m.f1.show(),
                            precision: format!("{:.3}", m.precision.mean),
                            recall: format!("{:.3}", m.recall.mean),
                        }
                    })
                    .collect(),
            })
            .collect();
        Tables {
            results,
            recovered: self.recovered_line(),
            has_ceiling: self.feature_sets.iter().any(|s| s.ceiling),
            per_class,
        }
    }

    /// The feature set called `name`.
    pub fn set(&self, name: &str) -> Option<&FeatureSetResult> {
        self.feature_sets.iter().find(|s| s.name == name)
    }

    /// How the classification was made, in one sentence.
    pub fn protocol(&self) -> String {
        let seeds: Vec<u64> = self.cv.seeds().collect();
        let seeds = match seeds.as_slice() {
            [one] => format!("seed {one}"),
            [first, .., last] => format!("{} seeds ({first}..{last})", seeds.len()),
            [] => String::new(),
        };
        let sample = match &self.cv_sample {
            Some(s) => format!(
                " (cross-validated on a stratified sample of {} of the {} labelled cells: every cell of each class of \
                 at most {cap} cells, and a seeded random {cap} of each larger class; --cv-cap-per-class)",
                s.cells,
                s.labelled,
                cap = s.cap_per_class
            ),
            None => String::new(),
        };
        let labelled = self.cv_sample.map_or(self.cells.len(), |s| s.labelled);
        format!(
            "{labelled} labelled cells in {} classes{sample}; random forest of {} trees (depth {}); stratified {}-fold \
             cross-validation repeated over {seeds}: figures are mean ± standard deviation over the repetitions",
            self.classes.len(),
            self.cv.forest.trees,
            self.cv.forest.max_depth,
            self.cv.folds,
        )
    }

    /// The line that answers the study's question, or why it cannot: how much of the ceiling's
    /// gain over 2D the predicted shapes recover.
    pub fn recovered_line(&self) -> Option<String> {
        let (base, predicted) = (self.set(SET_2D)?, self.set(SET_2D_PREDICTED));
        let ceiling = self.set(SET_2D_TRUE)?;
        let Some(predicted) = predicted else {
            return Some(format!(
                "True shapes take macro F1 from {:.3} (2D) to {:.3} (2D + true 3D); this report has no predicted shapes to compare.",
                base.macro_f1.mean, ceiling.macro_f1.mean
            ));
        };
        let r = self.recovered?;
        let mut line = match r.macro_f1 {
            Some(share) => format!(
                "Predicted shapes recover {:.0}% of the gain true shapes give over 2D: macro F1 {:.3} (2D) -> {:.3} \
                 (2D + predicted 3D), ceiling {:.3} (2D + true 3D)",
                100.0 * share,
                base.macro_f1.mean,
                predicted.macro_f1.mean,
                ceiling.macro_f1.mean
            ),
            None => format!(
                "True shapes give no gain over 2D here (macro F1 {:.3} with 2D, {:.3} with 2D + true 3D), so there \
                 is nothing for predicted shapes to recover; 2D + predicted 3D: {:.3}",
                base.macro_f1.mean, ceiling.macro_f1.mean, predicted.macro_f1.mean
            ),
        };
        if let (Some(b), Some(p), Some(c)) =
            (base.minority_macro_f1, predicted.minority_macro_f1, ceiling.minority_macro_f1)
        {
            let share = r
                .minority_macro_f1
                .map_or("no gain to recover".to_string(), |v| format!("{:.0}% recovered", 100.0 * v));
            let _ = write!(
                line,
                "; minority classes {:.3} -> {:.3}, ceiling {:.3} ({share})",
                b.mean, p.mean, c.mean
            );
        }
        line.push('.');
        Some(line)
    }
}

/// What a report is made of.
pub struct ReportInputs {
    /// The run's done cells (predicted shapes); empty for a report on ground truth alone. Their
    /// table is joined with `truth` into the report's table.
    pub predicted: RunCells,
    /// Ground-truth feature records (true shapes): the ceiling rows.
    pub truth: Vec<CellFeatures>,
    /// Cells left out before classifying, with the reason.
    pub unclassified: Vec<Unclassified>,
    pub reconstruction: Option<Reconstruction>,
    /// Where the features came from, as the report states it.
    pub source: String,
}

/// The report's results as one value: the classification (or why there is none) and the
/// uncertainty of the samples. Every rendering (summary.txt, report.json, report.html, the CSV
/// tables) starts from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    pub classification: Classification,
    /// `None` for a report without a run (ground truth alone).
    pub uncertainty: Option<uncertainty::Analysis>,
    /// The table classified, where it is not the run's own (in [`Results::uncertainty`]): the
    /// run's joined with the ground truth, or the ground truth's alone.
    pub joined: Option<FeatureTable>,
}

/// The classification of a report, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Classification {
    /// Boxed: a report is large beside the reason there is none.
    Classified(Box<Report>),
    /// Too few labelled cells to cross-validate: not an error of the run, the page says why.
    NotClassified { why: String, unclassified: Vec<Unclassified> },
}

impl Results {
    /// The classification, where there is one.
    pub fn report(&self) -> Option<&Report> {
        match &self.classification {
            Classification::Classified(r) => Some(r.as_ref()),
            Classification::NotClassified { .. } => None,
        }
    }

    /// Why there is no classification, where there is none.
    pub fn why_not_classified(&self) -> Option<&str> {
        match &self.classification {
            Classification::Classified(_) => None,
            Classification::NotClassified { why, .. } => Some(why),
        }
    }

    /// The cells left out of the classification, with the reason.
    pub fn unclassified(&self) -> &[Unclassified] {
        match &self.classification {
            Classification::Classified(r) => &r.unclassified,
            Classification::NotClassified { unclassified, .. } => unclassified,
        }
    }

    /// The printable summary: the classification table (with the uncertainty), or why there is
    /// none (and the uncertainty).
    pub fn summary(&self) -> String {
        match &self.classification {
            Classification::Classified(r) => summary(r),
            Classification::NotClassified { why, .. } => {
                let mut s = format!("no classification: {why}\n");
                if let Some(a) = &self.uncertainty {
                    s.push_str(&uncertainty::summary(&a.section));
                }
                s
            }
        }
    }

    /// The files under `report/` that are small whatever the run's size: all of [`files`]
    /// with a classification, and the uncertainty plots with or without one. The tables of a
    /// row per cell come from [`Results::write_tables`].
    pub fn files(&self) -> anyhow::Result<ReportFiles> {
        let (mut out, mut warnings) = match &self.classification {
            Classification::Classified(r) => files(r)?,
            Classification::NotClassified { .. } => (Vec::new(), Vec::new()),
        };
        if let Some(a) = &self.uncertainty {
            let (mut more, mut w) = uncertainty::files(a)?;
            out.append(&mut more);
            warnings.append(&mut w);
        }
        Ok((out, warnings))
    }
}

impl Results {
    /// The table of features the report classified (and features.csv has): the run's cells',
    /// joined with the ground truth where there is some; `None` without either.
    pub fn table(&self) -> Option<&FeatureTable> {
        self.joined.as_ref().or(self.uncertainty.as_ref().map(|a| &a.cells.table))
    }

    /// The tables of a row per cell, written into files under `dir` (a million cells' CSV is
    /// gigabytes: it goes to disk a row at a time, never into memory): features.csv,
    /// features.parquet (with `metadata`) and, for a run, uncertainty.csv. Their names under
    /// `report/` and their paths.
    pub fn write_tables(
        &self,
        metadata: &[(&str, String)],
        dir: &std::path::Path,
    ) -> anyhow::Result<Vec<(String, std::path::PathBuf)>> {
        let empty = FeatureTable::default();
        let table = self.table().unwrap_or(&empty);
        use anyhow::Context as _;
        use std::io::Write as _;
        let create =
            |name: &str| -> anyhow::Result<(String, std::path::PathBuf, std::io::BufWriter<std::fs::File>)> {
                let path = dir.join(name);
                let file = std::fs::File::create(&path).with_context(|| {
                    format!("creating {} (the report spools its tables there)", path.display())
                })?;
                Ok((name.to_string(), path, std::io::BufWriter::new(file)))
            };
        let mut out = Vec::new();
        let (name, path, w) = create("features.csv")?;
        table.write_csv(w)?.flush()?;
        out.push((name, path));
        let (name, path, w) = create("features.parquet")?;
        to_parquet(table, metadata, w)?.flush()?;
        out.push((name, path));
        if let Some(a) = &self.uncertainty {
            let (name, path, w) = create("uncertainty.csv")?;
            uncertainty::write_csv(a, w)?.flush()?;
            out.push((name, path));
        }
        Ok(out)
    }
}

/// The one computation of a run's results: [`build`] on the table of `inputs` (the run's cells
/// joined with the ground truth where there is some), with the reconstruction against the floor
/// added, then the uncertainty of the run's samples (after the classification: it says which
/// cells were misclassified). Compute-heavy: call it from a blocking thread.
pub fn results(run_id: &str, inputs: ReportInputs, level: Level, cv: CvConfig) -> Results {
    let ReportInputs { predicted, truth, unclassified, reconstruction, source } = inputs;
    // A new table only with ground truth (small runs); the run's own otherwise, not copied.
    let joined = predicted.table.joined_with(&truth);
    drop(truth);
    let table = joined.as_ref().unwrap_or(&predicted.table);
    let classified = build(run_id, &source, table, level, cv, unclassified.clone());
    let analyse = |predicted: RunCells, report: Option<&Report>, reconstruction: Option<&Reconstruction>| {
        (!predicted.is_empty()).then(|| uncertainty::analyse(predicted, reconstruction, report))
    };
    match classified {
        Ok(report) => {
            let mut report = Report { reconstruction, ..report };
            let uncertainty = analyse(predicted, Some(&report), report.reconstruction.as_ref());
            report.uncertainty = uncertainty.as_ref().map(|a| a.section.clone());
            Results { classification: Classification::Classified(Box::new(report)), uncertainty, joined }
        }
        Err(why) => Results {
            uncertainty: analyse(predicted, None, reconstruction.as_ref()),
            classification: Classification::NotClassified { why: why.to_string(), unclassified },
            joined,
        },
    }
}

/// A report's tables with their figures formatted, once for every rendering (summary.txt and
/// report.html show the same cells).
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    /// One row per feature set, in report order.
    pub results: Vec<ResultRow>,
    /// The line that answers the study's question ([`Report::recovered_line`]).
    pub recovered: Option<String>,
    /// Whether any row is a ceiling (the dataset has ground truth).
    pub has_ceiling: bool,
    /// One row per class, in [`Report::classes`] order.
    pub per_class: Vec<ClassRow>,
}

/// A feature set's row of the results table.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub name: String,
    pub ceiling: bool,
    pub columns: usize,
    pub macro_f1: String,
    /// `-` without minority classes.
    pub minority_macro_f1: String,
    pub accuracy: String,
    /// The reference study's macro F1 for this set, or `-`.
    pub reference: String,
}

/// A class's row of the per-class table: its scores under each feature set, in report order.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassRow {
    pub class: String,
    pub cells: usize,
    pub minority: bool,
    pub per_set: Vec<ClassScores>,
}

/// A class's F1 (mean ± std), precision and recall (means) under one feature set.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    pub f1: String,
    pub precision: String,
    pub recall: String,
}

/// "2D + true 3D" -> "2dtrue3d": feature-set names as they appear in file names.
pub fn file_tag(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ForestConfig;
    use dispr_proto::records::{CellFeatures, FeatureMap};
    use dispr_proto::{CellId, RunId, SCHEMA_VERSION};

    fn record(i: usize, class: &str, f2: f64, f3: f64) -> CellFeatures {
        let f3 = FeatureMap::from([("volume".to_string(), f3)]);
        CellFeatures {
            schema_version: SCHEMA_VERSION,
            run_id: RunId::new("r").unwrap(),
            cell: CellId::new(format!("{class}{i:03}")).unwrap(),
            class: Some(class.to_string()),
            subclass: None,
            features_2d: FeatureMap::from([("area".to_string(), f2)]),
            samples: vec![],
            mean_3d: f3.clone(),
            std_3d: f3.keys().map(|k| (k.clone(), 0.0)).collect(),
            mean_metrics: None,
            truth_skipped: None,
            uncertainty: None,
        }
    }

    const CLASSES: [&str; 3] = ["alpha", "beta", "gamma"];

    /// 3 classes: told apart by a 3D feature only; the 2D feature is noise.
    fn records() -> Vec<CellFeatures> {
        (0..45)
            .map(|i| {
                record(i, CLASSES[i % 3], ((i * 37) % 11) as f64, (i % 3) as f64 * 10.0 + (i % 4) as f64)
            })
            .collect()
    }

    /// The same cells seen twice: predicted shapes that tell alpha from the rest but confuse beta
    /// and gamma, and true shapes that tell all three apart.
    fn predicted_and_truth() -> (Vec<CellFeatures>, Vec<CellFeatures>) {
        let predicted = (0..45)
            .map(|i| {
                let c = i % 3;
                record(
                    i,
                    CLASSES[c],
                    ((i * 37) % 11) as f64,
                    if c == 0 { 0.0 } else { 10.0 + (i % 7) as f64 },
                )
            })
            .collect();
        let truth = (0..45)
            .map(|i| record(i, CLASSES[i % 3], ((i * 37) % 11) as f64, (i % 3) as f64 * 10.0))
            .collect();
        (predicted, truth)
    }

    fn cv() -> CvConfig {
        CvConfig {
            folds: 5,
            repeats: 3,
            forest: ForestConfig { trees: 30, max_depth: 5, seed: 1 },
            cap_per_class: None,
        }
    }

    /// Above the cap, the majority class is sampled and every rare cell kept; the report says
    /// so in its protocol line, and the class counts and minority classes stay the run's.
    #[test]
    fn a_capped_cross_validation_keeps_the_rare_cells_and_says_so() {
        // alpha 60 cells (the majority), beta and gamma 10 each.
        let records: Vec<CellFeatures> = (0..80)
            .map(|i| {
                let c = if i < 60 {
                    0
                } else if i < 70 {
                    1
                } else {
                    2
                };
                record(i, CLASSES[c], ((i * 37) % 11) as f64, c as f64 * 10.0 + (i % 4) as f64)
            })
            .collect();
        let table = FeatureTable::from_records(&records);
        let capped = CvConfig { cap_per_class: Some(20), ..cv() };
        let report = build("r", "test", &table, Level::Class, capped, vec![]).unwrap();
        assert_eq!(report.cv_sample, Some(CvSample { cells: 40, labelled: 80, cap_per_class: 20 }));
        assert_eq!(report.cells.len(), 40);
        let sampled = |class: &str| report.cells.iter().filter(|c| c.starts_with(class)).count();
        assert_eq!((sampled("alpha"), sampled("beta"), sampled("gamma")), (20, 10, 10));
        let counts: Vec<usize> = report.classes.iter().map(|c| c.cells).collect();
        assert_eq!(counts, [60, 10, 10], "the run's class sizes");
        assert_eq!(report.minority_classes, ["beta", "gamma"]);
        assert_eq!(report.feature_sets[1].per_class[0].support, 20);
        assert_eq!(report.feature_sets[1].macro_f1.mean, 1.0, "the 3D feature still separates them");
        let line = report.protocol();
        assert!(
            line.starts_with("80 labelled cells") && line.contains("stratified sample of 40 of the 80"),
            "{line}"
        );
        // A cap no class exceeds changes nothing.
        let uncapped =
            build("r", "test", &table, Level::Class, CvConfig { cap_per_class: Some(60), ..cv() }, vec![]);
        assert_eq!(uncapped.unwrap().cv_sample, None);
    }

    #[test]
    fn three_feature_sets_are_reported_and_the_informative_one_wins() {
        let table = FeatureTable::from_records(&records());
        assert_eq!(table.columns, vec!["2d_area", "3d_mean_volume", "3d_std_volume"]);
        let report = build("r", "test", &table, Level::Class, cv(), vec![]).unwrap();
        let names: Vec<_> = report.feature_sets.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, [SET_2D, SET_PREDICTED, SET_2D_PREDICTED]);
        assert!(report.feature_sets.iter().all(|s| !s.ceiling && s.repetitions.len() == 3));
        let f1 = |i: usize| report.feature_sets[i].macro_f1;
        assert_eq!(f1(1), Stat { mean: 1.0, std: 0.0 }, "the 3D feature separates the classes");
        assert!(f1(0).mean < 0.8, "the 2D feature is noise: {:?}", f1(0));
        // The noise classifies differently with each seed.
        assert!(f1(0).std > 0.0, "{:?}", f1(0));
        assert_eq!(report.classes.iter().map(|c| c.cells).sum::<usize>(), 45);
        // Every class has a third of the cells: none is the majority.
        assert_eq!(report.minority_classes, CLASSES);
        // Without ground truth there is no ceiling and nothing to recover.
        assert_eq!(report.recovered, None);
        assert_eq!(report.recovered_line(), None);
        let text = summary(&report);
        assert!(
            text.contains("0.375") && text.contains("gamma") && text.contains("repeated over 3 seeds (1..3)"),
            "{text}"
        );
        // The confusion matrix counts every cell once per repetition.
        assert_eq!(report.feature_sets[0].confusion.iter().flatten().sum::<usize>(), 45 * 3);
    }

    #[test]
    fn the_ceiling_rows_and_the_recovered_share() {
        let (predicted, truth) = predicted_and_truth();
        let table = FeatureTable::from_sources(&predicted, &truth);
        assert!(table.columns.contains(&"true_3d_volume".to_string()), "{:?}", table.columns);
        let report = build("r", "test", &table, Level::Class, cv(), vec![]).unwrap();
        let rows: Vec<_> = report.feature_sets.iter().map(|r| (r.name.as_str(), r.ceiling)).collect();
        assert_eq!(
            rows,
            [
                (SET_2D, false),
                (SET_PREDICTED, false),
                (SET_2D_PREDICTED, false),
                (SET_TRUE, true),
                (SET_2D_TRUE, true)
            ]
        );
        let f1 = |name: &str| report.set(name).unwrap().macro_f1.mean;
        assert_eq!(f1(SET_TRUE), 1.0);
        assert!(f1(SET_2D_PREDICTED) > f1(SET_2D) && f1(SET_2D_PREDICTED) < f1(SET_2D_TRUE));
        let share = report.recovered.unwrap().macro_f1.unwrap();
        let expected = (f1(SET_2D_PREDICTED) - f1(SET_2D)) / (f1(SET_2D_TRUE) - f1(SET_2D));
        assert!((share - expected).abs() < 1e-12 && share > 0.0 && share < 1.0, "{share}");
        let line = report.recovered_line().unwrap();
        assert!(line.starts_with(&format!("Predicted shapes recover {:.0}%", 100.0 * share)), "{line}");
        let text = summary(&report);
        assert!(text.contains("2D + true 3D (ceiling)") && text.contains(&line), "{text}");
    }

    #[test]
    fn truth_without_a_gain_over_2d_recovers_nothing_by_definition() {
        // The 2D feature alone separates the classes: true shapes cannot add anything.
        let recs: Vec<CellFeatures> =
            (0..30).map(|i| record(i, CLASSES[i % 3], (i % 3) as f64, 0.0)).collect();
        let report =
            build("r", "test", &FeatureTable::from_sources(&recs, &recs), Level::Class, cv(), vec![])
                .unwrap();
        assert_eq!(report.recovered, Some(Recovered { macro_f1: None, minority_macro_f1: None }));
        let line = report.recovered_line().unwrap();
        assert!(line.starts_with("True shapes give no gain over 2D here"), "{line}");
    }

    #[test]
    fn minority_classes_are_those_outside_a_majority() {
        let counts = |v: &[(&str, usize)]| {
            v.iter().map(|(c, n)| ClassCount { class: c.to_string(), cells: *n }).collect::<Vec<_>>()
        };
        assert_eq!(minority_classes(&counts(&[("SDE", 140), ("a", 22), ("b", 10)])), ["a", "b"]);
        assert_eq!(
            minority_classes(&counts(&[("a", 8), ("b", 8), ("c", 6), ("d", 3)])),
            ["a", "b", "c", "d"]
        );
        // Minority macro F1 is the mean F1 of those classes.
        let mut recs = records();
        for r in recs.iter_mut().take(30) {
            r.class = Some("alpha".into());
        }
        let report =
            build("r", "test", &FeatureTable::from_records(&recs), Level::Class, cv(), vec![]).unwrap();
        assert_eq!(report.minority_classes, ["beta", "gamma"]);
        let set = &report.feature_sets[0];
        let means: Vec<f64> =
            set.repetitions.iter().map(|m| (m.per_class[1].f1 + m.per_class[2].f1) / 2.0).collect();
        assert!((set.minority_macro_f1.unwrap().mean - Stat::of(&means).mean).abs() < 1e-12);
    }

    #[test]
    fn cells_left_out_are_named_with_the_reason() {
        let mut recs = records();
        recs[4].class = None;
        let unlabelled = recs[4].cell.to_string();
        let given = vec![
            Unclassified { cell: "zz_failed".into(), reason: "failed: the mask is empty".into() },
            // Classified after all: a stale reason is dropped.
            Unclassified { cell: recs[0].cell.to_string(), reason: "stale".into() },
        ];
        let report =
            build("r", "test", &FeatureTable::from_records(&recs), Level::Class, cv(), given).unwrap();
        let names: Vec<_> = report.unclassified.iter().map(|u| u.cell.as_str()).collect();
        assert_eq!(names, [unlabelled.as_str(), "zz_failed"]);
        assert!(report.unclassified[0].reason.contains("no label"));
        assert_eq!(report.cells.len(), 44);
        let text = summary(&report);
        assert!(
            text.contains("2 cell(s) not classified")
                && text.contains("zz_failed: failed: the mask is empty"),
            "{text}"
        );
        let (files, _) = files(&report).unwrap();
        let csv = &files.iter().find(|(n, _)| n == "unclassified.csv").unwrap().1;
        assert!(String::from_utf8_lossy(csv).contains("zz_failed,failed: the mask is empty"));
    }

    #[test]
    fn stat_is_mean_and_sample_standard_deviation() {
        assert_eq!(Stat::of(&[1.0, 3.0]), Stat { mean: 2.0, std: 2f64.sqrt() });
        assert_eq!(Stat::of(&[0.5]), Stat { mean: 0.5, std: 0.0 });
        assert_eq!(Stat::of(&[0.6, 0.6]).show(), "0.600 ± 0.000");
    }

    #[test]
    fn files_hold_json_csv_and_png() {
        let (predicted, truth) = predicted_and_truth();
        let table = FeatureTable::from_sources(&predicted, &truth);
        let report = build("r", "test", &table, Level::Class, cv(), vec![]).unwrap();
        let (files, warnings) = files(&report).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let get =
            |name: &str| &files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} missing")).1;
        let back: Report = serde_json::from_slice(get("report.json")).unwrap();
        assert_eq!((&back.cells, &back.classes, back.cv), (&report.cells, &report.classes, report.cv));
        for (a, b) in back.feature_sets.iter().zip(&report.feature_sets) {
            assert_eq!(
                (&a.name, a.ceiling, &a.confusion, &a.predictions),
                (&b.name, b.ceiling, &b.confusion, &b.predictions)
            );
            assert!((a.macro_f1.mean - b.macro_f1.mean).abs() < 1e-12);
        }
        let csv = String::from_utf8(table.to_csv().unwrap()).unwrap();
        assert_eq!(csv.lines().count(), 46);
        assert!(
            csv.starts_with(
                "cell,class,subclass,samples,2d_area,3d_mean_volume,3d_std_volume,true_3d_volume"
            ),
            "{}",
            csv.lines().next().unwrap()
        );
        for png in [
            "confusion_2d.png",
            "confusion_predicted3d.png",
            "confusion_2dpredicted3d.png",
            "confusion_true3d.png",
            "confusion_2dtrue3d.png",
            "f1_per_class.png",
        ] {
            assert!(get(png).starts_with(b"\x89PNG"), "{png}");
        }
        let metrics = String::from_utf8(get("metrics.csv").clone()).unwrap();
        assert!(metrics.contains("true 3D,true,macro,,,,,1,0,45"), "{metrics}");
        assert!(metrics.contains("2D,false,minority macro,"), "{metrics}");
    }

    #[test]
    fn subclass_level_keeps_the_class_where_there_is_no_subclass() {
        let mut recs = records();
        for (i, r) in recs.iter_mut().enumerate().filter(|(_, r)| r.class.as_deref() == Some("alpha")) {
            r.subclass = Some(format!("alpha_{}", i % 2));
        }
        let report =
            build("r", "test", &FeatureTable::from_records(&recs), Level::Subclass, cv(), vec![]).unwrap();
        let names: Vec<_> = report.classes.iter().map(|c| c.class.as_str()).collect();
        assert_eq!(names, ["alpha_0", "alpha_1", "beta", "gamma"]);
        assert_eq!(report.cells.len(), 45);
    }

    #[test]
    fn too_few_labels_is_a_clear_error() {
        let mut recs = records();
        recs.truncate(3);
        for r in &mut recs {
            r.class = Some("alpha".into());
        }
        let err = build("r", "test", &FeatureTable::from_records(&recs), Level::Class, cv(), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 5 labelled cells in at least 2 classes"), "{err}");
    }
}
