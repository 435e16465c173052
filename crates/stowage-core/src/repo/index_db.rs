//! The whole index in a temporary SQLite file, for maintenance that must see every blob of a
//! huge repository without holding them in memory (prune).
//!
//! Unlike the local cache ([`super::cache`]), this is a scratch database owned by one run: it
//! is created in a fresh temporary folder, written without a journal and deleted when dropped.
//! It holds every record of the index files in force (`entries`), the location each blob
//! resolves to with the same rules as [`MasterIndex`](super::index::MasterIndex) (`resolved`),
//! and a set of blobs marked as used (`used`) that survives reloading the index. Memory stays at
//! SQLite's page cache ([`PAGE_CACHE_KIB`]), one index file being read, and a few bytes per pack
//! and per index file.

use super::error::{RepoError, Result};
use super::index::{BlobIndex, BlobLocation, CondemnedBatch, IndexFile, IndexPack};
use super::Repository;
use crate::backend::{BackendError, FileKind};
use crate::id::{BlobType, Id};
use crate::pack::PackBlob;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

/// SQLite's page cache for the work database; sorts spill to temporary files beyond it.
pub const PAGE_CACHE_KIB: i64 = 32 * 1024;
/// Index files read at once while loading (each up to 500,000 blobs).
const FILES_IN_FLIGHT: usize = 1;

fn db_err(e: rusqlite::Error) -> RepoError {
    RepoError::WorkDatabase(e)
}

/// What loading the index found besides the blob records.
#[derive(Debug, Default)]
pub struct LoadedIndex {
    /// Index files in force (not superseded by another present file).
    pub names: Vec<String>,
    /// Index files present but superseded by another present file.
    pub superseded: Vec<String>,
    /// The condemned batches of the files in force, each pack in one batch only (the first).
    pub batches: Vec<CondemnedBatch>,
}

impl LoadedIndex {
    /// Every index file present, in force or superseded: what a consolidation replaces.
    pub fn present_names(&self) -> Vec<String> {
        self.names.iter().chain(&self.superseded).cloned().collect()
    }
}

/// How marking a blob as used went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Newly marked.
    New,
    /// Marked before.
    Already,
    /// Not in the index.
    Missing,
}

/// Bytes of a pack's blob records, and of those that are the used copy of a used blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackUsage {
    /// The pack.
    pub pack: Id,
    /// Bytes of all its blob records.
    pub total_bytes: u64,
    /// Bytes of the records that are the used copy of a used blob.
    pub used_bytes: u64,
}

/// A temporary on-disk master index.
pub struct IndexDb {
    conn: Mutex<Connection>,
    _dir: tempfile::TempDir,
}

fn blob_type(code: u8) -> rusqlite::Result<BlobType> {
    BlobType::from_code(code).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            format!("blob type {code}").into(),
        )
    })
}

fn id_of(bytes: Vec<u8>) -> rusqlite::Result<Id> {
    Id::from_slice(&bytes).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            "not a 32-byte id".into(),
        )
    })
}

impl IndexDb {
    /// Creates an empty database in a new temporary folder under `parent` (the system's
    /// temporary folder if `None`).
    pub fn create(parent: Option<&Path>) -> Result<IndexDb> {
        let io = RepoError::WorkFolder;
        let dir = match parent {
            Some(p) => {
                std::fs::create_dir_all(p).map_err(io)?;
                tempfile::Builder::new()
                    .prefix("stowage-work-")
                    .tempdir_in(p)
            }
            None => tempfile::Builder::new().prefix("stowage-work-").tempdir(),
        }
        .map_err(io)?;
        let conn = Connection::open(dir.path().join("index.sqlite")).map_err(db_err)?;
        // A scratch file: no journal, no fsync; a crash loses only the temporary folder.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             PRAGMA locking_mode = EXCLUSIVE; PRAGMA temp_store = FILE;
             PRAGMA cache_size = -{PAGE_CACHE_KIB};
             CREATE TABLE packs (num INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,
                                 condemned INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE entries (pack INTEGER NOT NULL, file INTEGER NOT NULL,
                                   type INTEGER NOT NULL, id BLOB NOT NULL,
                                   offset INTEGER NOT NULL, length INTEGER NOT NULL,
                                   raw_length INTEGER NOT NULL);
             CREATE TABLE resolved (type INTEGER NOT NULL, id BLOB NOT NULL,
                                    pack INTEGER NOT NULL, offset INTEGER NOT NULL,
                                    length INTEGER NOT NULL, raw_length INTEGER NOT NULL,
                                    PRIMARY KEY (type, id)) WITHOUT ROWID;
             CREATE TABLE used (type INTEGER NOT NULL, id BLOB NOT NULL,
                                PRIMARY KEY (type, id)) WITHOUT ROWID;
             CREATE TABLE staged (type INTEGER NOT NULL, id BLOB NOT NULL);
             CREATE TABLE sorted (type INTEGER NOT NULL, id BLOB NOT NULL);"
        ))
        .map_err(db_err)?;
        Ok(IndexDb {
            conn: Mutex::new(conn),
            _dir: dir,
        })
    }

    /// Loads the index files in force, replacing what an earlier load put in (the used set is
    /// kept). Like [`Repository::read_all_index_files`], a file deleted between listing and
    /// reading, or a listing that a second one adds to, makes the load start again.
    pub fn load(&self, repo: &Repository) -> Result<LoadedIndex> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.load_once(repo) {
                Err(RepoError::Backend(BackendError::NotFound { .. })) if attempt < 20 => {}
                Ok(None) if attempt < 20 => {}
                Ok(None) => return Err(RepoError::ListingUnstable(FileKind::Index)),
                Ok(Some(l)) => return Ok(l),
                Err(e) => return Err(e),
            }
        }
    }

    fn load_once(&self, repo: &Repository) -> Result<Option<LoadedIndex>> {
        use rayon::prelude::*;
        let mut names = repo.read_all_index_file_names()?;
        names.sort();
        let mut conn = self.conn.lock().unwrap();
        if !conn.is_autocommit() {
            conn.execute_batch("COMMIT").map_err(db_err)?;
        }
        conn.execute_batch(
            "DROP INDEX IF EXISTS entries_pack; DELETE FROM entries; DELETE FROM resolved;
             DELETE FROM packs;",
        )
        .map_err(db_err)?;
        // Per file: what it supersedes and its batches; per pack: the files listing it.
        let mut supersedes: Vec<Vec<Id>> = Vec::with_capacity(names.len());
        let mut batches: Vec<Vec<CondemnedBatch>> = Vec::with_capacity(names.len());
        let mut pack_nums: HashMap<Id, i64> = HashMap::new();
        let mut listed_in: HashMap<i64, Vec<u32>> = HashMap::new();
        let started = std::time::Instant::now();
        let tx = conn.transaction().map_err(db_err)?;
        for (group_no, group) in names.chunks(FILES_IN_FLIGHT).enumerate() {
            let files: Vec<IndexFile> = group
                .par_iter()
                .map(|n| repo.read_index_file(n))
                .collect::<Result<_>>()?;
            for (i, f) in files.into_iter().enumerate() {
                let file_no = (group_no * FILES_IN_FLIGHT + i) as u32;
                insert_file(&tx, file_no, &f, &mut pack_nums, &mut listed_in).map_err(db_err)?;
                supersedes.push(f.supersedes);
                batches.push(f.condemned);
            }
        }
        // Listings are not atomic: only a view that a second listing adds nothing to is whole.
        let known: HashSet<&String> = names.iter().collect();
        if repo
            .backend()
            .list(FileKind::Index)?
            .iter()
            .any(|f| !known.contains(&f.name) && f.name.parse::<Id>().is_ok())
        {
            return Ok(None);
        }
        let superseded_ids: HashSet<Id> = supersedes.iter().flatten().copied().collect();
        let in_force: Vec<bool> = names
            .iter()
            .map(|n| !n.parse::<Id>().is_ok_and(|id| superseded_ids.contains(&id)))
            .collect();
        // Batches of the files in force, each pack in the first batch naming it.
        let mut merged = Vec::new();
        let mut in_batch = HashSet::new();
        for (file_batches, _) in batches.iter().zip(&in_force).filter(|(_, f)| **f) {
            for c in file_batches {
                let packs: Vec<Id> = c
                    .packs
                    .iter()
                    .copied()
                    .filter(|p| in_batch.insert(*p))
                    .collect();
                if !packs.is_empty() {
                    merged.push(CondemnedBatch { packs, ..c.clone() });
                }
            }
        }
        tracing::debug!(
            "index db: {} files read at {:.1?}",
            names.len(),
            started.elapsed()
        );
        tx.execute_batch("CREATE INDEX entries_pack ON entries (pack, file)")
            .map_err(db_err)?;
        tracing::debug!("index db: entries indexed at {:.1?}", started.elapsed());
        {
            // A pack listed by several files in force keeps the union of their records, each
            // record once (as the master index does); packs that only superseded files list
            // leave the view.
            let mut drop_file = tx
                .prepare("DELETE FROM entries WHERE pack = ?1 AND file = ?2")
                .map_err(db_err)?;
            let mut dedup = tx
                .prepare(
                    "DELETE FROM entries WHERE pack = ?1 AND rowid NOT IN (
                         SELECT min(rowid) FROM entries WHERE pack = ?1
                         GROUP BY type, id, offset, length, raw_length)",
                )
                .map_err(db_err)?;
            let mut forget = tx
                .prepare("DELETE FROM packs WHERE num = ?1")
                .map_err(db_err)?;
            for (pack, files) in &listed_in {
                let mut kept = 0;
                for f in files {
                    if in_force[*f as usize] {
                        kept += 1;
                    } else {
                        drop_file.execute(params![pack, f]).map_err(db_err)?;
                    }
                }
                if kept == 0 {
                    forget.execute([pack]).map_err(db_err)?;
                } else if kept > 1 {
                    dedup.execute([pack]).map_err(db_err)?;
                }
            }
            let mut mark = tx
                .prepare(
                    "INSERT INTO packs (id, condemned) VALUES (?1, 1)
                     ON CONFLICT (id) DO UPDATE SET condemned = 1",
                )
                .map_err(db_err)?;
            for b in &merged {
                for p in &b.packs {
                    mark.execute([p.as_bytes().as_slice()]).map_err(db_err)?;
                }
            }
        }
        // Resolve in key order (sequential B-tree writes): live copies first, the first
        // record of each blob winning; then blobs stored only in condemned packs.
        for condemned in [0, 1] {
            tx.execute(
                "INSERT OR IGNORE INTO resolved (type, id, pack, offset, length, raw_length)
                     SELECT type, id, pack, offset, length, raw_length FROM entries
                     WHERE (pack IN (SELECT num FROM packs WHERE condemned = 1)) = ?1
                     ORDER BY type, id, file, rowid",
                [condemned],
            )
            .map_err(db_err)?;
        }
        tracing::debug!("index db: blobs resolved at {:.1?}", started.elapsed());
        tx.commit().map_err(db_err)?;
        // Later writes (the used set, condemned packs) stay in one open transaction: ending a
        // transaction per statement costs a walk over the whole page cache each time.
        conn.execute_batch("BEGIN").map_err(db_err)?;
        let (names, superseded): (Vec<_>, Vec<_>) =
            names.into_iter().zip(in_force).partition(|(_, f)| *f);
        Ok(Some(LoadedIndex {
            names: names.into_iter().map(|(n, _)| n).collect(),
            superseded: superseded.into_iter().map(|(n, _)| n).collect(),
            batches: merged,
        }))
    }

    /// Every pack in the view: listed by a file in force, or condemned.
    pub fn packs(&self) -> Result<Vec<Id>> {
        let conn = self.conn.lock().unwrap();
        let mut st = conn
            .prepare("SELECT id FROM packs ORDER BY id")
            .map_err(db_err)?;
        let rows = st.query_map([], |r| id_of(r.get(0)?)).map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    /// Marks a blob as used now. For trees, whose marking decides whether they are walked.
    pub fn mark_used(&self, blob_type: BlobType, id: &Id) -> Result<Mark> {
        let conn = self.conn.lock().unwrap();
        let key = params![blob_type.code(), id.as_bytes().as_slice()];
        let added = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO used (type, id)
                 SELECT type, id FROM resolved WHERE type = ?1 AND id = ?2",
            )
            .and_then(|mut st| st.execute(key))
            .map_err(db_err)?;
        if added == 1 {
            return Ok(Mark::New);
        }
        let known = conn
            .prepare_cached("SELECT 1 FROM used WHERE type = ?1 AND id = ?2")
            .and_then(|mut st| st.exists(key))
            .map_err(db_err)?;
        Ok(if known { Mark::Already } else { Mark::Missing })
    }

    /// Queues blobs to be marked as used by [`IndexDb::mark_staged`]: an append, far cheaper
    /// than a lookup in a B-tree larger than the page cache.
    pub fn stage_used(&self, blob_type: BlobType, ids: &[Id]) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        let mut st = conn
            .prepare_cached("INSERT INTO staged (type, id) VALUES (?1, ?2)")
            .map_err(db_err)?;
        for id in ids {
            st.execute(params![blob_type.code(), id.as_bytes().as_slice()])
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Marks the queued blobs as used, in key order (so the lookups and inserts walk the
    /// B-trees in order). Returns one queued blob that is not in the index, if any.
    pub fn mark_staged(&self) -> Result<Option<(BlobType, Id)>> {
        let conn = self.conn.lock().unwrap();
        conn.execute_batch(
            "INSERT INTO sorted (type, id) SELECT type, id FROM staged ORDER BY type, id;
             DELETE FROM staged;",
        )
        .map_err(db_err)?;
        let missing = conn
            .query_row(
                "SELECT type, id FROM sorted s WHERE NOT EXISTS (
                     SELECT 1 FROM resolved r WHERE r.type = s.type AND r.id = s.id)
                 LIMIT 1",
                [],
                |r| Ok((blob_type(r.get(0)?)?, id_of(r.get(1)?)?)),
            )
            .optional()
            .map_err(db_err)?;
        conn.execute_batch(
            "INSERT OR IGNORE INTO used (type, id) SELECT type, id FROM sorted
                 WHERE EXISTS (SELECT 1 FROM resolved r
                               WHERE r.type = sorted.type AND r.id = sorted.id);
             DELETE FROM sorted;",
        )
        .map_err(db_err)?;
        Ok(missing)
    }

    /// Number of blobs marked as used.
    pub fn used_count(&self) -> Result<u64> {
        let conn = self.conn.lock().unwrap();
        conn.query_row("SELECT count(*) FROM used", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(db_err)
    }

    /// Per pack with records: its bytes, and the bytes of the used copies of used blobs in it
    /// (a used blob's copy is the location it resolves to; other copies are unused).
    pub fn pack_usage(&self) -> Result<Vec<PackUsage>> {
        let conn = self.conn.lock().unwrap();
        let mut used: HashMap<i64, u64> = HashMap::new();
        {
            let mut st = conn
                .prepare(
                    "SELECT r.pack, sum(r.length) FROM used u
                     JOIN resolved r ON r.type = u.type AND r.id = u.id GROUP BY r.pack",
                )
                .map_err(db_err)?;
            let mut rows = st.query([]).map_err(db_err)?;
            while let Some(r) = rows.next().map_err(db_err)? {
                used.insert(r.get(0).map_err(db_err)?, r.get(1).map_err(db_err)?);
            }
        }
        let mut st = conn
            .prepare(
                "SELECT p.num, p.id, sum(e.length) FROM entries e JOIN packs p ON p.num = e.pack
                 GROUP BY e.pack ORDER BY p.id",
            )
            .map_err(db_err)?;
        let rows = st
            .query_map([], |r| {
                let num: i64 = r.get(0)?;
                Ok(PackUsage {
                    pack: id_of(r.get(1)?)?,
                    total_bytes: r.get(2)?,
                    used_bytes: used.get(&num).copied().unwrap_or(0),
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    /// The records of a pack that are the used copy of a used blob, in offset order.
    pub fn used_copies(&self, pack: &Id) -> Result<Vec<PackBlob>> {
        self.pack_records(
            pack,
            "SELECT e.type, e.id, e.offset, e.length, e.raw_length FROM entries e
             JOIN used u ON u.type = e.type AND u.id = e.id
             JOIN resolved r ON r.type = e.type AND r.id = e.id
             WHERE e.pack = ?1 AND r.pack = e.pack AND r.offset = e.offset
             ORDER BY e.offset",
        )
    }

    /// Whether a pack holds a used blob that is stored in no live (uncondemned) pack.
    pub fn holds_needed_blob(&self, pack: &Id) -> Result<bool> {
        let conn = self.conn.lock().unwrap();
        conn.prepare_cached(
            "SELECT 1 FROM entries e JOIN packs p ON p.num = e.pack
             JOIN used u ON u.type = e.type AND u.id = e.id
             WHERE p.id = ?1 AND NOT EXISTS (
                 SELECT 1 FROM resolved r JOIN packs q ON q.num = r.pack
                 WHERE r.type = e.type AND r.id = e.id AND q.condemned = 0)",
        )
        .and_then(|mut st| st.exists([pack.as_bytes().as_slice()]))
        .map_err(db_err)
    }

    /// Marks packs as condemned in this view: their blobs stop counting as live (where they
    /// resolve to stays as it is).
    pub fn condemn(&self, packs: &[Id]) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        let mut st = conn
            .prepare("UPDATE packs SET condemned = 1 WHERE id = ?1")
            .map_err(db_err)?;
        for p in packs {
            st.execute([p.as_bytes().as_slice()]).map_err(db_err)?;
        }
        Ok(())
    }

    /// Calls `f` with every pack that has records, in pack id order, with its records in
    /// offset order, except the packs in `skip`. One pack is in memory at a time.
    pub fn for_each_pack(
        &self,
        skip: &HashSet<Id>,
        mut f: impl FnMut(IndexPack) -> Result<()>,
    ) -> Result<()> {
        let ids: Vec<Id> = {
            let conn = self.conn.lock().unwrap();
            let mut st = conn
                .prepare(
                    "SELECT id FROM packs p WHERE EXISTS (SELECT 1 FROM entries e
                     WHERE e.pack = p.num) ORDER BY id",
                )
                .map_err(db_err)?;
            let rows = st.query_map([], |r| id_of(r.get(0)?)).map_err(db_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
        };
        for id in ids.into_iter().filter(|p| !skip.contains(p)) {
            let blobs = self.pack_records(
                &id,
                "SELECT e.type, e.id, e.offset, e.length, e.raw_length FROM entries e
                 WHERE e.pack = ?1 ORDER BY e.offset, e.rowid",
            )?;
            f(IndexPack { id, blobs })?;
        }
        Ok(())
    }

    fn pack_records(&self, pack: &Id, sql: &str) -> Result<Vec<PackBlob>> {
        let conn = self.conn.lock().unwrap();
        let num: Option<i64> = conn
            .prepare_cached("SELECT num FROM packs WHERE id = ?1")
            .and_then(|mut st| {
                st.query_row([pack.as_bytes().as_slice()], |r| r.get(0))
                    .optional()
            })
            .map_err(db_err)?;
        let Some(num) = num else {
            return Ok(Vec::new());
        };
        let mut st = conn.prepare_cached(sql).map_err(db_err)?;
        let rows = st
            .query_map([num], |r| {
                Ok(PackBlob {
                    blob_type: blob_type(r.get(0)?)?,
                    id: id_of(r.get(1)?)?,
                    offset: r.get(2)?,
                    length: r.get(3)?,
                    raw_length: r.get(4)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    fn lookup(&self, blob_type: BlobType, id: &Id) -> Result<Option<(BlobLocation, bool)>> {
        let conn = self.conn.lock().unwrap();
        conn.prepare_cached(
            "SELECT p.id, r.offset, r.length, r.raw_length, p.condemned FROM resolved r
             JOIN packs p ON p.num = r.pack WHERE r.type = ?1 AND r.id = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![blob_type.code(), id.as_bytes().as_slice()], |r| {
                Ok((
                    BlobLocation {
                        blob_type,
                        pack: id_of(r.get(0)?)?,
                        offset: r.get(1)?,
                        length: r.get(2)?,
                        raw_length: r.get(3)?,
                    },
                    r.get::<_, bool>(4)?,
                ))
            })
            .optional()
        })
        .map_err(db_err)
    }
}

fn insert_file(
    tx: &rusqlite::Transaction,
    file_no: u32,
    f: &IndexFile,
    pack_nums: &mut HashMap<Id, i64>,
    listed_in: &mut HashMap<i64, Vec<u32>>,
) -> rusqlite::Result<()> {
    let mut add_pack = tx.prepare_cached("INSERT INTO packs (id) VALUES (?1)")?;
    let mut add = tx.prepare_cached(
        "INSERT INTO entries (pack, file, type, id, offset, length, raw_length)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for p in &f.packs {
        let num = match pack_nums.get(&p.id) {
            Some(n) => *n,
            None => {
                add_pack.execute([p.id.as_bytes().as_slice()])?;
                let n = tx.last_insert_rowid();
                pack_nums.insert(p.id, n);
                n
            }
        };
        let files = listed_in.entry(num).or_default();
        if files.last() != Some(&file_no) {
            files.push(file_no);
        }
        for b in &p.blobs {
            add.execute(params![
                num,
                file_no,
                b.blob_type.code(),
                b.id.as_bytes().as_slice(),
                b.offset,
                b.length,
                b.raw_length
            ])?;
        }
    }
    Ok(())
}

impl BlobIndex for IndexDb {
    fn get(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        // The trait has no error path: a failing scratch database reads as "not found", which
        // every caller treats as an error (prune refuses).
        match self.lookup(blob_type, id) {
            Ok(l) => l.map(|(l, _)| l),
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        }
    }
    fn contains_live(&self, blob_type: BlobType, id: &Id) -> bool {
        matches!(self.lookup(blob_type, id), Ok(Some((_, false))))
    }
    fn len(&self) -> usize {
        let conn = self.conn.lock().unwrap();
        conn.query_row("SELECT count(*) FROM resolved", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .unwrap_or(0)
    }
}

/// Shares one database between an [`IndexedRepo`](super::IndexedRepo) and its owner.
impl BlobIndex for std::sync::Arc<IndexDb> {
    fn get(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        self.as_ref().get(blob_type, id)
    }
    fn contains_live(&self, blob_type: BlobType, id: &Id) -> bool {
        self.as_ref().contains_live(blob_type, id)
    }
    fn len(&self) -> usize {
        self.as_ref().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::repo::index::MasterIndex;
    use crate::repo::InitOptions;
    use proptest::prelude::*;

    fn repo(dir: &Path) -> Repository {
        let opts = InitOptions {
            kdf_memory_kib: 64,
            kdf_iterations: 1,
            ..Default::default()
        };
        Repository::init(
            std::sync::Arc::new(LocalBackend::new(dir.join("repo"))),
            b"pw",
            &opts,
        )
        .unwrap()
    }

    fn id(n: u8) -> Id {
        Id::from_slice(&[n; 32]).unwrap()
    }

    fn blob(t: BlobType, n: u8, offset: u32) -> PackBlob {
        PackBlob {
            blob_type: t,
            id: id(n),
            offset,
            length: 100 + n as u32,
            raw_length: 200,
        }
    }

    /// One index file as generated: packs (pack number, blobs), batches of pack numbers,
    /// and which earlier files it supersedes.
    type FileSpec = (Vec<(u8, Vec<(bool, u8)>)>, Vec<Vec<u8>>, Vec<usize>);

    fn file_spec() -> impl Strategy<Value = FileSpec> {
        (
            proptest::collection::vec(
                (
                    0u8..5,
                    proptest::collection::vec((any::<bool>(), 0u8..8), 0..6),
                ),
                0..4,
            ),
            proptest::collection::vec(proptest::collection::vec(0u8..6, 1..3), 0..2),
            proptest::collection::vec(0usize..4, 0..2),
        )
    }

    fn build(specs: &[FileSpec], repo: &Repository) -> Vec<(String, IndexFile)> {
        let mut saved: Vec<(String, IndexFile)> = Vec::new();
        for (packs, batches, sup) in specs {
            let f = IndexFile {
                supersedes: sup
                    .iter()
                    .filter_map(|i| saved.get(*i))
                    .map(|(n, _)| n.parse().unwrap())
                    .collect(),
                packs: packs
                    .iter()
                    .map(|(p, blobs)| IndexPack {
                        id: id(100 + p),
                        blobs: blobs
                            .iter()
                            .enumerate()
                            .map(|(i, (tree, b))| {
                                let t = if *tree {
                                    BlobType::Tree
                                } else {
                                    BlobType::Data
                                };
                                blob(t, *b, i as u32 * 1000)
                            })
                            .collect(),
                    })
                    .collect(),
                condemned: batches
                    .iter()
                    .map(|b| CondemnedBatch {
                        marked_at: 1,
                        determined: true,
                        blocking_locks: vec![],
                        packs: b.iter().map(|p| id(100 + p)).collect(),
                    })
                    .collect(),
            };
            let name = repo.save_index_file(&f).unwrap();
            saved.push((name, f));
        }
        saved
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// The database resolves every blob exactly as the in-memory master index built from
        /// the same files in force does.
        #[test]
        fn resolves_like_the_master_index(specs in proptest::collection::vec(file_spec(), 1..5)) {
            let dir = tempfile::tempdir().unwrap();
            let repo = repo(dir.path());
            let mut saved = build(&specs, &repo);
            saved.sort_by(|a, b| a.0.cmp(&b.0));
            let superseded: HashSet<Id> =
                saved.iter().flat_map(|(_, f)| f.supersedes.iter().copied()).collect();
            let in_force: Vec<&IndexFile> = saved
                .iter()
                .filter(|(n, _)| !superseded.contains(&n.parse().unwrap()))
                .map(|(_, f)| f)
                .collect();
            let master = MasterIndex::from_files(in_force.iter().copied());
            let db = IndexDb::create(Some(dir.path())).unwrap();
            let loaded = db.load(&repo).unwrap();
            prop_assert_eq!(loaded.names.len(), in_force.len());
            prop_assert_eq!(loaded.names.len() + loaded.superseded.len(), saved.len());
            let mut packs = master.packs().to_vec();
            packs.sort();
            prop_assert_eq!(db.packs().unwrap(), packs);
            prop_assert_eq!(BlobIndex::len(&db), master.len());
            for t in [BlobType::Data, BlobType::Tree] {
                for n in 0..8 {
                    prop_assert_eq!(db.get(t, &id(n)), master.get(t, &id(n)));
                    prop_assert_eq!(db.contains_live(t, &id(n)), master.contains_live(t, &id(n)));
                }
            }
            let batched: usize = loaded.batches.iter().map(|b| b.packs.len()).sum();
            let unique: HashSet<Id> =
                loaded.batches.iter().flat_map(|b| b.packs.iter().copied()).collect();
            prop_assert_eq!(batched, unique.len());
        }
    }

    #[test]
    fn usage_copies_and_rescue() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        // Pack 1: data 1 and 2; pack 2: data 2 (a duplicate) and tree 3.
        let f = IndexFile {
            packs: vec![
                IndexPack {
                    id: id(101),
                    blobs: vec![blob(BlobType::Data, 1, 0), blob(BlobType::Data, 2, 500)],
                },
                IndexPack {
                    id: id(102),
                    blobs: vec![blob(BlobType::Data, 2, 0), blob(BlobType::Tree, 3, 500)],
                },
            ],
            ..Default::default()
        };
        repo.save_index_file(&f).unwrap();
        let db = IndexDb::create(Some(dir.path())).unwrap();
        db.load(&repo).unwrap();
        assert_eq!(db.mark_used(BlobType::Data, &id(2)).unwrap(), Mark::New);
        assert_eq!(db.mark_used(BlobType::Data, &id(2)).unwrap(), Mark::Already);
        assert_eq!(db.mark_used(BlobType::Tree, &id(2)).unwrap(), Mark::Missing);
        assert_eq!(db.mark_used(BlobType::Tree, &id(3)).unwrap(), Mark::New);
        assert_eq!(db.used_count().unwrap(), 2);
        // Staged marks: duplicates and already used blobs are fine, a missing one is named.
        db.stage_used(BlobType::Data, &[id(2), id(2)]).unwrap();
        assert_eq!(db.mark_staged().unwrap(), None);
        db.stage_used(BlobType::Data, &[id(7), id(2)]).unwrap();
        assert_eq!(db.mark_staged().unwrap(), Some((BlobType::Data, id(7))));
        assert_eq!(db.used_count().unwrap(), 2);
        // Data 2 resolves to its first record (pack 1): pack 2's copy is unused.
        let usage = db.pack_usage().unwrap();
        assert_eq!(
            usage,
            vec![
                PackUsage {
                    pack: id(101),
                    total_bytes: 101 + 102,
                    used_bytes: 102
                },
                PackUsage {
                    pack: id(102),
                    total_bytes: 102 + 103,
                    used_bytes: 103
                },
            ]
        );
        assert_eq!(
            db.used_copies(&id(101)).unwrap(),
            vec![blob(BlobType::Data, 2, 500)]
        );
        // Condemning in the view does not move where blobs resolve: pack 1 now holds used
        // data 2 and no live copy is known.
        db.condemn(&[id(101)]).unwrap();
        assert!(!db.contains_live(BlobType::Data, &id(1)));
        assert!(!db.contains_live(BlobType::Data, &id(2)));
        assert!(db.holds_needed_blob(&id(101)).unwrap());
        // Once a stored batch condemns pack 1, a reload resolves data 2 to its live copy in
        // pack 2, so pack 1 is no longer needed. The used set survives the reload.
        repo.save_index_file(&IndexFile {
            condemned: vec![CondemnedBatch {
                marked_at: 1,
                determined: true,
                blocking_locks: vec![],
                packs: vec![id(101)],
            }],
            ..Default::default()
        })
        .unwrap();
        let loaded = db.load(&repo).unwrap();
        assert_eq!(loaded.batches.len(), 1);
        assert_eq!(db.mark_used(BlobType::Data, &id(2)).unwrap(), Mark::Already);
        assert!(db.contains_live(BlobType::Data, &id(2)));
        assert!(!db.holds_needed_blob(&id(101)).unwrap());
        let mut seen = Vec::new();
        db.for_each_pack(&[id(102)].into_iter().collect(), |p| {
            seen.push(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![f.packs[0].clone()]);
    }
}
