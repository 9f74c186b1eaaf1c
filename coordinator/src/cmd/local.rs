//! `dispr-coordinator local`: a whole run on this machine with no services: the jobs of
//! `submit` go to an in-process queue served by N in-process workers, writing the same outputs
//! a distributed run with the same manifest writes. Running it again resumes the run. One
//! `local` at a time computes a run in one output location (a lease, see [`crate::lease`]); it
//! exits 0 when every cell is done, 3 when some failed, 4 when all did ([`crate::exit`]).

use crate::cells::Finished;
use crate::cmd::run_args::RunArgs;
use crate::exit::Unfinished;
use crate::failures::{FailureGroups, forget};
use crate::lease::Lease;
use crate::manifest::ManifestState;
use crate::prepare::{Prepared, prepare};
use dispr_proto::keys;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArgs,
    /// In-process workers (jobs computed at once). The model uses every core for one job, so
    /// more than one helps mostly with the null sampler or slow storage.
    #[arg(long, env = "DISPR_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Log every job on a terminal too (by default a terminal gets the progress bar and
    /// warnings; a log file or pipe gets every line).
    #[arg(short, long)]
    pub verbose: bool,
    /// Run the cells that failed for good again (their failure records are deleted first), once
    /// the cause is fixed.
    #[arg(long)]
    pub retry_failed: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::init_logging_with_bar(args.verbose);
    crate::runtime::block_on(local(args))?
}

async fn local(args: Args) -> anyhow::Result<()> {
    // Flags first: a refused command writes nothing (no manifest of a run that never starts).
    anyhow::ensure!(args.run.cells_per_job >= 1, "--cells-per-job must be at least 1");
    anyhow::ensure!(
        args.workers >= 1,
        "--workers must be at least 1 (the in-process workers that compute jobs)"
    );
    let spec = args.run.spec();
    let mut prepared = prepare(&spec).await?;
    let run = prepared.manifest.run_id.clone();
    // One process per run and output: a second one is refused before it computes anything.
    let lease = Lease::acquire(&prepared.output, &run, "local").await?;
    match prepared.state {
        ManifestState::Created => eprintln!("run {run}: manifest written under {}", prepared.output.uri()),
        ManifestState::Existing => eprintln!("run {run}: manifest matches the existing one; resuming"),
    }
    let result = compute(&args, &mut prepared).await;
    lease.release().await;
    result
}

/// The run's unfinished cells, computed and summarised; the error tells how it ended.
async fn compute(args: &Args, prepared: &mut Prepared) -> anyhow::Result<()> {
    let run = prepared.manifest.run_id.clone();
    if args.retry_failed && !prepared.finished.failed.is_empty() {
        let forgotten = forget(&prepared.output, &run, &prepared.finished.failed).await?;
        eprintln!("run {run}: running {forgotten} failed cells again (--retry-failed)");
        prepared.finished.failed.clear();
    }
    let bar = crate::progress::bar(prepared.cells.len() as u64, "local");
    let outcome = crate::local::run(prepared, args.run.cells_per_job, args.workers, &bar).await?;
    bar.finish_and_clear();
    let finished = Finished::read(&prepared.output, &run).await?;
    let failures = FailureGroups::read(&prepared.output, &run, &finished.failed).await?;
    if args.json {
        let out = serde_json::json!({
            "run_id": run,
            "submitted": outcome.submitted,
            "summary": outcome.summary,
            "failures": failures,
            "unfinished_jobs": outcome.unfinished,
        });
        println!("{out}");
    } else {
        print!("run {run}: {}", outcome.summary);
        if outcome.summary.failed > 0 {
            print!("{failures}");
            println!("failure records: {}/{}", prepared.output.uri(), keys::failures_prefix(&run));
        }
    }
    anyhow::ensure!(
        outcome.unfinished.is_empty(),
        "{} jobs could not finish because of storage errors (first: {} — {}); run the same command again to resume",
        outcome.unfinished.len(),
        outcome.unfinished[0].0,
        outcome.unfinished[0].1
    );
    match Unfinished::of(outcome.summary.done, outcome.summary.total) {
        Some(unfinished) => Err(unfinished.into()),
        None => Ok(()),
    }
}
