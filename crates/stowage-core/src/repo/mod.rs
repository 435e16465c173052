//! The repository layer: config, keys, index, blobs, trees and snapshots on top of a backend.
//!
//! [`Repository`] is an opened repository (keys unlocked, config verified). Work on it goes
//! through the states of [`session`]: locked for a kind of work, then indexed. Reading blobs
//! needs the index, so it is only possible through [`IndexedRepo`], which only an indexed
//! session holds: the compiler enforces that the lock is taken and the index loaded first.

pub mod cache;
pub mod config;
pub mod error;
pub mod index;
pub mod index_db;
pub mod keyfile;
pub mod lock;
pub mod session;
pub mod snapshot;
pub mod tree;
pub mod writer;

use crate::backend::{Backend, BackendError, FileKind};
use crate::chunker::{ChunkerParams, ChunkerSpec, LargeFileChunking};
use crate::crypto::kdf::KdfParams;
use crate::crypto::{open_blob, MasterKeys};
use crate::id::{BlobType, Id};
use config::{RepoConfig, FORMAT_VERSION};
pub use error::{RepoError, Result};
use index::{BlobIndex, BlobLocation, IndexFile, MasterIndex};
use keyfile::KeyFile;
use rayon::prelude::*;
use snapshot::Snapshot;
use std::sync::Arc;
use tree::Tree;

/// Choices made once, at `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// How files are cut into chunks.
    pub chunker: ChunkerParams,
    /// Finer chunks for large files (`None`: every file is cut with `chunker`).
    pub large_files: Option<LargeFileChunking>,
    /// Target size of a pack file in bytes (1 MiB to 1 GiB).
    pub pack_size: u32,
    /// zstd compression level (0 to 22; 0: stored uncompressed).
    pub compression_level: i32,
    /// Argon2 memory of the first key, in KiB.
    pub kdf_memory_kib: u32,
    /// Argon2 passes of the first key.
    pub kdf_iterations: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            large_files: Some(LargeFileChunking::default()),
            pack_size: 16 << 20,
            compression_level: config::DEFAULT_COMPRESSION_LEVEL,
            kdf_memory_kib: 64 * 1024,
            kdf_iterations: 3,
        }
    }
}

/// An open repository: keys unlocked, config verified.
pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: MasterKeys,
    config: RepoConfig,
    chunker: Arc<ChunkerSpec>,
    /// The chunker of `config.large_files`, if any.
    large_chunker: Option<Arc<ChunkerSpec>>,
    key_name: String,
}

impl Repository {
    /// Creates a new repository. The key file is written before the config, and the config
    /// exclusively, so an interrupted `init` can be run again and two `init`s cannot both win.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: &InitOptions,
    ) -> Result<Repository> {
        opts.chunker.validate().map_err(RepoError::InvalidOptions)?;
        if let Some(large) = &opts.large_files {
            large
                .chunker
                .validate()
                .map_err(|e| RepoError::InvalidOptions(format!("large-file {e}")))?;
        }
        if !(1 << 20..=1 << 30).contains(&opts.pack_size) {
            return Err(RepoError::InvalidOptions(
                "pack size must be between 1 MiB and 1 GiB".into(),
            ));
        }
        if !(0..=22).contains(&opts.compression_level) {
            return Err(RepoError::InvalidOptions(
                "compression level must be between 0 and 22".into(),
            ));
        }
        match backend.create() {
            Ok(()) => {}
            Err(BackendError::AlreadyExists { .. }) => {
                return Err(RepoError::AlreadyInitialized(backend.location()))
            }
            Err(e) => return Err(e.into()),
        }
        let keys = MasterKeys::generate();
        let config = RepoConfig {
            format_version: FORMAT_VERSION,
            repository_id: Id::random(),
            master_key_fingerprint: keys.fingerprint(),
            chunker: opts.chunker,
            large_files: opts.large_files,
            pack_size: opts.pack_size,
            compression_level: opts.compression_level,
        };
        let kdf = KdfParams::new(opts.kdf_memory_kib, opts.kdf_iterations);
        let key = KeyFile::create(&keys, password, kdf)?.encode();
        let key_name = Id::hash_of(&key).to_hex();
        backend.write(FileKind::Key, &key_name, &key, true)?;
        match backend.write(FileKind::Config, "", &config.encode(&keys), true) {
            Ok(()) => {}
            Err(BackendError::AlreadyExists { .. }) => {
                let _ = backend.remove(FileKind::Key, &key_name);
                return Err(RepoError::AlreadyInitialized(backend.location()));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Repository::assemble(backend, keys, config, key_name))
    }

    /// An open repository from its verified parts.
    fn assemble(
        backend: Arc<dyn Backend>,
        keys: MasterKeys,
        config: RepoConfig,
        key_name: String,
    ) -> Repository {
        let chunker = ChunkerSpec::new(config.chunker, keys.chunker_seed);
        let large_chunker = config
            .large_files
            .map(|l| ChunkerSpec::new(l.chunker, keys.chunker_seed));
        Repository {
            backend,
            keys,
            config,
            chunker,
            large_chunker,
            key_name,
        }
    }

    /// Opens an existing repository with a password, trying every key file.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        let config_bytes = match backend.read(FileKind::Config, "") {
            Ok(b) => b,
            Err(BackendError::NotFound { .. }) => {
                return Err(RepoError::NotARepository(backend.location()))
            }
            Err(e) => return Err(e.into()),
        };
        RepoConfig::peek_version(&config_bytes)?;
        let mut key_files = backend.list(FileKind::Key)?;
        key_files.sort_by(|a, b| a.name.cmp(&b.name));
        // The first config error seen with keys the password did unlock: reported if no key
        // opens the config (a damaged config must not be passed off as a wrong password).
        let mut config_error = None;
        for info in key_files {
            let bytes = backend.read(FileKind::Key, &info.name)?;
            let short = crate::util::short_name(&info.name);
            if let Err(e) = check_content_name(FileKind::Key, &info.name, &bytes) {
                tracing::warn!("skipping {e}");
                continue;
            }
            let key = match KeyFile::decode(&info.name, &bytes) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!("skipping {e}");
                    continue;
                }
            };
            let keys = match key.unlock(password) {
                Ok(k) => k,
                Err(RepoError::Crypto(crate::crypto::CryptoError::Mac(_))) => continue,
                Err(e) => {
                    tracing::warn!("key {short}: {e}");
                    continue;
                }
            };
            // A key left by an interrupted `init` wraps other master keys, so the config does
            // not open with it: try the next key.
            match RepoConfig::decode(&config_bytes, &keys) {
                Ok(config) => {
                    return Ok(Repository::assemble(backend, keys, config, info.name));
                }
                Err(e) => {
                    tracing::debug!("key {short} opens but does not fit the config: {e}");
                    config_error.get_or_insert(e);
                }
            }
        }
        Err(config_error.unwrap_or(RepoError::WrongPassword))
    }

    /// The storage the repository lives in.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The repository's unlocked master keys.
    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    /// The repository's parameters.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The general chunker (see [`Repository::chunker_for_file`]).
    pub fn chunker(&self) -> &Arc<ChunkerSpec> {
        &self.chunker
    }

    /// The chunker for a file of `size` bytes: the large-file one from its threshold on.
    pub fn chunker_for_file(&self, size: u64) -> &Arc<ChunkerSpec> {
        match (&self.config.large_files, &self.large_chunker) {
            (Some(large), Some(spec)) if size >= large.min_file_size => spec,
            _ => &self.chunker,
        }
    }

    /// The chunker for a stream of unknown size (standard input: dumps and images, usually
    /// large): the large-file one when the repository has one.
    pub fn chunker_for_stream(&self) -> &Arc<ChunkerSpec> {
        self.large_chunker.as_ref().unwrap_or(&self.chunker)
    }

    /// Name of the key file that opened the repository.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Adds a key file for another password; returns its name.
    pub fn add_key(&self, password: &[u8], memory_kib: u32, iterations: u32) -> Result<String> {
        let key =
            KeyFile::create(&self.keys, password, KdfParams::new(memory_kib, iterations))?.encode();
        let name = Id::hash_of(&key).to_hex();
        self.backend.write(FileKind::Key, &name, &key, true)?;
        Ok(name)
    }

    /// Reads and verifies one index file.
    pub fn read_index_file(&self, name: &str) -> Result<IndexFile> {
        let bytes = self.backend.read(FileKind::Index, name)?;
        check_content_name(FileKind::Index, name, &bytes)?;
        IndexFile::decode(&self.keys, name, &bytes)
    }

    /// Reads every index file (in parallel) and merges them. Index files that supersede others
    /// make those others ignored.
    pub(crate) fn load_index(self: &Arc<Self>) -> Result<IndexedRepo> {
        let IndexSet { files, .. } = self.read_all_index_files()?;
        Ok(IndexedRepo::from_parts(
            self.clone(),
            MasterIndex::from_files(&files),
        ))
    }

    /// Names of the index files (names that are not ids are skipped).
    /// Listings are not atomic, so the listing is repeated until a second one shows no name
    /// the first missed (see [`Repository::read_all_index_files`]).
    pub fn read_all_index_file_names(&self) -> Result<Vec<String>> {
        let list = || -> Result<Vec<String>> {
            Ok(self
                .backend
                .list(FileKind::Index)?
                .into_iter()
                .map(|f| f.name)
                .filter(|n| n.parse::<Id>().is_ok())
                .collect())
        };
        let mut names = list()?;
        for _ in 0..20 {
            let again = list()?;
            let known: std::collections::HashSet<&String> = names.iter().collect();
            if again.iter().all(|n| known.contains(n)) {
                return Ok(names);
            }
            names = again;
        }
        Err(RepoError::ListingUnstable(FileKind::Index))
    }

    /// Reads every index file that no other supersedes, in parallel. A file that a concurrent
    /// prune deletes between listing and reading makes the whole read start again (its
    /// superseding file is then in the listing).
    pub fn read_all_index_files(&self) -> Result<IndexSet> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut names = self.backend.list(FileKind::Index)?;
            names.retain(|f| {
                let ok = f.name.parse::<Id>().is_ok();
                if !ok {
                    tracing::warn!("ignoring {:?} in index/: not an index file name", f.name);
                }
                ok
            });
            let read: Result<Vec<(String, IndexFile)>> = names
                .par_iter()
                .map(|f| self.read_index_file(&f.name).map(|i| (f.name.clone(), i)))
                .collect();
            let files = match read {
                Ok(f) => f,
                Err(RepoError::Backend(BackendError::NotFound { .. })) if attempt < 20 => continue,
                Err(e) => return Err(e),
            };
            // Listings are not atomic: a file stored while we listed (a prune's superseding
            // file) may be missing while the files it replaces are already gone. Only a view
            // that a second listing adds nothing to is complete.
            let known: std::collections::HashSet<&str> =
                names.iter().map(|f| f.name.as_str()).collect();
            let again = self.backend.list(FileKind::Index)?;
            if again
                .iter()
                .any(|f| !known.contains(f.name.as_str()) && f.name.parse::<Id>().is_ok())
            {
                if attempt < 20 {
                    continue;
                }
                return Err(RepoError::ListingUnstable(FileKind::Index));
            }
            let superseded: std::collections::HashSet<Id> = files
                .iter()
                .flat_map(|(_, f)| f.supersedes.iter().copied())
                .collect();
            let (live, gone): (Vec<_>, Vec<_>) = files.into_iter().partition(|(name, _)| {
                !name.parse::<Id>().is_ok_and(|id| superseded.contains(&id))
            });
            let (names, files) = live.into_iter().unzip();
            return Ok(IndexSet {
                names,
                files,
                superseded: gone.into_iter().map(|(n, _)| n).collect(),
            });
        }
    }

    /// Reads and verifies one snapshot.
    pub fn read_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let name = id.to_hex();
        let bytes = self.backend.read(FileKind::Snapshot, &name)?;
        check_content_name(FileKind::Snapshot, &name, &bytes)?;
        Snapshot::decode(&self.keys, &name, &bytes)
    }

    /// Every snapshot, oldest first. Unreadable snapshots are an error naming them.
    pub fn list_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let names = self.backend.list(FileKind::Snapshot)?;
        let mut out: Vec<(Id, Snapshot)> = names
            .par_iter()
            .filter_map(|f| f.name.parse::<Id>().ok())
            .filter_map(|id| match self.read_snapshot(&id) {
                Ok(s) => Some(Ok((id, s))),
                // Forgotten between listing and reading.
                Err(RepoError::Backend(BackendError::NotFound { .. })) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Finds a snapshot by `latest`, a full id or a unique id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            return self
                .list_snapshots()?
                .pop()
                .ok_or_else(|| RepoError::SnapshotNotFound(spec.into()));
        }
        if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RepoError::SnapshotNotFound(spec.into()));
        }
        let lower = spec.to_ascii_lowercase();
        let names = self.backend.list(FileKind::Snapshot)?;
        let matches: Vec<&str> = names
            .iter()
            .map(|f| f.name.as_str())
            .filter(|n| n.starts_with(&lower))
            .collect();
        match matches.as_slice() {
            [] => Err(RepoError::SnapshotNotFound(spec.into())),
            [one] => {
                let id: Id = one
                    .parse()
                    .map_err(|_| RepoError::SnapshotNotFound(spec.into()))?;
                Ok((id, self.read_snapshot(&id)?))
            }
            _ => Err(RepoError::AmbiguousSnapshot(spec.into())),
        }
    }

    /// Stores an index file under the hash of its sealed bytes; returns its name.
    pub fn save_index_file(&self, file: &IndexFile) -> Result<String> {
        let bytes = file.encode(&self.keys);
        let name = Id::hash_of(&bytes).to_hex();
        self.backend.write(FileKind::Index, &name, &bytes, false)?;
        Ok(name)
    }

    /// Stores a snapshot; returns its id.
    pub fn save_snapshot(&self, s: &Snapshot) -> Result<Id> {
        let bytes = s.encode(&self.keys);
        let id = Id::hash_of(&bytes);
        self.backend
            .write(FileKind::Snapshot, &id.to_hex(), &bytes, false)?;
        Ok(id)
    }
}

/// The index files of a repository as read at one moment.
pub struct IndexSet {
    /// Names of the files in force (superseded by none).
    pub names: Vec<String>,
    /// Their content, in the same order.
    pub files: Vec<IndexFile>,
    /// Files still present although another supersedes them (a consolidation was interrupted
    /// before deleting them). A new consolidation must supersede and delete them too, or they
    /// would come back into force when their superseding file is replaced.
    pub superseded: Vec<String>,
}

/// Files named by the hash of their content must match it: a renamed or damaged file is caught
/// before it is decrypted.
pub fn check_content_name(kind: FileKind, name: &str, bytes: &[u8]) -> Result<()> {
    if Id::hash_of(bytes).to_hex() != name {
        return Err(RepoError::malformed(
            format!("{kind} {name}"),
            "content does not match its name (corrupted or truncated)",
        ));
    }
    Ok(())
}

/// A repository with its index loaded: the state in which blobs can be read and written.
pub struct IndexedRepo {
    repo: Arc<Repository>,
    index: Box<dyn BlobIndex>,
}

impl IndexedRepo {
    /// Pairs a repository with an index built by the caller (maintenance builds its own).
    pub(crate) fn from_parts(repo: Arc<Repository>, index: MasterIndex) -> IndexedRepo {
        IndexedRepo {
            repo,
            index: Box::new(index),
        }
    }

    /// Pairs a repository with any index implementation (the local cache, for one).
    pub(crate) fn with_index(repo: Arc<Repository>, index: Box<dyn BlobIndex>) -> IndexedRepo {
        IndexedRepo { repo, index }
    }

    /// The repository.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// Its index.
    pub fn index(&self) -> &dyn BlobIndex {
        self.index.as_ref()
    }

    /// Where a blob of the given type is stored.
    pub fn locate(&self, blob_type: BlobType, id: &Id) -> Result<BlobLocation> {
        self.index
            .get(blob_type, id)
            .ok_or_else(|| RepoError::BlobNotFound(format!("{blob_type} {}", id.to_hex())))
    }

    /// Reads, verifies and decrypts one blob: from the index's local store of sealed blobs
    /// when it has it (the cache keeps trees, so re-backups and listings do not fetch them
    /// again), else from its pack.
    pub fn read_blob(&self, blob_type: BlobType, id: &Id) -> Result<Vec<u8>> {
        let loc = self.locate(blob_type, id)?;
        if let Some(sealed) = self.index.cached_blob(blob_type, id) {
            match open_blob(
                &self.repo.keys,
                blob_type,
                id,
                &sealed,
                loc.raw_length as usize,
            ) {
                Ok(data) => return Ok(data),
                Err(e) => tracing::warn!(
                    "cached copy of {blob_type} blob {} is unusable ({e}); reading the pack",
                    id.short()
                ),
            }
        }
        let sealed = self.repo.backend.read_range(
            FileKind::Pack,
            &loc.pack.to_hex(),
            loc.offset as u64,
            loc.length as u64,
        )?;
        let data = open_blob(
            &self.repo.keys,
            blob_type,
            id,
            &sealed,
            loc.raw_length as usize,
        )?;
        self.index.cache_blob(blob_type, id, &sealed);
        Ok(data)
    }

    /// Reads and validates a tree.
    pub fn read_tree(&self, id: &Id) -> Result<Tree> {
        let bytes = self.read_blob(BlobType::Tree, id)?;
        Tree::decode(id, &bytes)
    }
}
