//! Stage 3 of a job: its outputs. Per sampled cell, the features (on a blocking thread, one per
//! core), the volume TIFFs, the ensemble's probability and standard-deviation volumes, and then
//! `features/<cell>.json`, the done-marker, last; then the failure records of the cells that
//! failed for good and the job's own record.

use super::inputs::Prepared;
use super::sample::Sampled;
use super::{CellFault, IO_CONCURRENCY, JobError, JobRunner, JobSummary, ResultSink, Scope, Setback, Step};
use super::{now_ms, triage};
use crate::cell::{self, OutputError};
use crate::volume_sampler::Volume;
use dispr_proto::{CellFailure, Job, JobRecord, ResultBody, SCHEMA_VERSION, keys};
use dispr_store::Store;
use futures::StreamExt;
use std::time::Instant;

impl JobRunner {
    /// Measures each sampled cell and writes its outputs, [`IO_CONCURRENCY`] cells at a time,
    /// reporting each cell done as it finishes. Cells whose samples cannot be measured go to
    /// `faults`.
    pub(super) async fn write_outputs(
        &self,
        scope: &Scope<'_, impl ResultSink>,
        sampled: Sampled,
        summary: &mut JobSummary,
        faults: &mut Vec<CellFault>,
    ) -> Result<(), JobError> {
        let (job, output) = (scope.job, scope.output);
        let per_cell = sampled.seconds / sampled.cells.len().max(1) as f64;
        let mut finished = futures::stream::iter(sampled.cells)
            .map(|(prepared, volumes)| async move {
                let cell = prepared.checked.input.cell.clone();
                (cell, self.finish_cell(job, output, prepared, volumes).await)
            })
            .buffer_unordered(IO_CONCURRENCY);
        while let Some((cell, step)) = finished.next().await {
            if let Some(seconds) = triage(step, &cell, faults)? {
                let seconds = per_cell + seconds;
                let metrics = &self.telemetry.metrics;
                metrics.cells.get_or_create(&[("outcome", "done")]).inc();
                metrics.cell_seconds.observe(seconds);
                self.telemetry.health.progressed();
                summary.done += 1;
                scope.sink.report(ResultBody::CellDone { cell, seconds }).await;
            }
        }
        Ok(())
    }

    /// Measures a sampled cell and writes its outputs, the features record last. Returns the
    /// seconds it took; a cell whose samples cannot be measured fails for good.
    async fn finish_cell(
        &self,
        job: &Job,
        output: &Store,
        prepared: Prepared,
        volumes: Vec<Volume>,
    ) -> Step<f64> {
        let started = Instant::now();
        let cell = prepared.checked.input.cell.clone();
        let made = {
            // The semaphore is never closed, so acquiring only waits.
            let _core = self.features.acquire().await.map_err(|e| JobError::Retriable(e.into()))?;
            let (run, format) = (job.run_id.clone(), job.volumes);
            tokio::task::spawn_blocking(move || {
                cell::outputs(&run, &prepared.checked, &prepared.seeds, volumes, format)
            })
            .await
            .map_err(|e| JobError::Retriable(anyhow::anyhow!("feature computation panicked: {e}")))?
        };
        let outputs = match made {
            Ok(o) => o,
            Err(e @ (OutputError::EmptySample { .. } | OutputError::Features { .. })) => {
                return Err(Setback::FailedForGood(e.into()));
            }
            Err(e @ (OutputError::Encode { .. } | OutputError::EncodeEnsemble { .. })) => {
                return Err(JobError::Retriable(e.into()).into());
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
        Ok(started.elapsed().as_secs_f64())
    }

    /// Writes `failures/<cell>.json` and reports the cell as failed.
    pub(super) async fn record_failure(
        &self,
        scope: &Scope<'_, impl ResultSink>,
        fault: CellFault,
    ) -> Result<(), JobError> {
        let job = scope.job;
        // Each message once: a cell's error often prints its cause and also returns it as its source.
        let reason = crate::logging::error_text(&fault.error);
        let error_chain: Vec<String> = fault.error.chain().map(ToString::to_string).collect();
        tracing::warn!(cell = %fault.cell, reason = %reason, "cell failed for good");
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
        self.put(scope.output, &key, record.encode().into()).await?;
        self.telemetry.metrics.cells.get_or_create(&[("outcome", "failed")]).inc();
        scope.sink.report(ResultBody::CellFailed { cell: fault.cell, reason }).await;
        Ok(())
    }

    /// Writes `jobs/<job>.json` for the run report's timeline. Bookkeeping only: a failure to
    /// write it is logged and does not hold the job back (its outputs are already durable).
    pub(super) async fn record_job(
        &self,
        scope: &Scope<'_, impl ResultSink>,
        started_ms: u64,
        compute_seconds: f64,
        summary: &JobSummary,
    ) {
        let job = scope.job;
        let key = match keys::job_record(&job.run_id, &job.job_id) {
            Ok(key) => key,
            Err(e) => return tracing::warn!(error = %e, "no job record: the job id cannot name a file"),
        };
        let record = JobRecord {
            schema_version: SCHEMA_VERSION,
            run_id: job.run_id.clone(),
            job_id: job.job_id.clone(),
            worker: scope.sink.worker().unwrap_or(&self.config.worker).to_string(),
            cells: job.cells.clone(),
            cells_done: summary.done + summary.skipped,
            cells_failed: summary.failed,
            started_ms,
            finished_ms: now_ms(),
            compute_seconds,
        };
        if let Err(e) = scope.output.put(&key, record.encode().into()).await {
            tracing::warn!(key, error = %e, "job record not written; the run report's timeline will lack this job");
        }
    }
}
