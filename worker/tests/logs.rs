//! What `dispr-worker serve` writes to its log when it is not on a terminal (a file, a pipe, a
//! collector), against the real RabbitMQ (DISPR_TEST_AMQP_URL, by default 127.0.0.1:5672).

use dispr_amqp as amqp;
use dispr_proto::queues::QueueNames;
use lapin::options::QueueDeleteOptions;
use std::process::{Command, Output, Stdio};

fn amqp_url() -> String {
    std::env::var("DISPR_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t-{test}-{}-{nanos}.", std::process::id())
}

/// `dispr-worker serve` with `args`, its stderr a pipe, run to its exit. Neither RUST_LOG nor
/// NO_COLOR is passed on: the defaults are what is tested.
fn serve(url: &str, args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_dispr-worker"))
        .args(["serve", "--http-addr", "127.0.0.1:0", "--amqp-url", url])
        .args(args)
        .env("DISPR_MODEL_CACHE_DIR", cache.path())
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("DISPR_AMQP_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `url` with its password replaced by `password`.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (creds, host) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
    let user = creds.split_once(':').map_or(creds, |(u, _)| u);
    format!("{scheme}://{user}:{password}@{host}")
}

#[test]
fn a_wrong_password_is_one_clear_error_without_the_clients_own_lines() {
    let url = with_password(&amqp_url(), "not-the-password");
    let prefix = unique_prefix("badpass");
    let out = serve(&url, &["--queue-prefix", &prefix]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "refused credentials end the worker:\n{log}");
    // lapin logs the refusal itself, three ERROR lines with raw frames, before returning it.
    assert!(!log.contains("lapin") && !log.contains("ERROR"), "the AMQP client's own lines:\n{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("could not connect to RabbitMQ") && errors[0].contains("credentials"),
        "says what to check: {}",
        errors[0]
    );
    // The broker's words once, though lapin's error repeats its cause.
    assert_eq!(errors[0].matches("Login was refused").count(), 1, "{}", errors[0]);
    assert!(!log.contains("not-the-password"), "the password reached the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_says_why_it_exits_in_plain_text() {
    let prefix = unique_prefix("idle");
    let out = serve(&amqp_url(), &["--queue-prefix", &prefix, "--idle-timeout-secs", "1"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("exiting: the worker had no job for its --idle-timeout-secs"), "{log}");
    // A pipe is not a terminal: no colour codes in a log file.
    assert!(!out.stderr.contains(&0x1b), "escape codes in a log written to a pipe:\n{log:?}");

    let conn = amqp::connect(&amqp_url(), "worker-test-cleanup").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = QueueNames::with_prefix(&prefix);
    for name in [&q.jobs, &q.dead] {
        let _ = ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await;
    }
    for exchange in [&q.runs_exchange, &q.dead_letter_exchange] {
        let _ = ch.exchange_delete(exchange.as_str().into(), Default::default()).await;
    }
}
