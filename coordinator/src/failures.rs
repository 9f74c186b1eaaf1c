//! Why a run's cells failed, grouped by reason: forty cells failing for one reason is a
//! misconfiguration (a dataset path that means another folder on the workers, a model that
//! cannot be read), not forty bad cells, and the operator should see it as one line. `status`,
//! `watch` and `local` print these groups; `--retry-failed` on `local` and `submit` runs the
//! failed cells again once the cause is fixed.

use anyhow::Context;
use dispr_proto::{CellFailure, CellId, Job, RunId, keys};
use dispr_store::Store;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Failure records read at most to group them (the groups of a larger run are of a sample).
pub const MAX_READ: usize = 2000;

/// Cells that failed for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The reason, with the cell's id replaced by `<cell>` so that cells group together.
    pub reason: String,
    pub cells: usize,
    /// One of them, to look at.
    pub example: CellId,
}

/// The failed cells of a run, grouped by reason, most cells first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FailureGroups {
    pub groups: Vec<Group>,
    /// Failed cells in all (the groups cover `read` of them).
    pub failed: usize,
    /// Failure records read and grouped.
    pub read: usize,
}

/// The reason of a failure without the cell's own id, so that one cause gives one text.
fn pattern(cell: &CellId, reason: &str) -> String {
    reason.replace(cell.as_str(), "<cell>")
}

impl FailureGroups {
    /// Groups `(cell, reason)` pairs; `failed` is the number of failed cells in all.
    pub fn group<'a>(failures: impl IntoIterator<Item = (&'a CellId, &'a str)>, failed: usize) -> Self {
        let mut by_reason: BTreeMap<String, Group> = BTreeMap::new();
        let mut read = 0;
        for (cell, reason) in failures {
            read += 1;
            let reason = pattern(cell, reason);
            by_reason
                .entry(reason.clone())
                .or_insert_with(|| Group { reason, cells: 0, example: cell.clone() })
                .cells += 1;
        }
        let mut groups: Vec<Group> = by_reason.into_values().collect();
        groups.sort_by(|a, b| b.cells.cmp(&a.cells).then_with(|| a.reason.cmp(&b.reason)));
        Self { groups, failed, read }
    }

    /// Reads the failure records of `failed` cells of `run` (at most [`MAX_READ`]) and groups them.
    pub async fn read(output: &Store, run: &RunId, failed: &HashSet<CellId>) -> anyhow::Result<Self> {
        let mut cells: Vec<&CellId> = failed.iter().collect();
        cells.sort();
        cells.truncate(MAX_READ);
        let records: Vec<(CellId, String)> = futures::stream::iter(cells)
            .map(|cell| async move {
                let key = keys::failure(run, cell);
                let bytes = output
                    .get(&key)
                    .await
                    .with_context(|| format!("reading {key} under {}", output.uri()))?;
                let reason = match CellFailure::decode(&bytes) {
                    Ok(record) => record.reason,
                    Err(e) => format!("(unreadable failure record: {e})"),
                };
                anyhow::Ok((cell.clone(), reason))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        Ok(Self::group(records.iter().map(|(c, r)| (c, r.as_str())), failed.len()))
    }

    /// Whether every failed cell (of at least three) failed for one reason: the run's setup is
    /// likely wrong, not its cells.
    pub fn looks_like_misconfiguration(&self) -> bool {
        self.failed >= 3 && self.groups.len() == 1 && self.read == self.failed
    }
}

impl std::fmt::Display for FailureGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.failed == 0 {
            return Ok(());
        }
        let sample =
            if self.read < self.failed { format!(" (the first {} read)", self.read) } else { String::new() };
        writeln!(f, "why {} cells failed{sample}:", self.failed)?;
        const SHOWN: usize = 8;
        for g in self.groups.iter().take(SHOWN) {
            writeln!(f, "  {:>6} cell(s): {} (e.g. {})", g.cells, g.reason, g.example)?;
        }
        if self.groups.len() > SHOWN {
            let rest: usize = self.groups[SHOWN..].iter().map(|g| g.cells).sum();
            writeln!(f, "  {rest:>6} cell(s) for {} other reasons", self.groups.len() - SHOWN)?;
        }
        if self.looks_like_misconfiguration() {
            writeln!(
                f,
                "every failed cell failed for the same reason: that is likely the run's setup (dataset or output \
                 location, model, permissions), not the cells. Fix it, then run the cells again with the same \
                 command and --retry-failed"
            )?;
        }
        Ok(())
    }
}

/// Why RabbitMQ gave up on a job, from the `x-death` header of its dead-lettered copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Death {
    /// `delivery_limit` (it kept failing or killing its workers), `rejected` (a worker refused it),
    /// `expired` or `maxlen`.
    pub reason: String,
    /// Times it was dead-lettered from that queue.
    pub count: i64,
    /// How often workers handed it back on shutdown before (not failures).
    pub handbacks: u32,
}

impl Death {
    /// The failure reason of each of the job's cells: what happened, and how to retry.
    pub fn reason_for(&self, job: &Job) -> String {
        let what = match self.reason.as_str() {
            "delivery_limit" => "RabbitMQ dead-lettered its job after the delivery limit: every worker that took it \
                 died or failed before finishing it (killed, out of memory, or a crash; see the workers' logs)"
                .to_string(),
            "rejected" => "a worker rejected its job as unusable (see the workers' logs)".to_string(),
            other => format!("RabbitMQ dead-lettered its job ({other})"),
        };
        let handbacks = if self.handbacks > 0 {
            format!(
                "; it was also handed back {} times by workers that shut down, which did not count",
                self.handbacks
            )
        } else {
            String::new()
        };
        format!(
            "{what}{handbacks}. Once the cause is fixed, put it back with `dispr-coordinator dead-letters --run-id {} \
             --requeue` (job {})",
            job.run_id, job.job_id
        )
    }
}

/// The `worker` of the failure records of dead-lettered cells.
pub const DEAD_LETTERED: &str = "rabbitmq (dead-lettered)";

/// Deletes the failure records that [`record_dead_lettered`] wrote for `job`'s cells, as the job
/// is put back on the queue: its cells are unfinished again. Records a worker wrote stay (they
/// go with `--retry-failed`). Returns how many were deleted.
pub async fn forget_dead_lettered(job: &Job) -> anyhow::Result<usize> {
    let output = Store::open(&job.output_uri)
        .with_context(|| format!("opening the job's output {}", job.output_uri))?;
    let output = &output;
    let deleted: Vec<bool> = futures::stream::iter(&job.cells)
        .map(|cell| async move {
            let key = keys::failure(&job.run_id, cell);
            let record = output
                .get_opt(&key)
                .await
                .with_context(|| format!("reading {key} under {}", output.uri()))?;
            let ours = record
                .and_then(|bytes| CellFailure::decode(&bytes).ok())
                .is_some_and(|r| r.worker == DEAD_LETTERED);
            if ours {
                output
                    .delete(&key)
                    .await
                    .with_context(|| format!("deleting {key} under {}", output.uri()))?;
            }
            anyhow::Ok(ours)
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    Ok(deleted.into_iter().filter(|d| *d).count())
}

/// Records the cells of a dead-lettered `job` as failed for good (`failures/<cell>.json`), unless
/// a cell is done or already has a failure record (a worker's own reason says more). Returns the
/// cells that are now failed for that reason or another; done cells are left out.
pub async fn record_dead_lettered(output: &Store, job: &Job, death: &Death) -> anyhow::Result<Vec<CellId>> {
    let reason = death.reason_for(job);
    let run = &job.run_id;
    let failed: Vec<Option<CellId>> = futures::stream::iter(&job.cells)
        .map(|cell| {
            let reason = reason.clone();
            async move {
                if output.exists(&keys::features(run, cell)).await.unwrap_or(false) {
                    return anyhow::Ok(None);
                }
                let record = CellFailure {
                    schema_version: dispr_proto::SCHEMA_VERSION,
                    run_id: run.clone(),
                    cell: cell.clone(),
                    job_id: job.job_id.clone(),
                    worker: DEAD_LETTERED.into(),
                    reason,
                    error_chain: Vec::new(),
                    at_ms: chrono::Utc::now().timestamp_millis().max(0) as u64,
                };
                let key = keys::failure(run, cell);
                output
                    .put_if_absent(&key, record.encode().into())
                    .await
                    .with_context(|| format!("writing {key} under {}", output.uri()))?;
                Ok(Some(cell.clone()))
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    Ok(failed.into_iter().flatten().collect())
}

/// Deletes the failure records of `failed` cells of `run`, so that they count as unfinished and
/// the next submission publishes them again. Returns how many were deleted.
pub async fn forget(output: &Store, run: &RunId, failed: &HashSet<CellId>) -> anyhow::Result<usize> {
    futures::stream::iter(failed)
        .map(|cell| async move {
            let key = keys::failure(run, cell);
            output.delete(&key).await.with_context(|| format!("deleting {key} under {}", output.uri()))
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .map(|deleted| deleted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CellId {
        CellId::new(s).unwrap()
    }

    #[test]
    fn one_cause_is_one_group() {
        let cells: Vec<CellId> = (0..40).map(|i| id(&format!("c{i:03}"))).collect();
        let reasons: Vec<String> = cells
            .iter()
            .map(|c| format!("cell {c} is not in the dataset /work/dist/ds: image/{c}.tif does not exist"))
            .collect();
        let groups = FailureGroups::group(cells.iter().zip(&reasons).map(|(c, r)| (c, r.as_str())), 40);
        assert_eq!(groups.groups.len(), 1);
        assert_eq!(groups.groups[0].cells, 40);
        assert!(groups.looks_like_misconfiguration());
        let text = groups.to_string();
        assert!(text.contains("40 cell(s): cell <cell> is not in the dataset /work/dist/ds"), "{text}");
        assert!(text.contains("--retry-failed"), "{text}");
    }

    #[test]
    fn different_causes_are_counted_apart() {
        let (a, b, c) = (id("a1"), id("b2"), id("c3"));
        let groups = FailureGroups::group(
            [(&a, "cell a1: mask empty"), (&b, "cell b2: mask empty"), (&c, "cell c3: not a TIFF")],
            3,
        );
        assert_eq!(groups.groups.iter().map(|g| g.cells).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(groups.groups[0].reason, "cell <cell>: mask empty");
        assert!(!groups.looks_like_misconfiguration());
        assert!(!groups.to_string().contains("--retry-failed"));
    }
}
