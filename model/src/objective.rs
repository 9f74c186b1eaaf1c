//! How a configuration's [`Objective`] turns a cell into network inputs and the network's output
//! into what the samplers and the loss need. Training and sampling both go through here, so a
//! checkpoint is always sampled the way it was trained.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::config::{ModelConfig, Objective};
use crate::resample::{downsample_2d, downsample_3d, upsample_3d};
use crate::schedule::per_sample;
use crate::unet::Conditioning;
use dispr_shape::volume::SIDE;

/// One cell's conditioning at a configuration's resolution `r`, as plain numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct CellConditioning {
    /// [mask, image x mask], each r x r, in [0, 1] (the `prior-x0` objective normalises the
    /// image, see [`normalised_image`]).
    pub planes: Vec<f32>,
    /// The extruded-mask prior at r^3 (`prior-x0` only).
    pub prior: Option<Vec<f32>>,
}

/// The cell's image scaled so that its mean inside the mask is 0.5 (clamped to [0, 1]): the
/// brightness of a stain varies from microscope to microscope and from synthetic to real
/// cells (mean inside the mask 0.505 synthetic, 0.555 real), its pattern is what carries the
/// shape. A cell with an empty or black mask keeps its raw values.
pub fn normalised_image(image: &[u8], mask: &[u8]) -> Vec<f32> {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (&v, &m) in image.iter().zip(mask) {
        if m > dispr_shape::floor::MASK_THRESHOLD {
            sum += f64::from(v);
            n += 1;
        }
    }
    let mean = if n > 0 { sum / n as f64 / 255.0 } else { 0.0 };
    let scale = if mean > 1e-3 { 0.5 / mean } else { 1.0 };
    image.iter().map(|&v| (f64::from(v) / 255.0 * scale).min(1.0) as f32).collect()
}

/// The conditioning of one cell (64x64 uint8 image and mask) for `config`.
pub fn cell_conditioning(config: &ModelConfig, image: &[u8], mask: &[u8]) -> CellConditioning {
    let r = config.resolution;
    let factor = SIDE / r;
    let m: Vec<f32> = mask.iter().map(|&v| f32::from(v) / 255.0).collect();
    let im: Vec<f32> = match config.objective {
        Objective::Eps => image.iter().map(|&v| f32::from(v) / 255.0).collect(),
        Objective::PriorX0 => normalised_image(image, mask),
    };
    let masked: Vec<f32> = im.iter().zip(&m).map(|(&i, &mv)| i * mv).collect();
    let mut planes = downsample_2d(&m, SIDE, factor);
    planes.extend(downsample_2d(&masked, SIDE, factor));
    let prior = match config.objective {
        Objective::Eps => None,
        Objective::PriorX0 => Some(downsample_3d(&dispr_shape::floor::extrusion(mask), SIDE, factor)),
    };
    CellConditioning { planes, prior }
}

/// Stacks the conditioning of a batch into tensors.
pub fn batch_conditioning<B: Backend>(
    cells: &[&CellConditioning],
    r: usize,
    device: &B::Device,
) -> Conditioning<B> {
    let b = cells.len();
    let planes: Vec<f32> = cells.iter().flat_map(|c| c.planes.iter().copied()).collect();
    let planes = Tensor::from_data(TensorData::new(planes, [b, 2, 1, r, r]), device);
    let prior = if cells.iter().all(|c| c.prior.is_some()) && b > 0 {
        let p: Vec<f32> = cells.iter().flat_map(|c| c.prior.iter().flatten().copied()).collect();
        Some(Tensor::from_data(TensorData::new(p, [b, 1, r, r, r]), device))
    } else {
        None
    };
    Conditioning { planes, prior }
}

/// The x_0 estimate of a `prior-x0` network: prior + correction (output channel 0).
pub fn prior_x0<B: Backend>(out: Tensor<B, 5>, prior: Tensor<B, 5>) -> Tensor<B, 5> {
    prior + out.narrow(1, 0, 1)
}

/// Turns a network output into the [eps_hat, v] the samplers take. For `eps` models that is
/// the output itself. For `prior-x0` models, eps follows from x_t and the x_0 estimate,
/// eps = (x_t - sqrt(a) x0) / sqrt(1 - a), with a = alpha-bar of each element's model timestep
/// `alpha_bar`, and v = -1 selects the posterior variance beta~ (DDPM's fixed "small" variance,
/// the usual choice for x0-predicting models).
pub fn as_eps_v<B: Backend>(
    objective: Objective,
    out: Tensor<B, 5>,
    x_t: Tensor<B, 5>,
    prior: Option<&Tensor<B, 5>>,
    alpha_bar: &[f64],
) -> Tensor<B, 5> {
    let (Objective::PriorX0, Some(prior)) = (objective, prior) else {
        return out;
    };
    let device = out.device();
    let x0 = prior_x0(out, prior.clone());
    let sa = per_sample::<B>(&alpha_bar.iter().map(|a| a.sqrt()).collect::<Vec<_>>(), &device);
    let inv_sb =
        per_sample::<B>(&alpha_bar.iter().map(|a| 1.0 / (1.0 - a).sqrt()).collect::<Vec<_>>(), &device);
    let eps = (x_t - x0 * sa) * inv_sb;
    let v = eps.ones_like().neg();
    Tensor::cat(vec![eps, v], 1)
}

/// A sample at the network's resolution (r^3, values as sampled) brought to a 64^3 volume in
/// [0, 1]. `eps` models: trilinear upsampling. `prior-x0` models: the full-resolution prior plus
/// the upsampled correction (sample - prior at r), so the outline keeps the mask's 64x64 detail
/// and the network only has to say where the shape departs from the prior.
pub fn to_full_resolution(
    config: &ModelConfig,
    sample: &[f32],
    mask: &[u8],
    cond: &CellConditioning,
) -> Vec<f32> {
    let r = config.resolution;
    let factor = SIDE / r;
    let out = match (&cond.prior, config.objective) {
        (Some(prior), Objective::PriorX0) => {
            let correction: Vec<f32> = sample.iter().zip(prior).map(|(s, p)| s - p).collect();
            let full = dispr_shape::floor::extrusion(mask);
            upsample_3d(&correction, r, factor).iter().zip(&full).map(|(c, p)| c + p).collect()
        }
        _ => upsample_3d(sample, r, factor),
    };
    out.into_iter().map(|v| v.clamp(0.0, 1.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_sets_the_mean_inside_the_mask_to_one_half() {
        let mask: Vec<u8> = (0..4096).map(|i| if i < 2048 { 255 } else { 0 }).collect();
        let image: Vec<u8> =
            (0..4096).map(|i| if i < 2048 { 100 + (i % 2) as u8 * 40 } else { 30 }).collect();
        let n = normalised_image(&image, &mask);
        let mean: f32 = n[..2048].iter().sum::<f32>() / 2048.0;
        assert!((mean - 0.5).abs() < 1e-4, "{mean}");
        // Outside the mask the same scale applies.
        assert!((n[3000] - 30.0 / 120.0 * 0.5).abs() < 1e-4);
        // A black mask leaves the image as it is.
        let raw = normalised_image(&image, &vec![0; 4096]);
        assert!((raw[0] - 100.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn an_exact_prior_sample_maps_back_to_the_extrusion() {
        let config = ModelConfig::tiny_prior();
        let mask: Vec<u8> = (0..4096).map(|i| if (i % 64) > 10 && (i / 64) > 20 { 255 } else { 0 }).collect();
        let image = vec![80u8; 4096];
        let cond = cell_conditioning(&config, &image, &mask);
        let prior = cond.prior.clone().unwrap();
        let full = to_full_resolution(&config, &prior, &mask, &cond);
        assert_eq!(full, dispr_shape::floor::extrusion(&mask));
    }
}
