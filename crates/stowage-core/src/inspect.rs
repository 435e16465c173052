//! Looking into snapshots without restoring them: listing a snapshot's entries (`ls`), what the
//! repository holds for some snapshots (`stats`), and what changed between two (`diff`). Each
//! is a [`walk`](crate::walk) of the snapshot's trees; front ends only format the results.

use crate::backend::FileKind;
use crate::error::{Classified, ErrorClass};
use crate::id::{BlobType, Id};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeKind};
use crate::repo::{IndexedRepo, RepoError};
use crate::walk::{self, join, Step, Visit};
use std::collections::{BTreeMap, HashSet};

/// Errors of the inspection functions.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Reading the repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The path asked for is not in the snapshot.
    #[error("path {0:?} does not exist in the snapshot")]
    NoSuchPath(String),
    /// The path asked for is in the snapshot, but is not a directory.
    #[error("path {0:?} is not a directory")]
    NotADirectory(String),
}

impl Classified for InspectError {
    fn class(&self) -> ErrorClass {
        match self {
            InspectError::Repo(e) => e.class(),
            InspectError::NoSuchPath(_) | InspectError::NotADirectory(_) => ErrorClass::Config,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            InspectError::Repo(e) => e.kind(),
            InspectError::NoSuchPath(_) => "inspect.no_such_path",
            InspectError::NotADirectory(_) => "inspect.not_a_directory",
        }
    }
}

/// The tree of the directory at `path` (`a/b`, leading and trailing `/` ignored) below `root`.
pub fn find_dir(repo: &IndexedRepo, root: &Id, path: &str) -> Result<Id, InspectError> {
    let mut tree = *root;
    for part in path.split('/').filter(|s| !s.is_empty()) {
        let t = repo.read_tree(&tree)?;
        let Some(n) = t.nodes.into_iter().find(|n| n.name.0 == part.as_bytes()) else {
            return Err(InspectError::NoSuchPath(path.into()));
        };
        tree = n
            .subtree
            .ok_or_else(|| InspectError::NotADirectory(path.into()))?;
    }
    Ok(tree)
}

/// Calls `f` with the path (relative, `/`-separated) and node of every entry below `root`, in
/// depth-first name order, without collecting them: a listing of a snapshot of millions of
/// files holds one tree per level in memory.
pub fn list<E: From<RepoError>>(
    repo: &IndexedRepo,
    root: &Id,
    base: &[u8],
    f: impl FnMut(&[u8], &Node) -> Result<(), E>,
) -> Result<(), E> {
    struct Lister<F>(F);
    impl<E: From<RepoError>, F: FnMut(&[u8], &Node) -> Result<(), E>> Visit for Lister<F> {
        type Error = E;
        fn node(&mut self, dir: &[u8], node: &Node) -> Result<(), E> {
            (self.0)(&join(dir, &node.name.0), node)
        }
    }
    walk::walk(repo, root, base, &mut Lister(f))
}

/// What `stats` reports.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Snapshots counted.
    pub snapshots: usize,
    /// Files with content (a file in several snapshots counts in each; see [`stats`]).
    pub files: u64,
    /// Bytes a restore of those files writes.
    pub restore_size: u64,
    /// Distinct blobs (trees and data) they reference.
    pub unique_blobs: usize,
    /// Plaintext bytes of those blobs.
    pub raw_data_size: u64,
    /// Stored (compressed, sealed) bytes of those blobs.
    pub stored_data_size: u64,
    /// Bytes of every pack in the repository.
    pub repository_pack_bytes: u64,
    /// `restore_size / raw_data_size`.
    pub dedup_ratio: f64,
    /// `raw_data_size / stored_data_size`.
    pub compression_ratio: f64,
}

/// Counts files, restore size and unique blobs of `snapshots`. With `every_tree`, each
/// snapshot's trees are all walked (restore size is exact per snapshot); without it, a tree
/// already counted in an earlier snapshot is not walked again (fast over many similar
/// snapshots: files and restore size then count each unchanged directory once).
pub fn stats(
    repo: &IndexedRepo,
    snapshots: &[(Id, Snapshot)],
    every_tree: bool,
) -> Result<Stats, RepoError> {
    struct Counter {
        every_tree: bool,
        trees: HashSet<Id>,
        blobs: HashSet<(BlobType, Id)>,
        files: u64,
        restore_size: u64,
    }
    impl Visit for Counter {
        type Error = RepoError;
        fn tree(&mut self, id: &Id, _: &[u8]) -> Result<Step, RepoError> {
            let first = self.trees.insert(*id);
            self.blobs.insert((BlobType::Tree, *id));
            Ok(if first || self.every_tree {
                Step::Enter
            } else {
                Step::Skip
            })
        }
        fn node(&mut self, _: &[u8], n: &Node) -> Result<(), RepoError> {
            if n.has_content() {
                self.files += 1;
                self.restore_size += n.size;
                self.blobs
                    .extend(n.content.iter().map(|id| (BlobType::Data, *id)));
            }
            Ok(())
        }
    }
    let mut c = Counter {
        every_tree,
        trees: HashSet::new(),
        blobs: HashSet::new(),
        files: 0,
        restore_size: 0,
    };
    for (_, s) in snapshots {
        walk::walk(repo, &s.tree, b"", &mut c)?;
    }
    let (mut raw, mut stored) = (0u64, 0u64);
    for (t, id) in &c.blobs {
        if let Some(loc) = repo.index().get(*t, id) {
            raw += loc.raw_length as u64;
            stored += loc.length as u64;
        }
    }
    let pack_bytes = repo
        .repo()
        .backend()
        .list(FileKind::Pack)?
        .iter()
        .map(|f| f.size)
        .sum();
    let ratio = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    Ok(Stats {
        snapshots: snapshots.len(),
        files: c.files,
        restore_size: c.restore_size,
        unique_blobs: c.blobs.len(),
        raw_data_size: raw,
        stored_data_size: stored,
        repository_pack_bytes: pack_bytes,
        dedup_ratio: ratio(c.restore_size, raw),
        compression_ratio: ratio(raw, stored),
    })
}

/// What `diff` finds, each list of paths (`/a/b`; added and removed directories end in `/`)
/// in depth-first name order.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// Only in the second snapshot.
    pub added: Vec<String>,
    /// Only in the first snapshot.
    pub removed: Vec<String>,
    /// Content, kind, size or link target differ.
    pub modified: Vec<String>,
    /// Only mode, owner, mtime or xattrs differ.
    pub metadata: Vec<String>,
}

fn display_path(p: &[u8], dir: bool) -> String {
    let mut s = format!("/{}", String::from_utf8_lossy(p));
    if dir {
        s.push('/');
    }
    s
}

fn nodes(repo: &IndexedRepo, tree: &Id) -> Result<BTreeMap<Vec<u8>, Node>, RepoError> {
    Ok(repo
        .read_tree(tree)?
        .nodes
        .into_iter()
        .map(|n| (n.name.0.clone(), n))
        .collect())
}

/// The entry at `path` and, for a directory, everything below it, as added or removed paths.
fn whole(
    repo: &IndexedRepo,
    path: &[u8],
    n: &Node,
    out: &mut Vec<String>,
) -> Result<(), RepoError> {
    out.push(display_path(path, n.kind == NodeKind::Dir));
    if let Some(sub) = &n.subtree {
        list(repo, sub, path, |p, n| {
            out.push(display_path(p, n.kind == NodeKind::Dir));
            Ok::<_, RepoError>(())
        })?;
    }
    Ok(())
}

/// Compares the trees `a` (older) and `b` (newer). Subtrees with the same id are not read.
pub fn diff(repo: &IndexedRepo, a: &Id, b: &Id) -> Result<Changes, RepoError> {
    let mut c = Changes::default();
    // Directories to compare, depth first; the explicit stack bounds recursion.
    let mut stack: Vec<(Vec<u8>, Id, Id)> = vec![(Vec::new(), *a, *b)];
    while let Some((dir, a, b)) = stack.pop() {
        if a == b {
            continue;
        }
        let (na, nb) = (nodes(repo, &a)?, nodes(repo, &b)?);
        let mut subdirs = Vec::new();
        for (name, x) in &na {
            let p = join(&dir, name);
            match nb.get(name) {
                None => whole(repo, &p, x, &mut c.removed)?,
                Some(y) => {
                    if let (NodeKind::Dir, NodeKind::Dir, Some(sa), Some(sb)) =
                        (x.kind, y.kind, x.subtree, y.subtree)
                    {
                        subdirs.push((p, sa, sb));
                    } else if x.kind != y.kind
                        || x.content != y.content
                        || x.target != y.target
                        || x.size != y.size
                    {
                        c.modified.push(display_path(&p, false));
                    } else if x.mode != y.mode
                        || x.uid != y.uid
                        || x.gid != y.gid
                        || x.mtime != y.mtime
                        || x.xattrs != y.xattrs
                    {
                        c.metadata.push(display_path(&p, false));
                    }
                }
            }
        }
        for (name, y) in &nb {
            if !na.contains_key(name) {
                whole(repo, &join(&dir, name), y, &mut c.added)?;
            }
        }
        // In name order when popped.
        stack.extend(subdirs.into_iter().rev());
    }
    // Depth-first name order, as a listing shows them (directories are compared after their
    // siblings above).
    for list in [
        &mut c.added,
        &mut c.removed,
        &mut c.modified,
        &mut c.metadata,
    ] {
        list.sort_by(|x, y| x.split('/').cmp(y.split('/')));
    }
    Ok(c)
}
