//! The DISPR coordinator as a library: the binary in `main.rs` is a thin front over `cmd`.

pub mod classify;
pub mod cmd;
