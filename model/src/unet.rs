//! The DISPR UNet3D. The architecture is described once, by [`Plan`], from a
//! [`ModelConfig`]; the network is built from the plan and the FLOP and memory estimates walk
//! the same plan, so they cannot drift apart.

use burn::module::Module;
use burn::nn::conv::Conv3d;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

use crate::config::ModelConfig;
use crate::cpu_kernels::{self as kernels, Embedding};
use crate::layers::{AttentionBlock, ResBlock, conv3, group_norm, timestep_embedding, upsample_nearest};

/// One block of the encoder or decoder: a residual block (optionally followed by attention),
/// or a down- or upsampling convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPlan {
    /// A residual block at `level` from `cin` to `cout` channels, then attention if `attn`.
    Res { level: usize, cin: usize, cout: usize, attn: bool },
    /// Strided 3x3x3 conv from `level` to `level + 1`.
    Down { level: usize, channels: usize },
    /// Nearest upsampling then 3x3x3 conv from `level` to `level - 1`.
    Up { level: usize, channels: usize },
}

/// The layer-by-layer layout of a configuration (guided-diffusion's UNetModel layout).
#[derive(Debug, Clone)]
pub struct Plan {
    pub config: ModelConfig,
    /// Encoder blocks after `conv_in`; each pushes one skip.
    pub encoder: Vec<BlockPlan>,
    /// Widest width, used by the middle block.
    pub middle_channels: usize,
    /// Decoder blocks; each residual block pops one skip and concatenates it.
    pub decoder: Vec<BlockPlan>,
}

/// One compute-heavy operation, for FLOP and memory estimates.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Conv { cin: usize, cout: usize, k: usize, voxels: usize },
    Attention { c: usize, tokens: usize },
}

impl Plan {
    pub fn new(config: &ModelConfig) -> Self {
        let base = config.base_channels;
        let levels = config.channel_mults.len();
        let mut encoder = Vec::new();
        let mut skips = vec![base];
        let mut ch = base;
        for (level, mult) in config.channel_mults.iter().enumerate() {
            for _ in 0..config.num_res_blocks {
                let cout = mult * base;
                let attn = config.attention_levels.contains(&level);
                encoder.push(BlockPlan::Res { level, cin: ch, cout, attn });
                ch = cout;
                skips.push(ch);
            }
            if level + 1 < levels {
                encoder.push(BlockPlan::Down { level, channels: ch });
                skips.push(ch);
            }
        }
        let middle_channels = ch;
        let mut decoder = Vec::new();
        for (level, mult) in config.channel_mults.iter().enumerate().rev() {
            for i in 0..=config.num_res_blocks {
                let skip = skips.pop().unwrap_or(0);
                let cout = mult * base;
                let attn = config.attention_levels.contains(&level);
                decoder.push(BlockPlan::Res { level, cin: ch + skip, cout, attn });
                ch = cout;
                if level > 0 && i == config.num_res_blocks {
                    decoder.push(BlockPlan::Up { level, channels: ch });
                }
            }
        }
        Self { config: config.clone(), encoder, middle_channels, decoder }
    }

    /// Voxels of a feature map at `level`.
    pub fn voxels(&self, level: usize) -> usize {
        let hw = self.config.resolution >> level;
        let d = if self.config.downsample_depth { hw } else { self.config.resolution };
        d * hw * hw
    }

    /// Multiply-accumulate based FLOP count of one forward pass at batch 1 (2 FLOPs per MAC;
    /// convolutions, linear layers and attention matmuls; norms and activations ignored).
    pub fn forward_flops(&self) -> f64 {
        let mut flops = 0.0;
        for op in self.ops() {
            flops += match op {
                Op::Conv { cin, cout, k, voxels } => 2.0 * (cin * cout * k * voxels) as f64,
                Op::Attention { c, tokens } => {
                    // qkv and output projections, then q k^T and a v.
                    2.0 * (4 * c * c * tokens) as f64 + 2.0 * 2.0 * (tokens * tokens * c) as f64
                }
            }
        }
        flops
    }

    /// A rough upper bound of the memory one sample needs in an inference forward pass: the
    /// skip activations kept for the decoder, a few live block activations and one attention
    /// score chunk. Used to choose a batch size from a memory budget.
    pub fn inference_bytes_per_sample(&self) -> usize {
        let mut skips = 0usize;
        let mut largest = 0usize;
        let mut attn = 0usize;
        for op in self.ops() {
            match op {
                Op::Conv { cout, voxels, .. } => {
                    skips += cout * voxels;
                    largest = largest.max(cout * voxels);
                }
                Op::Attention { c, tokens } => {
                    attn = attn.max(self.config.attention_chunk.min(tokens) * tokens + 4 * c * tokens);
                }
            }
        }
        // Skips are bounded by the conv outputs; live activations ~ 6 of the largest map.
        4 * (skips / 2 + 6 * largest + attn)
    }

    /// Every convolution and attention of one forward pass, in order.
    pub fn ops(&self) -> Vec<Op> {
        let c = &self.config;
        let v0 = self.voxels(0);
        let mut ops = vec![Op::Conv { cin: c.in_channels(), cout: c.base_channels, k: 27, voxels: v0 }];
        let res = |ops: &mut Vec<Op>, level: usize, cin: usize, cout: usize, attn: bool| {
            let voxels = self.voxels(level);
            ops.push(Op::Conv { cin, cout, k: 27, voxels });
            ops.push(Op::Conv { cin: cout, cout, k: 27, voxels });
            if cin != cout {
                ops.push(Op::Conv { cin, cout, k: 1, voxels });
            }
            if attn {
                ops.push(Op::Attention { c: cout, tokens: voxels });
            }
        };
        let block = |ops: &mut Vec<Op>, b: &BlockPlan| match *b {
            BlockPlan::Res { level, cin, cout, attn } => res(ops, level, cin, cout, attn),
            BlockPlan::Down { level, channels } => {
                ops.push(Op::Conv { cin: channels, cout: channels, k: 27, voxels: self.voxels(level + 1) })
            }
            BlockPlan::Up { level, channels } => {
                ops.push(Op::Conv { cin: channels, cout: channels, k: 27, voxels: self.voxels(level - 1) })
            }
        };
        for b in &self.encoder {
            block(&mut ops, b);
        }
        let (m, last) = (self.middle_channels, c.channel_mults.len() - 1);
        block(&mut ops, &BlockPlan::Res { level: last, cin: m, cout: m, attn: c.middle_attention });
        block(&mut ops, &BlockPlan::Res { level: last, cin: m, cout: m, attn: false });
        for b in &self.decoder {
            block(&mut ops, b);
        }
        ops.push(Op::Conv { cin: c.base_channels, cout: 2, k: 27, voxels: v0 });
        ops
    }
}

/// A residual block, optionally followed by self-attention.
#[derive(Module, Debug)]
pub struct ResAttn<B: Backend> {
    res: ResBlock<B>,
    attn: Option<AttentionBlock<B>>,
}

/// An encoder or decoder block as built from a [`BlockPlan`]: one of its three kinds.
// A network holds a few dozen blocks, built once and never moved on a hot path: the residual
// variant's size costs nothing worth a box (which Burn's record layout would also see).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block<B: Backend> {
    Res(ResAttn<B>),
    /// Strided 3x3x3 convolution.
    Down(Conv3d<B>),
    /// Nearest upsampling, then a 3x3x3 convolution.
    Up(Conv3d<B>),
}

impl<B: Backend> Block<B> {
    fn new(plan: &BlockPlan, config: &ModelConfig, device: &B::Device) -> Self {
        let (g, temb, chunk) = (config.norm_groups, config.time_embed_dim(), config.attention_chunk);
        match *plan {
            BlockPlan::Res { cin, cout, attn, .. } => Block::Res(ResAttn {
                res: ResBlock::new(cin, cout, temb, g, config.scale_shift_norm, device),
                attn: attn.then(|| AttentionBlock::new(cout, g, config.num_heads, chunk, device)),
            }),
            BlockPlan::Down { channels, .. } => {
                let sd = if config.downsample_depth { 2 } else { 1 };
                Block::Down(conv3(channels, channels, [sd, 2, 2], false).init(device))
            }
            BlockPlan::Up { channels, .. } => {
                Block::Up(conv3(channels, channels, [1, 1, 1], false).init(device))
            }
        }
    }

    fn forward(&self, x: Tensor<B, 5>, temb: &Tensor<B, 2>, depth: bool) -> Tensor<B, 5> {
        match self {
            Block::Res(b) => {
                let x = b.res.forward(x, temb.clone());
                match &b.attn {
                    Some(attn) => attn.forward(x),
                    None => x,
                }
            }
            Block::Down(conv) => kernels::conv3d(conv, x),
            Block::Up(conv) => kernels::conv3d(conv, upsample_nearest(x, depth)),
        }
    }
}

/// What a network is conditioned on, as tensors: the 2D planes [B, 2, 1, H, W] = [mask, image x
/// mask] in [0, 1] (tiled along depth by the network), and for the `prior-x0` objective the 3D
/// prior [B, 1, D, H, W].
#[derive(Debug, Clone)]
pub struct Conditioning<B: Backend> {
    pub planes: Tensor<B, 5>,
    pub prior: Option<Tensor<B, 5>>,
}

/// The DISPR UNet3D: predicts two channels (see [`crate::config::Objective`]) from x_t, the
/// conditioning and t.
#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    time1: Linear<B>,
    time2: Linear<B>,
    conv_in: Conv3d<B>,
    encoder: Vec<Block<B>>,
    mid1: ResBlock<B>,
    mid_attn: Option<AttentionBlock<B>>,
    mid2: ResBlock<B>,
    decoder: Vec<Block<B>>,
    out_norm: GroupNorm<B>,
    out_conv: Conv3d<B>,
    base_channels: usize,
    downsample_depth: bool,
    z_channel: bool,
}

impl<B: Backend> UNet<B> {
    /// A freshly initialised network of `config` (which must [validate](ModelConfig::validate)).
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let plan = Plan::new(config);
        let (base, temb, g) = (config.base_channels, config.time_embed_dim(), config.norm_groups);
        let m = plan.middle_channels;
        Self {
            time1: LinearConfig::new(base, temb).init(device),
            time2: LinearConfig::new(temb, temb).init(device),
            conv_in: conv3(config.in_channels(), base, [1, 1, 1], false).init(device),
            encoder: plan.encoder.iter().map(|b| Block::new(b, config, device)).collect(),
            mid1: ResBlock::new(m, m, temb, g, config.scale_shift_norm, device),
            mid_attn: config
                .middle_attention
                .then(|| AttentionBlock::new(m, g, config.num_heads, config.attention_chunk, device)),
            mid2: ResBlock::new(m, m, temb, g, config.scale_shift_norm, device),
            decoder: plan.decoder.iter().map(|b| Block::new(b, config, device)).collect(),
            out_norm: group_norm(g, base).init(device),
            out_conv: conv3(base, 2, [1, 1, 1], true).init(device),
            base_channels: base,
            downsample_depth: config.downsample_depth,
            z_channel: config.z_channel,
        }
    }

    /// `x_t`: [B, 1, D, H, W]; `cond`: the conditioning (its planes are tiled along depth here,
    /// its prior, when the objective has one, is stacked as is); `t`: the integer timestep of
    /// each batch element. Returns [B, 2, D, H, W]: [eps_hat, v] for the `eps` objective, [x0
    /// correction, unused] for `prior-x0`.
    pub fn forward(&self, x_t: Tensor<B, 5>, cond: &Conditioning<B>, t: &[f64]) -> Tensor<B, 5> {
        let [b, _, d, h, w] = x_t.dims();
        let device = x_t.device();
        let temb = timestep_embedding::<B>(t, self.base_channels, &device);
        let temb = self.time2.forward(silu(self.time1.forward(temb)));
        let mut inputs = vec![cond.planes.clone().expand([b, 2, d, h, w])];
        inputs.extend(cond.prior.clone());
        if self.z_channel {
            inputs.push(z_distance::<B>(d, &device).expand([b, 1, d, h, w]));
        }
        inputs.push(x_t);
        let mut x = kernels::conv3d(&self.conv_in, Tensor::cat(inputs, 1));
        let mut skips = vec![x.clone()];
        for block in &self.encoder {
            x = block.forward(x, &temb, self.downsample_depth);
            skips.push(x.clone());
        }
        x = self.mid1.forward(x, temb.clone());
        if let Some(attn) = &self.mid_attn {
            x = attn.forward(x);
        }
        x = self.mid2.forward(x, temb.clone());
        for block in &self.decoder {
            if matches!(block, Block::Res(_)) {
                // Every decoder residual block takes one skip; the plan guarantees there is one.
                if let Some(skip) = skips.pop() {
                    x = Tensor::cat(vec![x, skip], 1);
                }
            }
            x = block.forward(x, &temb, self.downsample_depth);
        }
        kernels::conv3d(&self.out_conv, kernels::group_norm(&self.out_norm, x, Embedding::None, true))
    }
}

/// |z - c| / c for each of `d` slices (c the middle of the stack), as [1, 1, d, 1, 1]: 0 on the
/// middle plane, 1 on the first and last slice.
fn z_distance<B: Backend>(d: usize, device: &B::Device) -> Tensor<B, 5> {
    let c = (d as f32 - 1.0) / 2.0;
    let v: Vec<f32> = (0..d).map(|z| if c > 0.0 { (z as f32 - c).abs() / c } else { 0.0 }).collect();
    Tensor::from_data(burn::tensor::TensorData::new(v, [1, 1, d, 1, 1]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::tensor::Distribution;

    #[test]
    fn dispr_64_has_the_published_parameter_count() {
        // Built without a forward pass: a full 64^3 forward is a benchmark, not a test.
        let net = UNet::<TestBackend>::new(&ModelConfig::dispr_64(), &Default::default());
        assert_eq!(net.num_params(), 9_772_802);
    }

    #[test]
    fn dispr_64_flops_match_the_published_estimate() {
        // DESIGN.md: about 0.79 TFLOP per forward pass at batch 1, about 40% in attention.
        let f = Plan::new(&ModelConfig::dispr_64()).forward_flops();
        assert!((0.7e12..0.9e12).contains(&f), "{f}");
    }

    #[test]
    fn the_reference_scripts_network_has_its_parameter_count() {
        // guided-diffusion's UNetModel with 2 residual blocks per level, attention at the 16x16
        // and 8x8 levels and scale-shift norm: counted layer by layer from its constructor.
        let net = UNet::<TestBackend>::new(&ModelConfig::dispr_64_ref(), &Default::default());
        assert_eq!(net.num_params(), 14_714_626);
    }

    #[test]
    fn forward_shapes_and_zero_output_at_init() {
        let dev = Default::default();
        for config in [ModelConfig::tiny(), ModelConfig::small(), ModelConfig::tiny_prior()] {
            let net = UNet::<TestBackend>::new(&config, &dev);
            let r = config.resolution;
            let x = Tensor::random([2, 1, r, r, r], Distribution::Normal(0.0, 1.0), &dev);
            let planes = Tensor::random([2, 2, 1, r, r], Distribution::Uniform(0.0, 1.0), &dev);
            let prior = (config.objective == crate::config::Objective::PriorX0)
                .then(|| Tensor::random([2, 1, r, r, r], Distribution::Uniform(0.0, 1.0), &dev));
            let out = net.forward(x, &Conditioning { planes, prior }, &[3.0, 999.0]);
            assert_eq!(out.dims(), [2, 2, r, r, r], "{}", config.name);
            // The head conv is zero-initialised: the untrained network outputs exactly zero.
            let max = out.abs().max().into_scalar();
            assert_eq!(max, 0.0, "{}", config.name);
        }
    }

    #[test]
    fn the_z_channel_is_the_distance_from_the_middle_plane() {
        let v: Vec<f32> = z_distance::<TestBackend>(8, &Default::default()).into_data().to_vec().unwrap();
        let expected = [7.0, 5.0, 3.0, 1.0, 1.0, 3.0, 5.0, 7.0].map(|x: f32| x / 7.0);
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn forward_shape_with_depth_kept_and_trained_head() {
        // tiny keeps depth like dispr-64; with a non-zero head the output is non-trivial.
        let dev = Default::default();
        let config = ModelConfig::tiny();
        let mut net = UNet::<TestBackend>::new(&config, &dev);
        net.out_conv = conv3(config.base_channels, 2, [1, 1, 1], false).init(&dev);
        let r = config.resolution;
        let x = Tensor::random([1, 1, r, r, r], Distribution::Normal(0.0, 1.0), &dev);
        let c = Conditioning { planes: Tensor::zeros([1, 2, 1, r, r], &dev), prior: None };
        let out = net.forward(x, &c, &[10.0]);
        assert_eq!(out.dims(), [1, 2, r, r, r]);
        assert!(out.abs().max().into_scalar() > 0.0);
    }
}
