//! Orchestration benchmarks: they print figures and assert nothing about speed.
//!
//! 1. `submit` of 100,000 cells (the real binary, a folder dataset of empty images, batch markers
//!    to S3, jobs to RabbitMQ with confirms): wall time and peak memory, extrapolated to
//!    1,000,000 cells from the difference between two sizes.
//! 2. End to end with the null sampler through RabbitMQ and s3s-fs with 1 and 2 `dispr-worker`
//!    processes, with one cell per job (the default) and with 16 cells per job and 2 jobs in
//!    hand (`--prefetch 2`): cells per second, and the per-cell cost split into queue (publish,
//!    deliver, ack and the result messages), S3 (the cell's object operations, timed alone, one
//!    at a time and 16 in flight) and the cell's compute (decoding, the null shape, 2D and 3D
//!    features, the volume TIFF: what a GPU worker's CPU does beside the sampler). Each run also
//!    reports the CPU the workers, s3s-fs and RabbitMQ spent per cell (from /proc): on a small
//!    machine the services' share is what bounds the rate.
//!
//! s3s-fs answers a GET with a body about 30-40 ms late on loopback: it does not set TCP_NODELAY,
//! so Nagle holds the body until the client's delayed ACK of the headers (a HEAD, with no body,
//! takes 1 ms; with `ip route ... quickack 1` on lo a 4 KiB GET takes 0.8 ms). MinIO, like every
//! Go server, sets TCP_NODELAY by default. The worker hides that latency by keeping many object
//! operations in flight. s3s-fs built at full optimisation spends the same CPU per cell as the
//! lighter build test.sh makes (about 8 ms), so that build does not skew these figures.
//!
//! Run against the services of scripts/test.sh, in release:
//!   scripts/test.sh --release -p dispr-tests --bench orchestration -- --bench
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a quick smoke run of both.

use dispr_coordinator::broker::{Broker, BrokerArgs};
use dispr_proto::{CellId, ResultBody, keys};
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

/// A folder dataset of `n` cells of empty image and mask files: `submit` only lists them (and
/// refuses an image without its mask).
fn empty_dataset(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for folder in ["image", "mask"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        for i in 0..n {
            std::fs::File::create(dir.path().join(format!("{folder}/c{i:07}.tif"))).unwrap();
        }
    }
    dir
}

fn broker_args(url: &str, prefix: &str) -> BrokerArgs {
    BrokerArgs { amqp_url: url.into(), queue_prefix: prefix.into(), delivery_limit: 3 }
}

async fn delete_queues(url: &str, prefix: &str, run: &str) {
    let broker = Broker::connect(&broker_args(url, prefix), "bench cleanup").await.expect("the broker");
    let ch = broker.conn.create_channel().await.unwrap();
    let run_queue = broker.names.run_results(&dispr_proto::RunId::new(run).unwrap());
    for q in [&broker.names.jobs, &run_queue, &broker.names.dead] {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
    for exchange in [&broker.names.runs_exchange, &broker.names.dead_letter_exchange] {
        let _ = ch.exchange_delete(exchange.as_str().into(), Default::default()).await;
    }
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
    delete_queues(&env.amqp_url, &prefix, "bench").await;
    (secs, mib)
}

/// How the end-to-end run is cut into jobs and handed out.
#[derive(Clone, Copy)]
struct Shape {
    workers: usize,
    cells_per_job: u32,
    prefetch: u16,
}

/// Writes the dataset of the end-to-end runs: `cells` copies of one cell.
async fn e2e_dataset(env: &TestEnv, root: &str, cells: usize) {
    use futures::StreamExt;
    let dataset = env.open(&format!("{root}/data"));
    let (image, mask) = cell_tiffs();
    let (image, mask) = (bytes::Bytes::from(image), bytes::Bytes::from(mask));
    futures::stream::iter(0..cells)
        .map(|i| {
            let (dataset, image, mask) = (&dataset, image.clone(), mask.clone());
            async move {
                let cell = CellId::new(format!("c{i:05}")).unwrap();
                dataset.put(&keys::dataset_image(&cell), image).await.unwrap();
                dataset.put(&keys::dataset_mask(&cell), mask).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
}

/// CPU seconds (user and system) a process has used so far, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The fields after the command name (which may hold spaces, hence the last ')'): state is
    // the first, utime and stime the 12th and 13th, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// CPU seconds used so far by every process whose command name is `comm`.
fn cpu_seconds_of(comm: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .map(cpu_seconds)
        .sum()
}

/// The services' processes, by command name: where the CPU of an end-to-end run goes.
const SERVICES: [(&str, &str); 2] = [("s3s-fs", "s3s-fs"), ("RabbitMQ", "beam.smp")];

/// An end-to-end run's speed and the CPU each party spent per cell.
struct E2e {
    cells_per_second: f64,
    /// Milliseconds of CPU per cell: the workers', then each of [`SERVICES`].
    cpu_ms: Vec<(&'static str, f64)>,
}

/// End to end over the dataset under `root`: cells per second from the submit to the last
/// cell's result, and the CPU the workers and the services spent meanwhile.
async fn end_to_end(env: &TestEnv, root: &str, cells: usize, shape: Shape) -> E2e {
    let name = unique("e2e");
    let prefix = format!("{name}.");
    let mut vars = env.child_env();
    vars.push(("DISPR_QUEUE_PREFIX", prefix.clone()));
    // Workers first, so they are connected and waiting when jobs arrive.
    let mut children: Vec<_> = (0..shape.workers)
        .map(|_| {
            Command::new(bin("dispr-worker"))
                .args(["serve", "--http-addr", "127.0.0.1:0", "--prefetch", &shape.prefetch.to_string()])
                .envs(vars.iter().cloned())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting a worker")
        })
        .collect();
    // The end is seen in the results queue: a cell's result goes out after its features are
    // durable. (Listing the output instead would cost the S3 server more than the run itself.)
    let broker = Broker::connect(&broker_args(&env.amqp_url, &prefix), "bench results").await.unwrap();
    let run = dispr_proto::RunId::new(name.as_str()).unwrap();
    broker.declare_run(&run).await.unwrap();
    let results_ch = broker.conn.create_channel().await.unwrap();
    let mut results = results_ch
        .basic_consume(
            broker.names.run_results(&run).as_str().into(),
            "bench".into(),
            lapin::options::BasicConsumeOptions { no_ack: true, ..Default::default() },
            Default::default(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let services_before: Vec<f64> = SERVICES.iter().map(|(_, comm)| cpu_seconds_of(comm)).collect();
    let workers_before: f64 = children.iter().map(|c| cpu_seconds(c.id())).sum();
    let started = Instant::now();
    let out = Command::new(bin("dispr-coordinator"))
        .args(["submit", "--sampler", "null", "--samples", "1", "--run-id", &name])
        .args(["--cells-per-job", &shape.cells_per_job.to_string()])
        .args(["--dataset", &format!("{root}/data"), "--output", &format!("{root}/out")])
        .envs(vars.iter().cloned())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut done = std::collections::HashSet::new();
    while done.len() < cells {
        use futures::StreamExt;
        let next = tokio::time::timeout_at((started + Duration::from_secs(600)).into(), results.next()).await;
        let Ok(Some(Ok(delivery))) = next else {
            panic!("the run did not finish in 10 minutes ({} cells done)", done.len());
        };
        if let Ok(dispr_proto::JobResult { body: ResultBody::CellDone { cell, .. }, .. }) =
            dispr_proto::JobResult::decode(&delivery.data)
        {
            done.insert(cell);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let per_cell_ms = |seconds: f64| seconds * 1000.0 / cells as f64;
    let workers_cpu: f64 = children.iter().map(|c| cpu_seconds(c.id())).sum::<f64>() - workers_before;
    let mut cpu_ms = vec![("workers", per_cell_ms(workers_cpu))];
    for ((name, comm), before) in SERVICES.iter().zip(services_before) {
        cpu_ms.push((name, per_cell_ms(cpu_seconds_of(comm) - before)));
    }
    for child in &mut children {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    delete_queues(&env.amqp_url, &prefix, &name).await;
    E2e { cells_per_second: cells as f64 / secs, cpu_ms }
}

/// A fresh prefix holding a cell's `image.tif` and `mask.tif`, and outputs the size of a cell's.
struct S3Cell {
    store: dispr_store::Store,
    /// A 64^3 float32 volume TIFF's size.
    volume: bytes::Bytes,
    /// A features record's size.
    features: bytes::Bytes,
}

async fn s3_cell(env: &TestEnv) -> S3Cell {
    let store = env.open(&format!("s3://{}/{}", env.s3_bucket, unique("s3")));
    let (image, mask) = cell_tiffs();
    store.put("image.tif", image.into()).await.unwrap();
    store.put("mask.tif", mask.into()).await.unwrap();
    let volume = bytes::Bytes::from(vec![7u8; 64 * 64 * 64 * 4 + 1024]);
    let features = bytes::Bytes::from(vec![b' '; 6 * 1024]);
    S3Cell { store, volume, features }
}

/// Seconds per cell of the object operations a null-sampler cell does (two gets, an existence
/// check, one 1 MiB volume put and a put-if-absent of the features record), with `in_flight`
/// cells at a time: the latency of one cell's operations at 1, the store's throughput above.
async fn s3_per_cell(env: &TestEnv, cells: usize, in_flight: usize) -> f64 {
    use futures::StreamExt;
    let S3Cell { store, volume, features } = s3_cell(env).await;
    let started = Instant::now();
    futures::stream::iter(0..cells)
        .map(|i| {
            let (store, volume, features) = (&store, volume.clone(), features.clone());
            async move {
                store.get("image.tif").await.unwrap();
                store.get("mask.tif").await.unwrap();
                store.exists(&format!("features/{i}.json")).await.unwrap();
                store.put(&format!("volumes/{i}/0.tif"), volume).await.unwrap();
                store.put_if_absent(&format!("features/{i}.json"), features).await.unwrap();
            }
        })
        .buffer_unordered(in_flight)
        .collect::<()>()
        .await;
    started.elapsed().as_secs_f64() / cells as f64
}

/// Mean milliseconds of each kind of object operation a cell does, one at a time.
async fn s3_latencies(env: &TestEnv, n: usize) -> Vec<(&'static str, f64)> {
    let S3Cell { store, volume, features } = s3_cell(env).await;
    let mut times =
        vec![("get 4 KiB", 0.0), ("head (missing)", 0.0), ("put 1 MiB", 0.0), ("put-if-absent 6 KiB", 0.0)];
    for i in 0..n {
        let mut t = Instant::now();
        let mut lap = |slot: usize| {
            times[slot].1 += t.elapsed().as_secs_f64() * 1000.0 / n as f64;
            t = Instant::now();
        };
        store.get("image.tif").await.unwrap();
        lap(0);
        store.exists(&format!("features/{i}.json")).await.unwrap();
        lap(1);
        store.put(&format!("volumes/{i}/0.tif"), volume.clone()).await.unwrap();
        lap(2);
        store.put_if_absent(&format!("features/{i}.json"), features.clone()).await.unwrap();
        lap(3);
    }
    times
}

/// Seconds of one core per cell for what the worker computes around a null sample: decoding and
/// checking the inputs with their 2D features, then the 3D features and the volume TIFF.
fn compute_per_cell(cells: usize) -> f64 {
    use dispr_shape::dataset::{CellBytes, Label};
    use dispr_worker::{cell, volume_sampler::NullSampler};
    let (image, mask) = cell_tiffs();
    let files = CellBytes { image: image.into(), mask: mask.into(), obj: None };
    let id = CellId::new("c00000").unwrap();
    let run = dispr_proto::RunId::new("bench").unwrap();
    let started = Instant::now();
    for seed in 0..cells as u64 {
        let label = Label { class: "bench".into(), subclass: None };
        let checked = cell::check_inputs(&id, label, &files).unwrap();
        let volume = NullSampler::volume(&checked.input.mask, seed);
        cell::outputs(&run, &checked, &[seed], vec![volume], dispr_proto::VolumeFormat::Float32).unwrap();
    }
    started.elapsed().as_secs_f64() / cells as f64
}

/// Seconds of one core per cell for the worker's per-cell compute with `samples` null samples
/// (as [`compute_per_cell`], the samples' 3D features and TIFFs included), and within it the
/// ensemble's uncertainty outputs: the probability and standard-deviation volumes, their TIFFs
/// and the scalars of the record (timed alone on the same binarised samples).
fn compute_with_ensemble(cells: usize, samples: u32) -> (f64, f64) {
    use dispr_shape::dataset::{CellBytes, Label};
    use dispr_worker::{cell, volume_sampler::NullSampler};
    let (image, mask) = cell_tiffs();
    let files = CellBytes { image: image.into(), mask: mask.into(), obj: None };
    let id = CellId::new("c00000").unwrap();
    let run = dispr_proto::RunId::new("bench").unwrap();
    let (mut total, mut ensemble) = (0.0, 0.0);
    for cell_seed in 0..cells as u64 {
        let started = Instant::now();
        let label = Label { class: "bench".into(), subclass: None };
        let checked = cell::check_inputs(&id, label, &files).unwrap();
        let seeds: Vec<u64> = (0..u64::from(samples)).map(|k| cell_seed * 1000 + k * 7919).collect();
        let volumes: Vec<_> = seeds.iter().map(|&s| NullSampler::volume(&checked.input.mask, s)).collect();
        let binaries: Vec<Vec<bool>> = volumes.iter().map(|v| dispr_shape::otsu::binarise(v)).collect();
        let outputs =
            cell::outputs(&run, &checked, &seeds, volumes, dispr_proto::VolumeFormat::Float32).unwrap();
        total += started.elapsed().as_secs_f64();
        assert_eq!(outputs.ensemble_volumes.len(), if samples >= 2 { 2 } else { 0 });
        let started = Instant::now();
        dispr_worker::uncertainty::outputs(
            &run,
            &id,
            &binaries,
            &outputs.features.mean_3d,
            &outputs.features.std_3d,
            dispr_proto::VolumeFormat::Float32,
        )
        .unwrap();
        ensemble += started.elapsed().as_secs_f64();
    }
    (total / cells as f64, ensemble / cells as f64)
}

/// Seconds per job of the queue traffic of a job: its publish (confirmed), delivery and ack, and
/// the three result messages a worker publishes for it (started, cell done, job done).
async fn queue_per_job(env: &TestEnv, jobs: usize) -> f64 {
    use futures::StreamExt;
    use lapin::options::*;
    let prefix = format!("{}.", unique("queue"));
    let broker = Broker::connect(&broker_args(&env.amqp_url, &prefix), "bench queue").await.unwrap();
    let run = dispr_proto::RunId::new("bench").unwrap();
    broker.declare_run(&run).await.unwrap();
    let publisher = dispr_amqp::confirm_channel(&broker.conn).await.unwrap();
    let consumer_ch = dispr_amqp::confirm_channel(&broker.conn).await.unwrap();
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
        dispr_amqp::publish_confirmed(&publisher, &broker.names.jobs, &body).await.unwrap();
        let delivery = consumer.next().await.unwrap().unwrap();
        // As the worker does: the results go out at once, their confirms are awaited together.
        let mut confirms = Vec::new();
        let exchange = &broker.names.runs_exchange;
        for _ in 0..3 {
            confirms
                .push(dispr_amqp::publish_result(&consumer_ch, exchange, &run, &body[..200]).await.unwrap());
        }
        for confirm in confirms {
            assert!(dispr_amqp::routed(confirm, exchange).await.unwrap(), "a result reaches the run's queue");
        }
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let per_job = started.elapsed().as_secs_f64() / jobs as f64;
    delete_queues(&env.amqp_url, &prefix, "bench").await;
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

        let cells = if full { 2000 } else { 10 };
        println!("== end to end, null sampler, 1 sample per cell, {cells} cells");
        let root = format!("s3://{}/{}", env.s3_bucket, unique("e2e"));
        e2e_dataset(&env, &root, cells).await;
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        println!("  (CPU per cell: what each party spent during the run; {cores} cores in all)");
        let mut worker_cpu_ms = 0.0;
        for (cells_per_job, prefetch) in [(1, 1), (16, 2)] {
            for workers in [1, 2] {
                let shape = Shape { workers, cells_per_job, prefetch };
                let run = end_to_end(&env, &root, cells, shape).await;
                let rate = run.cells_per_second;
                worker_cpu_ms = run.cpu_ms[0].1; // the last configuration's is reported below
                let cpu: Vec<String> = run.cpu_ms.iter().map(|(who, ms)| format!("{who} {ms:.1}")).collect();
                println!(
                    "  {cells_per_job:>2} cells/job, prefetch {prefetch}, {workers} worker(s): {rate:6.1} cells/s \
                     ({:6.2} ms per cell; CPU ms per cell: {})",
                    1000.0 / rate,
                    cpu.join(", ")
                );
            }
        }
        let queue = queue_per_job(&env, cells.min(500)).await;
        let s3 = s3_per_cell(&env, cells.min(500), 1).await;
        let s3_concurrent = s3_per_cell(&env, cells.min(500), 16).await;
        let compute = compute_per_cell(cells.min(200));
        let latencies = s3_latencies(&env, cells.min(200)).await;
        println!("  per-cell cost, timed alone:");
        println!("    queue, one cell per job (publish, deliver, ack, 3 results): {:.2} ms", queue * 1000.0);
        println!(
            "    S3 (2 gets, 1 head, 1 MiB volume put, features put-if-absent): {:.2} ms one cell at a time, \
             {:.2} ms with 16 in flight",
            s3 * 1000.0,
            s3_concurrent * 1000.0
        );
        let latencies: Vec<String> = latencies.iter().map(|(op, ms)| format!("{op} {ms:.2} ms")).collect();
        println!("      per operation, one at a time: {}", latencies.join(", "));
        println!("    compute on one core (decode, 2D features, null shape, 3D features, TIFF): {:.2} ms", compute * 1000.0);
        println!(
            "  the workers' own overhead (their CPU per cell less the compute, 16 cells/job, 2 workers): {:.2} ms",
            (worker_cpu_ms - compute * 1000.0).max(0.0)
        );
        let (with, ensemble) = compute_with_ensemble(cells.min(50), 5);
        println!(
            "  compute on one core with 5 samples per cell: {:.2} ms without the uncertainty outputs, {:.2} ms \
             with them (probability and std volumes, their TIFFs, the scalars: +{:.2} ms; the store writes \
             2 MiB more per cell, see the S3 put above)",
            (with - ensemble) * 1000.0,
            with * 1000.0,
            ensemble * 1000.0
        );
    });
}
