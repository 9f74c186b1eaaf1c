//! `dispr-worker train` and `evaluate` as an operator runs them: the binary on a folder of
//! synthetic cells with the tiny configuration, a resumed run, and a sampler comparison.

use dispr_shape::{dataset, synth};
use std::path::Path;
use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dispr-worker")).args(args).output().unwrap();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn synthetic_dataset(dir: &Path, cells: usize) {
    for spec in synth::plan(cells) {
        for (key, bytes) in dataset::encode_cell(&synth::generate(3, &spec)).unwrap() {
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

fn sidecar(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn train_resumes_and_evaluate_scores_each_sampler_on_the_held_out_cells() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_dataset(&data, 12);
    let (data, out) = (data.to_str().unwrap(), dir.path().join("run"));
    let out_s = out.to_str().unwrap();
    let train = |steps: &str, extra: &[&str]| {
        let mut args = vec!["train", "--dataset", data, "--out", out_s, "--config", "tiny", "--steps", steps];
        args.extend(["--batch-size", "2", "--checkpoint-every", "2", "--validate-every", "2"]);
        args.extend(["--val-cells", "2", "--val-sampler", "ddim-2", "--ema-decay", "0.5", "--lr", "1e-3"]);
        args.extend(extra);
        worker(&args)
    };

    assert!(train("2", &[]).status.success());
    let first = sidecar(&out.join("latest.json"));
    assert_eq!(first["step"], 2);
    let iou = first["validation"]["mean_iou"].as_f64().expect("a validation ran at step 2");
    assert!((0.0..=1.0).contains(&iou), "{iou}");

    // The same --out again without --resume is refused with what to do.
    let again = train("4", &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    assert!(train("4", &["--resume"]).status.success());
    assert_eq!(sidecar(&out.join("latest.json"))["step"], 4);
    assert!(out.join("model-step0000002.mpk").exists() && out.join("model-step0000004.mpk").exists());

    let latest = out.join("latest.mpk");
    let evaluate = |samplers: &str, samples: &str| {
        let args = ["evaluate", "--checkpoint", latest.to_str().unwrap(), "--dataset", data, "--cells", "2"];
        worker(&[&args[..], &["--samplers", samplers, "--samples", samples]].concat())
    };
    // The "all" row of every sampler: sampler, class, cells, model IoU, consensus IoU, floor IoU,
    // model - floor, pairwise IoU, volume CV, seconds per sample.
    let rows = |out: &Output| -> Vec<Vec<String>> {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let rows = text.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| sampler"));
        let cells =
            rows.map(|l| l.split('|').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect());
        cells.filter(|r: &Vec<String>| r[1] == "all").collect()
    };
    let eval = evaluate("ddim-2,dpmpp2m-3", "2");
    assert!(eval.status.success());
    let table = String::from_utf8_lossy(&eval.stdout);
    assert!(table.contains("step 4") && table.contains("2 held-out cells x 2 samples"), "{table}");
    let rows_seen = rows(&eval);
    let names: Vec<(&str, &str)> = rows_seen.iter().map(|r| (r[0].as_str(), r[2].as_str())).collect();
    assert_eq!(names, [("ddim-2", "2"), ("dpmpp2m-3", "2")], "{table}");
    for row in &rows_seen {
        for col in [3, 4, 5, 7] {
            let v: f64 = row[col].parse().unwrap();
            assert!((0.0..=1.0).contains(&v), "{row:?}");
        }
    }
    // The floor does not depend on the sampler.
    assert_eq!(rows_seen[0][5], rows_seen[1][5]);
    // The same seeds and sampler as training's validation give the same scores.
    let validation = &sidecar(&out.join("latest.json"))["validation"];
    let (want, want_floor) =
        (validation["mean_iou"].as_f64().unwrap(), validation["floor_iou"].as_f64().unwrap());
    let row = &rows(&evaluate("ddim-2", "1"))[0];
    let (got, got_floor): (f64, f64) = (row[3].parse().unwrap(), row[5].parse().unwrap());
    assert!((got - want).abs() < 1e-3, "evaluate {got} vs train's validation {want}");
    assert!((got_floor - want_floor).abs() < 1e-3, "evaluate's floor {got_floor} vs train's {want_floor}");
    // One sample has no diversity to report.
    assert_eq!((row[7].as_str(), row[8].as_str()), ("n/a", "n/a"));

    let null = evaluate("null", "1");
    assert!(!null.status.success());
    assert!(String::from_utf8_lossy(&null.stderr).contains("does not use the model"));
}

#[test]
fn folds_extra_datasets_and_fine_tuning_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (real, synth) = (dir.path().join("real"), dir.path().join("synth"));
    synthetic_dataset(&real, 10);
    synthetic_dataset(&synth, 8);
    let (real_s, synth_s) = (real.to_str().unwrap(), synth.to_str().unwrap());
    let base = dir.path().join("base");
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec!["train", "--dataset", real_s, "--out", out.to_str().unwrap(), "--steps", "2"];
        args.extend(["--config", "tiny-prior", "--batch-size", "2", "--checkpoint-every", "2"]);
        args.extend(["--val-sampler", "ddim-2", "--augment", "--ema-warmup", "--warmup-steps", "1"]);
        args.extend(extra);
        worker(&args)
    };
    // Fold 1 of 3, with the synthetic cells as a second training part.
    let fold = ["--folds", "3", "--fold", "1", "--extra-dataset", synth_s];
    assert!(train(&base, &fold).status.success());
    let side = sidecar(&base.join("latest.json"));
    assert_eq!(side["config"]["objective"], "prior-x0");
    // Stratified: 10 cells of 6 classes, dealt per class, leave 2 to 4 cells in fold 1.
    let held = side["validation"]["cells"].as_u64().unwrap();
    assert!((2..=4).contains(&held), "{held}");
    // Fine-tuning starts from the checkpoint's weights; another configuration is refused.
    let init = base.join("latest.mpk");
    let tuned = train(&dir.path().join("tuned"), &["--init", init.to_str().unwrap(), "--val-cells", "2"]);
    assert!(tuned.status.success());
    let wrong = worker(&[
        "train",
        "--dataset",
        real_s,
        "--out",
        dir.path().join("wrong").to_str().unwrap(),
        "--config",
        "tiny",
        "--init",
        init.to_str().unwrap(),
        "--steps",
        "1",
        "--val-cells",
        "2",
    ]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("--config tiny-prior"));
    // A k-fold evaluation needs one checkpoint per fold.
    let eval =
        worker(&["evaluate", "--checkpoint", init.to_str().unwrap(), "--dataset", real_s, "--folds", "3"]);
    assert!(!eval.status.success());
    assert!(String::from_utf8_lossy(&eval.stderr).contains("one --checkpoint per fold"));
    let c = init.to_str().unwrap();
    let eval = worker(&[
        "evaluate",
        "--checkpoint",
        c,
        "--checkpoint",
        c,
        "--checkpoint",
        c,
        "--dataset",
        real_s,
        "--folds",
        "3",
        "--samplers",
        "ddim-2",
        "--samples",
        "2",
    ]);
    assert!(eval.status.success());
    // Every cell is held out by exactly one fold.
    let all =
        String::from_utf8_lossy(&eval.stdout).lines().find(|l| l.contains("| all |")).unwrap().to_string();
    assert!(all.contains("| all | 10 |"), "{all}");
}

/// Cells whose true shapes are their extruded masks stretched 1.6 times along z: an untrained
/// `prior-x0` model samples exactly the extrusion, so its best stretch is known.
fn taller_than_the_floor(dir: &Path, cells: usize) {
    for spec in synth::plan(cells) {
        let mut cell = synth::generate(5, &spec);
        let floor = dispr_shape::floor::extrusion(&cell.mask.data);
        let tall = dispr_model::z_calibration::stretch_z(&floor, 1.6);
        let obj = cell.obj.as_mut().unwrap();
        obj.data = tall.iter().map(|&v| if v >= 0.5 { 255 } else { 0 }).collect();
        for (key, bytes) in dataset::encode_cell(&cell).unwrap() {
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

#[test]
fn calibrate_learns_how_tall_the_cells_are_and_evaluate_scores_it_by_fold() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    taller_than_the_floor(&data, 10);
    let data = data.to_str().unwrap();
    // A tiny-prior model that has barely moved from its zero-initialised output: the floor.
    let run = dir.path().join("run");
    let trained = worker(&[
        "train",
        "--dataset",
        data,
        "--out",
        run.to_str().unwrap(),
        "--config",
        "tiny-prior",
        "--steps",
        "1",
        "--lr",
        "1e-9",
        "--batch-size",
        "2",
        "--val-cells",
        "2",
        "--val-sampler",
        "ddim-2",
    ]);
    assert!(trained.status.success());
    let base = run.join("latest.mpk");
    // Unsmoothed, so that the best factors are the geometric 1.6 (smoothing a thin disc's
    // shape makes Otsu take its rim off, which a larger factor then makes up for).
    let calibrate = |out: &Path, extra: &[&str]| {
        let args = ["calibrate", "--checkpoint", base.to_str().unwrap(), "--dataset", data, "--smooth", "0"];
        worker(&[&args[..], &["--out", out.to_str().unwrap()], extra].concat())
    };
    let folds: Vec<_> = (0..2).map(|k| dir.path().join(format!("fold{k}.mpk"))).collect();
    for (k, out) in folds.iter().enumerate() {
        let fitted = calibrate(out, &["--folds", "2", "--fold", &k.to_string()]);
        assert!(fitted.status.success());
        let text = String::from_utf8_lossy(&fitted.stdout);
        // Every cell's best stretch is the one the data was made with.
        let factors: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| cell") && !l.starts_with("|---"))
            .map(|l| l.split('|').nth(3).unwrap().trim().parse().unwrap())
            .collect();
        assert!(!factors.is_empty() && factors.len() < 10, "{text}");
        assert!(factors.iter().all(|f| (f - 1.6).abs() < 0.1), "{text}");
        let side = sidecar(&out.with_extension("json"));
        assert_eq!(side["z_calibration"]["sampler"], "ddim-2");
        assert_eq!(side["record_sha256"], sidecar(&run.join("latest.json"))["record_sha256"]);
    }
    // Scored by fold, on cells neither calibration saw: far above the floor it started from.
    let (f0, f1) = (folds[0].to_str().unwrap(), folds[1].to_str().unwrap());
    let eval = worker(&[
        "evaluate",
        "--checkpoint",
        f0,
        "--checkpoint",
        f1,
        "--dataset",
        data,
        "--folds",
        "2",
        "--samplers",
        "ddim-2",
        "--samples",
        "1",
    ]);
    assert!(eval.status.success());
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(text.contains("with its height calibration"), "{text}");
    let all: Vec<String> = text
        .lines()
        .find(|l| l.contains("| all |"))
        .unwrap()
        .split('|')
        .map(|c| c.trim().to_string())
        .collect();
    let (model, floor): (f64, f64) = (all[4].parse().unwrap(), all[6].parse().unwrap());
    assert_eq!(all[3], "10", "{text}");
    assert!(model > 0.9 && floor < 0.7, "model {model}, floor {floor}\n{text}");
    // Without its calibration, the same checkpoint is the bare network again: the floor.
    let bare = worker(&[
        "evaluate",
        "--checkpoint",
        f0,
        "--without-z-calibration",
        "--all-cells",
        "--dataset",
        data,
        "--samplers",
        "ddim-2",
        "--samples",
        "1",
    ]);
    assert!(bare.status.success());
    let text = String::from_utf8_lossy(&bare.stdout);
    let all: Vec<&str> =
        text.lines().find(|l| l.contains("| all |")).unwrap().split('|').map(str::trim).collect();
    let (model, floor): (f64, f64) = (all[4].parse().unwrap(), all[6].parse().unwrap());
    assert!(!text.contains("with its height calibration"), "{text}");
    assert!((model - floor).abs() < 0.05, "model {model}, floor {floor}\n{text}");

    // By default shapes are smoothed (sigma 2) before they are stretched, and the sidecar says so.
    let smoothed = dir.path().join("smoothed.mpk");
    let args = ["calibrate", "--checkpoint", base.to_str().unwrap(), "--dataset", data, "--out"];
    assert!(worker(&[&args[..], &[smoothed.to_str().unwrap()]].concat()).status.success());
    assert_eq!(sidecar(&smoothed.with_extension("json"))["z_calibration"]["smooth_sigma"], 2.0);
    let too_smooth = worker(&[&args[..], &[smoothed.to_str().unwrap(), "--smooth", "9"]].concat());
    assert!(!too_smooth.status.success());
    assert!(String::from_utf8_lossy(&too_smooth.stderr).contains("--smooth must be between 0 and 8"));

    // Bad requests say what to do.
    let null = calibrate(&dir.path().join("x.mpk"), &["--sampler", "null"]);
    assert!(!null.status.success());
    assert!(String::from_utf8_lossy(&null.stderr).contains("does not use the model"));
    let bad_fold = calibrate(&dir.path().join("x.mpk"), &["--folds", "2", "--fold", "2"]);
    assert!(!bad_fold.status.success());
    assert!(String::from_utf8_lossy(&bad_fold.stderr).contains("a fold below their number"));
    let json_out = calibrate(&dir.path().join("x.json"), &[]);
    assert!(!json_out.status.success());
    assert!(String::from_utf8_lossy(&json_out.stderr).contains("name the record"));
    assert!(!dir.path().join("x.mpk").exists() && !dir.path().join("x.json").exists());
}
