//! One module per subcommand: its clap `Args` and its `run`.

pub mod cleanup;
pub mod dead_letters;
pub mod demo;
pub mod local;
pub mod preflight;
pub mod report;
pub mod run_args;
pub mod status;
pub mod submit;
pub mod synth;
pub mod watch;
