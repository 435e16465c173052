//! `check`: verify that the repository is consistent and, optionally, that every byte of data
//! is intact. Problems are collected and reported with the objects (and snapshots) they affect.

use crate::backend::FileKind;
use crate::crypto::{open_blob, MasterKeys};
use crate::id::{BlobType, Id};
use crate::pack::{decode_header, header_location, PackBlob, TAIL_GUESS};
use crate::repo::{check_content_name, IndexedRepo, RepoError, Repository};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Read and verify every blob of every pack.
    pub read_data: bool,
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct CheckProgress {
    pub packs_checked: AtomicU64,
    pub bytes_read: AtomicU64,
}

/// The findings of a check.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    pub packs: usize,
    pub blobs: usize,
    /// Packs stored but listed by no index (left by interrupted backups; harmless).
    pub unreferenced_packs: Vec<String>,
    /// Problems; an empty list means the repository is healthy.
    pub errors: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Reads a pack's header, fetching the tail first and the rest of the header if needed.
pub fn read_pack_header(
    repo: &Repository,
    pack: &str,
    size: u64,
) -> Result<Vec<PackBlob>, RepoError> {
    let tail_len = TAIL_GUESS.min(size);
    let tail = repo
        .backend()
        .read_range(FileKind::Pack, pack, size - tail_len, tail_len)?;
    let (off, len) = header_location(pack, &tail, size)?;
    let header = if off >= size - tail_len {
        let s = (off - (size - tail_len)) as usize;
        tail[s..s + len].to_vec()
    } else {
        repo.backend()
            .read_range(FileKind::Pack, pack, off, len as u64)?
    };
    Ok(decode_header(repo.keys(), pack, &header, off)?)
}

/// Verifies every blob of a whole pack already in memory against its header and index entries.
fn verify_pack_bytes(
    keys: &MasterKeys,
    pack: &str,
    bytes: &[u8],
    errors: &mut Vec<String>,
) -> usize {
    if Id::hash_of(bytes).to_hex() != pack {
        errors.push(format!(
            "pack {pack}: content does not match its name (corrupted)"
        ));
    }
    let blobs = match header_location(pack, bytes, bytes.len() as u64)
        .map_err(RepoError::from)
        .and_then(|(off, len)| {
            Ok(decode_header(
                keys,
                pack,
                &bytes[off as usize..off as usize + len],
                off,
            )?)
        }) {
        Ok(b) => b,
        Err(e) => {
            errors.push(format!("pack {pack}: {e}"));
            return 0;
        }
    };
    for b in &blobs {
        let sealed = &bytes[b.offset as usize..b.end() as usize];
        if let Err(e) = open_blob(keys, b.blob_type, &b.id, sealed, b.raw_length as usize) {
            errors.push(format!("pack {pack}: {e}"));
        }
    }
    blobs.len()
}

/// Runs a check.
pub fn run(
    repo: &Arc<Repository>,
    opts: &CheckOptions,
    progress: &CheckProgress,
) -> Result<CheckReport, RepoError> {
    let mut report = CheckReport::default();

    // Index files one by one, so one damaged file is reported and the rest still checked.
    let index_names = repo.backend().list(FileKind::Index)?;
    let mut listed: HashMap<Id, Vec<PackBlob>> = HashMap::new();
    for f in &index_names {
        match repo.read_index_file(&f.name) {
            Ok(idx) => {
                for p in idx.packs {
                    listed.entry(p.id).or_default().extend(p.blobs);
                }
            }
            Err(e) => report.errors.push(format!("index {}: {e}", f.name)),
        }
    }
    let indexed: IndexedRepo = match repo.load_index() {
        Ok(i) => i,
        Err(_) => {
            // Build what we can from the readable index files.
            let mut tmp = crate::repo::index::IndexFile::default();
            for (id, blobs) in &listed {
                tmp.packs.push(crate::repo::index::IndexPack {
                    id: *id,
                    blobs: blobs.clone(),
                });
            }
            let mut i = Repository::empty_index(repo);
            i.add_index(&tmp);
            i
        }
    };

    // Packs: each listed pack exists, and its header agrees with the index.
    let stored: HashMap<String, u64> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect();
    report.packs = stored.len();
    for name in stored.keys() {
        if !name.parse::<Id>().is_ok_and(|id| listed.contains_key(&id)) {
            report.unreferenced_packs.push(name.clone());
        }
    }
    report.unreferenced_packs.sort();
    let errors = Mutex::new(Vec::new());
    let listed_vec: Vec<(&Id, &Vec<PackBlob>)> = listed.iter().collect();
    let blob_count = AtomicU64::new(0);
    listed_vec.par_iter().for_each(|(id, blobs)| {
        let name = id.to_hex();
        let mut errs = Vec::new();
        match stored.get(&name) {
            None => errs.push(format!("pack {name} is listed in the index but missing")),
            Some(&size) => {
                if opts.read_data {
                    match repo.backend().read(FileKind::Pack, &name) {
                        Ok(bytes) => {
                            progress.bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            let n = verify_pack_bytes(repo.keys(), &name, &bytes, &mut errs);
                            blob_count.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) => errs.push(format!("pack {name}: {e}")),
                    }
                }
                match read_pack_header(repo, &name, size) {
                    Ok(header) => {
                        let in_pack: HashSet<&PackBlob> = header.iter().collect();
                        for b in blobs.iter() {
                            if !in_pack.contains(b) {
                                errs.push(format!(
                                    "pack {name}: index lists {} blob {} that the pack header does not",
                                    b.blob_type,
                                    b.id.short()
                                ));
                            }
                        }
                    }
                    Err(e) => errs.push(format!("pack {name}: {e}")),
                }
            }
        }
        progress.packs_checked.fetch_add(1, Ordering::Relaxed);
        if !errs.is_empty() {
            errors.lock().unwrap().extend(errs);
        }
    });
    report.errors.extend(errors.into_inner().unwrap());
    report.blobs = indexed.index().len();

    // Snapshots: every tree readable, every referenced blob indexed.
    let snapshot_names = repo.backend().list(FileKind::Snapshot)?;
    let mut seen_trees: HashSet<Id> = HashSet::new();
    let mut damaged_blobs: HashSet<Id> = HashSet::new();
    for f in &snapshot_names {
        let short = crate::util::short_name(&f.name);
        let snap = match f.name.parse::<Id>().map_err(|_| ()).and_then(|id| {
            repo.read_snapshot(&id).map_err(|e| {
                report.errors.push(format!("snapshot {short}: {e}"));
            })
        }) {
            Ok(s) => s,
            Err(()) => continue,
        };
        report.snapshots += 1;
        let mut stack = vec![(snap.tree, String::from("/"))];
        while let Some((tree_id, path)) = stack.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let tree = match indexed.read_tree(&tree_id) {
                Ok(t) => t,
                Err(e) => {
                    report
                        .errors
                        .push(format!("snapshot {short}: directory {path}: {e}"));
                    continue;
                }
            };
            report.trees += 1;
            for n in &tree.nodes {
                let child = format!("{}{}", path, n.name.lossy());
                if let Some(sub) = n.subtree {
                    stack.push((sub, format!("{child}/")));
                }
                for id in &n.content {
                    match indexed.index().get(BlobType::Data, id) {
                        Some(_) => {}
                        None => {
                            if damaged_blobs.insert(*id) || damaged_blobs.len() < 1000 {
                                report.errors.push(format!(
                                    "snapshot {short}: file {child}: data blob {} is missing from the index",
                                    id.short()
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    for f in index_names {
        if let Ok(bytes) = repo.backend().read(FileKind::Index, &f.name) {
            if let Err(e) = check_content_name(FileKind::Index, &f.name, &bytes) {
                if !report.errors.iter().any(|x| x.contains(&f.name)) {
                    report.errors.push(e.to_string());
                }
            }
        }
    }
    Ok(report)
}
