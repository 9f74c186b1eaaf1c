//! `dispr-coordinator dead-letters`: lists the jobs in `dispr.jobs.dead` with why RabbitMQ
//! dead-lettered them (the `x-death` headers), and with `--requeue` puts them back on
//! `dispr.jobs` (with a fresh delivery count) once their cause is fixed.

use crate::broker::{Broker, BrokerArgs, publish_job};
use crate::failures::Death;
use anyhow::Context;
use dispr_proto::{Job, RunId};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Only the jobs of this run.
    #[arg(long)]
    pub run_id: Option<RunId>,
    /// Put the listed jobs back on the jobs queue. Messages that are not jobs stay.
    #[arg(long)]
    pub requeue: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One dead-lettered message, as listed.
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    /// `<run>/<job>` as published, when the message has an id.
    pub message_id: Option<String>,
    pub run_id: Option<String>,
    pub job_id: Option<String>,
    pub cells: usize,
    /// Why: `delivery_limit` (it kept failing or killing workers), `rejected` (a worker could not
    /// read it), `expired` or `maxlen`.
    pub reason: String,
    /// Times it was dead-lettered from that queue.
    pub count: i64,
    /// Times workers handed it back on shutdown before (not failures; the `dispr-handbacks`
    /// header).
    pub handbacks: u32,
    /// The queue it was dead-lettered from.
    pub queue: String,
    /// Why the body is not a job, when it is not one.
    pub undecodable: Option<String>,
    pub requeued: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::init_logging(false);
    crate::runtime::block_on(dead_letters(args))?
}

async fn dead_letters(args: Args) -> anyhow::Result<()> {
    let broker = Broker::connect(&args.broker, "dispr-coordinator dead-letters").await?;
    let listed = list(&broker, args.run_id.as_ref(), args.requeue).await?;
    let _ = broker.conn.close(200, "dead letters read".into()).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    if listed.is_empty() {
        println!("{} is empty", broker.names.dead);
        return Ok(());
    }
    for d in &listed {
        let what = match (&d.run_id, &d.job_id) {
            (Some(run), Some(job)) => format!("run {run} job {job} ({} cells)", d.cells),
            _ => format!("not a job message ({})", d.undecodable.as_deref().unwrap_or("?")),
        };
        let requeued = if d.requeued { "; requeued" } else { "" };
        let handbacks = if d.handbacks > 0 {
            format!("; handed back {} times before", d.handbacks)
        } else {
            String::new()
        };
        println!("{what}: {} from {} ({} times){handbacks}{requeued}", d.reason, d.queue, d.count);
    }
    let requeued = listed.iter().filter(|d| d.requeued).count();
    if args.requeue {
        println!("requeued {requeued} of {} messages to {}", listed.len(), broker.names.jobs);
    } else {
        println!(
            "{} messages; once their cause is fixed, put the jobs back with --requeue (a cell failed for good \
             has failures/<cell>.json with the reason)",
            listed.len()
        );
    }
    Ok(())
}

/// Reads every message of the dead-letter queue with `basic.get`. Without `requeue`, nothing is
/// acked, so closing the channel returns every message to the queue untouched; with it, the
/// selected jobs are republished (confirmed) to the jobs queue before their dead copy is acked.
pub async fn list(broker: &Broker, run: Option<&RunId>, requeue: bool) -> anyhow::Result<Vec<DeadLetter>> {
    Ok(read(broker, run, requeue).await?.into_iter().map(|(letter, _)| letter).collect())
}

/// The dead-lettered jobs of `run`, with why, without taking them off the queue: `status` and
/// `watch` count their cells as failed.
pub async fn dead_jobs(broker: &Broker, run: &RunId) -> anyhow::Result<Vec<(Job, Death)>> {
    Ok(read(broker, Some(run), false)
        .await?
        .into_iter()
        .filter_map(|(letter, job)| {
            let death = Death { reason: letter.reason, count: letter.count, handbacks: letter.handbacks };
            job.map(|job| (job, death))
        })
        .collect())
}

/// [`list`], with each selected message's job when it is one.
async fn read(
    broker: &Broker,
    run: Option<&RunId>,
    requeue: bool,
) -> anyhow::Result<Vec<(DeadLetter, Option<Job>)>> {
    let ch = dispr_amqp::confirm_channel(&broker.conn).await?;
    let mut listed = Vec::new();
    while let Some(message) = ch
        .basic_get(broker.names.dead.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .with_context(|| format!("could not read {:?}", broker.names.dead))?
    {
        let mut dead = describe(&message);
        let job = Job::decode(&message.delivery.data);
        let selected = match (&job, run) {
            (Ok(job), Some(run)) => &job.run_id == run,
            (Ok(_), None) => true,
            (Err(_), _) => false,
        };
        if requeue
            && selected
            && let Ok(job) = &job
        {
            publish_job(&ch, &broker.names.jobs, job).await?.await?;
            // Its cells are unfinished again: the failure records `watch` wrote for them go.
            if let Err(err) = crate::failures::forget_dead_lettered(job).await {
                tracing::warn!(error = %format!("{err:#}"), job = %job.job_id,
                    "requeued, but could not delete the failure records of its cells; `submit --retry-failed` removes them");
            }
            message
                .delivery
                .ack(BasicAckOptions::default())
                .await
                .context("could not ack a requeued dead letter")?;
            dead.requeued = true;
        }
        if selected || run.is_none() {
            listed.push((dead, job.ok()));
        }
    }
    // Unacked messages go back to the queue as the channel closes.
    let _ = ch.close(200, "listed".into()).await;
    Ok(listed)
}

fn describe(message: &BasicGetMessage) -> DeadLetter {
    let props = &message.delivery.properties;
    let job = Job::decode(&message.delivery.data);
    let (reason, count, queue) = first_death(props.headers().as_ref());
    let handbacks = dispr_amqp::handbacks(props.headers().as_ref());
    DeadLetter {
        message_id: props.message_id().as_ref().map(|s| s.to_string()),
        run_id: job.as_ref().ok().map(|j| j.run_id.to_string()),
        job_id: job.as_ref().ok().map(|j| j.job_id.clone()),
        cells: job.as_ref().map_or(0, |j| j.cells.len()),
        reason,
        count,
        handbacks,
        queue,
        undecodable: job.err().map(|e| e.to_string()),
        requeued: false,
    }
}

/// The reason, count and source queue of the most recent death in the `x-death` header.
pub fn first_death(headers: Option<&FieldTable>) -> (String, i64, String) {
    let unknown = || ("unknown (no x-death header)".to_string(), 0, "?".to_string());
    let Some(AMQPValue::FieldArray(deaths)) = headers.and_then(|h| h.inner().get("x-death")) else {
        return unknown();
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else { return unknown() };
    let field = |name: &str| death.inner().get(name);
    let text = |v: Option<&AMQPValue>| match v {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        _ => "?".to_string(),
    };
    let count = match field("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        _ => 0,
    };
    (text(field("reason")), count, text(field("queue")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};

    #[test]
    fn reads_the_latest_death_from_x_death() {
        let mut death = FieldTable::default();
        death.insert("reason".into(), AMQPValue::LongString(LongString::from("delivery_limit")));
        death.insert("queue".into(), AMQPValue::LongString(LongString::from("t.dispr.jobs")));
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        assert_eq!(
            first_death(Some(&headers)),
            ("delivery_limit".to_string(), 1, "t.dispr.jobs".to_string())
        );
        assert_eq!(first_death(None).1, 0);
    }
}
