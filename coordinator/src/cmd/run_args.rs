//! Flags shared by the subcommands: what a new run is and how its jobs are planned (`submit`,
//! `local`), and which existing run to look at (`status`, `watch`, `report`).

use crate::job_sizing::{self, Cost, DEFAULT_CONSUMER_TIMEOUT_SECS};
use crate::manifest::RunSpec;
use anyhow::Context;
use dispr_proto::{RunId, SamplerSpec, VolumeFormat};
use dispr_store::Store;
use std::time::Duration;

/// An existing run: where it writes and its id.
#[derive(Debug, Clone, clap::Args)]
pub struct RunRef {
    /// The run's output location, as given to submit (s3://bucket/prefix, file:///path or a
    /// folder): its records are under runs/<run id>/ there.
    #[arg(long, env = "DISPR_OUTPUT")]
    pub output: String,
    /// The run's id.
    #[arg(long, env = "DISPR_RUN_ID")]
    pub run_id: RunId,
}

impl RunRef {
    /// The store at the run's output location.
    pub fn output_store(&self) -> anyhow::Result<Store> {
        Store::open(&self.output).with_context(|| format!("opening the output location {:?}", self.output))
    }
}

/// What the run is: everything its manifest records.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The dataset: a folder, file:///path or s3://bucket/prefix holding image/<cell>.tif and
    /// mask/<cell>.tif (DESIGN.md, "Data").
    #[arg(long, env = "DISPR_DATASET")]
    pub dataset: String,
    /// Where the run writes: its outputs go under <output>/runs/<run id>/.
    #[arg(long, env = "DISPR_OUTPUT")]
    pub output: String,
    /// The model checkpoint record (written by `dispr-worker train`); its sha256 goes into the
    /// manifest and every worker checks it. Not used with `--sampler null`.
    #[arg(long, env = "DISPR_MODEL")]
    pub model: Option<String>,
    /// ddpm-<steps> (1000 = as published), ddim-<steps>[-eta<e>], dpmpp2m-<steps>, or null (no
    /// model: a deterministic shape at once, to test the pipeline).
    #[arg(long, env = "DISPR_SAMPLER", default_value = dispr_proto::DEFAULT_SAMPLER)]
    pub sampler: SamplerSpec,
    /// Volumes sampled per cell.
    #[arg(long, env = "DISPR_SAMPLES", default_value_t = 5)]
    pub samples: u32,
    /// Cells per job (the unit of delivery and retry).
    #[arg(long, env = "DISPR_CELLS_PER_JOB", default_value_t = 1)]
    pub cells_per_job: u32,
    /// Seed of the run: sample k of a cell is seeded from it, the cell id and k.
    #[arg(long, env = "DISPR_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Names the run (letters, digits, '.', '_', '-'); generated when absent. Submitting again
    /// with the same id resumes the run.
    #[arg(long, env = "DISPR_RUN_ID")]
    pub run_id: Option<RunId>,
    #[command(flatten)]
    pub volumes: VolumesArg,
}

/// `--volumes`, shared by `submit`, `local` and `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct VolumesArg {
    /// How the sampled volumes are stored, as deflate-compressed ImageJ TIFFs (Fiji and tifffile
    /// read them as they are): mask (the binarised shape the features are measured on, as 0 and
    /// 255; about 95 KB per cell at 3 samples, everything included), uint8 (the sampler's values
    /// quantised to within 0.5/255; about 250 KB) or float32 (its values as sampled; about 2 MB).
    /// The 3D features are the same whichever is chosen, and probability.tif is uint8 in all.
    /// Default for a new run: mask; a resumed run keeps its own. docs/volume-formats.md has the
    /// measurements.
    #[arg(long = "volumes", env = "DISPR_VOLUMES", value_name = "FORMAT")]
    pub format: Option<VolumeFormat>,
}

impl RunArgs {
    /// The run's spec, generating a run id when none was given.
    pub fn spec(&self) -> RunSpec {
        RunSpec {
            run_id: self.run_id.clone().unwrap_or_else(generated_run_id),
            dataset_uri: self.dataset.clone(),
            output_uri: self.output.clone(),
            model_uri: self.model.clone(),
            sampler: self.sampler.clone(),
            samples_per_cell: self.samples,
            seed: self.seed,
            volumes: self.volumes.format,
        }
    }
}

/// `run-<UTC date and time>-<4 hex>`: sortable, and unique enough for people submitting by hand.
fn generated_run_id() -> RunId {
    let now = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..4];
    // Only [0-9a-z-] characters: always a valid id.
    RunId::new(format!("run-{now}-{tag}")).unwrap_or_else(|_| unreachable!("generated ids are valid"))
}

/// Where the workers compute, for the default per-step time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    Gpu,
    Cpu,
}

/// How jobs are planned against RabbitMQ's consumer_timeout.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The broker's consumer_timeout in seconds (rabbitmq.conf `consumer_timeout`, in ms there;
    /// 30 minutes by default). A job must finish well within it or RabbitMQ redelivers it forever.
    #[arg(long, env = "DISPR_CONSUMER_TIMEOUT_SECS", default_value_t = DEFAULT_CONSUMER_TIMEOUT_SECS)]
    pub consumer_timeout_secs: u64,
    /// Measured seconds per model evaluation of one sample on the workers; the default depends on
    /// --device, for the published dispr-64 model: cpu 8.2 s (measured on 2 cores,
    /// scripts/bench-vs-pytorch.sh), gpu 0.2 s (assumed; scripts/gpu-check.sh measures it).
    #[arg(long, env = "DISPR_SECONDS_PER_STEP")]
    pub seconds_per_step: Option<f64>,
    /// What the workers compute on, for the default --seconds-per-step.
    #[arg(long, env = "DISPR_DEVICE", value_enum, default_value_t = Device::Gpu)]
    pub device: Device,
    /// Lower --cells-per-job as needed for jobs to fit within the consumer timeout, instead of
    /// refusing the plan.
    #[arg(long)]
    pub split: bool,
}

impl PlanArgs {
    /// Cells per job for `run` after planning against the consumer timeout.
    pub fn cells_per_job(&self, run: &RunArgs) -> anyhow::Result<u32> {
        let cost = Cost::new(&run.sampler, run.samples, self.seconds_per_step());
        let planned =
            job_sizing::cells_per_job(&cost, run.cells_per_job, self.consumer_timeout(), self.split)?;
        if planned != run.cells_per_job {
            eprintln!(
                "--split: {} cells per job instead of {}, so that a job (about {}) fits well within the broker's \
                 consumer_timeout of {}",
                planned,
                run.cells_per_job,
                job_sizing::human(cost.job_seconds(planned)),
                job_sizing::human(self.consumer_timeout().as_secs_f64())
            );
        }
        Ok(planned)
    }

    pub fn seconds_per_step(&self) -> f64 {
        self.seconds_per_step.unwrap_or(match self.device {
            Device::Gpu => job_sizing::DEFAULT_GPU_SECONDS_PER_STEP,
            Device::Cpu => job_sizing::DEFAULT_CPU_SECONDS_PER_STEP,
        })
    }

    pub fn consumer_timeout(&self) -> Duration {
        Duration::from_secs(self.consumer_timeout_secs)
    }
}
