//! The training data of `dispr-worker train` (and the held-out cells of `evaluate`): every cell
//! of a dataset (folder or S3 prefix) that has a ground-truth volume, a held-out split (seeded
//! random, or one fold of a stratified k-fold), optional extra datasets mixed into training, and
//! a digest that ties a run to its data.

use anyhow::Context;
use dispr_model::train::TrainSet;
use dispr_model::{ModelConfig, TrainExample};
use dispr_proto::CellId;
use dispr_shape::dataset::{CellData, Dataset};
use dispr_store::Store;
use sha2::{Digest, Sha256};

/// A held-out cell: its inputs and its ground truth at 64^3.
#[derive(Debug, Clone)]
pub struct ValCell {
    pub id: CellId,
    /// The cell's class (from labels.csv or its name).
    pub class: String,
    pub image: Vec<u8>,
    pub mask: Vec<u8>,
    /// The training target at full size: obj > 0 (DESIGN.md: x0 = 1[obj > 0]).
    pub truth: Vec<bool>,
}

impl ValCell {
    /// The cell's inputs and truth; None without a ground-truth volume.
    fn of(c: &CellData) -> Option<ValCell> {
        let obj = c.obj.as_ref()?;
        Some(ValCell {
            id: c.id.clone(),
            class: c.label.class.clone(),
            image: c.image.data.clone(),
            mask: c.mask.data.clone(),
            truth: obj.data.iter().map(|&v| v > 0).collect(),
        })
    }
}

/// Every cell with ground truth of the dataset at `uri`, as (the cells `split` keeps for
/// fitting, the cells it holds out): what `calibrate` fits on and could score.
pub fn load_scored(uri: &str, split: Split) -> anyhow::Result<(Vec<ValCell>, Vec<ValCell>)> {
    let cells = load_cells(uri)?;
    let held_out = split.held_out(&cells);
    let (mut fit, mut held) = (Vec::new(), Vec::new());
    for (c, h) in cells.iter().zip(held_out) {
        if let Some(v) = ValCell::of(c) {
            if h { held.push(v) } else { fit.push(v) }
        }
    }
    Ok((fit, held))
}

/// Which cells of the dataset are held out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `val_cells` cells drawn with `seed`.
    Random { val_cells: usize, seed: u64 },
    /// Fold `fold` of `folds`: within each class, the cells in name order are dealt to the folds
    /// in turn, so every fold holds each class's cells in proportion (stratified), and the
    /// folds of one dataset are the same on every machine.
    Fold { fold: usize, folds: usize },
    /// Every cell (for scoring a model that never trained on this dataset; refused by `train`).
    All,
}

impl Split {
    fn describe(&self) -> String {
        match self {
            Split::Random { val_cells, seed } => format!("val={val_cells} seed={seed}"),
            Split::Fold { fold, folds } => format!("fold={fold}/{folds}"),
            Split::All => "all".into(),
        }
    }

    /// Which of `cells` are held out.
    fn held_out(&self, cells: &[CellData]) -> Vec<bool> {
        match *self {
            Split::Random { val_cells, seed } => dispr_model::train::held_out(cells.len(), val_cells, seed),
            Split::All => vec![true; cells.len()],
            Split::Fold { fold, folds } => {
                let mut order: Vec<usize> = (0..cells.len()).collect();
                order.sort_by(|&a, &b| {
                    (&cells[a].label.class, cells[a].id.as_str())
                        .cmp(&(&cells[b].label.class, cells[b].id.as_str()))
                });
                let mut out = vec![false; cells.len()];
                let mut rank_in_class = 0usize;
                for (i, &c) in order.iter().enumerate() {
                    if i > 0 && cells[order[i - 1]].label.class != cells[c].label.class {
                        rank_in_class = 0;
                    }
                    out[c] = rank_in_class % folds == fold;
                    rank_in_class += 1;
                }
                out
            }
        }
    }
}

/// The dataset split into training examples (at the model's resolution) and held-out cells.
pub struct TrainData {
    /// Part 0: the dataset's training cells; then one part per extra dataset.
    pub train: TrainSet,
    pub val: Vec<ValCell>,
    /// sha256 over the cells' ids and file contents (all datasets) and the split.
    pub digest: String,
}

/// Every cell with an `obj/` volume of the dataset at `uri`.
fn load_cells(uri: &str) -> anyhow::Result<Vec<CellData>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    rt.block_on(async {
        let store = Store::open(uri).with_context(|| format!("opening dataset {uri}"))?;
        // The reader's errors name the dataset already.
        let dataset = Dataset::open(store).await?;
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
    })
}

fn hash_cells(hasher: &mut Sha256, cells: &[CellData]) {
    for c in cells {
        hasher.update(c.id.as_str());
        hasher.update(&c.image.data);
        hasher.update(&c.mask.data);
        if let Some(obj) = &c.obj {
            hasher.update(&obj.data);
        }
    }
}

/// Training examples of `cells` for `config`, built on every core (the prior and the
/// downsampled target cost a few milliseconds a cell; thousands of cells add up).
fn examples<'a>(config: &ModelConfig, cells: impl Iterator<Item = &'a CellData>) -> Vec<TrainExample> {
    use rayon::prelude::*;
    let cells: Vec<&CellData> = cells.collect();
    cells
        .par_iter()
        .filter_map(|c| {
            c.obj.as_ref().map(|obj| TrainExample::new(config, &c.image.data, &c.mask.data, &obj.data))
        })
        .collect()
}

/// Loads every cell with an `obj/` volume from `uri`, holds out the cells `split` names, and
/// prepares the rest for `config`; every cell with ground truth of each `extra` dataset is
/// added as a training part of its own (see [`TrainSet`]).
pub fn load(uri: &str, config: &ModelConfig, split: Split, extra: &[String]) -> anyhow::Result<TrainData> {
    let cells = load_cells(uri)?;
    match split {
        Split::Random { val_cells, .. } if val_cells >= cells.len() => anyhow::bail!(
            "--val-cells {val_cells} leaves no training cells (the dataset has {} with ground truth); use fewer",
            cells.len()
        ),
        Split::Fold { fold, folds } if folds < 2 || fold >= folds => {
            anyhow::bail!(
                "--fold {fold} of --folds {folds}: need at least 2 folds and a fold below their number"
            )
        }
        _ => {}
    }
    let mut hasher = Sha256::new();
    hasher.update(format!("dispr-train-split {}\n", split.describe()));
    hash_cells(&mut hasher, &cells);
    let held_out = split.held_out(&cells);
    let val = cells.iter().zip(&held_out).filter(|(_, h)| **h).filter_map(|(c, _)| ValCell::of(c)).collect();
    let mut parts = vec![examples(config, cells.iter().zip(&held_out).filter(|(_, h)| !**h).map(|(c, _)| c))];
    for uri in extra {
        let cells = load_cells(uri)?;
        hasher.update(format!("extra {}\n", cells.len()));
        hash_cells(&mut hasher, &cells);
        parts.push(examples(config, cells.iter()));
    }
    let digest = hex::encode(hasher.finalize());
    Ok(TrainData { train: TrainSet { parts }, val, digest })
}
