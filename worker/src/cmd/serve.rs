//! `dispr-worker serve`: consume sampling jobs from RabbitMQ until SIGTERM or SIGINT.

use crate::logging::{self, LogFormat};
use crate::pipeline::{JobRunner, RunnerConfig};
use crate::serve::{self, ServeConfig};
use crate::telemetry::{Health, Telemetry};
use dispr_amqp as amqp;
use dispr_proto::queues::{self, QueueNames};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Consume sampling jobs from RabbitMQ, write volumes and features to the run's output, report
/// results, and ack each job once its outputs are durable.
///
/// RabbitMQ closes a channel whose delivery stays unacked longer than its consumer_timeout
/// (30 minutes by default; RabbitMQ 3.10 only sets it server-wide, as `consumer_timeout` in
/// rabbitmq.conf, in milliseconds). A job must finish within it: size jobs (cells per job,
/// samples, steps) to stay well under it, or raise it on the broker, e.g. `consumer_timeout =
/// 7200000` for two hours. A job that overruns it is redelivered and its finished cells skipped.
///
/// On SIGTERM or SIGINT the worker stops taking jobs at once, lets the jobs in hand finish for up
/// to --drain-timeout-secs, returns what is unfinished to the queue and exits 0. Set the pod's
/// terminationGracePeriodSeconds a little above the drain timeout.
///
/// For one Kubernetes Job per message (KEDA's ScaledJob) run `serve --max-jobs 1
/// --idle-timeout-secs 120`: the worker takes one job, acks it once its outputs are durable and
/// exits 0; if another pod got the message first, it exits after two idle minutes.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// RabbitMQ URL (amqp:// or amqps://); credentials in it are never logged.
    #[arg(
        long,
        env = "DISPR_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,

    /// Jobs held at once. With 2, the next job's inputs download while one samples.
    #[arg(long, env = "DISPR_PREFETCH", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// Take this many jobs, finish them and exit 0 (default: no limit).
    #[arg(long, env = "DISPR_MAX_JOBS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_jobs: Option<u64>,

    /// Exit 0 after this many seconds with no job in hand (default: wait for jobs forever).
    #[arg(long, env = "DISPR_IDLE_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: Option<u64>,

    /// Seconds the jobs in hand get to finish after SIGTERM before they are requeued.
    #[arg(long, env = "DISPR_DRAIN_TIMEOUT_SECS", default_value_t = 300)]
    pub drain_timeout_secs: u64,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "DISPR_HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: SocketAddr,

    /// Prefix of the queue and exchange names (tests use one per run).
    #[arg(long, env = "DISPR_QUEUE_PREFIX", default_value = "")]
    pub queue_prefix: String,

    /// Deliveries of a job before RabbitMQ dead-letters it (x-delivery-limit of the jobs queue;
    /// must match what the queue was declared with).
    #[arg(long, env = "DISPR_DELIVERY_LIMIT", default_value_t = queues::DEFAULT_DELIVERY_LIMIT)]
    pub delivery_limit: u32,

    /// Log lines for people (human) or for log collectors (json), on stderr; plain text, with no
    /// colour codes, when stderr is not a terminal. RUST_LOG sets what is logged (default `info`,
    /// with the AMQP client's own lines off; `RUST_LOG=info` shows them too).
    #[arg(long, env = "DISPR_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,

    /// Where model checkpoints are downloaded and kept (default: a folder in the temp dir).
    #[arg(long, env = "DISPR_MODEL_CACHE_DIR")]
    pub model_cache_dir: Option<PathBuf>,

    /// Seconds between two progress messages of a job, at least.
    #[arg(long, env = "DISPR_PROGRESS_SECS", default_value_t = 5)]
    pub progress_secs: u64,

    /// Seconds without sampling progress after which /healthz reports the worker stuck.
    #[arg(long, env = "DISPR_STALL_SECS", default_value_t = 900)]
    pub stall_secs: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    logging::init(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(serve_until_signalled(args));
    // A sampler still running after a drain timeout sits on a blocking thread that cannot be
    // interrupted; its job was requeued, so do not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve_until_signalled(args: Args) -> anyhow::Result<()> {
    let worker = serve::worker_name();
    let telemetry = Arc::new(Telemetry {
        metrics: Default::default(),
        health: Health::new(Duration::from_secs(args.stall_secs)),
    });
    let mut runner_config = RunnerConfig::new(worker.clone());
    if let Some(dir) = args.model_cache_dir {
        runner_config.model_cache_dir = dir;
    }
    runner_config.progress_every = Duration::from_secs(args.progress_secs);
    let runner = JobRunner::new(runner_config, telemetry.clone());
    let config = ServeConfig {
        amqp_url: args.amqp_url,
        queues: QueueNames::with_prefix(&args.queue_prefix),
        prefetch: args.prefetch,
        drain_timeout: Duration::from_secs(args.drain_timeout_secs),
        delivery_limit: args.delivery_limit,
        worker: worker.clone(),
        max_jobs: args.max_jobs,
        idle_timeout: args.idle_timeout_secs.map(Duration::from_secs),
    };

    let shutdown = CancellationToken::new();
    let listener = crate::http::bind(args.http_addr).await?;
    tracing::info!(worker = %worker, http = %args.http_addr, broker = %amqp::redact_url(&config.amqp_url), "worker starting");
    let http = tokio::spawn(crate::http::serve(listener, telemetry, shutdown.clone()));
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let result = serve::serve(&config, &runner, &shutdown).await;
    shutdown.cancel();
    let _ = http.await;
    result
}

/// Cancels `token` on the first SIGTERM or SIGINT.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop the worker with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested: no new jobs");
    token.cancel();
}
