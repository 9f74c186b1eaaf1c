//! Following a run from its result messages: cells done and failed, jobs in flight, rates and
//! an ETA. Used by `watch` (results from RabbitMQ) and `local` (results from the in-process
//! workers). Delivery is at-least-once, so a cell reported twice counts once.

use crate::cells::Finished;
use crate::job_sizing::human;
use dispr_proto::{CellId, JobResult, ResultBody};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Cells/s and per-worker rates are measured over this window.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A run's progress as results report it.
pub struct Tally {
    total: usize,
    done: HashSet<CellId>,
    failed: HashSet<CellId>,
    /// Job id -> worker holding it, from `Started` until `JobDone`.
    in_flight: HashMap<String, String>,
    workers: HashMap<String, WorkerStats>,
    /// When cells finished in the last [`RATE_WINDOW`], for the run's rate.
    recent: VecDeque<Instant>,
    started: Instant,
    finished_at_start: usize,
    /// Results of other runs (none arrive on a run's own queue; counted in case a worker of an
    /// older version publishes elsewhere).
    pub foreign_results: u64,
    /// Jobs handed back by workers that shut down (not failures).
    pub handbacks: u64,
    /// Jobs RabbitMQ dead-lettered.
    dead_jobs: HashSet<String>,
    /// The most jobs in flight at once (at most workers x prefetch when every result arrives).
    peak_in_flight: usize,
}

#[derive(Default)]
struct WorkerStats {
    cells: u64,
    recent: VecDeque<Instant>,
}

/// What changed when a result was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    CellDone,
    CellFailed,
    /// Nothing new: progress, job bookkeeping, or a duplicate of a result already counted.
    Other,
}

impl Tally {
    /// Starts from what the store already records.
    pub fn new(total: usize, finished: &Finished) -> Self {
        Self {
            total,
            done: finished.done.clone(),
            failed: finished.failed.clone(),
            in_flight: HashMap::new(),
            workers: HashMap::new(),
            recent: VecDeque::new(),
            started: Instant::now(),
            finished_at_start: finished.done.len() + finished.failed.len(),
            foreign_results: 0,
            handbacks: 0,
            dead_jobs: HashSet::new(),
            peak_in_flight: 0,
        }
    }

    /// Applies one result message.
    pub fn apply(&mut self, result: &JobResult) -> Change {
        let now = Instant::now();
        match &result.body {
            ResultBody::Started { .. } => {
                self.in_flight.insert(result.job_id.clone(), result.worker.clone());
                self.peak_in_flight = self.peak_in_flight.max(self.in_flight.len());
                Change::Other
            }
            ResultBody::Progress { .. } => Change::Other,
            ResultBody::JobDone { .. } => {
                self.in_flight.remove(&result.job_id);
                Change::Other
            }
            ResultBody::HandedBack { .. } => {
                // Back on the queue: in flight again once a worker starts it (which may already
                // have happened: the copy is queued before this report goes out).
                if self.in_flight.get(&result.job_id) == Some(&result.worker) {
                    self.in_flight.remove(&result.job_id);
                }
                self.handbacks += 1;
                Change::Other
            }
            ResultBody::CellDone { cell, .. } => {
                if !self.done.insert(cell.clone()) {
                    return Change::Other;
                }
                // A success after a recorded failure (a requeued dead letter) wins.
                self.failed.remove(cell);
                self.count(now, &result.worker);
                Change::CellDone
            }
            ResultBody::CellFailed { cell, .. } => {
                if self.done.contains(cell) || !self.failed.insert(cell.clone()) {
                    return Change::Other;
                }
                self.count(now, &result.worker);
                Change::CellFailed
            }
        }
    }

    /// A job RabbitMQ dead-lettered: it is no longer in flight, and its cells in `failed` (those
    /// not done) failed for good. Returns how many cells that newly fails.
    pub fn dead_lettered(&mut self, job_id: &str, failed: &[CellId]) -> usize {
        self.in_flight.remove(job_id);
        self.dead_jobs.insert(job_id.to_string());
        failed.iter().filter(|cell| !self.done.contains(*cell) && self.failed.insert((*cell).clone())).count()
    }

    fn count(&mut self, now: Instant, worker: &str) {
        self.recent.push_back(now);
        let w = self.workers.entry(worker.to_string()).or_default();
        w.cells += 1;
        w.recent.push_back(now);
    }

    /// Merges what the store records (results may have been consumed elsewhere or lost).
    pub fn merge(&mut self, finished: &Finished) {
        self.done.extend(finished.done.iter().cloned());
        for cell in &finished.failed {
            if !self.done.contains(cell) {
                self.failed.insert(cell.clone());
            }
        }
        self.failed.retain(|c| !self.done.contains(c));
    }

    pub fn total(&self) -> usize {
        self.total
    }
    pub fn done(&self) -> usize {
        self.done.len()
    }
    pub fn failed(&self) -> usize {
        self.failed.len()
    }
    pub fn finished(&self) -> usize {
        self.done.len() + self.failed.len()
    }
    pub fn complete(&self) -> bool {
        self.finished() >= self.total
    }
    pub fn jobs_in_flight(&self) -> usize {
        self.in_flight.len()
    }
    /// Jobs of the run RabbitMQ dead-lettered.
    pub fn dead_jobs(&self) -> usize {
        self.dead_jobs.len()
    }

    fn trim(window: &mut VecDeque<Instant>, now: Instant) {
        while window.front().is_some_and(|t| now.duration_since(*t) > RATE_WINDOW) {
            window.pop_front();
        }
    }

    /// Cells finished per second over the last minute (or since the start, if shorter).
    pub fn rate(&mut self) -> f64 {
        let now = Instant::now();
        Self::trim(&mut self.recent, now);
        let span = now.duration_since(self.started).min(RATE_WINDOW).as_secs_f64().max(1e-3);
        self.recent.len() as f64 / span
    }

    /// Time to finish at the current rate.
    pub fn eta(&mut self) -> Option<Duration> {
        let rate = self.rate();
        let left = self.total.saturating_sub(self.finished());
        (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate))
    }

    /// Per-worker cells/s over the last minute, fastest first.
    pub fn worker_rates(&mut self) -> Vec<(String, f64)> {
        let now = Instant::now();
        let span = now.duration_since(self.started).min(RATE_WINDOW).as_secs_f64().max(1e-3);
        let mut rates: Vec<(String, f64)> = self
            .workers
            .iter_mut()
            .map(|(name, w)| {
                Self::trim(&mut w.recent, now);
                (name.clone(), w.recent.len() as f64 / span)
            })
            .collect();
        rates.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rates
    }

    /// One line for the progress bar or a log: in flight, rate, ETA, busiest workers.
    pub fn line(&mut self) -> String {
        let rate = self.rate();
        let eta = self.eta().map_or_else(|| "?".to_string(), |d| human(d.as_secs_f64()));
        let workers = self.worker_rates();
        let shown: Vec<String> = workers.iter().take(4).map(|(w, r)| format!("{w} {r:.2}/s")).collect();
        let more = if workers.len() > 4 { format!(" +{} more", workers.len() - 4) } else { String::new() };
        let handbacks =
            if self.handbacks > 0 { format!(", {} handed back", self.handbacks) } else { String::new() };
        format!(
            "{} failed, {} jobs in flight{handbacks}, {rate:.2} cells/s, ETA {eta}; workers: {}{more}",
            self.failed(),
            self.jobs_in_flight(),
            if shown.is_empty() { "-".to_string() } else { shown.join(", ") }
        )
    }

    /// The end-of-watch summary.
    pub fn summary(&self) -> Summary {
        let elapsed = self.started.elapsed();
        let new = self.finished().saturating_sub(self.finished_at_start);
        let mut workers: Vec<(String, u64)> =
            self.workers.iter().map(|(n, w)| (n.clone(), w.cells)).collect();
        workers.sort();
        Summary {
            total: self.total,
            done: self.done(),
            failed: self.failed(),
            remaining: self.total.saturating_sub(self.finished()),
            finished_while_watching: new,
            seconds: elapsed.as_secs_f64(),
            cells_per_second: new as f64 / elapsed.as_secs_f64().max(1e-3),
            cells_by_worker: workers,
            peak_jobs_in_flight: self.peak_in_flight,
        }
    }
}

/// Totals at the end of `watch` or `local`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub remaining: usize,
    pub finished_while_watching: usize,
    pub seconds: f64,
    pub cells_per_second: f64,
    pub cells_by_worker: Vec<(String, u64)>,
    /// The most jobs seen in flight at once.
    pub peak_jobs_in_flight: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} of {} cells done, {} failed, {} remaining; {} finished in {} ({:.2} cells/s)",
            self.done,
            self.total,
            self.failed,
            self.remaining,
            self.finished_while_watching,
            human(self.seconds),
            self.cells_per_second
        )?;
        for (worker, cells) in &self.cells_by_worker {
            writeln!(f, "  {worker}: {cells} cells")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispr_proto::RunId;

    fn result(worker: &str, job: &str, body: ResultBody) -> JobResult {
        JobResult::new(RunId::new("r").unwrap(), job, worker, body)
    }
    fn cell(name: &str) -> CellId {
        CellId::new(name).unwrap()
    }

    #[test]
    fn duplicates_count_once_and_success_beats_failure() {
        let mut finished = Finished::default();
        finished.done.insert(cell("a"));
        let mut t = Tally::new(4, &finished);
        assert_eq!(t.apply(&result("w1", "j1", ResultBody::Started { cells: 2 })), Change::Other);
        assert_eq!(t.jobs_in_flight(), 1);
        let done_b = result("w1", "j1", ResultBody::CellDone { cell: cell("b"), seconds: 1.0 });
        assert_eq!(t.apply(&done_b), Change::CellDone);
        assert_eq!(t.apply(&done_b), Change::Other, "a redelivered job reports b again");
        let fail_c = ResultBody::CellFailed { cell: cell("c"), reason: "empty mask".into() };
        assert_eq!(t.apply(&result("w2", "j2", fail_c)), Change::CellFailed);
        assert_eq!((t.done(), t.failed(), t.complete()), (2, 1, false));
        assert_eq!(
            t.apply(&result("w2", "j2", ResultBody::CellDone { cell: cell("c"), seconds: 1.0 })),
            Change::CellDone
        );
        assert_eq!((t.done(), t.failed()), (3, 0));
        t.apply(&result("w1", "j1", ResultBody::JobDone { started_ms: 0, compute_seconds: 1.0 }));
        assert_eq!(t.jobs_in_flight(), 0);
        t.apply(&result("w3", "j3", ResultBody::Started { cells: 1 }));
        t.apply(&result("w3", "j3", ResultBody::HandedBack { handbacks: 1 }));
        assert_eq!((t.jobs_in_flight(), t.handbacks), (0, 1), "a handed-back job is not in flight");
        let mut store = Finished::default();
        store.failed.insert(cell("d"));
        t.merge(&store);
        assert!(t.complete());
        let s = t.summary();
        assert_eq!((s.done, s.failed, s.remaining, s.finished_while_watching), (3, 1, 0, 3));
        assert_eq!(s.cells_by_worker, vec![("w1".to_string(), 1), ("w2".to_string(), 2)]);
        assert!(t.worker_rates()[0].1 > 0.0);
    }

    #[test]
    fn a_dead_lettered_job_fails_its_unfinished_cells_and_leaves_flight() {
        let mut finished = Finished::default();
        finished.done.insert(cell("a"));
        let mut t = Tally::new(3, &finished);
        t.apply(&result("w1", "j1", ResultBody::Started { cells: 3 }));
        assert_eq!(t.dead_lettered("j1", &[cell("a"), cell("b"), cell("c")]), 2, "a is done");
        assert_eq!((t.failed(), t.jobs_in_flight(), t.complete()), (2, 0, true));
        assert_eq!(t.dead_lettered("j1", &[cell("b")]), 0, "seen twice, counted once");
    }
}
