//! From a reference state dict to this project's network: infer the configuration from the
//! tensor names and shapes, check every tensor against the layout of that configuration, and
//! load the weights. Every refusal says what the file is and what to do.

use std::collections::{BTreeSet, HashMap};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::layout::{Entry, layout, to_ours};
use super::state_dict::StateDict;
use crate::config::{ModelConfig, Objective, Respacing};
use crate::unet::UNet;

/// What the weights cannot say.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Attention heads. None: 1 for the README's flavour (`dispr-64`), otherwise the sampling
    /// script's 4 (`model_and_diffusion_defaults()`).
    pub heads: Option<usize>,
    /// Groups of every GroupNorm: guided-diffusion's `normalization` hard-codes 32.
    pub norm_groups: usize,
    /// Edge of the cube the network runs on (the reference's `image_size`, 64).
    pub resolution: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { heads: None, norm_groups: 32, resolution: 64 }
    }
}

/// A state dict this project cannot import, with what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ImportError(pub String);

/// The imported network, its configuration and what was assumed (to print).
pub struct Imported<B: Backend> {
    pub model: UNet<B>,
    pub config: ModelConfig,
    pub assumptions: Vec<String>,
}

/// Infers the configuration of the reference network whose state dict is `sd`, checks the
/// state dict against it and loads the weights.
pub fn import<B: Backend>(
    sd: &StateDict,
    options: &ImportOptions,
    device: &B::Device,
) -> Result<Imported<B>, ImportError> {
    let (config, assumptions) = infer_config(sd, options)?;
    let entries = layout(&config);
    check_keys(sd, &entries, &config)?;
    check_shapes(sd, &entries)?;
    let mut tensors: HashMap<String, (Vec<f32>, Vec<usize>)> =
        entries.iter().map(|e| (e.ours.clone(), to_ours(e, &sd[&e.reference].values))).collect();
    let mut load = Load { path: Vec::new(), tensors: &mut tensors, unset: Vec::new() };
    let model = UNet::<B>::new(&config, device).map(&mut load);
    let unset = load.unset;
    // Both lists are empty unless the layout table and the network disagree: a bug, not a file
    // problem, but never a silently half-loaded network.
    if !unset.is_empty() || !tensors.is_empty() {
        let extra: Vec<&String> = tensors.keys().collect();
        return Err(ImportError(format!(
            "internal error: the import table does not fit the network (parameters without a source: {unset:?}; sources without a parameter: {extra:?}); please report it"
        )));
    }
    Ok(Imported { model, config, assumptions })
}

/// Sets every float parameter from `tensors` by its path in the module.
struct Load<'a> {
    path: Vec<String>,
    tensors: &'a mut HashMap<String, (Vec<f32>, Vec<usize>)>,
    unset: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Load<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let key = self.path.join(".");
        let (id, tensor, mapper) = param.consume();
        match self.tensors.remove(&key) {
            Some((values, shape)) if shape.len() == D && shape == tensor.dims() => {
                let t = Tensor::from_data(TensorData::new(values, shape), &tensor.device());
                Param::from_mapped_value(id, t, mapper)
            }
            _ => {
                self.unset.push(key);
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
    }
}

/// The named flavours of the reference, for recognising a state dict and for suggestions.
fn flavours() -> [ModelConfig; 2] {
    [ModelConfig::dispr_64(), ModelConfig::dispr_64_ref()]
}

fn shape<'a>(sd: &'a StateDict, key: &str) -> Option<&'a [usize]> {
    sd.get(key).map(|t| t.shape.as_slice())
}

/// The configuration of the reference network whose weights are `sd`, and what was assumed.
pub fn infer_config(
    sd: &StateDict,
    options: &ImportOptions,
) -> Result<(ModelConfig, Vec<String>), ImportError> {
    let err = |m: String| Err(ImportError(m));
    if sd.is_empty() {
        return err("the file holds no tensors: give the state dict the reference training saved (savedmodel<step>.pt or emasavedmodel_<rate>_<step>.pt)".into());
    }
    if sd.keys().any(|k| k.contains("exp_avg") || k.starts_with("state.") || k.starts_with("param_groups")) {
        return err("this is an optimiser's state (AdamW moments such as exp_avg), not a network: give the model's state dict instead, savedmodel<step>.pt or, better for sampling, emasavedmodel_<rate>_<step>.pt (the optimiser is saved as optsavedmodel<step>.pt)".into());
    }
    let half: Vec<&String> =
        sd.iter().filter(|(_, t)| t.dtype == "F16" || t.dtype == "BF16").map(|(k, _)| k).collect();
    if let Some(first) = half.first() {
        let dtype = &sd[*first].dtype;
        return err(format!(
            "{} tensors are stored in half precision ({dtype}, e.g. {first}); this importer reads float32 only, so that nothing is rounded silently. Convert them: python3 -c \"import torch; sd = torch.load('IN.pt', map_location='cpu'); torch.save({{k: v.float() for k, v in sd.items()}}, 'OUT.pt')\" and import OUT.pt",
            half.len()
        ));
    }
    if let Some((k, t)) = sd.iter().find(|(_, t)| t.dtype != "F32" && t.dtype != "F64") {
        return err(format!(
            "tensor {k} is stored as {}; a network's state dict holds float32 weights: is this the right file?",
            t.dtype
        ));
    }
    let has = |prefix: &str| sd.keys().any(|k| k.starts_with(prefix));
    if has("input_blocks.") && !has("output_blocks.") {
        return err("this looks like a guided-diffusion classifier (EncoderUNetModel: input blocks and a pooled head, no output blocks), not the DISPR denoising network: give the diffusion model's state dict (savedmodel<step>.pt or emasavedmodel_<rate>_<step>.pt)".into());
    }
    if sd.keys().all(|k| k.starts_with("module.")) {
        return err("every key starts with \"module.\": the state dict was saved from a DataParallel wrapper. Save the inner model's instead: torch.save({k[len('module.'):]: v for k, v in sd.items()}, 'OUT.pt')".into());
    }
    let Some(first) = shape(sd, "input_blocks.0.0.weight") else {
        return Err(key_error(sd, &["input_blocks.0.0.weight".to_string()], &[]));
    };
    if first.len() == 4 {
        return err(format!(
            "input_blocks.0.0.weight has 4 dimensions {first:?}: this is a 2D network (UNetModel with dims=2, as guided-diffusion's image models), not DISPR's 3D one (dims=3, 5-dimensional convolution weights); give a checkpoint trained with dims=3"
        ));
    }
    if first.len() != 5 {
        return err(format!(
            "input_blocks.0.0.weight has shape {first:?}, expected [channels, 3, 3, 3, 3] of a 3D convolution: this is not a guided-diffusion UNetModel"
        ));
    }
    let (base, in_channels) = (first[0], first[1]);
    if in_channels != 3 {
        return err(format!(
            "the first convolution takes {in_channels} input channels; DISPR's network takes 3 ([mask, image x mask, x_t]): this is another model's checkpoint"
        ));
    }
    if let Some(out) = shape(sd, "out.2.weight").filter(|s| s.first() != Some(&2)) {
        return err(format!(
            "out.2.weight has shape {out:?}: the network predicts {} channels, DISPR's predicts 2 (eps and the learned-range variance, learn_sigma=True); a model trained without learned variance is not supported",
            out.first().copied().unwrap_or(0)
        ));
    }
    // Levels and residual blocks from the input blocks' indices and the downsampling convs.
    let index = |k: &str| {
        k.strip_prefix("input_blocks.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse::<usize>().ok())
    };
    let blocks = sd.keys().filter_map(|k| index(k)).max().unwrap_or(0) + 1;
    let downs = (0..blocks).filter(|i| sd.contains_key(&format!("input_blocks.{i}.0.op.weight"))).count();
    let levels = downs + 1;
    let res_blocks = blocks.saturating_sub(1 + downs);
    if res_blocks == 0 || !res_blocks.is_multiple_of(levels) {
        return err(format!(
            "{blocks} input blocks with {downs} downsamplings do not make a UNetModel ({res_blocks} residual blocks over {levels} levels); the state dict is incomplete or of another network"
        ));
    }
    let per_level = res_blocks / levels;
    let mut mults = Vec::new();
    let mut attention_levels = Vec::new();
    let mut scale_shift = None;
    for level in 0..levels {
        let i = 1 + level * (per_level + 1);
        let conv = format!("input_blocks.{i}.0.in_layers.2.weight");
        let emb = format!("input_blocks.{i}.0.emb_layers.1.weight");
        let (Some(conv_s), Some(emb_s)) = (shape(sd, &conv), shape(sd, &emb)) else {
            let missing: Vec<String> = [conv, emb].into_iter().filter(|k| !sd.contains_key(k)).collect();
            return Err(key_error(sd, &missing, &[]));
        };
        let cout = conv_s[0];
        if !cout.is_multiple_of(base) {
            return err(format!(
                "{conv} has {cout} output channels, not a multiple of the base width {base}"
            ));
        }
        mults.push(cout / base);
        if sd.contains_key(&format!("input_blocks.{i}.1.qkv.weight")) {
            attention_levels.push(level);
        }
        if level == 0 {
            scale_shift = Some(emb_s.first() == Some(&(2 * cout)));
        }
    }
    let mut config = ModelConfig {
        name: "imported".into(),
        resolution: options.resolution,
        base_channels: base,
        channel_mults: mults,
        num_res_blocks: per_level,
        attention_levels,
        middle_attention: true,
        downsample_depth: false,
        norm_groups: options.norm_groups,
        attention_chunk: 1024,
        num_heads: 1,
        scale_shift_norm: scale_shift.unwrap_or(false),
        objective: Objective::Eps,
        z_channel: false,
        respacing: Respacing::GuidedDiffusion,
    };
    let same_network = |f: &ModelConfig| {
        let mut f = f.clone();
        f.name = config.name.clone();
        f.num_heads = 1;
        f.respacing = Respacing::GuidedDiffusion;
        f == config
    };
    let flavour = flavours().into_iter().find(|f| same_network(f));
    if let Some(f) = &flavour {
        config.name = f.name.clone();
    }
    let mut assumptions = Vec::new();
    config.num_heads = match (options.heads, &flavour) {
        (Some(h), _) => {
            assumptions.push(format!("attention heads: {h} (--heads)"));
            h
        }
        (None, Some(f)) => {
            assumptions.push(format!(
                "attention heads: {} (not stored in the weights; {}'s; pass --heads to change)",
                f.num_heads, f.name
            ));
            f.num_heads
        }
        (None, None) => {
            assumptions.push("attention heads: 4 (not stored in the weights; the sampling script's default; pass --heads to change)".into());
            4
        }
    };
    assumptions.push(format!(
        "network: {}, {} levels of widths {:?}, {} residual block(s) per level, attention at levels {:?} and in the middle, scale-shift norm {}",
        config.name,
        levels,
        config.channel_mults.iter().map(|m| m * base).collect::<Vec<_>>(),
        per_level,
        config.attention_levels,
        if config.scale_shift_norm { "on" } else { "off" },
    ));
    config.validate().map_err(|e| {
        ImportError(format!(
            "{e}: the weights were read, but the settings they do not hold do not fit them: --heads ({}) must divide every attention width, --norm-groups ({}) every width, and --resolution ({}) must halve at every level",
            config.num_heads, config.norm_groups, config.resolution
        ))
    })?;
    Ok((config, assumptions))
}

fn check_keys(sd: &StateDict, entries: &[Entry], config: &ModelConfig) -> Result<(), ImportError> {
    let want: BTreeSet<&str> = entries.iter().map(|e| e.reference.as_str()).collect();
    let missing: Vec<String> = want.iter().filter(|k| !sd.contains_key(**k)).map(|k| k.to_string()).collect();
    let unexpected: Vec<String> = sd.keys().filter(|k| !want.contains(k.as_str())).cloned().collect();
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let mut e = key_error(sd, &missing, &unexpected);
    e.0 = format!("against the inferred network ({}): {}", config.name, e.0);
    Err(e)
}

/// Lists missing and unexpected keys (the first few of each) and names the flavour whose
/// layout the present keys are closest to.
fn key_error(sd: &StateDict, missing: &[String], unexpected: &[String]) -> ImportError {
    let list = |keys: &[String]| {
        let mut s = keys.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
        if keys.len() > 8 {
            s += &format!(" and {} more", keys.len() - 8);
        }
        s
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("{} missing key(s): {}", missing.len(), list(missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("{} unexpected key(s): {}", unexpected.len(), list(unexpected)));
    }
    let present: BTreeSet<&str> = sd.keys().map(|k| k.as_str()).collect();
    let closest = flavours()
        .into_iter()
        .map(|f| {
            let want: BTreeSet<String> = layout(&f).into_iter().map(|e| e.reference).collect();
            let differ = want.iter().filter(|k| !present.contains(k.as_str())).count()
                + present.iter().filter(|k| !want.contains(**k)).count();
            (differ, f.name)
        })
        .min();
    if let Some((differ, name)) = closest {
        parts.push(format!(
            "the keys are closest to the {name} flavour ({differ} keys differ from its layout)"
        ));
    }
    ImportError(format!(
        "{}. The file is not a complete state dict of guided-diffusion's UNetModel (dims=3) as DISPR trains it: give savedmodel<step>.pt or emasavedmodel_<rate>_<step>.pt as the reference training saved it, unmodified",
        parts.join("; ")
    ))
}

fn check_shapes(sd: &StateDict, entries: &[Entry]) -> Result<(), ImportError> {
    let bad: Vec<String> = entries
        .iter()
        .filter(|e| {
            sd[&e.reference].shape != e.shape
                || sd[&e.reference].values.len() != e.shape.iter().product::<usize>()
        })
        .map(|e| format!("{} is {:?}, expected {:?}", e.reference, sd[&e.reference].shape, e.shape))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(ImportError(format!(
        "{} tensor(s) have another shape than the network inferred from the others: {}{}. The file was modified or mixes two networks; give the state dict as the reference training saved it",
        bad.len(),
        bad.iter().take(6).cloned().collect::<Vec<_>>().join("; "),
        if bad.len() > 6 { format!(" and {} more", bad.len() - 6) } else { String::new() }
    )))
}
