//! How close the predicted shapes come to the true ones, beside doing nothing: per cell and per
//! class, the model's mean IoU and relative volume error against the ground truth next to those of
//! the extrusion floor ([`dispr_shape::floor::extruded_shape`], the mask extruded along z) on the
//! same cells, so a reader sees at once whether the model beats the naive guess.
//!
//! The truth is `obj > 0`, the target the model is trained on and the definition training
//! validation and `dispr-worker evaluate` score by; a predicted sample is binarised with Otsu as
//! the worker does. (The per-sample `metrics` in the features records use `obj > 127`, the
//! middle of the anti-aliasing, so their IoU is not comparable with these numbers.)

use dispr_shape::{floor, otsu};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The ground-truth definition used here, as the report states it.
pub const TRUTH_DEFINITION: &str =
    "obj > 0 (the model's training target; as training validation and `dispr-worker evaluate`)";
/// The floor's definition, as the report states it.
pub const FLOOR_DEFINITION: &str =
    "the mask (> 127) extruded along z to |z - 31.5| <= 0.75 x its equivalent radius (dispr_shape::floor)";

/// The true shape of an `obj/` volume (0..255) for reconstruction scores: every voxel above 0.
pub fn truth_shape(obj: &[u8]) -> Vec<bool> {
    obj.iter().map(|&v| v > 0).collect()
}

/// IoU and relative volume error of `pred` against `truth`: `dispr_shape::reconstruction`' (one
/// definition for the report and the per-sample records); `None` when the truth is empty.
pub fn scores(pred: &[bool], truth: &[bool]) -> Option<(f64, f64)> {
    dispr_shape::reconstruction::iou_and_volume_error(pred, truth)
}

/// One cell's scores: the model's are the means over its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellReconstruction {
    pub cell: String,
    pub class: Option<String>,
    pub model_iou: f64,
    pub model_volume_error: f64,
    pub floor_iou: f64,
    pub floor_volume_error: f64,
}

/// A cell's scores from its predicted samples (the sampler's [0, 1] volumes), its mask
/// (64x64 uint8) and its ground truth (64^3 uint8). `None` without samples or with an empty truth.
/// Compute: call it off the async runtime.
pub fn cell_scores(
    cell: &str,
    class: Option<String>,
    samples: &[Vec<f32>],
    mask: &[u8],
    obj: &[u8],
) -> Option<CellReconstruction> {
    let truth = truth_shape(obj);
    let model: Vec<(f64, f64)> =
        samples.iter().map(|s| scores(&otsu::binarise(s), &truth)).collect::<Option<_>>()?;
    if model.is_empty() {
        return None;
    }
    let (floor_iou, floor_volume_error) = scores(&floor::extruded_shape(mask), &truth)?;
    let n = model.len() as f64;
    Some(CellReconstruction {
        cell: cell.to_string(),
        class,
        model_iou: model.iter().map(|m| m.0).sum::<f64>() / n,
        model_volume_error: model.iter().map(|m| m.1).sum::<f64>() / n,
        floor_iou,
        floor_volume_error,
    })
}

/// Means over a group of cells (a class, or all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReconstruction {
    pub class: String,
    pub cells: usize,
    pub model_iou: f64,
    pub floor_iou: f64,
    pub model_volume_error: f64,
    pub floor_volume_error: f64,
    /// Cells whose model IoU is above the floor's.
    pub model_beats_floor: usize,
}

impl GroupReconstruction {
    fn of(class: &str, cells: &[&CellReconstruction]) -> Self {
        let n = cells.len().max(1) as f64;
        let mean = |f: fn(&CellReconstruction) -> f64| cells.iter().map(|c| f(c)).sum::<f64>() / n;
        GroupReconstruction {
            class: class.to_string(),
            cells: cells.len(),
            model_iou: mean(|c| c.model_iou),
            floor_iou: mean(|c| c.floor_iou),
            model_volume_error: mean(|c| c.model_volume_error),
            floor_volume_error: mean(|c| c.floor_volume_error),
            model_beats_floor: cells.iter().filter(|c| c.model_iou > c.floor_iou).count(),
        }
    }
}

/// The reconstruction section of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconstruction {
    pub truth: String,
    pub floor: String,
    /// Per class (sorted by name; cells without a label as "unlabelled").
    pub per_class: Vec<GroupReconstruction>,
    pub all: GroupReconstruction,
    /// Every scored cell, sorted by id.
    pub cells: Vec<CellReconstruction>,
}

impl Reconstruction {
    /// The rows of its table: each class, then all cells.
    pub fn rows(&self) -> impl Iterator<Item = &GroupReconstruction> {
        self.per_class.iter().chain(std::iter::once(&self.all))
    }

    /// The section for `cells`; `None` when no cell could be scored.
    pub fn of(mut cells: Vec<CellReconstruction>) -> Option<Self> {
        if cells.is_empty() {
            return None;
        }
        cells.sort_by(|a, b| a.cell.cmp(&b.cell));
        let mut by_class: BTreeMap<String, Vec<&CellReconstruction>> = BTreeMap::new();
        for c in &cells {
            by_class.entry(c.class.clone().unwrap_or_else(|| "unlabelled".into())).or_default().push(c);
        }
        let per_class =
            by_class.iter().map(|(class, members)| GroupReconstruction::of(class, members)).collect();
        let all = GroupReconstruction::of("all cells", &cells.iter().collect::<Vec<_>>());
        Some(Reconstruction {
            truth: TRUTH_DEFINITION.into(),
            floor: FLOOR_DEFINITION.into(),
            per_class,
            all,
            cells,
        })
    }

    /// The scores of `cell`, if it was scored.
    pub fn cell(&self, cell: &str) -> Option<&CellReconstruction> {
        self.cells.binary_search_by(|c| c.cell.as_str().cmp(cell)).ok().map(|i| &self.cells[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispr_shape::volume::SIDE;

    /// A disk mask and, as the truth, a flat cylinder (the floor's shape, thinner).
    fn disk_cell(radius: f64, half_height: f64) -> (Vec<u8>, Vec<u8>) {
        let mut mask = vec![0u8; SIDE * SIDE];
        let mut obj = vec![0u8; SIDE * SIDE * SIDE];
        for y in 0..SIDE {
            for x in 0..SIDE {
                let r = ((y as f64 - 31.5).powi(2) + (x as f64 - 31.5).powi(2)).sqrt();
                if r <= radius {
                    mask[y * SIDE + x] = 255;
                    for z in 0..SIDE {
                        if (z as f64 - 31.5).abs() <= half_height {
                            obj[(z * SIDE + y) * SIDE + x] = 200;
                        }
                    }
                }
            }
        }
        (mask, obj)
    }

    #[test]
    fn a_perfect_sample_beats_the_floor_and_an_empty_truth_is_not_scored() {
        let (mask, obj) = disk_cell(20.0, 4.0);
        let perfect: Vec<f32> = obj.iter().map(|&v| if v > 0 { 1.0 } else { 0.0 }).collect();
        let c = cell_scores("c1", Some("a".into()), std::slice::from_ref(&perfect), &mask, &obj).unwrap();
        assert_eq!((c.model_iou, c.model_volume_error), (1.0, 0.0));
        // The floor is a cylinder 0.75 x 20 = 15 voxels high each side against a truth 4 high:
        // it covers the truth (IoU = truth / floor) and overshoots the volume.
        assert!(c.floor_iou > 0.2 && c.floor_iou < 0.35, "{}", c.floor_iou);
        assert!(c.floor_volume_error > 2.0, "{}", c.floor_volume_error);
        assert!(
            cell_scores("c1", None, std::slice::from_ref(&perfect), &mask, &vec![0; obj.len()]).is_none()
        );
        assert!(cell_scores("c1", None, &[], &mask, &obj).is_none());

        // The truth is obj > 0: a voxel at 1 of 255 counts.
        let mut faint = obj.clone();
        faint[0] = 1;
        let c2 = cell_scores("c2", Some("b".into()), &[perfect], &mask, &faint).unwrap();
        assert!(c2.model_iou < 1.0);

        let r = Reconstruction::of(vec![c2.clone(), c.clone()]).unwrap();
        assert_eq!(r.per_class.iter().map(|g| g.class.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(r.all.cells, 2);
        assert_eq!(r.all.model_beats_floor, 2);
        assert_eq!(r.cell("c2"), Some(&c2));
        assert!(Reconstruction::of(vec![]).is_none());
    }
}
