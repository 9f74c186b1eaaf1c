//! Finding the sampler a job asks for: the null sampler, or a DISPR model fetched from its URI into
//! a local cache, checked against the sha256s the job names (record and sidecar), loaded once per pair and kept.

use crate::model_sampler::{self, LoadedModel};
use crate::retry::{Retry, StoreFailure};
use crate::telemetry::Telemetry;
use crate::volume_sampler::{NullSampler, VolumeSampler};
use anyhow::Context;
use dispr_proto::{ModelRef, SamplerSpec};
use dispr_store::Store;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why no sampler could be made for a job.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// The job can never run as submitted (missing checkpoint, wrong sha256, no model named):
    /// its cells fail for good with this reason.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
    /// Storage trouble: worth trying again later.
    #[error("{0:#}")]
    Retriable(anyhow::Error),
}

/// Resolves jobs to samplers, keeping the checkpoints it downloaded and the models it loaded;
/// one per worker, shared by its jobs.
pub struct ModelCache {
    cache_dir: PathBuf,
    /// Every model loaded so far, by checkpoint sha256, shared by the jobs that name it.
    models: tokio::sync::Mutex<HashMap<String, Arc<LoadedModel>>>,
    telemetry: Arc<Telemetry>,
    retry: Retry,
}

impl ModelCache {
    /// Checkpoints are downloaded into `cache_dir/<sha256>/`.
    pub fn new(cache_dir: impl Into<PathBuf>, telemetry: Arc<Telemetry>, retry: Retry) -> Self {
        Self { cache_dir: cache_dir.into(), models: Default::default(), telemetry, retry }
    }

    /// The sampler for a job's `model` and `spec`.
    pub async fn for_job(
        &self,
        model: Option<&ModelRef>,
        spec: &SamplerSpec,
    ) -> Result<Arc<dyn VolumeSampler>, SamplerError> {
        if *spec == SamplerSpec::Null {
            return Ok(Arc::new(NullSampler));
        }
        let Some(model) = model else {
            return Err(SamplerError::Permanent(anyhow::anyhow!(
                "the job asks for the {spec} sampler but names no model checkpoint; submit it with --model"
            )));
        };
        Ok(self.model(model).await?.sampler(spec))
    }

    /// The model of a checkpoint, from memory or loaded now (one load at a time: the lock is held
    /// while loading so that two jobs of one checkpoint do not load it twice).
    async fn model(&self, model: &ModelRef) -> Result<Arc<LoadedModel>, SamplerError> {
        let mut models = self.models.lock().await;
        // One record with two sidecars (calibrated differently) is two models.
        let key = format!("{}/{}", model.sha256, model.sidecar_sha256.as_deref().unwrap_or("-"));
        if let Some(m) = models.get(&key) {
            return Ok(m.clone());
        }
        let _loading = self.telemetry.health.loading_model();
        let path = self.fetch_checkpoint(model).await?;
        let sha = model.sha256.to_ascii_lowercase();
        let loaded = tokio::task::spawn_blocking(move || model_sampler::load(&path, &sha))
            .await
            .map_err(|e| SamplerError::Retriable(anyhow::anyhow!("model loading panicked: {e}")))?
            .map_err(SamplerError::Permanent)?;
        let loaded = Arc::new(loaded);
        models.insert(key, loaded.clone());
        Ok(loaded)
    }

    /// Downloads the checkpoint record into the cache unless it is there already, and checks its
    /// sha256 either way (a cache on a shared volume may have been tampered with or truncated);
    /// then fetches the sidecar beside it, which holds the model's configuration. The record comes
    /// first so that a wrong URI or a changed file is reported as such, not as a missing sidecar.
    async fn fetch_checkpoint(&self, model: &ModelRef) -> Result<PathBuf, SamplerError> {
        let permanent = |e: anyhow::Error| SamplerError::Permanent(e);
        if model.sha256.len() != 64 || !model.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(permanent(anyhow::anyhow!(
                "the job names checkpoint sha256 {:?}, which is not 64 hex digits",
                model.sha256
            )));
        }
        let pinned = match &model.sidecar_sha256 {
            Some(s) if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                return Err(permanent(anyhow::anyhow!(
                    "the job names checkpoint sidecar sha256 {s:?}, which is not 64 hex digits"
                )));
            }
            Some(s) => Some(s.to_ascii_lowercase()),
            None => None,
        };
        let (dir, file) = split_uri(&model.uri).map_err(permanent)?;
        let sha = model.sha256.to_ascii_lowercase();
        // Keyed by both hashes: a record with a new sidecar gets a folder of its own, so a cached
        // sidecar is never taken for another.
        let folder = match &pinned {
            Some(side) => format!("{sha}-{side}"),
            None => sha.clone(),
        };
        let local = self.cache_dir.join(folder).join(file);
        let store = || {
            Store::open(dir)
                .with_context(|| format!("cannot open the location of checkpoint {}", model.uri))
                .map_err(permanent)
        };

        if !local.exists() {
            let missing =
                format!("checkpoint {} does not exist; check the --model URI given to submit", model.uri);
            self.download(&store()?, file, &local, missing).await?;
        }
        if let Some(actual) = mismatched_copy(&local, &sha).await? {
            return Err(permanent(anyhow::anyhow!(
                "checkpoint {} has sha256 {actual}, but the job expects {sha}: the file changed since the run \
                 was submitted; submit a new run with the current checkpoint",
                model.uri
            )));
        }

        let sidecar_local = dispr_model::sidecar_path(&local);
        if !sidecar_local.exists() {
            let sidecar_name =
                sidecar_local.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let missing = format!(
                "checkpoint {} has no sidecar {sidecar_name} beside it (written by `dispr-worker train`); \
                 copy both files",
                model.uri
            );
            self.download(&store()?, &sidecar_name, &sidecar_local, missing).await?;
        }
        if let Some(want) = pinned
            && let Some(actual) = mismatched_copy(&sidecar_local, &want).await?
        {
            return Err(permanent(anyhow::anyhow!(
                "the sidecar of checkpoint {} has sha256 {actual}, but the job expects {want}: it changed \
                 since the run was submitted (calibrated again?); submit a new run with the current checkpoint",
                model.uri
            )));
        }
        Ok(local)
    }

    /// Copies one object into the cache (atomically, so a crash never leaves half a file there).
    /// A missing object is permanent, with `missing` as the message; anything else is retried.
    async fn download(
        &self,
        store: &Store,
        name: &str,
        local: &Path,
        missing: String,
    ) -> Result<(), SamplerError> {
        let bytes = match self.retry.store(&format!("download {name}"), || store.get(name)).await {
            Ok(b) => b,
            Err(StoreFailure::NotFound(e)) => {
                return Err(SamplerError::Permanent(anyhow::Error::new(e).context(missing)));
            }
            Err(StoreFailure::Other(e)) => {
                return Err(SamplerError::Retriable(
                    anyhow::Error::new(e).context(format!("could not download {name}")),
                ));
            }
        };
        let local = local.to_path_buf();
        tokio::task::spawn_blocking(move || write_atomically(&local, &bytes))
            .await
            .map_err(|e| SamplerError::Retriable(anyhow::anyhow!("cache write panicked: {e}")))?
            .map_err(SamplerError::Retriable)
    }
}

/// The sha256 of the cached file at `path` where it is not `want`, after dropping that copy so
/// that a corrected file is downloaded next time; None where it matches.
async fn mismatched_copy(path: &Path, want: &str) -> Result<Option<String>, SamplerError> {
    let file = path.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || sha256_file(&file))
        .await
        .map_err(|e| SamplerError::Retriable(anyhow::anyhow!("hashing panicked: {e}")))?
        .map_err(SamplerError::Retriable)?;
    if actual == want {
        return Ok(None);
    }
    let _ = std::fs::remove_file(path);
    Ok(Some(actual))
}

/// Splits a checkpoint URI into the store root that holds it and its file name.
fn split_uri(uri: &str) -> anyhow::Result<(&str, &str)> {
    let trimmed = uri.trim_end_matches('/');
    let (dir, file) = match trimmed.rsplit_once('/') {
        Some((dir, file)) if !dir.ends_with(':') && !dir.ends_with("/") => (dir, file),
        Some(_) => anyhow::bail!("checkpoint URI {uri:?} names a bucket, not a file"),
        None => (".", trimmed),
    };
    anyhow::ensure!(
        !file.is_empty() && file != "." && file != "..",
        "checkpoint URI {uri:?} does not end in a file name"
    );
    Ok((dir, file))
}

/// Writes through a temporary file and a rename, so a crash never leaves a half file in the cache.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the model cache {}", dir.display()))?;
    let tmp = dir.join(format!(".partial-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move the checkpoint to {}", path.display()))?;
    Ok(())
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    dispr_model::sha256_file(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_uris_split_into_root_and_file() {
        assert_eq!(split_uri("s3://models/dispr/small.mpk").unwrap(), ("s3://models/dispr", "small.mpk"));
        assert_eq!(split_uri("/abs/small.mpk").unwrap(), ("/abs", "small.mpk"));
        assert_eq!(split_uri("small.mpk").unwrap(), (".", "small.mpk"));
        assert!(split_uri("s3://bucket").is_err());
    }
}
