//! A backup killed with SIGKILL at any moment leaves a repository that `check` accepts, whose
//! complete snapshots restore bit-identical, and that the next backup can use.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

#[test]
fn sigkill_during_backup_leaves_a_consistent_repository() {
    let env = Env::init(&[
        "--pack-size",
        "1",
        "--chunk-min",
        "65536",
        "--chunk-avg",
        "131072",
        "--chunk-max",
        "524288",
    ]);
    let src = env.path("src");
    for d in 0..6 {
        let dir = src.join(format!("dir{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            fs::write(
                dir.join(format!("f{f}")),
                random_bytes(150_000 + f * 1000, (d * 100 + f) as u64),
            )
            .unwrap();
        }
    }
    let trials = std::env::var("STOWAGE_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12u64);
    let mut rng = 0x1234_5678_u64;
    let mut completed = 0;
    for trial in 0..trials {
        // Change some data so each run has something new to write.
        fs::write(
            src.join(format!("dir{}/f0", trial % 6)),
            random_bytes(400_000, 1000 + trial),
        )
        .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(20 + rng % 400);
        let mut child = env
            .cmd(&["backup", src.to_str().unwrap(), "-q"])
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.success() {
            completed += 1;
        }
        let out = env.run(&["check"]);
        assert!(
            out.status.success(),
            "trial {trial} (killed after {delay:?}): check failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The next backup completes and every snapshot restores what it recorded.
    env.ok(&["backup", src.to_str().unwrap()]);
    env.ok(&["check", "--read-data"]);
    let snaps = env.json(&["snapshots"]);
    assert!(snaps.as_array().unwrap().len() > completed);
    let target = env.path("restored");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
    assert_same_tree(&src, &target.join("src"));
    for s in snaps.as_array().unwrap() {
        let t = env.path(&format!("r-{}", s["short_id"].as_str().unwrap()));
        env.ok(&[
            "restore",
            s["id"].as_str().unwrap(),
            "--target",
            t.to_str().unwrap(),
            "--verify",
        ]);
    }
}
