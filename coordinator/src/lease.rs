//! One process at a time computes a run in one output location: `local` (and `demo`) hold a
//! lease object, `runs/<run>/lease.json`, created with a conditional write (`If-None-Match: *` on
//! S3, an exclusive rename on a folder), so that two of them started on the same run id and
//! output do not both compute every cell, racing to write the same files.
//!
//! The holder rewrites the lease every [`HEARTBEAT`]; a lease whose heartbeat is older than
//! [`EXPIRES_AFTER`] belongs to a process that died (kill -9, a lost machine) and is taken over.
//! A distributed run needs none: its jobs go through the queue, which hands each to one worker.

use anyhow::Context;
use dispr_proto::{RunId, keys};
use dispr_store::Store;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the holder renews its lease.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// A lease not renewed for this long is taken over.
pub const EXPIRES_AFTER: Duration = Duration::from_secs(90);

/// What the lease object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    /// The command holding it (`local`, `demo`).
    command: String,
    host: String,
    pid: u32,
    started_ms: i64,
    heartbeat_ms: i64,
}

/// A held lease: renewed in the background until [`Lease::release`] (or until the process
/// exits, after which it expires).
pub struct Lease {
    output: Store,
    key: String,
    stop: CancellationToken,
    renewing: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes the lease of `run` under `output` for `command`, or refuses with who holds it and
    /// what to do.
    pub async fn acquire(output: &Store, run: &RunId, command: &str) -> anyhow::Result<Self> {
        let key = keys::lease(run);
        let now = now_ms();
        let holder = Holder {
            command: command.to_string(),
            host: dispr_worker::serve::host_name().unwrap_or_else(|| "this machine".into()),
            pid: std::process::id(),
            started_ms: now,
            heartbeat_ms: now,
        };
        let body = serde_json::to_vec_pretty(&holder)?;
        // Twice at most: once more after removing an expired lease.
        for _ in 0..2 {
            let written = output
                .put_if_absent(&key, body.clone().into())
                .await
                .with_context(|| format!("writing the run's lease {}", output.uri_of(&key)))?;
            if written {
                let stop = CancellationToken::new();
                let renewing = tokio::spawn(renew(output.clone(), key.clone(), holder.clone(), stop.clone()));
                return Ok(Self { output: output.clone(), key, stop, renewing });
            }
            let existing =
                output.get_opt(&key).await.with_context(|| format!("reading {}", output.uri_of(&key)))?;
            let Some(existing) = existing else { continue };
            let other: Option<Holder> = serde_json::from_slice(&existing).ok();
            let age_ms = other.as_ref().map_or(i64::MAX, |o| now_ms() - o.heartbeat_ms);
            if age_ms > EXPIRES_AFTER.as_millis() as i64 {
                tracing::warn!(lease = %output.uri_of(&key), "taking over the lease of a process that stopped renewing it");
                output
                    .delete(&key)
                    .await
                    .with_context(|| format!("removing the expired lease {}", output.uri_of(&key)))?;
                continue;
            }
            let who = other.map_or_else(
                || "another process".to_string(),
                |o| {
                    format!(
                        "`{}` on {} (pid {}), last seen {} s ago",
                        o.command,
                        o.host,
                        o.pid,
                        age_ms / 1000
                    )
                },
            );
            anyhow::bail!(
                "run {run} under {} is being computed by {who}: two processes on one run would compute every cell twice. \
                 Wait for it to finish (`dispr-coordinator status --no-broker --output {} --run-id {run}` follows it), or \
                 give this one another --run-id or --output. If that process is gone, its lease ({}) expires {} s after \
                 its last renewal",
                output.uri(),
                output.uri(),
                output.uri_of(&key),
                EXPIRES_AFTER.as_secs()
            );
        }
        anyhow::bail!(
            "could not take the lease {} of run {run}: it keeps changing; try again",
            output.uri_of(&key)
        )
    }

    /// Stops renewing and removes the lease.
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.renewing.await;
        if let Err(err) = self.output.delete(&self.key).await {
            tracing::warn!(error = %err, lease = %self.output.uri_of(&self.key),
                "could not remove the run's lease; it expires by itself");
        }
    }
}

async fn renew(output: Store, key: String, mut holder: Holder, stop: CancellationToken) {
    let mut every = tokio::time::interval(HEARTBEAT);
    every.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        holder.heartbeat_ms = now_ms();
        let Ok(body) = serde_json::to_vec_pretty(&holder) else { return };
        if let Err(err) = output.put(&key, body.into()).await {
            tracing::warn!(error = %err, "could not renew the run's lease; another process may take the run over");
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_is_refused_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let run = RunId::new("r1").unwrap();
        let first = Lease::acquire(&store, &run, "local").await.unwrap();
        let err = Lease::acquire(&store, &run, "local").await.err().expect("refused while held");
        let text = format!("{err:#}");
        assert!(text.contains("is being computed by `local`") && text.contains("another --run-id"), "{text}");
        first.release().await;
        Lease::acquire(&store, &run, "local").await.expect("free again").release().await;
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let run = RunId::new("r2").unwrap();
        let stale = Holder {
            command: "local".into(),
            host: "gone".into(),
            pid: 1,
            started_ms: 0,
            heartbeat_ms: now_ms() - EXPIRES_AFTER.as_millis() as i64 - 1000,
        };
        let key = keys::lease(&run);
        store.put(&key, serde_json::to_vec(&stale).unwrap().into()).await.unwrap();
        Lease::acquire(&store, &run, "local").await.expect("an expired lease is taken over").release().await;
    }
}
