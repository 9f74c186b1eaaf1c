//! The per-cell feature table: one row per cell, one column per feature, built from the run's
//! `features/<cell>.json` records and, where the dataset has ground truth, the 3D features of the
//! true shapes. It feeds the classifier, `features.csv` and `features.parquet`.
//!
//! A run of a million cells has a million rows of about a hundred features: the values are one
//! flat row-major `f64` array (NaN where a record lacks a feature: features are finite by
//! contract, so NaN never stands for a value), filled one record at a time by [`TableBuilder`]
//! while the records stream in, so the report never holds the parsed records themselves (their
//! named maps took about 40 KB a cell).

use dispr_proto::records::{CellFeatures, FeatureMap};
use std::collections::BTreeMap;

/// Column-name prefixes: the feature set a column belongs to.
pub const PREFIX_2D: &str = "2d_";
pub const PREFIX_3D_MEAN: &str = "3d_mean_";
pub const PREFIX_3D_STD: &str = "3d_std_";
pub const PREFIX_METRIC: &str = "metric_mean_";
/// 3D features of the cell's true shape (`obj/`), the ceiling predicted shapes are measured by.
pub const PREFIX_TRUE_3D: &str = "true_3d_";

/// The column groups in table order; a column is its group's prefix and a feature name, and the
/// columns of a group are sorted by name.
const GROUPS: [&str; 6] = [PREFIX_2D, PREFIX_3D_MEAN, PREFIX_3D_STD, PREFIX_METRIC, PREFIX_TRUE_3D, ""];
const G_2D: usize = 0;
const G_MEAN: usize = 1;
const G_STD: usize = 2;
const G_METRIC: usize = 3;
const G_TRUE: usize = 4;
/// [`TableBuilder::push_plain`]'s columns.
const G_PLAIN: usize = 5;

/// Features of every cell, as a dense table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureTable {
    pub cells: Vec<String>,
    pub class: Vec<Option<String>>,
    pub subclass: Vec<Option<String>>,
    pub samples: Vec<usize>,
    pub columns: Vec<String>,
    /// Row-major, `columns.len()` values a row; NaN where the cell's record lacks the feature.
    values: Vec<f64>,
}

/// Builds a [`FeatureTable`] one cell at a time; columns are the union of what the cells have,
/// in group order and by name within a group, whatever order the cells come in.
#[derive(Debug, Default)]
pub struct TableBuilder {
    /// (group, feature name), sorted: the columns so far.
    columns: Vec<(usize, String)>,
    values: Vec<f64>,
    cells: Vec<String>,
    class: Vec<Option<String>>,
    subclass: Vec<Option<String>>,
    samples: Vec<usize>,
}

impl TableBuilder {
    /// Adds a row: the cell, its labels and samples, and its features as (group, map) pairs.
    fn push(
        &mut self,
        cell: String,
        class: Option<String>,
        subclass: Option<String>,
        samples: usize,
        groups: &[(usize, &FeatureMap)],
    ) {
        let mut row = vec![f64::NAN; self.columns.len()];
        // Records of one run have the same features: the next column is nearly always the next
        // in order, so look there first and search only when it is not.
        let mut hint = 0;
        for (group, map) in groups {
            for (name, &value) in map.iter() {
                let at = if self.columns.get(hint).is_some_and(|(g, n)| g == group && n == name) {
                    hint
                } else {
                    match self.columns.binary_search_by(|(g, n)| (g, n.as_str()).cmp(&(group, name.as_str())))
                    {
                        Ok(at) => at,
                        Err(at) => {
                            self.insert_column(at, *group, name);
                            row.insert(at, f64::NAN);
                            at
                        }
                    }
                };
                row[at] = value;
                hint = at + 1;
            }
        }
        self.values.extend_from_slice(&row);
        self.cells.push(cell);
        self.class.push(class);
        self.subclass.push(subclass);
        self.samples.push(samples);
    }

    /// A column the earlier rows did not have (NaN there): every row widens by one. Rare (the
    /// first record, or a run whose records differ), so a copy of the values is fine.
    fn insert_column(&mut self, at: usize, group: usize, name: &str) {
        let width = self.columns.len();
        if width == 0 {
            self.values = vec![f64::NAN; self.cells.len()];
        } else if !self.cells.is_empty() {
            let mut values = Vec::with_capacity(self.cells.len() * (width + 1));
            for row in self.values.chunks_exact(width) {
                values.extend_from_slice(&row[..at]);
                values.push(f64::NAN);
                values.extend_from_slice(&row[at..]);
            }
            self.values = values;
        }
        self.columns.insert(at, (group, name.to_string()));
    }

    /// Adds the run's record of a cell (predicted shapes): 2D features, 3D means and standard
    /// deviations over the samples, and mean reconstruction metrics where it has them.
    pub fn push_record(&mut self, r: &CellFeatures) {
        let mut groups = vec![(G_2D, &r.features_2d), (G_MEAN, &r.mean_3d), (G_STD, &r.std_3d)];
        if let Some(m) = &r.mean_metrics {
            groups.push((G_METRIC, m));
        }
        self.push(r.cell.to_string(), r.class.clone(), r.subclass.clone(), r.samples.len(), &groups);
    }

    /// Room for `rows` more rows of the present width: a table grown by doubling would hold up
    /// to three times its size while it copies.
    pub fn reserve(&mut self, rows: usize) {
        self.values.reserve_exact(rows * self.columns.len());
        self.cells.reserve_exact(rows);
        self.class.reserve_exact(rows);
        self.subclass.reserve_exact(rows);
        self.samples.reserve_exact(rows);
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Adds a row of one unnamed group (column names without a prefix): the coefficients of
    /// variation of a cell's features, beside the table.
    pub fn push_plain(&mut self, cell: String, map: &FeatureMap) {
        self.push(cell, None, None, 0, &[(G_PLAIN, map)]);
    }

    /// The table, its rows sorted by cell id (a copy only when they came in another order).
    pub fn finish(self) -> FeatureTable {
        let width = self.columns.len();
        let columns = self.columns.into_iter().map(|(g, n)| format!("{}{n}", GROUPS[g])).collect();
        let sorted = self.cells.windows(2).all(|w| w[0] <= w[1]);
        let mut table = FeatureTable {
            cells: self.cells,
            class: self.class,
            subclass: self.subclass,
            samples: self.samples,
            columns,
            values: self.values,
        };
        if !sorted {
            let mut order: Vec<usize> = (0..table.cells.len()).collect();
            order.sort_by(|&a, &b| table.cells[a].cmp(&table.cells[b]));
            let pick = |v: &[Option<String>]| order.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
            table.values = order.iter().flat_map(|&i| table.row_values(i, width).iter().copied()).collect();
            table.class = pick(&table.class);
            table.subclass = pick(&table.subclass);
            table.samples = order.iter().map(|&i| table.samples[i]).collect();
            table.cells = order.iter().map(|&i| table.cells[i].clone()).collect();
        }
        table
    }
}

impl FeatureTable {
    /// A table from its parts: `values[cell][column]`, `None` where a cell lacks the feature.
    pub fn new(
        cells: Vec<String>,
        class: Vec<Option<String>>,
        subclass: Vec<Option<String>>,
        samples: Vec<usize>,
        columns: Vec<String>,
        values: Vec<Vec<Option<f64>>>,
    ) -> Self {
        let values = values.iter().flat_map(|row| row.iter().map(|v| v.unwrap_or(f64::NAN))).collect();
        FeatureTable { cells, class, subclass, samples, columns, values }
    }

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
        let mut builder = TableBuilder::default();
        for r in predicted {
            builder.push_record(r);
        }
        builder.finish().with_truth(truth)
    }

    /// This table (a run's predicted shapes, from [`TableBuilder`]) joined with the `truth`
    /// records of the same cells, as [`FeatureTable::from_sources`] describes; without rows, the
    /// table of the truth alone (its 2D features and its true 3D ones).
    pub fn with_truth(self, truth: &[CellFeatures]) -> Self {
        if truth.is_empty() {
            return self;
        }
        let mut builder = TableBuilder::default();
        if self.cells.is_empty() {
            for t in truth {
                let groups = [(G_2D, &t.features_2d), (G_TRUE, &t.mean_3d)];
                builder.push(t.cell.to_string(), t.class.clone(), t.subclass.clone(), 0, &groups);
            }
            return builder.finish();
        }
        let truth_of: BTreeMap<&str, &CellFeatures> = truth.iter().map(|r| (r.cell.as_str(), r)).collect();
        // The row's own columns back into maps by group: a copy per row, only with ground truth.
        for i in 0..self.cells.len() {
            let Some(t) = truth_of.get(self.cells[i].as_str()) else { continue };
            let mut maps: [FeatureMap; 4] = Default::default();
            for (c, name) in self.columns.iter().enumerate() {
                let Some(v) = self.value(i, c) else { continue };
                if let Some((g, feature)) =
                    GROUPS.iter().enumerate().find_map(|(g, p)| name.strip_prefix(p).map(|f| (g, f)))
                    && g < G_TRUE
                {
                    maps[g].insert(feature.to_string(), v);
                }
            }
            let mut groups: Vec<(usize, &FeatureMap)> = maps.iter().enumerate().collect();
            groups.push((G_TRUE, &t.mean_3d));
            builder.push(
                self.cells[i].clone(),
                self.class[i].clone(),
                self.subclass[i].clone(),
                self.samples[i],
                &groups,
            );
        }
        builder.finish()
    }

    fn row_values(&self, i: usize, width: usize) -> &[f64] {
        &self.values[i * width..(i + 1) * width]
    }

    /// The value of cell `i` in column `c`; `None` where its record lacks the feature.
    pub fn value(&self, i: usize, c: usize) -> Option<f64> {
        let v = self.values[i * self.columns.len() + c];
        (!v.is_nan()).then_some(v)
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
                let mut v: Vec<f64> = (0..self.cells.len()).filter_map(|i| self.value(i, c)).collect();
                v.sort_by(f64::total_cmp);
                if v.is_empty() { 0.0 } else { v[v.len() / 2] }
            })
            .collect();
        cells
            .iter()
            .map(|&i| columns.iter().zip(&medians).map(|(&c, &m)| self.value(i, c).unwrap_or(m)).collect())
            .collect()
    }

    /// `features.csv` into `out`: cell, class, subclass, samples, then every column (empty where
    /// missing). Row by row, so a million cells' table is written without a second copy.
    pub fn write_csv<W: std::io::Write>(&self, out: W) -> Result<W, csv::Error> {
        let mut w = csv::Writer::from_writer(out);
        let mut header = vec!["cell".to_string(), "class".into(), "subclass".into(), "samples".into()];
        header.extend(self.columns.iter().cloned());
        w.write_record(&header)?;
        let mut row: Vec<String> = Vec::with_capacity(header.len());
        for i in 0..self.cells.len() {
            row.clear();
            row.push(self.cells[i].clone());
            row.push(self.class[i].clone().unwrap_or_default());
            row.push(self.subclass[i].clone().unwrap_or_default());
            row.push(self.samples[i].to_string());
            row.extend(
                (0..self.columns.len()).map(|c| self.value(i, c).map(|x| x.to_string()).unwrap_or_default()),
            );
            w.write_record(&row)?;
        }
        w.into_inner().map_err(|e| e.into_error().into())
    }

    /// `features.csv` in memory (small tables; [`FeatureTable::write_csv`] streams).
    pub fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        self.write_csv(Vec::new())
    }
}
