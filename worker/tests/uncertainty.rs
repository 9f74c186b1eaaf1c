//! The ensemble uncertainty outputs of the job pipeline, against a local-folder store with real
//! TIFF files and the null sampler (whose samples differ in thickness by seed).

mod common;

use common::*;
use dispr_proto::{CellFeatures, CellId, RunId, keys};
use dispr_shape::tiff_io::read_volume_f32;
use dispr_worker::pipeline::{JobError, JobRunner, JobSummary, RunnerConfig};
use dispr_worker::retry::Retry;
use std::path::Path;
use std::time::Duration;

fn runner(cache: &Path) -> JobRunner {
    let mut config = RunnerConfig::new("test-worker");
    config.model_cache_dir = cache.to_path_buf();
    config.retry =
        Retry { first_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5), retries: 1 };
    JobRunner::new(config, Default::default())
}

async fn run(runner: &JobRunner, job: &dispr_proto::Job) -> Result<JobSummary, JobError> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    runner.run(job, &tx).await
}

fn volume(root: &Path, key: &str) -> Vec<f32> {
    let bytes = std::fs::read(root.join(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
    read_volume_f32(&bytes, key, "volume", [64, 64, 64]).unwrap().data
}

/// The probability and standard-deviation volumes are written before the features record: a
/// worker that stops between them (here: the standard-deviation volume cannot be written) leaves
/// the cell not done, and the next delivery finishes it with both.
#[tokio::test]
async fn ensemble_volumes_are_written_before_the_done_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    write_cell(&data, "disc001", &good_image(), &good_mask());
    let job = job("u1", &data, &out, &["disc001"], 3);
    let (run_id, cell) = (RunId::new("u1").unwrap(), CellId::new("disc001").unwrap());
    let (probability, std, features) = (
        keys::probability_volume(&run_id, &cell),
        keys::std_volume(&run_id, &cell),
        keys::features(&run_id, &cell),
    );
    let runner = runner(&dir.path().join("cache"));

    // A folder where the standard-deviation volume goes: writing it fails.
    std::fs::create_dir_all(out.join(&std)).unwrap();
    let cut = run(&runner, &job).await;
    assert!(matches!(cut, Err(JobError::Retriable(_))), "the job is handed back: {cut:?}");
    assert!(out.join(&probability).is_file(), "written in order: samples, probability, std, features");
    assert!(!out.join(&features).exists(), "no done-marker without the uncertainty volumes");

    std::fs::remove_dir(out.join(&std)).unwrap();
    let summary = run(&runner, &job).await.unwrap();
    assert_eq!(summary, JobSummary { done: 1, skipped: 0, failed: 0 });
    let record = CellFeatures::decode(&std::fs::read(out.join(&features)).unwrap()).unwrap();
    let u = record.uncertainty.expect("3 samples: the uncertainty is known");
    assert_eq!(u.samples, 3);

    // The volumes say what the record says: p is uint8, the nearest level to a multiple of 1/3,
    // std = sqrt(p (1 - p)) in float32 (this run's format), and the null sampler's samples
    // (lenses of different thickness) disagree near their surfaces.
    let levels = std::fs::read(out.join(&probability)).unwrap();
    let stack = dispr_shape::tiff_io::decode(&levels, "probability.tif").unwrap();
    let dispr_shape::tiff_io::Samples::U8(levels) = stack.samples else {
        panic!("probability.tif is not uint8")
    };
    let (s, mut p) = (volume(&out, &std), Vec::with_capacity(levels.len()));
    for (&level, &s) in levels.iter().zip(&s) {
        let j = (f32::from(level) * 3.0 / 255.0).round();
        assert_eq!(level, (j / 3.0 * 255.0).round() as u8, "{level} is the level of {j} of 3 samples");
        let q = j / 3.0;
        assert!((s - (q * (1.0 - q)).sqrt()).abs() < 1e-6, "{q} {s}");
        p.push(q);
    }
    let uncertain = p.iter().filter(|&&v| v > 0.0 && v < 1.0).count();
    assert!(uncertain > 0 && p.contains(&1.0));
    assert!(u.mean_pairwise_iou > 0.5 && u.mean_pairwise_iou < 1.0, "{u:?}");
    let inside: f64 = p.iter().map(|&v| f64::from(v)).sum();
    assert!((u.uncertain_fraction - uncertain as f64 / inside).abs() < 1e-9, "{u:?}");
    assert!(u.mean_entropy > 0.0 && u.feature_cv["volume"] > 0.0, "{u:?}");
}

/// One sample says nothing about the model's certainty: no volumes, and `null` in the record.
#[tokio::test]
async fn one_sample_leaves_the_uncertainty_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    write_cell(&data, "disc001", &good_image(), &good_mask());
    let job = job("u2", &data, &out, &["disc001"], 1);
    run(&runner(&dir.path().join("cache")), &job).await.unwrap();
    let (run_id, cell) = (RunId::new("u2").unwrap(), CellId::new("disc001").unwrap());
    let bytes = std::fs::read(out.join(keys::features(&run_id, &cell))).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(json["uncertainty"].is_null() && json.get("uncertainty").is_some(), "explicitly unknown");
    assert!(CellFeatures::decode(&bytes).unwrap().uncertainty.is_none());
    assert!(!out.join(keys::probability_volume(&run_id, &cell)).exists());
    assert!(!out.join(keys::std_volume(&run_id, &cell)).exists());
}

/// Not a test: the cost of the uncertainty outputs on the null sampler, printed (run with
/// `cargo test -p dispr-worker --test uncertainty -- --ignored --nocapture`; the orchestration
/// bench prints the same split next to the S3 and queue costs).
#[test]
#[ignore]
fn print_the_cost_of_the_uncertainty_outputs() {
    use dispr_shape::dataset::{CellBytes, Label};
    use dispr_worker::{cell, volume_sampler::NullSampler};
    let files = CellBytes { image: good_image().into(), mask: good_mask().into(), obj: None };
    let (id, run) = (CellId::new("c1").unwrap(), RunId::new("bench").unwrap());
    let (cells, samples) = (20u64, 5u64);
    let (mut with, mut ensemble) = (0.0, 0.0);
    for c in 0..cells {
        let started = std::time::Instant::now();
        let checked = cell::check_inputs(&id, Label { class: "b".into(), subclass: None }, &files).unwrap();
        let seeds: Vec<u64> = (0..samples).map(|k| c * 1000 + k * 7919).collect();
        let volumes: Vec<_> = seeds.iter().map(|&s| NullSampler::volume(&checked.input.mask, s)).collect();
        let binaries: Vec<Vec<bool>> = volumes.iter().map(|v| dispr_shape::otsu::binarise(v)).collect();
        let out = cell::outputs(&run, &checked, &seeds, volumes, dispr_proto::VolumeFormat::Float32).unwrap();
        with += started.elapsed().as_secs_f64();
        let started = std::time::Instant::now();
        let e = dispr_worker::uncertainty::outputs(
            &run,
            &id,
            &binaries,
            &out.features.mean_3d,
            &out.features.std_3d,
            dispr_proto::VolumeFormat::Float32,
        )
        .unwrap();
        ensemble += started.elapsed().as_secs_f64();
        assert_eq!(e.volumes.len(), 2);
    }
    let (with, ensemble) = (with / cells as f64 * 1e3, ensemble / cells as f64 * 1e3);
    println!(
        "per cell, {samples} null samples, one core ({} build): {:.1} ms without the uncertainty outputs, {with:.1} ms \
         with them (+{ensemble:.1} ms)",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        with - ensemble
    );
}
