//! `dispr-worker evaluate`: how well a checkpoint reconstructs held-out cells with each sampler,
//! and what each costs, so an operator can pick the sampler of a run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use dispr_model::{DefaultBackend, ModelConfig, Predictor};
use dispr_proto::SamplerSpec;

/// Sample held-out cells of a dataset with a checkpoint, once per sampler, and print the mean IoU
/// of the Otsu-binarised samples against the true shapes (obj/) with the time per cell.
///
/// The held-out cells are those `train` holds out with the same --cells and --seed, so a
/// checkpoint is scored on cells it never saw when both use the defaults. Every sampler starts
/// from the same noise (seeded by the cell ids), so the rows differ by the sampler alone.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Checkpoint record (.mpk) with its .json sidecar beside it (as written by `train`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset folder, file:// URI or s3://bucket/prefix with obj/ volumes (the true shapes).
    #[arg(long)]
    dataset: String,
    /// Samplers to compare, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ddpm-1000,ddim-50,ddim-25,ddim-10,dpmpp2m-25,dpmpp2m-10"
    )]
    samplers: Vec<SamplerSpec>,
    /// Held-out cells to sample (the split of `train --val-cells`).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    cells: u64,
    /// Volumes per cell.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    samples: u32,
    /// Seed of the held-out split (train's --seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init(crate::logging::LogFormat::Human);
    if let Some(null) = args.samplers.iter().find(|s| matches!(s, SamplerSpec::Null)) {
        anyhow::bail!("--samplers: {null} does not use the model; list ddpm-N, ddim-N or dpmpp2m-N samplers");
    }
    let device = Default::default();
    let predictor = Predictor::<DefaultBackend>::load(&args.checkpoint, &device)
        .with_context(|| format!("loading checkpoint {}", args.checkpoint.display()))?;
    let config: ModelConfig = predictor.config().clone();
    let step = predictor.sidecar().map(|s| s.step).unwrap_or(0);
    let data = crate::train_data::load(&args.dataset, &config, args.cells as usize, args.seed)?;
    if data.val.is_empty() {
        anyhow::bail!("{} has no cells with an obj/ volume to score against", args.dataset);
    }
    println!(
        "checkpoint {} ({}, step {step}), {} held-out cells x {} samples",
        args.checkpoint.display(),
        config.name,
        data.val.len(),
        args.samples
    );
    println!("| sampler | model evaluations | s per cell | mean IoU |");
    println!("|---|---|---|---|");
    for sampler in &args.samplers {
        let started = Instant::now();
        let iou = crate::train::mean_iou(&predictor, &data.val, sampler, args.samples)?;
        let per_cell = started.elapsed().as_secs_f64() / data.val.len() as f64;
        println!("| {sampler} | {} | {per_cell:.2} | {iou:.4} |", sampler.steps());
    }
    Ok(())
}
