//! Cell-type classification from shape features, as the reference study: a random forest
//! (1000 trees, maximum depth 10, seeded, class-balanced) evaluated by stratified k-fold
//! cross-validation, reported per class and as macro F1.

pub mod forest;
pub mod metrics;

pub use forest::{Forest, ForestConfig, TrainSet};
pub use metrics::{ClassMetrics, Metrics, evaluate};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Cross-validation settings; the defaults are the reference study's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CvConfig {
    pub folds: usize,
    pub forest: ForestConfig,
}

impl Default for CvConfig {
    fn default() -> Self {
        Self { folds: 5, forest: ForestConfig::default() }
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

/// Out-of-fold prediction of every sample (scikit-learn's `cross_val_predict`): for each fold a
/// forest is trained on the other folds and predicts this one.
pub fn cross_val_predict(x: &[Vec<f64>], y: &[usize], classes: usize, config: &CvConfig) -> Vec<usize> {
    let fold = stratified_folds(y, config.folds, config.forest.seed);
    let mut predicted = vec![0; y.len()];
    for f in 0..config.folds {
        let train: Vec<usize> = (0..y.len()).filter(|&i| fold[i] != f).collect();
        let test: Vec<usize> = (0..y.len()).filter(|&i| fold[i] == f).collect();
        if test.is_empty() || train.is_empty() {
            continue;
        }
        let tx: Vec<Vec<f64>> = train.iter().map(|&i| x[i].clone()).collect();
        let ty: Vec<usize> = train.iter().map(|&i| y[i]).collect();
        let forest_config = ForestConfig { seed: config.forest.seed.wrapping_add(f as u64), ..config.forest };
        let forest = Forest::fit(&TrainSet { x: &tx, y: &ty, classes }, &forest_config);
        for i in test {
            predicted[i] = forest.predict(&x[i]);
        }
    }
    predicted
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let config = CvConfig { folds: 5, forest: ForestConfig { trees: 20, max_depth: 4, seed: 1 } };
        let p = cross_val_predict(&x, &y, 3, &config);
        let m = evaluate(&["a".into(), "b".into(), "c".into()], &y, &p);
        assert_eq!(m.macro_f1, 1.0, "{m:?}");
    }
}
