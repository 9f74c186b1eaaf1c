//! Which cells a synthetic dataset of N cells holds: the class sizes of the real 825-cell RBC
//! dataset scaled to N, and the cells' names.

use crate::dataset::{KNOWN_PREFIXES, KnownPrefix, Label};
use dispr_proto::CellId;

/// The shape families of the synthetic generator: the seven SDE sub-classes and the five other
/// classes of the real dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    StomatocyteII,
    StomatocyteI,
    Spherocyte,
    Discocyte,
    EchinocyteI,
    EchinocyteII,
    EchinocyteIII,
    Acanthocyte,
    Cluster,
    Keratocyte,
    Knizocyte,
    Multilobate,
}

/// Cells per kind in the real 825-cell dataset (SDE 602 = 11 + 30 + 93 + 176 + 47 + 77 + 168).
pub const REAL_COUNTS: [(Kind, usize); 12] = [
    (Kind::StomatocyteII, 11),
    (Kind::StomatocyteI, 30),
    (Kind::Spherocyte, 93),
    (Kind::Discocyte, 176),
    (Kind::EchinocyteI, 47),
    (Kind::EchinocyteII, 77),
    (Kind::EchinocyteIII, 168),
    (Kind::Acanthocyte, 88),
    (Kind::Cluster, 69),
    (Kind::Keratocyte, 31),
    (Kind::Knizocyte, 23),
    (Kind::Multilobate, 12),
];

/// Size of the real dataset.
pub const REAL_TOTAL: usize = 825;

impl Kind {
    /// The real dataset's file-name prefix for this kind.
    pub fn prefix(self) -> &'static KnownPrefix {
        let name = match self {
            Kind::StomatocyteII => "-0.67_stomatocyte_II",
            Kind::StomatocyteI => "-0.33_stomatocyte_I",
            Kind::Spherocyte => "-1.00_spherocyte",
            Kind::Discocyte => "0.00_discocyte",
            Kind::EchinocyteI => "0.33_echinocyte_I",
            Kind::EchinocyteII => "0.67_echinocyte_II",
            Kind::EchinocyteIII => "1.00_echinocyte_III",
            Kind::Acanthocyte => "E_acanthocytes",
            Kind::Cluster => "A_cell_clusters",
            Kind::Keratocyte => "B_keratocytes",
            Kind::Knizocyte => "C_knizocytes",
            Kind::Multilobate => "D_multilobate_cells",
        };
        // The table in `dataset` is the one place the names are spelled; a kind missing there is
        // a programming error caught by the tests.
        KNOWN_PREFIXES.iter().find(|k| k.prefix == name).unwrap_or(&KNOWN_PREFIXES[0])
    }

    /// The label this kind is filed under.
    pub fn label(self) -> Label {
        let p = self.prefix();
        Label { class: p.class.to_string(), subclass: p.subclass.map(str::to_string) }
    }
}

/// One cell to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSpec {
    /// Position in the dataset, from 1; it names the cell and seeds its random stream.
    pub index: u64,
    pub kind: Kind,
    pub id: CellId,
}

/// Splits `total` in proportion to `weights` (largest remainder), then raises every share below
/// `min_each` by taking from the largest shares, as long as `total` allows it.
fn apportion(total: usize, weights: &[usize], min_each: usize) -> Vec<usize> {
    let sum: usize = weights.iter().sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let mut shares: Vec<usize> = weights.iter().map(|w| w * total / sum).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest remainder first; ties go to the larger class, then to the earlier one.
    order.sort_by_key(|&i| (std::cmp::Reverse(weights[i] * total % sum), std::cmp::Reverse(weights[i]), i));
    let given: usize = shares.iter().sum();
    for &i in order.iter().cycle().take(total - given) {
        shares[i] += 1;
    }
    if total >= min_each * weights.len() {
        while let Some(small) = (0..shares.len()).find(|&i| shares[i] < min_each) {
            let largest = (0..shares.len()).max_by_key(|&i| (shares[i], std::cmp::Reverse(i))).unwrap_or(0);
            shares[largest] -= 1;
            shares[small] += 1;
        }
    }
    shares
}

/// Cells per kind for a dataset of `n` cells: the real class sizes scaled to `n`, every class
/// raised to at least `min_per_class` cells (taken from the largest class; as many as `n`
/// allows, and at least one each when `n >= 6`), and every SDE sub-class at least once when the
/// SDE class has 7 or more cells. At `n = 825` and a minimum of at most 12 it is exactly the real
/// dataset's split.
pub fn kind_counts(n: usize, min_per_class: usize) -> Vec<(Kind, usize)> {
    // Classes first (SDE as one), so the class sizes are right; then SDE's sub-classes.
    let sde: Vec<(Kind, usize)> =
        REAL_COUNTS.iter().copied().filter(|(k, _)| k.prefix().subclass.is_some()).collect();
    let others: Vec<(Kind, usize)> =
        REAL_COUNTS.iter().copied().filter(|(k, _)| k.prefix().subclass.is_none()).collect();
    let mut class_weights = vec![sde.iter().map(|(_, c)| c).sum::<usize>()];
    class_weights.extend(others.iter().map(|(_, c)| *c));
    let min_each = min_per_class.min(n / class_weights.len()).max(1);
    let class_shares = apportion(n, &class_weights, min_each);
    let sde_weights: Vec<usize> = sde.iter().map(|(_, c)| *c).collect();
    let sde_shares = apportion(class_shares[0], &sde_weights, 1);
    let mut counts: Vec<(Kind, usize)> = sde.iter().zip(sde_shares).map(|((k, _), c)| (*k, c)).collect();
    counts.extend(others.iter().zip(&class_shares[1..]).map(|((k, _), c)| (*k, *c)));
    counts
}

/// The cells of a synthetic dataset of `n` cells in the real class proportions (each class at
/// least once from 6 cells), numbered from 1 and named like the real dataset's files:
/// `<prefix><index:06>`, e.g. `0.00_discocyte000123`.
pub fn plan(n: usize) -> Vec<SynthSpec> {
    plan_with_min(n, 1)
}

/// [`plan`] with every class raised to at least `min_per_class` cells where `n` allows (see
/// [`kind_counts`]): with 10 per class, every test fold of a stratified 5-fold cross-validation
/// holds 2 cells of every class.
pub fn plan_with_min(n: usize, min_per_class: usize) -> Vec<SynthSpec> {
    let mut specs = Vec::with_capacity(n);
    for (kind, count) in kind_counts(n, min_per_class) {
        for _ in 0..count {
            let index = specs.len() as u64 + 1;
            let name = format!("{}{index:06}", kind.prefix().prefix);
            // Prefixes are fixed strings of valid id characters, so this cannot fail; stay safe anyway.
            if let Ok(id) = CellId::new(name) {
                specs.push(SynthSpec { index, kind, id });
            }
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::label_from_name;

    #[test]
    fn full_size_reproduces_the_real_split() {
        let counts = kind_counts(REAL_TOTAL, 1);
        for (kind, real) in REAL_COUNTS {
            let got = counts.iter().find(|(k, _)| *k == kind).map(|(_, c)| *c);
            assert_eq!(got, Some(real), "{kind:?}");
        }
    }

    #[test]
    fn every_class_appears_from_twelve_cells() {
        for n in [12, 13, 20, 50, 100, 333] {
            let counts = kind_counts(n, 1);
            assert_eq!(counts.iter().map(|(_, c)| c).sum::<usize>(), n);
            let mut per_class = std::collections::BTreeMap::new();
            for (k, c) in &counts {
                *per_class.entry(k.prefix().class).or_insert(0) += c;
            }
            assert_eq!(per_class.len(), 6);
            assert!(per_class.values().all(|&c| c >= 1), "n={n}: {per_class:?}");
        }
        // Enough SDE cells: every sub-class shows up.
        assert!(kind_counts(20, 1).iter().all(|(_, c)| *c >= 1));
        // Proportions hold at other sizes: SDE is about 73%.
        let sde: usize =
            kind_counts(100, 1).iter().filter(|(k, _)| k.prefix().subclass.is_some()).map(|(_, c)| c).sum();
        assert!((70..=75).contains(&sde), "{sde}");
        assert!(kind_counts(0, 1).iter().all(|(_, c)| *c == 0));
        assert_eq!(kind_counts(3, 1).iter().map(|(_, c)| c).sum::<usize>(), 3);
    }

    #[test]
    fn a_minimum_per_class_raises_the_small_classes_and_keeps_the_rest_proportional() {
        let per_class = |n: usize, min: usize| {
            let mut m = std::collections::BTreeMap::new();
            for (k, c) in kind_counts(n, min) {
                *m.entry(k.prefix().class).or_insert(0) += c;
            }
            m
        };
        // The demo's dataset: 210 cells, at least 10 in every class.
        let demo = per_class(210, 10);
        assert_eq!(demo.values().sum::<usize>(), 210);
        assert!(demo.values().all(|&c| c >= 10), "{demo:?}");
        // Classes above the minimum keep their share of the real dataset (88/825 acanthocytes,
        // 69/825 clusters); the cells the small classes need come from the largest (SDE).
        assert_eq!(demo["acanthocyte"], 22, "{demo:?}");
        assert_eq!(demo["cluster"], 18, "{demo:?}");
        assert_eq!(demo["SDE"], 210 - 22 - 18 - 3 * 10, "{demo:?}");
        assert_eq!(plan_with_min(210, 10).len(), 210);
        // Already above the minimum: the real split is untouched.
        assert_eq!(kind_counts(REAL_TOTAL, 10), kind_counts(REAL_TOTAL, 1));
        // Too few cells for the minimum: as many as fit, every class still present.
        let small = per_class(30, 10);
        assert!(small.values().all(|&c| c >= 5), "{small:?}");
        assert_eq!(small.values().sum::<usize>(), 30);
    }

    #[test]
    fn names_map_back_to_their_labels() {
        let specs = plan(40);
        assert_eq!(specs.len(), 40);
        assert_eq!(specs[0].index, 1);
        for s in &specs {
            assert_eq!(label_from_name(s.id.as_str()), Some(s.kind.label()), "{}", s.id);
            assert!(s.id.as_str().ends_with(&format!("{:06}", s.index)));
        }
    }
}
