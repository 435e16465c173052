//! Reading a backup's objects out of its snapshot (the layout of `repo-format/` §18): first the
//! list of items (type, namespace, name and where the bytes are, no object held), then each
//! object when its turn comes. Everything read is untrusted: the shape of every path is
//! checked, names must be Kubernetes names, and an object may not exceed [`MAX_OBJECT`].

use serde_json::Value;
use stowage_core::id::{BlobType, Id};
use stowage_core::repo::session::{Indexed, ReadWork};
use stowage_core::repo::snapshot::Snapshot;
use stowage_core::repo::tree::{Node, NodeKind};
use stowage_core::repo::RepoError;
use stowage_core::walk::{self, Step, Visit};

/// The largest object a restore reads: well above the API server's 1.5 MiB request limit.
pub const MAX_OBJECT: u64 = 8 << 20;
/// The most items a restore reads from one backup.
pub const MAX_ITEMS: usize = 5_000_000;

/// Why a backup's objects could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository could not be read.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The snapshot is not laid out as a Kubernetes backup.
    #[error("the snapshot is not a Kubernetes backup as repo-format §18 lays it out: {0}")]
    Layout(String),
    /// An object is too large, or is not a JSON object.
    #[error("{path}: {why}")]
    Object {
        /// Its path in the snapshot.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// One object of the backup, not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// `resource.group` (`deployments.apps`), `pods` for the core group.
    pub group_resource: String,
    /// Its namespace in the backup; `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    content: Vec<Id>,
    size: u64,
}

impl Item {
    /// An item with no content, for tests of what uses item lists.
    #[cfg(test)]
    pub(crate) fn for_test(group_resource: &str, namespace: Option<&str>, name: &str) -> Item {
        Item {
            group_resource: group_resource.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
            content: Vec::new(),
            size: 0,
        }
    }

    /// Its path in the snapshot.
    pub fn path(&self) -> String {
        crate::layout::object_path(&self.group_resource, self.namespace.as_deref(), &self.name)
    }
}

/// Whether `s` can be a Kubernetes object name, namespace or `resource.group`: 1 to 253
/// characters of lower-case letters, digits, `-`, `.` (and, for a few built-in names, `:` and
/// upper case, which RBAC objects allow), never `.` or `..`.
fn plausible_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_' | b'@'))
}

/// Lists the objects under `resources/` of a backup's snapshot, in path order.
pub fn list_items(
    session: &Indexed<ReadWork>,
    snapshot: &Snapshot,
) -> Result<Vec<Item>, SourceError> {
    let repo = session.indexed();
    let root = repo.read_tree(&snapshot.tree)?;
    let Some(resources) = root
        .nodes
        .iter()
        .find(|n| n.name.0 == b"resources" && n.kind == NodeKind::Dir)
        .and_then(|n| n.subtree)
    else {
        // A backup that selected nothing has no resources directory.
        return Ok(Vec::new());
    };
    let mut lister = Lister { items: Vec::new() };
    walk::walk(repo, &resources, b"", &mut lister)?;
    Ok(lister.items)
}

struct Lister {
    items: Vec<Item>,
}

impl Visit for Lister {
    type Error = SourceError;

    fn tree(&mut self, _id: &Id, path: &[u8]) -> Result<Step, SourceError> {
        // Directories are at most `<gr>/namespaces/<ns>`; deeper ones are not part of the layout.
        let depth = path.split(|&b| b == b'/').filter(|p| !p.is_empty()).count();
        if depth > 3 {
            return Err(SourceError::Layout(format!(
                "unexpected directory resources/{}",
                String::from_utf8_lossy(path)
            )));
        }
        Ok(Step::Enter)
    }

    fn node(&mut self, dir: &[u8], node: &Node) -> Result<(), SourceError> {
        let dir = String::from_utf8_lossy(dir).into_owned();
        let name = String::from_utf8_lossy(&node.name.0).into_owned();
        let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        let bad = |why: &str| SourceError::Layout(format!("resources/{dir}/{name}: {why}"));
        match (node.kind, parts.as_slice()) {
            (NodeKind::Dir, []) if plausible_name(&name) => Ok(()),
            (NodeKind::Dir, [_]) if name == "namespaces" || name == "cluster" => Ok(()),
            (NodeKind::Dir, [_, "namespaces"]) if plausible_name(&name) => Ok(()),
            (NodeKind::File, [gr, scope @ ..]) => {
                let namespace = match scope {
                    ["cluster"] => None,
                    ["namespaces", ns] => Some(ns.to_string()),
                    _ => return Err(bad("a file outside namespaces/<ns>/ or cluster/")),
                };
                let Some(object) = name.strip_suffix(".json").filter(|n| plausible_name(n)) else {
                    return Err(bad("not <name>.json"));
                };
                if node.size > MAX_OBJECT {
                    return Err(bad(&format!("{} bytes, over the limit", node.size)));
                }
                if self.items.len() >= MAX_ITEMS {
                    return Err(bad("more objects than a restore reads"));
                }
                self.items.push(Item {
                    group_resource: gr.to_string(),
                    namespace,
                    name: object.to_string(),
                    content: node.content.clone(),
                    size: node.size,
                });
                Ok(())
            }
            _ => Err(bad("not part of the layout")),
        }
    }
}

/// Reads one object: its blobs (each verified by the repository), at most [`MAX_OBJECT`]
/// bytes, parsed as a JSON object.
pub fn read_item(session: &Indexed<ReadWork>, item: &Item) -> Result<Value, SourceError> {
    let repo = session.indexed();
    let mut bytes = Vec::with_capacity(item.size.min(MAX_OBJECT) as usize);
    for id in &item.content {
        let blob = repo.read_blob(BlobType::Data, id)?;
        if (bytes.len() + blob.len()) as u64 > MAX_OBJECT {
            return Err(SourceError::Object {
                path: item.path(),
                why: "larger than the limit".into(),
            });
        }
        bytes.extend_from_slice(&blob);
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| SourceError::Object {
        path: item.path(),
        why: format!("not JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(SourceError::Object {
            path: item.path(),
            why: "not a JSON object".into(),
        });
    }
    Ok(value)
}
