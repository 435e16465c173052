//! Several backups and a forget+prune loop running at the same time against one repository:
//! afterwards `check --read-data` passes and every snapshot restores what was backed up.

mod common;

use common::*;
use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn backups_and_prune_loop_run_concurrently_without_loss() {
    let env = Arc::new(Env::init_small());
    let recorded = Arc::new(Mutex::new(HashMap::new()));
    let done = Arc::new(AtomicBool::new(false));
    let shared = random_bytes(400_000, 77);
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let (env, recorded) = (env.clone(), recorded.clone());
        let shared = shared.clone();
        writers.push(std::thread::spawn(move || {
            let src = env.path(&format!("src{w}"));
            fs::create_dir_all(&src).unwrap();
            fs::write(src.join("shared"), &shared).unwrap();
            for round in 0..8u64 {
                fs::write(
                    src.join(format!("round{round}")),
                    random_bytes(300_000, w * 100 + round),
                )
                .unwrap();
                if round >= 2 {
                    fs::remove_file(src.join(format!("round{}", round - 2))).unwrap();
                }
                let state = manifest(&src);
                let out = env.json(&["backup", src.to_str().unwrap()]);
                recorded
                    .lock()
                    .unwrap()
                    .insert(out["snapshot_id"].as_str().unwrap().to_string(), (w, state));
            }
        }));
    }
    let pruner = {
        let (env, done) = (env.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !done.load(Ordering::Relaxed) || rounds < 3 {
                env.ok(&["forget", "--keep-last", "2"]);
                env.ok(&["prune", "--max-unused", "0"]);
                rounds += 1;
            }
            rounds
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let rounds = pruner.join().unwrap();
    assert!(rounds >= 3);
    // With every backup finished, one more forget and prune delete all that is condemned.
    env.ok(&["forget", "--keep-last", "2"]);
    env.ok(&["prune", "--max-unused", "0"]);
    let r = env.json(&["prune", "--max-unused", "0"]);
    assert_eq!(r["waiting_packs"], 0, "{r}");
    env.ok(&["check", "--read-data"]);
    let snaps = env.json(&["snapshots"]);
    let recorded = recorded.lock().unwrap();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        6,
        "keep-last 2 of 3 sources"
    );
    for s in snaps.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let (w, expected) = &recorded[id];
        let t = env.path(&format!("r-{}", &id[..8]));
        env.ok(&["restore", id, "--target", t.to_str().unwrap(), "--verify"]);
        assert_eq!(
            &manifest(&t.join(format!("src{w}"))),
            expected,
            "snapshot {id}"
        );
    }
}
