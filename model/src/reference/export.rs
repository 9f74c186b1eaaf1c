//! From this project's network back to the reference's state dict: the layout table of
//! [`super::layout`] read the other way.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::import::ImportError;
use super::layout::{layout, to_reference};
use super::state_dict::NamedTensors;
use crate::config::{ModelConfig, Objective};
use crate::unet::UNet;

/// The reference's state dict of `model` (names, shapes, row-major values), in the reference's
/// order. Only networks the reference can build export: the `eps` objective without the z
/// channel, depth kept, attention in the middle block.
pub fn export<B: Backend>(model: &UNet<B>, config: &ModelConfig) -> Result<NamedTensors, ImportError> {
    let why = if config.objective != Objective::Eps {
        Some(format!("its objective is {} (the reference predicts eps)", config.objective.name()))
    } else if config.z_channel {
        Some("it takes a z channel the reference has no input for".to_string())
    } else if config.downsample_depth {
        Some("it halves the depth when downsampling (the reference's 3D UNet keeps it)".to_string())
    } else if !config.middle_attention {
        Some("it has no attention in its middle block (the reference always has)".to_string())
    } else {
        None
    };
    if let Some(why) = why {
        return Err(ImportError(format!(
            "configuration {:?} has no counterpart in the reference: {why}. Export a checkpoint of an eps-objective configuration (dispr-64, dispr-64-ref, or one imported)",
            config.name
        )));
    }
    let mut params = Collect { path: Vec::new(), tensors: HashMap::new() };
    model.visit(&mut params);
    layout(config)
        .into_iter()
        .map(|e| {
            let values = params
                .tensors
                .remove(&e.ours)
                .filter(|v| v.len() == e.shape.iter().product::<usize>())
                .ok_or_else(|| {
                    ImportError(format!(
                        "internal error: the network has no parameter {} of {:?} values; please report it",
                        e.ours, e.shape
                    ))
                })?;
            let v = to_reference(&e, &values);
            Ok((e.reference, e.shape, v))
        })
        .collect()
}

/// Every float parameter's values by its path in the module.
struct Collect {
    path: Vec<String>,
    tensors: HashMap<String, Vec<f32>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        let values = param.val().into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default();
        self.tensors.insert(self.path.join("."), values);
    }
}
