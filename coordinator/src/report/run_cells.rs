//! A run's feature records as the report keeps them: read as a stream, each record parsed on a
//! blocking thread and folded at once into the feature table (one row of numbers) and a small
//! summary (id, labels, samples, uncertainty scalars), then dropped. A parsed record with its
//! named maps took about 40 KB; what is kept is about 1.2 KB a cell (a hundred features as
//! `f64`), so a million-cell run is reported in well under 2 GB. The few records whose cells are
//! drawn are read again when they are drawn.

use super::table::{FeatureTable, TableBuilder};
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

/// One done cell, without its features (those are its row of [`RunCells::table`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CellSummary {
    pub id: CellId,
    pub class: Option<String>,
    /// K: the samples of the cell.
    pub samples: u32,
    /// `None`: unknown (one sample, or a record of an earlier release).
    pub uncertainty: Option<Scalars>,
}

/// The run's done cells, sorted by id: the table of their features, their summaries (in the
/// table's row order) and their per-feature coefficients of variation (same rows).
#[derive(Debug, Clone, Default)]
pub struct RunCells {
    pub table: FeatureTable,
    pub cells: Vec<CellSummary>,
    /// Per cell, the coefficient of variation of each 3D feature over its samples (columns are
    /// feature names; missing where the cell has no uncertainty).
    pub cv: FeatureTable,
}

/// Folds records into [`RunCells`] one at a time.
#[derive(Default)]
pub struct RunCellsBuilder {
    table: TableBuilder,
    cv: TableBuilder,
    cells: Vec<CellSummary>,
}

impl RunCellsBuilder {
    pub fn push(&mut self, r: &CellFeatures) {
        self.table.push_record(r);
        let empty = Default::default();
        self.cv.push_plain(r.cell.to_string(), r.uncertainty.as_ref().map_or(&empty, |u| &u.feature_cv));
        self.cells.push(CellSummary {
            id: r.cell.clone(),
            class: r.class.clone(),
            samples: r.samples.len() as u32,
            uncertainty: r.uncertainty.as_ref().map(Scalars::of),
        });
    }

    /// Room for `rows` more cells (call it after the first: the width is known then).
    pub fn reserve(&mut self, rows: usize) {
        self.table.reserve(rows);
        self.cv.reserve(rows);
        self.cells.reserve_exact(rows);
    }

    pub fn finish(mut self) -> RunCells {
        if !self.cells.windows(2).all(|w| w[0].id <= w[1].id) {
            self.cells.sort_by(|a, b| a.id.cmp(&b.id));
        }
        RunCells { table: self.table.finish(), cells: self.cells, cv: self.cv.finish() }
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
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
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
        let batches = listed.chunks(BATCH).map(<[String]>::to_vec).map(|keys| async move {
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
        Ok(builder.finish())
    }

    /// The record of `cell`, read again in full: for the few cells the report draws.
    pub async fn record(output: &Store, run: &RunId, cell: &CellId) -> anyhow::Result<CellFeatures> {
        let key = keys::features(run, cell);
        let bytes = output.get(&key).await.with_context(|| format!("reading {}", output.uri_of(&key)))?;
        CellFeatures::decode(&bytes).with_context(|| format!("decoding {}", output.uri_of(&key)))
    }
}
