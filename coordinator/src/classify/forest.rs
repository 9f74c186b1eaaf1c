//! A random forest of CART trees, as the reference study's scikit-learn classifier: bootstrap
//! samples, `sqrt(n_features)` candidate features per split, Gini impurity, a maximum depth,
//! probability averaging over the trees.
//!
//! Hand-written because no maintained crate fits: smartcore 0.7's forest has no class weights
//! (the dataset is imbalanced 50:1) and is single-threaded, and linfa's trees have no forest. A
//! report trains 15,000 trees (1000 x 5 folds x 3 feature sets); this one trains trees in
//! parallel with rayon on exact, presorted ranks, which keeps a report under a minute on 2 cores.
//!
//! Class imbalance: every tree weights its bootstrap sample by class, `n / (k n_c)` computed on
//! the training fold (scikit-learn's `class_weight="balanced"`), so rare classes count as much
//! as common ones in every impurity.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Forest settings; the defaults are the reference study's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ForestConfig {
    pub trees: usize,
    pub max_depth: usize,
    pub seed: u64,
}

impl Default for ForestConfig {
    fn default() -> Self {
        Self { trees: 1000, max_depth: 10, seed: 0 }
    }
}

/// A trained forest.
#[derive(Debug, Clone)]
pub struct Forest {
    trees: Vec<Tree>,
    classes: usize,
}

#[derive(Debug, Clone)]
enum Node {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    /// Class probabilities (weighted fractions) of the training samples that reached the leaf.
    Leaf(Vec<f64>),
}

#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
}

/// Training data: `x[i]` is sample i's feature vector, `y[i] < classes` its class.
pub struct TrainSet<'a> {
    pub x: &'a [Vec<f64>],
    pub y: &'a [usize],
    pub classes: usize,
}

impl Forest {
    /// Trains `config.trees` trees in parallel; the result does not depend on the thread count.
    pub fn fit(data: &TrainSet<'_>, config: &ForestConfig) -> Forest {
        let n = data.y.len();
        let features = data.x.first().map_or(0, Vec::len);
        let mut counts = vec![0usize; data.classes];
        for &c in data.y {
            counts[c] += 1;
        }
        let present = counts.iter().filter(|&&c| c > 0).count().max(1);
        let class_weight: Vec<f64> = counts
            .iter()
            .map(|&c| if c > 0 { n as f64 / (present as f64 * c as f64) } else { 0.0 })
            .collect();
        let trees = (0..config.trees)
            .into_par_iter()
            .map(|t| {
                let mut rng =
                    ChaCha8Rng::seed_from_u64(config.seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                // Bootstrap: multiplicity of each sample, times its class weight.
                let mut weight = vec![0.0; n];
                for _ in 0..n {
                    let i = rng.random_range(0..n);
                    weight[i] += class_weight[data.y[i]];
                }
                let mut builder = Builder {
                    data,
                    weight: &weight,
                    mtry: ((features as f64).sqrt().round() as usize).clamp(1, features.max(1)),
                    max_depth: config.max_depth,
                    rng,
                    nodes: Vec::new(),
                };
                let mut idx: Vec<usize> = (0..n).filter(|&i| weight[i] > 0.0).collect();
                builder.grow(&mut idx, 0);
                Tree { nodes: builder.nodes }
            })
            .collect();
        Forest { trees, classes: data.classes }
    }

    /// Mean of the trees' class probabilities for one sample.
    pub fn predict_proba(&self, x: &[f64]) -> Vec<f64> {
        let mut p = vec![0.0; self.classes];
        for tree in &self.trees {
            for (acc, v) in p.iter_mut().zip(tree.leaf(x)) {
                *acc += v;
            }
        }
        let k = self.trees.len().max(1) as f64;
        p.iter_mut().for_each(|v| *v /= k);
        p
    }

    /// The most probable class (the lowest index on ties, as numpy's argmax).
    pub fn predict(&self, x: &[f64]) -> usize {
        let p = self.predict_proba(x);
        let mut best = 0;
        for (c, &v) in p.iter().enumerate() {
            if v > p[best] {
                best = c;
            }
        }
        best
    }
}

impl Tree {
    fn leaf(&self, x: &[f64]) -> &[f64] {
        let mut i = 0;
        loop {
            match &self.nodes[i] {
                Node::Split { feature, threshold, left, right } => {
                    i = if x[*feature] <= *threshold { *left } else { *right }
                }
                Node::Leaf(p) => return p,
            }
        }
    }
}

struct Builder<'a> {
    data: &'a TrainSet<'a>,
    weight: &'a [f64],
    mtry: usize,
    max_depth: usize,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
}

struct Split {
    feature: usize,
    threshold: f64,
    /// Weighted Gini impurity of the two children, summed (lower is better).
    impurity: f64,
}

impl Builder<'_> {
    /// Grows the subtree of the samples `idx` and returns its node index.
    fn grow(&mut self, idx: &mut [usize], depth: usize) -> usize {
        let dist = self.distribution(idx);
        let total: f64 = dist.iter().sum();
        let pure = dist.iter().filter(|&&w| w > 0.0).count() <= 1;
        let at = self.nodes.len();
        self.nodes.push(Node::Leaf(Vec::new()));
        let split =
            if depth >= self.max_depth || pure || idx.len() < 2 { None } else { self.best_split(idx, &dist) };
        match split {
            Some(s) => {
                // Partition in place: samples going left first.
                let mut mid = 0;
                for k in 0..idx.len() {
                    if self.data.x[idx[k]][s.feature] <= s.threshold {
                        idx.swap(k, mid);
                        mid += 1;
                    }
                }
                let (l, r) = idx.split_at_mut(mid);
                let left = self.grow(l, depth + 1);
                let right = self.grow(r, depth + 1);
                self.nodes[at] = Node::Split { feature: s.feature, threshold: s.threshold, left, right };
            }
            None => self.nodes[at] = Node::Leaf(dist.iter().map(|w| w / total).collect()),
        }
        at
    }

    fn distribution(&self, idx: &[usize]) -> Vec<f64> {
        let mut dist = vec![0.0; self.data.classes];
        for &i in idx {
            dist[self.data.y[i]] += self.weight[i];
        }
        dist
    }

    /// The best of the splits on `mtry` random features (drawn without replacement; as in
    /// scikit-learn, more are drawn while the drawn ones are all constant in the node).
    fn best_split(&mut self, idx: &[usize], dist: &[f64]) -> Option<Split> {
        let features = self.data.x[0].len();
        let mut order: Vec<usize> = (0..features).collect();
        let mut best: Option<Split> = None;
        let mut tried_informative = 0;
        let mut pairs: Vec<(f64, usize)> = Vec::with_capacity(idx.len());
        for k in 0..features {
            if tried_informative >= self.mtry {
                break;
            }
            let j = self.rng.random_range(k..features);
            order.swap(k, j);
            let f = order[k];
            pairs.clear();
            pairs.extend(idx.iter().map(|&i| (self.data.x[i][f], i)));
            pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            if pairs[0].0 == pairs[pairs.len() - 1].0 {
                continue;
            }
            tried_informative += 1;
            let total: f64 = dist.iter().sum();
            let mut left = vec![0.0; dist.len()];
            let mut wl = 0.0;
            for s in 0..pairs.len() - 1 {
                let (v, i) = pairs[s];
                let w = self.weight[i];
                left[self.data.y[i]] += w;
                wl += w;
                let next = pairs[s + 1].0;
                if next == v {
                    continue;
                }
                let wr = total - wl;
                let gini_l = wl - left.iter().map(|c| c * c).sum::<f64>() / wl;
                let gini_r = wr - dist.iter().zip(&left).map(|(d, l)| (d - l) * (d - l)).sum::<f64>() / wr;
                let impurity = gini_l + gini_r;
                if best.as_ref().is_none_or(|b| impurity < b.impurity) {
                    best = Some(Split { feature: f, threshold: v + (next - v) / 2.0, impurity });
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian-ish blobs per class along different features, and a rare third class.
    fn toy(seed: u64) -> (Vec<Vec<f64>>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (class, n) in [(0usize, 200), (1, 100), (2, 15)] {
            for _ in 0..n {
                let noise: Vec<f64> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
                x.push(vec![
                    class as f64 * 1.5 + noise[0],
                    noise[1],
                    (class == 2) as u8 as f64 * 2.0 + noise[2],
                    noise[3],
                ]);
                y.push(class);
            }
        }
        (x, y)
    }

    #[test]
    fn learns_separable_classes_including_a_rare_one_and_is_reproducible() {
        let (x, y) = toy(1);
        let config = ForestConfig { trees: 50, max_depth: 6, seed: 7 };
        let forest = Forest::fit(&TrainSet { x: &x, y: &y, classes: 3 }, &config);
        let (tx, ty) = toy(2);
        let correct = tx.iter().zip(&ty).filter(|(x, y)| forest.predict(x) == **y).count();
        assert!(correct as f64 / ty.len() as f64 > 0.85, "{correct} of {}", ty.len());
        let rare = tx.iter().zip(&ty).filter(|(x, y)| **y == 2 && forest.predict(x) == 2).count();
        assert!(rare >= 10, "the rare class is found: {rare} of 15");
        let again = Forest::fit(&TrainSet { x: &x, y: &y, classes: 3 }, &config);
        assert!(tx.iter().all(|x| forest.predict_proba(x) == again.predict_proba(x)));
        let p = forest.predict_proba(&tx[0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn depth_zero_predicts_the_weighted_majority_and_constant_features_do_not_split() {
        let x = vec![vec![1.0]; 10];
        let y: Vec<usize> = (0..10).map(|i| (i < 3) as usize).collect();
        let forest = Forest::fit(
            &TrainSet { x: &x, y: &y, classes: 2 },
            &ForestConfig { trees: 5, max_depth: 10, seed: 0 },
        );
        // Balanced weights make both classes count the same: probabilities near 1/2 each.
        let p = forest.predict_proba(&[1.0]);
        assert!((p[0] - 0.5).abs() < 0.25, "{p:?}");
    }
}
