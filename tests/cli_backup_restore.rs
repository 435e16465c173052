//! Backup and restore through the real binary: what goes in comes out, bit for bit and with its
//! metadata; unchanged data adds nothing; changed data adds only nearby chunks.

mod common;

use common::*;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use stowage_core::backend::local::LocalBackend;
use stowage_core::id::BlobType;
use stowage_core::repo::session::{IndexSource, Locked};
use stowage_core::repo::Repository;

/// A source tree with every kind of entry the format stores.
fn build_rich_tree(root: &Path) {
    fs::create_dir_all(root.join("docs/deep/deeper/deepest")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("docs/readme.txt"), "hello stowage\n".repeat(100)).unwrap();
    fs::write(root.join("docs/deep/deeper/deepest/leaf"), b"leaf").unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(
        root.join("random.bin"),
        random_bytes(3 * 1024 * 1024 + 17, 1),
    )
    .unwrap();
    fs::write(
        root.join("text.json"),
        serde_json::to_vec(&(0..20000).map(|i| format!("item-{i}")).collect::<Vec<_>>()).unwrap(),
    )
    .unwrap();
    symlink("docs/readme.txt", root.join("link-to-readme")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    fs::hard_link(root.join("docs/readme.txt"), root.join("hardlink-a")).unwrap();
    fs::hard_link(
        root.join("docs/readme.txt"),
        root.join("docs/deep/hardlink-b"),
    )
    .unwrap();
    // Sparse: data, 8 MiB hole, data, trailing hole.
    let mut f = fs::File::create(root.join("sparse.img")).unwrap();
    f.write_all(&random_bytes(4096, 2)).unwrap();
    f.seek(SeekFrom::Start(8 << 20)).unwrap();
    f.write_all(b"middle").unwrap();
    f.set_len(16 << 20).unwrap();
    drop(f);
    // Non-UTF-8 and very long names.
    let weird = std::ffi::OsStr::from_bytes(b"caf\xe9-\xff\xfe.txt");
    fs::write(root.join(weird), b"latin-1 name").unwrap();
    fs::write(root.join("x".repeat(255)), b"long name").unwrap();
    fs::write(root.join("with space & 'quotes'"), b"q").unwrap();
    common::sh("mkfifo", &[root.join("pipe").to_str().unwrap()]);
    // Modes and times.
    fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("script.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(root.join("docs/deep"), fs::Permissions::from_mode(0o2711)).unwrap();
    fs::write(root.join("old.txt"), b"from the past").unwrap();
    set_mtime(&root.join("old.txt"), 946_684_800, 123_456_789);
    if xattrs_supported(root) {
        xattr::set(root.join("docs/readme.txt"), "user.origin", b"test-suite").unwrap();
        xattr::set(root.join("empty-dir"), "user.empty", b"").unwrap();
        xattr::set(root.join("random.bin"), "user.bin", &[0u8, 255, 10]).unwrap();
    }
    set_mtime(&root.join("docs/deep/deeper"), 1_500_000_000, 42);
}

#[test]
fn restore_reproduces_bytes_and_metadata() {
    let env = Env::init(&[]);
    let src = env.path("src");
    build_rich_tree(&src);
    let out = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(out["incomplete"], false);
    let target = env.path("restored");
    env.restore_verified(&target);
    assert_same_tree(&src, &target.join("src"));
    let m = manifest(&target.join("src"));
    assert!(
        m[&b"sparse.img".to_vec()].sparse,
        "holes must be restored as holes"
    );
    assert_eq!(
        m[&b"hardlink-a".to_vec()].hardlink_group,
        Some(b"docs/deep/hardlink-b".to_vec())
    );
}

#[test]
fn zeros_are_restored_allocated_or_with_sparse_as_holes() {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // A disk image with zeros written out (not holes) between data.
    let mut image = random_bytes(1 << 20, 3);
    image.extend_from_slice(&vec![0u8; 12 << 20]);
    image.extend_from_slice(&random_bytes(1 << 20, 4));
    image.extend_from_slice(&vec![0u8; 3 << 20]);
    fs::write(src.join("disk.img"), &image).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);

    // By default the restored image reads the same and is not sparse either.
    let target = env.path("allocated");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("src"));
    assert!(!manifest(&target.join("src"))[&b"disk.img".to_vec()].sparse);

    // With --sparse, the zeros become holes.
    let target = env.path("sparse");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--sparse",
        "--verify",
    ]);
    let restored = target.join("src/disk.img");
    assert!(fs::read(&restored).unwrap() == image);
    assert!(manifest(&target.join("src"))[&b"disk.img".to_vec()].sparse);
}

#[test]
fn restore_of_subpath_and_filters() {
    let env = Env::init(&[]);
    let src = env.path("src");
    build_rich_tree(&src);
    env.ok(&["backup", src.to_str().unwrap()]);
    let sub = env.path("sub");
    env.ok(&[
        "restore",
        "latest:src/docs",
        "--target",
        sub.to_str().unwrap(),
    ]);
    assert_same_tree(&src.join("docs"), &sub);

    let only = env.path("only");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        only.to_str().unwrap(),
        "--include",
        "*.txt",
        "--exclude",
        "old.txt",
    ]);
    assert!(only.join("src/docs/readme.txt").exists());
    assert!(!only.join("src/old.txt").exists());
    assert!(!only.join("src/random.bin").exists());
    assert!(!only.join("src/empty-dir").exists());
}

#[test]
fn restore_plan_counts_what_the_restore_then_writes_and_writes_nothing() {
    let env = Env::init(&[]);
    let src = env.path("src");
    build_rich_tree(&src);
    env.ok(&["backup", src.to_str().unwrap()]);
    for (i, selection) in [
        vec!["latest"],
        vec!["latest:src/docs"],
        vec!["latest", "--include", "*.txt", "--exclude", "old.txt"],
    ]
    .into_iter()
    .enumerate()
    {
        let target = env.path(&format!("out{i}"));
        let mut args = vec!["restore"];
        args.extend(&selection);
        args.extend(["--target", target.to_str().unwrap()]);
        let mut planned = args.clone();
        planned.push("--plan");
        let plan = env.json(&planned)["plan"].clone();
        assert!(!target.exists(), "a plan wrote the target {selection:?}");
        let report = env.json(&args);
        for k in ["files", "other", "bytes"] {
            assert_eq!(
                plan[k], report[k],
                "{k} of {selection:?}: {plan} vs {report}"
            );
        }
        assert!(plan["blobs"].as_u64().unwrap() > 0, "{plan}");
        assert!(plan["stored_bytes"].as_u64().unwrap() > 0, "{plan}");
    }
}

#[test]
fn unchanged_rebackup_adds_no_pack_data() {
    let env = Env::init(&[]);
    let src = env.path("src");
    build_rich_tree(&src);
    let first = env.json(&["backup", src.to_str().unwrap()]);
    assert!(first["summary"]["bytes_added"].as_u64().unwrap() > 3_000_000);
    let packs = env.files_in("data");
    let bytes = env.pack_bytes();
    let second = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(second["summary"]["bytes_added"], 0);
    assert_eq!(
        second["summary"]["bytes_read"], 0,
        "unchanged files must not be re-read"
    );
    assert_eq!(second["summary"]["files_changed"], 0);
    assert_eq!(second["parent"], first["snapshot_id"]);
    assert_eq!(env.files_in("data"), packs);
    assert_eq!(env.pack_bytes(), bytes);
    // Even with the parent ignored, every file is read again but nothing new is stored.
    let forced = env.json(&["backup", "--force", src.to_str().unwrap()]);
    assert_eq!(forced["summary"]["bytes_added"], 0);
    assert!(forced["summary"]["bytes_read"].as_u64().unwrap() > 3_000_000);
    assert_eq!(env.pack_bytes(), bytes);
}

#[test]
fn changed_file_reuploads_only_nearby_chunks() {
    let env = Env::init(&[
        "--chunk-min",
        "65536",
        "--chunk-avg",
        "262144",
        "--chunk-max",
        "1048576",
    ]);
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let mut data = random_bytes(24 << 20, 7);
    fs::write(src.join("volume.img"), &data).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    // Insert bytes in the middle: content-defined chunking resynchronises right after.
    data.splice(12 << 20..12 << 20, b"a few inserted bytes".iter().copied());
    fs::write(src.join("volume.img"), &data).unwrap();
    let out = env.json(&["backup", src.to_str().unwrap()]);
    let added = out["summary"]["bytes_added"].as_u64().unwrap();
    assert_eq!(out["summary"]["files_changed"], 1);
    assert!(
        added > 0 && added <= 3 << 20,
        "added {added} bytes for a 20-byte insertion"
    );
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("src/volume.img")).unwrap(), data);
}

/// The plaintext lengths of a file's chunks in the latest snapshot, found by path components
/// below the snapshot's root, and the repository (opened through the library).
fn chunk_lengths_in_latest(env: &Env, path: &[&str]) -> (Vec<usize>, std::sync::Arc<Repository>) {
    let repo = std::sync::Arc::new(
        Repository::open(
            std::sync::Arc::new(LocalBackend::new(&env.repo)),
            PASSWORD.as_bytes(),
        )
        .unwrap(),
    );
    let session = Locked::without_lock(&repo)
        .load_index(&IndexSource::Memory, &())
        .unwrap();
    let indexed = session.indexed();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let mut tree = indexed.read_tree(&snap.tree).unwrap();
    for (i, name) in path.iter().enumerate() {
        let node = tree
            .nodes
            .iter()
            .find(|n| n.name.0 == name.as_bytes())
            .unwrap_or_else(|| panic!("{name} in the snapshot"))
            .clone();
        if i + 1 == path.len() {
            let lengths = node
                .content
                .iter()
                .map(|id| indexed.read_blob(BlobType::Data, id).unwrap().len())
                .collect();
            return (lengths, repo);
        }
        tree = indexed.read_tree(&node.subtree.unwrap()).unwrap();
    }
    unreachable!("an empty path");
}

fn backup_stdin(env: &Env, name: &str, data: &[u8]) {
    let mut child = env
        .cmd(&["backup", "--stdin", "--stdin-filename", name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    succeeded(&["backup", "--stdin"], child.wait_with_output().unwrap());
}

#[test]
fn large_files_and_stdin_are_cut_with_the_large_file_chunk_sizes() {
    // General chunks 256 KiB / 1 MiB / 4 MiB; from 2 MB on, 32 / 128 / 512 KiB (the default
    // large-file sizes).
    let env = Env::init(&["--large-file-size", "2000000"]);
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let small = random_bytes(1_999_999, 21);
    let mut big = random_bytes(6_000_000, 22);
    fs::write(src.join("small"), &small).unwrap();
    fs::write(src.join("big"), &big).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);

    let (small_cuts, repo) = chunk_lengths_in_latest(&env, &["src", "small"]);
    let (big_cuts, _) = chunk_lengths_in_latest(&env, &["src", "big"]);
    let general = repo.chunker();
    let large = repo.chunker_for_file(2_000_000);
    assert_eq!(large.params().max_size, 524_288);
    assert_eq!(small_cuts, general.chunk_lengths(&small));
    assert_eq!(big_cuts, large.chunk_lengths(&big));
    assert!(big_cuts.len() >= 12, "{big_cuts:?}");
    assert!(big_cuts.iter().all(|&l| l <= 524_288), "{big_cuts:?}");

    // An 8 KiB page overwritten in place costs at most the two chunks around it.
    big[3_000_000..3_008_192].copy_from_slice(&random_bytes(8192, 23));
    fs::write(src.join("big"), &big).unwrap();
    let out = env.json(&["backup", src.to_str().unwrap()]);
    let added = out["summary"]["bytes_added"].as_u64().unwrap();
    assert!(
        added > 0 && added <= 2 * 524_288,
        "added {added} bytes for one changed page"
    );
    let target = env.path("out");
    env.restore_verified(&target);
    assert_eq!(fs::read(target.join("src/big")).unwrap(), big);

    // Standard input: the large-file sizes, whatever its length.
    let dump = random_bytes(1_000_000, 24);
    backup_stdin(&env, "dump.sql", &dump);
    let (dump_cuts, _) = chunk_lengths_in_latest(&env, &["dump.sql"]);
    assert_eq!(dump_cuts, large.chunk_lengths(&dump));
    assert!(dump_cuts.len() >= 2, "{dump_cuts:?}");
}

#[test]
fn uniform_chunks_cut_every_file_alike() {
    let env = Env::init(&["--uniform-chunks"]);
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let big = random_bytes(20 << 20, 25);
    fs::write(src.join("big"), &big).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let (cuts, repo) = chunk_lengths_in_latest(&env, &["src", "big"]);
    assert_eq!(cuts, repo.chunker().chunk_lengths(&big));
    assert_eq!(
        repo.chunker_for_file(u64::MAX).params(),
        repo.chunker().params()
    );
    assert!(repo.config().large_files.is_none());
    // The large-file options make no sense with --uniform-chunks.
    let other = Env::new();
    let err = other.fails(&["init", "--uniform-chunks", "--large-file-size", "1"], 2);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn stdin_backup_round_trips() {
    let env = Env::init(&[]);
    let data = random_bytes(2_500_000, 9);
    let mut child = env
        .cmd(&[
            "backup",
            "--stdin",
            "--stdin-filename",
            "dump.sql",
            "--json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("dump.sql")).unwrap(), data);
}

#[test]
fn excludes_tags_host_and_listing() {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::write(src.join("keep.txt"), b"k").unwrap();
    fs::write(src.join("skip.tmp"), b"s").unwrap();
    fs::write(src.join("cache/big"), b"c").unwrap();
    let exclude_file = env.path("excludes");
    fs::write(&exclude_file, "# comment\n\n*.tmp\n").unwrap();
    let cache = format!("{}/cache", src.display());
    let out = env.json(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude",
        &cache,
        "--exclude-file",
        exclude_file.to_str().unwrap(),
        "--tag",
        "daily",
        "--tag",
        "db",
        "--host",
        "node-1",
    ]);
    let id = out["snapshot_id"].as_str().unwrap().to_string();
    let ls = env.ok(&["ls", &id[..8]]);
    assert!(ls.contains("/src/keep.txt"));
    assert!(!ls.contains("skip.tmp") && !ls.contains("cache"), "{ls}");
    let snaps = env.json(&["snapshots", "--tag", "daily", "--host", "node-1"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["tags"], serde_json::json!(["daily", "db"]));
    assert_eq!(
        env.json(&["snapshots", "--host", "other"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let listing = env.json(&["ls", "latest", "src"]);
    assert_eq!(listing.as_array().unwrap().len(), 1);
    let cfg = env.json(&["cat", "config"]);
    assert_eq!(cfg["format_version"], 1);
    let snap = env.json(&["cat", "snapshot", &id]);
    assert_eq!(snap["hostname"], "node-1");
    let tree = env.json(&["cat", "tree", &id]);
    assert_eq!(tree["nodes"][0]["name"], "src");
}

#[test]
fn diff_reports_changes() {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("same"), b"same").unwrap();
    fs::write(src.join("changed"), b"v1").unwrap();
    fs::write(src.join("removed"), b"r").unwrap();
    let a = env.json(&["backup", src.to_str().unwrap()])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(src.join("changed"), b"v2 longer").unwrap();
    fs::remove_file(src.join("removed")).unwrap();
    fs::write(src.join("added"), b"a").unwrap();
    let b = env.json(&["backup", src.to_str().unwrap()])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = env.json(&["diff", &a, &b]);
    assert_eq!(d["added"], serde_json::json!(["/src/added"]));
    assert_eq!(d["removed"], serde_json::json!(["/src/removed"]));
    assert_eq!(d["modified"], serde_json::json!(["/src/changed"]));
}

#[test]
fn stats_show_dedup() {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let data = random_bytes(1 << 20, 3);
    fs::write(src.join("a"), &data).unwrap();
    fs::write(src.join("b"), &data).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let s = env.json(&["stats"]);
    assert_eq!(s["restore_size"], 2 << 20);
    assert!(s["raw_data_size"].as_u64().unwrap() < (1 << 20) + 4096);
}

#[test]
fn second_key_opens_the_repository() {
    let env = Env::init(&[]);
    let out = env
        .cmd(&["key", "add", "--kdf-memory", "64", "--kdf-iterations", "1"])
        .env("STOWAGE_NEW_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .cmd(&["snapshots"])
        .env("STOWAGE_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(env.json(&["key", "list"]).as_array().unwrap().len(), 2);
}

#[test]
fn password_file_and_command_work() {
    let env = Env::init(&[]);
    let pw = env.path("pw");
    fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let out = env
        .cmd(&["snapshots", "--password-file", pw.to_str().unwrap()])
        .env_remove("STOWAGE_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cmd = format!("cat {}", pw.display());
    let out = env
        .cmd(&["snapshots", "--password-command", &cmd])
        .env_remove("STOWAGE_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn file_whose_bytes_equal_a_tree_does_not_collide_with_it() {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir_all(src.join("empty")).unwrap();
    // Exactly the serialization of an empty directory's tree.
    fs::write(src.join("looks-like-a-tree"), br#"{"nodes":[]}"#).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("out");
    env.restore_verified(&target);
    assert_same_tree(&src, &target.join("src"));
    env.ok(&["check", "--read-data"]);
}

/// Drops a file's pages from the page cache (after writing them out), as if it had not been
/// read for a long time.
fn evict_from_page_cache(path: &Path) {
    let f = fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    stowage_core::sys::drop_cached(&f).unwrap();
}

/// Pages of a file in the page cache (`cachestat(2)`, Linux 6.5+), `None` when unavailable.
fn cached_pages(path: &Path) -> Option<u64> {
    stowage_core::sys::cached_pages(&fs::File::open(path).unwrap())
}

#[test]
fn uncached_files_are_read_directly_and_round_trip() {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // Sizes around the block size and the direct-read threshold, a multi-chunk file with an
    // odd tail, and a sparse file whose data regions end off block boundaries.
    let mut files = Vec::new();
    for (i, len) in [16_383usize, 16_384, 20_000, 65_536, 1_000_001]
        .into_iter()
        .enumerate()
    {
        let p = src.join(format!("f{i}"));
        fs::write(&p, random_bytes(len, 10 + i as u64)).unwrap();
        files.push(p);
    }
    let mut big = random_bytes(5 << 20, 3);
    big.extend(std::iter::repeat_n(b'a', (4 << 20) + 123));
    fs::write(src.join("big"), &big).unwrap();
    files.push(src.join("big"));
    let mut f = fs::File::create(src.join("sparse")).unwrap();
    f.write_all(&random_bytes(70_000, 4)).unwrap();
    f.seek(SeekFrom::Start(4 << 20)).unwrap();
    f.write_all(&random_bytes(100_001, 5)).unwrap();
    drop(f);
    files.push(src.join("sparse"));
    for p in &files {
        evict_from_page_cache(p);
    }

    let first = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(first["incomplete"], false);
    // Direct reads leave no pages behind (buffered ones would cache the whole file).
    if let Some(cached) = cached_pages(&src.join("big")) {
        assert!(
            cached < 64,
            "{cached} pages of a 9 MiB file cached after backup"
        );
    }
    let target = env.path("restored");
    env.restore_verified(&target);
    assert_same_tree(&src, &target.join("src"));

    // Reading through the page cache finds exactly the same chunks.
    for p in &files {
        evict_from_page_cache(p);
    }
    let again = env.json(&["backup", "--force", "--no-direct-io", src.to_str().unwrap()]);
    assert_eq!(again["summary"]["bytes_added"], 0);
    assert!(again["summary"]["bytes_read"].as_u64().unwrap() > 10_000_000);
}
