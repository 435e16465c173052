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

/// Builds in `dir` (which must exist and be empty) a tree of the cases backup engines get
/// wrong, the same on every call: nested directories, an empty directory, an empty file, a
/// 3 MiB random file, a 16 MiB sparse file with a hole in the middle, a relative and a dangling
/// symlink, two hard links to one file, user xattrs (where [`xattrs_supported`]), modes 0600,
/// 0755 and 0700, a non-UTF-8, a unicode, a space-containing and a 255-byte name, a FIFO, and
/// fixed modes and mtimes on every entry (so the umask does not matter).
pub fn awkward_tree(dir: &Path) {
    let at = |rel: &str| dir.join(rel);
    fs::create_dir_all(at("nested/one/two/three")).unwrap();
    fs::write(at("nested/one/two/three/deep.txt"), b"at the bottom\n").unwrap();
    fs::create_dir(at("empty-dir")).unwrap();
    fs::create_dir(at("private-dir")).unwrap();
    fs::write(at("private-dir/inside.txt"), b"behind 0700\n").unwrap();

    fs::write(at("empty-file"), b"").unwrap();
    fs::write(at("random.bin"), random_bytes((3 << 20) + 4097, 0xA3C5)).unwrap();
    write_holey(&at("holey.img"));

    std::os::unix::fs::symlink("nested/one/two/three/deep.txt", at("relative-link")).unwrap();
    std::os::unix::fs::symlink("no/such/target", at("dangling-link")).unwrap();
    fs::write(at("hard-link-first"), b"one inode, two names\n").unwrap();
    fs::hard_link(at("hard-link-first"), at("nested/hard-link-second")).unwrap();

    fs::write(at("owner-only.txt"), b"0600\n").unwrap();
    fs::write(at("run.sh"), b"#!/bin/sh\necho awkward\n").unwrap();

    fs::write(
        dir.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9-\xff.txt")),
        b"bytes",
    )
    .unwrap();
    fs::write(at("unicode-Ünïcødé-日本語-🦀.txt"), "unicode\n").unwrap();
    fs::write(at(" leading and trailing spaces "), b"spaces\n").unwrap();
    fs::write(at(&format!("{}.txt", "n".repeat(251))), b"255-byte name\n").unwrap();
    let fifo_mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
    nix::unistd::mkfifo(&at("fifo"), fifo_mode).unwrap();

    if xattrs_supported(dir) {
        xattr::set(at("random.bin"), "user.stowage.kind", b"random").unwrap();
        xattr::set(at("empty-dir"), "user.stowage.empty", b"").unwrap();
        xattr::set(
            at("owner-only.txt"),
            "user.stowage.binary",
            &[0, 1, 254, 255],
        )
        .unwrap();
    }
    fix_modes_and_mtimes(dir);
}

/// 64 KiB of data, a 16 MiB hole, 64 KiB of data.
fn write_holey(path: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::File::create(path).unwrap();
    f.write_all(&random_bytes(64 << 10, 0x501)).unwrap();
    f.seek(SeekFrom::Current(16 << 20)).unwrap();
    f.write_all(&random_bytes(64 << 10, 0x502)).unwrap();
}

/// Gives every entry below `dir` a fixed mode (the unusual ones by name) and a distinct fixed
/// mtime. Times last: setting a child's times does not touch its directory's mtime.
fn fix_modes_and_mtimes(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    all_entries(dir, &mut entries);
    entries.sort();
    for (i, path) in entries.iter().enumerate() {
        let kind = fs::symlink_metadata(path).unwrap().file_type();
        if kind.is_symlink() {
            continue;
        }
        let mode = match path.file_name().unwrap().as_bytes() {
            b"owner-only.txt" => 0o600,
            b"private-dir" => 0o700,
            b"run.sh" => 0o755,
            _ if kind.is_dir() => 0o755,
            _ => 0o644,
        };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(path, 1_262_304_000 + 86_400 * i as i64, 1000 * i as u32);
    }
}

/// Every entry below `dir`, directories included, symlinks not followed.
fn all_entries(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            all_entries(&e.path(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_awkward_tree_is_the_same_on_every_call_and_has_its_awkward_entries() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        awkward_tree(a.path());
        awkward_tree(b.path());
        assert_same_tree(a.path(), b.path());
        let m = manifest(a.path());
        let entry = |name: &[u8]| m.get(name).unwrap_or_else(|| panic!("no {name:?}"));
        assert!(entry(b"holey.img").sparse);
        assert_eq!(entry(b"fifo").kind, "fifo");
        assert_eq!(entry(b"private-dir").mode, 0o700);
        assert_eq!(entry(b"owner-only.txt").mode, 0o600);
        assert_eq!(entry(b"run.sh").mode, 0o755);
        assert_eq!(
            entry(b"dangling-link").target.as_deref(),
            Some(&b"no/such/target"[..])
        );
        assert_eq!(
            entry(b"nested/hard-link-second").hardlink_group.as_deref(),
            Some(&b"hard-link-first"[..])
        );
        assert!(m.contains_key(&b"latin1-\xe9t\xe9-\xff.txt"[..]));
        assert!(m.keys().any(|k| k.len() == 255));
    }
}
