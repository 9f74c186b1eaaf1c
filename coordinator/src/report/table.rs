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

/// Many short strings (a million cells' ids) in one buffer: a `String` each would cost its
/// 24-byte header and an allocation (32 bytes or more) beside its few characters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Names {
    text: String,
    /// Where each string ends in `text`.
    ends: Vec<usize>,
}

impl Names {
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| &self[i])
    }

    /// As [`slice::binary_search`], on names in sorted order.
    pub fn binary_search(&self, name: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self[mid].cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    pub fn is_sorted(&self) -> bool {
        (1..self.len()).all(|i| self[i - 1] <= self[i])
    }

    fn reserve(&mut self, names: usize) {
        let typical = self.text.len().checked_div(self.len()).unwrap_or(0);
        self.text.reserve_exact(names * typical);
        self.ends.reserve_exact(names);
    }

    /// The names in `order` (indices into these).
    fn permuted(&self, order: &[usize]) -> Names {
        let mut out =
            Names { text: String::with_capacity(self.text.len()), ends: Vec::with_capacity(order.len()) };
        for &i in order {
            out.push(&self[i]);
        }
        out
    }
}

impl std::ops::Index<usize> for Names {
    type Output = str;

    fn index(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

impl<S: AsRef<str>> FromIterator<S> for Names {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut names = Names::default();
        for s in iter {
            names.push(s.as_ref());
        }
        names
    }
}

/// An optional label per cell (class or sub-class), each distinct label stored once: a run has
/// a handful of classes and a million cells.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// The distinct labels, in the order first seen.
    names: Vec<String>,
    /// Per cell, its label's index in `names`; [`Labels::NONE`] where it has none.
    codes: Vec<u32>,
    /// `names` back to their indices.
    index: std::collections::HashMap<String, u32>,
}

impl Labels {
    const NONE: u32 = u32::MAX;

    pub fn push(&mut self, label: Option<&str>) {
        let code = match label {
            None => Self::NONE,
            // Cells come in runs of a class: look at the last one's first.
            Some(l) if self.codes.last().is_some_and(|&c| c != Self::NONE && self.names[c as usize] == l) => {
                self.codes[self.codes.len() - 1]
            }
            Some(l) => match self.index.get(l) {
                Some(&c) => c,
                None => {
                    let c = u32::try_from(self.names.len()).ok().filter(|&c| c != Self::NONE).unwrap_or_else(
                        || {
                            // Four billion distinct labels cannot be held anyway.
                            panic!("more than {} distinct labels", Self::NONE)
                        },
                    );
                    self.names.push(l.to_string());
                    self.index.insert(l.to_string(), c);
                    c
                }
            },
        };
        self.codes.push(code);
    }

    /// The label of cell `i`; `None` where it has none.
    pub fn get(&self, i: usize) -> Option<&str> {
        match self.codes[i] {
            Self::NONE => None,
            c => Some(&self.names[c as usize]),
        }
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    fn reserve(&mut self, cells: usize) {
        self.codes.reserve_exact(cells);
    }

    fn permuted(&self, order: &[usize]) -> Labels {
        Labels {
            names: self.names.clone(),
            codes: order.iter().map(|&i| self.codes[i]).collect(),
            index: self.index.clone(),
        }
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<S: AsRef<str>> FromIterator<Option<S>> for Labels {
    fn from_iter<I: IntoIterator<Item = Option<S>>>(iter: I) -> Self {
        let mut labels = Labels::default();
        for s in iter {
            labels.push(s.as_ref().map(AsRef::as_ref));
        }
        labels
    }
}

/// Numbers of the cells by named column: row-major, NaN where a cell lacks the feature. The
/// coefficients of variation of the run's cells are one (rows in the table's order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grid {
    pub columns: Vec<String>,
    values: Vec<f64>,
}

impl Grid {
    /// The value of row `i` in column `c`; `None` where the row lacks it.
    pub fn value(&self, i: usize, c: usize) -> Option<f64> {
        let v = self.values[i * self.columns.len() + c];
        (!v.is_nan()).then_some(v)
    }

    pub(super) fn permuted(&self, order: &[usize]) -> Grid {
        let width = self.columns.len();
        Grid {
            columns: self.columns.clone(),
            values: order
                .iter()
                .flat_map(|&i| self.values[i * width..(i + 1) * width].iter().copied())
                .collect(),
        }
    }
}

/// Builds a [`Grid`] a row at a time; its columns are the union of what the rows have, in group
/// order and by name within a group, whatever order the rows come in.
#[derive(Debug, Default)]
pub struct GridBuilder {
    /// (group, feature name), sorted: the columns so far.
    columns: Vec<(usize, String)>,
    values: Vec<f64>,
    rows: usize,
}

impl GridBuilder {
    /// Adds a row: its features as (group, map) pairs.
    fn push(&mut self, groups: &[(usize, &FeatureMap)]) {
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
        self.rows += 1;
    }

    /// Adds a row of one unnamed group (column names without a prefix): the coefficients of
    /// variation of a cell's features, beside the table.
    pub fn push_plain(&mut self, map: &FeatureMap) {
        self.push(&[(G_PLAIN, map)]);
    }

    /// A column the earlier rows did not have (NaN there): every row widens by one. Rare (the
    /// first record, or a run whose records differ), so a copy of the values is fine.
    fn insert_column(&mut self, at: usize, group: usize, name: &str) {
        let width = self.columns.len();
        if width == 0 {
            self.values = vec![f64::NAN; self.rows];
        } else if self.rows > 0 {
            let mut values = Vec::with_capacity(self.rows * (width + 1));
            for row in self.values.chunks_exact(width) {
                values.extend_from_slice(&row[..at]);
                values.push(f64::NAN);
                values.extend_from_slice(&row[at..]);
            }
            self.values = values;
        }
        self.columns.insert(at, (group, name.to_string()));
    }

    /// Room for `rows` more rows of the present width: a table grown by doubling would hold up
    /// to three times its size while it copies.
    pub fn reserve(&mut self, rows: usize) {
        self.values.reserve_exact(rows * self.columns.len());
    }

    /// The grid, its rows in the order pushed.
    pub fn finish(self) -> Grid {
        Grid {
            columns: self.columns.into_iter().map(|(g, n)| format!("{}{n}", GROUPS[g])).collect(),
            values: self.values,
        }
    }
}

/// Features of every cell, as a dense table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureTable {
    pub cells: Names,
    pub class: Labels,
    pub subclass: Labels,
    pub samples: Vec<u32>,
    pub columns: Vec<String>,
    /// Row-major, `columns.len()` values a row; NaN where the cell's record lacks the feature.
    values: Vec<f64>,
}

/// Builds a [`FeatureTable`] one cell at a time; columns are the union of what the cells have,
/// in group order and by name within a group, whatever order the cells come in.
#[derive(Debug, Default)]
pub struct TableBuilder {
    grid: GridBuilder,
    cells: Names,
    class: Labels,
    subclass: Labels,
    samples: Vec<u32>,
}

impl TableBuilder {
    /// Adds a row: the cell, its labels and samples, and its features as (group, map) pairs.
    fn push(
        &mut self,
        cell: &str,
        class: Option<&str>,
        subclass: Option<&str>,
        samples: u32,
        groups: &[(usize, &FeatureMap)],
    ) {
        self.grid.push(groups);
        self.cells.push(cell);
        self.class.push(class);
        self.subclass.push(subclass);
        self.samples.push(samples);
    }

    /// Adds the run's record of a cell (predicted shapes): 2D features, 3D means and standard
    /// deviations over the samples, and mean reconstruction metrics where it has them.
    pub fn push_record(&mut self, r: &CellFeatures) {
        let mut groups = vec![(G_2D, &r.features_2d), (G_MEAN, &r.mean_3d), (G_STD, &r.std_3d)];
        if let Some(m) = &r.mean_metrics {
            groups.push((G_METRIC, m));
        }
        let samples = u32::try_from(r.samples.len()).unwrap_or(u32::MAX);
        self.push(r.cell.as_str(), r.class.as_deref(), r.subclass.as_deref(), samples, &groups);
    }

    /// Room for `rows` more rows of the present width: a table grown by doubling would hold up
    /// to three times its size while it copies.
    pub fn reserve(&mut self, rows: usize) {
        self.grid.reserve(rows);
        self.cells.reserve(rows);
        self.class.reserve(rows);
        self.samples.reserve_exact(rows);
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The order that sorts the rows by cell id; `None` when they are in order already (a run's
    /// records are read in order).
    pub fn sorting_order(&self) -> Option<Vec<usize>> {
        if self.cells.is_sorted() {
            return None;
        }
        let mut order: Vec<usize> = (0..self.cells.len()).collect();
        order.sort_by(|&a, &b| self.cells[a].cmp(&self.cells[b]));
        Some(order)
    }

    /// The table, its rows in `order` (indices of the rows pushed) or as pushed.
    pub fn finish_in(self, order: Option<&[usize]>) -> FeatureTable {
        let Grid { columns, values } = self.grid.finish();
        let table = FeatureTable {
            cells: self.cells,
            class: self.class,
            subclass: self.subclass,
            samples: self.samples,
            columns,
            values,
        };
        match order {
            None => table,
            Some(order) => {
                let grid = Grid { columns: table.columns, values: table.values }.permuted(order);
                FeatureTable {
                    cells: table.cells.permuted(order),
                    class: table.class.permuted(order),
                    subclass: table.subclass.permuted(order),
                    samples: order.iter().map(|&i| table.samples[i]).collect(),
                    columns: grid.columns,
                    values: grid.values,
                }
            }
        }
    }

    /// The table, its rows sorted by cell id (a copy only when they came in another order).
    pub fn finish(self) -> FeatureTable {
        let order = self.sorting_order();
        self.finish_in(order.as_deref())
    }
}

impl FeatureTable {
    /// A table from its parts: `values[cell][column]`, `None` where a cell lacks the feature.
    pub fn new(
        cells: Vec<String>,
        class: Vec<Option<String>>,
        subclass: Vec<Option<String>>,
        samples: Vec<u32>,
        columns: Vec<String>,
        values: Vec<Vec<Option<f64>>>,
    ) -> Self {
        let values = values.iter().flat_map(|row| row.iter().map(|v| v.unwrap_or(f64::NAN))).collect();
        FeatureTable {
            cells: cells.into_iter().collect(),
            class: class.into_iter().collect(),
            subclass: subclass.into_iter().collect(),
            samples,
            columns,
            values,
        }
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
        let table = builder.finish();
        table.joined_with(truth).unwrap_or(table)
    }

    /// This table (a run's predicted shapes, from [`TableBuilder`]) joined with the `truth`
    /// records of the same cells, as [`FeatureTable::from_sources`] describes; without rows, the
    /// table of the truth alone (its 2D features and its true 3D ones). `None` without truth:
    /// this table is the report's as it is (a new table is made only with ground truth, which
    /// small runs have).
    pub fn joined_with(&self, truth: &[CellFeatures]) -> Option<Self> {
        if truth.is_empty() {
            return None;
        }
        let mut builder = TableBuilder::default();
        if self.cells.is_empty() {
            for t in truth {
                let groups = [(G_2D, &t.features_2d), (G_TRUE, &t.mean_3d)];
                builder.push(t.cell.as_str(), t.class.as_deref(), t.subclass.as_deref(), 0, &groups);
            }
            return Some(builder.finish());
        }
        let truth_of: BTreeMap<&str, &CellFeatures> = truth.iter().map(|r| (r.cell.as_str(), r)).collect();
        // The row's own columns back into maps by group: a copy per row, only with ground truth.
        for i in 0..self.cells.len() {
            let Some(t) = truth_of.get(&self.cells[i]) else { continue };
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
            builder.push(&self.cells[i], self.class.get(i), self.subclass.get(i), self.samples[i], &groups);
        }
        Some(builder.finish())
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
            row.push(self.cells[i].to_string());
            row.push(self.class.get(i).unwrap_or_default().to_string());
            row.push(self.subclass.get(i).unwrap_or_default().to_string());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_buffer_read_back_by_index() {
        let names: Names = ["b2", "", "a10", "c"].into_iter().collect();
        assert_eq!(names.len(), 4);
        assert_eq!(names.iter().collect::<Vec<_>>(), ["b2", "", "a10", "c"]);
        assert_eq!((&names[0], &names[1], names.get(3), names.get(4)), ("b2", "", Some("c"), None));
        assert!(!names.is_sorted());
        let sorted = names.permuted(&[1, 2, 0, 3]);
        assert!(sorted.is_sorted());
        assert_eq!(sorted.binary_search("a10"), Ok(1));
        assert_eq!(sorted.binary_search("b"), Err(2));
        assert_eq!(sorted.binary_search("d"), Err(4));
        assert_eq!(Names::default().binary_search("x"), Err(0));
    }

    #[test]
    fn labels_are_interned_and_compare_by_value() {
        let labels: Labels =
            [Some("round"), None, Some("flat"), Some("round"), Some("round")].into_iter().collect();
        assert_eq!(labels.names, ["round", "flat"], "each label once");
        assert_eq!(
            labels.iter().collect::<Vec<_>>(),
            [Some("round"), None, Some("flat"), Some("round"), Some("round")]
        );
        // The same labels interned in another order are equal.
        let other: Labels = [None, Some("flat")].into_iter().collect::<Labels>();
        let permuted = labels.permuted(&[1, 2]);
        assert_eq!(permuted, other);
        assert_ne!(labels.permuted(&[2, 1]), other);
    }

    /// Rows pushed out of order come out sorted by id, every column with them; a column that
    /// appears late is missing (NaN) in the rows before it.
    #[test]
    fn the_table_is_sorted_by_cell_and_widens_for_late_columns() {
        let map = |kv: &[(&str, f64)]| kv.iter().map(|(k, v)| (k.to_string(), *v)).collect::<FeatureMap>();
        let mut b = TableBuilder::default();
        b.push("c2", Some("x"), None, 3, &[(G_2D, &map(&[("area", 2.0)]))]);
        b.push("a1", None, Some("s"), 1, &[(G_2D, &map(&[("area", 1.0), ("perimeter", 10.0)]))]);
        let t = b.finish();
        assert_eq!(t.cells.iter().collect::<Vec<_>>(), ["a1", "c2"]);
        assert_eq!(t.class.iter().collect::<Vec<_>>(), [None, Some("x")]);
        assert_eq!(t.subclass.iter().collect::<Vec<_>>(), [Some("s"), None]);
        assert_eq!(t.samples, [1, 3]);
        assert_eq!(t.columns, ["2d_area", "2d_perimeter"]);
        assert_eq!(
            (t.value(0, 0), t.value(0, 1), t.value(1, 0), t.value(1, 1)),
            (Some(1.0), Some(10.0), Some(2.0), None)
        );
        let csv = String::from_utf8(t.to_csv().unwrap()).unwrap();
        assert_eq!(csv, "cell,class,subclass,samples,2d_area,2d_perimeter\na1,,s,1,1,10\nc2,x,,3,2,\n");
    }
}
