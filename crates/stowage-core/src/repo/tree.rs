//! Trees: one blob per directory, listing its entries with their metadata.
//!
//! A tree is JSON `{"nodes": [...]}`, nodes sorted by the bytes of their names, names unique.
//! Byte strings that may not be UTF-8 (names, symlink targets, xattr names) are a JSON string
//! when they are valid UTF-8 and `{"b64": "..."}` otherwise.

use super::error::{RepoError, Result};
use crate::id::Id;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Longest name accepted in a tree (Linux allows 255 bytes; leave room for other systems).
pub const MAX_NAME_LEN: usize = 4096;

/// Bytes that are usually, but not always, UTF-8 (file names, link targets).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteString(pub Vec<u8>);

impl ByteString {
    /// The bytes of an OS string.
    pub fn from_os(s: &OsStr) -> Self {
        ByteString(s.as_bytes().to_vec())
    }
    /// The bytes as an OS string.
    pub fn to_os(&self) -> OsString {
        OsString::from_vec(self.0.clone())
    }
    /// The bytes as an OS string, borrowed.
    pub fn as_os(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }
    /// For display: lossy UTF-8.
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ByteStringRepr {
    Text(String),
    Raw { b64: String },
}

impl Serialize for ByteString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => s.serialize_str(t),
            Err(_) => ByteStringRepr::Raw {
                b64: B64.encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match ByteStringRepr::deserialize(d)? {
            ByteStringRepr::Text(t) => Ok(ByteString(t.into_bytes())),
            ByteStringRepr::Raw { b64 } => B64
                .decode(b64)
                .map(ByteString)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// What kind of file system object a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A further name of a file seen earlier in the same snapshot (see `link_target`).
    Hardlink,
    /// A character device.
    Chardev,
    /// A block device.
    Blockdev,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

/// A point in time as seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Timestamp(pub i64, pub u32);

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// The attribute's name.
    pub name: ByteString,
    /// Base64 of the value.
    pub value: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The entry's name (no slash).
    pub name: ByteString,
    #[serde(rename = "type")]
    /// What kind of object it is.
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Owner's user name, where known.
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Owner's group name, where known.
    pub group: Option<String>,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status change time.
    pub ctime: Timestamp,
    /// Access time.
    pub atime: Timestamp,
    #[serde(default, skip_serializing_if = "is_zero")]
    /// Size in bytes (files only).
    pub size: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    /// Inode number (with `device`, tells hard links apart).
    pub inode: u64,
    /// `st_dev` of the file system the entry was on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    /// Number of hard links.
    pub links: u64,
    /// `st_rdev` of a device node.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// Extended attributes.
    pub xattrs: Vec<Xattr>,
    /// Target of a symlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ByteString>,
    /// For `hardlink` nodes: the path, relative to the snapshot root with `/` separators, of the
    /// node that was seen first with the same inode and device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<ByteString>,
    /// Data blobs of a file (or hardlink) in order, covering the file minus its holes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// Holes of a sparse file as `[offset, length]`, sorted and disjoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holes: Vec<(u64, u64)>,
    /// Tree blob of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
}

impl Node {
    /// A node with the given name and kind and empty metadata.
    pub fn new(name: ByteString, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            atime: Timestamp::default(),
            size: 0,
            inode: 0,
            device: 0,
            links: 0,
            rdev: 0,
            xattrs: Vec::new(),
            target: None,
            link_target: None,
            content: Vec::new(),
            holes: Vec::new(),
            subtree: None,
        }
    }

    /// Whether the node has file content.
    pub fn has_content(&self) -> bool {
        matches!(self.kind, NodeKind::File | NodeKind::Hardlink)
    }
}

/// Checks that a name from a tree is a single, safe path component: not empty, not `.` or `..`,
/// no `/` and no NUL. Everything read from the repository passes through this before it is
/// used as a path, so nothing can be written outside a restore target.
pub fn validate_name(name: &[u8]) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name == b"." || name == b".." {
        return Err(format!(
            "name {:?} is not allowed",
            String::from_utf8_lossy(name)
        ));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(format!(
            "name {:?} contains '/' or NUL",
            String::from_utf8_lossy(name)
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err("name too long".into());
    }
    Ok(())
}

/// Checks a `/`-separated relative path from a tree (a hardlink target) component by component.
pub fn validate_relative_path(path: &[u8]) -> std::result::Result<(), String> {
    if path.is_empty() || path.len() > 64 * 1024 {
        return Err("bad path length".into());
    }
    path.split(|&b| b == b'/').try_for_each(validate_name)
}

/// A directory listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries, sorted by name.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts nodes by name so equal directories give equal blobs (and dedup).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The tree's blob: compact JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("trees serialize")
    }

    /// Decodes and validates a tree: names safe, sorted and unique; each kind with the fields it
    /// needs.
    pub fn decode(id: &Id, bytes: &[u8]) -> Result<Tree> {
        let what = || format!("tree {}", id.short());
        let t: Tree = serde_json::from_slice(bytes).map_err(|e| RepoError::malformed(what(), e))?;
        for (i, n) in t.nodes.iter().enumerate() {
            validate_name(&n.name.0).map_err(|e| RepoError::malformed(what(), e))?;
            if i > 0 && t.nodes[i - 1].name >= n.name {
                return Err(RepoError::malformed(
                    what(),
                    "names are not sorted and unique",
                ));
            }
            let ok = match n.kind {
                NodeKind::Dir => n.subtree.is_some(),
                NodeKind::Symlink => n.target.is_some(),
                NodeKind::Hardlink => n
                    .link_target
                    .as_ref()
                    .is_some_and(|p| validate_relative_path(&p.0).is_ok()),
                _ => true,
            };
            if !ok {
                return Err(RepoError::malformed(
                    what(),
                    format!(
                        "{:?} node {:?} lacks required fields",
                        n.kind,
                        n.name.lossy()
                    ),
                ));
            }
            let mut end = 0u64;
            for &(off, len) in &n.holes {
                if off < end || off.checked_add(len).is_none_or(|e| e > n.size) {
                    return Err(RepoError::malformed(
                        what(),
                        "holes overlap or exceed the size",
                    ));
                }
                end = off + len;
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_names_round_trip() {
        let mut n = Node::new(ByteString(vec![0xff, b'a', 0xfe]), NodeKind::File);
        n.size = 3;
        let t = Tree { nodes: vec![n] };
        let json = t.encode();
        assert!(String::from_utf8_lossy(&json).contains("b64"));
        assert_eq!(Tree::decode(&Id::default(), &json).unwrap(), t);
    }

    #[test]
    fn unsafe_names_are_rejected() {
        for bad in [&b".."[..], b".", b"a/b", b"", b"x\0y"] {
            let t = Tree {
                nodes: vec![Node::new(ByteString(bad.to_vec()), NodeKind::File)],
            };
            assert!(
                Tree::decode(&Id::default(), &t.encode()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unsorted_names_are_rejected() {
        let t = Tree {
            nodes: vec![
                Node::new(ByteString(b"b".to_vec()), NodeKind::File),
                Node::new(ByteString(b"a".to_vec()), NodeKind::File),
            ],
        };
        assert!(Tree::decode(&Id::default(), &t.encode()).is_err());
    }

    #[test]
    fn hardlink_target_may_not_escape() {
        let mut n = Node::new(ByteString(b"l".to_vec()), NodeKind::Hardlink);
        n.link_target = Some(ByteString(b"../etc/passwd".to_vec()));
        let t = Tree { nodes: vec![n] };
        assert!(Tree::decode(&Id::default(), &t.encode()).is_err());
    }
}
