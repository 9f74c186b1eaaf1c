//! Stage 2 of a job: the K volumes of each of its cells, sampled in one batch on a blocking
//! thread while the async side stays free (AMQP heartbeats keep flowing) and forwards progress.
//! Anything that goes wrong here may pass on another attempt or another worker, so it hands the
//! job back; a job that fails this way every time reaches the delivery limit.

use super::inputs::Prepared;
use super::{JobError, JobRunner, ResultSink};
use crate::volume_sampler::{CellInput, Volume, VolumeSampler};
use anyhow::Context;
use dispr_proto::ResultBody;
use std::sync::Arc;
use std::time::Instant;

/// A sampled batch: each cell with its volumes, and the seconds the sampler took.
pub(super) struct Sampled {
    pub cells: Vec<(Prepared, Vec<Volume>)>,
    pub seconds: f64,
}

impl JobRunner {
    /// Samples every prepared cell in one batch, one batch per worker at a time, reporting
    /// progress to `sink` at most every `progress_every`.
    pub(super) async fn sample(
        &self,
        sampler: Arc<dyn VolumeSampler>,
        cells: Vec<Prepared>,
        sink: &impl ResultSink,
    ) -> Result<Sampled, JobError> {
        // The semaphore is never closed, so acquiring only waits.
        let _turn = self.compute.acquire().await.map_err(|e| JobError::Retriable(e.into()))?;
        let started = Instant::now();
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
        // worker.
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
        Ok(Sampled {
            cells: cells.into_iter().zip(volumes).collect(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
