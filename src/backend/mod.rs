//! Storage backends: the bottom layer. A backend stores named, immutable files of a few kinds and
//! knows nothing about their contents. Everything above is built on the small [`Backend`] trait,
//! so decorators (retries, fault injection, caching) can wrap any backend.

pub mod local;
#[cfg(feature = "s3")]
pub mod s3;

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
    pub name: String,
    pub size: u64,
}

/// Errors of the storage layer. Each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{kind} {name:?} does not exist in the repository")]
    NotFound { kind: FileKind, name: String },
    #[error("{kind} {name:?} already exists in the repository")]
    AlreadyExists { kind: FileKind, name: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {kind} {name:?}: asked for {len} bytes at offset {offset}, file is shorter")]
    ShortRead {
        kind: FileKind,
        name: String,
        offset: u64,
        len: u64,
    },
    #[cfg(feature = "s3")]
    #[error(transparent)]
    S3(Box<s3::S3Error>),
    #[error("{0}")]
    Other(String),
}

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

/// How to open a backend beyond its location: `-o KEY=VALUE` options and what `init` asks for.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// `KEY=VALUE` pairs; keys are namespaced by backend (`s3.region`, ...).
    pub options: Vec<(String, String)>,
    /// `init --create-bucket`: `create()` may create the bucket.
    pub create_bucket: bool,
}

/// Parses one `-o KEY=VALUE` argument.
pub fn parse_option(arg: &str) -> std::result::Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "expected KEY=VALUE (for example s3.region=eu-west-1), got {arg:?}"
        )),
    }
}

/// Opens the backend a repository location names: `s3:...` (see [`s3::S3Location`]), or a local
/// path (optionally prefixed with `local:`). Options of another backend are ignored; unknown
/// options are errors.
pub fn open_location(location: &str, opts: &OpenOptions) -> Result<Box<dyn Backend>> {
    #[cfg(feature = "s3")]
    {
        for (key, _) in &opts.options {
            if !key.starts_with("s3.") {
                return Err(BackendError::Other(format!(
                    "unknown option {key:?}; options are {}",
                    s3::OPTION_KEYS.join(", ")
                )));
            }
        }
        let pairs = || opts.options.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if s3::S3Location::is_s3(location) {
            let mut o = s3::S3Options::from_pairs(pairs())?;
            o.create_bucket |= opts.create_bucket;
            return Ok(Box::new(s3::S3Backend::open(location, o)?));
        }
        // Check the S3 options' syntax even here, so a typo is not silently ignored.
        s3::S3Options::from_pairs(pairs())?;
    }
    #[cfg(not(feature = "s3"))]
    {
        if location.starts_with("s3:") {
            return Err(BackendError::Other(format!(
                "repository {location:?}: the S3 backend is not available in this build"
            )));
        }
        if let Some((key, _)) = opts.options.first() {
            return Err(BackendError::Other(format!(
                "unknown option {key:?}: this build has no backend options"
            )));
        }
    }
    let path = location.strip_prefix("local:").unwrap_or(location);
    Ok(Box::new(local::LocalBackend::new(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_are_spread_over_subfolders() {
        assert_eq!(FileKind::Pack.relative_path("abcdef"), "data/ab/abcdef");
        assert_eq!(FileKind::Index.relative_path("abcdef"), "index/abcdef");
        assert_eq!(FileKind::Config.relative_path(""), "config");
    }

    #[test]
    fn options_parse_as_key_value() {
        assert_eq!(
            parse_option("s3.region=eu-west-1").unwrap(),
            ("s3.region".to_string(), "eu-west-1".to_string())
        );
        assert_eq!(parse_option("s3.sse-kms-key-id=a=b").unwrap().1, "a=b");
        assert!(parse_option("s3.region").is_err());
        assert!(parse_option("=x").is_err());
    }

    #[cfg(feature = "s3")]
    #[test]
    fn unknown_options_are_refused_for_every_backend() {
        let opts = |k: &str| OpenOptions {
            options: vec![(k.to_string(), "1".to_string())],
            create_bucket: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        assert!(open_location(path, &opts("s3.connections")).is_ok());
        for bad in ["s3.conections", "region"] {
            let e = open_location(path, &opts(bad)).err().unwrap().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_locations_must_parse() {
        let e = open_location("s3:https://host:9000", &OpenOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bucket name is missing"), "{e}");
    }
}
