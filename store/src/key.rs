//! Validation of object keys and list prefixes, shared by both backends so that a key that works
//! on a local folder works on S3 and the other way round, and no key escapes its store's root.

/// Names of the local backend's temporary files start with this; keys may not, so a listing
/// never confuses a half-written file with an object.
pub(crate) const TEMP_PREFIX: &str = ".dispr-tmp-";

/// S3's limit on the length of a key, applied to the whole key under the store's prefix.
const MAX_KEY_BYTES: usize = 1024;

/// Checks an object key: relative, `/`-separated, no empty, `.` or `..` segments, no trailing
/// `/`, no backslash or control characters.
pub(crate) fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("an object key may not be empty");
    }
    if key.ends_with('/') {
        return Err("an object key may not end with '/' (that is a prefix)");
    }
    check_path(key)
}

/// Checks a list prefix: empty (everything), a folder such as `runs/r1/features/`, or a partial
/// name such as `image/A_` (S3 semantics: plain string prefix of the key).
pub(crate) fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_path(prefix.strip_suffix('/').unwrap_or(prefix))
}

fn check_path(path: &str) -> Result<(), &'static str> {
    if path.len() > MAX_KEY_BYTES {
        return Err("an object key may not be longer than 1024 bytes");
    }
    if path.starts_with('/') {
        return Err("an object key is relative to the store's root and may not start with '/'");
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Err("an object key may not contain a backslash or control characters");
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err("an object key may not contain an empty segment ('//')"),
            "." | ".." => return Err("an object key may not contain '.' or '..' segments"),
            s if s.starts_with(TEMP_PREFIX) => {
                return Err("an object key may not start a segment with '.dispr-tmp-' (reserved)");
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_pass() {
        for key in ["a", "runs/r1/volumes/c-1.2_x/0.tif", "labels.csv", ".hidden", "a/.b"] {
            assert_eq!(check_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn escaping_and_odd_keys_are_refused() {
        let long = "a".repeat(1025);
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
            &long,
            ".dispr-tmp-1",
        ] {
            assert!(check_key(key).is_err(), "{key:?} should be refused");
        }
    }

    #[test]
    fn prefixes() {
        for prefix in ["", "image/", "image/A_", "runs/r1/features/"] {
            assert_eq!(check_prefix(prefix), Ok(()), "{prefix}");
        }
        for prefix in ["/", "../", "a//", "a/../", "/abs/"] {
            assert!(check_prefix(prefix).is_err(), "{prefix:?} should be refused");
        }
    }
}
