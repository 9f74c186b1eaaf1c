//! Retrying object-store calls that failed for a passing reason (5xx, timeouts, a lost
//! connection) with exponential backoff, so that an S3 outage of seconds to a minute costs time,
//! not cells. What is still failing after that goes back to the caller, which requeues the job.

use backon::{ExponentialBuilder, Retryable};
use dispr_store::StoreError;
use std::time::Duration;

/// How hard to retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub retries: usize,
}

impl Default for Retry {
    /// About a minute of retries: 0.25 s doubling to at most 10 s, 9 times.
    fn default() -> Self {
        Self { first_delay: Duration::from_millis(250), max_delay: Duration::from_secs(10), retries: 9 }
    }
}

/// A store call that failed for good.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// The key does not exist.
    #[error(transparent)]
    NotFound(StoreError),
    /// Anything else, after retrying what was retriable.
    #[error(transparent)]
    Other(StoreError),
}

impl StoreFailure {
    pub fn into_inner(self) -> StoreError {
        match self {
            StoreFailure::NotFound(e) | StoreFailure::Other(e) => e,
        }
    }
}

impl Retry {
    /// Runs `op` until it succeeds, fails with a non-retriable error or runs out of retries.
    /// `what` names the operation in the warnings logged before each retry.
    pub async fn store<T, F, Fut>(&self, what: &str, op: F) -> Result<T, StoreFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.retries)
            .with_jitter();
        op.retry(backoff)
            .when(StoreError::is_retriable)
            .notify(|err, delay| {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
            })
            .await
            .map_err(|e| if e.is_not_found() { StoreFailure::NotFound(e) } else { StoreFailure::Other(e) })
    }
}
