//! Checkpoints: a Burn record (named MessagePack, full precision) and a JSON sidecar beside it
//! (`model.mpk` -> `model.json`) holding the configuration, the training step, the digest of
//! the training data, validation metrics and the sha256 of the record. Loading verifies the
//! record against the sidecar's sha256 and builds the network from the sidecar's configuration.

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ModelConfig;
use crate::unet::UNet;

/// Version of the checkpoint format; a loader refuses versions it does not know. Format 2
/// records store each UNet block as one of its kinds (an enum); format 1 records (four optional
/// fields per block) do not load into this network.
pub const SIDECAR_FORMAT: u32 = 2;

/// The JSON file beside a model record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub format: u32,
    /// The network's configuration: the loader builds exactly this.
    pub config: ModelConfig,
    /// Optimiser steps the weights were trained for.
    pub step: u64,
    /// sha256 over the training cells' ids and files (see the train command).
    pub dataset_digest: String,
    /// Hex sha256 of the record file.
    pub record_sha256: String,
    /// The latest validation, if one ran.
    pub validation: Option<Validation>,
    /// Free text: what the checkpoint is (e.g. "demonstration model") and how it was made.
    #[serde(default)]
    pub note: String,
    /// The height calibration [`crate::Predictor::sample`] applies to this checkpoint's shapes,
    /// if one was fitted (`dispr-worker calibrate`); sidecars written before it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z_calibration: Option<crate::ZCalibration>,
    /// For a checkpoint imported from the reference code (`dispr-worker import`): the source
    /// file, its sha256, whether its weights are the EMA ones, the objective and preprocessing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<crate::reference::ImportedFrom>,
}

/// Validation IoU of sampled shapes on held-out cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub step: u64,
    pub sampler: String,
    pub cells: usize,
    pub samples_per_cell: usize,
    /// Mean IoU (Otsu-binarised samples vs ground truth at 64^3).
    pub mean_iou: f64,
    /// Mean IoU of the naive floor (the mask extruded along z) on the same cells.
    #[serde(default)]
    pub floor_iou: Option<f64>,
}

/// What went wrong loading or saving a checkpoint, with the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("checkpoint sidecar {path} is not valid: {message}")]
    Sidecar { path: PathBuf, message: String },
    #[error(
        "checkpoint record {path} has sha256 {actual}, but {expected_from} says {expected}: the record and its sidecar do not belong together, or the file is damaged; copy both files again"
    )]
    Sha256 { path: PathBuf, expected: String, expected_from: String, actual: String },
    #[error("checkpoint {path}: {message}")]
    Mismatch { path: PathBuf, message: String },
    #[error("checkpoint record {path} cannot be decoded: {message}")]
    Record { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

/// The sidecar path of a record: the same name with the extension `json`.
pub fn sidecar_path(record: &Path) -> PathBuf {
    record.with_extension("json")
}

/// Hex sha256 of a file, streamed (the coordinator uses it to fill `ModelRef.sha256`).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Serialises any Burn record (a module's or an optimiser's) to bytes.
pub fn record_to_bytes<B: Backend, R: Record<B>>(record: R) -> Result<Vec<u8>, String> {
    Recorder::<B>::record(&NamedMpkBytesRecorder::<FullPrecisionSettings>::new(), record, ())
        .map_err(|e| e.to_string())
}

/// Decodes a Burn record written by [`record_to_bytes`].
pub fn record_from_bytes<B: Backend, R: Record<B>>(bytes: Vec<u8>, device: &B::Device) -> Result<R, String> {
    Recorder::<B>::load(&NamedMpkBytesRecorder::<FullPrecisionSettings>::new(), bytes, device)
        .map_err(|e| e.to_string())
}

/// Writes `model` to `record_path` and its sidecar beside it; `sidecar.record_sha256` is filled
/// in here. Returns the sidecar written.
pub fn save_model<B: Backend>(
    model: UNet<B>,
    mut sidecar: Sidecar,
    record_path: &Path,
) -> Result<Sidecar, CheckpointError> {
    let bytes = record_to_bytes::<B, _>(model.into_record())
        .map_err(|message| CheckpointError::Record { path: record_path.to_path_buf(), message })?;
    sidecar.format = SIDECAR_FORMAT;
    sidecar.record_sha256 = sha256_bytes(&bytes);
    if let Some(dir) = record_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    write_atomic(record_path, &bytes)?;
    write_sidecar(record_path, &sidecar)?;
    Ok(sidecar)
}

/// Writes `sidecar` beside the record at `record_path` (atomically), e.g. a calibrated copy of a
/// checkpoint's sidecar; its `record_sha256` must already be the record's.
pub fn write_sidecar(record_path: &Path, sidecar: &Sidecar) -> Result<(), CheckpointError> {
    let side = sidecar_path(record_path);
    let json = serde_json::to_vec_pretty(sidecar)
        .map_err(|e| CheckpointError::Sidecar { path: side.clone(), message: e.to_string() })?;
    write_atomic(&side, &json)
}

/// Writes through a temporary file and a rename, so a crash never leaves half a checkpoint.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Reads and checks a sidecar.
pub fn read_sidecar(record_path: &Path) -> Result<Sidecar, CheckpointError> {
    let path = sidecar_path(record_path);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let sidecar: Sidecar = serde_json::from_slice(&bytes)
        .map_err(|e| CheckpointError::Sidecar { path: path.clone(), message: e.to_string() })?;
    if sidecar.format == 1 {
        return Err(CheckpointError::Sidecar {
            path: path.to_path_buf(),
            message: "this is a format-1 checkpoint, written before December 2026 by an older dispr: its record stores the network's blocks in a layout this build no longer reads. Use the default checkpoint shipped in model/checkpoints/, or retrain with `dispr-worker train` (the published objective is still there: --config dispr-64)".into(),
        });
    }
    if sidecar.format != SIDECAR_FORMAT {
        return Err(CheckpointError::Sidecar {
            path,
            message: format!(
                "format {} is not supported (this build reads format {SIDECAR_FORMAT}); use a matching dispr release",
                sidecar.format
            ),
        });
    }
    if let Some(Err(message)) = sidecar.z_calibration.as_ref().map(|c| c.validate()) {
        return Err(CheckpointError::Sidecar {
            path,
            message: format!("{message}: refit it with `dispr-worker calibrate`, or remove z_calibration"),
        });
    }
    sidecar.config.validate().map_err(|e| CheckpointError::Sidecar { path, message: e.to_string() })?;
    Ok(sidecar)
}

/// Loads a model checkpoint: reads the sidecar, checks the record's sha256 against it (and
/// against `expected_sha256`, e.g. the job's `ModelRef.sha256`, when given), and builds the
/// network of the sidecar's configuration with the record's weights.
pub fn load_model<B: Backend>(
    record_path: &Path,
    expected_sha256: Option<&str>,
    device: &B::Device,
) -> Result<(UNet<B>, Sidecar), CheckpointError> {
    let sidecar = read_sidecar(record_path)?;
    let bytes = std::fs::read(record_path).map_err(io_err(record_path))?;
    let actual = sha256_bytes(&bytes);
    let checks = [
        (Some(sidecar.record_sha256.as_str()), "its sidecar"),
        (expected_sha256, "the job's model reference"),
    ];
    for (expected, from) in checks {
        if let Some(expected) = expected.filter(|e| !e.eq_ignore_ascii_case(&actual)) {
            return Err(CheckpointError::Sha256 {
                path: record_path.to_path_buf(),
                expected: expected.to_string(),
                expected_from: from.to_string(),
                actual,
            });
        }
    }
    let model = model_from_bytes(&sidecar.config, bytes, device)
        .map_err(|message| CheckpointError::Record { path: record_path.to_path_buf(), message })?;
    Ok((model, sidecar))
}

/// Builds the network of `config` and loads record bytes into it, checking every parameter's
/// shape (Burn would otherwise accept a record of another configuration).
pub(crate) fn model_from_bytes<B: Backend>(
    config: &ModelConfig,
    bytes: Vec<u8>,
    device: &B::Device,
) -> Result<UNet<B>, String> {
    let fresh = UNet::<B>::new(config, device);
    let want = shapes(&fresh);
    let record = record_from_bytes::<B, _>(bytes, device)?;
    // Burn asserts (panics) when a record's layer lists do not fit the module; turn that into
    // the error below instead of taking the worker down.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fresh.clone().load_record(record)));
    let Ok(model) = loaded else {
        return Err(mismatch(config, &want, None));
    };
    let got = shapes(&model);
    if got != want {
        return Err(mismatch(config, &want, Some(got.as_slice())));
    }
    Ok(model)
}

fn mismatch(config: &ModelConfig, want: &[Vec<usize>], got: Option<&[Vec<usize>]>) -> String {
    let count = |s: &[Vec<usize>]| s.iter().map(|s| s.iter().product::<usize>()).sum::<usize>();
    let found = got.map_or("a different layer layout".to_string(), |g| {
        format!("{} tensors with {} values", g.len(), count(g))
    });
    format!(
        "its parameters do not fit the configuration {:?} of the sidecar ({} tensors with {} values expected, {found} found): the sidecar belongs to another checkpoint",
        config.name,
        want.len(),
        count(want),
    )
}

/// The shapes of a module's float parameters, in visiting order.
fn shapes<B: Backend, M: Module<B>>(m: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<burn::tensor::Tensor<B, D>>) {
            self.0.push(p.val().dims().to_vec());
        }
    }
    let mut v = Shapes(Vec::new());
    m.visit(&mut v);
    v.0
}
