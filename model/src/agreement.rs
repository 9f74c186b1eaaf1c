//! Whether two backends compute the same forward pass: the network of a configuration, with
//! random non-zero weights (a zero-initialised layer would hide a difference), on the same
//! inputs, on the CPU with Burn's own operations and on backend `B` (the GPU in a CUDA build; on
//! the CPU, this project's kernels). `scripts/gpu-check.sh` runs it before anything is timed.
//! The reference runs on Flex under autodiff, where the kernels never run (they are for plain
//! Flex): a process-wide switch would race with whatever else runs in the process.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};

use crate::CpuBackend;
use crate::checkpoint::{record_from_bytes, record_to_bytes};
use crate::config::{ModelConfig, Objective};
use crate::unet::{Conditioning, UNet};

/// Burn's own CPU operations: Flex under autodiff (this project's kernels run on plain Flex only).
type Reference = burn::backend::Autodiff<CpuBackend>;

/// How far apart the two forward passes are.
#[derive(Debug, Clone, Copy)]
pub struct Agreement {
    pub max_abs_diff: f64,
    /// Standard deviation of the CPU's output: the scale the difference is read against.
    pub reference_std: f64,
}

impl Agreement {
    pub fn relative(&self) -> f64 {
        self.max_abs_diff / self.reference_std.max(f64::MIN_POSITIVE)
    }
}

/// Replaces every weight: 1-D parameters (norm gains, biases) by 1 + 0.1 N(0, 1), the others by
/// N(0, 1) / sqrt(fan-in), so that activations stay of order one. A fresh network's output
/// layers are zero, so its output hides every mapping error before them; this one's does not.
pub struct Randomise;

impl<B: Backend> ModuleMapper<B> for Randomise {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let device = tensor.device();
        let value = if D == 1 {
            Tensor::random(dims, Distribution::Normal(1.0, 0.1), &device)
        } else {
            // Linear weights are [in, out]; convolutions [out, in, k...].
            let fan_in: usize = if D == 2 { dims[0] } else { dims[1..].iter().product() };
            Tensor::random(dims, Distribution::Normal(0.0, 1.0), &device).div_scalar((fan_in as f64).sqrt())
        };
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Compares backend `B`'s forward pass of configuration `config` with the CPU's (Burn's own
/// operations), at batch 2 and two timesteps.
pub fn forward_agreement<B: Backend>(config: &ModelConfig, device: &B::Device) -> Result<Agreement, String> {
    let cpu = Default::default();
    let net = UNet::<CpuBackend>::new(config, &cpu).map(&mut Randomise);
    let bytes = record_to_bytes::<CpuBackend, _>(net.into_record())?;
    let other = UNet::<B>::new(config, device).load_record(record_from_bytes::<B, _>(bytes.clone(), device)?);
    let reference =
        UNet::<Reference>::new(config, &cpu).load_record(record_from_bytes::<Reference, _>(bytes, &cpu)?);

    let r = config.resolution;
    let x = Tensor::<CpuBackend, 5>::random([2, 1, r, r, r], Distribution::Normal(0.0, 1.0), &cpu);
    let planes = Tensor::<CpuBackend, 5>::random([2, 2, 1, r, r], Distribution::Uniform(0.0, 1.0), &cpu);
    let prior = (config.objective == Objective::PriorX0)
        .then(|| Tensor::<CpuBackend, 5>::random([2, 1, r, r, r], Distribution::Uniform(0.0, 1.0), &cpu));
    let t = [10.0, 900.0];
    let move_to = |t: &Tensor<CpuBackend, 5>| Tensor::<B, 5>::from_data(t.to_data(), device);
    let cond_other = Conditioning { planes: move_to(&planes), prior: prior.as_ref().map(move_to) };
    let got = values(other.forward(move_to(&x), &cond_other, &t).into_data())?;

    let to_reference = |t: &Tensor<CpuBackend, 5>| Tensor::<Reference, 5>::from_data(t.to_data(), &cpu);
    let cond = Conditioning { planes: to_reference(&planes), prior: prior.as_ref().map(to_reference) };
    let want = values(reference.forward(to_reference(&x), &cond, &t).into_data())?;

    let mean = want.iter().map(|&v| v as f64).sum::<f64>() / want.len() as f64;
    let var = want.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / want.len() as f64;
    let max_abs_diff = got.iter().zip(&want).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
    Ok(Agreement { max_abs_diff, reference_std: var.sqrt() })
}

fn values(data: TensorData) -> Result<Vec<f32>, String> {
    data.to_vec::<f32>().map_err(|e| format!("reading the forward pass's output: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_projects_cpu_kernels_agree_with_burns_operations() {
        for name in ["tiny", "tiny-prior"] {
            let config = ModelConfig::named(name).unwrap();
            let a = forward_agreement::<CpuBackend>(&config, &Default::default()).unwrap();
            assert!(a.reference_std > 0.1, "{name}: the random weights give an output: {a:?}");
            assert!(a.relative() < 1e-4, "{name}: {a:?}");
        }
    }
}
