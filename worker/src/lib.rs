//! The DISPR worker as a library (the coordinator's `local` mode runs it in-process).

pub mod cmd;
