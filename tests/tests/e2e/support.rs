//! What the end-to-end scenarios share: the built binaries, a per-test context (its own S3
//! prefix, queue prefix and run id), worker processes with their logs, small real TIFF datasets
//! and polling.

use dispr_proto::{CellId, RunId, keys};
use dispr_store::Store;
use dispr_tests::{TestEnv, unique_name};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary, built once per test process (see [`dispr_tests::workspace_bin`]).
pub fn bin(name: &str) -> PathBuf {
    dispr_tests::workspace_bin(name)
}

/// One scenario's world: its own prefixes and run id on the shared services.
pub struct Ctx {
    pub env: TestEnv,
    pub name: String,
    pub queue_prefix: String,
    /// `s3://<bucket>/<unique>`; the dataset and outputs live below it.
    pub root: String,
    pub run: RunId,
    /// Logs of the processes the scenario started.
    pub logs: tempfile::TempDir,
    /// More environment for the child processes (e.g. SSL_CERT_FILE).
    pub extra_env: Vec<(&'static str, String)>,
}

impl Ctx {
    pub fn new(test: &str) -> Self {
        Self::with_env(test, TestEnv::from_env())
    }

    /// A context on other services than the script's (a scenario's own S3 server).
    pub fn with_env(test: &str, env: TestEnv) -> Self {
        let name = unique_name(test);
        Ctx {
            queue_prefix: format!("test-{name}."),
            root: format!("s3://{}/{name}", env.s3_bucket),
            run: RunId::new(format!("run-{name}")).expect("unique names are valid run ids"),
            logs: tempfile::tempdir().expect("a temporary folder for logs"),
            extra_env: Vec::new(),
            name,
            env,
        }
    }

    pub fn dataset_uri(&self) -> String {
        format!("{}/data", self.root)
    }
    pub fn output_uri(&self) -> String {
        format!("{}/out", self.root)
    }
    pub fn dataset(&self) -> Store {
        self.env.open(&self.dataset_uri())
    }
    pub fn output(&self) -> Store {
        self.env.open(&self.output_uri())
    }

    /// The environment of a child process: the services (through the standard variables) and
    /// this scenario's queue prefix.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.env.child_env();
        env.push(("DISPR_QUEUE_PREFIX", self.queue_prefix.clone()));
        env.push(("RUST_LOG", "info".into()));
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// A command for `dispr-coordinator <args>` in this scenario's environment.
    pub fn coordinator(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("dispr-coordinator"));
        cmd.args(args).envs(self.child_env()).stdin(Stdio::null());
        cmd
    }

    /// Runs `dispr-coordinator <args>` to the end, keeps its output in the logs and returns it.
    pub fn run_coordinator(&self, args: &[&str]) -> Output {
        let out = self.coordinator(args).output().expect("running dispr-coordinator");
        let log = self.logs.path().join(format!("coordinator-{}.log", args[0]));
        let mut text = out.stdout.clone();
        text.extend_from_slice(&out.stderr);
        append(&log, &text);
        out
    }

    /// The flags of `submit` and `local` for this scenario's run with the null sampler.
    pub fn run_flags(&self, samples: u32) -> Vec<String> {
        let samples = samples.to_string();
        ["--dataset", &self.dataset_uri(), "--output", &self.output_uri(), "--run-id", self.run.as_str()]
            .into_iter()
            .chain(["--sampler", "null", "--samples", &samples, "--seed", "11"])
            .map(String::from)
            .collect()
    }

    /// `submit` with the null sampler; panics with its output when it fails.
    pub fn submit(&self, samples: u32, extra: &[&str]) -> serde_json::Value {
        let flags = self.run_flags(samples);
        let mut args: Vec<&str> = vec!["submit", "--json"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(extra);
        let out = self.run_coordinator(&args);
        assert!(out.status.success(), "submit failed:\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("submit --json prints JSON")
    }

    /// Starts a `dispr-worker serve` process; its output goes to `worker-<label>.log`.
    pub fn spawn_worker(&self, label: &str, extra: &[&str]) -> Worker {
        self.spawn_worker_without(label, extra, &[])
    }

    /// As [`spawn_worker`](Self::spawn_worker), without the environment variables `unset`.
    pub fn spawn_worker_without(&self, label: &str, extra: &[&str], unset: &[&str]) -> Worker {
        let log = self.logs.path().join(format!("worker-{label}.log"));
        let file = std::fs::File::create(&log).expect("creating a worker log");
        let mut cmd = Command::new(bin("dispr-worker"));
        cmd.args(["serve", "--http-addr", "127.0.0.1:0", "--model-cache-dir"])
            .arg(self.logs.path().join("model-cache"))
            .args(extra)
            .envs(self.child_env());
        for var in unset {
            cmd.env_remove(var);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning a file handle"))
            .stderr(file)
            .spawn()
            .expect("starting dispr-worker");
        Worker { child, log }
    }

    /// Every log the scenario's processes wrote, concatenated.
    pub fn all_logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.logs.path()).expect("reading the log folder").flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        text
    }

    /// Fails if any log holds a secret of the test environment.
    pub fn assert_no_secrets_in_logs(&self) {
        let logs = self.all_logs();
        assert!(!logs.is_empty(), "the scenario wrote no logs to check");
        for (what, secret) in [
            ("S3 secret key", self.env.s3_secret_key.as_str()),
            ("S3 access key", self.env.s3_access_key.as_str()),
            ("AMQP URL with its password", self.env.amqp_url.as_str()),
        ] {
            assert!(!logs.contains(secret), "the {what} appears in the logs of {}", self.name);
        }
    }
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("opening a log");
    file.write_all(bytes).expect("writing a log");
}

/// A worker process, stopped (SIGKILL) when dropped unless it exited.
pub struct Worker {
    pub child: Child,
    pub log: PathBuf,
}

impl Worker {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([format!("-{signal}"), self.pid().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {}", self.pid());
    }
    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// Waits up to `limit` for it to exit; its exit code (`None` if killed by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A 64x64 mask of an ellipse, anti-aliased like the real masks' soft edges, and an image of a
/// bright membrane ring on it; sizes vary with `i` so cells differ.
pub fn cell_tiffs(i: usize) -> (Vec<u8>, Vec<u8>) {
    let (ry, rx) = (12.0 + (i % 7) as f64, 15.0 + (i % 5) as f64);
    let mut mask = vec![0u8; 64 * 64];
    let mut image = vec![0u8; 64 * 64];
    for y in 0..64 {
        for x in 0..64 {
            let d = (((y as f64 - 31.5) / ry).powi(2) + ((x as f64 - 31.5) / rx).powi(2)).sqrt();
            let m = ((1.0 - d) * 8.0).clamp(0.0, 1.0);
            mask[y * 64 + x] = (m * 255.0).round() as u8;
            let ring = (-((d - 0.9) * 6.0).powi(2)).exp();
            image[y * 64 + x] = (20.0 + 200.0 * ring + ((x * 7 + y * 13 + i) % 11) as f64).min(255.0) as u8;
        }
    }
    (encode_2d(64, 64, image), encode_2d(64, 64, mask))
}

/// A uint8 TIFF of `height x width`.
pub fn encode_2d(height: usize, width: usize, data: Vec<u8>) -> Vec<u8> {
    let image = dispr_shape::volume::Image2d { dims: [height, width], data };
    dispr_shape::tiff_io::encode_image_u8(&image).expect("encoding a test TIFF")
}

pub fn cell_name(i: usize) -> CellId {
    CellId::new(format!("cell{i:04}")).expect("valid id")
}

/// Writes `n` good cells `cell0000..` to `store` (the dataset layout).
pub async fn write_cells(store: &Store, n: usize) -> Vec<CellId> {
    let mut cells = Vec::new();
    for i in 0..n {
        let cell = cell_name(i);
        let (image, mask) = cell_tiffs(i);
        store.put(&keys::dataset_image(&cell), image.into()).await.expect("writing an image");
        store.put(&keys::dataset_mask(&cell), mask.into()).await.expect("writing a mask");
        cells.push(cell);
    }
    cells
}

/// Polls `check` every 200 ms until it returns true or `limit` passes.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many keys are under `prefix`.
pub async fn count(store: &Store, prefix: &str) -> usize {
    store.list(prefix).await.map(|keys| keys.len()).unwrap_or(0)
}

/// Every output object of a run (volumes, features, failures) by key relative to the run,
/// leaving out what names the run's location (the manifest, submit's markers) and the per-job
/// records (bookkeeping: which worker ran a job, when, and how often it was handed back).
pub async fn run_outputs(store: &Store, run: &RunId) -> BTreeMap<String, Vec<u8>> {
    let prefix = keys::run_prefix(run);
    let mut out = BTreeMap::new();
    for key in store.list(&prefix).await.expect("listing a run") {
        let rel = key[prefix.len()..].to_string();
        if rel == "manifest.json"
            || rel.starts_with("submitted/")
            || rel.starts_with("jobs/")
            || rel.starts_with("handbacks/")
        {
            continue;
        }
        let bytes = store.get(&key).await.expect("reading an output");
        out.insert(rel, bytes.to_vec());
    }
    out
}

/// A connection to the test broker.
pub async fn amqp(env: &TestEnv) -> lapin::Connection {
    lapin::Connection::connect(&env.amqp_url, lapin::ConnectionProperties::default())
        .await
        .expect("connecting to RabbitMQ")
}

/// Ready messages in `queue` (passive declare).
pub async fn depth(conn: &lapin::Connection, queue: &str) -> u32 {
    let ch = conn.create_channel().await.expect("a channel");
    let q = ch
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("the queue exists");
    q.message_count()
}

/// Takes every message from `queue` (acking them) and returns their bodies.
pub async fn drain(conn: &lapin::Connection, queue: &str) -> Vec<Vec<u8>> {
    let ch = conn.create_channel().await.expect("a channel");
    let mut bodies = Vec::new();
    while let Some(msg) =
        ch.basic_get(queue.into(), lapin::options::BasicGetOptions { no_ack: true }).await.expect("basic.get")
    {
        bodies.push(msg.delivery.data.clone());
    }
    bodies
}

/// Deletes the scenario's queues and exchanges (best effort: the next run uses other names).
pub async fn delete_queues(conn: &lapin::Connection, ctx: &Ctx) {
    let names = ctx.queue_names();
    let q = dispr_proto::queues::QueueNames::with_prefix(&ctx.queue_prefix);
    if let Ok(ch) = conn.create_channel().await {
        for queue in &names[..3] {
            let _ = ch.queue_delete(queue.as_str().into(), Default::default()).await;
        }
        for exchange in [&q.runs_exchange, &q.dead_letter_exchange] {
            let _ = ch.exchange_delete(exchange.as_str().into(), Default::default()).await;
        }
    }
}

impl Ctx {
    /// The scenario's jobs queue, its run's results queue, the dead-letter queue and exchange.
    pub fn queue_names(&self) -> [String; 4] {
        let q = dispr_proto::queues::QueueNames::with_prefix(&self.queue_prefix);
        [q.jobs.clone(), q.run_results(&self.run), q.dead.clone(), q.dead_letter_exchange.clone()]
    }
}

/// The outputs of a `local` run of the scenario's manifest over a folder copy of its dataset:
/// what every distributed run of the same manifest must write, byte for byte.
pub async fn local_reference(ctx: &Ctx, cells: &[CellId], samples: u32) -> BTreeMap<String, Vec<u8>> {
    let data = tempfile::tempdir().expect("a temporary folder");
    let out = tempfile::tempdir().expect("a temporary folder");
    let (data_dir, out_dir) =
        (data.path().to_string_lossy().to_string(), out.path().to_string_lossy().to_string());
    let local_dataset = Store::open(&data_dir).expect("a folder store");
    for cell in cells {
        for key in [keys::dataset_image(cell), keys::dataset_mask(cell)] {
            let bytes = ctx.dataset().get(&key).await.expect("reading the dataset");
            local_dataset.put(&key, bytes).await.expect("copying the dataset");
        }
    }
    let samples = samples.to_string();
    let out = ctx.run_coordinator(&[
        "local",
        "--dataset",
        &data_dir,
        "--output",
        &out_dir,
        "--run-id",
        ctx.run.as_str(),
        "--sampler",
        "null",
        "--samples",
        &samples,
        "--seed",
        "11",
        "--workers",
        "2",
    ]);
    assert!(out.status.success(), "local failed:\n{}", String::from_utf8_lossy(&out.stderr));
    run_outputs(&Store::open(&out_dir).expect("a folder store"), &ctx.run).await
}

/// Waits up to `limit` for `child` to exit and returns its output; kills it and fails after that.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("the output of a killed process");
            panic!("still running after {limit:?}; its output:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("a process's output")
}

/// A private queue that receives a copy of every result (and dead letter) of the scenario's run,
/// as a second `watch` would: the test follows the run without taking anything from `watch`.
pub async fn follow_results(conn: &lapin::Connection, ctx: &Ctx) -> lapin::Consumer {
    use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
    let q = dispr_proto::queues::QueueNames::with_prefix(&ctx.queue_prefix);
    let ch = conn.create_channel().await.expect("a channel");
    let private = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            Default::default(),
        )
        .await
        .expect("a private queue");
    ch.queue_bind(
        private.name().clone(),
        q.runs_exchange.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        dispr_amqp::field_table(&dispr_proto::queues::run_match(&ctx.run)),
    )
    .await
    .expect("binding it to the run's results");
    ch.basic_consume(
        private.name().clone(),
        "test".into(),
        BasicConsumeOptions { no_ack: true, ..Default::default() },
        Default::default(),
    )
    .await
    .expect("consuming it")
}

/// The next result on `results` that `accept` takes, within `limit`.
pub async fn next_result(
    results: &mut lapin::Consumer,
    limit: Duration,
    what: &str,
    mut accept: impl FnMut(&dispr_proto::JobResult) -> bool,
) -> dispr_proto::JobResult {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, results.next()).await;
        let Ok(Some(Ok(delivery))) = next else { panic!("no result {what} within {limit:?}") };
        if let Ok(result) = dispr_proto::JobResult::decode(&delivery.data)
            && accept(&result)
        {
            return result;
        }
    }
}

/// Starts `dispr-coordinator watch` on the scenario's run; its stdout is JSON (`--json`).
pub fn spawn_watch(ctx: &Ctx, extra: &[&str]) -> Child {
    ctx.coordinator(&["watch", "--json", "--output", &ctx.output_uri(), "--run-id", ctx.run.as_str()])
        .args(["--http-addr", "127.0.0.1:0", "--rescan-secs", "600"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dispr-coordinator watch")
}
