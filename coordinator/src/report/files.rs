//! The files of a report under `runs/<run>/report/`: report.json (the [`Report`] itself),
//! summary.txt (the text rendering of its [`Tables`](super::Tables), also what `report` and `demo`
//! print), the
//! CSV tables and the PNG plots. report.html (the run page) renders the same tables.

use super::{Report, file_tag, plots};
use std::fmt::Write as _;

/// The summary printed by `dispr-coordinator report` and `demo` (and summary.txt): the macro F1
/// table with the ceiling rows and the recovered share, F1 per class, the reconstruction against
/// the floor, the uncertainty of the samples and the unclassified cells.
pub fn summary(report: &Report) -> String {
    let tables = report.tables();
    let mut s = String::new();
    let _ = writeln!(s, "{} ({:.0} s)", report.protocol(), report.seconds);
    if !report.minority_classes.is_empty() {
        let _ = writeln!(s, "minority classes: {}", report.minority_classes.join(", "));
    }
    let _ = writeln!(
        s,
        "\n{:<26} {:>7} {:>15} {:>15} {:>15} {:>9}",
        "features", "columns", "macro F1", "minority F1", "accuracy", "reference"
    );
    for r in &tables.results {
        let name = if r.ceiling { format!("{} (ceiling)", r.name) } else { r.name.clone() };
        let _ = writeln!(
            s,
            "{:<26} {:>7} {:>15} {:>15} {:>15} {:>9}",
            name, r.columns, r.macro_f1, r.minority_macro_f1, r.accuracy, r.reference
        );
    }
    if let Some(line) = &tables.recovered {
        let _ = writeln!(s, "\n{line}");
    }
    let _ = write!(s, "\n{:<24} {:>6}", format!("F1 per class ({}x CV)", report.cv.repeats), "cells");
    for r in &tables.results {
        let _ = write!(s, " {:>18}", r.name);
    }
    s.push('\n');
    for c in &tables.per_class {
        let _ = write!(s, "{:<24} {:>6}", c.class, c.cells);
        for set in &c.per_set {
            let _ = write!(s, " {:>18}", set.f1);
        }
        s.push('\n');
    }
    if let Some(rec) = &report.reconstruction {
        let _ = writeln!(
            s,
            "\nReconstruction against the ground truth (obj > 0), mean per cell; floor: the mask extruded along z"
        );
        let _ = writeln!(
            s,
            "{:<24} {:>6} {:>10} {:>10} {:>12} {:>12} {:>12}",
            "class", "cells", "model IoU", "floor IoU", "model vol.e", "floor vol.e", "model > floor"
        );
        for g in rec.rows() {
            let _ = writeln!(
                s,
                "{:<24} {:>6} {:>10.3} {:>10.3} {:>12.3} {:>12.3} {:>12}",
                g.class,
                g.cells,
                g.model_iou,
                g.floor_iou,
                g.model_volume_error,
                g.floor_volume_error,
                format!("{}/{}", g.model_beats_floor, g.cells)
            );
        }
    }
    if let Some(u) = &report.uncertainty {
        s.push_str(&super::uncertainty::summary(u));
    }
    if !report.unclassified.is_empty() {
        let _ = writeln!(s, "\n{} cell(s) not classified:", report.unclassified.len());
        for u in report.unclassified.iter().take(20) {
            let _ = writeln!(s, "  {}: {}", u.cell, u.reason);
        }
        if report.unclassified.len() > 20 {
            let _ =
                writeln!(s, "  ... and {} more (report.json lists them all)", report.unclassified.len() - 20);
        }
    }
    s
}

/// Files of a report as `(name, bytes)`, and warnings about files left out.
pub type ReportFiles = (Vec<(String, Vec<u8>)>, Vec<String>);

/// The report's files, `(name under report/, bytes)`: report.json, summary.txt, metrics.csv
/// (per class and set: mean and std over the repetitions), confusion_<set>.csv (summed over the
/// repetitions), predictions.csv (first repetition), unclassified.csv, reconstruction.csv (where
/// there is ground truth), features.csv and the PNG plots. A plot that cannot be drawn (no usable
/// font, say) is left out with a warning in `warnings`. (uncertainty.csv and its plots come from
/// [`super::uncertainty::files`], since they are written with or without a classification.)
pub fn files(report: &Report) -> Result<ReportFiles, anyhow::Error> {
    let mut out = vec![
        ("report.json".to_string(), serde_json::to_vec_pretty(report)?),
        ("summary.txt".to_string(), summary(report).into_bytes()),
    ];

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "feature_set",
        "ceiling",
        "class",
        "precision",
        "precision_std",
        "recall",
        "recall_std",
        "f1",
        "f1_std",
        "support",
    ])?;
    for r in &report.feature_sets {
        for c in &r.per_class {
            let row = [
                r.name.clone(),
                r.ceiling.to_string(),
                c.class.clone(),
                c.precision.mean.to_string(),
                c.precision.std.to_string(),
                c.recall.mean.to_string(),
                c.recall.std.to_string(),
                c.f1.mean.to_string(),
                c.f1.std.to_string(),
                c.support.to_string(),
            ];
            w.write_record(&row)?;
        }
        let mut summary_rows = vec![("macro", Some(r.macro_f1), report.cells.len())];
        let minority_cells = report
            .classes
            .iter()
            .filter(|c| report.minority_classes.contains(&c.class))
            .map(|c| c.cells)
            .sum();
        summary_rows.push(("minority macro", r.minority_macro_f1, minority_cells));
        for (what, stat, support) in summary_rows {
            let Some(stat) = stat else { continue };
            let row = [
                r.name.clone(),
                r.ceiling.to_string(),
                what.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                stat.mean.to_string(),
                stat.std.to_string(),
                support.to_string(),
            ];
            w.write_record(&row)?;
        }
    }
    out.push(("metrics.csv".into(), w.into_inner().map_err(|e| e.into_error())?));

    for r in &report.feature_sets {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["true \\ predicted".to_string()];
        header.extend(report.classes.iter().map(|c| c.class.clone()));
        w.write_record(&header)?;
        for (k, row) in r.confusion.iter().enumerate() {
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

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["cell", "reason"])?;
    for u in &report.unclassified {
        w.write_record([&u.cell, &u.reason])?;
    }
    out.push(("unclassified.csv".into(), w.into_inner().map_err(|e| e.into_error())?));

    if let Some(rec) = &report.reconstruction {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "cell",
            "class",
            "model_iou",
            "floor_iou",
            "model_volume_error",
            "floor_volume_error",
        ])?;
        for c in &rec.cells {
            w.write_record([
                c.cell.clone(),
                c.class.clone().unwrap_or_default(),
                c.model_iou.to_string(),
                c.floor_iou.to_string(),
                c.model_volume_error.to_string(),
                c.floor_volume_error.to_string(),
            ])?;
        }
        out.push(("reconstruction.csv".into(), w.into_inner().map_err(|e| e.into_error())?));
    }

    let mut warnings = Vec::new();
    for r in &report.feature_sets {
        let name = format!("confusion_{}.png", file_tag(&r.name));
        let title = format!("{} features: confusion matrix ({} repetitions)", r.name, r.repetitions.len());
        match plots::confusion_png(&title, report, &r.confusion) {
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
