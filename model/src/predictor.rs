//! The API the worker calls: load a checkpoint once, then sample many cells x K samples in
//! batched forward passes. Inputs and outputs are always at the dataset's size (64x64 images,
//! 64^3 volumes); resampling to a configuration's internal resolution happens here.

use std::path::Path;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use dispr_proto::SamplerSpec;

use crate::checkpoint::{CheckpointError, Sidecar, load_model};
use crate::config::ModelConfig;
use crate::noise::NoiseStreams;
use crate::objective::{as_eps_v, batch_conditioning, cell_conditioning, to_full_resolution};
use crate::sampler::{SamplerError, sample, sample_from};
use crate::schedule::Schedule;
use crate::unet::UNet;
use crate::z_calibration::ZCalibration;
use dispr_shape::volume::SIDE;

/// One cell's inputs: the 64x64 uint8 fluorescence image and segmentation mask (row-major).
#[derive(Debug, Clone, Copy)]
pub struct CellInput<'a> {
    pub image: &'a [u8],
    pub mask: &'a [u8],
}

/// A request the predictor cannot serve, saying what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("cell {index}: {what} has {len} bytes; expected 64x64 = 4096 (uint8, one page)")]
    InputSize { index: usize, what: &'static str, len: usize },
    #[error("{cells} cells but {seeds} seed lists: pass one list of K seeds per cell")]
    SeedCount { cells: usize, seeds: usize },
    #[error("the initial noise has {len} values; this network samples {r}^3 = {want} (float32, z first)")]
    NoiseSize { len: usize, r: usize, want: usize },
    #[error(transparent)]
    Sampler(#[from] SamplerError),
}

/// A network (or a stand-in for one in tests): x_t, the conditioning and the timesteps to its
/// two output channels.
type Network<'a, B> = dyn Fn(Tensor<B, 5>, &crate::unet::Conditioning<B>, &[f64]) -> Tensor<B, 5> + 'a;

/// A loaded model ready to sample.
pub struct Predictor<B: Backend> {
    config: ModelConfig,
    model: UNet<B>,
    device: B::Device,
    sidecar: Option<Sidecar>,
    memory_budget: usize,
    /// Applied to every returned volume (from the sidecar; see [`crate::z_calibration`]).
    z_calibration: Option<ZCalibration>,
}

/// Memory a batch may use by default (2 GiB): a CPU worker next to others; raise it on a GPU.
pub const DEFAULT_MEMORY_BUDGET: usize = 2 << 30;

impl<B: Backend> Predictor<B> {
    /// Loads the checkpoint record at `path` (its sidecar `<name>.json` beside it), verifying
    /// the record's sha256 against the sidecar and building the sidecar's configuration.
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, CheckpointError> {
        Self::load_verified(path, None, device)
    }

    /// As [`load`](Self::load), and also checks the record's sha256 against `expected_sha256`
    /// (the job's `ModelRef.sha256`).
    pub fn load_verified(
        path: &Path,
        expected_sha256: Option<&str>,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let (model, sidecar) = load_model::<B>(path, expected_sha256, device)?;
        let mut p = Self::from_model(sidecar.config.clone(), model, device);
        p.z_calibration = sidecar.z_calibration.clone();
        p.sidecar = Some(sidecar);
        Ok(p)
    }

    /// Wraps a network in memory (training validation uses this).
    pub fn from_model(config: ModelConfig, model: UNet<B>, device: &B::Device) -> Self {
        Self {
            config,
            model,
            device: device.clone(),
            sidecar: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            z_calibration: None,
        }
    }

    /// Sets (or, with None, removes) the height calibration applied to the sampled volumes:
    /// `calibrate` fits a new one on the uncalibrated shapes.
    pub fn with_z_calibration(mut self, calibration: Option<ZCalibration>) -> Self {
        self.z_calibration = calibration;
        self
    }

    /// The height calibration applied to the sampled volumes, if any.
    pub fn z_calibration(&self) -> Option<&ZCalibration> {
        self.z_calibration.as_ref()
    }

    /// Sets the memory (bytes) one batched forward pass may use; the batch size follows.
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// The configuration of the loaded network.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The sidecar of the checkpoint it was loaded from, if any.
    pub fn sidecar(&self) -> Option<&Sidecar> {
        self.sidecar.as_ref()
    }

    /// Samples per forward pass under the memory budget (at least 1).
    pub fn batch_size(&self) -> usize {
        (self.memory_budget / crate::unet::Plan::new(&self.config).inference_bytes_per_sample().max(1)).max(1)
    }

    /// Samples `seeds[c].len()` volumes for every cell `c`. Returns, per cell and per sample, a
    /// 64^3 volume (z, y, x order) with values in [0, 1]. The volume of a sample depends only on
    /// its inputs, its seed and the sampler, not on the other samples of the call. A checkpoint
    /// with a height calibration has each volume stretched along z by its cell's factor.
    /// `progress(done, total)` counts sampler steps over all batches.
    pub fn sample(
        &self,
        inputs: &[CellInput<'_>],
        seeds: &[Vec<u64>],
        sampler: &SamplerSpec,
        progress: &mut dyn FnMut(u32, u32),
    ) -> Result<Vec<Vec<Vec<f32>>>, PredictError> {
        self.sample_through(inputs, seeds, sampler, progress, &|x, cond, t| self.model.forward(x, cond, t))
    }

    /// [`sample`](Self::sample) with `network` in place of the loaded one: everything else (the
    /// conditioning, the objective's conversions, batching, the sampler, the return to 64^3) is
    /// the path the worker takes, so tests can drive it with an exact denoiser.
    fn sample_through(
        &self,
        inputs: &[CellInput<'_>],
        seeds: &[Vec<u64>],
        sampler: &SamplerSpec,
        progress: &mut dyn FnMut(u32, u32),
        network: &Network<'_, B>,
    ) -> Result<Vec<Vec<Vec<f32>>>, PredictError> {
        if inputs.len() != seeds.len() {
            return Err(PredictError::SeedCount { cells: inputs.len(), seeds: seeds.len() });
        }
        for (index, c) in inputs.iter().enumerate() {
            for (what, len) in [("image", c.image.len()), ("mask", c.mask.len())] {
                if len != SIDE * SIDE {
                    return Err(PredictError::InputSize { index, what, len });
                }
            }
        }
        if matches!(sampler, SamplerSpec::Null) {
            return Err(SamplerError::Null.into());
        }
        let r = self.config.resolution;
        let conds: Vec<_> = inputs.iter().map(|c| cell_conditioning(&self.config, c.image, c.mask)).collect();
        let stretch: Vec<f64> = match &self.z_calibration {
            Some(cal) => inputs.iter().map(|c| cal.factor(c.image, c.mask)).collect(),
            None => vec![1.0; inputs.len()],
        };
        let alphas = Schedule::linear().alphas_cumprod;
        // Every (cell, sample) pair, batched in order.
        let items: Vec<(usize, u64)> =
            seeds.iter().enumerate().flat_map(|(c, s)| s.iter().map(move |&seed| (c, seed))).collect();
        let batch = self.batch_size();
        let batches = items.len().div_ceil(batch) as u32;
        let steps = sampler.steps();
        let mut out: Vec<Vec<Vec<f32>>> = seeds.iter().map(|s| Vec::with_capacity(s.len())).collect();
        for (bi, chunk) in items.chunks(batch).enumerate() {
            let b = chunk.len();
            let cells: Vec<_> = chunk.iter().map(|&(c, _)| &conds[c]).collect();
            let cond = batch_conditioning::<B>(&cells, r, &self.device);
            let seeds: Vec<u64> = chunk.iter().map(|&(_, s)| s).collect();
            let mut noise = NoiseStreams::new(&seeds);
            let objective = self.config.objective;
            let mut denoise = |x: Tensor<B, 5>, t: usize| {
                let raw = network(x.clone(), &cond, &vec![t as f64; b]);
                as_eps_v(objective, raw, x, cond.prior.as_ref(), &vec![alphas[t]; b])
            };
            let mut step_progress = |done: u32, _: u32| progress(bi as u32 * steps + done, batches * steps);
            let respacing = self.config.respacing;
            let x = sample(
                sampler,
                respacing,
                [r, r, r],
                &mut noise,
                &self.device,
                &mut denoise,
                &mut step_progress,
            )?;
            let data: Vec<f32> = x
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("a float tensor converted to f32 reads as f32");
            for (i, &(c, _)) in chunk.iter().enumerate() {
                let vol = &data[i * r * r * r..(i + 1) * r * r * r];
                let full = to_full_resolution(&self.config, vol, inputs[c].mask, &conds[c]);
                out[c].push(match &self.z_calibration {
                    Some(cal) => cal.apply(&full, stretch[c]),
                    None => full,
                });
            }
        }
        Ok(out)
    }
}

impl<B: Backend> Predictor<B> {
    /// One sample of one cell from the given x_T (`initial_noise`, r^3 values, z first), as the
    /// reference's sampler returns it: the final x_0 estimate at the network's resolution,
    /// clipped to [-1, 1], without the return to 64^3, the clamp to [0, 1] or the height
    /// calibration that [`sample`](Self::sample) applies. `seed` gives the fresh noise of the
    /// stochastic samplers (none for DDIM with eta 0). For comparing with the reference.
    pub fn sample_raw(
        &self,
        input: CellInput<'_>,
        initial_noise: &[f32],
        sampler: &SamplerSpec,
        seed: u64,
        progress: &mut dyn FnMut(u32, u32),
    ) -> Result<Vec<f32>, PredictError> {
        for (what, len) in [("image", input.image.len()), ("mask", input.mask.len())] {
            if len != SIDE * SIDE {
                return Err(PredictError::InputSize { index: 0, what, len });
            }
        }
        let r = self.config.resolution;
        if initial_noise.len() != r * r * r {
            return Err(PredictError::NoiseSize { len: initial_noise.len(), r, want: r * r * r });
        }
        let cond = cell_conditioning(&self.config, input.image, input.mask);
        let cond = batch_conditioning::<B>(&[&cond], r, &self.device);
        let alphas = Schedule::linear().alphas_cumprod;
        let objective = self.config.objective;
        let mut denoise = |x: Tensor<B, 5>, t: usize| {
            let raw = self.model.forward(x.clone(), &cond, &[t as f64]);
            as_eps_v(objective, raw, x, cond.prior.as_ref(), &[alphas[t]])
        };
        let x = Tensor::from_data(
            burn::tensor::TensorData::new(initial_noise.to_vec(), [1, 1, r, r, r]),
            &self.device,
        );
        let mut noise = NoiseStreams::new(&[seed]);
        let x = sample_from(sampler, self.config.respacing, x, &mut noise, &mut denoise, progress)?;
        Ok(x.into_data().convert::<f32>().to_vec().expect("a float tensor converted to f32 reads as f32"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::checkpoint::{Sidecar, save_model};
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::TensorData;

    /// A tiny network whose zero-initialised layers are given values, so outputs depend on
    /// every weight (an untrained DISPR outputs exactly zero).
    fn tiny_nonzero() -> UNet<TestBackend> {
        struct Perturb(u32);
        impl ModuleMapper<TestBackend> for Perturb {
            fn map_float<const D: usize>(
                &mut self,
                p: Param<Tensor<TestBackend, D>>,
            ) -> Param<Tensor<TestBackend, D>> {
                let (id, t, mapper) = p.consume();
                self.0 += 1;
                let k = self.0 as f64;
                let t = t.clone() + (t.ones_like() * (0.01 * (k * 0.7).sin()));
                Param::from_mapped_value(id, t, mapper)
            }
        }
        UNet::new(&ModelConfig::tiny(), &Default::default()).map(&mut Perturb(0))
    }

    fn cell(seed: u8) -> (Vec<u8>, Vec<u8>) {
        let image = (0..4096).map(|i| ((i * 7 + seed as usize) % 251) as u8).collect();
        let mask = (0..4096)
            .map(|i| if (i % 64) > 20 && (i % 64) < 44 && i / 64 > 16 && i / 64 < 48 { 255 } else { 0 })
            .collect();
        (image, mask)
    }

    fn sidecar() -> Sidecar {
        Sidecar {
            format: 0,
            config: ModelConfig::tiny(),
            step: 7,
            dataset_digest: "d".into(),
            record_sha256: String::new(),
            validation: None,
            note: "test".into(),
            z_calibration: None,
            imported: None,
        }
    }

    #[test]
    fn save_load_gives_identical_outputs_and_checks_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.mpk");
        let net = tiny_nonzero();
        let side = save_model(net.clone(), sidecar(), &path).unwrap();
        assert_eq!(side.record_sha256, crate::sha256_file(&path).unwrap());
        let dev = Default::default();
        let a = Predictor::<TestBackend>::from_model(ModelConfig::tiny(), net, &dev);
        let b = Predictor::<TestBackend>::load(&path, &dev).unwrap();
        assert_eq!(b.sidecar().unwrap().step, 7);
        let (img, mask) = cell(1);
        let inputs = [CellInput { image: &img, mask: &mask }];
        let spec: SamplerSpec = "ddim-3".parse().unwrap();
        let va = a.sample(&inputs, &[vec![5]], &spec, &mut |_, _| {}).unwrap();
        let vb = b.sample(&inputs, &[vec![5]], &spec, &mut |_, _| {}).unwrap();
        assert_eq!(va[0][0].len(), 64 * 64 * 64);
        assert_eq!(va, vb);
        assert!(va[0][0].iter().all(|&v| (0.0..=1.0).contains(&v)));

        // The job's sha256 must match too.
        let err = Predictor::<TestBackend>::load_verified(&path, Some("00ff"), &dev).err().unwrap();
        assert!(err.to_string().contains("job's model reference"), "{err}");
        // A damaged record is refused.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = Predictor::<TestBackend>::load(&path, &dev).err().unwrap();
        assert!(err.to_string().contains("sha256"), "{err}");
    }

    #[test]
    fn a_calibrated_checkpoint_stretches_its_samples_along_z() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.mpk");
        let net = tiny_nonzero();
        let d = dispr_shape::features::FEATURES_2D.len();
        // A calibration whose factor is 1.5 for every cell.
        let cal = ZCalibration {
            features: dispr_shape::features::FEATURES_2D.iter().map(|f| f.name.to_string()).collect(),
            mean: vec![0.0; d],
            std: vec![1.0; d],
            min: vec![-1e300; d],
            max: vec![1e300; d],
            weights: vec![0.0; d],
            bias: 1.5f64.ln(),
            split: None,
            smooth_sigma: 1.0,
            ridge: 1.0,
            cells: 2,
            sampler: "ddim-3".into(),
        };
        save_model(net.clone(), Sidecar { z_calibration: Some(cal.clone()), ..sidecar() }, &path).unwrap();
        let dev = Default::default();
        let calibrated = Predictor::<TestBackend>::load(&path, &dev).unwrap();
        assert_eq!(calibrated.z_calibration(), Some(&cal));
        let plain = Predictor::<TestBackend>::from_model(ModelConfig::tiny(), net, &dev);
        let (img, mask) = cell(1);
        let inputs = [CellInput { image: &img, mask: &mask }];
        let spec: SamplerSpec = "ddim-3".parse().unwrap();
        let got = calibrated.sample(&inputs, &[vec![5]], &spec, &mut |_, _| {}).unwrap();
        let raw = plain.sample(&inputs, &[vec![5]], &spec, &mut |_, _| {}).unwrap();
        assert_ne!(got, raw);
        use crate::z_calibration::{smooth, stretch_z};
        assert_eq!(got[0][0], stretch_z(&smooth(&raw[0][0], 1.0), 1.5));
        // Removing it gives the plain samples back (what `calibrate` fits on).
        let uncalibrated = calibrated.with_z_calibration(None);
        assert_eq!(uncalibrated.sample(&inputs, &[vec![5]], &spec, &mut |_, _| {}).unwrap(), raw);

        // A damaged calibration is refused when the checkpoint loads, saying what to do.
        let mut side = crate::checkpoint::read_sidecar(&path).unwrap();
        side.z_calibration.as_mut().unwrap().weights.pop();
        crate::checkpoint::write_sidecar(&path, &side).unwrap();
        let err = Predictor::<TestBackend>::load(&path, &dev).err().unwrap().to_string();
        assert!(err.contains("weights has") && err.contains("dispr-worker calibrate"), "{err}");
    }

    #[test]
    fn a_record_of_another_configuration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.mpk");
        save_model(tiny_nonzero(), sidecar(), &path).unwrap();
        // Claim the record is a `small` network.
        let side_path = crate::sidecar_path(&path);
        let mut side: Sidecar = serde_json::from_slice(&std::fs::read(&side_path).unwrap()).unwrap();
        side.config = ModelConfig::small();
        std::fs::write(&side_path, serde_json::to_vec(&side).unwrap()).unwrap();
        let err = Predictor::<TestBackend>::load(&path, &Default::default()).err().unwrap().to_string();
        assert!(err.contains("do not fit the configuration") && err.contains("small"), "{err}");
    }

    #[test]
    fn samples_do_not_depend_on_batch_composition() {
        let dev = Default::default();
        let net = tiny_nonzero();
        let (i1, m1) = cell(1);
        let (i2, m2) = cell(2);
        let spec: SamplerSpec = "ddpm-4".parse().unwrap();
        // All five samples in one batch, then one per batch.
        let big = Predictor::<TestBackend>::from_model(ModelConfig::tiny(), net.clone(), &dev);
        let one = Predictor::<TestBackend>::from_model(ModelConfig::tiny(), net, &dev).with_memory_budget(1);
        assert!(big.batch_size() >= 5);
        assert_eq!(one.batch_size(), 1);
        let inputs = [CellInput { image: &i1, mask: &m1 }, CellInput { image: &i2, mask: &m2 }];
        let seeds = [vec![10, 11, 12], vec![20, 21]];
        let mut calls = vec![];
        let a = big.sample(&inputs, &seeds, &spec, &mut |d, t| calls.push((d, t))).unwrap();
        assert_eq!(calls.last(), Some(&(4, 4)));
        let b = one.sample(&inputs[1..], &seeds[1..], &spec, &mut |_, _| {}).unwrap();
        let c = one.sample(&inputs, &seeds, &spec, &mut |_, _| {}).unwrap();
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);
        assert!(close(&a[1][0], &b[0][0]) && close(&a[1][1], &b[0][1]));
        for (x, y) in a.iter().flatten().zip(c.iter().flatten()) {
            assert!(close(x, y));
        }
        // Different seeds give different volumes.
        assert!(!close(&a[0][0], &a[0][1]));
    }

    #[test]
    fn every_sampler_returns_the_shape_an_exact_denoiser_knows() {
        // At resolution 64 the network's volume is the output volume, so an exact denoiser of a
        // known 64^3 shape must give back exactly that shape through the worker's path.
        use crate::config::Objective;
        use crate::schedule::Schedule;
        use crate::unet::Conditioning;
        let dev = Default::default();
        let (img, mask) = cell(3);
        // A taller-than-the-prior box inside the mask's rectangle.
        let n = SIDE;
        let shape: Vec<f32> = (0..n * n * n)
            .map(|i| {
                let (z, y, x) = (i / (n * n), (i / n) % n, i % n);
                (z.abs_diff(32) < 26 && (20..44).contains(&y) && (24..40).contains(&x)) as u8 as f32
            })
            .collect();
        let truth: Vec<bool> = shape.iter().map(|&v| v > 0.5).collect();
        let alphas = Schedule::linear().alphas_cumprod;
        for objective in [Objective::Eps, Objective::PriorX0] {
            let config = ModelConfig { resolution: 64, objective, ..ModelConfig::tiny() };
            let p = Predictor::<TestBackend>::from_model(config.clone(), UNet::new(&config, &dev), &dev);
            let x0 =
                Tensor::<TestBackend, 5>::from_data(TensorData::new(shape.clone(), [1, 1, n, n, n]), &dev);
            let oracle = |x: Tensor<TestBackend, 5>, cond: &Conditioning<TestBackend>, t: &[f64]| {
                let b = x.dims()[0];
                let x0 = x0.clone().repeat_dim(0, b);
                match (objective, &cond.prior) {
                    (Objective::PriorX0, Some(prior)) => {
                        Tensor::cat(vec![x0 - prior.clone(), x.zeros_like()], 1)
                    }
                    _ => {
                        let a = alphas[t[0] as usize];
                        let eps = (x.clone() - x0 * a.sqrt()) / (1.0 - a).sqrt();
                        Tensor::cat(vec![eps, x.ones_like().neg()], 1)
                    }
                }
            };
            for spec in ["ddpm-50", "ddim-10", "ddim-3", "dpmpp2m-10"] {
                let spec: SamplerSpec = spec.parse().unwrap();
                let inputs = [CellInput { image: &img, mask: &mask }];
                let out = p.sample_through(&inputs, &[vec![1, 2]], &spec, &mut |_, _| {}, &oracle).unwrap();
                for vol in &out[0] {
                    let iou = dispr_shape::reconstruction::iou(&dispr_shape::otsu::binarise(vol), &truth);
                    assert_eq!(iou, 1.0, "{} with {spec}", objective.name());
                }
            }
        }
    }

    #[test]
    fn bad_inputs_are_reported() {
        let p =
            Predictor::<TestBackend>::from_model(ModelConfig::tiny(), tiny_nonzero(), &Default::default());
        let short = vec![0u8; 100];
        let ok = vec![0u8; 4096];
        let spec: SamplerSpec = "ddim-2".parse().unwrap();
        let e = p
            .sample(&[CellInput { image: &short, mask: &ok }], &[vec![1]], &spec, &mut |_, _| {})
            .unwrap_err();
        assert!(e.to_string().contains("4096"), "{e}");
        let e = p.sample(&[CellInput { image: &ok, mask: &ok }], &[], &spec, &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("seed"), "{e}");
        let e = p
            .sample(&[CellInput { image: &ok, mask: &ok }], &[vec![1]], &SamplerSpec::Null, &mut |_, _| {})
            .unwrap_err();
        assert!(e.to_string().contains("null"), "{e}");
    }
}
