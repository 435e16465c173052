//! Backups, forgets and prunes killed with SIGKILL at random moments leave a repository that
//! `check` accepts, whose snapshots reported complete restore bit-identical, and that the next
//! run can use. `STOWAGE_CRASH_TRIALS` scales the number of trials (scripts/soak.sh runs many).

mod common;

use common::*;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::time::Duration;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn trials(default: u64) -> u64 {
    std::env::var("STOWAGE_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n * default / 10)
        .unwrap_or(default)
}

fn make_source(src: &Path) {
    for d in 0..4 {
        let dir = src.join(format!("dir{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..12 {
            fs::write(
                dir.join(format!("f{f}")),
                random_bytes(120_000 + f * 1000, (d * 100 + f) as u64),
            )
            .unwrap();
        }
    }
}

/// Runs `args`, killing it after a random delay; returns whether it finished by itself.
fn run_and_maybe_kill(env: &Env, args: &[&str], rng: &mut Rng, max_ms: u64) -> Option<String> {
    let mut child = env
        .cmd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(rng.next() % max_ms));
    let _ = child.kill(); // SIGKILL
    let out = child.wait_with_output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

fn assert_check(env: &Env, what: &str) {
    let out = env.run(&["check"]);
    assert!(
        out.status.success(),
        "{what}: check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Restores every snapshot still in the repository whose source state was recorded, and
/// compares it with that state.
fn assert_restorable(env: &Env, recorded: &HashMap<String, BTreeMap<Vec<u8>, Entry>>) {
    let snaps = env.json(&["snapshots"]);
    let mut checked = 0;
    for s in snaps.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let Some(expected) = recorded.get(id) else {
            continue;
        };
        let t = env.path(&format!("r-{}", &id[..8]));
        let _ = fs::remove_dir_all(&t);
        env.ok(&["restore", id, "--target", t.to_str().unwrap(), "--verify"]);
        assert_eq!(
            &manifest(&t.join("src")),
            expected,
            "snapshot {id} does not restore its source"
        );
        fs::remove_dir_all(&t).unwrap();
        checked += 1;
    }
    assert!(checked > 0, "no complete snapshot left to restore");
}

fn setup() -> (Env, std::path::PathBuf) {
    let env = Env::init_small();
    let src = env.path("src");
    make_source(&src);
    (env, src)
}

fn complete_backup(
    env: &Env,
    src: &Path,
    recorded: &mut HashMap<String, BTreeMap<Vec<u8>, Entry>>,
) {
    let out = env.json(&["backup", src.to_str().unwrap()]);
    recorded.insert(
        out["snapshot_id"].as_str().unwrap().to_string(),
        manifest(src),
    );
}

#[test]
fn sigkill_during_backup_leaves_a_consistent_repository() {
    let (env, src) = setup();
    let mut rng = Rng(0x1234_5678);
    let mut recorded = HashMap::new();
    for trial in 0..trials(40) {
        fs::write(
            src.join(format!("dir{}/f0", trial % 4)),
            random_bytes(300_000, 1000 + trial),
        )
        .unwrap();
        let snapshot_state = manifest(&src);
        if let Some(out) = run_and_maybe_kill(
            &env,
            &["backup", src.to_str().unwrap(), "--json"],
            &mut rng,
            400,
        ) {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            recorded.insert(
                v["snapshot_id"].as_str().unwrap().to_string(),
                snapshot_state,
            );
        }
        assert_check(&env, &format!("backup trial {trial}"));
    }
    complete_backup(&env, &src, &mut recorded);
    env.ok(&["check", "--read-data"]);
    assert_restorable(&env, &recorded);
}

#[test]
fn sigkill_during_prune_and_forget_leaves_a_consistent_repository() {
    let (env, src) = setup();
    let mut rng = Rng(0x9876_5432);
    let mut recorded = HashMap::new();
    complete_backup(&env, &src, &mut recorded);
    for trial in 0..trials(60) {
        // New data, so each prune has something to free.
        fs::write(
            src.join(format!("dir{}/f{}", trial % 4, trial % 12)),
            random_bytes(200_000, 5000 + trial),
        )
        .unwrap();
        complete_backup(&env, &src, &mut recorded);
        if trial % 3 == 0 {
            run_and_maybe_kill(&env, &["forget", "--keep-last", "3"], &mut rng, 60);
            assert_check(&env, &format!("forget trial {trial}"));
        } else {
            env.ok(&["forget", "--keep-last", "3"]);
        }
        run_and_maybe_kill(&env, &["prune", "--max-unused", "0"], &mut rng, 250);
        assert_check(&env, &format!("prune trial {trial}"));
    }
    // The next prune completes and leaves nothing unused.
    let r = env.json(&["prune", "--max-unused", "0"]);
    assert_eq!(r["waiting_packs"], 0, "{r}");
    env.ok(&["check", "--read-data"]);
    assert_restorable(&env, &recorded);
}
