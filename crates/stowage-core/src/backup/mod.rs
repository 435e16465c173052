//! Backup: walk the source, store file content and trees, write a snapshot.
//!
//! The pipeline: one walker thread lists directories in sorted order and decides, per file,
//! whether the parent snapshot's content can be reused (same size, mtime, ctime and inode). Files
//! that must be read go through a bounded queue to reader threads (two per core, so that one
//! waiting for the disk leaves its core to another) that chunk, hash, compress and encrypt them.
//! A file longer than the smallest chunk needs one of the `threads` full-size chunkers, so at
//! most that many large files are read at once, and fans its chunks out over all cores. A
//! directory's tree blob is written by whichever thread completes its last entry, so no thread
//! waits on another and the walker is never more than the queue length ahead. The snapshot is
//! written only after every pack and index file is stored.

pub mod source;

use crate::chunker::Chunker;
use crate::id::{BlobType, Id};
use crate::repo::session::{BackupWork, Indexed};
use crate::repo::snapshot::{Snapshot, SnapshotSummary};
use crate::repo::tree::{ByteString, Node, NodeKind, Timestamp, Tree};
use crate::repo::writer::BlobWriter;
use crate::repo::{IndexedRepo, RepoError};
use crossbeam_channel::{bounded, Receiver, Sender};
use source::{node_from_metadata, read_mode, regions, ContentReader, Excludes, OwnerNames, Region};
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Reader threads per worker thread (see `--threads`).
const READERS_PER_THREAD: usize = 3;

/// Errors that stop a backup. (Unreadable entries below the given paths do not: they are
/// warnings and make the snapshot incomplete.)
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{path}: {source}")]
    Source {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Which snapshot to compare with to skip unchanged files.
#[derive(Clone, Debug, Default)]
pub enum ParentChoice {
    /// The latest snapshot of the same host and paths.
    #[default]
    Latest,
    /// Read every file.
    None,
    Id(Id),
}

/// What to back up and how.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    /// Back up standard input as one file of this name instead of `paths`.
    pub stdin_filename: Option<String>,
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub hostname: Option<String>,
    pub excludes: Vec<String>,
    pub one_file_system: bool,
    pub parent: ParentChoice,
    /// Read every file even when the parent snapshot says it is unchanged.
    pub force_read: bool,
    /// Worker threads (default: number of cores); twice as many threads read files.
    pub threads: usize,
    /// Read every file through the page cache, never with direct I/O (see
    /// [`source::read_mode`]).
    pub no_direct_io: bool,
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct BackupProgress {
    pub files_done: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_added: AtomicU64,
    pub errors: AtomicU64,
}

/// The result of a backup.
#[derive(Debug)]
pub struct BackupReport {
    pub snapshot_id: Id,
    pub snapshot: Snapshot,
    pub parent: Option<Id>,
    /// Entries that could not be read (the snapshot is then marked incomplete).
    pub warnings: Vec<String>,
}

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unchanged: AtomicU64,
    total_bytes: AtomicU64,
    total_files: AtomicU64,
}

/// How a node compares with the parent snapshot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Novelty {
    New,
    Changed,
    Unchanged,
}

/// A directory whose tree is being assembled. It is finished when `remaining` drops to zero.
struct DirState {
    slots: Mutex<Vec<Option<Node>>>,
    remaining: AtomicUsize,
    /// The directory's own node, and where it goes in its parent; `None` for the root.
    place: Option<(Node, Arc<DirState>, usize)>,
    old_subtree: Option<Id>,
}

struct Job {
    path: PathBuf,
    node: Node,
    dir: Arc<DirState>,
    slot: usize,
    novelty: Novelty,
}

struct Ctx<'a> {
    repo: Arc<IndexedRepo>,
    writer: BlobWriter,
    owners: OwnerNames,
    excludes: Excludes,
    one_file_system: bool,
    counters: Counters,
    progress: &'a BackupProgress,
    warnings: Mutex<Vec<String>>,
    fatal: Mutex<Option<RepoError>>,
    root_tree: Mutex<Option<Id>>,
    hardlinks: Mutex<HashMap<(u64, u64), Vec<u8>>>,
    threads: usize,
    force_read: bool,
    allow_direct: bool,
    /// Chunkers for files that may span several chunks, `threads` of them: a reader takes one
    /// for such a file, so however many readers there are, at most `threads` large streams run
    /// at once and only their chunkers grow to full size (readers' own chunkers, used for
    /// files that fit in the smallest chunk, stay small).
    stream_chunkers: (Sender<Chunker>, Receiver<Chunker>),
    /// Buffers of chunks handed to other threads, shared by the streams that hold a permit.
    chunk_buffers: Mutex<Vec<Batch>>,
}

impl Ctx<'_> {
    fn warn(&self, msg: String) {
        tracing::warn!("{msg}");
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.warnings.lock().unwrap().push(msg);
    }

    fn fail(&self, e: RepoError) {
        let mut f = self.fatal.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
    }

    fn failed(&self) -> bool {
        self.fatal.lock().unwrap().is_some()
    }

    /// Fills one slot of a directory; finishes the directory if it was the last.
    fn complete(&self, dir: &Arc<DirState>, slot: usize, node: Option<Node>) {
        if let Some(n) = node {
            dir.slots.lock().unwrap()[slot] = Some(n);
        }
        self.release(dir);
    }

    fn release(&self, dir: &Arc<DirState>) {
        if dir.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish_dir(dir);
        }
    }

    fn finish_dir(&self, dir: &Arc<DirState>) {
        let nodes: Vec<Node> = std::mem::take(&mut *dir.slots.lock().unwrap())
            .into_iter()
            .flatten()
            .collect();
        let tree = Tree { nodes };
        let id = match self.writer.add(BlobType::Tree, &tree.encode()) {
            Ok((id, _)) => Some(id),
            Err(e) => {
                self.fail(e);
                None
            }
        };
        match &dir.place {
            None => *self.root_tree.lock().unwrap() = id,
            Some((node, parent, slot)) => {
                let counter = match dir.old_subtree {
                    None => &self.counters.dirs_new,
                    Some(old) if Some(old) == id => &self.counters.dirs_unchanged,
                    Some(_) => &self.counters.dirs_changed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let mut node = node.clone();
                node.subtree = id;
                self.complete(parent, *slot, id.map(|_| node));
            }
        }
    }

    fn count_file(&self, novelty: Novelty, size: u64) {
        let c = match novelty {
            Novelty::New => &self.counters.files_new,
            Novelty::Changed => &self.counters.files_changed,
            Novelty::Unchanged => &self.counters.files_unchanged,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.counters.total_files.fetch_add(1, Ordering::Relaxed);
        self.counters.total_bytes.fetch_add(size, Ordering::Relaxed);
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores one chunk, returning its id.
    fn store_chunk(&self, data: &[u8]) -> Result<Id, RepoError> {
        let (id, new) = self.writer.add(BlobType::Data, data)?;
        self.progress
            .bytes_read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if new {
            self.progress
                .bytes_added
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Ok(id)
    }

    /// Chunks a stream and stores its chunks. A stream of one chunk (most files) is stored
    /// straight from the chunker's buffer; longer streams keep `threads + 1` batches of chunks
    /// (about [`BATCH_BYTES`] each) in flight on the rayon pool while this thread reads and
    /// cuts the next ones, so a single huge file still uses every core, in buffers reused from
    /// batch to batch and stream to stream. Batches are stored in any order; their ids are put
    /// back in stream order.
    fn store_stream<R: Read + ?Sized>(
        &self,
        chunker: &mut Chunker,
        r: &mut R,
        out: &mut Vec<Id>,
    ) -> Result<u64, StreamError> {
        chunker.reset();
        let min = chunker.params().min_size as usize;
        let Some(first) = chunker.next_chunk_ref(r).map_err(StreamError::Io)? else {
            return Ok(0);
        };
        let mut total = first.data.len() as u64;
        if first.last {
            let stored = if first.data.len() <= min {
                self.store_chunk(first.data)
            } else {
                // Sealed on a worker: only the `threads` workers then keep a sealing buffer of
                // the largest chunk size, not every reader.
                rayon::scope(|_| self.store_chunk(first.data))
            };
            out.push(stored.map_err(StreamError::Repo)?);
            return Ok(total);
        }
        // One batch more than there are workers: a worker that finishes finds the next batch
        // already cut, while the reader (which shares the cores) reads and cuts another.
        let window = self.threads.max(2) + 1;
        // Batches at once: `window` being stored, and the one being filled.
        let buffers = window + 1;
        let mut spare: Vec<Batch> = {
            let mut pool = self.chunk_buffers.lock().unwrap();
            let keep = pool.len().saturating_sub(buffers);
            pool.split_off(keep)
        };
        // Batches finish in any order: a worker that is done with a small one gets the next
        // at once instead of waiting for an older, larger one to finish first. Ids go to
        // their place in `ids` by sequence number.
        type Done = (usize, Result<Vec<Id>, RepoError>, Batch);
        let (done_tx, done_rx) = bounded::<Done>(window);
        let mut ids: Vec<Option<Vec<Id>>> = Vec::new();
        let mut in_flight = 0usize;
        let mut failure: Option<StreamError> = None;
        let reap = |(seq, stored, batch): Done,
                    ids: &mut Vec<Option<Vec<Id>>>,
                    spare: &mut Vec<Batch>,
                    failure: &mut Option<StreamError>| {
            spare.push(batch);
            match stored {
                Ok(batch_ids) => ids[seq] = Some(batch_ids),
                Err(e) => {
                    failure.get_or_insert(StreamError::Repo(e));
                }
            }
        };
        let mut batch = spare.pop().unwrap_or_default();
        batch.clear();
        batch.push(first.data);
        rayon::in_place_scope(|scope| {
            loop {
                let more = if batch.len() >= BATCH_BYTES {
                    true
                } else {
                    match chunker.next_chunk_ref(r) {
                        Ok(Some(c)) => {
                            total += c.data.len() as u64;
                            batch.push(c.data);
                            continue;
                        }
                        Ok(None) => false,
                        Err(e) => {
                            failure.get_or_insert(StreamError::Io(e));
                            false
                        }
                    }
                };
                while in_flight >= window {
                    let done = done_rx.recv().expect("batch task always answers");
                    in_flight -= 1;
                    reap(done, &mut ids, &mut spare, &mut failure);
                }
                if failure.is_some() || batch.is_empty() {
                    break;
                }
                let seq = ids.len();
                ids.push(None);
                let tx = done_tx.clone();
                let full = std::mem::replace(&mut batch, spare.pop().unwrap_or_default());
                batch.clear();
                scope.spawn(move |_| {
                    let stored = full.chunks().map(|c| self.store_chunk(c)).collect();
                    let _ = tx.send((seq, stored, full));
                });
                in_flight += 1;
                if !more {
                    break;
                }
            }
            // Let the tasks in flight finish, also before reporting an error.
            while in_flight > 0 {
                let done = done_rx.recv().expect("batch task always answers");
                in_flight -= 1;
                reap(done, &mut ids, &mut spare, &mut failure);
            }
        });
        spare.push(batch);
        let result = match failure {
            Some(e) => Err(e),
            None => {
                for batch_ids in ids {
                    out.extend(batch_ids.expect("every batch answered"));
                }
                Ok(total)
            }
        };
        let mut pool = self.chunk_buffers.lock().unwrap();
        pool.append(&mut spare);
        // Streams with a permit never need more than this between them.
        pool.truncate(self.threads.max(1) * buffers);
        result
    }

    /// Reads a file's content into its node.
    fn read_file(
        &self,
        chunker: &mut Chunker,
        path: &Path,
        node: &mut Node,
    ) -> Result<(), StreamError> {
        let open = |flags| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path)
        };
        // O_NOATIME is refused (EPERM) on files we do not own unless we are root.
        let f = match open(libc::O_NOFOLLOW | libc::O_NOATIME) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(libc::O_NOFOLLOW),
            r => r,
        }
        .map_err(StreamError::Io)?;
        let meta = f.metadata().map_err(StreamError::Io)?;
        if !meta.is_file() {
            return Err(StreamError::Io(io::Error::other(
                "is no longer a regular file",
            )));
        }
        // Large files are cut with the large-file chunk sizes, if the repository has them.
        let spec = self.repo.repo().chunker_for_file(meta.len());
        // A file longer than the smallest chunk may become several chunks in flight at once;
        // the reader's own chunker serves the rest of the files (for those, that of the
        // general chunk sizes).
        let own =
            Arc::ptr_eq(spec, chunker.spec()) && meta.len() <= u64::from(spec.params().min_size);
        let mut lent = (!own).then(|| {
            let mut chunker = self
                .stream_chunkers
                .1
                .recv()
                .expect("never closed while used");
            chunker.set_spec(spec);
            Lent(Some(chunker), &self.stream_chunkers.0)
        });
        let chunker = match &mut lent {
            Some(l) => l.0.as_mut().expect("held until dropped"),
            None => chunker,
        };
        let mut content = Vec::new();
        let mut holes = Vec::new();
        let mut size = 0;
        let mut source = ContentReader::new(&f, read_mode(&f, meta.len(), self.allow_direct));
        for region in regions(&f, &meta) {
            match region {
                Region::Hole { offset, len } => {
                    holes.push((offset, len));
                    size = offset + len;
                }
                Region::Data { offset, len } => {
                    source.set_region(offset, len);
                    let read = self.store_stream(chunker, &mut source, &mut content)?;
                    // A file that shrank while we read it is recorded as what we read.
                    size = offset + read;
                    if read < len {
                        holes.retain(|&(o, _)| o < size);
                        break;
                    }
                }
            }
        }
        node.size = size;
        node.content = content;
        node.holes = holes;
        Ok(())
    }
}

enum StreamError {
    Io(io::Error),
    Repo(RepoError),
}

/// A chunker taken from [`Ctx::stream_chunkers`], given back when dropped.
struct Lent<'a>(Option<Chunker>, &'a Sender<Chunker>);

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = self.1.send(c);
        }
    }
}

fn new_chunker(repo: &IndexedRepo) -> Chunker {
    Chunker::new(repo.repo().chunker().clone())
}

/// Bytes of consecutive chunks that one task stores: small chunks (those of large files) are
/// handed to the workers in batches of about this size, so that a task is worth the hand-over
/// whatever the chunk size; a chunk of this size or more is a batch of its own.
const BATCH_BYTES: usize = 1 << 20;

/// Consecutive chunks of a stream, copied out of the chunker, stored by one task.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lens: Vec<usize>,
}

impl Batch {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        self.lens.push(chunk.len());
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.lens.clear();
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0;
        self.lens.iter().map(move |&len| {
            at += len;
            &self.bytes[at - len..at]
        })
    }
}

fn file_unchanged(old: &Node, new: &Node) -> bool {
    old.has_content()
        && old.size == new.size
        && old.mtime == new.mtime
        && old.ctime == new.ctime
        && old.inode == new.inode
}

/// Makes a path absolute and removes `.` and `..` components without resolving symlinks.
fn absolute_clean(p: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Runs a backup in `session` and writes its snapshot. The snapshot is stored only if the
/// session's lock is still certainly live, so a prune cannot have taken this backup for dead
/// and deleted data it references.
pub fn run(
    session: &Indexed<BackupWork>,
    opts: &BackupOptions,
    progress: &BackupProgress,
) -> Result<BackupReport, BackupError> {
    run_inner(
        session.indexed().clone(),
        opts,
        progress,
        session.held_lock(),
    )
}

fn run_inner(
    repo: Arc<IndexedRepo>,
    opts: &BackupOptions,
    progress: &BackupProgress,
    lock: Option<&crate::repo::lock::Lock>,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let time = chrono::Utc::now();
    let hostname = opts.hostname.clone().unwrap_or_else(crate::util::hostname);
    let excludes = Excludes::new(&opts.excludes).map_err(BackupError::Invalid)?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        opts.threads
    };

    // Top-level entries: checked up front, so a missing path fails before anything is written.
    let mut tops: Vec<(PathBuf, ByteString)> = Vec::new();
    let paths: Vec<String> = if let Some(name) = &opts.stdin_filename {
        crate::repo::tree::validate_name(name.as_bytes())
            .map_err(|e| BackupError::Invalid(format!("--stdin-filename: {e}")))?;
        vec![format!("/{name}")]
    } else {
        if opts.paths.is_empty() {
            return Err(BackupError::Invalid(
                "nothing to back up: give at least one path".into(),
            ));
        }
        for p in &opts.paths {
            let abs = absolute_clean(p).map_err(|e| BackupError::Source {
                path: p.display().to_string(),
                source: e,
            })?;
            std::fs::symlink_metadata(&abs).map_err(|e| BackupError::Source {
                path: p.display().to_string(),
                source: e,
            })?;
            let name = abs
                .file_name()
                .map(ByteString::from_os)
                .unwrap_or_else(|| ByteString(b"root".to_vec()));
            if tops.iter().any(|(_, n)| *n == name) {
                return Err(BackupError::Invalid(format!(
                    "two paths are named {:?}; back them up separately",
                    name.lossy()
                )));
            }
            tops.push((abs, name));
        }
        tops.sort_by(|a, b| a.1.cmp(&b.1));
        let mut v: Vec<String> = tops.iter().map(|(p, _)| p.display().to_string()).collect();
        v.sort();
        v
    };

    let parent = match &opts.parent {
        ParentChoice::None => None,
        ParentChoice::Id(id) => Some((*id, repo.repo().read_snapshot(id)?)),
        ParentChoice::Latest => repo
            .repo()
            .list_snapshots()?
            .into_iter()
            .rev()
            .find(|(_, s)| s.hostname == hostname && s.paths == paths),
    };
    let old_root = match &parent {
        Some((_, s)) => match repo.read_tree(&s.tree) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("parent snapshot unreadable, reading every file: {e}");
                None
            }
        },
        None => None,
    };

    let ctx = Ctx {
        writer: BlobWriter::new(repo.clone(), repo.repo().backend().preferred_uploaders()),
        repo: repo.clone(),
        owners: OwnerNames::default(),
        excludes,
        one_file_system: opts.one_file_system,
        counters: Counters::default(),
        progress,
        warnings: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
        root_tree: Mutex::new(None),
        hardlinks: Mutex::new(HashMap::new()),
        threads,
        force_read: opts.force_read,
        allow_direct: !opts.no_direct_io,
        stream_chunkers: {
            let (tx, rx) = bounded(threads);
            for _ in 0..threads {
                tx.send(new_chunker(&repo)).expect("room for every chunker");
            }
            (tx, rx)
        },
        chunk_buffers: Mutex::new(Vec::new()),
    };

    let n_top = if opts.stdin_filename.is_some() {
        1
    } else {
        tops.len()
    };
    let root = Arc::new(DirState {
        slots: Mutex::new(vec![None; n_top]),
        remaining: AtomicUsize::new(n_top + 1),
        place: None,
        old_subtree: parent.as_ref().map(|(_, s)| s.tree),
    });

    if let Some(name) = &opts.stdin_filename {
        let mut node = Node::new(ByteString(name.as_bytes().to_vec()), NodeKind::File);
        let now = chrono::Utc::now();
        let ts = Timestamp(now.timestamp(), now.timestamp_subsec_nanos());
        node.mode = 0o644;
        node.uid = nix::unistd::getuid().as_raw();
        node.gid = nix::unistd::getgid().as_raw();
        node.mtime = ts;
        node.ctime = ts;
        node.atime = ts;
        let mut chunker = Chunker::new(repo.repo().chunker_for_stream().clone());
        let mut stdin = io::stdin().lock();
        let mut content = Vec::new();
        match ctx.store_stream(&mut chunker, &mut stdin, &mut content) {
            Ok(n) => node.size = n,
            Err(StreamError::Repo(e)) => return Err(e.into()),
            Err(StreamError::Io(e)) => {
                return Err(BackupError::Source {
                    path: "standard input".into(),
                    source: e,
                })
            }
        }
        node.content = content;
        ctx.count_file(Novelty::New, node.size);
        ctx.complete(&root, 0, Some(node));
        ctx.release(&root);
    } else {
        let (tx, rx) = bounded::<Job>(threads * 64);
        std::thread::scope(|scope| {
            // Three readers per core: a reader waiting for the disk (small files on a cold
            // cache, direct reads) leaves its core to another (two per core left ~20% of the
            // cores idle on a tree of small files read from a cold cache).
            for _ in 0..threads * READERS_PER_THREAD {
                let rx = rx.clone();
                let ctx = &ctx;
                scope.spawn(move || {
                    let mut chunker = new_chunker(&ctx.repo);
                    for mut job in rx {
                        if ctx.failed() {
                            ctx.complete(&job.dir, job.slot, None);
                            continue;
                        }
                        match ctx.read_file(&mut chunker, &job.path, &mut job.node) {
                            Ok(()) => {
                                ctx.count_file(job.novelty, job.node.size);
                                ctx.complete(&job.dir, job.slot, Some(job.node));
                            }
                            Err(StreamError::Io(e)) => {
                                ctx.warn(format!("{}: {e}", job.path.display()));
                                ctx.complete(&job.dir, job.slot, None);
                            }
                            Err(StreamError::Repo(e)) => {
                                ctx.fail(e);
                                ctx.complete(&job.dir, job.slot, None);
                            }
                        }
                    }
                });
            }
            drop(rx);
            let old_nodes = index_nodes(old_root.as_ref());
            for (i, (path, name)) in tops.iter().enumerate() {
                let old = old_nodes.get(name.0.as_slice()).copied();
                walk_entry(
                    &ctx,
                    &tx,
                    &root,
                    i,
                    path,
                    name.clone(),
                    name.0.clone(),
                    old,
                    None,
                );
            }
            ctx.release(&root);
            drop(tx);
        });
    }

    let writer_summary = {
        let Ctx { writer, .. } = ctx;
        let root_tree = *ctx.root_tree.lock().unwrap();
        if let Some(e) = ctx.fatal.lock().unwrap().take() {
            drop(writer);
            return Err(e.into());
        }
        let summary = writer.finish()?;
        (summary, root_tree)
    };
    let (ws, root_tree) = writer_summary;
    let root_tree =
        root_tree.ok_or_else(|| BackupError::Invalid("no root tree was written".into()))?;
    let warnings = std::mem::take(&mut *ctx.warnings.lock().unwrap());
    let c = &ctx.counters;
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let snapshot = Snapshot {
        time,
        hostname,
        username: crate::util::username(),
        paths,
        tags: opts.tags.clone(),
        tree: root_tree,
        parent: parent.as_ref().map(|(id, _)| *id),
        excludes: ctx.excludes.patterns().to_vec(),
        incomplete: !warnings.is_empty(),
        program: format!("stowage {}", env!("CARGO_PKG_VERSION")),
        summary: SnapshotSummary {
            files_new: ld(&c.files_new),
            files_changed: ld(&c.files_changed),
            files_unchanged: ld(&c.files_unchanged),
            dirs_new: ld(&c.dirs_new),
            dirs_changed: ld(&c.dirs_changed),
            dirs_unchanged: ld(&c.dirs_unchanged),
            bytes_read: ld(&progress.bytes_read),
            bytes_added: ws.bytes_added,
            bytes_added_stored: ws.bytes_stored,
            blobs_added: ws.blobs_added,
            total_bytes: ld(&c.total_bytes),
            total_files: ld(&c.total_files),
            errors: warnings.len() as u64,
            duration_secs: started.elapsed().as_secs_f64(),
        },
    };
    if lock.is_some_and(|l| !l.still_held()) {
        return Err(BackupError::Invalid(
            "the backup lock could not be refreshed for too long; the data is stored, but no snapshot was written (run the backup again)".into(),
        ));
    }
    let snapshot_id = repo.repo().save_snapshot(&snapshot)?;
    Ok(BackupReport {
        snapshot_id,
        snapshot,
        parent: parent.map(|(id, _)| id),
        warnings,
    })
}

fn index_nodes(tree: Option<&Tree>) -> HashMap<&[u8], &Node> {
    tree.map(|t| t.nodes.iter().map(|n| (n.name.0.as_slice(), n)).collect())
        .unwrap_or_default()
}

/// Handles one directory entry on the walker thread.
#[allow(clippy::too_many_arguments)]
fn walk_entry(
    ctx: &Ctx,
    jobs: &Sender<Job>,
    dir: &Arc<DirState>,
    slot: usize,
    path: &Path,
    name: ByteString,
    rel: Vec<u8>,
    old: Option<&Node>,
    top_dev: Option<u64>,
) {
    if ctx.failed() {
        ctx.complete(dir, slot, None);
        return;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            ctx.warn(format!("{}: {e}", path.display()));
            ctx.complete(dir, slot, None);
            return;
        }
    };
    let mut node = match node_from_metadata(path, name, &meta, &ctx.owners) {
        Ok(n) => n,
        Err(e) => {
            ctx.warn(format!("{}: {e}", path.display()));
            ctx.complete(dir, slot, None);
            return;
        }
    };
    // Reading a file or listing a directory moves its access time. So that an unchanged entry
    // gives an unchanged tree (and no new data), an entry whose mtime and ctime did not move
    // keeps the access time recorded by the parent snapshot.
    if let Some(o) = old {
        let same_kind =
            o.kind == node.kind || (o.kind == NodeKind::Hardlink && node.kind == NodeKind::File);
        if same_kind && o.mtime == node.mtime && o.ctime == node.ctime {
            node.atime = o.atime;
        }
    }
    match node.kind {
        NodeKind::Dir => {
            let top_dev = top_dev.unwrap_or(meta.dev());
            let old_subtree = old
                .filter(|o| o.kind == NodeKind::Dir)
                .and_then(|o| o.subtree);
            let old_tree = old_subtree.and_then(|id| match ctx.repo.read_tree(&id) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!("parent tree of {} unreadable: {e}", path.display());
                    None
                }
            });
            let crosses_fs = ctx.one_file_system && meta.dev() != top_dev;
            let mut entries: Vec<(ByteString, PathBuf)> = Vec::new();
            if !crosses_fs {
                match std::fs::read_dir(path) {
                    Ok(rd) => {
                        for e in rd {
                            match e {
                                Ok(e) => {
                                    let p = e.path();
                                    if ctx.excludes.is_excluded(&p) {
                                        continue;
                                    }
                                    entries.push((ByteString::from_os(&e.file_name()), p));
                                }
                                Err(e) => ctx.warn(format!("{}: {e}", path.display())),
                            }
                        }
                    }
                    Err(e) => ctx.warn(format!("{}: {e}", path.display())),
                }
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let n = entries.len();
            let state = Arc::new(DirState {
                slots: Mutex::new(vec![None; n]),
                remaining: AtomicUsize::new(n + 1),
                place: Some((node, dir.clone(), slot)),
                old_subtree,
            });
            let old_nodes = index_nodes(old_tree.as_ref());
            for (i, (child_name, child_path)) in entries.into_iter().enumerate() {
                let mut child_rel = rel.clone();
                child_rel.push(b'/');
                child_rel.extend_from_slice(&child_name.0);
                let old_child = old_nodes.get(child_name.0.as_slice()).copied();
                walk_entry(
                    ctx,
                    jobs,
                    &state,
                    i,
                    &child_path,
                    child_name,
                    child_rel,
                    old_child,
                    Some(top_dev),
                );
            }
            ctx.release(&state);
        }
        NodeKind::File => {
            if node.links > 1 {
                let mut links = ctx.hardlinks.lock().unwrap();
                match links.get(&(node.device, node.inode)) {
                    Some(first) => {
                        node.kind = NodeKind::Hardlink;
                        node.link_target = Some(ByteString(first.clone()));
                    }
                    None => {
                        links.insert((node.device, node.inode), rel.clone());
                    }
                }
            }
            let novelty = match old {
                None => Novelty::New,
                Some(o)
                    if file_unchanged(o, &node)
                        && o.content
                            .iter()
                            .all(|id| ctx.repo.index().contains_live(BlobType::Data, id)) =>
                {
                    Novelty::Unchanged
                }
                Some(_) => Novelty::Changed,
            };
            if novelty == Novelty::Unchanged && !ctx.force_read {
                let o = old.unwrap();
                node.content = o.content.clone();
                node.holes = o.holes.clone();
                ctx.count_file(novelty, node.size);
                ctx.complete(dir, slot, Some(node));
                return;
            }
            let job = Job {
                path: path.to_path_buf(),
                node,
                dir: dir.clone(),
                slot,
                novelty,
            };
            if let Err(crossbeam_channel::SendError(job)) = jobs.send(job) {
                ctx.complete(&job.dir, job.slot, None);
            }
        }
        _ => ctx.complete(dir, slot, Some(node)),
    }
}
