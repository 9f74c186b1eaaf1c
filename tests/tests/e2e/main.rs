//! End-to-end scenarios of the distributed run: the built `dispr-coordinator` and `dispr-worker`
//! binaries as separate processes, against the real RabbitMQ and s3s-fs that `scripts/test.sh`
//! starts. Each scenario has its own run id, S3 prefix and queue prefix, so they run in parallel
//! and twice in a row. They use the null sampler: the orchestration is under test here, the
//! model has its own tests.
//!
//! One test binary with a module per scenario: one link instead of eight.

mod support;

mod happy_path;
mod many_runs;
mod outages;
mod poison;
mod sigterm_drain;
mod submit_resume;
mod tls;
mod worker_killed;
