//! Synthetic red blood cells: determinism, and that every kind looks like the real data by the
//! numbers of the real sample's README (volume fraction, extent, soft edges, mask = central
//! slice, image brightness inside and outside the cell).

use dispr_shape::dataset::encode_cell;
use dispr_shape::synth::{self, CENTRAL_SLICE, Kind, SynthSpec};

fn one_of_each_kind() -> Vec<SynthSpec> {
    // A plan of 40 has every kind; take the first cell of each.
    let mut specs = synth::plan(40);
    specs.dedup_by_key(|s| s.kind);
    assert_eq!(specs.len(), 12);
    specs
}

#[test]
fn same_seed_same_bytes_other_seed_other_cells() {
    let spec = &synth::plan(12)[11];
    let a = encode_cell(&synth::generate(42, spec)).unwrap();
    let b = encode_cell(&synth::generate(42, spec)).unwrap();
    assert_eq!(a, b, "same seed and cell must give byte-identical files");
    let c = encode_cell(&synth::generate(43, spec)).unwrap();
    assert_ne!(a[2].1, c[2].1, "another seed gives another obj");
    // Cells draw from their own streams: the same kind at another index differs too.
    let other = SynthSpec { index: spec.index + 100, ..spec.clone() };
    assert_ne!(a[2].1, encode_cell(&synth::generate(42, &other)).unwrap()[2].1);
}

struct Stats {
    solid_fraction: f64,
    extent: [usize; 3],
    soft_per_solid: f64,
    mask_mismatch: usize,
    image_in: f64,
    image_out: f64,
    image_max: u8,
}

fn stats(cell: &dispr_shape::dataset::CellData) -> Stats {
    let obj = cell.obj.as_ref().unwrap();
    let solid = obj.data.iter().filter(|&&v| v > 127).count();
    let soft = obj.data.iter().filter(|&&v| v > 0 && v < 255).count();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0; 3];
    for z in 0..64 {
        for y in 0..64 {
            for x in 0..64 {
                if obj.get(z, y, x) > 127 {
                    for (a, c) in [z, y, x].into_iter().enumerate() {
                        lo[a] = lo[a].min(c);
                        hi[a] = hi[a].max(c);
                    }
                }
            }
        }
    }
    let slice = obj.slice_z(CENTRAL_SLICE);
    let mask_mismatch = slice.data.iter().zip(&cell.mask.data).filter(|(o, m)| o.abs_diff(**m) > 10).count();
    let (mut sum_in, mut n_in, mut sum_out, mut n_out) = (0.0, 0usize, 0.0, 0usize);
    for (&m, &i) in cell.mask.data.iter().zip(&cell.image.data) {
        if m > 127 {
            sum_in += i as f64;
            n_in += 1;
        } else if m == 0 {
            sum_out += i as f64;
            n_out += 1;
        }
    }
    Stats {
        solid_fraction: solid as f64 / obj.data.len() as f64,
        extent: [0, 1, 2].map(|a| hi[a].saturating_sub(lo[a]) + 1),
        soft_per_solid: soft as f64 / solid.max(1) as f64,
        mask_mismatch,
        image_in: sum_in / n_in.max(1) as f64,
        image_out: sum_out / n_out.max(1) as f64,
        image_max: *cell.image.data.iter().max().unwrap(),
    }
}

#[test]
fn every_kind_looks_like_real_cells() {
    for spec in one_of_each_kind() {
        let cell = synth::generate(3, &spec);
        assert_eq!(cell.label, spec.kind.label());
        let s = stats(&cell);
        let name = format!("{:?} ({})", spec.kind, spec.id);
        // Real classes: volume fraction 0.085-0.20, largest extent 44-54 voxels.
        assert!((0.02..0.4).contains(&s.solid_fraction), "{name}: volume fraction {}", s.solid_fraction);
        let largest = *s.extent.iter().max().unwrap();
        assert!((44..=62).contains(&largest), "{name}: extents {:?}", s.extent);
        assert!((0.1..0.8).contains(&s.soft_per_solid), "{name}: soft edges {}", s.soft_per_solid);
        assert_eq!(s.mask_mismatch, 0, "{name}: the mask is obj's central slice");
        // The central slice may miss a cup's wall or a cluster's cells; where there is cell in the
        // slice it must be bright on a dark background (real: 132-149 inside, 8-13 outside).
        if cell.mask.data.iter().filter(|&&m| m > 127).count() > 50 {
            assert!(
                s.image_in > 50.0 && s.image_out < 30.0,
                "{name}: image in {} out {}",
                s.image_in,
                s.image_out
            );
            assert!(s.image_max >= 180, "{name}: image max {}", s.image_max);
        }
    }
}

#[test]
fn kinds_differ_in_shape() {
    // Spicules make echinocytes III rougher than spherocytes: more surface per volume.
    let surface_per_volume = |kind: Kind| {
        let spec = synth::plan(40).into_iter().find(|s| s.kind == kind).unwrap();
        let s = stats(&synth::generate(5, &spec));
        s.soft_per_solid
    };
    let sphere = surface_per_volume(Kind::Spherocyte);
    let spiky = surface_per_volume(Kind::EchinocyteIII);
    assert!(spiky > sphere * 1.15, "echinocyte III {spiky} vs spherocyte {sphere}");
}

/// `synth --cells 825 --seed 3` once wrote `A_cell_clusters000730` with an all-zero mask: its
/// first turn put the cluster's cells above and below the central slice. A turn whose slice shows
/// too little cell is drawn again.
#[test]
fn no_cell_has_an_empty_mask() {
    let specs = synth::plan(synth::REAL_TOTAL);
    let spec = &specs[729];
    assert_eq!(spec.id.as_str(), "A_cell_clusters000730");
    let cell = synth::generate(3, spec);
    let pixels = synth::mask_pixels(&cell.mask);
    assert!(pixels >= synth::MIN_MASK_PIXELS, "{}: {pixels} mask pixels", spec.id);
    // Still the central slice of its obj, and still deterministic.
    assert_eq!(stats(&cell).mask_mismatch, 0);
    assert_eq!(encode_cell(&cell).unwrap(), encode_cell(&synth::generate(3, spec)).unwrap());
}

/// One row of the real sample's README table ("Statistics to calibrate synthetic cells
/// against", 135 real cells): class means of volume fraction (obj > 127), z extent (voxels,
/// obj > 127), soft-edge voxels per solid voxel, image mean inside and outside the mask.
struct RealClass {
    kind: Kind,
    solid_fraction: f64,
    z_extent: f64,
    soft_per_solid: f64,
    image_in: f64,
    image_out: f64,
}

const REAL_CLASSES: [RealClass; 4] = [
    RealClass {
        kind: Kind::Cluster,
        solid_fraction: 0.202,
        z_extent: 51.0,
        soft_per_solid: 0.366,
        image_in: 132.0,
        image_out: 13.0,
    },
    RealClass {
        kind: Kind::Keratocyte,
        solid_fraction: 0.085,
        z_extent: 32.0,
        soft_per_solid: 0.435,
        image_in: 142.0,
        image_out: 9.0,
    },
    RealClass {
        kind: Kind::Knizocyte,
        solid_fraction: 0.120,
        z_extent: 46.0,
        soft_per_solid: 0.420,
        image_in: 135.0,
        image_out: 10.0,
    },
    RealClass {
        kind: Kind::Multilobate,
        solid_fraction: 0.156,
        z_extent: 49.0,
        soft_per_solid: 0.328,
        image_in: 149.0,
        image_out: 8.0,
    },
];

/// The calibration the shapes model depends on: a model trained on synthetic cells learns their
/// heights, sizes and edges, and carries every mismatch onto real cells. For each class of the
/// real sample, the mean over 16 synthetic cells must lie near the real class mean: volume
/// fraction within 25% (the real classes' own spread is 13-32%), z extent within 6 voxels,
/// soft edges within 0.1 per solid voxel, image brightness within 20 (inside) and 5 (outside)
/// grey levels. Prints the table it checks.
#[test]
fn minority_classes_match_the_real_statistics() {
    const PER_CLASS: usize = 16;
    let plan = synth::plan_with_min(400, PER_CLASS);
    println!("class          | volume fraction | z extent    | soft/solid  | image in    | image out");
    let mut misses = Vec::new();
    for real in &REAL_CLASSES {
        let specs: Vec<_> = plan.iter().filter(|s| s.kind == real.kind).take(PER_CLASS).collect();
        assert_eq!(specs.len(), PER_CLASS);
        let all: Vec<Stats> = specs.iter().map(|s| stats(&synth::generate(17, s))).collect();
        let mean = |f: &dyn Fn(&Stats) -> f64| all.iter().map(f).sum::<f64>() / all.len() as f64;
        let got = [
            mean(&|s| s.solid_fraction),
            mean(&|s| s.extent[0] as f64),
            mean(&|s| s.soft_per_solid),
            mean(&|s| s.image_in),
            mean(&|s| s.image_out),
        ];
        let want = [real.solid_fraction, real.z_extent, real.soft_per_solid, real.image_in, real.image_out];
        let tolerance = [0.25 * real.solid_fraction, 6.0, 0.1, 20.0, 5.0];
        let names = ["volume fraction", "z extent", "soft/solid", "image in", "image out"];
        let cells: Vec<String> = got.iter().zip(&want).map(|(g, w)| format!("{g:6.3} ({w:6.3})")).collect();
        println!("{:14} | {}", format!("{:?}", real.kind), cells.join(" | "));
        for i in 0..5 {
            if (got[i] - want[i]).abs() > tolerance[i] {
                misses.push(format!("{:?} {}: {:.3}, real {:.3}", real.kind, names[i], got[i], want[i]));
            }
        }
    }
    assert!(misses.is_empty(), "synthetic cells off the real statistics: {misses:#?}");
}
