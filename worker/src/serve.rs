//! The queue consumer behind `dispr-worker serve`: takes jobs from RabbitMQ, runs them through
//! the [`JobRunner`], publishes results with publisher confirms and acks a job only once its
//! outputs are durable and its results confirmed.
//!
//! Delivery rules (DESIGN.md, "The distributed run"):
//! - manual acks, `prefetch` jobs in hand at most; they run concurrently but sample one batch at
//!   a time (the runner's compute turn), so downloads and uploads overlap sampling;
//! - a message that is not a job of this schema version is rejected without requeue, which
//!   dead-letters it; nothing is published for it (its run cannot be named reliably);
//! - a job whose storage kept failing is nacked and requeued; a job that cannot record anything
//!   (unusable output URI) is rejected and dead-lettered;
//! - on shutdown: stop consuming at once, give the jobs in hand `drain_timeout` to finish, and hand
//!   the rest back. A hand-back is not a failure: the worker publishes a copy of the job (with
//!   publisher confirms) carrying a `dispr-handbacks` count one higher, then acks the original.
//!   A nack with requeue would count toward the quorum queue's delivery limit like a crash (in
//!   RabbitMQ 3.x, every return does), so a long job on autoscaled workers would be
//!   dead-lettered after a few scale-ins. A worker that dies (kill -9, OOM) or whose job fails
//!   still returns it by a plain requeue, which counts: poison jobs are still dead-lettered after
//!   the limit. The same distinction as Celery's `acks_late` with `reject_on_worker_lost`;
//!   should the copy not be confirmed (broker gone), the job is nacked back instead, so it is
//!   never lost;
//! - a lost connection is re-established with backoff; whatever was unacked is redelivered by the
//!   broker and the redelivery skips the cells already done;
//! - with `max_jobs` (one Kubernetes Job per message, KEDA's ScaledJob) the worker cancels its
//!   consumer as it takes its last job, before acking anything, so the broker never hands it a
//!   message it would not run; it exits once the jobs in hand are settled. With `idle_timeout`
//!   it also exits after that long without a job (a ScaledJob pod whose message went elsewhere).

use crate::pipeline::{JobError, JobRunner, ResultSink};
use dispr_amqp as amqp;
use dispr_proto::queues::{HANDBACKS_HEADER, QueueNames};
use dispr_proto::{Job, JobResult, ResultBody, RunId};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, BasicProperties, Channel, PublisherConfirm};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings of the consumer.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub amqp_url: String,
    pub queues: QueueNames,
    /// Jobs in hand at most (the channel's prefetch count).
    pub prefetch: u16,
    /// Time the jobs in hand get to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// `x-delivery-limit` of the jobs queue when this worker declares it.
    pub delivery_limit: u32,
    /// This worker's name: the AMQP connection name, consumer tag and `worker` of results.
    pub worker: String,
    /// Jobs to take before exiting (None: no limit).
    pub max_jobs: Option<u64>,
    /// Exit after this long with no job in hand (None: wait for jobs forever).
    pub idle_timeout: Option<Duration>,
}

/// Why a broker session ended.
enum SessionEnd {
    /// Shutdown requested and done.
    Shutdown,
    /// The connection or channel went away; reconnect.
    Lost(anyhow::Error),
}

/// Consumes jobs until `shutdown` is cancelled, reconnecting whenever the broker goes away.
/// Returns `Ok` after a clean drain; `Err` only for what reconnecting cannot fix (a malformed
/// URL, refused credentials, a topology that conflicts with existing queues).
pub async fn serve(
    config: &ServeConfig,
    runner: &JobRunner,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let health = &runner.telemetry().health;
    let mut delay = Duration::from_secs(1);
    // Jobs still to take; counted across reconnections.
    let mut remaining = config.max_jobs.unwrap_or(u64::MAX);
    loop {
        if shutdown.is_cancelled() || remaining == 0 {
            return Ok(());
        }
        let end = session(config, runner, shutdown, &mut remaining).await;
        health.set_broker_connected(false);
        match end {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Lost(err)) => {
                tracing::warn!(error = %format!("{err:#}"), "lost RabbitMQ; reconnecting");
                delay = Duration::from_secs(1);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(err) if amqp::is_permanent(&err) => return Err(err),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), retry_in_s = delay.as_secs(), "cannot reach RabbitMQ; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Why a session stopped taking jobs.
enum Stop {
    /// A shutdown signal.
    Signal,
    /// `max_jobs` taken and settled, or idle for `idle_timeout`: exit like a shutdown.
    Done(&'static str),
    /// The connection or channel went away.
    Lost(anyhow::Error),
}

/// One connection's life: set up, consume, and end on shutdown or loss. `Err` is a failure to
/// set up. `remaining` counts down the jobs this worker may still take.
async fn session(
    config: &ServeConfig,
    runner: &JobRunner,
    shutdown: &CancellationToken,
    remaining: &mut u64,
) -> anyhow::Result<SessionEnd> {
    let conn = tokio::select! {
        _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
        conn = amqp::connect(&config.amqp_url, &config.worker) => conn?,
    };
    let consume_ch = conn.create_channel().await?;
    amqp::declare_topology(&consume_ch, &config.queues, config.delivery_limit).await?;
    // Never more deliveries outstanding than jobs left to take: the broker would hand this worker
    // messages it then returns, which counts against their delivery limit.
    let prefetch = u16::try_from(*remaining).unwrap_or(u16::MAX).min(config.prefetch.max(1));
    consume_ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let publish_ch = amqp::confirm_channel(&conn).await?;
    let mut consumer = consume_ch
        .basic_consume(
            config.queues.jobs.as_str().into(),
            config.worker.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let health = &runner.telemetry().health;
    health.set_broker_connected(true);
    tracing::info!(queue = %config.queues.jobs, prefetch, "waiting for jobs");

    let ctx = Ctx { config, runner, publish_ch: &publish_ch };
    let mut in_hand = InHand::default();
    let stop = loop {
        if *remaining == 0 && in_hand.jobs.is_empty() {
            break Stop::Done("took its --max-jobs jobs");
        }
        let idle_for = if in_hand.jobs.is_empty() { config.idle_timeout } else { None };
        tokio::select! {
            _ = shutdown.cancelled() => break Stop::Signal,
            _ = sleep_or_never(idle_for) => break Stop::Done("had no job for its --idle-timeout-secs"),
            Some((tag, outcome)) = in_hand.jobs.next(), if !in_hand.jobs.is_empty() => {
                in_hand.held.remove(&tag);
                if let Handled::Lost(err) = outcome {
                    break Stop::Lost(err);
                }
            }
            next = consumer.next(), if *remaining > 0 && in_hand.jobs.len() < usize::from(prefetch) => match next {
                Some(Ok(delivery)) => {
                    *remaining -= 1;
                    if *remaining == 0 {
                        // Before any ack frees a prefetch slot (the channel keeps the order).
                        let _ = consume_ch.basic_cancel(config.worker.as_str().into(), BasicCancelOptions::default()).await;
                    }
                    let tag = delivery.delivery_tag;
                    in_hand.held.insert(tag, Held::of(&delivery));
                    let ctx = &ctx;
                    in_hand.jobs.push(Box::pin(async move { (tag, ctx.handle(delivery).await) }));
                }
                Some(Err(err)) => break Stop::Lost(err.into()),
                None => break Stop::Lost(anyhow::anyhow!("the broker cancelled the consumer (was the queue deleted?)")),
            }
        }
    };

    if let Stop::Lost(err) = stop {
        // The broker requeues what this connection held, but the jobs in hand keep computing:
        // their outputs are durable and their redelivery, here or elsewhere, skips the done cells.
        if !in_hand.jobs.is_empty() {
            tracing::warn!(error = %format!("{err:#}"), jobs = in_hand.jobs.len(),
                "lost RabbitMQ with jobs in hand; finishing their outputs before reconnecting");
        }
        tokio::select! {
            _ = in_hand.finish() => {}
            _ = shutdown.cancelled() => {}
        }
        // In case only the channel failed: do not leave a half-working connection behind.
        let _ = conn.close(200, "reconnecting".into()).await;
        return Ok(SessionEnd::Lost(err));
    }

    // Shutdown: stop consuming at once, then let the jobs in hand finish within the drain time.
    if let Stop::Done(why) = stop {
        tracing::info!("exiting: the worker {why}");
    }
    health.set_draining();
    let _ = consume_ch.basic_cancel(config.worker.as_str().into(), BasicCancelOptions::default()).await;
    if !in_hand.jobs.is_empty() {
        tracing::info!(
            jobs = in_hand.jobs.len(),
            drain_timeout_s = config.drain_timeout.as_secs(),
            "shutting down: finishing the jobs in hand"
        );
    }
    // Deliveries the broker sent before the cancel and that were never started go back too,
    // as hand-backs: left to the channel's close, each would count as a failed delivery.
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(UNSTARTED_WAIT, consumer.next()).await {
        ctx.hand_back(Held::of(&delivery)).await;
    }
    if tokio::time::timeout(config.drain_timeout, in_hand.finish()).await.is_err() {
        for held in in_hand.held.into_values() {
            ctx.hand_back(held).await;
        }
    }
    // Closing the channel returns anything still unsettled to the queue (a hand-back that could
    // not be acked).
    let _ = consume_ch.close(200, "worker shutting down".into()).await;
    let _ = conn.close(200, "worker shutting down".into()).await;
    tracing::info!("stopped consuming; bye");
    Ok(SessionEnd::Shutdown)
}

/// How long a stopping worker waits for deliveries already on their way to it.
const UNSTARTED_WAIT: Duration = Duration::from_millis(200);

/// Sleeps for `duration`, or forever when there is none.
async fn sleep_or_never(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

type HandleFuture<'a> = std::pin::Pin<Box<dyn Future<Output = (u64, Handled)> + Send + 'a>>;

/// The jobs being handled, and what a drain that runs out of time needs to hand them back.
#[derive(Default)]
struct InHand<'a> {
    jobs: FuturesUnordered<HandleFuture<'a>>,
    held: HashMap<u64, Held>,
}

impl InHand<'_> {
    /// Waits for every job in hand to settle.
    async fn finish(&mut self) {
        while let Some((tag, _)) = self.jobs.next().await {
            self.held.remove(&tag);
        }
    }
}

/// A delivery in hand, as much of it as handing it back takes.
struct Held {
    acker: Acker,
    data: Vec<u8>,
    properties: BasicProperties,
}

impl Held {
    fn of(delivery: &lapin::message::Delivery) -> Self {
        Self {
            acker: delivery.acker.clone(),
            data: delivery.data.clone(),
            properties: delivery.properties.clone(),
        }
    }
}

/// How handling one delivery ended.
enum Handled {
    /// Acked, nacked or rejected as it should be.
    Settled,
    /// The channel is gone: the broker will redeliver what was not acked.
    Lost(anyhow::Error),
}

struct Ctx<'a> {
    config: &'a ServeConfig,
    runner: &'a JobRunner,
    publish_ch: &'a Channel,
}

impl Ctx<'_> {
    /// Puts an unfinished job back on the queue without counting it as a failed delivery (see
    /// the module's notes): a confirmed copy with one more hand-back, then an ack of this one.
    async fn hand_back(&self, held: Held) {
        let handbacks = amqp::handbacks(held.properties.headers().as_ref()).saturating_add(1);
        let properties = with_handbacks(held.properties, handbacks);
        let copied = async {
            let confirm =
                amqp::publish_with(self.publish_ch, &self.config.queues.jobs, &held.data, properties).await?;
            amqp::confirmed(confirm, &self.config.queues.jobs).await
        };
        if let Err(err) = copied.await {
            tracing::warn!(error = %format!("{err:#}"),
                "could not hand the job back as a copy; returning it to the queue instead (that return counts as a delivery)");
            let _ = held.acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
            return;
        }
        if let Err(err) = held.acker.ack(BasicAckOptions::default()).await {
            // The copy is queued; the original comes back too when the channel closes. Both run
            // to the same outputs, and the second skips the cells the first finished.
            tracing::warn!(error = %err, "handed the job back, but could not ack the original; it may run twice");
        }
        self.runner.telemetry().metrics.jobs.get_or_create(&[("outcome", "handed_back")]).inc();
        let Ok(job) = Job::decode(&held.data) else { return };
        tracing::warn!(run = %job.run_id, job = %job.job_id, handbacks,
            "handed an unfinished job back to the queue for another worker (not a failure: it does not count toward the delivery limit)");
        self.runner.record_handback(&job, handbacks).await;
        let sink = self.sink(&job);
        sink.report(ResultBody::HandedBack { handbacks }).await;
        sink.all_confirmed().await;
    }

    /// Where `job`'s results go.
    fn sink(&self, job: &Job) -> AmqpSink<'_> {
        AmqpSink {
            ch: self.publish_ch,
            exchange: &self.config.queues.runs_exchange,
            run: job.run_id.clone(),
            job_id: job.job_id.clone(),
            worker: &self.config.worker,
            failed: AtomicBool::new(false),
            unconfirmed: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn handle(&self, delivery: lapin::message::Delivery) -> Handled {
        let metrics = &self.runner.telemetry().metrics;
        let acker = &delivery.acker;
        let job = match Job::decode(&delivery.data) {
            Ok(job) => job,
            Err(err) => {
                tracing::error!(error = %err, queue = %self.config.queues.jobs, dead_letter_queue = %self.config.queues.dead,
                    "rejecting a message that is not a job this worker can run; it goes to the dead-letter queue");
                metrics.jobs.get_or_create(&[("outcome", "rejected")]).inc();
                return settle(acker.reject(BasicRejectOptions { requeue: false }).await);
            }
        };
        let sink = self.sink(&job);
        sink.report(ResultBody::Started { cells: job.cells.len() as u32 }).await;
        // Runs to the end even after a shutdown signal: the session's drain decides how long
        // it may take, and hands the job back if it runs out of time.
        match self.runner.run(&job, &sink).await {
            Ok(_) if !sink.all_confirmed().await => {
                // Outputs are durable but some result did not reach the broker: give the job back;
                // its redelivery skips the done cells and reports them again.
                metrics.jobs.get_or_create(&[("outcome", "requeued")]).inc();
                settle(acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await)
            }
            Ok(_) => {
                metrics.jobs.get_or_create(&[("outcome", "done")]).inc();
                settle(acker.ack(BasicAckOptions::default()).await)
            }
            Err(JobError::Retriable(err)) => {
                tracing::warn!(error = %format!("{err:#}"), "returning the job to the queue for another attempt");
                metrics.jobs.get_or_create(&[("outcome", "requeued")]).inc();
                settle(acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await)
            }
            Err(JobError::Unusable(err)) => {
                tracing::error!(error = %format!("{err:#}"), dead_letter_queue = %self.config.queues.dead,
                    "rejecting a job that cannot record its results; it goes to the dead-letter queue");
                metrics.jobs.get_or_create(&[("outcome", "rejected")]).inc();
                settle(acker.reject(BasicRejectOptions { requeue: false }).await)
            }
        }
    }
}

fn settle(result: lapin::Result<bool>) -> Handled {
    match result {
        Ok(_) => Handled::Settled,
        Err(err) => Handled::Lost(anyhow::Error::new(err).context("could not settle a delivery")),
    }
}

/// Publishes a job's results to its run's queue (through the runs exchange) with confirms. It
/// does not wait for each confirm (one round trip per cell would pace the job);
/// [`AmqpSink::all_confirmed`] waits for them all before the job is acked. After a failed
/// publish it stops trying (the channel is most likely gone) and remembers, so the job is not
/// acked. A result no queue takes (the run's queue was cleaned up, or expired unwatched) is not
/// a failure: results are progress reports, and the store records every cell.
struct AmqpSink<'a> {
    ch: &'a Channel,
    exchange: &'a str,
    run: RunId,
    job_id: String,
    worker: &'a str,
    failed: AtomicBool,
    unconfirmed: std::sync::Mutex<Vec<PublisherConfirm>>,
}

impl AmqpSink<'_> {
    fn fail(&self, err: anyhow::Error) {
        tracing::warn!(error = %format!("{err:#}"), "could not publish a result; the job will not be acked");
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Waits for the confirms of every result published so far: true when the broker has them
    /// all, durably.
    async fn all_confirmed(&self) -> bool {
        // A poisoned lock only means a publisher panicked while pushing; the list is still valid.
        let pending = std::mem::take(&mut *self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()));
        let mut unroutable = 0;
        for confirm in pending {
            match amqp::routed(confirm, self.exchange).await {
                Ok(true) => {}
                Ok(false) => unroutable += 1,
                Err(err) => self.fail(err),
            }
        }
        if unroutable > 0 {
            tracing::warn!(run = %self.run, results = unroutable,
                "no queue takes this run's results (its queue was removed by `cleanup` or expired unwatched); \
                 they are dropped, and the output store still records every cell");
        }
        !self.failed.load(Ordering::Relaxed)
    }
}

impl ResultSink for AmqpSink<'_> {
    async fn report(&self, body: ResultBody) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        let message = JobResult::new(self.run.clone(), self.job_id.clone(), self.worker, body).encode();
        match amqp::publish_result(self.ch, self.exchange, &self.run, &message).await {
            Ok(confirm) => self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()).push(confirm),
            Err(err) => self.fail(err),
        }
    }
}

/// `properties` with the hand-back count set to `handbacks`, and without the broker's own
/// `x-` headers (delivery count, deaths), which belong to the original message.
fn with_handbacks(properties: BasicProperties, handbacks: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(old) = properties.headers() {
        for (key, value) in old.inner() {
            if !key.as_str().starts_with("x-") && key.as_str() != HANDBACKS_HEADER {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    headers.insert(HANDBACKS_HEADER.into(), AMQPValue::LongLongInt(i64::from(handbacks)));
    properties.with_headers(headers)
}

/// A name for this worker: the host (the pod name on Kubernetes) and the process id.
pub fn worker_name() -> String {
    format!("{}-{}", host_name().unwrap_or_else(|| "worker".into()), std::process::id())
}

/// This machine's name (the pod name on Kubernetes), when it has one.
pub fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
