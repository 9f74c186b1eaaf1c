//! What `dispr-coordinator local` (the binary) tells a script: its exit code when every cell is
//! done (0), when some failed (3) and when all failed (4), and that a second `local` on the same
//! run and output is refused while the first computes. Null sampler: each run takes seconds.

use dispr_proto::{CellId, keys};
use dispr_shape::dataset::{self, CellData, Label};
use dispr_shape::volume::{Image2d, SIDE};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A cell with a disk mask of radius `r` (0: an empty mask, which fails the cell).
fn cell(id: &str, r: f32) -> CellData {
    let c = SIDE as f32 / 2.0;
    let d = |i: usize| (((i / SIDE) as f32 - c).powi(2) + ((i % SIDE) as f32 - c).powi(2)).sqrt();
    let mask = Image2d {
        dims: [SIDE, SIDE],
        data: (0..SIDE * SIDE).map(|i| if d(i) < r { 255 } else { 0 }).collect(),
    };
    let image = Image2d {
        dims: [SIDE, SIDE],
        data: (0..SIDE * SIDE).map(|i| if d(i) < r { 180 } else { 20 }).collect(),
    };
    let label = Label { class: "x".into(), subclass: None };
    CellData { id: CellId::new(id).unwrap(), label, image, mask, obj: None }
}

/// A dataset of `good` cells and `bad` cells with an empty mask.
fn dataset(root: &Path, good: usize, bad: usize) {
    let cells = (0..good)
        .map(|i| cell(&format!("good{i}"), 12.0 + i as f32))
        .chain((0..bad).map(|i| cell(&format!("bad{i}"), 0.0)));
    for cell in cells {
        for (key, bytes) in dataset::encode_cell(&cell).unwrap() {
            let path = root.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

fn local(data: &Path, out: &Path, samples: u32) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispr-coordinator"));
    cmd.args(["local", "--sampler", "null", "--run-id", "outcome", "--samples", &samples.to_string()])
        .arg("--dataset")
        .arg(data)
        .arg("--output")
        .arg(out)
        .stdin(Stdio::null());
    cmd
}

fn run(good: usize, bad: usize) -> Output {
    let dir = tempfile::tempdir().unwrap();
    dataset(&dir.path().join("data"), good, bad);
    local(&dir.path().join("data"), &dir.path().join("out"), 1).output().unwrap()
}

#[test]
fn local_exits_0_when_all_are_done_3_when_some_failed_and_4_when_all_failed() {
    let all_done = run(3, 0);
    assert_eq!(all_done.status.code(), Some(0), "{}", String::from_utf8_lossy(&all_done.stderr));

    let some = run(2, 1);
    let said = String::from_utf8_lossy(&some.stderr);
    assert_eq!(some.status.code(), Some(3), "{said}");
    assert!(said.contains("1 of 3 cells failed"), "{said}");
    assert!(String::from_utf8_lossy(&some.stdout).contains("empty"), "the reason is printed");

    let all = run(0, 2);
    let said = String::from_utf8_lossy(&all.stderr);
    assert_eq!(all.status.code(), Some(4), "{said}");
    assert!(said.contains("every one of the 2 cells failed"), "{said}");
}

#[test]
fn the_commands_that_run_or_follow_a_run_list_their_exit_codes_in_their_help() {
    for command in ["demo", "local", "watch"] {
        let out =
            Command::new(env!("CARGO_BIN_EXE_dispr-coordinator")).args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command} --help: {help}");
        for says in [
            "0 every cell of the run is done",
            "3 the run finished but some cells failed",
            "4 every cell failed",
        ] {
            assert!(help.contains(says), "{command} --help lacks '{says}':\n{help}");
        }
    }
}

#[test]
fn a_second_local_on_the_same_run_and_output_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    dataset(&data, 24, 0);
    // Many samples per cell keep the first busy for a while.
    let mut first = local(&data, &out, 60).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let lease = out.join(keys::lease(&dispr_proto::RunId::new("outcome").unwrap()));
    let started = Instant::now();
    while !lease.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "the first run never took its lease");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended before the test could race it");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = local(&data, &out, 60).output().unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{said}");
    assert!(said.contains("is being computed by `local`") && said.contains("another --run-id"), "{said}");
    assert_eq!(first.wait().unwrap().code(), Some(0), "the first run is not disturbed");
    assert!(!lease.exists(), "the lease goes with the run");
}

#[test]
fn report_on_a_run_whose_every_cell_failed_says_so_with_the_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    dataset(&data, 0, 2);
    assert_eq!(local(&data, &out, 1).output().unwrap().status.code(), Some(4));
    let report = Command::new(env!("CARGO_BIN_EXE_dispr-coordinator"))
        .args(["report", "--run-id", "outcome", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&report.stderr);
    assert_eq!(report.status.code(), Some(1), "{said}");
    assert!(said.contains("every cell of run outcome that finished failed (2 cells)"), "{said}");
    assert!(said.contains("why 2 cells failed") && said.contains("is empty"), "{said}");
}
