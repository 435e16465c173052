//! The controller killed (SIGKILL) at random points of backups, and cancelled mid-run: every
//! backup still ends (Completed, or Canceled when asked), none stays InProgress, a cancelled one
//! leaves no snapshot, and the repository passes `check --read-data`.
//!
//! Trials: 20 in CI, 5 elsewhere, or `STOWAGE_KILL_TRIALS`.

mod k8s;

use k8s::*;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::time::Duration;
use stowage_kube::api::BackupPhase;
use stowage_kube::layout;
use stowage_testkit::cluster::shared::eventually;

macro_rules! setup {
    () => {
        match Setup::new().await {
            Some(s) => s,
            None => return,
        }
    };
}

async fn bulk_namespace(s: &Setup, count: usize) -> String {
    let ns = s.cluster.namespace("bulk").await.unwrap();
    let objects: Vec<_> = (0..count)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("cm-{i:04}"), "namespace": ns},
                        "data": {"n": format!("{i}"), "pad": "x".repeat(500)}})
        })
        .collect();
    create_all(&s.client(), &objects).await;
    ns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_survive_the_controller_killed_at_random_points() {
    let mut s = setup!();
    let trials: u32 = std::env::var("STOWAGE_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if stowage_testkit::cluster::shared::ci() {
            20
        } else {
            5
        });
    let ns = bulk_namespace(&s, 200).await;
    // Small pages make each backup take a while, so kills land in the middle of it.
    let flags = ["--page-size", "4", "--client-qps", "50"];
    let mut controller = s.start_controller(&flags);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill trials: {trials}, seed {seed}");
    let mut killed_in_progress = 0;
    for trial in 0..trials {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % 3000);
        let name = format!("trial-{trial}");
        s.create_backup(&name, json!({"includedNamespaces": [ns]}))
            .await;
        tokio::time::sleep(delay).await;
        let before = s.backups().get(&name).await.unwrap();
        if before.phase() == BackupPhase::InProgress {
            killed_in_progress += 1;
        }
        controller.kill();
        controller = s.start_controller(&flags);
        let b = s.wait_backup(&name).await;
        assert_completed(&b);
        let status = b.status.clone().unwrap();
        eprintln!(
            "trial {trial}: killed after {delay:?} in phase {}, ended {} after {} run(s), {} items",
            before.phase(),
            b.phase(),
            status.attempt,
            status.progress.as_ref().map_or(0, |p| p.items_backed_up)
        );
        let files = s.files(&b);
        let objects = object_keys(&files);
        assert!(
            objects
                .iter()
                .filter(|k| k.starts_with("configmaps "))
                .count()
                >= 200,
            "trial {trial}: {} objects",
            objects.len()
        );
    }
    eprintln!("{killed_in_progress} of {trials} kills hit a backup InProgress");
    assert!(
        killed_in_progress > 0,
        "no kill landed during a backup; the trials proved nothing"
    );
    drop(controller);
    check_repository(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backup_is_cancelled_cleanly() {
    let mut s = setup!();
    let ns = bulk_namespace(&s, 200).await;
    let _controller = s.start_controller(&["--page-size", "1", "--client-qps", "20"]);
    s.create_backup("long", json!({"includedNamespaces": [ns]}))
        .await;
    let api = s.backups();
    eventually("the backup running, some items done", WAIT, || {
        let api = api.clone();
        async move {
            let b = api.get("long").await.map_err(|e| e.to_string())?;
            let done = b
                .status
                .as_ref()
                .and_then(|s| s.progress.as_ref())
                .map_or(0, |p| p.items_backed_up);
            match (b.phase(), done) {
                (BackupPhase::InProgress, d) if d > 0 => Ok(()),
                (p, d) => Err(format!("{p}, {d} items")),
            }
        }
    })
    .await;
    api.patch(
        "long",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"cancel": true}})),
    )
    .await
    .unwrap();
    let b = s.wait_backup("long").await;
    assert_eq!(b.phase(), BackupPhase::Canceled, "{:?}", b.status);
    let uid = b.metadata.uid.clone().unwrap();
    assert!(
        layout::find_snapshot(&s.repo(), &uid).unwrap().is_none(),
        "a cancelled backup left a snapshot"
    );
    check_repository(&s);
}

/// A controller that died after writing a backup's snapshot but before recording it: the next
/// one finds the snapshot by the Backup's UID and adopts it, writing no second snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_written_before_a_crash_is_adopted() {
    let mut s = setup!();
    let ns = bulk_namespace(&s, 20).await;
    let controller = s.start_controller(&[]);
    let done = s.backup("adopt", json!({"includedNamespaces": [ns]})).await;
    assert_completed(&done);
    controller.kill();
    let snapshot = done.status.as_ref().unwrap().snapshot_id.clone().unwrap();
    // What the dead controller would have left: InProgress, no snapshot recorded.
    let api = s.backups();
    api.patch_status(
        "adopt",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "InProgress", "snapshotId": null, "completionTimestamp": null}})),
    )
    .await
    .unwrap();
    let before = s.repo().list_snapshots().unwrap().len();
    let _controller = s.start_controller(&[]);
    let b = s.wait_backup("adopt").await;
    assert_completed(&b);
    assert_eq!(b.status.unwrap().snapshot_id, Some(snapshot));
    assert_eq!(
        s.repo().list_snapshots().unwrap().len(),
        before,
        "no second snapshot"
    );
}

/// Backups queue: with two allowed at once, two over the same namespace never run together
/// (the second waits, Queued, with a position), while one over another namespace runs beside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_backups_queue_and_others_run_beside_them() {
    let mut s = setup!();
    let ns1 = bulk_namespace(&s, 60).await;
    let ns2 = bulk_namespace(&s, 60).await;
    let _controller = s.start_controller(&[
        "--page-size",
        "1",
        "--client-qps",
        "30",
        "--concurrent-backups",
        "2",
    ]);
    s.create_backup("one", json!({"includedNamespaces": [ns1]}))
        .await;
    s.create_backup("two", json!({"includedNamespaces": [ns1]}))
        .await;
    s.create_backup("other", json!({"includedNamespaces": [ns2]}))
        .await;
    let api = s.backups();
    let (mut saw_queued, mut saw_beside) = (false, false);
    let start = std::time::Instant::now();
    loop {
        let phase = |name: &'static str| {
            let api = api.clone();
            async move { api.get(name).await.unwrap() }
        };
        let (one, two, other) = (phase("one").await, phase("two").await, phase("other").await);
        let running = |b: &stowage_kube::api::Backup| b.phase() == BackupPhase::InProgress;
        assert!(
            !(running(&one) && running(&two)),
            "two backups of {ns1} ran at once"
        );
        // Whichever of the two starts first, the other waits with a position.
        let waits = |b: &stowage_kube::api::Backup| {
            b.phase() == BackupPhase::Queued
                && b.status.as_ref().and_then(|s| s.queue_position).is_some()
        };
        saw_queued |= (running(&one) && waits(&two)) || (running(&two) && waits(&one));
        saw_beside |= (running(&one) || running(&two)) && running(&other);
        if [&one, &two, &other].iter().all(|b| b.phase().is_terminal()) {
            for b in [&one, &two, &other] {
                assert_completed(b);
            }
            break;
        }
        assert!(start.elapsed() < WAIT, "backups did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        saw_queued,
        "the second backup of {ns1} was never seen waiting in the queue"
    );
    assert!(
        saw_beside,
        "the backup of {ns2} never ran beside one of {ns1}"
    );
}
