//! The queue contract: the RabbitMQ topology of DESIGN.md ("The distributed run") as plain data.
//!
//! Both sides of the queue (the workers and the coordinator) declare exactly [`Topology`], so
//! the names, the arguments (quorum, delivery limit, dead-lettering) and the bindings are
//! defined here once and read in one place:
//!
//! - `dispr.dlx`: a durable direct exchange;
//! - `dispr.jobs.dead`: a durable quorum queue bound to `dispr.dlx` with its own name as the key;
//! - `dispr.jobs`: a durable quorum queue dead-lettering to `dispr.dlx` with the routing key
//!   `dispr.jobs.dead` once a message was delivered `x-delivery-limit` times (or is rejected
//!   without requeue, as the worker does with a message it cannot decode);
//! - `dispr.results`: a durable quorum queue the workers publish results and progress to.
//!
//! The lapin calls that declare it live in the `dispr-amqp` crate; this module knows nothing of
//! a broker.

/// The production name of the jobs queue.
pub const JOBS: &str = "dispr.jobs";
/// The production name of the results queue.
pub const RESULTS: &str = "dispr.results";
/// The production name of the exchange the jobs queue dead-letters to.
pub const DEAD_LETTER_EXCHANGE: &str = "dispr.dlx";
/// The production name of the queue bound to the dead-letter exchange.
pub const DEAD: &str = "dispr.jobs.dead";
/// Deliveries of one job before RabbitMQ dead-letters it (a poison job stops cycling).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 3;

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
    /// The production names, each preceded by `prefix` (`""` gives the production names).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            jobs: format!("{prefix}{JOBS}"),
            results: format!("{prefix}{RESULTS}"),
            dead_letter_exchange: format!("{prefix}{DEAD_LETTER_EXCHANGE}"),
            dead: format!("{prefix}{DEAD}"),
        }
    }

    /// The topology declared over these names, the jobs queue dead-lettering after
    /// `delivery_limit` deliveries.
    pub fn topology(&self, delivery_limit: u32) -> Topology {
        let jobs_arguments = vec![
            QueueArgument::quorum(),
            QueueArgument::text("x-dead-letter-exchange", &self.dead_letter_exchange),
            // Quorum queues dead-letter with the message's own routing key unless told otherwise;
            // the jobs' key is the jobs queue, which the dead-letter exchange does not route.
            QueueArgument::text("x-dead-letter-routing-key", &self.dead),
            QueueArgument::Int { key: "x-delivery-limit", value: i64::from(delivery_limit) },
        ];
        Topology {
            exchanges: vec![self.dead_letter_exchange.clone()],
            queues: vec![
                QueueSpec { name: self.dead.clone(), arguments: vec![QueueArgument::quorum()] },
                QueueSpec { name: self.jobs.clone(), arguments: jobs_arguments },
                QueueSpec { name: self.results.clone(), arguments: vec![QueueArgument::quorum()] },
            ],
            bindings: vec![Binding {
                queue: self.dead.clone(),
                exchange: self.dead_letter_exchange.clone(),
                routing_key: self.dead.clone(),
            }],
        }
    }
}

impl Default for QueueNames {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

/// Everything declared on the broker, in declaration order: exchanges, then queues, then
/// bindings. Every exchange is a durable direct exchange and every queue is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchanges: Vec<String>,
    pub queues: Vec<QueueSpec>,
    pub bindings: Vec<Binding>,
}

/// A durable queue and the arguments it is declared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub arguments: Vec<QueueArgument>,
}

/// One `x-` argument of a queue declaration, as RabbitMQ spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueArgument {
    Text { key: &'static str, value: String },
    Int { key: &'static str, value: i64 },
}

impl QueueArgument {
    fn text(key: &'static str, value: &str) -> Self {
        Self::Text { key, value: value.to_string() }
    }

    /// `x-queue-type: quorum` (replicated, and the only type with a delivery limit).
    fn quorum() -> Self {
        Self::text("x-queue-type", "quorum")
    }
}

/// `queue` bound to the direct `exchange` with `routing_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub queue: String,
    pub exchange: String,
    pub routing_key: String,
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
        assert_eq!(QueueNames::default().jobs, JOBS);
    }

    #[test]
    fn jobs_dead_letter_to_the_dead_queue_after_the_limit() {
        let t = QueueNames::default().topology(3);
        assert_eq!(t.exchanges, [DEAD_LETTER_EXCHANGE]);
        let jobs = t.queues.iter().find(|q| q.name == JOBS).expect("the jobs queue");
        assert!(jobs.arguments.contains(&QueueArgument::Int { key: "x-delivery-limit", value: 3 }));
        assert!(jobs.arguments.contains(&QueueArgument::text("x-dead-letter-routing-key", DEAD)));
        assert!(t.queues.iter().all(|q| q.arguments.contains(&QueueArgument::quorum())));
        assert_eq!(t.bindings[0].routing_key, DEAD);
    }
}
