//! Submission: shards a run's pending cells into jobs and hands them to a queue.
//!
//! The same code feeds RabbitMQ (`submit`) and the in-process queue of `local`: only the
//! [`JobSink`] differs. Sharding is a pure function of the sorted cell list and the cells per job,
//! so a job's id names the same cells on every submission of a run.
//!
//! Resuming a killed submit: jobs are published in batches; once the broker has confirmed every
//! job of a batch, a marker `runs/<run>/submitted/batch-<n>.json` is written. A restarted submit
//! skips batches with a marker, so it republishes at most the batches that were in flight when it
//! was killed (duplicates are harmless: outputs are idempotent). A cell that is done
//! (`features/<cell>.json`) or failed for good (`failures/<cell>.json`) is never published again.

use crate::cells::Finished;
use anyhow::Context;
use dispr_proto::{CellId, Job, Manifest, RunId, SCHEMA_VERSION, keys, version};
use dispr_store::Store;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};

/// Jobs per batch marker by default: a million single-cell jobs make a thousand markers.
pub const DEFAULT_BATCH_JOBS: u32 = 1000;

/// A queue that jobs are handed to.
pub trait JobSink {
    /// Hands one job to the queue. The future it returns resolves once the queue holds the job
    /// durably (a publisher confirm), so that many jobs can be in flight at once.
    fn send(
        &mut self,
        job: &Job,
    ) -> impl Future<Output = anyhow::Result<BoxFuture<'static, anyhow::Result<()>>>>;
}

/// How a run's cells are cut into jobs and jobs into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sharding {
    pub cells_per_job: u32,
    pub batch_jobs: u32,
}

impl Sharding {
    fn cells_per_batch(&self) -> usize {
        self.cells_per_job as usize * self.batch_jobs as usize
    }
}

/// The id of the `index`-th job of a run.
pub fn job_id(index: usize) -> String {
    format!("j{index:08}")
}

/// `runs/<run>/submitted/plan.json`: the sharding the batch markers refer to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PlanRecord {
    schema_version: u32,
    run_id: RunId,
    sharding: Sharding,
    cells: usize,
    jobs: usize,
}

/// `runs/<run>/submitted/batch-<n>.json`: every job of batch `n` was confirmed by the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BatchMarker {
    schema_version: u32,
    run_id: RunId,
    batch: u64,
    /// The batch's first and last cell in the sharding: a marker whose cells no longer match
    /// (the dataset changed) is ignored and the batch published again.
    first_cell: CellId,
    last_cell: CellId,
    jobs_published: usize,
    cells_published: usize,
}

/// What a submission did, for the operator.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SubmitReport {
    pub cells_total: usize,
    pub jobs_published: usize,
    pub cells_published: usize,
    pub cells_done: usize,
    pub cells_failed: usize,
    /// Cells in batches that an earlier submit already published (queued or being computed).
    pub cells_already_submitted: usize,
}

impl std::fmt::Display for SubmitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "published {} jobs ({} cells) of {} cells; skipped {} done, {} failed for good, {} already submitted",
            self.jobs_published,
            self.cells_published,
            self.cells_total,
            self.cells_done,
            self.cells_failed,
            self.cells_already_submitted
        )
    }
}

/// The batch markers of a run: where they live and which batches they cover.
pub struct Markers {
    output: Store,
    run: RunId,
    covered: HashSet<u64>,
}

impl Markers {
    /// Reads the run's plan and markers, recording the plan on a first submission. A run whose
    /// markers were written under another sharding is refused unless `republish` is set, in which
    /// case the old markers are ignored (and overwritten as batches are published again).
    pub async fn load(
        output: &Store,
        run: &RunId,
        cells: &[CellId],
        sharding: Sharding,
        republish: bool,
    ) -> anyhow::Result<Self> {
        let jobs = cells.len().div_ceil(sharding.cells_per_job as usize);
        let plan = PlanRecord {
            schema_version: SCHEMA_VERSION,
            run_id: run.clone(),
            sharding,
            cells: cells.len(),
            jobs,
        };
        let key = keys::submit_plan(run);
        let bytes = serde_json::to_vec_pretty(&plan)?;
        let mut markers = Self { output: output.clone(), run: run.clone(), covered: HashSet::new() };
        if output.put_if_absent(&key, bytes.clone().into()).await.with_context(|| format!("writing {key}"))? {
            return Ok(markers);
        }
        let existing: PlanRecord = version::decode(
            "submit plan",
            &output.get(&key).await.with_context(|| format!("reading {key}"))?,
        )?;
        if existing.sharding != sharding {
            anyhow::ensure!(
                republish,
                "run {run} was first submitted with --cells-per-job {} (and {} jobs per batch), now with {} (and {}): \
                 what it published cannot be matched. Submit again with --cells-per-job {}, or pass --republish to \
                 publish every unfinished cell again under the new sharding",
                existing.sharding.cells_per_job,
                existing.sharding.batch_jobs,
                sharding.cells_per_job,
                sharding.batch_jobs,
                existing.sharding.cells_per_job
            );
            output.put(&key, bytes.into()).await.with_context(|| format!("writing {key}"))?;
            return Ok(markers);
        }
        if republish {
            return Ok(markers);
        }
        let listed = output.list(&keys::submitted_prefix(run)).await?;
        let batch_keys: Vec<String> = listed.into_iter().filter(|k| k.contains("/batch-")).collect();
        let read: Vec<BatchMarker> = futures::stream::iter(batch_keys)
            .map(|key| {
                let output = output.clone();
                async move {
                    let bytes = output.get(&key).await.with_context(|| format!("reading {key}"))?;
                    version::decode::<BatchMarker>("batch marker", &bytes)
                        .with_context(|| format!("reading {key}"))
                }
            })
            .buffer_unordered(32)
            .try_collect()
            .await?;
        for marker in read {
            let range = batch_range(cells.len(), sharding, marker.batch);
            let matches = range
                .as_ref()
                .is_some_and(|r| cells[r.start] == marker.first_cell && cells[r.end - 1] == marker.last_cell);
            if matches {
                markers.covered.insert(marker.batch);
            }
        }
        Ok(markers)
    }

    /// Forgets that the batches holding any of `cells` were published, so that their unfinished
    /// cells are published again (`--retry-failed`: cells whose failure records were deleted).
    pub fn uncover(&mut self, all: &[CellId], sharding: Sharding, cells: &HashSet<CellId>) {
        let per = sharding.cells_per_batch();
        for cell in cells {
            if let Ok(i) = all.binary_search(cell) {
                self.covered.remove(&((i / per) as u64));
            }
        }
    }

    async fn mark(&self, marker: &BatchMarker) -> anyhow::Result<()> {
        let key = keys::submitted_batch(&self.run, marker.batch);
        let bytes = serde_json::to_vec_pretty(marker)?;
        self.output.put(&key, bytes.into()).await.with_context(|| format!("writing the batch marker {key}"))
    }
}

/// The range of cells (indices into the sorted list) of batch `batch`, if it has any.
fn batch_range(n_cells: usize, sharding: Sharding, batch: u64) -> Option<std::ops::Range<usize>> {
    let per = sharding.cells_per_batch();
    let start = usize::try_from(batch).ok()?.checked_mul(per)?;
    (start < n_cells).then(|| start..(start + per).min(n_cells))
}

/// Publishes the jobs of every unfinished cell of `cells` (sorted) to `sink`, skipping batches
/// that `markers` says were published before and writing a marker after each batch is confirmed.
/// Confirms of one batch are awaited while the next is being sent.
pub async fn publish<S: JobSink>(
    manifest: &Manifest,
    cells: &[CellId],
    finished: &Finished,
    sharding: Sharding,
    sink: &mut S,
    markers: Option<&Markers>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<SubmitReport> {
    anyhow::ensure!(
        sharding.cells_per_job >= 1 && sharding.batch_jobs >= 1,
        "cells per job and jobs per batch must be at least 1"
    );
    let mut report = SubmitReport { cells_total: cells.len(), ..SubmitReport::default() };
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let cpj = sharding.cells_per_job as usize;
    let mut batch = 0u64;
    while let Some(range) = batch_range(cells.len(), sharding, batch) {
        let batch_cells = &cells[range.clone()];
        let open: Vec<&CellId> = batch_cells.iter().filter(|c| !finished.contains(c)).collect();
        report.cells_done += batch_cells.iter().filter(|c| finished.done.contains(c)).count();
        report.cells_failed += batch_cells.iter().filter(|c| finished.failed.contains(c)).count();
        if markers.is_some_and(|m| m.covered.contains(&batch)) {
            report.cells_already_submitted += open.len();
            progress.inc(batch_cells.len() as u64);
            batch += 1;
            continue;
        }
        let mut marker = BatchMarker {
            schema_version: SCHEMA_VERSION,
            run_id: manifest.run_id.clone(),
            batch,
            first_cell: batch_cells[0].clone(),
            last_cell: batch_cells[batch_cells.len() - 1].clone(),
            jobs_published: 0,
            cells_published: 0,
        };
        let mut confirms = Vec::new();
        for (i, shard) in batch_cells.chunks(cpj).enumerate() {
            let pending: Vec<CellId> = shard.iter().filter(|c| !finished.contains(c)).cloned().collect();
            if pending.is_empty() {
                continue;
            }
            let index = range.start / cpj + i;
            marker.jobs_published += 1;
            marker.cells_published += pending.len();
            let job = job_for(manifest, index, pending);
            confirms.push(sink.send(&job).await.with_context(|| format!("publishing job {}", job.job_id))?);
        }
        report.jobs_published += marker.jobs_published;
        report.cells_published += marker.cells_published;
        in_flight.push_back(InFlight { marker, confirms, cells: batch_cells.len() });
        // Keep one batch in flight while the next is sent.
        while in_flight.len() > 1 {
            settle(in_flight.pop_front(), markers, progress).await?;
        }
        batch += 1;
    }
    while let Some(entry) = in_flight.pop_front() {
        settle(Some(entry), markers, progress).await?;
    }
    Ok(report)
}

/// A batch sent and not yet confirmed.
struct InFlight {
    marker: BatchMarker,
    confirms: Vec<BoxFuture<'static, anyhow::Result<()>>>,
    /// Cells of the batch, published or finished before.
    cells: usize,
}

/// Awaits a batch's confirms, then records it.
async fn settle(
    entry: Option<InFlight>,
    markers: Option<&Markers>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let Some(InFlight { marker, confirms, cells }) = entry else { return Ok(()) };
    futures::future::try_join_all(confirms).await?;
    if let Some(markers) = markers {
        markers.mark(&marker).await?;
    }
    progress.inc(cells as u64);
    Ok(())
}

fn job_for(manifest: &Manifest, index: usize, cells: Vec<CellId>) -> Job {
    Job {
        schema_version: SCHEMA_VERSION,
        run_id: manifest.run_id.clone(),
        job_id: job_id(index),
        cells,
        dataset_uri: manifest.dataset_uri.clone(),
        output_uri: manifest.output_uri.clone(),
        model: manifest.model.clone(),
        sampler: manifest.sampler.clone(),
        samples_per_cell: manifest.samples_per_cell,
        seed: manifest.seed,
        volumes: manifest.volumes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispr_proto::SamplerSpec;

    /// A sink that keeps what it is sent: the unit under test is the sharding and skipping.
    #[derive(Default)]
    struct Collect(Vec<Job>);
    impl JobSink for Collect {
        async fn send(&mut self, job: &Job) -> anyhow::Result<BoxFuture<'static, anyhow::Result<()>>> {
            self.0.push(job.clone());
            Ok(Box::pin(async { Ok(()) }))
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            run_id: RunId::new("r1").unwrap(),
            dataset_uri: "/data".into(),
            output_uri: "/out".into(),
            model: None,
            sampler: SamplerSpec::Null,
            samples_per_cell: 2,
            seed: 3,
            code_version: "0".into(),
            dataset_digest: None,
            volumes: dispr_proto::VolumeFormat::Float32,
        }
    }

    fn cells(n: usize) -> Vec<CellId> {
        (0..n).map(|i| CellId::new(format!("c{i:03}")).unwrap()).collect()
    }

    #[tokio::test]
    async fn shards_skip_finished_cells_and_keep_job_ids_stable() {
        let cells = cells(10);
        let mut finished = Finished::default();
        finished.done.insert(cells[0].clone());
        finished.done.insert(cells[1].clone());
        finished.failed.insert(cells[4].clone());
        let mut sink = Collect::default();
        let sharding = Sharding { cells_per_job: 2, batch_jobs: 2 };
        let bar = indicatif::ProgressBar::hidden();
        let report = publish(&manifest(), &cells, &finished, sharding, &mut sink, None, &bar).await.unwrap();
        // Job 0 (c000, c001) is done; job 2 keeps only c005.
        let ids: Vec<&str> = sink.0.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(ids, ["j00000001", "j00000002", "j00000003", "j00000004"]);
        assert_eq!(sink.0[1].cells, vec![cells[5].clone()]);
        assert_eq!(sink.0[0].seed, 3);
        assert_eq!(
            report,
            SubmitReport {
                cells_total: 10,
                jobs_published: 4,
                cells_published: 7,
                cells_done: 2,
                cells_failed: 1,
                cells_already_submitted: 0
            }
        );
    }

    #[tokio::test]
    async fn a_resubmit_skips_confirmed_batches_only() {
        let dir = tempfile::tempdir().unwrap();
        let output = Store::open(dir.path().to_str().unwrap()).unwrap();
        let (m, cells) = (manifest(), cells(10));
        let sharding = Sharding { cells_per_job: 2, batch_jobs: 2 };
        let bar = indicatif::ProgressBar::hidden();
        let finished = Finished::default();
        let publish_once = |sharding, republish| {
            let (output, m, cells, finished, bar) =
                (output.clone(), m.clone(), cells.clone(), finished.clone(), bar.clone());
            async move {
                let markers = Markers::load(&output, &m.run_id, &cells, sharding, republish).await?;
                let mut sink = Collect::default();
                let report =
                    publish(&m, &cells, &finished, sharding, &mut sink, Some(&markers), &bar).await?;
                anyhow::Ok((report, sink.0.len()))
            }
        };
        let (first, sent) = publish_once(sharding, false).await.unwrap();
        assert_eq!((first.jobs_published, sent), (5, 5));
        // Three batches (4, 4 and 2 cells): everything is marked, nothing is sent again.
        let (again, sent) = publish_once(sharding, false).await.unwrap();
        assert_eq!((again.jobs_published, again.cells_already_submitted, sent), (0, 10, 0));
        // A batch whose marker is missing (its confirms never came) is sent again, alone.
        output.delete(&keys::submitted_batch(&m.run_id, 1)).await.unwrap();
        let (resumed, sent) = publish_once(sharding, false).await.unwrap();
        assert_eq!((resumed.jobs_published, resumed.cells_already_submitted, sent), (2, 6, 2));
        // Another sharding cannot use the markers: refused, unless republishing everything.
        let other = Sharding { cells_per_job: 3, batch_jobs: 2 };
        let err = publish_once(other, false).await.unwrap_err().to_string();
        assert!(err.contains("--cells-per-job 2") && err.contains("--republish"), "{err}");
        let (all, _) = publish_once(other, true).await.unwrap();
        assert_eq!(all.cells_published, 10);
    }

    #[test]
    fn batch_ranges_cover_the_cells_once() {
        let s = Sharding { cells_per_job: 3, batch_jobs: 2 };
        assert_eq!(batch_range(13, s, 0), Some(0..6));
        assert_eq!(batch_range(13, s, 2), Some(12..13));
        assert_eq!(batch_range(13, s, 3), None);
    }
}
