//! Parsing of store URIs: `s3://bucket/prefix`, `file:///abs/path` or a plain local path.

use std::path::PathBuf;

use crate::error::{ErrorKind, Op, StoreError};
use crate::key;

const URI_HELP: &str = "use s3://bucket/prefix, file:///absolute/path or a local folder path";

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A local folder, as an absolute path (it need not exist yet).
    Local(PathBuf),
    /// An S3 bucket and a key prefix that is empty or ends with `/`.
    S3 { bucket: String, prefix: String },
}

impl Location {
    pub(crate) fn parse(uri: &str) -> Result<Location, StoreError> {
        let invalid = |detail: &str| {
            StoreError::new(ErrorKind::InvalidUri, Op::Open, format!("{uri:?}"), detail).hint(URI_HELP)
        };
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("the bucket name is missing"));
            }
            if !bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
                return Err(invalid("a bucket name has only letters, digits, '.', '-' and '_'"));
            }
            let prefix = prefix.trim_end_matches('/');
            if prefix.is_empty() {
                return Ok(Location::S3 { bucket: bucket.to_owned(), prefix: String::new() });
            }
            key::check_key(prefix).map_err(invalid)?;
            return Ok(Location::S3 { bucket: bucket.to_owned(), prefix: format!("{prefix}/") });
        }
        let path = if let Some(rest) = uri.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid("a file URI needs an absolute path: file:///path (three slashes)"));
            }
            rest
        } else if uri.contains("://") {
            return Err(invalid("unsupported scheme"));
        } else {
            uri
        };
        if path.is_empty() {
            return Err(invalid("the path is empty"));
        }
        // Absolute and normalised, so that the store means the same folder after a change of
        // working directory, its URI can be handed to another process, and every spelling of one
        // folder (relative, absolute, `file://`, with `.`, `..` or a trailing `/`) is one URI.
        // Symbolic links are kept as typed: a mount point may be a link on one machine and not
        // on another.
        let path =
            std::path::absolute(path).map_err(|e| invalid("cannot make the path absolute").caused_by(e))?;
        Ok(Location::Local(normalise(&path)))
    }

    /// The canonical URI: opening it gives the same store.
    pub(crate) fn uri(&self) -> String {
        match self {
            Location::Local(path) => path.display().to_string().trim_end_matches('/').to_owned(),
            Location::S3 { bucket, prefix } => {
                format!("s3://{bucket}/{prefix}").trim_end_matches('/').to_owned()
            }
        }
    }
}

/// `path` (absolute) without `.` components, with `..` taken against the component before it.
fn normalise(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> Location {
        Location::S3 { bucket: bucket.into(), prefix: prefix.into() }
    }

    #[test]
    fn s3_uris() {
        assert_eq!(Location::parse("s3://b").unwrap(), s3("b", ""));
        assert_eq!(Location::parse("s3://b/").unwrap(), s3("b", ""));
        assert_eq!(Location::parse("s3://my-bucket/a/b/").unwrap(), s3("my-bucket", "a/b/"));
        assert_eq!(Location::parse("s3://my-bucket/a/b").unwrap().uri(), "s3://my-bucket/a/b");
        assert_eq!(Location::parse("s3://b").unwrap().uri(), "s3://b");
    }

    #[test]
    fn local_uris() {
        assert_eq!(Location::parse("file:///data/x").unwrap(), Location::Local("/data/x".into()));
        assert_eq!(Location::parse("/data/x/").unwrap().uri(), "/data/x");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(Location::parse("rel/dir").unwrap(), Location::Local(cwd.join("rel/dir")));
        // Every spelling of one folder is one URI.
        let canonical = cwd.join("rel/dir").display().to_string();
        for spelling in [
            "rel/dir",
            "./rel/dir/",
            "rel/./dir",
            "rel/x/../dir",
            &format!("file://{canonical}"),
            &format!("{canonical}//"),
        ] {
            assert_eq!(Location::parse(spelling).unwrap().uri(), canonical, "{spelling}");
        }
        assert_eq!(Location::parse("/a/../../b").unwrap().uri(), "/b");
    }

    #[test]
    fn bad_uris_say_what_to_use() {
        for uri in [
            "s3://",
            "s3:///x",
            "s3://b/../x",
            "s3://b/a//c",
            "s3://bad bucket/x",
            "file://rel",
            "http://x",
            "",
        ] {
            let err = Location::parse(uri).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidUri, "{uri}");
            assert!(err.to_string().contains("use s3://bucket/prefix"), "{err}");
        }
    }
}
