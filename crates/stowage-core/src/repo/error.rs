//! Errors of the repository layer, each with its [`ErrorClass`] and stable kind (see
//! [`Classified`]). Messages say what went wrong and with which object; advice on what to run
//! about it is the front end's (looked up by kind).

use super::lock::LockKind;
use crate::backend::{BackendError, FileKind};
use crate::crypto::CryptoError;
use crate::error::{io_class, Classified, ErrorClass};
use crate::pack::PackError;
use chrono::{DateTime, Utc};

/// Everything that can go wrong reading or writing a repository. Messages name the object.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The storage layer failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// An object did not open or decode.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A pack did not decode.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The location has no `config` file.
    #[error("no repository at {0}")]
    NotARepository(String),
    /// `init` found a repository at the location.
    #[error("a repository already exists at {0}")]
    AlreadyInitialized(String),
    /// No key file opens with the password.
    #[error("wrong password: no key in the repository matches it")]
    WrongPassword,
    /// The repository's format version is not the one this program reads.
    #[error("repository format version {found} is not supported by this stowage (it reads version {supported})")]
    UnsupportedVersion {
        /// The version in the config file.
        found: u32,
        /// The version this program reads.
        supported: u32,
    },
    /// A file has a version of its own encoding that this program does not know.
    #[error("{what} has version {version}, which this stowage does not read")]
    UnsupportedFileVersion {
        /// The file (`index 1234abcd`, `key file ...`).
        what: String,
        /// The version it states.
        version: u32,
    },
    /// An object opened but does not decode.
    #[error("{what} is malformed: {msg}")]
    Malformed {
        /// The object.
        what: String,
        /// What is wrong with it.
        msg: String,
    },
    /// An object is larger than its kind may be (a bound on what untrusted input allocates).
    #[error("{what} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The object.
        what: String,
        /// Its size.
        size: u64,
        /// The limit for its kind.
        limit: u64,
    },
    /// A blob that a tree or snapshot refers to is in no index file.
    #[error("blob {0} is not in the index")]
    BlobNotFound(String),
    /// No snapshot matches what the caller named.
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    /// Several snapshots start with the id prefix the caller named.
    #[error("snapshot id prefix {0:?} is ambiguous")]
    AmbiguousSnapshot(String),
    /// Options given to `init` (chunker, pack size, compression) are out of range.
    #[error("{0}")]
    InvalidOptions(String),
    /// The files of one kind kept changing between listings (many concurrent writers, or a
    /// prune consolidating the index): no complete view could be taken. Worth a retry.
    #[error("the {0} files keep changing while they are listed")]
    ListingUnstable(FileKind),
    /// A live lock of another process excludes this operation (another prune is running).
    #[error("another {kind} is running (host {hostname}, pid {pid}, since {since})")]
    LockConflict {
        /// What the holder is doing.
        kind: LockKind,
        /// The holder's host name.
        hostname: String,
        /// The holder's process id (on its host).
        pid: u32,
        /// When the holder took its lock.
        since: DateTime<Utc>,
    },
    /// This process's own lock could not be refreshed for so long that others may take it for
    /// stale: a destructive operation stops rather than act without its protection.
    #[error("this process's lock could not be refreshed for too long and may look stale to others; stopping")]
    LockLost,
    /// The local index cache's database failed.
    #[error("cache {path}: {source}")]
    Cache {
        /// The database file.
        path: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The local index cache's folder could not be created.
    #[error("cache folder {path}: {source}")]
    CacheFolder {
        /// The folder.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Prune's temporary work database failed.
    #[error("prune work database: {0}")]
    WorkDatabase(#[source] rusqlite::Error),
    /// Prune's temporary work folder could not be created.
    #[error("prune work folder: {0}")]
    WorkFolder(#[source] std::io::Error),
    /// An invariant of this program was broken: a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RepoError {
    /// A [`RepoError::Malformed`] for the object `what`.
    pub fn malformed(what: impl Into<String>, msg: impl std::fmt::Display) -> Self {
        RepoError::Malformed {
            what: what.into(),
            msg: msg.to_string(),
        }
    }
}

/// The class of a failure of a local SQLite database (the cache, prune's work database): busy
/// is worth a retry, a file that cannot be opened or written waits for a person, anything else
/// is a bug (the databases are ours, and a damaged cache is rebuilt before it is used).
fn sqlite_class(e: &rusqlite::Error) -> ErrorClass {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => ErrorClass::Transient,
        Some(C::CannotOpen | C::ReadOnly | C::PermissionDenied | C::DiskFull) => ErrorClass::Config,
        _ => ErrorClass::Internal,
    }
}

impl Classified for RepoError {
    fn class(&self) -> ErrorClass {
        use RepoError as E;
        match self {
            E::Backend(e) => e.class(),
            E::Crypto(e) => e.class(),
            E::Pack(e) => e.class(),
            E::NotARepository(_)
            | E::AlreadyInitialized(_)
            | E::WrongPassword
            | E::UnsupportedVersion { .. }
            | E::UnsupportedFileVersion { .. }
            | E::SnapshotNotFound(_)
            | E::AmbiguousSnapshot(_)
            | E::InvalidOptions(_) => ErrorClass::Config,
            E::Malformed { .. } | E::TooLarge { .. } | E::BlobNotFound(_) => ErrorClass::Corruption,
            E::ListingUnstable(_) | E::LockConflict { .. } | E::LockLost => ErrorClass::Transient,
            E::Cache { source, .. } | E::WorkDatabase(source) => sqlite_class(source),
            E::CacheFolder { source, .. } | E::WorkFolder(source) => io_class(source.kind()),
            E::Internal(_) => ErrorClass::Internal,
        }
    }

    fn kind(&self) -> &'static str {
        use RepoError as E;
        match self {
            E::Backend(e) => e.kind(),
            E::Crypto(e) => e.kind(),
            E::Pack(e) => e.kind(),
            E::NotARepository(_) => "repo.not_a_repository",
            E::AlreadyInitialized(_) => "repo.already_initialized",
            E::WrongPassword => "repo.wrong_password",
            E::UnsupportedVersion { .. } => "repo.unsupported_version",
            E::UnsupportedFileVersion { .. } => "repo.unsupported_file_version",
            E::Malformed { .. } => "repo.malformed",
            E::TooLarge { .. } => "repo.too_large",
            E::BlobNotFound(_) => "repo.blob_not_found",
            E::SnapshotNotFound(_) => "repo.snapshot_not_found",
            E::AmbiguousSnapshot(_) => "repo.ambiguous_snapshot",
            E::InvalidOptions(_) => "repo.invalid_options",
            E::ListingUnstable(_) => "repo.listing_unstable",
            E::LockConflict { .. } => "repo.lock_conflict",
            E::LockLost => "repo.lock_lost",
            E::Cache { .. } | E::CacheFolder { .. } => "repo.cache",
            E::WorkDatabase(_) | E::WorkFolder(_) => "repo.work_database",
            E::Internal(_) => "repo.internal",
        }
    }
}

/// The result of a repository operation.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;
