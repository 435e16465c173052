//! The class and kind of a [`RepoError`] as backup and restore report it, for the errors they
//! pass on from the repository layer.
//!
//! The repository layer's own [`crate::error::Classified`] implementation is being written in
//! parallel; once it exists this function becomes `(e.class(), e.kind())` and the table below
//! goes. Until then it names the cases a caller decides on: unreachable store (transient),
//! missing repository and wrong password (configuration), damaged data (corruption).

use crate::backend::BackendError;
use crate::error::ErrorClass;
use crate::repo::RepoError;

/// The class and stable kind of a repository error.
pub(crate) fn repo_error(e: &RepoError) -> (ErrorClass, &'static str) {
    use ErrorClass::*;
    match e {
        RepoError::Backend(b) => match b {
            BackendError::Remote { class, kind, .. } => (*class, kind),
            BackendError::NotFound { .. } => (Corruption, "backend.not_found"),
            BackendError::AlreadyExists { .. } => (Internal, "backend.already_exists"),
            BackendError::Io { .. } => (Transient, "backend.io"),
            BackendError::ShortRead { .. } => (Corruption, "backend.short_read"),
            BackendError::Other(_) => (Internal, "backend.other"),
        },
        RepoError::Crypto(_) => (Corruption, "repo.crypto"),
        RepoError::Pack(_) => (Corruption, "repo.pack"),
        RepoError::NotARepository(_) => (Config, "repo.not_a_repository"),
        RepoError::AlreadyInitialized(_) => (Config, "repo.already_initialized"),
        RepoError::WrongPassword => (Config, "repo.wrong_password"),
        RepoError::UnsupportedVersion { .. } => (Config, "repo.unsupported_version"),
        RepoError::Malformed { .. } => (Corruption, "repo.malformed"),
        RepoError::TooLarge { .. } => (Corruption, "repo.too_large"),
        RepoError::BlobNotFound(_) => (Corruption, "repo.blob_not_found"),
        RepoError::SnapshotNotFound(_) => (Config, "repo.snapshot_not_found"),
        RepoError::AmbiguousSnapshot(_) => (Config, "repo.ambiguous_snapshot"),
        RepoError::Invalid(_) => (Internal, "repo.invalid"),
    }
}
