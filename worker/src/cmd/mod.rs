//! One module per subcommand: its clap `Args` and its `run`.

pub mod serve;
pub mod train;
