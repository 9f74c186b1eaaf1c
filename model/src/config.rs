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
    /// Attention heads of every attention block (the channels are split among them).
    #[serde(default = "one")]
    pub num_heads: usize,
    /// guided-diffusion's `use_scale_shift_norm`: the time embedding scales and shifts the
    /// second GroupNorm's output of every residual block instead of being added before it.
    #[serde(default)]
    pub scale_shift_norm: bool,
    /// What the network is given and what it predicts. Checkpoints written before this field
    /// existed are published-objective (`eps`) models and load as such.
    #[serde(default)]
    pub objective: Objective,
    /// Whether the network is also given each voxel's distance from the stack's middle plane,
    /// |z - c| / c, as an input channel. Convolutions cannot tell where along z they are (the
    /// 2D conditioning is the same on every slice), so without it a network can only place the
    /// top and bottom of a cell by counting from the prior's faces; with it, "inside when
    /// |z - c| is below what the 2D input says" is one local rule. Checkpoints written before
    /// this field existed have no such channel.
    #[serde(default)]
    pub z_channel: bool,
    /// Which timesteps `ddim-N` visits. Checkpoints written before this field existed (every
    /// checkpoint this project trains) use [`Respacing::Even`]; imported reference checkpoints
    /// use [`Respacing::GuidedDiffusion`], so that `ddim-50` computes what the reference's
    /// `ddim50` computes.
    #[serde(default)]
    pub respacing: Respacing,
}

/// How a sampler with fewer steps than the 1000 of training picks its timesteps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Respacing {
    /// Evenly spaced from 0 to 999 inclusive, for every sampler (DPM-Solver++ in log-SNR).
    #[default]
    Even,
    /// As guided-diffusion's `space_timesteps`: `ddim-N` takes every stride-th timestep from 0
    /// (its `ddimN`); the other samplers as [`Respacing::Even`] (DDPM-N is its plain `N`).
    GuidedDiffusion,
}

fn one() -> usize {
    1
}

/// What a network is given and what it predicts: stored in every checkpoint, so a worker
/// samples any checkpoint the way it was trained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// As published: input [mask, image x mask, x_t], output [eps_hat, v] (learned-range
    /// variance), trained with MSE(eps) + L_vb.
    #[default]
    Eps,
    /// Input [mask, normalised image x mask, prior, x_t] (with the z channel before x_t where
    /// the configuration has one, see [`ModelConfig::z_channel`]) where the prior is the mask
    /// extruded along z (`dispr_shape::floor`); output channel 0 is a correction and x0_hat = prior +
    /// correction, trained with MSE(x0) + soft Dice. The output layer starts at zero, so an
    /// untrained network returns the prior: it starts at the floor and learns what the 2D input
    /// says beyond it. The second output channel is unused (the samplers use the fixed
    /// posterior variance).
    PriorX0,
}

impl Objective {
    /// Input channels of the network: the 2D conditioning (tiled along z), the 3D prior when
    /// there is one, and x_t.
    pub fn in_channels(self) -> usize {
        match self {
            Objective::Eps => 3,
            Objective::PriorX0 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Objective::Eps => "eps",
            Objective::PriorX0 => "prior-x0",
        }
    }
}

/// Names accepted by [`ModelConfig::named`].
pub const CONFIG_NAMES: [&str; 7] =
    ["shape-32", "shape-16", "dispr-64", "dispr-64-ref", "small", "tiny", "tiny-prior"];

/// The configuration `train` uses unless told otherwise: the CPU default (see [`ModelConfig::shape_16`]).
pub const DEFAULT_CONFIG: &str = "shape-16";

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
            num_heads: 1,
            scale_shift_norm: false,
            objective: Objective::Eps,
            z_channel: false,
            respacing: Respacing::Even,
        }
    }

    /// The network the reference training script actually builds: it applies
    /// `model_and_diffusion_defaults()` after its own settings, so it has 2 residual blocks per
    /// level, 4 attention heads, attention at the 16x16 and 8x8 levels and scale-shift norm
    /// (14,714,626 parameters), rather than the 1-block network of its explicit settings
    /// ([`dispr_64`](Self::dispr_64)). Same published objective.
    pub fn dispr_64_ref() -> Self {
        Self {
            name: "dispr-64-ref".into(),
            num_res_blocks: 2,
            attention_levels: vec![2, 3],
            num_heads: 4,
            scale_shift_norm: true,
            ..Self::dispr_64()
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
            num_heads: 1,
            scale_shift_norm: false,
            objective: Objective::Eps,
            z_channel: false,
            respacing: Respacing::Even,
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
            num_heads: 1,
            scale_shift_norm: false,
            objective: Objective::Eps,
            z_channel: false,
            respacing: Respacing::Even,
        }
    }

    /// A `prior-x0` model (an untrained network returns the extruded mask, and training learns
    /// the correction) at 32^3, widths 16/32/32, attention in the middle block (8^3 tokens). Its
    /// samples are brought back to 64^3 by adding the upsampled correction to the
    /// full-resolution prior, so the in-plane outline stays sharp. A perfect correction at 32^3
    /// would score IoU 0.93 on the real cells; a training step costs about 9x shape-16's. The
    /// network is told each voxel's distance from the middle plane (`z_channel`).
    pub fn shape_32() -> Self {
        Self {
            name: "shape-32".into(),
            resolution: 32,
            base_channels: 16,
            channel_mults: vec![1, 2, 2],
            num_res_blocks: 1,
            attention_levels: vec![],
            middle_attention: true,
            downsample_depth: true,
            norm_groups: 8,
            attention_chunk: 512,
            num_heads: 1,
            scale_shift_norm: false,
            objective: Objective::PriorX0,
            z_channel: true,
            respacing: Respacing::Even,
        }
    }

    /// The default CPU model: [`shape_32`](Self::shape_32) at 16^3. The correction is coarse
    /// (a perfect one would score IoU 0.84 on the real cells, far above what the 2D input
    /// determines), the outline still comes from the 64^3 prior, and it trains in about 2 s a
    /// step of 8 cells on 2 CPU cores.
    pub fn shape_16() -> Self {
        Self { name: "shape-16".into(), resolution: 16, attention_chunk: 64, ..Self::shape_32() }
    }

    /// [`tiny`](Self::tiny) with the `prior-x0` objective and the z channel, at 8^3 with
    /// attention only in the middle block, for tests that train a network in seconds.
    pub fn tiny_prior() -> Self {
        Self {
            name: "tiny-prior".into(),
            resolution: 8,
            attention_levels: vec![],
            objective: Objective::PriorX0,
            z_channel: true,
            ..Self::tiny()
        }
    }

    /// The configuration called `name`, or an error listing the names there are.
    pub fn named(name: &str) -> Result<Self, ConfigError> {
        match name {
            "shape-32" => Ok(Self::shape_32()),
            "shape-16" => Ok(Self::shape_16()),
            "dispr-64" => Ok(Self::dispr_64()),
            "dispr-64-ref" => Ok(Self::dispr_64_ref()),
            "small" => Ok(Self::small()),
            "tiny" => Ok(Self::tiny()),
            "tiny-prior" => Ok(Self::tiny_prior()),
            _ => Err(ConfigError(format!(
                "unknown model configuration {name:?}; use one of {}",
                CONFIG_NAMES.join(", ")
            ))),
        }
    }

    /// Input channels of the network: the objective's, and the z channel when there is one.
    pub fn in_channels(&self) -> usize {
        self.objective.in_channels() + usize::from(self.z_channel)
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
        let attended = self.attention_levels.iter().map(|&l| self.channel_mults[l] * self.base_channels);
        let middle = self.channel_mults.last().map(|m| m * self.base_channels);
        let widths: Vec<usize> = attended.chain(middle.filter(|_| self.middle_attention)).collect();
        if self.num_heads == 0 || widths.iter().any(|w| !w.is_multiple_of(self.num_heads)) {
            return err(format!(
                "every attention width ({widths:?}) must divide into num_heads {}",
                self.num_heads
            ));
        }
        if self.attention_chunk == 0 || !self.base_channels.is_multiple_of(2) {
            return err("attention_chunk must be > 0 and base_channels even".into());
        }
        Ok(())
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
    fn configurations_stored_before_the_z_channel_load_without_it() {
        // A sidecar written before the field existed (the shipped default checkpoint's).
        let mut json = serde_json::to_value(ModelConfig::shape_16()).unwrap();
        json.as_object_mut().unwrap().remove("z_channel");
        let old: ModelConfig = serde_json::from_value(json).unwrap();
        assert!(!old.z_channel);
        assert_eq!(old.in_channels(), 4);
        assert_eq!(ModelConfig::shape_16().in_channels(), 5);
        assert_eq!(ModelConfig::dispr_64().in_channels(), 3, "the published network is unchanged");
    }

    #[test]
    fn invalid_configuration_says_what_is_wrong() {
        let mut c = ModelConfig::tiny();
        c.norm_groups = 3;
        assert!(c.validate().unwrap_err().to_string().contains("norm_groups"));
    }
}
