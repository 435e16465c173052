//! Writing blobs: dedup against the index, seal, assemble packs, upload them on background
//! threads and record them in index files. Data is always stored before the index that lists it,
//! so a crash leaves at worst unreferenced packs.

use super::error::{RepoError, Result};
use super::index::{IndexFile, IndexPack};
use super::IndexedRepo;
use crate::backend::FileKind;
use crate::crypto::{seal_blob_into, BLOB_OVERHEAD, MAX_BLOB_LEN};
use crate::id::{BlobType, Id};
use crate::pack::PackWriter;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Packs listed in one index file written during a backup (a crash loses at most this many
/// packs' worth of index, which `repair index` can recover).
const PACKS_PER_INDEX: usize = 64;
/// Blobs in one pack at most, so its header stays far below the readers' 16 MiB limit
/// (100,000 entries are 4.6 MB) however small the blobs.
pub const MAX_BLOBS_PER_PACK: usize = 100_000;
/// Blobs listed in one index file at most, so it stays far below the readers' limit.
const BLOBS_PER_INDEX: usize = 500_000;
/// Memory for finished packs beyond two upload threads' worth: caps the number of upload threads
/// a backend may ask for (`Backend::preferred_uploaders`) when packs are large.
const UPLOAD_MEMORY: usize = 512 << 20;
/// Room for a pack's header beyond its target size that a pack buffer reserves up front (a pack
/// of 16 MiB holds a few hundred blobs, whose header takes ~46 bytes each).
const HEADER_ROOM: usize = 64 << 10;

thread_local! {
    /// Where each thread seals its blobs before copying them into a pack; reused, so sealing
    /// allocates nothing once the buffer has grown to the largest blob.
    static SEALED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Counters of what a writer stored.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Blobs new to the repository.
    pub blobs_added: AtomicU64,
    /// Plaintext bytes of the new blobs.
    pub bytes_added: AtomicU64,
    /// Bytes the new blobs take in packs.
    pub bytes_stored: AtomicU64,
    /// Packs uploaded.
    pub packs_written: AtomicU64,
    /// Index files written.
    pub index_files_written: AtomicU64,
}

struct FinishedPack {
    bytes: Vec<u8>,
    /// A data pack, whose buffer is counted in [`Shared::buffers`].
    data: bool,
    id: Id,
    blobs: Vec<crate::pack::PackBlob>,
}

#[derive(Default)]
struct PackBuffers {
    /// Buffers of stored packs, kept for the next data packs.
    spare: Vec<Vec<u8>>,
    /// Buffers that exist: spare, open, finished or being stored.
    live: usize,
}

struct Shared {
    repo: Arc<IndexedRepo>,
    /// Data pack buffers; at most [`Shared::max_buffers`] exist at once, so a burst of packs
    /// filled faster than they are stored makes the threads filling them wait instead of
    /// allocating more.
    buffers: Mutex<PackBuffers>,
    buffer_freed: Condvar,
    max_buffers: usize,
    /// Capacity of a data pack's buffer: the target size, one more blob of the largest size and
    /// the header, so a pack is never copied to grow.
    pack_capacity: usize,
    /// The chunker's largest chunk: what a thread's sealing buffer may keep.
    max_chunk: usize,
    pending: Mutex<IndexFile>,
    error: Mutex<Option<RepoError>>,
    stats: WriterStats,
}

impl Shared {
    fn fail(&self, e: RepoError) {
        let mut slot = self.error.lock().unwrap();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn take_error(&self) -> Option<RepoError> {
        self.error.lock().unwrap().take()
    }

    fn has_error(&self) -> bool {
        self.error.lock().unwrap().is_some()
    }

    fn write_index(&self, file: IndexFile) -> Result<()> {
        if file.packs.is_empty() {
            return Ok(());
        }
        self.repo.repo().save_index_file(&file)?;
        self.stats
            .index_files_written
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back the buffer of a data pack that was stored (or dropped after an error), for
    /// the next pack.
    fn recycle(&self, buffer: Vec<u8>) {
        let mut b = self.buffers.lock().unwrap();
        if buffer.capacity() >= self.pack_capacity {
            b.spare.push(buffer);
        } else {
            b.live -= 1;
        }
        drop(b);
        self.buffer_freed.notify_one();
    }

    /// A writer for a new pack of `blob_type`. Data packs get a buffer of a whole pack's
    /// capacity, a stored pack's when one is spare, waiting for one when as many as allowed
    /// exist; tree packs, usually small, start empty.
    fn new_pack(&self, blob_type: BlobType) -> PackWriter {
        if blob_type != BlobType::Data {
            return PackWriter::new();
        }
        let mut b = self.buffers.lock().unwrap();
        loop {
            if let Some(buffer) = b.spare.pop() {
                return PackWriter::with_buffer(buffer);
            }
            // After an error nothing may be given back; the writer is failing anyway.
            if b.live < self.max_buffers || self.has_error() {
                b.live += 1;
                return PackWriter::with_buffer(Vec::with_capacity(self.pack_capacity));
            }
            b = self
                .buffer_freed
                .wait_timeout(b, std::time::Duration::from_millis(100))
                .unwrap()
                .0;
        }
    }

    fn upload(&self, p: FinishedPack) -> Result<()> {
        let written =
            self.repo
                .repo()
                .backend()
                .write(FileKind::Pack, &p.id.to_hex(), &p.bytes, false);
        if p.data {
            self.recycle(p.bytes);
        }
        written?;
        self.stats.packs_written.fetch_add(1, Ordering::Relaxed);
        let full = {
            let mut pending = self.pending.lock().unwrap();
            pending.packs.push(IndexPack {
                id: p.id,
                blobs: p.blobs,
            });
            let blobs: usize = pending.packs.iter().map(|p| p.blobs.len()).sum();
            if pending.packs.len() >= PACKS_PER_INDEX || blobs >= BLOBS_PER_INDEX {
                Some(std::mem::take(&mut *pending))
            } else {
                None
            }
        };
        if let Some(f) = full {
            self.write_index(f)?;
        }
        Ok(())
    }
}

/// Stores blobs into a repository from many threads at once. Memory is bounded whatever the
/// number of threads: at most two data pack buffers beyond one per upload thread (the open
/// pack and a finished one waiting for an idle upload thread; a thread that needs a new pack
/// beyond that waits for a stored one's buffer), the open tree pack, and one sealing buffer
/// per thread.
pub struct BlobWriter {
    shared: Arc<Shared>,
    open: [Mutex<Option<PackWriter>>; 2],
    seen: Mutex<HashSet<(BlobType, Id)>>,
    tx: Option<Sender<FinishedPack>>,
    uploaders: Vec<JoinHandle<()>>,
    pack_size: usize,
    level: i32,
}

impl BlobWriter {
    /// Starts `uploaders` upload threads (fewer when packs are so large that their buffers would
    /// exceed [`UPLOAD_MEMORY`], but never fewer than two unless asked).
    pub fn new(repo: Arc<IndexedRepo>, uploaders: usize) -> BlobWriter {
        let pack_size = repo.repo().config().pack_size as usize;
        let uploaders = uploaders
            .min((UPLOAD_MEMORY / (2 * pack_size.max(1))).max(2))
            .max(1);
        let level = repo.repo().config().compression_level;
        let max_chunk = repo.repo().config().chunker.max_size as usize;
        let shared = Arc::new(Shared {
            repo,
            buffers: Mutex::new(PackBuffers::default()),
            buffer_freed: Condvar::new(),
            // One open, one finished and waiting for an upload thread, one per upload thread.
            max_buffers: uploaders + 2,
            pack_capacity: pack_size + max_chunk + BLOB_OVERHEAD + HEADER_ROOM,
            max_chunk,
            pending: Mutex::new(IndexFile::default()),
            error: Mutex::new(None),
            stats: WriterStats::default(),
        });
        // No queue: a finished pack goes straight to an idle upload thread, so no more packs
        // wait in memory than there are threads producing them.
        let (tx, rx): (Sender<FinishedPack>, Receiver<FinishedPack>) = bounded(0);
        let threads = (0..uploaders)
            .map(|i| {
                let rx = rx.clone();
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("upload-{i}"))
                    .spawn(move || {
                        for p in rx {
                            if shared.has_error() {
                                if p.data {
                                    shared.recycle(p.bytes);
                                }
                                continue;
                            }
                            if let Err(e) = shared.upload(p) {
                                shared.fail(e);
                            }
                        }
                    })
                    .expect("spawning an upload thread")
            })
            .collect();
        BlobWriter {
            shared,
            open: [Mutex::new(None), Mutex::new(None)],
            seen: Mutex::new(HashSet::new()),
            tx: Some(tx),
            uploaders: threads,
            pack_size,
            level,
        }
    }

    /// Overrides the repository's compression level for this writer.
    pub fn set_compression_level(&mut self, level: i32) {
        self.level = level;
    }

    /// The live counters.
    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    /// Whether a blob is already stored or being stored.
    pub fn is_known(&self, blob_type: BlobType, id: &Id) -> bool {
        self.shared.repo.index().contains_live(blob_type, id)
            || self.seen.lock().unwrap().contains(&(blob_type, *id))
    }

    /// Stores a blob unless the repository has it. Returns its id and whether it was new.
    pub fn add(&self, blob_type: BlobType, data: &[u8]) -> Result<(Id, bool)> {
        let id = self.shared.repo.repo().keys().blob_id(data);
        self.add_with_id(blob_type, id, data).map(|new| (id, new))
    }

    /// Like [`BlobWriter::add`] for a caller that already computed the id.
    pub fn add_with_id(&self, blob_type: BlobType, id: Id, data: &[u8]) -> Result<bool> {
        if let Some(e) = self.shared.take_error() {
            return Err(e);
        }
        if data.len() > MAX_BLOB_LEN {
            return Err(RepoError::TooLarge {
                what: format!("{blob_type} blob"),
                size: data.len() as u64,
                limit: MAX_BLOB_LEN as u64,
            });
        }
        if self.shared.repo.index().contains_live(blob_type, &id)
            || !self.seen.lock().unwrap().insert((blob_type, id))
        {
            return Ok(false);
        }
        let full = SEALED.with(|cell| {
            let mut sealed = cell.borrow_mut();
            sealed.clear();
            seal_blob_into(
                self.shared.repo.repo().keys(),
                blob_type,
                &id,
                data,
                self.level,
                &mut sealed,
            );
            if blob_type == BlobType::Tree {
                // The next backup reads this tree as its parent: keep it locally (sealed).
                self.shared.repo.index().cache_blob(blob_type, &id, &sealed);
            }
            let stats = &self.shared.stats;
            stats.blobs_added.fetch_add(1, Ordering::Relaxed);
            stats
                .bytes_added
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            stats
                .bytes_stored
                .fetch_add(sealed.len() as u64, Ordering::Relaxed);
            let mut slot = self.open[blob_type.code() as usize].lock().unwrap();
            let w = slot.get_or_insert_with(|| self.shared.new_pack(blob_type));
            w.add(blob_type, id, &sealed, data.len());
            let full = if w.size() >= self.pack_size || w.count() >= MAX_BLOBS_PER_PACK {
                slot.take()
            } else {
                None
            };
            drop(slot);
            // A huge tree blob must not pin its buffer for the rest of the backup.
            if sealed.capacity() > self.shared.max_chunk + BLOB_OVERHEAD {
                *sealed = Vec::new();
            }
            full
        });
        if let Some(w) = full {
            self.send(w, blob_type == BlobType::Data)?;
        }
        Ok(true)
    }

    fn send(&self, w: PackWriter, data: bool) -> Result<()> {
        let (bytes, id, blobs) = w.finish(self.shared.repo.repo().keys());
        let pack = FinishedPack {
            bytes,
            data,
            id,
            blobs,
        };
        self.tx
            .as_ref()
            .expect("writer is open")
            .send(pack)
            .map_err(|_| RepoError::Internal("upload threads stopped".into()))
    }

    /// Uploads what is left, waits for every upload and writes the final index file. Only after
    /// this returns `Ok` may a snapshot refer to the blobs.
    pub fn finish(mut self) -> Result<WriterSummary> {
        for (code, slot) in self.open.iter().enumerate() {
            let w = slot.lock().unwrap().take();
            if let Some(w) = w.filter(|w| !w.is_empty()) {
                self.send(w, code == BlobType::Data.code() as usize)?;
            }
        }
        drop(self.tx.take());
        for t in self.uploaders.drain(..) {
            let _ = t.join();
        }
        if let Some(e) = self.shared.take_error() {
            return Err(e);
        }
        let rest = std::mem::take(&mut *self.shared.pending.lock().unwrap());
        self.shared.write_index(rest)?;
        let s = &self.shared.stats;
        Ok(WriterSummary {
            blobs_added: s.blobs_added.load(Ordering::Relaxed),
            bytes_added: s.bytes_added.load(Ordering::Relaxed),
            bytes_stored: s.bytes_stored.load(Ordering::Relaxed),
            packs_written: s.packs_written.load(Ordering::Relaxed),
            index_files_written: s.index_files_written.load(Ordering::Relaxed),
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        drop(self.tx.take());
        for t in self.uploaders.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a finished writer stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterSummary {
    /// Blobs new to the repository.
    pub blobs_added: u64,
    /// Plaintext bytes of new blobs.
    pub bytes_added: u64,
    /// Bytes the new blobs take in packs.
    pub bytes_stored: u64,
    /// Packs uploaded.
    pub packs_written: u64,
    /// Index files written.
    pub index_files_written: u64,
}
