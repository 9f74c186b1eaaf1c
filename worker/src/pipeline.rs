//! The job pipeline: one [`Job`] from inputs to durable outputs, independent of how the job
//! arrived (RabbitMQ in `serve`, an in-process queue in the coordinator's `local` mode).
//!
//! For each cell of a job: skip it if its features record exists (it is done), read and check its
//! image and mask, sample its K volumes (all cells of the job in one batch, on a blocking thread),
//! write each volume and the ensemble's probability and standard-deviation volumes, compute the
//! features and write `features/<cell>.json` last, with put-if-absent. The cells of a job are independent, so their object operations run
//! [`IO_CONCURRENCY`] at a time and their features on up to one blocking thread per core: one
//! cell at a time would leave the worker waiting on round trips. Bad input fails the cell for
//! good (`failures/<cell>.json` and a `CellFailed` result); storage trouble is retried and then
//! handed back as [`JobError::Retriable`] so the caller can requeue the job. Results go to a
//! [`ResultSink`] as they happen, in the order the cells finish.

use crate::cell::{self, Checked, InputError, OutputError};
use crate::retry::{Retry, StoreFailure};
use crate::sampler::{CellInput, VolumeSampler};
use crate::samplers::{SamplerError, Samplers};
use crate::telemetry::Telemetry;
use anyhow::Context;
use dispr_proto::seed::sample_seed;
use dispr_proto::{CellFailure, CellId, Job, JobRecord, ResultBody, SCHEMA_VERSION, keys};
use dispr_shape::dataset::{CellBytes, Geometry, Label, label_from_name, parse_labels};
use dispr_store::{ErrorKind, Store, StoreError};
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;
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
    samplers: Samplers,
    telemetry: Arc<Telemetry>,
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

/// A failure to record for a cell.
struct CellFault {
    cell: CellId,
    error: anyhow::Error,
}

impl JobRunner {
    pub fn new(config: RunnerConfig, telemetry: Arc<Telemetry>) -> Self {
        let samplers = Samplers::new(config.model_cache_dir.clone(), telemetry.clone(), config.retry);
        Self {
            config,
            samplers,
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

    async fn run_job(&self, job: &Job, sink: &impl ResultSink) -> Result<JobSummary, JobError> {
        let started_ms = now_ms();
        let output = self.store(&job.output_uri).map_err(|e| {
            JobError::Unusable(anyhow::Error::new(e).context(format!(
                "job {} of run {}: cannot open its output {}",
                job.job_id, job.run_id, job.output_uri
            )))
        })?;
        let mut summary = JobSummary::default();

        // Cells whose features exist are done: report them again (the first report may have
        // been lost with a worker) and leave them alone.
        let output = &output;
        // (The futures are made before they are streamed: a stream's closure over borrowed cells
        // trips the compiler's Send check of the job future.)
        let checks: Vec<_> = (job.cells.iter())
            .map(|cell| {
                let key = keys::features(&job.run_id, cell);
                async move { self.retried("check", &key, || output.exists(&key)).await }
            })
            .collect();
        let done: Vec<bool> = futures::stream::iter(checks).buffered(IO_CONCURRENCY).try_collect().await?;
        let mut todo = Vec::new();
        for (cell, done) in job.cells.iter().zip(done) {
            if done {
                summary.skipped += 1;
                self.telemetry.metrics.cells.get_or_create(&[("outcome", "skipped")]).inc();
                sink.report(ResultBody::CellDone { cell: cell.clone(), seconds: 0.0 }).await;
            } else {
                todo.push(cell.clone());
            }
        }
        let mut compute_seconds = 0.0;
        if !todo.is_empty() {
            let mut faults = Vec::new();
            if let Some((sampler, inputs)) = self.prepare(job, &todo, &mut faults).await? {
                compute_seconds = self
                    .sample_and_write(job, output, sampler, inputs, sink, &mut summary, &mut faults)
                    .await?;
            }
            for fault in faults {
                self.record_failure(job, output, fault, sink).await?;
                summary.failed += 1;
            }
        }
        self.record_job(job, output, sink.worker(), started_ms, compute_seconds, &summary).await;
        sink.report(ResultBody::JobDone { started_ms, compute_seconds }).await;
        Ok(summary)
    }

    /// Writes `jobs/<job>.json` for the run report's timeline. Bookkeeping only: a failure to
    /// write it is logged and does not hold the job back (its outputs are already durable).
    async fn record_job(
        &self,
        job: &Job,
        output: &Store,
        worker: Option<&str>,
        started_ms: u64,
        compute_seconds: f64,
        summary: &JobSummary,
    ) {
        let key = match keys::job_record(&job.run_id, &job.job_id) {
            Ok(key) => key,
            Err(e) => return tracing::warn!(error = %e, "no job record: the job id cannot name a file"),
        };
        let record = JobRecord {
            schema_version: SCHEMA_VERSION,
            run_id: job.run_id.clone(),
            job_id: job.job_id.clone(),
            worker: worker.unwrap_or(&self.config.worker).to_string(),
            cells: job.cells.clone(),
            cells_done: summary.done + summary.skipped,
            cells_failed: summary.failed,
            started_ms,
            finished_ms: now_ms(),
            compute_seconds,
        };
        if let Err(e) = output.put(&key, record.encode().into()).await {
            tracing::warn!(key, error = %e, "job record not written; the run report's timeline will lack this job");
        }
    }

    /// Finds the sampler and reads the inputs of `cells`. Cells that cannot run go to `faults`;
    /// `None` when no cell can.
    async fn prepare(
        &self,
        job: &Job,
        cells: &[CellId],
        faults: &mut Vec<CellFault>,
    ) -> Result<Option<(Arc<dyn VolumeSampler>, Vec<Prepared>)>, JobError> {
        let fail_all = |faults: &mut Vec<CellFault>, error: &anyhow::Error| {
            for cell in cells {
                faults.push(CellFault { cell: cell.clone(), error: anyhow::anyhow!("{error:#}") });
            }
        };
        if job.samples_per_cell == 0 {
            fail_all(
                faults,
                &anyhow::anyhow!("the job asks for 0 samples per cell; submit with --samples 1 or more"),
            );
            return Ok(None);
        }
        let sampler = match self.samplers.for_job(job.model.as_ref(), &job.sampler).await {
            Ok(s) => s,
            Err(SamplerError::Permanent(e)) => {
                fail_all(faults, &e);
                return Ok(None);
            }
            Err(SamplerError::Retriable(e)) => return Err(JobError::Retriable(e)),
        };
        let dataset = match self.store(&job.dataset_uri) {
            Ok(s) => s,
            Err(e) => {
                let e = anyhow::Error::new(e).context(format!("cannot open the dataset {}", job.dataset_uri));
                fail_all(faults, &e);
                return Ok(None);
            }
        };

        let labels = match self.labels(&dataset).await? {
            Ok(labels) => labels,
            Err(e) => {
                fail_all(faults, &e);
                return Ok(None);
            }
        };

        let dataset = &dataset;
        let reads: Vec<_> = (cells.iter())
            .map(|cell| async move { Ok::<_, JobError>((cell, self.fetch_inputs(dataset, cell).await?)) })
            .collect();
        let read: Vec<_> = futures::stream::iter(reads)
            .buffered(IO_CONCURRENCY / 3) // three reads per cell
            .try_collect()
            .await?;
        let mut fetched = Vec::new();
        for (cell, files) in read {
            match files {
                Ok(files) => {
                    let label = labels.get(cell).cloned().or_else(|| label_from_name(cell.as_str()));
                    fetched.push((cell.clone(), label, files));
                }
                Err(error) => faults.push(CellFault { cell: cell.clone(), error }),
            }
        }
        // Decoding and 2D features are compute: off the async threads.
        let (run_seed, samples) = (job.seed, job.samples_per_cell);
        let decoded = tokio::task::spawn_blocking(move || {
            fetched
                .into_iter()
                .map(|(cell, label, files)| {
                    let result = prepare_cell(&cell, label, &files, run_seed, samples);
                    (cell, result)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| JobError::Retriable(anyhow::anyhow!("decoding inputs panicked: {e}")))?;
        let mut prepared = Vec::new();
        for (cell, result) in decoded {
            match result {
                Ok(p) => prepared.push(p),
                Err(e) => faults.push(CellFault { cell, error: e.into() }),
            }
        }
        Ok((!prepared.is_empty()).then_some((sampler, prepared)))
    }

    /// The labels of `labels.csv` of a dataset (read once per dataset). The outer error is
    /// storage trouble, the inner one a `labels.csv` that cannot be used.
    async fn labels(&self, dataset: &Store) -> Result<Result<Arc<Labels>, anyhow::Error>, JobError> {
        let mut cache = self.labels.lock().await;
        if let Some(l) = cache.get(dataset.uri()) {
            return Ok(Ok(l.clone()));
        }
        let key = keys::DATASET_LABELS;
        let bytes = self.retried("read", key, || dataset.get_opt(key)).await?;
        let labels = match bytes {
            Some(b) => match parse_labels(&b) {
                Ok(l) => l,
                Err(e) => {
                    return Ok(Err(
                        anyhow::Error::new(e).context(format!("{key} of dataset {}", dataset.uri()))
                    ));
                }
            },
            None => BTreeMap::new(),
        };
        let labels = Arc::new(labels);
        cache.insert(dataset.uri().to_string(), labels.clone());
        Ok(Ok(labels))
    }

    /// Reads a cell's files. The outer error is storage trouble (retriable), the inner one a
    /// permanent fault of the cell (its image or mask does not exist).
    async fn fetch_inputs(
        &self,
        dataset: &Store,
        cell: &CellId,
    ) -> Result<Result<CellBytes, anyhow::Error>, JobError> {
        let retry = &self.config.retry;
        let failed =
            |key: &str, e: StoreFailure| storage(e, format!("could not read {key} of {}", dataset.uri()));
        let (image_key, mask_key, truth_key) =
            (keys::dataset_image(cell), keys::dataset_mask(cell), keys::dataset_obj(cell));
        let reading = [&image_key, &mask_key, &truth_key].map(|key| format!("read {key}"));
        // No file of a cell is held beyond what one of the right shape can take (a hostile or
        // mistaken 4 GB object would otherwise be read whole).
        let max = Geometry::DISPR64.max_file_bytes();
        let (image, mask, truth) = tokio::join!(
            retry.store(&reading[0], || dataset.get_at_most(&image_key, max)),
            retry.store(&reading[1], || dataset.get_at_most(&mask_key, max)),
            retry.store(&reading[2], || dataset.get_opt_at_most(&truth_key, max)),
        );
        // A missing or oversized image or mask is the cell's fault; any other failure is the store's.
        let cell_fault = |key: &str, e: StoreError| match e.kind() {
            ErrorKind::NotFound => anyhow::Error::new(e).context(format!(
                "cell {cell} is not in the dataset {}: {key} does not exist; check the cell id and the \
                 dataset URI",
                dataset.uri()
            )),
            _ => anyhow::Error::new(e)
                .context(format!("cell {cell}: {key} cannot be an input of 64x64 pixels")),
        };
        let required = |key: &str, read: Result<bytes::Bytes, StoreFailure>| match read {
            Ok(bytes) => Ok(Ok(bytes)),
            Err(StoreFailure::NotFound(e)) => Ok(Err(cell_fault(key, e))),
            Err(StoreFailure::Other(e)) if e.kind() == ErrorKind::TooLarge => Ok(Err(cell_fault(key, e))),
            Err(other) => Err(failed(key, other)),
        };
        let image = required(&image_key, image)?;
        let mask = required(&mask_key, mask)?;
        let truth = match truth {
            Ok(truth) => Ok(truth),
            Err(StoreFailure::Other(e)) if e.kind() == ErrorKind::TooLarge => Err(cell_fault(&truth_key, e)),
            Err(other) => return Err(failed(&truth_key, other)),
        };
        Ok(match (image, mask, truth) {
            (Ok(image), Ok(mask), Ok(obj)) => Ok(CellBytes { image, mask, obj }),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        })
    }

    /// Samples every prepared cell in one batch, then writes each cell's outputs. Cells whose
    /// samples cannot be measured go to `faults`. Returns the seconds spent sampling.
    #[allow(clippy::too_many_arguments)]
    async fn sample_and_write(
        &self,
        job: &Job,
        output: &Store,
        sampler: Arc<dyn VolumeSampler>,
        cells: Vec<Prepared>,
        sink: &impl ResultSink,
        summary: &mut JobSummary,
        faults: &mut Vec<CellFault>,
    ) -> Result<f64, JobError> {
        let (volumes, cells, compute_seconds) = {
            // The semaphore is never closed, so acquiring only waits.
            let _turn = self.compute.acquire().await.map_err(|e| JobError::Retriable(e.into()))?;
            let started = Instant::now();
            let (volumes, cells) = self.sample(sampler, cells, sink).await?;
            (volumes, cells, started.elapsed().as_secs_f64())
        };
        let per_cell = compute_seconds / cells.len().max(1) as f64;

        let mut finished = futures::stream::iter(cells.into_iter().zip(volumes))
            .map(|(prepared, volumes)| self.finish_cell(job, output, prepared, volumes))
            .buffer_unordered(IO_CONCURRENCY);
        while let Some(finished) = finished.next().await {
            match finished? {
                Ok((cell, seconds)) => {
                    let seconds = per_cell + seconds;
                    let metrics = &self.telemetry.metrics;
                    metrics.cells.get_or_create(&[("outcome", "done")]).inc();
                    metrics.cell_seconds.observe(seconds);
                    self.telemetry.health.progressed();
                    summary.done += 1;
                    sink.report(ResultBody::CellDone { cell, seconds }).await;
                }
                Err(fault) => faults.push(fault),
            }
        }
        Ok(compute_seconds)
    }

    /// Measures a sampled cell and writes its outputs, the features record last. Returns the
    /// seconds it took, or the fault of a cell whose samples cannot be measured.
    async fn finish_cell(
        &self,
        job: &Job,
        output: &Store,
        prepared: Prepared,
        volumes: Vec<crate::sampler::Volume>,
    ) -> Result<Result<(CellId, f64), CellFault>, JobError> {
        let started = Instant::now();
        let cell = prepared.checked.input.cell.clone();
        let made = {
            // The semaphore is never closed, so acquiring only waits.
            let _core = self.features.acquire().await.map_err(|e| JobError::Retriable(e.into()))?;
            let run = job.run_id.clone();
            tokio::task::spawn_blocking(move || {
                cell::outputs(&run, &prepared.checked, &prepared.seeds, volumes)
            })
            .await
            .map_err(|e| JobError::Retriable(anyhow::anyhow!("feature computation panicked: {e}")))?
        };
        let outputs = match made {
            Ok(o) => o,
            Err(e @ (OutputError::EmptySample { .. } | OutputError::Features { .. })) => {
                return Ok(Err(CellFault { cell, error: e.into() }));
            }
            Err(e @ (OutputError::Encode { .. } | OutputError::EncodeEnsemble { .. })) => {
                return Err(JobError::Retriable(e.into()));
            }
        };

        // In order, one at a time: the job's other cells keep the store busy meanwhile, and a cell
        // cut short leaves samples 0..k, never a gap.
        for (k, tiff) in outputs.volume_tiffs.into_iter().enumerate() {
            self.put(output, &keys::volume(&job.run_id, &cell, k as u32), tiff.into()).await?;
        }
        // The ensemble's probability and standard-deviation volumes (K >= 2), before the
        // done-marker: a cell cut short here is redone, never done without them.
        for (key, tiff) in outputs.ensemble_volumes {
            self.put(output, &key, tiff.into()).await?;
        }
        // Last: the done-marker. Another delivery of this job may have written it first; its
        // bytes are the same, so either way the cell is done.
        let key = keys::features(&job.run_id, &cell);
        let data = bytes::Bytes::from(outputs.features.encode());
        self.retried("write", &key, || output.put_if_absent(&key, data.clone())).await?;
        Ok(Ok((cell, started.elapsed().as_secs_f64())))
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

    /// Runs the sampler on a blocking thread, forwarding progress at most every
    /// `progress_every` while the async side stays free (AMQP heartbeats keep flowing).
    async fn sample(
        &self,
        sampler: Arc<dyn VolumeSampler>,
        cells: Vec<Prepared>,
        sink: &impl ResultSink,
    ) -> Result<(Vec<Vec<crate::sampler::Volume>>, Vec<Prepared>), JobError> {
        let (tx, mut rx) = tokio::sync::watch::channel((0u32, 0u32));
        let telemetry = self.telemetry.clone();
        let describe = sampler.describe();
        let mut handle = tokio::task::spawn_blocking(move || {
            let _busy = telemetry.health.busy();
            let inputs: Vec<CellInput> = cells.iter().map(|c| c.checked.input.clone()).collect();
            let seeds: Vec<Vec<u64>> = cells.iter().map(|c| c.seeds.clone()).collect();
            let started = Instant::now();
            let result = sampler.sample(&inputs, &seeds, &mut |step, steps| {
                telemetry.health.progressed();
                let rate = f64::from(step) / started.elapsed().as_secs_f64().max(1e-9);
                telemetry.metrics.steps_per_second.set(rate);
                let _ = tx.send((step, steps));
            });
            (result, cells)
        });
        let mut last_report: Option<Instant> = None;
        let joined = loop {
            tokio::select! {
                joined = &mut handle => break joined,
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The compute side dropped its sender: it is finishing; wait for it.
                        break (&mut handle).await;
                    }
                    let (step, steps) = *rx.borrow_and_update();
                    if last_report.is_none_or(|t| t.elapsed() >= self.config.progress_every) {
                        last_report = Some(Instant::now());
                        sink.report(ResultBody::Progress { step, steps }).await;
                    }
                }
            }
        };
        let (result, cells) = joined
            .map_err(|e| JobError::Retriable(anyhow::anyhow!("the sampler ({describe}) panicked: {e}")))?;
        // A sampler error (out of memory, a device lost) may pass on another attempt or another
        // worker; a job that fails this way every time reaches the delivery limit.
        let volumes = result
            .with_context(|| format!("sampling with {describe} failed"))
            .map_err(JobError::Retriable)?;
        if volumes.len() != cells.len() {
            return Err(JobError::Retriable(anyhow::anyhow!(
                "the sampler ({describe}) returned {} cells for {}",
                volumes.len(),
                cells.len()
            )));
        }
        Ok((volumes, cells))
    }

    /// Writes `failures/<cell>.json` and reports the cell as failed.
    async fn record_failure(
        &self,
        job: &Job,
        output: &Store,
        fault: CellFault,
        sink: &impl ResultSink,
    ) -> Result<(), JobError> {
        let reason = fault.error.to_string();
        let error_chain: Vec<String> = fault.error.chain().map(ToString::to_string).collect();
        tracing::warn!(cell = %fault.cell, reason = %format!("{:#}", fault.error), "cell failed for good");
        let record = CellFailure {
            schema_version: SCHEMA_VERSION,
            run_id: job.run_id.clone(),
            cell: fault.cell.clone(),
            job_id: job.job_id.clone(),
            worker: self.config.worker.clone(),
            reason: reason.clone(),
            error_chain,
            at_ms: now_ms(),
        };
        let key = keys::failure(&job.run_id, &fault.cell);
        self.put(output, &key, record.encode().into()).await?;
        self.telemetry.metrics.cells.get_or_create(&[("outcome", "failed")]).inc();
        sink.report(ResultBody::CellFailed { cell: fault.cell, reason }).await;
        Ok(())
    }
}

/// `labels.csv` of a dataset.
type Labels = BTreeMap<CellId, Label>;

/// A cell ready to sample.
struct Prepared {
    checked: Checked,
    /// The seed of each sample, index = k.
    seeds: Vec<u64>,
}

/// Checks a cell's files and derives its seeds. A cell without a label (its name has no prefix
/// and labels.csv does not list it) gets the class "unlabelled".
fn prepare_cell(
    cell: &CellId,
    label: Option<Label>,
    files: &CellBytes,
    run_seed: u64,
    samples: u32,
) -> Result<Prepared, InputError> {
    let label = label.unwrap_or_else(|| Label { class: "unlabelled".into(), subclass: None });
    let checked = cell::check_inputs(cell, label, files)?;
    let seeds = (0..samples).map(|k| sample_seed(run_seed, cell, k)).collect();
    Ok(Prepared { checked, seeds })
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
