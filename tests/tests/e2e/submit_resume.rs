//! Scenario 4: the coordinator killed in the middle of `submit` and started again publishes only
//! what was not yet published. No worker runs, so the jobs queue counts every publish.

use crate::support::*;
use dispr_proto::{Job, keys};
use std::collections::HashMap;
use std::time::Duration;

const CELLS: usize = 400;
const BATCH: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_submit_resumes_without_republishing() {
    let ctx = Ctx::new("e2e-resume");
    // `submit` only lists the dataset: empty objects make a large dataset quickly.
    let dataset = ctx.dataset();
    put_empty_cells(&dataset, CELLS).await;

    // A throttled submit (about 2 s at 200 jobs/s), killed once a few batches are confirmed.
    let flags = ctx.run_flags(1);
    let mut args: Vec<&str> = vec!["submit", "--batch-jobs", "20", "--max-jobs-per-sec", "200"];
    args.extend(flags.iter().map(String::as_str));
    let mut first = ctx
        .coordinator(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let output = ctx.output();
    let markers = keys::submitted_prefix(&ctx.run);
    wait_for(Duration::from_secs(60), "three confirmed batches", || async {
        batches(&output, &markers).await >= 3
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let marked = batches(&output, &markers).await;
    assert!(marked < CELLS / BATCH, "the first submit was killed before the end ({marked} batches)");

    let conn = amqp(&ctx.env).await;
    let [jobs_queue, ..] = ctx.queue_names();
    // Confirms arrive before markers are written: wait for the queue count to settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_first = depth(&conn, &jobs_queue).await as usize;
    assert!(after_first >= marked * BATCH);

    let second = ctx.submit(1, &["--batch-jobs", "20"]);
    let published = second["report"]["jobs_published"].as_u64().unwrap() as usize;
    assert_eq!(
        published,
        CELLS - marked * BATCH,
        "the restart publishes exactly the batches without a marker"
    );
    assert_eq!(second["report"]["cells_already_submitted"], marked * BATCH);

    // Count the publishes: every job is in the queue, and the only duplicates are jobs of the
    // batches that were in flight when the first submit was killed (at most two batches).
    let bodies = drain(&conn, &jobs_queue).await;
    assert_eq!(bodies.len(), after_first + published, "the queue holds every publish");
    let mut times: HashMap<String, usize> = HashMap::new();
    for body in &bodies {
        *times.entry(Job::decode(body).expect("a job").job_id).or_default() += 1;
    }
    assert_eq!(times.len(), CELLS, "every job was published");
    let duplicates = bodies.len() - CELLS;
    assert!(duplicates <= 2 * BATCH, "{duplicates} jobs were published twice");

    // A third submit finds everything published and publishes nothing.
    let third = ctx.submit(1, &["--batch-jobs", "20"]);
    assert_eq!(third["report"]["jobs_published"], 0);
    assert_eq!(third["report"]["cells_already_submitted"], CELLS);
    // A different manifest under the same run id is refused, naming the field.
    let mut args: Vec<String> = flags.clone();
    let seed = args.iter().position(|a| a == "--seed").unwrap();
    args[seed + 1] = "12".into();
    let mut argv = vec!["submit"];
    argv.extend(args.iter().map(String::as_str));
    let refused = ctx.run_coordinator(&argv);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("seed: existing 11 vs requested 12"), "{err}");
    delete_queues(&conn, &ctx).await;
}

/// Batch markers written so far.
async fn batches(output: &dispr_store::Store, markers: &str) -> usize {
    output.list(markers).await.unwrap_or_default().iter().filter(|k| k.contains("/batch-")).count()
}

/// Writes `n` cells of empty `image/<cell>.tif` and `mask/<cell>.tif` objects (submit refuses an
/// image without its mask), a few at a time (s3s-fs shares two cores).
async fn put_empty_cells(store: &dispr_store::Store, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        for key in [keys::dataset_image(&cell_name(i)), keys::dataset_mask(&cell_name(i))] {
            let store = store.clone();
            tasks.spawn(async move { store.put(&key, bytes::Bytes::new()).await });
            if tasks.len() >= 16 {
                tasks.join_next().await.expect("a task").expect("joined").expect("writing a file");
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("joined").expect("writing a file");
    }
}
