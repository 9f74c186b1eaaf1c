//! The per-cell feature table: one row per cell, one column per feature, built from the run's
//! `features/<cell>.json` records and, where the dataset has ground truth, the 3D features of the
//! true shapes. It feeds the classifier and `features.csv`.

use dispr_proto::records::{CellFeatures, FeatureMap};
use std::collections::{BTreeMap, BTreeSet};

/// Column-name prefixes: the feature set a column belongs to.
pub const PREFIX_2D: &str = "2d_";
pub const PREFIX_3D_MEAN: &str = "3d_mean_";
pub const PREFIX_3D_STD: &str = "3d_std_";
pub const PREFIX_METRIC: &str = "metric_mean_";
/// 3D features of the cell's true shape (`obj/`), the ceiling predicted shapes are measured by.
pub const PREFIX_TRUE_3D: &str = "true_3d_";

/// One row's records: the run's (predicted shapes) and the ground truth's, either or both.
struct Row<'a> {
    predicted: Option<&'a CellFeatures>,
    truth: Option<&'a CellFeatures>,
}

impl<'a> Row<'a> {
    /// The record that names the cell, its label and its 2D features.
    fn primary(&self) -> Option<&'a CellFeatures> {
        self.predicted.or(self.truth)
    }
}

/// Features of every cell, as a dense table.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    pub cells: Vec<String>,
    pub class: Vec<Option<String>>,
    pub subclass: Vec<Option<String>>,
    pub samples: Vec<usize>,
    pub columns: Vec<String>,
    /// `values[cell][column]`; `None` where the cell's record lacks that feature.
    pub values: Vec<Vec<Option<f64>>>,
}

impl FeatureTable {
    /// The table of a run's `records`, sorted by cell id; columns are the union of all records'
    /// features: 2D, then 3D means, 3D standard deviations and mean reconstruction metrics.
    pub fn from_records(records: &[CellFeatures]) -> Self {
        Self::from_sources(records, &[])
    }

    /// The table of a run's `predicted` records beside the `truth` records of the same cells
    /// (features of the dataset's true shapes, see [`super::ground_truth`]), whose 3D means become
    /// the `true_3d_` columns. With both, only the cells in both are rows (so that every row has
    /// every feature set); with only one, its cells. Sorted by cell id.
    pub fn from_sources(predicted: &[CellFeatures], truth: &[CellFeatures]) -> Self {
        let truth_of: BTreeMap<&str, &CellFeatures> = truth.iter().map(|r| (r.cell.as_str(), r)).collect();
        let mut rows: Vec<Row<'_>> = if predicted.is_empty() {
            truth.iter().map(|t| Row { predicted: None, truth: Some(t) }).collect()
        } else {
            predicted
                .iter()
                .filter_map(|p| {
                    let t = truth_of.get(p.cell.as_str()).copied();
                    (truth.is_empty() || t.is_some()).then_some(Row { predicted: Some(p), truth: t })
                })
                .collect()
        };
        rows.sort_by(|a, b| a.primary().map(|r| &r.cell).cmp(&b.primary().map(|r| &r.cell)));
        type Group<'a> = (&'static str, fn(&Row<'a>) -> Option<&'a FeatureMap>);
        let groups: [Group<'_>; 5] = [
            (PREFIX_2D, |r| r.primary().map(|p| &p.features_2d)),
            (PREFIX_3D_MEAN, |r| r.predicted.map(|p| &p.mean_3d)),
            (PREFIX_3D_STD, |r| r.predicted.map(|p| &p.std_3d)),
            (PREFIX_METRIC, |r| r.predicted.and_then(|p| p.mean_metrics.as_ref())),
            (PREFIX_TRUE_3D, |r| r.truth.map(|t| &t.mean_3d)),
        ];
        let mut columns = Vec::new();
        for (prefix, get) in &groups {
            let names: BTreeSet<&String> = rows.iter().filter_map(get).flat_map(|m| m.keys()).collect();
            columns.extend(names.into_iter().map(|n| format!("{prefix}{n}")));
        }
        let values = rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|col| {
                        groups.iter().find_map(|(prefix, get)| {
                            let name = col.strip_prefix(prefix)?;
                            get(r)?.get(name).copied()
                        })
                    })
                    .collect()
            })
            .collect();
        let primary: Vec<&CellFeatures> = rows.iter().filter_map(Row::primary).collect();
        FeatureTable {
            cells: primary.iter().map(|r| r.cell.to_string()).collect(),
            class: primary.iter().map(|r| r.class.clone()).collect(),
            subclass: primary.iter().map(|r| r.subclass.clone()).collect(),
            samples: rows.iter().map(|r| r.predicted.map_or(0, |p| p.samples.len())).collect(),
            columns,
            values,
        }
    }

    /// Indices of the columns whose names start with any of `prefixes`.
    pub fn columns_with(&self, prefixes: &[&str]) -> Vec<usize> {
        (0..self.columns.len()).filter(|&c| prefixes.iter().any(|p| self.columns[c].starts_with(p))).collect()
    }

    /// The rows of `cells` restricted to `columns`, a missing value replaced by the column's
    /// median over all cells that have it (0 where none has it): the forest needs dense input
    /// and a median keeps an odd cell from moving a split.
    pub fn dense(&self, cells: &[usize], columns: &[usize]) -> Vec<Vec<f64>> {
        let medians: Vec<f64> = columns
            .iter()
            .map(|&c| {
                let mut v: Vec<f64> = self.values.iter().filter_map(|row| row[c]).collect();
                v.sort_by(f64::total_cmp);
                if v.is_empty() { 0.0 } else { v[v.len() / 2] }
            })
            .collect();
        cells
            .iter()
            .map(|&i| columns.iter().zip(&medians).map(|(&c, &m)| self.values[i][c].unwrap_or(m)).collect())
            .collect()
    }

    /// `features.csv`: cell, class, subclass, samples, then every column (empty where missing).
    pub fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["cell".to_string(), "class".into(), "subclass".into(), "samples".into()];
        header.extend(self.columns.iter().cloned());
        w.write_record(&header)?;
        for i in 0..self.cells.len() {
            let mut row = vec![
                self.cells[i].clone(),
                self.class[i].clone().unwrap_or_default(),
                self.subclass[i].clone().unwrap_or_default(),
                self.samples[i].to_string(),
            ];
            row.extend(self.values[i].iter().map(|v| v.map(|x| x.to_string()).unwrap_or_default()));
            w.write_record(&row)?;
        }
        w.into_inner().map_err(|e| e.into_error().into())
    }
}
