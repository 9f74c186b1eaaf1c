//! Volumes and images of DISPR at scale: TIFF I/O, the dataset layout, synthetic red blood cells
//! and preview montages (and, from other modules, thresholds, morphometric features and
//! reconstruction metrics).

pub mod dataset;
pub mod features;
pub mod features_doc;
pub mod floor;
pub mod hostile;
pub mod otsu;
pub mod preview;
pub mod reconstruction;
pub mod synth;
pub mod tiff_io;
pub mod volume;
