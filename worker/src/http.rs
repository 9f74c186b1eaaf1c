//! The worker's HTTP endpoints for Prometheus and Kubernetes probes:
//! `/metrics` (Prometheus text format), `/healthz` (liveness), `/readyz` (readiness).

use crate::telemetry::Telemetry;
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Binds `addr` now, so that a busy port is reported at start-up rather than later.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for /metrics and the probes: is another process using it? Pick another with --http-addr")
    })
}

/// The routes, on their own for tests.
pub fn router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(telemetry)
}

/// Serves the routes on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) {
    let app = router(telemetry);
    if let Err(err) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        tracing::error!(error = %err, "the metrics and probe server stopped");
    }
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        t.metrics.render(),
    )
}

fn probe(result: Result<(), String>) -> (StatusCode, String) {
    match result {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn healthz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    probe(t.health.alive())
}

async fn readyz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    probe(t.health.ready())
}
