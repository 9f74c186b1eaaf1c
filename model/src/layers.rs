//! The building blocks of the UNet3D, as in guided-diffusion (which DISPR builds on): residual
//! blocks with a time embedding, one-head self-attention, strided-conv downsampling and
//! nearest-neighbour upsampling followed by a convolution.

use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig3d};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

use crate::cpu_kernels::{self as kernels, Embedding};

/// A 3x3x3 convolution with padding 1 and the given stride.
pub(crate) fn conv3(cin: usize, cout: usize, stride: [usize; 3], zero: bool) -> Conv3dConfig {
    let c = Conv3dConfig::new([cin, cout], [3, 3, 3])
        .with_stride(stride)
        .with_padding(PaddingConfig3d::Explicit(1, 1, 1));
    if zero { c.with_initializer(Initializer::Zeros) } else { c }
}

pub(crate) fn group_norm(groups: usize, channels: usize) -> GroupNormConfig {
    // guided-diffusion's GroupNorm32 uses eps 1e-5 (PyTorch's default).
    GroupNormConfig::new(groups, channels).with_epsilon(1e-5)
}

/// GroupNorm -> SiLU -> conv3 -> + Linear(SiLU(temb)) -> GroupNorm -> SiLU -> zero conv3, plus the
/// input (through a 1x1x1 conv when the width changes). Dropout is 0 in every configuration.
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: Conv3d<B>,
    emb: Linear<B>,
    norm2: GroupNorm<B>,
    conv2: Conv3d<B>,
    skip: Option<Conv3d<B>>,
    scale_shift: bool,
}

impl<B: Backend> ResBlock<B> {
    /// With `scale_shift`, the embedding gives a scale and a shift of the second norm's output
    /// (norm(h) (1 + scale) + shift, guided-diffusion's `use_scale_shift_norm`).
    pub fn new(
        cin: usize,
        cout: usize,
        temb: usize,
        groups: usize,
        scale_shift: bool,
        device: &B::Device,
    ) -> Self {
        Self {
            norm1: group_norm(groups, cin).init(device),
            conv1: conv3(cin, cout, [1, 1, 1], false).init(device),
            emb: LinearConfig::new(temb, if scale_shift { 2 * cout } else { cout }).init(device),
            norm2: group_norm(groups, cout).init(device),
            conv2: conv3(cout, cout, [1, 1, 1], true).init(device),
            skip: (cin != cout).then(|| Conv3dConfig::new([cin, cout], [1, 1, 1]).init(device)),
            scale_shift,
        }
    }

    /// `x`: [B, cin, D, H, W]; `temb`: [B, temb] (already the embedding MLP's output).
    pub fn forward(&self, x: Tensor<B, 5>, temb: Tensor<B, 2>) -> Tensor<B, 5> {
        let h = kernels::group_norm(&self.norm1, x.clone(), Embedding::None, true);
        let h = kernels::conv3d(&self.conv1, h);
        let c = h.dims()[1];
        let e = self.emb.forward(silu(temb));
        let embedding = if self.scale_shift {
            Embedding::ScaleShift(e.clone().narrow(1, 0, c), e.narrow(1, c, c))
        } else {
            Embedding::Add(e)
        };
        let h = kernels::conv3d(&self.conv2, kernels::group_norm(&self.norm2, h, embedding, true));
        let skip = match &self.skip {
            Some(conv) => kernels::conv3d(conv, x),
            None => x,
        };
        skip + h
    }
}

/// Self-attention over all voxels: GroupNorm, a qkv projection, per head softmax(q k^T) v with q
/// and k each scaled by (C / heads)^-1/4, a zero-initialised output projection, and the
/// residual. The published model has one head.
#[derive(Module, Debug)]
pub struct AttentionBlock<B: Backend> {
    norm: GroupNorm<B>,
    qkv: Linear<B>,
    proj: Linear<B>,
    chunk: usize,
    heads: usize,
}

impl<B: Backend> AttentionBlock<B> {
    pub fn new(channels: usize, groups: usize, heads: usize, chunk: usize, device: &B::Device) -> Self {
        Self {
            norm: group_norm(groups, channels).init(device),
            // guided-diffusion uses 1x1 conv1d layers; a Linear over tokens is the same map
            // with the same parameter count.
            qkv: LinearConfig::new(channels, 3 * channels).init(device),
            proj: LinearConfig::new(channels, channels).with_initializer(Initializer::Zeros).init(device),
            chunk,
            heads: heads.max(1),
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let [b, c, d, h, w] = x.dims();
        let n = d * h * w;
        // [B, C, N] -> [B, N, C]: tokens in rows.
        let tokens = kernels::group_norm(&self.norm, x.clone(), Embedding::None, false)
            .reshape([b, c, n])
            .swap_dims(1, 2);
        let qkv = self.qkv.forward(tokens);
        let (heads, ch) = (self.heads, c / self.heads);
        // [B, N, C] -> [B * heads, N, C / heads]: each head attends over its own channels.
        let split =
            |t: Tensor<B, 3>| t.reshape([b, n, heads, ch]).swap_dims(1, 2).reshape([b * heads, n, ch]);
        let q = split(qkv.clone().narrow(2, 0, c));
        let k = split(qkv.clone().narrow(2, c, c));
        let v = split(qkv.narrow(2, 2 * c, c));
        let a = kernels::attention(q, k, v, self.chunk)
            .reshape([b, heads, n, ch])
            .swap_dims(1, 2)
            .reshape([b, n, c]);
        let out = self.proj.forward(a).swap_dims(1, 2).reshape([b, c, d, h, w]);
        x + out
    }
}

/// Nearest-neighbour upsampling by 2 along H and W (and D when `depth` is set), built from
/// reshapes and broadcasts because Burn 0.21 has no 3D interpolation.
pub fn upsample_nearest<B: Backend>(x: Tensor<B, 5>, depth: bool) -> Tensor<B, 5> {
    let [b, c, d, h, w] = x.dims();
    let x = if depth {
        x.reshape([b * c, d, 1, h * w]).expand([b * c, d, 2, h * w]).reshape([b, c, 2 * d, h, w])
    } else {
        x
    };
    let d = x.dims()[2];
    x.reshape([b * c * d, h, 1, w, 1]).expand([b * c * d, h, 2, w, 2]).reshape([b, c, d, 2 * h, 2 * w])
}

/// Sinusoidal embedding of the (integer) timesteps: `[cos | sin]` of t times frequencies
/// 10^4^(-i/half), as guided-diffusion's `timestep_embedding`. Returns [B, dim].
pub fn timestep_embedding<B: Backend>(t: &[f64], dim: usize, device: &B::Device) -> Tensor<B, 2> {
    let half = dim / 2;
    let mut data = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        let args: Vec<f64> =
            (0..half).map(|i| ti * (-(10_000f64.ln()) * i as f64 / half as f64).exp()).collect();
        data.extend(args.iter().map(|a| a.cos() as f32));
        data.extend(args.iter().map(|a| a.sin() as f32));
    }
    Tensor::from_data(burn::tensor::TensorData::new(data, [t.len(), dim]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn upsampling_matches_a_plain_loop() {
        let dev = Default::default();
        let (b, c, d, h, w) = (2, 3, 4, 3, 5);
        let vals: Vec<f32> = (0..b * c * d * h * w).map(|i| i as f32 * 0.5 - 7.0).collect();
        let x = Tensor::<TestBackend, 5>::from_data(
            burn::tensor::TensorData::new(vals.clone(), [b, c, d, h, w]),
            &dev,
        );
        for depth in [false, true] {
            let f = if depth { 2 } else { 1 };
            let y = upsample_nearest(x.clone(), depth);
            assert_eq!(y.dims(), [b, c, f * d, 2 * h, 2 * w]);
            let got = y.into_data().to_vec::<f32>().unwrap();
            let mut i = 0;
            for bi in 0..b {
                for ci in 0..c {
                    for z in 0..f * d {
                        for yy in 0..2 * h {
                            for xx in 0..2 * w {
                                let src = (((bi * c + ci) * d + z / f) * h + yy / 2) * w + xx / 2;
                                assert_eq!(got[i], vals[src], "at {bi} {ci} {z} {yy} {xx}");
                                i += 1;
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn timestep_embedding_is_cos_then_sin() {
        let e = timestep_embedding::<TestBackend>(&[0.0, 10.0], 8, &Default::default());
        let v = e.into_data().to_vec::<f32>().unwrap();
        assert_eq!(&v[..8], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert!((v[8] - 10f32.cos()).abs() < 1e-6 && (v[12] - 10f32.sin()).abs() < 1e-6);
        // Second frequency: 10^4^(-1/4) = 0.1.
        assert!((v[9] - 1f32.cos()).abs() < 1e-6);
    }
}
