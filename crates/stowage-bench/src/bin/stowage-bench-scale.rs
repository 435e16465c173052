//! Builds a synthetic repository with a huge index for the scale benchmark
//! (`scripts/bench-scale.sh`): real config, key and index files listing `--blobs` random data
//! blobs in fake packs. Only the index is real: the packs do not exist, so `check` fails on it,
//! but backup, restore of new snapshots and listings behave as on a repository of that size.
//!
//! With `--prune-fixture`, the packs exist as empty files and one snapshot uses the blobs of
//! every other pack (real tree blobs in real packs list them), so that `prune --plan` and
//! `prune` run against an index of that size; the unused half of the packs is fully unused,
//! so prune condemns and deletes them without reading any.
//!
//! Usage: stowage-bench-scale REPO_DIR BLOBS [--prune-fixture]  (password from STOWAGE_PASSWORD)

use std::sync::Arc;
use stowage_core::backend::local::LocalBackend;
use stowage_core::backend::{Backend, FileKind};
use stowage_core::id::{BlobType, Id};
use stowage_core::pack::PackBlob;
use stowage_core::repo::index::{IndexFile, IndexPack};
use stowage_core::repo::session::{BackupWork, IndexSource, Indexed};
use stowage_core::repo::snapshot::{Snapshot, SnapshotSummary};
use stowage_core::repo::tree::{ByteString, Node, NodeKind, Tree};
use stowage_core::repo::writer::BlobWriter;
use stowage_core::repo::{InitOptions, Repository};

const BLOBS_PER_PACK: u64 = 1000;
const BLOBS_PER_FILE: u64 = 500_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let fixture = args.len() == 4 && args[3] == "--prune-fixture";
    if args.len() != 3 && !fixture {
        eprintln!("usage: stowage-bench-scale REPO_DIR BLOBS [--prune-fixture]");
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
    let repo =
        Arc::new(Repository::init(backend.clone(), password.as_bytes(), &opts).expect("init"));
    let mut fixture = fixture.then(|| Fixture::new(&repo));
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
            let pack = IndexPack { id: id(), blobs };
            if let Some(f) = &mut fixture {
                f.add_pack(&pack);
            }
            file.packs.push(pack);
            left -= k;
        }
        repo.save_index_file(&file).expect("write index");
        written += n;
    }
    if let Some(f) = fixture {
        f.finish(&repo);
    }
    eprintln!(
        "wrote {written} blobs in {} index files in {:.1}s",
        blobs.div_ceil(BLOBS_PER_FILE),
        started.elapsed().as_secs_f64()
    );
}

/// The snapshot side of `--prune-fixture`: empty pack files, and trees listing the blobs of
/// every other pack (files of 10 blobs, 1,000 files per directory).
struct Fixture {
    /// A backup session begun while the repository was empty: its writer deduplicates against
    /// nothing, however many index files are written afterwards.
    _session: Indexed<BackupWork>,
    writer: BlobWriter,
    backend: Arc<dyn Backend>,
    packs: u64,
    files: Vec<Node>,
    dirs: Vec<Node>,
}

impl Fixture {
    fn new(repo: &Arc<Repository>) -> Fixture {
        let session = repo
            .lock::<BackupWork>()
            .and_then(|l| l.load_index(&IndexSource::Memory, &()))
            .expect("lock the new repository");
        Fixture {
            writer: BlobWriter::new(session.indexed().clone(), 2),
            _session: session,
            backend: repo.backend().clone(),
            packs: 0,
            files: Vec::new(),
            dirs: Vec::new(),
        }
    }

    fn add_pack(&mut self, pack: &IndexPack) {
        self.backend
            .write(FileKind::Pack, &pack.id.to_hex(), b"", false)
            .expect("write pack");
        self.packs += 1;
        if self.packs % 2 == 1 {
            for (i, blobs) in pack.blobs.chunks(10).enumerate() {
                let mut node = Node::new(
                    ByteString(format!("f{:012}-{i:04}", self.packs).into_bytes()),
                    NodeKind::File,
                );
                node.content = blobs.iter().map(|b| b.id).collect();
                self.files.push(node);
                if self.files.len() == 1000 {
                    self.flush_dir();
                }
            }
        }
    }

    fn flush_dir(&mut self) {
        let tree = Tree {
            nodes: std::mem::take(&mut self.files),
        };
        let (id, _) = self
            .writer
            .add(BlobType::Tree, &tree.encode())
            .expect("write tree");
        let mut dir = Node::new(
            ByteString(format!("d{:012}", self.dirs.len()).into_bytes()),
            NodeKind::Dir,
        );
        dir.subtree = Some(id);
        self.dirs.push(dir);
    }

    fn finish(mut self, repo: &Repository) {
        if !self.files.is_empty() {
            self.flush_dir();
        }
        let root = Tree {
            nodes: std::mem::take(&mut self.dirs),
        };
        let (tree, _) = self
            .writer
            .add(BlobType::Tree, &root.encode())
            .expect("write tree");
        self.writer.finish().expect("finish packs");
        repo.save_snapshot(&Snapshot {
            time: chrono::Utc::now(),
            hostname: "bench".into(),
            username: "bench".into(),
            paths: vec!["/fixture".into()],
            tags: vec![],
            tree,
            parent: None,
            excludes: vec![],
            incomplete: false,
            program: "stowage-bench-scale".into(),
            summary: SnapshotSummary::default(),
        })
        .expect("save snapshot");
    }
}
