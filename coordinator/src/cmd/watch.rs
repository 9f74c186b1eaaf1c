//! `dispr-coordinator watch`: follows a run live from its own results queue
//! (`dispr.results.<run>`), with a progress bar (done, failed, in flight, cells/s, ETA, per-worker
//! rate) and a summary on Ctrl-C or at the end. It exits with the run's outcome
//! ([`crate::exit`]): 0 when every cell is done, 3 or 4 when cells failed.
//!
//! It starts from what the output store records and merges the store again every
//! `--rescan-secs`, so results lost or dropped do not stall the count. Jobs that RabbitMQ
//! dead-lettered reach the run's queue too (through the dead-letter exchange): their cells count
//! as failed, with the reason, and are recorded as such in the store (`failures/<cell>.json`), so
//! the watch ends instead of waiting for ever. Dead letters from before the watch started are
//! read from the dead-letter queue without taking them.
//!
//! The first watch of a run consumes the run's queue as its exclusive consumer; a second watch of
//! the same run follows a private copy of the run's results (an exclusive queue bound the same
//! way, removed when it exits), so neither halves the other's view.

use crate::broker::{Broker, BrokerArgs};
use crate::cells::Finished;
use crate::cmd::dead_letters::{dead_jobs, first_death};
use crate::cmd::run_args::RunRef;
use crate::exit::Unfinished;
use crate::failures::{Death, FailureGroups, record_dead_lettered};
use crate::status::StoredRun;
use crate::tally::Tally;
use crate::telemetry::{self, Metrics};
use anyhow::Context;
use dispr_amqp as amqp;
use dispr_proto::queues::run_match;
use dispr_proto::{Job, JobResult, RunId};
use dispr_store::Store;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunRef,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Address of the coordinator's /metrics and /healthz.
    #[arg(long, env = "DISPR_COORDINATOR_HTTP_ADDR", default_value = "0.0.0.0:9091")]
    pub http_addr: String,
    /// Seconds between re-reads of the output store's records.
    #[arg(long, env = "DISPR_RESCAN_SECS", default_value_t = 60)]
    pub rescan_secs: u64,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 once the run is finished even when some of its cells failed (every cell failed
    /// still exits 4): for a pipeline whose next step, `report`, should run on the cells done.
    #[arg(long)]
    pub allow_failures: bool,
}

/// How often a line is logged when stderr is not a terminal (no bar is drawn then).
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Result messages a watch holds unacked at most.
const PREFETCH: u16 = 256;

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::init_logging(false);
    crate::runtime::block_on(watch(args))?
}

async fn watch(args: Args) -> anyhow::Result<()> {
    let output = args.run.output_store()?;
    let run = &args.run.run_id;
    let stored = StoredRun::read(&output, run).await?;
    let mut tally = Tally::new(stored.cells, &stored.finished);
    let metrics = Arc::new(Metrics::default());
    metrics.update(&mut tally);
    let addr = telemetry::serve(&args.http_addr, metrics.clone()).await?;
    tracing::info!(%addr, "serving /metrics");

    let bar = crate::progress::bar(tally.total() as u64, "watching");
    bar.set_position(tally.finished() as u64);
    let mut rescans =
        spawn_rescans(output.clone(), run.clone(), Duration::from_secs(args.rescan_secs.max(1)));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_log = Instant::now();
    let logging = !std::io::stderr().is_terminal();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let mut first_connect = true;
    let mut interrupted = false;
    'connection: while !tally.complete() {
        let connected = follow(&args.broker, run).await;
        let (broker, mut consumer) = match connected {
            Ok(c) => c,
            Err(err) if first_connect => return Err(err),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "lost the broker; reconnecting");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        first_connect = false;
        // Jobs dead-lettered while nobody watched: read from the dead-letter queue, not taken.
        match dead_jobs(&broker, run).await {
            Ok(dead) => {
                for (job, death) in dead {
                    count_dead_job(&output, &mut tally, &job, &death).await;
                }
                bar.set_position(tally.finished() as u64);
            }
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "could not read the dead-letter queue"),
        }
        loop {
            if tally.complete() {
                break 'connection;
            }
            tokio::select! {
                _ = &mut ctrl_c => {
                    interrupted = true;
                    let _ = broker.conn.close(200, "watch stopped".into()).await;
                    break 'connection;
                }
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => {
                        let headers = delivery.properties.headers().as_ref();
                        if headers.is_some_and(|h| h.inner().contains_key("x-death")) {
                            // A dead-lettered job of this run, routed here by its dispr-run header.
                            match Job::decode(&delivery.data) {
                                Ok(job) => {
                                    let (reason, count, _) = first_death(headers);
                                    let death = Death { reason, count, handbacks: amqp::handbacks(headers) };
                                    count_dead_job(&output, &mut tally, &job, &death).await;
                                }
                                Err(err) => tracing::warn!(error = %err, "dropping a dead letter that is not a job"),
                            }
                        } else {
                            match JobResult::decode(&delivery.data) {
                                Ok(result) if &result.run_id == run => {
                                    let change = tally.apply(&result);
                                    metrics.record(&mut tally, &result.worker, change);
                                }
                                Ok(_) => tally.foreign_results += 1,
                                Err(err) => tracing::warn!(error = %err, "dropping a message on the results queue that is not a result"),
                            }
                        }
                        bar.set_position(tally.finished() as u64);
                        if let Err(err) = delivery.ack(BasicAckOptions::default()).await {
                            tracing::warn!(error = %err, "could not ack a result; it will be seen again");
                        }
                    }
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "the results consumer failed; reconnecting");
                        continue 'connection;
                    }
                    None => {
                        tracing::warn!("the results consumer was cancelled; reconnecting");
                        continue 'connection;
                    }
                },
                Some(finished) = rescans.recv() => {
                    tally.merge(&finished);
                    metrics.update(&mut tally);
                    bar.set_position(tally.finished() as u64);
                }
                _ = tick.tick() => {
                    let line = tally.line();
                    bar.set_message(line.clone());
                    metrics.update(&mut tally);
                    if logging && last_log.elapsed() >= LOG_EVERY {
                        last_log = Instant::now();
                        eprintln!("{} of {} cells done; {line}", tally.done(), tally.total());
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    if tally.foreign_results > 0 {
        eprintln!("note: {} results of other runs were dropped", tally.foreign_results);
    }
    let summary = tally.summary();
    // Why cells failed, grouped, from the records (results seen before this watch have no reasons).
    let finished = Finished::read(&output, run).await?;
    let failures = FailureGroups::read(&output, run, &finished.failed).await?;
    if args.json {
        let mut out = serde_json::to_value(&summary)?;
        if let Some(map) = out.as_object_mut() {
            map.insert("failures".into(), serde_json::to_value(&failures)?);
            map.insert("dead_lettered_jobs".into(), tally.dead_jobs().into());
            map.insert("handbacks".into(), tally.handbacks.into());
        }
        println!("{out}");
    } else {
        print!("run {run}: {summary}{failures}");
        if tally.handbacks > 0 {
            println!("{} jobs were handed back by workers that shut down (not failures)", tally.handbacks);
        }
        if summary.failed > 0 {
            println!("{}", retry_hint(&args.run, tally.dead_jobs()));
        }
    }
    if interrupted && !tally.complete() {
        return Err(Unfinished::Interrupted { remaining: summary.remaining, total: summary.total }.into());
    }
    match Unfinished::of(summary.done, summary.total) {
        Some(Unfinished::SomeFailed { .. }) if args.allow_failures => Ok(()),
        Some(unfinished) => Err(unfinished.into()),
        None => Ok(()),
    }
}

/// How to run the failed cells again once their cause is fixed.
fn retry_hint(run: &RunRef, dead_jobs: usize) -> String {
    let mut hint = String::from("once the cause is fixed, run the failed cells again: ");
    if dead_jobs > 0 {
        hint += &format!(
            "`dispr-coordinator dead-letters --run-id {} --requeue` puts the {dead_jobs} dead-lettered jobs back; ",
            run.run_id
        );
    }
    hint += &format!(
        "`dispr-coordinator submit` with the run's flags and --retry-failed publishes every failed cell again (run id {}, \
         output {})",
        run.run_id, run.output
    );
    hint
}

/// Counts a dead-lettered job's unfinished cells as failed, and records why in the store (so that
/// `status`, `report` and a later watch agree).
async fn count_dead_job(output: &Store, tally: &mut Tally, job: &Job, death: &Death) {
    let failed = match record_dead_lettered(output, job, death).await {
        Ok(cells) => cells,
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), job = %job.job_id,
                "could not record the cells of a dead-lettered job as failed; counting them anyway");
            job.cells.clone()
        }
    };
    let newly = tally.dead_lettered(&job.job_id, &failed);
    if newly > 0 {
        tracing::warn!(job = %job.job_id, cells = newly, reason = %death.reason, deliveries = death.count,
            "RabbitMQ dead-lettered a job of this run; its unfinished cells count as failed");
    }
}

/// Connects and starts consuming the run's results: its own queue as the exclusive consumer, or,
/// when another watch holds that, a private queue bound to the run's results.
async fn follow(args: &BrokerArgs, run: &RunId) -> anyhow::Result<(Broker, lapin::Consumer)> {
    let broker = Broker::connect(args, "dispr-coordinator watch").await?;
    // Declared by submit; again here in case `cleanup` removed it or it expired unwatched.
    broker.declare_run(run).await?;
    let queue = broker.names.run_results(run);
    let tag = format!("dispr-coordinator-watch-{}", std::process::id());
    let ch = results_channel(&broker).await?;
    let exclusive = BasicConsumeOptions { exclusive: true, ..BasicConsumeOptions::default() };
    match ch.basic_consume(queue.as_str().into(), tag.as_str().into(), exclusive, FieldTable::default()).await
    {
        Ok(consumer) => return Ok((broker, consumer)),
        Err(err) if is_access_refused(&err) => {
            tracing::info!(%queue, "another watch consumes this run's queue; following a private copy of its results");
        }
        Err(err) => return Err(err).with_context(|| format!("could not consume {queue:?}")),
    }
    // The refused consume closed that channel.
    let ch = results_channel(&broker).await?;
    let private = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .context("could not declare a private results queue")?;
    ch.queue_bind(
        private.name().clone(),
        broker.names.runs_exchange.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        amqp::field_table(&run_match(run)),
    )
    .await
    .context("could not bind a private results queue")?;
    let consumer = ch
        .basic_consume(
            private.name().clone(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("could not consume a private results queue")?;
    Ok((broker, consumer))
}

async fn results_channel(broker: &Broker) -> anyhow::Result<lapin::Channel> {
    let ch = broker.conn.create_channel().await.context("could not open an AMQP channel")?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await.context("could not set the prefetch")?;
    Ok(ch)
}

/// RabbitMQ's ACCESS_REFUSED: here, another consumer holds the queue exclusively.
fn is_access_refused(err: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(err.kind(), lapin::ErrorKind::ProtocolError(e) if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)))
}

/// Re-reads the store's records every `every`, in the background.
fn spawn_rescans(output: Store, run: RunId, every: Duration) -> tokio::sync::mpsc::Receiver<Finished> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.tick().await; // the first tick is immediate; the store was just read
        loop {
            interval.tick().await;
            match Finished::read(&output, &run).await {
                Ok(finished) => {
                    if tx.send(finished).await.is_err() {
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "could not re-read the run's records")
                }
            }
        }
    });
    rx
}
