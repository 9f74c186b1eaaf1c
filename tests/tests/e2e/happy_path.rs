//! Scenario 1: a 20-cell run with two worker processes completes; every output exists once; the
//! outputs equal those of a `local` run with the same manifest, byte for byte; no secret of the
//! test environment appears in any log.

use crate::support::*;
use dispr_proto::{CellFeatures, keys};
use std::time::Duration;

const CELLS: usize = 20;
const SAMPLES: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cells_two_workers_equal_a_local_run() {
    let ctx = Ctx::new("e2e-happy");
    let cells = write_cells(&ctx.dataset(), CELLS).await;

    let report = ctx.submit(SAMPLES, &["--cells-per-job", "3"]);
    assert_eq!(report["report"]["cells_published"], CELLS);
    assert_eq!(report["report"]["jobs_published"], CELLS.div_ceil(3));

    // watch follows the run from the results queue and exits by itself when it is complete.
    let watch = ctx
        .coordinator(&[
            "watch",
            "--json",
            "--http-addr",
            "127.0.0.1:0",
            "--output",
            &ctx.output_uri(),
            "--run-id",
            ctx.run.as_str(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting watch");
    // Its consumer must exist before the first result: give it a moment to connect.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut workers = [ctx.spawn_worker("a", &[]), ctx.spawn_worker("b", &[])];
    let output = ctx.output();
    let features = keys::features_prefix(&ctx.run);
    wait_for(Duration::from_secs(120), "every cell's features", || async {
        count(&output, &features).await == CELLS
    })
    .await;

    let watched = wait_output(watch, Duration::from_secs(60));
    assert!(watched.status.success(), "watch failed:\n{}", String::from_utf8_lossy(&watched.stderr));
    std::fs::write(ctx.logs.path().join("coordinator-watch.log"), &watched.stderr).unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&watched.stdout).expect("watch --json prints JSON");
    assert_eq!(summary["done"], CELLS, "{summary}");
    let by_worker: u64 =
        summary["cells_by_worker"].as_array().unwrap().iter().map(|w| w[1].as_u64().unwrap()).sum();
    assert_eq!(by_worker, CELLS as u64, "every cell's result reached watch once: {summary}");

    // status agrees, from the store and the queue.
    let status_args = ["status", "--json", "--output", &ctx.output_uri(), "--run-id", ctx.run.as_str()];
    let status = ctx.run_coordinator(&status_args);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    assert_eq!(status["cells"]["done"], CELLS);
    assert_eq!(status["complete"], true);
    assert_eq!(status["queues"]["jobs"]["consumers"], 2, "{status}");

    for w in &mut workers {
        w.signal("TERM");
        assert_eq!(
            w.wait_exit(Duration::from_secs(30)),
            Some(Some(0)),
            "a worker did not drain and exit 0:\n{}",
            w.log_text()
        );
    }

    // Every output exists once: one features file per cell, SAMPLES volumes per cell and the
    // ensemble's probability and standard-deviation volumes, no failure.
    let distributed = run_outputs(&output, &ctx.run).await;
    let expected: usize = CELLS * (1 + SAMPLES as usize + 2);
    assert_eq!(distributed.len(), expected, "outputs: {:?}", distributed.keys().collect::<Vec<_>>());
    for cell in &cells {
        let record =
            CellFeatures::decode(&distributed[&format!("features/{cell}.json")]).expect("a features record");
        assert_eq!(record.samples.len(), SAMPLES as usize);
        for k in 0..SAMPLES {
            assert!(distributed.contains_key(&format!("volumes/{cell}/{k}.tif")));
        }
        assert!(distributed.contains_key(&format!("volumes/{cell}/probability.tif")));
        assert!(distributed.contains_key(&format!("volumes/{cell}/std.tif")));
        assert_eq!(record.uncertainty.map(|u| u.samples), Some(SAMPLES));
    }

    // The same manifest run by `local` on a copy of the dataset in a folder gives the same bytes.
    let local = local_reference(&ctx, &cells, SAMPLES).await;
    assert_eq!(local.len(), distributed.len());
    for (key, bytes) in &distributed {
        assert!(local.get(key) == Some(bytes), "{key} differs between the distributed and the local run");
    }

    ctx.assert_no_secrets_in_logs();
    delete_queues(&amqp(&ctx.env).await, &ctx).await;
}
