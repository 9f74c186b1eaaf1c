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
    let evaluate = |samplers: &str| {
        let args = ["evaluate", "--checkpoint", latest.to_str().unwrap(), "--dataset", data, "--cells", "2"];
        worker(&[&args[..], &["--samplers", samplers]].concat())
    };
    // One row per sampler: its name, model evaluations, seconds per cell and mean IoU.
    let rows = |out: &Output| -> Vec<Vec<String>> {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let rows = text.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| sampler"));
        rows.map(|l| l.split('|').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()).collect()
    };
    let eval = evaluate("ddim-2,dpmpp2m-3");
    assert!(eval.status.success());
    let table = String::from_utf8_lossy(&eval.stdout);
    assert!(table.contains("step 4") && table.contains("2 held-out cells"), "{table}");
    let rows_seen = rows(&eval);
    let names: Vec<(&str, &str)> = rows_seen.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(names, [("ddim-2", "2"), ("dpmpp2m-3", "3")], "{table}");
    for row in &rows_seen {
        let iou: f64 = row[3].parse().unwrap();
        assert!((0.0..=1.0).contains(&iou), "{row:?}");
    }
    // The same seeds and sampler as training's validation give the same score.
    let want = sidecar(&out.join("latest.json"))["validation"]["mean_iou"].as_f64().unwrap();
    let got: f64 = rows(&evaluate("ddim-2"))[0][3].parse().unwrap();
    assert!((got - want).abs() < 1e-4, "evaluate {got} vs train's validation {want}");

    let null = evaluate("null");
    assert!(!null.status.success());
    assert!(String::from_utf8_lossy(&null.stderr).contains("does not use the model"));
}
