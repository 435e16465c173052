//! Restore: recreate a snapshot (or part of it) under a target directory, or write one of its
//! files to a device in place or to a stream (see [`RestoreTarget`]).
//!
//! Three phases. Plan: walk the trees, create directories, symlinks and special files, and note
//! where every content blob goes; then create the files, empty and of the right length (holes
//! stay holes), in parallel, and the hard links. Content: fetch each pack once, in parallel,
//! with neighbouring blobs read in one request, and write every blob with positioned writes into
//! files kept open between writes (a bounded set). Metadata: ownership, mode, xattrs and times,
//! files first and directories last (deepest first) so their times stick.
//!
//! A device or stream target ([`RestoreTarget`]) takes one file: in place, its content goes
//! through the same content phase; to a stream, blobs are fetched a window at a time and
//! written in order. The token of a [`crate::progress::Control`] is checked per entry planned,
//! file created and blob written; a cancelled restore returns [`RestoreError::Canceled`] with
//! the files and bytes it wrote.
//!
//! Names come from the repository and are untrusted: trees are validated on decode (no `/`,
//! `..` or NUL), nothing is created through an existing symlink, and files are opened with
//! `O_NOFOLLOW`, so nothing is ever written outside the target.

use crate::backend::{Backend, FileKind};
use crate::cancel::CancelToken;
use crate::crypto::open_blob_in_place;
use crate::error::{Classified, ErrorClass};
use crate::id::{BlobType, Id};
use crate::progress::{Control, Meter};
use crate::repo::session::{Indexed, ReadWork};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{validate_name, Node, NodeKind, Timestamp};
use crate::repo::{IndexedRepo, RepoError};
use crate::walk::{Step, Visit};
use crate::warning::{Operation, Warning};
use base64::Engine;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Errors that stop a restore before or while it runs. Failures on single entries are
/// [`Warning`]s.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading the repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The target could not be created, opened or written.
    #[error("{path}: {source}")]
    Target {
        /// The target (or the entry of it that failed).
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The target directory has entries and overwriting was not asked for.
    #[error("target {0} is not empty")]
    TargetNotEmpty(String),
    /// The subpath asked for is not in the snapshot.
    #[error("path {0:?} does not exist in the snapshot")]
    NoSuchPath(String),
    /// An include or exclude pattern does not parse.
    #[error("bad pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tree holds a name that is no single safe path component (a damaged or hostile
    /// repository).
    #[error("unsafe name in tree {tree}: {reason}")]
    UnsafeName {
        /// The tree's short id.
        tree: String,
        /// What is wrong with the name.
        reason: String,
    },
    /// A device or stream target needs one regular file, and the entry chosen is not one.
    #[error("{0:?} in the snapshot is not a regular file")]
    NotAFile(String),
    /// A device or stream target needs one file, and no subpath chose among the snapshot's
    /// several entries.
    #[error("the snapshot holds {0} entries at its root; a device or stream takes one file")]
    NoSingleFile(usize),
    /// A device or file restored in place is not of the restored file's size.
    #[error("{path} is {target_size} bytes, the file to restore is {file_size}")]
    SizeMismatch {
        /// The device or file.
        path: String,
        /// Its size.
        target_size: u64,
        /// The snapshot's file's size.
        file_size: u64,
    },
    /// The caller cancelled the restore, which wrote this much (files with all their
    /// content, and content bytes).
    #[error("restore canceled after writing {files} files and {bytes} bytes")]
    Canceled {
        /// Files whose content was completely written.
        files: u64,
        /// Content bytes written.
        bytes: u64,
    },
}

impl Classified for RestoreError {
    fn class(&self) -> ErrorClass {
        match self {
            RestoreError::Repo(e) => e.class(),
            RestoreError::Target { source, .. } => crate::warning::io_class(source),
            RestoreError::TargetNotEmpty(_)
            | RestoreError::NoSuchPath(_)
            | RestoreError::BadPattern { .. }
            | RestoreError::NotAFile(_)
            | RestoreError::NoSingleFile(_)
            | RestoreError::SizeMismatch { .. } => ErrorClass::Config,
            RestoreError::UnsafeName { .. } => ErrorClass::Corruption,
            RestoreError::Canceled { .. } => ErrorClass::Canceled,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            RestoreError::Repo(e) => e.kind(),
            RestoreError::Target { .. } => "restore.target_unwritable",
            RestoreError::TargetNotEmpty(_) => "restore.target_not_empty",
            RestoreError::NoSuchPath(_) => "restore.no_such_path",
            RestoreError::BadPattern { .. } => "restore.bad_pattern",
            RestoreError::UnsafeName { .. } => "restore.unsafe_name",
            RestoreError::NotAFile(_) => "restore.not_a_file",
            RestoreError::NoSingleFile(_) => "restore.no_single_file",
            RestoreError::SizeMismatch { .. } => "restore.size_mismatch",
            RestoreError::Canceled { .. } => "restore.canceled",
        }
    }
}

/// Where a restore writes.
pub enum RestoreTarget<'a> {
    /// A directory, created if missing: the snapshot (or its subpath) is recreated below it.
    Directory(PathBuf),
    /// A block device or a regular file, written in place: one file of the snapshot (its
    /// subpath, or its only entry), which must be exactly as large as the target. Nothing is
    /// truncated; the file's holes are zeroed by punching holes where the target supports it
    /// (a regular file, most block devices), by writing zeros elsewhere, and skipped where a
    /// regular target has a hole already.
    InPlace(PathBuf),
    /// A stream: the bytes of one file of the snapshot (its subpath, or its only entry), in
    /// order, holes as zeros.
    Stream(&'a mut dyn Write),
}

/// What to restore and how (where is the [`RestoreTarget`]).
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Restore only this path of the snapshot (its content goes directly into the target).
    pub subpath: Option<String>,
    /// Only paths matching one of these (or below a match) are restored.
    pub includes: Vec<String>,
    /// Paths matching one of these (and everything below) are skipped.
    pub excludes: Vec<String>,
    /// Restore into a directory that is not empty, replacing what is in the way.
    pub overwrite: bool,
    /// Re-read every restored file and check it against the snapshot.
    pub verify: bool,
    /// What to do with runs of zeros inside file content (see [`Zeros`]); in-place targets
    /// always write them.
    pub zeros: Zeros,
}

/// How runs of zero bytes inside restored file content are put on disk. The restored bytes are
/// the same either way; only the file's allocation differs. Runs are whole file-system blocks
/// (4 KiB, aligned in the file) of at least [`MIN_ZERO_RUN`] bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Zeros {
    /// Allocate the blocks (`fallocate`) instead of copying zeros into them: the file reads the
    /// same, its blocks are allocated as if the zeros were written (it is not sparse), and
    /// nothing is copied or written back. Where the file system cannot allocate, the zeros are
    /// written.
    #[default]
    Allocate,
    /// Write the zeros like any other bytes.
    Write,
    /// Leave them as holes: the file becomes sparse where the original may not have been
    /// (`restore --sparse`).
    Hole,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks and special files restored.
    pub other: u64,
    /// Bytes of the files restored.
    pub bytes: u64,
    /// Files re-read and found equal to the snapshot (with [`RestoreOptions::verify`]).
    pub verified_files: u64,
    /// Entries that could not be restored.
    pub warnings: Vec<Warning>,
}

struct Filter {
    includes: Option<GlobSet>,
    excludes: GlobSet,
}

impl Filter {
    fn new(opts: &RestoreOptions) -> Result<Filter, RestoreError> {
        Ok(Filter {
            includes: if opts.includes.is_empty() {
                None
            } else {
                Some(globset(&opts.includes)?)
            },
            excludes: globset(&opts.excludes)?,
        })
    }

    /// Whether the entry at snapshot path `rel` is kept (not excluded: for a directory, its
    /// content is looked at), and whether it is included itself (it, and all below it, are
    /// restored), given whether an ancestor is included.
    fn selected(&self, rel: &[u8], ancestor_included: bool) -> (bool, bool) {
        let abs = [b"/", rel].concat();
        let p = Path::new(OsStr::from_bytes(&abs));
        if self.excludes.is_match(p) {
            return (false, false);
        }
        let included = ancestor_included || self.includes.as_ref().is_none_or(|g| g.is_match(p));
        (true, included)
    }
}

fn globset(patterns: &[String]) -> Result<GlobSet, RestoreError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.trim_end_matches('/');
        // Patterns without a slash match a name anywhere; with one, the path from the root.
        let full = if p.starts_with('/') {
            p.to_string()
        } else if p.contains('/') {
            format!("/{p}")
        } else {
            format!("**/{p}")
        };
        b.add(
            GlobBuilder::new(&full)
                .literal_separator(true)
                .build()
                .map_err(|e| RestoreError::BadPattern {
                    pattern: p.to_string(),
                    reason: e.to_string(),
                })?,
        );
    }
    b.build().map_err(|e| RestoreError::BadPattern {
        pattern: patterns.join(" "),
        reason: e.to_string(),
    })
}

/// Where one copy of a blob goes.
#[derive(Clone, Copy)]
struct BlobUse {
    file: u32,
    offset: u64,
}

struct PlannedBlob {
    id: Id,
    offset: u32,
    length: u32,
    raw_length: u32,
    uses: Vec<BlobUse>,
}

struct PlannedFile {
    path: PathBuf,
    node: Node,
}

#[derive(Default)]
struct Plan {
    files: Vec<PlannedFile>,
    /// Directories in creation order (parents first), with their nodes.
    dirs: Vec<(PathBuf, Node)>,
    /// Symlinks and special files, for metadata.
    others: Vec<(PathBuf, Node)>,
    packs: HashMap<Id, HashMap<Id, PlannedBlob>>,
    /// Snapshot-relative path of each restored regular file -> its index in `files`.
    restored: HashMap<Vec<u8>, u32>,
    /// Number of blob writes each file in `files` receives (its closing point).
    writes: Vec<u32>,
    /// Hard links to make once the files exist: (index in `files` of the first name, path).
    links: Vec<(u32, PathBuf)>,
    total_bytes: u64,
}

struct Restorer<'a> {
    repo: &'a IndexedRepo,
    filter: Filter,
    warnings: Mutex<Vec<Warning>>,
    meter: Meter,
    cancel: &'a CancelToken,
    is_root: bool,
    /// The target was empty (or new) when the restore started: nothing of it can be in the way
    /// of an entry, since the names in a tree are unique.
    target_was_empty: bool,
}

impl Restorer<'_> {
    fn warn(&self, w: Warning) {
        tracing::warn!("{w}");
        Meter::add(&self.meter.warnings, 1);
        self.warnings.lock().unwrap().push(w);
    }

    fn warn_io(&self, path: &Path, op: Operation, e: &io::Error) {
        self.warn(Warning::io(path, op, e));
    }

    /// The error of a restore cancelled now, with what it wrote.
    fn canceled(&self) -> RestoreError {
        RestoreError::Canceled {
            files: self.meter.files_done.load(Ordering::Relaxed),
            bytes: self.meter.bytes_done.load(Ordering::Relaxed),
        }
    }

    /// Fails with [`RestoreError::Canceled`] if the caller cancelled.
    #[inline]
    fn check_canceled(&self) -> Result<(), RestoreError> {
        match self.cancel.is_canceled() {
            true => Err(self.canceled()),
            false => Ok(()),
        }
    }

    /// Whether the entry at `rel` (snapshot path without the leading `/`) is kept at all
    /// (excludes) and whether it is itself restored (includes).
    fn selected(&self, rel: &[u8], ancestor_included: bool) -> (bool, bool) {
        self.filter.selected(rel, ancestor_included)
    }

    /// Makes sure nothing but a directory of ours is at `path`: with `--overwrite`, a file or
    /// symlink in the way is removed (never followed). In a target that was empty, nothing can
    /// be (and whatever appears meanwhile makes the creation fail, see [`create_dir`]).
    fn clear_for(&self, path: &Path, want_dir: bool) -> io::Result<()> {
        if self.target_was_empty {
            return Ok(());
        }
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(m) if want_dir && m.is_dir() => Ok(()),
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
        }
    }

    /// Plans the restore of the tree `tree_id` (the directory at snapshot path `rel`) into
    /// `abs`, creating its directories as it goes (files are created later, in parallel).
    /// Returns whether anything below was selected.
    fn plan_dir(
        &self,
        plan: &mut Plan,
        tree_id: &Id,
        rel: &[u8],
        abs: &Path,
        ancestor_included: bool,
    ) -> Result<bool, RestoreError> {
        let mut planner = Planner {
            restorer: self,
            plan,
            frames: Vec::new(),
            entering: Entering::Root {
                abs: abs.to_path_buf(),
                included: ancestor_included,
            },
            any: false,
        };
        crate::walk::walk(self.repo, tree_id, rel, &mut planner)?;
        Ok(planner.any)
    }

    fn plan_leaf(
        &self,
        plan: &mut Plan,
        node: Node,
        path: &Path,
        rel: Vec<u8>,
    ) -> Result<(), RestoreError> {
        let io_err = |e: io::Error| RestoreError::Target {
            path: path.display().to_string(),
            source: e,
        };
        match node.kind {
            NodeKind::Hardlink => {
                let first = node
                    .link_target
                    .as_ref()
                    .and_then(|t| plan.restored.get(&t.0).copied());
                if let Some(first) = first {
                    plan.links.push((first, path.to_path_buf()));
                    return Ok(());
                }
                // The first name was not restored: this one carries the content.
                self.plan_file(plan, node, path, rel)
            }
            NodeKind::File => self.plan_file(plan, node, path, rel),
            NodeKind::Symlink => {
                let target = node
                    .target
                    .as_ref()
                    .expect("validated symlink has a target");
                std::os::unix::fs::symlink(target.as_os(), path).map_err(io_err)?;
                plan.others.push((path.to_path_buf(), node));
                Ok(())
            }
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev | NodeKind::Socket => {
                let kind = match node.kind {
                    NodeKind::Fifo => libc::S_IFIFO,
                    NodeKind::Chardev => libc::S_IFCHR,
                    NodeKind::Blockdev => libc::S_IFBLK,
                    _ => libc::S_IFSOCK,
                };
                crate::sys::make_node(path, kind, node.mode & 0o7777, node.rdev).map_err(io_err)?;
                plan.others.push((path.to_path_buf(), node));
                Ok(())
            }
            NodeKind::Dir => unreachable!("directories are planned by plan_dir"),
        }
    }

    fn plan_file(
        &self,
        plan: &mut Plan,
        node: Node,
        path: &Path,
        rel: Vec<u8>,
    ) -> Result<(), RestoreError> {
        let file = plan.files.len() as u32;
        // Locate everything and check the layout before the plan refers to this file.
        let mut placed = Vec::with_capacity(node.content.len());
        let mut holes = node.holes.iter().peekable();
        let mut pos = 0u64;
        for id in &node.content {
            pos = skip_holes(&mut holes, pos);
            let loc = self.repo.locate(BlobType::Data, id)?;
            placed.push((id, loc, pos));
            pos += loc.raw_length as u64;
        }
        for &(off, len) in holes {
            pos = pos.max(off + len);
        }
        if pos != node.size {
            return Err(RestoreError::Repo(RepoError::malformed(
                format!("file {}", path.display()),
                format!(
                    "content and holes cover {pos} bytes, the node says {}",
                    node.size
                ),
            )));
        }
        for (id, loc, offset) in placed {
            let blob = plan
                .packs
                .entry(loc.pack)
                .or_default()
                .entry(*id)
                .or_insert_with(|| PlannedBlob {
                    id: *id,
                    offset: loc.offset,
                    length: loc.length,
                    raw_length: loc.raw_length,
                    uses: Vec::new(),
                });
            blob.uses.push(BlobUse { file, offset });
        }
        plan.writes.push(node.content.len() as u32);
        plan.total_bytes += node.size;
        plan.restored.insert(rel, file);
        plan.files.push(PlannedFile {
            path: path.to_path_buf(),
            node,
        });
        Ok(())
    }

    /// Creates every planned file, empty and of its final length (so whatever is not written
    /// stays a hole), then the hard links to them. Files are created in parallel: this is one
    /// `open` per file, the bulk of the planning time for trees of small files. Returns which
    /// files exist.
    fn create_files(&self, plan: &Plan) -> Vec<bool> {
        let created: Vec<bool> = plan
            .files
            .par_iter()
            .map(|f| {
                // Once cancelled, no more files are created (one relaxed load per file).
                if self.cancel.is_canceled() {
                    return false;
                }
                let r = create_file(&f.path, f.node.size);
                match &r {
                    Err(e) => self.warn_io(&f.path, Operation::Create, e),
                    // A file without content is complete once created.
                    Ok(()) if f.node.content.is_empty() => Meter::add(&self.meter.files_done, 1),
                    Ok(()) => {}
                }
                r.is_ok()
            })
            .collect();
        for (first, path) in &plan.links {
            let target = &plan.files[*first as usize].path;
            if !created[*first as usize] {
                self.warn(Warning::new(
                    path,
                    Operation::Link,
                    ErrorClass::Config,
                    format!("not linked: {} could not be restored", target.display()),
                ));
            } else if let Err(e) = fs::hard_link(target, path) {
                self.warn_io(path, Operation::Link, &e);
            }
        }
        created
    }

    /// Fetches one pack's needed blobs (neighbours in one read), opens each (which checks its
    /// tag and its id) and writes it wherever it goes. `bufs` are the calling thread's buffers,
    /// reused from pack to pack.
    fn restore_pack(
        &self,
        pack: &Id,
        blobs: &HashMap<Id, PlannedBlob>,
        targets: &TargetFiles<'_>,
        bufs: &mut PackBuffers,
    ) -> Result<(), RestoreError> {
        // On disks, reads stay small enough that a range is still in cache when its blobs are
        // opened, and sequential so that the kernel reads ahead while they are; on object
        // stores, where each read is a request, they cover up to a whole pack. A gap is read
        // through when it is smaller than an eighth of a read.
        let max_read = self.repo.repo().backend().preferred_read_size().max(1);
        let max_gap = max_read / 8;
        let mut list: Vec<&PlannedBlob> = blobs.values().collect();
        list.sort_by_key(|b| b.offset);
        let name = pack.to_hex();
        let mut i = 0;
        while i < list.len() {
            let start = list[i].offset as u64;
            let mut end = start + list[i].length as u64;
            let mut j = i + 1;
            while j < list.len() {
                let b = list[j];
                let b_end = b.offset as u64 + b.length as u64;
                if (b.offset as u64) > end + max_gap || b_end - start > max_read {
                    break;
                }
                end = end.max(b_end);
                j += 1;
            }
            self.repo
                .repo()
                .backend()
                .read_range_into(FileKind::Pack, &name, start, end - start, &mut bufs.read)
                .map_err(RepoError::from)?;
            for b in &list[i..j] {
                let off = (b.offset as u64 - start) as usize;
                let sealed = &mut bufs.read[off..off + b.length as usize];
                let plain = open_blob_in_place(
                    self.repo.repo().keys(),
                    BlobType::Data,
                    &b.id,
                    sealed,
                    b.raw_length as usize,
                    &mut bufs.inflated,
                )
                .map_err(|e| {
                    RepoError::malformed(format!("pack {}", crate::util::short_name(&name)), e)
                })?;
                for u in &b.uses {
                    // One relaxed load per blob written.
                    self.check_canceled()?;
                    match targets.write(u.file, plain, u.offset) {
                        Ok(true) => {
                            Meter::add(&self.meter.bytes_done, plain.len() as u64);
                            if targets.completed(u.file) {
                                Meter::add(&self.meter.files_done, 1);
                            }
                        }
                        Ok(false) => {}
                        Err(e) => {
                            self.warn_io(targets.paths[u.file as usize], Operation::Write, &e)
                        }
                    }
                }
            }
            i = j;
        }
        Ok(())
    }

    fn apply_metadata(&self, path: &Path, node: &Node) {
        let is_link = node.kind == NodeKind::Symlink;
        if self.is_root {
            if let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)) {
                self.warn_io(path, Operation::Chown, &e);
            }
        }
        for x in &node.xattrs {
            match base64::engine::general_purpose::STANDARD.decode(&x.value) {
                Ok(v) => {
                    if let Err(e) = xattr::set(path, x.name.as_os(), &v) {
                        // Symlinks cannot carry user.* attributes on Linux.
                        if !is_link {
                            self.warn(Warning {
                                message: format!("{}: {e}", x.name.lossy()),
                                ..Warning::io(path, Operation::SetXattr, &e)
                            });
                        }
                    }
                }
                Err(_) => self.warn(Warning::new(
                    path,
                    Operation::SetXattr,
                    ErrorClass::Corruption,
                    format!("{} has a bad value", x.name.lossy()),
                )),
            }
        }
        if !is_link {
            if let Err(e) =
                fs::set_permissions(path, fs::Permissions::from_mode(node.mode & 0o7777))
            {
                self.warn_io(path, Operation::Chmod, &e);
            }
        }
        let ft = |t: Timestamp| filetime::FileTime::from_unix_time(t.0, t.1);
        if let Err(e) = filetime::set_symlink_file_times(path, ft(node.atime), ft(node.mtime)) {
            self.warn_io(path, Operation::SetTimes, &e);
        }
    }

    /// Re-reads a restored file and checks each blob against its id.
    fn verify_file(&self, f: &PlannedFile) -> Result<(), String> {
        let mut file = File::open(&f.path).map_err(|e| e.to_string())?;
        // (The size of a device, too.)
        let size = crate::sys::device_size(&mut file).map_err(|e| e.to_string())?;
        if size != f.node.size {
            return Err(format!("size is {size}, expected {}", f.node.size));
        }
        let keys = self.repo.repo().keys();
        let mut holes = f.node.holes.iter().peekable();
        let mut pos = 0u64;
        let mut buf = Vec::new();
        for id in &f.node.content {
            pos = skip_holes(&mut holes, pos);
            let len = self
                .repo
                .locate(BlobType::Data, id)
                .map_err(|e| e.to_string())?
                .raw_length as usize;
            buf.resize(len, 0);
            file.read_exact_at(&mut buf, pos)
                .map_err(|e| e.to_string())?;
            if keys.blob_id(&buf) != *id {
                return Err(format!(
                    "content at offset {pos} does not match the snapshot"
                ));
            }
            pos += len as u64;
        }
        Ok(())
    }
}

/// Creates a directory, or keeps the one already there; anything else there (a symlink
/// above all: what is restored below must not end up elsewhere) is an error.
fn create_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if fs::symlink_metadata(path)?.is_dir() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a directory",
                ))
            }
        }
        r => r,
    }
}

/// Creates a restored file, empty and `size` bytes long, where nothing is (never through a
/// symlink).
fn create_file(path: &Path, size: u64) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .and_then(|file| file.set_len(size))
}

/// What restoring a pack roughly costs, in bytes: reading and opening its blobs, writing each
/// copy, and opening a file for each copy (counted as 32 KiB). Packs are restored most costly
/// first, so that the last ones, which may leave a core idle, are short.
fn pack_cost(blobs: &HashMap<Id, PlannedBlob>) -> u64 {
    blobs
        .values()
        .map(|b| b.length as u64 + b.uses.len() as u64 * (b.raw_length as u64 + (32 << 10)))
        .sum()
}

/// Tells the backend which part of `pack` will be read soon: from its first needed blob to the
/// end of its last.
fn will_read_pack(backend: &dyn Backend, pack: &Id, blobs: &HashMap<Id, PlannedBlob>) {
    let start = blobs.values().map(|b| u64::from(b.offset)).min();
    let end = blobs
        .values()
        .map(|b| u64::from(b.offset) + u64::from(b.length))
        .max();
    if let (Some(start), Some(end)) = (start, end) {
        backend.will_read(FileKind::Pack, &pack.to_hex(), start, end - start);
    }
}

/// Most target files open at once during the content phase.
const MAX_OPEN_FILES: usize = 128;

/// The buffers one content thread reuses from pack to pack: the bytes read from a pack (blobs
/// stored raw are decrypted and written from there) and the inflated form of a compressed blob.
#[derive(Default)]
struct PackBuffers {
    read: Vec<u8>,
    inflated: Vec<u8>,
}

/// Block size zero runs are aligned to and made of: the usual file-system block.
const ZERO_BLOCK: usize = 4096;
/// Shortest run of zeros handled apart (see [`Zeros`]); shorter runs are written.
pub const MIN_ZERO_RUN: usize = 64 * 1024;

/// The runs of zero bytes in `data`, which goes at `offset` of a file: ranges of `data` made of
/// whole [`ZERO_BLOCK`]s aligned in the file, each at least [`MIN_ZERO_RUN`] long, in order.
fn zero_runs(data: &[u8], offset: u64) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    if data.len() < MIN_ZERO_RUN {
        return runs;
    }
    let first = ((ZERO_BLOCK as u64 - offset % ZERO_BLOCK as u64) % ZERO_BLOCK as u64) as usize;
    let mut run_start = None;
    let mut pos = first;
    while pos + ZERO_BLOCK <= data.len() {
        let zero = is_zero(&data[pos..pos + ZERO_BLOCK]);
        match (zero, run_start) {
            (true, None) => run_start = Some(pos),
            (false, Some(s)) => {
                if pos - s >= MIN_ZERO_RUN {
                    runs.push(s..pos);
                }
                run_start = None;
            }
            _ => {}
        }
        pos += ZERO_BLOCK;
    }
    if let Some(s) = run_start {
        if pos - s >= MIN_ZERO_RUN {
            runs.push(s..pos);
        }
    }
    runs
}

/// Whether `block` is all zeros. Data that is not usually shows it in its first 64 bytes, so
/// this costs little more than one load per block; zeros are checked 64 bytes at a time.
fn is_zero(block: &[u8]) -> bool {
    let mut chunks = block.chunks_exact(64);
    chunks.all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}

/// The restored files during the content phase, shared by the threads that write them. A
/// file is opened (never through a symlink) at its first write, kept open while more writes
/// are due, and closed after its last one, or earlier, least recently used first, when more
/// than `cap` are open. A file that fails once is reported once and skipped from then on.
struct TargetFiles<'p> {
    paths: Vec<&'p Path>,
    zeros: Zeros,
    /// Set once `fallocate` is refused for lack of support: zeros are written from then on.
    no_fallocate: AtomicBool,
    /// Writes still due per file.
    pending: Vec<AtomicU32>,
    /// Files not to write: not created, or a write failed.
    skip: Vec<AtomicBool>,
    open: Mutex<OpenSet>,
    cap: usize,
    /// Files whose completion was counted (see [`TargetFiles::completed`]).
    counted: Vec<AtomicBool>,
    /// Open with `O_NOFOLLOW` (a directory's files), or follow symlinks (a device named by
    /// its caller, such as `/dev/disk/by-id/...`).
    nofollow: bool,
}

#[derive(Default)]
struct OpenSet {
    tick: u64,
    files: HashMap<u32, (Arc<File>, u64)>,
}

impl<'p> TargetFiles<'p> {
    /// `paths[i]` is file `i`, `writes[i]` the number of writes it will get; files with `created[i]` false are
    /// skipped.
    fn new(
        paths: Vec<&'p Path>,
        writes: &[u32],
        created: &[bool],
        cap: usize,
        zeros: Zeros,
    ) -> Self {
        TargetFiles {
            paths,
            zeros,
            no_fallocate: AtomicBool::new(false),
            pending: writes.iter().map(|&n| AtomicU32::new(n)).collect(),
            skip: created.iter().map(|&c| AtomicBool::new(!c)).collect(),
            open: Mutex::new(OpenSet::default()),
            cap: cap.max(1),
            counted: writes.iter().map(|_| AtomicBool::new(false)).collect(),
            nofollow: true,
        }
    }

    /// Whether file `file` has had all its writes, none failing, and this is the first call to
    /// say so (so each file is counted once, by whichever thread asks first).
    fn completed(&self, file: u32) -> bool {
        let i = file as usize;
        self.pending[i].load(Ordering::Acquire) == 0
            && !self.skip[i].load(Ordering::Relaxed)
            && !self.counted[i].swap(true, Ordering::Relaxed)
    }

    /// Writes `data` at `offset` of file `file`. `Ok(false)`: the file is skipped; `Err`: this
    /// write failed and the file will be skipped from now on. The range must not have been
    /// written before (files are created empty, each byte is written once): runs of zeros are
    /// left to [`Zeros`].
    fn write(&self, file: u32, data: &[u8], offset: u64) -> io::Result<bool> {
        let i = file as usize;
        let r = if self.skip[i].load(Ordering::Relaxed) {
            Ok(false)
        } else {
            match self
                .handle(file)
                .and_then(|f| self.write_at(&f, data, offset))
            {
                Ok(()) => Ok(true),
                Err(e) => {
                    // Only the first failing write reports.
                    match self.skip[i].swap(true, Ordering::Relaxed) {
                        false => Err(e),
                        true => Ok(false),
                    }
                }
            }
        };
        let was = self.pending[i].fetch_sub(1, Ordering::AcqRel);
        if was <= 1 || self.skip[i].load(Ordering::Relaxed) {
            self.open.lock().unwrap().files.remove(&file);
        }
        r
    }

    /// Puts `data` at `offset` of `f`, with its zero runs handled as `self.zeros` says.
    fn write_at(&self, f: &File, data: &[u8], offset: u64) -> io::Result<()> {
        if self.zeros == Zeros::Write {
            return f.write_all_at(data, offset);
        }
        let mut done = 0;
        for run in zero_runs(data, offset) {
            f.write_all_at(&data[done..run.start], offset + done as u64)?;
            let at = offset + run.start as u64;
            if self.zeros == Zeros::Allocate && !self.allocate(f, at, run.len())? {
                f.write_all_at(&data[run.clone()], at)?;
            }
            done = run.end;
        }
        f.write_all_at(&data[done..], offset + done as u64)
    }

    /// Allocates `len` bytes at `offset` of `f` (they read as zeros where nothing was written).
    /// `Ok(false)` when the file system cannot.
    fn allocate(&self, f: &File, offset: u64, len: usize) -> io::Result<bool> {
        if self.no_fallocate.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let Err(e) = crate::sys::allocate(f, offset, len as u64) else {
            return Ok(true);
        };
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => {
                self.no_fallocate.store(true, Ordering::Relaxed);
                Ok(false)
            }
            _ => Err(e),
        }
    }

    fn handle(&self, file: u32) -> io::Result<Arc<File>> {
        {
            let mut open = self.open.lock().unwrap();
            open.tick += 1;
            let tick = open.tick;
            if let Some((f, used)) = open.files.get_mut(&file) {
                *used = tick;
                return Ok(f.clone());
            }
        }
        // Open without holding the lock; if another thread opened it meanwhile, keep theirs.
        let flags = if self.nofollow { libc::O_NOFOLLOW } else { 0 };
        let f = Arc::new(
            OpenOptions::new()
                .write(true)
                .custom_flags(flags)
                .open(self.paths[file as usize])?,
        );
        let mut open = self.open.lock().unwrap();
        if self.pending[file as usize].load(Ordering::Acquire) <= 1 {
            // The last write: no need to keep it.
            return Ok(f);
        }
        if !open.files.contains_key(&file) && open.files.len() >= self.cap {
            let oldest = open
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(&k, _)| k);
            if let Some(k) = oldest {
                open.files.remove(&k);
            }
        }
        let tick = open.tick;
        Ok(open.files.entry(file).or_insert((f, tick)).0.clone())
    }

    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.open.lock().unwrap().files.len()
    }
}

/// Moves `pos` past the holes that start at or before it: content blobs fill the file in order,
/// around its holes.
fn skip_holes(
    holes: &mut std::iter::Peekable<std::slice::Iter<'_, (u64, u64)>>,
    mut pos: u64,
) -> u64 {
    while let Some(&&(off, len)) = holes.peek() {
        if off > pos {
            break;
        }
        pos = pos.max(off + len);
        holes.next();
    }
    pos
}

/// Joins a snapshot-relative path (no leading `/`) and a name.
/// What the walk enters next: the root, a directory created for the entry just planned, or
/// nothing (its creation failed: its content is skipped).
enum Entering {
    Root {
        abs: PathBuf,
        included: bool,
    },
    Dir {
        abs: PathBuf,
        included: bool,
        index: usize,
    },
    Skip,
}

/// One directory being planned.
struct PlanFrame {
    /// The tree's id, for messages.
    tree: Id,
    abs: PathBuf,
    /// Whether the directory itself is selected (so all below it is).
    included: bool,
    /// Its index in `Plan::dirs` (`None` for the root).
    index: Option<usize>,
    /// Whether anything below it was selected.
    any: bool,
}

/// Plans a restore on the one tree walk: directories are created when their entry is met and
/// removed again, once their walk is done, if nothing in them was selected.
struct Planner<'p, 'r> {
    restorer: &'p Restorer<'r>,
    plan: &'p mut Plan,
    frames: Vec<PlanFrame>,
    entering: Entering,
    /// Whether anything below the root was selected.
    any: bool,
}

impl Visit for Planner<'_, '_> {
    type Error = RestoreError;

    fn tree(&mut self, id: &Id, _: &[u8]) -> Result<Step, RestoreError> {
        let (abs, included, index) = match std::mem::replace(&mut self.entering, Entering::Skip) {
            Entering::Skip => return Ok(Step::Skip),
            Entering::Root { abs, included } => (abs, included, None),
            Entering::Dir {
                abs,
                included,
                index,
            } => (abs, included, Some(index)),
        };
        self.frames.push(PlanFrame {
            tree: *id,
            abs,
            included,
            index,
            any: false,
        });
        Ok(Step::Enter)
    }

    fn node(&mut self, dir: &[u8], node: &Node) -> Result<(), RestoreError> {
        let r = self.restorer;
        r.check_canceled()?;
        let top = self.frames.last_mut().expect("inside a tree");
        // Decoding validated every name; check again right where it becomes a path.
        if let Err(reason) = validate_name(&node.name.0) {
            return Err(RestoreError::UnsafeName {
                tree: top.tree.short(),
                reason,
            });
        }
        let child_rel = join_rel(dir, &node.name.0);
        let (keep, included) = r.selected(&child_rel, top.included);
        if !keep {
            if node.kind == NodeKind::Dir {
                self.entering = Entering::Skip;
            }
            return Ok(());
        }
        let path = top.abs.join(node.name.as_os());
        if node.kind == NodeKind::Dir {
            if let Err(e) = r.clear_for(&path, true).and_then(|_| create_dir(&path)) {
                r.warn_io(&path, Operation::Create, &e);
                self.entering = Entering::Skip;
                return Ok(());
            }
            self.entering = Entering::Dir {
                abs: path.clone(),
                included,
                index: self.plan.dirs.len(),
            };
            self.plan.dirs.push((path, node.clone()));
            return Ok(());
        }
        if !included {
            return Ok(());
        }
        top.any = true;
        if let Err(e) = r.clear_for(&path, false) {
            r.warn_io(&path, Operation::Create, &e);
            return Ok(());
        }
        match r.plan_leaf(self.plan, node.clone(), &path, child_rel) {
            Ok(()) => {}
            Err(RestoreError::Target { source, .. }) => {
                r.warn_io(&path, Operation::Create, &source)
            }
            Err(e) => r.warn(Warning::new(
                &path,
                Operation::Create,
                e.class(),
                e.to_string(),
            )),
        }
        Ok(())
    }

    fn tree_done(&mut self, _: &Id, _: &[u8]) -> Result<(), RestoreError> {
        let done = self.frames.pop().expect("inside a tree");
        let selected = done.included || done.any;
        match (done.index, self.frames.last_mut()) {
            (Some(index), Some(parent)) => {
                if selected {
                    parent.any = true;
                } else {
                    // Nothing below was selected, so every directory planned after this one
                    // (its descendants) was removed already: it is the last.
                    let _ = fs::remove_dir(&done.abs);
                    self.plan.dirs.remove(index);
                }
            }
            _ => self.any = done.any,
        }
        Ok(())
    }
}

fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}

/// Finds the node at a `/`-separated path inside a snapshot.
fn find_subpath(repo: &IndexedRepo, root: &Id, subpath: &str) -> Result<Node, RestoreError> {
    let mut tree_id = *root;
    let parts: Vec<&str> = subpath
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let mut node = None;
    for (i, part) in parts.iter().enumerate() {
        let tree = repo.read_tree(&tree_id)?;
        let n = tree
            .nodes
            .into_iter()
            .find(|n| n.name.0 == part.as_bytes())
            .ok_or_else(|| RestoreError::NoSuchPath(subpath.into()))?;
        if i + 1 < parts.len() {
            tree_id = n
                .subtree
                .ok_or_else(|| RestoreError::NoSuchPath(subpath.into()))?;
        }
        node = Some(n);
    }
    node.ok_or_else(|| RestoreError::NoSuchPath(subpath.into()))
}

/// Restores `snapshot` (or the part `opts` selects) to `target`, in a read session (its lock
/// keeps a concurrent prune from deleting the packs being read).
///
/// `control` cancels it (the error, [`RestoreError::Canceled`], says how many files and bytes
/// were written) and receives its progress: bytes and files written of those planned.
pub fn run(
    session: &Indexed<ReadWork>,
    snapshot: &Snapshot,
    target: RestoreTarget<'_>,
    opts: &RestoreOptions,
    control: &Control<'_>,
) -> Result<RestoreReport, RestoreError> {
    let repo: &IndexedRepo = session.indexed();
    if control.cancel.is_canceled() {
        return Err(RestoreError::Canceled { files: 0, bytes: 0 });
    }
    let target_was_empty = match &target {
        RestoreTarget::Directory(dir) => prepare_dir(dir, opts)?,
        _ => false,
    };
    let restorer = Restorer {
        repo,
        filter: Filter::new(opts)?,
        warnings: Mutex::new(Vec::new()),
        meter: Meter::default(),
        cancel: &control.cancel,
        is_root: nix::unistd::geteuid().is_root(),
        target_was_empty,
    };
    let mut report = restorer.meter.observe(control, || match target {
        RestoreTarget::Directory(dir) => restorer.restore_dir(snapshot, &dir, opts),
        RestoreTarget::InPlace(path) => restorer.restore_in_place(snapshot, &path, opts),
        RestoreTarget::Stream(w) => restorer.restore_stream(snapshot, w, opts),
    })?;
    report.warnings = std::mem::take(&mut *restorer.warnings.lock().unwrap());
    Ok(report)
}

/// What a restore will do, computed before anything is written: the selected entries and the
/// data to fetch. `restore --plan` prints [`RestorePlan::totals`]; [`RestorePlan::execute`]
/// then restores the same selection.
pub struct RestorePlan<'s> {
    session: &'s Indexed<ReadWork>,
    snapshot: Snapshot,
    opts: RestoreOptions,
    totals: RestoreTotals,
}

/// The figures of a [`RestorePlan`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreTotals {
    /// Regular files to write (hard links to a file restored under another name not counted).
    pub files: u64,
    /// Directories to create.
    pub dirs: u64,
    /// Symlinks and special files to make.
    pub other: u64,
    /// Hard links to make to files restored under another name.
    pub links: u64,
    /// Bytes of the files (holes included).
    pub bytes: u64,
    /// Distinct data blobs to fetch.
    pub blobs: u64,
    /// Packs they are in.
    pub packs: u64,
    /// Stored bytes of those blobs: what is read from the repository.
    pub stored_bytes: u64,
}

impl<'s> RestorePlan<'s> {
    /// The figures of the plan.
    pub fn totals(&self) -> &RestoreTotals {
        &self.totals
    }

    /// Restores the planned selection to `target` (see [`run`]).
    pub fn execute(
        self,
        target: RestoreTarget<'_>,
        control: &Control<'_>,
    ) -> Result<RestoreReport, RestoreError> {
        run(self.session, &self.snapshot, target, &self.opts, control)
    }
}

/// Plans a restore of `snapshot` with `opts`: walks the selected part of the snapshot and
/// locates its data, writing nothing anywhere.
pub fn plan<'s>(
    session: &'s Indexed<ReadWork>,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestorePlan<'s>, RestoreError> {
    let repo: &IndexedRepo = session.indexed();
    let filter = Filter::new(opts)?;
    let mut est = Estimate {
        repo,
        filter: &filter,
        included: Vec::new(),
        next_included: false,
        restored: HashSet::new(),
        blobs: HashSet::new(),
        packs: HashSet::new(),
        totals: RestoreTotals::default(),
    };
    let sub = opts
        .subpath
        .as_deref()
        .unwrap_or("")
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/");
    if sub.is_empty() {
        crate::walk::walk(repo, &snapshot.tree, b"", &mut est)?;
    } else {
        let node = find_subpath(repo, &snapshot.tree, &sub)?;
        let parent = sub.rsplit_once('/').map_or("", |(p, _)| p);
        est.included.push(false);
        let dirs = est.totals.dirs;
        est.node(parent.as_bytes(), &node)?;
        // The subpath's own directory is the target: not made.
        est.totals.dirs = dirs;
        if let Some(subtree) = node.subtree {
            crate::walk::walk(repo, &subtree, sub.as_bytes(), &mut est)?;
        }
    }
    let mut totals = est.totals;
    totals.blobs = est.blobs.len() as u64;
    totals.packs = est.packs.len() as u64;
    Ok(RestorePlan {
        session,
        snapshot: snapshot.clone(),
        opts: opts.clone(),
        totals,
    })
}

/// Counts what a restore selects, on the one tree walk, as [`Planner`] selects it.
struct Estimate<'a> {
    repo: &'a IndexedRepo,
    filter: &'a Filter,
    /// For each tree being walked: whether its directory is itself selected.
    included: Vec<bool>,
    /// Whether the directory whose tree comes next is selected.
    next_included: bool,
    /// Snapshot paths of files restored with content (the first names of hard links).
    restored: HashSet<Vec<u8>>,
    blobs: HashSet<Id>,
    packs: HashSet<Id>,
    totals: RestoreTotals,
}

impl Visit for Estimate<'_> {
    type Error = RestoreError;

    fn tree(&mut self, _: &Id, _: &[u8]) -> Result<Step, RestoreError> {
        self.included.push(self.next_included);
        Ok(Step::Enter)
    }

    fn node(&mut self, dir: &[u8], node: &Node) -> Result<(), RestoreError> {
        let rel = join_rel(dir, &node.name.0);
        let ancestor = self.included.last().copied().unwrap_or(false);
        let (keep, included) = self.filter.selected(&rel, ancestor);
        if !keep {
            // Its tree, if any, is not walked for a restore either: walk it as unselected.
            self.next_included = false;
            return Ok(());
        }
        match node.kind {
            NodeKind::Dir => {
                self.next_included = included;
                // A directory is made when something below it is selected; counted when it is
                // itself selected (a close upper bound otherwise).
                if included {
                    self.totals.dirs += 1;
                }
            }
            _ if !included => {}
            NodeKind::Hardlink
                if node
                    .link_target
                    .as_ref()
                    .is_some_and(|t| self.restored.contains(&t.0)) =>
            {
                self.totals.links += 1;
            }
            NodeKind::File | NodeKind::Hardlink => {
                self.totals.files += 1;
                self.totals.bytes += node.size;
                self.restored.insert(rel);
                for id in &node.content {
                    if self.blobs.insert(*id) {
                        let loc = self.repo.locate(BlobType::Data, id)?;
                        self.packs.insert(loc.pack);
                        self.totals.stored_bytes += loc.length as u64;
                    }
                }
            }
            _ => self.totals.other += 1,
        }
        Ok(())
    }

    fn tree_done(&mut self, _: &Id, _: &[u8]) -> Result<(), RestoreError> {
        self.included.pop();
        Ok(())
    }
}

/// Checks a target directory, creating it if missing, and refuses one that is not empty
/// unless overwriting; returns whether it was empty.
fn prepare_dir(target: &Path, opts: &RestoreOptions) -> Result<bool, RestoreError> {
    let tio = |e: io::Error| RestoreError::Target {
        path: target.display().to_string(),
        source: e,
    };
    match fs::read_dir(target) {
        Ok(mut rd) => {
            let empty = rd.next().is_none();
            if !empty && !opts.overwrite {
                return Err(RestoreError::TargetNotEmpty(target.display().to_string()));
            }
            Ok(empty)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(tio)?;
            Ok(true)
        }
        Err(e) => Err(tio(e)),
    }
}

/// Bytes of zeros written at once where a hole cannot be punched.
const ZEROS_AT_ONCE: usize = 1 << 20;

impl Restorer<'_> {
    /// The one file a device or stream target takes: the subpath's, or the snapshot's only
    /// entry.
    fn single_file(
        &self,
        snapshot: &Snapshot,
        opts: &RestoreOptions,
    ) -> Result<Node, RestoreError> {
        let node = match opts
            .subpath
            .as_deref()
            .filter(|s| !s.trim_matches('/').is_empty())
        {
            Some(sub) => find_subpath(self.repo, &snapshot.tree, sub)?,
            None => {
                let mut root = self.repo.read_tree(&snapshot.tree)?;
                if root.nodes.len() != 1 {
                    return Err(RestoreError::NoSingleFile(root.nodes.len()));
                }
                root.nodes.remove(0)
            }
        };
        if !node.has_content() {
            return Err(RestoreError::NotAFile(node.name.lossy()));
        }
        Ok(node)
    }

    /// Restores a directory tree into `target` (checked by [`prepare_dir`]).
    fn restore_dir(
        &self,
        snapshot: &Snapshot,
        target: &Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport, RestoreError> {
        let repo = self.repo;
        let tio = |e: io::Error| RestoreError::Target {
            path: target.display().to_string(),
            source: e,
        };
        let started = std::time::Instant::now();
        let mut plan = Plan::default();
        let sub_parts: Vec<&str> = opts
            .subpath
            .as_deref()
            .unwrap_or("")
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        match sub_parts.is_empty() {
            true => {
                self.plan_dir(&mut plan, &snapshot.tree, b"", target, false)?;
            }
            false => {
                let sub = sub_parts.join("/");
                let node = find_subpath(repo, &snapshot.tree, &sub)?;
                match node.kind {
                    NodeKind::Dir => {
                        let subtree = node.subtree.expect("validated dir has a subtree");
                        self.plan_dir(&mut plan, &subtree, sub.as_bytes(), target, false)?;
                    }
                    _ => {
                        let path = target.join(node.name.as_os());
                        let rel = sub.as_bytes().to_vec();
                        self.clear_for(&path, false).map_err(tio)?;
                        self.plan_leaf(&mut plan, node, &path, rel)?;
                    }
                }
            }
        }
        self.meter
            .expect(plan.files.len() as u64, Some(plan.total_bytes));
        tracing::debug!(
            files = plan.files.len(),
            packs = plan.packs.len(),
            secs = started.elapsed().as_secs_f64(),
            "restore planned"
        );

        let created = self.create_files(&plan);
        self.check_canceled()?;
        tracing::debug!(
            secs = started.elapsed().as_secs_f64(),
            "restore files created"
        );

        let targets = TargetFiles::new(
            plan.files.iter().map(|f| f.path.as_path()).collect(),
            &plan.writes,
            &created,
            MAX_OPEN_FILES,
            opts.zeros,
        );
        self.write_content(&plan, &targets)?;
        drop(targets);
        tracing::debug!(
            secs = started.elapsed().as_secs_f64(),
            "restore content written"
        );

        // Metadata: files and others first, then directories deepest first.
        let restored: Vec<&PlannedFile> = plan
            .files
            .iter()
            .zip(&created)
            .filter(|(_, &c)| c)
            .map(|(f, _)| f)
            .collect();
        restored
            .par_iter()
            .for_each(|f| self.apply_metadata(&f.path, &f.node));
        for (p, n) in &plan.others {
            self.apply_metadata(p, n);
        }
        for (p, n) in plan.dirs.iter().rev() {
            self.apply_metadata(p, n);
        }

        let mut report = RestoreReport {
            files: restored.len() as u64,
            dirs: plan.dirs.len() as u64,
            other: plan.others.len() as u64,
            bytes: restored.iter().map(|f| f.node.size).sum(),
            ..Default::default()
        };
        if opts.verify {
            report.verified_files = self.verify(&restored);
        }
        Ok(report)
    }

    /// Verifies restored files, warning about each that differs; returns how many are equal.
    fn verify(&self, files: &[&PlannedFile]) -> u64 {
        let failures: Vec<Warning> = files
            .par_iter()
            .filter_map(|f| {
                self.verify_file(f)
                    .err()
                    .map(|e| Warning::new(&f.path, Operation::Verify, ErrorClass::Corruption, e))
            })
            .collect();
        let equal = files.len() as u64 - failures.len() as u64;
        for w in failures {
            self.warn(w);
        }
        equal
    }

    /// Content: packs in parallel, costliest first; within a pack, blobs in offset order.
    fn write_content(&self, plan: &Plan, targets: &TargetFiles<'_>) -> Result<(), RestoreError> {
        let mut packs: Vec<(&Id, &HashMap<Id, PlannedBlob>)> = plan.packs.iter().collect();
        packs.sort_by_cached_key(|(_, blobs)| std::cmp::Reverse(pack_cost(blobs)));
        // Every thread of the pool takes the next pack until none is left (or one failed).
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let threads = rayon::current_num_threads();
        let backend: &dyn Backend = self.repo.repo().backend().as_ref();
        for (pack, blobs) in packs.iter().take(threads) {
            will_read_pack(backend, pack, blobs);
        }
        let results = rayon::broadcast(|_| {
            let mut bufs = PackBuffers::default();
            while !failed.load(Ordering::Relaxed) {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((pack, blobs)) = packs.get(k) else {
                    break;
                };
                // The pack one round ahead (each thread takes one in turn) is fetched in the
                // background while this one is restored.
                if let Some((ahead, ahead_blobs)) = packs.get(k + threads) {
                    will_read_pack(backend, ahead, ahead_blobs);
                }
                if let Err(e) = self.restore_pack(pack, blobs, targets, &mut bufs) {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(())
        });
        // A cancelled restore reports what every thread wrote, not what the first one saw.
        if results
            .iter()
            .any(|r| matches!(r, Err(RestoreError::Canceled { .. })))
        {
            return Err(self.canceled());
        }
        results
            .into_iter()
            .collect::<Result<Vec<()>, RestoreError>>()?;
        Ok(())
    }

    /// Writes one file of the snapshot into a device or regular file of its size, in place.
    fn restore_in_place(
        &self,
        snapshot: &Snapshot,
        path: &Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport, RestoreError> {
        let tio = |e: io::Error| RestoreError::Target {
            path: path.display().to_string(),
            source: e,
        };
        let node = self.single_file(snapshot, opts)?;
        // Neither created nor truncated: it must be there, and as large as the file.
        let mut file = OpenOptions::new().write(true).open(path).map_err(tio)?;
        let target_size = crate::sys::device_size(&mut file).map_err(tio)?;
        if target_size != node.size {
            return Err(RestoreError::SizeMismatch {
                path: path.display().to_string(),
                target_size,
                file_size: node.size,
            });
        }
        let is_file = file.metadata().map_err(tio)?.is_file();
        let mut plan = Plan::default();
        let rel = node.name.0.clone();
        self.plan_file(&mut plan, node, path, rel)?;
        self.meter.expect(1, Some(plan.total_bytes));
        self.meter.set_current(|| path.display().to_string());
        // What the snapshot has as holes must read as zeros: what the target held there is
        // not the file's.
        for &(offset, len) in &plan.files[0].node.holes {
            self.check_canceled()?;
            zero_range(&file, is_file, offset, len).map_err(tio)?;
        }
        // Zeros inside the content are written: the target's old bytes are under them.
        let mut targets = TargetFiles::new(vec![path], &plan.writes, &[true], 1, Zeros::Write);
        targets.nofollow = false;
        if plan.writes[0] == 0 {
            Meter::add(&self.meter.files_done, 1);
        }
        self.write_content(&plan, &targets)?;
        drop(targets);
        // A write that failed was a warning for a directory's file; here it is the restore.
        if let Some(w) = self.warnings.lock().unwrap().pop() {
            return Err(tio(io::Error::other(w.message)));
        }
        file.sync_all().map_err(tio)?;
        let f = &plan.files[0];
        let mut report = RestoreReport {
            files: 1,
            bytes: f.node.size,
            ..Default::default()
        };
        if opts.verify {
            report.verified_files = self.verify(&[f]);
        }
        Ok(report)
    }

    /// Writes one file of the snapshot to a stream, in order, holes as zeros. Blobs are
    /// fetched a window at a time in parallel and written in order.
    fn restore_stream(
        &self,
        snapshot: &Snapshot,
        w: &mut dyn Write,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport, RestoreError> {
        let node = self.single_file(snapshot, opts)?;
        let name = node.name.lossy();
        let wio = |e: io::Error| RestoreError::Target {
            path: format!("stream of {name}"),
            source: e,
        };
        self.meter.expect(1, Some(node.size));
        self.meter.set_current(|| name.clone());
        let zeros = vec![0u8; ZEROS_AT_ONCE];
        let mut pos = 0u64;
        let put_zeros = |w: &mut dyn Write, pos: &mut u64, to: u64| -> io::Result<()> {
            while *pos < to {
                let n = (to - *pos).min(ZEROS_AT_ONCE as u64) as usize;
                w.write_all(&zeros[..n])?;
                *pos += n as u64;
            }
            Ok(())
        };
        let mut holes = node.holes.iter().peekable();
        let window = rayon::current_num_threads().max(1) * 2;
        for ids in node.content.chunks(window) {
            self.check_canceled()?;
            let blobs: Vec<Result<Vec<u8>, RepoError>> = ids
                .par_iter()
                .map(|id| self.repo.read_blob(BlobType::Data, id))
                .collect();
            for blob in blobs {
                let blob = blob?;
                let at = skip_holes(&mut holes, pos);
                put_zeros(w, &mut pos, at).map_err(wio)?;
                w.write_all(&blob).map_err(wio)?;
                pos += blob.len() as u64;
                Meter::add(&self.meter.bytes_done, blob.len() as u64);
            }
        }
        put_zeros(w, &mut pos, node.size).map_err(wio)?;
        w.flush().map_err(wio)?;
        Meter::add(&self.meter.files_done, 1);
        Ok(RestoreReport {
            files: 1,
            bytes: node.size,
            ..Default::default()
        })
    }
}

/// Makes `len` bytes at `offset` of a target written in place read as zeros: nothing to do
/// where a regular file has a hole already; a hole punched where the file system or device
/// can; zeros written elsewhere.
fn zero_range(file: &File, is_file: bool, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    if is_file {
        match crate::sys::seek_data_or_hole(file, offset, true) {
            Ok(None) => return Ok(()),
            Ok(Some(data)) if data >= offset + len => return Ok(()),
            _ => {}
        }
    }
    match crate::sys::punch_hole(file, offset, len) {
        Ok(()) => return Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL | libc::ENODEV | libc::ENOTTY)
            ) => {}
        Err(e) => return Err(e),
    }
    let zeros = vec![0u8; ZEROS_AT_ONCE.min(len as usize)];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
        names
            .iter()
            .map(|n| {
                let path = dir.join(n);
                File::create(&path).unwrap();
                path
            })
            .collect()
    }

    fn refs(paths: &[PathBuf]) -> Vec<&Path> {
        paths.iter().map(PathBuf::as_path).collect()
    }

    #[test]
    fn target_file_is_closed_after_its_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let files = created(dir.path(), &["a"]);
        let t = TargetFiles::new(refs(&files), &[3], &[true], 8, Zeros::Write);
        assert!(t.write(0, b"xx", 0).unwrap());
        assert!(t.write(0, b"yy", 4).unwrap());
        assert_eq!(t.open_count(), 1, "kept open while writes are due");
        assert!(t.write(0, b"zz", 2).unwrap());
        assert_eq!(t.open_count(), 0, "closed after the last write");
        assert_eq!(fs::read(&files[0]).unwrap(), b"xxzzyy");
    }

    #[test]
    fn open_target_files_stay_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let files = created(dir.path(), &names);
        let t = TargetFiles::new(refs(&files), &[2; 10], &[true; 10], 3, Zeros::Write);
        for i in 0..10u32 {
            t.write(i, b"a", 0).unwrap();
            assert!(t.open_count() <= 3);
        }
        // Evicted files reopen for their last write, and nothing stays open at the end.
        for i in 0..10u32 {
            t.write(i, b"b", 1).unwrap();
        }
        assert_eq!(t.open_count(), 0);
        for f in &files {
            assert_eq!(fs::read(f).unwrap(), b"ab");
        }
    }

    #[test]
    fn failing_target_file_is_reported_once_then_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = created(dir.path(), &["a"]);
        files[0] = dir.path().join("missing");
        let t = TargetFiles::new(refs(&files), &[3], &[true], 8, Zeros::Write);
        assert!(t.write(0, b"x", 0).is_err());
        assert!(!t.write(0, b"x", 1).unwrap());
        assert!(!t.write(0, b"x", 2).unwrap());
        assert_eq!(t.open_count(), 0);
    }

    #[test]
    fn target_file_that_was_not_created_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let files = created(dir.path(), &["a"]);
        let t = TargetFiles::new(refs(&files), &[1], &[false], 8, Zeros::Write);
        assert!(!t.write(0, b"x", 0).unwrap());
        assert_eq!(fs::read(&files[0]).unwrap(), b"");
    }

    #[test]
    fn zero_runs_are_whole_aligned_blocks_of_the_minimum_length() {
        let b = ZERO_BLOCK;
        let mut data = vec![1u8; 40 * b];
        // Zeros from 3.5 blocks to 30 blocks: 26 whole blocks, from block 4.
        data[b * 7 / 2..30 * b].fill(0);
        assert_eq!(zero_runs(&data, 0), vec![4 * b..30 * b]);
        // The same bytes at an offset that is not a block boundary: blocks are counted from
        // the file's start.
        assert_eq!(zero_runs(&data, 512), vec![4 * b - 512..30 * b - 512]);
        // A run shorter than the minimum is written like any other bytes.
        let mut short = vec![1u8; 40 * b];
        short[b..b + MIN_ZERO_RUN - b].fill(0);
        assert!(zero_runs(&short, 0).is_empty());
        // Runs at both ends, and one nonzero byte breaking a run.
        let mut ends = vec![0u8; 60 * b];
        ends[30 * b + 100] = 7;
        assert_eq!(zero_runs(&ends, 0), vec![0..30 * b, 31 * b..60 * b]);
        // Small blobs are not scanned.
        assert!(zero_runs(&vec![0u8; MIN_ZERO_RUN - 1], 0).is_empty());
    }

    #[test]
    fn zeros_are_restored_the_same_in_every_mode() {
        let mut data = random_like(3 << 20);
        data[(1 << 20) + 5..(5 << 19) + 3].fill(0);
        let zeros_at_end = vec![0u8; 1 << 20];
        for zeros in [Zeros::Write, Zeros::Allocate, Zeros::Hole] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let size = (data.len() + zeros_at_end.len() + 1000) as u64;
            create_file(&path, size).unwrap();
            let files = vec![path.clone()];
            let t = TargetFiles::new(refs(&files), &[2], &[true], 8, zeros);
            assert!(t.write(0, &zeros_at_end, data.len() as u64 + 1000).unwrap());
            assert!(t.write(0, &data, 1000).unwrap());
            let mut want = vec![0u8; 1000];
            want.extend_from_slice(&data);
            want.extend_from_slice(&zeros_at_end);
            assert!(fs::read(&path).unwrap() == want, "{zeros:?}: bytes differ");
            use std::os::unix::fs::MetadataExt;
            let blocks = fs::metadata(&path).unwrap().blocks() * 512;
            match zeros {
                // The file systems tests run on allocate, and keep holes.
                Zeros::Write | Zeros::Allocate => assert!(blocks >= size, "{zeros:?}: sparse"),
                Zeros::Hole => assert!(blocks < size - (1 << 20), "{zeros:?}: not sparse"),
            }
        }
    }

    /// Bytes without runs of zeros.
    fn random_like(len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 | 1)
            .collect()
    }

    #[test]
    fn a_pack_written_to_many_files_costs_more_than_one_written_once() {
        let blob = |uses: u32| PlannedBlob {
            id: Id([uses as u8; 32]),
            offset: 0,
            length: 1 << 20,
            raw_length: 2 << 20,
            uses: (0..uses).map(|file| BlobUse { file, offset: 0 }).collect(),
        };
        let pack = |b: PlannedBlob| HashMap::from([(b.id, b)]);
        assert!(pack_cost(&pack(blob(5))) > pack_cost(&pack(blob(1))));
    }

    #[test]
    fn a_directory_is_never_created_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(create_dir(&link).is_err());
        create_dir(&outside).unwrap();
        create_dir(&dir.path().join("new")).unwrap();
        assert!(dir.path().join("new").is_dir());
    }

    #[test]
    fn target_files_are_not_opened_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        File::create(&outside).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let files = vec![link];
        let t = TargetFiles::new(refs(&files), &[1], &[true], 8, Zeros::Write);
        assert!(t.write(0, b"x", 0).is_err());
        assert_eq!(fs::read(&outside).unwrap(), b"");
    }
}
