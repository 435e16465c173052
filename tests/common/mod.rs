//! Shared helpers for the integration tests: a scratch directory with a repository, a way to
//! run the real binary, and a manifest of a directory tree that captures everything a restore
//! must reproduce.
#![allow(dead_code)]

pub mod faulty_backend;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const PASSWORD: &str = "correct horse battery staple";

/// A scratch directory holding a repository at `repo` and whatever the test puts beside it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        Env { dir, repo }
    }

    /// A new environment with an initialised repository (cheap key derivation for speed).
    pub fn init(extra: &[&str]) -> Env {
        let env = Env::new();
        let mut args = vec!["init", "--kdf-memory", "64", "--kdf-iterations", "1"];
        args.extend_from_slice(extra);
        env.ok(&args);
        env
    }

    /// A repository with 1 MiB packs and 64/128/512 KiB chunks: small data makes many packs,
    /// so crashes, faults and concurrent operations meet many files.
    pub fn init_small() -> Env {
        Env::init(&[
            "--pack-size",
            "1",
            "--chunk-min",
            "65536",
            "--chunk-avg",
            "131072",
            "--chunk-max",
            "524288",
        ])
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stowage"));
        c.args(args)
            .env("STOWAGE_REPOSITORY", &self.repo)
            .env("STOWAGE_PASSWORD", PASSWORD)
            .env("STOWAGE_CACHE_DIR", self.dir.path().join("cache"))
            .env_remove("STOWAGE_PASSWORD_FILE")
            .env_remove("STOWAGE_PASSWORD_COMMAND")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running stowage")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    /// Runs, asserts failure with `code`, returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        failed_with(args, self.run(args), code)
    }

    /// Restores the latest snapshot into `target` with `--verify` (every file read back and
    /// checked against the snapshot); asserts success and returns stdout.
    pub fn restore_verified(&self, target: &Path) -> String {
        self.ok(&[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--verify",
        ])
    }

    /// Runs with --json and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }

    /// Total bytes of pack files in the repository.
    pub fn pack_bytes(&self) -> u64 {
        walk_files(&self.repo.join("data"))
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum()
    }

    pub fn files_in(&self, folder: &str) -> Vec<PathBuf> {
        walk_files(&self.repo.join(folder))
    }
}

/// Asserts that `stowage args` (which gave `out`) succeeded; returns its stdout.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "stowage {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts that `stowage args` (which gave `out`) exited with `code` and did not panic;
/// returns its stderr.
pub fn failed_with(args: &[&str], out: Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stowage {args:?}: expected exit {code}\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}

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
    pub kind: &'static str,
    pub mode: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub content: Option<blake3::Hash>,
    pub target: Option<Vec<u8>>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The first path (in sorted order) of the hardlink group, if the file has several names.
    pub hardlink_group: Option<Vec<u8>>,
    /// Whether the file occupies fewer blocks than its size needs.
    pub sparse: bool,
    pub uid: u32,
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

/// Runs a command and asserts it succeeded.
pub fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?}");
}
