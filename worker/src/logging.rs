//! Log output through `tracing`: human-readable lines for terminals, JSON lines for log
//! collectors. The level comes from `RUST_LOG` (default `info`, with the AMQP client's own
//! logging off: see [`filter`]).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// The log filter of both binaries: `RUST_LOG` when it is set, otherwise `level` with the AMQP
/// client (lapin and its protocol crate) silenced. lapin logs its own ERROR lines for failures
/// it also returns to us (a refused password gives three, with raw frames), and those come back
/// as one error that says what to check; `RUST_LOG=info` shows lapin's lines again.
pub fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},lapin=off,amq_protocol=off")))
}

/// Installs the global subscriber, writing to stderr. Calling it twice keeps the first.
pub fn init(format: LogFormat) {
    // Colours only on a terminal: a log file, a pipe or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter("info"))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        // Spans carry the run, job and cell ids; JSON lines list them with every event.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
}

/// An error as one line: its messages, outermost first, each once. A message already contained
/// in the text so far is left out: an error that prints its cause and also returns it as its
/// source (lapin's do, and so do many of ours) would otherwise say everything twice, as `{:#}`
/// does. For the failure reasons of cells and the binaries' last line.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for message in error.chain().map(ToString::to_string) {
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_text_says_each_message_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("the file is truncated")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("cell c1: {source}")]
        struct Outer {
            source: Inner,
        }
        let error = anyhow::Error::new(Outer { source: Inner }).context("job j1");
        assert_eq!(format!("{error:#}"), "job j1: cell c1: the file is truncated: the file is truncated");
        assert_eq!(super::error_text(&error), "job j1: cell c1: the file is truncated");
    }
}
