//! The per-cell feature table: one row per cell, one column per feature, built from the run's
//! `features/<cell>.json` records. It feeds the classifier and `features.csv`.

use dispr_proto::records::{CellFeatures, FeatureMap};
use std::collections::BTreeSet;

/// Column-name prefixes: the feature set a column belongs to.
pub const PREFIX_2D: &str = "2d_";
pub const PREFIX_3D_MEAN: &str = "3d_mean_";
pub const PREFIX_3D_STD: &str = "3d_std_";
pub const PREFIX_METRIC: &str = "metric_mean_";

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
    /// The table of `records`, sorted by cell id; columns are the union of all records'
    /// features: 2D, then 3D means, 3D standard deviations and mean reconstruction metrics.
    pub fn from_records(records: &[CellFeatures]) -> Self {
        let mut records: Vec<&CellFeatures> = records.iter().collect();
        records.sort_by(|a, b| a.cell.cmp(&b.cell));
        type Group = (&'static str, fn(&CellFeatures) -> Option<&FeatureMap>);
        let groups: [Group; 4] = [
            (PREFIX_2D, |r| Some(&r.features_2d)),
            (PREFIX_3D_MEAN, |r| Some(&r.mean_3d)),
            (PREFIX_3D_STD, |r| Some(&r.std_3d)),
            (PREFIX_METRIC, |r| r.mean_metrics.as_ref()),
        ];
        let mut columns = Vec::new();
        for (prefix, get) in &groups {
            let names: BTreeSet<&String> =
                records.iter().filter_map(|r| get(r)).flat_map(|m| m.keys()).collect();
            columns.extend(names.into_iter().map(|n| format!("{prefix}{n}")));
        }
        let values = records
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
        FeatureTable {
            cells: records.iter().map(|r| r.cell.to_string()).collect(),
            class: records.iter().map(|r| r.class.clone()).collect(),
            subclass: records.iter().map(|r| r.subclass.clone()).collect(),
            samples: records.iter().map(|r| r.samples.len()).collect(),
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
