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
use crate::crypto::open_blob;
use crate::id::{BlobType, Id};
use crate::repo::index::{CondemnedBatch, IndexFile, IndexPack, MasterIndex};
use crate::repo::lock::{live_locks, Lock, LockKind};
use crate::repo::writer::BlobWriter;
use crate::repo::{IndexedRepo, RepoError, Repository, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// How much to do.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Repack partly used packs until unused bytes are at most this share of used bytes (%).
    pub max_unused_percent: f64,
    /// Read at most this many bytes of packs to repack.
    pub max_repack_bytes: Option<u64>,
    /// Only compute and report the plan.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused_percent: 5.0,
            max_repack_bytes: None,
            dry_run: false,
        }
    }
}

/// What prune found and did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    pub snapshots: usize,
    pub packs: usize,
    pub pack_bytes: u64,
    pub used_blobs: usize,
    pub used_bytes: u64,
    pub unused_bytes: u64,
    /// Packs newly condemned in this run: fully unused, not in any index, or repacked.
    pub condemned_packs: usize,
    pub condemned_bytes: u64,
    pub repacked_packs: usize,
    pub repacked_bytes: u64,
    pub blobs_copied: u64,
    /// Condemned packs deleted in this run.
    pub deleted_packs: usize,
    pub deleted_bytes: u64,
    /// Condemned packs waiting for running operations to finish.
    pub waiting_packs: usize,
    /// Condemned packs a new snapshot turned out to need, kept.
    pub rescued_packs: usize,
    pub index_files_before: usize,
    pub dry_run: bool,
    pub notes: Vec<String>,
}

fn refuse(msg: impl std::fmt::Display) -> RepoError {
    RepoError::Invalid(format!("refusing to prune: {msg}"))
}

/// Every blob reachable from the given snapshots' trees. Any unreadable tree or blob missing
/// from the index is an error: deleting with an incomplete picture could lose data.
fn used_blobs(
    idx: &IndexedRepo,
    trees: impl IntoIterator<Item = Id>,
    used: &mut HashSet<(BlobType, Id)>,
) -> Result<()> {
    let mut stack: Vec<Id> = trees.into_iter().collect();
    while let Some(t) = stack.pop() {
        if !used.insert((BlobType::Tree, t)) {
            continue;
        }
        let tree = idx.read_tree(&t).map_err(|e| {
            refuse(format!(
                "tree {} is unreadable ({e}); run `stowage check`",
                t.short()
            ))
        })?;
        for n in tree.nodes {
            for id in n.content {
                if !idx.index().contains(BlobType::Data, &id) {
                    return Err(refuse(format!(
                        "data blob {} is missing from the index; run `stowage check` and `stowage repair`",
                        id.short()
                    )));
                }
                used.insert((BlobType::Data, id));
            }
            if let Some(s) = n.subtree {
                stack.push(s);
            }
        }
    }
    Ok(())
}

/// Reads the snapshots not in `seen`; returns their root trees. Snapshots forgotten meanwhile
/// are skipped.
fn new_snapshot_trees(repo: &Repository, seen: &mut HashSet<String>) -> Result<Vec<Id>> {
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
                return Err(refuse(format!(
                    "snapshot {} is unreadable: {e}",
                    id.short()
                )))
            }
        }
        seen.insert(f.name);
    }
    Ok(out)
}

/// Merges index files into one list of packs (each pack once) and one list of batches (each
/// pack in at most one batch).
fn merge(
    files: &[IndexFile],
) -> (
    BTreeMap<Id, Vec<crate::pack::PackBlob>>,
    Vec<CondemnedBatch>,
) {
    let mut packs: BTreeMap<Id, Vec<crate::pack::PackBlob>> = BTreeMap::new();
    for f in files {
        for p in &f.packs {
            packs.entry(p.id).or_insert_with(|| p.blobs.clone());
        }
    }
    let mut batches = Vec::new();
    let mut in_batch = HashSet::new();
    for f in files {
        for c in &f.condemned {
            let packs: Vec<Id> = c
                .packs
                .iter()
                .copied()
                .filter(|p| in_batch.insert(*p))
                .collect();
            if !packs.is_empty() {
                batches.push(CondemnedBatch { packs, ..c.clone() });
            }
        }
    }
    (packs, batches)
}

/// Blobs per consolidated index file, far below the readers' size limit.
const BLOBS_PER_INDEX_FILE: usize = 500_000;

/// Writes a consolidated index: the packs split over files of at most
/// [`BLOBS_PER_INDEX_FILE`] blobs. Only the last file carries the superseded list and the
/// condemned batches, so until it is stored the files it replaces stay in force (a crash in
/// between leaves only duplicate entries). Returns the names written.
pub(crate) fn write_consolidated(
    repo: &Repository,
    packs: &BTreeMap<Id, Vec<crate::pack::PackBlob>>,
    batches: &[CondemnedBatch],
    supersedes: Vec<Id>,
) -> Result<Vec<String>> {
    let mut groups: Vec<Vec<IndexPack>> = vec![Vec::new()];
    let mut count = 0;
    for (id, blobs) in packs {
        if count > 0 && count + blobs.len() > BLOBS_PER_INDEX_FILE {
            groups.push(Vec::new());
            count = 0;
        }
        count += blobs.len();
        groups
            .last_mut()
            .expect("one group at least")
            .push(IndexPack {
                id: *id,
                blobs: blobs.clone(),
            });
    }
    let last = groups.pop().expect("one group at least");
    let mut names = Vec::new();
    for g in groups {
        names.push(repo.save_index_file(&IndexFile {
            packs: g,
            ..Default::default()
        })?);
    }
    names.push(repo.save_index_file(&IndexFile {
        supersedes,
        packs: last,
        condemned: batches.to_vec(),
    })?);
    Ok(names)
}

fn ids(names: &[String]) -> Vec<Id> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

/// Runs prune.
pub fn run(repo: &Arc<Repository>, opts: &PruneOptions) -> Result<PruneReport> {
    let lock = if opts.dry_run {
        None
    } else {
        Some(Lock::acquire(repo, LockKind::Prune)?)
    };
    let own_lock = lock.as_ref().map(Lock::id);
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };

    // 1. The current state, verified: nothing is deleted on a partial picture. Snapshots are
    // listed before the index is read: a snapshot is stored after the index files listing its
    // blobs, so every snapshot listed finds its blobs in the index read after.
    let mut seen_snapshots = HashSet::new();
    let trees = new_snapshot_trees(repo, &mut seen_snapshots)?;
    let crate::repo::IndexSet {
        names: index_names,
        files: index_files,
        superseded: lingering,
    } = repo.read_all_index_files().map_err(|e| {
        refuse(format!(
            "the index is unreadable ({e}); run `stowage repair index`"
        ))
    })?;
    report.index_files_before = index_names.len();
    // The files a consolidated index replaces: those read, and superseded ones still present.
    let replaced: Vec<String> = index_names
        .iter()
        .chain(lingering.iter())
        .cloned()
        .collect();
    let index = MasterIndex::from_files(&index_files);
    let stored: HashMap<Id, u64> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|f| f.name.parse::<Id>().ok().map(|id| (id, f.size)))
        .collect();
    for p in index.packs() {
        if !stored.contains_key(p) {
            return Err(refuse(format!(
                "pack {} is listed in the index but missing; run `stowage repair index` and `stowage repair snapshots`",
                p.short()
            )));
        }
    }
    let idx = Arc::new(IndexedRepo::from_parts(repo.clone(), index));
    report.snapshots = trees.len();
    let mut used = HashSet::new();
    used_blobs(&idx, trees, &mut used)?;
    report.used_blobs = used.len();

    // 2. Classify packs by their used and unused bytes. A blob counts as used only at the
    // location the index resolves it to; other copies are unused duplicates.
    let (packs, mut batches) = merge(&index_files);
    let condemned_before: HashSet<Id> = batches
        .iter()
        .flat_map(|b| b.packs.iter().copied())
        .collect();
    // The copy of a used blob that the index resolves to; other copies are unused duplicates.
    let is_used_copy = |pid: &Id, b: &crate::pack::PackBlob| {
        used.contains(&(b.blob_type, b.id))
            && idx
                .index()
                .get(b.blob_type, &b.id)
                .is_some_and(|l| l.pack == *pid && l.offset == b.offset)
    };
    let mut pack_used: HashMap<Id, u64> = HashMap::new();
    let mut pack_unused: HashMap<Id, u64> = HashMap::new();
    for (pid, blobs) in &packs {
        for b in blobs {
            let target = if is_used_copy(pid, b) {
                &mut pack_used
            } else {
                &mut pack_unused
            };
            *target.entry(*pid).or_default() += b.length as u64;
        }
    }
    report.packs = stored.len();
    report.pack_bytes = stored.values().sum();
    report.used_bytes = pack_used.values().sum();
    report.unused_bytes = pack_unused.values().sum();

    let mut condemn: Vec<Id> = Vec::new();
    let mut partly: Vec<(Id, u64, u64)> = Vec::new();
    for pid in packs.keys() {
        if condemned_before.contains(pid) {
            continue;
        }
        let u = pack_used.get(pid).copied().unwrap_or(0);
        let n = pack_unused.get(pid).copied().unwrap_or(0);
        if u == 0 {
            condemn.push(*pid);
        } else if n > 0 {
            partly.push((*pid, u, n));
        }
    }
    // Packs no index lists: left by interrupted backups (or being written right now; the lock
    // protocol keeps those until their backup is done).
    let unindexed: Vec<Id> = stored
        .keys()
        .filter(|p| !packs.contains_key(p) && !condemned_before.contains(p))
        .copied()
        .collect();
    if !unindexed.is_empty() {
        report
            .notes
            .push(format!("{} packs are in no index", unindexed.len()));
    }
    condemn.extend(unindexed.iter().copied());

    // Repack the emptiest partly used packs until unused space is within the limit.
    partly.sort_by(|a, b| {
        (b.2 as f64 / (a.1 + a.2) as f64)
            .total_cmp(&(a.2 as f64 / (b.1 + b.2) as f64))
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
            report
                .notes
                .push("stopped repacking at --max-repack-size".into());
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
    if opts.dry_run {
        return Ok(report);
    }

    // 3. Copy the used blobs of packs to repack; the copies are indexed before the originals
    // are condemned.
    if !repack.is_empty() {
        let mut index = MasterIndex::from_files(&index_files);
        index.condemn(repack.iter().copied());
        let copy_view = Arc::new(IndexedRepo::from_parts(repo.clone(), index));
        let writer = BlobWriter::new(copy_view.clone(), repo.backend().preferred_uploaders());
        for pid in &repack {
            let bytes = repo.backend().read(FileKind::Pack, &pid.to_hex())?;
            for b in &packs[pid] {
                if !is_used_copy(pid, b) {
                    continue;
                }
                let sealed = bytes
                    .get(b.offset as usize..b.end() as usize)
                    .ok_or_else(|| {
                        refuse(format!(
                            "pack {} is shorter than its index says",
                            pid.short()
                        ))
                    })?;
                let data = open_blob(
                    repo.keys(),
                    b.blob_type,
                    &b.id,
                    sealed,
                    b.raw_length as usize,
                )
                .map_err(|e| refuse(format!("pack {}: {e}", pid.short())))?;
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
    let mut written: Vec<String> = Vec::new();
    let needs_mark = !condemn.is_empty() || batches.iter().any(|b| !b.determined);
    if needs_mark {
        let m0 = write_consolidated(repo, &packs, &batches, ids(&replaced))?;
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
        let m1 = write_consolidated(repo, &packs, &batches, sup)?;
        if let Some(l) = &lock {
            l.ensure_held()?;
        }
        for n in replaced.iter().chain(m0.iter()) {
            repo.backend().remove(FileKind::Index, n)?;
        }
        written.extend(m1);
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
        drop(lock);
        return Ok(report);
    }
    // Everything written since step 1: new snapshots (listed first, as above), then the index
    // files of concurrent backups.
    let new_trees = new_snapshot_trees(repo, &mut seen_snapshots)?;
    let crate::repo::IndexSet {
        names: mut names2,
        files: files2,
        superseded: lingering2,
    } = repo.read_all_index_files()?;
    names2.extend(lingering2);
    let index2 = MasterIndex::from_files(&files2);
    let idx2 = IndexedRepo::from_parts(repo.clone(), index2);
    used_blobs(&idx2, new_trees, &mut used)?;
    let (packs2, mut batches2) = merge(&files2);
    let mut delete: Vec<Id> = Vec::new();
    for pid in eligible.iter().copied() {
        let needed = packs2.get(&pid).is_some_and(|blobs| {
            blobs.iter().any(|b| {
                used.contains(&(b.blob_type, b.id))
                    && !idx2.index().contains_live(b.blob_type, &b.id)
            })
        });
        if needed {
            report.rescued_packs += 1;
        } else {
            delete.push(pid);
        }
    }
    let gone: HashSet<Id> = eligible.iter().copied().collect();
    for b in batches2.iter_mut() {
        b.packs.retain(|p| !gone.contains(p));
    }
    batches2.retain(|b| !b.packs.is_empty());
    let delete_set: HashSet<Id> = delete.iter().copied().collect();
    let kept: BTreeMap<Id, Vec<crate::pack::PackBlob>> = packs2
        .into_iter()
        .filter(|(id, _)| !delete_set.contains(id))
        .collect();
    // The index without the packs is stored before the packs go.
    // Deleting is only safe while our lock is certainly live: had it looked stale, another
    // prune or an index repair could have run meanwhile.
    if let Some(l) = &lock {
        l.ensure_held()?;
    }
    write_consolidated(repo, &kept, &batches2, ids(&names2))?;
    for n in &names2 {
        repo.backend().remove(FileKind::Index, n)?;
    }
    for pid in &delete {
        report.deleted_bytes += stored.get(pid).copied().unwrap_or(0);
        repo.backend().remove(FileKind::Pack, &pid.to_hex())?;
    }
    report.deleted_packs = delete.len();
    report.waiting_packs = batches2.iter().map(|b| b.packs.len()).sum();
    drop(lock);
    let _ = written;
    Ok(report)
}
