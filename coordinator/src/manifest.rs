//! The run manifest: built from the operator's flags, written first and once, and compared with
//! what is already there when a run is submitted again.

use anyhow::Context;
use dispr_proto::{Manifest, ModelRef, RunId, SCHEMA_VERSION, SamplerSpec, VolumeFormat, keys};
use dispr_store::Store;
use sha2::{Digest, Sha256};

/// What the operator asked for; everything a [`Manifest`] holds, before the model's hash is known.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: RunId,
    pub dataset_uri: String,
    pub output_uri: String,
    /// URI of the checkpoint record; `None` only with the null sampler.
    pub model_uri: Option<String>,
    pub sampler: SamplerSpec,
    pub samples_per_cell: u32,
    pub seed: u64,
    /// How the volumes are stored; `None` when the operator did not say: a new run takes
    /// [`DEFAULT_VOLUMES`], a resumed run keeps its own.
    pub volumes: Option<VolumeFormat>,
}

/// The volume format of a new run when none is given. Chosen by measurement
/// (docs/volume-formats.md): on the model's samples of the real cells at K = 3, mask writes 95 KB
/// per cell with everything (float32 2 MB, uint8 247 KB, over the 200 KB a million-cell run can
/// afford) and keeps exactly the shapes the features and the report measure.
pub const DEFAULT_VOLUMES: VolumeFormat = VolumeFormat::Mask;

impl RunSpec {
    /// The manifest of this run: reads the checkpoint to hash it (the worker refuses a checkpoint
    /// whose hash differs, so a checkpoint replaced mid-run cannot mix two models in one run).
    pub async fn manifest(&self) -> anyhow::Result<Manifest> {
        anyhow::ensure!(
            self.samples_per_cell >= 1,
            "--samples must be at least 1 (the published protocol draws 5 per cell)"
        );
        anyhow::ensure!(
            self.samples_per_cell <= dispr_proto::messages::MAX_SAMPLES_PER_CELL,
            "--samples {} is more than the {} samples per cell a job may ask for",
            self.samples_per_cell,
            dispr_proto::messages::MAX_SAMPLES_PER_CELL
        );
        let model = match (&self.sampler, &self.model_uri) {
            (SamplerSpec::Null, None) => None,
            (SamplerSpec::Null, Some(uri)) => anyhow::bail!(
                "--model {uri} was given with the null sampler, which uses no model; drop --model or choose \
                 a real sampler such as dpmpp2m-25"
            ),
            (_, None) => anyhow::bail!(
                "sampler {} needs a model: pass --model <checkpoint URI> (a record written by `dispr-worker \
                 train`), or use --sampler null to test the pipeline without one",
                self.sampler
            ),
            (_, Some(uri)) => {
                let uri = canonical_object_uri(uri);
                let sha256 = sha256_of(&uri).await?;
                let sidecar = sidecar_uri(&uri)?;
                let sidecar_sha256 = Some(sha256_of(&sidecar).await.with_context(|| {
                    format!("{uri} needs its sidecar {sidecar} beside it (written with it by `dispr-worker train`)")
                })?);
                Some(ModelRef { uri, sha256, sidecar_sha256 })
            }
        };
        Ok(Manifest {
            schema_version: SCHEMA_VERSION,
            run_id: self.run_id.clone(),
            dataset_uri: canonical_uri(&self.dataset_uri),
            output_uri: canonical_uri(&self.output_uri),
            model,
            sampler: self.sampler.clone(),
            samples_per_cell: self.samples_per_cell,
            seed: self.seed,
            code_version: env!("CARGO_PKG_VERSION").to_string(),
            dataset_digest: None,
            volumes: self.volumes.unwrap_or(DEFAULT_VOLUMES),
        })
    }
}

/// The canonical URI of a store location (see [`Store::uri`]), made where the operator typed it
/// so that only this form goes into the manifest and the jobs: a relative folder becomes absolute
/// from this working directory (a worker started elsewhere reads the same folder), and every
/// spelling of one place is one URI (a resume typed differently is the same run). One that
/// cannot be parsed is kept as typed, for the store to refuse with its message when it is opened; one that cannot be parsed is kept as typed, for the
/// store to refuse with its message when it is opened.
pub fn canonical_uri(uri: &str) -> String {
    Store::open(uri).map_or_else(|_| uri.to_string(), |s| s.uri().to_string())
}

/// The canonical URI of an object (the model checkpoint): its folder's canonical URI and its name.
pub fn canonical_object_uri(uri: &str) -> String {
    match crate::manifest::split_object_uri(uri) {
        Ok((folder, key)) if !key.is_empty() => match Store::open(&folder) {
            Ok(store) if !store.uri().is_empty() => store.uri_of(&key),
            _ => uri.to_string(),
        },
        _ => uri.to_string(),
    }
}

/// Whether [`write_or_check`] created the manifest or found the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestState {
    Created,
    /// The run was submitted before with the same manifest: this is a resume.
    Existing,
}

/// Writes the run's manifest unless one exists; an existing manifest must be equal, otherwise
/// the run is refused with the fields that differ (two manifests under one run id would mix
/// outputs of two different runs). With `volumes_given` false (the operator named no volume
/// format), a resumed run keeps the format it has (older runs: float32) and `manifest` takes it.
pub async fn write_or_check(
    output: &Store,
    manifest: &mut Manifest,
    volumes_given: bool,
) -> anyhow::Result<ManifestState> {
    let key = keys::manifest(&manifest.run_id);
    let written = output
        .put_if_absent(&key, manifest.encode().into())
        .await
        .with_context(|| format!("writing the run manifest {key} under {}", output.uri()))?;
    if written {
        return Ok(ManifestState::Created);
    }
    let bytes = output.get(&key).await.with_context(|| format!("reading the existing manifest {key}"))?;
    let existing =
        Manifest::decode(&bytes).with_context(|| format!("reading the existing manifest {key}"))?;
    // A manifest of an older release has no digest of its dataset: compare the rest.
    if !volumes_given {
        manifest.volumes = existing.volumes;
    }
    let mut requested = manifest.clone();
    if existing.dataset_digest.is_none() {
        requested.dataset_digest = None;
    }
    // Nor a pin of its model's sidecar.
    if let (Some(old), Some(new)) = (&existing.model, &mut requested.model)
        && old.sidecar_sha256.is_none()
    {
        new.sidecar_sha256 = None;
    }
    let diffs = differences(&existing, &requested);
    if diffs.is_empty() {
        return Ok(ManifestState::Existing);
    }
    if diffs.len() == 1 && existing.dataset_digest != requested.dataset_digest {
        anyhow::bail!(
            "run {} already exists under {} over the dataset {}, which held other cells when the run started \
             (the sha256 of its cell list was {}, it is now {}); its outputs would mix two datasets. Restore \
             the dataset, or start a new run with another --run-id",
            manifest.run_id,
            output.uri(),
            manifest.dataset_uri,
            existing.dataset_digest.as_deref().unwrap_or("-"),
            requested.dataset_digest.as_deref().unwrap_or("-"),
        );
    }
    anyhow::bail!(
        "run {} already exists under {} with a different manifest ({}); its outputs would mix two runs. \
         Choose a new --run-id, or submit again with the values of the existing run",
        manifest.run_id,
        output.uri(),
        diffs.join("; ")
    )
}

/// `field: existing -> requested` for each top-level field that differs.
pub fn differences(existing: &Manifest, requested: &Manifest) -> Vec<String> {
    let to_fields = |m: &Manifest| match serde_json::to_value(m) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (to_fields(existing), to_fields(requested));
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (a, b) = (old.get(name), new.get(name));
            (a != b).then(|| format!("{name}: existing {} vs requested {}", show(a), show(b)))
        })
        .collect()
}

fn show(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(|| "absent".to_string(), |v| v.to_string())
}

/// Reads a whole object named by URI (`s3://bucket/key`, `file:///path` or a path).
pub async fn read_uri(uri: &str) -> anyhow::Result<bytes::Bytes> {
    let (parent, key) = split_object_uri(uri)?;
    let store = Store::open(&parent).with_context(|| format!("opening {parent}"))?;
    store.get(&key).await.with_context(|| format!("reading {uri}"))
}

/// Hex sha256 of the object at `uri`, computed off the async runtime.
pub async fn sha256_of(uri: &str) -> anyhow::Result<String> {
    let bytes = read_uri(uri).await.context("hashing the model checkpoint")?;
    let digest = tokio::task::spawn_blocking(move || Sha256::digest(&bytes)).await?;
    Ok(hex::encode(digest))
}

/// The URI of the sidecar beside a checkpoint record (`dispr_model::sidecar_path`).
fn sidecar_uri(record_uri: &str) -> anyhow::Result<String> {
    let (dir, key) = split_object_uri(record_uri)?;
    let name = dispr_model::sidecar_path(std::path::Path::new(&key));
    Ok(format!("{}/{}", dir.trim_end_matches('/'), name.to_string_lossy()))
}

/// Splits an object URI into the URI of its folder (a store root) and its key.
pub fn split_object_uri(uri: &str) -> anyhow::Result<(String, String)> {
    let trimmed = uri.trim_end_matches('/');
    let (scheme, path) = match trimmed.split_once("://") {
        Some((scheme, path)) => (format!("{scheme}://"), path),
        None => (String::new(), trimmed),
    };
    match path.rfind('/') {
        Some(0) => Ok((format!("{scheme}/"), path[1..].to_string())),
        Some(i) => Ok((format!("{scheme}{}", &path[..i]), path[i + 1..].to_string())),
        None if path.is_empty() => anyhow::bail!("the model URI is empty"),
        None if scheme.is_empty() => Ok((".".to_string(), path.to_string())),
        None => anyhow::bail!("{uri} names a bucket, not an object; give the checkpoint file's URI"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            run_id: RunId::new("r1").unwrap(),
            dataset_uri: "s3://data/rbc".into(),
            output_uri: "s3://out".into(),
            model: None,
            sampler: SamplerSpec::Null,
            samples_per_cell: 5,
            seed: 0,
            code_version: "0.1.0".into(),
            dataset_digest: None,
            volumes: VolumeFormat::Float32,
        }
    }

    #[test]
    fn differences_name_the_fields() {
        let a = manifest();
        assert!(differences(&a, &a.clone()).is_empty());
        let b = Manifest { seed: 7, samples_per_cell: 3, ..manifest() };
        let d = differences(&a, &b);
        assert_eq!(d, vec!["samples_per_cell: existing 5 vs requested 3", "seed: existing 0 vs requested 7"]);
    }

    #[test]
    fn splits_object_uris() {
        let s = |u: &str| split_object_uri(u).unwrap();
        assert_eq!(s("s3://bucket/models/tiny.mpk"), ("s3://bucket/models".into(), "tiny.mpk".into()));
        assert_eq!(s("s3://bucket/tiny.mpk"), ("s3://bucket".into(), "tiny.mpk".into()));
        assert_eq!(s("/abs/dir/tiny.mpk"), ("/abs/dir".into(), "tiny.mpk".into()));
        assert_eq!(s("/tiny.mpk"), ("/".into(), "tiny.mpk".into()));
        assert_eq!(s("file:///abs/tiny.mpk"), ("file:///abs".into(), "tiny.mpk".into()));
        assert_eq!(s("tiny.mpk"), (".".into(), "tiny.mpk".into()));
        assert_eq!(s("rel/tiny.mpk"), ("rel".into(), "tiny.mpk".into()));
        assert!(split_object_uri("s3://bucket").unwrap_err().to_string().contains("bucket"));
    }

    #[test]
    fn the_sidecar_sits_beside_the_record() {
        assert_eq!(sidecar_uri("s3://bucket/models/m.mpk").unwrap(), "s3://bucket/models/m.json");
        assert_eq!(sidecar_uri("/m.mpk").unwrap(), "/m.json");
        assert_eq!(sidecar_uri("/abs/dir/m.mpk").unwrap(), "/abs/dir/m.json");
    }

    #[tokio::test]
    async fn a_run_resumes_across_the_sidecar_pin_but_not_across_a_changed_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let model = |side: Option<&str>| ModelRef {
            uri: "s3://models/m.mpk".into(),
            sha256: "ab".repeat(32),
            sidecar_sha256: side.map(|s| s.repeat(32)),
        };
        let with = |side: Option<&str>, run: &str| Manifest {
            run_id: RunId::new(run).unwrap(),
            model: Some(model(side)),
            sampler: SamplerSpec::Ddim { steps: 2, eta: 0.0 },
            ..manifest()
        };
        // A run submitted before the pin existed resumes with it.
        let check = |m: Manifest| {
            let store = store.clone();
            async move { write_or_check(&store, &mut m.clone(), true).await }
        };
        assert_eq!(check(with(None, "old")).await.unwrap(), ManifestState::Created);
        assert_eq!(check(with(Some("cd"), "old")).await.unwrap(), ManifestState::Existing);
        // A pinned run refuses another sidecar.
        assert_eq!(check(with(Some("cd"), "new")).await.unwrap(), ManifestState::Created);
        let err = check(with(Some("ef"), "new")).await.unwrap_err().to_string();
        assert!(err.contains("different manifest") && err.contains("model"), "{err}");
    }

    /// A resumed run keeps its volume format unless the operator names one; a manifest of a
    /// release before formats existed reads as float32, the format its volumes have.
    #[tokio::test]
    async fn a_resumed_run_keeps_its_volume_format_unless_another_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let mut old = serde_json::to_value(manifest()).unwrap();
        old.as_object_mut().unwrap().remove("volumes");
        store
            .put(&keys::manifest(&manifest().run_id), serde_json::to_vec(&old).unwrap().into())
            .await
            .unwrap();
        let mut resumed = Manifest { volumes: VolumeFormat::Uint8, ..manifest() };
        assert_eq!(write_or_check(&store, &mut resumed, false).await.unwrap(), ManifestState::Existing);
        assert_eq!(resumed.volumes, VolumeFormat::Float32, "the jobs of the resumed run write float32");
        let mut other = Manifest { volumes: VolumeFormat::Mask, ..manifest() };
        let err = write_or_check(&store, &mut other, true).await.unwrap_err().to_string();
        assert!(err.contains("volumes: existing \"float32\" vs requested \"mask\""), "{err}");
    }
}
