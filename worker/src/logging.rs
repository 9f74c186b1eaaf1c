//! Log output through `tracing`: human-readable lines for terminals, JSON lines for log
//! collectors. The level comes from `RUST_LOG` (default `info`, with the AMQP client's own
//! chatter kept to warnings).

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber, writing to stderr. Calling it twice keeps the first.
pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,lapin=warn,amq_protocol=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        // Spans carry the run, job and cell ids; JSON lines list them with every event.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
}
