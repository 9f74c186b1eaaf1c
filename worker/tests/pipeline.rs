//! The job pipeline against a local-folder store with real TIFF files, mostly with the null
//! sampler (and a tiny real checkpoint where the model's identity is what is tested).

mod common;

use common::*;
use dispr_proto::{CellFailure, CellFeatures, CellId, Job, ModelRef, ResultBody, RunId, SamplerSpec, keys};
use dispr_worker::pipeline::{JobRunner, JobSummary, RunnerConfig};
use dispr_worker::retry::Retry;
use std::path::Path;
use std::time::Duration;

fn runner(cache: &Path) -> JobRunner {
    let mut config = RunnerConfig::new("test-worker");
    config.model_cache_dir = cache.to_path_buf();
    // Local folders fail for good or not at all; keep any retry short.
    config.retry =
        Retry { first_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5), retries: 1 };
    JobRunner::new(config, Default::default())
}

async fn run(runner: &JobRunner, job: &Job) -> (JobSummary, Vec<ResultBody>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let summary = runner.run(job, &tx).await.expect("the job finishes");
    drop(tx);
    let mut results = Vec::new();
    while let Some(r) = rx.recv().await {
        results.push(r);
    }
    (summary, results)
}

fn read(root: &Path, key: &str) -> Vec<u8> {
    std::fs::read(root.join(key)).unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn failure(out: &Path, run: &str, cell: &str) -> CellFailure {
    let key = keys::failure(&RunId::new(run).unwrap(), &CellId::new(cell).unwrap());
    CellFailure::decode(&read(out, &key)).unwrap()
}

#[tokio::test]
async fn cells_are_sampled_written_and_reported_then_skipped_on_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    write_cell(&data, "disc001", &good_image(), &good_mask());
    write_cell(&data, "disc002", &good_image(), &good_mask());
    // Ground truth for one cell only: it alone gets reconstruction metrics.
    std::fs::create_dir_all(data.join("obj")).unwrap();
    std::fs::write(
        data.join("obj/disc001.tif"),
        stack_u8(|z, y, x| {
            u8::from((28..36).contains(&z) && (20..44).contains(&y) && (20..44).contains(&x)) * 255
        }),
    )
    .unwrap();
    let job = job("r1", &data, &out, &["disc001", "disc002"], 2);
    let runner = runner(&dir.path().join("cache"));

    let (summary, results) = run(&runner, &job).await;
    assert_eq!(summary, JobSummary { done: 2, skipped: 0, failed: 0 });
    let mut done: Vec<&str> = results
        .iter()
        .filter_map(|r| match r {
            ResultBody::CellDone { cell, .. } => Some(cell.as_str()),
            _ => None,
        })
        .collect();
    done.sort(); // the cells of a job are written concurrently and finish in any order
    assert_eq!(done, ["disc001", "disc002"]);
    assert!(matches!(results.last(), Some(ResultBody::JobDone { .. })), "{results:?}");

    let run_id = RunId::new("r1").unwrap();
    for cell in ["disc001", "disc002"] {
        let cell = CellId::new(cell).unwrap();
        for k in 0..2 {
            let tiff = read(&out, &keys::volume(&run_id, &cell, k));
            let mut dec = tiff::decoder::Decoder::new(std::io::Cursor::new(tiff)).unwrap();
            assert_eq!(dec.dimensions().unwrap(), (64, 64));
            let mut pages = 1;
            while dec.more_images() {
                dec.next_image().unwrap();
                pages += 1;
            }
            assert_eq!(pages, 64, "a volume is 64 pages");
        }
        let features = CellFeatures::decode(&read(&out, &keys::features(&run_id, &cell))).unwrap();
        assert_eq!(features.samples.len(), 2);
        assert_ne!(features.samples[0].seed, features.samples[1].seed);
        assert!(features.mean_3d.values().any(|&v| v > 0.0), "the null shape is not empty");
        assert!(!features.features_2d.is_empty());
        assert_eq!(features.mean_metrics.is_some(), cell.as_str() == "disc001");
    }

    // Redelivery: nothing recomputed, the same bytes stay, the cells are reported done again.
    let features_key = keys::features(&run_id, &CellId::new("disc002").unwrap());
    let before = read(&out, &features_key);
    let (summary, results) = run(&runner, &job).await;
    assert_eq!(summary, JobSummary { done: 0, skipped: 2, failed: 0 });
    assert_eq!(results.iter().filter(|r| matches!(r, ResultBody::CellDone { .. })).count(), 2);
    assert_eq!(read(&out, &features_key), before);

    // A fresh run of the same job elsewhere writes byte-identical outputs (deterministic seeds).
    let out2 = dir.path().join("out2");
    let mut job2 = job.clone();
    job2.output_uri = out2.to_str().unwrap().into();
    run(&runner, &job2).await;
    assert_eq!(read(&out2, &features_key), before);
    let vol = keys::volume(&run_id, &CellId::new("disc001").unwrap(), 1);
    assert_eq!(read(&out2, &vol), read(&out, &vol));
}

#[tokio::test]
async fn bad_inputs_fail_their_cell_with_a_clear_reason_and_spare_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    let good = good_image();
    write_cell(&data, "good", &good, &good_mask());
    write_cell(&data, "truncated", &good[..good.len() / 2], &good_mask());
    write_cell(&data, "notatiff", b"hello, not an image", &good_mask());
    write_cell(&data, "smallmask", &good, &tiff_u8(32, 32, |_, _| 255));
    write_cell(&data, "emptymask", &good, &tiff_u8(64, 64, |_, _| 0));
    // A boolean mask saved as uint8: the cell is 1, not 255.
    write_cell(
        &data,
        "binarymask",
        &good,
        &tiff_u8(64, 64, |y, x| u8::from((20..44).contains(&y) && (20..44).contains(&x))),
    );
    // A ground truth of 0 and 1 costs only the cell's scores.
    write_cell(&data, "binarytruth", &good, &good_mask());
    std::fs::create_dir_all(data.join("obj")).unwrap();
    std::fs::write(data.join("obj/binarytruth.tif"), stack_u8(|z, _, _| u8::from((28..36).contains(&z))))
        .unwrap();
    let cells =
        ["good", "truncated", "notatiff", "smallmask", "emptymask", "binarymask", "missing", "binarytruth"];
    let job = job("r2", &data, &out, &cells, 1);

    let (summary, results) = run(&runner(&dir.path().join("cache")), &job).await;
    assert_eq!(summary, JobSummary { done: 2, skipped: 0, failed: 6 });
    let run_id = RunId::new("r2").unwrap();
    let key = keys::features(&run_id, &CellId::new("binarytruth").unwrap());
    let features = CellFeatures::decode(&read(&out, &key)).unwrap();
    let skipped = features.truth_skipped.unwrap_or_default();
    assert!(features.mean_metrics.is_none() && skipped.contains("obj/binarytruth.tif"), "{skipped}");
    assert!(skipped.contains("only 0 and 1") && skipped.contains("multiply it by 255"), "{skipped}");
    let failed: Vec<(String, String)> = results
        .iter()
        .filter_map(|r| match r {
            ResultBody::CellFailed { cell, reason } => Some((cell.to_string(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 6, "{failed:?}");

    let expect = [
        ("truncated", "image/truncated.tif"),
        ("notatiff", "image/notatiff.tif"),
        ("smallmask", "32x32"),
        ("emptymask", "empty"),
        ("binarymask", "mask/binarymask.tif holds only 0 and 1"),
        ("missing", "does not exist"),
    ];
    for (cell, words) in expect {
        let record = failure(&out, "r2", cell);
        assert!(record.reason.contains(words), "{cell}: {}", record.reason);
        assert_eq!(record.job_id, "j00000001");
        assert_eq!(record.worker, "test-worker");
        assert!(!record.error_chain.is_empty());
        let reported = failed.iter().find(|(c, _)| c == cell).expect("reported");
        assert_eq!(reported.1, record.reason);
    }
    let truncated = failure(&out, "r2", "truncated");
    assert!(
        truncated.reason.contains("truncated") && truncated.reason.contains("export it again"),
        "says what to do: {}",
        truncated.reason
    );
    // Each message once, though the cell's error wraps the TIFF error.
    assert_eq!(truncated.reason.matches("export it again").count(), 1, "{}", truncated.reason);
    let binary = failure(&out, "r2", "binarymask").reason;
    assert!(binary.contains("multiply it by 255"), "says what to do: {binary}");
    // A mask that is merely faint is not taken for a 0/1 one.
    let empty = failure(&out, "r2", "emptymask").reason;
    assert!(empty.contains("its largest value is 0") && !empty.contains("multiply"), "{empty}");
    assert!(out.join(keys::features(&run_id, &CellId::new("good").unwrap())).exists());
    assert!(!out.join(keys::features(&run_id, &CellId::new("missing").unwrap())).exists());
}

#[tokio::test]
async fn a_missing_or_altered_checkpoint_fails_the_cells_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    write_cell(&data, "c1", &good_image(), &good_mask());
    let runner = runner(&dir.path().join("cache"));

    let mut missing = job("r3", &data, &out, &["c1"], 1);
    missing.sampler = SamplerSpec::DpmSolver2m { steps: 5 };
    missing.model = Some(ModelRef {
        uri: dir.path().join("models/nope.mpk").to_str().unwrap().into(),
        sha256: "00".repeat(32),
        sidecar_sha256: None,
    });
    let (summary, _) = run(&runner, &missing).await;
    assert_eq!(summary.failed, 1);
    let reason = failure(&out, "r3", "c1").reason;
    assert!(reason.contains("nope.mpk") && reason.contains("does not exist"), "{reason}");

    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::write(dir.path().join("models/changed.mpk"), b"weights").unwrap();
    let mut altered = missing.clone();
    altered.run_id = RunId::new("r4").unwrap();
    altered.model = Some(ModelRef {
        uri: dir.path().join("models/changed.mpk").to_str().unwrap().into(),
        sha256: "ab".repeat(32),
        sidecar_sha256: None,
    });
    let (summary, _) = run(&runner, &altered).await;
    assert_eq!(summary.failed, 1);
    let reason = failure(&out, "r4", "c1").reason;
    assert!(reason.contains("sha256") && reason.contains(&"ab".repeat(32)), "{reason}");

    let mut no_model = missing.clone();
    no_model.run_id = RunId::new("r5").unwrap();
    no_model.model = None;
    run(&runner, &no_model).await;
    assert!(failure(&out, "r5", "c1").reason.contains("names no model"));
}

#[tokio::test]
async fn a_run_pins_the_checkpoint_sidecar_and_a_recalibrated_one_is_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    write_cell(&data, "c1", &good_image(), &good_mask());
    // A real (untrained) tiny-prior checkpoint.
    let record = dir.path().join("models/m.mpk");
    let config = dispr_model::ModelConfig::tiny_prior();
    let net = dispr_model::unet::UNet::<dispr_model::CpuBackend>::new(&config, &Default::default());
    let sidecar = sidecar(config, "first");
    dispr_model::checkpoint::save_model(net, sidecar, &record).unwrap();
    let hash = |p: &Path| dispr_model::sha256_file(p).unwrap();
    let sidecar_path = dispr_model::sidecar_path(&record);
    let model = |side: String| ModelRef {
        uri: record.to_str().unwrap().into(),
        sha256: hash(&record),
        sidecar_sha256: Some(side),
    };
    let job_of = |run: &str, model: ModelRef| {
        let mut job = job(run, &data, &out, &["c1"], 1);
        job.sampler = SamplerSpec::Ddim { steps: 2, eta: 0.0 };
        job.model = Some(model);
        job
    };
    let first = hash(&sidecar_path);
    let (summary, _) = run(&runner(&dir.path().join("cache1")), &job_of("r1", model(first.clone()))).await;
    assert_eq!(summary.done, 1);

    // The checkpoint gets a new sidecar (calibrated again): the same record, another model.
    let mut side = dispr_model::checkpoint::read_sidecar(&record).unwrap();
    side.note = "calibrated again".into();
    dispr_model::checkpoint::write_sidecar(&record, &side).unwrap();
    let second = hash(&sidecar_path);
    assert_ne!(first, second);
    // A worker that cached the first keeps serving the run that pinned it...
    let (summary, _) = run(&runner(&dir.path().join("cache1")), &job_of("r2", model(first.clone()))).await;
    assert_eq!(summary.done, 1);
    // ...one that has to fetch it refuses the changed file for that run...
    let (summary, _) = run(&runner(&dir.path().join("cache2")), &job_of("r3", model(first))).await;
    assert_eq!(summary.failed, 1);
    let reason = failure(&out, "r3", "c1").reason;
    assert!(reason.contains("changed since the run was submitted"), "{reason}");
    // ...and a run submitted now uses the new sidecar, beside the first one in the cache.
    let (summary, _) = run(&runner(&dir.path().join("cache1")), &job_of("r4", model(second.clone()))).await;
    assert_eq!(summary.done, 1);
    let cached =
        |side: &str| dir.path().join("cache1").join(format!("{}-{side}", hash(&record))).join("m.mpk");
    assert_eq!(dispr_model::checkpoint::read_sidecar(&cached(&second)).unwrap().note, "calibrated again");
}
