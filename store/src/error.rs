//! The one error type of the store: what failed, on which object, and what to do about it.

use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure a [`StoreError`] is; callers branch on this (or on the helpers
/// [`StoreError::is_not_found`] and [`StoreError::is_retriable`]), never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The store URI cannot be parsed or names an unsupported scheme.
    InvalidUri,
    /// The object key is not a plain relative key (empty, absolute, `..`, ...).
    InvalidKey,
    /// The object does not exist.
    NotFound,
    /// The object is larger than the reader accepts ([`crate::Store::get_at_most`]).
    TooLarge,
    /// A local folder holds something at the key that is not a file: a folder, a FIFO, a socket,
    /// a device or a symbolic link to nothing. Reading it cannot succeed until it is replaced.
    NotAFile,
    /// Credentials are missing, wrong, or may not do this.
    AccessDenied,
    /// The S3 bucket does not exist.
    BucketMissing,
    /// The server could not be reached (connection refused, DNS, reset).
    Unreachable,
    /// The request timed out.
    Timeout,
    /// The server answered with a transient failure (5xx, throttling, conflicting write).
    Server,
    /// The S3 client could not be set up from the settings or the environment.
    Config,
    /// A local file-system error other than the above.
    Io,
    /// Anything else the server refused.
    Other,
}

/// What the store was doing when it failed; it starts the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Open,
    Read,
    Write,
    WriteIfAbsent,
    Check,
    List,
    Delete,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Open => "cannot open store",
            Op::Read => "cannot read",
            Op::Write => "cannot write",
            Op::WriteIfAbsent => "cannot write (if absent)",
            Op::Check => "cannot check whether there is an object at",
            Op::List => "cannot list",
            Op::Delete => "cannot delete",
        }
    }
}

/// An object-store failure. Its message names the operation, the full URI of the object and
/// the cause, and ends with what to do when the fix is on the user's side.
#[derive(Debug)]
pub struct StoreError {
    kind: ErrorKind,
    op: Op,
    /// Full URI or path of the object or store concerned.
    target: String,
    detail: String,
    hint: Option<&'static str>,
    source: Option<BoxError>,
}

impl StoreError {
    pub(crate) fn new(kind: ErrorKind, op: Op, target: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError { kind, op, target: target.into(), detail: detail.into(), hint: None, source: None }
    }

    /// Adds advice that tells the user what to do.
    pub(crate) fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// Records the underlying error, which `std::error::Error::source` then returns.
    pub(crate) fn caused_by(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The object (or, for `list`, the prefix) is not there.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Trying again later may succeed: 5xx answers, throttling, timeouts and connection errors
    /// that remained after the S3 client's own retries. A worker should requeue its job on these
    /// and fail the cell on the others.
    pub fn is_retriable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Server)
    }
}

/// The error of [`crate::Store::get_at_most`] for an object of `size` bytes (at least) when at
/// most `max` were accepted.
pub(crate) fn too_large(target: String, size: u64, max: u64) -> StoreError {
    StoreError::new(
        ErrorKind::TooLarge,
        Op::Read,
        target,
        format!("it holds {size} bytes ({}) or more, more than the {max} bytes ({}) accepted for it", mib(size), mib(max)),
    )
    .hint(
        "check that this is the file meant; the dataset's files are small 64x64 images and 64x64x64 volumes, so \
         replace it with the right file or remove it",
    )
}

/// `bytes` in MiB with one decimal, for people.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// The error of a read of a local `target` that is not a file; `what` says what it is.
pub(crate) fn not_a_file(target: String, what: String) -> StoreError {
    StoreError::new(ErrorKind::NotAFile, Op::Read, target, what)
        .hint("put the file itself there, or remove it")
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op.verb(), self.target, self.detail)?;
        if let Some(hint) = self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
