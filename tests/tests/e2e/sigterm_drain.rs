//! Scenario 5: SIGTERM while a job is computing. The worker stops taking jobs, finishes the job
//! in hand within its drain timeout and exits 0; the job is done exactly once.

use crate::support::*;
use dispr_proto::{JobResult, ResultBody, keys};
use std::time::Duration;

const SAMPLES: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_job_in_hand_and_exits_zero() {
    let ctx = Ctx::new("e2e-sigterm");
    let cells = write_cells(&ctx.dataset(), 2).await;
    // float32 volumes: the slowest format to write, so the job in hand is still running when the
    // signal arrives (with the compact default a job can end, and the next start, before it does).
    ctx.submit(SAMPLES, &["--volumes", "float32"]);

    let mut worker = ctx.spawn_worker("draining", &["--drain-timeout-secs", "60"]);
    let output = ctx.output();
    let first = &cells[0];
    let volumes = format!("{}volumes/{first}/", keys::run_prefix(&ctx.run));
    wait_for(Duration::from_secs(60), "the worker to be inside the first job", || async {
        count(&output, &volumes).await > 0
    })
    .await;
    worker.signal("TERM");
    let code = worker.wait_exit(Duration::from_secs(70));
    assert_eq!(code, Some(Some(0)), "the worker did not drain and exit 0 in time:\n{}", worker.log_text());

    // The job in hand is done, once; the job it had not started is still queued.
    assert!(output.exists(&keys::features(&ctx.run, first)).await.unwrap(), "{}", worker.log_text());
    assert!(
        !output.exists(&keys::features(&ctx.run, &cells[1])).await.unwrap(),
        "it took no new job after SIGTERM"
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
