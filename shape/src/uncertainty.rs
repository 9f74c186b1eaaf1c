//! Ensemble uncertainty: what a cell's K binarised samples say about how sure the model is of its
//! shape, where in the cell and how much. One definition for the worker's per-cell outputs (the
//! probability and standard-deviation volumes, the scalars of the features record) and for
//! `dispr-worker evaluate`'s diversity columns, so the two agree.
//!
//! - probability: per voxel, the mean of the K binary samples (the fraction of samples that put
//!   the voxel inside the cell);
//! - standard deviation: per voxel, the population standard deviation of the K binary samples,
//!   sqrt(p (1 - p)) (0 where all samples agree, 0.5 where they split evenly);
//! - mean pairwise IoU: the IoU of every pair of samples, averaged (1 for identical samples);
//! - uncertain fraction: voxels with 0 < p < 1 (where the samples disagree), divided by the mean
//!   volume of the samples, so it compares cells of different sizes;
//! - mean entropy: the binary entropy of p in bits, averaged over every voxel of the volume;
//! - coefficient of variation of each 3D feature over the samples: population standard deviation
//!   divided by |mean| (the record's `std_3d / |mean_3d|`).
//!
//! All of them need two samples at least: with one, the uncertainty is unknown (`None`), never 0.

use crate::reconstruction::iou;
use dispr_proto::records::{FeatureMap, Uncertainty};

/// The voxel-wise summary of an ensemble of binary samples, and its scalars.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble {
    /// Per voxel, the fraction of samples in which it is foreground, in [0, 1].
    pub probability: Vec<f32>,
    /// Per voxel, the population standard deviation of the binary samples, sqrt(p (1 - p)).
    pub std: Vec<f32>,
    /// Mean IoU over the K (K - 1) / 2 pairs of samples.
    pub mean_pairwise_iou: f64,
    /// Voxels with 0 < p < 1 over the mean sample volume (0 when every sample is empty).
    pub uncertain_fraction: f64,
    /// Mean binary entropy of p over all voxels, in bits.
    pub mean_entropy: f64,
}

/// The ensemble of `samples` (binary volumes of one size), `None` for fewer than two: one sample
/// says nothing about how sure the model is. Compute (a few ms for five 64^3 samples): call it off
/// the async runtime.
///
/// Panics if the samples differ in length (the caller's bug: they come from one sampler).
pub fn ensemble(samples: &[&[bool]]) -> Option<Ensemble> {
    let k = samples.len();
    if k < 2 {
        return None;
    }
    let n = samples[0].len();
    assert!(samples.iter().all(|s| s.len() == n), "the samples of an ensemble have one size");
    // Only K + 1 values of p occur: tabulate p, its standard deviation and its entropy by count.
    let p_of = |c: usize| c as f64 / k as f64;
    let probability_of: Vec<f32> = (0..=k).map(|c| p_of(c) as f32).collect();
    let std_of: Vec<f32> = (0..=k).map(|c| (p_of(c) * (1.0 - p_of(c))).sqrt() as f32).collect();
    let entropy_of: Vec<f64> = (0..=k).map(|c| binary_entropy(p_of(c))).collect();

    let (mut probability, mut std) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut uncertain, mut entropy, mut foreground) = (0u64, 0.0f64, 0u64);
    for i in 0..n {
        let c = samples.iter().filter(|s| s[i]).count();
        probability.push(probability_of[c]);
        std.push(std_of[c]);
        uncertain += u64::from(c > 0 && c < k);
        entropy += entropy_of[c];
        foreground += c as u64;
    }
    let mean_volume = foreground as f64 / k as f64;
    Some(Ensemble {
        probability,
        std,
        mean_pairwise_iou: mean_pairwise_iou(samples)?,
        uncertain_fraction: if mean_volume > 0.0 { uncertain as f64 / mean_volume } else { 0.0 },
        mean_entropy: if n > 0 { entropy / n as f64 } else { 0.0 },
    })
}

/// H(p) = -p log2 p - (1 - p) log2 (1 - p), 0 at p = 0 and p = 1.
pub fn binary_entropy(p: f64) -> f64 {
    let h = |q: f64| if q > 0.0 { -q * q.log2() } else { 0.0 };
    h(p) + h(1.0 - p)
}

/// Mean IoU over every pair of `samples`; `None` for fewer than two. Two empty samples agree (IoU
/// 1, as [`iou`] defines it).
pub fn mean_pairwise_iou(samples: &[&[bool]]) -> Option<f64> {
    let k = samples.len();
    if k < 2 {
        return None;
    }
    let mut sum = 0.0;
    for a in 0..k {
        for b in a + 1..k {
            sum += iou(samples[a], samples[b]);
        }
    }
    Some(sum / (k * (k - 1) / 2) as f64)
}

/// Population standard deviation over |mean| of `values`; `None` for fewer than two values, and
/// where it is undefined (mean 0 with a spread). Values that do not vary have CV 0, whatever
/// their mean.
pub fn coefficient_of_variation(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    cv(mean, std)
}

fn cv(mean: f64, std: f64) -> Option<f64> {
    if std == 0.0 {
        Some(0.0)
    } else if mean != 0.0 && (std / mean.abs()).is_finite() {
        Some(std / mean.abs())
    } else {
        None
    }
}

/// Per 3D feature, its coefficient of variation over the samples from the record's mean and
/// population standard deviation (`proto::records::aggregate`). A feature whose mean is 0 while
/// it varies (an Euler characteristic of +2 and -2, say) has no CV and is left out: a record
/// holds finite numbers only.
pub fn feature_cv(mean_3d: &FeatureMap, std_3d: &FeatureMap) -> FeatureMap {
    mean_3d.iter().filter_map(|(name, &m)| cv(m, *std_3d.get(name)?).map(|v| (name.clone(), v))).collect()
}

/// The scalars of the features record for an ensemble and its samples' aggregated 3D features.
pub fn record(ensemble: &Ensemble, samples: u32, mean_3d: &FeatureMap, std_3d: &FeatureMap) -> Uncertainty {
    Uncertainty {
        samples,
        mean_pairwise_iou: ensemble.mean_pairwise_iou,
        uncertain_fraction: ensemble.uncertain_fraction,
        mean_entropy: ensemble.mean_entropy,
        feature_cv: feature_cv(mean_3d, std_3d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half(n: usize, first: bool) -> Vec<bool> {
        (0..n).map(|i| (i < n / 2) == first).collect()
    }

    #[test]
    fn identical_samples_have_no_spread() {
        let a = half(64 * 64 * 64, true);
        let e = ensemble(&[&a, &a, &a]).unwrap();
        assert!(e.std.iter().all(|&s| s == 0.0));
        let expected: Vec<f32> = a.iter().map(|&v| if v { 1.0 } else { 0.0 }).collect();
        assert_eq!(e.probability, expected);
        assert_eq!((e.mean_pairwise_iou, e.uncertain_fraction, e.mean_entropy), (1.0, 0.0, 0.0));
    }

    #[test]
    fn two_disjoint_samples_split_evenly() {
        let n = 64 * 64 * 64;
        let (a, b) = (half(n, true), half(n, false));
        let e = ensemble(&[&a, &b]).unwrap();
        assert!(e.probability.iter().all(|&p| p == 0.5));
        assert!(e.std.iter().all(|&s| s == 0.5));
        assert_eq!(e.mean_pairwise_iou, 0.0);
        // Every voxel is uncertain; the mean volume is half the cube.
        assert_eq!(e.uncertain_fraction, 2.0);
        assert_eq!(e.mean_entropy, 1.0);
    }

    #[test]
    fn one_sample_is_unknown_not_certain() {
        let a = half(8, true);
        assert_eq!(ensemble(&[&a]), None);
        assert_eq!(mean_pairwise_iou(&[&a]), None);
        assert_eq!(coefficient_of_variation(&[3.0]), None);
    }

    #[test]
    fn partial_overlap_and_three_samples() {
        // Voxels: 0 in all three, 1 in two, 2 in one, 3 in none.
        let a = [true, true, true, false];
        let b = [true, true, false, false];
        let c = [true, false, false, false];
        let e = ensemble(&[&a, &b, &c]).unwrap();
        let third = |c: f64| (c / 3.0) as f32;
        assert_eq!(e.probability, vec![1.0, third(2.0), third(1.0), 0.0]);
        let s = (2.0f64 / 9.0).sqrt() as f32;
        assert_eq!((e.std[0], e.std[3]), (0.0, 0.0));
        assert!((e.std[1] - s).abs() < 1e-7 && (e.std[2] - s).abs() < 1e-7, "{:?}", e.std);
        // IoU(a,b) = 2/3, IoU(a,c) = 1/3, IoU(b,c) = 1/2.
        assert!((e.mean_pairwise_iou - (2.0 / 3.0 + 1.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        // 2 uncertain voxels over a mean volume of 2.
        assert_eq!(e.uncertain_fraction, 1.0);
        let h = binary_entropy(1.0 / 3.0);
        assert!((e.mean_entropy - 2.0 * h / 4.0).abs() < 1e-12);
    }

    #[test]
    fn coefficients_of_variation() {
        assert_eq!(coefficient_of_variation(&[1.0, 3.0]), Some(0.5));
        assert_eq!(coefficient_of_variation(&[-1.0, -3.0]), Some(0.5));
        assert_eq!(coefficient_of_variation(&[0.0, 0.0]), Some(0.0));
        assert_eq!(coefficient_of_variation(&[-2.0, 2.0]), None);
        let m = FeatureMap::from([("volume".into(), 2.0), ("euler".into(), 0.0), ("flat".into(), 0.0)]);
        let s = FeatureMap::from([("volume".into(), 1.0), ("euler".into(), 2.0), ("flat".into(), 0.0)]);
        let cv = feature_cv(&m, &s);
        assert_eq!(cv, FeatureMap::from([("volume".into(), 0.5), ("flat".into(), 0.0)]));
    }
}
