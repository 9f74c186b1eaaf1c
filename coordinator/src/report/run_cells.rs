//! A run's feature records as the report keeps them: read as a stream, each record parsed on a
//! blocking thread and folded at once into the feature table (one row of numbers, with the
//! cell's id, labels and samples), its coefficients of variation and its uncertainty scalars,
//! then dropped. A parsed record with its named maps took about 40 KB; what is kept is about
//! 1.3 KB a real-sized cell (about 108 features and 39 CVs as `f64`, the id once in a shared
//! buffer, the labels interned), so a million-cell run is reported in well under 2 GB. The few
//! records whose cells are drawn are read again when they are drawn.

use super::table::{FeatureTable, Grid, GridBuilder, TableBuilder};
use anyhow::Context as _;
use dispr_proto::records::{CellFeatures, Uncertainty};
use dispr_proto::{CellId, RunId, keys};
use dispr_store::Store;
use futures::{StreamExt, TryStreamExt};

/// Records fetched and parsed together: one blocking task each, big enough that spawning is
/// nothing beside the parsing, small enough that the batches in flight stay a few MB.
const BATCH: usize = 256;
/// Gets in flight within a batch: S3 answers each in tens of ms, so the fetches overlap.
const FETCHES_PER_BATCH: usize = 16;
/// Batches in flight: one parsing on each core while the next is fetched.
const BATCHES_IN_FLIGHT: usize = 3;

/// The uncertainty of a cell as the report uses it: the scalars of its record
/// ([`Uncertainty`]) and the two summaries of its per-feature coefficients of variation (the
/// coefficients themselves are in [`RunCells::cv`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scalars {
    pub samples: u32,
    pub mean_pairwise_iou: f64,
    pub uncertain_fraction: f64,
    pub mean_entropy: f64,
    /// The coefficient of variation of the volume, where the record has it.
    pub volume_cv: Option<f64>,
    /// The mean coefficient of variation over the features, where the record has any.
    pub mean_feature_cv: Option<f64>,
}

impl Scalars {
    pub fn of(u: &Uncertainty) -> Self {
        Scalars {
            samples: u.samples,
            mean_pairwise_iou: u.mean_pairwise_iou,
            uncertain_fraction: u.uncertain_fraction,
            mean_entropy: u.mean_entropy,
            volume_cv: u.feature_cv.get("volume").copied(),
            mean_feature_cv: (!u.feature_cv.is_empty())
                .then(|| u.feature_cv.values().sum::<f64>() / u.feature_cv.len() as f64),
        }
    }

    /// [`Uncertainty::disagreement`].
    pub fn disagreement(&self) -> f64 {
        1.0 - self.mean_pairwise_iou
    }
}

/// One done cell, as the report's other parts see it: a view of its row of [`RunCells`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellSummary<'a> {
    /// The cell's row in [`RunCells::table`] (and [`RunCells::cv`]).
    pub row: usize,
    pub id: &'a str,
    pub class: Option<&'a str>,
    /// K: the samples of the cell.
    pub samples: u32,
    /// `None`: unknown (one sample, or a record of an earlier release).
    pub uncertainty: Option<Scalars>,
}

/// The run's done cells, sorted by id: the table of their features (with their ids, labels and
/// samples: each kept once, the ids in one buffer and the labels interned), their uncertainty
/// scalars and their per-feature coefficients of variation, both in the table's row order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunCells {
    pub table: FeatureTable,
    /// Per row of the table, the cell's uncertainty; `None`: unknown (one sample, or a record
    /// of an earlier release).
    pub uncertainty: Vec<Option<Scalars>>,
    /// Per row, the coefficient of variation of each 3D feature over the cell's samples (columns
    /// are feature names; missing where the cell has no uncertainty).
    pub cv: Grid,
}

/// Folds records into [`RunCells`] one at a time.
#[derive(Default)]
pub struct RunCellsBuilder {
    table: TableBuilder,
    cv: GridBuilder,
    uncertainty: Vec<Option<Scalars>>,
}

impl RunCellsBuilder {
    pub fn push(&mut self, r: &CellFeatures) {
        self.table.push_record(r);
        let empty = Default::default();
        self.cv.push_plain(r.uncertainty.as_ref().map_or(&empty, |u| &u.feature_cv));
        self.uncertainty.push(r.uncertainty.as_ref().map(Scalars::of));
    }

    /// Room for `rows` more cells (call it after the first: the width is known then).
    pub fn reserve(&mut self, rows: usize) {
        self.table.reserve(rows);
        self.cv.reserve(rows);
        self.uncertainty.reserve_exact(rows);
    }

    /// The cells, sorted by id (a copy only when they came in another order).
    pub fn finish(self) -> RunCells {
        let order = self.table.sorting_order();
        let cv = self.cv.finish();
        match order {
            None => RunCells { table: self.table.finish_in(None), uncertainty: self.uncertainty, cv },
            Some(order) => RunCells {
                table: self.table.finish_in(Some(&order)),
                uncertainty: order.iter().map(|&i| self.uncertainty[i]).collect(),
                cv: cv.permuted(&order),
            },
        }
    }
}

impl RunCells {
    /// From records in memory (tests, small runs).
    pub fn from_records(records: &[CellFeatures]) -> Self {
        let mut b = RunCellsBuilder::default();
        for r in records {
            b.push(r);
        }
        b.finish()
    }

    pub fn len(&self) -> usize {
        self.table.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.cells.is_empty()
    }

    /// The cell of row `i`.
    pub fn cell(&self, i: usize) -> CellSummary<'_> {
        CellSummary {
            row: i,
            id: &self.table.cells[i],
            class: self.table.class.get(i),
            samples: self.table.samples[i],
            uncertainty: self.uncertainty[i],
        }
    }

    /// The cells in row order (by id).
    pub fn cells(&self) -> impl ExactSizeIterator<Item = CellSummary<'_>> + '_ {
        (0..self.len()).map(|i| self.cell(i))
    }

    /// Reads the run's `features/*.json` records from `output` as a stream: fetched
    /// concurrently (a bounded number at a time), parsed on blocking threads, folded in and
    /// dropped. A record that cannot be read or decoded is an error naming it.
    pub async fn read(output: &Store, run: &RunId) -> anyhow::Result<RunCells> {
        let prefix = keys::features_prefix(run);
        let mut listed =
            output.list(&prefix).await.with_context(|| format!("listing {}", output.uri_of(&prefix)))?;
        listed.retain(|k| k.ends_with(".json"));
        // In cell order (the key is the cell id and ".json"), so the table needs no sorting.
        listed.sort_by(|a, b| a.trim_end_matches(".json").cmp(b.trim_end_matches(".json")));
        let total = listed.len();
        // The keys are handed out a batch at a time: each is freed once fetched (a million keys
        // are about 70 MB).
        let mut keys = listed.into_iter();
        let batches = std::iter::from_fn(move || {
            let batch: Vec<String> = keys.by_ref().take(BATCH).collect();
            (!batch.is_empty()).then_some(batch)
        });
        let batches = batches.map(|keys| async move {
            let fetched: Vec<(String, bytes::Bytes)> =
                futures::stream::iter(keys.into_iter().map(|key| async move {
                    let bytes =
                        output.get(&key).await.with_context(|| format!("reading {}", output.uri_of(&key)))?;
                    anyhow::Ok((output.uri_of(&key), bytes))
                }))
                .buffered(FETCHES_PER_BATCH)
                .try_collect()
                .await?;
            // Parsing is the report's main work before the forests: never on the runtime's threads.
            tokio::task::spawn_blocking(move || {
                fetched
                    .iter()
                    .map(|(uri, bytes)| {
                        CellFeatures::decode(bytes).with_context(|| format!("decoding {uri}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .await
            .context("a parsing task of the report stopped")?
        });
        let mut parsed = futures::stream::iter(batches).buffered(BATCHES_IN_FLIGHT);
        let mut builder = RunCellsBuilder::default();
        let mut reserved = false;
        while let Some(records) = parsed.try_next().await? {
            for r in &records {
                builder.push(r);
                if !reserved {
                    builder.reserve(total - 1);
                    reserved = true;
                }
            }
        }
        let cells = builder.finish();
        release_freed_memory();
        Ok(cells)
    }

    /// The record of `cell`, read again in full: for the few cells the report draws.
    pub async fn record(output: &Store, run: &RunId, cell: &CellId) -> anyhow::Result<CellFeatures> {
        let key = keys::features(run, cell);
        let bytes = output.get(&key).await.with_context(|| format!("reading {}", output.uri_of(&key)))?;
        CellFeatures::decode(&bytes).with_context(|| format!("decoding {}", output.uri_of(&key)))
    }
}

/// Hands the memory freed by the parsing back to the system. Parsing a million records
/// allocates and frees about 40 KB each, on several threads; glibc keeps what is freed in its
/// arenas (about 150 MB measured at 1M cells), where the report's later large buffers (each
/// its own mapping) never reuse it, so it would add to the peak. Elsewhere a no-op.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the system; it
    // touches no memory in use and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
