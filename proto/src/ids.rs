//! Validated identifiers. Cell and run ids become parts of object keys, so they are checked once,
//! here, and every key is built from these types only.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest id accepted: S3 keys are limited to 1024 bytes and ids are only a part of one.
pub const MAX_ID_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} id is empty; ids are 1 to {MAX_ID_LEN} characters of [A-Za-z0-9._-]")]
    Empty { what: &'static str },
    #[error("{what} id {id:?} is {len} characters long; at most {MAX_ID_LEN} are allowed")]
    TooLong { what: &'static str, id: String, len: usize },
    #[error(
        "{what} id {id:?} contains {bad:?}; ids may only use letters, digits, '.', '_' and '-' \
         (they become object keys): rename the file or list it under another id in labels.csv"
    )]
    BadChar { what: &'static str, id: String, bad: char },
    #[error("{what} id {id:?} is not allowed (it would escape its folder)")]
    Dots { what: &'static str, id: String },
}

fn validate(what: &'static str, id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { what });
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { what, id: id.to_string(), len: id.len() });
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(IdError::BadChar { what, id: id.to_string(), bad });
    }
    if id == "." || id == ".." {
        return Err(IdError::Dots { what, id: id.to_string() });
    }
    Ok(())
}

macro_rules! id_type {
    ($name:ident, $what:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                validate($what, &id)?;
                Ok(Self(id))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(CellId, "cell", "A cell of a dataset: the file stem of `image/<cell>.tif`.");
id_type!(RunId, "run", "A generation run: everything it writes lives under `runs/<run>/`.");
id_type!(JobId, "job", "A job of a run, as the coordinator names it (`j00000042`).");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_cell_names() {
        for id in ["A_cell_clusters000604", "-0.33_stomatocyte_I000001", "0.00_discocyte12", "run-2026.11"] {
            assert_eq!(CellId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn refuses_ids_that_would_escape_or_break_keys() {
        assert!(matches!(CellId::new(""), Err(IdError::Empty { .. })));
        assert!(matches!(CellId::new(".."), Err(IdError::Dots { .. })));
        assert!(matches!(CellId::new("a/b"), Err(IdError::BadChar { bad: '/', .. })));
        assert!(matches!(CellId::new("a b"), Err(IdError::BadChar { bad: ' ', .. })));
        assert!(matches!(RunId::new("x".repeat(201)), Err(IdError::TooLong { .. })));
        let msg = CellId::new("cell 1").unwrap_err().to_string();
        assert!(msg.contains("\"cell 1\"") && msg.contains("letters, digits"), "{msg}");
    }

    #[test]
    fn deserialising_validates() {
        let bad: Result<CellId, _> = serde_json::from_str("\"../etc\"");
        assert!(bad.is_err());
        let good: CellId = serde_json::from_str("\"B_keratocytes000673\"").unwrap();
        assert_eq!(good.as_str(), "B_keratocytes000673");
    }
}
