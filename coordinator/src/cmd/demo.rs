//! `dispr-coordinator demo`: the whole pipeline on this machine, with no services: a synthetic
//! dataset (or a real one with --dataset), the committed demo checkpoint, a fast sampler, the
//! `local` mode's in-process workers, then the classifier report and report.html.

use crate::cmd::synth::generate_into;
use crate::manifest::{ManifestState, RunSpec};
use crate::prepare::prepare;
use anyhow::Context as _;
use dispr_proto::{RunId, SamplerSpec, keys};
use dispr_store::Store;
use std::path::PathBuf;
use std::time::Instant;

/// The demonstration checkpoint committed with the sources (see model/checkpoints/README.md).
pub const DEMO_CHECKPOINT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../model/checkpoints/small-demo/model.mpk");

#[derive(clap::Args)]
pub struct Args {
    /// Folder for everything the demo writes: dataset/ (when generated) and runs/<run>/.
    #[arg(long, default_value = "dispr-demo")]
    pub out: PathBuf,
    /// Synthetic cells to generate (classes in the proportions of the real 825-cell dataset,
    /// at least one of each of the 6 classes).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(12..=100_000))]
    pub cells: u32,
    /// Run on this dataset instead of generating one: a folder, file:///path or s3://bucket/prefix
    /// in the layout of DESIGN.md (image/, mask/, optional obj/ and labels.csv), e.g.
    /// ../shared/data/rbc-real-sample.
    #[arg(long)]
    pub dataset: Option<String>,
    /// The model checkpoint (default: the committed demo model).
    #[arg(long, default_value = DEMO_CHECKPOINT)]
    pub model: String,
    /// Sampler: ddpm-<steps>, ddim-<steps>[-eta<e>], dpmpp2m-<steps>, null (no model: checks the
    /// pipeline in seconds). The default keeps the demo within about 10 minutes on 2 CPU cores.
    #[arg(long, default_value = "ddim-8")]
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
    /// Names the run (its outputs go under <out>/runs/<run>/).
    #[arg(long, default_value = "demo")]
    pub run_id: RunId,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::init_logging(false);
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
            let summary = generate_into(&store, args.cells as usize, args.seed, 0).await?;
            eprintln!("      done in {:.1} s: {:?}", summary.elapsed.as_secs_f64(), summary.class_counts);
            uri
        }
    };
    if args.sampler != SamplerSpec::Null
        && !std::path::Path::new(&args.model).exists()
        && !args.model.contains("://")
    {
        anyhow::bail!(
            "the model checkpoint {} does not exist; pass --model <checkpoint> (made by `dispr-worker train`) \
             or --sampler null to run the pipeline without a model",
            args.model
        );
    }

    let spec = RunSpec {
        run_id: args.run_id.clone(),
        dataset_uri: dataset_uri.clone(),
        output_uri: out_uri.clone(),
        model_uri: (args.sampler != SamplerSpec::Null).then(|| args.model.clone()),
        sampler: args.sampler.clone(),
        samples_per_cell: args.samples,
        seed: args.seed,
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
    let bar = crate::progress::bar(prepared.cells.len() as u64, "cells");
    let outcome = crate::local::run(&prepared, 1, args.workers, &bar).await?;
    bar.finish_and_clear();
    eprint!("      {}", outcome.summary);

    eprintln!("[3/3] classifier report and report.html");
    let report = crate::run_page::write_run_report(
        &prepared.output,
        &args.run_id,
        &crate::run_page::ReportOptions::demo(),
    )
    .await?;
    println!("{}", report.summary);

    let run_dir = out.join(keys::run_prefix(&args.run_id));
    println!("\nDone in {:.1} s. Look at:", started.elapsed().as_secs_f64());
    println!("  {}  the run report (open it in a browser)", run_dir.join("report/report.html").display());
    println!(
        "  {}  one row per cell, every feature (pandas, R, a spreadsheet)",
        run_dir.join("report/features.csv").display()
    );
    println!("  {}  predicted volumes, ImageJ/Fiji-readable TIFF stacks", run_dir.join("volumes").display());
    println!(
        "  {}  per-cell features (and failures/ for cells that failed)",
        run_dir.join("features").display()
    );
    Ok(())
}
