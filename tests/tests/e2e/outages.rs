//! Scenarios 6 and 7: the services fail under a running worker.
//! 6. The S3 server is stopped for ten seconds mid-run and started again: the run completes.
//! 7. The broker closes the workers' connections mid-run (`rabbitmqctl close_connection`, the
//!    connection found by its name): the workers reconnect and the run completes.
//! Both check the outputs against a `local` run: an outage must not change a byte.

use crate::support::*;
use dispr_proto::keys;
use dispr_tests::TestEnv;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CELLS: usize = 16;
const SAMPLES: u32 = 4;

/// An s3s-fs of the scenario's own, on a fixed port and data folder so it can be restarted.
struct OwnS3 {
    bin: std::path::PathBuf,
    port: u16,
    data: tempfile::TempDir,
    access_key: String,
    secret_key: String,
    child: Option<Child>,
}

impl OwnS3 {
    const BUCKET: &str = "outage";

    fn start() -> Self {
        // scripts/test.sh installs s3s-fs under .test-env/; DISPR_TEST_S3S_FS_BIN may name another.
        let bin = std::env::var_os("DISPR_TEST_S3S_FS_BIN").map(Into::into).unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.test-env/bin/s3s-fs")
        });
        assert!(bin.exists(), "s3s-fs not found at {}: run the tests through scripts/test.sh", bin.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join(Self::BUCKET)).unwrap();
        let id = dispr_tests::unique_name("key");
        let mut s3 = OwnS3 {
            bin,
            port,
            data,
            access_key: id.clone(),
            secret_key: format!("secret-{id}"),
            child: None,
        };
        s3.up();
        s3
    }

    fn up(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", &self.access_key, "--secret-key", &self.secret_key])
            .arg(self.data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn env(&self, base: &TestEnv) -> TestEnv {
        TestEnv {
            s3_endpoint: format!("http://127.0.0.1:{}", self.port),
            s3_access_key: self.access_key.clone(),
            s3_secret_key: self.secret_key.clone(),
            s3_bucket: Self::BUCKET.into(),
            ..base.clone()
        }
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_for_ten_seconds_mid_run() {
    let mut s3 = OwnS3::start();
    let ctx = Ctx::with_env("e2e-s3-outage", s3.env(&TestEnv::from_env()));
    let cells = write_cells(&ctx.dataset(), CELLS).await;
    ctx.submit(SAMPLES, &[]);
    let mut worker = ctx.spawn_worker("a", &[]);
    let output = ctx.output();
    let features = keys::features_prefix(&ctx.run);
    wait_for(Duration::from_secs(60), "a few cells done", || async { count(&output, &features).await >= 2 })
        .await;

    s3.down();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(worker.alive(), "the worker died with S3 down:\n{}", worker.log_text());
    s3.up();

    wait_for(Duration::from_secs(180), "every cell's features after the outage", || async {
        count(&output, &features).await == CELLS
    })
    .await;
    assert_eq!(run_outputs(&output, &ctx.run).await, local_reference(&ctx, &cells, SAMPLES).await);
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", worker.log_text());
    delete_queues(&amqp(&ctx.env).await, &ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_connection_closed_mid_run() {
    let ctx = Ctx::new("e2e-broker-cut");
    let cells = write_cells(&ctx.dataset(), CELLS).await;
    ctx.submit(SAMPLES, &[]);
    let mut worker = ctx.spawn_worker("a", &[]);
    let output = ctx.output();
    let features = keys::features_prefix(&ctx.run);
    wait_for(Duration::from_secs(60), "a few cells done", || async { count(&output, &features).await >= 2 })
        .await;

    let closed = close_connections_of(worker.pid());
    assert!(closed >= 1, "no broker connection of worker {} was found by name", worker.pid());

    wait_for(Duration::from_secs(180), "every cell's features after the cut", || async {
        count(&output, &features).await == CELLS
    })
    .await;
    assert!(worker.alive(), "{}", worker.log_text());
    assert_eq!(run_outputs(&output, &ctx.run).await, local_reference(&ctx, &cells, SAMPLES).await);
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", worker.log_text());
    delete_queues(&amqp(&ctx.env).await, &ctx).await;
}

/// Closes every broker connection whose client-provided name carries process `pid` (workers
/// name their connections `<host>-<pid>`); returns how many.
fn close_connections_of(pid: i32) -> usize {
    // The plain listing: one `<pid>\t<client properties>` line per connection, with the pid in
    // the form close_connection takes (the JSON formatter writes it in another).
    let out = Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--quiet", "--no-table-headers"])
        .output()
        .expect("running rabbitmqctl (the tests run where the broker runs)");
    assert!(out.status.success(), "rabbitmqctl list_connections: {}", String::from_utf8_lossy(&out.stderr));
    let needle = pid.to_string();
    let mut closed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((conn_pid, props)) = line.split_once('\t') else { continue };
        let name = connection_name(props);
        if !name.split(|c: char| !c.is_ascii_digit()).any(|part| part == needle) {
            continue;
        }
        let status = Command::new("rabbitmqctl")
            .args(["close_connection", conn_pid.trim(), "e2e test: connection cut"])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "rabbitmqctl close_connection {conn_pid}");
        closed += 1;
    }
    closed
}

/// The `connection_name` in rabbitmqctl's rendering of client properties, which differs between
/// versions: `{"connection_name","host-1234"}` (3.10 here) or
/// `{"connection_name",longstr,<<"host-1234">>}`; "" when there is none.
fn connection_name(props: &str) -> String {
    let Some(at) = props.find("\"connection_name\"") else { return String::new() };
    let rest = &props[at + "\"connection_name\"".len()..];
    let end = rest.find('}').unwrap_or(rest.len());
    // The value is the last quoted string before the property's closing brace.
    rest[..end].rsplit('"').nth(1).unwrap_or_default().to_string()
}

#[test]
fn connection_names_are_read_in_both_renderings() {
    let plain =
        r#"[{"capabilities",[{"basic.nack",true}]},{"connection_name","vm-2660"},{"platform","rust"}]"#;
    let tagged = r#"[{"connection_name",longstr,<<"vm-2660">>},{"platform","rust"}]"#;
    assert_eq!(connection_name(plain), "vm-2660");
    assert_eq!(connection_name(tagged), "vm-2660");
    assert_eq!(connection_name(r#"[{"platform","rust"}]"#), "");
}
