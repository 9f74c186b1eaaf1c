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

    /// Every convolution and attention of one forward pass, in order.
    pub fn ops(&self) -> Vec<Op> {
        let c = &self.config;
        let v0 = self.voxels(0);
        let mut ops = vec![Op::Conv { cin: 3, cout: c.base_channels, k: 27, voxels: v0 }];
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

/// An encoder or decoder block as built from a [`BlockPlan`]: exactly one of the fields is set
/// (a residual block with optional attention, or a resampling convolution).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    res: Option<ResBlock<B>>,
    attn: Option<AttentionBlock<B>>,
    down: Option<Conv3d<B>>,
    up: Option<Conv3d<B>>,
}

impl<B: Backend> Block<B> {
    fn new(plan: &BlockPlan, config: &ModelConfig, device: &B::Device) -> Self {
        let (g, temb, chunk) = (config.norm_groups, config.time_embed_dim(), config.attention_chunk);
        let mut block = Self { res: None, attn: None, down: None, up: None };
        match *plan {
            BlockPlan::Res { cin, cout, attn, .. } => {
                block.res = Some(ResBlock::new(cin, cout, temb, g, device));
                block.attn = attn.then(|| AttentionBlock::new(cout, g, chunk, device));
            }
            BlockPlan::Down { channels, .. } => {
                let sd = if config.downsample_depth { 2 } else { 1 };
                block.down = Some(conv3(channels, channels, [sd, 2, 2], false).init(device));
            }
            BlockPlan::Up { channels, .. } => {
                block.up = Some(conv3(channels, channels, [1, 1, 1], false).init(device));
            }
        }
        block
    }

    fn forward(&self, x: Tensor<B, 5>, temb: &Tensor<B, 2>, depth: bool) -> Tensor<B, 5> {
        let mut x = x;
        if let Some(res) = &self.res {
            x = res.forward(x, temb.clone());
        }
        if let Some(attn) = &self.attn {
            x = attn.forward(x);
        }
        if let Some(down) = &self.down {
            x = down.forward(x);
        }
        if let Some(up) = &self.up {
            x = up.forward(upsample_nearest(x, depth));
        }
        x
    }
}

/// The DISPR UNet3D: predicts [eps_hat, v] from x_t, the tiled 2D conditioning and t.
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
            conv_in: conv3(3, base, [1, 1, 1], false).init(device),
            encoder: plan.encoder.iter().map(|b| Block::new(b, config, device)).collect(),
            mid1: ResBlock::new(m, m, temb, g, device),
            mid_attn: config
                .middle_attention
                .then(|| AttentionBlock::new(m, g, config.attention_chunk, device)),
            mid2: ResBlock::new(m, m, temb, g, device),
            decoder: plan.decoder.iter().map(|b| Block::new(b, config, device)).collect(),
            out_norm: group_norm(g, base).init(device),
            out_conv: conv3(base, 2, [1, 1, 1], true).init(device),
            base_channels: base,
            downsample_depth: config.downsample_depth,
        }
    }

    /// `x_t`: [B, 1, D, H, W]; `cond`: [B, 2, 1, H, W] = [mask, image * mask] in [0, 1], tiled
    /// along depth here; `t`: the integer timestep of each batch element. Returns [B, 2, D, H, W]
    /// = [eps_hat, v].
    pub fn forward(&self, x_t: Tensor<B, 5>, cond: Tensor<B, 5>, t: &[f64]) -> Tensor<B, 5> {
        let [b, _, d, h, w] = x_t.dims();
        let device = x_t.device();
        let temb = timestep_embedding::<B>(t, self.base_channels, &device);
        let temb = self.time2.forward(silu(self.time1.forward(temb)));
        let cond = cond.expand([b, 2, d, h, w]);
        let mut x = self.conv_in.forward(Tensor::cat(vec![cond, x_t], 1));
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
            if block.res.is_some() {
                // Every decoder residual block takes one skip; the plan guarantees there is one.
                if let Some(skip) = skips.pop() {
                    x = Tensor::cat(vec![x, skip], 1);
                }
            }
            x = block.forward(x, &temb, self.downsample_depth);
        }
        self.out_conv.forward(silu(self.out_norm.forward(x)))
    }
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
    fn forward_shapes_and_zero_output_at_init() {
        let dev = Default::default();
        for config in [ModelConfig::tiny(), ModelConfig::small()] {
            let net = UNet::<TestBackend>::new(&config, &dev);
            let r = config.resolution;
            let x = Tensor::random([2, 1, r, r, r], Distribution::Normal(0.0, 1.0), &dev);
            let c = Tensor::random([2, 2, 1, r, r], Distribution::Uniform(0.0, 1.0), &dev);
            let out = net.forward(x, c, &[3.0, 999.0]);
            assert_eq!(out.dims(), [2, 2, r, r, r], "{}", config.name);
            // The head conv is zero-initialised: the untrained network outputs exactly zero.
            let max = out.abs().max().into_scalar();
            assert_eq!(max, 0.0, "{}", config.name);
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
        let c = Tensor::zeros([1, 2, 1, r, r], &dev);
        let out = net.forward(x, c, &[10.0]);
        assert_eq!(out.dims(), [1, 2, r, r, r]);
        assert!(out.abs().max().into_scalar() > 0.0);
    }
}
