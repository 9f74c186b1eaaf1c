//! RabbitMQ plumbing shared by the worker and the coordinator: queue names, connecting with
//! retries, the topology of DESIGN.md ("The distributed run") and confirmed publishing.
//!
//! Topology, declared idempotently by whoever connects first:
//! - `dispr.jobs`: quorum, durable, dead-lettering to the exchange `dispr.dlx` with the routing key
//!   `dispr.jobs.dead` once a message was delivered `x-delivery-limit` times (or is rejected
//!   without requeue, as the worker does with a message it cannot decode);
//! - `dispr.dlx`: a durable direct exchange; `dispr.jobs.dead`: a durable quorum queue bound to it;
//! - `dispr.results`: quorum, durable.

use anyhow::Context;
use dispr_proto::messages::queues;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm};
use std::time::Duration;

/// The names of the queues and exchange of one deployment. Tests give each run its own prefix so
/// that they can run in parallel against one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    /// Jobs for the workers (`dispr.jobs`).
    pub jobs: String,
    /// Results and progress for the coordinator (`dispr.results`).
    pub results: String,
    /// Where `jobs` dead-letters to (`dispr.dlx`).
    pub dead_letter_exchange: String,
    /// The queue bound to the dead-letter exchange (`dispr.jobs.dead`).
    pub dead: String,
}

impl QueueNames {
    /// The production names of [`dispr_proto::messages::queues`], each preceded by `prefix`
    /// (`""` gives the production names).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            jobs: format!("{prefix}{}", queues::JOBS),
            results: format!("{prefix}{}", queues::RESULTS),
            dead_letter_exchange: format!("{prefix}{}", queues::DEAD_LETTER_EXCHANGE),
            dead: format!("{prefix}{}", queues::DEAD),
        }
    }
}

impl Default for QueueNames {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

/// `url` with any user name and password replaced by `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the first '/', '?' or '#'; credentials are what precedes its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => url.to_string(),
    }
}

/// How long [`connect`] keeps trying before it gives up: long enough to ride out a broker
/// restart, short enough that a wrong address is reported while someone is still looking.
const CONNECT_GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// Connects to RabbitMQ at `url` (`amqp://` or `amqps://`, TLS through rustls), retrying with
/// exponential backoff for up to two minutes. `name` is shown by `rabbitmqctl list_connections
/// client_properties` and the management UI. Errors and logs name the URL without credentials.
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let shown = redact_url(url);
    // Parse first: a malformed URL is the user's to fix, and lapin's parse error is opaque.
    let uri: lapin::uri::AMQPUri = url.parse().map_err(|err: String| {
        InvalidUrl(format!(
            "the RabbitMQ URL {shown} is not valid ({}): expected amqp://user:password@host:5672/vhost \
             or amqps://... (the vhost \"/\" is written %2f)",
            err.replace(url, &shown)
        ))
    })?;
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        match Connection::connect_uri(uri.clone(), props).await {
            Ok(conn) => {
                tracing::info!(broker = %shown, connection = name, "connected to RabbitMQ");
                return Ok(conn);
            }
            Err(err) => {
                // lapin's error text never includes the URI; it is safe to show.
                if let lapin::ErrorKind::IOError(io) = err.kind()
                    && is_certificate_error(io)
                {
                    return Err(anyhow::Error::new(err)).with_context(|| {
                        format!(
                            "could not connect to RabbitMQ at {shown}: its TLS certificate is not trusted here; \
                             add the CA that signed it to the system's trust store, or point SSL_CERT_FILE at a \
                             PEM file holding it"
                        )
                    });
                }
                if started.elapsed() + delay > CONNECT_GIVE_UP_AFTER || is_permanent_connect_error(&err) {
                    return Err(anyhow::Error::new(err)).with_context(|| {
                        format!(
                            "could not connect to RabbitMQ at {shown}: check the URL (--amqp-url / \
                             DISPR_AMQP_URL), that the broker is running and that the credentials are right"
                        )
                    });
                }
                tracing::warn!(broker = %shown, error = %err, retry_in_ms = delay.as_millis() as u64,
                    "RabbitMQ not reachable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A malformed RabbitMQ URL (the message names it without credentials).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidUrl(String);

/// Whether an error of [`connect`] or [`declare_topology`] is one that retrying cannot fix: a
/// malformed URL, refused credentials, an unknown vhost, a queue declared with other arguments.
pub fn is_permanent(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<InvalidUrl>() || e.downcast_ref::<lapin::Error>().is_some_and(is_permanent_connect_error)
    })
}

/// Errors that retrying cannot fix: the broker answered and refused us (bad credentials, unknown
/// vhost), as opposed to not answering (down, restarting, unreachable), which is worth waiting for.
fn is_permanent_connect_error(err: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError};
    match err.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => {
            !matches!(amqp.kind(), AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED))
        }
        lapin::ErrorKind::InvalidProtocolVersion(_) => true,
        lapin::ErrorKind::IOError(io) => is_certificate_error(io),
        _ => false,
    }
}

/// A TLS server certificate this machine does not trust (rustls: "invalid peer certificate:
/// UnknownIssuer", a wrong name, expired): waiting will not change it.
fn is_certificate_error(err: &std::io::Error) -> bool {
    err.to_string().to_ascii_lowercase().contains("certificate")
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    args
}

/// Declares the queues and exchange of `q` on `ch`. Idempotent: declaring what exists with the
/// same arguments is a no-op, so every worker and coordinator calls it on connect. A queue that
/// already exists with other arguments (another delivery limit, a classic queue) makes RabbitMQ
/// close the channel with PRECONDITION_FAILED; the error says so.
pub async fn declare_topology(ch: &Channel, q: &QueueNames, delivery_limit: u32) -> anyhow::Result<()> {
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    let mismatch = |name: &str| {
        format!(
            "could not declare {name:?}: if it exists with other arguments (not a quorum queue, another \
             delivery limit), delete it or use another --queue-prefix"
        )
    };

    ch.exchange_declare(
        q.dead_letter_exchange.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
        FieldTable::default(),
    )
    .await
    .with_context(|| mismatch(&q.dead_letter_exchange))?;

    ch.queue_declare(q.dead.as_str().into(), durable, quorum_args())
        .await
        .with_context(|| mismatch(&q.dead))?;
    ch.queue_bind(
        q.dead.as_str().into(),
        q.dead_letter_exchange.as_str().into(),
        q.dead.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .with_context(|| format!("could not bind {:?} to {:?}", q.dead, q.dead_letter_exchange))?;

    let mut jobs_args = quorum_args();
    jobs_args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(q.dead_letter_exchange.as_str().into()),
    );
    // Quorum queues dead-letter with the message's own routing key unless told otherwise; the
    // jobs' key is the jobs queue, which the dead-letter exchange does not route.
    jobs_args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(q.dead.as_str().into()));
    jobs_args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(i64::from(delivery_limit)));
    ch.queue_declare(q.jobs.as_str().into(), durable, jobs_args).await.with_context(|| mismatch(&q.jobs))?;

    ch.queue_declare(q.results.as_str().into(), durable, quorum_args())
        .await
        .with_context(|| mismatch(&q.results))?;
    Ok(())
}

/// Opens a channel in publisher-confirm mode.
pub async fn confirm_channel(conn: &Connection) -> anyhow::Result<Channel> {
    let ch = conn.create_channel().await.context("could not open an AMQP channel")?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .context("could not enable publisher confirms")?;
    Ok(ch)
}

/// Publishes `payload` as a persistent JSON message to `queue` through the default exchange and
/// waits for the broker's confirm. `ch` must be a [`confirm_channel`]. Returns an error when the
/// broker nacks the message or cannot route it.
pub async fn publish_confirmed(ch: &Channel, queue: &str, payload: &[u8]) -> anyhow::Result<()> {
    confirmed(publish(ch, queue, payload).await?, queue).await
}

/// Publishes `payload` like [`publish_confirmed`] without waiting for the confirm: many messages
/// can then be in flight at once, each confirmed later through [`confirmed`].
pub async fn publish(ch: &Channel, queue: &str, payload: &[u8]) -> anyhow::Result<PublisherConfirm> {
    let props = BasicProperties::default()
        .with_delivery_mode(2) // persistent
        .with_content_type("application/json".into());
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
        payload,
        props,
    )
    .await
    .with_context(|| format!("could not publish to {queue:?}"))
}

/// Waits for the broker's confirm of a message published to `queue`: an error when it nacks the
/// message or cannot route it.
pub async fn confirmed(confirm: PublisherConfirm, queue: &str) -> anyhow::Result<()> {
    let confirm =
        confirm.await.with_context(|| format!("no confirm from RabbitMQ for a message to {queue:?}"))?;
    if confirm.is_nack() {
        anyhow::bail!("RabbitMQ refused (nacked) a message to {queue:?}; see the broker's log");
    }
    if confirm.take_message().is_some() {
        anyhow::bail!("RabbitMQ could not route a message to {queue:?}: does the queue exist?");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_applies_to_every_name() {
        let q = QueueNames::with_prefix("t42.");
        assert_eq!(q.jobs, "t42.dispr.jobs");
        assert_eq!(q.results, "t42.dispr.results");
        assert_eq!(q.dead_letter_exchange, "t42.dispr.dlx");
        assert_eq!(q.dead, "t42.dispr.jobs.dead");
        assert_eq!(QueueNames::default().jobs, queues::JOBS);
    }

    #[test]
    fn redaction_hides_credentials_only() {
        assert_eq!(
            redact_url("amqps://user:s3cr%40t@mq.example:5671/%2f"),
            "amqps://***@mq.example:5671/%2f"
        );
        assert_eq!(redact_url("amqp://guest:p@ss@127.0.0.1:5672/%2f"), "amqp://***@127.0.0.1:5672/%2f");
        assert_eq!(redact_url("amqp://127.0.0.1:5672/%2f"), "amqp://127.0.0.1:5672/%2f");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
