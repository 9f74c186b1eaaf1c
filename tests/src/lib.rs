//! Helpers shared by the end-to-end tests in `tests/tests/`.
//!
//! The tests start nothing themselves: `scripts/test.sh` starts RabbitMQ (when it is not already
//! running) and an S3-compatible server (s3s-fs) on loopback, creates a bucket and exports where
//! they are in the `DISPR_TEST_*` variables that [`TestEnv::from_env`] reads. Each test works
//! under its own unique S3 prefix and queue prefix, so tests run in parallel and twice in a row
//! without seeing each other's objects or messages.

use dispr_store::{S3Settings, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The variables `scripts/test.sh` exports, in the order [`TestEnv::from_env`] reports them.
pub const ENV_VARS: [&str; 6] = [
    "DISPR_TEST_AMQP_URL",
    "DISPR_TEST_S3_ENDPOINT",
    "DISPR_TEST_S3_ACCESS_KEY",
    "DISPR_TEST_S3_SECRET_KEY",
    "DISPR_TEST_S3_REGION",
    "DISPR_TEST_S3_BUCKET",
];

/// Where the test services are: a RabbitMQ broker and an S3-compatible server with a bucket.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// AMQP URL of the broker, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub amqp_url: String,
    /// Endpoint of the S3 server, e.g. `http://127.0.0.1:38111`.
    pub s3_endpoint: String,
    /// Access key of the S3 server.
    pub s3_access_key: String,
    /// Secret key of the S3 server.
    pub s3_secret_key: String,
    /// Region to sign requests for.
    pub s3_region: String,
    /// A bucket that exists on the server, shared by all tests (each uses its own prefix).
    pub s3_bucket: String,
}

impl TestEnv {
    /// Reads the `DISPR_TEST_*` variables.
    ///
    /// # Panics
    /// When any is missing or empty, naming them: end-to-end tests fail rather than pass by
    /// skipping when their services are not there.
    pub fn from_env() -> TestEnv {
        let values: Vec<Option<String>> =
            ENV_VARS.iter().map(|name| std::env::var(name).ok().filter(|v| !v.is_empty())).collect();
        let missing: Vec<&str> =
            ENV_VARS.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(name, _)| *name).collect();
        if !missing.is_empty() {
            panic!(
                "missing test environment variables {}: run the end-to-end tests through scripts/test.sh, \
                 which starts RabbitMQ and s3s-fs and sets them",
                missing.join(", ")
            );
        }
        let mut values = values.into_iter().flatten();
        let mut next = || values.next().unwrap_or_default();
        TestEnv {
            amqp_url: next(),
            s3_endpoint: next(),
            s3_access_key: next(),
            s3_secret_key: next(),
            s3_region: next(),
            s3_bucket: next(),
        }
    }

    /// Settings that make a [`Store`] talk to the test S3 server.
    pub fn s3_settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.s3_endpoint.clone()),
            region: Some(self.s3_region.clone()),
            access_key: Some(self.s3_access_key.clone()),
            secret_key: Some(self.s3_secret_key.clone()),
            path_style: Some(true),
            max_attempts: None,
        }
    }

    /// A fresh `s3://<bucket>/<test>-<id>` URI that no other test (or earlier run) uses.
    pub fn s3_uri(&self, test: &str) -> String {
        format!("s3://{}/{}", self.s3_bucket, unique_name(test))
    }

    /// The store at a fresh [`s3_uri`](Self::s3_uri): empty, and this test's alone.
    pub fn s3_store(&self, test: &str) -> Store {
        self.open(&self.s3_uri(test))
    }

    /// Opens `uri` (on the test S3 server if it is an `s3://` URI).
    ///
    /// # Panics
    /// When the URI is invalid.
    pub fn open(&self, uri: &str) -> Store {
        Store::open_with(uri, self.s3_settings()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A queue prefix (for `--queue-prefix`) that gives this test its own queues and exchange,
    /// e.g. `test-submit-3f2a9c1b.`.
    pub fn queue_prefix(&self, test: &str) -> String {
        format!("test-{}.", unique_name(test))
    }

    /// The environment a child process (`dispr-worker`, `dispr-coordinator`) needs to reach the
    /// test services through the standard variables: AWS credentials, region and endpoint,
    /// and the AMQP URL. Use with `Command::envs`.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.s3_access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.s3_secret_key.clone()),
            ("AWS_REGION", self.s3_region.clone()),
            ("AWS_ENDPOINT_URL", self.s3_endpoint.clone()),
            ("DISPR_S3_PATH_STYLE", "true".to_owned()),
            ("DISPR_AMQP_URL", self.amqp_url.clone()),
        ]
    }
}

/// Path of a workspace binary (`dispr-worker`, `dispr-coordinator`) in the calling test's own
/// profile, built once per process so the scenarios always run the current code (cargo is a no-op
/// when nothing changed).
///
/// The build selects what `cargo test --workspace --all-targets` selects, so its features unify
/// the same way and, under the test command, every dependency is already built: a narrower
/// selection (`-p dispr-worker --bins`) resolves other features and compiles the network stack
/// a second time. A release run (benchmarks) builds just the two binaries.
///
/// # Panics
/// When the build fails or the binary is not where cargo puts it.
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().expect("the test executable has a path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps")
        .to_path_buf();
    BUILT.get_or_init(|| {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // cargo gives this test process the variables of its own crate (CARGO_MANIFEST_DIR,
        // CARGO_PKG_NAME, OUT_DIR, ...). Build scripts such as ring's and aws-lc's declare
        // rerun-if-env-changed on some of them, so an inner cargo that inherits them reruns those
        // scripts and recompiles the TLS and AWS stack; it must see the environment the test
        // command had.
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            let crate_var = key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_")
                || key.starts_with("CARGO_MANIFEST_")
                || matches!(
                    key,
                    "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
                );
            if crate_var {
                cmd.env_remove(key);
            }
        }
        if dir.ends_with("release") {
            cmd.args(["build", "--release", "-p", "dispr-worker", "-p", "dispr-coordinator", "--bins"]);
        } else {
            cmd.args(["build", "--workspace", "--all-targets"]);
        }
        let status = cmd.status().expect("running cargo build for the binaries");
        assert!(status.success(), "building dispr-worker and dispr-coordinator failed");
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing after the build", path.display());
    path
}

/// `<test>-<8 hex digits>`, with the test name reduced to what S3 keys, queue names and run ids
/// all accept (`[a-z0-9-]`).
pub fn unique_name(test: &str) -> String {
    let name: String =
        test.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", name.trim_matches('-'), &id[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_unique_and_clean() {
        let a = unique_name("store::s3 round_trip");
        let b = unique_name("store::s3 round_trip");
        assert_ne!(a, b);
        assert!(a.starts_with("store--s3-round-trip-"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{a}");
    }
}
