//! The DISPR model as a [`VolumeSampler`]: a loaded [`dispr_model::Predictor`] on the backend this
//! binary was built for (Burn's Flex CPU backend, or CUDA with the `cuda` feature).

use crate::volume_sampler::{CellInput, Progress, Volume, VolumeSampler};
use dispr_model::{DefaultBackend, Predictor};
use dispr_proto::SamplerSpec;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A model in memory, shared by the jobs that name its checkpoint. The lock serialises
/// sampling, which the pipeline does anyway (one batch at a time per worker); it is there
/// because a Burn module need not be `Sync`.
pub struct LoadedModel {
    predictor: Arc<Mutex<Predictor<DefaultBackend>>>,
    name: String,
}

/// Loads the checkpoint record at `path` (its sidecar beside it), checking the record against
/// `sha256` and the sidecar.
pub fn load(path: &Path, sha256: &str) -> anyhow::Result<LoadedModel> {
    let device = Default::default();
    let predictor = Predictor::<DefaultBackend>::load_verified(path, Some(sha256), &device)?;
    let name = format!("{} (sha256 {}..)", predictor.config().name, &sha256[..12.min(sha256.len())]);
    tracing::info!(model = %name, path = %path.display(), "model loaded");
    Ok(LoadedModel { predictor: Arc::new(Mutex::new(predictor)), name })
}

impl LoadedModel {
    /// This model sampling as `spec` says.
    pub fn sampler(&self, spec: &SamplerSpec) -> Arc<dyn VolumeSampler> {
        Arc::new(ModelSampler {
            predictor: self.predictor.clone(),
            spec: spec.clone(),
            name: self.name.clone(),
        })
    }
}

/// A loaded model with the sampler spec of a job.
struct ModelSampler {
    predictor: Arc<Mutex<Predictor<DefaultBackend>>>,
    spec: SamplerSpec,
    name: String,
}

impl VolumeSampler for ModelSampler {
    fn describe(&self) -> String {
        format!("{} on {}", self.spec, self.name)
    }

    fn sample(
        &self,
        inputs: &[CellInput],
        seeds: &[Vec<u64>],
        progress: Progress<'_>,
    ) -> anyhow::Result<Vec<Vec<Volume>>> {
        let inputs: Vec<dispr_model::CellInput<'_>> =
            inputs.iter().map(|c| dispr_model::CellInput { image: &c.image, mask: &c.mask }).collect();
        // A panic while sampling poisons the lock but leaves the weights as they were.
        let predictor = self.predictor.lock().unwrap_or_else(|p| p.into_inner());
        Ok(predictor.sample(&inputs, seeds, &self.spec, progress)?)
    }
}
