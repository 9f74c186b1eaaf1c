//! `dispr-worker`: thin command-line front over the worker library.

use clap::{Parser, Subcommand};
use dispr_worker::cmd;

/// Samples 3D cell shapes with DISPR: serves sampling jobs from RabbitMQ, trains a model,
/// scores its samplers, or calibrates its shapes' height on real cells.
#[derive(Parser)]
#[command(name = "dispr-worker", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume sampling jobs from RabbitMQ (see `serve --help` for the consumer timeout).
    Serve(cmd::serve::Args),
    /// Train a DISPR model on a dataset folder or S3 prefix.
    Train(cmd::train::Args),
    /// Score a checkpoint's samplers on held-out cells: mean IoU and time per cell.
    Evaluate(cmd::evaluate::Args),
    /// Fit how far to stretch a checkpoint's shapes along z, on cells with ground truth.
    Calibrate(cmd::calibrate::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Evaluate(args) => cmd::evaluate::run(args),
        Command::Calibrate(args) => cmd::calibrate::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", dispr_worker::logging::error_text(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
