//! A run's state as the output store records it: the truth that `status`, `watch` and `local`
//! start from.

use crate::cells::{self, Finished};
use anyhow::Context;
use dispr_proto::{Manifest, RunId, keys};
use dispr_store::Store;
use serde::Serialize;

/// Counts of a run's cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Cells in the dataset.
    pub total: usize,
    /// Cells whose features file exists.
    pub done: usize,
    /// Cells that failed for good (and are not done).
    pub failed: usize,
}

impl Counts {
    pub fn remaining(&self) -> usize {
        self.total.saturating_sub(self.done + self.failed)
    }
    pub fn complete(&self) -> bool {
        self.remaining() == 0
    }
}

/// The run's manifest, its dataset's cell count and what is finished.
pub struct StoredRun {
    pub manifest: Manifest,
    pub cells: usize,
    pub finished: Finished,
}

impl StoredRun {
    pub async fn read(output: &Store, run: &RunId) -> anyhow::Result<Self> {
        let key = keys::manifest(run);
        let bytes =
            output.get_opt(&key).await.with_context(|| format!("reading {key} under {}", output.uri()))?;
        let Some(bytes) = bytes else {
            anyhow::bail!(
                "there is no run {run} under {}: no {key}. Check --output and --run-id (runs are listed under {}runs/)",
                output.uri(),
                output.uri().trim_end_matches('/').to_string() + "/"
            );
        };
        let manifest = Manifest::decode(&bytes).with_context(|| format!("reading {key}"))?;
        let dataset = Store::open(&manifest.dataset_uri)
            .with_context(|| format!("opening the run's dataset {}", manifest.dataset_uri))?;
        let (cells, mut finished) =
            tokio::try_join!(cells::dataset_cells(&dataset), Finished::read(output, run))?;
        if let Some(recorded) = &manifest.dataset_digest
            && *recorded != cells::digest(&cells)
        {
            tracing::warn!(
                "the dataset {} holds other cells than when run {run} started (its cell list's sha256 differs \
                 from the manifest's): the counts below are of the cells it holds now",
                manifest.dataset_uri
            );
        }
        // Count only the dataset's cells: a job published by hand may have named others.
        finished.done.retain(|c| cells.binary_search(c).is_ok());
        finished.failed.retain(|c| cells.binary_search(c).is_ok());
        Ok(Self { manifest, cells: cells.len(), finished })
    }

    pub fn counts(&self) -> Counts {
        Counts { total: self.cells, done: self.finished.done.len(), failed: self.finished.failed.len() }
    }
}
