//! `dispr-worker evaluate`: how well a checkpoint reconstructs held-out cells with each sampler,
//! beside the naive floor on the same cells, and what each sampler costs, so an operator can
//! pick the sampler of a run and a biologist can see whether the model beats doing nothing.

use std::path::PathBuf;

use anyhow::Context;
use dispr_model::{DefaultBackend, Predictor};
use dispr_proto::SamplerSpec;

use crate::scoring::{CellScore, by_class};
use crate::train_data::Split;

/// Sample held-out cells of a dataset with a checkpoint, once per sampler, and print per class
/// the mean IoU of single samples and of the consensus of the K samples against the true shapes
/// (obj > 0), the floor's IoU (the mask extruded along z) on the same cells, the diversity of the
/// samples (mean pairwise IoU, coefficient of variation of their volumes) and seconds per sample.
///
/// The held-out cells are those `train` holds out with the same split: --cells and --seed
/// (random), or --folds with one --checkpoint per fold (checkpoint K scores fold K; every
/// cell is then scored by the model that did not train on it); --all-cells scores every cell,
/// for a checkpoint that never saw the dataset.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Checkpoint record (.mpk) with its .json sidecar beside it (as written by `train`).
    /// With --folds, give one per fold, in fold order.
    #[arg(long, required = true)]
    checkpoint: Vec<PathBuf>,
    /// Dataset folder, file:// URI or s3://bucket/prefix with obj/ volumes (the true shapes).
    #[arg(long)]
    dataset: String,
    /// Samplers to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "ddim-2,ddim-4,ddim-8,dpmpp2m-8")]
    samplers: Vec<SamplerSpec>,
    /// Held-out cells to sample (the split of `train --val-cells`).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    cells: u64,
    /// Seed of the held-out split (train's --seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Score a k-fold split: every fold's cells with that fold's --checkpoint.
    #[arg(long, conflicts_with = "all_cells")]
    folds: Option<usize>,
    /// Score every cell with ground truth (for a checkpoint that never trained on this dataset,
    /// e.g. the default model on real cells).
    #[arg(long)]
    all_cells: bool,
    /// Volumes per cell (K): the consensus and the diversity need at least 2.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    samples: u32,
    /// Also write every cell's scores (JSON lines) to this file.
    #[arg(long)]
    cell_scores: Option<PathBuf>,
    /// Score the bare network: sample without the checkpoint's height calibration (see
    /// `dispr-worker calibrate`), to see what the calibration adds.
    #[arg(long)]
    without_z_calibration: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init(crate::logging::LogFormat::Human);
    if let Some(null) = args.samplers.iter().find(|s| matches!(s, SamplerSpec::Null)) {
        anyhow::bail!("--samplers: {null} does not use the model; list ddpm-N, ddim-N or dpmpp2m-N samplers");
    }
    let splits: Vec<Split> = match args.folds {
        Some(folds) if folds != args.checkpoint.len() => anyhow::bail!(
            "--folds {folds} needs one --checkpoint per fold, in fold order; {} given",
            args.checkpoint.len()
        ),
        Some(folds) => (0..folds).map(|fold| Split::Fold { fold, folds }).collect(),
        None if args.checkpoint.len() > 1 => {
            anyhow::bail!("several --checkpoint values need --folds (one checkpoint per fold)")
        }
        None if args.all_cells => vec![Split::All],
        None => vec![Split::Random { val_cells: args.cells as usize, seed: args.seed }],
    };
    let device = Default::default();
    let mut per_sampler: Vec<(Vec<CellScore>, f64)> =
        args.samplers.iter().map(|_| (Vec::new(), 0.0)).collect();
    for (path, split) in args.checkpoint.iter().zip(&splits) {
        let mut predictor = Predictor::<DefaultBackend>::load(path, &device)
            .with_context(|| format!("loading checkpoint {}", path.display()))?;
        if args.without_z_calibration {
            predictor = predictor.with_z_calibration(None);
        }
        let config = predictor.config().clone();
        let step = predictor.sidecar().map(|s| s.step).unwrap_or(0);
        let data = crate::train_data::load(&args.dataset, &config, *split, &[])?;
        if data.val.is_empty() {
            anyhow::bail!("{}: no held-out cells with an obj/ volume to score against", args.dataset);
        }
        println!(
            "checkpoint {} ({}, objective {}, step {step}): {} held-out cells x {} samples",
            path.display(),
            config.name,
            config.objective.name(),
            data.val.len(),
            args.samples
        );
        if args.without_z_calibration {
            println!("  without its height calibration (--without-z-calibration): the bare network's shapes");
        } else if let Some(cal) = predictor.z_calibration() {
            println!(
                "  with its height calibration (fitted on {} cells with {}): every shape is stretched along z by its cell's factor",
                cal.cells, cal.sampler
            );
        }
        for (sampler, (cells, seconds)) in args.samplers.iter().zip(per_sampler.iter_mut()) {
            let scores = crate::scoring::score(&predictor, &data.val, sampler, args.samples)?;
            *seconds += scores.seconds_per_sample * scores.cells.len() as f64;
            cells.extend(scores.cells);
        }
    }
    println!(
        "\nIoU against obj > 0 at 64^3 (Otsu on x / max); floor = the mask extruded along z to 0.75 x its equivalent radius."
    );
    println!(
        "| sampler | class | cells | model IoU (1 sample) | consensus of {k} | floor | model - floor | pairwise IoU of samples | volume CV | s per sample |",
        k = args.samples
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    for (sampler, (cells, seconds)) in args.samplers.iter().zip(&per_sampler) {
        let per_sample = seconds / cells.len().max(1) as f64;
        for (class, s) in by_class(cells) {
            println!(
                "| {sampler} | {class} | {} | {:.3} | {:.3} | {:.3} | {:+.3} | {} | {} | {per_sample:.3} |",
                s.cells,
                s.sample_iou,
                s.consensus_iou,
                s.floor_iou,
                s.sample_iou - s.floor_iou,
                opt(s.pairwise_iou),
                opt(s.volume_cv),
            );
        }
    }
    if let Some(path) = &args.cell_scores {
        let mut lines = String::new();
        for (sampler, (cells, _)) in args.samplers.iter().zip(&per_sampler) {
            for c in cells {
                let row = serde_json::json!({
                    "sampler": sampler.to_string(), "cell": c.id, "class": c.class,
                    "sample_iou": c.sample_iou, "consensus_iou": c.consensus_iou, "floor_iou": c.floor_iou,
                    "pairwise_iou": c.pairwise_iou, "volume_cv": c.volume_cv,
                });
                lines.push_str(&row.to_string());
                lines.push('\n');
            }
        }
        std::fs::write(path, lines).with_context(|| format!("writing --cell-scores {}", path.display()))?;
    }
    Ok(())
}
