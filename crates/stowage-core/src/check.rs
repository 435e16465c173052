//! `check`: verify that the repository is consistent and, optionally, that every byte of data
//! is intact. Problems are collected and reported with the objects (and snapshots) they affect.

use crate::backend::FileKind;
use crate::crypto::{open_blob_in_place, MasterKeys};
use crate::error::InvalidInput;
use crate::id::{BlobType, Id};
use crate::pack::{decode_header, header_location, PackBlob, TAIL_GUESS};
use crate::repo::session::{Locked, ReadWork};
use crate::repo::tree::Node;
use crate::repo::{IndexedRepo, RepoError, Repository};
use crate::walk::{self, Step, Visit};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Which packs `--read-data-subset` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    /// Part `n` (1-based) of `m`: the packs whose id, as a number, is `n - 1` modulo `m`.
    /// Running 1/m .. m/m over time reads every pack once.
    Part(u64, u64),
    /// A random share of the packs, in percent.
    Percent(f64),
}

impl std::str::FromStr for Subset {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        let bad = || InvalidInput {
            what: "subset",
            input: s.to_string(),
            expected: "use N/M (e.g. 2/7) or a percentage (e.g. 10%)",
            kind: "input.check_subset",
        };
        if let Some((n, m)) = s.split_once('/') {
            let (n, m): (u64, u64) = (
                n.trim().parse().map_err(|_| bad())?,
                m.trim().parse().map_err(|_| bad())?,
            );
            if m == 0 || n == 0 || n > m {
                return Err(bad());
            }
            return Ok(Subset::Part(n, m));
        }
        let p: f64 = s.trim().trim_end_matches('%').parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(bad());
        }
        Ok(Subset::Percent(p))
    }
}

impl Subset {
    /// The packs to read among `packs`.
    pub fn select(&self, packs: &[Id]) -> HashSet<Id> {
        match *self {
            Subset::Part(n, m) => packs
                .iter()
                .filter(|p| u64::from_be_bytes(p.0[..8].try_into().unwrap()) % m == n - 1)
                .copied()
                .collect(),
            Subset::Percent(pct) => {
                use rand::seq::SliceRandom;
                let k = ((packs.len() as f64 * pct / 100.0).ceil() as usize).min(packs.len());
                let mut v = packs.to_vec();
                v.shuffle(&mut rand::thread_rng());
                v.into_iter().take(k).collect()
            }
        }
    }
}

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Read and verify every blob of every pack.
    pub read_data: bool,
    /// Read and verify only these packs (implies reading data).
    pub read_data_subset: Option<Subset>,
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct CheckProgress {
    /// Packs whose data has been read and verified so far.
    pub packs_checked: AtomicU64,
    /// Bytes of pack data read so far.
    pub bytes_read: AtomicU64,
}

/// The findings of a check.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Trees read.
    pub trees: usize,
    /// Packs listed by the index.
    pub packs: usize,
    /// Blobs listed by the index.
    pub blobs: usize,
    /// Packs stored but listed by no index (left by interrupted backups; harmless).
    pub unreferenced_packs: Vec<String>,
    /// Packs whose data was read and verified.
    pub packs_read: usize,
    /// Snapshots with files or directories whose data is missing or damaged.
    pub damaged_snapshots: Vec<String>,
    /// Problems; an empty list means the repository is healthy.
    pub errors: Vec<String>,
}

impl CheckReport {
    /// Whether the check found no error.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Reads a pack's header, fetching the tail first and the rest of the header if needed.
/// "pack NAME: error", without naming the pack twice when the error already does.
fn pack_error(name: &str, e: &dyn std::fmt::Display) -> String {
    let msg = e.to_string();
    if msg.starts_with(&format!("pack {name}")) {
        msg
    } else {
        format!("pack {name}: {msg}")
    }
}

/// Reads and decodes the header of the pack named `pack`, whose size is `size`.
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

/// What verifying one whole pack found.
struct PackVerdict {
    /// The pack's header as decoded from its bytes; `None` if it could not be decoded (the
    /// reason is among the errors).
    header: Option<Vec<PackBlob>>,
    /// Blobs that failed to open or whose content does not match their id.
    damaged: Vec<Id>,
}

/// Verifies a whole pack already in memory: its name, its header and every blob.
///
/// Both hashes are required: the pack's name covers the stored (sealed) bytes, a blob's id its
/// plaintext. They are computed in one walk in offset order, so each blob's sealed bytes are
/// still in cache when they are opened, and the header comes from the bytes in hand.
///
/// Blobs are decrypted in place (after their bytes were hashed for the name), so `bytes` is
/// left unspecified; `scratch` takes inflated blobs and is reused from pack to pack.
fn verify_pack_bytes(
    keys: &MasterKeys,
    pack: &str,
    bytes: &mut [u8],
    scratch: &mut Vec<u8>,
    errors: &mut Vec<String>,
) -> PackVerdict {
    let header = header_location(pack, bytes, bytes.len() as u64)
        .map_err(RepoError::from)
        .and_then(|(off, len)| {
            Ok(decode_header(
                keys,
                pack,
                &bytes[off as usize..off as usize + len],
                off,
            )?)
        });
    let mut name_hash = blake3::Hasher::new();
    let mut hashed = 0usize;
    let mut damaged = Vec::new();
    let mut blob_errors = Vec::new();
    if let Ok(blobs) = &header {
        let mut in_order: Vec<&PackBlob> = blobs.iter().collect();
        in_order.sort_by_key(|b| b.offset);
        for b in in_order {
            // decode_header checked that every blob lies before the header, inside `bytes`.
            let (start, end) = (b.offset as usize, b.end() as usize);
            if end > hashed {
                name_hash.update(&bytes[hashed..end]);
                hashed = end;
            }
            let sealed = &mut bytes[start..end];
            let raw_len = b.raw_length as usize;
            if let Err(e) = open_blob_in_place(keys, b.blob_type, &b.id, sealed, raw_len, scratch) {
                blob_errors.push(pack_error(pack, &e));
                damaged.push(b.id);
            }
        }
    }
    name_hash.update(&bytes[hashed..]);
    if Id(*name_hash.finalize().as_bytes()).to_hex() != pack {
        errors.push(format!(
            "pack {pack}: content does not match its name (corrupted)"
        ));
    }
    let header = match header {
        Ok(h) => Some(h),
        Err(e) => {
            errors.push(pack_error(pack, &e));
            None
        }
    };
    errors.extend(blob_errors);
    PackVerdict { header, damaged }
}

/// Reports blobs the index lists in a pack that its header does not.
fn compare_listing(pack: &str, listed: &[PackBlob], header: &[PackBlob], errors: &mut Vec<String>) {
    let in_pack: HashSet<&PackBlob> = header.iter().collect();
    for b in listed {
        if !in_pack.contains(b) {
            errors.push(format!(
                "pack {pack}: index lists {} blob {} that the pack header does not",
                b.blob_type,
                b.id.short()
            ));
        }
    }
}

/// Visits trees once each (across snapshots: results are memoized by tree id), reporting
/// missing or damaged data with the path that needs it.
struct TreeCheck<'a> {
    indexed: &'a IndexedRepo,
    damaged: &'a HashSet<Id>,
    memo: &'a mut HashMap<Id, bool>,
    reported: &'a mut HashSet<Id>,
    errors: &'a mut Vec<String>,
    trees: &'a mut usize,
    short: &'a str,
    /// Whether something below is missing or damaged, for each tree being visited.
    bad: Vec<bool>,
    /// The result for the walk's root.
    root_bad: bool,
}

impl TreeCheck<'_> {
    /// Records a tree's result: memoized, and passed up to its parent (or the root's result).
    fn conclude(&mut self, id: &Id, bad: bool) {
        self.memo.insert(*id, bad);
        match self.bad.last_mut() {
            Some(parent) => *parent |= bad,
            None => self.root_bad = bad,
        }
    }
}

impl Visit for TreeCheck<'_> {
    type Error = RepoError;

    fn tree(&mut self, id: &Id, _: &[u8]) -> Result<Step, RepoError> {
        if let Some(&d) = self.memo.get(id) {
            self.conclude(id, d);
            return Ok(Step::Skip);
        }
        self.bad.push(false);
        Ok(Step::Enter)
    }

    fn unreadable(&mut self, id: &Id, path: &[u8], e: RepoError) -> Result<(), RepoError> {
        self.bad.pop();
        self.errors.push(format!(
            "snapshot {}: directory {}: {e}",
            self.short,
            walk::display_dir(path)
        ));
        self.conclude(id, true);
        Ok(())
    }

    fn node(&mut self, dir: &[u8], n: &Node) -> Result<(), RepoError> {
        for cid in &n.content {
            let problem = if !self.indexed.index().contains(BlobType::Data, cid) {
                "is missing from the index"
            } else if self.damaged.contains(cid) {
                "is damaged or lost"
            } else {
                continue;
            };
            *self.bad.last_mut().expect("inside a tree") = true;
            // Name each file once per blob, and stop listing after many.
            if self.reported.insert(*cid) && self.reported.len() <= 1000 {
                self.errors.push(format!(
                    "snapshot {}: file /{}: data blob {} {problem}",
                    self.short,
                    String::from_utf8_lossy(&walk::join(dir, &n.name.0)),
                    cid.short()
                ));
            }
            break;
        }
        Ok(())
    }

    fn tree_done(&mut self, id: &Id, _: &[u8]) -> Result<(), RepoError> {
        *self.trees += 1;
        let bad = self.bad.pop().expect("inside a tree");
        self.conclude(id, bad);
        Ok(())
    }
}

/// Runs a check in a read session (its lock keeps a concurrent prune from deleting the packs
/// being verified). The check reads the index files itself, one by one, so that one damaged
/// file is reported and the rest still checked: it needs no loaded index.
pub fn run(
    session: &Locked<ReadWork>,
    opts: &CheckOptions,
    progress: &CheckProgress,
) -> Result<CheckReport, RepoError> {
    let repo = session.repo();
    let mut report = CheckReport::default();

    // Index files one by one, so one damaged file is reported and the rest still checked.
    // Each is read once: the master index is built from the readable ones.
    let index_names = repo.backend().list(FileKind::Index)?;
    let mut listed: HashMap<Id, Vec<PackBlob>> = HashMap::new();
    let mut files: Vec<(String, crate::repo::index::IndexFile)> = Vec::new();
    for f in &index_names {
        match repo.read_index_file(&f.name) {
            // Consolidated away by a concurrent prune: its content is in the new file.
            Err(RepoError::Backend(crate::backend::BackendError::NotFound { .. })) => {}
            Ok(idx) => {
                for p in &idx.packs {
                    listed
                        .entry(p.id)
                        .or_default()
                        .extend(p.blobs.iter().copied());
                }
                files.push((f.name.clone(), idx));
            }
            Err(e) => report.errors.push(format!("index {}: {e}", f.name)),
        }
    }
    let superseded: HashSet<Id> = files
        .iter()
        .flat_map(|(_, f)| f.supersedes.iter().copied())
        .collect();
    let in_force = files
        .iter()
        .filter(|(n, _)| !n.parse::<Id>().is_ok_and(|id| superseded.contains(&id)))
        .map(|(_, f)| f);
    let indexed = IndexedRepo::from_parts(
        repo.clone(),
        crate::repo::index::MasterIndex::from_files(in_force),
    );
    drop(files);

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
    let all_packs: Vec<Id> = listed.keys().copied().collect();
    let to_read: HashSet<Id> = match (opts.read_data_subset, opts.read_data) {
        (Some(s), _) => s.select(&all_packs),
        (None, true) => all_packs.iter().copied().collect(),
        (None, false) => HashSet::new(),
    };
    report.packs_read = to_read.len();
    // Blobs found damaged or lost, to name the snapshots and files they belong to.
    let damaged: Mutex<HashSet<Id>> = Mutex::new(HashSet::new());
    // Each thread reuses its buffers from pack to pack: fresh 16 MiB buffers cost a page
    // fault per 4 KiB, a fifth of the CPU time of a check.
    let new_buffers = || (Vec::new(), Vec::new());
    listed_vec.par_iter().enumerate().for_each_init(
        new_buffers,
        |(buf, scratch), (i, (id, blobs))| {
            let name = id.to_hex();
            // Each thread works through a run of neighbouring packs: while it verifies this one,
            // the backend may fetch the next.
            if let Some((next, _)) = listed_vec.get(i + 1).filter(|(n, _)| to_read.contains(n)) {
                let next = next.to_hex();
                if let Some(&size) = stored.get(&next) {
                    repo.backend().will_read(FileKind::Pack, &next, 0, size);
                }
            }
            let mut errs = Vec::new();
            let lose_all = || damaged.lock().unwrap().extend(blobs.iter().map(|b| b.id));
            match stored.get(&name) {
                None => {
                    errs.push(format!("pack {name} is listed in the index but missing"));
                    lose_all();
                }
                Some(&size) => {
                    // A pack that was read is checked against its own bytes; the others by their
                    // header alone.
                    let mut header = None;
                    let mut read_failed = false;
                    if to_read.contains(id) {
                        match repo
                            .backend()
                            .read_range_into(FileKind::Pack, &name, 0, size, buf)
                        {
                            Ok(()) => {
                                progress
                                    .bytes_read
                                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                                let verdict =
                                    verify_pack_bytes(repo.keys(), &name, buf, scratch, &mut errs);
                                let n = verdict.header.as_ref().map_or(0, Vec::len);
                                if n == 0 && !blobs.is_empty() {
                                    lose_all();
                                }
                                damaged.lock().unwrap().extend(verdict.damaged);
                                blob_count.fetch_add(n as u64, Ordering::Relaxed);
                                header = verdict.header;
                            }
                            Err(e) => {
                                errs.push(pack_error(&name, &e));
                                lose_all();
                                read_failed = true;
                            }
                        }
                    }
                    if !to_read.contains(id) || read_failed {
                        match read_pack_header(repo, &name, size) {
                            Ok(h) => header = Some(h),
                            Err(e) => errs.push(pack_error(&name, &e)),
                        }
                    }
                    if let Some(header) = header {
                        compare_listing(&name, blobs, &header, &mut errs);
                    }
                }
            }
            progress.packs_checked.fetch_add(1, Ordering::Relaxed);
            if !errs.is_empty() {
                errors.lock().unwrap().extend(errs);
            }
        },
    );
    report.errors.extend(errors.into_inner().unwrap());
    report.blobs = indexed.index().len();

    // Snapshots: every tree readable, every referenced blob indexed.
    let snapshot_names = repo.backend().list(FileKind::Snapshot)?;
    let damaged = damaged.into_inner().unwrap();
    let mut reported: HashSet<Id> = HashSet::new();
    let mut memo: HashMap<Id, bool> = HashMap::new();
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
        let mut visit = TreeCheck {
            indexed: &indexed,
            damaged: &damaged,
            memo: &mut memo,
            reported: &mut reported,
            errors: &mut report.errors,
            trees: &mut report.trees,
            short,
            bad: Vec::new(),
            root_bad: false,
        };
        walk::walk(&indexed, &snap.tree, b"", &mut visit)?;
        if visit.root_bad {
            report.damaged_snapshots.push(f.name.clone());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::seal_blob;
    use crate::pack::PackWriter;

    /// A pack of three data blobs (one compressible, one not, one tiny) and its name.
    fn pack(keys: &MasterKeys) -> (Vec<u8>, String, Vec<PackBlob>) {
        let mut w = PackWriter::new();
        let random: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for data in [vec![7u8; 100_000], random, b"hi".to_vec()] {
            let id = keys.blob_id(&data);
            let sealed = seal_blob(keys, BlobType::Data, &id, &data, 3);
            w.add(BlobType::Data, id, &sealed, data.len());
        }
        let (bytes, id, blobs) = w.finish(keys);
        (bytes, id.to_hex(), blobs)
    }

    #[test]
    fn intact_pack_verifies_and_yields_its_header() {
        let keys = MasterKeys::generate();
        let (bytes, name, blobs) = pack(&keys);
        // Twice with the same scratch buffer, as a checking thread does from pack to pack.
        let mut scratch = Vec::new();
        for _ in 0..2 {
            let mut errors = Vec::new();
            let v = verify_pack_bytes(&keys, &name, &mut bytes.clone(), &mut scratch, &mut errors);
            assert!(errors.is_empty(), "{errors:?}");
            assert!(v.damaged.is_empty());
            assert_eq!(v.header.unwrap(), blobs);
        }
    }

    #[test]
    fn flipped_blob_byte_breaks_the_name_and_that_blob_only() {
        let keys = MasterKeys::generate();
        let (mut bytes, name, blobs) = pack(&keys);
        bytes[blobs[1].offset as usize + 20] ^= 1;
        let mut errors = Vec::new();
        let v = verify_pack_bytes(&keys, &name, &mut bytes, &mut Vec::new(), &mut errors);
        assert_eq!(v.damaged, vec![blobs[1].id]);
        assert!(errors[0].contains("does not match its name"), "{errors:?}");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(v.header.unwrap(), blobs);
    }

    #[test]
    fn damaged_trailer_breaks_the_name_and_the_header() {
        // Bytes no blob covers are still part of the pack's name.
        let keys = MasterKeys::generate();
        let (mut bytes, name, _) = pack(&keys);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        let mut errors = Vec::new();
        let v = verify_pack_bytes(&keys, &name, &mut bytes, &mut Vec::new(), &mut errors);
        assert!(v.header.is_none());
        assert!(errors.iter().any(|e| e.contains("does not match its name")));
    }

    #[test]
    fn truncated_pack_is_reported_without_panicking() {
        let keys = MasterKeys::generate();
        let (bytes, name, _) = pack(&keys);
        for len in [0, 5, 11, 12, bytes.len() / 2, bytes.len() - 1] {
            let mut errors = Vec::new();
            let mut truncated = bytes[..len].to_vec();
            let v = verify_pack_bytes(&keys, &name, &mut truncated, &mut Vec::new(), &mut errors);
            assert!(v.header.is_none() || !errors.is_empty());
            assert!(!errors.is_empty(), "truncated to {len}");
        }
    }

    #[test]
    fn index_entry_missing_from_the_header_is_reported() {
        let keys = MasterKeys::generate();
        let (_, name, blobs) = pack(&keys);
        let mut listed = blobs.clone();
        listed[0].raw_length += 1;
        let mut errors = Vec::new();
        compare_listing(&name, &listed, &blobs, &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        compare_listing(&name, &blobs, &blobs, &mut errors);
        assert_eq!(errors.len(), 1);
    }
}
