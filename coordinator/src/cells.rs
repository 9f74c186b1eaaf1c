//! Which cells a run has: those of its dataset, and those already done or failed for good
//! according to the records in the output store (the store is the truth; queues are not).

use anyhow::Context;
use dispr_proto::{CellId, RunId, keys};
use dispr_shape::dataset::Dataset;
use dispr_store::Store;
use std::collections::HashSet;

/// The cells of a dataset, sorted, as the one dataset reader ([`Dataset::open`]) finds them: a
/// dataset whose layout or `labels.csv` cannot be used (unpaired files, misspelt extensions,
/// malformed labels) is refused here, before any manifest or job is written, with what to fix.
pub async fn dataset_cells(dataset: &Store) -> anyhow::Result<Vec<CellId>> {
    let opened = Dataset::open(dataset.clone()).await?;
    Ok(opened.index.cells.into_iter().map(|c| c.id).collect())
}

/// What a dataset holds, as the manifest records it: the hex sha256 of its sorted cell ids, one
/// per line. The same folder with other cells has another digest, whatever its name.
pub fn digest(cells: &[CellId]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for cell in cells {
        hash.update(cell.as_str().as_bytes());
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())
}

/// Cells with a record (`features/<cell>.json` or `failures/<cell>.json`) under `prefix`.
async fn recorded(output: &Store, prefix: &str) -> anyhow::Result<HashSet<CellId>> {
    let listed =
        output.list(prefix).await.with_context(|| format!("listing {prefix} under {}", output.uri()))?;
    Ok(listed.iter().filter_map(|key| keys::cell_of_record_key(key)).collect())
}

/// What the output store says about a run's cells.
#[derive(Debug, Default, Clone)]
pub struct Finished {
    /// Cells whose features file (the done-marker) exists.
    pub done: HashSet<CellId>,
    /// Cells that failed for good, and are not done (a later success wins).
    pub failed: HashSet<CellId>,
}

impl Finished {
    /// Reads the run's `features/` and `failures/` listings.
    pub async fn read(output: &Store, run: &RunId) -> anyhow::Result<Self> {
        let (features, failures) = (keys::features_prefix(run), keys::failures_prefix(run));
        let (done, failed) = tokio::try_join!(recorded(output, &features), recorded(output, &failures))?;
        let failed = failed.difference(&done).cloned().collect();
        Ok(Self { done, failed })
    }

    /// Whether the cell needs no more work.
    pub fn contains(&self, cell: &CellId) -> bool {
        self.done.contains(cell) || self.failed.contains(cell)
    }
}
