//! `dispr-worker train`: trains a DISPR model on a dataset folder or S3 prefix.

use std::path::PathBuf;

use dispr_model::{ModelConfig, TrainOptions};
use dispr_proto::SamplerSpec;

use crate::train::TrainSettings;
use crate::train_data::Split;

/// Trains a DISPR model on a dataset with ground-truth volumes, holding out cells for
/// validation, writing checkpoints a worker can load, and resuming exactly with --resume.
///
/// The default configuration (shape-16) learns the correction to the mask extruded along z;
/// `--config dispr-64` trains the published network with the published objective. Real-cell
/// figures count only on cells a model did not train on: `--folds 5 --fold K` holds out fold K
/// (stratified by class) and `dispr-worker evaluate` scores the same fold. `--extra-dataset`
/// mixes another dataset (e.g. thousands of synthetic cells) into training, half of each batch
/// from each part; `--init` fine-tunes a trained checkpoint.

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset folder, file:// URI or s3://bucket/prefix (image/, mask/, obj/ as in DESIGN.md).
    #[arg(long, env = "DISPR_TRAIN_DATASET")]
    dataset: String,
    /// Output folder: checkpoints (model-step*.mpk + .json, latest.mpk) and state/ for --resume.
    #[arg(long)]
    out: PathBuf,
    /// Model configuration: shape-16 (the CPU default: corrects the extruded mask at 16^3),
    /// shape-32 (the same at 32^3, about 9x the cost of a step), dispr-64 (as published),
    /// dispr-64-ref (the reference script's larger network), small (the old CPU demo network),
    /// tiny, tiny-prior (tests).
    #[arg(long, default_value = dispr_model::config::DEFAULT_CONFIG)]
    config: String,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Peak AdamW learning rate (no weight decay).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = 0)]
    warmup_steps: u64,
    /// Cosine-decay the learning rate to 5% of --lr by this step (0: constant).
    #[arg(long, default_value_t = 0)]
    decay_steps: u64,
    /// Cap each parameter's gradient norm (0: no clipping).
    #[arg(long, default_value_t = 0.0)]
    grad_clip: f32,
    /// Random in-plane rotations/reflections and z flips of each training cell.
    #[arg(long)]
    augment: bool,
    /// EMA decay per step ramps up as min(decay, (1+n)/(10+n)).
    #[arg(long)]
    ema_warmup: bool,
    /// Another dataset whose every cell with obj/ joins training (repeatable); every dataset
    /// makes an equal share of each batch, whatever its size.
    #[arg(long = "extra-dataset")]
    extra_datasets: Vec<String>,
    /// Start from this checkpoint's weights (.mpk with its .json beside it).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Hold out one fold of a stratified k-fold split instead of --val-cells random cells.
    #[arg(long, requires = "fold")]
    folds: Option<usize>,
    /// The fold to hold out (0-based), with --folds.
    #[arg(long, requires = "folds")]
    fold: Option<usize>,
    /// Train until this many steps (a resumed run continues up to it).
    #[arg(long, default_value_t = 10_000)]
    steps: u64,
    /// Write a checkpoint every N steps (and at the last step).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: u64,
    /// Log the loss every N steps.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    log_every: u64,
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
    let split = match (args.folds, args.fold) {
        (Some(folds), Some(fold)) => Split::Fold { fold, folds },
        _ => Split::Random { val_cells: args.val_cells, seed: args.seed },
    };
    let settings = TrainSettings {
        dataset: args.dataset,
        out: args.out,
        config,
        options: TrainOptions {
            ema_warmup: args.ema_warmup,
            warmup_steps: args.warmup_steps,
            decay_steps: args.decay_steps,
            grad_clip: args.grad_clip,
            augment: args.augment,
            ..TrainOptions::plain(args.lr, args.batch_size, args.ema_decay, args.seed)
        },
        steps: args.steps,
        checkpoint_every: args.checkpoint_every,
        log_every: args.log_every,
        validate_every: args.validate_every,
        split,
        extra_datasets: args.extra_datasets,
        init: args.init,
        val_sampler: args.val_sampler,
        val_samples: args.val_samples,
        resume: args.resume,
        note: args.note,
    };
    match crate::train::run(&settings)? {
        Some(v) => println!(
            "done: step {}, validation mean IoU {:.4} (floor {:.4} on the same cells; {} cells, {})",
            v.step,
            v.mean_iou,
            v.floor_iou.unwrap_or(f64::NAN),
            v.cells,
            v.sampler
        ),
        None => println!("done"),
    }
    Ok(())
}
