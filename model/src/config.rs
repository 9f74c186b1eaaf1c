//! Named, serialisable model configurations. A configuration is stored in every checkpoint, so
//! a worker builds exactly the network a checkpoint was trained with and never guesses.

use serde::{Deserialize, Serialize};

/// The shape of a DISPR UNet3D. [`ModelConfig::dispr_64`] is the published network; the others
/// are smaller variants of the same architecture for CPUs and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Name of the configuration (`dispr-64`, `small`, `tiny`).
    pub name: String,
    /// Edge length of the cubic volume the network works on. Inputs (64x64 images, 64^3
    /// volumes) are resampled to it and outputs back to 64^3.
    pub resolution: usize,
    /// Width of the first level (`model_channels` in guided-diffusion).
    pub base_channels: usize,
    /// Width multiplier per level; one level per entry.
    pub channel_mults: Vec<usize>,
    /// Residual blocks per level in the encoder (the decoder has one more, as in guided-diffusion).
    pub num_res_blocks: usize,
    /// Levels (indices into `channel_mults`) whose blocks are followed by self-attention.
    pub attention_levels: Vec<usize>,
    /// Whether the middle block has self-attention between its two residual blocks.
    pub middle_attention: bool,
    /// Whether downsampling halves the depth too. The published model keeps depth (stride
    /// (1,2,2)); a small CPU model halves all three axes to save compute.
    pub downsample_depth: bool,
    /// Groups of every GroupNorm (32 in the published model).
    pub norm_groups: usize,
    /// Query rows per attention chunk: the score matrix held at once is `chunk x tokens`.
    pub attention_chunk: usize,
}

/// Names accepted by [`ModelConfig::named`].
pub const CONFIG_NAMES: [&str; 3] = ["dispr-64", "small", "tiny"];

impl ModelConfig {
    /// The published DISPR network: 64^3, widths 32/64/96/128, attention at the 16x16 level and
    /// in the middle block, depth kept at 64 at every level. 9,772,802 parameters.
    pub fn dispr_64() -> Self {
        Self {
            name: "dispr-64".into(),
            resolution: 64,
            base_channels: 32,
            channel_mults: vec![1, 2, 3, 4],
            num_res_blocks: 1,
            attention_levels: vec![2],
            middle_attention: true,
            downsample_depth: false,
            norm_groups: 32,
            attention_chunk: 1024,
        }
    }

    /// A CPU-sized network: 32^3 volumes, widths 16/32/48, attention only in the middle block
    /// (8^3 = 512 tokens), isotropic downsampling. 1,159,826 parameters (4.6 MB in f32).
    pub fn small() -> Self {
        Self {
            name: "small".into(),
            resolution: 32,
            base_channels: 16,
            channel_mults: vec![1, 2, 3],
            num_res_blocks: 1,
            attention_levels: vec![],
            middle_attention: true,
            downsample_depth: true,
            norm_groups: 8,
            attention_chunk: 512,
        }
    }

    /// A network for tests: 16^3, widths 8/16, attention at the second level and in the middle
    /// (exercising every block type), small enough to train in seconds.
    pub fn tiny() -> Self {
        Self {
            name: "tiny".into(),
            resolution: 16,
            base_channels: 8,
            channel_mults: vec![1, 2],
            num_res_blocks: 1,
            attention_levels: vec![1],
            middle_attention: true,
            downsample_depth: false,
            norm_groups: 4,
            attention_chunk: 64,
        }
    }

    /// The configuration called `name`, or an error listing the names there are.
    pub fn named(name: &str) -> Result<Self, ConfigError> {
        match name {
            "dispr-64" => Ok(Self::dispr_64()),
            "small" => Ok(Self::small()),
            "tiny" => Ok(Self::tiny()),
            _ => Err(ConfigError(format!(
                "unknown model configuration {name:?}; use one of {}",
                CONFIG_NAMES.join(", ")
            ))),
        }
    }

    /// Width of the time embedding (4 x base, as in guided-diffusion).
    pub fn time_embed_dim(&self) -> usize {
        4 * self.base_channels
    }

    /// Voxels per volume at the network's resolution.
    pub fn voxels(&self) -> usize {
        self.resolution.pow(3)
    }

    /// Checks that the numbers fit together (group counts divide widths, the resolution halves
    /// cleanly at every level), with a message saying what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(format!("model configuration {:?}: {m}", self.name)));
        if self.channel_mults.is_empty() || self.base_channels == 0 || self.num_res_blocks == 0 {
            return err("needs at least one level, base_channels > 0 and num_res_blocks > 0".into());
        }
        let downs = self.channel_mults.len() - 1;
        if self.resolution == 0 || !self.resolution.is_multiple_of(1 << downs) {
            return err(format!("resolution {} must be divisible by 2^{downs}", self.resolution));
        }
        for &m in &self.channel_mults {
            let c = m * self.base_channels;
            if m == 0 || !c.is_multiple_of(self.norm_groups) {
                return err(format!("width {c} is not divisible by norm_groups {}", self.norm_groups));
            }
        }
        if let Some(&l) = self.attention_levels.iter().find(|&&l| l >= self.channel_mults.len()) {
            return err(format!("attention level {l} does not exist"));
        }
        if self.attention_chunk == 0 || !self.base_channels.is_multiple_of(2) {
            return err("attention_chunk must be > 0 and base_channels even".into());
        }
        Ok(())
    }

    /// Multiply-accumulate based FLOP count of one forward pass at batch 1 (2 FLOPs per MAC;
    /// convolutions, linear layers and attention matmuls; norms and activations ignored).
    pub fn forward_flops(&self) -> f64 {
        let mut flops = 0.0;
        for op in crate::unet::Plan::new(self).ops() {
            flops += match op {
                crate::unet::Op::Conv { cin, cout, k, voxels } => 2.0 * (cin * cout * k * voxels) as f64,
                crate::unet::Op::Attention { c, tokens } => {
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
        for op in crate::unet::Plan::new(self).ops() {
            match op {
                crate::unet::Op::Conv { cout, voxels, .. } => {
                    skips += cout * voxels;
                    largest = largest.max(cout * voxels);
                }
                crate::unet::Op::Attention { c, tokens } => {
                    attn = attn.max(self.attention_chunk.min(tokens) * tokens + 4 * c * tokens);
                }
            }
        }
        // Skips are bounded by the conv outputs; live activations ~ 6 of the largest map.
        4 * (skips / 2 + 6 * largest + attn)
    }
}

/// A configuration that does not exist or does not fit together.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_configurations_round_trip_and_validate() {
        for name in CONFIG_NAMES {
            let c = ModelConfig::named(name).unwrap();
            assert_eq!(c.name, name);
            c.validate().unwrap();
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), c);
        }
        let e = ModelConfig::named("huge").unwrap_err().to_string();
        assert!(e.contains("dispr-64") && e.contains("huge"), "{e}");
    }

    #[test]
    fn invalid_configuration_says_what_is_wrong() {
        let mut c = ModelConfig::tiny();
        c.norm_groups = 3;
        assert!(c.validate().unwrap_err().to_string().contains("norm_groups"));
    }

    #[test]
    fn dispr_64_flops_match_the_published_estimate() {
        // DESIGN.md: about 0.79 TFLOP per forward pass at batch 1, about 40% in attention.
        let f = ModelConfig::dispr_64().forward_flops();
        assert!((0.7e12..0.9e12).contains(&f), "{f}");
    }
}
