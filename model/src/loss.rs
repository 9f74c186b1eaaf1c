//! The training loss, as guided-diffusion's `training_losses` with learned-range variance:
//! MSE(eps_hat, eps) + L_vb, where L_vb is the KL between the true posterior q(x_{t-1} | x_t, x_0)
//! and the model's p(x_{t-1} | x_t) in bits per voxel (with a stop-gradient on eps_hat, so only
//! the variance head learns from it), and the discretised Gaussian NLL of x_0 at t = 0.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::schedule::{Schedule, per_sample};

/// Mean over every axis but the batch axis: [B, ...] -> [B].
fn mean_flat<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 1> {
    let b = x.dims()[0];
    x.reshape([b as i32, -1]).mean_dim(1).reshape([b])
}

/// The loss of one batch, and its two terms (each averaged over the batch).
#[derive(Debug, Clone)]
pub struct Loss<B: Backend> {
    pub total: Tensor<B, 1>,
    pub mse: Tensor<B, 1>,
    pub vb: Tensor<B, 1>,
}

/// Hybrid loss of the network output `out` = [eps_hat, v] ([B, 2, D, H, W]) for targets `x0`,
/// noised inputs `x_t`, the noise `eps` used to make them, and timesteps `t` (one per element)
/// of the full schedule `s`.
pub fn hybrid_loss<B: Backend>(
    s: &Schedule,
    out: Tensor<B, 5>,
    x0: Tensor<B, 5>,
    x_t: Tensor<B, 5>,
    eps: Tensor<B, 5>,
    t: &[usize],
) -> Loss<B> {
    let dev = out.device();
    let coef = |f: &dyn Fn(usize) -> f64| per_sample::<B>(&t.iter().map(|&i| f(i)).collect::<Vec<_>>(), &dev);
    let eps_hat = out.clone().narrow(1, 0, 1);
    let v = out.narrow(1, 1, 1);
    let mse = mean_flat((eps_hat.clone() - eps).square());

    // Stop-gradient on eps_hat: L_vb trains the variance only (Nichol & Dhariwal 2021).
    let eps_hat = eps_hat.detach();
    let min_log = coef(&|i| s.posterior_log_variance_clipped[i]);
    let max_log = coef(&|i| s.betas[i].ln());
    let frac = (v + 1.0) / 2.0;
    let model_log_var = frac.clone() * max_log + (frac.neg() + 1.0) * min_log.clone();
    let pred_x0 = x_t.clone() * coef(&|i| (1.0 / s.alphas_cumprod[i]).sqrt())
        - eps_hat * coef(&|i| (1.0 / s.alphas_cumprod[i] - 1.0).sqrt());
    let c1 = coef(&|i| s.posterior_mean_coef1[i]);
    let c2 = coef(&|i| s.posterior_mean_coef2[i]);
    let model_mean = pred_x0 * c1.clone() + x_t.clone() * c2.clone();
    let true_mean = x0.clone() * c1 + x_t * c2;

    let kl = normal_kl(true_mean, min_log, model_mean.clone(), model_log_var.clone());
    let kl = mean_flat(kl) / std::f64::consts::LN_2;
    let nll = discretized_gaussian_nll(x0, model_mean, model_log_var * 0.5);
    let nll = mean_flat(nll) / std::f64::consts::LN_2;
    let at_zero: Vec<f32> = t.iter().map(|&i| if i == 0 { 1.0 } else { 0.0 }).collect();
    let at_zero = Tensor::<B, 1>::from_data(TensorData::new(at_zero, [t.len()]), &dev);
    let vb = nll * at_zero.clone() + kl * (at_zero.neg() + 1.0);
    Loss { total: (mse.clone() + vb.clone()).mean(), mse: mse.mean(), vb: vb.mean() }
}

/// KL(N(m1, e^lv1) || N(m2, e^lv2)) per element, in nats.
fn normal_kl<B: Backend>(
    m1: Tensor<B, 5>,
    lv1: Tensor<B, 5>,
    m2: Tensor<B, 5>,
    lv2: Tensor<B, 5>,
) -> Tensor<B, 5> {
    ((lv2.clone() - lv1.clone()) + (lv1 - lv2.clone()).exp() + (m1 - m2).square() * lv2.neg().exp() - 1.0)
        * 0.5
}

/// Negative log-likelihood of `x` under a Gaussian discretised to 255 bins on [-1, 1]
/// (guided-diffusion's `discretized_gaussian_log_likelihood`), per element, in nats.
fn discretized_gaussian_nll<B: Backend>(
    x: Tensor<B, 5>,
    mean: Tensor<B, 5>,
    log_scale: Tensor<B, 5>,
) -> Tensor<B, 5> {
    let centered = x.clone() - mean;
    let inv_std = log_scale.neg().exp();
    let cdf_plus = approx_std_normal_cdf(inv_std.clone() * (centered.clone() + 1.0 / 255.0));
    let cdf_min = approx_std_normal_cdf(inv_std * (centered - 1.0 / 255.0));
    let log_cdf_plus = cdf_plus.clone().clamp_min(1e-12).log();
    let log_one_minus_cdf_min = (cdf_min.clone().neg() + 1.0).clamp_min(1e-12).log();
    let log_delta = (cdf_plus - cdf_min).clamp_min(1e-12).log();
    let log_probs = log_delta
        .mask_where(x.clone().lower_elem(-0.999), log_cdf_plus)
        .mask_where(x.greater_elem(0.999), log_one_minus_cdf_min);
    log_probs.neg()
}

/// The tanh approximation of the standard normal CDF that guided-diffusion uses.
fn approx_std_normal_cdf<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    ((x.clone() + x.powi_scalar(3) * 0.044715) * k).tanh().add_scalar(1.0) * 0.5
}

/// The loss of a `prior-x0` network and its terms (each averaged over the batch).
#[derive(Debug, Clone)]
pub struct PriorX0Loss<B: Backend> {
    pub total: Tensor<B, 1>,
    pub mse: Tensor<B, 1>,
    pub dice: Tensor<B, 1>,
}

/// MSE(x0_hat, x0) + soft Dice loss of the clamped x0_hat, with x0_hat = prior + output channel
/// 0. The MSE weighs every voxel alike; the Dice term weighs the shape's overlap as IoU does,
/// so a thin cell's few voxels count as much as a large one's.
pub fn prior_x0_loss<B: Backend>(out: Tensor<B, 5>, prior: Tensor<B, 5>, x0: Tensor<B, 5>) -> PriorX0Loss<B> {
    let b = x0.dims()[0];
    let x0_hat = crate::objective::prior_x0(out, prior);
    let mse = mean_flat((x0_hat.clone() - x0.clone()).square()).mean();
    let p = x0_hat.clamp(0.0, 1.0).reshape([b as i32, -1]);
    let g = x0.reshape([b as i32, -1]);
    let inter = (p.clone() * g.clone()).sum_dim(1);
    let sums = p.sum_dim(1) + g.sum_dim(1);
    let dice = ((inter * 2.0 + 1.0) / (sums + 1.0)).neg().add_scalar(1.0).mean();
    PriorX0Loss { total: mse.clone() + dice.clone(), mse, dice }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    fn tensor(v: f32, shape: [usize; 5]) -> Tensor<TestBackend, 5> {
        Tensor::full(shape, v, &Default::default())
    }

    #[test]
    fn loss_terms_match_hand_computation() {
        // One voxel, t = 500, eps_hat = 0.5 while eps = 0.2, v = 0: check each term by hand.
        let s = Schedule::linear();
        let t = 500;
        let (x0, eps, eps_hat, v) = (1.0f64, 0.2f64, 0.5f64, 0.0f64);
        let a = s.alphas_cumprod[t];
        let xt = a.sqrt() * x0 + (1.0 - a).sqrt() * eps;
        let out =
            Tensor::cat(vec![tensor(eps_hat as f32, [1, 1, 1, 1, 1]), tensor(v as f32, [1, 1, 1, 1, 1])], 1);
        let loss = hybrid_loss(
            &s,
            out,
            tensor(x0 as f32, [1; 5]),
            tensor(xt as f32, [1; 5]),
            tensor(eps as f32, [1; 5]),
            &[t],
        );
        let mse = (eps_hat - eps).powi(2);
        let (lo, hi) = s.log_variance_range(t);
        let lv = 0.5 * hi + 0.5 * lo;
        let px0 = (1.0 / a).sqrt() * xt - (1.0 / a - 1.0).sqrt() * eps_hat;
        let (c1, c2) = (s.posterior_mean_coef1[t], s.posterior_mean_coef2[t]);
        let (m_model, m_true) = (c1 * px0 + c2 * xt, c1 * x0 + c2 * xt);
        let kl = 0.5 * (-1.0 + lv - lo + (lo - lv).exp() + (m_true - m_model).powi(2) * (-lv).exp());
        let vb = kl / std::f64::consts::LN_2;
        let got_mse = loss.mse.into_scalar() as f64;
        let got_vb = loss.vb.into_scalar() as f64;
        assert!((got_mse - mse).abs() < 1e-5, "{got_mse} vs {mse}");
        assert!((got_vb - vb).abs() < 1e-3 * vb.max(1e-3), "{got_vb} vs {vb}");
        assert!((loss.total.into_scalar() as f64 - mse - vb).abs() < 1e-3);
    }

    #[test]
    fn decoder_nll_is_used_at_t_zero() {
        // At t = 0 with a perfect eps prediction the model mean is x0 = 1 (c1 = 1, c2 = 0), and
        // L_vb is the NLL of the right-edge bin: -log(1 - cdf(-(1/255) / sigma)), in bits.
        let s = Schedule::linear();
        let a = s.alphas_cumprod[0];
        let eps = 0.1f64;
        let xt = a.sqrt() + (1.0 - a).sqrt() * eps;
        let out = Tensor::cat(vec![tensor(eps as f32, [1; 5]), tensor(-1.0, [1; 5])], 1);
        let loss = hybrid_loss(
            &s,
            out,
            tensor(1.0, [1; 5]),
            tensor(xt as f32, [1; 5]),
            tensor(eps as f32, [1; 5]),
            &[0],
        );
        let sigma = (0.5 * s.posterior_log_variance_clipped[0]).exp();
        let z = -(1.0 / 255.0) / sigma;
        let cdf = 0.5 * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (z + 0.044715 * z.powi(3))).tanh());
        let want = -(1.0 - cdf).ln() / std::f64::consts::LN_2;
        let got = loss.vb.into_scalar() as f64;
        assert!((got - want).abs() < 2e-3, "{got} vs {want}");
    }
}
