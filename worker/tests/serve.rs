//! `serve` against the real RabbitMQ (DISPR_TEST_AMQP_URL, by default the broker at
//! 127.0.0.1:5672), with queues of their own so that tests run in parallel and twice in a row.

mod common;

use common::*;
use dispr_amqp as amqp;
use dispr_proto::queues::QueueNames;
use dispr_proto::{CellFeatures, CellId, JobResult, ResultBody, RunId, keys};
use dispr_worker::pipeline::{JobRunner, RunnerConfig};
use dispr_worker::serve::{ServeConfig, serve};
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn amqp_url() -> String {
    std::env::var("DISPR_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t-{test}-{}-{nanos}.", std::process::id())
}

async fn delete_queues(ch: &lapin::Channel, q: &QueueNames, runs: &[&str]) {
    let run_queues = runs.iter().map(|r| q.run_results(&RunId::new(*r).unwrap()));
    for name in [q.jobs.clone(), q.dead.clone()].into_iter().chain(run_queues) {
        let _ = ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await;
    }
    for exchange in [&q.runs_exchange, &q.dead_letter_exchange] {
        let _ = ch.exchange_delete(exchange.as_str().into(), Default::default()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_job_reports_it_and_dead_letters_what_is_not_a_job() {
    let url = amqp_url();
    let queues = QueueNames::with_prefix(&unique_prefix("serve"));
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    write_cell(&data, "disc001", &good_image(), &good_mask());
    write_cell(&data, "disc002", &good_image(), &tiff_u8(64, 64, |_, _| 0));
    let job = job("serve1", &data, &out, &["disc001", "disc002"], 2);

    let conn = amqp::connect(&url, "worker-test-publisher").await.expect("RabbitMQ at DISPR_TEST_AMQP_URL");
    let ch = amqp::confirm_channel(&conn).await.unwrap();
    amqp::declare_topology(&ch, &queues, 3).await.unwrap();
    // Declaring twice is harmless (every worker and coordinator does it).
    amqp::declare_topology(&ch, &queues, 3).await.unwrap();
    let run = RunId::new("serve1").unwrap();
    amqp::declare_run(&ch, &queues, &run).await.unwrap();
    amqp::publish_confirmed(&ch, &queues.jobs, b"this is not json").await.unwrap();
    amqp::publish_confirmed(&ch, &queues.jobs, &job.encode()).await.unwrap();

    let config = ServeConfig {
        amqp_url: url.clone(),
        queues: queues.clone(),
        prefetch: 2,
        drain_timeout: Duration::from_secs(10),
        delivery_limit: 3,
        worker: "worker-test".into(),
        max_jobs: None,
        idle_timeout: None,
    };
    let mut runner_config = RunnerConfig::new("worker-test");
    runner_config.model_cache_dir = dir.path().join("cache");
    let runner = JobRunner::new(runner_config, Default::default());
    let shutdown = CancellationToken::new();
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { serve(&config, &runner, &shutdown).await })
    };

    // Results until the job is done.
    let results_ch = conn.create_channel().await.unwrap();
    let mut consumer = results_ch
        .basic_consume(
            queues.run_results(&run).as_str().into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut results = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(d)) = consumer.next().await {
            d.ack(BasicAckOptions::default()).await.unwrap();
            let r = JobResult::decode(&d.data).unwrap();
            let last = matches!(r.body, ResultBody::JobDone { .. });
            results.push(r);
            if last {
                break;
            }
        }
    })
    .await
    .expect("the job is done within a minute");
    assert!(
        results
            .iter()
            .all(|r| r.run_id.as_str() == "serve1" && r.worker == "worker-test" && r.job_id == job.job_id)
    );
    let bodies: Vec<&ResultBody> = results.iter().map(|r| &r.body).collect();
    assert!(matches!(bodies[0], ResultBody::Started { cells: 2 }), "{bodies:?}");
    assert!(
        bodies.iter().any(|b| matches!(b, ResultBody::CellDone { cell, .. } if cell.as_str() == "disc001"))
    );
    assert!(bodies.iter().any(|b| matches!(b, ResultBody::CellFailed { cell, reason } if cell.as_str() == "disc002" && reason.contains("empty"))));
    let features = std::fs::read(out.join(keys::features(&run, &CellId::new("disc001").unwrap()))).unwrap();
    assert_eq!(CellFeatures::decode(&features).unwrap().samples.len(), 2);

    // The message that is not a job went to the dead-letter queue, untouched.
    let started = Instant::now();
    let dead = loop {
        if let Some(m) =
            ch.basic_get(queues.dead.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap()
        {
            break m;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "nothing reached {}", queues.dead);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.delivery.data, b"this is not json");

    // The job was acked: nothing is left on the jobs queue.
    let left = ch.basic_get(queues.jobs.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap();
    assert!(left.is_none(), "the job was acked");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("serve stops")
        .unwrap()
        .expect("clean stop");
    delete_queues(&ch, &queues, &["serve1"]).await;
}

/// A free TCP port on loopback (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` over plain HTTP/1.0: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_probes_and_metrics_and_exits_0_on_sigterm() {
    let queues = QueueNames::with_prefix(&unique_prefix("bin"));
    let prefix = queues.jobs.trim_end_matches("dispr.jobs").to_string();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let secret_url = amqp_url();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dispr-worker"))
        .args(["serve", "--queue-prefix", &prefix, "--http-addr", &format!("127.0.0.1:{port}")])
        .env("DISPR_AMQP_URL", &secret_url)
        .env("DISPR_MODEL_CACHE_DIR", dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let started = Instant::now();
    loop {
        if let Some((200, _)) = http_get(port, "/readyz") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the worker never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    let (status, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("dispr_worker_jobs_in_flight 0"), "{metrics}");

    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("SIGTERM"), "{log}");
    // Credentials never reach the logs.
    if let Some((_, rest)) = secret_url.split_once("://")
        && let Some((creds, _)) = rest.rsplit_once('@')
    {
        assert!(!log.contains(creds), "credentials leaked into the log:\n{log}");
    }

    let conn = amqp::connect(&amqp_url(), "worker-test-cleanup").await.unwrap();
    delete_queues(&conn.create_channel().await.unwrap(), &queues, &[]).await;
}

/// Waits up to `limit` for the child to exit; its exit code.
async fn exit_code(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(started.elapsed() < limit, "the worker did not exit within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_jobs_1_the_binary_runs_one_job_and_exits_leaving_the_rest_untouched() {
    let queues = QueueNames::with_prefix(&unique_prefix("maxjobs"));
    let prefix = queues.jobs.trim_end_matches("dispr.jobs").to_string();
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    let cells = ["m1", "m2", "m3"];
    for cell in cells {
        write_cell(&data, cell, &good_image(), &good_mask());
    }
    let conn = amqp::connect(&amqp_url(), "worker-test-publisher").await.unwrap();
    let ch = amqp::confirm_channel(&conn).await.unwrap();
    amqp::declare_topology(&ch, &queues, 3).await.unwrap();
    for (i, cell) in cells.iter().enumerate() {
        let mut job = job("maxjobs", &data, &out, &[cell], 1);
        job.job_id = format!("job{i}");
        amqp::publish_confirmed(&ch, &queues.jobs, &job.encode()).await.unwrap();
    }

    // A prefetch above the limit must not pull the other jobs in (and return them later).
    let run_worker = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dispr-worker"))
            .args(["serve", "--queue-prefix", &prefix, "--http-addr", "127.0.0.1:0", "--prefetch", "4"])
            .args(extra)
            .env("DISPR_AMQP_URL", amqp_url())
            .env("DISPR_MODEL_CACHE_DIR", dir.path().join("cache"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = run_worker(&["--max-jobs", "1"]);
    assert_eq!(exit_code(&mut child, Duration::from_secs(60)).await, Some(0));
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("--max-jobs"), "says why it exits:\n{log}");

    let run = RunId::new("maxjobs").unwrap();
    let done: Vec<&str> = cells
        .into_iter()
        .filter(|c| out.join(keys::features(&run, &CellId::new(*c).unwrap())).exists())
        .collect();
    assert_eq!(done, ["m1"], "exactly the first job ran");
    // The other two wait on the queue, never delivered (a returned message would be marked).
    for _ in 0..2 {
        let m = ch.basic_get(queues.jobs.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap();
        let m = m.expect("two jobs left on the queue");
        assert!(!m.delivery.redelivered, "a job the worker did not run was delivered to it");
    }

    // On an empty queue, --idle-timeout-secs ends the wait.
    let mut idle = run_worker(&["--max-jobs", "1", "--idle-timeout-secs", "1"]);
    assert_eq!(exit_code(&mut idle, Duration::from_secs(30)).await, Some(0));
    let mut log = String::new();
    idle.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("--idle-timeout-secs"), "says why it exits:\n{log}");
    delete_queues(&ch, &queues, &[]).await;
}
