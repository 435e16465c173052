//! Directory trees for tests: a manifest that captures everything a restore must reproduce
//! (kind, mode, size, times, content hash, symlink target, xattrs, hard-link groups, sparseness,
//! owner), its comparison, and deterministic sample data.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every file below `dir` (not directories), sorted; empty when `dir` cannot be read.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Everything a restore must reproduce about one entry.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Entry {
    /// `dir`, `file`, `symlink`, `fifo` or `other`.
    pub kind: &'static str,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Size of a regular file (0 otherwise).
    pub size: u64,
    /// Modification time, seconds and nanoseconds (0 for symlinks).
    pub mtime: (i64, i64),
    /// BLAKE3 hash of a regular file's content.
    pub content: Option<blake3::Hash>,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
    /// Extended attributes, name to value.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The first path (in sorted order) of the hardlink group, if the file has several names.
    pub hardlink_group: Option<Vec<u8>>,
    /// Whether the file occupies fewer blocks than its size needs.
    pub sparse: bool,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A manifest of a tree: relative path bytes -> entry. Directory mtimes are included.
pub fn manifest(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    collect(root, root, &mut out, &mut inodes);
    for (_, mut paths) in inodes {
        if paths.len() > 1 {
            paths.sort();
            for p in &paths {
                out.get_mut(p).unwrap().hardlink_group = Some(paths[0].clone());
            }
        }
    }
    out
}

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<Vec<u8>, Entry>,
    inodes: &mut HashMap<(u64, u64), Vec<Vec<u8>>>,
) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let t = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if t.is_dir() {
            "dir"
        } else if t.is_symlink() {
            "symlink"
        } else if t.is_fifo() {
            "fifo"
        } else if t.is_file() {
            "file"
        } else {
            "other"
        };
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(&p) {
            for n in names {
                if let Ok(Some(v)) = xattr::get(&p, &n) {
                    xattrs.insert(n.as_bytes().to_vec(), v);
                }
            }
        }
        let e = Entry {
            kind,
            mode: m.mode() & 0o7777,
            size: if t.is_file() { m.len() } else { 0 },
            mtime: if t.is_symlink() {
                (0, 0)
            } else {
                (m.mtime(), m.mtime_nsec())
            },
            content: t.is_file().then(|| blake3::hash(&fs::read(&p).unwrap())),
            target: t
                .is_symlink()
                .then(|| fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()),
            xattrs,
            hardlink_group: None,
            sparse: t.is_file() && m.len() > 64 * 1024 && m.blocks() * 512 < m.len() / 2,
            uid: m.uid(),
            gid: m.gid(),
        };
        if t.is_file() && m.nlink() > 1 {
            inodes
                .entry((m.dev(), m.ino()))
                .or_default()
                .push(rel.clone());
        }
        out.insert(rel, e);
        if t.is_dir() {
            collect(root, &p, out, inodes);
        }
    }
}

/// Asserts two manifests are equal, printing the first difference.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ma, mb) = (manifest(a), manifest(b));
    for (k, v) in &ma {
        match mb.get(k) {
            None => panic!(
                "{} missing from {}",
                String::from_utf8_lossy(k),
                b.display()
            ),
            Some(w) => assert_eq!(v, w, "entry {} differs", String::from_utf8_lossy(k)),
        }
    }
    for k in mb.keys() {
        assert!(
            ma.contains_key(k),
            "{} is extra in {}",
            String::from_utf8_lossy(k),
            b.display()
        );
    }
}

/// Whether the file system at `dir` supports user xattrs.
pub fn xattrs_supported(dir: &Path) -> bool {
    let p = dir.join(".xattr-probe");
    fs::write(&p, b"").unwrap();
    let ok = xattr::set(&p, "user.probe", b"1").is_ok();
    fs::remove_file(&p).unwrap();
    ok
}

/// Sets a file's mtime.
pub fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    filetime::set_symlink_file_times(
        p,
        filetime::FileTime::from_unix_time(secs, nanos),
        filetime::FileTime::from_unix_time(secs, nanos),
    )
    .unwrap();
}
