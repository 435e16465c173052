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
//!
//! Sources ([`BackupSource`]): walked paths as above; a stream, a device and in-memory
//! documents are stored on the calling thread, their chunks sealed on all cores as a large
//! file's are. Guarantees to a caller:
//! - a cancelled backup ([`crate::cancel::CancelToken`], checked per entry, per file and per
//!   chunk) and a failed one write no snapshot; what they stored is unreferenced, `check`
//!   accepts the repository, and prune removes it;
//! - progress reaches the caller's sink at a bounded rate from a thread of its own (see
//!   [`crate::progress`]), never from the readers;
//! - an entry that cannot be read is a [`Warning`] (path, operation, class, message) and makes
//!   the snapshot incomplete; it never fails the backup.

mod documents;
pub mod source;

pub use documents::{Document, DocumentEvent, ProducerError};

use crate::cancel::CancelToken;
use crate::chunker::Chunker;
use crate::error::{Classified, ErrorClass};
use crate::id::{BlobType, Id};
use crate::progress::{Control, Meter};
use crate::repo::session::{BackupWork, Indexed};
use crate::repo::snapshot::{Snapshot, SnapshotSummary};
use crate::repo::tree::{ByteString, Node, NodeKind, Timestamp, Tree};
use crate::repo::writer::BlobWriter;
use crate::repo::{IndexedRepo, RepoError};
use crate::warning::{Operation, Warning};
use crossbeam_channel::{bounded, Receiver, Sender};
use source::{
    node_from_metadata, read_mode, regions_of, ContentReader, Excludes, OwnerNames, Region,
};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Reader threads per worker thread (see `--threads`).
const READERS_PER_THREAD: usize = 3;

/// Errors that stop a backup. (Unreadable entries below the given paths do not: they are
/// [`Warning`]s and make the snapshot incomplete.) None of them leaves a snapshot behind.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A path given to back up, a device or a stream could not be read.
    #[error("{path}: {source}")]
    Source {
        /// The path as given (or `standard input`, or the stream's name).
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An exclude pattern does not parse.
    #[error("{0}")]
    BadExclude(String),
    /// [`BackupSource::Paths`] with no path.
    #[error("nothing to back up: give at least one path")]
    NoPaths,
    /// Two top-level paths have the same name, which a snapshot's root cannot hold.
    #[error("two paths are named {0:?}; back them up separately")]
    DuplicateName(String),
    /// A name given for a stream or a device, or a document's path, is not a valid entry name.
    #[error("{what}: {reason}")]
    BadName {
        /// Which name (`stream name "x"`, `document path "a//b"`).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two documents have the same path, or one's path runs through another.
    #[error("document {0:?} is given twice, or as a file and as a directory")]
    DocumentConflict(String),
    /// A streamed document's directory was closed before it came.
    #[error("document {0:?} comes after its directory was closed")]
    DocumentOrder(String),
    /// The producer of a document stream failed.
    #[error("the documents' producer failed: {0}")]
    Producer(#[source] ProducerError),
    /// [`BackupSource::Device`] names something that is neither a block device nor a regular
    /// file.
    #[error("{0}: neither a block device nor a regular file")]
    NotADevice(String),
    /// The backup's lock could not be refreshed for too long: a prune may have taken the backup
    /// for dead. The data is stored; no snapshot was written.
    #[error("the backup lock could not be refreshed for too long; the data is stored, but no snapshot was written")]
    LockLost,
    /// The caller cancelled the backup. No snapshot was written; packs already stored stay,
    /// unreferenced, until a prune removes them.
    #[error("backup canceled; no snapshot was written")]
    Canceled,
    /// A broken invariant (a bug).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Classified for BackupError {
    fn class(&self) -> ErrorClass {
        match self {
            BackupError::Repo(e) => e.class(),
            BackupError::Source { source, .. } => crate::warning::io_class(source),
            BackupError::BadExclude(_)
            | BackupError::NoPaths
            | BackupError::DuplicateName(_)
            | BackupError::BadName { .. }
            | BackupError::DocumentConflict(_)
            | BackupError::NotADevice(_) => ErrorClass::Config,
            BackupError::DocumentOrder(_) => ErrorClass::Internal,
            BackupError::Producer(e) => {
                crate::error::classify(e.as_ref()).map_or(ErrorClass::Transient, |(class, _)| class)
            }
            BackupError::LockLost => ErrorClass::Transient,
            BackupError::Canceled => ErrorClass::Canceled,
            BackupError::Internal(_) => ErrorClass::Internal,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            BackupError::Repo(e) => e.kind(),
            BackupError::Source { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                "backup.source_not_found"
            }
            BackupError::Source { .. } => "backup.source_unreadable",
            BackupError::BadExclude(_) => "backup.bad_exclude",
            BackupError::NoPaths => "backup.no_paths",
            BackupError::DuplicateName(_) => "backup.duplicate_name",
            BackupError::BadName { .. } => "backup.bad_name",
            BackupError::DocumentConflict(_) => "backup.document_conflict",
            BackupError::DocumentOrder(_) => "backup.document_order",
            BackupError::Producer(_) => "backup.producer_failed",
            BackupError::NotADevice(_) => "backup.not_a_device",
            BackupError::LockLost => "backup.lock_lost",
            BackupError::Canceled => "backup.canceled",
            BackupError::Internal(_) => "backup.internal",
        }
    }
}

/// What a backup reads.
pub enum BackupSource<'a> {
    /// Files and directories, walked (today's `stowage backup PATH...`). Each becomes an entry
    /// of the snapshot's root named after its last component.
    Paths(Vec<PathBuf>),
    /// A byte stream (standard input, a database dump), stored as one file of this name at the
    /// snapshot's root, cut with the large-file chunk sizes.
    Stream {
        /// The file's name in the snapshot.
        name: String,
        /// Read to its end.
        reader: &'a mut dyn Read,
    },
    /// A block device (or a regular file standing for one, such as a disk image) read as one
    /// large file: its size comes from the device, it is cut with the large-file chunk sizes,
    /// and ranges the device reports as holes (`SEEK_HOLE`) are recorded as holes, not read.
    Device {
        /// The device or file.
        path: PathBuf,
        /// The file's name in the snapshot (default: the path's last component).
        name: Option<String>,
    },
    /// Documents held in memory (Kubernetes objects, say), stored as files at their paths;
    /// the directories their paths name are created.
    Documents {
        /// What the snapshot records as its path, to find it again as the next one's parent.
        label: String,
        /// The documents, in any order.
        documents: Vec<Document>,
    },
    /// Documents produced one at a time, stored as they come, in memory bounded by the
    /// largest open directory: see [`DocumentEvent::CloseDir`]. The first error the producer
    /// yields stops the backup ([`BackupError::Producer`]); no snapshot is written.
    DocumentStream {
        /// What the snapshot records as its path, to find it again as the next one's parent.
        label: String,
        /// The documents and directory closings, in order.
        events: &'a mut (dyn Iterator<Item = Result<DocumentEvent, ProducerError>> + Send),
    },
}

impl std::fmt::Debug for BackupSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupSource::Paths(p) => f.debug_tuple("Paths").field(p).finish(),
            BackupSource::Stream { name, .. } => {
                f.debug_struct("Stream").field("name", name).finish()
            }
            BackupSource::Device { path, name } => f
                .debug_struct("Device")
                .field("path", path)
                .field("name", name)
                .finish(),
            BackupSource::Documents { label, documents } => f
                .debug_struct("Documents")
                .field("label", label)
                .field("documents", &documents.len())
                .finish(),
            BackupSource::DocumentStream { label, .. } => f
                .debug_struct("DocumentStream")
                .field("label", label)
                .finish(),
        }
    }
}

/// Which snapshot to compare with to skip unchanged files.
#[derive(Clone, Debug, Default)]
pub enum ParentChoice {
    /// The latest snapshot of the same host and paths.
    #[default]
    Latest,
    /// Read every file.
    None,
    /// This snapshot.
    Id(Id),
}

/// How to back up (what to back up is the [`BackupSource`]).
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// Tags to record.
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub hostname: Option<String>,
    /// Exclude patterns (see [`Excludes`]), for [`BackupSource::Paths`].
    pub excludes: Vec<String>,
    /// Do not descend into other file systems than the given paths' own.
    pub one_file_system: bool,
    /// The snapshot to compare with.
    pub parent: ParentChoice,
    /// Read every file even when the parent snapshot says it is unchanged.
    pub force_read: bool,
    /// Worker threads (default: number of cores); twice as many threads read files.
    pub threads: usize,
    /// Read every file through the page cache, never with direct I/O (see
    /// [`source::read_mode`]).
    pub no_direct_io: bool,
}

/// The result of a backup.
#[derive(Debug)]
pub struct BackupReport {
    /// The snapshot written.
    pub snapshot_id: Id,
    /// Its content.
    pub snapshot: Snapshot,
    /// The snapshot compared with, if any.
    pub parent: Option<Id>,
    /// Entries that could not be read (the snapshot is then marked incomplete).
    pub warnings: Vec<Warning>,
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
    /// Bytes of the unchanged files, which are not read: progress counts them as done, the
    /// summary's `bytes_read` does not.
    bytes_unchanged: AtomicU64,
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
    meter: Meter,
    cancel: &'a CancelToken,
    warnings: Mutex<Vec<Warning>>,
    fatal: Mutex<Option<RepoError>>,
    /// Set with `fatal`, read without its lock at every entry and job.
    failed: AtomicBool,
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
    fn warn(&self, w: Warning) {
        tracing::warn!("{w}");
        Meter::add(&self.meter.warnings, 1);
        self.warnings.lock().unwrap().push(w);
    }

    /// Warns about an I/O error on `path`.
    fn warn_io(&self, path: &Path, op: Operation, e: &io::Error) {
        self.warn(Warning::io(path, op, e));
    }

    fn fail(&self, e: RepoError) {
        let mut f = self.fatal.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Whether to stop: the repository failed, or the caller cancelled.
    #[inline]
    fn stopped(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || self.cancel.is_canceled()
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
        // A cancelled backup's directories are incomplete, and nothing will refer to them.
        let id = match self.cancel.is_canceled() {
            true => Ok(None),
            false => self.writer.add(BlobType::Tree, &tree.encode()).map(Some),
        };
        let id = match id {
            Ok(id) => id.map(|(id, _)| id),
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
        Meter::add(&self.meter.files_done, 1);
    }

    /// Stores one chunk, returning its id.
    fn store_chunk(&self, data: &[u8]) -> Result<Id, RepoError> {
        let (id, new) = self.writer.add(BlobType::Data, data)?;
        let n = data.len() as u64;
        Meter::add(&self.meter.bytes_done, n);
        if new {
            Meter::add(&self.meter.bytes_added, n);
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
        let Some(first) = chunker
            .next_chunk_ref(r)
            .map_err(|e| StreamError::Io(Operation::Read, e))?
        else {
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
                        // One relaxed load per chunk: a cancelled backup stops reading a
                        // large file at once.
                        Ok(Some(_)) if self.cancel.is_canceled() => {
                            failure.get_or_insert(StreamError::Stopped);
                            false
                        }
                        Ok(Some(c)) => {
                            total += c.data.len() as u64;
                            batch.push(c.data);
                            continue;
                        }
                        Ok(None) => false,
                        Err(e) => {
                            failure.get_or_insert(StreamError::Io(Operation::Read, e));
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
                    // A batch that waited while the backup was cancelled is not stored.
                    let stored = if self.cancel.is_canceled() {
                        Ok(Vec::new())
                    } else {
                        full.chunks().map(|c| self.store_chunk(c)).collect()
                    };
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
            None if self.cancel.is_canceled() => Err(StreamError::Stopped),
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
        let io = |op| move |e| StreamError::Io(op, e);
        // O_NOATIME is refused (EPERM) on files we do not own unless we are root.
        let f = match open(libc::O_NOFOLLOW | libc::O_NOATIME) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(libc::O_NOFOLLOW),
            r => r,
        }
        .map_err(io(Operation::Open))?;
        let meta = f.metadata().map_err(io(Operation::Stat))?;
        if !meta.is_file() {
            return Err(StreamError::Io(
                Operation::Open,
                io::Error::other("is no longer a regular file"),
            ));
        }
        if meta.len() > u64::from(chunker.params().min_size) {
            self.meter.set_current(|| path.display().to_string());
        }
        self.read_content(chunker, &f, meta.len(), Some(meta.blocks() * 512), node)
    }

    /// Reads `size` bytes of an open file (or device) into `node`: its data regions (all of
    /// it, unless `allocated`, the bytes the file system has allocated, is smaller than `size`
    /// and `SEEK_HOLE` reports holes) become content, its holes holes.
    fn read_content(
        &self,
        chunker: &mut Chunker,
        f: &File,
        size: u64,
        allocated: Option<u64>,
        node: &mut Node,
    ) -> Result<(), StreamError> {
        // Large files are cut with the large-file chunk sizes, if the repository has them.
        let spec = self.repo.repo().chunker_for_file(size);
        // A file longer than the smallest chunk may become several chunks in flight at once;
        // the reader's own chunker serves the rest of the files (for those, that of the
        // general chunk sizes).
        let own = Arc::ptr_eq(spec, chunker.spec()) && size <= u64::from(spec.params().min_size);
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
        let mut end = 0;
        let mut source = ContentReader::new(f, read_mode(f, size, self.allow_direct));
        for region in regions_of(f, size, allocated) {
            match region {
                Region::Hole { offset, len } => {
                    holes.push((offset, len));
                    end = offset + len;
                }
                Region::Data { offset, len } => {
                    source.set_region(offset, len);
                    let read = self.store_stream(chunker, &mut source, &mut content)?;
                    // A file that shrank while we read it is recorded as what we read.
                    end = offset + read;
                    if read < len {
                        holes.retain(|&(o, _)| o < end);
                        break;
                    }
                }
            }
        }
        node.size = end;
        node.content = content;
        node.holes = holes;
        Ok(())
    }
}

/// Why a stream's content was not stored.
enum StreamError {
    /// The source failed: a warning for a file.
    Io(Operation, io::Error),
    /// The repository failed: the backup fails.
    Repo(RepoError),
    /// The backup was cancelled or failed elsewhere: nothing to report for this stream.
    Stopped,
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

/// Runs a backup of `source` in `session` and writes its snapshot. The snapshot is stored only
/// if the session's lock is still certainly live, so a prune cannot have taken this backup for
/// dead and deleted data it references.
///
/// `control` cancels it (no snapshot is written, the repository stays consistent: packs stored
/// so far are unreferenced until a prune) and receives its progress.
pub fn run(
    session: &Indexed<BackupWork>,
    source: BackupSource<'_>,
    opts: &BackupOptions,
    control: &Control<'_>,
) -> Result<BackupReport, BackupError> {
    run_inner(
        session.indexed().clone(),
        source,
        opts,
        control,
        session.held_lock(),
    )
}

fn run_inner(
    repo: Arc<IndexedRepo>,
    source: BackupSource<'_>,
    opts: &BackupOptions,
    control: &Control<'_>,
    lock: Option<&crate::repo::lock::Lock>,
) -> Result<BackupReport, BackupError> {
    if control.cancel.is_canceled() {
        return Err(BackupError::Canceled);
    }
    let started = Instant::now();
    let time = chrono::Utc::now();
    let hostname = opts.hostname.clone().unwrap_or_else(crate::util::hostname);
    let excludes = Excludes::new(&opts.excludes).map_err(BackupError::BadExclude)?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        opts.threads
    };

    // Checked up front, so a missing path or a bad name fails before anything is written.
    let (work, paths) = Work::prepare(source)?;

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
        Some((_, s)) if matches!(work, Work::Paths(_)) => match repo.read_tree(&s.tree) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("parent snapshot unreadable, reading every file: {e}");
                None
            }
        },
        _ => None,
    };

    let ctx = Ctx {
        writer: BlobWriter::new(repo.clone(), repo.repo().backend().preferred_uploaders()),
        repo: repo.clone(),
        owners: OwnerNames::default(),
        excludes,
        one_file_system: opts.one_file_system,
        counters: Counters::default(),
        meter: Meter::default(),
        cancel: &control.cancel,
        warnings: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
        failed: AtomicBool::new(false),
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
    let old_subtree = parent.as_ref().map(|(_, s)| s.tree);
    let stored = ctx.meter.observe(control, || {
        ctx.store(work, old_root.as_ref(), old_subtree, time)
    });

    let Ctx { writer, .. } = ctx;
    // Nothing a cancelled backup stored is referenced: dropping the writer stops its uploads
    // (packs already stored stay, unindexed or indexed but unused, until a prune).
    if let Some(e) = ctx.fatal.lock().unwrap().take() {
        drop(writer);
        return Err(e.into());
    }
    if let Err(e) = stored {
        drop(writer);
        return Err(e);
    }
    if control.cancel.is_canceled() {
        drop(writer);
        return Err(BackupError::Canceled);
    }
    let ws = writer.finish()?;
    let root_tree = ctx
        .root_tree
        .lock()
        .unwrap()
        .ok_or(BackupError::Internal("no root tree was written"))?;
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
            bytes_read: ld(&ctx.meter.bytes_done) - ld(&c.bytes_unchanged),
            bytes_added: ws.bytes_added,
            bytes_added_stored: ws.bytes_stored,
            blobs_added: ws.blobs_added,
            total_bytes: ld(&c.total_bytes),
            total_files: ld(&c.total_files),
            errors: warnings.len() as u64,
            duration_secs: started.elapsed().as_secs_f64(),
        },
    };
    // The last point of no return: cancelled while the last packs and the index were stored,
    // the backup still writes no snapshot.
    if control.cancel.is_canceled() {
        return Err(BackupError::Canceled);
    }
    if lock.is_some_and(|l| !l.still_held()) {
        return Err(BackupError::LockLost);
    }
    let snapshot_id = repo.repo().save_snapshot(&snapshot)?;
    Ok(BackupReport {
        snapshot_id,
        snapshot,
        parent: parent.map(|(id, _)| id),
        warnings,
    })
}

/// A source, checked and ready to store.
enum Work<'a> {
    /// Absolute paths and their names at the snapshot's root, sorted by name.
    Paths(Vec<(PathBuf, ByteString)>),
    Stream {
        name: ByteString,
        reader: &'a mut dyn Read,
    },
    Device {
        path: PathBuf,
        name: ByteString,
        file: File,
        meta: std::fs::Metadata,
        size: u64,
    },
    Documents(Box<dyn Iterator<Item = Result<DocumentEvent, ProducerError>> + Send + 'a>),
}

impl<'a> Work<'a> {
    /// Checks a source; returns it with the paths the snapshot records.
    fn prepare(source: BackupSource<'a>) -> Result<(Work<'a>, Vec<String>), BackupError> {
        let valid_name = |what: &str, name: &str| {
            crate::repo::tree::validate_name(name.as_bytes())
                .map(|()| ByteString(name.as_bytes().to_vec()))
                .map_err(|reason| BackupError::BadName {
                    what: format!("{what} {name:?}"),
                    reason,
                })
        };
        let source_err = |p: &Path| {
            let path = p.display().to_string();
            move |source| BackupError::Source { path, source }
        };
        Ok(match source {
            BackupSource::Paths(given) => {
                if given.is_empty() {
                    return Err(BackupError::NoPaths);
                }
                let mut tops: Vec<(PathBuf, ByteString)> = Vec::new();
                for p in &given {
                    let abs = absolute_clean(p).map_err(source_err(p))?;
                    std::fs::symlink_metadata(&abs).map_err(source_err(p))?;
                    let name = abs
                        .file_name()
                        .map(ByteString::from_os)
                        .unwrap_or_else(|| ByteString(b"root".to_vec()));
                    if tops.iter().any(|(_, n)| *n == name) {
                        return Err(BackupError::DuplicateName(name.lossy()));
                    }
                    tops.push((abs, name));
                }
                tops.sort_by(|a, b| a.1.cmp(&b.1));
                let mut paths: Vec<String> =
                    tops.iter().map(|(p, _)| p.display().to_string()).collect();
                paths.sort();
                (Work::Paths(tops), paths)
            }
            BackupSource::Stream { name, reader } => {
                let n = valid_name("stream name", &name)?;
                (Work::Stream { name: n, reader }, vec![format!("/{name}")])
            }
            BackupSource::Device { path, name } => {
                let abs = absolute_clean(&path).map_err(source_err(&path))?;
                let name = match name {
                    Some(n) => valid_name("device name", &n)?,
                    None => abs
                        .file_name()
                        .map(ByteString::from_os)
                        .ok_or_else(|| BackupError::NotADevice(path.display().to_string()))?,
                };
                let mut file = File::open(&abs).map_err(source_err(&path))?;
                let meta = file.metadata().map_err(source_err(&path))?;
                if !(meta.is_file() || meta.file_type().is_block_device()) {
                    return Err(BackupError::NotADevice(path.display().to_string()));
                }
                let size = crate::sys::device_size(&mut file).map_err(source_err(&path))?;
                let paths = vec![abs.display().to_string()];
                let work = Work::Device {
                    path: abs,
                    name,
                    file,
                    meta,
                    size,
                };
                (work, paths)
            }
            BackupSource::Documents { label, documents } => {
                // Checked up front, so a bad name fails before anything is written.
                for doc in &documents {
                    documents::check_path(&doc.path)?;
                }
                let events = documents
                    .into_iter()
                    .map(|d| Ok(DocumentEvent::Document(d)));
                (Work::Documents(Box::new(events)), vec![label])
            }
            BackupSource::DocumentStream { label, events } => {
                (Work::Documents(Box::new(events)), vec![label])
            }
        })
    }
}
impl Ctx<'_> {
    /// Stores a prepared source: its content, its trees, and the root tree's id in
    /// `root_tree`. Failures of the repository end up in `fatal`, or are returned; a
    /// cancelled backup returns early with nothing in `root_tree`.
    fn store(
        &self,
        work: Work<'_>,
        old_root: Option<&Tree>,
        old_subtree: Option<Id>,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), BackupError> {
        let now = Timestamp(time.timestamp(), time.timestamp_subsec_nanos());
        let stream_result = |r: Result<(), StreamError>, what: String| match r {
            Ok(()) | Err(StreamError::Stopped) => Ok(()),
            Err(StreamError::Repo(e)) => Err(BackupError::Repo(e)),
            Err(StreamError::Io(_, source)) => Err(BackupError::Source { path: what, source }),
        };
        match work {
            Work::Paths(tops) => {
                self.walk(&tops, old_root, old_subtree);
                Ok(())
            }
            Work::Stream { name, reader } => {
                self.meter.expect(1, None);
                let mut node = Node::new(name.clone(), NodeKind::File);
                node.mode = 0o644;
                self.set_owner_and_times(&mut node, now);
                let mut chunker = Chunker::new(self.repo.repo().chunker_for_stream().clone());
                let r = self
                    .store_stream(&mut chunker, reader, &mut node.content)
                    .map(|n| node.size = n);
                stream_result(r, format!("stream {}", name.lossy()))?;
                self.store_single(node, old_subtree);
                Ok(())
            }
            Work::Device {
                path,
                name,
                file,
                meta,
                size,
            } => {
                self.meter.expect(1, Some(size));
                self.meter.set_current(|| path.display().to_string());
                let mut node = Node::new(name, NodeKind::File);
                node.mode = meta.mode() & 0o7777;
                node.uid = meta.uid();
                node.gid = meta.gid();
                node.user = self.owners.user(node.uid);
                node.group = self.owners.group(node.gid);
                node.mtime = Timestamp(meta.mtime(), meta.mtime_nsec() as u32);
                node.ctime = Timestamp(meta.ctime(), meta.ctime_nsec() as u32);
                node.atime = Timestamp(meta.atime(), meta.atime_nsec() as u32);
                // A regular file's allocation tells whether it has holes at all; a block
                // device's node says nothing about the device's.
                let allocated = meta.is_file().then(|| meta.blocks() * 512);
                let mut chunker = new_chunker(&self.repo);
                let r = self.read_content(&mut chunker, &file, size, allocated, &mut node);
                stream_result(r, path.display().to_string())?;
                self.store_single(node, old_subtree);
                Ok(())
            }
            Work::Documents(mut events) => {
                let id = self.store_documents(&mut events, now)?;
                *self.root_tree.lock().unwrap() = Some(id);
                Ok(())
            }
        }
    }

    /// Gives a node made up by the backup (not read from a file system) this process's owner
    /// and the backup's time.
    fn set_owner_and_times(&self, node: &mut Node, now: Timestamp) {
        node.uid = nix::unistd::getuid().as_raw();
        node.gid = nix::unistd::getgid().as_raw();
        node.mtime = now;
        node.ctime = now;
        node.atime = now;
    }

    /// Writes a root tree holding just `node`, a file of new content, unless the backup stopped.
    fn store_single(&self, node: Node, old_subtree: Option<Id>) {
        if self.stopped() {
            return;
        }
        let root = Arc::new(DirState {
            slots: Mutex::new(vec![None]),
            remaining: AtomicUsize::new(2),
            place: None,
            old_subtree,
        });
        self.count_file(Novelty::New, node.size);
        self.complete(&root, 0, Some(node));
        self.release(&root);
    }

    /// Walks the given paths and stores what they hold: this thread walks, reader threads read
    /// the files.
    fn walk(
        &self,
        tops: &[(PathBuf, ByteString)],
        old_root: Option<&Tree>,
        old_subtree: Option<Id>,
    ) {
        let root = Arc::new(DirState {
            slots: Mutex::new(vec![None; tops.len()]),
            remaining: AtomicUsize::new(tops.len() + 1),
            place: None,
            old_subtree,
        });
        self.meter.expected_known.store(true, Ordering::Relaxed);
        self.meter.counting.store(true, Ordering::Relaxed);
        let threads = self.threads;
        let (tx, rx) = bounded::<Job>(threads * 64);
        std::thread::scope(|scope| {
            // Three readers per core: a reader waiting for the disk (small files on a cold
            // cache, direct reads) leaves its core to another (two per core left ~20% of the
            // cores idle on a tree of small files read from a cold cache).
            for _ in 0..threads * READERS_PER_THREAD {
                let rx = rx.clone();
                scope.spawn(move || {
                    let mut chunker = new_chunker(&self.repo);
                    for mut job in rx {
                        // One relaxed load per file (two when nothing failed).
                        if self.stopped() {
                            self.complete(&job.dir, job.slot, None);
                            continue;
                        }
                        match self.read_file(&mut chunker, &job.path, &mut job.node) {
                            Ok(()) => {
                                self.count_file(job.novelty, job.node.size);
                                self.complete(&job.dir, job.slot, Some(job.node));
                            }
                            Err(StreamError::Io(op, e)) => {
                                self.warn_io(&job.path, op, &e);
                                self.complete(&job.dir, job.slot, None);
                            }
                            Err(StreamError::Repo(e)) => {
                                self.fail(e);
                                self.complete(&job.dir, job.slot, None);
                            }
                            Err(StreamError::Stopped) => {
                                self.complete(&job.dir, job.slot, None);
                            }
                        }
                    }
                });
            }
            drop(rx);
            let old_nodes = index_nodes(old_root);
            for (i, (path, name)) in tops.iter().enumerate() {
                let old = old_nodes.get(name.0.as_slice()).copied();
                walk_entry(
                    self,
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
            self.meter.counting.store(false, Ordering::Relaxed);
            self.release(&root);
            drop(tx);
        });
    }
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
    if ctx.stopped() {
        ctx.complete(dir, slot, None);
        return;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            ctx.warn_io(path, Operation::Stat, &e);
            ctx.complete(dir, slot, None);
            return;
        }
    };
    let mut node = match node_from_metadata(path, name, &meta, &ctx.owners) {
        Ok(n) => n,
        Err(e) => {
            ctx.warn_io(path, Operation::ReadLink, &e);
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
            ctx.meter.set_current(|| path.display().to_string());
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
                                Err(e) => ctx.warn_io(path, Operation::ListDir, &e),
                            }
                        }
                    }
                    Err(e) => ctx.warn_io(path, Operation::ListDir, &e),
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
            Meter::add(&ctx.meter.files_expected, 1);
            Meter::add(&ctx.meter.bytes_expected, node.size);
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
                Meter::add(&ctx.meter.bytes_done, node.size);
                Meter::add(&ctx.counters.bytes_unchanged, node.size);
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
