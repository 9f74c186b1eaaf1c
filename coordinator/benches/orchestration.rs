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
//!   scripts/test.sh --release -p dispr-coordinator --bench orchestration -- --bench
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a quick smoke run of both.

use dispr_coordinator::broker::{Broker, BrokerArgs};
use dispr_proto::{CellId, keys};
use dispr_store::Store;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Env {
    amqp_url: String,
    s3_vars: Vec<(&'static str, String)>,
    bucket: String,
}

impl Env {
    fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("{name} is not set: run the benchmark through scripts/test.sh"))
        };
        Env {
            amqp_url: var("DISPR_TEST_AMQP_URL"),
            s3_vars: vec![
                ("AWS_ACCESS_KEY_ID", var("DISPR_TEST_S3_ACCESS_KEY")),
                ("AWS_SECRET_ACCESS_KEY", var("DISPR_TEST_S3_SECRET_KEY")),
                ("AWS_REGION", var("DISPR_TEST_S3_REGION")),
                ("AWS_ENDPOINT_URL", var("DISPR_TEST_S3_ENDPOINT")),
                ("DISPR_S3_PATH_STYLE", "true".into()),
            ],
            bucket: var("DISPR_TEST_S3_BUCKET"),
        }
    }

    /// Sets the S3 variables for this process too (the benchmark opens stores itself).
    fn export(&self) {
        for (k, v) in &self.s3_vars {
            // Single-threaded at this point: nothing reads the environment concurrently.
            unsafe { std::env::set_var(k, v) };
        }
    }
}

fn unique(name: &str) -> String {
    format!("bench-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// `target/<profile>/`, where the binaries are.
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the bench has a path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "-p", "dispr-worker", "-p", "dispr-coordinator", "--bins"]);
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().is_ok_and(|s| s.success()), "building the binaries failed");
    dir.join(name)
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
async fn submit(env: &Env, n: usize) -> (f64, f64) {
    let data = empty_dataset(n);
    let prefix = format!("{}.", unique("submit"));
    let output = format!("s3://{}/{}", env.bucket, unique("submit"));
    let mut cmd = Command::new(bin("dispr-coordinator"));
    cmd.args(["submit", "--sampler", "null", "--samples", "1", "--run-id", "bench"])
        .args(["--dataset", &data.path().to_string_lossy(), "--output", &output])
        .env("DISPR_AMQP_URL", &env.amqp_url)
        .env("DISPR_QUEUE_PREFIX", &prefix)
        .envs(env.s3_vars.iter().cloned());
    let (secs, mib, text) = measure(cmd);
    assert!(text.contains(&format!("published {n} jobs")), "{text}");
    delete_queues(&env.amqp_url, &prefix).await;
    (secs, mib)
}

/// End to end with `workers` worker processes: cells per second from the first publish to the
/// last features file.
async fn end_to_end(env: &Env, cells: usize, workers: usize) -> f64 {
    let name = unique("e2e");
    let prefix = format!("{name}.");
    let root = format!("s3://{}/{name}", env.bucket);
    let dataset = Store::open(&format!("{root}/data")).unwrap();
    let (image, mask) = cell_tiffs();
    for i in 0..cells {
        let cell = CellId::new(format!("c{i:05}")).unwrap();
        dataset.put(&keys::dataset_image(&cell), image.clone().into()).await.unwrap();
        dataset.put(&keys::dataset_mask(&cell), mask.clone().into()).await.unwrap();
    }
    let vars: Vec<(&str, String)> = env
        .s3_vars
        .iter()
        .cloned()
        .chain([("DISPR_AMQP_URL", env.amqp_url.clone()), ("DISPR_QUEUE_PREFIX", prefix.clone())])
        .collect();
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
    let output = Store::open(&format!("{root}/out")).unwrap();
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
async fn s3_per_cell(env: &Env, cells: usize) -> f64 {
    let store = Store::open(&format!("s3://{}/{}", env.bucket, unique("s3"))).unwrap();
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
async fn queue_per_job(env: &Env, jobs: usize) -> f64 {
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
    let env = Env::from_env();
    env.export();
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
