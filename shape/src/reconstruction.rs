//! Reconstruction metrics of a predicted binary volume against the ground truth, as SHAPR
//! defines them: intersection over union, relative volume error |P - G| / G, relative surface
//! error |A(P) - A(G)| / A(G) on marching-cubes surfaces, and roughness error
//! |R(P) - R(G)| / R(G) with SHAPR's roughness (see [`crate::features::surface_roughness`]).

use crate::features::{FeatureDescriptor, FeatureError, surface_area, surface_roughness};
use dispr_proto::records::FeatureMap;

/// Ground-truth `obj/` voxels above this (of 255) are inside the cell: the middle of their
/// anti-aliasing, so the binary shape's surface sits where the anti-aliased one does.
pub const TRUTH_THRESHOLD: u8 = 127;

/// The binary shape of a ground-truth `obj/` volume (0..255): voxels above [`TRUTH_THRESHOLD`].
pub fn truth_mask(obj: &[u8]) -> Vec<bool> {
    obj.iter().map(|&v| v > TRUTH_THRESHOLD).collect()
}

/// Intersection over union of two binary volumes of one size (1 when both are empty): the
/// `iou` of [`reconstruction`] without the other metrics, for validation during training.
pub fn iou(pred: &[bool], truth: &[bool]) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (&p, &g) in pred.iter().zip(truth) {
        inter += (p && g) as u64;
        union += (p || g) as u64;
    }
    if union == 0 { 1.0 } else { inter as f64 / union as f64 }
}

/// The metrics' names, units and definitions (for the docs and the report).
pub const METRICS: &[FeatureDescriptor] = &[
    FeatureDescriptor {
        name: "iou",
        unit: "1",
        definition: "|P and G| / |P or G| of the foreground voxels.",
    },
    FeatureDescriptor {
        name: "volume_error",
        unit: "1",
        definition: "Relative volume error |V(P) - V(G)| / V(G).",
    },
    FeatureDescriptor {
        name: "surface_error",
        unit: "1",
        definition: "Relative surface error |A(P) - A(G)| / A(G), marching-cubes areas.",
    },
    FeatureDescriptor {
        name: "roughness_error",
        unit: "1",
        definition: "Relative roughness error |R(P) - R(G)| / R(G), R = sum |shape - Gaussian-smoothed shape|.",
    },
];

/// IoU and relative volume error |V(P) - V(G)| / V(G) of `pred` against `truth` (one size), in
/// one pass; `None` when the truth is empty (nothing to compare with).
pub fn iou_and_volume_error(pred: &[bool], truth: &[bool]) -> Option<(f64, f64)> {
    let (mut inter, mut union, mut vp, mut vg) = (0u64, 0u64, 0u64, 0u64);
    for (&p, &g) in pred.iter().zip(truth) {
        inter += (p && g) as u64;
        union += (p || g) as u64;
        vp += p as u64;
        vg += g as u64;
    }
    (vg > 0).then(|| (inter as f64 / union as f64, (vp as f64 - vg as f64).abs() / vg as f64))
}

/// Reconstruction metrics of `pred` against `truth`, two binary volumes of `dims`.
///
/// The ground truth must have foreground (every metric divides by it): an empty ground truth is
/// an [`FeatureError::EmptyShape`]. An empty prediction is a valid, bad prediction: IoU 0 and
/// errors of 1.
pub fn reconstruction(pred: &[bool], truth: &[bool], dims: [usize; 3]) -> Result<FeatureMap, FeatureError> {
    let expected: usize = dims.iter().product();
    for (what, v) in [("the predicted volume", pred), ("the ground-truth volume", truth)] {
        if v.len() != expected {
            return Err(FeatureError::WrongSize { what, len: v.len(), dims: dims.to_vec(), expected });
        }
    }
    let Some((iou, volume_error)) = iou_and_volume_error(pred, truth) else {
        return Err(FeatureError::EmptyShape { what: "ground-truth volume" });
    };
    let rel = |p: f64, g: f64| if g > 0.0 { (p - g).abs() / g } else { 0.0 };
    let values = [
        ("iou", iou),
        ("volume_error", volume_error),
        ("surface_error", rel(surface_area(pred, dims), surface_area(truth, dims))),
        ("roughness_error", rel(surface_roughness(pred, dims), surface_roughness(truth, dims))),
    ];
    Ok(values.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(dims: [usize; 3], lo: usize, hi: usize) -> Vec<bool> {
        let [d, h, w] = dims;
        (0..d * h * w)
            .map(|i| {
                let p = [i / (h * w), (i / w) % h, i % w];
                p.iter().all(|&c| c >= lo && c < hi)
            })
            .collect()
    }

    #[test]
    fn identical_shapes_score_perfectly_and_different_ones_do_not() {
        let dims = [12, 12, 12];
        let g = boxed(dims, 2, 10);
        let m = reconstruction(&g, &g, dims).unwrap();
        assert_eq!(
            (m["iou"], m["volume_error"], m["surface_error"], m["roughness_error"]),
            (1.0, 0.0, 0.0, 0.0)
        );
        let p = boxed(dims, 2, 6); // 64 of the 512 voxels
        let m = reconstruction(&p, &g, dims).unwrap();
        assert_eq!(m["iou"], 64.0 / 512.0);
        assert_eq!(iou(&p, &g), m["iou"]);
        assert_eq!(iou(&[false; 3], &[false; 3]), 1.0);
        assert_eq!(m["volume_error"], (512.0 - 64.0) / 512.0);
        assert!(m["surface_error"] > 0.5 && m["surface_error"] < 1.0, "{}", m["surface_error"]);
        let names: Vec<_> = METRICS.iter().map(|d| d.name).collect();
        assert_eq!(m.keys().collect::<Vec<_>>().len(), names.len());
        let empty = vec![false; g.len()];
        let m = reconstruction(&empty, &g, dims).unwrap();
        assert_eq!((m["iou"], m["volume_error"], m["surface_error"]), (0.0, 1.0, 1.0));
        assert!(reconstruction(&g, &empty, dims).unwrap_err().to_string().contains("empty shape"));
    }
}
