//! Cell-type classification from shape features, as the reference study: a random forest
//! (1000 trees, maximum depth 10, seeded, class-balanced) evaluated by stratified k-fold
//! cross-validation, reported per class and as macro F1.

pub mod forest;
pub mod scores;

pub use forest::{Forest, ForestConfig, TrainSet};
pub use scores::{ClassMetrics, Scores, evaluate};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Cross-validation settings; the defaults are the reference study's (stratified 5-fold, random
/// forest of 1000 trees of depth 10), repeated over 5 seeds because one split of small classes
/// is noisy.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CvConfig {
    pub folds: usize,
    /// Repetitions of the whole cross-validation; repetition r uses the seed `forest.seed + r`
    /// for its folds and forests.
    #[serde(default = "one")]
    pub repeats: usize,
    pub forest: ForestConfig,
    /// Most cells of one class that are cross-validated ([`capped_sample`]); `None`: every cell.
    /// Forests grow faster than linearly with the cells, so a run of a million cells is
    /// classified on a stratified sample. Absent in reports made before the cap existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_per_class: Option<usize>,
}

/// Cells per class cross-validated by default on large runs: classes of at most this many
/// cells (the rare ones, and every class of the real 825-cell dataset) are used whole, so their
/// figures are those of an uncapped run; the 6 classes of a large run give at most 6,000 cells.
pub const DEFAULT_CAP_PER_CLASS: usize = 1000;

fn one() -> usize {
    1
}

/// Repetitions of the cross-validation by default.
pub const DEFAULT_REPEATS: usize = 5;

impl Default for CvConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            repeats: DEFAULT_REPEATS,
            forest: ForestConfig::default(),
            cap_per_class: Some(DEFAULT_CAP_PER_CLASS),
        }
    }
}

impl CvConfig {
    /// The seeds of the repetitions: `forest.seed`, `forest.seed + 1`, ...
    pub fn seeds(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.repeats.max(1) as u64).map(|r| self.forest.seed.wrapping_add(r))
    }
}

/// Stratified fold of each sample: every class is shuffled (seeded) and dealt round-robin, so
/// each fold holds about 1/k of every class. A class with fewer samples than folds is simply
/// absent from some test folds.
pub fn stratified_folds(y: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0; y.len()];
    let classes = y.iter().copied().max().map_or(0, |m| m + 1);
    let mut next = 0;
    for c in 0..classes {
        let mut members: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
        members.shuffle(&mut rng);
        // Continue the deal where the previous class stopped, so small classes do not all
        // land in the first folds.
        for i in members {
            fold[i] = next % folds.max(1);
            next += 1;
        }
    }
    fold
}

/// The samples (indices into `y`, sorted) a cross-validation capped at `cap` per class uses:
/// every sample of a class with at most `cap` samples, and a seeded random `cap` of each larger
/// class. Stratified by construction: the rare classes keep every cell, and the majority is
/// sampled without favouring any of its cells.
pub fn capped_sample(y: &[usize], cap: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let classes = y.iter().copied().max().map_or(0, |m| m + 1);
    let mut kept = Vec::with_capacity(y.len().min(cap.saturating_mul(classes)));
    for c in 0..classes {
        let mut members: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
        if members.len() > cap {
            members.shuffle(&mut rng);
            members.truncate(cap);
        }
        kept.extend(members);
    }
    kept.sort_unstable();
    kept
}

/// Out-of-fold prediction of every sample (scikit-learn's `cross_val_predict`) for a
/// cross-validation seeded `seed`: the samples are dealt into stratified folds, and for each fold
/// a forest (seeded from `seed` and the fold) is trained on the other folds and predicts this one.
pub fn cross_val_predict(
    x: &[Vec<f64>],
    y: &[usize],
    classes: usize,
    folds: usize,
    forest: &ForestConfig,
    seed: u64,
) -> Vec<usize> {
    let fold = stratified_folds(y, folds, seed);
    let mut predicted = vec![0; y.len()];
    for f in 0..folds {
        let train: Vec<usize> = (0..y.len()).filter(|&i| fold[i] != f).collect();
        let test: Vec<usize> = (0..y.len()).filter(|&i| fold[i] == f).collect();
        if test.is_empty() || train.is_empty() {
            continue;
        }
        let tx: Vec<Vec<f64>> = train.iter().map(|&i| x[i].clone()).collect();
        let ty: Vec<usize> = train.iter().map(|&i| y[i]).collect();
        // Distinct for every (seed, fold), so repetitions never share a forest's random stream.
        let forest_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ f as u64;
        let forest = Forest::fit(
            &TrainSet { x: &tx, y: &ty, classes },
            &ForestConfig { seed: forest_seed, ..*forest },
        );
        for i in test {
            predicted[i] = forest.predict(&x[i]);
        }
    }
    predicted
}

/// [`cross_val_predict`] once per repetition of `config` (seeds [`CvConfig::seeds`]).
pub fn repeated_cross_val_predict(
    x: &[Vec<f64>],
    y: &[usize],
    classes: usize,
    config: &CvConfig,
) -> Vec<Vec<usize>> {
    config.seeds().map(|seed| cross_val_predict(x, y, classes, config.folds, &config.forest, seed)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_sample_keeps_every_rare_cell_and_caps_the_rest() {
        let y: Vec<usize> = (0..1000)
            .map(|i| {
                if i < 900 {
                    0
                } else if i < 990 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let kept = capped_sample(&y, 100, 7);
        let count = |c| kept.iter().filter(|&&i| y[i] == c).count();
        assert_eq!((count(0), count(1), count(2)), (100, 90, 10));
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        assert_eq!(kept, capped_sample(&y, 100, 7));
        assert_ne!(kept, capped_sample(&y, 100, 8), "the majority's sample follows the seed");
        assert_eq!(
            capped_sample(&y, 1000, 7),
            (0..1000).collect::<Vec<_>>(),
            "a cap above every class keeps all"
        );
    }

    #[test]
    fn folds_are_stratified_and_seeded() {
        let y: Vec<usize> = (0..100)
            .map(|i| {
                if i < 80 {
                    0
                } else if i < 95 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let folds = stratified_folds(&y, 5, 3);
        for f in 0..5 {
            let in_fold: Vec<usize> = (0..100).filter(|&i| folds[i] == f).collect();
            assert_eq!(in_fold.iter().filter(|&&i| y[i] == 0).count(), 16);
            assert_eq!(in_fold.iter().filter(|&&i| y[i] == 1).count(), 3);
            assert_eq!(in_fold.iter().filter(|&&i| y[i] == 2).count(), 1);
        }
        assert_eq!(folds, stratified_folds(&y, 5, 3));
        assert_ne!(folds, stratified_folds(&y, 5, 4));
    }

    #[test]
    fn cross_validation_predicts_every_sample_out_of_fold() {
        // Class = which of 3 features is large: perfectly learnable.
        let x: Vec<Vec<f64>> = (0..60)
            .map(|i| {
                (0..3).map(|f| if i % 3 == f { 10.0 + (i % 7) as f64 } else { (i % 5) as f64 }).collect()
            })
            .collect();
        let y: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let config = CvConfig {
            folds: 5,
            repeats: 3,
            forest: ForestConfig { trees: 20, max_depth: 4, seed: 1 },
            cap_per_class: None,
        };
        let runs = repeated_cross_val_predict(&x, &y, 3, &config);
        assert_eq!(runs.len(), 3);
        for p in &runs {
            let m = evaluate(&["a".into(), "b".into(), "c".into()], &y, p);
            assert_eq!(m.macro_f1, 1.0, "{m:?}");
        }
        assert_eq!(config.seeds().collect::<Vec<_>>(), [1, 2, 3]);
    }
}
