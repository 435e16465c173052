//! What every error of the engine tells a caller beyond its message: its [`ErrorClass`], so that
//! a program (a controller, a node agent, a retry loop) can decide what to do without parsing
//! text.

use std::fmt;

/// How a caller should treat an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Worth retrying as it is: the store was unreachable, timed out, throttled, or a lock is
    /// held by another process.
    Transient,
    /// Final until a person acts: a wrong password, a missing repository or bucket, rejected
    /// credentials, a bad option, a path that does not exist.
    Config,
    /// The repository's data is damaged (a MAC fails, a pack is truncated, an object is
    /// malformed): retrying does not help; `check` and `repair` do.
    Corruption,
    /// The operation was cancelled by its caller.
    Canceled,
    /// A bug in this program (an invariant broken); report it.
    Internal,
}

impl ErrorClass {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(self) -> bool {
        self == ErrorClass::Transient
    }

    /// A stable lower-case name, for logs, metrics and status fields.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Config => "config",
            ErrorClass::Corruption => "corruption",
            ErrorClass::Canceled => "canceled",
            ErrorClass::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that tells a program what to do with it: its [`ErrorClass`], and its kind, a stable
/// identifier (`layer.name`, such as `repo.wrong_password` or `s3.no_such_bucket`) that does not
/// change between releases. Front ends decide from these, never from the message: the CLI
/// renders advice for a kind (which flag or command helps), a controller puts the kind in a
/// status `reason` and the message, as it is, in the status `message`. Messages therefore say
/// what went wrong and with which object, not which command-line flag to use.
pub trait Classified: std::error::Error {
    /// How a caller should treat the error.
    fn class(&self) -> ErrorClass;
    /// The stable identifier of this kind of failure.
    fn kind(&self) -> &'static str;
}

/// A value given as text (a retention duration, a grouping, a subset of packs to check) that
/// does not parse. Always [`ErrorClass::Config`]: the input has to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {expected}")]
pub struct InvalidInput {
    /// What the value was to be (`duration`, `grouping`, `subset`).
    pub what: &'static str,
    /// The text given.
    pub input: String,
    /// What is accepted, with examples.
    pub expected: &'static str,
    /// The stable kind (`input.duration`, ...).
    pub kind: &'static str,
}

impl Classified for InvalidInput {
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }

    fn kind(&self) -> &'static str {
        self.kind
    }
}

/// The class of an operating system error, by its kind: a timeout or an interruption is worth a
/// retry; a missing permission, a missing path or a full disk waits for a person; bytes that
/// end too early or do not decode are damage. Kinds not named here (a plain `EIO`, say) are
/// treated as transient: retrying with backoff is the safe default for a store that failed
/// without saying why.
pub fn io_class(kind: std::io::ErrorKind) -> ErrorClass {
    use std::io::ErrorKind as K;
    match kind {
        K::PermissionDenied
        | K::NotFound
        | K::AlreadyExists
        | K::ReadOnlyFilesystem
        | K::NotADirectory
        | K::IsADirectory
        | K::DirectoryNotEmpty
        | K::InvalidInput
        | K::InvalidFilename
        | K::StorageFull
        | K::QuotaExceeded
        | K::FileTooLarge
        | K::Unsupported
        | K::CrossesDevices
        | K::TooManyLinks
        | K::AddrNotAvailable => ErrorClass::Config,
        K::UnexpectedEof | K::InvalidData => ErrorClass::Corruption,
        _ => ErrorClass::Transient,
    }
}

/// The stable kind of an operating system error of the storage layer: `backend.permission_denied`,
/// `backend.storage_full`, or `backend.io` for every other.
pub fn io_kind(kind: std::io::ErrorKind) -> &'static str {
    use std::io::ErrorKind as K;
    match kind {
        K::PermissionDenied | K::ReadOnlyFilesystem => "backend.permission_denied",
        K::StorageFull | K::QuotaExceeded => "backend.storage_full",
        _ => "backend.io",
    }
}

/// The class and kind of the outermost error of this crate in `err` or its chain of
/// [`std::error::Error::source`]s, or `None` if there is none. For a front end holding an error
/// of its own (an `anyhow::Error` with context, say) that wraps an engine error.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Option<(ErrorClass, &'static str)> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(c) = classified(e) {
            return Some((c.class(), c.kind()));
        }
        next = e.source();
    }
    None
}

/// `e` as one of this crate's error types, if it is one.
fn classified<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Classified> {
    macro_rules! try_types {
        ($($t:ty),* $(,)?) => {
            $(if let Some(c) = e.downcast_ref::<$t>() {
                return Some(c);
            })*
        };
    }
    // Every public error type of the crate that implements `Classified` belongs here. The
    // outer types come first only by convention: a chain is walked from the outside anyway.
    try_types!(
        crate::repo::RepoError,
        crate::backend::BackendError,
        crate::crypto::CryptoError,
        crate::pack::PackError,
        crate::maintenance::prune::PruneError,
        crate::maintenance::prune::PruneRefusal,
        crate::inspect::InspectError,
        crate::backup::BackupError,
        crate::restore::RestoreError,
        InvalidInput,
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::backend::{BackendError, FileKind};
    use crate::id::BlobType;
    use crate::maintenance::prune::{self, PruneError, PruneOptions, PruneRefusal};
    use crate::repo::lock::{Lock, LockKind};
    use crate::repo::writer::BlobWriter;
    use crate::repo::{InitOptions, RepoError, Repository};
    use std::path::Path;
    use std::sync::Arc;

    fn init(dir: &Path) -> Arc<Repository> {
        let opts = InitOptions {
            kdf_memory_kib: 64,
            kdf_iterations: 1,
            ..Default::default()
        };
        let backend = Arc::new(LocalBackend::new(dir.join("repo")));
        Arc::new(Repository::init(backend, b"pw", &opts).unwrap())
    }

    /// Stores one data blob in a pack of its own (with its index file); returns the pack's name.
    fn store_blob(repo: &Arc<Repository>, data: &[u8]) -> String {
        let writer = BlobWriter::new(Arc::new(repo.load_index().unwrap()), 1);
        writer.add(BlobType::Data, data).unwrap();
        writer.finish().unwrap();
        let packs = repo.backend().list(FileKind::Pack).unwrap();
        assert_eq!(packs.len(), 1);
        packs[0].name.clone()
    }

    fn pack_path(dir: &Path, name: &str) -> std::path::PathBuf {
        dir.join("repo").join(FileKind::Pack.relative_path(name))
    }

    fn class_and_kind(e: &(impl Classified + 'static)) -> (ErrorClass, &'static str) {
        let found = classify(e).expect("an engine error classifies");
        assert_eq!(found, (e.class(), e.kind()));
        found
    }

    #[test]
    fn a_wrong_password_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path());
        let backend = Arc::new(LocalBackend::new(dir.path().join("repo")));
        let e = Repository::open(backend, b"not the password")
            .err()
            .unwrap();
        assert!(matches!(e, RepoError::WrongPassword), "{e}");
        assert_eq!(
            class_and_kind(&e),
            (ErrorClass::Config, "repo.wrong_password")
        );
    }

    #[test]
    fn a_missing_repository_is_a_configuration_error_without_advice_in_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(LocalBackend::new(dir.path().join("nothing here")));
        let e = Repository::open(backend, b"pw").err().unwrap();
        assert_eq!(
            class_and_kind(&e),
            (ErrorClass::Config, "repo.not_a_repository")
        );
        assert!(!e.to_string().contains("stowage init"), "{e}");
    }

    #[test]
    fn a_flipped_byte_in_a_pack_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let data = b"some bytes worth keeping".repeat(100);
        let pack = store_blob(&repo, &data);
        let path = pack_path(dir.path(), &pack);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let idx = repo.load_index().unwrap();
        let id = repo.keys().blob_id(&data);
        let e = idx.read_blob(BlobType::Data, &id).err().unwrap();
        assert_eq!(
            class_and_kind(&e),
            (ErrorClass::Corruption, "crypto.authentication_failed")
        );
    }

    #[test]
    fn a_lock_held_by_another_process_is_transient_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let _held = Lock::acquire(&repo, LockKind::Prune).unwrap();
        let e = Lock::acquire(&repo, LockKind::Prune).err().unwrap();
        match &e {
            RepoError::LockConflict {
                kind,
                hostname,
                pid,
                ..
            } => {
                assert_eq!(*kind, LockKind::Prune);
                assert_eq!(*pid, std::process::id());
                assert_eq!(*hostname, crate::util::hostname());
            }
            other => panic!("not a lock conflict: {other}"),
        }
        assert_eq!(
            class_and_kind(&e),
            (ErrorClass::Transient, "repo.lock_conflict")
        );
        assert!(e.class().is_retryable());
    }

    #[test]
    fn prune_refuses_with_a_typed_reason_when_a_pack_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let pack = store_blob(&repo, b"data");
        std::fs::remove_file(pack_path(dir.path(), &pack)).unwrap();
        let session = repo.lock::<crate::repo::session::PruneWork>().unwrap();
        let e = prune::run(&session, &PruneOptions::default())
            .err()
            .unwrap();
        match &e {
            PruneError::Refused {
                reason: PruneRefusal::PackMissing { pack: p },
            } => assert_eq!(p.to_hex(), pack),
            other => panic!("not a refusal for the missing pack: {other}"),
        }
        assert_eq!(
            class_and_kind(&e),
            (ErrorClass::Corruption, "prune.pack_missing")
        );
        assert!(!e.to_string().contains("stowage"), "{e}");
    }

    #[test]
    fn io_errors_are_classed_by_their_kind() {
        use std::io::ErrorKind as K;
        let io = |kind: K| BackendError::Io {
            op: "read",
            path: "p".into(),
            source: std::io::Error::from(kind),
        };
        for (kind, class) in [
            (K::TimedOut, ErrorClass::Transient),
            (K::Interrupted, ErrorClass::Transient),
            (K::WouldBlock, ErrorClass::Transient),
            (K::ConnectionReset, ErrorClass::Transient),
            (K::PermissionDenied, ErrorClass::Config),
            (K::NotFound, ErrorClass::Config),
            (K::StorageFull, ErrorClass::Config),
            (K::UnexpectedEof, ErrorClass::Corruption),
        ] {
            assert_eq!(io(kind).class(), class, "{kind:?}");
        }
        assert_eq!(io(K::PermissionDenied).kind(), "backend.permission_denied");
        assert_eq!(io(K::TimedOut).kind(), "backend.io");
    }

    #[test]
    fn a_remote_error_keeps_its_backends_class_and_kind_through_the_repository() {
        let remote = BackendError::Remote {
            class: ErrorClass::Transient,
            kind: "s3.throttled",
            source: "slow down".into(),
        };
        let e = RepoError::from(remote);
        assert_eq!(class_and_kind(&e), (ErrorClass::Transient, "s3.throttled"));
    }

    #[test]
    fn text_that_does_not_parse_is_a_configuration_error_of_its_own_kind() {
        let e = crate::maintenance::forget::parse_duration("7x").unwrap_err();
        assert_eq!(class_and_kind(&e), (ErrorClass::Config, "input.duration"));
        assert_eq!(
            e.to_string(),
            "invalid duration \"7x\": use e.g. 7d, 2w, 6m, 1y2m, 36h"
        );
        let e = "tags,hosts"
            .parse::<crate::maintenance::forget::GroupBy>()
            .unwrap_err();
        assert_eq!(class_and_kind(&e), (ErrorClass::Config, "input.group_by"));
        let e = "3/2".parse::<crate::check::Subset>().unwrap_err();
        assert_eq!(
            class_and_kind(&e),
            (ErrorClass::Config, "input.check_subset")
        );
    }

    #[test]
    fn classify_finds_an_engine_error_behind_other_errors() {
        #[derive(Debug, thiserror::Error)]
        #[error("while doing something")]
        struct Wrapper(#[source] RepoError);
        let e = Wrapper(RepoError::WrongPassword);
        assert_eq!(
            classify(&e),
            Some((ErrorClass::Config, "repo.wrong_password"))
        );
        assert_eq!(classify(&std::io::Error::other("plain")), None);
    }
}
