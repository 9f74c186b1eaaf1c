//! Volumes and images of DISPR at scale: TIFF I/O, the dataset layout, synthetic red blood cells
//! and preview montages (and, from other modules, thresholds, morphometric features,
//! reconstruction metrics and the uncertainty of an ensemble of samples).

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
pub mod uncertainty;
pub mod volume;
