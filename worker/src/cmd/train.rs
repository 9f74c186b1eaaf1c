//! `dispr-worker train`: trains a DISPR model on a dataset folder or S3 prefix.

use std::path::PathBuf;

use dispr_model::{ModelConfig, TrainOptions};
use dispr_proto::SamplerSpec;

use crate::train::TrainSettings;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset folder, file:// URI or s3://bucket/prefix (image/, mask/, obj/ as in DESIGN.md).
    #[arg(long, env = "DISPR_TRAIN_DATASET")]
    dataset: String,
    /// Output folder: checkpoints (model-step*.mpk + .json, latest.mpk) and state/ for --resume.
    #[arg(long)]
    out: PathBuf,
    /// Model configuration: dispr-64 (as published), small (CPU-sized, 32^3) or tiny (tests).
    #[arg(long, default_value = "small")]
    config: String,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// AdamW learning rate (no weight decay).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Train until this many steps (a resumed run continues up to it).
    #[arg(long, default_value_t = 10_000)]
    steps: u64,
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Validate every N steps (0 = only never).
    #[arg(long, default_value_t = 500)]
    validate_every: u64,
    /// Held-out cells for validation.
    #[arg(long, default_value_t = 16)]
    val_cells: usize,
    /// Sampler for validation.
    #[arg(long, default_value = "ddim-25")]
    val_sampler: SamplerSpec,
    /// Samples per held-out cell.
    #[arg(long, default_value_t = 1)]
    val_samples: u32,
    /// EMA decay per step: 0.9999 as published; a short run needs less (e.g. 0.995), or the
    /// averaged weights stay close to the initial ones.
    #[arg(long, default_value_t = 0.9999)]
    ema_decay: f64,
    /// Seed of the initial weights, the held-out split, batches and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue the run in --out (exactly: weights, optimiser, EMA, step, random stream).
    #[arg(long)]
    resume: bool,
    /// Log line format on stderr.
    #[arg(long, env = "DISPR_LOG_FORMAT", value_enum, default_value = "human")]
    log_format: crate::logging::LogFormat,
    /// Text stored in each checkpoint's sidecar (what it is, how it was made).
    #[arg(long, default_value = "")]
    note: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init(args.log_format);
    let config = ModelConfig::named(&args.config)?;
    if args.batch_size == 0 || args.steps == 0 || args.checkpoint_every == 0 {
        anyhow::bail!("--batch-size, --steps and --checkpoint-every must be at least 1");
    }
    if !(0.0..1.0).contains(&args.ema_decay) || args.lr <= 0.0 {
        anyhow::bail!("--ema-decay must be in [0, 1) and --lr positive");
    }
    if matches!(args.val_sampler, SamplerSpec::Null) {
        anyhow::bail!("--val-sampler null does not use the model; use e.g. ddim-25");
    }
    let settings = TrainSettings {
        dataset: args.dataset,
        out: args.out,
        config,
        options: TrainOptions {
            lr: args.lr,
            batch_size: args.batch_size,
            ema_decay: args.ema_decay,
            seed: args.seed,
        },
        steps: args.steps,
        checkpoint_every: args.checkpoint_every,
        validate_every: args.validate_every,
        val_cells: args.val_cells,
        val_sampler: args.val_sampler,
        val_samples: args.val_samples,
        resume: args.resume,
        note: args.note,
    };
    match crate::train::run(&settings)? {
        Some(v) => println!(
            "done: step {}, validation mean IoU {:.4} ({} cells, {})",
            v.step, v.mean_iou, v.cells, v.sampler
        ),
        None => println!("done"),
    }
    Ok(())
}
