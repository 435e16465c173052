//! `repair index` (rebuild the index from pack headers) and `repair snapshots` (rewrite
//! snapshots without the parts whose data is gone, so the rest stays restorable).

use crate::backend::FileKind;
use crate::check::read_pack_header;
use crate::id::{BlobType, Id};
use crate::repo::lock::{Lock, LockKind};
use crate::repo::tree::{NodeKind, Tree};
use crate::repo::writer::BlobWriter;
use crate::repo::{IndexedRepo, Repository, Result};
use rayon::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;

/// What `repair index` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct IndexRepairReport {
    /// Packs whose headers were read.
    pub packs: usize,
    /// Blobs listed in the new index.
    pub blobs: usize,
    /// Packs whose header could not be read, with the reason (left out of the index).
    pub unreadable_packs: Vec<String>,
    /// Index files removed (replaced by the new ones).
    pub index_files_removed: usize,
    /// Index files written.
    pub index_files_written: usize,
}

/// Rebuilds the index from the headers of every pack, replacing all index files.
pub fn repair_index(repo: &Arc<Repository>) -> Result<IndexRepairReport> {
    let _lock = Lock::acquire(repo, LockKind::Prune)?;
    let old = repo.read_all_index_file_names()?;
    let packs = repo.backend().list(FileKind::Pack)?;
    let results: Vec<(
        String,
        std::result::Result<Vec<crate::pack::PackBlob>, String>,
    )> = packs
        .par_iter()
        .filter(|f| f.name.parse::<Id>().is_ok())
        .map(|f| {
            (
                f.name.clone(),
                read_pack_header(repo, &f.name, f.size).map_err(|e| e.to_string()),
            )
        })
        .collect();
    let mut report = IndexRepairReport::default();
    let mut packs = std::collections::BTreeMap::new();
    for (name, r) in results {
        match r {
            Ok(blobs) => {
                report.packs += 1;
                report.blobs += blobs.len();
                packs.insert(name.parse::<Id>().expect("filtered above"), blobs);
            }
            Err(e) => report.unreadable_packs.push(format!("{name}: {e}")),
        }
    }
    // Like a prune's consolidation: the superseded list goes in the last file, stored last, so
    // until then the old index stays in force.
    let supersedes = old.iter().filter_map(|n| n.parse().ok()).collect();
    let mut out = crate::maintenance::prune::ConsolidatedIndex::new(repo);
    for (id, blobs) in packs {
        out.add(crate::repo::index::IndexPack { id, blobs })?;
    }
    let written = out.finish(&[], supersedes)?;
    report.index_files_written = written.len();
    for n in &old {
        repo.backend().remove(FileKind::Index, n)?;
        report.index_files_removed += 1;
    }
    Ok(report)
}

/// What `repair snapshots` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct SnapshotRepairReport {
    /// Snapshots whose trees were walked.
    pub snapshots_checked: usize,
    /// (old id, new id) of rewritten snapshots.
    pub rewritten: Vec<(Id, Id)>,
    /// Paths dropped, as "snapshot: path (reason)".
    pub dropped: Vec<String>,
}

struct Rewriter<'a> {
    idx: &'a IndexedRepo,
    writer: Option<&'a BlobWriter>,
    packs: &'a HashSet<Id>,
    dropped: Vec<String>,
    short: String,
}

impl Rewriter<'_> {
    fn blob_ok(&self, t: BlobType, id: &Id) -> bool {
        self.idx
            .index()
            .get(t, id)
            .is_some_and(|l| self.packs.contains(&l.pack))
    }

    /// Returns the id of the repaired tree (the same id if nothing was dropped).
    fn tree(&mut self, id: &Id, path: &str) -> Result<Option<Id>> {
        if !self.blob_ok(BlobType::Tree, id) {
            self.dropped
                .push(format!("{}: {path} (directory data missing)", self.short));
            return Ok(None);
        }
        let tree = match self.idx.read_tree(id) {
            Ok(t) => t,
            Err(e) => {
                self.dropped.push(format!("{}: {path} ({e})", self.short));
                return Ok(None);
            }
        };
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut changed = false;
        for mut n in tree.nodes {
            let p = format!("{path}{}", n.name.lossy());
            if n.kind == NodeKind::Dir {
                let sub = n.subtree.expect("validated");
                match self.tree(&sub, &format!("{p}/"))? {
                    Some(new) => {
                        changed |= new != sub;
                        n.subtree = Some(new);
                    }
                    None => {
                        changed = true;
                        continue;
                    }
                }
            } else if n.content.iter().any(|c| !self.blob_ok(BlobType::Data, c)) {
                self.dropped
                    .push(format!("{}: {p} (file data missing)", self.short));
                changed = true;
                continue;
            }
            nodes.push(n);
        }
        if !changed {
            return Ok(Some(*id));
        }
        let t = Tree { nodes };
        match self.writer {
            Some(w) => Ok(Some(w.add(BlobType::Tree, &t.encode())?.0)),
            None => Ok(Some(self.idx.repo().keys().blob_id(&t.encode()))),
        }
    }
}

/// Rewrites every snapshot whose trees refer to data that is missing, dropping the affected
/// files and directories; the new snapshot is tagged `repaired` and replaces the old one.
pub fn repair_snapshots(repo: &Arc<Repository>, dry_run: bool) -> Result<SnapshotRepairReport> {
    let _lock = if dry_run {
        None
    } else {
        Some(Lock::acquire(repo, LockKind::Backup)?)
    };
    let idx = Arc::new(repo.load_index()?);
    let packs: HashSet<Id> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|f| f.name.parse().ok())
        .collect();
    let writer =
        (!dry_run).then(|| BlobWriter::new(idx.clone(), repo.backend().preferred_uploaders()));
    let mut report = SnapshotRepairReport::default();
    let mut pending = Vec::new();
    for (id, snap) in repo.list_snapshots()? {
        report.snapshots_checked += 1;
        let mut rw = Rewriter {
            idx: &idx,
            writer: writer.as_ref(),
            packs: &packs,
            dropped: Vec::new(),
            short: id.short(),
        };
        let root = rw.tree(&snap.tree, "/")?;
        report.dropped.append(&mut rw.dropped);
        if root == Some(snap.tree) {
            continue;
        }
        let mut new = snap.clone();
        new.tree = match root {
            Some(r) => r,
            None => {
                let empty = Tree::default().encode();
                match &writer {
                    Some(w) => w.add(BlobType::Tree, &empty)?.0,
                    None => repo.keys().blob_id(&empty),
                }
            }
        };
        if !new.tags.iter().any(|t| t == "repaired") {
            new.tags.push("repaired".into());
        }
        new.incomplete = true;
        new.parent = Some(id);
        pending.push((id, new));
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    for (old, new) in pending {
        if dry_run {
            report.rewritten.push((old, Id::default()));
            continue;
        }
        let new_id = repo.save_snapshot(&new)?;
        repo.backend().remove(FileKind::Snapshot, &old.to_hex())?;
        report.rewritten.push((old, new_id));
    }
    Ok(report)
}
