//! `dispr-coordinator status`: a run's progress from the output store and the queue depths,
//! without consuming anything; `--json` for scripts. The run's jobs that RabbitMQ dead-lettered
//! (read from the dead-letter queue, not taken) have their unfinished cells recorded as failed,
//! with the reason, as `watch` records them, and how often workers handed jobs back on shutdown
//! is shown beside.

use crate::broker::{Broker, BrokerArgs, QueueDepths};
use crate::cmd::dead_letters::dead_jobs;
use crate::cmd::run_args::RunRef;
use crate::failures::FailureGroups;
use crate::failures::record_dead_lettered;
use crate::status::{Counts, StoredRun};
use anyhow::Context;
use dispr_proto::RunId;
use dispr_proto::{HandBack, keys};
use dispr_store::Store;
use futures::StreamExt;
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
    /// Queue depths: the jobs and dead-letter queues are shared by every run on the queue prefix;
    /// `results` is this run's own.
    pub queues: Option<QueueDepths>,
    /// This run's jobs that RabbitMQ dead-lettered (their cells count as failed).
    pub dead_lettered_jobs: Option<usize>,
    /// Jobs of this run that workers handed back on shutdown, and hand-backs in all (not failures).
    pub handbacks: HandBacks,
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
    let run = &args.run.run_id;
    // The broker first: the cells of dead-lettered jobs are recorded as failed (as `watch` does)
    // before the store is read, so that the counts include them.
    let (broker, broker_error) = if args.no_broker {
        (None, None)
    } else {
        match tokio::time::timeout(BROKER_WAIT, from_broker(&args.broker, &output, run)).await {
            Ok(Ok(read)) => (Some(read), None),
            Ok(Err(err)) => (None, Some(format!("{err:#}"))),
            Err(_) => (None, Some(format!("the broker did not answer within {} s", BROKER_WAIT.as_secs()))),
        }
    };
    let stored = StoredRun::read(&output, run).await?;
    let counts = stored.counts();
    let failures = FailureGroups::read(&output, run, &stored.finished.failed).await?;
    let handbacks = HandBacks::read(&output, run).await?;
    let (queues, dead_lettered_jobs) = match broker {
        Some((depths, dead)) => (Some(depths), Some(dead)),
        None => (None, None),
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
        dead_lettered_jobs,
        handbacks,
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

/// The queue depths, and the run's dead-lettered jobs (read without taking them), whose
/// unfinished cells are recorded as failed.
async fn from_broker(args: &BrokerArgs, output: &Store, run: &RunId) -> anyhow::Result<(QueueDepths, usize)> {
    let broker = Broker::connect(args, "dispr-coordinator status").await?;
    let read = async {
        let depths = broker.depths(run).await?;
        let dead = dead_jobs(&broker, run).await?;
        for (job, death) in &dead {
            record_dead_lettered(output, job, death).await?;
        }
        anyhow::Ok((depths, dead.len()))
    };
    let read = read.await;
    let _ = broker.conn.close(200, "status read".into()).await;
    read
}

/// Hand-backs of a run's jobs, from `handbacks/<job>.json`.
#[derive(Debug, Default, Serialize)]
pub struct HandBacks {
    /// Jobs handed back at least once.
    pub jobs: usize,
    /// Hand-backs in all (of the records read).
    pub total: u64,
    /// The most of one job.
    pub most: u32,
}

impl HandBacks {
    /// Records read at most (a larger run's totals are of a sample).
    const MAX_READ: usize = 2000;

    async fn read(output: &Store, run: &RunId) -> anyhow::Result<Self> {
        let prefix = keys::handbacks_prefix(run);
        let listed =
            output.list(&prefix).await.with_context(|| format!("listing {prefix} under {}", output.uri()))?;
        let counts: Vec<u32> = futures::stream::iter(listed.iter().take(Self::MAX_READ))
            .map(|key| async move {
                let bytes = output.get_opt(key).await.ok().flatten();
                bytes.and_then(|b| HandBack::decode(&b).ok()).map_or(0, |r| r.handbacks)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        Ok(Self {
            jobs: listed.len(),
            total: counts.iter().map(|&n| u64::from(n)).sum(),
            most: counts.into_iter().max().unwrap_or(0),
        })
    }
}

fn print_human(r: &StatusReport) {
    let c = r.cells;
    let pct = |n: usize| if c.total == 0 { 0.0 } else { 100.0 * n as f64 / c.total as f64 };
    println!("run {} ({}, {} samples per cell) under {}", r.run_id, r.sampler, r.samples_per_cell, r.output);
    println!("  cells:     {}", c.total);
    println!("  done:      {} ({:.1}%)", c.done, pct(c.done));
    println!("  failed:    {} ({:.1}%)", c.failed, pct(c.failed));
    println!("  remaining: {}{}", r.remaining, if r.complete { " (complete)" } else { "" });
    if r.handbacks.jobs > 0 {
        println!(
            "  handed back: {} jobs, {} times in all (at most {} for one job) by workers that shut down; not failures",
            r.handbacks.jobs, r.handbacks.total, r.handbacks.most
        );
    }
    if let Some(dead) = r.dead_lettered_jobs.filter(|&n| n > 0) {
        println!(
            "  dead-lettered: {dead} jobs of this run (their unfinished cells count as failed); once the cause is \
             fixed: dispr-coordinator dead-letters --run-id {} --requeue",
            r.run_id
        );
    }
    match (&r.queues, &r.broker_error) {
        (Some(q), _) => {
            println!("  queues:");
            println!(
                "    jobs:    {} ready, {} consumers (workers; shared by every run on this prefix)",
                q.jobs.messages, q.jobs.consumers
            );
            match q.results {
                Some(d) => {
                    println!("    results: {} ready, {} consumers (this run's)", d.messages, d.consumers)
                }
                None => println!(
                    "    results: none (this run's queue was cleaned up or expired; `watch` declares it again)"
                ),
            }
            println!("    dead:    {} (shared; see `dispr-coordinator dead-letters`)", q.dead.messages);
        }
        (None, Some(err)) => println!("  queues: unavailable ({err})"),
        (None, None) => {}
    }
    print!("{}", r.failures);
}
