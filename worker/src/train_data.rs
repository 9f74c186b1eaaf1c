//! The training data of `dispr-worker train`: every cell of a dataset (folder or S3 prefix)
//! that has a ground-truth volume, a seeded held-out split, and a digest that ties a run to
//! its data.

use anyhow::Context;
use dispr_model::{ModelConfig, TrainExample};
use dispr_proto::CellId;
use dispr_shape::dataset::{CellData, Dataset};
use dispr_store::Store;
use sha2::{Digest, Sha256};

/// A held-out cell: its inputs and its ground truth at 64^3.
pub struct ValCell {
    pub id: CellId,
    pub image: Vec<u8>,
    pub mask: Vec<u8>,
    /// The training target at full size: obj > 0 (DESIGN.md: x0 = 1[obj > 0]).
    pub truth: Vec<bool>,
}

/// The dataset split into training examples (at the model's resolution) and held-out cells.
pub struct TrainData {
    pub train: Vec<TrainExample>,
    pub val: Vec<ValCell>,
    /// sha256 over the cells' ids and file contents and the split parameters.
    pub digest: String,
}

/// Loads every cell with an `obj/` volume from `uri`, holds out `val_cells` of them (chosen with
/// `seed`), and prepares the rest for `config`.
pub fn load(uri: &str, config: &ModelConfig, val_cells: usize, seed: u64) -> anyhow::Result<TrainData> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let cells: Vec<CellData> = rt.block_on(async {
        let store = Store::open(uri).with_context(|| format!("opening dataset {uri}"))?;
        let dataset = Dataset::open(store).await.with_context(|| format!("reading dataset {uri}"))?;
        let ids: Vec<CellId> = dataset.index.cells.iter().filter(|c| c.has_obj).map(|c| c.id.clone()).collect();
        if ids.is_empty() {
            anyhow::bail!(
                "dataset {uri} has no cell with a ground-truth volume (obj/<cell>.tif): training needs them; generate a synthetic dataset with `dispr-coordinator synth`"
            );
        }
        let mut cells = Vec::with_capacity(ids.len());
        for id in &ids {
            cells.push(dataset.load_cell(id).await.with_context(|| format!("loading cell {id} of {uri}"))?);
        }
        Ok(cells)
    })?;
    if val_cells >= cells.len() {
        anyhow::bail!(
            "--val-cells {val_cells} leaves no training cells (the dataset has {} with ground truth); use fewer",
            cells.len()
        );
    }
    let mut hasher = Sha256::new();
    hasher.update(format!("dispr-train-split val={val_cells} seed={seed}\n"));
    for c in &cells {
        hasher.update(c.id.as_str());
        hasher.update(&c.image.data);
        hasher.update(&c.mask.data);
        if let Some(obj) = &c.obj {
            hasher.update(&obj.data);
        }
    }
    let digest = hex::encode(hasher.finalize());

    let held_out = dispr_model::train::held_out(cells.len(), val_cells, seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (c, held) in cells.iter().zip(held_out) {
        // Only cells with ground truth were loaded.
        let Some(obj) = &c.obj else { continue };
        if held {
            val.push(ValCell {
                id: c.id.clone(),
                image: c.image.data.clone(),
                mask: c.mask.data.clone(),
                truth: obj.data.iter().map(|&v| v > 0).collect(),
            });
        } else {
            train.push(TrainExample::new(config, &c.image.data, &c.mask.data, &obj.data));
        }
    }
    Ok(TrainData { train, val, digest })
}
