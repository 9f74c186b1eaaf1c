//! The per-cell work around the sampler, as pure functions over `dispr_shape`: check the inputs,
//! then turn the sampled volumes into the files of the output layout (volume TIFFs and the
//! features record). No I/O here, so the pipeline decides where and when it runs (on a blocking
//! thread).

use crate::volume_sampler::{CellInput, SIDE, Volume};
use dispr_proto::records::{FeatureMap, aggregate};
use dispr_proto::{CellFeatures, CellId, RunId, SCHEMA_VERSION, SampleFeatures, VolumeFormat, keys};
use dispr_shape::dataset::{CellBytes, DatasetCell, Geometry, Label, decode_cell};
use dispr_shape::features::{FeatureError, features_2d, features_3d};
use dispr_shape::reconstruction::{reconstruction, truth_mask};
use dispr_shape::tiff_io::{
    TiffError, encode_volume_f32, encode_volume_u8, encode_volume_unit_u8, read_volume_u8,
};
use dispr_shape::{otsu, volume};

const DIMS: [usize; 3] = [SIDE, SIDE, SIDE];

/// Why a cell cannot be sampled. Each is permanent: the same files fail the same way.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Unreadable, damaged or wrongly sized; the TIFF error names the file and what to do.
    // (`error`, not `source`: the message already holds it, and an error chain would repeat it.)
    #[error("cell {cell}: {error}")]
    File { cell: CellId, error: TiffError },
    #[error(
        "cell {cell}: the mask {key} is empty: no pixel is at or above {threshold} of 255 (its largest value is \
         {max}), and the cell is where the mask is at least {threshold}; segment the cell again (255 inside) or \
         drop it from the dataset",
        threshold = dispr_shape::features::MASK_THRESHOLD
    )]
    EmptyMask { cell: CellId, key: String, max: u8 },
    /// A mask of 0 and 1 (a boolean array saved as uint8): the commonest empty mask by far.
    #[error(
        "cell {cell}: the mask {key} holds only 0 and 1, but a mask marks the cell with 255 (a pixel belongs to the \
         cell from {threshold} up); multiply it by 255 (for example `mask * 255` in numpy, or Process > Math > \
         Multiply in Fiji) and save it again as 8-bit",
        threshold = dispr_shape::features::MASK_THRESHOLD
    )]
    BinaryMask { cell: CellId, key: String },
    #[error("cell {cell}: 2D features of {key}: {error}")]
    Features2d { cell: CellId, key: String, error: FeatureError },
}

/// Why a cell's ground truth (`obj/<cell>.tif`, optional) is not used: the cell is still sampled
/// and measured, only its reconstruction metrics are left out. `problem` ends with what to do.
pub fn truth_unusable(cell: &CellId, problem: impl std::fmt::Display) -> String {
    format!(
        "cell {cell}: ground truth {key} not used (the cell is sampled, without reconstruction scores): {problem}",
        key = keys::dataset_obj(cell)
    )
}

/// A cell ready to sample: checked inputs, 2D features, and the ground truth if any.
#[derive(Debug, Clone)]
pub struct Checked {
    pub input: CellInput,
    pub label: Label,
    pub features_2d: FeatureMap,
    /// Binary ground truth from `obj/<cell>.tif`.
    pub truth: Option<Vec<bool>>,
    /// Why `obj/<cell>.tif` exists but is not used (it cannot be read, has the wrong shape or is
    /// empty); it goes into the features record. The cell is sampled all the same.
    pub truth_skipped: Option<String>,
}

/// Decodes a cell's files, checks them and computes their 2D features. A bad image or mask fails
/// the cell; a bad ground truth only leaves it out ([`Checked::truth_skipped`]).
pub fn check_inputs(cell: &CellId, label: Label, files: &CellBytes) -> Result<Checked, InputError> {
    let entry = DatasetCell { id: cell.clone(), label, has_obj: false };
    let inputs = CellBytes { obj: None, ..files.clone() };
    let data = decode_cell(&entry, &inputs, Geometry::DISPR64)
        .map_err(|error| InputError::File { cell: cell.clone(), error })?;
    let max = data.mask.data.iter().copied().max().unwrap_or(0);
    if max < dispr_shape::features::MASK_THRESHOLD {
        let key = keys::dataset_mask(cell);
        return Err(if max == 1 {
            InputError::BinaryMask { cell: cell.clone(), key }
        } else {
            InputError::EmptyMask { cell: cell.clone(), key, max }
        });
    }
    let features_2d = features_2d(&data.image.data, &data.mask.data, SIDE, SIDE).map_err(|error| {
        InputError::Features2d { cell: cell.clone(), key: keys::dataset_mask(cell), error }
    })?;
    let (truth, truth_skipped) = match files.obj.as_ref().map(|bytes| ground_truth(cell, bytes)) {
        Some(Ok(truth)) => (Some(truth), None),
        Some(Err(why)) => (None, Some(why)),
        None => (None, None),
    };
    Ok(Checked {
        input: CellInput { cell: cell.clone(), image: data.image.data, mask: data.mask.data },
        label: data.label,
        features_2d,
        truth,
        truth_skipped,
    })
}

/// The binary ground truth of `obj/<cell>.tif`, or why it cannot be used.
fn ground_truth(cell: &CellId, bytes: &[u8]) -> Result<Vec<bool>, String> {
    let volume = read_volume_u8(bytes, &keys::dataset_obj(cell), "obj volume", Geometry::DISPR64.obj)
        .map_err(|e| truth_unusable(cell, e))?;
    let truth = truth_mask(&volume.data);
    if !truth.iter().any(|&v| v) {
        let threshold = dispr_shape::reconstruction::TRUTH_THRESHOLD;
        let problem = if volume.data.iter().copied().max() == Some(1) {
            format!(
                "it holds only 0 and 1, but the cell is where it is above {threshold}: multiply it by 255"
            )
        } else {
            format!("it has no voxel above {threshold} of 255; fix it or remove it")
        };
        return Err(truth_unusable(cell, problem));
    }
    Ok(truth)
}

/// Why a cell's outputs could not be made from its volumes.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The sample has no foreground after Otsu: nothing to measure. Deterministic for the seed,
    /// so the cell fails for good.
    #[error(
        "cell {cell}: sample {k} (seed {seed}) is empty after Otsu thresholding, so it has no 3D features"
    )]
    EmptySample { cell: CellId, k: u32, seed: u64, source: FeatureError },
    /// The sampler returned something that is not a volume of the expected size.
    #[error("cell {cell}: sample {k}: {source}")]
    Features { cell: CellId, k: u32, source: FeatureError },
    #[error("cell {cell}: could not encode sample {k}: {source}")]
    Encode { cell: CellId, k: u32, source: TiffError },
    /// The probability or standard-deviation volume of the samples could not be encoded (boxed:
    /// the error names the volume beside the TIFF error, which would make every `OutputError`
    /// large).
    #[error("cell {cell}: {source}")]
    EncodeEnsemble { cell: CellId, source: Box<crate::uncertainty::EncodeError> },
}

/// What a cell writes: one TIFF per sample (in order of k), the ensemble's probability and
/// standard-deviation volumes (K >= 2), and the features record, written last.
pub struct CellOutputs {
    pub volume_tiffs: Vec<Vec<u8>>,
    /// `(key, TIFF)`, to be written after the samples and before the features record.
    pub ensemble_volumes: Vec<(String, Vec<u8>)>,
    pub features: CellFeatures,
}

/// Binarises the volumes with Otsu, computes their 3D features (and reconstruction metrics where
/// there is ground truth), encodes them in `format`, and adds the uncertainty of the ensemble
/// ([`crate::uncertainty`]) and the features record. The features come from the sampler's own
/// values whatever the format, so they do not depend on it.
pub fn outputs(
    run: &RunId,
    cell: &Checked,
    seeds: &[u64],
    volumes: Vec<Volume>,
    format: VolumeFormat,
) -> Result<CellOutputs, OutputError> {
    let id = &cell.input.cell;
    let mut volume_tiffs = Vec::with_capacity(volumes.len());
    let mut samples = Vec::with_capacity(volumes.len());
    // Kept for the ensemble's uncertainty, computed once all samples are in.
    let mut binaries = Vec::with_capacity(volumes.len());
    for (k, (data, &seed)) in volumes.into_iter().zip(seeds).enumerate() {
        let k = k as u32;
        let binary = otsu::binarise(&data);
        let features = features_3d(&binary, DIMS).map_err(|source| match source {
            FeatureError::EmptyShape { .. } => OutputError::EmptySample { cell: id.clone(), k, seed, source },
            source => OutputError::Features { cell: id.clone(), k, source },
        })?;
        let metrics = match &cell.truth {
            Some(truth) => {
                Some(reconstruction(&binary, truth, DIMS).map_err(|source| OutputError::Features {
                    cell: id.clone(),
                    k,
                    source,
                })?)
            }
            None => None,
        };
        volume_tiffs.push(encode_sample(data, &binary, format).map_err(|source| OutputError::Encode {
            cell: id.clone(),
            k,
            source,
        })?);
        samples.push(SampleFeatures { k, seed, features, metrics });
        binaries.push(binary);
    }
    let per_sample: Vec<FeatureMap> = samples.iter().map(|s| s.features.clone()).collect();
    let (mean_3d, std_3d) = aggregate(&per_sample);
    let ensemble = crate::uncertainty::outputs(run, id, &binaries, &mean_3d, &std_3d, format)
        .map_err(|source| OutputError::EncodeEnsemble { cell: id.clone(), source: Box::new(source) })?;
    let mean_metrics = cell.truth.as_ref().map(|_| {
        let m: Vec<FeatureMap> = samples.iter().filter_map(|s| s.metrics.clone()).collect();
        aggregate(&m).0
    });
    let features = CellFeatures {
        schema_version: SCHEMA_VERSION,
        run_id: run.clone(),
        cell: id.clone(),
        class: Some(cell.label.class.clone()),
        subclass: cell.label.subclass.clone(),
        features_2d: cell.features_2d.clone(),
        samples,
        mean_3d,
        std_3d,
        mean_metrics,
        truth_skipped: cell.truth_skipped.clone(),
        uncertainty: ensemble.record,
    };
    Ok(CellOutputs { volume_tiffs, ensemble_volumes: ensemble.volumes, features })
}

/// One sample's TIFF in `format`: its values (float32 or quantised to uint8) or its binarised
/// shape as 0 and 255.
pub fn encode_sample(data: Volume, binary: &[bool], format: VolumeFormat) -> Result<Vec<u8>, TiffError> {
    match format {
        VolumeFormat::Float32 => encode_volume_f32(&volume::Volume { dims: DIMS, data }),
        VolumeFormat::Uint8 => encode_volume_unit_u8(&volume::Volume { dims: DIMS, data }),
        VolumeFormat::Mask => {
            let data = binary.iter().map(|&inside| if inside { 255 } else { 0 }).collect();
            encode_volume_u8(&volume::Volume { dims: DIMS, data })
        }
    }
}
