//! Stable-toolchain smoke test of the fuzz targets: each target body runs on its valid seeds,
//! thousands of mutations of them and pseudo-random inputs, and on any files in
//! `corpus/<target>/` and `artifacts/<target>/` (so a crash found by cargo-fuzz can be replayed
//! on stable). None may panic.
//!
//! `STOWAGE_FUZZ_ITERS` (default 3000) sets the number of generated inputs per target and
//! `STOWAGE_FUZZ_SEED` the PRNG seed, for longer or different runs:
//! `STOWAGE_FUZZ_ITERS=200000 STOWAGE_FUZZ_SEED=7 cargo test --release`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use stowage_core::pack::{decode_header, header_location};
use stowage_core::repo::config::RepoConfig;
use stowage_core::repo::index::IndexFile;
use stowage_core::repo::snapshot::Snapshot;
use stowage_core::repo::tree::Tree;
use stowage_fuzz::{keys, mutate, run_target, seeds, Rng};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs one input; on a panic, fails naming the target and showing the input.
fn run_one(target: &str, what: &str, input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| run_target(target, input))).is_err() {
        let shown = &input[..input.len().min(512)];
        panic!(
            "fuzz target {target} panicked on {what} ({} bytes): {}{}",
            input.len(),
            hex(shown),
            if shown.len() < input.len() { "..." } else { "" }
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn replay_dir(target: &str, dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            let bytes = std::fs::read(e.path()).unwrap();
            run_one(target, &e.path().display().to_string(), &bytes);
            n += 1;
        }
    }
    n
}

fn smoke(target: &str) {
    let iters = env_u64("STOWAGE_FUZZ_ITERS", 3000);
    let seed = env_u64("STOWAGE_FUZZ_SEED", 1);
    let mut rng = Rng::new(seed ^ (target.len() as u64) << 32 ^ target.as_bytes()[0] as u64);
    let seeds = seeds(target);
    assert!(!seeds.is_empty());
    for (i, s) in seeds.iter().enumerate() {
        run_one(target, &format!("seed {i}"), s);
    }
    let mut pool = seeds.clone();
    for i in 0..iters {
        let input = match i % 4 {
            // Pseudo-random bytes, mostly short.
            0 => {
                let n = if rng.below(8) == 0 {
                    rng.below(4096)
                } else {
                    rng.below(128)
                };
                rng.bytes(n)
            }
            // Mutations of a seed or of an earlier mutant (stacked mutations).
            1 | 2 => {
                let base = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, base)
            }
            _ => {
                let base = pool[rng.below(pool.len())].clone();
                mutate(&mut rng, &base)
            }
        };
        run_one(
            target,
            &format!("generated input {i} (seed {seed})"),
            &input,
        );
        if pool.len() < 256 {
            pool.push(input);
        } else {
            let j = rng.below(pool.len());
            pool[j] = input;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let replayed = replay_dir(target, &root.join("corpus").join(target))
        + replay_dir(target, &root.join("artifacts").join(target));
    eprintln!(
        "{target}: {} seeds, {iters} generated inputs, {replayed} corpus/artifact files: no panic",
        seeds.len()
    );
}

#[test]
fn pack_header() {
    smoke("pack_header");
}

#[test]
fn index() {
    smoke("index");
}

#[test]
fn tree() {
    smoke("tree");
}

#[test]
fn snapshot() {
    smoke("snapshot");
}

#[test]
fn config() {
    smoke("config");
}

#[test]
fn blob() {
    smoke("blob");
}

/// The seeds must be valid, or the mutations above would never get past the MAC.
#[test]
fn seeds_are_valid() {
    let k = keys();
    let packs = seeds("pack_header");
    for p in packs.iter().step_by(2) {
        let (off, len) = header_location("p", p, p.len() as u64).unwrap();
        decode_header(k, "p", &p[off as usize..off as usize + len], off).unwrap();
    }
    for (i, s) in seeds("index").iter().enumerate() {
        if i % 2 == 0 {
            IndexFile::decode_plaintext("i", s).unwrap();
        } else {
            IndexFile::decode(k, "i", s).unwrap();
        }
    }
    for s in seeds("tree") {
        Tree::decode(&Default::default(), &s).unwrap();
    }
    let name = "00".repeat(32);
    for (i, s) in seeds("snapshot").iter().enumerate() {
        if i % 2 == 0 {
            Snapshot::decode_plaintext(&name, s).unwrap();
        } else {
            Snapshot::decode(k, &name, s).unwrap();
        }
    }
    for s in seeds("config").iter().step_by(2) {
        RepoConfig::decode(s, k).unwrap();
    }
    for s in seeds("blob").iter().step_by(2) {
        let t = stowage_core::id::BlobType::from_code(s[0] & 1).unwrap();
        let raw_len = u32::from_le_bytes(s[1..5].try_into().unwrap()) as usize;
        let id = stowage_core::id::Id::from_slice(&s[5..37]).unwrap();
        stowage_core::crypto::open_blob(k, t, &id, &s[37..], raw_len).unwrap();
    }
}
