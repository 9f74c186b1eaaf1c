//! `dispr-coordinator submit`: writes the run manifest, then publishes a job for every cell
//! that is neither done nor failed for good, with publisher confirms.

use crate::broker::{Broker, BrokerArgs};
use crate::cmd::run_args::{PlanArgs, RunArgs};
use crate::failures::forget;
use crate::manifest::ManifestState;
use crate::prepare::prepare;
use crate::submit::{self, DEFAULT_BATCH_JOBS, JobSink, Markers, Sharding};
use dispr_proto::Job;
use futures::future::BoxFuture;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Jobs per batch: a restarted submit republishes at most the batches that were not yet
    /// confirmed when it stopped.
    #[arg(long, env = "DISPR_BATCH_JOBS", default_value_t = DEFAULT_BATCH_JOBS)]
    pub batch_jobs: u32,
    /// Publish every unfinished cell again, even those an earlier submit already published (for
    /// a queue that was purged or lost).
    #[arg(long)]
    pub republish: bool,
    /// Publish at most this many jobs per second (default: as fast as the broker confirms).
    #[arg(long, env = "DISPR_MAX_JOBS_PER_SEC")]
    pub max_jobs_per_sec: Option<f64>,
    /// Print the outcome as JSON on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Publish the cells that failed for good again (their failure records are deleted first),
    /// once the cause is fixed.
    #[arg(long)]
    pub retry_failed: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::init_logging(false);
    crate::runtime::block_on(submit(args))?
}

async fn submit(args: Args) -> anyhow::Result<()> {
    // Flags first: a refused command writes nothing.
    if let Some(rate) = args.max_jobs_per_sec {
        anyhow::ensure!(rate > 0.0, "--max-jobs-per-sec must be positive, not {rate}");
    }
    let cells_per_job = args.plan.cells_per_job(&args.run)?;
    let spec = args.run.spec();
    let mut prepared = prepare(&spec).await?;
    let run = &prepared.manifest.run_id.clone();
    match prepared.state {
        ManifestState::Created => eprintln!("run {run}: manifest written under {}", prepared.output.uri()),
        ManifestState::Existing => eprintln!("run {run}: manifest matches the existing one; resuming"),
    }
    warn_about_local_folders(&prepared.manifest);
    let broker = Broker::connect(&args.broker, "dispr-coordinator submit").await?;
    // Before any job: the workers' results need the run's queue to go to.
    broker.declare_run(run).await?;
    let sharding = Sharding { cells_per_job, batch_jobs: args.batch_jobs };
    let mut markers = Markers::load(&prepared.output, run, &prepared.cells, sharding, args.republish).await?;
    if args.retry_failed && !prepared.finished.failed.is_empty() {
        let failed = std::mem::take(&mut prepared.finished.failed);
        let forgotten = forget(&prepared.output, run, &failed).await?;
        markers.uncover(&prepared.cells, sharding, &failed);
        eprintln!("run {run}: publishing {forgotten} failed cells again (--retry-failed)");
    }
    let sink = broker.job_sink().await?;
    let bar = crate::progress::bar(prepared.cells.len() as u64, "submitting");
    let mut sink = Throttled { inner: sink, rate: args.max_jobs_per_sec, started: Instant::now(), sent: 0 };
    let report = submit::publish(
        &prepared.manifest,
        &prepared.cells,
        &prepared.finished,
        sharding,
        &mut sink,
        Some(&markers),
        &bar,
    )
    .await;
    bar.finish_and_clear();
    // The publishing channel before its connection: a connection closed under an open channel
    // makes lapin log "invalid channel state: Closing" at the end of a clean run.
    sink.inner.close().await;
    broker.close().await;
    let report = report?;
    if args.json {
        let out = serde_json::json!({ "run_id": run, "report": report });
        println!("{out}");
    } else {
        println!("run {run}: {report}");
        if report.cells_already_submitted > 0 {
            println!(
                "{} cells were published by an earlier submit and are not finished yet (queued or being computed); \
                 if the queue was purged, submit again with --republish",
                report.cells_already_submitted
            );
        }
        println!("follow it with: {}", watch_command(prepared.output.uri(), run, &args.broker));
    }
    Ok(())
}

/// The `watch` command line for this run, with every broker flag that differs from its default
/// (the URL only by name: it may hold a password).
fn watch_command(output: &str, run: &dispr_proto::RunId, broker: &BrokerArgs) -> String {
    let mut line = format!("dispr-coordinator watch --output {output} --run-id {run}");
    if !broker.queue_prefix.is_empty() {
        line += &format!(" --queue-prefix {}", broker.queue_prefix);
    }
    if broker.delivery_limit != dispr_proto::queues::DEFAULT_DELIVERY_LIMIT {
        line += &format!(" --delivery-limit {}", broker.delivery_limit);
    }
    if broker.amqp_url != crate::broker::DEFAULT_AMQP_URL {
        line += " (with this submit's --amqp-url / DISPR_AMQP_URL)";
    }
    line
}

/// Warns about locations that are folders of this machine: workers may run on other machines,
/// where the same path names another folder or none (a dataset named as a local folder made every
/// cell of a run fail as "not in the dataset" on workers started elsewhere).
fn warn_about_local_folders(manifest: &dispr_proto::Manifest) {
    let model = manifest.model.as_ref().map(|m| m.uri.as_str());
    let places = [
        ("dataset", Some(manifest.dataset_uri.as_str())),
        ("output", Some(manifest.output_uri.as_str())),
        ("model", model),
    ];
    for (what, uri) in places {
        let Some(uri) = uri else { continue };
        if !uri.contains("://") || uri.starts_with("file://") {
            tracing::warn!(
                "the {what} {uri} is a folder of this machine: a worker reads that path on its own machine, so \
                 every worker must see this folder at that same path (a shared mount), or use s3://bucket/prefix"
            );
        }
    }
}

/// Spaces out publishes to at most `rate` jobs per second (when set), for brokers shared with
/// other work.
struct Throttled<S> {
    inner: S,
    rate: Option<f64>,
    started: Instant,
    sent: u64,
}

impl<S: JobSink> JobSink for Throttled<S> {
    async fn send(&mut self, job: &Job) -> anyhow::Result<BoxFuture<'static, anyhow::Result<()>>> {
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_secs_f64(self.sent as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        self.sent += 1;
        self.inner.send(job).await
    }
}
