//! The DISPR worker as a library (the coordinator's `local` mode runs it in-process).
//!
//! - [`volume_sampler`]: the [`volume_sampler::VolumeSampler`] trait and the
//!   [`volume_sampler::NullSampler`];
//! - [`model_sampler`]: the DISPR model (`dispr_model::Predictor`) as a sampler;
//! - [`model_cache`]: finding a job's sampler (checkpoints fetched, verified, loaded once, kept);
//! - [`pipeline`]: [`pipeline::JobRunner`], one job from inputs to durable outputs, reporting
//!   [`dispr_proto::ResultBody`] values to a [`pipeline::ResultSink`] (no AMQP inside);
//! - [`cell`]: the pure per-cell work (input checks, volume files, features record);
//! - [`uncertainty`]: a cell's ensemble outputs (probability and standard-deviation volumes, the
//!   scalar uncertainties of its record);
//! - [`retry`]: backoff for object-store calls;
//! - [`telemetry`]: Prometheus metrics and health state; [`http`]: `/metrics`, `/healthz`, `/readyz`;
//! - [`serve`]: the RabbitMQ consumer loop (reconnects, drain on shutdown); [`logging`]: tracing setup;
//! - [`train`], [`train_data`]: the `train` command's loop and its dataset split;
//! - [`cmd`]: the subcommands of `dispr-worker`.
//!
//! Local mode, in short:
//! ```no_run
//! # async fn demo(job: dispr_proto::Job) -> anyhow::Result<()> {
//! use dispr_worker::pipeline::{JobRunner, RunnerConfig};
//! let runner = JobRunner::new(RunnerConfig::new("local-1"), Default::default());
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let summary = runner.run(&job, &tx).await?;
//! while let Ok(result) = rx.try_recv() { println!("{result:?}"); }
//! # Ok(()) }
//! ```

pub mod cell;
pub mod cmd;
pub mod http;
pub mod logging;
pub mod model_cache;
pub mod model_sampler;
pub mod pipeline;
pub mod retry;
pub mod scoring;
pub mod serve;
pub mod telemetry;
pub mod train;
pub mod train_data;
pub mod uncertainty;
pub mod volume_sampler;
