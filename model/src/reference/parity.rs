//! Checks this project against what the reference computed on the same weights: a fixture
//! folder written by `tests/python/make_reference_fixture.py make` holds a reference state dict,
//! inputs and the reference's outputs (forward passes, DDIM samples, DDPM step moments). Used by
//! the CI test on the committed small fixtures and by the full-size parity bench.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use dispr_proto::SamplerSpec;
use serde::Deserialize;

use super::import::{ImportOptions, import};
use super::state_dict::{RawTensor, read_state_dict};
use crate::config::Respacing;
use crate::noise::NoiseStreams;
use crate::sampler::{ddpm_moments, sample_from};
use crate::schedule::Schedule;
use crate::unet::Conditioning;

/// The fixture's description, from the `fixture` entry of its safetensors metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct FixtureMeta {
    pub flavour: String,
    pub checkpoint: String,
    /// Forward cases: name -> one timestep per batch element; a case with fewer timesteps than
    /// the fixture has cells runs the first ones (`b1_t750`: batch 1).
    pub cases: BTreeMap<String, Vec<usize>>,
    pub settings: FixtureSettings,
    #[serde(default)]
    pub ddim: Vec<usize>,
    #[serde(default)]
    pub ddpm: Vec<usize>,
    /// The reference's batch-1 forward time, when the script was run with --time.
    #[serde(default)]
    pub forward_seconds_batch1: Option<f64>,
    #[serde(default)]
    pub threads: Option<usize>,
}

/// The reference network's settings the fixture was made with.
#[derive(Debug, Clone, Deserialize)]
pub struct FixtureSettings {
    pub res: usize,
    pub heads: usize,
    pub groups: usize,
}

/// One comparison: the largest absolute difference, and the reference values' std.
#[derive(Debug, Clone)]
pub struct Diff {
    pub what: String,
    pub max_abs: f64,
    pub ref_std: f64,
    /// The bound the figure is held to.
    pub tolerance: f64,
}

impl Diff {
    pub fn ok(&self) -> bool {
        self.max_abs <= self.tolerance
    }
}

/// Everything a fixture check measured.
#[derive(Debug, Clone)]
pub struct ParityReport {
    pub meta: FixtureMeta,
    pub import_seconds: f64,
    /// Our batch-1 forward time (the first forward case's first element).
    pub forward_seconds_batch1: f64,
    pub diffs: Vec<Diff>,
}

impl ParityReport {
    pub fn ok(&self) -> bool {
        self.diffs.iter().all(Diff::ok)
    }
}

impl std::fmt::Display for ParityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "fixture {} (checkpoint {}): import {:.2} s",
            self.meta.flavour, self.meta.checkpoint, self.import_seconds
        )?;
        let reference =
            self.meta.forward_seconds_batch1.map_or("not timed".to_string(), |s| format!("{s:.2} s"));
        writeln!(
            f,
            "  forward, batch 1: ours {:.2} s, reference {reference} ({} threads)",
            self.forward_seconds_batch1,
            self.meta.threads.unwrap_or(0)
        )?;
        for d in &self.diffs {
            writeln!(
                f,
                "  {:<28} max |ours - ref| {:>10.3e}  ref std {:>9.3e}  tolerance {:>9.3e}  {}",
                d.what,
                d.max_abs,
                d.ref_std,
                d.tolerance,
                if d.ok() { "ok" } else { "FAILED" }
            )?;
        }
        Ok(())
    }
}

/// Reads the `fixture` metadata of a safetensors file.
fn read_meta(path: &Path) -> Result<FixtureMeta, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let json = meta.metadata().as_ref().and_then(|m| m.get("fixture")).ok_or_else(|| {
        format!("{}: no fixture metadata; make it with make_reference_fixture.py", path.display())
    })?;
    serde_json::from_str(json).map_err(|e| format!("{}: fixture metadata: {e}", path.display()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs()).fold(0.0, f64::max)
}

fn std(v: &[f32]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    (v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n).sqrt()
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()
}

/// Imports the fixture's state dict, runs what the reference ran and compares: forward within
/// 1e-4 x the reference output's std, DDIM within 1e-3 absolute, and the DDPM step's posterior
/// mean within 1e-4 x its std, its log variance within 1e-4 absolute and its clipped x0 within
/// the forward's tolerance on eps times the factor x0's formula multiplies eps by.
pub fn check_fixture<B: Backend>(dir: &Path, device: &B::Device) -> Result<ParityReport, String> {
    let ref_path = dir.join("reference.safetensors");
    let meta = read_meta(&ref_path)?;
    let tensors = read_state_dict(&ref_path).map_err(|e| e.to_string())?;
    let get = |name: &str| -> Result<&RawTensor, String> {
        tensors.get(name).ok_or_else(|| format!("{}: no tensor {name}", ref_path.display()))
    };
    let started = Instant::now();
    let sd = read_state_dict(&dir.join(&meta.checkpoint)).map_err(|e| e.to_string())?;
    let options = ImportOptions {
        heads: Some(meta.settings.heads),
        norm_groups: meta.settings.groups,
        resolution: meta.settings.res,
    };
    let imported = import::<B>(&sd, &options, device).map_err(|e| e.to_string())?;
    let import_seconds = started.elapsed().as_secs_f64();
    let model = imported.model;
    let r = meta.settings.res;
    let planes = get("planes")?;
    let b = planes.shape[0];
    let tensor5 = |t: &RawTensor, shape: [usize; 5]| {
        Tensor::<B, 5>::from_data(TensorData::new(t.values.clone(), shape), device)
    };
    let cond = Conditioning { planes: tensor5(planes, [b, 2, 1, r, r]), prior: None };
    let x_t = tensor5(get("x_t")?, [b, 1, r, r, r]);
    let mut diffs = Vec::new();

    for (name, ts) in &meta.cases {
        let want = get(&format!("out_{name}"))?;
        // A case runs the first `n` cells, one timestep each.
        let n = ts.len();
        if n == 0 || n > b {
            return Err(format!("{}: case {name} has {n} timesteps for {b} cells", ref_path.display()));
        }
        let t: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
        let cond_n = Conditioning { planes: cond.planes.clone().narrow(0, 0, n), prior: None };
        let got = values(model.forward(x_t.clone().narrow(0, 0, n), &cond_n, &t));
        let ref_std = std(&want.values);
        diffs.push(Diff {
            what: format!("forward {name} (batch {n})"),
            max_abs: max_abs_diff(&got, &want.values),
            ref_std,
            tolerance: 1e-4 * ref_std,
        });
    }

    // Timed on one element after the batched cases (warm, as the script times the reference).
    let cond1 = Conditioning { planes: cond.planes.clone().narrow(0, 0, 1), prior: None };
    let x1 = x_t.clone().narrow(0, 0, 1);
    let started = Instant::now();
    let _ = values(model.forward(x1.clone(), &cond1, &[500.0]));
    let forward_seconds_batch1 = started.elapsed().as_secs_f64();

    let mut denoise = |x: Tensor<B, 5>, t: usize| model.forward(x, &cond1, &[t as f64]);
    for &steps in &meta.ddim {
        let want = get(&format!("ddim{steps}_x0"))?;
        let noise = tensor5(get("ddim_noise")?, [1, 1, r, r, r]);
        let spec = SamplerSpec::Ddim { steps: steps as u32, eta: 0.0 };
        let mut streams = NoiseStreams::new(&[0]);
        let got =
            sample_from(&spec, Respacing::GuidedDiffusion, noise, &mut streams, &mut denoise, &mut |_, _| {})
                .map_err(|e| e.to_string())?;
        let got = values(got);
        diffs.push(Diff {
            what: format!("ddim-{steps} x0 (eta 0)"),
            max_abs: max_abs_diff(&got, &want.values),
            ref_std: std(&want.values),
            tolerance: 1e-3,
        });
    }

    let full = Schedule::linear();
    for &t in &meta.ddpm {
        let out = model.forward(x1.clone(), &cond1, &[t as f64]);
        let eps_std = std(&values(out.clone().narrow(1, 0, 1)));
        let (x0, mean, log_var) = ddpm_moments(&full, t, x1.clone(), out);
        // x0 = sqrt(1/a) x_t - sqrt(1/a - 1) eps: the forward's tolerance on eps, amplified by
        // sqrt(1/a - 1) (158 at t = 999), is the x0 the same network can be held to.
        let x0_gain = (1.0 / full.alphas_cumprod[t] - 1.0).sqrt().max(1.0);
        for (what, got) in [("mean", mean), ("logvar", log_var), ("x0", x0)] {
            let want = get(&format!("ddpm_t{t}_{what}"))?;
            let ref_std = std(&want.values);
            let tolerance = match what {
                "logvar" => 1e-4,
                "x0" => 1e-4 * eps_std * x0_gain,
                _ => 1e-4 * ref_std,
            };
            diffs.push(Diff {
                what: format!("ddpm t={t} {what}"),
                max_abs: max_abs_diff(&values(got), &want.values),
                ref_std,
                tolerance,
            });
        }
    }
    Ok(ParityReport { meta, import_seconds, forward_seconds_batch1, diffs })
}
