//! One module per subcommand: its clap `Args` and its `run`.

pub mod calibrate;
pub mod evaluate;
pub mod export;
pub mod import;
pub mod sample;
pub mod serve;
pub mod train;
