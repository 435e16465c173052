//! Storage backends: the bottom layer. A backend stores named, immutable files of a few kinds and
//! knows nothing about their contents. Everything above is built on the small [`Backend`] trait,
//! so decorators (retries, fault injection, caching) can wrap any backend.
//!
//! # Async callers
//!
//! The engine, and this trait, are synchronous: a backend may block the calling thread for as
//! long as a request takes. The one way async code (a controller, a node agent) calls the engine
//! is `tokio::task::spawn_blocking` around the engine call, never the call itself on a runtime
//! thread. Backends that run on an async runtime of their own (`stowage_s3::S3Backend`) also
//! tolerate being called directly from a runtime thread: no panic, no deadlock, only a blocked
//! thread.

pub mod faulty;
pub mod local;
pub mod memory;
pub mod metered;
pub mod read_only;

use crate::error::{io_class, io_kind, Classified, ErrorClass};
use std::fmt;

/// The kinds of file a repository holds, each in its own folder.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FileKind {
    /// The single `config` file at the top of the repository.
    Config,
    /// Key files under `keys/`: the master keys wrapped by a password.
    Key,
    /// Pack files under `data/XX/`.
    Pack,
    /// Index files under `index/`.
    Index,
    /// Snapshot files under `snapshots/`.
    Snapshot,
    /// Lock files under `locks/`.
    Lock,
}

impl FileKind {
    /// All kinds that live in a folder (every kind but `Config`).
    pub const FOLDERS: [FileKind; 5] = [
        FileKind::Key,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Lock,
    ];

    /// The folder (or, for `Config`, the file name) at the repository root.
    pub fn dir_name(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Key => "keys",
            FileKind::Pack => "data",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Lock => "locks",
        }
    }

    /// The path of a file of this kind relative to the repository root. Pack files are spread
    /// over 256 sub-folders named by the first two hex digits of their name.
    pub fn relative_path(self, name: &str) -> String {
        match self {
            FileKind::Config => "config".to_string(),
            FileKind::Pack if name.len() >= 2 => format!("data/{}/{}", &name[..2], name),
            _ => format!("{}/{}", self.dir_name(), name),
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Config => "config",
            FileKind::Key => "key",
            FileKind::Pack => "pack",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshot",
            FileKind::Lock => "lock",
        })
    }
}

/// One file found by [`Backend::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The file's name within its folder (for packs, without the `XX/` sub-folder).
    pub name: String,
    /// The file's size in bytes.
    pub size: u64,
}

/// Errors of the storage layer. Each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A file that was asked for does not exist.
    #[error("{kind} {name:?} does not exist in the repository")]
    NotFound {
        /// The kind of the missing file.
        kind: FileKind,
        /// Its name.
        name: String,
    },
    /// An exclusive write found the file there already.
    #[error("{kind} {name:?} already exists in the repository")]
    AlreadyExists {
        /// The kind of the file.
        kind: FileKind,
        /// Its name.
        name: String,
    },
    /// An operation of the operating system failed; classed by its [`std::io::ErrorKind`].
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `list`, ...).
        op: &'static str,
        /// The path (or, for a decorator, the file) it was done to.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file is shorter than a range read from it: a truncated file.
    #[error("reading {kind} {name:?}: asked for {len} bytes at offset {offset}, file is shorter")]
    ShortRead {
        /// The kind of the file.
        kind: FileKind,
        /// Its name.
        name: String,
        /// Where the range started.
        offset: u64,
        /// How long it was.
        len: u64,
    },
    /// A folder of the repository's layout is missing, so no file can be stored in it: the
    /// location is not (or no longer) a repository.
    #[error("{path}: the repository folder is missing; is this a repository?")]
    MissingFolder {
        /// The missing folder.
        path: String,
    },
    /// A failure of a store outside this crate (S3, ...), classified by its backend.
    #[error("{source}")]
    Remote {
        /// How a caller should treat it, as its backend judged.
        class: ErrorClass,
        /// The stable kind (see [`crate::error::Classified`]), e.g. `s3.no_such_bucket`.
        kind: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Classified for BackendError {
    fn class(&self) -> ErrorClass {
        match self {
            // The config and key files are looked for by name when a repository is opened: not
            // finding them is a wrong location. Any other file is named by the repository's
            // own records (index, trees), so its absence is damage.
            BackendError::NotFound { kind, .. } => match kind {
                FileKind::Config | FileKind::Key => ErrorClass::Config,
                _ => ErrorClass::Corruption,
            },
            BackendError::AlreadyExists { .. } => ErrorClass::Config,
            BackendError::Io { source, .. } => io_class(source.kind()),
            BackendError::ShortRead { .. } => ErrorClass::Corruption,
            BackendError::MissingFolder { .. } => ErrorClass::Config,
            BackendError::Remote { class, .. } => *class,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            BackendError::NotFound { .. } => "backend.not_found",
            BackendError::AlreadyExists { .. } => "backend.already_exists",
            BackendError::Io { source, .. } => io_kind(source.kind()),
            BackendError::ShortRead { .. } => "backend.short_read",
            BackendError::MissingFolder { .. } => "backend.missing_folder",
            BackendError::Remote { kind, .. } => kind,
        }
    }
}

/// The result of a backend operation.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// A place to store repository files. Implementations must be safe to share between threads.
///
/// Guarantees every implementation gives:
/// - `write` is atomic: a reader sees either no file or the whole file, never a prefix, even if
///   the process dies during the write.
/// - `write` of a file that exists fails with `AlreadyExists` when `exclusive` is set; otherwise it
///   replaces it (files named by the hash of their content are identical anyway).
/// - `read_range` returns exactly `len` bytes or an error.
pub trait Backend: Send + Sync {
    /// A human-readable description of where the repository lives, for messages.
    fn location(&self) -> String;

    /// Creates the folder layout of a new repository. Fails if a `config` exists already.
    fn create(&self) -> Result<()>;

    /// Lists the files of one kind with their sizes, in no particular order.
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>>;

    /// Reads a whole file.
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>>;

    /// Reads `len` bytes from `offset`.
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// [`Backend::read_range`] into `buf` (replacing its contents), so that a caller reading many
    /// ranges can reuse one buffer. Backends that can read into a buffer without allocating
    /// override this; the default reads with `read_range`.
    fn read_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        *buf = self.read_range(kind, name, offset, len)?;
        Ok(())
    }

    /// Stores a whole file atomically and durably.
    fn write(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()>;

    /// Removes a file. Removing a file that does not exist is not an error.
    fn remove(&self, kind: FileKind, name: &str) -> Result<()>;

    /// The size of a file, or `NotFound`.
    fn size(&self, kind: FileKind, name: &str) -> Result<u64>;

    /// How many uploads to run in parallel (object stores want more than disks).
    fn preferred_uploaders(&self) -> usize {
        2
    }

    /// A hint that `len` bytes at `offset` of a file will be read soon: a backend that can
    /// start fetching them in the background does (the local one asks the kernel to read them
    /// into the page cache, so that a reader busy decrypting one pack does not then wait for
    /// the disk on the next). Errors are ignored: it is only a hint.
    fn will_read(&self, _kind: FileKind, _name: &str, _offset: u64, _len: u64) {}

    /// How many bytes of a pack a reader should fetch at once when it needs many of its blobs:
    /// small for disks (the bytes are still in CPU cache when opened), large for object stores
    /// (each read is a request).
    fn preferred_read_size(&self) -> u64 {
        2 << 20
    }

    /// Removes several files of one kind; files that do not exist are not an error. Stores
    /// with a batch delete (S3: 1,000 keys a request) override this.
    fn remove_many(&self, kind: FileKind, names: &[String]) -> Result<()> {
        names.iter().try_for_each(|n| self.remove(kind, n))
    }

    /// Whether a file exists.
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        match self.size(kind, name) {
            Ok(_) => Ok(true),
            Err(BackendError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A shared backend is a backend: decorators can wrap the `Arc<dyn Backend>` a front end opened
/// (a read-only view of a storage location, a metered one). Every method is passed through,
/// the defaults included, so the inner backend's overrides keep working.
impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn create(&self) -> Result<()> {
        (**self).create()
    }
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        (**self).list(kind)
    }
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        (**self).read(kind, name)
    }
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        (**self).read_range(kind, name, offset, len)
    }
    fn read_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        (**self).read_range_into(kind, name, offset, len, buf)
    }
    fn write(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
        (**self).write(kind, name, data, exclusive)
    }
    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        (**self).remove(kind, name)
    }
    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        (**self).size(kind, name)
    }
    fn preferred_uploaders(&self) -> usize {
        (**self).preferred_uploaders()
    }
    fn will_read(&self, kind: FileKind, name: &str, offset: u64, len: u64) {
        (**self).will_read(kind, name, offset, len)
    }
    fn preferred_read_size(&self) -> u64 {
        (**self).preferred_read_size()
    }
    fn remove_many(&self, kind: FileKind, names: &[String]) -> Result<()> {
        (**self).remove_many(kind, names)
    }
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        (**self).exists(kind, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_backend_can_be_decorated() {
        let dir = tempfile::tempdir().unwrap();
        let shared: std::sync::Arc<dyn Backend> =
            std::sync::Arc::new(local::LocalBackend::new(dir.path()));
        shared.create().unwrap();
        shared.write(FileKind::Index, "a", b"x", true).unwrap();
        let ro = read_only::ReadOnlyBackend::new(shared.clone());
        assert_eq!(ro.read(FileKind::Index, "a").unwrap(), b"x");
        assert!(ro.write(FileKind::Index, "b", b"y", true).is_err());
        assert!(!shared.exists(FileKind::Index, "b").unwrap());
        assert_eq!(ro.preferred_read_size(), shared.preferred_read_size());
    }

    #[test]
    fn packs_are_spread_over_subfolders() {
        assert_eq!(FileKind::Pack.relative_path("abcdef"), "data/ab/abcdef");
        assert_eq!(FileKind::Index.relative_path("abcdef"), "index/abcdef");
        assert_eq!(FileKind::Config.relative_path(""), "config");
    }
}
