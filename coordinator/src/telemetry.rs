//! The coordinator's Prometheus metrics, served on `/metrics` while `watch` or `local` runs.

use crate::tally::{Change, Tally};
use axum::Router;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Label set of the per-worker counter.
type WorkerLabel = [(&'static str, String); 1];

/// Metrics of the run being followed (all prefixed `dispr_coordinator_`).
pub struct Metrics {
    registry: Registry,
    pub cells_total: Gauge,
    pub cells_done: Gauge,
    pub cells_failed: Gauge,
    pub jobs_in_flight: Gauge,
    pub cells_per_second: Gauge<f64, AtomicU64>,
    /// Result messages consumed (including progress and duplicates).
    pub results: Counter,
    /// Cells finished per worker (done or failed), as reported by results.
    pub worker_cells: Family<WorkerLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dispr_coordinator");
        let m = Self {
            cells_total: Gauge::default(),
            cells_done: Gauge::default(),
            cells_failed: Gauge::default(),
            jobs_in_flight: Gauge::default(),
            cells_per_second: Gauge::default(),
            results: Counter::default(),
            worker_cells: Family::default(),
            registry: Registry::default(),
        };
        registry.register("cells_total", "Cells in the run's dataset", m.cells_total.clone());
        registry.register("cells_done", "Cells whose outputs are durable", m.cells_done.clone());
        registry.register("cells_failed", "Cells that failed for good", m.cells_failed.clone());
        registry.register("jobs_in_flight", "Jobs started and not finished", m.jobs_in_flight.clone());
        registry.register(
            "cells_per_second",
            "Cells finished per second over the last minute",
            m.cells_per_second.clone(),
        );
        registry.register("results", "Result messages consumed", m.results.clone());
        registry.register("worker_cells", "Cells finished, by worker", m.worker_cells.clone());
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Records one applied result and the tally's totals.
    pub fn record(&self, tally: &mut Tally, worker: &str, change: Change) {
        self.results.inc();
        if change != Change::Other {
            self.worker_cells.get_or_create(&[("worker", worker.to_string())]).inc();
        }
        self.update(tally);
    }

    /// Sets the gauges from the tally.
    pub fn update(&self, tally: &mut Tally) {
        self.cells_total.set(tally.total() as i64);
        self.cells_done.set(tally.done() as i64);
        self.cells_failed.set(tally.failed() as i64);
        self.jobs_in_flight.set(tally.jobs_in_flight() as i64);
        self.cells_per_second.set(tally.rate());
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics` and `/healthz` on `addr` in the background; returns the bound address
/// (`addr` may use port 0).
pub async fn serve(addr: &str, metrics: Arc<Metrics>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        anyhow::anyhow!(
            "cannot serve metrics on {addr} ({err}); choose another --http-addr, or port 0 for any free one"
        )
    })?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "the metrics server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::Finished;
    use dispr_proto::{CellId, JobResult, ResultBody, RunId};

    #[tokio::test]
    async fn metrics_follow_the_tally_and_are_served() {
        let metrics = Arc::new(Metrics::default());
        let mut tally = Tally::new(3, &Finished::default());
        let result = JobResult::new(
            RunId::new("r").unwrap(),
            "j1",
            "w1",
            ResultBody::CellDone { cell: CellId::new("c").unwrap(), seconds: 1.0 },
        );
        let change = tally.apply(&result);
        metrics.record(&mut tally, &result.worker, change);
        let text = metrics.render();
        for line in [
            "dispr_coordinator_cells_total 3",
            "dispr_coordinator_cells_done 1",
            "dispr_coordinator_worker_cells_total{worker=\"w1\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // Served over HTTP on a free port.
        let addr = serve("127.0.0.1:0", metrics.clone()).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        assert!(
            body.starts_with("HTTP/1.1 200") && body.contains("dispr_coordinator_cells_done 1"),
            "{body}"
        );
        let err = serve(&addr.to_string(), metrics).await.unwrap_err().to_string();
        assert!(err.contains("--http-addr"), "{err}");
    }
}
