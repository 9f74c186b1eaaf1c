//! The reference DISPR code's networks (guided-diffusion's `UNetModel` with dims=3): import
//! their state dicts as checkpoints of this project, and export this project's eps-objective
//! checkpoints as state dicts the reference loads.
//!
//! - [`layout`]: which reference tensor is which parameter of ours, and how it is laid out;
//! - [`state_dict`]: reading `.pt` (without running pickle code) and `.safetensors`;
//! - [`import`]: inferring the configuration from names and shapes, checks, loading;
//! - [`export`]: the way back.

pub mod export;
pub mod import;
pub mod layout;
pub mod parity;
pub mod state_dict;

use std::path::Path;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

pub use import::{ImportError, ImportOptions, Imported};

use crate::checkpoint::{Sidecar, load_model, save_model, sha256_file};

/// Where an imported checkpoint came from and what it computes, kept in its sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedFrom {
    /// The source file's name, as given.
    pub source: String,
    /// Hex sha256 of the source file.
    pub source_sha256: String,
    /// Whether the weights are the training's exponential moving average, from the file name
    /// (`emasavedmodel_<rate>_<step>.pt`: yes; `savedmodel<step>.pt`: no); None when the name
    /// says neither.
    pub ema: Option<bool>,
    /// The EMA rate the name gives.
    pub ema_rate: Option<f64>,
    /// The network the weights are for.
    pub reference: String,
    /// What the network predicts and how it is sampled.
    pub objective: String,
    /// How a cell becomes the network's input.
    pub preprocessing: String,
    /// What could not be read from the weights and was assumed (e.g. the attention heads).
    pub assumptions: Vec<String>,
}

/// What the file name of a reference checkpoint says: (ema, ema rate, step).
pub fn parse_reference_name(path: &Path) -> (Option<bool>, Option<f64>, Option<u64>) {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if let Some(rest) = stem.strip_prefix("emasavedmodel_") {
        let mut parts = rest.rsplitn(2, '_');
        let step = parts.next().and_then(|s| s.parse().ok());
        let rate = parts.next().and_then(|s| s.parse().ok());
        return (Some(true), rate, step);
    }
    if let Some(rest) = stem.strip_prefix("savedmodel") {
        return (Some(false), None, rest.parse().ok());
    }
    (None, None, None)
}

/// Reads the reference state dict at `source`, imports it and writes this project's checkpoint
/// (`out` and its sidecar). Returns the sidecar written.
pub fn import_checkpoint<B: Backend>(
    source: &Path,
    out: &Path,
    options: &ImportOptions,
    device: &B::Device,
) -> Result<Sidecar, ReferenceError> {
    let sd = state_dict::read_state_dict(source)?;
    let import_err = |error| ReferenceError::Import { path: source.to_path_buf(), error };
    let imported = import::import::<B>(&sd, options, device).map_err(import_err)?;
    let source_sha256 = sha256_file(source)
        .map_err(|e| crate::checkpoint::CheckpointError::Io { path: source.to_path_buf(), source: e })?;
    let (ema, ema_rate, step) = parse_reference_name(source);
    let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let from = ImportedFrom {
        source: name.clone(),
        source_sha256,
        ema,
        ema_rate,
        reference: "guided-diffusion UNetModel, dims=3 (the DISPR reference code)".into(),
        objective: "eps with learned-range variance (learn_sigma=True); linear 1000-step schedule; ddim-N respaced as guided-diffusion's ddimN; x0 clipped to [-1, 1]".into(),
        preprocessing: "input [mask/255, (image/255)*(mask/255)] repeated over the 64 z slices, then x_t; timesteps passed raw (0..999)".into(),
        assumptions: imported.assumptions.clone(),
    };
    let sidecar = Sidecar {
        format: crate::checkpoint::SIDECAR_FORMAT,
        config: imported.config.clone(),
        step: step.unwrap_or(0),
        dataset_digest: String::new(),
        record_sha256: String::new(),
        validation: None,
        note: format!("imported from the reference checkpoint {name} by dispr-worker import"),
        z_calibration: None,
        imported: Some(from),
    };
    Ok(save_model(imported.model, sidecar, out)?)
}

/// Writes the checkpoint at `checkpoint` as the reference's state dict (a `.safetensors` file
/// the reference loads with `load_state_dict(safetensors.torch.load_file(out), strict=True)`).
/// Returns the number of tensors written.
pub fn export_checkpoint<B: Backend>(
    checkpoint: &Path,
    out: &Path,
    device: &B::Device,
) -> Result<usize, ReferenceError> {
    let (model, sidecar) = load_model::<B>(checkpoint, None, device)?;
    let tensors = export::export(&model, &sidecar.config)
        .map_err(|error| ReferenceError::Import { path: checkpoint.to_path_buf(), error })?;
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("exported_by".to_string(), "dispr-worker export".to_string());
    meta.insert("config".to_string(), sidecar.config.name.clone());
    meta.insert("num_heads".to_string(), sidecar.config.num_heads.to_string());
    meta.insert("source_record_sha256".to_string(), sidecar.record_sha256.clone());
    state_dict::write_safetensors(out, &tensors, meta)
        .map_err(|message| ReferenceError::Write { path: out.to_path_buf(), message })?;
    Ok(tensors.len())
}

/// Why an import or export failed: each variant's message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Read(#[from] state_dict::ReadError),
    #[error("{path}: {error}")]
    Import { path: std::path::PathBuf, error: ImportError },
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("{path}: {message}")]
    Write { path: std::path::PathBuf, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_file_names_say_ema_and_step() {
        let p = |s: &str| parse_reference_name(Path::new(s));
        assert_eq!(p("/x/emasavedmodel_0.9999_200000.pt"), (Some(true), Some(0.9999), Some(200000)));
        assert_eq!(p("savedmodel012000.pt"), (Some(false), None, Some(12000)));
        assert_eq!(p("weights.safetensors"), (None, None, None));
    }
}
