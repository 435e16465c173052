//! `prune`: free the space of data no snapshot uses, safely while backups run.
//!
//! The protocol (documented in `repo-format/`, "Concurrency"): prune never deletes a pack in the
//! run that first finds it unused. It *condemns* it: a consolidated index file records the pack
//! in a condemned batch, and then the locks live at that moment as the batch's blocking set.
//! Backups do not deduplicate against blobs found only in condemned packs, so no backup that
//! starts after the mark can come to depend on them. A later check (in this run if no other lock
//! was live, else in a later run) deletes a batch's packs once all its blocking locks are gone,
//! after re-reading the snapshots written meanwhile and rescuing any pack they still need. The
//! index without those packs is stored before the packs are deleted, so a crash at any point
//! leaves at worst unreferenced packs.

use crate::backend::{BackendError, FileKind};
use crate::crypto::{open_blob, CryptoError};
use crate::error::{Classified, ErrorClass};
use crate::id::{BlobType, Id};
use crate::repo::index::{CondemnedBatch, IndexFile, IndexPack};
use crate::repo::index_db::{IndexDb, Mark};
use crate::repo::lock::{live_locks, Lock};
use crate::repo::session::{Locked, PruneWork, Work};
use crate::repo::tree::Node;
use crate::repo::writer::BlobWriter;
use crate::repo::{IndexedRepo, RepoError, Repository, Result};
use crate::walk::{walk, Step, Visit};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// How much to do.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Repack partly used packs until unused bytes are at most this share of used bytes (%).
    pub max_unused_percent: f64,
    /// Read at most this many bytes of packs to repack.
    pub max_repack_bytes: Option<u64>,
    /// Where the temporary index database goes (the system's temporary folder if `None`).
    pub work_dir: Option<PathBuf>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused_percent: 5.0,
            max_repack_bytes: None,
            work_dir: None,
        }
    }
}

/// What prune found and did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    /// Snapshots whose trees were walked.
    pub snapshots: usize,
    /// Packs in the index.
    pub packs: usize,
    /// Bytes of those packs.
    pub pack_bytes: u64,
    /// Blobs some snapshot uses.
    pub used_blobs: usize,
    /// Bytes of the used blobs in packs.
    pub used_bytes: u64,
    /// Bytes of packs that no snapshot uses.
    pub unused_bytes: u64,
    /// Packs newly condemned in this run: fully unused, not in any index, or repacked.
    pub condemned_packs: usize,
    /// Bytes of the packs condemned in this run.
    pub condemned_bytes: u64,
    /// Partly used packs repacked (their used blobs copied to new packs).
    pub repacked_packs: usize,
    /// Bytes of the repacked packs.
    pub repacked_bytes: u64,
    /// Blobs copied out of repacked packs.
    pub blobs_copied: u64,
    /// Condemned packs deleted in this run.
    pub deleted_packs: usize,
    /// Bytes of the packs deleted in this run.
    pub deleted_bytes: u64,
    /// Condemned packs waiting for running operations to finish.
    pub waiting_packs: usize,
    /// Condemned packs a new snapshot turned out to need, kept.
    pub rescued_packs: usize,
    /// Index files in force when prune started.
    pub index_files_before: usize,
    /// Whether this was a plan only: nothing written or deleted.
    pub dry_run: bool,
    /// Remarks for the user (limits reached, packs left for a later run).
    pub notes: Vec<String>,
}

/// Why prune refused to delete anything: the picture of what is used would be incomplete, and
/// deleting on it could lose data. Each names the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum PruneRefusal {
    /// The index could not be read (damaged, or the store failed while it was read).
    #[error("the index is unreadable: {source}")]
    IndexUnreadable {
        /// Why.
        #[source]
        source: Box<RepoError>,
    },
    /// A snapshot could not be read.
    #[error("snapshot {} is unreadable: {source}", snapshot.short())]
    SnapshotUnreadable {
        /// The snapshot.
        snapshot: Id,
        /// Why.
        #[source]
        source: Box<RepoError>,
    },
    /// The index lists a pack that the store does not have.
    #[error("pack {} is listed in the index but missing", pack.short())]
    PackMissing {
        /// The pack.
        pack: Id,
    },
    /// A snapshot refers (through its trees) to a tree that no index file lists.
    #[error("tree {} is missing from the index", tree.short())]
    TreeNotIndexed {
        /// The tree.
        tree: Id,
    },
    /// A tree a snapshot refers to could not be read.
    #[error("tree {} is unreadable: {source}", tree.short())]
    TreeUnreadable {
        /// The tree.
        tree: Id,
        /// Why.
        #[source]
        source: Box<RepoError>,
    },
    /// A snapshot refers (through its trees) to a data blob that no index file lists.
    #[error("data blob {} is missing from the index", blob.short())]
    BlobNotIndexed {
        /// The blob.
        blob: Id,
    },
    /// A pack to repack is shorter than the index says.
    #[error("pack {} is shorter than its index says", pack.short())]
    PackTruncated {
        /// The pack.
        pack: Id,
    },
    /// A blob to copy out of a pack being repacked does not open.
    #[error("pack {}: {source}", pack.short())]
    PackDamaged {
        /// The pack.
        pack: Id,
        /// Why the blob did not open.
        #[source]
        source: CryptoError,
    },
}

impl Classified for PruneRefusal {
    fn class(&self) -> ErrorClass {
        use PruneRefusal as R;
        match self {
            // A store that failed while reading stays transient; anything else is damage.
            R::IndexUnreadable { source }
            | R::SnapshotUnreadable { source, .. }
            | R::TreeUnreadable { source, .. } => match source.class() {
                ErrorClass::Transient => ErrorClass::Transient,
                _ => ErrorClass::Corruption,
            },
            R::PackMissing { .. }
            | R::TreeNotIndexed { .. }
            | R::BlobNotIndexed { .. }
            | R::PackTruncated { .. }
            | R::PackDamaged { .. } => ErrorClass::Corruption,
        }
    }

    fn kind(&self) -> &'static str {
        use PruneRefusal as R;
        match self {
            R::IndexUnreadable { .. } => "prune.index_unreadable",
            R::SnapshotUnreadable { .. } => "prune.snapshot_unreadable",
            R::PackMissing { .. } => "prune.pack_missing",
            R::TreeNotIndexed { .. } => "prune.tree_not_indexed",
            R::TreeUnreadable { .. } => "prune.tree_unreadable",
            R::BlobNotIndexed { .. } => "prune.blob_not_indexed",
            R::PackTruncated { .. } => "prune.pack_truncated",
            R::PackDamaged { .. } => "prune.pack_damaged",
        }
    }
}

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Prune found the repository inconsistent and deleted nothing.
    #[error("refusing to prune: {reason}")]
    Refused {
        /// What is inconsistent.
        #[source]
        reason: PruneRefusal,
    },
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl From<PruneRefusal> for PruneError {
    fn from(reason: PruneRefusal) -> Self {
        PruneError::Refused { reason }
    }
}

impl From<BackendError> for PruneError {
    fn from(e: BackendError) -> Self {
        PruneError::Repo(e.into())
    }
}

impl Classified for PruneError {
    fn class(&self) -> ErrorClass {
        match self {
            PruneError::Refused { reason } => reason.class(),
            PruneError::Repo(e) => e.class(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            PruneError::Refused { reason } => reason.kind(),
            PruneError::Repo(e) => e.kind(),
        }
    }
}

/// Marks every blob reachable from the given snapshots' trees as used. Any unreadable tree or
/// blob missing from the index is an error: deleting with an incomplete picture could lose
/// data. Trees already marked are not read again.
fn mark_used(
    db: &IndexDb,
    idx: &IndexedRepo,
    trees: impl IntoIterator<Item = Id>,
) -> Result<(), PruneError> {
    struct Marker<'a>(&'a IndexDb);
    impl Visit for Marker<'_> {
        type Error = PruneError;
        fn tree(&mut self, t: &Id, _: &[u8]) -> Result<Step, PruneError> {
            match self.0.mark_used(BlobType::Tree, t)? {
                Mark::Already => Ok(Step::Skip),
                Mark::New => Ok(Step::Enter),
                Mark::Missing => Err(PruneRefusal::TreeNotIndexed { tree: *t }.into()),
            }
        }
        fn unreadable(&mut self, t: &Id, _: &[u8], e: RepoError) -> Result<(), PruneError> {
            Err(PruneRefusal::TreeUnreadable {
                tree: *t,
                source: Box::new(e),
            }
            .into())
        }
        fn node(&mut self, _: &[u8], n: &Node) -> Result<(), PruneError> {
            Ok(self.0.stage_used(BlobType::Data, &n.content)?)
        }
    }
    for t in trees {
        walk(idx, &t, b"", &mut Marker(db))?;
    }
    if let Some((_, id)) = db.mark_staged()? {
        return Err(PruneRefusal::BlobNotIndexed { blob: id }.into());
    }
    Ok(())
}

/// Reads the snapshots not in `seen`; returns their root trees. Snapshots forgotten meanwhile
/// are skipped.
fn new_snapshot_trees(
    repo: &Repository,
    seen: &mut HashSet<String>,
) -> Result<Vec<Id>, PruneError> {
    let mut out = Vec::new();
    for f in repo.backend().list(FileKind::Snapshot)? {
        if seen.contains(&f.name) {
            continue;
        }
        let Ok(id) = f.name.parse::<Id>() else {
            continue;
        };
        match repo.read_snapshot(&id) {
            Ok(s) => out.push(s.tree),
            Err(RepoError::Backend(BackendError::NotFound { .. })) => continue,
            Err(e) => {
                return Err(PruneRefusal::SnapshotUnreadable {
                    snapshot: id,
                    source: Box::new(e),
                }
                .into())
            }
        }
        seen.insert(f.name);
    }
    Ok(out)
}

/// Blobs per consolidated index file, far below the readers' size limit.
const BLOBS_PER_INDEX_FILE: usize = 500_000;

/// Writes a consolidated index from packs given one at a time: files of at most
/// [`BLOBS_PER_INDEX_FILE`] blobs, a pack never split. Only the last file, written by
/// [`ConsolidatedIndex::finish`], carries the superseded list and the condemned batches, so
/// until it is stored the files it replaces stay in force (a crash in between leaves only
/// duplicate entries). Memory: one file's worth of records.
pub(crate) struct ConsolidatedIndex<'a> {
    repo: &'a Repository,
    packs: Vec<IndexPack>,
    blobs: usize,
    written: Vec<String>,
}

impl<'a> ConsolidatedIndex<'a> {
    pub(crate) fn new(repo: &'a Repository) -> Self {
        ConsolidatedIndex {
            repo,
            packs: Vec::new(),
            blobs: 0,
            written: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, pack: IndexPack) -> Result<()> {
        if self.blobs > 0 && self.blobs + pack.blobs.len() > BLOBS_PER_INDEX_FILE {
            let packs = std::mem::take(&mut self.packs);
            self.written.push(self.repo.save_index_file(&IndexFile {
                packs,
                ..Default::default()
            })?);
            self.blobs = 0;
        }
        self.blobs += pack.blobs.len();
        self.packs.push(pack);
        Ok(())
    }

    /// Stores the last file; returns the names of all files written.
    pub(crate) fn finish(
        mut self,
        batches: &[CondemnedBatch],
        supersedes: Vec<Id>,
    ) -> Result<Vec<String>> {
        self.written.push(self.repo.save_index_file(&IndexFile {
            supersedes,
            packs: self.packs,
            condemned: batches.to_vec(),
        })?);
        Ok(self.written)
    }
}

/// Writes the packs of the view, except `skip`, as a consolidated index.
fn write_consolidated(
    repo: &Repository,
    db: &IndexDb,
    skip: &HashSet<Id>,
    batches: &[CondemnedBatch],
    supersedes: Vec<Id>,
) -> Result<Vec<String>> {
    let mut out = ConsolidatedIndex::new(repo);
    db.for_each_pack(skip, |p| out.add(p))?;
    out.finish(batches, supersedes)
}

fn ids(names: &[String]) -> Vec<Id> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

/// What a prune will do, computed from a verified picture of the repository before anything
/// is written: which packs it condemns (unused, in no index, or to repack) and the totals.
/// `prune --plan` prints [`PrunePlan::totals`]; a plan made under the prune lock can then be
/// carried out with [`PrunePlan::execute`], in the same session.
pub struct PrunePlan<'s, W: Work> {
    session: &'s Locked<W>,
    db: Arc<IndexDb>,
    seen_snapshots: HashSet<String>,
    batches: Vec<CondemnedBatch>,
    /// The index files a consolidated index replaces.
    replaced: Vec<String>,
    /// Every stored pack with its size.
    stored: HashMap<Id, u64>,
    condemn: Vec<Id>,
    repack: Vec<Id>,
    totals: PruneReport,
}

impl<W: Work> PrunePlan<'_, W> {
    /// The figures of the plan: what is used, what will be condemned, repacked and deleted
    /// (`dry_run` is true: nothing has been done yet).
    pub fn totals(&self) -> &PruneReport {
        &self.totals
    }
}

/// Prunes: [`plan`], then [`PrunePlan::execute`].
pub fn run(session: &Locked<PruneWork>, opts: &PruneOptions) -> Result<PruneReport, PruneError> {
    plan(session, opts)?.execute()
}

/// Computes what a prune would do; writes nothing. Any session will do for a plan that is only
/// shown; only one made under the prune lock can be executed.
pub fn plan<'s, W: Work>(
    session: &'s Locked<W>,
    opts: &PruneOptions,
) -> Result<PrunePlan<'s, W>, PruneError> {
    let repo = session.repo();
    let mut report = PruneReport {
        dry_run: true,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    // The whole index and the used set live in a temporary database, not in memory.
    let db = Arc::new(IndexDb::create(opts.work_dir.as_deref())?);
    let idx = IndexedRepo::with_index(repo.clone(), Box::new(db.clone()));

    // 1. The current state, verified: nothing is deleted on a partial picture. Snapshots are
    // listed before the index is read: a snapshot is stored after the index files listing its
    // blobs, so every snapshot listed finds its blobs in the index read after.
    let mut seen_snapshots = HashSet::new();
    let trees = new_snapshot_trees(repo, &mut seen_snapshots)?;
    let mut loaded = db.load(repo).map_err(|e| PruneRefusal::IndexUnreadable {
        source: Box::new(e),
    })?;
    tracing::info!("prune: index loaded in {:.1?}", started.elapsed());
    let batches = std::mem::take(&mut loaded.batches);
    report.index_files_before = loaded.names.len();
    // The files a consolidated index replaces: those read, and superseded ones still present.
    let replaced = loaded.present_names();
    let stored: HashMap<Id, u64> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|f| f.name.parse::<Id>().ok().map(|id| (id, f.size)))
        .collect();
    for p in db.packs()? {
        if !stored.contains_key(&p) {
            return Err(PruneRefusal::PackMissing { pack: p }.into());
        }
    }
    report.snapshots = trees.len();
    mark_used(&db, &idx, trees)?;
    report.used_blobs = db.used_count()? as usize;
    tracing::info!("prune: used blobs marked at {:.1?}", started.elapsed());

    // 2. Classify packs by their used and unused bytes. A blob counts as used only at the
    // location the index resolves it to; other copies are unused duplicates.
    let condemned_before: HashSet<Id> = batches
        .iter()
        .flat_map(|b| b.packs.iter().copied())
        .collect();
    let usage = db.pack_usage()?;
    tracing::info!("prune: packs classified at {:.1?}", started.elapsed());
    report.packs = stored.len();
    report.pack_bytes = stored.values().sum();
    report.used_bytes = usage.iter().map(|u| u.used_bytes).sum();
    report.unused_bytes = usage.iter().map(|u| u.total_bytes - u.used_bytes).sum();

    let mut condemn: Vec<Id> = Vec::new();
    let mut partly: Vec<(Id, u64, u64)> = Vec::new();
    let mut indexed: HashSet<Id> = HashSet::with_capacity(usage.len());
    for u in &usage {
        indexed.insert(u.pack);
        if condemned_before.contains(&u.pack) {
            continue;
        }
        let unused = u.total_bytes - u.used_bytes;
        if u.used_bytes == 0 {
            condemn.push(u.pack);
        } else if unused > 0 {
            partly.push((u.pack, u.used_bytes, unused));
        }
    }
    // Packs no index lists: left by interrupted backups (or being written right now; the lock
    // protocol keeps those until their backup is done).
    let mut unindexed: Vec<Id> = stored
        .keys()
        .filter(|p| !indexed.contains(p) && !condemned_before.contains(p))
        .copied()
        .collect();
    unindexed.sort();
    drop(indexed);
    if !unindexed.is_empty() {
        report
            .notes
            .push(format!("{} packs are in no index", unindexed.len()));
    }
    condemn.extend(unindexed.iter().copied());

    // Repack the emptiest partly used packs until unused space is within the limit.
    partly.sort_by(|a, b| {
        (b.2 as f64 / (b.1 + b.2) as f64)
            .total_cmp(&(a.2 as f64 / (a.1 + a.2) as f64))
            .then(a.0.cmp(&b.0))
    });
    let limit = (report.used_bytes as f64 * opts.max_unused_percent / 100.0) as u64;
    let mut unused_left: u64 = partly.iter().map(|p| p.2).sum();
    let mut repack: Vec<Id> = Vec::new();
    let mut repack_read = 0u64;
    for (pid, u, n) in &partly {
        if unused_left <= limit {
            break;
        }
        let size = stored.get(pid).copied().unwrap_or(u + n);
        if opts
            .max_repack_bytes
            .is_some_and(|m| repack_read + size > m)
        {
            report.notes.push(format!(
                "stopped repacking at the limit of {} read",
                crate::util::human_bytes(opts.max_repack_bytes.unwrap_or(0))
            ));
            break;
        }
        repack.push(*pid);
        repack_read += size;
        unused_left -= n;
    }
    report.repacked_packs = repack.len();
    report.repacked_bytes = repack_read;
    report.condemned_packs = condemn.len() + repack.len();
    report.condemned_bytes = condemn
        .iter()
        .chain(repack.iter())
        .map(|p| stored.get(p).copied().unwrap_or(0))
        .sum();
    report.waiting_packs = condemned_before.len();
    Ok(PrunePlan {
        session,
        db,
        seen_snapshots,
        batches,
        replaced,
        stored,
        condemn,
        repack,
        totals: report,
    })
}

impl PrunePlan<'_, PruneWork> {
    /// Carries the plan out: copies the used blobs of the packs to repack, condemns, and deletes
    /// the condemned packs no live lock may still need.
    pub fn execute(self) -> Result<PruneReport, PruneError> {
        let PrunePlan {
            session,
            db,
            mut seen_snapshots,
            mut batches,
            replaced,
            stored,
            mut condemn,
            repack,
            totals: mut report,
        } = self;
        report.dry_run = false;
        let repo = session.repo();
        let lock = session.held_lock();
        let own_lock = lock.map(Lock::id);
        let idx = IndexedRepo::with_index(repo.clone(), Box::new(db.clone()));

        // 3. Copy the used blobs of packs to repack; the copies are indexed before the originals
        // are condemned. The view condemns the packs to repack, so that a used blob is copied
        // unless a live copy exists elsewhere.
        if !repack.is_empty() {
            let used_copies: Vec<Vec<crate::pack::PackBlob>> = repack
                .iter()
                .map(|p| db.used_copies(p))
                .collect::<Result<_>>()?;
            db.condemn(&repack)?;
            let copy_view = Arc::new(IndexedRepo::with_index(repo.clone(), Box::new(db.clone())));
            let writer = BlobWriter::new(copy_view, repo.backend().preferred_uploaders());
            for (pid, blobs) in repack.iter().zip(used_copies) {
                let bytes = repo.backend().read(FileKind::Pack, &pid.to_hex())?;
                for b in blobs {
                    let sealed = bytes
                        .get(b.offset as usize..b.end() as usize)
                        .ok_or(PruneRefusal::PackTruncated { pack: *pid })?;
                    let data = open_blob(
                        repo.keys(),
                        b.blob_type,
                        &b.id,
                        sealed,
                        b.raw_length as usize,
                    )
                    .map_err(|source| PruneRefusal::PackDamaged { pack: *pid, source })?;
                    if writer.add_with_id(b.blob_type, b.id, &data)? {
                        report.blobs_copied += 1;
                    }
                }
            }
            writer.finish()?;
            condemn.extend(repack.iter().copied());
        }

        // 4. Mark: store the new batch (undetermined), then record the locks live after that.
        let now = chrono::Utc::now().timestamp();
        if !condemn.is_empty() {
            batches.push(CondemnedBatch {
                marked_at: now,
                determined: false,
                blocking_locks: vec![],
                packs: condemn.clone(),
            });
        }
        let needs_mark = !condemn.is_empty() || batches.iter().any(|b| !b.determined);
        if needs_mark {
            let none = HashSet::new();
            let m0 = write_consolidated(repo, &db, &none, &batches, ids(&replaced))?;
            let live: Vec<Id> = live_locks(repo)?
                .into_iter()
                .map(|(_, l)| l.lock_id)
                .filter(|id| Some(*id) != own_lock)
                .collect();
            for b in batches.iter_mut().filter(|b| !b.determined) {
                b.determined = true;
                b.blocking_locks = live.clone();
            }
            let mut sup = ids(&replaced);
            sup.extend(ids(&m0));
            write_consolidated(repo, &db, &none, &batches, sup)?;
            if let Some(l) = lock {
                l.ensure_held()?;
            }
            let old: Vec<String> = replaced.iter().chain(m0.iter()).cloned().collect();
            repo.backend().remove_many(FileKind::Index, &old)?;
        }

        // 5. Delete the batches no live lock blocks any more.
        let live: HashSet<Id> = live_locks(repo)?
            .into_iter()
            .map(|(_, l)| l.lock_id)
            .filter(|id| Some(*id) != own_lock)
            .collect();
        let eligible: HashSet<Id> = batches
            .iter()
            .filter(|b| b.determined && b.blocking_locks.iter().all(|l| !live.contains(l)))
            .flat_map(|b| b.packs.iter().copied())
            .collect();
        let total_condemned: usize = batches.iter().map(|b| b.packs.len()).sum();
        report.waiting_packs = total_condemned - eligible.len();
        if eligible.is_empty() {
            if report.waiting_packs > 0 {
                report.notes.push(format!(
                    "{} condemned packs wait for {} running operations; a later prune deletes them",
                    report.waiting_packs,
                    live.len()
                ));
            }
            return Ok(report);
        }
        // Everything written since step 1: new snapshots (listed first, as above), then the index
        // files of concurrent backups. The used set carries over; only new trees are walked.
        let new_trees = new_snapshot_trees(repo, &mut seen_snapshots)?;
        let loaded2 = db.load(repo)?;
        let replaced2 = loaded2.present_names();
        mark_used(&db, &idx, new_trees)?;
        let mut delete: Vec<Id> = Vec::new();
        let mut eligible: Vec<Id> = eligible.into_iter().collect();
        eligible.sort();
        for pid in eligible.iter().copied() {
            if db.holds_needed_blob(&pid)? {
                report.rescued_packs += 1;
            } else {
                delete.push(pid);
            }
        }
        let gone: HashSet<Id> = eligible.iter().copied().collect();
        let mut batches2 = loaded2.batches;
        for b in batches2.iter_mut() {
            b.packs.retain(|p| !gone.contains(p));
        }
        batches2.retain(|b| !b.packs.is_empty());
        let delete_set: HashSet<Id> = delete.iter().copied().collect();
        // The index without the packs is stored before the packs go.
        // Deleting is only safe while our lock is certainly live: had it looked stale, another
        // prune or an index repair could have run meanwhile.
        if let Some(l) = lock {
            l.ensure_held()?;
        }
        write_consolidated(repo, &db, &delete_set, &batches2, ids(&replaced2))?;
        repo.backend().remove_many(FileKind::Index, &replaced2)?;
        report.deleted_bytes = delete
            .iter()
            .map(|p| stored.get(p).copied().unwrap_or(0))
            .sum();
        let names: Vec<String> = delete.iter().map(Id::to_hex).collect();
        repo.backend().remove_many(FileKind::Pack, &names)?;
        report.deleted_packs = delete.len();
        report.waiting_packs = batches2.iter().map(|b| b.packs.len()).sum();
        Ok(report)
    }
}
