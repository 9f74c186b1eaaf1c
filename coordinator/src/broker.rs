//! The coordinator's side of RabbitMQ: connecting (through `dispr-amqp`, which the workers use
//! too, so both sides declare the topology of `dispr_proto::queues`), declaring a run's results
//! queue, publishing jobs with pipelined confirms, and reading queue depths without consuming.

use crate::submit::JobSink;
use anyhow::Context;
use dispr_amqp as amqp;
use dispr_proto::queues::{DEFAULT_DELIVERY_LIMIT, QueueNames};
use dispr_proto::{Job, RunId};
use futures::future::BoxFuture;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;

/// Default broker URL (RabbitMQ's own default user, on this machine).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Where the broker is and which queues to use.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// RabbitMQ URL, amqp:// or amqps:// (TLS). Prefer the environment variable for credentials.
    #[arg(long, env = "DISPR_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_default_value = true, hide_env_values = true)]
    pub amqp_url: String,
    /// Prefix of every queue and exchange name (tests give each run its own).
    #[arg(long, env = "DISPR_QUEUE_PREFIX", default_value = "")]
    pub queue_prefix: String,
    /// Deliveries of a job before RabbitMQ dead-letters it; must match the workers' setting, as
    /// the queue is declared with it.
    #[arg(long, env = "DISPR_DELIVERY_LIMIT", default_value_t = DEFAULT_DELIVERY_LIMIT)]
    pub delivery_limit: u32,
}

/// A connection to the broker with the topology declared.
pub struct Broker {
    pub conn: Connection,
    pub names: QueueNames,
}

impl Broker {
    /// Connects (retrying for a while) and declares the topology. `role` names the connection in
    /// `rabbitmqctl list_connections`, e.g. `dispr-coordinator submit`.
    pub async fn connect(args: &BrokerArgs, role: &str) -> anyhow::Result<Self> {
        let names = QueueNames::with_prefix(&args.queue_prefix);
        let name = format!("{role} {}", std::process::id());
        let conn = amqp::connect(&args.amqp_url, &name).await?;
        let ch = conn.create_channel().await.context("could not open an AMQP channel")?;
        amqp::declare_topology(&ch, &names, args.delivery_limit).await?;
        // Closing is best effort: the channel's work is done whether or not the close is answered.
        let _ = ch.close(200, "topology declared".into()).await;
        Ok(Self { conn, names })
    }

    /// A sink publishing jobs to the jobs queue with publisher confirms.
    pub async fn job_sink(&self) -> anyhow::Result<AmqpSink> {
        Ok(AmqpSink { ch: amqp::confirm_channel(&self.conn).await?, queue: self.names.jobs.clone() })
    }

    /// Closes the connection (best effort: whatever it was for is done). Close the channels opened
    /// on it first.
    pub async fn close(self) {
        let _ = self.conn.close(200, "done".into()).await;
    }

    /// Declares `run`'s results queue and its binding (idempotent): `submit` does it before
    /// publishing, so that results are never dropped for want of a queue, and `watch` after a
    /// `cleanup` or an expiry.
    pub async fn declare_run(&self, run: &RunId) -> anyhow::Result<()> {
        let ch = self.conn.create_channel().await.context("could not open an AMQP channel")?;
        amqp::declare_run(&ch, &self.names, run).await?;
        let _ = ch.close(200, "run queue declared".into()).await;
        Ok(())
    }

    /// Message and consumer counts of the shared jobs and dead-letter queues and of `run`'s
    /// results queue (`None` when it does not exist), read by passive declares (nothing is
    /// consumed or created).
    pub async fn depths(&self, run: &RunId) -> anyhow::Result<QueueDepths> {
        Ok(QueueDepths {
            jobs: depth(&self.conn, &self.names.jobs).await?,
            results: depth(&self.conn, &self.names.run_results(run)).await.ok(),
            dead: depth(&self.conn, &self.names.dead).await?,
        })
    }
}

/// Message and consumer counts of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Depth {
    /// Messages ready for delivery (not counting those delivered and not yet acked).
    pub messages: u32,
    pub consumers: u32,
}

/// Depths of the jobs and dead-letter queues (shared by every run on the prefix) and of one
/// run's results queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueDepths {
    pub jobs: Depth,
    /// `None`: the run has no results queue (never submitted with this version, or cleaned up).
    pub results: Option<Depth>,
    pub dead: Depth,
}

/// A passive declare on its own channel: a missing queue closes the channel it is asked on.
pub async fn depth(conn: &Connection, queue: &str) -> anyhow::Result<Depth> {
    let ch = conn.create_channel().await.context("could not open an AMQP channel")?;
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("could not read the depth of queue {queue:?} (does it exist?)"))?;
    let _ = ch.close(200, "done".into()).await;
    Ok(Depth { messages: q.message_count(), consumers: q.consumer_count() })
}

/// Publishes jobs as persistent messages on a confirm channel.
pub struct AmqpSink {
    ch: Channel,
    queue: String,
}

impl AmqpSink {
    pub fn channel(&self) -> &Channel {
        &self.ch
    }

    /// Closes the publishing channel (best effort: every job was confirmed or reported before).
    pub async fn close(self) {
        let _ = self.ch.close(200, "jobs published".into()).await;
    }
}

/// Properties of a job message: persistent, named by run and job for `dead-letters`, and with
/// the `dispr-run` header that takes it to its run's queue should it be dead-lettered.
pub fn job_properties(job: &Job) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(format!("{}/{}", job.run_id, job.job_id).into())
        .with_app_id("dispr-coordinator".into())
        .with_headers(amqp::run_headers(&job.run_id))
}

impl JobSink for AmqpSink {
    async fn send(&mut self, job: &Job) -> anyhow::Result<BoxFuture<'static, anyhow::Result<()>>> {
        publish_job(&self.ch, &self.queue, job).await
    }
}

/// Sends one job and returns the wait for its confirm.
pub async fn publish_job(
    ch: &Channel,
    queue: &str,
    job: &Job,
) -> anyhow::Result<BoxFuture<'static, anyhow::Result<()>>> {
    let confirm = amqp::publish_with(ch, queue, &job.encode(), job_properties(job))
        .await
        .with_context(|| format!("could not publish job {}", job.job_id))?;
    let (job_id, queue) = (job.job_id.clone(), queue.to_string());
    Ok(Box::pin(async move {
        let confirmation =
            confirm.await.with_context(|| format!("no confirm from RabbitMQ for job {job_id}"))?;
        if confirmation.is_nack() {
            anyhow::bail!(
                "RabbitMQ refused (nacked) job {job_id}; see the broker's log (disk or memory alarm?)"
            );
        }
        if confirmation.take_message().is_some() {
            anyhow::bail!("RabbitMQ could not route job {job_id} to {queue:?}: was the queue deleted?");
        }
        Ok(())
    }))
}
