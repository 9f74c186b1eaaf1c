//! What the coordinator's broker commands print when the broker refuses them, against the real
//! RabbitMQ (DISPR_TEST_AMQP_URL, by default 127.0.0.1:5672).

use std::process::{Command, Stdio};

fn amqp_url() -> String {
    std::env::var("DISPR_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// `url` with its password replaced by `password`.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (creds, host) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
    let user = creds.split_once(':').map_or(creds, |(u, _)| u);
    format!("{scheme}://{user}:{password}@{host}")
}

#[test]
fn a_wrong_password_is_one_plain_line_that_says_what_to_check() {
    let url = with_password(&amqp_url(), "not-the-password");
    // The broker is the first thing dead-letters needs; a pipe for stderr, as in a log file.
    let out = Command::new(env!("CARGO_BIN_EXE_dispr-coordinator"))
        .args(["dead-letters", "--queue-prefix", "t-badpass.", "--amqp-url", &url])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("DISPR_AMQP_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    // lapin logs the refusal itself, three ERROR lines with raw frames, before returning it.
    assert!(!log.contains("lapin") && !log.contains("ERROR"), "the AMQP client's own lines:\n{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("could not connect to RabbitMQ") && errors[0].contains("credentials"),
        "says what to check: {}",
        errors[0]
    );
    assert!(!out.stderr.contains(&0x1b), "escape codes in a log written to a pipe:\n{log:?}");
    assert!(!log.contains("not-the-password"), "the password reached the log:\n{log}");
}
