//! The classification report of a run: which cell types the 2D features, the (predicted) 3D
//! features and both together tell apart, by a cross-validated random forest.
//!
//! The data model ([`Report`]) is plain serialisable structs so that other front ends (the HTML
//! report, the demo) render the same numbers; [`files`] turns a report into the files written
//! under `runs/<run>/report/`.

pub mod ground_truth;
pub mod plots;
pub mod table;

use crate::classify::{CvConfig, Metrics, cross_val_predict, evaluate};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
pub use table::FeatureTable;

/// The reference study's macro F1 (2D features, DISPR 3D features), printed beside ours.
pub const REFERENCE_MACRO_F1: [(&str, f64); 2] = [("2D", 0.375), ("3D", 0.399)];

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

/// One feature set's cross-validated results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSetResult {
    /// "2D", "3D" or "2D+3D".
    pub name: String,
    pub features: Vec<String>,
    pub metrics: Metrics,
    /// Out-of-fold prediction per cell (class names), in [`Report::cells`] order.
    pub predictions: Vec<String>,
}

/// Cells per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassCount {
    pub class: String,
    pub cells: usize,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    /// Where the features came from: the run's records or a dataset's ground truth.
    pub source: String,
    pub level: Level,
    /// The labelled cells classified, sorted.
    pub cells: Vec<String>,
    pub truth: Vec<String>,
    /// Cells left out for having no label.
    pub unlabelled_cells: usize,
    pub classes: Vec<ClassCount>,
    pub cv: CvConfig,
    pub imbalance: String,
    pub feature_sets: Vec<FeatureSetResult>,
    pub reference_macro_f1: Vec<(String, f64)>,
    pub seconds: f64,
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

/// The feature sets of the study: column prefixes of each.
pub fn feature_sets() -> [(&'static str, Vec<&'static str>); 3] {
    [
        ("2D", vec![table::PREFIX_2D]),
        ("3D", vec![table::PREFIX_3D_MEAN]),
        ("2D+3D", vec![table::PREFIX_2D, table::PREFIX_3D_MEAN]),
    ]
}

/// Cross-validates a random forest on each feature set of `table`. Compute-heavy (seconds to a
/// minute on 2 cores): call it from a blocking thread, never on the async runtime.
pub fn build(
    run_id: &str,
    source: &str,
    table: &FeatureTable,
    level: Level,
    cv: CvConfig,
) -> Result<Report, ReportError> {
    let started = std::time::Instant::now();
    let labels: Vec<Option<String>> = match level {
        Level::Class => table.class.clone(),
        // Cells without a sub-class keep their class: 12 labels on the RBC dataset.
        Level::Subclass => {
            table.subclass.iter().zip(&table.class).map(|(s, c)| s.clone().or_else(|| c.clone())).collect()
        }
    };
    let labelled: Vec<usize> = (0..table.cells.len()).filter(|&i| labels[i].is_some()).collect();
    let mut class_names: Vec<String> = labelled.iter().filter_map(|&i| labels[i].clone()).collect();
    class_names.sort();
    class_names.dedup();
    if labelled.len() < cv.folds || class_names.len() < 2 {
        return Err(ReportError::TooFewLabelled {
            labelled: labelled.len(),
            classes: class_names.len(),
            folds: cv.folds,
            level: if level == Level::Class { "class" } else { "subclass" },
        });
    }
    let truth_names: Vec<String> = labelled.iter().filter_map(|&i| labels[i].clone()).collect();
    let y: Vec<usize> = truth_names.iter().map(|c| class_names.binary_search(c).unwrap_or(0)).collect();
    let classes = class_names
        .iter()
        .enumerate()
        .map(|(k, c)| ClassCount { class: c.clone(), cells: y.iter().filter(|&&v| v == k).count() })
        .collect();

    let mut results = Vec::new();
    for (name, prefixes) in feature_sets() {
        let columns = table.columns_with(&prefixes);
        if columns.is_empty() {
            continue;
        }
        let x = table.dense(&labelled, &columns);
        let predicted = cross_val_predict(&x, &y, class_names.len(), &cv);
        results.push(FeatureSetResult {
            name: name.to_string(),
            features: columns.iter().map(|&c| table.columns[c].clone()).collect(),
            metrics: evaluate(&class_names, &y, &predicted),
            predictions: predicted.iter().map(|&p| class_names[p].clone()).collect(),
        });
    }
    Ok(Report {
        run_id: run_id.to_string(),
        source: source.to_string(),
        level,
        cells: labelled.iter().map(|&i| table.cells[i].clone()).collect(),
        truth: truth_names,
        unlabelled_cells: table.cells.len() - labelled.len(),
        classes,
        cv,
        imbalance: IMBALANCE.to_string(),
        feature_sets: results,
        reference_macro_f1: REFERENCE_MACRO_F1.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The summary printed by `dispr-coordinator report`: macro F1 per feature set beside the
/// reference study's, then per-class F1.
pub fn summary(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} labelled cells in {} classes ({}-fold stratified CV, random forest {} trees, depth {}, seed {}; {}s)",
        report.cells.len(),
        report.classes.len(),
        report.cv.folds,
        report.cv.forest.trees,
        report.cv.forest.max_depth,
        report.cv.forest.seed,
        report.seconds.round()
    );
    let _ = writeln!(
        s,
        "\n{:<8} {:>9} {:>9} {:>9} {:>22}",
        "features", "columns", "macro F1", "accuracy", "reference macro F1"
    );
    for r in &report.feature_sets {
        let reference = report
            .reference_macro_f1
            .iter()
            .find(|(k, _)| *k == r.name)
            .map(|(_, v)| format!("{v:.3}"))
            .unwrap_or("-".into());
        let _ = writeln!(
            s,
            "{:<8} {:>9} {:>9.3} {:>9.3} {:>22}",
            r.name,
            r.features.len(),
            r.metrics.macro_f1,
            r.metrics.accuracy,
            reference
        );
    }
    let _ = write!(s, "\n{:<24} {:>7}", "F1 per class", "cells");
    for r in &report.feature_sets {
        let _ = write!(s, " {:>7}", r.name);
    }
    s.push('\n');
    for (k, c) in report.classes.iter().enumerate() {
        let _ = write!(s, "{:<24} {:>7}", c.class, c.cells);
        for r in &report.feature_sets {
            let _ = write!(s, " {:>7.3}", r.metrics.per_class[k].f1);
        }
        s.push('\n');
    }
    s
}

/// Files of a report as `(name, bytes)`, and warnings about files left out.
pub type ReportFiles = (Vec<(String, Vec<u8>)>, Vec<String>);

/// The report's files, `(name under report/, bytes)`: report.json, summary.txt, metrics.csv
/// (per class and set), confusion_<set>.csv, predictions.csv, features.csv and the PNG plots.
/// A plot that cannot be drawn (no usable font, say) is left out with a warning in `warnings`.
pub fn files(report: &Report, table: &FeatureTable) -> Result<ReportFiles, anyhow::Error> {
    let mut out = vec![
        ("report.json".to_string(), serde_json::to_vec_pretty(report)?),
        ("summary.txt".to_string(), summary(report).into_bytes()),
        ("features.csv".to_string(), table.to_csv()?),
    ];

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["feature_set", "class", "precision", "recall", "f1", "support"])?;
    for r in &report.feature_sets {
        for c in &r.metrics.per_class {
            let row = [
                r.name.clone(),
                c.class.clone(),
                c.precision.to_string(),
                c.recall.to_string(),
                c.f1.to_string(),
                c.support.to_string(),
            ];
            w.write_record(&row)?;
        }
        let row = [
            r.name.clone(),
            "macro".into(),
            String::new(),
            String::new(),
            r.metrics.macro_f1.to_string(),
            report.cells.len().to_string(),
        ];
        w.write_record(&row)?;
    }
    out.push(("metrics.csv".into(), w.into_inner().map_err(|e| e.into_error())?));

    for r in &report.feature_sets {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["true \\ predicted".to_string()];
        header.extend(report.classes.iter().map(|c| c.class.clone()));
        w.write_record(&header)?;
        for (k, row) in r.metrics.confusion.iter().enumerate() {
            let mut rec = vec![report.classes[k].class.clone()];
            rec.extend(row.iter().map(|v| v.to_string()));
            w.write_record(&rec)?;
        }
        out.push((
            format!("confusion_{}.csv", file_tag(&r.name)),
            w.into_inner().map_err(|e| e.into_error())?,
        ));
    }

    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["cell".to_string(), "truth".to_string()];
    header.extend(report.feature_sets.iter().map(|r| format!("predicted_{}", file_tag(&r.name))));
    w.write_record(&header)?;
    for (i, cell) in report.cells.iter().enumerate() {
        let mut rec = vec![cell.clone(), report.truth[i].clone()];
        rec.extend(report.feature_sets.iter().map(|r| r.predictions[i].clone()));
        w.write_record(&rec)?;
    }
    out.push(("predictions.csv".into(), w.into_inner().map_err(|e| e.into_error())?));

    let mut warnings = Vec::new();
    for r in &report.feature_sets {
        let name = format!("confusion_{}.png", file_tag(&r.name));
        match plots::confusion_png(&format!("{} features: confusion matrix", r.name), report, &r.metrics) {
            Ok(png) => out.push((name, png)),
            Err(e) => warnings.push(format!("{name} not drawn: {e}")),
        }
    }
    match plots::f1_png(report) {
        Ok(png) => out.push(("f1_per_class.png".into(), png)),
        Err(e) => warnings.push(format!("f1_per_class.png not drawn: {e}")),
    }
    Ok((out, warnings))
}

/// "2D+3D" -> "2d3d": feature-set names as they appear in file names.
pub fn file_tag(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ForestConfig;
    use dispr_proto::records::{CellFeatures, FeatureMap};
    use dispr_proto::{CellId, RunId, SCHEMA_VERSION};

    /// 3 classes: told apart by a 3D feature only; the 2D feature is noise.
    fn records() -> Vec<CellFeatures> {
        (0..45)
            .map(|i| {
                let class = ["alpha", "beta", "gamma"][i % 3];
                let f2 = FeatureMap::from([("area".to_string(), ((i * 37) % 11) as f64)]);
                let f3 = FeatureMap::from([("volume".to_string(), (i % 3) as f64 * 10.0 + (i % 4) as f64)]);
                CellFeatures {
                    schema_version: SCHEMA_VERSION,
                    run_id: RunId::new("r").unwrap(),
                    cell: CellId::new(format!("{class}{i:03}")).unwrap(),
                    class: Some(class.to_string()),
                    subclass: None,
                    features_2d: f2,
                    samples: vec![],
                    mean_3d: f3.clone(),
                    std_3d: f3.keys().map(|k| (k.clone(), 0.0)).collect(),
                    mean_metrics: None,
                }
            })
            .collect()
    }

    fn cv() -> CvConfig {
        CvConfig { folds: 5, forest: ForestConfig { trees: 30, max_depth: 5, seed: 1 } }
    }

    #[test]
    fn three_feature_sets_are_reported_and_the_informative_one_wins() {
        let table = FeatureTable::from_records(&records());
        assert_eq!(table.columns, vec!["2d_area", "3d_mean_volume", "3d_std_volume"]);
        let report = build("r", "test", &table, Level::Class, cv()).unwrap();
        let names: Vec<_> = report.feature_sets.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["2D", "3D", "2D+3D"]);
        let f1 = |i: usize| report.feature_sets[i].metrics.macro_f1;
        assert_eq!(f1(1), 1.0, "the 3D feature separates the classes");
        assert!(f1(0) < 0.8, "the 2D feature is noise: {}", f1(0));
        assert_eq!(report.classes.iter().map(|c| c.cells).sum::<usize>(), 45);
        let text = summary(&report);
        assert!(text.contains("0.375") && text.contains("gamma"), "{text}");
    }

    #[test]
    fn files_hold_json_csv_and_png() {
        let table = FeatureTable::from_records(&records());
        let report = build("r", "test", &table, Level::Class, cv()).unwrap();
        let (files, warnings) = files(&report, &table).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let get =
            |name: &str| &files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} missing")).1;
        let back: Report = serde_json::from_slice(get("report.json")).unwrap();
        assert_eq!(back, report);
        let csv = String::from_utf8(get("features.csv").clone()).unwrap();
        assert_eq!(csv.lines().count(), 46);
        assert!(csv.starts_with("cell,class,subclass,samples,2d_area,3d_mean_volume,3d_std_volume"));
        for png in ["confusion_2d.png", "confusion_3d.png", "confusion_2d3d.png", "f1_per_class.png"] {
            assert!(get(png).starts_with(b"\x89PNG"), "{png}");
        }
        let metrics = String::from_utf8(get("metrics.csv").clone()).unwrap();
        assert!(metrics.contains("3D,macro,,,1,45"), "{metrics}");
    }

    #[test]
    fn subclass_level_keeps_the_class_where_there_is_no_subclass() {
        let mut recs = records();
        for (i, r) in recs.iter_mut().enumerate().filter(|(_, r)| r.class.as_deref() == Some("alpha")) {
            r.subclass = Some(format!("alpha_{}", i % 2));
        }
        let report = build("r", "test", &FeatureTable::from_records(&recs), Level::Subclass, cv()).unwrap();
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
        let err = build("r", "test", &FeatureTable::from_records(&recs), Level::Class, cv())
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 5 labelled cells in at least 2 classes"), "{err}");
    }
}
