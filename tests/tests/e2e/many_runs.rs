//! Scenario 8: the cases a shared cluster meets every day (issue 25). Workers that shut down
//! mid-job hand it back without it counting as a failure; a job that keeps killing its workers
//! is dead-lettered and its run's `watch` ends with the failure code, naming the cell; two runs
//! on one queue prefix, each with its own watch (and a second watch of one of them), see only
//! their own results; `cleanup` removes a finished run's queue and refuses an unfinished one;
//! a mismatched delivery limit is one clear line.

use crate::support::*;
use dispr_proto::{ResultBody, keys};
use std::time::Duration;

/// Samples per cell: enough volume uploads that a job lasts well past a signal.
const LONG_JOB_SAMPLES: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_handed_back_six_times_by_draining_workers_completes_and_is_not_dead_lettered() {
    let ctx = Ctx::new("e2e-handback");
    let cells = write_cells(&ctx.dataset(), 1).await;
    ctx.submit(LONG_JOB_SAMPLES, &[]);
    let conn = amqp(&ctx.env).await;
    let mut results = follow_results(&conn, &ctx).await;

    // Six workers, each stopped (SIGTERM) as soon as it starts the job, with a drain timeout far
    // shorter than the job: each hands it back. The delivery limit is 3.
    for round in 1..=6u32 {
        let mut worker = ctx.spawn_worker(&format!("drained-{round}"), &["--drain-timeout-secs", "0"]);
        let me = format!("-{}", worker.pid());
        next_result(&mut results, Duration::from_secs(60), "Started from the new worker", |r| {
            r.worker.ends_with(&me) && matches!(r.body, ResultBody::Started { .. })
        })
        .await;
        worker.signal("TERM");
        assert_eq!(worker.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", worker.log_text());
        let handed = next_result(&mut results, Duration::from_secs(10), "HandedBack", |r| {
            r.worker.ends_with(&me) && matches!(r.body, ResultBody::HandedBack { .. })
        })
        .await;
        assert_eq!(
            handed.body,
            ResultBody::HandedBack { handbacks: round },
            "the count is carried by the job"
        );
        assert!(worker.log_text().contains("not a failure"), "{}", worker.log_text());
    }

    // A worker that keeps it finishes it.
    let mut keeper = ctx.spawn_worker("keeper", &[]);
    let output = ctx.output();
    wait_for(Duration::from_secs(120), "the cell's features", || async {
        output.exists(&keys::features(&ctx.run, &cells[0])).await.unwrap_or(false)
    })
    .await;
    let [_, _, dead_queue, _] = ctx.queue_names();
    assert_eq!(depth(&conn, &dead_queue).await, 0, "nothing was dead-lettered");
    assert_eq!(count(&output, &keys::failures_prefix(&ctx.run)).await, 0, "nothing failed");

    // status shows the hand-backs, and the run as complete.
    let status = ctx.run_coordinator(&[
        "status",
        "--json",
        "--output",
        &ctx.output_uri(),
        "--run-id",
        ctx.run.as_str(),
    ]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    assert_eq!(status["handbacks"]["jobs"], 1, "{status}");
    assert_eq!(status["handbacks"]["most"], 6, "{status}");
    assert_eq!(status["complete"], true, "{status}");
    keeper.signal("TERM");
    assert_eq!(keeper.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", keeper.log_text());
    delete_queues(&conn, &ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_workers_is_dead_lettered_and_watch_exits_with_the_failure_code() {
    let ctx = Ctx::new("e2e-deadletter");
    let cells = write_cells(&ctx.dataset(), 1).await;
    ctx.submit(LONG_JOB_SAMPLES, &[]);
    let watch = spawn_watch(&ctx, &[]);
    let conn = amqp(&ctx.env).await;
    let mut results = follow_results(&conn, &ctx).await;

    // Killed 4 times inside the job: the 4th return passes the delivery limit of 3.
    for round in 1..=4 {
        let mut victim = ctx.spawn_worker(&format!("victim-{round}"), &[]);
        let me = format!("-{}", victim.pid());
        next_result(&mut results, Duration::from_secs(60), "Started from the new worker", |r| {
            r.worker.ends_with(&me) && matches!(r.body, ResultBody::Started { .. })
        })
        .await;
        victim.signal("KILL");
        assert_eq!(victim.wait_exit(Duration::from_secs(10)), Some(None), "killed by a signal");
    }

    let out = wait_output(watch, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "every cell failed: exit 4\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(cells[0].as_str()), "watch names the cell: {stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("watch --json prints JSON");
    assert_eq!(summary["dead_lettered_jobs"], 1, "{summary}");
    let reason = summary["failures"]["groups"][0]["reason"].as_str().expect("a failure reason").to_string();
    assert!(reason.contains("delivery limit") && reason.contains("--requeue"), "{reason}");

    // The store says so too, so status and report agree with the watch.
    let record = ctx.output().get(&keys::failure(&ctx.run, &cells[0])).await.expect("a failure record");
    let record = dispr_proto::CellFailure::decode(&record).expect("a failure record");
    assert!(record.reason.contains("dead-lettered"), "{}", record.reason);

    // Requeued from the dead-letter queue, the job runs again and the cell is no longer failed.
    let requeued = ctx.run_coordinator(&["dead-letters", "--run-id", ctx.run.as_str(), "--requeue"]);
    assert!(requeued.status.success(), "{}", String::from_utf8_lossy(&requeued.stderr));
    assert!(
        !ctx.output().exists(&keys::failure(&ctx.run, &cells[0])).await.unwrap(),
        "requeueing forgets the dead-lettered failure"
    );
    let mut rescuer = ctx.spawn_worker("rescuer", &[]);
    let watch = wait_output(spawn_watch(&ctx, &[]), Duration::from_secs(120));
    assert_eq!(watch.status.code(), Some(0), "{}", String::from_utf8_lossy(&watch.stderr));
    rescuer.signal("TERM");
    assert_eq!(rescuer.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", rescuer.log_text());
    delete_queues(&conn, &ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_prefix_each_see_only_their_own_results() {
    let a = Ctx::new("e2e-two-runs-a");
    let mut b = Ctx::new("e2e-two-runs-b");
    b.queue_prefix = a.queue_prefix.clone();
    let (cells_a, cells_b) = (10, 14);
    write_cells(&a.dataset(), cells_a).await;
    write_cells(&b.dataset(), cells_b).await;
    a.submit(2, &[]);
    b.submit(2, &[]);
    // A second watch of run a must not halve the first one's view.
    let watches =
        [(spawn_watch(&a, &[]), cells_a), (spawn_watch(&a, &[]), cells_a), (spawn_watch(&b, &[]), cells_b)];
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (workers, prefetch) = (2, 1);
    let mut running: Vec<Worker> =
        (0..workers).map(|i| a.spawn_worker(&format!("w{i}"), &["--prefetch", "1"])).collect();

    for (watch, cells) in watches {
        let out = wait_output(watch, Duration::from_secs(180));
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let summary: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("watch --json prints JSON");
        let per_worker: u64 = summary["cells_by_worker"]
            .as_array()
            .expect("cells by worker")
            .iter()
            .map(|pair| pair[1].as_u64().expect("a count"))
            .sum();
        assert_eq!(per_worker, cells as u64, "a watch counts its own run's cells, each once: {summary}");
        let peak = summary["peak_jobs_in_flight"].as_u64().expect("the peak");
        assert!(peak >= 1 && peak <= workers * prefetch, "in flight at most workers x prefetch: {summary}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("other runs"), "no foreign results");
    }
    for w in &mut running {
        w.signal("TERM");
        assert_eq!(w.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", w.log_text());
    }
    let conn = amqp(&a.env).await;
    delete_queues(&conn, &a).await;
    delete_queues(&conn, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_a_finished_runs_queue_and_refuses_an_unfinished_one() {
    let ctx = Ctx::new("e2e-cleanup");
    write_cells(&ctx.dataset(), 2).await;
    ctx.submit(1, &[]);
    let conn = amqp(&ctx.env).await;
    let [_, run_queue, _, _] = ctx.queue_names();
    let args = ["cleanup", "--output", &ctx.output_uri(), "--run-id", ctx.run.as_str()];

    let refused = ctx.run_coordinator(&args);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("not finished") && said.contains("--force"), "{said}");
    assert_eq!(depth(&conn, &run_queue).await, 0, "the queue is still there (a passive declare succeeds)");

    // Finished: the queue goes.
    let mut worker = ctx.spawn_worker("w", &[]);
    let output = ctx.output();
    wait_for(Duration::from_secs(60), "both cells", || async {
        count(&output, &keys::features_prefix(&ctx.run)).await == 2
    })
    .await;
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", worker.log_text());
    let removed = ctx.run_coordinator(&args);
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    assert!(String::from_utf8_lossy(&removed.stdout).contains("deleted its queue"));
    let ch = conn.create_channel().await.unwrap();
    let gone = ch
        .queue_declare(
            run_queue.as_str().into(),
            lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
            Default::default(),
        )
        .await;
    assert!(gone.is_err(), "the run's queue was deleted");
    delete_queues(&conn, &ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_delivery_limit_is_one_line_that_says_what_to_align() {
    let ctx = Ctx::new("e2e-limit");
    write_cells(&ctx.dataset(), 1).await;
    ctx.submit(1, &[]);
    let out = ctx.run_coordinator(&[
        "status",
        "--output",
        &ctx.output_uri(),
        "--run-id",
        ctx.run.as_str(),
        "--delivery-limit",
        "5",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("x-delivery-limit")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("--delivery-limit") && line.contains("Do not delete"), "{line}");
    assert!(!line.contains("delete it or use another"), "no advice to throw jobs away: {line}");
    let conn = amqp(&ctx.env).await;
    delete_queues(&conn, &ctx).await;
}
