//! Object storage behind one small interface: an S3 bucket (aws-sdk-s3) or a local folder.
//!
//! A [`Store`] is opened from a URI (`s3://bucket/prefix`, `file:///abs/path` or a plain local
//! path) and addressed with keys relative to that root, built by `dispr_proto::keys`. It is a
//! cheap-to-clone handle; all operations are async. Keys are checked the same way on both
//! backends: relative, `/`-separated, no `.`/`..` or empty segments, so no key escapes the root.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dispr_store::StoreError> {
//! let store = dispr_store::Store::open("s3://bucket/outputs")?;
//! if store.put_if_absent("runs/r1/features/c1.json", "{}".into()).await? {
//!     println!("written");
//! }
//! # Ok(()) }
//! ```

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod key;
mod local;
mod location;
mod s3;

use std::sync::Arc;

use bytes::Bytes;

pub use error::{ErrorKind, StoreError};
pub use s3::S3Settings;

use error::Op;
use local::LocalFolder;
use location::Location;
use s3::S3Bucket;

/// A handle on an object store: an S3 bucket and prefix, or a local folder.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    uri: String,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Local(LocalFolder),
    // Boxed: the S3 settings and client are large next to a path.
    S3(Box<S3Bucket>),
}

impl Store {
    /// Opens the store at `uri`. S3 settings come from the standard AWS environment (see
    /// [`S3Settings`]). Nothing is contacted yet: a wrong bucket or missing credentials show up
    /// on the first operation, with a message that says so.
    pub fn open(uri: &str) -> Result<Store, StoreError> {
        Store::open_with(uri, S3Settings::default())
    }

    /// Opens the store at `uri`, with explicit S3 settings (ignored for a local folder).
    pub fn open_with(uri: &str, settings: S3Settings) -> Result<Store, StoreError> {
        let location = Location::parse(uri)?;
        let uri = location.uri();
        let backend = match location {
            Location::Local(root) => Backend::Local(LocalFolder::new(root)),
            Location::S3 { bucket, prefix } => {
                Backend::S3(Box::new(S3Bucket::new(uri.clone(), bucket, prefix, settings)))
            }
        };
        Ok(Store { inner: Arc::new(Inner { uri, backend }) })
    }

    /// The store's canonical URI (an absolute path for a local folder); opening it gives the
    /// same store.
    pub fn uri(&self) -> &str {
        &self.inner.uri
    }

    /// The folder of a local store (absolute); `None` for S3. A folder means a different place on
    /// every machine, so commands whose jobs may run elsewhere check for it.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match &self.inner.backend {
            Backend::Local(local) => Some(local.root()),
            Backend::S3(_) => None,
        }
    }

    /// The full URI of the object at `key`, for messages.
    pub fn uri_of(&self, key: &str) -> String {
        format!("{}/{key}", self.inner.uri)
    }

    /// Reads the object at `key`; a missing one is an error for which
    /// [`StoreError::is_not_found`] is true.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.check_key(Op::Read, key)?;
        match &self.inner.backend {
            Backend::Local(local) => local.get(key).await,
            Backend::S3(s3) => s3.get(key).await,
        }
    }

    /// Reads the object at `key` if it holds at most `max_bytes`; a larger one is an error of
    /// kind [`ErrorKind::TooLarge`], found from its size before its bytes are fetched (or, where
    /// the size is not announced, after `max_bytes` of them), so a reader of files it did not
    /// make never holds more than it asked for.
    pub async fn get_at_most(&self, key: &str, max_bytes: u64) -> Result<Bytes, StoreError> {
        self.check_key(Op::Read, key)?;
        match &self.inner.backend {
            Backend::Local(local) => local.get_at_most(key, max_bytes).await,
            Backend::S3(s3) => s3.get_at_most(key, max_bytes).await,
        }
    }

    /// [`Store::get_at_most`], with `None` when there is no object at `key`.
    pub async fn get_opt_at_most(&self, key: &str, max_bytes: u64) -> Result<Option<Bytes>, StoreError> {
        match self.get_at_most(key, max_bytes).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads the object at `key`, or `None` when there is none.
    pub async fn get_opt(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.get(key).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the object at `key`, replacing any. Readers see the old or the new bytes, never
    /// a part; when this returns, the object is durable.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.check_key(Op::Write, key)?;
        match &self.inner.backend {
            Backend::Local(local) => local.put(key, data).await,
            Backend::S3(s3) => s3.put(key, data).await,
        }
    }

    /// [`Store::put`] of the contents of the local file at `source`, streamed from disk, so
    /// that a large output (a million cells' features.csv) is never held in memory.
    pub async fn put_file(&self, key: &str, source: &std::path::Path) -> Result<(), StoreError> {
        self.check_key(Op::Write, key)?;
        match &self.inner.backend {
            Backend::Local(local) => local.put_file(key, source).await,
            Backend::S3(s3) => s3.put_file(key, source).await,
        }
    }

    /// Writes the object at `key` only if there is none, atomically: of several racing writers
    /// one gets `true` (written), the others `false` (already there, left unchanged).
    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        self.check_key(Op::WriteIfAbsent, key)?;
        match &self.inner.backend {
            Backend::Local(local) => local.put_if_absent(key, data).await,
            Backend::S3(s3) => s3.put_if_absent(key, data).await,
        }
    }

    /// Whether there is an object at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.check_key(Op::Check, key)?;
        match &self.inner.backend {
            Backend::Local(local) => local.exists(key).await,
            Backend::S3(s3) => s3.exists(key).await,
        }
    }

    /// The keys (relative to the root) that start with `prefix`, sorted. The prefix is a plain
    /// string prefix, as in S3: `image/` lists a folder, `image/A_` the names starting `A_`,
    /// and `""` everything. Listing a prefix with no objects gives an empty list.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        key::check_prefix(prefix).map_err(|reason| self.key_error(Op::List, prefix, reason))?;
        match &self.inner.backend {
            Backend::Local(local) => local.list(prefix).await,
            Backend::S3(s3) => s3.list(prefix).await,
        }
    }

    /// Deletes the object at `key`; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check_key(Op::Delete, key)?;
        match &self.inner.backend {
            Backend::Local(local) => local.delete(key).await,
            Backend::S3(s3) => s3.delete(key).await,
        }
    }

    fn check_key(&self, op: Op, key: &str) -> Result<(), StoreError> {
        key::check_key(key).map_err(|reason| self.key_error(op, key, reason))
    }

    fn key_error(&self, op: Op, key: &str, reason: &str) -> StoreError {
        StoreError::new(ErrorKind::InvalidKey, op, format!("key {key:?} in {}", self.inner.uri), reason).hint(
            "keys come from dispr_proto::keys; cell ids may contain only letters, digits, '.', '_' and '-'",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_folder_keeps_every_promise() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        conformance::check_store(&store).await;
    }

    #[tokio::test]
    async fn file_uri_and_plain_path_open_the_same_folder() {
        let dir = tempfile::tempdir().unwrap();
        let by_path = Store::open(dir.path().to_str().unwrap()).unwrap();
        let by_uri = Store::open(&format!("file://{}/", dir.path().display())).unwrap();
        assert_eq!(by_path.uri(), by_uri.uri());
        by_path.put("a/b.json", Bytes::from_static(b"1")).await.unwrap();
        assert_eq!(by_uri.get("a/b.json").await.unwrap(), Bytes::from_static(b"1"));
        assert_eq!(std::fs::read(dir.path().join("a/b.json")).unwrap(), b"1");
    }

    #[tokio::test]
    async fn a_missing_folder_is_an_empty_store_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("not/yet");
        let store = Store::open(root.to_str().unwrap()).unwrap();
        assert_eq!(store.list("").await.unwrap(), Vec::<String>::new());
        assert!(store.get("x").await.unwrap_err().is_not_found());
        store.put("x", Bytes::from_static(b"1")).await.unwrap();
        assert!(root.join("x").is_file());
    }

    #[test]
    fn opening_an_s3_uri_contacts_nothing() {
        // No runtime, no server, no credentials: open only parses.
        let store = Store::open("s3://bucket/some/prefix/").unwrap();
        assert_eq!(store.uri(), "s3://bucket/some/prefix");
        assert_eq!(store.uri_of("k.json"), "s3://bucket/some/prefix/k.json");
    }
}
