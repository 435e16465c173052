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
    try_types!(
        crate::repo::RepoError,
        crate::backend::BackendError,
        crate::crypto::CryptoError,
        crate::pack::PackError,
        crate::maintenance::prune::PruneError,
    );
    None
}
