//! `dispr-coordinator demo`: the whole pipeline on this machine, with no services: a synthetic
//! dataset (or a real one with --dataset), the committed demo checkpoint, a fast sampler, the
//! `local` mode's in-process workers, then the classifier report and report.html.

use crate::cmd::synth::generate_into;
use crate::exit::Unfinished;
use crate::failures::FailureGroups;
use crate::manifest::{ManifestState, RunSpec};
use crate::prepare::prepare;
use anyhow::Context as _;
use dispr_proto::{RunId, SamplerSpec, keys};
use dispr_store::Store;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The default checkpoint committed with the sources (see model/checkpoints/README.md),
/// built into the binary so that `demo` runs from any folder and inside the container images.
const DEMO_RECORD: &[u8] = include_bytes!("../../../model/checkpoints/default/model.mpk");
const DEMO_SIDECAR: &[u8] = include_bytes!("../../../model/checkpoints/default/model.json");

/// The default demo dataset: 210 cells, the real proportions with every class raised to 10
/// (SDE 140, acanthocytes 22, clusters 18, keratocytes, knizocytes and multilobate 10 each).
pub const DEFAULT_CELLS: u32 = 210;
/// Cells per class the demo's dataset has at least (where --cells allows).
pub const MIN_CELLS_PER_CLASS: usize = 10;

#[derive(clap::Args)]
pub struct Args {
    /// Folder for everything the demo writes: dataset/ (when generated) and runs/<run>/.
    #[arg(long, default_value = "dispr-demo")]
    pub out: PathBuf,
    /// Synthetic cells to generate: the class proportions of the real 825-cell dataset with at
    /// least 10 cells in every class (as many as --cells allows), so that every test fold of the
    /// 5-fold cross-validation holds 2 cells of each class and the classification means something.
    #[arg(long, default_value_t = DEFAULT_CELLS, value_parser = clap::value_parser!(u32).range(12..=100_000))]
    pub cells: u32,
    /// Run on this dataset instead of generating one: a folder, file:///path or s3://bucket/prefix
    /// in the layout of DESIGN.md (image/, mask/, optional obj/ and labels.csv), e.g.
    /// ../shared/data/rbc-real-sample.
    #[arg(long)]
    pub dataset: Option<String>,
    /// The model checkpoint, with its .json sidecar beside it (default: the default model
    /// built into this binary, written to <out>/model/ for the run to name).
    #[arg(long)]
    pub model: Option<String>,
    /// Sampler: ddpm-<steps>, ddim-<steps>[-eta<e>], dpmpp2m-<steps>, null (no model: checks the
    /// pipeline in seconds). The default model's shapes are closest to the true ones with few
    /// steps (measured on the real cells without the height calibration: ddim-2 0.58 mean IoU,
    /// ddim-4 0.57, dpmpp2m-8 0.53; with it, ddim-2 0.60 on held-out cells; more
    /// steps add detail the 2D input does not determine); ddim-4 or ddim-8 give more varied
    /// samples, for the uncertainty of an ensemble.
    #[arg(long, default_value = dispr_proto::DEFAULT_SAMPLER)]
    pub sampler: SamplerSpec,
    /// Volumes sampled per cell.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub samples: u32,
    /// Seed of the synthetic dataset and of the run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// In-process workers.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[command(flatten)]
    pub volumes: crate::cmd::run_args::VolumesArg,
    /// Names the run (its outputs go under <out>/runs/<run>/).
    #[arg(long, default_value = "demo")]
    pub run_id: RunId,
    /// Log every job on a terminal too (by default a terminal gets the progress bar and
    /// warnings; a log file or pipe gets every line).
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::init_logging_with_bar(args.verbose);
    crate::runtime::block_on(demo(args))?
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let out =
        std::fs::canonicalize(&args.out).with_context(|| format!("resolving {}", args.out.display()))?;
    let out_uri = out.to_string_lossy().into_owned();

    let dataset_uri = match &args.dataset {
        Some(uri) => uri.clone(),
        None => {
            let folder = out.join("dataset");
            let uri = folder.to_string_lossy().into_owned();
            let store = Store::open(&uri).with_context(|| format!("opening {uri}"))?;
            eprintln!("[1/3] generating {} synthetic cells into {}", args.cells, folder.display());
            let summary =
                generate_into(&store, args.cells as usize, MIN_CELLS_PER_CLASS, args.seed, 0).await?;
            eprintln!("      done in {:.1} s: {:?}", summary.elapsed.as_secs_f64(), summary.class_counts);
            uri
        }
    };
    let model = match (&args.model, &args.sampler) {
        (_, SamplerSpec::Null) => None,
        (Some(model), _) => {
            if !std::path::Path::new(model).exists() && !model.contains("://") {
                anyhow::bail!(
                    "the model checkpoint {model} does not exist; pass --model <checkpoint> (made by \
                     `dispr-worker train`) or --sampler null to run the pipeline without a model"
                );
            }
            Some(model.clone())
        }
        (None, _) => {
            let synthetic = args.dataset.is_none();
            if synthetic {
                eprintln!(
                    "      model: the built-in default without its height calibration, which corrects its shapes \
                     for real cells; these cells are synthetic, the kind it was trained on"
                );
            }
            Some(write_demo_checkpoint(&out.join("model"), synthetic)?)
        }
    };

    let spec = RunSpec {
        run_id: args.run_id.clone(),
        dataset_uri: dataset_uri.clone(),
        output_uri: out_uri.clone(),
        model_uri: model,
        sampler: args.sampler.clone(),
        samples_per_cell: args.samples,
        seed: args.seed,
        volumes: args.volumes.format,
    };
    let prepared = prepare(&spec).await?;
    if prepared.state == ManifestState::Existing {
        eprintln!("      run {} already exists with the same settings: resuming it", args.run_id);
    }
    eprintln!(
        "[2/3] sampling {} x {} volumes with {} ({} in-process workers)",
        prepared.cells.len(),
        args.samples,
        args.sampler,
        args.workers
    );
    let sampling = Instant::now();
    let bar = crate::progress::bar(prepared.cells.len() as u64, "cells");
    let lease = crate::lease::Lease::acquire(&prepared.output, &args.run_id, "demo").await?;
    let outcome = crate::local::run(&prepared, 1, args.workers, &bar).await;
    lease.release().await;
    let outcome = outcome?;
    bar.finish_and_clear();
    eprint!("      {}", outcome.summary);
    eprintln!("      sampled in {:.1} s", sampling.elapsed().as_secs_f64());
    let unfinished = Unfinished::of(outcome.summary.done, outcome.summary.total);
    if outcome.summary.failed > 0 {
        let finished = crate::cells::Finished::read(&prepared.output, &args.run_id).await?;
        eprint!("{}", FailureGroups::read(&prepared.output, &args.run_id, &finished.failed).await?);
    }
    if let Some(all @ Unfinished::AllFailed { .. }) = unfinished {
        return Err(all.into());
    }

    let options = crate::run_page::ReportOptions::demo();
    eprintln!(
        "[3/3] classifier report and report.html: {}-fold cross-validation x {} seeds per feature set",
        options.cv.folds, options.cv.repeats
    );
    let reporting = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("training random forests");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = crate::run_page::write_run_report(&prepared.output, &args.run_id, &options).await;
    spinner.finish_and_clear();
    let report = report?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!("      reported in {:.1} s", reporting.elapsed().as_secs_f64());
    println!("\n{}", report.summary);

    let run_dir = out.join(keys::run_prefix(&args.run_id));
    let wall = started.elapsed().as_secs_f64();
    println!(
        "Done in {:.1} s ({}m {:02}s wall time). Look at:",
        wall,
        (wall / 60.0) as u64,
        wall as u64 % 60
    );
    println!("  {}  the run report (open it in a browser)", run_dir.join("report/report.html").display());
    println!(
        "  {}  one row per cell, every feature (pandas, R, a spreadsheet)",
        run_dir.join("report/features.csv").display()
    );
    println!(
        "  {}  one row per cell, most uncertain shape first (docs/uncertainty.md)",
        run_dir.join("report/uncertainty.csv").display()
    );
    println!("  {}  predicted volumes, ImageJ/Fiji-readable TIFF stacks", run_dir.join("volumes").display());
    println!(
        "  {}  per-cell features (and failures/ for cells that failed)",
        run_dir.join("features").display()
    );
    match unfinished {
        Some(unfinished) => Err(unfinished.into()),
        None => Ok(()),
    }
}

/// Writes the built-in default checkpoint and its sidecar into `dir` (unless the same bytes
/// are there already); returns the record's path. For `synthetic` cells the sidecar leaves out
/// the height calibration (`dispr_model::z_calibration`): it was fitted on real cells to correct
/// the model where they differ from the synthetic ones it was trained on, so on synthetic cells
/// it only moves their shapes away from the truth. The two variants have their own file names.
fn write_demo_checkpoint(dir: &Path, synthetic: bool) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (name, sidecar) = if synthetic {
        ("default-synthetic.mpk", without_calibration(DEMO_SIDECAR)?)
    } else {
        ("default.mpk", DEMO_SIDECAR.to_vec())
    };
    let record = dir.join(name);
    for (path, bytes) in [(record.clone(), DEMO_RECORD), (dispr_model::sidecar_path(&record), &sidecar[..])] {
        if std::fs::read(&path).is_ok_and(|have| have == bytes) {
            continue;
        }
        // Through a temporary file, so an interrupted demo never leaves half a checkpoint.
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(record.to_string_lossy().into_owned())
}

/// The sidecar `json` without its height calibration, saying so in its note.
fn without_calibration(json: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut sidecar: dispr_model::Sidecar =
        serde_json::from_slice(json).context("the built-in checkpoint's sidecar does not parse")?;
    if sidecar.z_calibration.take().is_some() {
        sidecar.note.push_str("; height calibration left out for the demo's synthetic cells");
    }
    serde_json::to_vec_pretty(&sidecar).context("encoding the demo's sidecar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_checkpoint_is_written_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let record = PathBuf::from(write_demo_checkpoint(&dir.path().join("model"), false).unwrap());
        let sidecar = dispr_model::checkpoint::read_sidecar(&record).expect("a readable sidecar beside it");
        assert_eq!(sidecar.record_sha256, dispr_model::sha256_file(&record).unwrap());
        // The default model is calibrated for real cells.
        assert!(sidecar.z_calibration.is_some());
        let modified = std::fs::metadata(&record).unwrap().modified().unwrap();

        // A second demo in the same folder leaves the identical file alone...
        write_demo_checkpoint(&dir.path().join("model"), false).unwrap();
        assert_eq!(std::fs::metadata(&record).unwrap().modified().unwrap(), modified);
        // ...and restores one that was damaged.
        std::fs::write(&record, b"damaged").unwrap();
        write_demo_checkpoint(&dir.path().join("model"), false).unwrap();
        assert_eq!(std::fs::read(&record).unwrap(), DEMO_RECORD);
        let device = Default::default();
        dispr_model::Predictor::<dispr_model::CpuBackend>::load(&record, &device).expect("the model loads");

        // For synthetic cells: the same network, beside it, without the calibration.
        let synthetic = PathBuf::from(write_demo_checkpoint(&dir.path().join("model"), true).unwrap());
        assert_ne!(synthetic, record);
        assert_eq!(std::fs::read(&synthetic).unwrap(), DEMO_RECORD);
        let plain = dispr_model::Predictor::<dispr_model::CpuBackend>::load(&synthetic, &device).unwrap();
        assert!(plain.z_calibration().is_none());
        assert!(plain.sidecar().unwrap().note.contains("height calibration left out"));
        assert!(dispr_model::checkpoint::read_sidecar(&record).unwrap().z_calibration.is_some());
    }
}
