//! Reading a state dict: a PyTorch `.pt`/`.pth` (torch.save's zip format, or the legacy format
//! of PyTorch < 1.6) or a `.safetensors` file, as named tensors.
//!
//! PyTorch files are read with Burn's own `burn-store`. Its pickle reader is an interpreter
//! written in Rust: it never imports or calls Python. It builds only tensors and plain containers,
//! and refuses a pickle that calls any global other than the tensor-rebuilding functions of
//! torch and `collections.OrderedDict` (a malicious file's `os.system` or `builtins.exec` ends in
//! an "unsupported type" error, nothing runs). That is the allow-list a restricted unpickler
//! would have, so no second one is written here; the refusal is turned into a message below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One tensor of a state dict: its stored element type (`F32`, `F16`, ...), shape and values
/// (converted to f32; the importer refuses types other than f32 before using them).
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every tensor of a state dict, by name.
pub type StateDict = BTreeMap<String, RawTensor>;

/// Tensors to write, in order: name, shape and row-major f32 values.
pub type NamedTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// A file that cannot be read as a state dict, with what to do.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ReadError {
    pub path: PathBuf,
    pub message: String,
}

/// Reads the state dict at `path`: `.safetensors` by its extension, anything else as PyTorch.
pub fn read_state_dict(path: &Path) -> Result<StateDict, ReadError> {
    let err = |message: String| ReadError { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) {
        return read_safetensors(&bytes).map_err(err);
    }
    if bytes.starts_with(b"PK\x03\x04") && !has_zip_end(&bytes) {
        return Err(err(format!(
            "it is a zip-format PyTorch file whose end is missing ({} bytes): the file is truncated, e.g. by an interrupted copy or a full disk; copy it again and compare its size or sha256 with the original",
            bytes.len()
        )));
    }
    // The reader is not expected to panic on any input, but a damaged file must never take the
    // caller down with it.
    let read = std::panic::catch_unwind(|| burn_store::pytorch::PytorchReader::new(path));
    let reader = match read {
        Ok(Ok(reader)) => reader,
        Ok(Err(e)) => return Err(err(explain_pytorch_error(&e.to_string(), bytes.len()))),
        Err(_) => return Err(err("the PyTorch reader failed on it: the file is damaged or not a state dict; copy it again, or save the state dict again with torch.save(model.state_dict(), path)".into())),
    };
    let mut out = StateDict::new();
    for (name, snapshot) in reader.into_tensors() {
        let data = snapshot.to_data().map_err(|e| {
            err(format!(
                "tensor {name} cannot be read ({e:?}): the file is truncated or damaged; copy it again"
            ))
        })?;
        let dtype = format!("{:?}", data.dtype).to_uppercase();
        let values = data
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| err(format!("tensor {name} ({dtype}) cannot be converted to f32: {e:?}")))?;
        out.insert(name, RawTensor { dtype, shape: snapshot.shape.to_vec(), values });
    }
    Ok(out)
}

/// Whether a zip file still has its end-of-central-directory record (in the last 64 KiB + 22
/// bytes), which a truncated copy loses.
fn has_zip_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub((1 << 16) + 22)..];
    tail.windows(4).any(|w| w == b"PK\x05\x06")
}

fn explain_pytorch_error(message: &str, len: usize) -> String {
    if message.contains("Unsupported Python type") {
        let global = message.split('\'').nth(1).unwrap_or("a Python function");
        return format!(
            "its pickle calls {global}, which a state dict never does: refused, and nothing in it was run. A state dict holds only tensors; if this file is yours, save one with torch.save(model.state_dict(), path), otherwise do not load it anywhere ({message})"
        );
    }
    if message.contains("dict key must be a string") {
        return format!(
            "its dictionary has keys that are not names, as an optimiser's state has (optsavedmodel<step>.pt: parameter numbers): give the model's state dict instead, savedmodel<step>.pt or emasavedmodel_<rate>_<step>.pt ({message})"
        );
    }
    if message.contains("unexpected end") || message.contains("UnexpectedEof") || message.contains("EOF") {
        return format!("the file ends early ({len} bytes): it is truncated; copy it again ({message})");
    }
    format!(
        "it cannot be read as a PyTorch state dict ({message}): give a file written by torch.save(model.state_dict(), path), or a .safetensors file"
    )
}

fn read_safetensors(bytes: &[u8]) -> Result<StateDict, String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        format!(
            "it cannot be read as safetensors ({e}): the file is truncated or damaged ({} bytes); copy it again",
            bytes.len()
        )
    })?;
    let mut out = StateDict::new();
    for (name, view) in st.tensors() {
        let dtype = format!("{:?}", view.dtype()).to_uppercase();
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => {
                data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
            safetensors::Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                .collect(),
            // Not converted: the importer refuses them by their dtype with what to do.
            _ => Vec::new(),
        };
        out.insert(name, RawTensor { dtype, shape: view.shape().to_vec(), values });
    }
    Ok(out)
}

/// Writes named f32 tensors (row-major, with their shapes) as a safetensors file, with
/// `metadata` in its header.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: BTreeMap<String, String>,
) -> Result<(), String> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect(), s.clone()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| format!("tensor {n}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = safetensors::serialize(views, Some(metadata.into_iter().collect()))
        .map_err(|e| format!("cannot encode safetensors: {e}"))?;
    crate::checkpoint::write_atomic(path, &out).map_err(|e| e.to_string())
}
