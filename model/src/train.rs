//! Training state and one optimisation step: AdamW (no weight decay) with optional warm-up,
//! cosine decay and gradient clipping, the objective's loss (the published hybrid loss, or
//! MSE(x0) + soft Dice for `prior-x0`), augmentation, an EMA of the weights that warms up, and a
//! ChaCha random stream for batches, augmentations, timesteps and noise. Everything that decides
//! the next step is saved by [`Trainer::save_state`], so a resumed run continues bit-for-bit
//! where it stopped.

use std::path::Path;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    CheckpointError, Sidecar, model_from_bytes, record_from_bytes, record_to_bytes, save_model, write_atomic,
};
use crate::config::{ModelConfig, Objective};
use crate::loss::{hybrid_loss, prior_x0_loss};
use crate::objective::{CellConditioning, batch_conditioning, cell_conditioning};
use crate::predictor::Predictor;
use crate::resample::downsample_3d;
use crate::schedule::{Schedule, T};
use crate::unet::UNet;
use dispr_shape::volume::SIDE;

/// One training cell at the configuration's resolution.
#[derive(Debug, Clone)]
pub struct TrainExample {
    /// The network's conditioning of the cell.
    pub cond: CellConditioning,
    /// Target x_0 = 1[obj > 0], res^3, in {0, 1}.
    pub x0: Vec<f32>,
}

impl TrainExample {
    /// From the dataset's 64x64 image and mask and 64^3 ground-truth volume (uint8, z first).
    /// At a coarser resolution the target is 1 where at least half the block is inside.
    pub fn new(config: &ModelConfig, image: &[u8], mask: &[u8], obj: &[u8]) -> Self {
        let r = config.resolution;
        let inside: Vec<f32> = obj.iter().map(|&v| (v > 0) as u8 as f32).collect();
        let x0 =
            downsample_3d(&inside, SIDE, SIDE / r).into_iter().map(|v| (v >= 0.5) as u8 as f32).collect();
        Self { cond: cell_conditioning(config, image, mask), x0 }
    }

    /// The example seen through one of the 16 symmetries the data has: the 8 rotations and
    /// reflections of the image plane (bits 0-2: flip y, flip x, transpose) and a flip of z
    /// (bit 3). Image, mask, prior and target move together, so the pairing stays true; the
    /// cells are centred in z, so the prior is unchanged by the z flip.
    pub fn augmented(&self, code: u8, r: usize) -> TrainExample {
        if code & 15 == 0 {
            return self.clone();
        }
        let (fy, fx, tr, fz) = (code & 1 != 0, code & 2 != 0, code & 4 != 0, code & 8 != 0);
        // Source pixel of output pixel (y, x).
        let src = |y: usize, x: usize| {
            let (y, x) = if tr { (x, y) } else { (y, x) };
            let y = if fy { r - 1 - y } else { y };
            let x = if fx { r - 1 - x } else { x };
            y * r + x
        };
        let plane_map: Vec<usize> = (0..r * r).map(|i| src(i / r, i % r)).collect();
        let map_planes = |v: &[f32], planes: usize| -> Vec<f32> {
            (0..planes).flat_map(|p| plane_map.iter().map(move |&s| v[p * r * r + s])).collect()
        };
        let map_volume = |v: &[f32], flip_z: bool| -> Vec<f32> {
            (0..r)
                .flat_map(|z| {
                    let sz = if flip_z { r - 1 - z } else { z };
                    plane_map.iter().map(move |&s| v[sz * r * r + s])
                })
                .collect()
        };
        TrainExample {
            cond: CellConditioning {
                planes: map_planes(&self.cond.planes, 2),
                prior: self.cond.prior.as_ref().map(|p| map_volume(p, fz)),
            },
            x0: map_volume(&self.x0, fz),
        }
    }
}

/// The training cells, in one or more parts: each step draws every batch element's part
/// uniformly, then a cell of that part, so two parts of very different sizes (for example 20
/// real cells and 3,000 synthetic ones) each make half of what the model sees.
#[derive(Debug, Clone, Default)]
pub struct TrainSet {
    pub parts: Vec<Vec<TrainExample>>,
}

impl From<Vec<TrainExample>> for TrainSet {
    fn from(cells: Vec<TrainExample>) -> Self {
        Self { parts: vec![cells] }
    }
}

impl TrainSet {
    /// Cells over all parts.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hyper-parameters of a run (stored with its state; fields added later default to off, so
/// older states resume unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Peak learning rate.
    pub lr: f64,
    pub batch_size: usize,
    /// EMA decay per step (0.9999 as published; short runs need less, e.g. 0.995). With
    /// `ema_warmup` the decay at step n is min(decay, (1 + n) / (10 + n)), so the average
    /// forgets the initial weights quickly.
    pub ema_decay: f64,
    pub seed: u64,
    #[serde(default)]
    pub ema_warmup: bool,
    /// Steps of linear learning-rate warm-up from 0 (0: none).
    #[serde(default)]
    pub warmup_steps: u64,
    /// Cosine decay of the learning rate to 5% of `lr` at this step (0: constant).
    #[serde(default)]
    pub decay_steps: u64,
    /// Gradient clipping: each parameter's gradient norm is capped at this (0: none).
    #[serde(default)]
    pub grad_clip: f32,
    /// Random in-plane rotations and reflections and z flips of each training cell.
    #[serde(default)]
    pub augment: bool,
}

impl TrainOptions {
    /// The published recipe's knobs with everything added later off.
    pub fn plain(lr: f64, batch_size: usize, ema_decay: f64, seed: u64) -> Self {
        Self {
            lr,
            batch_size,
            ema_decay,
            seed,
            ema_warmup: false,
            warmup_steps: 0,
            decay_steps: 0,
            grad_clip: 0.0,
            augment: false,
        }
    }

    /// Learning rate of step `n` (counted from 0).
    pub fn lr_at(&self, n: u64) -> f64 {
        let warm =
            if self.warmup_steps > 0 { ((n + 1) as f64 / self.warmup_steps as f64).min(1.0) } else { 1.0 };
        let decay = if self.decay_steps > 0 {
            let p = (n as f64 / self.decay_steps as f64).min(1.0);
            0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        } else {
            1.0
        };
        self.lr * warm * decay
    }

    /// EMA decay applied after step `n` (counted from 0).
    pub fn ema_decay_at(&self, n: u64) -> f64 {
        if self.ema_warmup {
            self.ema_decay.min((1.0 + n as f64) / (10.0 + n as f64))
        } else {
            self.ema_decay
        }
    }
}

/// Loss of one step: the total and its terms (`vb` for the published objective, `dice` for
/// `prior-x0`; the other is 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    pub mse: f32,
    pub vb: f32,
    pub dice: f32,
}

/// The saved scalar state of a run (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    config: ModelConfig,
    options: TrainOptions,
    step: u64,
    dataset_digest: String,
    rng_seed: String,
    /// ChaCha word position, as a decimal string (u128 does not fit JSON numbers).
    rng_word_pos: String,
}

/// A training run in memory.
pub struct Trainer<B: AutodiffBackend> {
    config: ModelConfig,
    options: TrainOptions,
    model: UNet<B>,
    ema: UNet<B::InnerBackend>,
    optim: OptimizerAdaptor<AdamW, UNet<B>, B>,
    rng: ChaCha8Rng,
    step: u64,
    schedule: Schedule,
    device: B::Device,
}

fn adamw(options: &TrainOptions) -> AdamWConfig {
    // As published: AdamW without weight decay.
    let clip = (options.grad_clip > 0.0).then_some(GradientClippingConfig::Norm(options.grad_clip));
    AdamWConfig::new().with_weight_decay(0.0).with_grad_clipping(clip)
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A fresh run; the initial weights are a function of `options.seed`.
    pub fn new(config: ModelConfig, options: TrainOptions, device: &B::Device) -> Self {
        B::seed(device, options.seed);
        let model = UNet::<B>::new(&config, device);
        Self::from_weights(config, options, model, device)
    }

    /// A fresh run (new optimiser, step 0) that starts from given weights, for fine-tuning a
    /// trained model on other cells.
    pub fn from_weights(
        config: ModelConfig,
        options: TrainOptions,
        model: UNet<B>,
        device: &B::Device,
    ) -> Self {
        let ema = model.valid();
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            optim: adamw(&options).init::<B, UNet<B>>(),
            options,
            model,
            ema,
            step: 0,
            schedule: Schedule::linear(),
            device: device.clone(),
        }
    }

    pub fn step_count(&self) -> u64 {
        self.step
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn options(&self) -> &TrainOptions {
        &self.options
    }

    /// One optimisation step on a random batch of `data`.
    pub fn step(&mut self, data: &TrainSet) -> StepStats {
        let (r, b) = (self.config.resolution, self.options.batch_size);
        let vox = r * r * r;
        let parts: Vec<&Vec<TrainExample>> = data.parts.iter().filter(|p| !p.is_empty()).collect();
        let (mut x0, mut eps, mut xt, mut ts, mut cells) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..b {
            let part = parts[self.rng.random_range(0..parts.len())];
            let ex = &part[self.rng.random_range(0..part.len())];
            let ex = if self.options.augment {
                ex.augmented(self.rng.random_range(0..16u8), r)
            } else {
                ex.clone()
            };
            let t = self.rng.random_range(0..T);
            let a = self.schedule.alphas_cumprod[t];
            let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
            for &v in &ex.x0 {
                let e: f64 = StandardNormal.sample(&mut self.rng);
                eps.push(e as f32);
                xt.push((sa * v as f64 + sb * e) as f32);
            }
            x0.extend_from_slice(&ex.x0);
            cells.push(ex.cond);
            ts.push(t);
        }
        debug_assert_eq!(x0.len(), b * vox);
        let dev = &self.device;
        let vol = |v: Vec<f32>| Tensor::<B, 5>::from_data(TensorData::new(v, [b, 1, r, r, r]), dev);
        let cond = batch_conditioning::<B>(&cells.iter().collect::<Vec<_>>(), r, dev);
        let (x0, xt, eps) = (vol(x0), vol(xt), vol(eps));
        let tf: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
        let out = self.model.forward(xt.clone(), &cond, &tf);
        let scalar = |t: Tensor<B, 1>| -> f32 { t.into_scalar().elem() };
        let (total, stats) = match (self.config.objective, cond.prior) {
            (Objective::PriorX0, Some(prior)) => {
                let loss = prior_x0_loss(out, prior, x0);
                let stats = StepStats {
                    loss: scalar(loss.total.clone()),
                    mse: scalar(loss.mse),
                    vb: 0.0,
                    dice: scalar(loss.dice),
                };
                (loss.total, stats)
            }
            _ => {
                let loss = hybrid_loss(&self.schedule, out, x0, xt, eps, &ts);
                let stats = StepStats {
                    loss: scalar(loss.total.clone()),
                    mse: scalar(loss.mse),
                    vb: scalar(loss.vb),
                    dice: 0.0,
                };
                (loss.total, stats)
            }
        };
        let grads = GradientsParams::from_grads(total.backward(), &self.model);
        let lr = self.options.lr_at(self.step);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.update_ema(self.options.ema_decay_at(self.step));
        self.step += 1;
        stats
    }

    /// ema <- decay * ema + (1 - decay) * weights, parameter by parameter.
    fn update_ema(&mut self, decay: f64) {
        struct Collect<B: Backend>(Vec<Tensor<B, 1>>);
        impl<B: Backend> ModuleVisitor<B> for Collect<B> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let t = p.val();
                let n = t.shape().num_elements();
                self.0.push(t.reshape([n]));
            }
        }
        struct Blend<B: Backend> {
            live: std::vec::IntoIter<Tensor<B, 1>>,
            decay: f64,
        }
        impl<B: Backend> ModuleMapper<B> for Blend<B> {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let (id, ema, mapper) = p.consume();
                let value = match self.live.next() {
                    Some(live) => ema.clone() * self.decay + live.reshape(ema.dims()) * (1.0 - self.decay),
                    None => ema,
                };
                Param::from_mapped_value(id, value, mapper)
            }
        }
        let mut collect = Collect(Vec::new());
        self.model.valid().visit(&mut collect);
        let mut blend = Blend { live: collect.0.into_iter(), decay };
        self.ema = self.ema.clone().map(&mut blend);
    }

    /// A predictor over the EMA weights (what a checkpoint ships).
    pub fn ema_predictor(&self) -> Predictor<B::InnerBackend> {
        Predictor::from_model(self.config.clone(), self.ema.clone(), &self.device)
    }

    /// A predictor over the current (non-averaged) weights.
    pub fn live_predictor(&self) -> Predictor<B::InnerBackend> {
        Predictor::from_model(self.config.clone(), self.model.valid(), &self.device)
    }

    /// Writes the EMA weights as a model checkpoint (record + sidecar) at `record_path`.
    pub fn save_checkpoint(&self, record_path: &Path, sidecar: Sidecar) -> Result<Sidecar, CheckpointError> {
        save_model(
            self.ema.clone(),
            Sidecar { config: self.config.clone(), step: self.step, ..sidecar },
            record_path,
        )
    }

    /// Writes everything a resume needs into `dir`: weights, EMA, optimiser, step and RNG.
    pub fn save_state(&self, dir: &Path, dataset_digest: &str) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| CheckpointError::Io { path: dir.to_path_buf(), source })?;
        let rec = |path: &Path, r: Result<Vec<u8>, String>| match r {
            Ok(bytes) => write_atomic(path, &bytes),
            Err(message) => Err(CheckpointError::Record { path: path.to_path_buf(), message }),
        };
        rec(&dir.join("model.mpk"), record_to_bytes::<B, _>(self.model.clone().into_record()))?;
        rec(&dir.join("ema.mpk"), record_to_bytes::<B::InnerBackend, _>(self.ema.clone().into_record()))?;
        rec(&dir.join("optim.mpk"), record_to_bytes::<B, _>(self.optim.to_record()))?;
        let state = TrainState {
            config: self.config.clone(),
            options: self.options.clone(),
            step: self.step,
            dataset_digest: dataset_digest.to_string(),
            rng_seed: hex::encode(self.rng.get_seed()),
            rng_word_pos: self.rng.get_word_pos().to_string(),
        };
        let json = serde_json::to_vec_pretty(&state)
            .map_err(|e| CheckpointError::Sidecar { path: dir.join("state.json"), message: e.to_string() })?;
        write_atomic(&dir.join("state.json"), &json)
    }

    /// Resumes a run saved by [`save_state`](Self::save_state). The dataset digest must match
    /// (resuming on other data would not be the same run); `options` replaces the saved
    /// hyper-parameters when given (e.g. a new learning rate), otherwise they are kept.
    pub fn load_state(
        dir: &Path,
        dataset_digest: &str,
        options: Option<TrainOptions>,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| CheckpointError::Io { path, source })
        };
        let bad = |name: &str, message: String| CheckpointError::Record { path: dir.join(name), message };
        let state: TrainState = serde_json::from_slice(&read("state.json")?)
            .map_err(|e| CheckpointError::Sidecar { path: dir.join("state.json"), message: e.to_string() })?;
        if state.dataset_digest != dataset_digest {
            return Err(CheckpointError::Mismatch {
                path: dir.to_path_buf(),
                message: format!(
                    "it was trained on a dataset with digest {}, but this dataset's digest is {dataset_digest}: resume with the same dataset (and the same held-out split), or start a new run in another --out folder",
                    state.dataset_digest
                ),
            });
        }
        let model = model_from_bytes::<B>(&state.config, read("model.mpk")?, device)
            .map_err(|m| bad("model.mpk", m))?;
        let ema = model_from_bytes::<B::InnerBackend>(&state.config, read("ema.mpk")?, device)
            .map_err(|m| bad("ema.mpk", m))?;
        let optim_record =
            record_from_bytes::<B, _>(read("optim.mpk")?, device).map_err(|m| bad("optim.mpk", m))?;
        let options = options.unwrap_or(state.options);
        let optim = adamw(&options).init::<B, UNet<B>>().load_record(optim_record);
        let seed_bytes = hex::decode(&state.rng_seed).ok().and_then(|v| <[u8; 32]>::try_from(v).ok());
        let word_pos = state.rng_word_pos.parse::<u128>().ok();
        let (Some(seed), Some(word_pos)) = (seed_bytes, word_pos) else {
            return Err(bad("state.json", "the saved random stream position is not valid".into()));
        };
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_word_pos(word_pos);
        Ok(Self {
            config: state.config,
            options,
            model,
            ema,
            optim,
            rng,
            step: state.step,
            schedule: Schedule::linear(),
            device: device.clone(),
        })
    }
}

/// Which of `n` cells are held out for validation: `val` of them, chosen by a stream seeded
/// with `seed` (the same cells for the same arguments, whatever the machine).
pub fn held_out(n: usize, val: usize, seed: u64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5B17));
    let mut out = vec![false; n];
    for &i in order.iter().take(val) {
        out[i] = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::predictor::CellInput;
    use dispr_proto::SamplerSpec;
    type AB = burn::backend::Autodiff<TestBackend>;

    /// Training steps of the issue-11 fitting tests.
    const FIT_STEPS: usize = 200;

    /// One synthetic cell: a ball, its central slice as mask, a ring as image.
    fn one_cell(config: &ModelConfig) -> TrainExample {
        let n = SIDE;
        let c = n as f32 / 2.0;
        let obj: Vec<u8> = (0..n * n * n)
            .map(|i| {
                let (z, y, x) = ((i / (n * n)) as f32, ((i / n) % n) as f32, (i % n) as f32);
                let r = ((z - c) / 0.6).powi(2) + (y - c).powi(2) + (x - c).powi(2);
                if r.sqrt() < 20.0 { 255 } else { 0 }
            })
            .collect();
        let mask: Vec<u8> = obj[(n / 2) * n * n..(n / 2 + 1) * n * n].to_vec();
        let image: Vec<u8> = mask.iter().map(|&m| m / 2).collect();
        TrainExample::new(config, &image, &mask, &obj)
    }

    fn options() -> TrainOptions {
        TrainOptions::plain(2e-3, 2, 0.9, 3)
    }

    #[test]
    fn tiny_overfits_one_cell() {
        let config = ModelConfig::tiny();
        let data: TrainSet = vec![one_cell(&config)].into();
        let mut t = Trainer::<AB>::new(config, options(), &Default::default());
        let losses: Vec<f32> = (0..150).map(|_| t.step(&data).loss).collect();
        let first = losses[..10].iter().sum::<f32>() / 10.0;
        let last = losses[losses.len() - 20..].iter().sum::<f32>() / 20.0;
        assert!(last < first / 10.0, "loss went from {first} to {last}");
    }

    /// An ellipsoid cell centred in the stack: in-plane semi-axes `ry`, `rx` (centred at
    /// `cy`, `cx`), half-height `hz`; its central slice is the mask, and the image is the mask
    /// at `brightness`.
    struct Cell {
        image: Vec<u8>,
        mask: Vec<u8>,
        obj: Vec<u8>,
    }

    fn ellipsoid(cy: f32, cx: f32, ry: f32, rx: f32, hz: f32, brightness: u8) -> Cell {
        let n = SIDE;
        let obj: Vec<u8> = (0..n * n * n)
            .map(|i| {
                let (z, y, x) = ((i / (n * n)) as f32, ((i / n) % n) as f32, (i % n) as f32);
                let r = ((z - 31.5) / hz).powi(2) + ((y - cy) / ry).powi(2) + ((x - cx) / rx).powi(2);
                if r < 1.0 { 255 } else { 0 }
            })
            .collect();
        let mask: Vec<u8> = obj[32 * n * n..33 * n * n].to_vec();
        let image = mask.iter().map(|&m| if m > 0 { brightness } else { 10 }).collect();
        Cell { image, mask, obj }
    }

    #[test]
    fn augmentation_moves_inputs_and_target_together() {
        let config = ModelConfig::tiny_prior();
        // Taller than the stack: every slice is the mask, so slice r / 2 of the target is exactly it.
        let c = ellipsoid(20.0, 40.0, 8.0, 12.0, 200.0, 150);
        let ex = TrainExample::new(&config, &c.image, &c.mask, &c.obj);
        let r = config.resolution;
        for code in 0..16u8 {
            let a = ex.augmented(code, r);
            // The mask plane is the target's central slice (at r, slice r / 2) in every pose.
            let mid = &a.x0[(r / 2) * r * r..(r / 2 + 1) * r * r];
            let mask = &a.cond.planes[..r * r];
            for (m, x) in mask.iter().zip(mid) {
                assert_eq!(*m >= 0.5, *x >= 0.5, "code {code}");
            }
            // Volumes are kept; the identity is the identity.
            let sum = |v: &[f32]| v.iter().sum::<f32>();
            // (summed in another order: equal up to rounding)
            assert!((sum(&a.x0) - sum(&ex.x0)).abs() < 1e-3, "code {code}");
            let prior = |e: &TrainExample| sum(e.cond.prior.as_ref().unwrap());
            assert!((prior(&a) - prior(&ex)).abs() < 1e-3, "code {code}");
        }
        assert_eq!(ex.augmented(0, r).x0, ex.x0);
        assert_ne!(ex.augmented(1, r).x0, ex.x0);
    }

    #[test]
    fn resume_continues_bit_for_bit() {
        let config = ModelConfig::tiny();
        let data: TrainSet = vec![one_cell(&config)].into();
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let mut a = Trainer::<AB>::new(config, options(), &dev);
        for _ in 0..3 {
            a.step(&data);
        }
        a.save_state(dir.path(), "digest").unwrap();
        let la: Vec<StepStats> = (0..3).map(|_| a.step(&data)).collect();
        let mut b = Trainer::<AB>::load_state(dir.path(), "digest", None, &dev).unwrap();
        assert_eq!(b.step_count(), 3);
        let lb: Vec<StepStats> = (0..3).map(|_| b.step(&data)).collect();
        assert_eq!(la, lb);
        let params = |t: &Trainer<AB>| {
            let r =
                crate::checkpoint::record_to_bytes::<TestBackend, _>(t.ema.clone().into_record()).unwrap();
            crate::checkpoint::sha256_bytes(&r)
        };
        assert_eq!(params(&a), params(&b));
        // Another dataset is refused with the reason.
        let err = Trainer::<AB>::load_state(dir.path(), "other", None, &dev).err().unwrap().to_string();
        assert!(err.contains("digest") && err.contains("other"), "{err}");
    }

    /// A cell for the issue-11 tests: a disk of radius `radius` at (`cy`, `cx`) extruded over the
    /// z slab [32 - `half`, 32 + `half`), its central slice as mask, and an image that is bright
    /// on the rim or in the centre. With `half` a multiple of 8 the slab's faces lie on the
    /// block boundaries of `tiny-prior`'s 8^3 grid, where its upsampled correction can put them.
    fn column(cy: f32, cx: f32, radius: f32, half: usize, bright_rim: bool) -> Cell {
        let n = SIDE;
        let disk = |y: usize, x: usize| -> Option<f32> {
            let d = ((y as f32 - cy).powi(2) + (x as f32 - cx).powi(2)).sqrt();
            (d <= radius).then_some(d)
        };
        let mask: Vec<u8> = (0..n * n).map(|i| if disk(i / n, i % n).is_some() { 255 } else { 0 }).collect();
        let obj: Vec<u8> = (0..n * n * n)
            .map(|i| {
                let z = i / (n * n);
                let inside = (32 - half..32 + half).contains(&z) && mask[i % (n * n)] > 0;
                if inside { 255 } else { 0 }
            })
            .collect();
        let image = (0..n * n)
            .map(|i| match disk(i / n, i % n) {
                None => 10,
                Some(d) if (d > radius * 0.6) == bright_rim => 220,
                Some(_) => 60,
            })
            .collect();
        Cell { image, mask, obj }
    }

    /// Trains a fresh `tiny-prior` network on `cells` (no augmentation: the cells are the whole
    /// world) and returns the predictor over its live weights.
    fn trained_on(cells: &[&Cell], steps: usize) -> Predictor<TestBackend> {
        let config = ModelConfig::tiny_prior();
        let examples: Vec<TrainExample> =
            cells.iter().map(|c| TrainExample::new(&config, &c.image, &c.mask, &c.obj)).collect();
        let data: TrainSet = examples.into();
        let options = TrainOptions { grad_clip: 1.0, ..TrainOptions::plain(1e-3, 4, 0.9, 5) };
        let mut t = Trainer::<AB>::new(config, options, &Default::default());
        for _ in 0..steps {
            t.step(&data);
        }
        t.live_predictor()
    }

    /// IoU against `truth`'s obj > 0 of one sample of the default sampler, drawn through the
    /// worker's path (the predictor, 64^3 output, Otsu), for `cond`'s image and mask.
    fn sample_iou(p: &Predictor<TestBackend>, cond: &Cell, truth: &Cell) -> f64 {
        let spec: SamplerSpec = dispr_proto::DEFAULT_SAMPLER.parse().unwrap();
        let input = CellInput { image: &cond.image, mask: &cond.mask };
        let v = p.sample(&[input], &[vec![9]], &spec, &mut |_, _| {}).unwrap();
        let pred = dispr_shape::otsu::binarise(&v[0][0]);
        let truth: Vec<bool> = truth.obj.iter().map(|&o| o > 0).collect();
        dispr_shape::reconstruction::iou(&pred, &truth)
    }

    /// Issue 11 (c): a model that cannot fit four cells it sees over and over cannot learn the
    /// mapping at all. Their heights are far from the floor's guess (a half-height of 0.75
    /// equivalent radii), so the untrained model (which returns the floor) scores below the bar,
    /// and they differ (half-heights 16 and 24), so one height for all does not pass either.
    /// All are taller than the floor's slab: through `tiny-prior`'s 8^3 grid a perfect
    /// correction reaches IoU 0.86-0.91 on these, but only about 0.62 on a slab of half-height
    /// 8 (the upsampled correction cannot cut a face inside a block); the 16^3 default grid
    /// reaches 0.91 on both kinds.
    #[test]
    fn training_on_four_cells_overfits_them() {
        let cells = [
            column(32.0, 32.0, 14.0, 24, false),
            column(26.0, 36.0, 13.0, 24, true),
            column(32.0, 32.0, 20.0, 24, true),
            column(30.0, 34.0, 12.0, 16, false),
        ];
        let refs: Vec<&Cell> = cells.iter().collect();
        let untrained = trained_on(&refs, 0);
        let trained = trained_on(&refs, FIT_STEPS);
        let scores: Vec<(f64, f64)> =
            cells.iter().map(|c| (sample_iou(&untrained, c, c), sample_iou(&trained, c, c))).collect();
        for (i, &(floor, iou)) in scores.iter().enumerate() {
            assert!(floor < 0.75, "cell {i}: the floor already scores {floor}");
            assert!(iou >= 0.8, "cell {i}: IoU {iou} after training; (floor, trained) of all: {scores:?}");
        }
    }

    /// Issue 11 (a): the prediction follows the conditioning, not the training set's average. A
    /// and B have the same mask (so the same prior) but different heights, told apart only by
    /// their images (a bright rim against a bright centre): conditioned on A's image the sample
    /// is closer to A than conditioned on B's, and the other way round. A network that ignores
    /// its conditioning predicts one height for both and fails.
    #[test]
    fn the_prediction_follows_its_own_conditioning() {
        let a = column(32.0, 32.0, 20.0, 8, true);
        let b = column(32.0, 32.0, 20.0, 24, false);
        assert_eq!(a.mask, b.mask, "the two cells must share their mask");
        let p = trained_on(&[&a, &b], FIT_STEPS);
        for (this, other, name) in [(&a, &b, "A"), (&b, &a, "B")] {
            let own = sample_iou(&p, this, this);
            let swapped = sample_iou(&p, other, this);
            assert!(own > swapped + 0.2, "{name}: conditioned on itself {own}, on the other cell {swapped}");
        }
    }

    #[test]
    fn held_out_split_is_seeded() {
        let a = held_out(20, 5, 1);
        assert_eq!(a.iter().filter(|&&h| h).count(), 5);
        assert_eq!(a, held_out(20, 5, 1));
        assert_ne!(a, held_out(20, 5, 2));
    }
}
