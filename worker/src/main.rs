//! `dispr-worker`: thin command-line front over the worker library.

use clap::{Parser, Subcommand};
use dispr_worker::cmd;

/// Samples 3D cell shapes with DISPR: serves sampling jobs from RabbitMQ, trains a model,
/// scores its samplers, calibrates its shapes' height on real cells, or imports and exports the
/// reference PyTorch code's checkpoints.
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
    /// Import a checkpoint of the reference PyTorch code (its state dict, never executed).
    Import(cmd::import::Args),
    /// Export a checkpoint as the reference code's state dict (safetensors).
    Export(cmd::export::Args),
    /// Sample one cell from a given initial noise and write the raw x0 (to compare with the reference).
    Sample(cmd::sample::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    dispr_model::cpu_kernels::keep_large_buffers_in_heap();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Evaluate(args) => cmd::evaluate::run(args),
        Command::Calibrate(args) => cmd::calibrate::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Sample(args) => cmd::sample::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", dispr_worker::logging::error_text(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
