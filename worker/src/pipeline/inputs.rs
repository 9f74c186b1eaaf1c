//! Stage 1 of a job: its inputs. Which cells are left to do, the job's sampler, `labels.csv`
//! (read once per dataset), and each cell's image, mask and optional ground truth, read, checked
//! and decoded, with the seed of each of its samples.

use super::{CellFault, IO_CONCURRENCY, JobError, JobRunner, JobSummary, ResultSink, Scope, Setback, Step};
use super::{storage, triage};
use crate::cell::{self, Checked, InputError};
use crate::retry::StoreFailure;
use crate::volume_sampler::VolumeSampler;
use dispr_proto::seed::sample_seed;
use dispr_proto::{CellId, Job, ResultBody, keys};
use dispr_shape::dataset::{CellBytes, Geometry, Label, label_from_name, parse_labels};
use dispr_store::{ErrorKind, Store, StoreError};
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `labels.csv` of a dataset.
pub(super) type Labels = BTreeMap<CellId, Label>;

/// A cell ready to sample.
pub(super) struct Prepared {
    pub checked: Checked,
    /// The seed of each sample, index = k.
    pub seeds: Vec<u64>,
}

impl JobRunner {
    /// The cells of the job left to do. Cells whose features exist are done: they are reported
    /// again (the first report may have been lost with a worker) and left alone.
    pub(super) async fn skip_done(
        &self,
        scope: &Scope<'_, impl ResultSink>,
        summary: &mut JobSummary,
    ) -> Result<Vec<CellId>, JobError> {
        let (job, output) = (scope.job, scope.output);
        // (The futures are made before they are streamed: a stream's closure over borrowed cells
        // trips the compiler's Send check of the job future.)
        let checks: Vec<_> = (job.cells.iter())
            .map(|cell| {
                let key = keys::features(&job.run_id, cell);
                async move { self.retried("check", &key, || output.exists(&key)).await }
            })
            .collect();
        let done: Vec<bool> = futures::stream::iter(checks).buffered(IO_CONCURRENCY).try_collect().await?;
        let mut todo = Vec::new();
        for (cell, done) in job.cells.iter().zip(done) {
            if done {
                summary.skipped += 1;
                self.telemetry.metrics.cells.get_or_create(&[("outcome", "skipped")]).inc();
                scope.sink.report(ResultBody::CellDone { cell: cell.clone(), seconds: 0.0 }).await;
            } else {
                todo.push(cell.clone());
            }
        }
        Ok(todo)
    }

    /// The job's sampler and the checked inputs of `cells`. Cells that cannot run go to
    /// `faults`; `None` when no cell can.
    pub(super) async fn read_inputs(
        &self,
        job: &Job,
        cells: &[CellId],
        faults: &mut Vec<CellFault>,
    ) -> Result<Option<(Arc<dyn VolumeSampler>, Vec<Prepared>)>, JobError> {
        let (sampler, dataset, labels) = match self.job_inputs(job).await {
            Ok(found) => found,
            Err(Setback::FailedForGood(error)) => {
                for cell in cells {
                    faults.push(CellFault { cell: cell.clone(), error: anyhow::anyhow!("{error:#}") });
                }
                return Ok(None);
            }
            Err(Setback::HandBack(e)) => return Err(e),
        };

        let dataset = &dataset;
        let reads: Vec<_> = (cells.iter())
            .map(|cell| async move { (cell, self.fetch_inputs(dataset, cell).await) })
            .collect();
        let mut reads = futures::stream::iter(reads).buffered(IO_CONCURRENCY / 3); // three reads per cell
        let mut fetched = Vec::new();
        while let Some((cell, read)) = reads.next().await {
            if let Some(files) = triage(read, cell, faults)? {
                let label = labels.get(cell).cloned().or_else(|| label_from_name(cell.as_str()));
                fetched.push((cell.clone(), label, files));
            }
        }
        // Decoding and 2D features are compute: off the async threads.
        let (run_seed, samples) = (job.seed, job.samples_per_cell);
        let decoded = tokio::task::spawn_blocking(move || {
            fetched
                .into_iter()
                .map(|(cell, label, files)| {
                    let result = prepare_cell(&cell, label, &files, run_seed, samples);
                    (cell, result)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| JobError::Retriable(anyhow::anyhow!("decoding inputs panicked: {e}")))?;
        let mut prepared = Vec::new();
        for (cell, result) in decoded {
            match result {
                Ok(p) => prepared.push(p),
                Err(e) => faults.push(CellFault { cell, error: e.into() }),
            }
        }
        Ok((!prepared.is_empty()).then_some((sampler, prepared)))
    }

    /// What every cell of the job needs: its sampler, its dataset and the dataset's labels.
    /// Failing for good here fails every cell of the job.
    async fn job_inputs(&self, job: &Job) -> Step<(Arc<dyn VolumeSampler>, Store, Arc<Labels>)> {
        if job.samples_per_cell == 0 {
            return Err(Setback::FailedForGood(anyhow::anyhow!(
                "the job asks for 0 samples per cell; submit with --samples 1 or more"
            )));
        }
        let sampler = self.models.for_job(job.model.as_ref(), &job.sampler).await?;
        let dataset = self.store(&job.dataset_uri).map_err(|e| {
            Setback::FailedForGood(
                anyhow::Error::new(e).context(format!("cannot open the dataset {}", job.dataset_uri)),
            )
        })?;
        let labels = self.labels(&dataset).await?;
        Ok((sampler, dataset, labels))
    }

    /// The labels of `labels.csv` of a dataset (read once per dataset). A `labels.csv` that
    /// cannot be used fails for good.
    async fn labels(&self, dataset: &Store) -> Step<Arc<Labels>> {
        let mut cache = self.labels.lock().await;
        if let Some(l) = cache.get(dataset.uri()) {
            return Ok(l.clone());
        }
        let key = keys::DATASET_LABELS;
        let bytes = self.retried("read", key, || dataset.get_opt(key)).await?;
        let labels = match bytes {
            Some(b) => parse_labels(&b).map_err(|e| {
                Setback::FailedForGood(
                    anyhow::Error::new(e).context(format!("{key} of dataset {}", dataset.uri())),
                )
            })?,
            None => BTreeMap::new(),
        };
        let labels = Arc::new(labels);
        cache.insert(dataset.uri().to_string(), labels.clone());
        Ok(labels)
    }

    /// Reads a cell's files, and why its ground truth is left out when it exists but cannot be
    /// read. The cell fails for good when its image or mask does not exist, is too large to be
    /// one or is not a file; other storage trouble hands the job back.
    async fn fetch_inputs(&self, dataset: &Store, cell: &CellId) -> Step<(CellBytes, Option<String>)> {
        let retry = &self.config.retry;
        let failed =
            |key: &str, e: StoreFailure| storage(e, format!("could not read {key} of {}", dataset.uri()));
        let (image_key, mask_key, truth_key) =
            (keys::dataset_image(cell), keys::dataset_mask(cell), keys::dataset_obj(cell));
        let reading = [&image_key, &mask_key, &truth_key].map(|key| format!("read {key}"));
        // No file of a cell is held beyond what one of the right shape can take (a hostile or
        // mistaken 4 GB object would otherwise be read whole).
        let max = Geometry::DISPR64.max_file_bytes();
        let (image, mask, truth) = tokio::join!(
            retry.store(&reading[0], || dataset.get_at_most(&image_key, max)),
            retry.store(&reading[1], || dataset.get_at_most(&mask_key, max)),
            retry.store(&reading[2], || dataset.get_opt_at_most(&truth_key, max)),
        );
        // What is at the key cannot be a cell's file (too large, a folder, a FIFO...): the
        // store's message names the file, says what it is and what to do.
        let unusable = |e: &StoreError| matches!(e.kind(), ErrorKind::TooLarge | ErrorKind::NotAFile);
        // A missing or unusable image or mask is the cell's fault; any other failure is the store's.
        let cell_fault = |key: &str, e: StoreError| {
            Setback::FailedForGood(match e.kind() {
                ErrorKind::NotFound => anyhow::Error::new(e).context(format!(
                    "cell {cell} is not in the dataset {}: {key} does not exist; check the cell id and the \
                     dataset URI",
                    dataset.uri()
                )),
                _ => anyhow::anyhow!("cell {cell}: {e}"),
            })
        };
        let required = |key: &str, read: Result<bytes::Bytes, StoreFailure>| match read {
            Ok(bytes) => Ok(bytes),
            Err(StoreFailure::NotFound(e)) => Err(cell_fault(key, e)),
            Err(StoreFailure::Other(e)) if unusable(&e) => Err(cell_fault(key, e)),
            Err(other) => Err(Setback::HandBack(failed(key, other))),
        };
        let (image, mask) = (required(&image_key, image), required(&mask_key, mask));
        // The ground truth is optional: one that cannot be used costs only its scores.
        let obj = match truth {
            Ok(truth) => Ok((truth, None)),
            Err(StoreFailure::Other(e)) if unusable(&e) => Ok((None, Some(cell::truth_unusable(cell, e)))),
            Err(other) => Err(Setback::HandBack(failed(&truth_key, other))),
        };
        match (image, mask, obj) {
            (Ok(image), Ok(mask), Ok((obj, skipped))) => Ok((CellBytes { image, mask, obj }, skipped)),
            (image, mask, obj) => Err([image.err(), mask.err(), obj.err()]
                .into_iter()
                .flatten()
                .reduce(Setback::graver)
                .expect("one of the reads failed")),
        }
    }
}

/// Checks a cell's files and derives its seeds. A cell without a label (its name has no prefix
/// and labels.csv does not list it) gets the class "unlabelled".
fn prepare_cell(
    cell: &CellId,
    label: Option<Label>,
    (files, truth_skipped): &(CellBytes, Option<String>),
    run_seed: u64,
    samples: u32,
) -> Result<Prepared, InputError> {
    let label = label.unwrap_or_else(|| Label { class: "unlabelled".into(), subclass: None });
    let mut checked = cell::check_inputs(cell, label, files)?;
    if checked.truth_skipped.is_none() {
        checked.truth_skipped.clone_from(truth_skipped);
    }
    if let Some(why) = &checked.truth_skipped {
        tracing::warn!(cell = %cell, reason = %why, "sampling the cell without its ground truth");
    }
    let seeds = (0..samples).map(|k| sample_seed(run_seed, cell, k)).collect();
    Ok(Prepared { checked, seeds })
}
