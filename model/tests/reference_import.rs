//! `import_checkpoint` on real files: the committed reference fixture as torch saved it, and
//! files made from it with one thing wrong each. Every refusal must say what is wrong and what
//! to do, and write no checkpoint.

use std::path::{Path, PathBuf};

use dispr_model::CpuBackend;
use dispr_model::reference::state_dict::{StateDict, read_state_dict, write_safetensors};
use dispr_model::reference::{ImportOptions, import_checkpoint};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference").join(name)
}

/// The `tiny` fixture's state dict (its network runs at 8^3 with 4 norm groups).
fn tiny_pt() -> PathBuf {
    fixture("tiny/savedmodel000100.pt")
}

fn options() -> ImportOptions {
    ImportOptions { heads: None, norm_groups: 4, resolution: 8 }
}

/// Imports `source` into a fresh folder: the error's text, or None when it imported; asserts
/// that a refusal writes nothing.
fn import(source: &Path, options: &ImportOptions) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.mpk");
    match import_checkpoint::<CpuBackend>(source, &out, options, &Default::default()) {
        Ok(_) => None,
        Err(e) => {
            assert!(!out.exists() && !out.with_extension("json").exists(), "a refusal wrote a checkpoint");
            Some(e.to_string())
        }
    }
}

/// Writes `sd` as an F32 safetensors file in `dir`.
fn write(dir: &Path, name: &str, sd: &StateDict) -> PathBuf {
    let path = dir.join(name);
    let tensors: Vec<_> = sd.iter().map(|(k, t)| (k.clone(), t.shape.clone(), t.values.clone())).collect();
    write_safetensors(&path, &tensors, Default::default()).unwrap();
    path
}

fn tiny_sd() -> StateDict {
    read_state_dict(&tiny_pt()).unwrap()
}

#[test]
fn a_reference_state_dict_imports_with_its_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.mpk");
    let side = import_checkpoint::<CpuBackend>(&tiny_pt(), &out, &options(), &Default::default()).unwrap();
    let from = side.imported.as_ref().unwrap();
    assert_eq!(from.source_sha256, dispr_model::sha256_file(&tiny_pt()).unwrap());
    assert_eq!((from.ema, side.step), (Some(false), 100), "savedmodel<step>.pt: raw weights");
    assert!(from.objective.contains("eps") && from.preprocessing.contains("mask/255"));
    assert_eq!(side.config.respacing, dispr_model::Respacing::GuidedDiffusion);
    // The same tensors as safetensors import to the same network.
    let st = write(dir.path(), "same.safetensors", &tiny_sd());
    let out2 = dir.path().join("m2.mpk");
    let side2 = import_checkpoint::<CpuBackend>(&st, &out2, &options(), &Default::default()).unwrap();
    // (Records carry random parameter ids, so compare the weights, not the bytes.)
    let weights = |p: &Path| {
        let (m, side) =
            dispr_model::checkpoint::load_model::<CpuBackend>(p, None, &Default::default()).unwrap();
        dispr_model::reference::export::export(&m, &side.config).unwrap()
    };
    assert_eq!(weights(&out2), weights(&out));
    // And those are the file's tensors: export is import's inverse.
    let sd = tiny_sd();
    for (name, shape, values) in weights(&out) {
        assert_eq!((&sd[&name].shape, &sd[&name].values), (&shape, &values), "{name}");
    }
    assert_eq!(side2.imported.unwrap().ema, None, "a name that does not say is unknown, not false");
}

#[test]
fn a_pickle_that_calls_a_function_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("pwned");
    for (module, name) in [("posix", "system"), ("os", "system"), ("builtins", "exec")] {
        let arg = match name {
            "exec" => format!("open({:?}, 'w').write('x')", witness.display().to_string()),
            _ => format!("touch {}", witness.display()),
        };
        // protocol 2: GLOBAL module\nname\n, BINUNICODE arg, TUPLE1, REDUCE, STOP.
        let mut p = vec![0x80, 2, b'c'];
        p.extend(format!("{module}\n{name}\n").bytes());
        p.push(b'X');
        p.extend((arg.len() as u32).to_le_bytes());
        p.extend(arg.bytes());
        p.extend([0x85, b'R', b'.']);
        let path = dir.path().join(format!("{module}_{name}.pt"));
        std::fs::write(&path, &p).unwrap();
        let err = import(&path, &options()).expect("refused");
        assert!(err.contains(&format!("{module}.{name}")) && err.contains("nothing in it was run"), "{err}");
        assert!(!witness.exists(), "the pickle ran");
    }
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(tiny_pt()).unwrap();
    let path = dir.path().join("savedmodel000100.pt");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = import(&path, &options()).expect("refused");
    assert!(err.contains("truncated") && err.contains("copy it again"), "{err}");
    // And a truncated safetensors file.
    let st = write(dir.path(), "w.safetensors", &tiny_sd());
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 100]).unwrap();
    let err = import(&st, &options()).expect("refused");
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn half_precision_weights_are_refused_with_how_to_convert() {
    let dir = tempfile::tempdir().unwrap();
    let sd = tiny_sd();
    let path = dir.path().join("half.safetensors");
    // Only the stored type matters here: two zero bytes per value.
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        sd.iter().map(|(k, t)| (k.clone(), t.shape.clone(), vec![0u8; 2 * t.values.len()])).collect();
    let views: Vec<_> = bytes
        .iter()
        .map(|(k, s, b)| {
            (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b).unwrap())
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let err = import(&path, &options()).expect("refused");
    assert!(err.contains("half precision") && err.contains("v.float()"), "{err}");
}

#[test]
fn a_2d_network_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = tiny_sd();
    let w = sd.get_mut("input_blocks.0.0.weight").unwrap();
    w.shape = vec![8, 3, 9, 3];
    let err = import(&write(dir.path(), "w.safetensors", &sd), &options()).expect("refused");
    assert!(err.contains("2D network") && err.contains("dims=3"), "{err}");
}

#[test]
fn an_optimiser_state_is_refused() {
    // As torch saves it: its state is keyed by parameter numbers.
    let err = import(&fixture("tiny/optsavedmodel000100.pt"), &options()).expect("refused");
    assert!(err.contains("optimiser") && err.contains("savedmodel<step>.pt"), "{err}");
    // Flattened into named tensors (e.g. converted to safetensors).
    let dir = tempfile::tempdir().unwrap();
    let mut sd = tiny_sd();
    let t = sd["time_embed.0.bias"].clone();
    sd.insert("state.0.exp_avg".into(), t.clone());
    sd.insert("state.0.exp_avg_sq".into(), t);
    let err = import(&write(dir.path(), "w.safetensors", &sd), &options()).expect("refused");
    assert!(err.contains("optimiser") && err.contains("emasavedmodel"), "{err}");
}

#[test]
fn a_classifier_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sd: StateDict = tiny_sd().into_iter().filter(|(k, _)| !k.starts_with("output_blocks.")).collect();
    let err = import(&write(dir.path(), "w.safetensors", &sd), &options()).expect("refused");
    assert!(err.contains("classifier"), "{err}");
}

#[test]
fn missing_keys_are_listed_with_the_closest_flavour() {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = tiny_sd();
    sd.remove("middle_block.1.qkv.weight");
    let err = import(&write(dir.path(), "w.safetensors", &sd), &options()).expect("refused");
    assert!(err.contains("1 missing key(s): middle_block.1.qkv.weight"), "{err}");
    assert!(err.contains("closest to the dispr-64") && err.contains("flavour"), "{err}");
}

#[test]
fn unexpected_keys_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = tiny_sd();
    let t = sd["out.0.bias"].clone();
    sd.insert("label_emb.weight".into(), t);
    let err = import(&write(dir.path(), "w.safetensors", &sd), &options()).expect("refused");
    assert!(err.contains("1 unexpected key(s): label_emb.weight"), "{err}");
}

#[test]
fn a_shape_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = tiny_sd();
    let t = sd.get_mut("output_blocks.0.0.emb_layers.1.bias").unwrap();
    t.values.push(0.5);
    t.shape = vec![t.values.len()];
    let err = import(&write(dir.path(), "w.safetensors", &sd), &options()).expect("refused");
    assert!(err.contains("output_blocks.0.0.emb_layers.1.bias is [17], expected [16]"), "{err}");
}

#[test]
fn heads_that_do_not_divide_the_widths_are_refused() {
    let opts = ImportOptions { heads: Some(3), ..options() };
    let err = import(&tiny_pt(), &opts).expect("refused");
    assert!(err.contains("num_heads 3") && err.contains("--heads (3) must divide"), "{err}");
}
