//! `dispr-coordinator status`: a run's progress from the output store and the queue depths,
//! without consuming anything; `--json` for scripts.

use crate::broker::{Broker, BrokerArgs, QueueDepths};
use crate::cmd::run_args::RunRef;
use crate::failures::FailureGroups;
use crate::status::{Counts, StoredRun};
use dispr_proto::RunId;
use serde::Serialize;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunRef,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Skip the broker (queue depths): for runs of `local`, or when it is unreachable.
    #[arg(long)]
    pub no_broker: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub run_id: RunId,
    pub output: String,
    pub sampler: String,
    pub samples_per_cell: u32,
    pub cells: Counts,
    pub remaining: usize,
    pub complete: bool,
    /// Queue depths; the queues are shared by every run using the same queue prefix.
    pub queues: Option<QueueDepths>,
    /// Why the queue depths are missing, when they are.
    pub broker_error: Option<String>,
    /// The failed cells grouped by reason.
    pub failures: FailureGroups,
}

/// How long status waits for the broker before reporting without it.
const BROKER_WAIT: Duration = Duration::from_secs(10);

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::init_logging(false);
    crate::runtime::block_on(status(args))?
}

async fn status(args: Args) -> anyhow::Result<()> {
    let output = args.run.output_store()?;
    let stored = StoredRun::read(&output, &args.run.run_id).await?;
    let counts = stored.counts();
    let failures = FailureGroups::read(&output, &args.run.run_id, &stored.finished.failed).await?;
    let (queues, broker_error) = if args.no_broker {
        (None, None)
    } else {
        match tokio::time::timeout(BROKER_WAIT, queue_depths(&args.broker)).await {
            Ok(Ok(depths)) => (Some(depths), None),
            Ok(Err(err)) => (None, Some(format!("{err:#}"))),
            Err(_) => (None, Some(format!("the broker did not answer within {} s", BROKER_WAIT.as_secs()))),
        }
    };
    let report = StatusReport {
        run_id: args.run.run_id.clone(),
        output: output.uri().to_string(),
        sampler: stored.manifest.sampler.to_string(),
        samples_per_cell: stored.manifest.samples_per_cell,
        cells: counts,
        remaining: counts.remaining(),
        complete: counts.complete(),
        queues,
        broker_error,
        failures,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(())
}

async fn queue_depths(args: &BrokerArgs) -> anyhow::Result<QueueDepths> {
    let broker = Broker::connect(args, "dispr-coordinator status").await?;
    let depths = broker.depths().await;
    let _ = broker.conn.close(200, "status read".into()).await;
    depths
}

fn print_human(r: &StatusReport) {
    let c = r.cells;
    let pct = |n: usize| if c.total == 0 { 0.0 } else { 100.0 * n as f64 / c.total as f64 };
    println!("run {} ({}, {} samples per cell) under {}", r.run_id, r.sampler, r.samples_per_cell, r.output);
    println!("  cells:     {}", c.total);
    println!("  done:      {} ({:.1}%)", c.done, pct(c.done));
    println!("  failed:    {} ({:.1}%)", c.failed, pct(c.failed));
    println!("  remaining: {}{}", r.remaining, if r.complete { " (complete)" } else { "" });
    match (&r.queues, &r.broker_error) {
        (Some(q), _) => {
            println!("  queues (shared by all runs on this broker and prefix):");
            println!("    jobs:    {} ready, {} consumers (workers)", q.jobs.messages, q.jobs.consumers);
            println!("    results: {} ready, {} consumers", q.results.messages, q.results.consumers);
            println!("    dead:    {} (see `dispr-coordinator dead-letters`)", q.dead.messages);
        }
        (None, Some(err)) => println!("  queues: unavailable ({err})"),
        (None, None) => {}
    }
    print!("{}", r.failures);
}
