//! A cell's ensemble outputs: from its K binarised samples, the voxel-wise probability and
//! standard-deviation volumes (ImageJ stacks beside the samples: probability in uint8, which
//! holds its K + 1 values exactly, and the standard deviation in the run's volume format) and the scalar
//! uncertainties of its features record (`dispr_shape::uncertainty` defines them). Pure, like
//! [`crate::cell`]: the pipeline writes the volumes, before the features record, so that a done
//! cell always has them.

use crate::volume_sampler::SIDE;
use dispr_proto::records::{FeatureMap, Uncertainty};
use dispr_proto::{CellId, RunId, VolumeFormat, keys};
use dispr_shape::tiff_io::{TiffError, encode_volume_f32, encode_volume_unit_u8};
use dispr_shape::uncertainty::{ensemble, record};
use dispr_shape::volume::Volume;

/// What the ensemble of a cell adds to its outputs. Empty for K = 1: one sample says nothing of
/// the model's certainty, so no volume is written and the record says `null` (unknown).
#[derive(Debug, Default)]
pub struct EnsembleOutputs {
    /// The scalars of the features record; `None` for K = 1.
    pub record: Option<Uncertainty>,
    /// `(key, TIFF)`: the probability volume, then the standard-deviation volume.
    pub volumes: Vec<(String, Vec<u8>)>,
}

/// The volume that could not be encoded, and why.
#[derive(Debug, thiserror::Error)]
#[error("could not encode its {what} volume: {source}")]
pub struct EncodeError {
    pub what: &'static str,
    pub source: TiffError,
}

/// The ensemble outputs of `cell` from its binarised samples (each `SIDE^3`, in order of k) and
/// their aggregated 3D features. `probability.tif` is uint8, `round(255 j / K)` where j of the K
/// samples hold the voxel: distinct for every j while K <= 255, so `j = round(v K / 255)`.
/// `std.tif` is float32 in a float32 run and quantised to uint8 (`round(255 std)`) otherwise.
/// Compute and encoding: call it off the async runtime.
pub fn outputs(
    run: &RunId,
    cell: &CellId,
    binary: &[Vec<bool>],
    mean_3d: &FeatureMap,
    std_3d: &FeatureMap,
    format: VolumeFormat,
) -> Result<EnsembleOutputs, EncodeError> {
    let samples: Vec<&[bool]> = binary.iter().map(Vec::as_slice).collect();
    let Some(e) = ensemble(&samples) else { return Ok(EnsembleOutputs::default()) };
    let uncertainty = record(&e, samples.len() as u32, mean_3d, std_3d);
    let dims = [SIDE, SIDE, SIDE];
    let encode = |what: &'static str, data: Vec<f32>, format: VolumeFormat| {
        let volume = Volume { dims, data };
        match format {
            VolumeFormat::Float32 => encode_volume_f32(&volume),
            VolumeFormat::Uint8 | VolumeFormat::Mask => encode_volume_unit_u8(&volume),
        }
        .map_err(|source| EncodeError { what, source })
    };
    let volumes = vec![
        (keys::probability_volume(run, cell), encode("probability", e.probability, VolumeFormat::Uint8)?),
        (keys::std_volume(run, cell), encode("standard-deviation", e.std, format)?),
    ];
    Ok(EnsembleOutputs { record: Some(uncertainty), volumes })
}
