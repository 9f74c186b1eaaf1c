//! DISPR, the conditional 3D diffusion model, on Burn.
//!
//! - [`config`]: named configurations (`shape-16`, the CPU default, and `shape-32`; `dispr-64`
//!   as published and `dispr-64-ref`, the network the reference script actually trains; `small`,
//!   `tiny`, `tiny-prior`), each with its [`Objective`].
//! - [`objective`]: what an objective feeds the network (the 2D planes, and for `prior-x0` the
//!   extruded-mask prior) and how its output becomes the samplers' [eps, v] and a 64^3 volume.
//! - [`unet`]: the UNet3D and its [`unet::Plan`]; [`layers`] and [`attention`] its blocks.
//! - [`schedule`], [`loss`], [`sampler`]: the diffusion (f64 schedule, the published hybrid loss
//!   with learned-range variance and the `prior-x0` loss, DDPM / DDIM / DPM-Solver++ 2M).
//! - [`predictor`]: what the worker calls: [`Predictor::load`] a checkpoint, then
//!   [`Predictor::sample`] cells x K seeds to 64^3 volumes in [0, 1].
//! - [`train`]: one training step (augmentation, warm-up and cosine learning rate, gradient
//!   clipping, a warming EMA) and exact resume; [`checkpoint`]: record + JSON sidecar.
//! - [`z_calibration`]: the height calibration a checkpoint may carry (how far to stretch its
//!   shapes along z, from the cell's 2D features: one split, then a ridge regression; fitted on
//!   real cells).
//! - [`reference`]: the reference code's checkpoints (guided-diffusion's UNetModel, dims=3):
//!   import their state dicts, export ours back.
//! - [`resample`]: averaging down from the dataset's 64^3 (`dispr_shape::volume::SIDE`) to a
//!   configuration's resolution and trilinear upsampling back. Otsu is `dispr_shape::otsu`, IoU
//!   `dispr_shape::reconstruction`, the naive floor (the mask extruded along z)
//!   `dispr_shape::floor`.
//!
//! The crate is generic over the Burn backend; binaries pick [`CpuBackend`] (Flex) or, with the
//! `cuda` feature, CUDA.

pub mod agreement;
pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod cpu_kernels;
pub mod layers;
pub mod loss;
pub mod noise;
pub mod objective;
pub mod predictor;
pub mod reference;
pub mod resample;
pub mod sampler;
pub mod schedule;
pub mod train;
pub mod unet;
pub mod z_calibration;

pub use checkpoint::{CheckpointError, Sidecar, Validation, sha256_file, sidecar_path};
pub use config::{ModelConfig, Objective, Respacing};
pub use predictor::{CellInput, PredictError, Predictor};
pub use train::{StepStats, TrainExample, TrainOptions, Trainer};
pub use unet::UNet;
pub use z_calibration::ZCalibration;

/// Burn's CPU backend.
pub type CpuBackend = burn::backend::Flex;

/// The backend binaries run on: CUDA with the `cuda` feature, the CPU otherwise.
#[cfg(feature = "cuda")]
pub type DefaultBackend = burn::backend::Cuda;
/// The backend binaries run on: CUDA with the `cuda` feature, the CPU otherwise.
#[cfg(not(feature = "cuda"))]
pub type DefaultBackend = CpuBackend;

/// [`DefaultBackend`] with automatic differentiation, for training.
pub type TrainBackend = burn::backend::Autodiff<DefaultBackend>;

#[cfg(test)]
pub(crate) type TestBackend = CpuBackend;
