//! What a worker tells the outside about itself: Prometheus metrics and the state behind the
//! `/healthz` and `/readyz` probes. One [`Telemetry`] per worker, shared by the job pipeline
//! (which records into it) and the HTTP server (which reads it).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Outcome label of the job and cell counters.
pub type Outcome = [(&'static str, &'static str); 1];

/// The worker's Prometheus metrics (all prefixed `dispr_worker_`).
pub struct Metrics {
    registry: Registry,
    /// Jobs finished, by outcome: `done` (acked), `requeued` (nacked for redelivery), `rejected`
    /// (undecodable, dead-lettered).
    pub jobs: Family<Outcome, Counter>,
    /// Cells finished, by outcome: `done`, `failed` (failure recorded), `skipped` (already done).
    pub cells: Family<Outcome, Counter>,
    pub job_seconds: Histogram,
    pub cell_seconds: Histogram,
    /// Model evaluations per second over the last sampling batch (all samples of a batch count).
    pub steps_per_second: Gauge<f64, AtomicU64>,
    /// Jobs being processed now.
    pub in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dispr_worker");
        let jobs = Family::<Outcome, Counter>::default();
        let cells = Family::<Outcome, Counter>::default();
        // 10 ms to about 3 hours: a null-sampler cell to a 1000-step DDPM job on a CPU.
        let job_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 21));
        let cell_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 21));
        let steps_per_second = Gauge::<f64, AtomicU64>::default();
        let in_flight = Gauge::default();
        registry.register("jobs", "Jobs finished, by outcome", jobs.clone());
        registry.register("cells", "Cells finished, by outcome", cells.clone());
        registry.register("job_duration_seconds", "Wall time per job", job_seconds.clone());
        registry.register("cell_duration_seconds", "Wall time per cell", cell_seconds.clone());
        registry.register(
            "sampler_steps_per_second",
            "Model evaluations per second in the last sampling batch",
            steps_per_second.clone(),
        );
        registry.register("jobs_in_flight", "Jobs being processed", in_flight.clone());
        Self { registry, jobs, cells, job_seconds, cell_seconds, steps_per_second, in_flight }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Liveness and readiness state.
pub struct Health {
    started: Instant,
    /// Milliseconds since `started` of the compute thread's last sign of life.
    last_progress_ms: AtomicU64,
    /// Compute batches running now.
    busy: AtomicUsize,
    broker_connected: AtomicBool,
    draining: AtomicBool,
    /// Models being loaded now: not ready to take work while one loads.
    loading_models: AtomicUsize,
    /// How long compute may go without progress before the worker counts as stuck.
    stall_after: Duration,
}

impl Health {
    pub fn new(stall_after: Duration) -> Self {
        Self {
            started: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            broker_connected: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            loading_models: AtomicUsize::new(0),
            stall_after,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The compute thread made progress (a sampler step, a finished cell).
    pub fn progressed(&self) {
        self.last_progress_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Marks compute as running until the returned guard drops.
    pub fn busy(&self) -> BusyGuard<'_> {
        self.progressed();
        self.busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(&self.busy)
    }

    /// Marks a model as loading until the returned guard drops.
    pub fn loading_model(&self) -> BusyGuard<'_> {
        self.loading_models.fetch_add(1, Ordering::Relaxed);
        BusyGuard(&self.loading_models)
    }

    pub fn set_broker_connected(&self, connected: bool) {
        self.broker_connected.store(connected, Ordering::Relaxed);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Alive: idle, or computing and made progress within the stall limit.
    pub fn alive(&self) -> Result<(), String> {
        if self.busy.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let quiet = Duration::from_millis(
            self.now_ms().saturating_sub(self.last_progress_ms.load(Ordering::Relaxed)),
        );
        if quiet > self.stall_after {
            return Err(format!("compute made no progress for {}s", quiet.as_secs()));
        }
        Ok(())
    }

    /// Ready to take jobs: connected to the broker, not draining and not loading a model.
    pub fn ready(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        if !self.broker_connected.load(Ordering::Relaxed) {
            return Err("not connected to RabbitMQ".into());
        }
        if self.loading_models.load(Ordering::Relaxed) > 0 {
            return Err("loading a model".into());
        }
        Ok(())
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new(Duration::from_secs(600))
    }
}

/// Decrements a counter of [`Health`] when dropped.
pub struct BusyGuard<'a>(&'a AtomicUsize);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Metrics and health of one worker.
#[derive(Default)]
pub struct Telemetry {
    pub metrics: Metrics,
    pub health: Health,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let m = Metrics::default();
        m.jobs.get_or_create(&[("outcome", "done")]).inc();
        m.cell_seconds.observe(0.5);
        let text = m.render();
        assert!(text.contains("dispr_worker_jobs_total{outcome=\"done\"} 1"), "{text}");
        assert!(text.contains("dispr_worker_cell_duration_seconds_count 1"), "{text}");
        assert!(text.contains("dispr_worker_jobs_in_flight 0"), "{text}");
    }

    #[test]
    fn stalled_compute_is_not_alive_and_readiness_needs_a_broker() {
        let h = Health::new(Duration::ZERO);
        assert!(h.alive().is_ok(), "idle is alive");
        let guard = h.busy();
        std::thread::sleep(Duration::from_millis(5));
        assert!(h.alive().unwrap_err().contains("no progress"));
        drop(guard);
        assert!(h.alive().is_ok());

        assert!(h.ready().unwrap_err().contains("RabbitMQ"));
        h.set_broker_connected(true);
        assert!(h.ready().is_ok());
        let loading = h.loading_model();
        assert!(h.ready().is_err());
        drop(loading);
        h.set_draining();
        assert_eq!(h.ready().unwrap_err(), "shutting down");
    }
}
