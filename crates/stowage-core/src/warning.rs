//! Warnings: failures on single entries that do not stop a backup or restore (the snapshot is
//! then marked incomplete, or the restore reports errors), as typed records a program can
//! count, filter and show.

use crate::error::ErrorClass;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// What was being done to an entry when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Reading an entry's metadata (`lstat`).
    Stat,
    /// Listing a directory.
    ListDir,
    /// Reading a symlink's target.
    ReadLink,
    /// Opening a file.
    Open,
    /// Reading a file's content.
    Read,
    /// Creating a directory, file, symlink or special file.
    Create,
    /// Writing a file's content.
    Write,
    /// Making a hard link.
    Link,
    /// Setting an owner.
    Chown,
    /// Setting permissions.
    Chmod,
    /// Setting an extended attribute (the message names it).
    SetXattr,
    /// Setting access and modification times.
    SetTimes,
    /// Reading back a restored file and comparing it with the snapshot.
    Verify,
}

impl Operation {
    /// A stable lower-case name, for logs and status fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Stat => "stat",
            Operation::ListDir => "list_dir",
            Operation::ReadLink => "read_link",
            Operation::Open => "open",
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Write => "write",
            Operation::Link => "link",
            Operation::Chown => "chown",
            Operation::Chmod => "chmod",
            Operation::SetXattr => "set_xattr",
            Operation::SetTimes => "set_times",
            Operation::Verify => "verify",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry that could not be backed up or restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The entry: a path on the source (backup) or under the target (restore).
    pub path: PathBuf,
    /// What failed.
    pub operation: Operation,
    /// How to treat the failure (a file that vanished during the walk: transient; permission
    /// denied: configuration).
    pub class: ErrorClass,
    /// What went wrong, without the path.
    pub message: String,
}

impl Warning {
    /// A warning from an I/O error, classed by [`io_class`].
    pub fn io(path: impl Into<PathBuf>, operation: Operation, e: &io::Error) -> Self {
        Warning {
            path: path.into(),
            operation,
            class: io_class(e),
            message: e.to_string(),
        }
    }

    /// A warning with a message of its own.
    pub fn new(
        path: impl Into<PathBuf>,
        operation: Operation,
        class: ErrorClass,
        message: impl Into<String>,
    ) -> Self {
        Warning {
            path: path.into(),
            operation,
            class,
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    /// `path: message`, with the operation named where the message alone would not say it
    /// (`path: chown: ...`, `verify path: ...`): the lines the CLI has always printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        let m = &self.message;
        match self.operation {
            Operation::Chown => write!(f, "{p}: chown: {m}"),
            Operation::Chmod => write!(f, "{p}: chmod: {m}"),
            Operation::SetTimes => write!(f, "{p}: set times: {m}"),
            Operation::SetXattr => write!(f, "{p}: xattr {m}"),
            Operation::Verify => write!(f, "verify {p}: {m}"),
            _ => write!(f, "{p}: {m}"),
        }
    }
}

/// The class of an I/O error on a source or target entry: what vanished or was busy may work
/// on a retry; permissions, a full or read-only file system and the like need a person.
pub fn io_class(e: &io::Error) -> ErrorClass {
    use io::ErrorKind as K;
    match e.kind() {
        K::NotFound | K::Interrupted | K::TimedOut | K::WouldBlock | K::ResourceBusy => {
            ErrorClass::Transient
        }
        _ if e.raw_os_error() == Some(libc::ESTALE) => ErrorClass::Transient,
        _ => ErrorClass::Config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_print_as_the_cli_always_printed_them() {
        let e = io::Error::from_raw_os_error(libc::EACCES);
        let w = Warning::io("/src/secret", Operation::Open, &e);
        assert_eq!(w.class, ErrorClass::Config);
        assert_eq!(w.to_string(), format!("/src/secret: {e}"));
        let w = Warning::new("/t/f", Operation::Chown, ErrorClass::Config, "denied");
        assert_eq!(w.to_string(), "/t/f: chown: denied");
        let gone = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(io_class(&gone), ErrorClass::Transient);
    }
}
