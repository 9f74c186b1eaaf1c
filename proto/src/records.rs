//! Records in the object store: the run manifest, per-cell features (the done-marker) and
//! per-cell failures.

use crate::ids::{CellId, RunId};
use crate::messages::{ModelRef, SamplerSpec};
use crate::version::{self, ProtoError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Named feature values. Values are finite: a feature that cannot be defined for a shape is
/// documented with the value it takes instead (never NaN).
pub type FeatureMap = BTreeMap<String, f64>;

/// `runs/<run>/manifest.json`: everything that determines the run's outputs. Two submissions
/// with the same run id must have equal manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub run_id: RunId,
    pub dataset_uri: String,
    pub output_uri: String,
    /// `None` only with the null sampler.
    pub model: Option<ModelRef>,
    pub sampler: SamplerSpec,
    pub samples_per_cell: u32,
    pub seed: u64,
    /// The release that made the run (`CARGO_PKG_VERSION` of the coordinator).
    pub code_version: String,
    /// What the dataset held when the run was submitted: the hex sha256 of its sorted cell ids,
    /// one per line. A resume whose dataset location now holds other cells is refused, whatever
    /// its name. Absent in manifests of older releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    /// How the run's volumes are stored. Absent in manifests of older releases, whose volumes
    /// are float32.
    #[serde(default)]
    pub volumes: crate::VolumeFormat,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        version::encode_pretty(self)
    }
    /// Decodes a manifest and checks that its sampler can run and its samples per cell are within
    /// what a job may ask for, as [`crate::Job::decode`] does for each job made from it.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        const WHAT: &str = "run manifest";
        let manifest: Manifest = version::decode(WHAT, bytes)?;
        let invalid = |problem: String| ProtoError::Invalid { what: WHAT, problem };
        manifest.sampler.check().map_err(invalid)?;
        if manifest.samples_per_cell > crate::messages::MAX_SAMPLES_PER_CELL {
            return Err(invalid(format!(
                "{} samples per cell is more than a job may ask for",
                manifest.samples_per_cell
            )));
        }
        Ok(manifest)
    }
}

/// Features of one sample of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleFeatures {
    pub k: u32,
    pub seed: u64,
    /// 3D features of the binarised sample.
    pub features: FeatureMap,
    /// Reconstruction metrics against the ground truth, when the dataset has `obj/<cell>.tif`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<FeatureMap>,
}

/// `runs/<run>/features/<cell>.json`, written last: its existence means the cell is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellFeatures {
    pub schema_version: u32,
    pub run_id: RunId,
    pub cell: CellId,
    /// Class and sub-class from the dataset (labels.csv or the file-name prefix).
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub subclass: Option<String>,
    /// 2D features of the input image and mask.
    pub features_2d: FeatureMap,
    pub samples: Vec<SampleFeatures>,
    /// Mean and (population) standard deviation of each 3D feature over the samples.
    pub mean_3d: FeatureMap,
    pub std_3d: FeatureMap,
    /// Mean reconstruction metrics over the samples, when ground truth exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_metrics: Option<FeatureMap>,
    /// Why the cell's ground truth (`obj/<cell>.tif`) exists but was not used, so that it has no
    /// `mean_metrics`: the cell was sampled and measured all the same. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth_skipped: Option<String>,
    /// How much the cell's samples disagree (docs/uncertainty.md). `null` where it is unknown: a
    /// cell sampled once, or a record of a release before it was measured (the field is absent
    /// there). Written even when null, so that a reader sees "unknown", never a missing zero.
    #[serde(default)]
    pub uncertainty: Option<Uncertainty>,
}

/// The scalar uncertainties of a cell's K >= 2 samples (`dispr_shape::uncertainty` defines them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Uncertainty {
    /// K, the samples they come from.
    pub samples: u32,
    /// Mean IoU over every pair of binarised samples: 1 when they agree.
    pub mean_pairwise_iou: f64,
    /// Voxels where the samples disagree (0 < probability < 1) over the mean sample volume.
    pub uncertain_fraction: f64,
    /// Mean binary entropy of the probability volume over all its voxels, in bits.
    pub mean_entropy: f64,
    /// Per 3D feature, population standard deviation over |mean| across the samples; a feature
    /// whose mean is 0 while it varies has none and is left out.
    pub feature_cv: FeatureMap,
}

impl Uncertainty {
    /// The headline uncertainty of a cell: 1 - mean pairwise IoU, the share of their shape on which
    /// two samples disagree (0: all samples identical; 1: no two overlap). Chosen before seeing
    /// any result for being in the units of the error it should predict (1 - IoU).
    pub fn disagreement(&self) -> f64 {
        1.0 - self.mean_pairwise_iou
    }
}

impl CellFeatures {
    pub fn encode(&self) -> Vec<u8> {
        version::encode_pretty(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        version::decode("cell features", bytes)
    }
}

/// `runs/<run>/failures/<cell>.json`: why a cell failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellFailure {
    pub schema_version: u32,
    pub run_id: RunId,
    pub cell: CellId,
    pub job_id: String,
    pub worker: String,
    /// One line for people: what was wrong and what to do.
    pub reason: String,
    /// The error and its causes, outermost first.
    pub error_chain: Vec<String>,
    pub at_ms: u64,
}

impl CellFailure {
    pub fn encode(&self) -> Vec<u8> {
        version::encode_pretty(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        version::decode("cell failure", bytes)
    }
}

/// `runs/<run>/jobs/<job>.json`: where and when a job ran (the last delivery that finished it),
/// for the run report's timeline. Bookkeeping, not an output: it differs between runs of the
/// same manifest, and nothing else reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub schema_version: u32,
    pub run_id: RunId,
    pub job_id: String,
    pub worker: String,
    pub cells: Vec<CellId>,
    pub cells_done: u32,
    pub cells_failed: u32,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub finished_ms: u64,
    /// Seconds the sampler computed (the rest is I/O and bookkeeping).
    pub compute_seconds: f64,
}

impl JobRecord {
    pub fn encode(&self) -> Vec<u8> {
        version::encode_pretty(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        version::decode("job record", bytes)
    }
}

/// `runs/<run>/handbacks/<job>.json`: a job that workers handed back to the queue because they
/// shut down before it finished (a drain that ran out of time), and how often. Hand-backs are not
/// failures and never count toward the delivery limit; this record lets `status` show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandBack {
    pub schema_version: u32,
    pub run_id: RunId,
    pub job_id: String,
    /// The worker that handed it back last.
    pub worker: String,
    /// Hand-backs so far (the job message's `dispr-handbacks` header).
    pub handbacks: u32,
    /// Milliseconds since the Unix epoch of the last hand-back.
    pub at_ms: u64,
}

impl HandBack {
    pub fn encode(&self) -> Vec<u8> {
        version::encode_pretty(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        version::decode("hand-back record", bytes)
    }
}

/// Mean and population standard deviation of each feature over samples; features missing from
/// some samples are averaged over the samples that have them.
pub fn aggregate(samples: &[FeatureMap]) -> (FeatureMap, FeatureMap) {
    let mut sums: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
    for s in samples {
        for (k, v) in s {
            let e = sums.entry(k.as_str()).or_insert((0.0, 0.0, 0));
            e.0 += v;
            e.1 += v * v;
            e.2 += 1;
        }
    }
    let mut mean = FeatureMap::new();
    let mut std = FeatureMap::new();
    for (k, (s, s2, n)) in sums {
        let m = s / n as f64;
        mean.insert(k.to_string(), m);
        std.insert(k.to_string(), (s2 / n as f64 - m * m).max(0.0).sqrt());
    }
    (mean, std)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SCHEMA_VERSION;

    #[test]
    fn manifest_round_trips_and_is_pretty() {
        let m = Manifest {
            schema_version: SCHEMA_VERSION,
            run_id: RunId::new("demo").unwrap(),
            dataset_uri: "./data".into(),
            output_uri: "./out".into(),
            model: None,
            sampler: SamplerSpec::Null,
            samples_per_cell: 5,
            seed: 1,
            code_version: "0.1.0".into(),
            dataset_digest: None,
            volumes: crate::VolumeFormat::Mask,
        };
        let bytes = m.encode();
        assert!(bytes.ends_with(b"}\n"));
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn uncertainty_is_null_when_unknown_and_absent_in_old_records() {
        let record = CellFeatures {
            schema_version: SCHEMA_VERSION,
            run_id: RunId::new("r").unwrap(),
            cell: CellId::new("a1").unwrap(),
            class: None,
            subclass: None,
            features_2d: FeatureMap::new(),
            samples: vec![],
            mean_3d: FeatureMap::new(),
            std_3d: FeatureMap::new(),
            mean_metrics: None,
            truth_skipped: None,
            uncertainty: None,
        };
        let json: serde_json::Value = serde_json::from_slice(&record.encode()).unwrap();
        assert!(json["uncertainty"].is_null() && json.as_object().unwrap().contains_key("uncertainty"));
        // A record of an earlier release has no such field: unknown, not an error.
        let mut old = json;
        old.as_object_mut().unwrap().remove("uncertainty");
        let back = CellFeatures::decode(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(back, record);
        let known = Uncertainty {
            samples: 2,
            mean_pairwise_iou: 0.75,
            uncertain_fraction: 0.5,
            mean_entropy: 0.1,
            feature_cv: FeatureMap::from([("volume".to_string(), 0.2)]),
        };
        assert_eq!(known.disagreement(), 0.25);
        let with = CellFeatures { uncertainty: Some(known), ..record };
        assert_eq!(CellFeatures::decode(&with.encode()).unwrap(), with);
    }

    #[test]
    fn aggregate_gives_mean_and_population_std() {
        let a = FeatureMap::from([("volume".to_string(), 1.0)]);
        let b = FeatureMap::from([("volume".to_string(), 3.0)]);
        let (mean, std) = aggregate(&[a, b]);
        assert_eq!(mean["volume"], 2.0);
        assert_eq!(std["volume"], 1.0);
    }
}
