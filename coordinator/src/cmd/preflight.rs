//! `dispr-coordinator preflight`: before a run that costs thousands of GPU-hours, measure on
//! this machine what a sample costs and whether the model is worth it: its IoU against the
//! floor on labelled cells, and whether its samples follow their input at all.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use dispr_model::{DefaultBackend, Predictor};
use dispr_proto::SamplerSpec;
use dispr_shape::reconstruction::iou;
use dispr_worker::scoring::{sample_cells, score_cell};
use dispr_worker::train_data::{Split, ValCell};

/// The labelled cells scored when --dataset is not given: the 25 real cells beside the repo.
pub const DEFAULT_LABELLED: &str = "../shared/data/rbc-real-sample";

/// Check a model before a large run, on this machine: seconds per sample with --sampler (all
/// labelled cells batched, as workers batch) and the run's compute hours for --cells x
/// --samples; the IoU of one sample per labelled cell against the true shape, beside the floor
/// (the mask extruded along z) on the same cells; and whether samples follow their input: each
/// cell is sampled again from the same noise with another cell's image and mask, and its own
/// inputs must bring it closer to its true shape than the other cell's do.
///
/// A model whose samples do not follow their input (another cell's image and mask fit a cell
/// as well as its own, within 0.02 IoU) or that scores below the floor gets a warning banner and the
/// command exits with status 5, so a launch script can stop there. Use the sampler and the
/// machine type of the run: the figures are only as good as that match.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Checkpoint record (.mpk) with its .json sidecar beside it (e.g. one made by
    /// `dispr-worker import` from the reference code's weights).
    #[arg(long)]
    model: PathBuf,
    /// Sampler the run will use.
    #[arg(long, default_value = dispr_proto::DEFAULT_SAMPLER)]
    sampler: SamplerSpec,
    /// Cells of the planned run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    cells: u64,
    /// Samples per cell of the planned run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    samples: u32,
    /// Labelled cells (image/, mask/, obj/) to score on; default ../shared/data/rbc-real-sample
    /// (the 25 real cells) when it exists.
    #[arg(long)]
    dataset: Option<String>,
    /// Score at most this many labelled cells (in name order); each is sampled twice.
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
    check_cells: Option<u64>,
}

/// What preflight measured.
#[derive(Debug, Clone)]
pub struct Findings {
    pub seconds_per_sample: f64,
    pub compute_hours: f64,
    pub cells_scored: usize,
    pub model_iou: f64,
    pub floor_iou: f64,
    /// Mean IoU against the cell's truth of samples made from another cell's inputs.
    pub other_input_iou: f64,
    /// Mean IoU between each cell's sample and its sample from another cell's inputs (1:
    /// identical, the inputs changed nothing).
    pub own_vs_other_iou: f64,
    pub warnings: Vec<String>,
}

/// How much closer its own inputs must bring a cell's sample to its truth than another cell's
/// inputs do (below it: a warning), and how alike the two samples must be for the warning to
/// say that the model ignores its input altogether.
const MIN_INPUT_GAIN: f64 = 0.02;
const MAX_OWN_VS_OTHER: f64 = 0.9;

pub fn run(args: Args) -> anyhow::Result<()> {
    let dataset = match &args.dataset {
        Some(d) => d.clone(),
        None if Path::new(DEFAULT_LABELLED).is_dir() => DEFAULT_LABELLED.to_string(),
        None => anyhow::bail!(
            "no labelled cells: {DEFAULT_LABELLED} is not here; give --dataset with a folder of image/, mask/ and obj/ (e.g. one made by `dispr-coordinator synth`)"
        ),
    };
    if matches!(args.sampler, SamplerSpec::Null) {
        anyhow::bail!(
            "--sampler null does not use the model: preflight checks a model; give the run's ddim-N, ddpm-N or dpmpp2m-N"
        );
    }
    let f = check(&args, &dataset)?;
    println!(
        "model {} with {} on this machine ({} cores):",
        args.model.display(),
        args.sampler,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  {:.3} s per sample -> {} cells x {} samples = {:.1} compute hours",
        f.seconds_per_sample, args.cells, args.samples, f.compute_hours
    );
    println!(
        "  IoU on {} labelled cells of {dataset}: model {:.3}, floor (extruded mask) {:.3}, model - floor {:+.3}",
        f.cells_scored,
        f.model_iou,
        f.floor_iou,
        f.model_iou - f.floor_iou
    );
    println!(
        "  follows its input: IoU with its own image+mask {:.3}, with another cell's {:.3} (gain {:+.3}); own vs other's sample IoU {:.3}",
        f.model_iou,
        f.other_input_iou,
        f.model_iou - f.other_input_iou,
        f.own_vs_other_iou
    );
    if f.warnings.is_empty() {
        println!("preflight: no problem found");
        return Ok(());
    }
    let bar = "!".repeat(100);
    let banner = format!(
        "{bar}\n{}{bar}\n",
        f.warnings.iter().map(|w| format!("!! WARNING: {w}\n")).collect::<String>()
    );
    print!("{banner}");
    // Also on the terminal when stdout goes to a file or pipe, so whoever launched it sees it;
    // not twice in a log that takes both streams.
    if !std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        eprint!("{banner}");
    }
    std::process::exit(i32::from(crate::exit::PREFLIGHT_WARNED));
}

/// Measures everything [`Findings`] holds.
pub fn check(args: &Args, dataset: &str) -> anyhow::Result<Findings> {
    let device = Default::default();
    let predictor = Predictor::<DefaultBackend>::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let data = dispr_worker::train_data::load(dataset, predictor.config(), Split::All, &[])?;
    let mut cells: Vec<ValCell> = data.val;
    if let Some(n) = args.check_cells {
        cells.truncate(n as usize);
    }
    if cells.len() < 2 {
        anyhow::bail!("{dataset}: {} cells with an obj/ volume; preflight needs at least 2", cells.len());
    }
    let started = Instant::now();
    let own = sample_cells(&predictor, &cells, &args.sampler, 1)?;
    let seconds_per_sample = started.elapsed().as_secs_f64() / cells.len() as f64;
    let scores: Vec<_> = cells.iter().zip(&own).map(|(c, v)| score_cell(c, v)).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let model_iou = mean(&scores.iter().map(|c| c.mean_sample_iou()).collect::<Vec<_>>());
    let floor_iou = mean(&scores.iter().map(|c| c.floor_iou).collect::<Vec<_>>());
    // Each cell again, from the same noise (seeds follow the cell id), with the next cell's
    // image and mask.
    let swapped: Vec<ValCell> = (0..cells.len())
        .map(|i| {
            let other = &cells[(i + 1) % cells.len()];
            ValCell { image: other.image.clone(), mask: other.mask.clone(), ..cells[i].clone() }
        })
        .collect();
    let other = sample_cells(&predictor, &swapped, &args.sampler, 1)?;
    let binary = |v: &[f32]| dispr_shape::otsu::binarise(v);
    let mut other_iou = Vec::new();
    let mut own_vs_other = Vec::new();
    for ((cell, o), s) in cells.iter().zip(&own).zip(&other) {
        let (o, s) = (binary(&o[0]), binary(&s[0]));
        other_iou.push(iou(&s, &cell.truth));
        own_vs_other.push(iou(&o, &s));
    }
    let other_input_iou = mean(&other_iou);
    let own_vs_other_iou = mean(&own_vs_other);
    let mut warnings = Vec::new();
    let check = "Its shapes say nothing about the cells; do not start the run. Check the checkpoint (an imported one: the preprocessing in its sidecar; a trained one: train with the default configuration).";
    if model_iou - other_input_iou < MIN_INPUT_GAIN {
        if own_vs_other_iou > MAX_OWN_VS_OTHER {
            warnings.push(format!(
                "the model IGNORES ITS INPUT: a cell sampled with another cell's image and mask comes out the same (IoU {own_vs_other_iou:.3} between the two) and fits the cell as well ({other_input_iou:.3} against {model_iou:.3}). {check}"
            ));
        } else {
            warnings.push(format!(
                "the model DOES NOT FOLLOW ITS INPUT: its samples change with the image and mask, but another cell's fit this cell as well as its own (IoU {other_input_iou:.3} against {model_iou:.3}). {check}"
            ));
        }
    }
    if model_iou < floor_iou {
        warnings.push(format!(
            "the model scores BELOW THE FLOOR: IoU {model_iou:.3} against {floor_iou:.3} for the mask extruded along z on the same {} cells: the run would cost compute for shapes worse than doing nothing; use a better checkpoint or run with --sampler null.",
            cells.len()
        ));
    }
    let n = (args.cells * u64::from(args.samples)) as f64;
    Ok(Findings {
        seconds_per_sample,
        compute_hours: n * seconds_per_sample / 3600.0,
        cells_scored: cells.len(),
        model_iou,
        floor_iou,
        other_input_iou,
        own_vs_other_iou,
        warnings,
    })
}
