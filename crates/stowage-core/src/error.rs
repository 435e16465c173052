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
