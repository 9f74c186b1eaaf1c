//! The embedded single-machine mode: the submit -> worker -> outputs path of a distributed run,
//! with an in-process queue (a bounded tokio channel) in place of RabbitMQ and N worker tasks
//! sharing one [`JobRunner`] in place of worker processes. Jobs, results and outputs are the same
//! as in a distributed run with the same manifest, byte for byte, because the same code makes
//! them: [`submit::publish`] shards the cells and the worker library's `JobRunner` runs the jobs.

use crate::prepare::Prepared;
use crate::submit::{self, JobSink, Sharding, SubmitReport};
use crate::tally::{Summary, Tally};
use dispr_proto::{Job, JobResult, ResultBody, RunId};
use dispr_worker::pipeline::{JobError, JobRunner, ResultSink, RunnerConfig};
use dispr_worker::telemetry::Telemetry;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

/// Attempts per job when storage trouble interrupts it (a distributed worker requeues instead).
const ATTEMPTS: u32 = 3;

/// The in-process queue's sending side.
struct ChannelSink(mpsc::Sender<Job>);

impl JobSink for ChannelSink {
    async fn send(&mut self, job: &Job) -> anyhow::Result<BoxFuture<'static, anyhow::Result<()>>> {
        self.0
            .send(job.clone())
            .await
            .map_err(|_| anyhow::anyhow!("every local worker stopped; see the errors above"))?;
        // Handed over in memory: nothing more to wait for.
        Ok(Box::pin(async { Ok(()) }))
    }
}

/// Wraps a worker's result bodies into the result messages a distributed worker would publish.
struct LocalResults {
    tx: mpsc::UnboundedSender<JobResult>,
    run: RunId,
    job: String,
    worker: String,
}

impl ResultSink for LocalResults {
    async fn report(&self, body: ResultBody) {
        // A closed receiver means the run is being torn down; outputs are in the store anyway.
        let _ = self.tx.send(JobResult::new(self.run.clone(), self.job.clone(), self.worker.clone(), body));
    }

    fn worker(&self) -> Option<&str> {
        Some(&self.worker)
    }
}

/// How a local run went.
pub struct LocalOutcome {
    pub submitted: SubmitReport,
    pub summary: Summary,
    /// Jobs that storage trouble kept from finishing, with the last error; running `local`
    /// again resumes them.
    pub unfinished: Vec<(String, String)>,
}

/// Runs every unfinished cell of `prepared` on `workers` in-process workers.
pub async fn run(
    prepared: &Prepared,
    cells_per_job: u32,
    workers: usize,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<LocalOutcome> {
    anyhow::ensure!(workers >= 1, "--workers must be at least 1");
    let runner = Arc::new(JobRunner::new(RunnerConfig::new("local"), Arc::new(Telemetry::default())));
    let (job_tx, job_rx) = mpsc::channel::<Job>(workers * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (result_tx, mut result_rx) = mpsc::unbounded_channel::<JobResult>();

    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let (runner, job_rx, result_tx) = (runner.clone(), job_rx.clone(), result_tx.clone());
        let worker = format!("local-{}", i + 1);
        handles.push(tokio::spawn(async move { work(&runner, &job_rx, &result_tx, &worker).await }));
    }
    drop(result_tx);

    // Results are tallied while jobs are fed; the tally ends when every worker has stopped.
    let mut tally = Tally::new(prepared.cells.len(), &prepared.finished);
    crate::progress::start_at(progress, tally.finished() as u64);
    let tally_results = async {
        while let Some(result) = result_rx.recv().await {
            tally.apply(&result);
            progress.set_position(tally.finished() as u64);
            if tally.failed() > 0 {
                progress.set_message(format!("({} failed)", tally.failed()));
            }
        }
    };
    let feed = async {
        let mut sink = ChannelSink(job_tx);
        let sharding = Sharding { cells_per_job, batch_jobs: submit::DEFAULT_BATCH_JOBS };
        let hidden = indicatif::ProgressBar::hidden();
        let report = submit::publish(
            &prepared.manifest,
            &prepared.cells,
            &prepared.finished,
            sharding,
            &mut sink,
            None,
            &hidden,
        )
        .await;
        drop(sink); // closes the queue: workers stop once it is empty
        report
    };
    let (submitted, ()) = tokio::join!(feed, tally_results);
    let mut unfinished = Vec::new();
    for handle in handles {
        unfinished.extend(handle.await?);
    }
    Ok(LocalOutcome { submitted: submitted?, summary: tally.summary(), unfinished })
}

/// One worker: takes jobs until the queue is closed and empty. Returns the jobs it could not
/// finish and why.
async fn work(
    runner: &JobRunner,
    jobs: &Mutex<mpsc::Receiver<Job>>,
    results: &mpsc::UnboundedSender<JobResult>,
    worker: &str,
) -> Vec<(String, String)> {
    let mut unfinished = Vec::new();
    loop {
        // The lock is held only while waiting for the next job, not while running it.
        let Some(job) = jobs.lock().await.recv().await else { return unfinished };
        let sink = LocalResults {
            tx: results.clone(),
            run: job.run_id.clone(),
            job: job.job_id.clone(),
            worker: worker.to_string(),
        };
        let mut attempt = 1;
        loop {
            sink.report(ResultBody::Started { cells: job.cells.len() as u32 }).await;
            match runner.run(&job, &sink).await {
                Ok(_) => break,
                Err(JobError::Retriable(err)) if attempt < ATTEMPTS => {
                    tracing::warn!(job = %job.job_id, error = %format!("{err:#}"), attempt, "job interrupted; trying again");
                    tokio::time::sleep(Duration::from_secs(2u64.pow(attempt))).await;
                    attempt += 1;
                }
                Err(err) => {
                    tracing::error!(job = %job.job_id, error = %err, "job not finished");
                    unfinished.push((job.job_id.clone(), err.to_string()));
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RunSpec;
    use crate::prepare::prepare;
    use dispr_proto::{CellFailure, CellFeatures, CellId, SamplerSpec, keys};
    use dispr_store::Store;

    fn tiff(data: Vec<u8>) -> bytes::Bytes {
        let image = dispr_shape::volume::Image2d { dims: [64, 64], data };
        dispr_shape::tiff_io::encode_image_u8(&image).unwrap().into()
    }

    /// A disk mask of radius `r` and a ring image.
    fn cell_files(r: f64) -> (bytes::Bytes, bytes::Bytes) {
        let mut mask = vec![0u8; 64 * 64];
        let mut image = vec![0u8; 64 * 64];
        for (i, (m, px)) in mask.iter_mut().zip(image.iter_mut()).enumerate() {
            let d = (((i / 64) as f64 - 31.5).powi(2) + ((i % 64) as f64 - 31.5).powi(2)).sqrt();
            *m = if d < r { 255 } else { 0 };
            *px = if (d - r).abs() < 2.0 { 200 } else { 30 };
        }
        (tiff(image), tiff(mask))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_run_completes_records_bad_cells_and_resumes() {
        let data = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let dataset = Store::open(data.path().to_str().unwrap()).unwrap();
        for i in 0..5 {
            let cell = CellId::new(format!("cell{i}")).unwrap();
            let (image, mask) = cell_files(10.0 + i as f64);
            dataset.put(&keys::dataset_image(&cell), image).await.unwrap();
            dataset.put(&keys::dataset_mask(&cell), mask).await.unwrap();
        }
        let empty = CellId::new("empty").unwrap();
        dataset.put(&keys::dataset_image(&empty), cell_files(10.0).0).await.unwrap();
        dataset.put(&keys::dataset_mask(&empty), tiff(vec![0; 64 * 64])).await.unwrap();

        let spec = RunSpec {
            run_id: RunId::new("local-test").unwrap(),
            dataset_uri: data.path().to_str().unwrap().into(),
            output_uri: out.path().to_str().unwrap().into(),
            model_uri: None,
            sampler: SamplerSpec::Null,
            samples_per_cell: 2,
            seed: 5,
            volumes: None,
        };
        let bar = indicatif::ProgressBar::hidden();
        let prepared = prepare(&spec).await.unwrap();
        let outcome = run(&prepared, 2, 2, &bar).await.unwrap();
        assert!(outcome.unfinished.is_empty(), "{:?}", outcome.unfinished);
        assert_eq!((outcome.summary.done, outcome.summary.failed, outcome.summary.remaining), (5, 1, 0));
        assert_eq!(outcome.submitted.jobs_published, 3);

        let output = prepared.output.clone();
        let run_id = &prepared.manifest.run_id;
        let record = CellFeatures::decode(
            &output.get(&keys::features(run_id, &CellId::new("cell3").unwrap())).await.unwrap(),
        )
        .unwrap();
        assert_eq!(record.samples.len(), 2);
        let failure =
            CellFailure::decode(&output.get(&keys::failure(run_id, &empty)).await.unwrap()).unwrap();
        assert!(failure.reason.contains("empty"), "{}", failure.reason);
        every_output_is_readable_by_others(out.path());

        // Again: everything is finished, nothing is computed.
        let prepared = prepare(&spec).await.unwrap();
        let again = run(&prepared, 2, 1, &bar).await.unwrap();
        assert_eq!(
            (again.submitted.jobs_published, again.submitted.cells_done, again.submitted.cells_failed),
            (0, 5, 1)
        );
        assert_eq!(again.summary.finished_while_watching, 0);
    }

    /// Every file and folder of the run has the modes this process gives its own new files and
    /// folders (0644 and 0755 under the usual umask 022), so an analyst under another account
    /// opens the volumes.
    #[cfg(unix)]
    fn every_output_is_readable_by_others(root: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        let probe = tempfile::tempdir().unwrap();
        std::fs::File::create(probe.path().join("file")).unwrap();
        std::fs::create_dir(probe.path().join("dir")).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let (file_mode, dir_mode) = (mode(&probe.path().join("file")), mode(&probe.path().join("dir")));
        let mut files = 0;
        for entry in walkdir::WalkDir::new(root.join("runs")) {
            let entry = entry.unwrap();
            let expected = if entry.file_type().is_dir() { dir_mode } else { file_mode };
            assert_eq!(
                mode(entry.path()),
                expected,
                "{} has mode {:o}",
                entry.path().display(),
                mode(entry.path())
            );
            files += usize::from(entry.file_type().is_file());
        }
        assert!(files > 10, "the run wrote {files} files");
    }
}
