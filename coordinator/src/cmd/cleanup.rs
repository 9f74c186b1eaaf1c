//! `dispr-coordinator cleanup`: deletes a finished run's results queue (and with it its binding
//! to the runs exchange), or those of every finished run under an output. A run whose cells are
//! not all finished still has jobs on the queue or with workers, whose results go to that queue:
//! it is refused unless `--force`. The shared jobs and dead-letter queues stay; the shared
//! results queue of earlier versions (`dispr.results`) is deleted once it is empty and unused.
//! Queues left behind also expire on their own (`x-expires`, 14 days unused).

use crate::broker::{Broker, BrokerArgs};
use crate::status::StoredRun;
use anyhow::Context;
use dispr_proto::RunId;
use dispr_store::Store;
use lapin::options::QueueDeleteOptions;

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["run_id", "all_finished"]))]
pub struct Args {
    /// The runs' output location, as given to submit.
    #[arg(long, env = "DISPR_OUTPUT")]
    pub output: String,
    /// The run whose queue to delete.
    #[arg(long)]
    pub run_id: Option<RunId>,
    /// Every finished run under --output (found by listing <output>/runs/, which lists every
    /// object there: slow for runs of millions of cells on S3).
    #[arg(long)]
    pub all_finished: bool,
    /// Delete the queue of a run that is not finished: the results its remaining jobs report are
    /// then dropped (the output store still records every cell; `watch` declares the queue again).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub broker: BrokerArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::init_logging(false);
    crate::runtime::block_on(cleanup(args))?
}

async fn cleanup(args: Args) -> anyhow::Result<()> {
    let output = Store::open(&args.output)
        .with_context(|| format!("opening the output location {:?}", args.output))?;
    let runs = match &args.run_id {
        Some(run) => vec![run.clone()],
        None => runs_under(&output).await?,
    };
    // Which runs may go: every cell finished, or --force.
    let mut chosen = Vec::new();
    for run in runs {
        let stored = StoredRun::read(&output, &run).await?;
        let remaining = stored.counts().remaining();
        if remaining == 0 || args.force {
            chosen.push(run);
        } else if args.run_id.is_some() {
            anyhow::bail!(
                "run {run} is not finished: {remaining} of {} cells are still queued or being computed, and their \
                 results go to its queue. Clean up once it is finished (`dispr-coordinator status` shows it), or pass \
                 --force to delete the queue now (their results are then dropped; the store still records every cell)",
                stored.cells
            );
        } else {
            println!("run {run}: not finished ({remaining} cells remaining); its queue stays");
        }
    }
    let broker = Broker::connect(&args.broker, "dispr-coordinator cleanup").await?;
    let result = delete_queues(&broker, &chosen).await;
    broker.close().await;
    result
}

/// Deletes the run queues of `runs` and, when empty and unused, the old shared results queue.
async fn delete_queues(broker: &Broker, runs: &[RunId]) -> anyhow::Result<()> {
    for run in runs {
        let queue = broker.names.run_results(run);
        let ch = broker.conn.create_channel().await.context("could not open an AMQP channel")?;
        let messages = ch
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .with_context(|| format!("could not delete the queue {queue:?}"))?;
        let _ = ch.close(200, "deleted".into()).await;
        println!("run {run}: deleted its queue {queue} ({messages} messages left in it)");
    }
    // Refused by the broker (a channel error) when it holds messages or has a consumer.
    let ch = broker.conn.create_channel().await.context("could not open an AMQP channel")?;
    let legacy = &broker.names.legacy_results;
    let options = QueueDeleteOptions { if_unused: true, if_empty: true, ..QueueDeleteOptions::default() };
    match ch.queue_delete(legacy.as_str().into(), options).await {
        Ok(_) => {
            let _ = ch.close(200, "deleted".into()).await;
        }
        Err(_) => println!(
            "the shared results queue {legacy} of earlier versions still has messages or a consumer; it stays (a \
             watch of an older version may use it)"
        ),
    }
    Ok(())
}

/// The runs under `output`: the folders of `runs/` that hold a manifest.
async fn runs_under(output: &Store) -> anyhow::Result<Vec<RunId>> {
    let listed = output.list("runs/").await.with_context(|| format!("listing {}", output.uri_of("runs/")))?;
    Ok(listed
        .iter()
        .filter_map(|key| key.strip_prefix("runs/")?.strip_suffix("/manifest.json"))
        .filter_map(|run| RunId::new(run).ok())
        .collect())
}
