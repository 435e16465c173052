//! Builds a synthetic repository with a huge index for the scale benchmark
//! (`scripts/bench-scale.sh`): real config, key and index files listing `--blobs` random data
//! blobs in fake packs. Only the index is real: the packs do not exist, so `check` fails on it,
//! but backup, restore of new snapshots and listings behave as on a repository of that size.
//!
//! Usage: stowage-bench-scale REPO_DIR BLOBS  (password from STOWAGE_PASSWORD)

use std::sync::Arc;
use stowage::backend::local::LocalBackend;
use stowage::id::{BlobType, Id};
use stowage::pack::PackBlob;
use stowage::repo::index::{IndexFile, IndexPack};
use stowage::repo::{InitOptions, Repository};

const BLOBS_PER_PACK: u64 = 1000;
const BLOBS_PER_FILE: u64 = 500_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: stowage-bench-scale REPO_DIR BLOBS");
        std::process::exit(2);
    }
    let blobs: u64 = args[2].parse().expect("BLOBS is a number");
    let password = std::env::var("STOWAGE_PASSWORD").expect("set STOWAGE_PASSWORD");
    let backend = Arc::new(LocalBackend::new(&args[1]));
    let opts = InitOptions {
        kdf_memory_kib: 64,
        kdf_iterations: 1,
        ..Default::default()
    };
    let repo = Repository::init(backend, password.as_bytes(), &opts).expect("init");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut id = || {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        Id(b)
    };
    let started = std::time::Instant::now();
    let mut written = 0u64;
    while written < blobs {
        let n = BLOBS_PER_FILE.min(blobs - written);
        let mut file = IndexFile::default();
        let mut left = n;
        while left > 0 {
            let k = BLOBS_PER_PACK.min(left);
            let blobs = (0..k)
                .map(|i| PackBlob {
                    blob_type: BlobType::Data,
                    id: id(),
                    offset: (i * 70_000) as u32,
                    length: 65_000,
                    raw_length: 64_000,
                })
                .collect();
            file.packs.push(IndexPack { id: id(), blobs });
            left -= k;
        }
        repo.save_index_file(&file).expect("write index");
        written += n;
    }
    eprintln!(
        "wrote {written} blobs in {} index files in {:.1}s",
        blobs.div_ceil(BLOBS_PER_FILE),
        started.elapsed().as_secs_f64()
    );
}
