//! The one walk over a snapshot's trees, used by every operation that reads them (check,
//! prune, repair, stats, ls, diff): depth first, entries in name order, with an explicit stack
//! (a hostile repository's deep nesting cannot overflow the thread's stack), each tree read
//! once per visit through the index (and so through the local cache of tree blobs).
//!
//! What differs between operations is what they do at each step, so that is a [`Visit`]:
//! whether to read a tree at all (skip one already seen, or one whose result is memoized),
//! what to do with each entry, what to do when a tree cannot be read, and what to conclude
//! when a tree is done (per-tree results, like "something below is damaged" or "the rewritten
//! tree's id").

use crate::id::Id;
use crate::repo::tree::Node;
use crate::repo::{IndexedRepo, RepoError};

/// Whether to read a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the tree and visit its entries.
    Enter,
    /// Do not read it (its entries are not visited, and no `tree_done` follows).
    Skip,
}

/// What an operation does at each step of a [`walk`]. Paths are relative to the walk's root,
/// as bytes, `/`-separated, without a leading `/` (the root's own path is empty).
pub trait Visit {
    /// The error that stops the walk.
    type Error: From<RepoError>;

    /// The tree `id`, the content of the directory at `path`, is about to be read.
    fn tree(&mut self, _id: &Id, _path: &[u8]) -> Result<Step, Self::Error> {
        Ok(Step::Enter)
    }

    /// The tree `id` could not be read. `Ok` goes on without its entries (and without
    /// `tree_done`); the default stops the walk with the error.
    fn unreadable(&mut self, _id: &Id, _path: &[u8], error: RepoError) -> Result<(), Self::Error> {
        Err(error.into())
    }

    /// One entry of the directory at `dir`, in name order. For a directory, this comes before
    /// the [`Visit::tree`] call for its content.
    fn node(&mut self, dir: &[u8], node: &Node) -> Result<(), Self::Error>;

    /// Every entry of the tree `id` (at `path`), and everything below, has been visited.
    fn tree_done(&mut self, _id: &Id, _path: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// `dir/name` (or `name` at the root).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        p.extend_from_slice(dir);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// A directory's path as messages show it: `/`, or `/a/b/`.
pub fn display_dir(path: &[u8]) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        format!("/{}/", String::from_utf8_lossy(path))
    }
}

struct Frame {
    id: Id,
    path: Vec<u8>,
    nodes: std::vec::IntoIter<Node>,
}

/// Walks the tree `root` (the content of the directory at `path`, usually the empty path of a
/// snapshot's root) and everything below it.
pub fn walk<V: Visit>(
    repo: &IndexedRepo,
    root: &Id,
    path: &[u8],
    visit: &mut V,
) -> Result<(), V::Error> {
    let mut stack: Vec<Frame> = Vec::new();
    enter(repo, root, path.to_vec(), visit, &mut stack)?;
    while let Some(top) = stack.last_mut() {
        let Some(node) = top.nodes.next() else {
            let done = stack.pop().expect("a frame is on the stack");
            visit.tree_done(&done.id, &done.path)?;
            continue;
        };
        visit.node(&top.path, &node)?;
        if let Some(sub) = node.subtree {
            let child = join(&top.path, &node.name.0);
            enter(repo, &sub, child, visit, &mut stack)?;
        }
    }
    Ok(())
}

fn enter<V: Visit>(
    repo: &IndexedRepo,
    id: &Id,
    path: Vec<u8>,
    visit: &mut V,
    stack: &mut Vec<Frame>,
) -> Result<(), V::Error> {
    if visit.tree(id, &path)? == Step::Skip {
        return Ok(());
    }
    match repo.read_tree(id) {
        Ok(t) => stack.push(Frame {
            id: *id,
            path,
            nodes: t.nodes.into_iter(),
        }),
        Err(e) => visit.unreadable(id, &path, e)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::id::BlobType;
    use crate::repo::session::{BackupWork, IndexSource, Locked, ReadWork};
    use crate::repo::tree::{ByteString, NodeKind, Tree};
    use crate::repo::writer::BlobWriter;
    use crate::repo::{InitOptions, Repository};
    use std::sync::Arc;

    fn repo(dir: &std::path::Path) -> Arc<Repository> {
        let opts = InitOptions {
            kdf_memory_kib: 64,
            kdf_iterations: 1,
            ..Default::default()
        };
        Arc::new(Repository::init(Arc::new(LocalBackend::new(dir)), b"pw", &opts).unwrap())
    }

    /// A backup session, for writing trees.
    fn writer(repo: &Arc<Repository>) -> crate::repo::session::Indexed<BackupWork> {
        repo.lock::<BackupWork>()
            .unwrap()
            .load_index(&IndexSource::Memory, &())
            .unwrap()
    }

    /// A read session whose index has what the writers stored.
    fn reader(repo: &Arc<Repository>) -> crate::repo::session::Indexed<ReadWork> {
        Locked::without_lock(repo)
            .load_index(&IndexSource::Memory, &())
            .unwrap()
    }

    fn dir(name: &str, sub: Id) -> Node {
        let mut n = Node::new(ByteString(name.as_bytes().to_vec()), NodeKind::Dir);
        n.subtree = Some(sub);
        n
    }

    fn file(name: &str) -> Node {
        Node::new(ByteString(name.as_bytes().to_vec()), NodeKind::File)
    }

    struct Record(Vec<String>);
    impl Visit for Record {
        type Error = RepoError;
        fn tree(&mut self, _: &Id, path: &[u8]) -> Result<Step, RepoError> {
            self.0
                .push(format!("enter {}", String::from_utf8_lossy(path)));
            Ok(if path == b"skip" {
                Step::Skip
            } else {
                Step::Enter
            })
        }
        fn node(&mut self, dir: &[u8], n: &Node) -> Result<(), RepoError> {
            self.0
                .push(String::from_utf8_lossy(&join(dir, &n.name.0)).into_owned());
            Ok(())
        }
        fn tree_done(&mut self, _: &Id, path: &[u8]) -> Result<(), RepoError> {
            self.0
                .push(format!("done {}", String::from_utf8_lossy(path)));
            Ok(())
        }
    }

    #[test]
    fn visits_depth_first_in_name_order_and_skips_on_request() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let w = BlobWriter::new(writer(&repo).indexed().clone(), 1);
        let tree = |nodes: Vec<Node>| w.add(BlobType::Tree, &Tree { nodes }.encode()).unwrap().0;
        let leaf = tree(vec![file("x")]);
        let skipped = tree(vec![file("never")]);
        let root = tree(vec![
            dir("a", leaf),
            file("b"),
            dir("c", leaf),
            dir("skip", skipped),
        ]);
        w.finish().unwrap();
        let s = reader(&repo);
        let mut r = Record(Vec::new());
        walk(s.indexed(), &root, b"", &mut r).unwrap();
        assert_eq!(
            r.0,
            [
                "enter ",
                "a",
                "enter a",
                "a/x",
                "done a",
                "b",
                "c",
                "enter c",
                "c/x",
                "done c",
                "skip",
                "enter skip",
                "done "
            ]
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let w = BlobWriter::new(writer(&repo).indexed().clone(), 1);
        let mut t = w
            .add(BlobType::Tree, &Tree { nodes: vec![] }.encode())
            .unwrap()
            .0;
        const DEPTH: usize = 20_000;
        for _ in 0..DEPTH {
            t = w
                .add(
                    BlobType::Tree,
                    &Tree {
                        nodes: vec![dir("d", t)],
                    }
                    .encode(),
                )
                .unwrap()
                .0;
        }
        w.finish().unwrap();
        let s = reader(&repo);
        struct Count(usize, usize);
        impl Visit for Count {
            type Error = RepoError;
            fn node(&mut self, dir: &[u8], _: &Node) -> Result<(), RepoError> {
                self.0 += 1;
                self.1 = self.1.max(dir.len());
                Ok(())
            }
        }
        // A thread with a small stack: a recursive walk would overflow it.
        let indexed = s.indexed().clone();
        let (n, longest) = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let mut c = Count(0, 0);
                walk(&indexed, &t, b"", &mut c).unwrap();
                (c.0, c.1)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(n, DEPTH);
        assert_eq!(longest, 2 * (DEPTH - 1) - 1);
    }
}
