//! `dispr-coordinator`: thin command-line front over the coordinator library.

use clap::{Parser, Subcommand};
use dispr_coordinator::cmd;

/// Runs DISPR over whole datasets: shards cells into sampling jobs on RabbitMQ, follows the
/// workers, and turns the predicted shapes into a classification report.
///
/// Start with `dispr-coordinator demo`: it needs no services.
///
/// Exit status of the commands that run or follow a run (`demo`, `local`, `watch`): 0 every cell
/// done; 1 the command could not run (the message says what to fix); 2 a wrong command line; 3
/// the run finished but some cells failed for good; 4 every cell failed (most likely the run's
/// set-up); 130 interrupted before the run finished. `preflight` exits 5 when it warns. Other
/// commands exit 0 or 1 (or 2).
#[derive(Parser)]
#[command(name = "dispr-coordinator", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline on this machine, no services needed: synthetic cells, the demo model,
    /// local workers, the classifier and report.html. Start here.
    #[command(after_help = dispr_coordinator::exit::HELP)]
    Demo(cmd::demo::Args),
    /// Generate a synthetic red blood cell dataset (image/, mask/, obj/, labels.csv).
    Synth(cmd::synth::Args),
    /// Classifier report over a run's features (or over a dataset's ground-truth volumes).
    Report(cmd::report::Args),
    /// Publish a run's jobs to RabbitMQ (writes the run manifest first; resumes a run).
    Submit(cmd::submit::Args),
    /// A run's progress from the output store and the queue depths, without consuming.
    Status(cmd::status::Args),
    /// Follow a run live from the results queue: progress bar, rates, ETA, /metrics.
    #[command(after_help = dispr_coordinator::exit::HELP)]
    Watch(cmd::watch::Args),
    /// List the jobs RabbitMQ dead-lettered, with reasons; --requeue puts them back.
    DeadLetters(cmd::dead_letters::Args),
    /// Run a whole run on this machine with no services (in-process queue and workers).
    #[command(after_help = dispr_coordinator::exit::HELP)]
    Local(cmd::local::Args),
    /// Delete a finished run's results queue (or every finished run's under an output).
    Cleanup(cmd::cleanup::Args),
    /// Before a large run: seconds per sample and compute hours on this machine, IoU against the
    /// floor on labelled cells, and whether samples follow their input.
    Preflight(cmd::preflight::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Synth(args) => cmd::synth::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Submit(args) => cmd::submit::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Watch(args) => cmd::watch::run(args),
        Command::DeadLetters(args) => cmd::dead_letters::run(args),
        Command::Local(args) => cmd::local::run(args),
        Command::Cleanup(args) => cmd::cleanup::run(args),
        Command::Preflight(args) => cmd::preflight::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", dispr_worker::logging::error_text(&err));
            std::process::ExitCode::from(dispr_coordinator::exit::Unfinished::code_of(&err))
        }
    }
}
