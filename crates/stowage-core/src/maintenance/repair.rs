//! `repair index` (rebuild the index from pack headers) and `repair snapshots` (rewrite
//! snapshots without the parts whose data is gone, so the rest stays restorable).

use crate::backend::FileKind;
use crate::check::read_pack_header;
use crate::id::{BlobType, Id};
use crate::repo::session::{BackupWork, Indexed, Locked, PruneWork, Work};
use crate::repo::tree::{Node, NodeKind, Tree};
use crate::repo::writer::BlobWriter;
use crate::repo::RepoError;
use crate::repo::{IndexedRepo, Result};
use crate::walk::{self, Step, Visit};
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
/// It replaces the index as a prune does, so it needs the prune lock.
pub fn repair_index(session: &Locked<PruneWork>) -> Result<IndexRepairReport> {
    let repo = session.repo();
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

/// Rebuilds a snapshot's trees without the entries whose data is missing, bottom up: each
/// directory's new tree is written when its walk is done, and its id goes into the parent.
struct Rewriter<'a> {
    idx: &'a IndexedRepo,
    writer: Option<&'a BlobWriter>,
    packs: &'a HashSet<Id>,
    dropped: Vec<String>,
    short: String,
    /// The directories being rebuilt, innermost last.
    frames: Vec<Rebuilt>,
    /// The directory entry whose tree the walk enters next.
    entering: Option<Node>,
    /// The new root: `None` until the walk is done, then `Some(None)` if the root was dropped.
    root: Option<Option<Id>>,
}

struct Rebuilt {
    /// The entry of this directory in its parent (`None` for the root).
    entry: Option<Node>,
    nodes: Vec<Node>,
    changed: bool,
}

impl Rewriter<'_> {
    fn blob_ok(&self, t: BlobType, id: &Id) -> bool {
        self.idx
            .index()
            .get(t, id)
            .is_some_and(|l| self.packs.contains(&l.pack))
    }

    /// The directory being entered is left out of its parent.
    fn drop_entered(&mut self) {
        match self.frames.last_mut() {
            Some(parent) => parent.changed = true,
            None => self.root = Some(None),
        }
    }
}

impl Visit for Rewriter<'_> {
    type Error = RepoError;

    fn tree(&mut self, id: &Id, path: &[u8]) -> Result<Step> {
        let entry = self.entering.take();
        if !self.blob_ok(BlobType::Tree, id) {
            self.dropped.push(format!(
                "{}: {} (directory data missing)",
                self.short,
                walk::display_dir(path)
            ));
            self.drop_entered();
            return Ok(Step::Skip);
        }
        self.frames.push(Rebuilt {
            entry,
            nodes: Vec::new(),
            changed: false,
        });
        Ok(Step::Enter)
    }

    fn unreadable(&mut self, _: &Id, path: &[u8], e: RepoError) -> Result<()> {
        self.frames.pop();
        self.dropped
            .push(format!("{}: {} ({e})", self.short, walk::display_dir(path)));
        self.drop_entered();
        Ok(())
    }

    fn node(&mut self, dir: &[u8], n: &Node) -> Result<()> {
        if n.kind == NodeKind::Dir {
            // Added to the parent when its own tree is done (or dropped).
            self.entering = Some(n.clone());
            return Ok(());
        }
        if n.content.iter().any(|c| !self.blob_ok(BlobType::Data, c)) {
            self.dropped.push(format!(
                "{}: /{} (file data missing)",
                self.short,
                String::from_utf8_lossy(&walk::join(dir, &n.name.0))
            ));
            self.frames.last_mut().expect("inside a tree").changed = true;
            return Ok(());
        }
        self.frames
            .last_mut()
            .expect("inside a tree")
            .nodes
            .push(n.clone());
        Ok(())
    }

    fn tree_done(&mut self, id: &Id, _: &[u8]) -> Result<()> {
        let done = self.frames.pop().expect("inside a tree");
        let new_id = if done.changed {
            let t = Tree { nodes: done.nodes }.encode();
            match self.writer {
                Some(w) => w.add(BlobType::Tree, &t)?.0,
                None => self.idx.repo().keys().blob_id(&t),
            }
        } else {
            *id
        };
        match done.entry {
            Some(mut entry) => {
                let parent = self.frames.last_mut().expect("a directory has a parent");
                parent.changed |= new_id != *id;
                entry.subtree = Some(new_id);
                parent.nodes.push(entry);
            }
            None => self.root = Some(Some(new_id)),
        }
        Ok(())
    }
}

/// Rewrites every snapshot whose trees refer to data that is missing, dropping the affected
/// files and directories; the new snapshot is tagged `repaired` and replaces the old one.
pub fn repair_snapshots(session: &Indexed<BackupWork>) -> Result<SnapshotRepairReport> {
    rewrite_snapshots(session.indexed(), false)
}

/// What [`repair_snapshots`] would rewrite and drop, writing nothing (the new snapshot ids in
/// the report are all zero).
pub fn plan_snapshot_repair<W: Work>(session: &Indexed<W>) -> Result<SnapshotRepairReport> {
    rewrite_snapshots(session.indexed(), true)
}

fn rewrite_snapshots(idx: &Arc<IndexedRepo>, dry_run: bool) -> Result<SnapshotRepairReport> {
    let repo = idx.repo();
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
            idx,
            writer: writer.as_ref(),
            packs: &packs,
            dropped: Vec::new(),
            short: id.short(),
            frames: Vec::new(),
            entering: None,
            root: None,
        };
        walk::walk(idx, &snap.tree, b"", &mut rw)?;
        let root = rw.root.expect("the walk concluded the root");
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
