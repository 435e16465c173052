//! Test vectors of repository format version 1 (`repo-format/README.md`, "Test vectors").
//!
//! The files under `repo-format/vectors/` were written ONCE by the ignored test
//! `generate_vectors` and are committed as fixed bytes: every ciphertext has a random nonce and
//! the key file a random salt, so running the generator again gives different (equally valid)
//! files. The other tests decode the committed files and compare what they decode to with the
//! manifest `vectors.json` and with the values spelled out below, so any change to how the
//! format is read is caught.
//!
//! Regenerating (only when the format itself changes, together with the spec):
//! `STOWAGE_REGENERATE_VECTORS=1 cargo test --test format_vectors -- --ignored generate`
//!
//! The vectors of later additions to version 1 (an index file with condemned batches under
//! `extra/index/`, lock files under `repo/locks/`, manifest `v1-extra.json`) were added without
//! touching the files above, by the ignored test `create_extra_vectors`, which writes them only
//! when they are missing; `generate_vectors` writes them too when it regenerates everything.

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stowage_core::backend::local::LocalBackend;
use stowage_core::chunker::{Chunker, ChunkerParams, ChunkerSpec, LargeFileChunking};
use stowage_core::crypto::kdf::KdfParams;
use stowage_core::crypto::{
    blob_aad, open_blob, seal_blob, CryptoError, FileAad, MasterKeys, NONCE_LEN, TAG_LEN,
};
use stowage_core::id::{BlobType, Id};
use stowage_core::pack::{
    decode_header, header_location, PackBlob, PackWriter, ENTRY_LEN, PACK_MAGIC, TRAILER_LEN,
};
use stowage_core::repo::config::{RepoConfig, FORMAT_VERSION};
use stowage_core::repo::index::{CondemnedBatch, IndexFile, IndexPack, MasterIndex};
use stowage_core::repo::keyfile::KeyFile;
use stowage_core::repo::lock::{
    list_locks, live_locks, LockInfo, LockKind, MAX_LOCK_LEN, REFRESH_INTERVAL, STALE_AFTER,
};
use stowage_core::repo::session::{IndexSource, Locked, ReadWork};
use stowage_core::repo::snapshot::{Snapshot, SnapshotSummary};
use stowage_core::repo::tree::{ByteString, Node, NodeKind, Timestamp, Tree, Xattr};
use stowage_core::repo::{RepoError, Repository};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The password of the vector key file.
const PASSWORD: &str = "correct horse battery staple";
/// The chunker seed of the vector master keys.
const CHUNKER_SEED: u64 = 0x0123_4567_89ab_cdef;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("repo-format/vectors")
}

fn repo_dir() -> PathBuf {
    vectors_dir().join("repo")
}

/// The fixed master keys: encryption key bytes 0x00..=0x1f, id key bytes 0x80..=0x9f.
fn vector_keys() -> MasterKeys {
    let mut enc = [0u8; 32];
    let mut idk = [0u8; 32];
    for i in 0..32 {
        enc[i] = i as u8;
        idk[i] = 0x80 + i as u8;
    }
    MasterKeys::new(enc, idk, CHUNKER_SEED)
}

/// The deterministic input generator of the chunker vectors (and of one blob): xorshift64 with
/// shifts 13, 7, 17; each step emits the low byte of the new state.
fn xorshift64_bytes(state: u64, len: usize) -> Vec<u8> {
    assert_ne!(state, 0, "xorshift64 needs a non-zero state");
    let mut x = state;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn read_manifest() -> Value {
    let bytes = std::fs::read(vectors_dir().join("vectors.json"))
        .expect("repo-format/vectors/vectors.json");
    serde_json::from_slice(&bytes).expect("manifest is JSON")
}

fn read_vector(rel: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("manifest field {key:?} is not a string: {v}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("manifest field {key:?} is not an integer: {v}"))
}

fn id_of(v: &Value, key: &str) -> Id {
    s(v, key).parse().unwrap()
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(s(v, key)).unwrap()
}

/// A blob's plaintext as the manifest gives it: `plaintext_utf8` or `plaintext_hex`.
fn blob_plaintext(b: &Value) -> Vec<u8> {
    if let Some(t) = b["plaintext_utf8"].as_str() {
        t.as_bytes().to_vec()
    } else {
        hex_field(b, "plaintext_hex")
    }
}

fn blob_type_of(b: &Value) -> BlobType {
    match s(b, "type") {
        "data" => BlobType::Data,
        "tree" => BlobType::Tree,
        t => panic!("unknown blob type {t}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The content of the vectors (used by the generator; the checks below spell values out again).
// ---------------------------------------------------------------------------------------------

fn blob_compressible() -> Vec<u8> {
    b"stowage format vector: this line repeats, so zstd compresses it well.\n".repeat(40)
}

fn blob_small() -> Vec<u8> {
    b"hello, stowage\n".to_vec()
}

fn blob_incompressible() -> Vec<u8> {
    xorshift64_bytes(0x243f_6a88_85a3_08d3, 300)
}

fn ts(secs: i64, nanos: u32) -> Timestamp {
    Timestamp(secs, nanos)
}

fn meta(mut n: Node, mode: u32, inode: u64) -> Node {
    n.mode = mode;
    n.uid = 1000;
    n.gid = 1000;
    n.user = Some("alice".into());
    n.group = Some("staff".into());
    n.mtime = ts(1_714_979_289, 123_456_789);
    n.ctime = ts(1_714_979_290, 5);
    n.atime = ts(1_714_979_291, 0);
    n.inode = inode;
    n.device = 2049;
    n.links = 1;
    n
}

fn docs_tree(small: Id) -> Tree {
    let mut empty = meta(
        Node::new(ByteString(b"empty".to_vec()), NodeKind::File),
        0o600,
        201,
    );
    empty.user = None;
    empty.group = None;
    let mut hello = meta(
        Node::new(ByteString(b"hello.txt".to_vec()), NodeKind::File),
        0o644,
        202,
    );
    hello.size = blob_small().len() as u64;
    hello.content = vec![small];
    hello.xattrs = vec![Xattr {
        name: ByteString(b"user.comment".to_vec()),
        value: B64.encode(b"greeting"),
    }];
    Tree {
        nodes: vec![empty, hello],
    }
}

fn vector_tree(docs: Id, compressible: Id, small: Id, incompressible: Id) -> Tree {
    let mut d = meta(
        Node::new(ByteString(b"docs".to_vec()), NodeKind::Dir),
        0o755,
        200,
    );
    d.links = 2;
    d.subtree = Some(docs);
    let fifo = meta(
        Node::new(ByteString(b"fifo".to_vec()), NodeKind::Fifo),
        0o600,
        203,
    );
    let mut bin = meta(
        Node::new(ByteString(b"non-\xff\xfe".to_vec()), NodeKind::File),
        0o640,
        204,
    );
    bin.size = blob_incompressible().len() as u64;
    bin.content = vec![incompressible];
    let mut notes = meta(
        Node::new(ByteString(b"notes.txt".to_vec()), NodeKind::File),
        0o644,
        205,
    );
    notes.links = 2;
    notes.size = blob_compressible().len() as u64;
    notes.content = vec![compressible];
    let mut null = meta(
        Node::new(ByteString(b"null".to_vec()), NodeKind::Chardev),
        0o666,
        206,
    );
    null.uid = 0;
    null.gid = 0;
    null.user = Some("root".into());
    null.group = Some("root".into());
    null.rdev = 0x103;
    let mut sparse = meta(
        Node::new(ByteString(b"sparse.img".to_vec()), NodeKind::File),
        0o644,
        207,
    );
    sparse.size = 10_000;
    sparse.holes = vec![(0, 4096), (4111, 5889)];
    sparse.content = vec![small];
    let mut link = meta(
        Node::new(ByteString(b"to-hello".to_vec()), NodeKind::Symlink),
        0o777,
        208,
    );
    link.target = Some(ByteString(b"docs/hello.txt".to_vec()));
    let mut hard = notes.clone();
    hard.name = ByteString(b"z-hardlink".to_vec());
    hard.kind = NodeKind::Hardlink;
    hard.link_target = Some(ByteString(b"vector/notes.txt".to_vec()));
    let mut t = Tree {
        nodes: vec![d, fifo, bin, notes, null, sparse, link, hard],
    };
    let before: Vec<_> = t.nodes.iter().map(|n| n.name.clone()).collect();
    t.sort();
    assert_eq!(
        before,
        t.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        "listed in order"
    );
    t
}

fn root_tree(vector: Id) -> Tree {
    let mut d = meta(
        Node::new(ByteString(b"vector".to_vec()), NodeKind::Dir),
        0o755,
        199,
    );
    d.links = 3;
    d.subtree = Some(vector);
    Tree { nodes: vec![d] }
}

fn vector_config(keys: &MasterKeys, version: u32) -> RepoConfig {
    RepoConfig {
        format_version: version,
        repository_id: Id::hash_of(b"stowage format vector repository"),
        master_key_fingerprint: keys.fingerprint(),
        chunker: ChunkerParams::default(),
        large_files: None,
        pack_size: 16 << 20,
        compression_level: 3,
    }
}

/// The chunker vectors: (name, params, seed, input state, input length).
fn chunker_cases() -> Vec<(&'static str, ChunkerParams, u64, u64, usize)> {
    let small = |normalization| ChunkerParams {
        min_size: 2048,
        avg_size: 8192,
        max_size: 32768,
        normalization,
    };
    vec![
        (
            "small-nc1-seeded",
            small(1),
            CHUNKER_SEED,
            0x9e37_79b9_7f4a_7c15,
            200_000,
        ),
        (
            "small-nc2-unseeded",
            small(2),
            0,
            0x9e37_79b9_7f4a_7c15,
            200_000,
        ),
        (
            "small-nc0-seeded",
            small(0),
            CHUNKER_SEED,
            0x0000_0000_0000_0001,
            100_000,
        ),
        (
            "default-nc1-seeded",
            ChunkerParams::default(),
            CHUNKER_SEED,
            0xd1b5_4a32_d192_ed03,
            10 << 20,
        ),
    ]
}

fn params_json(p: &ChunkerParams) -> Value {
    serde_json::to_value(p).unwrap()
}

fn gear_blake3(seed: u64) -> String {
    let (gear, _) = fastcdc::v2020::get_gear_with_seed(seed);
    let bytes: Vec<u8> = gear.iter().flat_map(|v| v.to_le_bytes()).collect();
    blake3::hash(&bytes).to_hex().to_string()
}

/// Writes a file named by the BLAKE3 hash of its bytes into `folder` and returns that name.
fn write_named(folder: &Path, bytes: &[u8]) -> String {
    let name = Id::hash_of(bytes).to_hex();
    std::fs::create_dir_all(folder).unwrap();
    std::fs::write(folder.join(&name), bytes).unwrap();
    name
}

#[test]
#[ignore = "writes the committed vectors; run once, by hand, when the format changes"]
fn generate_vectors() {
    let dir = vectors_dir();
    if dir.join("vectors.json").exists() && std::env::var_os("STOWAGE_REGENERATE_VECTORS").is_none()
    {
        // Not a failure, so `--include-ignored` runs stay green; nothing is written.
        eprintln!(
            "{} exists: the vectors are committed bytes and were left alone. Set \
             STOWAGE_REGENERATE_VECTORS=1 to replace them (only together with a format change).",
            dir.join("vectors.json").display()
        );
        return;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let keys = vector_keys();

    // Key file.
    let mut key = KeyFile::create(&keys, PASSWORD.as_bytes(), KdfParams::new(64, 1)).unwrap();
    key.created = "2024-05-06T07:08:09+00:00".into();
    key.hostname = "vector-host".into();
    key.username = "vector-user".into();
    let key_bytes = key.encode();
    let key_name = write_named(&repo.join("keys"), &key_bytes);
    let wrapping_key = key.kdf.derive(PASSWORD.as_bytes()).unwrap();
    // The wrapped plaintext exactly as stored (field order of the writer).
    let master_plain = MasterKeys::new(wrapping_key, [0; 32], 0)
        .open("key", b"stowage key v1", &B64.decode(&key.master).unwrap())
        .unwrap();
    let master_json = String::from_utf8(master_plain).unwrap();

    // Config, and a config of a future version.
    let config = vector_config(&keys, FORMAT_VERSION);
    std::fs::write(repo.join("config"), config.encode(&keys)).unwrap();
    std::fs::write(
        dir.join("config-version-2"),
        vector_config(&keys, 2).encode(&keys),
    )
    .unwrap();

    // Blobs and the pack.
    let compressible = blob_compressible();
    let small = blob_small();
    let incompressible = blob_incompressible();
    let (c_id, s_id, i_id) = (
        keys.blob_id(&compressible),
        keys.blob_id(&small),
        keys.blob_id(&incompressible),
    );
    let docs = docs_tree(s_id).encode();
    let docs_id = keys.blob_id(&docs);
    let vector = vector_tree(docs_id, c_id, s_id, i_id).encode();
    let vector_id = keys.blob_id(&vector);
    let root = root_tree(vector_id).encode();
    let root_id = keys.blob_id(&root);
    let blobs: Vec<(&str, BlobType, Vec<u8>, Id)> = vec![
        ("compressible", BlobType::Data, compressible, c_id),
        ("small", BlobType::Data, small, s_id),
        ("incompressible", BlobType::Data, incompressible, i_id),
        ("tree-docs", BlobType::Tree, docs, docs_id),
        ("tree-vector", BlobType::Tree, vector, vector_id),
        ("tree-root", BlobType::Tree, root, root_id),
    ];
    let mut w = PackWriter::new();
    let mut sealed_blobs = Vec::new();
    for (_, t, data, id) in &blobs {
        let sealed = seal_blob(&keys, *t, id, data, config.compression_level);
        w.add(*t, *id, &sealed, data.len());
        sealed_blobs.push(sealed);
    }
    let (pack_bytes, pack_id, entries) = w.finish(&keys);
    let pack_name = pack_id.to_hex();
    let pack_dir = repo.join("data").join(&pack_name[..2]);
    assert_eq!(write_named(&pack_dir, &pack_bytes), pack_name);
    let (header_offset, header_len) =
        header_location(&pack_name, &pack_bytes, pack_bytes.len() as u64).unwrap();
    let header_plain = keys
        .open_file(
            FileAad::PackHeader,
            "header",
            &pack_bytes[header_offset as usize..header_offset as usize + header_len],
        )
        .unwrap();

    let mut blob_json = Vec::new();
    for ((name, t, data, id), (sealed, e)) in blobs.iter().zip(sealed_blobs.iter().zip(&entries)) {
        let flag = keys.open("blob", &blob_aad(*t, id), sealed).unwrap()[0];
        let mut b = json!({
            "name": name,
            "type": t.to_string(),
            "id": id.to_hex(),
            "raw_length": data.len(),
            "payload_encoding": if flag == 1 { "zstd" } else { "raw" },
            "pack_offset": e.offset,
            "pack_length": e.length,
            "aad_hex": hex::encode(blob_aad(*t, id)),
        });
        match std::str::from_utf8(data) {
            Ok(text) => b["plaintext_utf8"] = json!(text),
            Err(_) => b["plaintext_hex"] = json!(hex::encode(data)),
        }
        blob_json.push(b);
    }

    // Index.
    let superseded = Id::hash_of(b"stowage format vector: a superseded index file");
    let index = IndexFile {
        supersedes: vec![superseded],
        packs: vec![IndexPack {
            id: pack_id,
            blobs: entries.clone(),
        }],
        condemned: vec![],
    };
    let index_bytes = index.encode(&keys);
    let index_name = write_named(&repo.join("index"), &index_bytes);

    // Snapshot.
    let snapshot = Snapshot {
        time: "2024-05-06T07:08:09.123456789Z".parse().unwrap(),
        hostname: "vector-host".into(),
        username: "vector-user".into(),
        paths: vec!["/srv/vector".into()],
        tags: vec!["daily".into(), "vector".into()],
        tree: root_id,
        parent: Some(Id::hash_of(b"stowage format vector: the parent snapshot")),
        excludes: vec!["*.tmp".into()],
        incomplete: false,
        program: "stowage format-vectors".into(),
        summary: SnapshotSummary {
            files_new: 6,
            files_changed: 0,
            files_unchanged: 0,
            dirs_new: 2,
            dirs_changed: 0,
            dirs_unchanged: 0,
            bytes_read: 3100,
            bytes_added: 3115,
            bytes_added_stored: 1234,
            blobs_added: 6,
            total_bytes: 16_115,
            total_files: 6,
            errors: 0,
            duration_secs: 1.5,
        },
    };
    let snapshot_bytes = snapshot.encode(&keys);
    let snapshot_name = write_named(&repo.join("snapshots"), &snapshot_bytes);
    let snapshot_json = String::from_utf8(serde_json::to_vec(&snapshot).unwrap()).unwrap();

    // Chunker.
    let chunker_json: Vec<Value> = chunker_cases()
        .into_iter()
        .map(|(name, params, seed, state, len)| {
            let input = xorshift64_bytes(state, len);
            let lengths = ChunkerSpec::new(params, seed).chunk_lengths(&input);
            json!({
                "name": name,
                "params": params_json(&params),
                "seed": seed,
                "seed_hex": format!("{seed:016x}"),
                "input": {"generator": "xorshift64", "state_hex": format!("{state:016x}"), "length": len},
                "input_blake3": blake3::hash(&input).to_hex().to_string(),
                "chunk_lengths": lengths,
            })
        })
        .collect();
    let (gear0, gear_ls0) = fastcdc::v2020::get_gear_with_seed(0);

    let manifest = json!({
        "format_version": FORMAT_VERSION,
        "about": "Test vectors of stowage repository format version 1; see repo-format/README.md, section Test vectors.",
        "password": PASSWORD,
        "master_keys": {
            "encryption_hex": hex::encode(keys.encryption),
            "id_key_hex": hex::encode(keys.id_key),
            "chunker_seed": keys.chunker_seed,
            "chunker_seed_hex": format!("{:016x}", keys.chunker_seed),
            "fingerprint": keys.fingerprint().to_hex(),
        },
        "key_file": {
            "path": format!("repo/keys/{key_name}"),
            "name": key_name,
            "kdf": serde_json::to_value(&key.kdf).unwrap(),
            "wrapping_key_hex": hex::encode(wrapping_key),
            "master_plaintext": master_json,
            "master_aad": "stowage key v1",
        },
        "config": {
            "path": "repo/config",
            "format_version": FORMAT_VERSION,
            "repository_id": config.repository_id.to_hex(),
            "inner_json": String::from_utf8(serde_json::to_vec(&config).unwrap()).unwrap(),
            "aad": "stowage config v1",
        },
        "config_version_2": {
            "path": "config-version-2",
            "format_version": 2,
            "expected_error": "UnsupportedVersion { found: 2, supported: 1 }",
        },
        "blobs": blob_json,
        "pack": {
            "path": format!("repo/data/{}/{}", &pack_name[..2], pack_name),
            "id": pack_name,
            "size": pack_bytes.len(),
            "header_offset": header_offset,
            "header_length": header_len,
            "header_plaintext_hex": hex::encode(&header_plain),
            "aad": "stowage pack header v1",
        },
        "index": {
            "path": format!("repo/index/{index_name}"),
            "id": index_name,
            "supersedes": [superseded.to_hex()],
            "plaintext_hex": hex::encode(index.encode_plaintext()),
            "aad": "stowage index v1",
        },
        "snapshot": {
            "path": format!("repo/snapshots/{snapshot_name}"),
            "id": snapshot_name,
            "tree": root_id.to_hex(),
            "plaintext": snapshot_json,
            "aad": "stowage snapshot v1",
        },
        "gear": {
            "table_blake3": gear_blake3(0),
            "description": "BLAKE3 of the 256 unseeded GEAR values, each as 8 bytes little-endian",
            "gear_0_hex": format!("{:016x}", gear0[0]),
            "gear_1_hex": format!("{:016x}", gear0[1]),
            "gear_255_hex": format!("{:016x}", gear0[255]),
            "gear_ls_0_hex": format!("{:016x}", gear_ls0[0]),
        },
        "chunker": chunker_json,
    });
    let mut text = serde_json::to_vec_pretty(&manifest).unwrap();
    text.push(b'\n');
    std::fs::write(dir.join("vectors.json"), text).unwrap();
    // The vectors of the later additions (condemned batches, locks) depend on these files.
    write_extra_vectors();
}

// ---------------------------------------------------------------------------------------------
// Decoding the committed vectors.
// ---------------------------------------------------------------------------------------------

/// Unlocks the committed key file with the password.
fn unlock() -> MasterKeys {
    let m = read_manifest();
    let k = &m["key_file"];
    let bytes = read_vector(s(k, "path"));
    KeyFile::decode(s(k, "name"), &bytes)
        .unwrap()
        .unlock(s(&m, "password").as_bytes())
        .unwrap()
}

#[test]
fn manifest_matches_the_fixed_inputs() {
    let m = read_manifest();
    assert_eq!(u(&m, "format_version"), 1);
    assert_eq!(s(&m, "password"), PASSWORD);
    let k = vector_keys();
    let mk = &m["master_keys"];
    assert_eq!(hex_field(mk, "encryption_hex"), k.encryption);
    assert_eq!(hex_field(mk, "id_key_hex"), k.id_key);
    assert_eq!(u(mk, "chunker_seed"), CHUNKER_SEED);
    assert_eq!(
        u64::from_str_radix(s(mk, "chunker_seed_hex"), 16).unwrap(),
        CHUNKER_SEED
    );
    assert_eq!(id_of(mk, "fingerprint"), k.fingerprint());
}

#[test]
fn every_file_is_named_by_the_blake3_of_its_bytes() {
    let root = repo_dir();
    let mut checked = 0;
    for folder in ["keys", "index", "snapshots"] {
        for e in std::fs::read_dir(root.join(folder)).unwrap() {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            assert_eq!(
                e.file_name().to_str().unwrap(),
                Id::hash_of(&bytes).to_hex(),
                "{folder}"
            );
            checked += 1;
        }
    }
    for sub in std::fs::read_dir(root.join("data")).unwrap() {
        let sub = sub.unwrap();
        for e in std::fs::read_dir(sub.path()).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_str().unwrap().to_string();
            let bytes = std::fs::read(e.path()).unwrap();
            assert_eq!(name, Id::hash_of(&bytes).to_hex());
            assert_eq!(
                sub.file_name().to_str().unwrap(),
                &name[..2],
                "packs live in data/XX/"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "one key, one index, one snapshot, one pack");
    // And the manifest names the same files.
    let m = read_manifest();
    for key in ["key_file", "pack", "index", "snapshot"] {
        let path = s(&m[key], "path");
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(Id::hash_of(&read_vector(path)).to_hex(), name, "{key}");
    }
    assert_eq!(
        s(&m["key_file"], "name"),
        s(&m["key_file"], "path").rsplit('/').next().unwrap()
    );
}

#[test]
fn key_file_unlocks_to_the_master_keys() {
    let m = read_manifest();
    let kf = &m["key_file"];
    let bytes = read_vector(s(kf, "path"));
    let key = KeyFile::decode(s(kf, "name"), &bytes).unwrap();
    assert_eq!(key.version, 1);
    assert_eq!(key.created, "2024-05-06T07:08:09+00:00");
    assert_eq!(key.hostname, "vector-host");
    assert_eq!(key.username, "vector-user");
    assert_eq!(key.kdf.algorithm, "argon2id");
    assert_eq!(key.kdf.version, 0x13);
    assert_eq!(
        (key.kdf.memory_kib, key.kdf.iterations, key.kdf.parallelism),
        (64, 1, 1)
    );
    assert_eq!(B64.decode(&key.kdf.salt).unwrap().len(), 16);
    assert_eq!(serde_json::to_value(&key.kdf).unwrap(), kf["kdf"]);

    // The wrapping key, and the wrapped plaintext opened by hand.
    let wrapping = key.kdf.derive(PASSWORD.as_bytes()).unwrap();
    assert_eq!(hex::encode(wrapping), s(kf, "wrapping_key_hex"));
    let sealed = B64.decode(&key.master).unwrap();
    let w = MasterKeys::new(wrapping, [0; 32], 0);
    let plain = w.open("key", b"stowage key v1", &sealed).unwrap();
    assert_eq!(
        std::str::from_utf8(&plain).unwrap(),
        s(kf, "master_plaintext")
    );
    let mj: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(mj["chunker_seed"].as_u64(), Some(CHUNKER_SEED));

    let keys = key.unlock(s(&m, "password").as_bytes()).unwrap();
    let mk = &m["master_keys"];
    assert_eq!(hex::encode(keys.encryption), s(mk, "encryption_hex"));
    assert_eq!(hex::encode(keys.id_key), s(mk, "id_key_hex"));
    assert_eq!(keys.chunker_seed, u(mk, "chunker_seed"));
    assert_eq!(keys.fingerprint().to_hex(), s(mk, "fingerprint"));

    assert!(matches!(
        key.unlock(b"wrong password"),
        Err(RepoError::Crypto(CryptoError::Mac(_)))
    ));
}

/// The inner JSON of a config file: its `sealed` member, Base64-decoded and opened (AAD
/// `stowage config v1`).
fn config_inner(bytes: &[u8], keys: &MasterKeys) -> Vec<u8> {
    let outer: Value = serde_json::from_slice(bytes).unwrap();
    let sealed = B64.decode(outer["sealed"].as_str().unwrap()).unwrap();
    keys.open("config", b"stowage config v1", &sealed).unwrap()
}

#[test]
fn config_decodes() {
    let m = read_manifest();
    let c = &m["config"];
    let bytes = read_vector(s(c, "path"));
    let keys = unlock();
    assert_eq!(RepoConfig::peek_version(&bytes).unwrap(), 1);
    let cfg = RepoConfig::decode(&bytes, &keys).unwrap();
    assert_eq!(cfg.format_version, 1);
    assert_eq!(cfg.repository_id, id_of(c, "repository_id"));
    assert_eq!(cfg.master_key_fingerprint, keys.fingerprint());
    assert_eq!(
        cfg.chunker,
        ChunkerParams {
            min_size: 262_144,
            avg_size: 1_048_576,
            max_size: 4_194_304,
            normalization: 1
        }
    );
    assert_eq!(cfg.pack_size, 16 << 20);
    assert_eq!(cfg.compression_level, 3);
    // No `large_files` member: every file is cut with `chunker`.
    assert_eq!(cfg.large_files, None);

    // The outer JSON by hand: exactly three fields; the sealed inner JSON equals the manifest.
    let outer: Value = serde_json::from_slice(&bytes).unwrap();
    let fields: Vec<&String> = outer.as_object().unwrap().keys().collect();
    assert_eq!(fields.len(), 3, "{fields:?}");
    assert_eq!(outer["format_version"], json!(1));
    assert_eq!(outer["repository_id"], c["repository_id"]);
    let inner = config_inner(&bytes, &keys);
    assert_eq!(std::str::from_utf8(&inner).unwrap(), s(c, "inner_json"));
    assert_eq!(
        serde_json::to_value(&cfg).unwrap(),
        serde_json::from_slice::<Value>(&inner).unwrap()
    );
    assert!(bytes.ends_with(b"}\n"));
}

#[test]
fn config_of_version_2_is_refused() {
    let keys = unlock();
    let m = read_manifest();
    let v2 = read_vector(s(&m["config_version_2"], "path"));
    assert!(matches!(
        RepoConfig::peek_version(&v2),
        Err(RepoError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
    assert!(matches!(
        RepoConfig::decode(&v2, &keys),
        Err(RepoError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
    // A version-1 config whose outer version was edited to 2 is refused the same way, before
    // anything is decrypted (so even without keys, and even though its MAC still matches).
    let v1 = read_vector("repo/config");
    let mut outer: Value = serde_json::from_slice(&v1).unwrap();
    outer["format_version"] = json!(2);
    let edited = serde_json::to_vec(&outer).unwrap();
    assert!(matches!(
        RepoConfig::decode(&edited, &keys),
        Err(RepoError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
    // Opening a repository with such a config refuses it before asking for keys.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("config"), &v2).unwrap();
    let backend: Arc<dyn stowage_core::backend::Backend> = Arc::new(LocalBackend::new(dir.path()));
    assert!(matches!(
        Repository::open(backend, PASSWORD.as_bytes()),
        Err(RepoError::UnsupportedVersion { found: 2, .. })
    ));
}

/// Reads the committed pack and returns its bytes and decoded header.
fn pack_and_header(keys: &MasterKeys) -> (Vec<u8>, Vec<PackBlob>) {
    let m = read_manifest();
    let p = &m["pack"];
    let bytes = read_vector(s(p, "path"));
    assert_eq!(bytes.len() as u64, u(p, "size"));
    let (off, len) = header_location(s(p, "id"), &bytes, bytes.len() as u64).unwrap();
    let blobs = decode_header(
        keys,
        s(p, "id"),
        &bytes[off as usize..off as usize + len],
        off,
    )
    .unwrap();
    (bytes, blobs)
}

#[test]
fn pack_layout_and_header() {
    let m = read_manifest();
    let p = &m["pack"];
    let keys = unlock();
    let (bytes, blobs) = pack_and_header(&keys);

    // Trailer: header length (u32 LE) then the magic.
    let n = bytes.len();
    assert_eq!(&bytes[n - 8..], b"STWPACK1");
    assert_eq!(PACK_MAGIC, b"STWPACK1");
    assert_eq!(TRAILER_LEN, 12);
    let header_len = u32::from_le_bytes(bytes[n - 12..n - 8].try_into().unwrap()) as usize;
    assert_eq!(header_len as u64, u(p, "header_length"));
    let header_offset = n - 12 - header_len;
    assert_eq!(header_offset as u64, u(p, "header_offset"));

    // Header plaintext: count then 46-byte entries, fields at fixed offsets.
    let plain = keys
        .open(
            "header",
            b"stowage pack header v1",
            &bytes[header_offset..n - 12],
        )
        .unwrap();
    assert_eq!(hex::encode(&plain), s(p, "header_plaintext_hex"));
    assert_eq!(header_len, plain.len() + NONCE_LEN + TAG_LEN);
    let count = u32::from_le_bytes(plain[..4].try_into().unwrap()) as usize;
    assert_eq!(count, 6);
    assert_eq!(plain.len(), 4 + count * ENTRY_LEN);
    assert_eq!(ENTRY_LEN, 46);
    let manifest_blobs = m["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), manifest_blobs.len());
    let mut expected_offset = 0u32;
    for (i, (e, mb)) in blobs.iter().zip(manifest_blobs).enumerate() {
        let raw = &plain[4 + i * ENTRY_LEN..4 + (i + 1) * ENTRY_LEN];
        assert_eq!(raw[0], blob_type_of(mb).code());
        assert_eq!(raw[1], 0, "reserved byte");
        assert_eq!(&raw[2..34], id_of(mb, "id").as_bytes());
        assert_eq!(
            u32::from_le_bytes(raw[34..38].try_into().unwrap()) as u64,
            u(mb, "pack_offset")
        );
        assert_eq!(
            u32::from_le_bytes(raw[38..42].try_into().unwrap()) as u64,
            u(mb, "pack_length")
        );
        assert_eq!(
            u32::from_le_bytes(raw[42..46].try_into().unwrap()) as u64,
            u(mb, "raw_length")
        );
        assert_eq!(PackBlob::decode(raw).unwrap(), *e);
        assert_eq!(e.blob_type, blob_type_of(mb));
        assert_eq!(e.id, id_of(mb, "id"));
        // The writer stores blobs back to back from offset 0.
        assert_eq!(e.offset, expected_offset);
        expected_offset += e.length;
    }
    assert_eq!(expected_offset as usize, header_offset);
}

#[test]
fn pack_blobs_open_to_their_plaintexts() {
    let m = read_manifest();
    let keys = unlock();
    let (bytes, blobs) = pack_and_header(&keys);
    let mut encodings = Vec::new();
    for (e, mb) in blobs.iter().zip(m["blobs"].as_array().unwrap()) {
        let plain = blob_plaintext(mb);
        let t = blob_type_of(mb);
        assert_eq!(e.raw_length as usize, plain.len());
        assert_eq!(
            keys.blob_id(&plain),
            e.id,
            "blob id is keyed BLAKE3 of the plaintext"
        );
        assert_eq!(
            *blake3::keyed_hash(&keys.id_key, &plain).as_bytes(),
            e.id.0,
            "{}",
            s(mb, "name")
        );
        let sealed = &bytes[e.offset as usize..e.end() as usize];
        assert_eq!(
            open_blob(&keys, t, &e.id, sealed, e.raw_length as usize).unwrap(),
            plain
        );

        // By hand: the 49-byte AAD, the flag byte, the payload.
        let aad = blob_aad(t, &e.id);
        assert_eq!(hex::encode(aad), s(mb, "aad_hex"));
        assert_eq!(&aad[..16], b"stowage blob v1\0");
        assert_eq!(aad[16], t.code());
        let inner = keys.open("blob", &aad, sealed).unwrap();
        assert_eq!(inner.len() + 28, sealed.len());
        match s(mb, "payload_encoding") {
            "raw" => {
                assert_eq!(inner[0], 0);
                assert_eq!(&inner[1..], &plain[..]);
            }
            "zstd" => {
                assert_eq!(inner[0], 1);
                assert_eq!(&inner[1..5], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
                assert_eq!(zstd::decode_all(&inner[1..]).unwrap(), plain);
                // Compression is only kept when it saves at least 1/32.
                assert!(inner.len() - 1 < plain.len() - plain.len() / 32);
            }
            other => panic!("unknown encoding {other}"),
        }
        encodings.push(s(mb, "payload_encoding").to_string());
        // Wrong type or id in the AAD fails.
        let other_type = if t == BlobType::Data {
            BlobType::Tree
        } else {
            BlobType::Data
        };
        assert!(keys
            .open("blob", &blob_aad(other_type, &e.id), sealed)
            .is_err());
    }
    assert!(encodings.contains(&"raw".to_string()) && encodings.contains(&"zstd".to_string()));
    let names: Vec<&str> = m["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| s(b, "name"))
        .collect();
    assert_eq!(
        names,
        [
            "compressible",
            "small",
            "incompressible",
            "tree-docs",
            "tree-vector",
            "tree-root"
        ]
    );
    // Spelled out: the two data blobs that must be stored raw and the one that must be zstd.
    assert_eq!(encodings[0], "zstd");
    assert_eq!(
        encodings[1], "raw",
        "shorter than 64 bytes: never compressed"
    );
    assert_eq!(encodings[2], "raw", "incompressible");
    assert_eq!(blob_plaintext(&m["blobs"][0]), blob_compressible());
    assert_eq!(blob_plaintext(&m["blobs"][1]), b"hello, stowage\n");
    assert_eq!(
        blob_plaintext(&m["blobs"][2]),
        xorshift64_bytes(0x243f_6a88_85a3_08d3, 300)
    );
}

#[test]
fn index_lists_the_pack() {
    let m = read_manifest();
    let ix = &m["index"];
    let keys = unlock();
    let bytes = read_vector(s(ix, "path"));
    let index = IndexFile::decode(&keys, s(ix, "id"), &bytes).unwrap();
    let plain = keys.open("index", b"stowage index v1", &bytes).unwrap();
    assert_eq!(hex::encode(&plain), s(ix, "plaintext_hex"));
    assert_eq!(index.encode_plaintext(), plain);

    // Plaintext by hand.
    assert_eq!(plain[0], 1, "index version byte");
    assert_eq!(
        u32::from_le_bytes(plain[1..5].try_into().unwrap()),
        1,
        "one superseded id"
    );
    assert_eq!(
        hex::encode(&plain[5..37]),
        ix["supersedes"][0].as_str().unwrap()
    );
    assert_eq!(
        u32::from_le_bytes(plain[37..41].try_into().unwrap()),
        1,
        "one pack"
    );
    assert_eq!(hex::encode(&plain[41..73]), s(&m["pack"], "id"));
    assert_eq!(
        u32::from_le_bytes(plain[73..77].try_into().unwrap()),
        6,
        "six blobs"
    );
    assert_eq!(plain.len(), 77 + 6 * ENTRY_LEN);

    let supersedes: Vec<String> = index.supersedes.iter().map(Id::to_hex).collect();
    let expected: Vec<String> = ix["supersedes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(supersedes, expected);
    assert_eq!(index.packs.len(), 1);
    assert_eq!(index.packs[0].id, id_of(&m["pack"], "id"));
    let (_, header) = pack_and_header(&keys);
    assert_eq!(
        index.packs[0].blobs, header,
        "index entries equal the pack header's"
    );
    // The index entry bytes are the pack header entry bytes.
    let header_plain = hex_field(&m["pack"], "header_plaintext_hex");
    assert_eq!(&plain[73..], &header_plain[..]);
}

/// Finds a node by name in a tree.
fn node<'a>(t: &'a Tree, name: &[u8]) -> &'a Node {
    t.nodes
        .iter()
        .find(|n| n.name.0 == name)
        .unwrap_or_else(|| panic!("no node {:?}", String::from_utf8_lossy(name)))
}

#[test]
fn trees_decode() {
    let m = read_manifest();
    let keys = unlock();
    let blob = |name: &str| -> (Id, Vec<u8>) {
        let b = m["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| s(b, "name") == name)
            .unwrap();
        assert_eq!(
            s(b, "type"),
            if name.starts_with("tree") {
                "tree"
            } else {
                "data"
            }
        );
        (id_of(b, "id"), blob_plaintext(b))
    };
    let (root_id, root_json) = blob("tree-root");
    let (vector_id, vector_json) = blob("tree-vector");
    let (docs_id, docs_json) = blob("tree-docs");
    let (c_id, c) = blob("compressible");
    let (s_id, _) = blob("small");
    let (i_id, _) = blob("incompressible");
    assert_eq!(root_id, id_of(&m["snapshot"], "tree"));
    for (id, json) in [
        (&root_id, &root_json),
        (&vector_id, &vector_json),
        (&docs_id, &docs_json),
    ] {
        assert_eq!(keys.blob_id(json), *id);
    }

    let root = Tree::decode(&root_id, &root_json).unwrap();
    assert_eq!(root.nodes.len(), 1);
    let v = &root.nodes[0];
    assert_eq!(
        (v.name.0.as_slice(), v.kind, v.mode, v.subtree),
        (&b"vector"[..], NodeKind::Dir, 0o755, Some(vector_id))
    );

    let vector = Tree::decode(&vector_id, &vector_json).unwrap();
    let names: Vec<&[u8]> = vector.nodes.iter().map(|n| n.name.0.as_slice()).collect();
    assert_eq!(
        names,
        [
            &b"docs"[..],
            b"fifo",
            b"non-\xff\xfe",
            b"notes.txt",
            b"null",
            b"sparse.img",
            b"to-hello",
            b"z-hardlink"
        ]
    );
    // The non-UTF-8 name is stored as {"b64": ...}; the others as strings.
    let text = std::str::from_utf8(&vector_json).unwrap();
    assert!(
        text.contains(&format!(
            r#""name":{{"b64":"{}"}}"#,
            B64.encode(b"non-\xff\xfe")
        )),
        "{text}"
    );
    assert!(text.contains(r#""name":"notes.txt""#));
    let jv: Value = serde_json::from_slice(&vector_json).unwrap();
    assert_eq!(jv["nodes"][3]["mtime"], json!([1_714_979_289, 123_456_789]));

    let d = node(&vector, b"docs");
    assert_eq!((d.kind, d.subtree), (NodeKind::Dir, Some(docs_id)));
    assert_eq!(node(&vector, b"fifo").kind, NodeKind::Fifo);
    let bin = node(&vector, b"non-\xff\xfe");
    assert_eq!(
        (bin.kind, bin.size, bin.content.clone()),
        (NodeKind::File, 300, vec![i_id])
    );
    let notes = node(&vector, b"notes.txt");
    assert_eq!(notes.kind, NodeKind::File);
    assert_eq!(
        (notes.size, notes.content.clone()),
        (c.len() as u64, vec![c_id])
    );
    assert_eq!(
        (
            notes.uid,
            notes.gid,
            notes.user.as_deref(),
            notes.group.as_deref()
        ),
        (1000, 1000, Some("alice"), Some("staff"))
    );
    assert_eq!(
        (notes.mtime, notes.ctime, notes.atime),
        (
            Timestamp(1_714_979_289, 123_456_789),
            Timestamp(1_714_979_290, 5),
            Timestamp(1_714_979_291, 0)
        )
    );
    assert_eq!((notes.inode, notes.device, notes.links), (205, 2049, 2));
    let null = node(&vector, b"null");
    assert_eq!(
        (null.kind, null.rdev, null.mode),
        (NodeKind::Chardev, 0x103, 0o666)
    );
    let sparse = node(&vector, b"sparse.img");
    assert_eq!(sparse.size, 10_000);
    assert_eq!(sparse.holes, vec![(0, 4096), (4111, 5889)]);
    assert_eq!(sparse.content, vec![s_id]);
    let link = node(&vector, b"to-hello");
    assert_eq!(
        (link.kind, link.target.as_ref().map(|t| t.0.as_slice())),
        (NodeKind::Symlink, Some(&b"docs/hello.txt"[..]))
    );
    assert!(link.content.is_empty() && link.size == 0);
    let hard = node(&vector, b"z-hardlink");
    assert_eq!(hard.kind, NodeKind::Hardlink);
    assert_eq!(hard.link_target.as_ref().unwrap().0, b"vector/notes.txt");
    assert_eq!(
        (hard.inode, hard.content.clone()),
        (notes.inode, notes.content.clone())
    );

    let docs = Tree::decode(&docs_id, &docs_json).unwrap();
    let empty = node(&docs, b"empty");
    assert_eq!(
        (
            empty.kind,
            empty.size,
            empty.content.len(),
            empty.user.clone()
        ),
        (NodeKind::File, 0, 0, None)
    );
    let hello = node(&docs, b"hello.txt");
    assert_eq!((hello.size, hello.content.clone()), (15, vec![s_id]));
    assert_eq!(hello.xattrs.len(), 1);
    assert_eq!(hello.xattrs[0].name.0, b"user.comment");
    assert_eq!(B64.decode(&hello.xattrs[0].value).unwrap(), b"greeting");
    // Omitted fields: the empty file has no "size", "content" or "user" keys at all.
    let jd: Value = serde_json::from_slice(&docs_json).unwrap();
    let empty_keys: Vec<&String> = jd["nodes"][0].as_object().unwrap().keys().collect();
    assert!(
        !empty_keys
            .iter()
            .any(|k| ["size", "content", "user", "holes", "subtree"].contains(&k.as_str())),
        "{empty_keys:?}"
    );

    // Re-encoding gives the same bytes (so the same blob id): the encoding is canonical.
    assert_eq!(root.encode(), root_json);
    assert_eq!(vector.encode(), vector_json);
    assert_eq!(docs.encode(), docs_json);
    assert_eq!(docs, docs_tree(s_id));
    assert_eq!(vector, vector_tree(docs_id, c_id, s_id, i_id));
    assert_eq!(root, root_tree(vector_id));
}

/// Lays the content of a file node out as the spec says: blobs in order over the non-hole ranges.
fn lay_out(n: &Node, blobs: &dyn Fn(&Id) -> Vec<u8>) -> Vec<u8> {
    let mut out = vec![0u8; n.size as usize];
    let mut holes = n.holes.iter().peekable();
    let mut pos = 0u64;
    for id in &n.content {
        while let Some(&&(off, len)) = holes.peek() {
            if off <= pos {
                pos = pos.max(off + len);
                holes.next();
            } else {
                break;
            }
        }
        let data = blobs(id);
        out[pos as usize..pos as usize + data.len()].copy_from_slice(&data);
        pos += data.len() as u64;
    }
    assert!(pos <= n.size);
    out
}

#[test]
fn sparse_file_content_lays_out_around_holes() {
    let m = read_manifest();
    let keys = unlock();
    let (bytes, header) = pack_and_header(&keys);
    let read = |id: &Id| -> Vec<u8> {
        let e = header.iter().find(|e| e.id == *id).unwrap();
        open_blob(
            &keys,
            e.blob_type,
            id,
            &bytes[e.offset as usize..e.end() as usize],
            e.raw_length as usize,
        )
        .unwrap()
    };
    let vector_id = id_of(
        m["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| s(b, "name") == "tree-vector")
            .unwrap(),
        "id",
    );
    let vector = Tree::decode(&vector_id, &read(&vector_id)).unwrap();
    let sparse = lay_out(node(&vector, b"sparse.img"), &read);
    let mut expected = vec![0u8; 10_000];
    expected[4096..4111].copy_from_slice(b"hello, stowage\n");
    assert_eq!(sparse, expected);
    let notes = lay_out(node(&vector, b"notes.txt"), &read);
    assert_eq!(notes, blob_compressible());
}

#[test]
fn snapshot_decodes() {
    let m = read_manifest();
    let sm = &m["snapshot"];
    let keys = unlock();
    let bytes = read_vector(s(sm, "path"));
    let snap = Snapshot::decode(&keys, s(sm, "id"), &bytes).unwrap();
    let plain = keys
        .open("snapshot", b"stowage snapshot v1", &bytes)
        .unwrap();
    assert_eq!(std::str::from_utf8(&plain).unwrap(), s(sm, "plaintext"));
    assert_eq!(
        snap.time
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "2024-05-06T07:08:09.123456789Z"
    );
    assert_eq!(snap.hostname, "vector-host");
    assert_eq!(snap.username, "vector-user");
    assert_eq!(snap.paths, ["/srv/vector"]);
    assert_eq!(snap.tags, ["daily", "vector"]);
    assert_eq!(snap.tree, id_of(sm, "tree"));
    assert_eq!(
        snap.parent,
        Some(Id::hash_of(b"stowage format vector: the parent snapshot"))
    );
    assert_eq!(snap.excludes, ["*.tmp"]);
    assert!(!snap.incomplete);
    assert_eq!(snap.program, "stowage format-vectors");
    let sum = &snap.summary;
    assert_eq!(
        (
            sum.files_new,
            sum.dirs_new,
            sum.blobs_added,
            sum.total_files,
            sum.errors
        ),
        (6, 2, 6, 6, 0)
    );
    assert_eq!(
        (
            sum.bytes_read,
            sum.bytes_added,
            sum.bytes_added_stored,
            sum.total_bytes
        ),
        (3100, 3115, 1234, 16_115)
    );
    assert_eq!(sum.duration_secs, 1.5);
    let j: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(j["time"], json!("2024-05-06T07:08:09.123456789Z"));
    assert_eq!(serde_json::to_value(&snap).unwrap(), j);
}

#[test]
fn vector_directory_is_an_openable_repository() {
    let m = read_manifest();
    let backend: Arc<dyn stowage_core::backend::Backend> = Arc::new(LocalBackend::new(repo_dir()));
    let repo = Arc::new(Repository::open(backend, PASSWORD.as_bytes()).unwrap());
    assert_eq!(repo.key_name(), s(&m["key_file"], "name"));
    assert_eq!(
        repo.config().repository_id,
        id_of(&m["config"], "repository_id")
    );
    // A read session without a lock: the vector directory is committed and must not change.
    let session = Locked::<ReadWork>::without_lock(&repo);
    let indexed = Locked::without_lock(&repo)
        .load_index(&IndexSource::Memory, &())
        .unwrap();
    let indexed = indexed.indexed();
    assert_eq!(indexed.index().len(), 6);
    let (id, snap) = repo.find_snapshot("latest").unwrap();
    assert_eq!(id, id_of(&m["snapshot"], "id"));
    let root = indexed.read_tree(&snap.tree).unwrap();
    assert_eq!(root.nodes[0].name.0, b"vector");
    for b in m["blobs"].as_array().unwrap() {
        assert_eq!(
            indexed.read_blob(blob_type_of(b), &id_of(b, "id")).unwrap(),
            blob_plaintext(b)
        );
    }
    let report = stowage_core::check::run(
        &session,
        &stowage_core::check::CheckOptions {
            read_data: true,
            ..Default::default()
        },
        &Default::default(),
    )
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    assert!(report.unreferenced_packs.is_empty());
    assert_eq!(
        (report.snapshots, report.trees, report.packs, report.blobs),
        (1, 3, 1, 6)
    );
}

#[test]
fn vector_repository_restores() {
    use std::os::unix::fs::MetadataExt;
    let backend: Arc<dyn stowage_core::backend::Backend> = Arc::new(LocalBackend::new(repo_dir()));
    let repo = Arc::new(Repository::open(backend, PASSWORD.as_bytes()).unwrap());
    let session = Locked::without_lock(&repo)
        .load_index(&IndexSource::Memory, &())
        .unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    let opts = stowage_core::restore::RestoreOptions {
        // No device node in a test.
        excludes: vec!["null".into()],
        verify: true,
        ..Default::default()
    };
    let to = stowage_core::restore::RestoreTarget::Directory(target.clone());
    let report =
        stowage_core::restore::run(&session, &snap, to, &opts, &Default::default()).unwrap();
    let v = target.join("vector");
    assert_eq!(
        std::fs::read(v.join("notes.txt")).unwrap(),
        blob_compressible()
    );
    assert_eq!(
        std::fs::read(v.join("z-hardlink")).unwrap(),
        blob_compressible()
    );
    let (a, b) = (
        std::fs::metadata(v.join("notes.txt")).unwrap(),
        std::fs::metadata(v.join("z-hardlink")).unwrap(),
    );
    assert_eq!(
        a.ino(),
        b.ino(),
        "the hardlink node is restored as a hard link"
    );
    let mut sparse = vec![0u8; 10_000];
    sparse[4096..4111].copy_from_slice(b"hello, stowage\n");
    assert_eq!(std::fs::read(v.join("sparse.img")).unwrap(), sparse);
    assert_eq!(
        std::fs::read(v.join("docs/hello.txt")).unwrap(),
        b"hello, stowage\n"
    );
    assert_eq!(std::fs::read(v.join("docs/empty")).unwrap(), b"");
    assert_eq!(
        std::fs::read_link(v.join("to-hello")).unwrap(),
        Path::new("docs/hello.txt")
    );
    let odd = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"non-\xff\xfe");
    assert_eq!(std::fs::read(v.join(odd)).unwrap(), blob_incompressible());
    assert!(!v.join("null").exists());
    assert_eq!(
        std::fs::metadata(v.join("notes.txt")).unwrap().mtime(),
        1_714_979_289
    );
    assert!(report.verified_files >= 5, "{report:?}");
}

#[test]
fn gear_table_matches_the_spec() {
    let m = read_manifest();
    let g = &m["gear"];
    assert_eq!(gear_blake3(0), s(g, "table_blake3"));
    let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(0);
    assert_eq!(format!("{:016x}", gear[0]), s(g, "gear_0_hex"));
    assert_eq!(format!("{:016x}", gear[1]), s(g, "gear_1_hex"));
    assert_eq!(format!("{:016x}", gear[255]), s(g, "gear_255_hex"));
    assert_eq!(format!("{:016x}", gear_ls[0]), s(g, "gear_ls_0_hex"));
    // GEAR[0] is the first 8 bytes (big-endian) of MD5 of 64 zero bytes.
    assert_eq!(gear[0], 0x3b5d_3c7d_207e_37dc);
    let (seeded, seeded_ls) = fastcdc::v2020::get_gear_with_seed(CHUNKER_SEED);
    for i in 0..256 {
        assert_eq!(gear_ls[i], gear[i] << 1);
        assert_eq!(seeded[i], gear[i] ^ CHUNKER_SEED);
        assert_eq!(seeded_ls[i], (gear[i] << 1) ^ (CHUNKER_SEED << 1));
    }
}

#[test]
fn chunk_boundaries_match() {
    let m = read_manifest();
    let cases = m["chunker"].as_array().unwrap();
    assert_eq!(cases.len(), chunker_cases().len());
    for (c, (name, params, seed, state, len)) in cases.iter().zip(chunker_cases()) {
        assert_eq!(s(c, "name"), name);
        let p: ChunkerParams = serde_json::from_value(c["params"].clone()).unwrap();
        assert_eq!(p, params);
        p.validate().unwrap();
        assert_eq!(u(c, "seed"), seed);
        assert_eq!(u64::from_str_radix(s(c, "seed_hex"), 16).unwrap(), seed);
        let input_spec = &c["input"];
        assert_eq!(s(input_spec, "generator"), "xorshift64");
        assert_eq!(
            u64::from_str_radix(s(input_spec, "state_hex"), 16).unwrap(),
            state
        );
        assert_eq!(u(input_spec, "length") as usize, len);
        let input = xorshift64_bytes(state, len);
        assert_eq!(
            blake3::hash(&input).to_hex().as_str(),
            s(c, "input_blake3"),
            "{name}"
        );
        let expected: Vec<usize> = c["chunk_lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(expected.iter().sum::<usize>(), len, "{name}");
        let spec = ChunkerSpec::new(p, seed);
        assert_eq!(spec.chunk_lengths(&input), expected, "{name}");
        // The streaming chunker, fed in odd-sized reads, finds the same boundaries.
        let mut chunker = Chunker::new(spec.clone());
        let mut reader = OddReader {
            data: &input,
            step: 0,
        };
        let mut got = Vec::new();
        while let Some(ch) = chunker.next_chunk(&mut reader).unwrap() {
            got.push(ch.len());
        }
        assert_eq!(got, expected, "{name} (streaming)");
        for l in &expected[..expected.len() - 1] {
            assert!(
                (p.min_size as usize..=p.max_size as usize).contains(l),
                "{name}: {l}"
            );
        }
    }
}

/// A reader returning 1, 1000, 7777, 65536, ... bytes per call in turn.
struct OddReader<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for OddReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        const SIZES: [usize; 4] = [1, 1000, 7777, 65536];
        let n = SIZES[self.step % SIZES.len()]
            .min(buf.len())
            .min(self.data.len());
        self.step += 1;
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn tampered_vectors_are_refused() {
    let m = read_manifest();
    let keys = unlock();
    // A flipped bit anywhere in a sealed file fails its MAC.
    let mut index = read_vector(s(&m["index"], "path"));
    index[20] ^= 1;
    assert!(matches!(
        IndexFile::decode(&keys, "x", &index),
        Err(RepoError::Crypto(CryptoError::Mac(_)))
    ));
    // A snapshot cannot be passed off as an index (different associated data).
    let snap = read_vector(s(&m["snapshot"], "path"));
    assert!(IndexFile::decode(&keys, "x", &snap).is_err());
    // A truncated pack has no trailer.
    let pack = read_vector(s(&m["pack"], "path"));
    let cut = &pack[..pack.len() - 1];
    assert!(header_location("p", cut, cut.len() as u64).is_err());
}

// ---------------------------------------------------------------------------------------------
// Later additions to format version 1: condemned batches in index files, and lock files
// (`repo-format/README.md`, sections 10, 13 and 15). Written once by `create_extra_vectors`
// into `extra/index/` and `repo/locks/`, described by the manifest `v1-extra.json`.
// ---------------------------------------------------------------------------------------------

/// The manifest of the later additions.
const EXTRA_MANIFEST: &str = "v1-extra.json";

fn read_extra_manifest() -> Value {
    let bytes = std::fs::read(vectors_dir().join(EXTRA_MANIFEST))
        .expect("repo-format/vectors/v1-extra.json");
    serde_json::from_slice(&bytes).expect("manifest is JSON")
}

/// The condemned batches of the extra index vector: one determined (two blocking locks, the
/// vector pack and a pack no index lists), one undetermined (left by an interrupted prune).
fn extra_batches(vector_pack: Id, backup_lock: Id) -> Vec<CondemnedBatch> {
    vec![
        CondemnedBatch {
            // 2024-05-06T07:08:09Z
            marked_at: 1_714_979_289,
            determined: true,
            blocking_locks: vec![
                backup_lock,
                Id::hash_of(b"stowage format vector: a lock that is gone"),
            ],
            packs: vec![
                vector_pack,
                Id::hash_of(b"stowage format vector: a pack no index lists"),
            ],
        },
        CondemnedBatch {
            // 1969-12-31T23:59:59Z: marked_at is a signed integer (and only informational).
            marked_at: -1,
            determined: false,
            blocking_locks: vec![],
            packs: vec![Id::hash_of(
                b"stowage format vector: a pack condemned by an interrupted prune",
            )],
        },
    ]
}

fn rfc3339(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// The lock vectors: one of each kind.
fn extra_locks() -> Vec<(&'static str, LockInfo)> {
    vec![
        (
            "backup",
            LockInfo {
                lock_id: Id::hash_of(b"stowage format vector: a backup lock"),
                kind: LockKind::Backup,
                hostname: "vector-host".into(),
                pid: 4242,
                process_start: 123_456_789,
                created: rfc3339("2024-05-06T07:00:00Z"),
                refreshed: rfc3339("2024-05-06T07:05:00.25Z"),
                host_id: String::new(),
            },
        ),
        (
            "prune",
            LockInfo {
                lock_id: Id::hash_of(b"stowage format vector: a prune lock"),
                kind: LockKind::Prune,
                hostname: "vector-other-host".into(),
                pid: 1,
                process_start: 0,
                created: rfc3339("2024-05-06T07:08:09.123456789Z"),
                refreshed: rfc3339("2024-05-06T07:08:09.123456789Z"),
                host_id: String::new(),
            },
        ),
        (
            "read",
            LockInfo {
                lock_id: Id::hash_of(b"stowage format vector: a read lock"),
                kind: LockKind::Read,
                hostname: "vector-host".into(),
                pid: 4_294_967_295,
                process_start: 18_446_744_073_709_551_615,
                created: rfc3339("2024-05-06T06:00:00.5Z"),
                refreshed: rfc3339("2024-05-06T07:01:02.123456Z"),
                host_id: String::new(),
            },
        ),
    ]
}

fn open_vector_repo() -> Arc<Repository> {
    let backend: Arc<dyn stowage_core::backend::Backend> = Arc::new(LocalBackend::new(repo_dir()));
    Arc::new(Repository::open(backend, PASSWORD.as_bytes()).unwrap())
}

fn batch_json(b: &CondemnedBatch) -> Value {
    json!({
        "marked_at": b.marked_at,
        "determined": b.determined,
        "blocking_locks": b.blocking_locks.iter().map(Id::to_hex).collect::<Vec<_>>(),
        "packs": b.packs.iter().map(Id::to_hex).collect::<Vec<_>>(),
    })
}

/// Writes the extra vectors from the committed base vectors (`vectors.json`, `repo/`).
/// Replaces earlier extra vectors; callers decide whether that is wanted.
fn write_extra_vectors() {
    let dir = vectors_dir();
    let _ = std::fs::remove_dir_all(dir.join("extra"));
    let _ = std::fs::remove_dir_all(repo_dir().join("locks"));
    let m = read_manifest();
    let keys = vector_keys();
    let repo = open_vector_repo();
    let pack_id = id_of(&m["pack"], "id");
    let (_, header) = pack_and_header(&keys);
    let locks = extra_locks();
    let backup_lock = locks[0].1.lock_id;

    // Index file with a condemned section: supersedes the repository's index file.
    let base_index = id_of(&m["index"], "id");
    let index = IndexFile {
        supersedes: vec![base_index],
        packs: vec![IndexPack {
            id: pack_id,
            blobs: header.clone(),
        }],
        condemned: extra_batches(pack_id, backup_lock),
    };
    let plain = index.encode_plaintext();
    let section_offset = 1 + 4 + 32 + 4 + 32 + 4 + header.len() * ENTRY_LEN;
    assert_eq!(
        plain[section_offset..section_offset + 4],
        2u32.to_le_bytes()
    );
    let bytes = index.encode(&keys);
    let name = write_named(&dir.join("extra").join("index"), &bytes);
    let index_json = json!({
        "path": format!("extra/index/{name}"),
        "id": name,
        "aad": "stowage index v1",
        "supersedes": [base_index.to_hex()],
        "pack": pack_id.to_hex(),
        "pack_blobs": header.len(),
        "condemned_offset": section_offset,
        "condemned_hex": hex::encode(&plain[section_offset..]),
        "condemned": index.condemned.iter().map(batch_json).collect::<Vec<_>>(),
        "plaintext_hex": hex::encode(&plain),
    });

    // Lock files, in the repository's locks/ folder (both stale: refreshed in 2024).
    let mut lock_json = Vec::new();
    for (label, info) in &locks {
        let sealed = info.encode(&repo);
        let name = write_named(&repo_dir().join("locks"), &sealed);
        let plain = keys.open("lock", b"stowage lock v1", &sealed).unwrap();
        lock_json.push(json!({
            "label": label,
            "path": format!("repo/locks/{name}"),
            "name": name,
            "aad": "stowage lock v1",
            "plaintext": String::from_utf8(plain).unwrap(),
            "lock_id": info.lock_id.to_hex(),
            "kind": label,
            "hostname": info.hostname,
            "pid": info.pid,
            "process_start": info.process_start,
            "created": info.created.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "refreshed": info.refreshed.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        }));
    }

    let manifest = json!({
        "format_version": FORMAT_VERSION,
        "about": "Test vectors of the later additions to stowage repository format version 1 (condemned batches in index files, lock files, the large_files member of the config); see repo-format/README.md, section Test vectors. Keys and password as in vectors.json.",
        "keys": "vectors.json",
        "index": index_json,
        "locks": lock_json,
    });
    let mut text = serde_json::to_vec_pretty(&manifest).unwrap();
    text.push(b'\n');
    std::fs::write(dir.join(EXTRA_MANIFEST), text).unwrap();
    write_large_files_config_vector();
}

/// The large-file chunk sizes of the config vector with a `large_files` member (stowage's
/// defaults).
fn vector_large_files() -> LargeFileChunking {
    LargeFileChunking {
        min_file_size: 16 << 20,
        chunker: ChunkerParams {
            min_size: 32_768,
            avg_size: 131_072,
            max_size: 524_288,
            normalization: 1,
        },
    }
}

const LARGE_FILES_CONFIG: &str = "extra/config-large-files";

/// Writes `extra/config-large-files` (the vector repository's config with a `large_files`
/// member) and adds it to the extra manifest, leaving the other extra vectors alone.
fn write_large_files_config_vector() {
    let keys = vector_keys();
    let config = RepoConfig {
        large_files: Some(vector_large_files()),
        ..vector_config(&keys, FORMAT_VERSION)
    };
    let bytes = config.encode(&keys);
    let path = vectors_dir().join(LARGE_FILES_CONFIG);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let inner = config_inner(&bytes, &keys);
    let large = vector_large_files();
    let mut manifest = read_extra_manifest();
    manifest["about"] = json!("Test vectors of the later additions to stowage repository format version 1 (condemned batches in index files, lock files, the large_files member of the config); see repo-format/README.md, section Test vectors. Keys and password as in vectors.json.");
    manifest["config_large_files"] = json!({
        "path": LARGE_FILES_CONFIG,
        "aad": "stowage config v1",
        "repository_id": config.repository_id.to_hex(),
        "inner_json": String::from_utf8(inner).unwrap(),
        "large_files": {
            "min_file_size": large.min_file_size,
            "chunker": params_json(&large.chunker),
        },
    });
    let mut text = serde_json::to_vec_pretty(&manifest).unwrap();
    text.push(b'\n');
    std::fs::write(vectors_dir().join(EXTRA_MANIFEST), text).unwrap();
}

/// Adds the large-file config vector to the committed extra vectors if it is missing.
#[test]
#[ignore = "writes the committed large-file config vector; run once, by hand"]
fn create_large_files_config_vector() {
    if read_extra_manifest().get("config_large_files").is_some()
        && std::env::var_os("STOWAGE_REGENERATE_VECTORS").is_none()
    {
        eprintln!("the large-file config vector is committed and was left alone.");
        return;
    }
    write_large_files_config_vector();
}

#[test]
fn config_with_large_file_chunking_decodes() {
    let x = read_extra_manifest();
    let c = &x["config_large_files"];
    let bytes = read_vector(s(c, "path"));
    let keys = unlock();
    let cfg = RepoConfig::decode(&bytes, &keys).unwrap();
    let large = cfg
        .large_files
        .expect("the vector has large-file chunk sizes");
    assert_eq!(large, vector_large_files());
    assert_eq!(large.min_file_size, u(&c["large_files"], "min_file_size"));
    assert_eq!(params_json(&large.chunker), c["large_files"]["chunker"]);
    // Everything else as in the base config vector.
    let base =
        RepoConfig::decode(&read_vector(s(&read_manifest()["config"], "path")), &keys).unwrap();
    assert_eq!(
        RepoConfig {
            large_files: None,
            ..cfg.clone()
        },
        base
    );
    let inner = config_inner(&bytes, &keys);
    assert_eq!(std::str::from_utf8(&inner).unwrap(), s(c, "inner_json"));

    // A repository with this config cuts files from 16 MiB on, and standard input, with the
    // large-file chunk sizes.
    let dir = tempfile::tempdir().unwrap();
    let m = read_manifest();
    let key = &m["key_file"];
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(
        dir.path().join("keys").join(s(key, "name")),
        read_vector(s(key, "path")),
    )
    .unwrap();
    std::fs::write(dir.path().join("config"), &bytes).unwrap();
    let backend: Arc<dyn stowage_core::backend::Backend> = Arc::new(LocalBackend::new(dir.path()));
    let repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    assert_eq!(repo.chunker_for_file(0).params(), cfg.chunker);
    assert_eq!(repo.chunker_for_file((16 << 20) - 1).params(), cfg.chunker);
    assert_eq!(repo.chunker_for_file(16 << 20).params(), large.chunker);
    assert_eq!(repo.chunker_for_file(u64::MAX).params(), large.chunker);
    assert_eq!(repo.chunker_for_stream().params(), large.chunker);
    // Both with the repository's chunker seed: the large-file cuts are those of the spec.
    let input = xorshift64_bytes(0x9e37_79b9_7f4a_7c15, 2 << 20);
    assert_eq!(
        repo.chunker_for_file(16 << 20).chunk_lengths(&input),
        ChunkerSpec::new(large.chunker, CHUNKER_SEED).chunk_lengths(&input)
    );
}

/// Writes the extra vectors if they are missing (or with STOWAGE_REGENERATE_VECTORS=1), without
/// touching the base vectors. Its name does not contain "generate", so the documented
/// regeneration command runs only `generate_vectors`, which writes these too.
#[test]
#[ignore = "writes the committed extra vectors; run once, by hand"]
fn create_extra_vectors() {
    let manifest = vectors_dir().join(EXTRA_MANIFEST);
    if manifest.exists() && std::env::var_os("STOWAGE_REGENERATE_VECTORS").is_none() {
        eprintln!(
            "{} exists: the extra vectors are committed bytes and were left alone.",
            manifest.display()
        );
        return;
    }
    write_extra_vectors();
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn ids_of(v: &Value) -> Vec<Id> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn condemned_index_decodes() {
    let m = read_manifest();
    let x = read_extra_manifest();
    let ix = &x["index"];
    let keys = unlock();
    let bytes = read_vector(s(ix, "path"));
    assert_eq!(
        Id::hash_of(&bytes).to_hex(),
        s(ix, "id"),
        "named by its hash"
    );
    assert_eq!(s(ix, "path"), format!("extra/index/{}", s(ix, "id")));
    assert_eq!(s(ix, "aad"), "stowage index v1");
    let index = IndexFile::decode(&keys, s(ix, "id"), &bytes).unwrap();
    let plain = keys.open("index", b"stowage index v1", &bytes).unwrap();
    assert_eq!(hex::encode(&plain), s(ix, "plaintext_hex"));
    assert_eq!(
        index.encode_plaintext(),
        plain,
        "re-encodes to the same bytes"
    );

    // What it must decode to, spelled out.
    let pack_id = id_of(&m["pack"], "id");
    let backup_lock = Id::hash_of(b"stowage format vector: a backup lock");
    assert_eq!(index.supersedes, vec![id_of(&m["index"], "id")]);
    assert_eq!(ids_of(&ix["supersedes"]), index.supersedes);
    assert_eq!(index.packs.len(), 1);
    assert_eq!(index.packs[0].id, pack_id);
    assert_eq!(s(ix, "pack"), pack_id.to_hex());
    let (_, header) = pack_and_header(&keys);
    assert_eq!(index.packs[0].blobs, header);
    assert_eq!(u(ix, "pack_blobs"), 6);
    assert_eq!(index.condemned, extra_batches(pack_id, backup_lock));
    let batches = ix["condemned"].as_array().unwrap();
    assert_eq!(batches.len(), 2);
    for (b, j) in index.condemned.iter().zip(batches) {
        assert_eq!(Some(b.marked_at), j["marked_at"].as_i64());
        assert_eq!(Some(b.determined), j["determined"].as_bool());
        assert_eq!(b.blocking_locks, ids_of(&j["blocking_locks"]));
        assert_eq!(b.packs, ids_of(&j["packs"]));
    }
    let b0 = &index.condemned[0];
    assert_eq!((b0.marked_at, b0.determined), (1_714_979_289, true));
    assert_eq!(
        b0.blocking_locks,
        [
            backup_lock,
            Id::hash_of(b"stowage format vector: a lock that is gone")
        ]
    );
    assert_eq!(
        b0.packs,
        [
            pack_id,
            Id::hash_of(b"stowage format vector: a pack no index lists")
        ]
    );
    let b1 = &index.condemned[1];
    assert_eq!((b1.marked_at, b1.determined), (-1, false));
    assert!(b1.blocking_locks.is_empty());
    assert_eq!(
        b1.packs,
        [Id::hash_of(
            b"stowage format vector: a pack condemned by an interrupted prune"
        )]
    );

    // The plaintext by hand: the part before the condemned section is laid out exactly as in
    // an index file without one (section 10), and the section follows the last pack record.
    assert_eq!(plain[0], 1);
    assert_eq!(u32_at(&plain, 1), 1);
    assert_eq!(&plain[5..37], id_of(&m["index"], "id").as_bytes());
    assert_eq!(u32_at(&plain, 37), 1);
    assert_eq!(&plain[41..73], pack_id.as_bytes());
    assert_eq!(u32_at(&plain, 73), 6);
    let header_plain = hex_field(&m["pack"], "header_plaintext_hex");
    assert_eq!(&plain[77..77 + 6 * ENTRY_LEN], &header_plain[4..]);
    let c = u(ix, "condemned_offset") as usize;
    assert_eq!(c, 77 + 6 * ENTRY_LEN);
    assert_eq!(c, 353);
    assert_eq!(hex::encode(&plain[c..]), s(ix, "condemned_hex"));
    assert_eq!(u32_at(&plain, c), 2, "two batches");
    // Batch 0 at c + 4.
    let mut p = c + 4;
    assert_eq!(
        i64::from_le_bytes(plain[p..p + 8].try_into().unwrap()),
        1_714_979_289
    );
    assert_eq!(&plain[p..p + 8], &[0xd9, 0x81, 0x38, 0x66, 0, 0, 0, 0]);
    assert_eq!(plain[p + 8], 1, "determined");
    assert_eq!(u32_at(&plain, p + 9), 2, "two blocking locks");
    assert_eq!(&plain[p + 13..p + 45], backup_lock.as_bytes());
    assert_eq!(&plain[p + 45..p + 77], b0.blocking_locks[1].as_bytes());
    assert_eq!(u32_at(&plain, p + 77), 2, "two packs");
    assert_eq!(&plain[p + 81..p + 113], pack_id.as_bytes());
    assert_eq!(&plain[p + 113..p + 145], b0.packs[1].as_bytes());
    p += 145;
    // Batch 1.
    assert_eq!(
        &plain[p..p + 8],
        &[0xff; 8],
        "marked_at -1, two's complement"
    );
    assert_eq!(plain[p + 8], 0, "undetermined");
    assert_eq!(u32_at(&plain, p + 9), 0, "no blocking locks");
    assert_eq!(u32_at(&plain, p + 13), 1, "one pack");
    assert_eq!(&plain[p + 17..p + 49], b1.packs[0].as_bytes());
    p += 49;
    assert_eq!(p, plain.len(), "nothing follows the last batch");
    assert_eq!(plain.len(), 353 + 4 + 145 + 49);

    // Meaning: every pack of every batch is condemned; blobs found only in condemned packs are
    // still readable (located) but not deduplicated against; a copy in a live pack wins.
    let mut master = MasterIndex::new();
    master.add_file(&index);
    for b in &index.condemned {
        for p in &b.packs {
            assert!(master.is_condemned(p));
        }
    }
    for e in &header {
        assert!(master.contains(e.blob_type, &e.id));
        assert!(!master.contains_live(e.blob_type, &e.id));
        assert_eq!(master.get(e.blob_type, &e.id).unwrap().pack, pack_id);
    }
    let live = Id::hash_of(b"stowage format vector: a live copy of the pack");
    master.add_pack(&IndexPack {
        id: live,
        blobs: header.clone(),
    });
    assert!(!master.is_condemned(&live));
    for e in &header {
        assert!(master.contains_live(e.blob_type, &e.id));
        assert_eq!(master.get(e.blob_type, &e.id).unwrap().pack, live);
    }
}

#[test]
fn condemned_section_bounds_are_enforced() {
    let x = read_extra_manifest();
    let ix = &x["index"];
    let plain = hex_field(ix, "plaintext_hex");
    let c = u(ix, "condemned_offset") as usize;
    let decode = |b: &[u8]| IndexFile::decode_plaintext("x", b);
    assert_eq!(decode(&plain).unwrap().condemned.len(), 2);

    // Without the section: an index file as written before condemned batches existed.
    let without = decode(&plain[..c]).unwrap();
    assert!(without.condemned.is_empty());
    assert_eq!(
        without.encode_plaintext(),
        &plain[..c],
        "absent when there are no batches"
    );
    // A section of zero batches is refused: writers omit it, so decoding stays canonical
    // (every accepted plaintext re-encodes to the same bytes).
    let mut zero = plain[..c].to_vec();
    zero.extend_from_slice(&0u32.to_le_bytes());
    assert!(decode(&zero).is_err());

    // Truncated anywhere inside the section, including a partial batch count.
    for cut in [c + 1, c + 3, c + 4, c + 12, c + 13, c + 20, plain.len() - 1] {
        assert!(decode(&plain[..cut]).is_err(), "cut at {cut}");
    }
    // Trailing bytes after the last batch.
    let mut trailing = plain.clone();
    trailing.push(0);
    assert!(decode(&trailing).is_err());
    // A state byte other than 0 or 1.
    for bad in [2u8, 0xff] {
        let mut b = plain.clone();
        b[c + 4 + 8] = bad;
        assert!(decode(&b).is_err(), "state {bad}");
    }
    // Counts larger than the bytes left are refused before anything is allocated.
    let mut b = plain.clone();
    b[c..c + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode(&b).is_err(), "batch count");
    let mut b = plain.clone();
    b[c..c + 4].copy_from_slice(&3u32.to_le_bytes());
    assert!(decode(&b).is_err(), "one batch more than present");
    let mut b = plain.clone();
    b[c + 4 + 9..c + 4 + 13].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode(&b).is_err(), "lock count");
    let mut b = plain.clone();
    b[c + 4 + 77..c + 4 + 81].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode(&b).is_err(), "pack count");
}

#[test]
fn lock_files_decode() {
    let x = read_extra_manifest();
    let keys = unlock();
    let repo = open_vector_repo();
    let expected = extra_locks();
    let locks = x["locks"].as_array().unwrap();
    assert_eq!(locks.len(), expected.len());
    for (j, (label, want)) in locks.iter().zip(&expected) {
        assert_eq!(s(j, "label"), *label);
        let name = s(j, "name");
        assert_eq!(s(j, "path"), format!("repo/locks/{name}"));
        assert_eq!(s(j, "aad"), "stowage lock v1");
        let bytes = read_vector(s(j, "path"));
        assert_eq!(Id::hash_of(&bytes).to_hex(), name, "named by its hash");
        let info = LockInfo::decode(&repo, name, &bytes).unwrap();
        assert_eq!(&info, want);

        // Every field against the manifest.
        assert_eq!(info.lock_id, id_of(j, "lock_id"));
        assert_eq!(
            s(j, "kind"),
            match info.kind {
                LockKind::Backup => "backup",
                LockKind::Prune => "prune",
                LockKind::Read => "read",
                LockKind::Unknown => "unknown",
            }
        );
        assert_eq!(info.hostname, s(j, "hostname"));
        assert_eq!(info.pid as u64, u(j, "pid"));
        assert_eq!(info.process_start, u(j, "process_start"));
        assert_eq!(info.created, rfc3339(s(j, "created")));
        assert_eq!(info.refreshed, rfc3339(s(j, "refreshed")));

        // By hand: sealed with the encryption key and AAD "stowage lock v1"; the plaintext is
        // compact JSON with exactly these members.
        assert!(bytes.len() >= NONCE_LEN + TAG_LEN);
        let plain = keys.open("lock", b"stowage lock v1", &bytes).unwrap();
        assert_eq!(plain.len() + NONCE_LEN + TAG_LEN, bytes.len());
        assert_eq!(std::str::from_utf8(&plain).unwrap(), s(j, "plaintext"));
        let v: Value = serde_json::from_slice(&plain).unwrap();
        let members: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted = members.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "created",
                "hostname",
                "kind",
                "lock_id",
                "pid",
                "process_start",
                "refreshed"
            ]
        );
        assert_eq!(v["kind"], json!(label));
        assert_eq!(v["lock_id"], json!(want.lock_id.to_hex()));
        assert_eq!(v, serde_json::to_value(&info).unwrap());
        // A lock cannot be passed off as another kind of file.
        assert!(keys.open("index", b"stowage index v1", &bytes).is_err());
        assert!(IndexFile::decode(&keys, "x", &bytes).is_err());
    }

    // Spelled out: the backup lock's JSON, exactly as stowage writes it.
    assert_eq!(
        s(&locks[0], "plaintext"),
        format!(
            r#"{{"lock_id":"{}","kind":"backup","hostname":"vector-host","pid":4242,"process_start":123456789,"created":"2024-05-06T07:00:00Z","refreshed":"2024-05-06T07:05:00.250Z"}}"#,
            Id::hash_of(b"stowage format vector: a backup lock").to_hex()
        )
    );
    // The read lock: the extremes of pid and process_start, 6 fraction digits.
    let read = s(&locks[2], "plaintext");
    for part in [
        r#""kind":"read""#,
        r#""pid":4294967295"#,
        r#""process_start":18446744073709551615"#,
        r#""created":"2024-05-06T06:00:00.500Z""#,
        r#""refreshed":"2024-05-06T07:01:02.123456Z""#,
    ] {
        assert!(read.contains(part), "{read} lacks {part}");
    }
    // The backup lock is the first blocking lock of the determined batch of the index vector.
    let b0 = &x["index"]["condemned"][0];
    assert_eq!(b0["blocking_locks"][0], locks[0]["lock_id"]);

    // Staleness: not refreshed for more than 30 minutes. (Both hosts differ from this one, so
    // the process check does not apply.)
    for (_, info) in &expected {
        assert_ne!(info.hostname, stowage_core::util::hostname());
        let thirty = chrono::Duration::minutes(30);
        assert!(!info.is_stale(info.refreshed));
        assert!(!info.is_stale(info.refreshed + thirty));
        assert!(info.is_stale(info.refreshed + thirty + chrono::Duration::seconds(1)));
    }
    // On this host, a lock whose process is gone (or is another process) is stale at once.
    let mut here = expected[0].1.clone();
    here.hostname = stowage_core::util::hostname();
    here.pid = std::process::id();
    here.host_id = stowage_core::repo::lock::host_id();
    here.refreshed = chrono::Utc::now();
    assert!(here.is_stale(here.refreshed), "process start time differs");

    // In the vector repository both are found, and both are stale.
    let mut listed: Vec<String> = list_locks(&repo)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    listed.sort();
    let mut names: Vec<String> = locks.iter().map(|j| s(j, "name").to_string()).collect();
    names.sort();
    assert_eq!(listed, names);
    assert!(live_locks(&repo).unwrap().is_empty());

    // Readers accept any offset and ignore unknown members; every member but host_id is
    // required.
    let seal = |json: &str| keys.seal_file(FileAad::Lock, json.as_bytes());
    let id = Id::hash_of(b"stowage format vector: a backup lock").to_hex();
    let other = format!(
        r#"{{"lock_id":"{id}","kind":"backup","hostname":"vector-host","pid":4242,"process_start":123456789,"created":"2024-05-06T09:00:00+02:00","refreshed":"2024-05-06T09:05:00.25+02:00","comment":"later member"}}"#
    );
    assert_eq!(
        LockInfo::decode(&repo, "x", &seal(&other)).unwrap(),
        expected[0].1
    );
    let missing = format!(
        r#"{{"lock_id":"{id}","kind":"backup","hostname":"h","pid":1,"process_start":0,"created":"2024-05-06T07:00:00Z"}}"#
    );
    assert!(LockInfo::decode(&repo, "x", &seal(&missing)).is_err());
    // A kind from a newer version decodes as Unknown, which blocks deletion like a backup.
    let unknown = other.replace(r#""kind":"backup""#, r#""kind":"check""#);
    assert_eq!(
        LockInfo::decode(&repo, "x", &seal(&unknown)).unwrap().kind,
        LockKind::Unknown
    );

    // Size limit: larger lock files are refused before they are opened.
    let big = vec![0u8; MAX_LOCK_LEN + 1];
    assert!(matches!(
        LockInfo::decode(&repo, "big", &big),
        Err(RepoError::TooLarge { .. })
    ));
    assert_eq!(MAX_LOCK_LEN, 65536);
    assert_eq!(REFRESH_INTERVAL, std::time::Duration::from_secs(300));
    assert_eq!(STALE_AFTER, std::time::Duration::from_secs(1800));
}
