//! Scenario 5: SIGTERM while a job is computing. The worker stops taking jobs, finishes the job
//! in hand within its drain timeout and exits 0; the job is done exactly once.

use crate::support::*;
use dispr_proto::{JobResult, ResultBody, keys};
use std::time::Duration;

const SAMPLES: u32 = 40;
/// Cells in the first job. The signal goes out when the first volume of the run appears, so the
/// job in hand still has most of its cells to write: seconds of work, where one cell left only
/// the rest of its own uploads (a few hundred milliseconds, which a loaded CI machine can lose
/// between a poll and the signal, letting the worker take the next job first).
const FIRST_JOB_CELLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_job_in_hand_and_exits_zero() {
    let ctx = Ctx::new("e2e-sigterm");
    let cells = write_cells(&ctx.dataset(), FIRST_JOB_CELLS + 1).await;
    // float32 volumes, the slowest format to write, for the same reason.
    let per_job = FIRST_JOB_CELLS.to_string();
    ctx.submit(SAMPLES, &["--volumes", "float32", "--cells-per-job", &per_job]);

    let mut worker = ctx.spawn_worker("draining", &["--drain-timeout-secs", "60"]);
    let output = ctx.output();
    let volumes = format!("{}volumes/", keys::run_prefix(&ctx.run));
    wait_for(Duration::from_secs(60), "the worker to be inside the first job", || async {
        count(&output, &volumes).await > 0
    })
    .await;
    worker.signal("TERM");
    let code = worker.wait_exit(Duration::from_secs(70));
    assert_eq!(code, Some(Some(0)), "the worker did not drain and exit 0 in time:\n{}", worker.log_text());

    // The job in hand is done, once; the job it had not started is still queued.
    let (first_job, second_job) = cells.split_at(FIRST_JOB_CELLS);
    for cell in first_job {
        let done = output.exists(&keys::features(&ctx.run, cell)).await.unwrap();
        assert!(done, "cell {cell} of the job in hand is not done:\n{}", worker.log_text());
    }
    assert!(
        !output.exists(&keys::features(&ctx.run, &second_job[0])).await.unwrap(),
        "it took a new job after SIGTERM:\n{}",
        worker.log_text()
    );
    let conn = amqp(&ctx.env).await;
    let [jobs, results, _, _] = ctx.queue_names();
    assert_eq!(depth(&conn, &jobs).await, 1, "the second job waits for another worker");
    let done_reports = drain(&conn, &results)
        .await
        .iter()
        .filter_map(|body| JobResult::decode(body).ok())
        .filter(|r| matches!(r.body, ResultBody::JobDone { .. }))
        .count();
    assert_eq!(done_reports, 1, "the drained job is reported done exactly once");
    delete_queues(&conn, &ctx).await;
}
