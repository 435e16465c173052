//! Documents stored as files of a snapshot: [`BackupSource::Documents`] (all in memory) and
//! [`BackupSource::DocumentStream`] (one at a time, in bounded memory).
//!
//! A document's content is chunked and stored as soon as it arrives; what stays in memory is
//! its node (name, size, content ids) until its directory is closed, either explicitly with
//! [`DocumentEvent::CloseDir`] or at the end. Closing a directory writes its tree and those of
//! the directories below it and keeps only the directory's own node, so a producer that closes
//! each directory when it is done with it (the Kubernetes collector closes each resource type)
//! holds the nodes of one directory at a time, however many documents there are.
//!
//! Every node is deterministic: a file's time is the document's (or the backup's when it has
//! none), a directory's is the latest of its entries'. Documents that did not change since the
//! last backup therefore give the same trees, which deduplicate.
//!
//! [`BackupSource::Documents`]: super::BackupSource::Documents
//! [`BackupSource::DocumentStream`]: super::BackupSource::DocumentStream

use super::{BackupError, Ctx, Novelty, StreamError};
use crate::chunker::Chunker;
use crate::id::{BlobType, Id};
use crate::repo::tree::{ByteString, Node, NodeKind, Timestamp, Tree};
use std::collections::BTreeMap;

/// One document: a file of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// `/`-separated path below the snapshot's root (`namespaces/web/deployments/api.yaml`);
    /// every component must be a valid name (not empty, `.` or `..`, no NUL).
    pub path: String,
    /// The content.
    pub data: Vec<u8>,
    /// Permission bits (default `0o644`).
    pub mode: Option<u32>,
    /// Modification time (default: the backup's time).
    pub mtime: Option<std::time::SystemTime>,
}

impl Document {
    /// A document with default mode and time.
    pub fn new(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Document {
            path: path.into(),
            data: data.into(),
            mode: None,
            mtime: None,
        }
    }
}

/// One item of a [`BackupSource::DocumentStream`](super::BackupSource::DocumentStream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocumentEvent {
    /// A document to store.
    Document(Document),
    /// Nothing more comes below this `/`-separated directory path: its trees are written now
    /// and its entries leave memory. A later document below it fails the backup with
    /// [`BackupError::DocumentOrder`]. Closing a directory that holds nothing (yet) does
    /// nothing.
    CloseDir(String),
}

/// What a producer of a document stream reports when it cannot go on (the API server went
/// away, say). The backup stops with [`BackupError::Producer`] and writes no snapshot.
pub type ProducerError = Box<dyn std::error::Error + Send + Sync>;

/// A directory whose entries are still open.
#[derive(Default)]
struct OpenDir {
    entries: BTreeMap<Vec<u8>, Entry>,
}

enum Entry {
    File(Node),
    Dir(OpenDir),
    /// A directory already written: its node, with its subtree.
    Closed(Node),
}

impl Entry {
    fn mtime(&self) -> Timestamp {
        match self {
            Entry::File(n) | Entry::Closed(n) => n.mtime,
            Entry::Dir(d) => d.latest().unwrap_or(Timestamp(0, 0)),
        }
    }
}

impl OpenDir {
    /// The latest time of the entries below, if there are any.
    fn latest(&self) -> Option<Timestamp> {
        self.entries.values().map(Entry::mtime).max()
    }
}

/// Checks a document path.
pub(super) fn check_path(path: &str) -> Result<(), BackupError> {
    split(path).map(drop)
}

/// Checks a document path and splits it into its names.
fn split(path: &str) -> Result<Vec<&str>, BackupError> {
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        crate::repo::tree::validate_name(part.as_bytes()).map_err(|reason| {
            BackupError::BadName {
                what: format!("document path {path:?}"),
                reason,
            }
        })?;
    }
    Ok(parts)
}

/// Why adding to the open tree failed.
enum Refused {
    Conflict,
    Closed,
}

impl Ctx<'_> {
    /// Stores a stream of documents; returns the root tree's id.
    pub(super) fn store_documents(
        &self,
        events: &mut dyn Iterator<Item = Result<DocumentEvent, ProducerError>>,
        now: Timestamp,
    ) -> Result<Id, BackupError> {
        let mut chunker = super::new_chunker(&self.repo);
        let mut root = OpenDir::default();
        for event in events {
            if self.stopped() {
                return Err(BackupError::Canceled);
            }
            match event.map_err(BackupError::Producer)? {
                DocumentEvent::Document(doc) => {
                    let parts = split(&doc.path)?;
                    // Refused before its content is stored.
                    let dir = open_parent(&mut root, &parts).map_err(|r| refusal(r, &doc.path))?;
                    let leaf = parts[parts.len() - 1].as_bytes();
                    if dir.entries.contains_key(leaf) {
                        return Err(BackupError::DocumentConflict(doc.path));
                    }
                    let node = self.store_document(&doc, leaf, &mut chunker, now)?;
                    dir.entries.insert(leaf.to_vec(), Entry::File(node));
                }
                DocumentEvent::CloseDir(path) => {
                    let parts = split(&path)?;
                    let Ok(parent) = open_parent(&mut root, &parts) else {
                        // Closed already, with an ancestor, or names a file: nothing is open.
                        continue;
                    };
                    let name = parts[parts.len() - 1].as_bytes();
                    // Only an open directory closes; a file or a closed one stays as it is.
                    let entry = match parent.entries.remove(name) {
                        Some(Entry::Dir(dir)) => Entry::Closed(self.close_dir(name, dir)?),
                        Some(other) => other,
                        None => continue,
                    };
                    parent.entries.insert(name.to_vec(), entry);
                }
            }
        }
        if self.stopped() {
            return Err(BackupError::Canceled);
        }
        self.write_tree(root)
    }

    /// Chunks and stores one document's content; returns its node.
    fn store_document(
        &self,
        doc: &Document,
        name: &[u8],
        chunker: &mut Chunker,
        now: Timestamp,
    ) -> Result<Node, BackupError> {
        let mut node = Node::new(ByteString(name.to_vec()), NodeKind::File);
        self.set_owner_and_times(&mut node, now);
        node.mode = doc.mode.unwrap_or(0o644) & 0o7777;
        if let Some(t) = doc.mtime {
            let t = chrono::DateTime::<chrono::Utc>::from(t);
            node.mtime = Timestamp(t.timestamp(), t.timestamp_subsec_nanos());
            node.ctime = node.mtime;
            node.atime = node.mtime;
        }
        chunker.set_spec(self.repo.repo().chunker_for_file(doc.data.len() as u64));
        node.size = self
            .store_stream(chunker, &mut doc.data.as_slice(), &mut node.content)
            .map_err(|e| match e {
                StreamError::Repo(e) => BackupError::Repo(e),
                StreamError::Stopped => BackupError::Canceled,
                StreamError::Io(_, source) => BackupError::Source {
                    path: doc.path.clone(),
                    source,
                },
            })?;
        self.count_file(Novelty::New, node.size);
        Ok(node)
    }

    /// Writes a directory's trees (and those below it); returns its node.
    fn close_dir(&self, name: &[u8], dir: OpenDir) -> Result<Node, BackupError> {
        let mtime = dir.latest().unwrap_or(Timestamp(0, 0));
        let mut node = Node::new(ByteString(name.to_vec()), NodeKind::Dir);
        node.uid = nix::unistd::getuid().as_raw();
        node.gid = nix::unistd::getgid().as_raw();
        node.mode = 0o755;
        node.mtime = mtime;
        node.ctime = mtime;
        node.atime = mtime;
        node.subtree = Some(self.write_tree(dir)?);
        self.counters
            .dirs_new
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(node)
    }

    /// Writes one directory's tree, closing the directories below it first.
    fn write_tree(&self, dir: OpenDir) -> Result<Id, BackupError> {
        let mut nodes = Vec::with_capacity(dir.entries.len());
        for (name, entry) in dir.entries {
            nodes.push(match entry {
                Entry::File(n) | Entry::Closed(n) => n,
                Entry::Dir(d) if d.entries.is_empty() => continue,
                Entry::Dir(d) => self.close_dir(&name, d)?,
            });
        }
        let (id, _) = self
            .writer
            .add(BlobType::Tree, &Tree { nodes }.encode())
            .map_err(BackupError::Repo)?;
        Ok(id)
    }
}

/// The open directory that is to hold the last of `parts`, created as needed.
fn open_parent<'d>(root: &'d mut OpenDir, parts: &[&str]) -> Result<&'d mut OpenDir, Refused> {
    let mut dir = root;
    for part in &parts[..parts.len() - 1] {
        let entry = dir
            .entries
            .entry(part.as_bytes().to_vec())
            .or_insert_with(|| Entry::Dir(OpenDir::default()));
        dir = match entry {
            Entry::Dir(d) => d,
            Entry::File(_) => return Err(Refused::Conflict),
            Entry::Closed(_) => return Err(Refused::Closed),
        };
    }
    Ok(dir)
}

fn refusal(r: Refused, path: &str) -> BackupError {
    match r {
        Refused::Conflict => BackupError::DocumentConflict(path.to_string()),
        Refused::Closed => BackupError::DocumentOrder(path.to_string()),
    }
}
