//! The DISPR coordinator as a library: the binary in `main.rs` is a thin front over `cmd`.

pub mod broker;
pub mod cells;
pub mod classify;
pub mod cmd;
pub mod exit;
pub mod failures;
pub mod job_sizing;
pub mod lease;
pub mod local;
pub mod manifest;
pub mod prepare;
pub mod progress;
pub mod report;
pub mod run_page;
pub mod runtime;
pub mod status;
pub mod submit;
pub mod tally;
pub mod telemetry;
