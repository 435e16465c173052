//! Reading the source file system: metadata into tree nodes, exclude patterns, and file content
//! split into data regions (so holes of sparse files stay holes).

use crate::repo::tree::{ByteString, Node, NodeKind, Timestamp, Xattr};
use base64::Engine;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Mutex;

/// Exclude patterns. A pattern with a `/` matches the whole absolute path; one without matches
/// the entry's name anywhere in the tree. `*`, `?`, `[...]` and `**` work as in shells.
pub struct Excludes {
    by_path: GlobSet,
    by_name: GlobSet,
    patterns: Vec<String>,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Excludes, String> {
        let mut by_path = GlobSetBuilder::new();
        let mut by_name = GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            let glob = globset::GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("bad exclude pattern {p:?}: {e}"))?;
            if p.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(Glob::new(p).map_err(|e| format!("bad exclude pattern {p:?}: {e}"))?);
            }
        }
        Ok(Excludes {
            by_path: by_path.build().map_err(|e| e.to_string())?,
            by_name: by_name.build().map_err(|e| e.to_string())?,
            patterns: patterns.to_vec(),
        })
    }

    /// Reads patterns from a file: one per line, blank lines and `#` comments ignored.
    pub fn read_file(path: &Path) -> io::Result<Vec<String>> {
        Ok(std::fs::read_to_string(path)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect())
    }

    pub fn is_excluded(&self, path: &Path) -> bool {
        if self.by_path.is_match(path) {
            return true;
        }
        path.file_name().is_some_and(|n| self.by_name.is_match(n))
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// Caches uid and gid to name lookups (they are slow and repeat a lot).
#[derive(Default)]
pub struct OwnerNames {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
}

impl OwnerNames {
    pub fn user(&self, uid: u32) -> Option<String> {
        self.users
            .lock()
            .unwrap()
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    pub fn group(&self, gid: u32) -> Option<String> {
        self.groups
            .lock()
            .unwrap()
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// The node kind of a file type, or `None` for types we cannot store.
pub fn node_kind(meta: &Metadata) -> NodeKind {
    let t = meta.file_type();
    if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_block_device() {
        NodeKind::Blockdev
    } else if t.is_char_device() {
        NodeKind::Chardev
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// Builds a node from `lstat` metadata (content, subtree and link fields are left empty).
pub fn node_from_metadata(
    path: &Path,
    name: ByteString,
    meta: &Metadata,
    owners: &OwnerNames,
) -> io::Result<Node> {
    let kind = node_kind(meta);
    let mut n = Node::new(name, kind);
    n.mode = meta.mode() & 0o7777;
    n.uid = meta.uid();
    n.gid = meta.gid();
    n.user = owners.user(n.uid);
    n.group = owners.group(n.gid);
    n.mtime = Timestamp(meta.mtime(), meta.mtime_nsec() as u32);
    n.ctime = Timestamp(meta.ctime(), meta.ctime_nsec() as u32);
    n.atime = Timestamp(meta.atime(), meta.atime_nsec() as u32);
    n.inode = meta.ino();
    n.device = meta.dev();
    n.links = meta.nlink();
    if kind == NodeKind::File {
        n.size = meta.len();
    }
    if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
        n.rdev = meta.rdev();
    }
    if kind == NodeKind::Symlink {
        n.target = Some(ByteString::from_os(std::fs::read_link(path)?.as_os_str()));
    }
    n.xattrs = read_xattrs(path);
    Ok(n)
}

/// Extended attributes of a path (not following symlinks). File systems without xattr support
/// give none.
pub fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = xattr::get(path, &name).ok().flatten()?;
            Some(Xattr {
                name: ByteString::from_os(&name),
                value: base64::engine::general_purpose::STANDARD.encode(value),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One region of a file: data to read, or a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Data { offset: u64, len: u64 },
    Hole { offset: u64, len: u64 },
}

/// The data and hole regions of an open file of `size` bytes. Files whose allocated blocks cover
/// their size are one data region without asking the file system; otherwise `SEEK_DATA` and
/// `SEEK_HOLE` find the holes (file systems without them report one data region).
pub fn regions(file: &File, meta: &Metadata) -> Vec<Region> {
    let size = meta.len();
    if size == 0 {
        return Vec::new();
    }
    if meta.blocks() * 512 >= size {
        return vec![Region::Data {
            offset: 0,
            len: size,
        }];
    }
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    while pos < size {
        // SAFETY: lseek on a valid descriptor has no memory effects.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            // ENXIO: no data after pos; the rest is a hole. Other errors: treat as data.
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                out.push(Region::Hole {
                    offset: pos,
                    len: size - pos,
                });
            } else {
                out.push(Region::Data {
                    offset: pos,
                    len: size - pos,
                });
            }
            break;
        }
        let data = (data as u64).min(size);
        if data > pos {
            out.push(Region::Hole {
                offset: pos,
                len: data - pos,
            });
        }
        if data >= size {
            break;
        }
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        let end = if hole < 0 {
            size
        } else {
            (hole as u64).min(size)
        };
        out.push(Region::Data {
            offset: data,
            len: end - data,
        });
        pos = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn excludes_match_names_and_paths() {
        let e = Excludes::new(&[
            "*.tmp".into(),
            "/data/cache/**".into(),
            "node_modules".into(),
        ])
        .unwrap();
        assert!(e.is_excluded(Path::new("/x/y/a.tmp")));
        assert!(e.is_excluded(Path::new("/data/cache/a/b")));
        assert!(e.is_excluded(Path::new("/src/node_modules")));
        assert!(!e.is_excluded(Path::new("/data/other")));
        assert!(!e.is_excluded(Path::new("/x/a.tmpx")));
    }

    #[test]
    fn sparse_file_has_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"start").unwrap();
        f.seek(SeekFrom::Start(8 << 20)).unwrap();
        f.write_all(b"end").unwrap();
        drop(f);
        let f = File::open(&p).unwrap();
        let r = regions(&f, &f.metadata().unwrap());
        let covered: u64 = r
            .iter()
            .map(|r| match r {
                Region::Data { len, .. } | Region::Hole { len, .. } => *len,
            })
            .sum();
        assert_eq!(covered, (8 << 20) + 3);
        // tmpfs and ext4 report the hole; some file systems do not.
        if f.metadata().unwrap().blocks() * 512 < (8 << 20) {
            assert!(r.iter().any(|r| matches!(r, Region::Hole { .. })), "{r:?}");
        }
    }
}
