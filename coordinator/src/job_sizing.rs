//! Planning jobs against RabbitMQ's `consumer_timeout`.
//!
//! A worker holds a job's delivery unacked while it computes. RabbitMQ closes the channel of a
//! delivery that stays unacked past `consumer_timeout` (30 minutes by default; RabbitMQ 3.10, the
//! Debian version, only sets it server-wide in `rabbitmq.conf`), which requeues the job and makes
//! the work start over, forever. So the coordinator estimates how long a job can take and refuses
//! (or, asked to, splits) a plan whose jobs could run past the timeout.

use dispr_proto::SamplerSpec;
use std::time::Duration;

/// RabbitMQ's default `consumer_timeout`.
pub const DEFAULT_CONSUMER_TIMEOUT_SECS: u64 = 30 * 60;

/// Seconds per model evaluation of one sample of the published `dispr-64` model on a data-centre
/// GPU, with margin. Assumed, not measured: no GPU has run this project yet
/// (`scripts/gpu-check.sh` measures it). An H100 does the 0.79 TFLOP forward pass in well under
/// 0.1 s in mixed precision; 0.2 s leaves room for slower cards and fp32.
pub const DEFAULT_GPU_SECONDS_PER_STEP: f64 = 0.2;

/// Seconds per model evaluation of one sample of `dispr-64` on a CPU, measured: 8.2 s, a forward
/// pass at batch 4 (as a worker batches cells) taking 32.8 s on the 2-core AMD EPYC development
/// machine on 2026-12-06 (`scripts/bench-vs-pytorch.sh`; batch 1: 7.5 s). A worker with more
/// cores is faster.
pub const DEFAULT_CPU_SECONDS_PER_STEP: f64 = 8.2;

/// Fixed cost per cell besides sampling: downloading inputs, thresholding, 3D features and
/// uploads. Generous, so that the estimate errs towards safety.
pub const PER_CELL_OVERHEAD_SECS: f64 = 10.0;

/// Only this fraction of the timeout is planned for: estimates are rough and a worker may be
/// slower than the figure it was planned with.
pub const TIMEOUT_SAFETY: f64 = 0.5;

/// What a job costs, per the operator's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub samples_per_cell: u32,
    /// Model evaluations per sample (0 for the null sampler).
    pub steps: u32,
    pub seconds_per_step: f64,
}

impl Cost {
    pub fn new(sampler: &SamplerSpec, samples_per_cell: u32, seconds_per_step: f64) -> Self {
        Self { samples_per_cell, steps: sampler.steps(), seconds_per_step }
    }

    /// Estimated seconds for one cell.
    pub fn cell_seconds(&self) -> f64 {
        f64::from(self.samples_per_cell) * f64::from(self.steps) * self.seconds_per_step
            + PER_CELL_OVERHEAD_SECS
    }

    /// Estimated seconds for a job of `cells_per_job` cells.
    pub fn job_seconds(&self, cells_per_job: u32) -> f64 {
        f64::from(cells_per_job) * self.cell_seconds()
    }
}

/// A plan the coordinator refuses, with what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "a job of {cells_per_job} cells is estimated at {} ({} per cell: {samples} samples x {steps} steps x \
         {seconds_per_step} s per step + {PER_CELL_OVERHEAD_SECS} s of I/O), but only {} of the broker's \
         consumer_timeout of {} is planned for, and RabbitMQ would cancel the delivery and redeliver the job \
         forever. Use --cells-per-job {max_cells} or fewer, or pass --split to let submit do that",
        human(*job_secs), human(*cell_secs), human(*budget_secs), human(*timeout_secs)
    )]
    JobTooLong {
        cells_per_job: u32,
        max_cells: u32,
        samples: u32,
        steps: u32,
        seconds_per_step: f64,
        cell_secs: f64,
        job_secs: f64,
        budget_secs: f64,
        timeout_secs: f64,
    },
    #[error(
        "a single cell is estimated at {} ({samples} samples x {steps} steps x {seconds_per_step} s per step + \
         {PER_CELL_OVERHEAD_SECS} s of I/O), more than the {} planned for within the broker's consumer_timeout \
         of {}: RabbitMQ would cancel every delivery and the run would never finish. Raise consumer_timeout \
         on the broker (rabbitmq.conf: consumer_timeout = <milliseconds>, then tell submit with \
         --consumer-timeout-secs), use a faster sampler (fewer steps) or fewer --samples",
        human(*cell_secs), human(*budget_secs), human(*timeout_secs)
    )]
    CellTooLong {
        samples: u32,
        steps: u32,
        seconds_per_step: f64,
        cell_secs: f64,
        budget_secs: f64,
        timeout_secs: f64,
    },
    #[error("--cells-per-job must be at least 1")]
    ZeroCellsPerJob,
    #[error("--seconds-per-step must be a positive number of seconds, not {0}")]
    BadSecondsPerStep(f64),
}

/// The cells per job to use: `cells_per_job` when its jobs fit within the consumer timeout;
/// otherwise the largest size that fits when `split` is set, or an error saying why and what to do.
pub fn cells_per_job(
    cost: &Cost,
    cells_per_job: u32,
    consumer_timeout: Duration,
    split: bool,
) -> Result<u32, PlanError> {
    if cells_per_job == 0 {
        return Err(PlanError::ZeroCellsPerJob);
    }
    if !(cost.seconds_per_step.is_finite() && cost.seconds_per_step > 0.0) {
        return Err(PlanError::BadSecondsPerStep(cost.seconds_per_step));
    }
    let timeout_secs = consumer_timeout.as_secs_f64();
    let budget_secs = timeout_secs * TIMEOUT_SAFETY;
    let cell_secs = cost.cell_seconds();
    if cell_secs > budget_secs {
        return Err(PlanError::CellTooLong {
            samples: cost.samples_per_cell,
            steps: cost.steps,
            seconds_per_step: cost.seconds_per_step,
            cell_secs,
            budget_secs,
            timeout_secs,
        });
    }
    // At least 1: the check above guarantees one cell fits.
    let max_cells = ((budget_secs / cell_secs).floor() as u32).max(1);
    if cells_per_job <= max_cells {
        Ok(cells_per_job)
    } else if split {
        Ok(max_cells)
    } else {
        Err(PlanError::JobTooLong {
            cells_per_job,
            max_cells,
            samples: cost.samples_per_cell,
            steps: cost.steps,
            seconds_per_step: cost.seconds_per_step,
            cell_secs,
            job_secs: cost.job_seconds(cells_per_job),
            budget_secs,
            timeout_secs,
        })
    }
}

/// A duration for people: `45 s`, `12.5 min`, `3.2 h`.
pub fn human(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 2.0 * 3600.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIRTY_MIN: Duration = Duration::from_secs(DEFAULT_CONSUMER_TIMEOUT_SECS);

    #[test]
    fn fast_sampler_on_gpu_fits_several_cells() {
        // 5 samples x 25 steps x 0.2 s + 10 s = 35 s per cell; 900 s budget -> 25 cells.
        let cost = Cost::new(&"dpmpp2m-25".parse().unwrap(), 5, DEFAULT_GPU_SECONDS_PER_STEP);
        assert_eq!(cells_per_job(&cost, 4, THIRTY_MIN, false), Ok(4));
        assert_eq!(cells_per_job(&cost, 100, THIRTY_MIN, true), Ok(25));
    }

    #[test]
    fn too_many_cells_is_refused_with_the_size_that_fits() {
        let cost = Cost::new(&"dpmpp2m-25".parse().unwrap(), 5, DEFAULT_GPU_SECONDS_PER_STEP);
        let err = cells_per_job(&cost, 100, THIRTY_MIN, false).unwrap_err();
        assert!(matches!(err, PlanError::JobTooLong { max_cells: 25, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("--cells-per-job 25") && msg.contains("--split"), "{msg}");
    }

    #[test]
    fn published_ddpm_on_cpu_cannot_fit_one_cell() {
        // 5 x 1000 x 8.2 s: over 11 hours per cell.
        let cost = Cost::new(&"ddpm-1000".parse().unwrap(), 5, DEFAULT_CPU_SECONDS_PER_STEP);
        let err = cells_per_job(&cost, 1, THIRTY_MIN, true).unwrap_err();
        assert!(matches!(err, PlanError::CellTooLong { .. }));
        assert!(err.to_string().contains("consumer_timeout = <milliseconds>"), "{err}");
        // A raised timeout makes it fit.
        let day = Duration::from_secs(3 * 24 * 3600);
        assert_eq!(cells_per_job(&cost, 1, day, false), Ok(1));
    }

    #[test]
    fn null_sampler_costs_only_the_overhead() {
        let cost = Cost::new(&SamplerSpec::Null, 5, DEFAULT_GPU_SECONDS_PER_STEP);
        assert_eq!(cost.cell_seconds(), PER_CELL_OVERHEAD_SECS);
        assert_eq!(cells_per_job(&cost, 1000, THIRTY_MIN, true), Ok(90));
    }

    #[test]
    fn nonsense_figures_are_refused() {
        let cost = Cost::new(&SamplerSpec::Null, 5, 0.0);
        assert_eq!(cells_per_job(&cost, 1, THIRTY_MIN, false), Err(PlanError::BadSecondsPerStep(0.0)));
        let cost = Cost::new(&SamplerSpec::Null, 5, 1.0);
        assert_eq!(cells_per_job(&cost, 0, THIRTY_MIN, false), Err(PlanError::ZeroCellsPerJob));
    }
}
