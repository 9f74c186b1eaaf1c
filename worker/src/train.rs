//! The training loop of `dispr-worker train`: steps with a progress bar, validation IoU of
//! sampled shapes on held-out cells, checkpoints (a model checkpoint with sidecar for workers,
//! and the full state for an exact `--resume`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use dispr_model::checkpoint::{Sidecar, Validation};
use dispr_model::{ModelConfig, TrainBackend, TrainOptions, Trainer};
use dispr_proto::SamplerSpec;
use indicatif::{ProgressBar, ProgressStyle};

use crate::train_data::{Split, TrainData, ValCell};

/// Everything a run needs (the `train` command's flags, parsed).
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub dataset: String,
    pub out: PathBuf,
    pub config: ModelConfig,
    pub options: TrainOptions,
    /// Train until this step count (a resumed run continues up to it).
    pub steps: u64,
    pub checkpoint_every: u64,
    /// Log the loss every N steps.
    pub log_every: u64,
    pub validate_every: u64,
    /// Which cells of `dataset` are held out for validation.
    pub split: Split,
    /// Datasets whose every cell joins training as a part of its own (see `TrainSet`).
    pub extra_datasets: Vec<String>,
    /// Start from this checkpoint's weights (fine-tuning) instead of a fresh network.
    pub init: Option<PathBuf>,
    pub val_sampler: SamplerSpec,
    pub val_samples: u32,
    pub resume: bool,
    /// Recorded in the sidecars: how the checkpoint was made.
    pub note: String,
}

/// The folder holding the resumable state inside `--out`.
fn state_dir(out: &Path) -> PathBuf {
    out.join("state")
}

/// Runs training to `settings.steps`. Returns the last validation, if any ran.
pub fn run(settings: &TrainSettings) -> anyhow::Result<Option<Validation>> {
    let out = &settings.out;
    let state = state_dir(out);
    let has_state = state.join("state.json").exists();
    if has_state && !settings.resume {
        anyhow::bail!(
            "{} already holds a training run; pass --resume to continue it, or choose another --out",
            out.display()
        );
    }
    tracing::info!(dataset = %settings.dataset, config = %settings.config.name, "loading the dataset");
    let data = crate::train_data::load(
        &settings.dataset,
        &settings.config,
        settings.split,
        &settings.extra_datasets,
    )?;
    let parts: Vec<usize> = data.train.parts.iter().map(Vec::len).collect();
    tracing::info!(train = ?parts, val = data.val.len(), digest = %data.digest, "dataset ready");

    let device = Default::default();
    let mut trainer = if has_state {
        let t = Trainer::<TrainBackend>::load_state(
            &state,
            &data.digest,
            Some(settings.options.clone()),
            &device,
        )
        .with_context(|| format!("resuming from {}", state.display()))?;
        if t.config() != &settings.config {
            anyhow::bail!(
                "{} was trained with configuration {:?}, not {:?}: pass --config {}",
                out.display(),
                t.config().name,
                settings.config.name,
                t.config().name
            );
        }
        tracing::info!(step = t.step_count(), "resumed");
        t
    } else if let Some(init) = &settings.init {
        let (model, sidecar) = dispr_model::checkpoint::load_model::<TrainBackend>(init, None, &device)
            .with_context(|| format!("loading --init {}", init.display()))?;
        if sidecar.config != settings.config {
            anyhow::bail!(
                "--init {} is a {:?} model, not {:?}: pass --config {}",
                init.display(),
                sidecar.config.name,
                settings.config.name,
                sidecar.config.name
            );
        }
        tracing::info!(init = %init.display(), step = sidecar.step, "fine-tuning from a checkpoint");
        Trainer::<TrainBackend>::from_weights(
            settings.config.clone(),
            settings.options.clone(),
            model,
            &device,
        )
    } else {
        Trainer::<TrainBackend>::new(settings.config.clone(), settings.options.clone(), &device)
    };

    let bar = ProgressBar::new(settings.steps);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.step_count());
    let mut last_val: Option<Validation> = None;
    let mut smooth: Option<f32> = None;
    let started = Instant::now();
    let first_step = trainer.step_count();
    while trainer.step_count() < settings.steps {
        let stats = trainer.step(&data.train);
        let step = trainer.step_count();
        smooth = Some(smooth.map_or(stats.loss, |s| 0.98 * s + 0.02 * stats.loss));
        bar.set_position(step);
        let second = if stats.dice > 0.0 { ("dice", stats.dice) } else { ("vb", stats.vb) };
        bar.set_message(format!(
            "loss {:.4} (mse {:.4} {} {:.4})",
            smooth.unwrap_or(stats.loss),
            stats.mse,
            second.0,
            second.1
        ));
        if step % settings.log_every.max(1) == 0 {
            let rate = (step - first_step) as f64 / started.elapsed().as_secs_f64();
            tracing::info!(
                step,
                loss = stats.loss,
                mse = stats.mse,
                vb = stats.vb,
                dice = stats.dice,
                lr = settings.options.lr_at(step - 1),
                it_per_s = rate,
                "training"
            );
        }
        let due = step % settings.validate_every.max(1) == 0 || step == settings.steps;
        if settings.validate_every > 0 && !data.val.is_empty() && due {
            let v = validate(&trainer, &data.val, settings)?;
            bar.println(format!(
                "step {step}: validation mean IoU {:.4} (floor {:.4}; {} cells, {})",
                v.mean_iou,
                v.floor_iou.unwrap_or(f64::NAN),
                v.cells,
                v.sampler
            ));
            tracing::info!(step, mean_iou = v.mean_iou, floor_iou = v.floor_iou, "validation");
            last_val = Some(v);
        }
        if step % settings.checkpoint_every.max(1) == 0 || step == settings.steps {
            save(&trainer, &data, settings, last_val.clone())?;
        }
    }
    bar.finish();
    Ok(last_val)
}

/// Writes the model checkpoint `model-step<N>.mpk` (+ sidecar), `latest.mpk`, and the state.
fn save(
    trainer: &Trainer<TrainBackend>,
    data: &TrainData,
    settings: &TrainSettings,
    validation: Option<Validation>,
) -> anyhow::Result<()> {
    let step = trainer.step_count();
    let sidecar = Sidecar {
        format: 0,
        config: trainer.config().clone(),
        step,
        dataset_digest: data.digest.clone(),
        record_sha256: String::new(),
        validation,
        note: settings.note.clone(),
        z_calibration: None,
        imported: None,
    };
    for name in [format!("model-step{step:07}.mpk"), "latest.mpk".to_string()] {
        let path = settings.out.join(&name);
        trainer
            .save_checkpoint(&path, sidecar.clone())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    trainer.save_state(&state_dir(&settings.out), &data.digest).context("writing the training state")?;
    tracing::info!(step, out = %settings.out.display(), "checkpoint written");
    Ok(())
}

/// Samples every held-out cell with the EMA weights and scores the Otsu-binarised samples
/// against the ground truth (IoU at 64^3, averaged over cells and samples), beside the floor.
pub fn validate(
    trainer: &Trainer<TrainBackend>,
    val: &[ValCell],
    settings: &TrainSettings,
) -> anyhow::Result<Validation> {
    let scores =
        crate::scoring::score(&trainer.ema_predictor(), val, &settings.val_sampler, settings.val_samples)?;
    let all = crate::scoring::summarise(&scores.cells);
    Ok(Validation {
        step: trainer.step_count(),
        sampler: settings.val_sampler.to_string(),
        cells: val.len(),
        samples_per_cell: settings.val_samples as usize,
        mean_iou: all.sample_iou,
        floor_iou: Some(all.floor_iou),
    })
}
