//! Scenario 3: poison inputs. A truncated TIFF, a mask of the wrong size, an empty mask and a
//! cell whose files are missing each fail their cell with a recorded, clear reason; a message of an unknown
//! schema version and one that is not JSON are dead-lettered; the good cells complete and no
//! worker dies.

use crate::support::*;
use dispr_proto::{CellFailure, CellId, Job, SCHEMA_VERSION, keys};
use std::time::Duration;

const GOOD: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_inputs_are_recorded_and_the_rest_completes() {
    let ctx = Ctx::new("e2e-poison");
    let dataset = ctx.dataset();
    write_cells(&dataset, GOOD).await;
    let id = |s: &str| CellId::new(s).expect("valid id");
    let (truncated, wrong_size, empty, missing) =
        (id("bad-truncated"), id("bad-wrongsize"), id("bad-emptymask"), id("bad-noimage"));
    let (image, mask) = cell_tiffs(1);
    // Truncated: the first half of a valid TIFF.
    dataset.put(&keys::dataset_image(&truncated), image[..image.len() / 2].to_vec().into()).await.unwrap();
    dataset.put(&keys::dataset_mask(&truncated), mask.into()).await.unwrap();
    // A 48x64 mask.
    dataset.put(&keys::dataset_image(&wrong_size), image.clone().into()).await.unwrap();
    dataset
        .put(&keys::dataset_mask(&wrong_size), encode_2d(48, 64, vec![255; 48 * 64]).into())
        .await
        .unwrap();
    // An all-zero mask.
    dataset.put(&keys::dataset_image(&empty), image.clone().into()).await.unwrap();
    dataset.put(&keys::dataset_mask(&empty), encode_2d(64, 64, vec![0; 64 * 64]).into()).await.unwrap();
    // A cell that is not in the dataset (no image, no mask) is published by hand below: `submit`
    // refuses a dataset with a mask but no image, so only a job made elsewhere can name one.

    let report = ctx.submit(1, &[]);
    assert_eq!(report["report"]["cells_published"], GOOD + 3);

    // Hand-made messages on the same jobs queue: a job naming the cell without an image, a job of
    // a future schema version, and bytes that are not JSON.
    let conn = amqp(&ctx.env).await;
    let [jobs_queue, _, dead_queue, _] = ctx.queue_names();
    let job = Job {
        schema_version: SCHEMA_VERSION,
        run_id: ctx.run.clone(),
        job_id: "by-hand".into(),
        cells: vec![missing.clone()],
        dataset_uri: ctx.dataset_uri(),
        output_uri: ctx.output_uri(),
        model: None,
        sampler: dispr_proto::SamplerSpec::Null,
        samples_per_cell: 1,
        seed: 11,
        volumes: dispr_proto::VolumeFormat::Float32,
    };
    let mut future = serde_json::to_value(&job).unwrap();
    future["schema_version"] = 99.into();
    let ch = conn.create_channel().await.unwrap();
    for body in [job.encode(), serde_json::to_vec(&future).unwrap(), b"\x00\x01 not json".to_vec()] {
        ch.basic_publish(
            "".into(),
            jobs_queue.as_str().into(),
            Default::default(),
            &body,
            Default::default(),
        )
        .await
        .unwrap();
    }

    let mut worker = ctx.spawn_worker("a", &[]);
    let output = ctx.output();
    let (features, failures) = (keys::features_prefix(&ctx.run), keys::failures_prefix(&ctx.run));
    wait_for(Duration::from_secs(120), "the good cells and the failures", || async {
        count(&output, &features).await == GOOD && count(&output, &failures).await == 4
    })
    .await;
    wait_for(Duration::from_secs(60), "the two undecodable messages in the dead-letter queue", || async {
        depth(&conn, &dead_queue).await == 2
    })
    .await;
    assert!(worker.alive(), "the worker died on bad input:\n{}", worker.log_text());

    // Each failure says what was wrong.
    for (cell, words) in [
        (&truncated, &["image", "truncated"][..]),
        (&wrong_size, &["48", "64x64"][..]),
        (&empty, &["empty"][..]),
        (&missing, &["image"][..]),
    ] {
        let bytes = output.get(&keys::failure(&ctx.run, cell)).await.expect("a failure record");
        let failure = CellFailure::decode(&bytes).expect("a failure record");
        for word in words {
            assert!(
                failure.reason.contains(word),
                "the reason for {cell} lacks {word:?}: {}",
                failure.reason
            );
        }
        assert!(!failure.error_chain.is_empty());
    }

    // dead-letters lists both, with the reason RabbitMQ gives, and leaves them in place.
    let listed = ctx.run_coordinator(&["dead-letters", "--json"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: serde_json::Value =
        serde_json::from_slice(&listed.stdout).expect("dead-letters --json is JSON");
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    for d in listed {
        assert_eq!(d["reason"], "rejected", "{d}");
        let why = d["undecodable"].as_str().expect("neither is a job");
        assert!(why.contains("schema version 99") || why.contains("not valid JSON"), "{why}");
    }
    assert_eq!(depth(&conn, &dead_queue).await, 2, "listing must not consume");

    // status counts the failures as finished.
    let status = ctx.run_coordinator(&[
        "status",
        "--json",
        "--output",
        &ctx.output_uri(),
        "--run-id",
        ctx.run.as_str(),
    ]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    assert_eq!(status["cells"]["done"], GOOD);
    assert_eq!(status["cells"]["failed"], 3, "the cell without an image is not in the dataset's listing");

    worker.signal("TERM");
    assert_eq!(worker.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", worker.log_text());
    ctx.assert_no_secrets_in_logs();
    delete_queues(&conn, &ctx).await;
}
