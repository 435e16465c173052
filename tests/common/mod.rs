//! Shared helpers for the integration tests: a scratch directory with a repository and a way to
//! run the real binary. Tree manifests and sample data come from `stowage-testkit`.
#![allow(dead_code)]

pub use stowage_testkit::tree::*;

use std::fs;
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

/// Runs a command and asserts it succeeded.
pub fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?}");
}
