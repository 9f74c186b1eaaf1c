//! The job pipeline: one [`Job`] from inputs to durable outputs, independent of how the job
//! arrived (RabbitMQ in `serve`, an in-process queue in the coordinator's `local` mode).
//!
//! A job's cells go through three stages, one module each:
//! 1. [`inputs`]: skip the cells whose features record exists (they are done); find the job's
//!    sampler; read, check and decode each cell's image, mask and ground truth; derive its seeds.
//! 2. [`sample`]: sample the K volumes of every cell of the job in one batch, on a blocking
//!    thread, one batch per worker at a time, forwarding progress.
//! 3. [`outputs`]: per cell, compute the features, write each volume and the ensemble's
//!    probability and standard-deviation volumes, then `features/<cell>.json` last, with
//!    put-if-absent (the done-marker); record the cells that failed for good
//!    (`failures/<cell>.json`) and the job (`jobs/<job>.json`).
//!
//! The cells of a job are independent, so their object operations run [`IO_CONCURRENCY`] at a
//! time and their features on up to one blocking thread per core: one cell at a time would leave
//! the worker waiting on round trips. Every step says how it went wrong with one [`Setback`]:
//! bad input fails the cell for good (a failure record and a `CellFailed` result), while storage
//! trouble is retried and then hands the job back as [`JobError::Retriable`] so the caller can
//! requeue it. Results go to a [`ResultSink`] as they happen, in the order the cells finish.

mod inputs;
mod outputs;
mod sample;

use crate::model_cache::{ModelCache, SamplerError};
use crate::retry::{Retry, StoreFailure};
use crate::telemetry::Telemetry;
use dispr_proto::{CellId, Job, ResultBody, SCHEMA_VERSION, keys};
use dispr_store::{Store, StoreError};
use inputs::Labels;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Object operations of a job in flight at once. Enough to hide round trips to S3 (a few ms
/// each) behind one another; few enough not to flood the store or hold many volumes at once.
const IO_CONCURRENCY: usize = 16;

/// Where a job's results go. `report` returns when the result is on its way; delivery failures
/// are the sink's business (the AMQP sink remembers them and the job is then not acked).
pub trait ResultSink: Send + Sync {
    fn report(&self, body: ResultBody) -> impl Future<Output = ()> + Send;

    /// The worker name the job's record carries, when the sink runs several workers over one
    /// runner (the coordinator's `local` mode); otherwise the runner's own name.
    fn worker(&self) -> Option<&str> {
        None
    }
}

/// An in-process sink: results go to a channel (the coordinator's `local` mode).
impl ResultSink for tokio::sync::mpsc::UnboundedSender<ResultBody> {
    async fn report(&self, body: ResultBody) {
        // A receiver that went away no longer wants results; the outputs are in the store anyway.
        let _ = self.send(body);
    }
}

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Storage or compute trouble that may pass: put the job back for a later attempt. Cells
    /// already done stay done (their features exist) and are skipped next time.
    #[error("{0:#}")]
    Retriable(anyhow::Error),
    /// Nothing can be recorded for this job (its output URI cannot be opened): reject it so that
    /// it is dead-lettered, with this reason in the log.
    #[error("{0:#}")]
    Unusable(anyhow::Error),
}

/// How a step of the pipeline went wrong: the one outcome type of every stage.
#[derive(Debug)]
enum Setback {
    /// The cell can never succeed as submitted (its input is wrong, or, for a step of the whole
    /// job, the job is): record why and go on with the other cells.
    FailedForGood(anyhow::Error),
    /// Trouble that may pass: stop the job and hand it back for a later attempt.
    HandBack(JobError),
}

impl Setback {
    /// The one of two setbacks to act on: handing the job back comes before failing a cell for
    /// good (the cell may be fine once the storage is), and otherwise the first.
    fn graver(self, other: Self) -> Self {
        match (&self, &other) {
            (Setback::FailedForGood(_), Setback::HandBack(_)) => other,
            _ => self,
        }
    }
}

impl From<JobError> for Setback {
    fn from(e: JobError) -> Self {
        Self::HandBack(e)
    }
}

impl From<SamplerError> for Setback {
    fn from(e: SamplerError) -> Self {
        match e {
            SamplerError::Permanent(e) => Self::FailedForGood(e),
            SamplerError::Retriable(e) => Self::HandBack(JobError::Retriable(e)),
        }
    }
}

/// What a step gives: its value, or how it went wrong.
type Step<T> = Result<T, Setback>;

/// A cell that failed for good, waiting for its failure to be recorded.
struct CellFault {
    cell: CellId,
    error: anyhow::Error,
}

/// Sorts the outcome of a step of `cell`: its value, or `None` with the cell's failure added to
/// `faults`; trouble that hands the job back is the error.
fn triage<T>(step: Step<T>, cell: &CellId, faults: &mut Vec<CellFault>) -> Result<Option<T>, JobError> {
    match step {
        Ok(value) => Ok(Some(value)),
        Err(Setback::FailedForGood(error)) => {
            faults.push(CellFault { cell: cell.clone(), error });
            Ok(None)
        }
        Err(Setback::HandBack(e)) => Err(e),
    }
}

/// How a finished job went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobSummary {
    /// Cells sampled and written now.
    pub done: u32,
    /// Cells whose features existed already.
    pub skipped: u32,
    /// Cells that failed for good (failure recorded).
    pub failed: u32,
}

/// Settings of a [`JobRunner`].
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This worker's name in results and failure records (host or pod name and process id).
    pub worker: String,
    /// Where checkpoints are downloaded to.
    pub model_cache_dir: PathBuf,
    pub retry: Retry,
    /// Least time between two progress results of a job.
    pub progress_every: Duration,
}

impl RunnerConfig {
    /// Defaults for a worker named `worker`: checkpoints cached under the system's temporary
    /// folder, a minute of storage retries, progress every 5 s.
    pub fn new(worker: impl Into<String>) -> Self {
        Self {
            worker: worker.into(),
            model_cache_dir: std::env::temp_dir().join("dispr-model-cache"),
            retry: Retry::default(),
            progress_every: Duration::from_secs(5),
        }
    }
}

/// Runs jobs. One per worker process; jobs may run concurrently on it.
pub struct JobRunner {
    config: RunnerConfig,
    models: ModelCache,
    telemetry: Arc<Telemetry>,
    /// The stores of every dataset and output URI seen (opening one builds a client).
    stores: Mutex<HashMap<String, Store>>,
    /// `labels.csv` of each dataset seen, parsed (empty when a dataset has none).
    labels: tokio::sync::Mutex<HashMap<String, Arc<Labels>>>,
    /// One sampling batch at a time: jobs run concurrently so that the next job's downloads and
    /// the last job's uploads overlap sampling, but two batches would only fight over the device.
    compute: tokio::sync::Semaphore,
    /// Cells whose features are being computed: one per core, so that a job's cells share the
    /// CPU without crowding out the I/O and the sampler's own threads.
    features: tokio::sync::Semaphore,
}

/// What every stage of one job reads: the job, its output store and where its results go.
struct Scope<'a, S> {
    job: &'a Job,
    output: &'a Store,
    sink: &'a S,
}

impl JobRunner {
    pub fn new(config: RunnerConfig, telemetry: Arc<Telemetry>) -> Self {
        let models = ModelCache::new(config.model_cache_dir.clone(), telemetry.clone(), config.retry);
        Self {
            config,
            models,
            telemetry,
            stores: Mutex::new(HashMap::new()),
            labels: Default::default(),
            compute: tokio::sync::Semaphore::new(1),
            features: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            ),
        }
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Runs `job` to the end: when this returns `Ok`, every cell of the job is done or failed
    /// for good, durably, and its results went to `sink` (ending with `JobDone`).
    pub async fn run(&self, job: &Job, sink: &impl ResultSink) -> Result<JobSummary, JobError> {
        let cells: Vec<&str> = job.cells.iter().map(CellId::as_str).collect();
        let span = tracing::info_span!("job", run = %job.run_id, job = %job.job_id, cells = ?cells);
        let metrics = &self.telemetry.metrics;
        metrics.in_flight.inc();
        let started = Instant::now();
        // Boxed: the job's future nests many others, and callers that nest it further (a worker's
        // session) would otherwise exceed the compiler's layout depth limit.
        let result = Box::pin(self.run_job(job, sink)).instrument(span.clone()).await;
        metrics.in_flight.dec();
        metrics.job_seconds.observe(started.elapsed().as_secs_f64());
        span.in_scope(|| match &result {
            Ok(s) => tracing::info!(
                done = s.done,
                skipped = s.skipped,
                failed = s.failed,
                seconds = started.elapsed().as_secs_f64(),
                "job finished"
            ),
            Err(e) => tracing::warn!(error = %e, "job not finished"),
        });
        result
    }

    /// The job's cells through the three stages, then the failures and the job's record.
    async fn run_job(&self, job: &Job, sink: &impl ResultSink) -> Result<JobSummary, JobError> {
        let started_ms = now_ms();
        let output = self.store(&job.output_uri).map_err(|e| {
            JobError::Unusable(anyhow::Error::new(e).context(format!(
                "job {} of run {}: cannot open its output {}",
                job.job_id, job.run_id, job.output_uri
            )))
        })?;
        let scope = Scope { job, output: &output, sink };
        let mut summary = JobSummary::default();
        let todo = self.skip_done(&scope, &mut summary).await?;
        let mut compute_seconds = 0.0;
        if !todo.is_empty() {
            let mut faults = Vec::new();
            if let Some((sampler, cells)) = self.read_inputs(job, &todo, &mut faults).await? {
                let sampled = self.sample(sampler, cells, sink).await?;
                compute_seconds = sampled.seconds;
                self.write_outputs(&scope, sampled, &mut summary, &mut faults).await?;
            }
            for fault in faults {
                self.record_failure(&scope, fault).await?;
                summary.failed += 1;
            }
        }
        self.record_job(&scope, started_ms, compute_seconds, &summary).await;
        sink.report(ResultBody::JobDone { started_ms, compute_seconds }).await;
        Ok(summary)
    }

    /// Records that `job` was handed back to the queue for the `handbacks`-th time
    /// (`runs/<run>/handbacks/<job>.json`, for `status`). Best effort and quick: it runs while the
    /// worker shuts down, and the hand-back itself is already safe on the queue.
    pub async fn record_handback(&self, job: &Job, handbacks: u32) {
        let write = async {
            let key = keys::handback(&job.run_id, &job.job_id)?;
            let record = dispr_proto::HandBack {
                schema_version: SCHEMA_VERSION,
                run_id: job.run_id.clone(),
                job_id: job.job_id.clone(),
                worker: self.config.worker.clone(),
                handbacks,
                at_ms: now_ms(),
            };
            self.store(&job.output_uri)?.put(&key, record.encode().into()).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(5), write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "hand-back not recorded; `status` will not count it")
            }
            Err(_) => tracing::warn!("hand-back not recorded within 5 s; `status` will not count it"),
        }
    }

    /// The store of `uri`, opened once.
    fn store(&self, uri: &str) -> Result<Store, dispr_store::StoreError> {
        // A poisoned lock only means another job panicked while inserting; the map is still valid.
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.get(uri) {
            return Ok(s.clone());
        }
        let store = Store::open(uri)?;
        stores.insert(uri.to_string(), store.clone());
        Ok(store)
    }

    /// Writes an object, retrying what may pass.
    async fn put(&self, store: &Store, key: &str, data: bytes::Bytes) -> Result<(), JobError> {
        self.retried("write", key, || store.put(key, data.clone())).await
    }

    /// Runs a store call on `key` with retries; what still fails hands the job back for a later
    /// attempt ("could not <verb> <key>").
    async fn retried<T, F, Fut>(&self, verb: &str, key: &str, op: F) -> Result<T, JobError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.config
            .retry
            .store(&format!("{verb} {key}"), op)
            .await
            .map_err(|e| storage(e, format!("could not {verb} {key}")))
    }
}

/// A store call that failed for good, as a reason to retry the job later.
fn storage(failure: StoreFailure, what: String) -> JobError {
    JobError::Retriable(anyhow::Error::new(failure.into_inner()).context(what))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
