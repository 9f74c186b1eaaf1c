//! The steps every way of running a run starts with: the manifest written (or checked), the
//! dataset's cells listed and what is finished read back from the output store.

use crate::cells::{self, Finished};
use crate::manifest::{self, ManifestState, RunSpec};
use anyhow::Context;
use dispr_proto::{CellId, Manifest};
use dispr_store::Store;

/// A run ready to be fed to a queue.
pub struct Prepared {
    pub manifest: Manifest,
    pub state: ManifestState,
    pub output: Store,
    /// Every cell of the dataset, sorted.
    pub cells: Vec<CellId>,
    pub finished: Finished,
}

/// Lists the dataset and hashes the model (so a mistyped URI fails before anything is written),
/// writes or checks the manifest (so a refused run touches nothing else), then reads the run's
/// records.
pub async fn prepare(spec: &RunSpec) -> anyhow::Result<Prepared> {
    let output =
        Store::open(&spec.output_uri).with_context(|| format!("opening the output {}", spec.output_uri))?;
    let dataset = Store::open(&spec.dataset_uri)
        .with_context(|| format!("opening the dataset {}", spec.dataset_uri))?;
    let (cells, mut manifest) = tokio::try_join!(cells::dataset_cells(&dataset), spec.manifest())?;
    manifest.dataset_digest = Some(cells::digest(&cells));
    let state = manifest::write_or_check(&output, &mut manifest, spec.volumes.is_some()).await?;
    let finished = Finished::read(&output, &manifest.run_id).await?;
    Ok(Prepared { manifest, state, output, cells, finished })
}
