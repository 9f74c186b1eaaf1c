//! The noise schedule, computed in f64: T = 1000 linear betas 1e-4..0.02, and respaced
//! sub-schedules for the fast samplers (guided-diffusion's `space_timesteps`).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Steps of the training schedule.
pub const T: usize = 1000;

/// A (possibly respaced) diffusion schedule. Index `i` is a position in this schedule;
/// `timesteps[i]` is the timestep of the 1000-step schedule the model is shown there.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub timesteps: Vec<usize>,
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub alphas_cumprod_prev: Vec<f64>,
    pub posterior_variance: Vec<f64>,
    /// log of the posterior variance, with index 0 replaced by index 1 (it is 0 there).
    pub posterior_log_variance_clipped: Vec<f64>,
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
}

impl Schedule {
    /// The published schedule: 1000 linear betas from 1e-4 to 0.02.
    pub fn linear() -> Self {
        let betas: Vec<f64> = (0..T).map(|i| 1e-4 + (0.02 - 1e-4) * i as f64 / (T - 1) as f64).collect();
        Self::from_betas((0..T).collect(), betas)
    }

    /// The linear schedule respaced to `steps` evenly spaced timesteps (including 0 and 999):
    /// betas recomputed from the kept alphas_cumprod, so the marginals q(x_t | x_0) are unchanged.
    pub fn respaced(steps: usize) -> Self {
        let steps = steps.clamp(1, T);
        if steps == T {
            return Self::linear();
        }
        let keep: Vec<usize> = if steps == 1 {
            vec![T - 1]
        } else {
            let mut k: Vec<usize> = (0..steps)
                .map(|i| (i as f64 * (T - 1) as f64 / (steps - 1) as f64).round() as usize)
                .collect();
            k.dedup();
            k
        };
        Self::at_timesteps(keep)
    }

    /// guided-diffusion's `ddimN` respacing (`space_timesteps`), which the reference samples
    /// with: every `stride`-th timestep from 0, for the smallest stride that gives exactly
    /// `steps` of them (`ddim50`: 0, 20, ..., 980; `ddim5`: 0, 200, ..., 800: the last timestep
    /// is not 999). Some counts have no such stride (e.g. 999); the error says which do.
    pub fn strided(steps: usize) -> Result<Self, String> {
        let stride = (1..T).find(|&i| T.div_ceil(i) == steps).ok_or_else(|| {
            format!(
                "guided-diffusion cannot respace 1000 steps to exactly {steps} strided DDIM steps (it would raise ValueError); use a count such as 10, 25, 50, 100 or 250"
            )
        })?;
        Ok(Self::at_timesteps((0..T).step_by(stride).collect()))
    }

    /// The linear schedule respaced to `steps` timesteps (including 0 and 999) evenly spaced in
    /// the log signal-to-noise ratio lambda = log(sqrt(a) / sqrt(1 - a)), the grid DPM-Solver is
    /// built for (Lu et al. 2022, "logSNR" spacing). On the evenly spaced timesteps its last step
    /// spans a lambda range four times the one before it, and the second-order extrapolation
    /// over it overshoots: 25 steps give Gaussian data a std 25% too large; on this grid 1%.
    /// Each timestep is the nearest to its lambda target, nudged where needed so that all are
    /// distinct (near t = 0 lambda moves faster than one timestep per target).
    pub fn log_snr_spaced(steps: usize) -> Self {
        let steps = steps.clamp(1, T);
        if steps == 1 {
            return Self::at_timesteps(vec![T - 1]);
        }
        let full = Self::linear();
        let lambda: Vec<f64> = full.alphas_cumprod.iter().map(|&a| 0.5 * (a / (1.0 - a)).ln()).collect();
        let (hi, lo) = (lambda[0], lambda[T - 1]);
        // lambda falls strictly with t: the timestep nearest to a target is found by bisection.
        let nearest = |target: f64| {
            let after = lambda.partition_point(|&l| l > target).min(T - 1);
            if after > 0 && (lambda[after - 1] - target).abs() <= (lambda[after] - target).abs() {
                after - 1
            } else {
                after
            }
        };
        let mut keep: Vec<usize> =
            (0..steps).map(|i| nearest(hi + (lo - hi) * i as f64 / (steps - 1) as f64)).collect();
        for i in 1..steps {
            keep[i] = keep[i].max(keep[i - 1] + 1);
        }
        keep[steps - 1] = T - 1;
        for i in (0..steps - 1).rev() {
            keep[i] = keep[i].min(keep[i + 1] - 1);
        }
        Self::at_timesteps(keep)
    }

    /// The linear schedule restricted to `keep` (increasing timesteps of the 1000-step schedule).
    fn at_timesteps(keep: Vec<usize>) -> Self {
        let full = Self::linear();
        let mut last = 1.0;
        let betas = keep
            .iter()
            .map(|&t| {
                let a = full.alphas_cumprod[t];
                let b = 1.0 - a / last;
                last = a;
                b
            })
            .collect();
        Self::from_betas(keep, betas)
    }

    fn from_betas(timesteps: Vec<usize>, betas: Vec<f64>) -> Self {
        let n = betas.len();
        let mut alphas_cumprod = Vec::with_capacity(n);
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alphas_cumprod.push(acc);
        }
        let alphas_cumprod_prev: Vec<f64> =
            std::iter::once(1.0).chain(alphas_cumprod[..n - 1].iter().copied()).collect();
        let posterior_variance: Vec<f64> =
            (0..n).map(|i| betas[i] * (1.0 - alphas_cumprod_prev[i]) / (1.0 - alphas_cumprod[i])).collect();
        let posterior_log_variance_clipped = (0..n)
            .map(|i| {
                let v = if i == 0 && n > 1 { posterior_variance[1] } else { posterior_variance[i] };
                v.max(1e-20).ln()
            })
            .collect();
        let posterior_mean_coef1 =
            (0..n).map(|i| betas[i] * alphas_cumprod_prev[i].sqrt() / (1.0 - alphas_cumprod[i])).collect();
        let posterior_mean_coef2 = (0..n)
            .map(|i| (1.0 - alphas_cumprod_prev[i]) * (1.0 - betas[i]).sqrt() / (1.0 - alphas_cumprod[i]))
            .collect();
        Self {
            timesteps,
            betas,
            alphas_cumprod,
            alphas_cumprod_prev,
            posterior_variance,
            posterior_log_variance_clipped,
            posterior_mean_coef1,
            posterior_mean_coef2,
        }
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Always false: a schedule has at least one step.
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// The learned-range log variance's two ends at step `i`: (log beta~_i, log beta_i).
    pub fn log_variance_range(&self, i: usize) -> (f64, f64) {
        (self.posterior_log_variance_clipped[i], self.betas[i].ln())
    }
}

/// One coefficient per batch element (each element may be at its own timestep), shaped
/// [B, 1, 1, 1, 1] to broadcast over a volume batch. Here rather than in the loss, so that the
/// loss and the objectives both use it without importing each other.
pub(crate) fn per_sample<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 5> {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [values.len(), 1, 1, 1, 1]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_values() {
        let s = Schedule::linear();
        assert_eq!(s.len(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-15 && (s.betas[999] - 0.02).abs() < 1e-15);
        // alpha_bar at T is tiny (about 4e-5) for this schedule.
        assert!(s.alphas_cumprod[999] < 1e-4 && s.alphas_cumprod[999] > 1e-5);
        assert_eq!(s.posterior_variance[0], 0.0);
        assert_eq!(s.posterior_log_variance_clipped[0], s.posterior_variance[1].ln());
    }

    #[test]
    fn respacing_keeps_the_marginals() {
        let full = Schedule::linear();
        for steps in [1, 10, 25, 50, 1000] {
            let s = Schedule::respaced(steps);
            assert_eq!(s.len(), steps);
            assert_eq!(*s.timesteps.last().unwrap(), 999);
            for (i, &t) in s.timesteps.iter().enumerate() {
                assert!((s.alphas_cumprod[i] - full.alphas_cumprod[t]).abs() < 1e-12);
            }
        }
        assert_eq!(Schedule::respaced(10).timesteps[..3], [0, 111, 222]);
    }

    #[test]
    fn strided_respacing_is_guided_diffusions_ddim_n() {
        // space_timesteps(1000, "ddim50") = set(range(0, 1000, 20)), and so on.
        assert_eq!(Schedule::strided(50).unwrap().timesteps, (0..1000).step_by(20).collect::<Vec<_>>());
        assert_eq!(Schedule::strided(5).unwrap().timesteps, [0, 200, 400, 600, 800]);
        assert_eq!(Schedule::strided(2).unwrap().timesteps, [0, 500]);
        assert_eq!(Schedule::strided(7).unwrap().timesteps.len(), 7);
        let full = Schedule::linear();
        let s = Schedule::strided(10).unwrap();
        for (i, &t) in s.timesteps.iter().enumerate() {
            assert!((s.alphas_cumprod[i] - full.alphas_cumprod[t]).abs() < 1e-12);
        }
        assert!(Schedule::strided(999).unwrap_err().contains("ValueError"));
    }

    #[test]
    fn log_snr_spacing_gives_distinct_timesteps_evenly_in_lambda() {
        let full = Schedule::linear();
        for steps in 1..=T {
            let s = Schedule::log_snr_spaced(steps);
            assert_eq!(s.len(), steps);
            assert_eq!(*s.timesteps.last().unwrap(), 999);
            assert!(s.timesteps.windows(2).all(|w| w[0] < w[1]), "{steps}: {:?}", s.timesteps);
            for (i, &t) in s.timesteps.iter().enumerate() {
                assert!((s.alphas_cumprod[i] - full.alphas_cumprod[t]).abs() < 1e-12);
            }
        }
        // The same grid as numpy's nearest-to-linspace over lambda (see the sampler's tests).
        assert_eq!(Schedule::log_snr_spaced(10).timesteps, [0, 5, 22, 73, 202, 410, 603, 757, 886, 999]);
    }
}
