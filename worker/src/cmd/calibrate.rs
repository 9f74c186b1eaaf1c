//! `dispr-worker calibrate`: fits a checkpoint's height calibration (`dispr_model::z_calibration`)
//! on cells with ground truth, typically real ones, and writes the calibrated checkpoint.

use std::path::PathBuf;

use anyhow::Context;
use dispr_model::z_calibration::{FitCell, ZCalibration, best_factor, smooth, stretched_iou};
use dispr_model::{DefaultBackend, Predictor};
use dispr_proto::SamplerSpec;
use dispr_shape::features::features_2d;
use dispr_shape::volume::SIDE;

use crate::train_data::Split;

/// Fit how far to stretch a checkpoint's shapes along z, from each cell's 2D features, on cells
/// with ground truth (obj/), and write the checkpoint with that calibration in its sidecar.
///
/// The model's samples are most wrong in height: the 2D inputs determine it least, and
/// synthetic training cells do not teach it how tall real ones are. For every cell this samples
/// --samples shapes with --sampler (the checkpoint's own calibration, if any, left out), finds
/// the stretch about the middle plane that makes them closest to the true shape, and fits its
/// logarithm on the cell's 2D features: one split on the feature that best separates the cells'
/// factors (on real cells: near-saturated images are flat cells), then a ridge regression of
/// what is left. Shapes are smoothed (--smooth) before they are stretched, in the fit and ever
/// after. The calibrated checkpoint
/// (--out, the same record with a new sidecar) then stretches every shape it samples, in every
/// command that samples it.
///
/// To know what the calibration is worth on cells it did not see, fit one checkpoint per fold
/// (--folds 5 --fold K leaves fold K out) and score them with
/// `evaluate --folds 5 --checkpoint <fold 0> ... --checkpoint <fold 4>`; then fit the one to
/// ship on every cell (no --folds).
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Checkpoint record (.mpk) with its .json sidecar beside it.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset folder, file:// URI or s3://bucket/prefix whose cells have obj/ volumes.
    #[arg(long)]
    dataset: String,
    /// Where to write the calibrated checkpoint's record (.mpk); its sidecar goes beside it.
    #[arg(long)]
    out: PathBuf,
    /// Leave one fold of a stratified k-fold split out of the fit (with --fold).
    #[arg(long, requires = "fold")]
    folds: Option<usize>,
    /// The fold to leave out (0-based), as `train --fold` and `evaluate --folds` count them.
    #[arg(long, requires = "folds")]
    fold: Option<usize>,
    /// Sampler the factors are measured with: use the one the runs will use.
    #[arg(long, default_value = dispr_proto::DEFAULT_SAMPLER)]
    sampler: SamplerSpec,
    /// Shapes sampled per cell to measure its best factor.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    samples: u32,
    /// Ridge penalty on the standardised features' weights: larger trusts the features less
    /// and pulls every factor towards the cells' mean.
    #[arg(long, default_value_t = 10.0)]
    ridge: f64,
    /// Fewest fitted cells each side of the split; 0 fits the ridge alone. The split is left
    /// out where there are fewer than twice as many cells.
    #[arg(long, default_value_t = dispr_model::z_calibration::SPLIT_MIN_CELLS)]
    split_min_cells: usize,
    /// Smooth every shape by a Gaussian of this many voxels before it is stretched (the
    /// network's blocky corners rounded; 0 leaves shapes as sampled). The factors are fitted on
    /// the smoothed shapes.
    #[arg(long, default_value_t = 2.0)]
    smooth: f64,
}

/// How the sidecar's note starts to describe the calibration (after the training's note).
const NOTE_PREFIX: &str = "; height calibration (not the network) ";

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init(crate::logging::LogFormat::Human);
    if dispr_model::sidecar_path(&args.out) == args.out {
        anyhow::bail!(
            "--out {} would be the record and its sidecar at once: name the record, e.g. calibrated.mpk (its .json goes beside it)",
            args.out.display()
        );
    }
    // Before minutes of sampling, not after.
    dispr_model::z_calibration::check_smooth_sigma(args.smooth)?;
    if matches!(args.sampler, SamplerSpec::Null) {
        anyhow::bail!("--sampler null does not use the model; give the sampler the runs use (e.g. ddim-2)");
    }
    let split = match (args.folds, args.fold) {
        (Some(folds), Some(fold)) if folds < 2 || fold >= folds => {
            anyhow::bail!(
                "--fold {fold} of --folds {folds}: need at least 2 folds and a fold below their number"
            )
        }
        (Some(folds), Some(fold)) => Split::Fold { fold, folds },
        _ => Split::All,
    };
    let device = Default::default();
    let predictor = Predictor::<DefaultBackend>::load(&args.checkpoint, &device)
        .with_context(|| format!("loading checkpoint {}", args.checkpoint.display()))?;
    let mut sidecar = predictor.sidecar().cloned().context("a loaded checkpoint has a sidecar")?;
    if sidecar.z_calibration.is_some() {
        tracing::info!("the checkpoint's own height calibration is replaced, not stacked");
        // And so is what the note says of it.
        if let Some(at) = sidecar.note.find(NOTE_PREFIX) {
            sidecar.note.truncate(at);
        }
    }
    let predictor = predictor.with_z_calibration(None);
    // With Split::All every cell is "held out"; a fold keeps the others to fit on.
    let (fit, held) = crate::train_data::load_scored(&args.dataset, split)?;
    let cells = if matches!(split, Split::All) { held } else { fit };
    if cells.len() < 2 {
        anyhow::bail!(
            "{}: {} cells with ground truth to fit on; the calibration needs at least 2",
            args.dataset,
            cells.len()
        );
    }
    println!(
        "fitting the height calibration of {} on {} cells of {} ({}, {} x {})",
        args.checkpoint.display(),
        cells.len(),
        args.dataset,
        match split {
            Split::Fold { fold, folds } => format!("fold {fold} of {folds} left out"),
            _ => "every cell".to_string(),
        },
        args.samples,
        args.sampler,
    );
    let raw = crate::scoring::sample_cells(&predictor, &cells, &args.sampler, args.samples)?;
    let volumes: Vec<Vec<Vec<f32>>> =
        raw.iter().map(|samples| samples.iter().map(|s| smooth(s, args.smooth)).collect()).collect();
    let mut fit_cells = Vec::with_capacity(cells.len());
    let mut before = Vec::with_capacity(cells.len());
    for ((cell, samples), raw) in cells.iter().zip(&volumes).zip(&raw) {
        let features = features_2d(&cell.image, &cell.mask, SIDE, SIDE)
            .with_context(|| format!("cell {}: its 2D features", cell.id))?;
        let (factor, _) = best_factor(samples, &cell.truth);
        before.push(stretched_iou(raw, &cell.truth, 1.0));
        fit_cells.push(FitCell { id: cell.id.to_string(), features, best_factor: factor });
    }
    let calibration = ZCalibration::fit(
        &fit_cells,
        args.ridge,
        args.split_min_cells,
        args.smooth,
        &args.sampler.to_string(),
    )?;
    match &calibration.split {
        Some(s) => println!(
            "split: {} <= {:.4} stretches by {:.2}, above it by {:.2} (before the ridge)",
            s.feature,
            s.threshold,
            s.below.exp(),
            s.above.exp()
        ),
        None => println!(
            "no split (--split-min-cells {}; a split needs twice as many cells): the ridge alone",
            args.split_min_cells
        ),
    }

    println!("| cell | class | best factor | fitted factor | IoU uncalibrated | IoU calibrated |");
    println!("|---|---|---|---|---|---|");
    let mut after = Vec::with_capacity(cells.len());
    for ((cell, samples), (fc, raw)) in cells.iter().zip(&volumes).zip(fit_cells.iter().zip(&before)) {
        let factor = calibration.factor_for(&fc.features).unwrap_or(1.0);
        let got = stretched_iou(samples, &cell.truth, factor);
        after.push(got);
        println!(
            "| {} | {} | {:.2} | {factor:.2} | {raw:.3} | {got:.3} |",
            cell.id, cell.class, fc.best_factor
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "on the {} cells it was fitted on (not a held-out figure: score other cells with `evaluate`): mean IoU {:.3} uncalibrated, {:.3} calibrated",
        cells.len(),
        mean(&before),
        mean(&after)
    );

    // The same record under the new name, and the sidecar with the calibration.
    if args.out != args.checkpoint {
        if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::copy(&args.checkpoint, &args.out)
            .with_context(|| format!("copying {} to {}", args.checkpoint.display(), args.out.display()))?;
    }
    let what = match split {
        Split::Fold { fold, folds } => {
            format!("the cells of {} outside fold {fold} of {folds}", args.dataset)
        }
        _ => format!("every cell of {}", args.dataset),
    };
    sidecar.note = format!(
        "{}{NOTE_PREFIX}fitted on {} cells, {what}, {} x {}, smoothed by sigma {}, {}ridge {}",
        sidecar.note,
        calibration.cells,
        args.samples,
        args.sampler,
        args.smooth,
        calibration
            .split
            .as_ref()
            .map_or(String::new(), |s| format!("split on {} at {:.4}, ", s.feature, s.threshold)),
        args.ridge
    );
    sidecar.z_calibration = Some(calibration);
    dispr_model::checkpoint::write_sidecar(&args.out, &sidecar)
        .with_context(|| format!("writing the sidecar of {}", args.out.display()))?;
    println!("wrote {} (and its sidecar)", args.out.display());
    Ok(())
}
