//! The training loop of `dispr-worker train`: steps with a progress bar, validation IoU of
//! sampled shapes on held-out cells, checkpoints (a model checkpoint with sidecar for workers,
//! and the full state for an exact `--resume`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use dispr_model::checkpoint::{Sidecar, Validation};
use dispr_model::{CellInput, ModelConfig, TrainBackend, TrainOptions, Trainer};
use dispr_proto::SamplerSpec;
use indicatif::{ProgressBar, ProgressStyle};

use crate::train_data::{TrainData, ValCell};

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
    pub validate_every: u64,
    pub val_cells: usize,
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
        settings.val_cells,
        settings.options.seed,
    )?;
    tracing::info!(train = data.train.len(), val = data.val.len(), digest = %data.digest, "dataset ready");

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
        bar.set_message(format!(
            "loss {:.4} (mse {:.4} vb {:.4})",
            smooth.unwrap_or(stats.loss),
            stats.mse,
            stats.vb
        ));
        if step % 50 == 0 {
            let rate = (step - first_step) as f64 / started.elapsed().as_secs_f64();
            tracing::info!(
                step,
                loss = stats.loss,
                mse = stats.mse,
                vb = stats.vb,
                it_per_s = rate,
                "training"
            );
        }
        if settings.validate_every > 0 && (step % settings.validate_every == 0 || step == settings.steps) {
            let v = validate(&trainer, &data.val, settings)?;
            bar.println(format!(
                "step {step}: validation mean IoU {:.4} ({} cells, {})",
                v.mean_iou, v.cells, v.sampler
            ));
            tracing::info!(step, mean_iou = v.mean_iou, "validation");
            last_val = Some(v);
        }
        if step % settings.checkpoint_every == 0 || step == settings.steps {
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
/// against the ground truth (IoU at 64^3, averaged over cells and samples).
pub fn validate(
    trainer: &Trainer<TrainBackend>,
    val: &[ValCell],
    settings: &TrainSettings,
) -> anyhow::Result<Validation> {
    let mean_iou = mean_iou(&trainer.ema_predictor(), val, &settings.val_sampler, settings.val_samples)?;
    Ok(Validation {
        step: trainer.step_count(),
        sampler: settings.val_sampler.to_string(),
        cells: val.len(),
        samples_per_cell: settings.val_samples as usize,
        mean_iou,
    })
}

/// Samples `samples` volumes of every cell in `val` with `sampler` and returns the mean IoU of
/// the Otsu-binarised samples against the ground truth (at 64^3, over cells and samples). Seeds
/// come from the cell ids, so two calls see the same initial noise.
pub fn mean_iou<B: burn::tensor::backend::Backend>(
    predictor: &dispr_model::Predictor<B>,
    val: &[ValCell],
    sampler: &SamplerSpec,
    samples: u32,
) -> anyhow::Result<f64> {
    let inputs: Vec<CellInput<'_>> =
        val.iter().map(|c| CellInput { image: &c.image, mask: &c.mask }).collect();
    let seeds: Vec<Vec<u64>> = val
        .iter()
        .map(|c| (0..samples).map(|k| dispr_proto::seed::sample_seed(0, &c.id, k)).collect())
        .collect();
    let volumes =
        predictor.sample(&inputs, &seeds, sampler, &mut |_, _| {}).context("sampling the held-out cells")?;
    let mut total = 0.0;
    let mut n = 0usize;
    for (cell, samples) in val.iter().zip(&volumes) {
        for vol in samples {
            total += dispr_shape::metrics::iou(&dispr_shape::otsu::binarise(vol), &cell.truth);
            n += 1;
        }
    }
    Ok(if n == 0 { 0.0 } else { total / n as f64 })
}
