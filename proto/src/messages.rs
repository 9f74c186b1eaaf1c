//! Messages on RabbitMQ: jobs on `dispr.jobs`, results and progress on `dispr.results.<run>` (the
//! queues themselves are in [`crate::queues`]).

use crate::ids::{CellId, RunId};
use crate::version::{self, ProtoError, SCHEMA_VERSION};
use crate::volume_format::VolumeFormat;
use serde::{Deserialize, Serialize};

/// The sampler runs use unless told otherwise: with the default `prior-x0` checkpoint the shapes
/// are closest to the true ones with few steps (model/checkpoints/README.md has the figures).
pub const DEFAULT_SAMPLER: &str = "ddim-2";

/// How volumes are sampled from the trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SamplerSpec {
    /// Ancestral DDPM over `steps` of the 1000-step schedule (1000 = as published).
    Ddpm { steps: u32 },
    /// DDIM on a respaced schedule; `eta` = 0 is deterministic given the initial noise.
    Ddim { steps: u32, eta: f64 },
    /// DPM-Solver++ (2M) on timesteps evenly spaced in log-SNR.
    DpmSolver2m { steps: u32 },
    /// No model: a deterministic shape at once, for orchestration tests and benchmarks.
    Null,
}

/// Most samples per cell a job may ask for (the published protocol draws 5): a job asking for
/// billions would make a worker allocate for them before failing.
pub const MAX_SAMPLES_PER_CELL: u32 = 1000;

/// Most cells one job may name.
pub const MAX_CELLS_PER_JOB: usize = 10_000;

impl SamplerSpec {
    /// Whether the sampler can run: 1 to 1000 steps (the schedule has 1000), a finite `eta` in
    /// 0..=1. Checked when a name is parsed and when a job is decoded.
    pub fn check(&self) -> Result<(), String> {
        if let SamplerSpec::Ddim { eta, .. } = self
            && !(0.0..=1.0).contains(eta)
        {
            return Err(format!("sampler {self}: eta must be between 0 and 1"));
        }
        match self.steps() {
            0 if *self == SamplerSpec::Null => Ok(()),
            1..=1000 => Ok(()),
            _ => Err(format!("sampler {self}: steps must be between 1 and 1000 (the schedule has 1000)")),
        }
    }

    /// Model evaluations per sample (0 for the null sampler).
    pub fn steps(&self) -> u32 {
        match self {
            SamplerSpec::Ddpm { steps }
            | SamplerSpec::Ddim { steps, .. }
            | SamplerSpec::DpmSolver2m { steps } => *steps,
            SamplerSpec::Null => 0,
        }
    }
}

impl std::fmt::Display for SamplerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SamplerSpec::Ddpm { steps } => write!(f, "ddpm-{steps}"),
            SamplerSpec::Ddim { steps, eta } if *eta == 0.0 => write!(f, "ddim-{steps}"),
            SamplerSpec::Ddim { steps, eta } => write!(f, "ddim-{steps}-eta{eta}"),
            SamplerSpec::DpmSolver2m { steps } => write!(f, "dpmpp2m-{steps}"),
            SamplerSpec::Null => f.write_str("null"),
        }
    }
}

impl std::str::FromStr for SamplerSpec {
    type Err = String;
    /// Parses the names [`Display`](std::fmt::Display) writes: `ddpm-1000`, `ddim-50`,
    /// `ddim-50-eta0.5`, `dpmpp2m-25`, `null`.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "unknown sampler {s:?}; use one of ddpm-<steps>, ddim-<steps>[-eta<e>], dpmpp2m-<steps>, null"
            )
        };
        if s == "null" {
            return Ok(SamplerSpec::Null);
        }
        let (name, rest) = s.split_once('-').ok_or_else(usage)?;
        let (steps, eta) = match rest.split_once("-eta") {
            Some((steps, eta)) => (steps, Some(eta.parse::<f64>().map_err(|_| usage())?)),
            None => (rest, None),
        };
        let steps: u32 = steps.parse().map_err(|_| usage())?;
        let spec = match (name, eta) {
            ("ddpm", None) => SamplerSpec::Ddpm { steps },
            ("ddim", eta) => SamplerSpec::Ddim { steps, eta: eta.unwrap_or(0.0) },
            ("dpmpp2m", None) => SamplerSpec::DpmSolver2m { steps },
            _ => return Err(usage()),
        };
        spec.check()?;
        Ok(spec)
    }
}

/// The model checkpoint a job uses: where it is, and the sha256 of its record and of its
/// sidecar, which the worker checks before using them (and caches the loaded model under).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// URI of the checkpoint record (`s3://...` or a path); its JSON sidecar sits beside it.
    pub uri: String,
    /// Hex sha256 of the record file.
    pub sha256: String,
    /// Hex sha256 of the sidecar file. The sidecar decides how the weights are used (the
    /// configuration, the height calibration), and one record can have several sidecars (a
    /// checkpoint calibrated again keeps its weights), so a run pins it too. Absent in jobs of
    /// runs submitted before it existed: their workers take the sidecar as they find it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_sha256: Option<String>,
}

/// One sampling job: a few cells of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub schema_version: u32,
    pub run_id: RunId,
    /// Unique within the run, e.g. `j00000042`.
    pub job_id: String,
    pub cells: Vec<CellId>,
    /// Where the inputs are (dataset layout of DESIGN.md).
    pub dataset_uri: String,
    /// The output prefix; the run writes under `<output_uri>/runs/<run_id>/`.
    pub output_uri: String,
    /// `None` only with the null sampler.
    pub model: Option<ModelRef>,
    pub sampler: SamplerSpec,
    pub samples_per_cell: u32,
    pub seed: u64,
    /// How the worker writes the volumes. Absent in jobs of older coordinators: float32.
    #[serde(default)]
    pub volumes: VolumeFormat,
}

impl Job {
    pub fn encode(&self) -> Vec<u8> {
        version::encode(self)
    }
    /// Decodes a job and checks what a worker would otherwise trust: the sampler can run, and
    /// the cells and samples it asks for are within [`MAX_CELLS_PER_JOB`] and
    /// [`MAX_SAMPLES_PER_CELL`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        const WHAT: &str = "job message";
        let job: Job = version::decode(WHAT, bytes)?;
        let invalid = |problem: String| ProtoError::Invalid { what: WHAT, problem };
        job.sampler.check().map_err(invalid)?;
        if job.samples_per_cell > MAX_SAMPLES_PER_CELL {
            return Err(invalid(format!(
                "it asks for {} samples per cell, more than the {MAX_SAMPLES_PER_CELL} a job may",
                job.samples_per_cell
            )));
        }
        if job.cells.is_empty() || job.cells.len() > MAX_CELLS_PER_JOB {
            return Err(invalid(format!(
                "it names {} cells; a job names 1 to {MAX_CELLS_PER_JOB}",
                job.cells.len()
            )));
        }
        Ok(job)
    }
}

/// A message on a run's results queue (`dispr.results.<run>`, through the `dispr.runs` exchange).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub schema_version: u32,
    pub run_id: RunId,
    pub job_id: String,
    /// The worker's name (pod or host name and a process id).
    pub worker: String,
    /// Milliseconds since the Unix epoch when the worker sent it.
    pub at_ms: u64,
    pub body: ResultBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResultBody {
    /// The worker took the job (sent once per delivery).
    Started { cells: u32 },
    /// Sampling progress of the job in hand, at most every few seconds.
    Progress { step: u32, steps: u32 },
    /// A cell's outputs are durable (its features file exists).
    CellDone { cell: CellId, seconds: f64 },
    /// A cell failed for good; `failures/<cell>.json` holds the details.
    CellFailed { cell: CellId, reason: String },
    /// The job is finished (every cell done or failed) and about to be acked.
    JobDone { started_ms: u64, compute_seconds: f64 },
    /// The worker shut down before the job finished and put a copy back on the jobs queue (its
    /// `handbacks`-th hand-back); another worker will run it. Not a failure.
    HandedBack { handbacks: u32 },
}

impl JobResult {
    pub fn new(
        run_id: RunId,
        job_id: impl Into<String>,
        worker: impl Into<String>,
        body: ResultBody,
    ) -> Self {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            schema_version: SCHEMA_VERSION,
            run_id,
            job_id: job_id.into(),
            worker: worker.into(),
            at_ms,
            body,
        }
    }
    pub fn encode(&self) -> Vec<u8> {
        version::encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        version::decode("result message", bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            schema_version: SCHEMA_VERSION,
            run_id: RunId::new("r1").unwrap(),
            job_id: "j00000001".into(),
            cells: vec![CellId::new("A_cell_clusters000604").unwrap()],
            dataset_uri: "s3://data/rbc".into(),
            output_uri: "s3://out/prefix".into(),
            model: Some(ModelRef {
                uri: "s3://models/small.mpk".into(),
                sha256: "ab".repeat(32),
                sidecar_sha256: Some("cd".repeat(32)),
            }),
            sampler: SamplerSpec::DpmSolver2m { steps: 25 },
            samples_per_cell: 5,
            seed: 42,
            volumes: VolumeFormat::Uint8,
        }
    }

    #[test]
    fn job_round_trips() {
        let j = job();
        assert_eq!(Job::decode(&j.encode()).unwrap(), j);
    }

    #[test]
    fn a_job_without_a_volume_format_is_float32() {
        let mut v: serde_json::Value = serde_json::from_slice(&job().encode()).unwrap();
        assert_eq!(v["volumes"], "uint8");
        v.as_object_mut().unwrap().remove("volumes");
        assert_eq!(Job::decode(&serde_json::to_vec(&v).unwrap()).unwrap().volumes, VolumeFormat::Float32);
    }

    #[test]
    fn result_round_trips() {
        let r = JobResult::new(
            RunId::new("r1").unwrap(),
            "j1",
            "w-1",
            ResultBody::CellFailed { cell: CellId::new("c1").unwrap(), reason: "empty mask".into() },
        );
        assert_eq!(JobResult::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn unknown_version_is_named() {
        let mut v: serde_json::Value = serde_json::from_slice(&job().encode()).unwrap();
        v["schema_version"] = 7.into();
        let err = Job::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, ProtoError::UnknownVersion { found: 7, .. }));
        assert!(err.to_string().contains("schema version 7"), "{err}");
    }

    #[test]
    fn not_json_and_bad_ids_are_refused() {
        assert!(matches!(Job::decode(b"hello"), Err(ProtoError::NotJson { .. })));
        assert!(matches!(Job::decode(b"{}"), Err(ProtoError::NoVersion { .. })));
        let mut v: serde_json::Value = serde_json::from_slice(&job().encode()).unwrap();
        v["cells"] = serde_json::json!(["../../etc/passwd"]);
        assert!(matches!(Job::decode(&serde_json::to_vec(&v).unwrap()), Err(ProtoError::Malformed { .. })));
    }

    #[test]
    fn sampler_names_round_trip() {
        for s in ["ddpm-1000", "ddim-50", "ddim-25-eta0.5", "dpmpp2m-10", "null"] {
            let spec: SamplerSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert!("ddim-0".parse::<SamplerSpec>().is_err());
        assert!("euler-10".parse::<SamplerSpec>().unwrap_err().contains("dpmpp2m"));
    }
}
