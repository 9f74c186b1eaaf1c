//! Height calibration: how far along z to stretch a model's shapes, fitted on real cells.
//!
//! Why: the height of a cell is what its 2D inputs determine least, and it is where the synthetic
//! training cells and the real ones disagree. On the 25 real cells the default model predicts
//! every class about 40-44 voxels tall, while the real keratocytes are 30 and the other classes
//! 46-50; stretching each sample along z by the best factor per cell would take the mean IoU from
//! 0.587 to 0.656. The logarithm of the factor is fitted on the cell's 2D features
//! (`dispr_shape::features::FEATURES_2D`) on cells with ground truth, in two stages with a
//! handful of parameters, which 20-odd real cells can fit without the overfitting that
//! fine-tuning the 3D network on them showed (model/checkpoints/README.md has the figures):
//!
//! 1. one split (a regression stump): the single feature threshold that best separates the cells'
//!    factors into two groups, each with its mean. The relation it finds on the real cells is
//!    not linear: the cells whose central slice is nearly saturated (`intensity_max` above 240
//!    of 255) are all flat, best squeezed to about 0.56 of the model's height, and no other cell
//!    is. Plausibly optics: a flat cell lies within the microscope's optical section, so its
//!    central slice gathers most of its fluorescence. A linear fit spreads that step over every
//!    cell instead.
//! 2. a ridge regression of what the split leaves unexplained, on the standardised features.
//!
//! Before the stretch, each shape is smoothed ([`smooth`], `smooth_sigma` voxels) to round the
//! network's blocky corners.
//!
//! The calibration is part of a checkpoint's sidecar, so every path that samples a checkpoint
//! (worker, local mode, `evaluate`) applies it the same way: [`crate::Predictor::sample`]
//! stretches each returned volume about the stack's middle plane (the dataset centres every cell
//! in z). `dispr-worker calibrate` fits it.

use dispr_proto::records::FeatureMap;
use dispr_shape::features::{FEATURES_2D, features_2d};
use dispr_shape::volume::SIDE;
use serde::{Deserialize, Serialize};

/// The stretch factors considered, smallest and largest: a calibrated shape is never squeezed
/// below 0.4 or stretched beyond 2.5 times the model's height.
pub const FACTOR_RANGE: (f64, f64) = (0.4, 2.5);

/// Factors searched per cell when fitting, evenly spaced in log over [`FACTOR_RANGE`].
const GRID_POINTS: usize = 49;

/// A fitted calibration, as stored in a checkpoint's sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZCalibration {
    /// The 2D features the factor is computed from (names of `FEATURES_2D`), in weight order.
    pub features: Vec<String>,
    /// Each feature's mean and standard deviation over the fitted cells (standardisation).
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Each feature's smallest and largest value over the fitted cells: a cell's features are
    /// clamped into that range first, so the calibration never extrapolates beyond the cells it
    /// has seen (a linear fit on a few dozen cells would send an unusual cell's factor anywhere).
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    /// ln(factor) = the split's value + bias + sum of weight x standardised feature.
    pub weights: Vec<f64>,
    pub bias: f64,
    /// The first stage, when the fit had enough cells for it (calibrations from before it have
    /// none: they are the ridge alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Standard deviation (voxels) of the Gaussian every shape is smoothed with before it is
    /// stretched; 0 leaves it as sampled (calibrations from before it).
    #[serde(default)]
    pub smooth_sigma: f64,
    /// The ridge penalty it was fitted with, the number of cells and the sampler they were
    /// sampled with (the factors are relative to that sampler's shapes).
    pub ridge: f64,
    pub cells: usize,
    pub sampler: String,
}

/// Why a calibration could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("fitting the height calibration needs at least 2 cells with ground truth; got {0}")]
    TooFewCells(usize),
    #[error("cell {cell}: {what} is not a finite number; check the cell's files")]
    NotFinite { cell: String, what: String },
    #[error("--ridge must be positive and finite; got {0}")]
    Ridge(f64),
    #[error("--smooth must be between 0 and {MAX_SMOOTH_SIGMA} voxels; got {0}")]
    Smooth(f64),
    #[error(
        "the cells' 2D features are too extreme to fit (the regression's system is not solvable); check the dataset"
    )]
    Unsolvable,
}

/// A regression stump on one 2D feature: ln(factor) gets `below` where the (unclamped) feature
/// is at most `threshold`, `above` where it is larger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub feature: String,
    pub threshold: f64,
    pub below: f64,
    pub above: f64,
}

impl Split {
    /// The split's contribution to ln(factor); None where the feature is missing or not finite.
    fn value(&self, features: &FeatureMap) -> Option<f64> {
        features.get(&self.feature).copied().filter(|v| v.is_finite()).map(|x| self.at(x))
    }

    /// The split's contribution for a feature value `x`.
    fn at(&self, x: f64) -> f64 {
        if x <= self.threshold { self.below } else { self.above }
    }

    /// The split of `targets` by one column of `rows` (named by `names`) that leaves the least
    /// squared error, each side holding at least `min_leaf` cells, and its column; None where no
    /// such split exists. Thresholds lie halfway between consecutive distinct values (as
    /// scikit-learn's trees); ties between features go to the first.
    fn best(names: &[String], rows: &[Vec<f64>], targets: &[f64], min_leaf: usize) -> Option<(Self, usize)> {
        let n = targets.len();
        if min_leaf == 0 || n < 2 * min_leaf {
            return None;
        }
        let total: f64 = targets.iter().sum();
        let total_sq: f64 = targets.iter().map(|t| t * t).sum();
        let mut best: Option<(Self, usize, f64)> = None;
        for (j, name) in names.iter().enumerate() {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| rows[a][j].total_cmp(&rows[b][j]));
            let mut left = 0.0;
            for k in 1..n {
                left += targets[order[k - 1]];
                let (lo, hi) = (rows[order[k - 1]][j], rows[order[k]][j]);
                if k < min_leaf || n - k < min_leaf || lo == hi {
                    continue;
                }
                let right = total - left;
                // Sum of squares about each side's mean: total_sq - left^2 / k - right^2 / (n - k).
                let error = total_sq - left * left / k as f64 - right * right / (n - k) as f64;
                if best.as_ref().is_none_or(|(_, _, e)| error < *e - 1e-12) {
                    let split = Self {
                        feature: name.clone(),
                        threshold: lo + (hi - lo) / 2.0,
                        below: left / k as f64,
                        above: right / (n - k) as f64,
                    };
                    best = Some((split, j, error));
                }
            }
        }
        best.map(|(split, j, _)| (split, j))
    }
}

/// Cells each side of a split must hold at least this many fitted cells: fewer, and the split
/// would single out one odd cell.
pub const SPLIT_MIN_CELLS: usize = 3;

/// One cell to fit on: its 2D features and the stretch that suits its samples best.
#[derive(Debug, Clone)]
pub struct FitCell {
    pub id: String,
    pub features: FeatureMap,
    pub best_factor: f64,
}

impl ZCalibration {
    /// Fits ln(best factor): first the best [`Split`] with at least `split_min_cells` cells each
    /// side (0: no split; none either where there are too few cells for one), then a ridge
    /// regression (penalty `ridge`, the intercept not penalised) of what is left on the
    /// standardised 2D features. `smooth_sigma` is recorded as given: the cells' best factors
    /// must have been measured on shapes smoothed by it ([`smooth`]).
    pub fn fit(
        cells: &[FitCell],
        ridge: f64,
        split_min_cells: usize,
        smooth_sigma: f64,
        sampler: &str,
    ) -> Result<Self, FitError> {
        if !(ridge.is_finite() && ridge > 0.0) {
            return Err(FitError::Ridge(ridge));
        }
        check_smooth_sigma(smooth_sigma)?;
        if cells.len() < 2 {
            return Err(FitError::TooFewCells(cells.len()));
        }
        let names: Vec<String> = FEATURES_2D.iter().map(|f| f.name.to_string()).collect();
        let mut rows = Vec::with_capacity(cells.len());
        for c in cells {
            rows.push(feature_vector(&names, &c.features).map_err(|what| FitError::NotFinite {
                cell: c.id.clone(),
                what: format!("2D feature {what}"),
            })?);
            if !(c.best_factor.is_finite() && c.best_factor > 0.0) {
                return Err(FitError::NotFinite { cell: c.id.clone(), what: "the best factor".into() });
            }
        }
        let n = rows.len() as f64;
        let d = names.len();
        let mean: Vec<f64> = (0..d).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n).collect();
        let std: Vec<f64> = (0..d)
            .map(|j| {
                let var = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
                // A constant feature carries nothing: a unit scale keeps it at zero.
                if var > 1e-12 { var.sqrt() } else { 1.0 }
            })
            .collect();
        let min: Vec<f64> = (0..d).map(|j| rows.iter().map(|r| r[j]).fold(f64::INFINITY, f64::min)).collect();
        let max: Vec<f64> =
            (0..d).map(|j| rows.iter().map(|r| r[j]).fold(f64::NEG_INFINITY, f64::max)).collect();
        let x = nalgebra::DMatrix::from_fn(rows.len(), d, |i, j| (rows[i][j] - mean[j]) / std[j]);
        let targets: Vec<f64> = cells.iter().map(|c| c.best_factor.ln()).collect();
        let split = Split::best(&names, &rows, &targets, split_min_cells);
        // What the split leaves for the ridge.
        let y = nalgebra::DVector::from_iterator(
            cells.len(),
            rows.iter().zip(&targets).map(|(r, t)| t - split.as_ref().map_or(0.0, |(s, j)| s.at(r[*j]))),
        );
        let split = split.map(|(s, _)| s);
        // Centred features: the intercept is the mean target, the weights solve
        // (X'X + ridge I) w = X'(y - mean).
        let bias = y.mean();
        let yc = y.add_scalar(-bias);
        let a = x.transpose() * &x + nalgebra::DMatrix::<f64>::identity(d, d) * ridge;
        // Positive definite for a positive ridge, unless the features overflow.
        let weights = a.cholesky().map(|c| c.solve(&(x.transpose() * yc))).ok_or(FitError::Unsolvable)?;
        Ok(Self {
            features: names,
            mean,
            std,
            min,
            max,
            weights: weights.iter().copied().collect(),
            bias,
            split,
            smooth_sigma,
            ridge,
            cells: cells.len(),
            sampler: sampler.to_string(),
        })
    }

    /// Checks a calibration read from a file: one weight, mean, scale and range per feature,
    /// every number finite, scales positive, ranges ordered. Err says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let d = self.features.len();
        for (what, len) in [
            ("mean", self.mean.len()),
            ("std", self.std.len()),
            ("min", self.min.len()),
            ("max", self.max.len()),
            ("weights", self.weights.len()),
        ] {
            if len != d {
                return Err(format!("z_calibration.{what} has {len} values for {d} features"));
            }
        }
        let numbers =
            self.mean.iter().chain(&self.std).chain(&self.min).chain(&self.max).chain(&self.weights);
        if !numbers.chain([&self.bias]).all(|v| v.is_finite()) {
            return Err("z_calibration holds a number that is not finite".into());
        }
        if let Some(j) = (0..d).find(|&j| self.std[j] <= 0.0 || self.min[j] > self.max[j]) {
            return Err(format!(
                "z_calibration's feature {} has scale {} and range [{}, {}]: the scale must be positive and the range ordered",
                self.features[j], self.std[j], self.min[j], self.max[j]
            ));
        }
        if let Some(split) = &self.split
            && ![split.threshold, split.below, split.above].iter().all(|v| v.is_finite())
        {
            return Err("z_calibration.split holds a number that is not finite".into());
        }
        if !(0.0..=MAX_SMOOTH_SIGMA).contains(&self.smooth_sigma) {
            return Err(format!(
                "z_calibration.smooth_sigma is {}: it must be between 0 and {MAX_SMOOTH_SIGMA} voxels",
                self.smooth_sigma
            ));
        }
        Ok(())
    }

    /// The stretch factor for a cell with these 2D features (each clamped into the fitted
    /// cells' range), within [`FACTOR_RANGE`]; None where a feature the calibration needs is
    /// missing or not finite.
    pub fn factor_for(&self, features: &FeatureMap) -> Option<f64> {
        let v = feature_vector(&self.features, features).ok()?;
        let mut z = self.bias;
        if let Some(split) = &self.split {
            z += split.value(features)?;
        }
        for (j, x) in v.iter().enumerate() {
            let x = x.clamp(self.min[j], self.max[j]);
            z += self.weights[j] * (x - self.mean[j]) / self.std[j];
        }
        z.is_finite().then(|| z.exp().clamp(FACTOR_RANGE.0, FACTOR_RANGE.1))
    }

    /// The stretch factor for a cell's 64x64 image and mask; 1 (no stretch) where its 2D
    /// features cannot be measured (an empty mask), with a warning.
    pub fn factor(&self, image: &[u8], mask: &[u8]) -> f64 {
        let factor = features_2d(image, mask, SIDE, SIDE).ok().and_then(|f| self.factor_for(&f));
        factor.unwrap_or_else(|| {
            tracing::warn!("the cell's 2D features cannot be measured: its shapes are not height-calibrated");
            1.0
        })
    }

    /// A sampled 64^3 volume as this calibration makes it: smoothed, then stretched by
    /// `factor` (the cell's [`Self::factor`]).
    pub fn apply(&self, volume: &[f32], factor: f64) -> Vec<f32> {
        stretch_z(&smooth(volume, self.smooth_sigma), factor)
    }
}

/// The most smoothing a calibration accepts (voxels): beyond it a 64^3 cell is a blur.
pub const MAX_SMOOTH_SIGMA: f64 = 8.0;

/// Err where `sigma` is not a smoothing a calibration accepts (0 to [`MAX_SMOOTH_SIGMA`]).
pub fn check_smooth_sigma(sigma: f64) -> Result<(), FitError> {
    if (0.0..=MAX_SMOOTH_SIGMA).contains(&sigma) { Ok(()) } else { Err(FitError::Smooth(sigma)) }
}

/// `volume` (64^3, z y x) smoothed by a Gaussian of `sigma` voxels (zero beyond the stack);
/// `sigma` 0 copies it. Why: the network's 16^3 correction, upsampled onto the mask's
/// hard-edged extrusion, leaves blocky corners that real cells do not have; smoothing before
/// Otsu rounds them (on the 25 real cells sigma 2 raised the IoU by about 0.01 at every factor,
/// in every class).
pub fn smooth(volume: &[f32], sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        return volume.to_vec();
    }
    dispr_shape::features::gaussian_smooth(volume, [SIDE; 3], sigma)
}

/// The values of `names` in `features`; Err(name) for the first missing or non-finite one.
fn feature_vector(names: &[String], features: &FeatureMap) -> Result<Vec<f64>, String> {
    names
        .iter()
        .map(|n| features.get(n).copied().filter(|v| v.is_finite()).ok_or_else(|| n.clone()))
        .collect()
}

/// `volume` (64^3, z y x) stretched along z by `factor` about the stack's middle plane, with
/// linear interpolation between slices; what falls outside the stack is cut, what comes in from
/// beyond it is empty.
pub fn stretch_z(volume: &[f32], factor: f64) -> Vec<f32> {
    let plane = SIDE * SIDE;
    debug_assert_eq!(volume.len(), plane * SIDE);
    if factor == 1.0 {
        return volume.to_vec();
    }
    let centre = (SIDE as f64 - 1.0) / 2.0;
    let mut out = vec![0f32; volume.len()];
    for (z, page) in out.chunks_exact_mut(plane).enumerate() {
        let from = centre + (z as f64 - centre) / factor;
        let lo = from.floor();
        let w = (from - lo) as f32;
        let slice = |i: f64| -> Option<&[f32]> {
            (i >= 0.0 && i < SIDE as f64).then(|| &volume[i as usize * plane..(i as usize + 1) * plane])
        };
        for (i, weight) in [(lo, 1.0 - w), (lo + 1.0, w)] {
            if let (Some(src), true) = (slice(i), weight > 0.0) {
                for (o, &v) in page.iter_mut().zip(src) {
                    *o += weight * v;
                }
            }
        }
    }
    out
}

/// The factors a fit searches, evenly spaced in log over [`FACTOR_RANGE`].
pub fn factor_grid() -> Vec<f64> {
    let (lo, hi) = (FACTOR_RANGE.0.ln(), FACTOR_RANGE.1.ln());
    (0..GRID_POINTS).map(|i| (lo + (hi - lo) * i as f64 / (GRID_POINTS - 1) as f64).exp()).collect()
}

/// The mean IoU against `truth` of `samples` stretched by `factor` and binarised as they are
/// scored (Otsu on x / max).
pub fn stretched_iou(samples: &[Vec<f32>], truth: &[bool], factor: f64) -> f64 {
    let sum: f64 = samples
        .iter()
        .map(|s| dispr_shape::reconstruction::iou(&dispr_shape::otsu::binarise(&stretch_z(s, factor)), truth))
        .sum();
    sum / samples.len().max(1) as f64
}

/// The factor of [`factor_grid`] whose stretched `samples` score the highest
/// [`stretched_iou`], and that IoU.
pub fn best_factor(samples: &[Vec<f32>], truth: &[bool]) -> (f64, f64) {
    let mut best: (f64, f64) = (1.0, f64::NEG_INFINITY);
    for factor in factor_grid() {
        let iou = stretched_iou(samples, truth, factor);
        // Ties go to the factor nearest 1 (the grid is symmetric in log only by chance).
        if iou > best.1 + 1e-12 || ((iou - best.1).abs() <= 1e-12 && factor.ln().abs() < best.0.ln().abs()) {
            best = (factor, iou);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A centred slab of the given half-height (voxels) over the whole plane.
    fn slab(half: f64) -> Vec<f32> {
        let c = (SIDE as f64 - 1.0) / 2.0;
        (0..SIDE * SIDE * SIDE)
            .map(|i| if ((i / (SIDE * SIDE)) as f64 - c).abs() <= half { 1.0 } else { 0.0 })
            .collect()
    }

    fn height(volume: &[f32]) -> usize {
        volume.chunks_exact(SIDE * SIDE).filter(|p| p[0] >= 0.5).count()
    }

    #[test]
    fn stretching_scales_the_height_about_the_middle() {
        let v = slab(8.0);
        assert_eq!(height(&v), 16);
        assert_eq!(stretch_z(&v, 1.0), v);
        assert_eq!(height(&stretch_z(&v, 2.0)), 32);
        assert_eq!(height(&stretch_z(&v, 0.5)), 8);
        // Still centred: symmetric about the middle plane.
        let s = stretch_z(&v, 1.7);
        let plane = SIDE * SIDE;
        for z in 0..SIDE / 2 {
            assert!((s[z * plane] - s[(SIDE - 1 - z) * plane]).abs() < 1e-6, "slice {z}");
        }
    }

    #[test]
    fn the_best_factor_recovers_a_known_stretch() {
        let truth: Vec<bool> = slab(15.5).iter().map(|&v| v > 0.5).collect();
        let (factor, iou) = best_factor(&[slab(7.5)], &truth);
        // Within a voxel at the faces: factors from about 1.85 to 2 put the same voxels above
        // Otsu's threshold, and ties go to the factor nearest 1.
        assert!((1.8..=2.05).contains(&factor), "{factor}");
        assert_eq!(iou, 1.0);
        // Nothing to gain: no stretch.
        assert_eq!(best_factor(&[slab(15.5)], &truth), (1.0, 1.0));
    }

    #[test]
    fn smoothing_rounds_a_box_and_keeps_its_bulk() {
        // A 20^3 box: smoothing takes its corners (that Otsu then drops), not its faces' middles.
        let inside = |z: usize, y: usize, x: usize| [z, y, x].iter().all(|&c| (22..42).contains(&c));
        let cube: Vec<f32> = (0..SIDE * SIDE * SIDE)
            .map(|i| if inside(i / (SIDE * SIDE), i / SIDE % SIDE, i % SIDE) { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(smooth(&cube, 0.0), cube);
        let round = dispr_shape::otsu::binarise(&smooth(&cube, 2.0));
        let at = |z: usize, y: usize, x: usize| round[(z * SIDE + y) * SIDE + x];
        assert!(at(22, 31, 31) && at(31, 31, 22) && at(31, 31, 31), "face middles stay");
        assert!(!at(22, 22, 22) && !at(41, 41, 41), "corners go");
        // Applied as the calibration does: smoothed, then stretched.
        let cells: Vec<FitCell> = (0..2)
            .map(|i| FitCell {
                id: format!("c{i}"),
                features: features(100.0 * (i + 1) as f64),
                best_factor: 1.5,
            })
            .collect();
        let cal = ZCalibration::fit(&cells, 1.0, 0, 2.0, "x").unwrap();
        assert_eq!(cal.smooth_sigma, 2.0);
        assert_eq!(cal.apply(&cube, 1.5), stretch_z(&smooth(&cube, 2.0), 1.5));
    }

    /// Features of a cell where only `area` varies.
    fn features(area: f64) -> FeatureMap {
        FEATURES_2D.iter().map(|f| (f.name.to_string(), if f.name == "area" { area } else { 1.0 })).collect()
    }

    #[test]
    fn a_fit_recovers_a_linear_relation_and_refuses_bad_input() {
        // ln(factor) = 0.2 - (area - 500) / 600: larger cells are flatter. The ridge alone
        // (no split: 0 cells per side).
        let cells: Vec<FitCell> = (0..12)
            .map(|i| {
                let area = 300.0 + 40.0 * i as f64;
                FitCell {
                    id: format!("c{i}"),
                    features: features(area),
                    best_factor: (0.2 - (area - 500.0) / 600.0).exp(),
                }
            })
            .collect();
        let cal = ZCalibration::fit(&cells, 1e-6, 0, 0.0, "ddim-2").unwrap();
        for area in [320.0, 500.0, 700.0] {
            let want = (0.2 - (area - 500.0) / 600.0f64).exp();
            let got = cal.factor_for(&features(area)).unwrap();
            assert!((got - want).abs() < 1e-3, "area {area}: {got} vs {want}");
        }
        // Features beyond the fitted cells' range count as its edge: no extrapolation.
        assert_eq!(cal.factor_for(&features(-5000.0)), cal.factor_for(&features(300.0)));
        assert_eq!(cal.factor_for(&features(5000.0)), cal.factor_for(&features(740.0)));
        // A strong ridge pulls towards the mean factor.
        let strong = ZCalibration::fit(&cells, 1e6, 0, 0.0, "ddim-2").unwrap();
        let mean = cells.iter().map(|c| c.best_factor.ln()).sum::<f64>() / 12.0;
        assert!((strong.factor_for(&features(300.0)).unwrap().ln() - mean).abs() < 0.01);
        // Missing features give no factor; bad fits say why.
        assert_eq!(cal.factor_for(&FeatureMap::new()), None);
        assert!(matches!(ZCalibration::fit(&cells[..1], 1.0, 3, 0.0, "x"), Err(FitError::TooFewCells(1))));
        assert!(matches!(ZCalibration::fit(&cells, 0.0, 3, 0.0, "x"), Err(FitError::Ridge(_))));
        assert!(matches!(ZCalibration::fit(&cells, 1.0, 3, -1.0, "x"), Err(FitError::Smooth(_))));
        assert!(matches!(ZCalibration::fit(&cells, 1.0, 3, f64::NAN, "x"), Err(FitError::Smooth(_))));
        let mut nan = cells.clone();
        nan[3].features.insert("area".into(), f64::NAN);
        let err = ZCalibration::fit(&nan, 1.0, 3, 0.0, "x").unwrap_err().to_string();
        assert!(err.contains("c3") && err.contains("area"), "{err}");
        // A stored one is checked before use.
        assert_eq!(cal.validate(), Ok(()));
        let mut short = cal.clone();
        short.weights.pop();
        assert!(short.validate().unwrap_err().contains("weights has 18 values for 19 features"));
        let mut reversed = cal.clone();
        (reversed.min[0], reversed.max[0]) = (reversed.max[0], reversed.min[0] - 1.0);
        assert!(reversed.validate().unwrap_err().contains("range ordered"));
        let blurred = ZCalibration { smooth_sigma: 100.0, ..cal.clone() };
        assert!(blurred.validate().unwrap_err().contains("smooth_sigma"));
        // It survives the sidecar's JSON.
        let back: ZCalibration = serde_json::from_str(&serde_json::to_string(&cal).unwrap()).unwrap();
        assert_eq!(back, cal);
    }

    #[test]
    fn the_split_finds_a_step_that_a_line_cannot() {
        // Bright cells (intensity_max 236-245) are half as tall as the dim ones (150-230); area
        // varies too but says nothing. 9 dim cells and 4 bright ones.
        let cell = |i: usize, max: f64, factor: f64| {
            let mut f = features(300.0 + 37.0 * ((i * 5) % 13) as f64);
            f.insert("intensity_max".into(), max);
            FitCell { id: format!("c{i}"), features: f, best_factor: factor }
        };
        let mut cells: Vec<FitCell> = (0..9).map(|i| cell(i, 150.0 + 10.0 * i as f64, 1.1)).collect();
        cells.extend((9..13).map(|i| cell(i, 236.0 + 3.0 * (i - 9) as f64, 0.55)));
        let cal = ZCalibration::fit(&cells, 10.0, SPLIT_MIN_CELLS, 0.0, "ddim-2").unwrap();
        let split = cal.split.clone().expect("13 cells are enough for a split");
        assert_eq!(split.feature, "intensity_max");
        // Halfway between the brightest dim cell (230) and the dimmest bright one (236).
        assert_eq!(split.threshold, 233.0);
        assert!((split.below - 1.1f64.ln()).abs() < 1e-9 && (split.above - 0.55f64.ln()).abs() < 1e-9);
        let factor = |max: f64| {
            let mut f = features(500.0);
            f.insert("intensity_max".into(), max);
            cal.factor_for(&f).unwrap()
        };
        assert!((factor(160.0) - 1.1).abs() < 1e-6, "{}", factor(160.0));
        assert!((factor(250.0) - 0.55).abs() < 1e-6, "{}", factor(250.0));
        // The ridge alone blurs the step (the least dim cells pull the line): the dimmest cell
        // comes out too tall, the brightest not squeezed enough.
        let ridge = ZCalibration::fit(&cells, 10.0, 0, 0.0, "ddim-2").unwrap();
        assert_eq!(ridge.split, None);
        let (dim, bright) =
            (ridge.factor_for(&cells[0].features).unwrap(), ridge.factor_for(&cells[12].features).unwrap());
        assert!(dim > 1.12 && bright > 0.7, "{dim} {bright}");
        // Too few cells for both sides: no split, and a stored split is checked.
        assert_eq!(ZCalibration::fit(&cells[7..12], 10.0, SPLIT_MIN_CELLS, 0.0, "x").unwrap().split, None);
        let mut bad = cal.clone();
        bad.split.as_mut().unwrap().above = f64::NAN;
        assert!(bad.validate().unwrap_err().contains("split"));
        // It survives the sidecar's JSON (to the last bit or so: serde_json's float parsing).
        let back: ZCalibration = serde_json::from_str(&serde_json::to_string(&cal).unwrap()).unwrap();
        assert_eq!(
            back.split.as_ref().map(|s| (&s.feature, s.threshold)),
            Some((&split.feature, split.threshold))
        );
        assert!((back.factor_for(&cells[12].features).unwrap() - 0.55).abs() < 1e-9);
    }
}
