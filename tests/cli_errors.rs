//! Every error a user can cause gives a clear one-line message, a non-zero exit, no panic, and
//! loses nothing.

mod common;

use common::*;
use std::fs;
use std::sync::Arc;
use stowage_core::backend::local::LocalBackend;
use stowage_core::backend::FileKind;
use stowage_core::repo::session::{BackupWork, IndexSource};
use stowage_core::repo::tree::{ByteString, Node, NodeKind, Tree};
use stowage_core::repo::writer::BlobWriter;
use stowage_core::repo::Repository;

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("stowage: error"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    lines[0]
}

#[test]
fn wrong_password_is_refused() {
    let env = Env::init(&[]);
    let out = env
        .cmd(&["snapshots"])
        .env("STOWAGE_PASSWORD", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&String::from_utf8_lossy(&out.stderr)).contains("wrong password"));
}

#[test]
fn missing_repository_is_reported() {
    let env = Env::new();
    let err = env.fails(&["snapshots"], 1);
    assert!(one_line(&err).contains("no repository at"), "{err}");
    // The engine's message carries no advice; the command line adds it by the error's kind.
    assert!(
        one_line(&err).contains("; run `stowage init` first"),
        "{err}"
    );
    let err = env
        .cmd(&["snapshots"])
        .env_remove("STOWAGE_REPOSITORY")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains("no repository given"));
}

#[test]
fn init_twice_is_refused_and_keeps_the_first() {
    let env = Env::init(&[]);
    let config = fs::read(env.repo.join("config")).unwrap();
    let err = env.fails(&["init", "--kdf-memory", "64", "--kdf-iterations", "1"], 1);
    assert!(one_line(&err).contains("already exists"), "{err}");
    assert_eq!(fs::read(env.repo.join("config")).unwrap(), config);
    assert_eq!(env.files_in("keys").len(), 1);
    env.ok(&["snapshots"]);
}

#[test]
fn missing_password_is_reported() {
    let env = Env::init(&[]);
    let out = env
        .cmd(&["snapshots"])
        .env_remove("STOWAGE_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no password given"));
}

#[test]
fn unreadable_source_path_fails_before_writing() {
    let env = Env::init(&[]);
    let missing = env.path("does-not-exist");
    let err = env.fails(&["backup", missing.to_str().unwrap()], 1);
    assert!(one_line(&err).contains("does-not-exist"), "{err}");
    assert!(env.files_in("snapshots").is_empty());
    assert!(env.files_in("data").is_empty());
}

#[test]
fn bad_flags_are_usage_errors() {
    let env = Env::init(&[]);
    env.fails(&["backup", "--no-such-flag"], 2);
    env.fails(&["restore", "latest"], 2);
    let err = env.fails(&["init", "--chunk-min", "10"], 1);
    assert!(err.contains("chunker sizes"), "{err}");
}

#[test]
fn non_empty_target_needs_overwrite() {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"new").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("target");
    fs::create_dir_all(target.join("src")).unwrap();
    fs::write(target.join("precious"), b"keep me").unwrap();
    let err = env.fails(
        &["restore", "latest", "--target", target.to_str().unwrap()],
        1,
    );
    assert!(one_line(&err).contains("not empty"), "{err}");
    assert_eq!(fs::read(target.join("precious")).unwrap(), b"keep me");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--overwrite",
    ]);
    assert_eq!(fs::read(target.join("src/f")).unwrap(), b"new");
    assert_eq!(fs::read(target.join("precious")).unwrap(), b"keep me");
}

#[test]
fn overwrite_never_follows_a_symlink_out_of_the_target() {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/file"), b"payload").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let target = env.path("target");
    fs::create_dir_all(target.join("src")).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("src/dir")).unwrap();
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "wrote through a symlink"
    );
    assert_eq!(fs::read(target.join("src/dir/file")).unwrap(), b"payload");
}

#[test]
fn unknown_snapshot_is_reported() {
    let env = Env::init(&[]);
    let err = env.fails(&["ls", "deadbeef"], 1);
    assert!(one_line(&err).contains("no snapshot matches"), "{err}");
    let err = env.fails(&["restore", "latest", "--target", "/tmp/x-never"], 1);
    assert!(
        one_line(&err).contains("no snapshot matches \"latest\""),
        "{err}"
    );
}

#[test]
fn advice_comes_from_the_command_line_not_from_the_engine() {
    let env = Env::new();
    // The engine's error names the problem and its kind, and no command to run...
    let e = Repository::open(Arc::new(LocalBackend::new(&env.repo)), b"pw")
        .err()
        .unwrap();
    assert_eq!(
        stowage_core::error::classify(&e),
        Some((
            stowage_core::error::ErrorClass::Config,
            "repo.not_a_repository"
        ))
    );
    assert!(!e.to_string().contains("stowage init"), "{e}");
    // ...and the command line renders the advice for that kind on the same line.
    let err = env.fails(&["snapshots"], 1);
    let line = one_line(&err);
    assert!(
        line.contains(&format!("{e}; run `stowage init` first")),
        "{err}"
    );
}

#[test]
fn unknown_format_version_is_refused() {
    let env = Env::init(&[]);
    let p = env.repo.join("config");
    let text = fs::read_to_string(&p)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 2");
    fs::write(&p, text).unwrap();
    let err = env.fails(&["snapshots"], 1);
    assert!(
        one_line(&err).contains("format version 2 is not supported"),
        "{err}"
    );
    assert!(one_line(&err).contains("upgrade stowage"), "{err}");
}

fn backed_up_env() -> Env {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("data.bin"), random_bytes(2_000_000, 5)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    env
}

#[test]
fn corrupted_pack_is_detected_by_check_and_restore() {
    let env = backed_up_env();
    env.ok(&["check", "--read-data"]);
    let packs = env.files_in("data");
    // Flip one byte in the middle of the data pack (the biggest one).
    let pack = packs
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(pack).unwrap();
    bytes[1000] ^= 0x55;
    fs::write(pack, &bytes).unwrap();
    let name = pack.file_name().unwrap().to_str().unwrap();
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(name) && text.contains("authentication failed"),
        "{text}"
    );
    let target = env.path("t");
    let err = env.fails(
        &["restore", "latest", "--target", target.to_str().unwrap()],
        1,
    );
    assert!(one_line(&err).contains("authentication failed"), "{err}");
}

#[test]
fn truncated_pack_is_reported_by_name() {
    let env = backed_up_env();
    let packs = env.files_in("data");
    let pack = packs
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let bytes = fs::read(pack).unwrap();
    fs::write(pack, &bytes[..bytes.len() / 2]).unwrap();
    let name = pack.file_name().unwrap().to_str().unwrap();
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(name), "{text}");
}

#[test]
fn corrupted_index_is_reported_by_name() {
    let env = backed_up_env();
    let index = env.files_in("index").pop().unwrap();
    let bytes = fs::read(&index).unwrap();
    fs::write(&index, &bytes[..bytes.len() - 3]).unwrap();
    let name = index.file_name().unwrap().to_str().unwrap().to_string();
    let err = env.fails(&["ls", "latest"], 1);
    assert!(one_line(&err).contains(&name[..16]), "{err}");
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&name[..16]));
}

/// Writes a snapshot whose tree contains a node with a hostile name, bypassing the archiver.
fn plant_hostile_snapshot(env: &Env, name: &[u8]) {
    let backend = Arc::new(LocalBackend::new(&env.repo));
    let repo = Arc::new(Repository::open(backend, PASSWORD.as_bytes()).unwrap());
    let session = repo
        .lock::<BackupWork>()
        .unwrap()
        .load_index(&IndexSource::Memory, &())
        .unwrap();
    let writer = BlobWriter::new(session.indexed().clone(), 1);
    let (content, _) = writer
        .add(stowage_core::id::BlobType::Data, b"pwned")
        .unwrap();
    let mut node = Node::new(ByteString(name.to_vec()), NodeKind::File);
    node.size = 5;
    node.mode = 0o644;
    node.content = vec![content];
    let (tree, _) = writer
        .add(
            stowage_core::id::BlobType::Tree,
            &Tree { nodes: vec![node] }.encode(),
        )
        .unwrap();
    writer.finish().unwrap();
    let snap = stowage_core::repo::snapshot::Snapshot {
        time: chrono::Utc::now(),
        hostname: "evil".into(),
        username: "evil".into(),
        paths: vec!["/".into()],
        tags: vec![],
        tree,
        parent: None,
        excludes: vec![],
        incomplete: false,
        program: "test".into(),
        summary: Default::default(),
    };
    repo.save_snapshot(&snap).unwrap();
}

#[test]
fn hostile_names_never_escape_the_target() {
    for name in [&b".."[..], b"../escaped", b"a/../../escaped", b"x\0y", b"."] {
        let env = Env::init(&[]);
        plant_hostile_snapshot(&env, name);
        let target = env.path("deep/target");
        let err = env.fails(
            &["restore", "latest", "--target", target.to_str().unwrap()],
            1,
        );
        assert!(
            err.contains("tree") && (err.contains("not allowed") || err.contains("'/'")),
            "{err}"
        );
        assert!(!env.path("escaped").exists() && !env.path("deep/escaped").exists());
        for f in walk_files(env.dir.path()) {
            assert!(
                !fs::read(&f).unwrap_or_default().starts_with(b"pwned"),
                "wrote {}",
                f.display()
            );
        }
        let _ = FileKind::Config;
    }
}

#[test]
fn unreadable_file_gives_incomplete_snapshot_and_exit_3() {
    let env = Env::init(&[]);
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("ok.txt"), b"fine").unwrap();
    fs::write(src.join("secret.txt"), b"no access").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = env.cmd(&["backup", src.to_str().unwrap(), "--json"]);
    if nix::unistd::geteuid().is_root() {
        // Root reads everything: drop to nobody, with a repository nobody may write.
        common::sh("chmod", &["-R", "a+rwX", env.dir.path().to_str().unwrap()]);
        fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_stowage"),
            "backup",
            src.to_str().unwrap(),
            "--json",
        ])
        .env("STOWAGE_REPOSITORY", &env.repo)
        .env("STOWAGE_PASSWORD", PASSWORD)
        .env("HOME", env.dir.path());
        cmd = c;
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("secret.txt"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["incomplete"], true);
    let ls = env.ok(&["ls", "latest"]);
    assert!(ls.contains("ok.txt") && !ls.contains("secret.txt"));
    env.ok(&["check", "--read-data"]);
}

#[test]
fn key_left_by_an_interrupted_init_does_not_lock_users_out() {
    use stowage_core::crypto::kdf::KdfParams;
    use stowage_core::crypto::MasterKeys;
    use stowage_core::repo::keyfile::KeyFile;
    let env = Env::init(&[]);
    let existing = env.files_in("keys")[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    // A key with the same password around other master keys, sorting before the real one.
    loop {
        let stale = KeyFile::create(
            &MasterKeys::generate(),
            PASSWORD.as_bytes(),
            KdfParams::new(64, 1),
        )
        .unwrap()
        .encode();
        let name = stowage_core::id::Id::hash_of(&stale).to_hex();
        if name < existing {
            fs::write(env.repo.join("keys").join(name), stale).unwrap();
            break;
        }
    }
    env.ok(&["snapshots"]);
}

#[test]
fn stray_file_in_index_folder_is_ignored() {
    let env = backed_up_env();
    fs::write(env.repo.join("index/README"), b"not an index").unwrap();
    env.ok(&["ls", "latest"]);
}

#[test]
fn key_passwd_and_remove_never_lose_the_last_key() {
    let env = Env::init(&[]);
    let err = env
        .cmd(&[
            "key",
            "remove",
            &env.files_in("keys")[0]
                .file_name()
                .unwrap()
                .to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert_eq!(err.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&err.stderr).contains("refusing to remove the key in use"));
    // Change the password: the old one stops working, the new one opens.
    let out = env
        .cmd(&[
            "key",
            "passwd",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1",
        ])
        .env("STOWAGE_NEW_PASSWORD", "new secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.files_in("keys").len(), 1);
    assert!(String::from_utf8_lossy(&env.run(&["snapshots"]).stderr).contains("wrong password"));
    let ok = env
        .cmd(&["snapshots"])
        .env("STOWAGE_PASSWORD", "new secret")
        .output()
        .unwrap();
    assert!(ok.status.success());
}
