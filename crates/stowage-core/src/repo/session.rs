//! The states a repository moves through before work is done on it, as types, so that the
//! compiler refuses work that skipped a step:
//!
//! ```text
//! Repository ──lock::<W>()──▶ Locked<W> ──load_index(source)──▶ Indexed<W>
//!   (opened: keys       (a lock file of W's kind     (the index loaded, through the
//!    unlocked)           is live in the repository)   source the caller chose)
//! ```
//!
//! `W` names the kind of work and so the kind of lock: [`BackupWork`] (adds data; any number
//! at once), [`ReadWork`] (restore, check: prune keeps the packs they may need) and
//! [`PruneWork`] (deletes data; one at a time). Each operation asks for the state it needs:
//! a backup takes `&Indexed<BackupWork>`, a restore `&Indexed<ReadWork>`, a check
//! `&Locked<ReadWork>`, a prune `&Locked<PruneWork>`. The one rule every writer and reader
//! relies on, that the lock is written **before** the index is read (prune's deletion protocol,
//! `repo-format/README.md`), holds by construction: the index can only be loaded from a
//! `Locked`.
//!
//! Each `compile_fail` example below has a twin that compiles, so that they fail for the
//! reason they show and not for another. The right way, for a backup, a prune and a check:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use stowage_core::repo::Repository;
//! # use stowage_core::repo::session::{BackupWork, IndexSource, PruneWork, ReadWork};
//! # use stowage_core::backup::{self, BackupOptions, BackupSource};
//! # use stowage_core::maintenance::prune::{self, PruneOptions};
//! # use stowage_core::check::{self, CheckOptions, CheckProgress};
//! # use stowage_core::progress::Control;
//! fn work(repo: &Arc<Repository>) -> Result<(), Box<dyn std::error::Error>> {
//!     let session = repo.lock::<BackupWork>()?.load_index(&IndexSource::Memory, &())?;
//!     let source = BackupSource::Paths(vec!["/srv".into()]);
//!     backup::run(&session, source, &BackupOptions::default(), &Control::new())?;
//!     prune::run(&repo.lock::<PruneWork>()?, &PruneOptions::default())?;
//!     check::run(&repo.lock::<ReadWork>()?, &CheckOptions::default(), &CheckProgress::default())?;
//!     Ok(())
//! }
//! ```
//!
//! A backup cannot run on a read session:
//!
//! ```compile_fail
//! # use stowage_core::repo::session::{Indexed, ReadWork};
//! # use stowage_core::backup::{self, BackupOptions, BackupSource};
//! # use stowage_core::progress::Control;
//! fn backup_without_its_lock(s: &Indexed<ReadWork>) {
//!     let source = BackupSource::Paths(vec!["/srv".into()]);
//!     let _ = backup::run(s, source, &BackupOptions::default(), &Control::new());
//! }
//! ```
//!
//! nor on a repository that was only opened:
//!
//! ```compile_fail
//! # use std::sync::Arc;
//! # use stowage_core::repo::Repository;
//! # use stowage_core::backup::{self, BackupOptions, BackupSource};
//! # use stowage_core::progress::Control;
//! fn backup_unlocked(repo: &Arc<Repository>) {
//!     let source = BackupSource::Paths(vec!["/srv".into()]);
//!     let _ = backup::run(repo, source, &BackupOptions::default(), &Control::new());
//! }
//! ```
//!
//! A prune needs the prune lock, not a reader's:
//!
//! ```compile_fail
//! # use stowage_core::repo::session::{Locked, ReadWork};
//! # use stowage_core::maintenance::prune::{self, PruneOptions};
//! fn prune_while_reading(s: &Locked<ReadWork>) {
//!     let _ = prune::run(s, &PruneOptions::default());
//! }
//! ```
//!
//! and an index cannot be loaded without a lock at all (there is no public way to build an
//! [`IndexedRepo`] from a bare repository):
//!
//! ```compile_fail
//! # use std::sync::Arc;
//! # use stowage_core::repo::Repository;
//! fn index_without_lock(repo: &Arc<Repository>) {
//!     let _ = repo.load_index();
//! }
//! ```

use super::cache::{CacheProgress, IndexCache};
use super::lock::{Lock, LockKind};
use super::snapshot::Snapshot;
use super::{IndexedRepo, Repository, Result};
use crate::id::Id;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

mod sealed {
    pub trait Sealed {}
}

/// A kind of work on a repository, which decides the kind of lock it holds.
pub trait Work: sealed::Sealed + 'static {
    /// The lock this work holds.
    const LOCK: LockKind;
}

/// Adding data: backups, and the rewriting of snapshots by `repair snapshots`. Any number of
/// these run at once, beside readers and a prune.
pub enum BackupWork {}
/// Reading data for a while: restore, check, mount. A prune does not delete packs while such a
/// lock is live.
pub enum ReadWork {}
/// Deleting data: prune, `repair index`. At most one at a time.
pub enum PruneWork {}

impl sealed::Sealed for BackupWork {}
impl sealed::Sealed for ReadWork {}
impl sealed::Sealed for PruneWork {}

impl Work for BackupWork {
    const LOCK: LockKind = LockKind::Backup;
}
impl Work for ReadWork {
    const LOCK: LockKind = LockKind::Read;
}
impl Work for PruneWork {
    const LOCK: LockKind = LockKind::Prune;
}

/// Where the index of a session comes from.
#[derive(Clone, Debug)]
pub enum IndexSource {
    /// Read every index file into memory: memory grows with the repository (about 100 bytes a
    /// blob), nothing is written locally.
    Memory,
    /// The local SQLite cache in this folder (one sub-folder per repository): only index files
    /// it has not seen are read, and lookups do not hold the index in memory.
    Cache(PathBuf),
}

impl IndexSource {
    /// The cache in `dir`, or in the user's default cache folder (`$XDG_CACHE_HOME/stowage`,
    /// `~/.cache/stowage`) when `dir` is `None`; in memory when no such folder is known.
    pub fn cache_or_memory(dir: Option<PathBuf>) -> IndexSource {
        match dir.or_else(super::cache::default_cache_dir) {
            Some(d) => IndexSource::Cache(d),
            None => IndexSource::Memory,
        }
    }

    /// Every snapshot of the repository, through the cache when there is one (it keeps
    /// snapshots decrypted, so only new snapshot files are read).
    pub fn snapshots(&self, repo: &Repository) -> Result<Vec<(Id, Snapshot)>> {
        match self {
            IndexSource::Memory => repo.list_snapshots(),
            IndexSource::Cache(dir) => {
                IndexCache::open(dir, &repo.config().repository_id)?.snapshots(repo)
            }
        }
    }
}

/// A repository with a live lock for work `W` (or, for reads only, knowingly without one: see
/// [`Locked::without_lock`]).
pub struct Locked<W: Work> {
    repo: Arc<Repository>,
    lock: Option<Lock>,
    _work: PhantomData<fn() -> W>,
}

impl Repository {
    /// Writes a lock for work `W` and returns the locked session. A [`PruneWork`] lock fails
    /// while another live prune lock exists.
    pub fn lock<W: Work>(self: &Arc<Self>) -> Result<Locked<W>> {
        Ok(Locked {
            repo: self.clone(),
            lock: Some(Lock::acquire(self, W::LOCK)?),
            _work: PhantomData,
        })
    }
}

impl Locked<ReadWork> {
    /// A read session that holds no lock: nothing is written to the repository, but a prune
    /// running meanwhile may delete packs this session then fails to read. For listings, for
    /// read-only storage, and for `--no-lock`.
    pub fn without_lock(repo: &Arc<Repository>) -> Locked<ReadWork> {
        Locked {
            repo: repo.clone(),
            lock: None,
            _work: PhantomData,
        }
    }
}

impl<W: Work> Locked<W> {
    /// The repository.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// The lock this session holds (`None` only for [`Locked::without_lock`]).
    pub fn held_lock(&self) -> Option<&Lock> {
        self.lock.as_ref()
    }

    /// Loads the index from `source`, reporting index files read into a cache to `progress`.
    /// The lock is already live, as prune's protocol requires.
    pub fn load_index(
        self,
        source: &IndexSource,
        progress: &dyn CacheProgress,
    ) -> Result<Indexed<W>> {
        let indexed = match source {
            IndexSource::Memory => self.repo.load_index()?,
            IndexSource::Cache(dir) => {
                let mut cache = IndexCache::open(dir, &self.repo.config().repository_id)?;
                cache.sync(&self.repo, progress)?;
                IndexedRepo::with_index(self.repo.clone(), Box::new(cache))
            }
        };
        Ok(Indexed {
            indexed: Arc::new(indexed),
            lock: self.lock,
            _work: PhantomData,
        })
    }
}

/// A locked repository with its index loaded: the state in which work `W` reads and writes
/// blobs.
pub struct Indexed<W: Work> {
    indexed: Arc<IndexedRepo>,
    lock: Option<Lock>,
    _work: PhantomData<fn() -> W>,
}

impl<W: Work> Indexed<W> {
    /// The repository with its index.
    pub fn indexed(&self) -> &Arc<IndexedRepo> {
        &self.indexed
    }

    /// The repository.
    pub fn repo(&self) -> &Arc<Repository> {
        self.indexed.repo()
    }

    /// The lock this session holds (`None` only for a session begun
    /// [`without_lock`](Locked::without_lock)).
    pub fn held_lock(&self) -> Option<&Lock> {
        self.lock.as_ref()
    }

    /// Ends the session: removes its lock file now (dropping the session does the same), and
    /// says whether the lock's refresher ever failed (others may have seen the lock as stale).
    pub fn finish(self) -> bool {
        self.lock.as_ref().is_some_and(Lock::refresh_failed)
    }
}
