//! The async runtime and logging the commands run on.

use std::io::IsTerminal;

/// Runs `fut` to completion on a multi-threaded tokio runtime. Commands are synchronous at the
/// top (clap calls `run`), async inside.
pub fn block_on<F: Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    Ok(rt.block_on(fut))
}

/// Logs to stderr, `info` and above (the AMQP client's own lines off) unless RUST_LOG says
/// otherwise; `json` gives one JSON object per line for log collectors. Safe to call more than once (later calls do nothing).
pub fn init_logging(json: bool) {
    init(json, "info");
}

/// Logging for commands that draw a progress bar (`demo`, `local`): on a terminal, warnings and
/// errors only, written above the bar, unless `verbose` (then every job's line too); when stderr
/// is not a terminal (a log file, a pipe, CI) `info` as usual, since no bar is drawn there.
/// RUST_LOG overrides both.
pub fn init_logging_with_bar(verbose: bool) {
    let level = if verbose || !std::io::stderr().is_terminal() { "info" } else { "warn" };
    init(false, level);
}

fn init(json: bool, level: &str) {
    // The worker's filter: RUST_LOG, or `level` with the AMQP client's own lines off.
    let filter = dispr_worker::logging::filter(level);
    // Colours only on a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| crate::progress::LogWriter);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
