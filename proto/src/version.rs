//! Schema versioning: every message and record carries `schema_version`, and a reader refuses a
//! version it does not know with an error that names it, before looking at any other field.

use serde::de::DeserializeOwned;

/// The version this build writes and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("{what} is not valid JSON ({source}); was it written by another program?")]
    NotJson { what: &'static str, source: serde_json::Error },
    #[error("{what} has no numeric \"schema_version\" field; it was not written by DISPR at scale")]
    NoVersion { what: &'static str },
    #[error(
        "{what} has schema version {found}, but this build only understands version {SCHEMA_VERSION}; \
         run coordinator and workers of the same release"
    )]
    UnknownVersion { what: &'static str, found: u64 },
    #[error("{what} (schema version {SCHEMA_VERSION}) is malformed: {source}")]
    Malformed { what: &'static str, source: serde_json::Error },
    #[error("{what} cannot be used: {problem}")]
    Invalid { what: &'static str, problem: String },
}

/// Decodes a versioned JSON document: checks it is JSON, then its version, then its shape.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, ProtoError> {
    // The version first, read on its own: serde skips every other field without building it, so
    // a record is parsed once into `T` below rather than into a generic tree and then again (a
    // report reads a million of them).
    #[derive(serde::Deserialize)]
    struct Envelope {
        schema_version: Option<serde_json::Value>,
    }
    let found = match serde_json::from_slice::<Envelope>(bytes) {
        Ok(envelope) => envelope.schema_version.and_then(|v| v.as_u64()),
        Err(source) if !source.is_data() => return Err(ProtoError::NotJson { what, source }),
        // JSON, but not an object (or one with a repeated version): no version to read.
        Err(_) => None,
    };
    match found {
        None => Err(ProtoError::NoVersion { what }),
        Some(found) if found != u64::from(SCHEMA_VERSION) => Err(ProtoError::UnknownVersion { what, found }),
        Some(_) => serde_json::from_slice(bytes).map_err(|source| ProtoError::Malformed { what, source }),
    }
}

/// Encodes a record as pretty JSON (records are read by people too) ending in a newline.
pub fn encode_pretty<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs (string keys, finite or null numbers) cannot fail.
    let mut out = serde_json::to_vec_pretty(value).expect("records serialise to JSON");
    out.push(b'\n');
    out
}

/// Encodes a message compactly.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("messages serialise to JSON")
}
