//! `dispr-coordinator preflight` as an operator runs it, on a folder of synthetic labelled
//! cells with a reference network imported from the committed fixture (8^3, random weights):
//! as it is, its samples depend on the cell; with its input layer zeroed they cannot, and the
//! preflight must say so loudly and exit non-zero.

use std::path::{Path, PathBuf};
use std::process::Command;

use dispr_model::CpuBackend;
use dispr_model::reference::state_dict::{read_state_dict, write_safetensors};
use dispr_model::reference::{ImportOptions, import_checkpoint};
use dispr_shape::{dataset, synth};

fn synthetic_dataset(dir: &Path, cells: usize) {
    for spec in synth::plan(cells) {
        for (key, bytes) in dataset::encode_cell(&synth::generate(3, &spec)).unwrap() {
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

/// The `tiny` reference fixture imported, with its first convolution zeroed if `zero_input`.
fn imported(dir: &Path, zero_input: bool) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/reference/tiny/savedmodel000100.pt");
    let mut sd = read_state_dict(&fixture).unwrap();
    if zero_input {
        sd.get_mut("input_blocks.0.0.weight").unwrap().values.iter_mut().for_each(|v| *v = 0.0);
    }
    let name = if zero_input { "zeroed" } else { "as-is" };
    let source = dir.join(format!("{name}.safetensors"));
    let tensors: Vec<_> = sd.into_iter().map(|(k, t)| (k, t.shape, t.values)).collect();
    write_safetensors(&source, &tensors, Default::default()).unwrap();
    let out = dir.join(format!("{name}.mpk"));
    let options = ImportOptions { heads: None, norm_groups: 4, resolution: 8 };
    import_checkpoint::<CpuBackend>(&source, &out, &options, &Default::default()).unwrap();
    out
}

fn preflight(model: &Path, data: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dispr-coordinator"))
        .args(["preflight", "--sampler", "ddim-2", "--cells", "1000", "--samples", "5", "--model"])
        .arg(model)
        .arg("--dataset")
        .arg(data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn preflight_warns_when_the_model_ignores_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cells");
    synthetic_dataset(&data, 6);

    let (code, text) = preflight(&imported(dir.path(), true), &data);
    assert_eq!(code, 5, "{text}");
    // Once, in a log that takes both streams (stdout and stderr are pipes here).
    assert_eq!(text.matches("!! WARNING: the model IGNORES ITS INPUT").count(), 1, "{text}");
    assert!(text.contains("own vs other's sample IoU 1.000"), "{text}");
    assert!(text.contains("compute hours") && text.contains("floor (extruded mask)"), "{text}");

    // The same network with its input layer: its samples change with the cell (random weights:
    // not towards its shape, which gets the milder warning).
    let (_, text) = preflight(&imported(dir.path(), false), &data);
    assert!(!text.contains("IGNORES ITS INPUT"), "{text}");
    let own_vs_other: f64 = text.split("own vs other's sample IoU ").nth(1).unwrap()[..5].parse().unwrap();
    assert!(own_vs_other < 0.9, "{text}");
    assert!(text.contains("5000 samples") || text.contains("1000 cells x 5 samples"), "{text}");
}
