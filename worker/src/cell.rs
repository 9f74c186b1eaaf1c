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
use dispr_shape::tiff_io::{TiffError, encode_volume_f32, encode_volume_u8, encode_volume_unit_u8};
use dispr_shape::{otsu, volume};

const DIMS: [usize; 3] = [SIDE, SIDE, SIDE];

/// Why a cell cannot be sampled. Each is permanent: the same files fail the same way.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Unreadable, damaged or wrongly sized; the TIFF error names the file and what to do.
    #[error("cell {cell}: {source}")]
    File { cell: CellId, source: TiffError },
    #[error(
        "cell {cell}: the mask {key} is empty: no pixel is at or above {threshold} of 255 (its largest value is \
         {max}), and the cell is where the mask is at least {threshold}; segment the cell again (255 inside) or \
         drop it from the dataset",
        threshold = dispr_shape::features::MASK_THRESHOLD
    )]
    EmptyMask { cell: CellId, key: String, max: u8 },
    #[error("cell {cell}: 2D features of {key}: {source}")]
    Features2d { cell: CellId, key: String, source: FeatureError },
    #[error(
        "cell {cell}: the ground truth {key} has no voxel above {threshold} of 255; fix or remove it",
        threshold = dispr_shape::reconstruction::TRUTH_THRESHOLD
    )]
    EmptyTruth { cell: CellId, key: String },
}

/// A cell ready to sample: checked inputs, 2D features, and the ground truth if any.
#[derive(Debug, Clone)]
pub struct Checked {
    pub input: CellInput,
    pub label: Label,
    pub features_2d: FeatureMap,
    /// Binary ground truth from `obj/<cell>.tif`.
    pub truth: Option<Vec<bool>>,
}

/// Decodes a cell's files, checks them and computes their 2D features.
pub fn check_inputs(cell: &CellId, label: Label, files: &CellBytes) -> Result<Checked, InputError> {
    let entry = DatasetCell { id: cell.clone(), label, has_obj: files.obj.is_some() };
    let data = decode_cell(&entry, files, Geometry::DISPR64)
        .map_err(|source| InputError::File { cell: cell.clone(), source })?;
    let max = data.mask.data.iter().copied().max().unwrap_or(0);
    if max < dispr_shape::features::MASK_THRESHOLD {
        return Err(InputError::EmptyMask { cell: cell.clone(), key: keys::dataset_mask(cell), max });
    }
    let features_2d = features_2d(&data.image.data, &data.mask.data, SIDE, SIDE).map_err(|source| {
        InputError::Features2d { cell: cell.clone(), key: keys::dataset_mask(cell), source }
    })?;
    let truth = match data.obj {
        Some(obj) => {
            let t = truth_mask(&obj.data);
            if !t.iter().any(|&v| v) {
                return Err(InputError::EmptyTruth { cell: cell.clone(), key: keys::dataset_obj(cell) });
            }
            Some(t)
        }
        None => None,
    };
    Ok(Checked {
        input: CellInput { cell: cell.clone(), image: data.image.data, mask: data.mask.data },
        label: data.label,
        features_2d,
        truth,
    })
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
