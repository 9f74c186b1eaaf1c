//! The object store against a real S3-compatible server (s3s-fs, started by scripts/test.sh):
//! the same conformance body as the local-folder unit test, then the failures a user causes.

use bytes::Bytes;
use dispr_store::{ErrorKind, S3Settings, Store};
use dispr_tests::{TestEnv, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_keeps_every_promise() {
    let env = TestEnv::from_env();
    let store = env.s3_store("store-conformance");
    dispr_store::conformance::check_store(&store).await;
}

#[tokio::test]
async fn two_stores_on_one_bucket_see_only_their_prefix() {
    let env = TestEnv::from_env();
    let a = env.s3_store("prefix-a");
    let b = env.s3_store("prefix-b");
    a.put("x.json", Bytes::from_static(b"a")).await.unwrap();
    assert_eq!(a.list("").await.unwrap(), ["x.json"]);
    assert!(b.get_opt("x.json").await.unwrap().is_none());
    assert_eq!(b.list("").await.unwrap(), Vec::<String>::new());
    // The store's root is the prefix: the bucket-level view shows the object under it.
    let bucket = env.open(&format!("s3://{}", env.s3_bucket));
    let under = a.uri().rsplit('/').next().unwrap().to_owned();
    assert_eq!(bucket.get(&format!("{under}/x.json")).await.unwrap(), Bytes::from_static(b"a"));
}

#[tokio::test]
async fn wrong_credentials_say_which_settings_to_fix() {
    let env = TestEnv::from_env();
    let settings = S3Settings { secret_key: Some("not-the-secret".into()), ..env.s3_settings() };
    let store = Store::open_with(&env.s3_uri("wrong-key"), settings).unwrap();
    let err = store.put("k", Bytes::from_static(b"x")).await.unwrap_err();
    eprintln!("wrong credentials: {err}");
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(!err.is_retriable());
    let message = err.to_string();
    assert!(message.contains("AWS_SECRET_ACCESS_KEY") && message.contains(&store.uri_of("k")), "{message}");
}

#[tokio::test]
async fn a_missing_bucket_is_named() {
    let env = TestEnv::from_env();
    let bucket = unique_name("no-such-bucket");
    let store = env.open(&format!("s3://{bucket}/run"));
    // A listing, because s3s-fs (unlike AWS and MinIO) creates a missing bucket on a write.
    let err = store.list("").await.unwrap_err();
    eprintln!("missing bucket: {err}");
    assert_eq!(err.kind(), ErrorKind::BucketMissing, "{err}");
    assert!(!err.is_retriable());
    let message = err.to_string();
    assert!(message.contains(&bucket) && message.contains("create the bucket"), "{message}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retriable_and_says_where() {
    let env = TestEnv::from_env();
    // A loopback port that nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        max_attempts: Some(2),
        ..env.s3_settings()
    };
    let store = Store::open_with(&env.s3_uri("unreachable"), settings).unwrap();
    let err = store.get("k").await.unwrap_err();
    eprintln!("unreachable endpoint: {err}");
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.is_retriable());
    assert!(err.to_string().contains("AWS_ENDPOINT_URL"), "{err}");
}
