//! The S3 backend, on aws-sdk-s3. Works with AWS and with S3-compatible servers (MinIO, s3s-fs)
//! through a custom endpoint and path-style addressing.
//!
//! The client is built on first use, not in [`crate::Store::open`], because the AWS settings
//! chain (profile files, instance metadata) is async and `open` is not. The SDK retries
//! transient failures (5xx, throttling, timeouts, connection errors) with exponential backoff;
//! what is still failing after that is classified once, in [`classify`], into the store's
//! [`ErrorKind`]s with advice for the user.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, ProvideCredentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::error::{ErrorKind, Op, StoreError};

/// Where the S3 client gets its settings. Every field left `None` comes from the standard AWS
/// environment and profile chain (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, instance roles, ...), so `S3Settings::default()` is
/// what [`crate::Store::open`] uses. Tests and tools set the fields to talk to a given server.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when neither this nor the environment names one.
    pub region: Option<String>,
    /// Static access key; used only together with `secret_key`.
    pub access_key: Option<String>,
    /// Static secret key; used only together with `access_key`.
    pub secret_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). Default: on when a custom endpoint is set,
    /// unless the environment variable `DISPR_S3_PATH_STYLE` is `false`.
    pub path_style: Option<bool>,
    /// Attempts per request, first try included (default 5).
    pub max_attempts: Option<u32>,
}

const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_ATTEMPTS: u32 = 5;

const CREDENTIALS_HINT: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to keys \
     that may read and write this bucket";
const ENDPOINT_HINT: &str = "check that the S3 server is running and that AWS_ENDPOINT_URL points at it";

/// A store under `s3://bucket/prefix`.
#[derive(Debug)]
pub(crate) struct S3Bucket {
    bucket: String,
    /// Empty or ending with `/`.
    prefix: String,
    /// The store's URI, for messages.
    uri: String,
    settings: S3Settings,
    client: OnceCell<Client>,
}

impl S3Bucket {
    pub(crate) fn new(uri: String, bucket: String, prefix: String, settings: S3Settings) -> Self {
        S3Bucket { bucket, prefix, uri, settings, client: OnceCell::new() }
    }

    async fn client(&self) -> Result<&Client, StoreError> {
        self.client.get_or_try_init(|| build_client(&self.uri, &self.settings)).await
    }

    /// The key of the object in the bucket.
    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn target(&self, key: &str) -> String {
        format!("{}/{key}", self.uri)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let client = self.client().await?;
        let output = client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| classify(e, Op::Read, self.target(key), &self.bucket))?;
        let body = output.body.collect().await.map_err(|e| {
            StoreError::new(ErrorKind::Unreachable, Op::Read, self.target(key), "the download broke off")
                .caused_by(e)
        })?;
        Ok(body.into_bytes())
    }

    pub(crate) async fn get_at_most(&self, key: &str, max_bytes: u64) -> Result<Bytes, StoreError> {
        let client = self.client().await?;
        let mut output = client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| classify(e, Op::Read, self.target(key), &self.bucket))?;
        let announced = output.content_length.and_then(|n| u64::try_from(n).ok());
        if let Some(size) = announced.filter(|&n| n > max_bytes) {
            return Err(crate::error::too_large(self.target(key), size, max_bytes));
        }
        // Whatever was announced, never hold more than allowed.
        let mut data = Vec::with_capacity(announced.unwrap_or(0) as usize);
        while let Some(chunk) = output.body.try_next().await.map_err(|e| {
            StoreError::new(ErrorKind::Unreachable, Op::Read, self.target(key), "the download broke off")
                .caused_by(e)
        })? {
            data.extend_from_slice(&chunk);
            if data.len() as u64 > max_bytes {
                return Err(crate::error::too_large(self.target(key), data.len() as u64, max_bytes));
            }
        }
        Ok(Bytes::from(data))
    }

    pub(crate) async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| classify(e, Op::Write, self.target(key), &self.bucket))?;
        Ok(())
    }

    /// Uploads the file at `source`, streamed from disk (one PUT: objects up to 5 GB).
    pub(crate) async fn put_file(&self, key: &str, source: &std::path::Path) -> Result<(), StoreError> {
        let client = self.client().await?;
        let body = ByteStream::from_path(source).await.map_err(|e| {
            StoreError::new(ErrorKind::Io, Op::Write, self.target(key), "the file to upload cannot be read")
                .caused_by(e)
        })?;
        client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(body)
            .send()
            .await
            .map_err(|e| classify(e, Op::Write, self.target(key), &self.bucket))?;
        Ok(())
    }

    /// A conditional write with `If-None-Match: *`; the server answers 412 when the key exists.
    /// When a first attempt wrote the object but its answer was lost, the SDK's retry sees 412
    /// and this returns `false`: callers write deterministic bytes, so the object is right.
    pub(crate) async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let result = client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .if_none_match("*")
            .body(ByteStream::from(data))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(412) => Ok(false),
            Err(e) => Err(classify(e, Op::WriteIfAbsent, self.target(key), &self.bucket)),
        }
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let result = client.head_object().bucket(&self.bucket).key(self.full_key(key)).send().await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                let err = classify(e, Op::Check, self.target(key), &self.bucket);
                if err.is_not_found() { Ok(false) } else { Err(err) }
            }
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| classify(e, Op::Delete, self.target(key), &self.bucket))?;
        Ok(())
    }

    /// All keys under `prefix`, following continuation tokens page by page.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let mut pages = client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(e, Op::List, self.target(prefix), &self.bucket))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    keys.push(key.to_owned());
                }
            }
        }
        keys.sort_unstable();
        Ok(keys)
    }
}

async fn build_client(uri: &str, settings: &S3Settings) -> Result<Client, StoreError> {
    let config_error = |detail: String| StoreError::new(ErrorKind::Config, Op::Open, uri, detail);
    let retry = RetryConfig::standard()
        .with_max_attempts(settings.max_attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1))
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        // A volume is a few MiB; a stalled attempt is retried rather than waited on.
        .operation_attempt_timeout(Duration::from_secs(120))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts)
        // Newer SDKs add CRC checksums (and aws-chunked bodies) to every upload, which several
        // S3-compatible servers reject; TLS already protects the bytes in transit.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let (Some(access), Some(secret)) = (&settings.access_key, &settings.secret_key) {
        loader = loader.credentials_provider(Credentials::new(access, secret, None, None, "dispr-static"));
    }
    let shared = loader.load().await;

    // Resolve the credentials once now, so that missing ones are one clear error up front
    // rather than an opaque failure inside the first request.
    let provider =
        shared.credentials_provider().ok_or_else(|| config_error("no AWS credentials provider".into()))?;
    if let Err(e) = provider.provide_credentials().await {
        return Err(
            config_error(format!("no usable AWS credentials ({})", causes(&e))).hint(CREDENTIALS_HINT)
        );
    }

    let path_style = match settings.path_style {
        Some(on) => on,
        None => match std::env::var("DISPR_S3_PATH_STYLE").ok().as_deref() {
            None | Some("") => shared.endpoint_url().is_some(),
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                return Err(config_error(format!("DISPR_S3_PATH_STYLE is {other:?}"))
                    .hint("set DISPR_S3_PATH_STYLE to true or false"));
            }
        },
    };
    let mut config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style);
    if shared.region().is_none() {
        config = config.region(Region::from_static(DEFAULT_REGION));
    }
    Ok(Client::from_conf(config.build()))
}

type HttpResponse = aws_smithy_runtime_api::http::Response;

/// The HTTP status the server answered with, if it answered.
fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|response| response.status().as_u16())
}

/// Turns what the SDK returned after its retries into a [`StoreError`] with advice.
fn classify<E>(err: SdkError<E, HttpResponse>, op: Op, target: String, bucket: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default().to_owned();
    let detail = match (&err, status(&err)) {
        (SdkError::ServiceError(_), Some(status)) => match err.message() {
            Some(message) => format!("the server answered HTTP {status} {code}: {message}"),
            None => format!("the server answered HTTP {status} {code}"),
        },
        _ => causes(&err),
    };
    let (kind, hint) = match &err {
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, Some(ENDPOINT_HINT)),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            (ErrorKind::Timeout, Some(ENDPOINT_HINT))
        }
        SdkError::DispatchFailure(failure) if failure.is_io() => {
            (ErrorKind::Unreachable, Some(ENDPOINT_HINT))
        }
        SdkError::DispatchFailure(_) => (ErrorKind::Other, Some(ENDPOINT_HINT)),
        SdkError::ResponseError(_) => (ErrorKind::Server, None),
        SdkError::ConstructionFailure(_) => (ErrorKind::Config, None),
        _ => match (status(&err), code.as_str()) {
            (_, "NoSuchBucket") => {
                (ErrorKind::BucketMissing, Some("create the bucket, or fix the bucket name in the URI"))
            }
            (Some(404), _) | (_, "NoSuchKey" | "NotFound") => (ErrorKind::NotFound, None),
            (Some(401 | 403), _) => (ErrorKind::AccessDenied, Some(CREDENTIALS_HINT)),
            // 409 is S3's "a conditional write to this key is in progress": try again.
            (Some(409 | 429 | 500..=599), _) | (_, "SlowDown" | "RequestTimeout") => {
                (ErrorKind::Server, None)
            }
            _ => (ErrorKind::Other, None),
        },
    };
    let detail =
        if kind == ErrorKind::BucketMissing { format!("bucket {bucket:?} does not exist") } else { detail };
    let mut store_error = StoreError::new(kind, op, target, detail).caused_by(err);
    if let Some(hint) = hint {
        store_error = store_error.hint(hint);
    }
    store_error
}

/// An error and its causes as `a: b: c`, each text once. The SDK's own `Display` says only
/// "dispatch failure" and the like, and its `DisplayErrorContext` appends a debug dump.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
