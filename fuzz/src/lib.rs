//! Fuzz target bodies for the stowage decoders, shared by the cargo-fuzz binaries in
//! `fuzz_targets/` (nightly or stable with `run-stable.sh`) and by the stable smoke test in
//! `tests/smoke.rs`.
//!
//! Every function takes arbitrary bytes and must never panic. Besides "does not panic", they
//! assert a few properties that must hold for every input (decode-encode round trips, sealed and
//! plaintext decoders agreeing); a failed assertion is a library bug, just like a panic inside
//! the library.
//!
//! All targets use one fixed key set ([`keys`]), so seeds made with it (see [`seeds`] and
//! `examples/write_seeds.rs`) pass the MAC and lead the fuzzer past it.

use base64::Engine;
use std::sync::OnceLock;
use stowage_core::chunker::{ChunkerParams, LargeFileChunking};
use stowage_core::crypto::{blob_aad, open_blob, seal_blob, FileAad, MasterKeys, MAX_BLOB_LEN};
use stowage_core::id::{BlobType, Id};
use stowage_core::pack::{
    decode_header, decode_header_plaintext, header_location, PackBlob, PackWriter, TRAILER_LEN,
};
use stowage_core::repo::config::{RepoConfig, FORMAT_VERSION};
use stowage_core::repo::index::{IndexFile, IndexPack, MasterIndex};
use stowage_core::repo::snapshot::{Snapshot, SnapshotSummary};
use stowage_core::repo::tree::{ByteString, Node, NodeKind, Timestamp, Tree, Xattr};

/// Largest `raw_len` the blob target passes to `open_blob` (it allocates that much up front).
pub const MAX_FUZZ_RAW_LEN: u32 = 4 << 20;

/// A snapshot file name as the repository uses them (64 hex digits).
const SNAPSHOT_NAME: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The fixed master keys of every target.
pub fn keys() -> &'static MasterKeys {
    static KEYS: OnceLock<MasterKeys> = OnceLock::new();
    KEYS.get_or_init(|| MasterKeys::new([0x17; 32], [0x42; 32], 0x5eed_5eed_5eed_5eed | 1))
}

/// The names of the targets, as in `fuzz_targets/` and `corpus/<name>/`.
pub const TARGETS: [&str; 6] = ["pack_header", "index", "tree", "snapshot", "config", "blob"];

/// Runs the target called `name` on `data`. Panics on an unknown name.
pub fn run_target(name: &str, data: &[u8]) {
    match name {
        "pack_header" => fuzz_pack_header(data),
        "index" => fuzz_index(data),
        "tree" => fuzz_tree(data),
        "snapshot" => fuzz_snapshot(data),
        "config" => fuzz_config(data),
        "blob" => fuzz_blob(data),
        _ => panic!("unknown fuzz target {name:?}"),
    }
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    data.get(at..at + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
}

/// Checks what `header_location` promises: the header and trailer fill the end of the pack.
fn check_location(r: &Result<(u64, usize), stowage_core::pack::PackError>, pack_size: u64) {
    if let Ok((off, len)) = r {
        assert!(*len >= stowage_core::crypto::SEAL_OVERHEAD + 4);
        assert!(*len <= stowage_core::pack::MAX_HEADER_LEN);
        assert_eq!(
            off.checked_add(*len as u64 + TRAILER_LEN as u64),
            Some(pack_size)
        );
    }
}

/// Pack trailers and headers.
///
/// 1. `data` as a whole pack: `header_location`, then `decode_header` (the MAC path) on what it
///    points at.
/// 2. `data` as a header plaintext: `decode_header_plaintext` against several header offsets.
/// 3. `data` sealed with the fixed keys as a header and wrapped in a trailer: the full read path,
///    which must agree with (2).
/// 4. The first 8 bytes as a claimed pack size and the rest as its tail: `header_location` only.
pub fn fuzz_pack_header(data: &[u8]) {
    let k = keys();

    // 1.
    let size = data.len() as u64;
    let loc = header_location("fuzz", data, size);
    check_location(&loc, size);
    if let Ok((off, len)) = loc {
        let sealed = &data[off as usize..off as usize + len];
        if let Ok(blobs) = decode_header(k, "fuzz", sealed, off) {
            assert!(blobs.iter().all(|b| b.end() <= off));
        }
    }

    // 2.
    let claimed = u64_at(data, 0).unwrap_or(0);
    for header_offset in [0, claimed, data.len() as u64, u64::MAX] {
        if let Ok(blobs) = decode_header_plaintext("fuzz", data, header_offset) {
            assert_eq!(4 + blobs.len() * stowage_core::pack::ENTRY_LEN, data.len());
            let mut again = (blobs.len() as u32).to_le_bytes().to_vec();
            for b in &blobs {
                assert!(b.end() <= header_offset);
                b.encode(&mut again);
            }
            assert_eq!(again, data, "header plaintext does not round-trip");
        }
    }

    // 3. Cap the size: sealing is linear, and headers are at most 16 MiB anyway.
    if data.len() <= 1 << 20 {
        let sealed = k.seal_file(FileAad::PackHeader, data);
        let blob_area = claimed.min(1 << 40);
        let mut tail = sealed.clone();
        tail.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        tail.extend_from_slice(stowage_core::pack::PACK_MAGIC);
        let pack_size = blob_area + tail.len() as u64;
        let loc = header_location("fuzz", &tail, pack_size);
        check_location(&loc, pack_size);
        if data.len() < 4 {
            // Shorter than a header's count: the trailer's length alone rules it out.
            assert!(
                loc.is_err(),
                "a {}-byte sealed header was accepted",
                sealed.len()
            );
        } else {
            let (off, len) = loc.expect("a well-formed trailer is accepted");
            assert_eq!((off, len), (blob_area, sealed.len()));
            let via_mac = decode_header(k, "fuzz", &sealed, off);
            let plain = decode_header_plaintext("fuzz", data, off);
            match (via_mac, plain) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("sealed and plaintext header decoders disagree: {a:?} vs {b:?}"),
            }
        }
    }

    // 4.
    if let Some(pack_size) = u64_at(data, 0) {
        let tail = &data[8..];
        let loc = header_location("fuzz", tail, pack_size);
        check_location(&loc, pack_size);
    }
}

/// Index files: plaintext decoding (must round-trip exactly), the MAC path on raw bytes, and the
/// sealed path on `data` sealed with the fixed keys (must agree with the plaintext decoder).
/// A decoded index is also merged into a `MasterIndex`.
pub fn fuzz_index(data: &[u8]) {
    let k = keys();
    let plain = IndexFile::decode_plaintext("fuzz", data);
    if let Ok(f) = &plain {
        assert_eq!(
            f.encode_plaintext(),
            data,
            "index plaintext does not round-trip"
        );
        let mut m = MasterIndex::new();
        m.add_file(f);
        for p in &f.packs {
            for b in &p.blobs {
                let loc = m
                    .get(b.blob_type, &b.id)
                    .expect("every indexed blob is found");
                assert_eq!(loc.blob_type, b.blob_type);
                assert!(m.packs().contains(&loc.pack));
            }
        }
    }
    if let Ok(f) = IndexFile::decode(k, "fuzz", data) {
        assert_eq!(IndexFile::decode(k, "fuzz", &f.encode(k)).unwrap(), f);
    }
    if data.len() <= 1 << 20 {
        let sealed = IndexFile::decode(k, "fuzz", &k.seal_file(FileAad::Index, data));
        match (sealed, plain) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("sealed and plaintext index decoders disagree: {a:?} vs {b:?}"),
        }
    }
}

/// Tree blobs (plain JSON; the blob layer does the crypto). A tree that decodes must re-encode to
/// a tree that decodes to the same value.
pub fn fuzz_tree(data: &[u8]) {
    let id = Id([0xab; 32]);
    if let Ok(t) = Tree::decode(&id, data) {
        let again = Tree::decode(&id, &t.encode()).expect("a re-encoded valid tree decodes");
        assert_eq!(again, t, "tree does not round-trip");
    }
}

/// Snapshots: plaintext JSON, the MAC path on raw bytes, and `data` sealed with the fixed keys
/// (must agree with the plaintext decoder). A decoded snapshot must survive encode + decode.
pub fn fuzz_snapshot(data: &[u8]) {
    let k = keys();
    let plain = Snapshot::decode_plaintext(SNAPSHOT_NAME, data);
    if let Ok(s) = &plain {
        let again = Snapshot::decode(k, SNAPSHOT_NAME, &s.encode(k))
            .expect("a re-encoded valid snapshot decodes");
        // `duration_secs` is an f64, whose JSON round trip is not always bit-exact.
        let mut a = again.clone();
        a.summary.duration_secs = s.summary.duration_secs;
        assert_eq!(&a, s, "snapshot does not round-trip");
    }
    let _ = Snapshot::decode(k, SNAPSHOT_NAME, data);
    if data.len() <= 1 << 20 {
        let sealed = Snapshot::decode(k, SNAPSHOT_NAME, &k.seal_file(FileAad::Snapshot, data));
        match (sealed, plain) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.time, b.time);
                assert_eq!(a.tree, b.tree);
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("sealed and plaintext snapshot decoders disagree: {a:?} vs {b:?}"),
        }
    }
}

/// Wraps `inner` (the sealed part's plaintext) in a config file, as `RepoConfig::encode` does.
pub fn wrap_config(inner: &[u8], format_version: u32, repository_id: &Id) -> Vec<u8> {
    let sealed = keys().seal_file(FileAad::Config, inner);
    format!(
        "{{\"format_version\": {format_version}, \"repository_id\": \"{repository_id}\", \"sealed\": \"{}\"}}\n",
        base64::engine::general_purpose::STANDARD.encode(sealed)
    )
    .into_bytes()
}

/// The `config` file: `peek_version` and `decode` on raw bytes (outer JSON and the MAC path),
/// then `data` as the sealed inner JSON (wrapped with [`wrap_config`]) to reach the validation
/// of the parameters. A config that decodes must round-trip.
pub fn fuzz_config(data: &[u8]) {
    let k = keys();
    let _ = RepoConfig::peek_version(data);
    let check = |cfg: &RepoConfig| {
        assert!(cfg.chunker.validate().is_ok());
        assert_eq!(cfg.master_key_fingerprint, k.fingerprint());
        assert_eq!(RepoConfig::decode(&cfg.encode(k), k).unwrap(), *cfg);
    };
    if let Ok(cfg) = RepoConfig::decode(data, k) {
        check(&cfg);
    }
    if data.len() <= 64 * 1024 {
        // The outer fields must match the inner ones; take them from the inner JSON if it has
        // them, so the fuzzer can get past that check.
        #[derive(serde::Deserialize)]
        struct Outer {
            format_version: u32,
            repository_id: Id,
        }
        let (v, id) = match serde_json::from_slice::<Outer>(data) {
            Ok(o) => (o.format_version, o.repository_id),
            Err(_) => (FORMAT_VERSION, Id::default()),
        };
        if let Ok(cfg) = RepoConfig::decode(&wrap_config(data, v, &id), k) {
            check(&cfg);
        }
    }
}

/// Blobs. Layout: `flags (1) || raw_len (u32 LE) || id (32) || body`, where bit 0 of `flags` is
/// the blob type, the other bits pick a zstd level, and `raw_len` is reduced modulo
/// [`MAX_FUZZ_RAW_LEN`] + 1.
///
/// 1. `body` as a sealed blob with that id and length (the MAC path; for a seed made with the
///    fixed keys, the whole decoding path).
/// 2. `body` as the decrypted payload (`flag || raw or zstd data`), sealed with the fixed keys:
///    decompression of arbitrary frames, length and content checks.
/// 3. `body` as plaintext: `seal_blob` then `open_blob` must give it back.
/// 4. A `raw_len` over the limit is refused.
pub fn fuzz_blob(data: &[u8]) {
    let k = keys();
    if data.len() < 37 {
        return;
    }
    let flags = data[0];
    let blob_type = if flags & 1 == 0 {
        BlobType::Data
    } else {
        BlobType::Tree
    };
    let level = i32::from(flags >> 1) % 16 - 3;
    let raw_len = (u32_at(data, 1).unwrap() % (MAX_FUZZ_RAW_LEN + 1)) as usize;
    let id = Id::from_slice(&data[5..37]).unwrap();
    let body = &data[37..];

    // 1.
    if let Ok(plain) = open_blob(k, blob_type, &id, body, raw_len) {
        assert_eq!(plain.len(), raw_len);
        assert_eq!(k.blob_id(&plain), id);
    }

    // 2.
    if !body.is_empty() {
        let content_id = k.blob_id(&body[1..]);
        let sealed = k.seal(&blob_aad(blob_type, &content_id), body);
        match open_blob(k, blob_type, &content_id, &sealed, raw_len) {
            Ok(plain) => {
                assert_eq!(plain.len(), raw_len);
                assert_eq!(k.blob_id(&plain), content_id);
            }
            Err(e) => assert!(
                !(body[0] == 0 && raw_len == body.len() - 1),
                "a raw payload of the promised length was refused: {e}"
            ),
        }
    }

    // 3.
    let body_id = k.blob_id(body);
    let sealed = seal_blob(k, blob_type, &body_id, body, level);
    match open_blob(k, blob_type, &body_id, &sealed, body.len()) {
        Ok(plain) => assert_eq!(plain, body, "blob does not round-trip"),
        Err(e) => panic!("a freshly sealed blob does not open: {e}"),
    }
    let other = match blob_type {
        BlobType::Data => BlobType::Tree,
        BlobType::Tree => BlobType::Data,
    };
    assert!(open_blob(k, other, &body_id, &sealed, body.len()).is_err());

    // 4.
    assert!(open_blob(k, blob_type, &body_id, &sealed, MAX_BLOB_LEN + 1).is_err());
}

/// A small deterministic PRNG (xorshift64*), for seeds and the smoke test.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    pub fn id(&mut self) -> Id {
        let mut b = [0u8; 32];
        for x in &mut b {
            *x = self.next_u64() as u8;
        }
        Id(b)
    }
}

/// Text-like, compressible bytes.
pub fn text(rng: &mut Rng, n: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "backup", "snapshot", "pack ", "index", "tree", "blob\n", "the ", "of ", "and ", "data ",
        "chunk ", "42 ",
    ];
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
        out.push(b' ');
    }
    out.truncate(n);
    out
}

fn sample_node(rng: &mut Rng, name: &[u8], kind: NodeKind) -> Node {
    let mut n = Node::new(ByteString(name.to_vec()), kind);
    n.mode = 0o644;
    n.uid = 1000;
    n.gid = 1000;
    n.user = Some("user".into());
    n.mtime = Timestamp(1_700_000_000, 123);
    n.ctime = Timestamp(1_700_000_001, 0);
    n.atime = Timestamp(-5, 999_999_999);
    match kind {
        NodeKind::File => {
            n.size = 10_000;
            n.inode = 77;
            n.links = 1;
            n.content = vec![rng.id(), rng.id()];
            n.holes = vec![(100, 200), (5000, 1000)];
            n.xattrs = vec![Xattr {
                name: ByteString(b"user.x\xff".to_vec()),
                value: "AAEC".into(),
            }];
        }
        NodeKind::Dir => n.subtree = Some(rng.id()),
        NodeKind::Symlink => n.target = Some(ByteString(b"../some/\xfftarget".to_vec())),
        NodeKind::Hardlink => {
            n.link_target = Some(ByteString(b"dir/file".to_vec()));
            n.content = vec![rng.id()];
            n.size = 5;
        }
        _ => n.rdev = 0x0801,
    }
    n
}

/// Valid inputs for a target, made with the library and the fixed keys.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let k = keys();
    let mut rng = Rng::new(target.len() as u64 * 1_000_003 + 11);
    match target {
        "pack_header" => {
            let mut out = Vec::new();
            for n in [0usize, 1, 3, 8] {
                let mut w = PackWriter::new();
                for i in 0..n {
                    let data = if i % 2 == 0 {
                        text(&mut rng, 300 + i * 50)
                    } else {
                        rng.bytes(200)
                    };
                    let t = if i == 2 {
                        BlobType::Tree
                    } else {
                        BlobType::Data
                    };
                    let id = k.blob_id(&data);
                    w.add(t, id, &seal_blob(k, t, &id, &data, 3), data.len());
                }
                let (bytes, _, blobs) = w.finish(k);
                // The header plaintext too, for modes 2 and 3.
                let mut header = (blobs.len() as u32).to_le_bytes().to_vec();
                for b in &blobs {
                    b.encode(&mut header);
                }
                out.push(bytes);
                out.push(header);
            }
            out
        }
        "index" => {
            let mut out = Vec::new();
            for (ns, np, nb) in [(0usize, 0usize, 0usize), (1, 1, 1), (2, 3, 4), (0, 2, 10)] {
                let f = IndexFile {
                    supersedes: (0..ns).map(|_| rng.id()).collect(),
                    packs: (0..np)
                        .map(|_| IndexPack {
                            id: rng.id(),
                            blobs: (0..nb)
                                .map(|j| PackBlob {
                                    blob_type: if j % 3 == 0 {
                                        BlobType::Tree
                                    } else {
                                        BlobType::Data
                                    },
                                    id: rng.id(),
                                    offset: (j * 1000) as u32,
                                    length: 29 + rng.below(900) as u32,
                                    raw_length: rng.below(1 << 20) as u32,
                                })
                                .collect(),
                        })
                        .collect(),
                    condemned: vec![],
                };
                out.push(f.encode_plaintext());
                out.push(f.encode(k));
            }
            out
        }
        "tree" => {
            let kinds = [
                NodeKind::Blockdev,
                NodeKind::Chardev,
                NodeKind::Dir,
                NodeKind::Fifo,
                NodeKind::File,
                NodeKind::Hardlink,
                NodeKind::Socket,
                NodeKind::Symlink,
            ];
            let mut out = vec![Tree::default().encode()];
            let mut t = Tree::default();
            for (i, kind) in kinds.iter().enumerate() {
                let name = format!("{i}-{kind:?}");
                t.nodes.push(sample_node(&mut rng, name.as_bytes(), *kind));
                t.nodes
                    .push(sample_node(&mut rng, &[b'z', i as u8 + 1, 0xfe], *kind));
            }
            t.sort();
            out.push(t.encode());
            out.push(
                Tree {
                    nodes: vec![sample_node(&mut rng, "é".as_bytes(), NodeKind::File)],
                }
                .encode(),
            );
            out
        }
        "snapshot" => {
            let mut out = Vec::new();
            for i in 0..3 {
                let s = Snapshot {
                    time: chrono::DateTime::from_timestamp(1_700_000_000 + i * 86_400, 123_456_789)
                        .unwrap(),
                    hostname: "host-1".into(),
                    username: "root".into(),
                    paths: vec!["/data".into(), "/var/lib/\u{e9}t\u{e9}".into()],
                    tags: if i == 0 {
                        vec![]
                    } else {
                        vec!["daily".into(), "k8s".into()]
                    },
                    tree: rng.id(),
                    parent: if i == 2 { Some(rng.id()) } else { None },
                    excludes: if i == 1 { vec!["*.tmp".into()] } else { vec![] },
                    incomplete: i == 2,
                    program: "stowage 0.1.0".into(),
                    summary: SnapshotSummary {
                        files_new: 10,
                        bytes_read: 1 << 30,
                        duration_secs: 12.5,
                        ..SnapshotSummary::default()
                    },
                };
                out.push(serde_json::to_vec(&s).unwrap());
                out.push(s.encode(k));
            }
            out
        }
        "config" => {
            let mut out = Vec::new();
            for level in [0, 3, 22] {
                let cfg = RepoConfig {
                    format_version: FORMAT_VERSION,
                    repository_id: rng.id(),
                    master_key_fingerprint: k.fingerprint(),
                    chunker: ChunkerParams::default(),
                    large_files: (level == 3).then(LargeFileChunking::default),
                    pack_size: 16 << 20,
                    compression_level: level,
                };
                out.push(cfg.encode(k));
                out.push(serde_json::to_vec(&cfg).unwrap());
            }
            out
        }
        "blob" => {
            let mut out = Vec::new();
            let bodies = [
                Vec::new(),
                b"x".to_vec(),
                text(&mut rng, 5000),
                rng.bytes(3000),
            ];
            for (i, data) in bodies.iter().enumerate() {
                let t = if i == 1 {
                    BlobType::Tree
                } else {
                    BlobType::Data
                };
                let id = k.blob_id(data);
                let level = [3, 0, 3, 5][i];
                let sealed = seal_blob(k, t, &id, data, level);
                let flags = (t.code() & 1) | (((level + 3) as u8) << 1);
                let mut prefix = vec![flags];
                prefix.extend_from_slice(&(data.len() as u32).to_le_bytes());
                prefix.extend_from_slice(id.as_bytes());
                // Mode 1: the sealed blob.
                let mut a = prefix.clone();
                a.extend_from_slice(&sealed);
                out.push(a);
                // Mode 2: the decrypted payload (flag byte and raw or zstd data).
                let payload = k.open("seed", &blob_aad(t, &id), &sealed).unwrap();
                let mut b = prefix.clone();
                b.extend_from_slice(&payload);
                out.push(b);
            }
            out
        }
        _ => panic!("unknown fuzz target {target:?}"),
    }
}

/// One random mutation of `input`, in the spirit of libFuzzer's: flip, overwrite, insert,
/// delete, truncate, copy a block, or plant an interesting integer.
pub fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next_u64() as u8;
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let n = 1 + rng.below(16);
                let bytes = rng.bytes(n);
                v.splice(i..i, bytes);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = (1 + rng.below(16)).min(v.len() - i);
                v.drain(i..i + n);
            }
            4 => {
                let n = rng.below(v.len() + 1);
                v.truncate(n);
            }
            5 if v.len() >= 2 => {
                let from = rng.below(v.len());
                let n = (1 + rng.below(64)).min(v.len() - from);
                let to = rng.below(v.len());
                let block = v[from..from + n].to_vec();
                v.splice(to..to, block);
            }
            6 if v.len() >= 4 => {
                const INTERESTING: [u32; 9] =
                    [0, 1, 2, 28, 29, 46, 0x7fff_ffff, 0xffff_ffff, 0x0100_0000];
                let i = rng.below(v.len() - 3);
                let x = INTERESTING[rng.below(INTERESTING.len())];
                v[i..i + 4].copy_from_slice(&x.to_le_bytes());
            }
            7 if !v.is_empty() => {
                // JSON-ish: swap in a structural character.
                const CHARS: &[u8] = b"{}[]\":,0-e.\\ntfu";
                let i = rng.below(v.len());
                v[i] = CHARS[rng.below(CHARS.len())];
            }
            _ => {}
        }
    }
    v
}
