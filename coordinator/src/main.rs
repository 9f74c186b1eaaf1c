//! `dispr-coordinator`: thin command-line front over the coordinator library.

use clap::{Parser, Subcommand};
use dispr_coordinator::cmd;

/// Runs DISPR over whole datasets: shards cells into sampling jobs on RabbitMQ, follows the
/// workers, and turns the predicted shapes into a classification report.
///
/// Start with `dispr-coordinator demo`: it needs no services.
#[derive(Parser)]
#[command(name = "dispr-coordinator", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic red blood cell dataset (image/, mask/, obj/, labels.csv).
    Synth(cmd::synth::Args),
    /// Classifier report over a run's features (or over a dataset's ground-truth volumes).
    Report(cmd::report::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(args) => cmd::synth::run(args),
        Command::Report(args) => cmd::report::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
