//! The RabbitMQ calls both sides of the queue share: connecting with retries, declaring the
//! topology that `dispr_proto::queues` describes as data, and confirmed publishing.
//!
//! Why a crate of its own: the worker and the coordinator both talk to the broker, and the
//! coordinator may use the worker crate only for its single-machine `local` mode (DESIGN.md,
//! "Layout"). `dispr-proto` stays free of lapin (it is serde types and plain data), so the lapin
//! calls sit one layer above it, below both binaries: proto <- amqp <- worker, coordinator.

use anyhow::Context;
use dispr_proto::RunId;
use dispr_proto::queues::{HANDBACKS_HEADER, QueueArgument, QueueNames, RUN_HEADER, Topology};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm};
use std::time::Duration;

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
        e.is::<InvalidUrl>()
            || e.is::<TopologyMismatch>()
            || e.downcast_ref::<lapin::Error>().is_some_and(is_permanent_connect_error)
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

/// Declares the exchanges, queues and bindings of `q.topology(delivery_limit)` on `ch`.
/// Idempotent: declaring what exists with the same arguments is a no-op, so every worker and
/// coordinator calls it on connect. A queue that already exists with other arguments (another
/// delivery limit, a classic queue) makes RabbitMQ close the channel with PRECONDITION_FAILED;
/// the error says which setting to align, and that deleting a queue throws its jobs away.
pub async fn declare_topology(ch: &Channel, q: &QueueNames, delivery_limit: u32) -> anyhow::Result<()> {
    declare(ch, &q.topology(delivery_limit)).await
}

/// Declares `run`'s results queue and its binding (see [`QueueNames::run_topology`]); the
/// deployment's topology must be declared already.
pub async fn declare_run(ch: &Channel, q: &QueueNames, run: &RunId) -> anyhow::Result<()> {
    declare(ch, &q.run_topology(run)).await
}

/// A queue or exchange that exists with other arguments than the ones declared.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TopologyMismatch(String);

/// Declares `topology` on `ch`, in its order.
pub async fn declare(ch: &Channel, topology: &Topology) -> anyhow::Result<()> {
    for exchange in &topology.exchanges {
        let kind = match exchange.kind {
            dispr_proto::queues::ExchangeKind::Direct => ExchangeKind::Direct,
            dispr_proto::queues::ExchangeKind::Headers => ExchangeKind::Headers,
        };
        ch.exchange_declare(
            exchange.name.as_str().into(),
            kind,
            ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .map_err(|err| declare_error(err, "exchange", &exchange.name))?;
    }
    for queue in &topology.queues {
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        ch.queue_declare(queue.name.as_str().into(), durable, field_table(&queue.arguments))
            .await
            .map_err(|err| declare_error(err, "queue", &queue.name))?;
    }
    for b in &topology.bindings {
        ch.queue_bind(
            b.queue.as_str().into(),
            b.exchange.as_str().into(),
            b.routing_key.as_str().into(),
            QueueBindOptions::default(),
            field_table(&b.arguments),
        )
        .await
        .with_context(|| format!("could not bind {:?} to {:?}", b.queue, b.exchange))?;
    }
    for b in &topology.exchange_bindings {
        ch.exchange_bind(
            b.destination.as_str().into(),
            b.source.as_str().into(),
            b.routing_key.as_str().into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("could not bind exchange {:?} to {:?}", b.destination, b.source))?;
    }
    Ok(())
}

/// The error of declaring `what` `name`: PRECONDITION_FAILED (it exists with other arguments)
/// becomes one line that says what differs, which setting to align, and why not to delete it.
fn declare_error(err: lapin::Error, what: &str, name: &str) -> anyhow::Error {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    if let lapin::ErrorKind::ProtocolError(amqp) = err.kind()
        && matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    {
        // RabbitMQ's text names the argument and both values ("inequivalent arg
        // 'x-delivery-limit' for queue ...: received '5' but current is '3'").
        let says = amqp.get_message().to_string();
        let says = says.strip_prefix("PRECONDITION_FAILED - ").unwrap_or(&says);
        let advice = if says.contains("x-delivery-limit") {
            "every worker and coordinator on one queue prefix must use the --delivery-limit \
             (DISPR_DELIVERY_LIMIT) the queue was declared with: set it to the queue's current value"
        } else {
            "it was declared by another version or by hand: use the arguments it has, or another \
             --queue-prefix (DISPR_QUEUE_PREFIX)"
        };
        return anyhow::Error::new(TopologyMismatch(format!(
            "the {what} {name:?} exists on RabbitMQ with other arguments ({says}); {advice}. Do not delete \
             it while it holds jobs: that throws them away"
        )));
    }
    anyhow::Error::new(err).context(format!("could not declare the {what} {name:?}"))
}
/// The arguments of a queue declaration or binding as AMQP field values.
pub fn field_table(arguments: &[QueueArgument]) -> FieldTable {
    let mut table = FieldTable::default();
    for argument in arguments {
        let (key, value) = match argument {
            QueueArgument::Text { key, value } => (key, AMQPValue::LongString(value.as_str().into())),
            QueueArgument::Int { key, value } => (key, AMQPValue::LongLongInt(*value)),
        };
        table.insert((*key).into(), value);
    }
    table
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
    publish_with(ch, queue, payload, props).await
}

/// Publishes `payload` with `props` to `queue` through the default exchange, mandatory (an
/// unroutable message comes back, and [`confirmed`] says so).
pub async fn publish_with(
    ch: &Channel,
    queue: &str,
    payload: &[u8],
    props: BasicProperties,
) -> anyhow::Result<PublisherConfirm> {
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
    if !routed(confirm, queue).await? {
        anyhow::bail!("RabbitMQ could not route a message to {queue:?}: does the queue exist?");
    }
    Ok(())
}

/// Waits for the broker's confirm of a message published to `destination`: an error when it
/// nacks the message; `false` when nothing was bound to take it (returned as unroutable).
pub async fn routed(confirm: PublisherConfirm, destination: &str) -> anyhow::Result<bool> {
    let confirm = confirm
        .await
        .with_context(|| format!("no confirm from RabbitMQ for a message to {destination:?}"))?;
    if confirm.is_nack() {
        anyhow::bail!("RabbitMQ refused (nacked) a message to {destination:?}; see the broker's log");
    }
    Ok(confirm.take_message().is_none())
}

/// Publishes a result of `run` to the runs exchange (`exchange`), which routes it to the run's
/// queue by its `dispr-run` header; persistent and mandatory, so [`routed`] tells whether a queue
/// took it. Do not wait for it inline: many results can be in flight.
pub async fn publish_result(
    ch: &Channel,
    exchange: &str,
    run: &RunId,
    payload: &[u8],
) -> anyhow::Result<PublisherConfirm> {
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(run_headers(run));
    ch.basic_publish(
        exchange.into(),
        "".into(),
        BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
        payload,
        props,
    )
    .await
    .with_context(|| format!("could not publish to {exchange:?}"))
}

/// The headers that route a message to `run`'s queue on the runs exchange.
pub fn run_headers(run: &RunId) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(RUN_HEADER.into(), AMQPValue::LongString(run.as_str().into()));
    headers
}

/// How many times workers handed a job back (its `dispr-handbacks` header; 0 without one).
pub fn handbacks(headers: Option<&FieldTable>) -> u32 {
    let value = headers.and_then(|h| h.inner().get(HANDBACKS_HEADER));
    match value {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::ShortInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
