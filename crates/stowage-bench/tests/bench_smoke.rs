//! The end-to-end benchmark (`scripts/bench.sh`, issue 6) at a tiny scale, so it keeps working:
//! the data-set generator is deterministic and its day of change applies once, and every step
//! of the benchmark runs for both Stowage configurations (and restic when it is installed),
//! restores match the source and the markdown report is produced.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The data-set generator, this package's own binary.
fn generator_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stowage-bench-data"))
}

/// The `stowage` binary, built beside this package's by `cargo test --workspace` (every test
/// target is compiled before any runs, and the `stowage` package's integration tests need it).
fn stowage_bin() -> PathBuf {
    let p = generator_bin().with_file_name("stowage");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build -p stowage` (`cargo test --workspace` does)",
        p.display()
    );
    p
}

fn generator(args: &[&str]) -> std::process::Output {
    Command::new(generator_bin())
        .args(args)
        .output()
        .expect("running stowage-bench-data")
}

fn ok(args: &[&str]) -> String {
    let out = generator(args);
    assert!(
        out.status.success(),
        "stowage-bench-data {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every path under `root` with its kind, size and content (or link target), sorted.
fn manifest(root: &Path) -> Vec<(String, Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
                out.push((rel, b"dir".to_vec(), 0));
            } else if ft.is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.push((rel, t.display().to_string().into_bytes(), 0));
            } else {
                let data = fs::read(&p).unwrap();
                let len = data.len() as u64;
                out.push((rel, data, len));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn generator_is_deterministic_and_changes_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let scale = ["--seed", "7", "--scale", "0.002"];
    let summary = ok(&[&["generate", "--out", a_s][..], &scale].concat());
    assert!(summary.contains("\"files\": "), "{summary}");
    ok(&[&["generate", "--out", b_s][..], &scale].concat());
    let before = manifest(&a);
    assert_eq!(before, manifest(&b), "same seed, same data");
    assert!(a.join("volume.img").metadata().unwrap().len() % 8192 == 0);
    assert!(
        before.iter().any(|(_, _, len)| *len == 0),
        "has empty files"
    );

    ok(&[&["change", "--out", a_s][..], &scale].concat());
    ok(&[&["change", "--out", b_s][..], &scale].concat());
    let after = manifest(&a);
    assert_eq!(after, manifest(&b), "same seed, same change");
    assert_ne!(before, after, "the change changed something");

    // The change applies once, and only to a set of the same seed and scale.
    assert!(
        !generator(&[&["change", "--out", a_s][..], &scale].concat())
            .status
            .success()
    );
    let c = dir.path().join("c");
    ok(&["generate", "--out", c.to_str().unwrap(), "--scale", "0.002"]);
    assert!(
        !generator(&["change", "--out", c.to_str().unwrap(), "--scale", "0.003"])
            .status
            .success()
    );
    // A different seed gives different data.
    assert_ne!(manifest(&c).len(), 0);
    assert_ne!(manifest(&c), before);
}

#[test]
fn bench_script_runs_every_step_and_writes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let report = dir.path().join("bench-results.md");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("BENCH_SCALE", "0.001")
        .env("BENCH_DIR", &work)
        .env("BENCH_OUT", &report)
        .env("BENCH_DROP_CACHES", "0")
        .env("BENCH_INSTALL", "0")
        .env("BENCH_VERIFY", "1")
        .env("BENCH_TOOLS", "stowage stowage-64k restic")
        .env("STOWAGE_BIN", stowage_bin())
        .env("BENCH_DATA_BIN", generator_bin())
        .output()
        .expect("running scripts/bench.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench.sh failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let table = fs::read_to_string(&report).unwrap();
    assert_eq!(
        table.trim(),
        stdout.trim(),
        "the report goes to stdout and the file"
    );
    for row in [
        "| initial backup | wall s |",
        "| unchanged re-backup (median of 3) | wall s |",
        "| backup after the change | wall s |",
        "| restore (fresh dir, best of 2) | wall s |",
        "| check --read-data | wall s |",
        "| bytes added by the change | repo growth on disk, MiB |",
        "| repository | MiB after change backup |",
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no row {row:?} in\n{table}"));
        // Every tool's wall time (and growth) is a number.
        assert!(!line.contains("n/a"), "missing figures in {line:?}");
    }
    assert!(table.contains("| stowage |"), "{table}");
    assert!(table.contains("stowage-64k"), "{table}");
    assert!(
        table.contains("identical"),
        "restores were verified: {table}"
    );
    if stderr.contains("skipping it") {
        eprintln!("restic is not installed: only the Stowage half of the benchmark ran");
    } else {
        assert!(table.contains("| target (issue 6) |"), "{table}");
    }
}
