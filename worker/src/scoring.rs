//! How well a model reconstructs held-out cells, always beside the naive floor on the same cells
//! (the mask extruded along z, `dispr_shape::floor`). Training's validation and `evaluate` both
//! score through here, so their numbers agree.
//!
//! Per cell, from its K samples (Otsu on x / max, against the truth obj > 0):
//! - the IoU of each single sample, and of the consensus of the K samples (the voxel-wise mean of
//!   the binarised samples, kept where it is at least one half);
//! - the IoU of the floor;
//! - the diversity of the samples: the mean IoU between every pair of them, and the coefficient of
//!   variation of their volumes (population standard deviation over the mean, as the worker's
//!   uncertainty; both undefined for K = 1).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use dispr_model::{CellInput, Predictor};
use dispr_proto::SamplerSpec;
use dispr_shape::reconstruction::iou;
use dispr_shape::uncertainty;

use crate::train_data::ValCell;

/// The scores of one held-out cell.
#[derive(Debug, Clone)]
pub struct CellScore {
    pub id: String,
    pub class: String,
    /// IoU of each sample.
    pub sample_iou: Vec<f64>,
    /// IoU of the consensus (voxel-wise majority) of the samples.
    pub consensus_iou: f64,
    /// IoU of the extruded mask.
    pub floor_iou: f64,
    /// Mean IoU over the pairs of samples (None for one sample).
    pub pairwise_iou: Option<f64>,
    /// Population standard deviation / mean of the samples' volumes (None for one sample).
    pub volume_cv: Option<f64>,
}

impl CellScore {
    pub fn mean_sample_iou(&self) -> f64 {
        mean(&self.sample_iou)
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
}

/// Scores of one sampler over the held-out cells, and what sampling cost.
pub struct Scores {
    pub cells: Vec<CellScore>,
    /// Wall-clock seconds per sample (all cells batched as the worker does).
    pub seconds_per_sample: f64,
}

/// Scores of a group of cells (a class, or all).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub cells: usize,
    pub sample_iou: f64,
    pub consensus_iou: f64,
    pub floor_iou: f64,
    pub pairwise_iou: Option<f64>,
    pub volume_cv: Option<f64>,
}

/// Means over `cells` (None fields stay None when no cell has them).
pub fn summarise<'a>(cells: impl IntoIterator<Item = &'a CellScore>) -> Summary {
    let cells: Vec<&CellScore> = cells.into_iter().collect();
    let opt = |f: &dyn Fn(&CellScore) -> Option<f64>| {
        let v: Vec<f64> = cells.iter().filter_map(|c| f(c)).collect();
        (!v.is_empty()).then(|| mean(&v))
    };
    Summary {
        cells: cells.len(),
        sample_iou: mean(&cells.iter().map(|c| c.mean_sample_iou()).collect::<Vec<_>>()),
        consensus_iou: mean(&cells.iter().map(|c| c.consensus_iou).collect::<Vec<_>>()),
        floor_iou: mean(&cells.iter().map(|c| c.floor_iou).collect::<Vec<_>>()),
        pairwise_iou: opt(&|c| c.pairwise_iou),
        volume_cv: opt(&|c| c.volume_cv),
    }
}

/// Per class, then "all".
pub fn by_class(cells: &[CellScore]) -> Vec<(String, Summary)> {
    let mut classes: BTreeMap<&str, Vec<&CellScore>> = BTreeMap::new();
    for c in cells {
        classes.entry(c.class.as_str()).or_default().push(c);
    }
    let mut out: Vec<(String, Summary)> =
        classes.into_iter().map(|(k, v)| (k.to_string(), summarise(v))).collect();
    out.push(("all".to_string(), summarise(cells)));
    out
}

/// The scores of `samples` binarised volumes of one cell.
pub fn score_cell(cell: &ValCell, volumes: &[Vec<f32>]) -> CellScore {
    let binary: Vec<Vec<bool>> = volumes.iter().map(|v| dispr_shape::otsu::binarise(v)).collect();
    let sample_iou: Vec<f64> = binary.iter().map(|b| iou(b, &cell.truth)).collect();
    let k = binary.len();
    let consensus: Vec<bool> =
        (0..cell.truth.len()).map(|i| 2 * binary.iter().filter(|b| b[i]).count() >= k.max(1)).collect();
    // The worker's uncertainty measures them the same way (dispr_shape::uncertainty).
    let samples: Vec<&[bool]> = binary.iter().map(Vec::as_slice).collect();
    let pairwise_iou = uncertainty::mean_pairwise_iou(&samples);
    let vols: Vec<f64> = binary.iter().map(|b| b.iter().filter(|&&v| v).count() as f64).collect();
    let volume_cv = uncertainty::coefficient_of_variation(&vols);
    CellScore {
        id: cell.id.to_string(),
        class: cell.class.clone(),
        consensus_iou: iou(&consensus, &cell.truth),
        floor_iou: iou(&dispr_shape::floor::extruded_shape(&cell.mask), &cell.truth),
        sample_iou,
        pairwise_iou,
        volume_cv,
    }
}

/// Samples `samples` volumes of every cell in `val` with `sampler` ([`sample_cells`]) and
/// scores them.
pub fn score<B: burn::tensor::backend::Backend>(
    predictor: &Predictor<B>,
    val: &[ValCell],
    sampler: &SamplerSpec,
    samples: u32,
) -> anyhow::Result<Scores> {
    let started = Instant::now();
    let volumes = sample_cells(predictor, val, sampler, samples)?;
    let seconds = started.elapsed().as_secs_f64();
    let cells: Vec<CellScore> = val.iter().zip(&volumes).map(|(c, v)| score_cell(c, v)).collect();
    let n = (val.len() * samples as usize).max(1);
    Ok(Scores { cells, seconds_per_sample: seconds / n as f64 })
}

/// `samples` volumes of every cell in `cells` with `sampler`, all batched; seeds come from the
/// cell ids, so two calls see the same initial noise.
pub fn sample_cells<B: burn::tensor::backend::Backend>(
    predictor: &Predictor<B>,
    cells: &[ValCell],
    sampler: &SamplerSpec,
    samples: u32,
) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    let inputs: Vec<CellInput<'_>> =
        cells.iter().map(|c| CellInput { image: &c.image, mask: &c.mask }).collect();
    let seeds: Vec<Vec<u64>> = cells
        .iter()
        .map(|c| (0..samples).map(|k| dispr_proto::seed::sample_seed(0, &c.id, k)).collect())
        .collect();
    predictor.sample(&inputs, &seeds, sampler, &mut |_, _| {}).context("sampling the cells")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(truth: Vec<bool>, mask: Vec<u8>) -> ValCell {
        ValCell { id: "A_x1".parse().unwrap(), class: "A".into(), image: vec![0; 4096], mask, truth }
    }

    #[test]
    fn identical_and_disjoint_samples_score_as_defined() {
        let n = 64 * 64 * 64;
        let half: Vec<f32> = (0..n).map(|i| if i < n / 2 { 1.0 } else { 0.0 }).collect();
        let other: Vec<f32> = half.iter().map(|v| 1.0 - v).collect();
        let truth: Vec<bool> = half.iter().map(|&v| v > 0.5).collect();
        let c = cell(truth, vec![0; 4096]);
        let same = score_cell(&c, &[half.clone(), half.clone()]);
        assert_eq!(same.sample_iou, vec![1.0, 1.0]);
        assert_eq!(same.pairwise_iou, Some(1.0));
        assert_eq!(same.volume_cv, Some(0.0));
        assert_eq!(same.consensus_iou, 1.0);
        let split = score_cell(&c, &[half.clone(), other]);
        assert_eq!(split.pairwise_iou, Some(0.0));
        assert_eq!(split.sample_iou, vec![1.0, 0.0]);
        let one = score_cell(&c, &[half]);
        assert_eq!((one.pairwise_iou, one.volume_cv), (None, None));
        // An empty mask's floor is empty: IoU 0 against a non-empty truth.
        assert_eq!(one.floor_iou, 0.0);
    }
}
