//! Errors of the repository layer.

use crate::backend::BackendError;
use crate::crypto::CryptoError;
use crate::pack::PackError;

/// Everything that can go wrong reading or writing a repository. Messages name the object.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("no repository at {0} (run `stowage init` first)")]
    NotARepository(String),
    #[error("a repository already exists at {0}")]
    AlreadyInitialized(String),
    #[error("wrong password: no key in the repository matches it")]
    WrongPassword,
    #[error("repository format version {found} is not supported by this stowage (it reads version {supported}); upgrade stowage")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("{what} is malformed: {msg}")]
    Malformed { what: String, msg: String },
    #[error("{what} is {size} bytes, more than the limit of {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("blob {0} is not in the index")]
    BlobNotFound(String),
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    #[error("snapshot id prefix {0:?} is ambiguous")]
    AmbiguousSnapshot(String),
    #[error("{0}")]
    Invalid(String),
}

impl RepoError {
    pub fn malformed(what: impl Into<String>, msg: impl std::fmt::Display) -> Self {
        RepoError::Malformed {
            what: what.into(),
            msg: msg.to_string(),
        }
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;
