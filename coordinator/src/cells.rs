//! Which cells a run has: those of its dataset, and those already done or failed for good
//! according to the records in the output store (the store is the truth; queues are not).

use anyhow::Context;
use dispr_proto::{CellId, RunId, keys};
use dispr_store::Store;
use std::collections::HashSet;

/// The cells of a dataset, sorted: the stems of its `image/*.tif` files.
///
/// Only the listing is read, so this is quick even for a million cells; a cell whose mask is
/// missing or whose files are unreadable fails on the worker with a recorded reason.
pub async fn dataset_cells(dataset: &Store) -> anyhow::Result<Vec<CellId>> {
    let listed = dataset
        .list(keys::DATASET_IMAGE_DIR)
        .await
        .with_context(|| format!("listing the dataset's images under {}", dataset.uri()))?;
    let mut cells = Vec::with_capacity(listed.len());
    for key in listed {
        let Some(name) = key.strip_prefix(keys::DATASET_IMAGE_DIR) else { continue };
        let Some(stem) = name.strip_suffix(".tif").or_else(|| name.strip_suffix(".tiff")) else { continue };
        if stem.contains('/') {
            continue; // nested folders are not part of the layout
        }
        let cell =
            CellId::new(stem).with_context(|| format!("dataset image {key} under {}", dataset.uri()))?;
        cells.push(cell);
    }
    cells.sort();
    cells.dedup(); // `x.tif` and `x.tiff` are one cell
    anyhow::ensure!(
        !cells.is_empty(),
        "the dataset {} has no images: expected image/<cell>.tif and mask/<cell>.tif files (see DESIGN.md, \
         \"Data\"); `dispr-coordinator synth --out <dir> --cells 50` makes a synthetic one",
        dataset.uri()
    );
    Ok(cells)
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
