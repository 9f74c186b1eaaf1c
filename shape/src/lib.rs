//! Volumes and images of DISPR at scale: TIFF I/O, the dataset layout, synthetic red blood cells
//! and preview montages (and, from other modules, thresholds, morphometric features and the
//! uncertainty of an ensemble of samples).

pub mod dataset;
pub mod features;
pub mod floor;
pub mod hostile;
pub mod metrics;
pub mod otsu;
pub mod preview;
pub mod synth;
pub mod tiff_io;
pub mod uncertainty;
pub mod volume;
