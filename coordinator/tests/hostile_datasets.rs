//! `dispr-coordinator local` (the binary) over datasets a new user may be handed: hostile TIFFs
//! beside good cells, run under a memory limit, and datasets whose layout or labels.csv cannot be
//! used. Null sampler, so each run takes a second or two.

use dispr_proto::{CellFailure, CellFeatures, CellId, RunId, keys};
use dispr_shape::dataset::{self, CellData, Label};
use dispr_shape::hostile;
use dispr_shape::volume::{Image2d, SIDE, Volume};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RUN: &str = "hostile";

/// A plausible cell: a bright ring on a disk mask, with a ground-truth ball.
fn cell(id: &str) -> CellData {
    let c = SIDE as f32 / 2.0;
    let r = |y: usize, x: usize| ((y as f32 - c).powi(2) + (x as f32 - c).powi(2)).sqrt();
    let mask = Image2d {
        dims: [SIDE, SIDE],
        data: (0..SIDE * SIDE).map(|i| if r(i / SIDE, i % SIDE) < 18.0 { 255 } else { 0 }).collect(),
    };
    let image = Image2d {
        dims: [SIDE, SIDE],
        data: (0..SIDE * SIDE)
            .map(|i| (200.0 - (r(i / SIDE, i % SIDE) - 16.0).abs() * 20.0).clamp(10.0, 255.0) as u8)
            .collect(),
    };
    let obj = Volume {
        dims: [SIDE; 3],
        data: (0..SIDE * SIDE * SIDE)
            .map(|i| {
                let (z, y, x) = (i / SIDE / SIDE, i / SIDE % SIDE, i % SIDE);
                let d = ((z as f32 - c).powi(2) * 4.0 + r(y, x).powi(2)).sqrt();
                if d < 18.0 { 255 } else { 0 }
            })
            .collect(),
    };
    let id = CellId::new(id).unwrap();
    CellData { id, label: Label { class: "x".into(), subclass: None }, image, mask, obj: Some(obj) }
}

fn write_cell(root: &Path, cell: &CellData) {
    for (key, bytes) in dataset::encode_cell(cell).unwrap() {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn local(dataset: &Path, output: &Path, limit_bytes: Option<u64>) -> Output {
    let bin = env!("CARGO_BIN_EXE_dispr-coordinator");
    let mut cmd = match limit_bytes {
        Some(limit) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--as={limit}")).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["local", "--sampler", "null", "--samples", "1", "--run-id", RUN, "--dataset"])
        .arg(dataset)
        .arg("--output")
        .arg(output)
        .env_remove("RUST_LOG");
    cmd.output().expect("running dispr-coordinator local (prlimit is in util-linux)")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The most resident memory of any child this process has waited for, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage writes into the struct it is given and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage), 0);
        usage
    };
    usage.ru_maxrss as u64 * 1024
}

fn record(output: &Path, key: String) -> PathBuf {
    output.join(key)
}

#[test]
fn bombs_fail_their_own_cell_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (data, output) = (dir.path().join("dataset"), dir.path().join("out"));
    for id in ["alpha001", "alpha002", "beta003", "bomb004", "bomb005", "huge006"] {
        write_cell(&data, &cell(id));
    }
    // The bombs: 512 pages of 4096x4096 as an obj (8 GiB once decoded, 75 KB on disk),
    // 64 such pages as a mask; a 5 MB file where a 64x64 image belongs.
    std::fs::write(data.join("obj/bomb004.tif"), hostile::deflate_bomb(512, 4096).unwrap()).unwrap();
    std::fs::write(data.join("mask/bomb005.tif"), hostile::deflate_bomb(64, 4096).unwrap()).unwrap();
    std::fs::write(data.join("image/huge006.tif"), vec![0x49u8; 5 << 20]).unwrap();

    // 4 GiB of address space: the 512-page bomb alone used to ask for 8 GiB and abort the run.
    let out = local(&data, &output, Some(4 << 30));
    let peak = children_peak_rss();
    let log = text(&out);
    // Some cells failed, none crashed the run: exit 3 (not 1, the run could not run; not a signal).
    assert_eq!(out.status.code(), Some(3), "local failed under the memory limit:\n{log}");
    eprintln!("local over 3 good cells and 3 hostile ones: peak RSS {} MiB", peak >> 20);
    // Reading the 64-page bomb used to cost 1.08 GB.
    assert!(peak < 400 << 20, "peak RSS {} MiB", peak >> 20);

    let run = RunId::new(RUN).unwrap();
    for id in ["alpha001", "alpha002", "beta003", "bomb004"] {
        let id = CellId::new(id).unwrap();
        assert!(record(&output, keys::features(&run, &id)).is_file(), "{id} has no features:\n{log}");
    }
    // A bad ground truth costs only the cell's scores: it is predicted, and its record says why
    // it has no reconstruction metrics.
    let bomb = features(&output, "bomb004");
    assert!(bomb.mean_metrics.is_none() && !bomb.samples.is_empty());
    let skipped = bomb.truth_skipped.unwrap_or_default();
    assert!(
        skipped.contains(
            "ground truth obj/bomb004.tif not used (the cell is sampled, without reconstruction scores)"
        ) && skipped.contains(
            "obj/bomb004.tif: it is a 512x4096x4096 stack (512 pages) but an obj volume must be a 64x64x64"
        ),
        "{skipped}"
    );
    assert!(features(&output, "alpha001").truth_skipped.is_none());
    for (id, says) in [
        (
            "bomb005",
            "mask/bomb005.tif: it is a 64x4096x4096 stack (64 pages) but a mask must be a 64x64 image",
        ),
        // The reason itself, not only the error chain, says the size, the cap and what to do.
        (
            "huge006",
            "image/huge006.tif: it holds 5242880 bytes (5.0 MiB) or more, more than the 4194304 bytes (4.0 MiB) \
             accepted for it; check that this is the file meant; the dataset's files are small 64x64 images and \
             64x64x64 volumes, so replace it with the right file or remove it",
        ),
    ] {
        let failure = failure(&output, id, &log);
        assert!(failure.reason.contains(says), "{id}: {}", failure.reason);
        // The log line of the failure says its reason once.
        let line =
            log.lines().find(|l| l.contains("cell failed for good") && l.contains(id)).unwrap_or_default();
        assert_eq!(line.matches(says).count(), 1, "{id}: {line}\n{log}");
    }
    assert!(log.contains("4 of 6 cells done, 2 failed"), "{log}");
}

/// The features record of `cell` of the run.
fn features(output: &Path, cell: &str) -> CellFeatures {
    let key = keys::features(&RunId::new(RUN).unwrap(), &CellId::new(cell).unwrap());
    CellFeatures::decode(&std::fs::read(output.join(&key)).unwrap_or_else(|e| panic!("{key}: {e}"))).unwrap()
}

/// The failure record of `cell` of the run.
fn failure(output: &Path, cell: &str, log: &str) -> CellFailure {
    let key = keys::failure(&RunId::new(RUN).unwrap(), &CellId::new(cell).unwrap());
    let bytes = std::fs::read(output.join(&key)).unwrap_or_else(|e| panic!("{key}: {e}\n{log}"));
    CellFailure::decode(&bytes).unwrap()
}

/// A folder, a FIFO or a symbolic link to nothing where a cell's file belongs fails that cell
/// alone, saying what it is; under obj/ it costs only the cell's ground-truth scores.
#[test]
fn entries_that_are_not_files_fail_only_their_cell() {
    let dir = tempfile::tempdir().unwrap();
    let (data, output) = (dir.path().join("ds"), dir.path().join("out"));
    dataset(&data, &["a1", "b2", "c3", "d4", "e5"]);
    let replace = |key: &str, make: &dyn Fn(&Path)| {
        let path = data.join(key);
        std::fs::remove_file(&path).unwrap();
        make(&path);
    };
    replace("image/b2.tif", &|p| std::fs::create_dir(p).unwrap());
    let mkfifo = |p: &Path| assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    replace("mask/c3.tif", &mkfifo);
    replace("image/d4.tif", &|p| std::os::unix::fs::symlink(dir.path().join("moved/d4.tif"), p).unwrap());
    replace("obj/e5.tif", &mkfifo);

    // A FIFO that is opened waits for a writer forever: the run would hang.
    let out = local(&data, &output, None);
    let log = text(&out);
    assert!(log.contains("2 of 5 cells done, 3 failed"), "{log}");
    for (cell, says) in [
        ("b2", "image/b2.tif: it is a folder, not a file; put the file itself there, or remove it"),
        ("c3", "mask/c3.tif: it is a FIFO (named pipe), not a file; put the file itself there, or remove it"),
        ("d4", "image/d4.tif: it is a symbolic link to "),
    ] {
        let reason = failure(&output, cell, &log).reason;
        assert!(reason.starts_with(&format!("cell {cell}: ")) && reason.contains(says), "{cell}: {reason}");
    }
    let reason = failure(&output, "d4", &log).reason;
    assert!(reason.contains("moved/d4.tif, which does not exist"), "{reason}");
    let e5 = features(&output, "e5");
    assert!(e5.mean_metrics.is_none());
    let skipped = e5.truth_skipped.unwrap_or_default();
    assert!(skipped.contains("obj/e5.tif: it is a FIFO (named pipe), not a file"), "{skipped}");
    assert!(features(&output, "a1").mean_metrics.is_some(), "a good cell keeps its scores");
}

/// A dataset of good cells named `ids`, with no labels.csv (classes from the names).
fn dataset(root: &Path, ids: &[&str]) {
    for id in ids {
        write_cell(root, &cell(id));
    }
}

fn manifest_of(output: &Path) -> PathBuf {
    output.join(keys::manifest(&RunId::new(RUN).unwrap()))
}

/// Datasets that cannot be used are refused before the manifest is written, with what is wrong.
#[test]
fn unusable_datasets_are_refused_before_anything_is_written() {
    type Setup = fn(&Path);
    let cases: [(&str, Setup, &str); 7] = [
        (
            "';' separators",
            |d| std::fs::write(d.join("labels.csv"), "cell;class\na1;x\nb2;y\n").unwrap(),
            "labels.csv line 1: its fields are separated by ';'",
        ),
        (
            "an empty class",
            |d| std::fs::write(d.join("labels.csv"), "a1,x\nb2,\n").unwrap(),
            "labels.csv line 2: cell b2 has an empty class",
        ),
        (
            "Latin-1",
            |d| std::fs::write(d.join("labels.csv"), b"a1,x\nb2,h\xe9maties\n").unwrap(),
            "labels.csv line 2: byte 0xe9 is not UTF-8",
        ),
        ("a missing row", |d| std::fs::write(d.join("labels.csv"), "a1,x\n").unwrap(), "cell b2 has no row"),
        (
            "a mask without an image",
            |d| {
                write_cell(d, &cell("c3"));
                std::fs::remove_file(d.join("image/c3.tif")).unwrap();
            },
            "1 cell(s) have a mask or obj but no image/<cell>.tif: c3",
        ),
        (
            ".tiff beside .tif",
            |d| {
                std::fs::rename(d.join("image/b2.tif"), d.join("image/b2.tiff")).unwrap();
            },
            "image/b2.tiff; the layout reads <cell>.tif only, so rename them",
        ),
        (
            "an image without a mask",
            |d| {
                std::fs::remove_file(d.join("mask/b2.tif")).unwrap();
            },
            "1 cell(s) have an image but no mask/<cell>.tif: b2",
        ),
    ];
    for (what, setup, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (data, output) = (dir.path().join("ds"), dir.path().join("out"));
        dataset(&data, &["a1", "b2"]);
        setup(&data);
        let out = local(&data, &output, None);
        let log = text(&out);
        assert!(!out.status.success(), "{what}: accepted\n{log}");
        assert!(log.contains(says) && log.contains(&format!("dataset {}", data.display())), "{what}:\n{log}");
        assert!(!manifest_of(&output).exists(), "{what}: a manifest was written");
    }

    // A folder that does not exist says so, and points to documentation that exists.
    let dir = tempfile::tempdir().unwrap();
    let out = local(&dir.path().join("no-such"), &dir.path().join("out"), None);
    let log = text(&out);
    assert!(!out.status.success() && log.contains("the folder does not exist"), "{log}");

    // A refused flag writes nothing either.
    let data = dir.path().join("ds");
    dataset(&data, &["a1"]);
    let bin = env!("CARGO_BIN_EXE_dispr-coordinator");
    let out = Command::new(bin)
        .args(["local", "--sampler", "null", "--workers", "0", "--run-id", RUN, "--dataset"])
        .arg(&data)
        .arg("--output")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success() && text(&out).contains("--workers must be at least 1"), "{}", text(&out));
    assert!(!manifest_of(&dir.path().join("out")).exists());
}

/// `local` run from `cwd` with the dataset and output as typed.
fn local_in(cwd: &Path, dataset: &str, output: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispr-coordinator"))
        .current_dir(cwd)
        .args([
            "local",
            "--sampler",
            "null",
            "--samples",
            "1",
            "--run-id",
            RUN,
            "--dataset",
            dataset,
            "--output",
            output,
        ])
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// One folder typed three ways is one run; a folder of the same name elsewhere, or the same
/// folder holding other cells, is not.
#[test]
fn locations_are_canonical_and_datasets_recognised_by_their_cells() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    dataset(&a.join("ds"), &["a1", "b2"]);
    dataset(&b.join("ds"), &["z9"]);
    let output = dir.path().join("out");
    let output = output.to_str().unwrap();

    let first = local_in(&a, "ds", output, &[]);
    assert!(first.status.success(), "{}", text(&first));
    let manifest =
        dispr_proto::Manifest::decode(&std::fs::read(manifest_of(Path::new(output))).unwrap()).unwrap();
    let absolute = a.join("ds").display().to_string();
    assert_eq!(
        manifest.dataset_uri, absolute,
        "the manifest holds the canonical location, not what was typed"
    );
    assert!(manifest.dataset_digest.is_some());

    for spelling in [format!("file://{absolute}/"), format!("{absolute}/./"), "./ds".to_string()] {
        let again = local_in(&a, &spelling, output, &[]);
        assert!(again.status.success() && text(&again).contains("resuming"), "{spelling}: {}", text(&again));
    }
    // `ds` typed in another folder is another folder: refused, not mixed into the run.
    let elsewhere = local_in(&b, "ds", output, &[]);
    let log = text(&elsewhere);
    assert!(
        !elsewhere.status.success() && log.contains("different manifest") && log.contains("dataset_uri"),
        "{log}"
    );
    // The same folder holding other cells: refused, whatever its name.
    write_cell(&a.join("ds"), &cell("c3"));
    let changed = local_in(&a, "ds", output, &[]);
    let log = text(&changed);
    assert!(
        !changed.status.success() && log.contains("which held other cells when the run started"),
        "{log}"
    );
}

/// Cells failing for one reason are shown as one line and called a misconfiguration; once it is
/// fixed, --retry-failed runs them again.
#[test]
fn failures_are_grouped_by_reason_and_retried_with_one_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (data, output) = (dir.path().join("ds"), dir.path().join("out"));
    // Masks of all 127: below the threshold of 128, so every cell fails the same way.
    for id in ["a1", "a2", "a3"] {
        let mut c = cell(id);
        c.mask.data.iter_mut().for_each(|v| *v = 127);
        write_cell(&data, &c);
    }
    let out = local(&data, &output, None);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(4), "every cell failed: {log}");
    assert!(log.contains("0 of 3 cells done, 3 failed"), "{log}");
    assert!(log.contains("why 3 cells failed:") && log.contains("3 cell(s): cell <cell>: the mask mask/<cell>.tif is empty: no pixel is at or above 128 of 255 (its largest value is 127)"), "{log}");
    assert!(
        log.contains("every failed cell failed for the same reason") && log.contains("--retry-failed"),
        "{log}"
    );

    // Without the flag a second run has nothing to do; with it the fixed cells run again.
    for id in ["a1", "a2", "a3"] {
        write_cell(&data, &cell(id));
    }
    let again = local(&data, &output, None);
    assert!(text(&again).contains("0 of 3 cells done, 3 failed"), "{}", text(&again));
    let bin = env!("CARGO_BIN_EXE_dispr-coordinator");
    let retried = Command::new(bin)
        .args([
            "local",
            "--sampler",
            "null",
            "--samples",
            "1",
            "--run-id",
            RUN,
            "--retry-failed",
            "--dataset",
        ])
        .arg(&data)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    let log = text(&retried);
    assert!(retried.status.success() && log.contains("running 3 failed cells again"), "{log}");
    assert!(log.contains("3 of 3 cells done, 0 failed"), "{log}");
}
