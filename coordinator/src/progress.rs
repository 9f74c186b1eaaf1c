//! Progress bars: drawn on a terminal, hidden otherwise (logs and pipes get summary lines). Log
//! lines written while a bar is drawn go through [`LogWriter`], which lifts the bar, writes the
//! line above it and draws it again, so the two never garble each other.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// The bar drawn now, if any: log lines suspend it while they are written.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A bar of `len` cells labelled `what`, drawn on stderr when it is a terminal: cells done of
/// all, cells per second, ETA and `msg` (failures, say).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    // The template is a constant: it parses.
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} cells, {per_sec}, ETA {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    if let Ok(mut active) = ACTIVE.lock() {
        *active = Some(bar.clone());
    }
    bar
}

/// Starts `bar` at `done` cells (a resumed run) without counting them in its rate and ETA.
pub fn start_at(bar: &ProgressBar, done: u64) {
    bar.set_position(done);
    bar.reset_eta();
    bar.reset_elapsed();
}

/// Writes to stderr above the active bar (see the module doc). For `tracing_subscriber`'s
/// `with_writer`.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let active =
            ACTIVE.lock().ok().and_then(|a| a.clone()).filter(|b| !b.is_finished() && !b.is_hidden());
        match active {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
