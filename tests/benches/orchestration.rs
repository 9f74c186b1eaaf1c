//! Orchestration benchmarks: they print figures and assert nothing about speed.
//!
//! 1. `submit` of 100,000 cells (the real binary, a folder dataset of empty images, batch markers
//!    to S3, jobs to RabbitMQ with confirms): wall time and peak memory, extrapolated to
//!    1,000,000 cells from the difference between two sizes.
//! 2. End to end with the null sampler through RabbitMQ and s3s-fs with 1 and 2 `dispr-worker`
//!    processes: cells per second, and the per-cell overhead split into queue (publish, deliver,
//!    ack and the result messages), S3 (the cell's object operations, timed alone) and
//!    bookkeeping (the rest: decoding, the null shape, features, logs).
//!
//! Run against the services of scripts/test.sh, in release:
//!   scripts/test.sh --release -p dispr-tests --bench orchestration -- --bench
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a quick smoke run of both.

use dispr_coordinator::broker::{Broker, BrokerArgs};
use dispr_proto::{CellId, keys};
use dispr_tests::TestEnv;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `bench-<name>-<8 hex digits>`: a prefix no earlier run used.
fn unique(name: &str) -> String {
    dispr_tests::unique_name(&format!("bench-{name}"))
}

fn bin(name: &str) -> PathBuf {
    dispr_tests::workspace_bin(name)
}

/// Runs a command to its end; returns (seconds, peak resident memory in MiB) from polling its
/// /proc status (VmHWM only grows, so the last reading is the peak to within the poll interval).
fn measure(mut cmd: Command) -> (f64, f64, String) {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting the command");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            peak_kib = peak_kib.max(kib);
        }
        if child.try_wait().expect("waiting").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("the command's output");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the command failed:\n{text}");
    (started.elapsed().as_secs_f64(), peak_kib as f64 / 1024.0, text)
}

/// A folder dataset of `n` empty images: `submit` only lists them.
fn empty_dataset(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir(dir.path().join("image")).unwrap();
    for i in 0..n {
        std::fs::File::create(dir.path().join(format!("image/c{i:07}.tif"))).unwrap();
    }
    dir
}

fn broker_args(url: &str, prefix: &str) -> BrokerArgs {
    BrokerArgs { amqp_url: url.into(), queue_prefix: prefix.into(), delivery_limit: 3 }
}

async fn delete_queues(url: &str, prefix: &str) {
    let broker = Broker::connect(&broker_args(url, prefix), "bench cleanup").await.expect("the broker");
    let ch = broker.conn.create_channel().await.unwrap();
    for q in [&broker.names.jobs, &broker.names.results, &broker.names.dead] {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
    let _ = ch.exchange_delete(broker.names.dead_letter_exchange.as_str().into(), Default::default()).await;
}

/// Submit of `n` cells with the real binary: (seconds, peak MiB).
async fn submit(env: &TestEnv, n: usize) -> (f64, f64) {
    let data = empty_dataset(n);
    let prefix = format!("{}.", unique("submit"));
    let output = format!("s3://{}/{}", env.s3_bucket, unique("submit"));
    let mut cmd = Command::new(bin("dispr-coordinator"));
    cmd.args(["submit", "--sampler", "null", "--samples", "1", "--run-id", "bench"])
        .args(["--dataset", &data.path().to_string_lossy(), "--output", &output])
        .envs(env.child_env())
        .env("DISPR_QUEUE_PREFIX", &prefix);
    let (secs, mib, text) = measure(cmd);
    assert!(text.contains(&format!("published {n} jobs")), "{text}");
    delete_queues(&env.amqp_url, &prefix).await;
    (secs, mib)
}

/// End to end with `workers` worker processes: cells per second from the first publish to the
/// last features file.
async fn end_to_end(env: &TestEnv, cells: usize, workers: usize) -> f64 {
    let name = unique("e2e");
    let prefix = format!("{name}.");
    let root = format!("s3://{}/{name}", env.s3_bucket);
    let dataset = env.open(&format!("{root}/data"));
    let (image, mask) = cell_tiffs();
    for i in 0..cells {
        let cell = CellId::new(format!("c{i:05}")).unwrap();
        dataset.put(&keys::dataset_image(&cell), image.clone().into()).await.unwrap();
        dataset.put(&keys::dataset_mask(&cell), mask.clone().into()).await.unwrap();
    }
    let mut vars = env.child_env();
    vars.push(("DISPR_QUEUE_PREFIX", prefix.clone()));
    // Workers first, so they are connected and waiting when jobs arrive.
    let mut children: Vec<_> = (0..workers)
        .map(|_| {
            Command::new(bin("dispr-worker"))
                .args(["serve", "--http-addr", "127.0.0.1:0"])
                .envs(vars.iter().cloned())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting a worker")
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let out = Command::new(bin("dispr-coordinator"))
        .args(["submit", "--sampler", "null", "--samples", "1", "--run-id", "bench"])
        .args(["--dataset", &format!("{root}/data"), "--output", &format!("{root}/out")])
        .envs(vars.iter().cloned())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let output = env.open(&format!("{root}/out"));
    let run = dispr_proto::RunId::new("bench").unwrap();
    loop {
        let done = output.list(&keys::features_prefix(&run)).await.unwrap().len();
        if done >= cells {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the run did not finish in 10 minutes ({done} cells)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    for child in &mut children {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    delete_queues(&env.amqp_url, &prefix).await;
    cells as f64 / secs
}

/// Seconds per cell of the object operations a null-sampler cell does: two gets, an existence
/// check, one 1 MiB volume put and a put-if-absent of the features record.
async fn s3_per_cell(env: &TestEnv, cells: usize) -> f64 {
    let store = env.open(&format!("s3://{}/{}", env.s3_bucket, unique("s3")));
    let (image, mask) = cell_tiffs();
    store.put("image.tif", image.into()).await.unwrap();
    store.put("mask.tif", mask.into()).await.unwrap();
    let volume = bytes::Bytes::from(vec![7u8; 64 * 64 * 64 * 4 + 1024]);
    let features = bytes::Bytes::from(vec![b' '; 6 * 1024]);
    let started = Instant::now();
    for i in 0..cells {
        store.get("image.tif").await.unwrap();
        store.get("mask.tif").await.unwrap();
        store.exists(&format!("features/{i}.json")).await.unwrap();
        store.put(&format!("volumes/{i}/0.tif"), volume.clone()).await.unwrap();
        store.put_if_absent(&format!("features/{i}.json"), features.clone()).await.unwrap();
    }
    started.elapsed().as_secs_f64() / cells as f64
}

/// Seconds per job of the queue traffic of a job: its publish (confirmed), delivery and ack, and
/// the four result messages a worker publishes for it (started, cell done, job done, confirmed).
async fn queue_per_job(env: &TestEnv, jobs: usize) -> f64 {
    use futures::StreamExt;
    use lapin::options::*;
    let prefix = format!("{}.", unique("queue"));
    let broker = Broker::connect(&broker_args(&env.amqp_url, &prefix), "bench queue").await.unwrap();
    let publisher = dispr_worker::amqp::confirm_channel(&broker.conn).await.unwrap();
    let consumer_ch = dispr_worker::amqp::confirm_channel(&broker.conn).await.unwrap();
    consumer_ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consumer_ch
        .basic_consume(
            broker.names.jobs.as_str().into(),
            "bench".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let body = vec![b'x'; 400];
    let started = Instant::now();
    for _ in 0..jobs {
        dispr_worker::amqp::publish_confirmed(&publisher, &broker.names.jobs, &body).await.unwrap();
        let delivery = consumer.next().await.unwrap().unwrap();
        for _ in 0..3 {
            dispr_worker::amqp::publish_confirmed(&consumer_ch, &broker.names.results, &body[..200])
                .await
                .unwrap();
        }
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let per_job = started.elapsed().as_secs_f64() / jobs as f64;
    delete_queues(&env.amqp_url, &prefix).await;
    per_job
}

fn cell_tiffs() -> (Vec<u8>, Vec<u8>) {
    let mut mask = vec![0u8; 64 * 64];
    for y in 0..64usize {
        for x in 0..64usize {
            let d = ((y as f64 - 31.5) / 14.0).powi(2) + ((x as f64 - 31.5) / 18.0).powi(2);
            mask[y * 64 + x] = if d < 1.0 { 255 } else { 0 };
        }
    }
    let image: Vec<u8> = mask.iter().map(|m| m / 2 + 10).collect();
    let enc = |data| {
        dispr_shape::tiff_io::encode_image_u8(&dispr_shape::volume::Image2d { dims: [64, 64], data }).unwrap()
    };
    (enc(image), enc(mask))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let env = TestEnv::from_env();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let (small, large) = if full { (20_000, 100_000) } else { (100, 300) };
        println!("== submit (release build: {})", !cfg!(debug_assertions));
        let (t_small, m_small) = submit(&env, small).await;
        let (t_large, m_large) = submit(&env, large).await;
        println!("  {small:>7} cells: {t_small:6.2} s, peak {m_small:6.1} MiB");
        println!(
            "  {large:>7} cells: {t_large:6.2} s, peak {m_large:6.1} MiB ({:.0} jobs/s)",
            large as f64 / t_large
        );
        let per_cell_s = (t_large - t_small) / (large - small) as f64;
        let per_cell_mib = (m_large - m_small) / (large - small) as f64;
        println!(
            "  1000000 cells (extrapolated): {:.0} s, peak {:.0} MiB",
            t_large + per_cell_s * (1_000_000 - large) as f64,
            m_large + per_cell_mib * (1_000_000 - large) as f64
        );

        let cells = if full { 500 } else { 10 };
        println!("== end to end, null sampler, 1 sample per cell, {cells} cells");
        let one = end_to_end(&env, cells, 1).await;
        let two = end_to_end(&env, cells, 2).await;
        println!("  1 worker:  {one:7.1} cells/s ({:.2} ms per cell)", 1000.0 / one);
        println!("  2 workers: {two:7.1} cells/s ({:.2} ms per cell)", 1000.0 / two);
        let s3 = s3_per_cell(&env, cells).await;
        let queue = queue_per_job(&env, cells).await;
        let total = 1.0 / one;
        println!("  per-cell overhead with 1 worker, {:.2} ms:", total * 1000.0);
        println!("    queue (publish, deliver, ack, results): {:.2} ms", queue * 1000.0);
        println!("    S3 (2 gets, 1 head, 1 MiB volume put, features put-if-absent): {:.2} ms", s3 * 1000.0);
        println!("    bookkeeping (the rest): {:.2} ms", (total - queue - s3).max(0.0) * 1000.0);
    });
}
