//! Scenario 2: a worker killed with SIGKILL in the middle of a job. Its unacked job is
//! redelivered to the other worker and the run completes with nothing missing, and nothing
//! written twice differently (the outputs equal a fresh `local` run's).

use crate::support::*;
use dispr_proto::{JobResult, ResultBody, keys};
use std::time::Duration;

const CELLS: usize = 12;
/// Many samples per cell make a job long enough (many volume uploads) to be killed inside.
const SAMPLES: u32 = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_job_is_redelivered_and_the_run_completes() {
    let ctx = Ctx::new("e2e-sigkill");
    let cells = write_cells(&ctx.dataset(), CELLS).await;
    ctx.submit(SAMPLES, &[]);

    let mut victim = ctx.spawn_worker("victim", &[]);
    let output = ctx.output();
    // Kill it as soon as it has written a volume of a cell whose features do not exist yet: it
    // is inside that job.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let cell = 'found: loop {
        for cell in &cells {
            let volumes = count(&output, &format!("{}volumes/{cell}/", keys::run_prefix(&ctx.run))).await;
            if volumes > 0
                && volumes < SAMPLES as usize
                && !output.exists(&keys::features(&ctx.run, cell)).await.unwrap_or(true)
            {
                break 'found cell.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the victim never got inside a job:\n{}",
            victim.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    victim.signal("KILL");
    assert_eq!(victim.wait_exit(Duration::from_secs(10)), Some(None), "killed by a signal");

    let mut rescuer = ctx.spawn_worker("rescuer", &[]);
    wait_for(Duration::from_secs(180), "every cell's features", || async {
        count(&output, &keys::features_prefix(&ctx.run)).await == CELLS
    })
    .await;
    assert!(
        output.exists(&keys::features(&ctx.run, &cell)).await.unwrap(),
        "the interrupted cell {cell} was finished"
    );
    rescuer.signal("TERM");
    assert_eq!(rescuer.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", rescuer.log_text());

    // The job the victim held was delivered again, to the rescuer, which finished it.
    let conn = amqp(&ctx.env).await;
    let [_, results, _, _] = ctx.queue_names();
    let results: Vec<JobResult> =
        drain(&conn, &results).await.iter().filter_map(|b| JobResult::decode(b).ok()).collect();
    let victim_name = format!("-{}", victim.pid());
    let redelivered = results.iter().any(|started| {
        matches!(started.body, ResultBody::Started { .. })
            && started.worker.ends_with(&victim_name)
            && !results.iter().any(|r| {
                r.job_id == started.job_id
                    && r.worker == started.worker
                    && matches!(r.body, ResultBody::JobDone { .. })
            })
            && results.iter().any(|r| {
                r.job_id == started.job_id
                    && r.worker != started.worker
                    && matches!(r.body, ResultBody::JobDone { .. })
            })
    });
    assert!(redelivered, "no job started by the victim was finished by the rescuer: {results:#?}");

    let distributed = run_outputs(&output, &ctx.run).await;
    // Per cell: its features, its samples and the ensemble's probability and std volumes.
    assert_eq!(distributed.len(), CELLS * (1 + SAMPLES as usize + 2), "nothing missing, no failures");
    assert_eq!(distributed, local_reference(&ctx, &cells, SAMPLES).await, "nothing written differently");
    delete_queues(&conn, &ctx).await;
}
