//! The local cache: a SQLite database per repository holding the index (blob -> location), the
//! names of the index files it reflects, and decrypted snapshots. Backups look blobs up in it,
//! so memory does not grow with the number of blobs, and start-up reads only index files not
//! yet cached.
//!
//! The cache is only a cache: deleting it loses nothing; a missing, stale or corrupted cache is
//! rebuilt from the repository; several processes may share it (WAL mode, transactions).

use super::error::{RepoError, Result};
use super::index::{BlobIndex, BlobLocation, IndexFile};
use super::snapshot::Snapshot;
use super::Repository;
use crate::id::{BlobType, Id};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bumped whenever the schema changes: an older cache is rebuilt.
const SCHEMA_VERSION: i64 = 2;

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> RepoError + '_ {
    move |source| RepoError::Cache {
        path: path.display().to_string(),
        source,
    }
}

/// Progress reported while the cache is filled.
pub trait CacheProgress: Sync {
    /// `done` of `total` index files have been read into the cache.
    fn index_files(&self, done: usize, total: usize);
}

impl CacheProgress for () {
    fn index_files(&self, _: usize, _: usize) {}
}

/// An open cache for one repository.
pub struct IndexCache {
    conn: Mutex<Db>,
    path: PathBuf,
}

/// Lookups (blob locations, cached trees) share a read transaction: on its own, each statement
/// opened and closed one, taking and releasing the WAL's read lock (`fcntl`) and checking its
/// header, which was most of the cost of a lookup and ~10% of an unchanged re-backup. A shared
/// transaction ends after this many lookups or [`READ_TXN_MAX_AGE`], and before anything is
/// written through the connection, so this process always sees its own writes, and another's
/// (a concurrent backup syncing the same cache) within that bound. Writers are never blocked
/// (WAL); a checkpoint cannot pass an open read transaction, which the bounds keep short.
const READ_TXN_MAX_LOOKUPS: u32 = 1024;
/// See [`READ_TXN_MAX_LOOKUPS`].
const READ_TXN_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(50);

/// The cache's connection and the read transaction its lookups share.
struct Db {
    conn: Connection,
    /// When the shared read transaction began, and how many lookups it has served.
    read_txn: Option<(std::time::Instant, u32)>,
}

impl Db {
    /// The connection for one lookup, inside the shared read transaction.
    fn for_lookup(&mut self) -> &Connection {
        if let Some((since, n)) = self.read_txn {
            if n >= READ_TXN_MAX_LOOKUPS || since.elapsed() >= READ_TXN_MAX_AGE {
                self.end_read_txn();
            }
        }
        match &mut self.read_txn {
            Some((_, n)) => *n += 1,
            None => {
                // Only a connection outside any transaction starts one (a failure leaves the
                // statements to run on their own, as without this).
                if self.conn.is_autocommit() && self.conn.execute_batch("BEGIN").is_ok() {
                    self.read_txn = Some((std::time::Instant::now(), 1));
                }
            }
        }
        &self.conn
    }

    /// The connection for anything else (writes, their own transactions): the shared read
    /// transaction ends first.
    fn for_write(&mut self) -> &mut Connection {
        self.end_read_txn();
        &mut self.conn
    }

    fn end_read_txn(&mut self) {
        if self.read_txn.take().is_some() {
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                tracing::warn!("cache: could not end a read transaction: {e}");
            }
        }
    }
}

/// The default cache folder: `$XDG_CACHE_HOME/stowage` or `~/.cache/stowage`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("stowage"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("stowage"))
}

fn open_db(path: &Path, repo_id: &Id) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Another process may be rebuilding a huge index: wait for it rather than redo its work.
    conn.busy_timeout(std::time::Duration::from_secs(3600))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS index_files (name TEXT PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS packs (num INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,
                                           condemned INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE IF NOT EXISTS blobs (type INTEGER NOT NULL, id BLOB NOT NULL,
                                           pack INTEGER NOT NULL, offset INTEGER NOT NULL,
                                           length INTEGER NOT NULL, raw_length INTEGER NOT NULL,
                                           PRIMARY KEY (type, id)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS snapshots (name TEXT PRIMARY KEY, json BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS tree_blobs (id BLOB PRIMARY KEY, sealed BLOB NOT NULL);",
    )?;
    let version: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let repo: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = 'repository'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if version != Some(SCHEMA_VERSION) || repo.as_deref() != Some(repo_id.as_bytes().as_slice()) {
        clear(&conn)?;
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?1), ('repository', ?2)",
            params![SCHEMA_VERSION, repo_id.as_bytes().as_slice()],
        )?;
    }
    // Cheap structural check of the pages we will use most; a damaged file fails here.
    conn.query_row("SELECT count(*) FROM index_files", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(conn)
}

fn clear(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DELETE FROM index_files; DELETE FROM packs; DELETE FROM blobs; DELETE FROM snapshots;
         DELETE FROM tree_blobs;",
    )
}

impl IndexCache {
    /// Opens (or creates) the cache of a repository under `dir`. A cache that cannot be opened
    /// or fails its checks is deleted and created anew.
    pub fn open(dir: &Path, repo_id: &Id) -> Result<IndexCache> {
        let folder = dir.join(repo_id.to_hex());
        std::fs::create_dir_all(&folder).map_err(|source| RepoError::CacheFolder {
            path: folder.display().to_string(),
            source,
        })?;
        let path = folder.join("cache.sqlite");
        let conn = match open_db(&path, repo_id) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cache {} is unusable ({e}); rebuilding it", path.display());
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                open_db(&path, repo_id).map_err(db_err(&path))?
            }
        };
        Ok(IndexCache {
            conn: Mutex::new(Db {
                conn,
                read_txn: None,
            }),
            path,
        })
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the cached index up to date with the repository: reads only index files not yet
    /// cached. If a cached file is gone (a prune consolidated the index), or a new file carries
    /// prune marks, the index part is rebuilt from every index file.
    pub fn sync(&mut self, repo: &Repository, progress: &dyn CacheProgress) -> Result<()> {
        // A prune may delete an index file between listing and reading: start again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.sync_once(repo, progress) {
                Err(RepoError::Backend(crate::backend::BackendError::NotFound { .. }))
                    if attempt < 5 =>
                {
                    continue
                }
                r => return r,
            }
        }
    }

    fn sync_once(&mut self, repo: &Repository, progress: &dyn CacheProgress) -> Result<()> {
        let err = db_err(&self.path);
        let mut db = self.conn.lock().unwrap();
        let conn = db.for_write();
        // Syncs are serialized by the write lock, and each lists the repository only after
        // taking it, so the cache only ever moves forward in time: a slow sync can never
        // commit an older view over a newer one.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let set = repo.read_all_index_file_names()?;
        let current: HashSet<&String> = set.iter().collect();
        let cached: HashSet<String> = {
            let mut st = tx.prepare("SELECT name FROM index_files").map_err(&err)?;
            let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(&err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(&err)?
        };
        // A first fill, or many new files, also takes the streaming path (bounded memory).
        let mut rebuild = cached.iter().any(|n| !current.contains(n))
            || (cached.is_empty() && !set.is_empty())
            || set.len() - cached.len().min(set.len()) > 16;
        let new: Vec<String> = set
            .iter()
            .filter(|n| !cached.contains(*n))
            .cloned()
            .collect();
        let mut new_files = Vec::new();
        if !rebuild {
            new_files = read_files(repo, &new, progress)?;
            // Prune marks, or a consolidation superseding cached files, need the whole index.
            rebuild = new_files
                .iter()
                .any(|(_, f)| !f.condemned.is_empty() || !f.supersedes.is_empty());
        }
        let files_read;
        if rebuild {
            drop(new_files);
            files_read = set.len();
            tx.execute_batch(
                "DELETE FROM index_files; DELETE FROM packs; DELETE FROM blobs;
                 CREATE TEMP TABLE IF NOT EXISTS stage (type INTEGER, id BLOB, pack INTEGER,
                     offset INTEGER, length INTEGER, raw_length INTEGER);
                 DELETE FROM stage;",
            )
            .map_err(&err)?;
            // Pass 1: marks and superseded lists (small), one file at a time.
            let mut superseded = HashSet::new();
            let mut marks: Vec<(String, Vec<Id>)> = Vec::new();
            for name in &set {
                let f = repo.read_index_file(name)?;
                superseded.extend(f.supersedes.iter().copied());
                let packs = f
                    .condemned
                    .iter()
                    .flat_map(|c| c.packs.iter().copied())
                    .collect();
                marks.push((name.clone(), packs));
            }
            let in_force =
                |name: &String| !name.parse::<Id>().is_ok_and(|id| superseded.contains(&id));
            // Marks count only from files in force, as for the in-memory index.
            let condemned: Vec<Id> = marks
                .into_iter()
                .filter(|(n, _)| in_force(n))
                .flat_map(|(_, p)| p)
                .collect();
            insert_marks(&tx, &condemned).map_err(&err)?;
            // Pass 2: blobs into an unindexed staging table, one file at a time (memory stays
            // at one index file), then into the table in key order, which is far faster than
            // random inserts into its B-tree.
            for (i, name) in set.iter().enumerate() {
                if in_force(name) {
                    let f = repo.read_index_file(name)?;
                    insert_packs(&tx, &f, "stage").map_err(&err)?;
                }
                tx.execute(
                    "INSERT OR IGNORE INTO index_files (name) VALUES (?1)",
                    [name],
                )
                .map_err(&err)?;
                progress.index_files(i + 1, set.len());
            }
            tx.execute_batch(
                "INSERT INTO blobs (type, id, pack, offset, length, raw_length)
                     SELECT type, id, pack, offset, length, raw_length FROM stage WHERE true
                     ORDER BY type, id
                 ON CONFLICT(type, id) DO UPDATE SET pack = excluded.pack,
                     offset = excluded.offset, length = excluded.length,
                     raw_length = excluded.raw_length
                 WHERE (SELECT condemned FROM packs WHERE num = blobs.pack) = 1
                   AND (SELECT condemned FROM packs WHERE num = excluded.pack) = 0;
                 DELETE FROM stage;
                 DELETE FROM tree_blobs WHERE NOT EXISTS (
                     SELECT 1 FROM blobs b WHERE b.type = 1 AND b.id = tree_blobs.id);",
            )
            .map_err(&err)?;
        } else {
            files_read = new_files.len();
            for (name, f) in &new_files {
                insert_packs(&tx, f, "blobs").map_err(&err)?;
                tx.execute(
                    "INSERT OR IGNORE INTO index_files (name) VALUES (?1)",
                    [name],
                )
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        tracing::info!(
            "cache: read {files_read} of {} index files{}",
            set.len(),
            if rebuild { " (rebuilt)" } else { "" },
        );
        Ok(())
    }

    /// Every snapshot, with decrypted snapshots taken from the cache and new ones read and
    /// cached. Snapshots deleted from the repository are dropped from the cache.
    pub fn snapshots(&self, repo: &Repository) -> Result<Vec<(Id, Snapshot)>> {
        let err = db_err(&self.path);
        let names: Vec<String> = repo
            .backend()
            .list(crate::backend::FileKind::Snapshot)?
            .into_iter()
            .map(|f| f.name)
            .filter(|n| n.parse::<Id>().is_ok())
            .collect();
        let mut db = self.conn.lock().unwrap();
        let conn = db.for_write();
        let mut out = Vec::with_capacity(names.len());
        let mut fresh = Vec::new();
        {
            let mut get = conn
                .prepare("SELECT json FROM snapshots WHERE name = ?1")
                .map_err(&err)?;
            for n in &names {
                let cached: Option<Vec<u8>> =
                    get.query_row([n], |r| r.get(0)).optional().map_err(&err)?;
                let id: Id = n.parse().expect("filtered");
                match cached.and_then(|j| serde_json::from_slice::<Snapshot>(&j).ok()) {
                    Some(s) => out.push((id, s)),
                    None => match repo.read_snapshot(&id) {
                        Ok(s) => {
                            fresh.push((
                                n.clone(),
                                serde_json::to_vec(&s).expect("snapshots serialize"),
                            ));
                            out.push((id, s));
                        }
                        Err(RepoError::Backend(crate::backend::BackendError::NotFound {
                            ..
                        })) => {}
                        Err(e) => return Err(e),
                    },
                }
            }
        }
        let keep: HashSet<&String> = names.iter().collect();
        let stale: Vec<String> = {
            let mut st = conn.prepare("SELECT name FROM snapshots").map_err(&err)?;
            let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(&err)?;
            rows.filter_map(|r| r.ok())
                .filter(|n| !keep.contains(n))
                .collect()
        };
        for (n, j) in fresh {
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (name, json) VALUES (?1, ?2)",
                params![n, j],
            )
            .map_err(&err)?;
        }
        for n in stale {
            conn.execute("DELETE FROM snapshots WHERE name = ?1", [n])
                .map_err(&err)?;
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    fn lookup(&self, blob_type: BlobType, id: &Id) -> Option<(BlobLocation, bool)> {
        let mut db = self.conn.lock().unwrap();
        let conn = db.for_lookup();
        let mut st = conn
            .prepare_cached(
                "SELECT p.id, b.offset, b.length, b.raw_length, p.condemned
                 FROM blobs b JOIN packs p ON p.num = b.pack WHERE b.type = ?1 AND b.id = ?2",
            )
            .ok()?;
        st.query_row(params![blob_type.code(), id.as_bytes().as_slice()], |r| {
            let pack: Vec<u8> = r.get(0)?;
            Ok((
                BlobLocation {
                    blob_type,
                    pack: Id::from_slice(&pack).unwrap_or_default(),
                    offset: r.get(1)?,
                    length: r.get(2)?,
                    raw_length: r.get(3)?,
                },
                r.get::<_, i64>(4)? != 0,
            ))
        })
        .optional()
        .unwrap_or_else(|e| {
            tracing::warn!("cache lookup failed: {e}");
            None
        })
    }
}

/// Records condemned packs (before any blob, so blobs are placed outside them when possible).
fn insert_marks(tx: &rusqlite::Transaction, packs: &[Id]) -> rusqlite::Result<()> {
    let mut add = tx.prepare_cached("INSERT INTO packs (id, condemned) VALUES (?1, 1) ON CONFLICT(id) DO UPDATE SET condemned = 1")?;
    for p in packs {
        add.execute([p.as_bytes().as_slice()])?;
    }
    Ok(())
}

/// Inserts the packs and blob locations of one index file into `table` ("blobs", with the
/// first-live-location rule, or the unindexed "stage").
fn insert_packs(tx: &rusqlite::Transaction, f: &IndexFile, table: &str) -> rusqlite::Result<()> {
    let mut add_pack =
        tx.prepare_cached("INSERT INTO packs (id) VALUES (?1) ON CONFLICT(id) DO NOTHING")?;
    let mut pack_num = tx.prepare_cached("SELECT num FROM packs WHERE id = ?1")?;
    let sql = if table == "stage" {
        "INSERT INTO stage (type, id, pack, offset, length, raw_length) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    } else {
        "INSERT INTO blobs (type, id, pack, offset, length, raw_length)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(type, id) DO UPDATE SET pack = excluded.pack,
            offset = excluded.offset, length = excluded.length,
            raw_length = excluded.raw_length
         WHERE (SELECT condemned FROM packs WHERE num = blobs.pack) = 1
           AND (SELECT condemned FROM packs WHERE num = excluded.pack) = 0"
    };
    let mut add_blob = tx.prepare_cached(sql)?;
    for p in &f.packs {
        add_pack.execute([p.id.as_bytes().as_slice()])?;
        let num: i64 = pack_num.query_row([p.id.as_bytes().as_slice()], |r| r.get(0))?;
        for b in &p.blobs {
            add_blob.execute(params![
                b.blob_type.code(),
                b.id.as_bytes().as_slice(),
                num,
                b.offset,
                b.length,
                b.raw_length
            ])?;
        }
    }
    Ok(())
}

fn read_files(
    repo: &Repository,
    names: &[String],
    progress: &dyn CacheProgress,
) -> Result<Vec<(String, IndexFile)>> {
    use rayon::prelude::*;
    let done = std::sync::atomic::AtomicUsize::new(0);
    names
        .par_iter()
        .map(|n| {
            let f = repo.read_index_file(n)?;
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress.index_files(d, names.len());
            Ok((n.clone(), f))
        })
        .collect()
}

/// Largest sealed tree kept in the cache (larger ones are read from their pack each time).
const MAX_CACHED_TREE: usize = 4 << 20;

impl BlobIndex for IndexCache {
    fn cached_blob(&self, blob_type: BlobType, id: &Id) -> Option<Vec<u8>> {
        if blob_type != BlobType::Tree {
            return None;
        }
        let mut db = self.conn.lock().unwrap();
        let conn = db.for_lookup();
        conn.prepare_cached("SELECT sealed FROM tree_blobs WHERE id = ?1")
            .and_then(|mut st| {
                st.query_row([id.as_bytes().as_slice()], |r| r.get(0))
                    .optional()
            })
            .unwrap_or_else(|e| {
                tracing::warn!("cache lookup failed: {e}");
                None
            })
    }
    fn cache_blob(&self, blob_type: BlobType, id: &Id, sealed: &[u8]) {
        if blob_type != BlobType::Tree || sealed.len() > MAX_CACHED_TREE {
            return;
        }
        let mut db = self.conn.lock().unwrap();
        let conn = db.for_write();
        if let Err(e) = conn
            .prepare_cached("INSERT OR REPLACE INTO tree_blobs (id, sealed) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![id.as_bytes().as_slice(), sealed]))
        {
            tracing::warn!("cache: could not keep tree {}: {e}", id.short());
        }
    }
    fn get(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        self.lookup(blob_type, id).map(|(l, _)| l)
    }
    fn contains_live(&self, blob_type: BlobType, id: &Id) -> bool {
        self.lookup(blob_type, id)
            .is_some_and(|(_, condemned)| !condemned)
    }
    fn len(&self) -> usize {
        // Counting scans the table: done only when asked (check, stats), never at start-up.
        let mut db = self.conn.lock().unwrap();
        let conn = db.for_write();
        conn.query_row("SELECT count(*) FROM blobs", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_in_the_shared_read_transaction_see_this_and_other_writers() {
        let dir = tempfile::tempdir().unwrap();
        let repo_id = Id([7; 32]);
        let ours = IndexCache::open(dir.path(), &repo_id).unwrap();
        let theirs = IndexCache::open(dir.path(), &repo_id).unwrap();
        let (a, b) = (Id([1; 32]), Id([2; 32]));

        // A lookup opens the shared read transaction...
        assert_eq!(ours.cached_blob(BlobType::Tree, &a), None);
        assert!(ours.conn.lock().unwrap().read_txn.is_some());
        // ...which does not block another connection's writes (WAL)...
        theirs.cache_blob(BlobType::Tree, &b, b"theirs");
        // ...and ends before a write of ours, which the next lookup sees.
        ours.cache_blob(BlobType::Tree, &a, b"ours");
        assert!(ours.conn.lock().unwrap().read_txn.is_none());
        assert_eq!(
            ours.cached_blob(BlobType::Tree, &a).as_deref(),
            Some(&b"ours"[..])
        );
        // The other connection's write is visible once the transaction is too old to reuse.
        theirs.cache_blob(BlobType::Tree, &a, b"theirs again");
        std::thread::sleep(READ_TXN_MAX_AGE);
        assert_eq!(
            ours.cached_blob(BlobType::Tree, &a).as_deref(),
            Some(&b"theirs again"[..])
        );
    }

    #[test]
    fn a_read_transaction_serves_a_bounded_number_of_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let cache = IndexCache::open(dir.path(), &Id([7; 32])).unwrap();
        let mut started = HashSet::new();
        for i in 0..READ_TXN_MAX_LOOKUPS * 3 {
            assert!(!cache.contains_live(BlobType::Data, &Id([i as u8; 32])));
            let (since, n) = cache.conn.lock().unwrap().read_txn.unwrap();
            assert!(n <= READ_TXN_MAX_LOOKUPS);
            started.insert(since);
        }
        assert!(
            started.len() >= 3,
            "a new transaction every {READ_TXN_MAX_LOOKUPS} lookups"
        );
    }
}
