//! Backends that fail writes, removes and lists at chosen points: the operation fails with an
//! error naming the object, and the repository stays consistent and usable.

mod common;

use common::*;
use std::fs;
use std::sync::Arc;
use stowage_core::backend::faulty::{FaultOn, FaultyBackend};
use stowage_core::backend::local::LocalBackend;
use stowage_core::backup::{self, BackupOptions, BackupSource};
use stowage_core::maintenance::prune::{self, PruneError, PruneOptions};
use stowage_core::repo::session::{BackupWork, IndexSource, PruneWork};
use stowage_core::repo::Repository;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    sh("cp", &["-a", from.to_str().unwrap(), to.to_str().unwrap()]);
}

/// The repository opened through a fault-injecting backend that is not armed yet.
fn faulty_backend(
    path: &std::path::Path,
    on: FaultOn,
    at: usize,
    sticky: bool,
) -> (Arc<Repository>, Arc<FaultyBackend<LocalBackend>>) {
    let b = Arc::new(FaultyBackend::new(LocalBackend::new(path), on, at, sticky));
    let dynb: Arc<dyn stowage_core::backend::Backend> = b.clone();
    let repo = Arc::new(Repository::open(dynb, PASSWORD.as_bytes()).unwrap());
    (repo, b)
}

/// The repository opened through a fault-injecting backend, armed: every counted operation
/// from now on (taking a lock included) may fail.
fn faulty_repo(
    path: &std::path::Path,
    on: FaultOn,
    at: usize,
    sticky: bool,
) -> (Arc<Repository>, Arc<FaultyBackend<LocalBackend>>) {
    let (repo, b) = faulty_backend(path, on, at, sticky);
    b.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    (repo, b)
}

/// A prune as `stowage prune` runs it: the prune lock, then the prune.
fn locked_prune(repo: &Arc<Repository>, opts: &PruneOptions) -> Result<(), PruneError> {
    prune::run(&repo.lock::<PruneWork>()?, opts).map(drop)
}

/// What a crashed process leaves: its locks (a live test process cannot look dead).
fn forget_locks(env: &Env) {
    for f in env.files_in("locks") {
        fs::remove_file(f).unwrap();
    }
}

/// A repository with forgotten data, so prune has work: repack, condemn and delete.
fn prepared() -> (Env, std::path::PathBuf) {
    let env = Env::init_small();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    for i in 0..6 {
        fs::write(src.join(format!("f{i}")), random_bytes(400_000, i)).unwrap();
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    for i in 0..3 {
        fs::write(src.join(format!("f{i}")), random_bytes(400_000, 100 + i)).unwrap();
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    env.ok(&["forget", "--keep-last", "1"]);
    (env, src)
}

#[test]
fn prune_failing_at_every_write_and_remove_leaves_a_consistent_repository() {
    let (env, src) = prepared();
    let pristine = env.path("pristine");
    copy_dir(&env.repo, &pristine);
    // Count the operations of a clean run.
    let (repo, b) = faulty_repo(&env.repo, FaultOn::Mutations, usize::MAX, false);
    locked_prune(
        &repo,
        &PruneOptions {
            max_unused_percent: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let total = b.operations();
    assert!(total >= 5, "{total}");
    for at in 1..=total {
        fs::remove_dir_all(&env.repo).unwrap();
        copy_dir(&pristine, &env.repo);
        let (repo, _) = faulty_repo(&env.repo, FaultOn::Mutations, at, true);
        match locked_prune(
            &repo,
            &PruneOptions {
                max_unused_percent: 0.0,
                ..Default::default()
            },
        ) {
            Err(err) => assert!(err.to_string().contains("injected fault"), "{err}"),
            // The last operation is releasing the prune lock: a failure there is only a warning.
            Ok(_) => assert_eq!(at, total, "fault at operation {at} went unnoticed"),
        }
        forget_locks(&env);
        env.ok(&["check", "--read-data"]);
        // The next prune completes and the data is intact.
        env.ok(&["prune", "--max-unused", "0"]);
        env.ok(&["check", "--read-data"]);
        let t = env.path("restored");
        let _ = fs::remove_dir_all(&t);
        env.restore_verified(&t);
        assert_same_tree(&src, &t.join("src"));
    }
}

#[test]
fn prune_failing_to_list_deletes_nothing() {
    let (env, _) = prepared();
    let before = env.files_in("data");
    for at in 1..=12 {
        let (repo, b) = faulty_repo(&env.repo, FaultOn::Lists, at, false);
        if let Err(e) = locked_prune(&repo, &PruneOptions::default()) {
            // Every list comes before the first deletion: a failed one deletes nothing.
            assert!(e.to_string().contains("injected fault"), "{e}");
            let after = env.files_in("data");
            assert!(
                before.iter().all(|p| after.contains(p)),
                "list fault {at} deleted data"
            );
        } else {
            assert!(b.operations() < at, "list fault {at} went unnoticed");
        }
        forget_locks(&env);
        env.ok(&["check"]);
    }
}

#[test]
fn backup_failing_at_a_write_fails_cleanly_and_the_next_backup_works() {
    let (env, src) = prepared();
    for at in [1usize, 2, 3] {
        // Fresh data every time: two data packs, a tree pack, an index and a snapshot to write.
        for i in 0..6 {
            fs::write(
                src.join(format!("new{i}")),
                random_bytes(300_000, (500 + 10 * at + i) as u64),
            )
            .unwrap();
        }
        // The session (lock and index) is taken before the faults are armed: the n-th write
        // of the backup itself fails.
        let (repo, b) = faulty_backend(&env.repo, FaultOn::Writes, at, true);
        let session = repo
            .lock::<BackupWork>()
            .unwrap()
            .load_index(&IndexSource::Memory, &())
            .unwrap();
        b.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let source = BackupSource::Paths(vec![src.clone()]);
        let r = backup::run(
            &session,
            source,
            &BackupOptions::default(),
            &Default::default(),
        );
        let err = r.expect_err("a write failed");
        assert!(
            err.to_string().contains("injected fault"),
            "write {at}: {err}"
        );
        env.ok(&["check"]);
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    env.ok(&["check", "--read-data"]);
    let t = env.path("out");
    env.restore_verified(&t);
    assert_same_tree(&src, &t.join("src"));
}
