//! How `dispr-coordinator report` scales with the cells of a run: writes N synthetic features
//! records (the real dataset's class proportions, K = 3 samples each, the feature names and
//! magnitudes of a real record, made by the worker from a null-sampled cell) into a local
//! folder with a manifest and no volumes, then runs the `report` binary on them with its
//! defaults and prints the wall time and the peak resident memory of that process.
//!
//! `cargo bench --workspace --bench report_scale -- 10000 100000 1000000` (the default is 10000).
//! The records stay under $TMPDIR only while the bench runs (compact JSON: about 5 GB for 1M;
//! check `df -h $TMPDIR` first). `DISPR_REPORT_BIN=<path>` times another build of the binary
//! instead (an older release, for a before and after on the same machine).

use dispr_proto::{CellFeatures, CellId, Manifest, RunId, SCHEMA_VERSION, SamplerSpec, VolumeFormat, keys};
use dispr_shape::dataset::{CellBytes, Label};
use dispr_worker::{cell, volume_sampler::NullSampler};
use std::path::Path;
use std::time::Instant;

/// The real dataset's classes and sizes (DESIGN.md), as proportions of the generated runs.
const CLASSES: [(&str, usize); 6] = [
    ("SDE_shapes", 602),
    ("acanthocytes", 88),
    ("cell_clusters", 69),
    ("keratocytes", 31),
    ("knizocytes", 23),
    ("multilobate", 12),
];

fn template() -> CellFeatures {
    let mut mask = vec![0u8; 64 * 64];
    for (i, m) in mask.iter_mut().enumerate() {
        let (y, x) = ((i / 64) as f64 - 31.5, (i % 64) as f64 - 31.5);
        *m = if (y / 14.0).powi(2) + (x / 18.0).powi(2) < 1.0 { 255 } else { 0 };
    }
    let image: Vec<u8> = mask.iter().map(|m| m / 2 + 10).collect();
    let enc = |data| {
        dispr_shape::tiff_io::encode_image_u8(&dispr_shape::volume::Image2d { dims: [64, 64], data }).unwrap()
    };
    let files = CellBytes { image: enc(image).into(), mask: enc(mask).into(), obj: None };
    let id = CellId::new("template").unwrap();
    let checked = cell::check_inputs(&id, Label { class: "x".into(), subclass: None }, &files).unwrap();
    let seeds = [1u64, 2, 3];
    let volumes = seeds.iter().map(|&s| NullSampler::volume(&checked.input.mask, s)).collect();
    let run = RunId::new("scale").unwrap();
    cell::outputs(&run, &checked, &seeds, volumes, VolumeFormat::Mask).unwrap().features
}

/// A deterministic number in [-1, 1) from `i` and `j`.
fn noise(i: usize, j: usize) -> f64 {
    let mut h =
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn write_run(root: &Path, cells: usize) {
    let run = RunId::new("scale").unwrap();
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        run_id: run.clone(),
        dataset_uri: root.join("no-dataset").to_string_lossy().into_owned(),
        output_uri: root.to_string_lossy().into_owned(),
        model: None,
        sampler: SamplerSpec::Null,
        samples_per_cell: 3,
        seed: 0,
        code_version: "bench".into(),
        dataset_digest: None,
        volumes: VolumeFormat::Mask,
    };
    let write = |key: &str, bytes: &[u8]| {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    write(&keys::manifest(&run), &manifest.encode());
    let base = template();
    let total: usize = CLASSES.iter().map(|c| c.1).sum();
    for i in 0..cells {
        // Class by the real proportions, spread over the ids.
        let slot = (i * 7919) % total;
        let (c, (class, _)) = CLASSES
            .iter()
            .enumerate()
            .scan(0, |acc, (c, k)| {
                *acc += k.1;
                Some((c, k, *acc))
            })
            .find(|(_, _, acc)| slot < *acc)
            .map(|(c, k, _)| (c, *k))
            .unwrap();
        let mut rec = base.clone();
        rec.cell = CellId::new(format!("{class}{i:07}")).unwrap();
        rec.class = Some(class.to_string());
        // Each class shifts the features a little, each cell adds noise: something to classify.
        let shift = |m: &mut dispr_proto::records::FeatureMap, salt: usize| {
            for (j, v) in m.values_mut().enumerate() {
                *v *= 1.0 + 0.05 * c as f64 + 0.1 * noise(i, j + salt);
            }
        };
        shift(&mut rec.features_2d, 0);
        shift(&mut rec.mean_3d, 1000);
        // Compact JSON (the report reads either): a worker's pretty records are about 15 KB, so
        // 1M of them would be 15 GB of disk for the bench alone; compact ones are about a third.
        write(&keys::features(&run, &rec.cell), &serde_json::to_vec(&rec).unwrap());
    }
}

/// Runs the report binary on the run under `root` (with `trees` per forest, or its default);
/// its wall seconds and peak RSS in MiB.
fn time_report(root: &Path, trees: Option<&str>) -> (f64, f64, String) {
    let started = Instant::now();
    // DISPR_REPORT_BIN: another build to measure on the same records (an older release).
    let bin =
        std::env::var("DISPR_REPORT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_dispr-coordinator").into());
    let mut report = std::process::Command::new(bin);
    report.args(["report", "--output", root.to_str().unwrap(), "--run-id", "scale"]);
    if let Some(trees) = trees {
        report.args(["--trees", trees, "--repeats", "1"]);
    }
    let out = report.output().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "report failed: {}", String::from_utf8_lossy(&out.stderr));
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let first = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
    (seconds, usage.ru_maxrss as f64 / 1024.0, first)
}

fn main() {
    let sizes: Vec<usize> =
        std::env::args().skip(1).filter_map(|a| a.replace('_', "").parse().ok()).collect::<Vec<_>>();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // then it only checks that the bench works, on a run small enough for the test suite.
    let benching = std::env::args().any(|a| a == "--bench");
    let (sizes, trees) = match (sizes.is_empty(), benching) {
        (false, _) => (sizes, None),
        (true, true) => (vec![10_000], None),
        (true, false) => (vec![120], Some("5")),
    };
    println!(
        "report over N synthetic records (K = 3, {} build of the report binary, {} cores)",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!("{:>9} {:>12} {:>12} {:>14}", "cells", "write s", "report s", "peak RSS MiB");
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        write_run(dir.path(), n);
        let written = started.elapsed().as_secs_f64();
        // Peak RSS of children is the largest so far: run the sizes in increasing order.
        let (seconds, rss, first) = time_report(dir.path(), trees);
        println!("{n:>9} {written:>12.1} {seconds:>12.1} {rss:>14.0}");
        println!("          {first}");
    }
}
