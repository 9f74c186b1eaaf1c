//! placeholder

pub mod features;
pub mod metrics;
pub mod otsu;
