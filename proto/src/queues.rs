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
//! - `dispr.runs`: a durable headers exchange that routes every message by its `dispr-run`
//!   header to that run's own queue. Workers publish results and progress to it; `dispr.dlx` is
//!   bound to it too, so a dead-lettered job (which keeps the `dispr-run` header its coordinator
//!   gave it) also reaches its run's queue, and the run's `watch` counts its cells as failed;
//! - `dispr.results.<run>`: one durable classic queue per run ([`QueueNames::run_topology`]),
//!   declared by `submit` and `watch`, bound to `dispr.runs` on `dispr-run = <run>`, removed by
//!   `cleanup` or by RabbitMQ itself after [`RUN_QUEUE_EXPIRES_MS`] unused. Classic rather than
//!   quorum: a cluster may hold thousands of runs' queues, each a Raft group if quorum, and
//!   what they carry is progress (the output store is the truth), so one replica is enough.
//!
//! Why per-run queues: with one results queue per prefix, two runs' watches consumed each
//! other's results and miscounted jobs in flight. Why a headers exchange rather than a direct one
//! keyed by run: the dead-letter exchange routes with one fixed key for every run's dead jobs,
//! and only the header tells them apart.
//!
//! The lapin calls that declare it live in the `dispr-amqp` crate; this module knows nothing of
//! a broker.

use crate::RunId;

/// The production name of the jobs queue.
pub const JOBS: &str = "dispr.jobs";
/// The production name of the headers exchange that routes each run's results to its queue.
pub const RUNS_EXCHANGE: &str = "dispr.runs";
/// The production name of the shared results queue of earlier versions: no longer declared;
/// `cleanup` deletes it once it is empty.
pub const LEGACY_RESULTS: &str = "dispr.results";
/// What a run's results queue is named after: `dispr.results.<run>`.
pub const RUN_RESULTS_PREFIX: &str = "dispr.results.";
/// The production name of the exchange the jobs queue dead-letters to.
pub const DEAD_LETTER_EXCHANGE: &str = "dispr.dlx";
/// The production name of the queue bound to the dead-letter exchange.
pub const DEAD: &str = "dispr.jobs.dead";
/// Deliveries of one job before RabbitMQ dead-letters it (a poison job stops cycling).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 3;
/// The message header naming a job's or a result's run (set by the coordinator on jobs and by
/// the workers on results; dead-lettering keeps it).
pub const RUN_HEADER: &str = "dispr-run";
/// The message header counting how often workers handed a job back on shutdown (a drain that
/// ran out of time). Hand-backs are republished copies, so they never count toward the delivery
/// limit; this header keeps their count visible (`status`, `dead-letters`).
pub const HANDBACKS_HEADER: &str = "dispr-handbacks";
/// A run's queue is deleted by RabbitMQ after this long with no consumer and no declaration
/// (`x-expires`): 14 days, longer than any plausible pause of a run, so forgotten runs do not
/// leave queues behind for ever. `cleanup` removes it at once.
pub const RUN_QUEUE_EXPIRES_MS: i64 = 14 * 24 * 3600 * 1000;
/// Messages a run's queue keeps while nobody consumes it; older ones are dropped first. They are
/// progress reports (the store records every cell), so a run left unwatched cannot fill the
/// broker's disk.
pub const RUN_QUEUE_MAX_LENGTH: i64 = 100_000;

/// The names of the queues and exchange of one deployment. Tests give each run its own prefix so
/// that they can run in parallel against one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    /// Jobs for the workers (`dispr.jobs`).
    pub jobs: String,
    /// The headers exchange results are published to (`dispr.runs`).
    pub runs_exchange: String,
    /// Where `jobs` dead-letters to (`dispr.dlx`).
    pub dead_letter_exchange: String,
    /// The queue bound to the dead-letter exchange (`dispr.jobs.dead`).
    pub dead: String,
    /// The shared results queue of earlier versions (`dispr.results`), for `cleanup`.
    pub legacy_results: String,
    prefix: String,
}

impl QueueNames {
    /// The production names, each preceded by `prefix` (`""` gives the production names).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            jobs: format!("{prefix}{JOBS}"),
            runs_exchange: format!("{prefix}{RUNS_EXCHANGE}"),
            dead_letter_exchange: format!("{prefix}{DEAD_LETTER_EXCHANGE}"),
            dead: format!("{prefix}{DEAD}"),
            legacy_results: format!("{prefix}{LEGACY_RESULTS}"),
            prefix: prefix.to_string(),
        }
    }

    /// The prefix the names were made with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The results queue of `run` (`dispr.results.<run>`).
    pub fn run_results(&self, run: &RunId) -> String {
        format!("{}{RUN_RESULTS_PREFIX}{run}", self.prefix)
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
            exchanges: vec![
                ExchangeSpec { name: self.dead_letter_exchange.clone(), kind: ExchangeKind::Direct },
                ExchangeSpec { name: self.runs_exchange.clone(), kind: ExchangeKind::Headers },
            ],
            queues: vec![
                QueueSpec { name: self.dead.clone(), arguments: vec![QueueArgument::quorum()] },
                QueueSpec { name: self.jobs.clone(), arguments: jobs_arguments },
            ],
            bindings: vec![Binding {
                queue: self.dead.clone(),
                exchange: self.dead_letter_exchange.clone(),
                routing_key: self.dead.clone(),
                arguments: Vec::new(),
            }],
            // Every dead letter also reaches the runs exchange, which hands it to its run's queue.
            exchange_bindings: vec![ExchangeBinding {
                destination: self.runs_exchange.clone(),
                source: self.dead_letter_exchange.clone(),
                routing_key: self.dead.clone(),
            }],
        }
    }

    /// What one run adds: its results queue, bound to the runs exchange on its `dispr-run` header.
    pub fn run_topology(&self, run: &RunId) -> Topology {
        let queue = self.run_results(run);
        Topology {
            exchanges: Vec::new(),
            queues: vec![QueueSpec {
                name: queue.clone(),
                arguments: vec![
                    QueueArgument::Int { key: "x-expires", value: RUN_QUEUE_EXPIRES_MS },
                    QueueArgument::Int { key: "x-max-length", value: RUN_QUEUE_MAX_LENGTH },
                ],
            }],
            bindings: vec![Binding {
                queue,
                exchange: self.runs_exchange.clone(),
                routing_key: String::new(),
                arguments: run_match(run),
            }],
            exchange_bindings: Vec::new(),
        }
    }
}

/// The binding arguments that select `run`'s messages on the runs exchange.
pub fn run_match(run: &RunId) -> Vec<QueueArgument> {
    vec![QueueArgument::text("x-match", "all"), QueueArgument::text(RUN_HEADER, run.as_str())]
}

impl Default for QueueNames {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

/// Everything declared on the broker, in declaration order: exchanges, then queues, then
/// bindings. Every exchange and every queue is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchanges: Vec<ExchangeSpec>,
    pub queues: Vec<QueueSpec>,
    pub bindings: Vec<Binding>,
    pub exchange_bindings: Vec<ExchangeBinding>,
}

/// A durable exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: ExchangeKind,
}

/// The exchange types this topology uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Routes on the routing key.
    Direct,
    /// Routes on message headers (`x-match` in the binding).
    Headers,
}

/// A durable queue and the arguments it is declared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub arguments: Vec<QueueArgument>,
}

/// One argument of a queue declaration or binding, as RabbitMQ spells it.
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

/// `queue` bound to `exchange` with `routing_key` (direct) or `arguments` (headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub queue: String,
    pub exchange: String,
    pub routing_key: String,
    pub arguments: Vec<QueueArgument>,
}

/// The exchange `destination` receives what `source` routes with `routing_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeBinding {
    pub destination: String,
    pub source: String,
    pub routing_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_applies_to_every_name() {
        let q = QueueNames::with_prefix("t42.");
        assert_eq!(q.jobs, "t42.dispr.jobs");
        assert_eq!(q.runs_exchange, "t42.dispr.runs");
        assert_eq!(q.dead_letter_exchange, "t42.dispr.dlx");
        assert_eq!(q.dead, "t42.dispr.jobs.dead");
        assert_eq!(q.run_results(&RunId::new("r1").unwrap()), "t42.dispr.results.r1");
        assert_eq!(QueueNames::default().jobs, JOBS);
    }

    #[test]
    fn jobs_dead_letter_to_the_dead_queue_and_to_their_run() {
        let q = QueueNames::default();
        let t = q.topology(3);
        assert_eq!(t.exchanges[0].name, DEAD_LETTER_EXCHANGE);
        assert_eq!(t.exchanges[1], ExchangeSpec { name: RUNS_EXCHANGE.into(), kind: ExchangeKind::Headers });
        let jobs = t.queues.iter().find(|q| q.name == JOBS).expect("the jobs queue");
        assert!(jobs.arguments.contains(&QueueArgument::Int { key: "x-delivery-limit", value: 3 }));
        assert!(jobs.arguments.contains(&QueueArgument::text("x-dead-letter-routing-key", DEAD)));
        assert!(t.queues.iter().all(|q| q.arguments.contains(&QueueArgument::quorum())));
        assert_eq!(t.bindings[0].routing_key, DEAD);
        let dead_to_runs = &t.exchange_bindings[0];
        assert_eq!(
            (dead_to_runs.source.as_str(), dead_to_runs.routing_key.as_str()),
            (DEAD_LETTER_EXCHANGE, DEAD)
        );
        assert_eq!(dead_to_runs.destination, RUNS_EXCHANGE);
    }

    #[test]
    fn a_run_queue_takes_only_its_run_and_expires() {
        let run = RunId::new("run-7").unwrap();
        let t = QueueNames::with_prefix("p.").run_topology(&run);
        assert_eq!(t.queues[0].name, "p.dispr.results.run-7");
        assert!(
            t.queues[0]
                .arguments
                .contains(&QueueArgument::Int { key: "x-expires", value: RUN_QUEUE_EXPIRES_MS })
        );
        assert_eq!(t.bindings[0].exchange, "p.dispr.runs");
        assert!(t.bindings[0].arguments.contains(&QueueArgument::text(RUN_HEADER, "run-7")));
        assert!(t.bindings[0].arguments.contains(&QueueArgument::text("x-match", "all")));
    }
}
