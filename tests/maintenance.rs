//! forget, prune, repair and unlock through the real binary, and the prune protocol's
//! guarantees with operations interleaved by hand through the library.

mod common;

use common::*;
use std::fs;
use std::sync::Arc;
use stowage_core::backend::local::LocalBackend;
use stowage_core::maintenance::prune::{self, PruneOptions};
use stowage_core::repo::lock::{Lock, LockKind};
use stowage_core::repo::session::{IndexSource, Locked, PruneWork};
use stowage_core::repo::Repository;

fn open(env: &Env) -> Arc<Repository> {
    Arc::new(Repository::open(Arc::new(LocalBackend::new(&env.repo)), PASSWORD.as_bytes()).unwrap())
}

/// A repository with two snapshots: the first has a, b; the second b, c.
fn two_snapshots() -> (Env, String, String) {
    let env = Env::init(&["--pack-size", "1"]);
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), random_bytes(3_000_000, 1)).unwrap();
    fs::write(src.join("b"), random_bytes(2_000_000, 2)).unwrap();
    let first = env.json(&["backup", src.to_str().unwrap()])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    fs::remove_file(src.join("a")).unwrap();
    fs::write(src.join("c"), random_bytes(1_000_000, 3)).unwrap();
    let second = env.json(&["backup", src.to_str().unwrap()])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    (env, first, second)
}

fn restore_matches(env: &Env, snapshot: &str) {
    let target = env.path(&format!("restore-{}", &snapshot[..8]));
    let _ = fs::remove_dir_all(&target);
    env.ok(&[
        "restore",
        snapshot,
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
}

#[test]
fn forget_dry_run_explains_and_changes_nothing() {
    let (env, first, second) = two_snapshots();
    let plan = env.json(&["forget", "--keep-last", "1", "--dry-run"]);
    let decisions = plan["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2);
    let keep: Vec<_> = decisions.iter().filter(|d| d["keep"] == true).collect();
    assert_eq!(keep.len(), 1);
    assert_eq!(keep[0]["id"], second);
    assert_eq!(keep[0]["reasons"], serde_json::json!(["last 1"]));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 2);
    env.ok(&["forget", "--keep-last", "1"]);
    let left = env.json(&["snapshots"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], second);
    let _ = first;
}

#[test]
fn forget_without_policy_is_refused() {
    let (env, _, _) = two_snapshots();
    let err = env.fails(&["forget"], 1);
    assert!(err.contains("no retention policy"), "{err}");
}

#[test]
fn forget_by_id_and_keep_tag() {
    let (env, first, _) = two_snapshots();
    env.ok(&["forget", &first[..8]]);
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
}

#[test]
fn prune_frees_unused_data_and_keeps_the_rest_restorable() {
    let (env, _, second) = two_snapshots();
    let before = env.pack_bytes();
    env.ok(&["forget", "--keep-last", "1"]);
    let plan = env.json(&["prune", "--plan"]);
    assert!(plan["condemned_packs"].as_u64().unwrap() > 0);
    assert_eq!(env.pack_bytes(), before, "--plan changes nothing");
    let r = env.json(&["prune", "--max-unused", "0"]);
    assert!(r["deleted_bytes"].as_u64().unwrap() >= 2_900_000, "{r}");
    let after = env.pack_bytes();
    assert!(after < before - 2_900_000, "{before} -> {after}");
    // Nothing unused is left, and a second prune has nothing to do.
    let again = env.json(&["prune", "--max-unused", "0"]);
    assert_eq!(again["unused_bytes"], 0, "{again}");
    assert_eq!(again["deleted_packs"], 0);
    env.ok(&["check", "--read-data"]);
    restore_matches(&env, &second);
}

#[test]
fn prune_with_forget_flag() {
    let (env, _, second) = two_snapshots();
    let before = env.pack_bytes();
    env.ok(&["forget", "--keep-last", "1", "--prune"]);
    assert!(env.pack_bytes() < before);
    env.ok(&["check", "--read-data"]);
    restore_matches(&env, &second);
}

#[test]
fn prune_refuses_when_a_pack_is_missing() {
    let (env, _, _) = two_snapshots();
    env.ok(&["forget", "--keep-last", "1"]);
    let packs = env.files_in("data");
    fs::remove_file(&packs[0]).unwrap();
    let left = env.files_in("data");
    let err = env.fails(&["prune"], 1);
    assert!(
        err.contains("refusing to prune") && err.contains("missing"),
        "{err}"
    );
    assert!(
        err.contains("run `stowage repair index` and `stowage repair snapshots`"),
        "{err}"
    );
    assert_eq!(env.files_in("data"), left, "nothing may be deleted");
}

#[test]
fn prune_refuses_when_the_index_is_damaged() {
    let (env, _, _) = two_snapshots();
    env.ok(&["forget", "--keep-last", "1"]);
    let idx = env.files_in("index").pop().unwrap();
    let mut bytes = fs::read(&idx).unwrap();
    bytes[20] ^= 1;
    fs::write(&idx, bytes).unwrap();
    let packs = env.files_in("data");
    let err = env.fails(&["prune"], 1);
    assert!(err.contains("refusing to prune"), "{err}");
    assert!(err.contains("run `stowage repair index`"), "{err}");
    assert_eq!(env.files_in("data"), packs);
}

#[test]
fn prune_waits_for_a_running_backup_then_deletes() {
    let (env, _, second) = two_snapshots();
    env.ok(&["forget", "--keep-last", "1"]);
    let before = env.files_in("data");
    let repo = open(&env);
    let running = Lock::acquire(&repo, LockKind::Backup).unwrap();
    let r = env.json(&["prune", "--max-unused", "0"]);
    assert_eq!(r["deleted_packs"], 0, "{r}");
    assert!(r["waiting_packs"].as_u64().unwrap() > 0);
    // Repacking may add packs; none may go while the backup runs.
    let after = env.files_in("data");
    assert!(
        before.iter().all(|p| after.contains(p)),
        "a pack was deleted"
    );
    env.ok(&["check"]);
    drop(running);
    let r = env.json(&["prune", "--max-unused", "0"]);
    assert!(r["deleted_packs"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["waiting_packs"], 0);
    env.ok(&["check", "--read-data"]);
    restore_matches(&env, &second);
}

#[test]
fn prune_rescues_packs_a_backup_started_before_the_mark_still_uses() {
    // A backup that loaded the index before prune condemned a pack may deduplicate against it
    // and write its snapshot later. Simulated: the first snapshot is forgotten, a "backup"
    // holds its lock across a prune, then writes a snapshot using the forgotten data.
    let (env, first, _) = two_snapshots();
    let repo = open(&env);
    let old = repo.find_snapshot(&first).unwrap().1;
    env.ok(&["forget", &first]);
    let backup_lock = Lock::acquire(&repo, LockKind::Backup).unwrap();
    let r = prune::run(
        &repo.lock::<PruneWork>().unwrap(),
        &PruneOptions {
            max_unused_percent: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.condemned_packs > 0 && r.deleted_packs == 0, "{r:?}");
    let mut revived = old.clone();
    revived.time = chrono::Utc::now();
    let revived_id = repo.save_snapshot(&revived).unwrap();
    drop(backup_lock);
    let r = prune::run(
        &repo.lock::<PruneWork>().unwrap(),
        &PruneOptions {
            max_unused_percent: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.rescued_packs > 0, "{r:?}");
    env.ok(&["check", "--read-data"]);
    restore_matches(&env, &revived_id.to_hex());
}

#[test]
fn a_second_prune_is_refused_while_one_runs() {
    let (env, _, _) = two_snapshots();
    let repo = open(&env);
    let _prune = Lock::acquire(&repo, LockKind::Prune).unwrap();
    let err = env.fails(&["prune"], 1);
    assert!(err.contains("another prune is running"), "{err}");
    assert!(err.contains("if it is dead, run `stowage unlock`"), "{err}");
}

#[test]
fn unlock_removes_locks_of_dead_processes_only() {
    let (env, _, _) = two_snapshots();
    let repo = open(&env);
    let live = Lock::acquire(&repo, LockKind::Backup).unwrap();
    // A lock whose process is gone: written by a child that was killed.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["backup", "--stdin"])
        .env("STOWAGE_REPOSITORY", &env.repo)
        .env("STOWAGE_PASSWORD", PASSWORD)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Lock files proper: a write in progress is a hidden temporary file beside them, which a
    // killed child leaves behind and `unlock` rightly ignores.
    let locks = || {
        env.files_in("locks")
            .into_iter()
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while locks() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(locks(), 2);
    let out = env.ok(&["unlock"]);
    assert!(out.contains("removed 1 stale locks"), "{out}");
    assert_eq!(locks(), 1);
    drop(live);
    assert_eq!(locks(), 0);
}

#[test]
fn repair_index_rebuilds_from_packs() {
    let (env, first, second) = two_snapshots();
    for f in env.files_in("index") {
        fs::remove_file(f).unwrap();
    }
    env.fails(&["check"], 1);
    let out = env.ok(&["repair", "index"]);
    assert!(out.contains("rebuilt the index"), "{out}");
    env.ok(&["check", "--read-data"]);
    restore_matches(&env, &first);
    restore_matches(&env, &second);
}

#[test]
fn repair_snapshots_drops_only_what_is_lost() {
    let env = Env::init(&["--pack-size", "1"]);
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("lost"), random_bytes(1_500_000, 10)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    fs::write(src.join("kept"), random_bytes(1_500_000, 11)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    // Lose the packs holding "lost": those written by the first backup that hold data.
    let repo = open(&env);
    let session = Locked::without_lock(&repo)
        .load_index(&IndexSource::Memory, &())
        .unwrap();
    let idx = session.indexed();
    let tree = idx
        .read_tree(&repo.find_snapshot("latest").unwrap().1.tree)
        .unwrap();
    let src_tree = idx.read_tree(&tree.nodes[0].subtree.unwrap()).unwrap();
    let lost = src_tree.nodes.iter().find(|n| n.name.0 == b"lost").unwrap();
    for id in &lost.content {
        let pack = idx
            .locate(stowage_core::id::BlobType::Data, id)
            .unwrap()
            .pack
            .to_hex();
        let _ = fs::remove_file(env.repo.join("data").join(&pack[..2]).join(&pack));
    }
    env.fails(&["check"], 1);
    env.ok(&["repair", "index"]);
    let out = env.ok(&["repair", "snapshots"]);
    assert!(out.contains("/src/lost (file data missing)"), "{out}");
    env.ok(&["check", "--read-data"]);
    let target = env.path("out");
    env.restore_verified(&target);
    assert_eq!(
        fs::read(target.join("src/kept")).unwrap(),
        fs::read(src.join("kept")).unwrap()
    );
    assert!(!target.join("src/lost").exists());
    let snaps = env.json(&["snapshots"]);
    assert!(
        snaps
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["tags"] == serde_json::json!(["repaired"])),
        "{snaps}"
    );
}

#[test]
fn check_subsets_cover_every_pack() {
    let (env, _, _) = two_snapshots();
    let total = env.files_in("data").len() as u64;
    let mut read = 0;
    for part in ["1/3", "2/3", "3/3"] {
        read += env.json(&["check", "--read-data-subset", part])["packs_read"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(read, total);
    let r = env.json(&["check", "--read-data-subset", "50%"]);
    assert_eq!(r["packs_read"].as_u64().unwrap(), total.div_ceil(2));
    env.fails(&["check", "--read-data-subset", "4/3"], 1);
    env.fails(&["check", "--read-data-subset", "0%"], 1);
}

#[test]
fn check_names_the_snapshots_and_files_hit_by_damage() {
    let (env, first, second) = two_snapshots();
    // Damage the data of file "a", which only the first snapshot has.
    let repo = open(&env);
    let session = Locked::without_lock(&repo)
        .load_index(&IndexSource::Memory, &())
        .unwrap();
    let idx = session.indexed();
    let tree = idx
        .read_tree(&repo.find_snapshot(&first).unwrap().1.tree)
        .unwrap();
    let src_tree = idx.read_tree(&tree.nodes[0].subtree.unwrap()).unwrap();
    let a = src_tree.nodes.iter().find(|n| n.name.0 == b"a").unwrap();
    let loc = idx
        .locate(stowage_core::id::BlobType::Data, &a.content[0])
        .unwrap();
    let pack = loc.pack.to_hex();
    let path = env.repo.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = fs::read(&path).unwrap();
    bytes[loc.offset as usize + 40] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let out = env.run(&["check", "--read-data", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["damaged_snapshots"], serde_json::json!([first]), "{v}");
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("/src/a") && errors.contains("damaged"),
        "{errors}"
    );
    let _ = second;
}
