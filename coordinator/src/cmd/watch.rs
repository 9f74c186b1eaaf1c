//! `dispr-coordinator watch`: follows a run live from `dispr.results`, with a progress bar (done,
//! failed, in flight, cells/s, ETA, per-worker rate) and a summary on Ctrl-C or at the end.
//!
//! It starts from what the output store records and merges the store again every
//! `--rescan-secs`, so results consumed by someone else or lost do not stall the count. The
//! results queue is shared by every run on the same queue prefix: results of other runs are
//! acked and dropped (they are progress reports; the store stays the truth), so run one `watch`
//! per queue prefix.

use crate::broker::{Broker, BrokerArgs};
use crate::cells::Finished;
use crate::cmd::run_args::RunRef;
use crate::failures::FailureGroups;
use crate::status::StoredRun;
use crate::tally::Tally;
use crate::telemetry::{self, Metrics};
use anyhow::Context;
use dispr_proto::{JobResult, RunId};
use dispr_store::Store;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
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
}

/// How often a line is logged when stderr is not a terminal (no bar is drawn then).
const LOG_EVERY: Duration = Duration::from_secs(10);

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::init_logging(false);
    crate::runtime::block_on(watch(args))?
}

async fn watch(args: Args) -> anyhow::Result<()> {
    let output = args.run.output_store()?;
    let stored = StoredRun::read(&output, &args.run.run_id).await?;
    let mut tally = Tally::new(stored.cells, &stored.finished);
    let metrics = Arc::new(Metrics::default());
    metrics.update(&mut tally);
    let addr = telemetry::serve(&args.http_addr, metrics.clone()).await?;
    tracing::info!(%addr, "serving /metrics");

    let bar = crate::progress::bar(tally.total() as u64, "watching");
    bar.set_position(tally.finished() as u64);
    let mut rescans =
        spawn_rescans(output.clone(), args.run.run_id.clone(), Duration::from_secs(args.rescan_secs.max(1)));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_log = Instant::now();
    let logging = !std::io::stderr().is_terminal();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let mut first_connect = true;
    'connection: while !tally.complete() {
        let connected = consumer(&args.broker).await;
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
        loop {
            if tally.complete() {
                break 'connection;
            }
            tokio::select! {
                _ = &mut ctrl_c => {
                    let _ = broker.conn.close(200, "watch stopped".into()).await;
                    break 'connection;
                }
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => {
                        match JobResult::decode(&delivery.data) {
                            Ok(result) if result.run_id == args.run.run_id => {
                                let change = tally.apply(&result);
                                metrics.record(&mut tally, &result.worker, change);
                                bar.set_position(tally.finished() as u64);
                            }
                            Ok(_) => tally.foreign_results += 1,
                            Err(err) => tracing::warn!(error = %err, "dropping a message on the results queue that is not a result"),
                        }
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
        eprintln!(
            "note: {} results of other runs were dropped from the shared results queue",
            tally.foreign_results
        );
    }
    let summary = tally.summary();
    // Why cells failed, grouped, from the records (results seen before this watch have no reasons).
    let finished = Finished::read(&output, &args.run.run_id).await?;
    let failures = FailureGroups::read(&output, &args.run.run_id, &finished.failed).await?;
    if args.json {
        let mut out = serde_json::to_value(&summary)?;
        if let Some(map) = out.as_object_mut() {
            map.insert("failures".into(), serde_json::to_value(&failures)?);
        }
        println!("{out}");
    } else {
        print!("run {}: {summary}{failures}", args.run.run_id);
    }
    Ok(())
}

/// Connects and starts consuming the results queue.
async fn consumer(args: &BrokerArgs) -> anyhow::Result<(Broker, lapin::Consumer)> {
    let broker = Broker::connect(args, "dispr-coordinator watch").await?;
    let ch = broker.conn.create_channel().await.context("could not open an AMQP channel")?;
    ch.basic_qos(256, BasicQosOptions::default()).await.context("could not set the prefetch")?;
    let consumer = ch
        .basic_consume(
            broker.names.results.as_str().into(),
            format!("dispr-coordinator-watch-{}", std::process::id()).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("could not consume {:?}", broker.names.results))?;
    Ok((broker, consumer))
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
