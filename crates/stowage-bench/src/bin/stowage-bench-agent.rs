//! Node agent memory benchmark (`scripts/bench-agent.sh`): the peak RSS of the release
//! `stowage agent` while it backs up, and while it restores, one volume of many small files
//! (default 1,000,000: 1,000 directories of 1,000 files of 0..4 KiB), beside restic's on the
//! same directory, in one run.
//!
//! It starts a one-node control plane of its own (the binaries of `scripts/testenv.sh`), sets up
//! a controller namespace as the Kubernetes tests do (the controller's and the agent's
//! identities from `deploy/rbac/`, a password Secret, a filesystem storage location), the
//! kubelet stand-in and the stand-in provisioner, then a namespace `app` with a claim and a pod
//! using it. With the volume filled, the release `stowage controller` and `stowage agent` run a
//! Backup of `app` (`defaultVolumesToFsBackup`); the agent is restarted (so the restore's peak
//! is its own) and a Restore clones `app` into `app-restored`. Each agent's peak is its VmHWM
//! from `/proc/<pid>/status`, cross-checked by sampling VmRSS every 200 ms. restic then runs
//! `init`, `backup DIR` and `restore latest` on the PV's data directory, each timed, its peak
//! RSS from GNU time (`/usr/bin/time -f %M`) or, without it, from sampling `/proc`.
//!
//! Needs root (bind mounts). Usage:
//!   stowage-bench-agent [--stowage PATH] [--files N] [--work DIR] [--json PATH] [--keep]
//! Environment: BENCH_FILES, STOWAGE_BIN, RESTIC_BIN (default `restic`), BENCH_JSON,
//! BENCH_WORK, STOWAGE_TESTENV_BIN (the control plane's binaries).

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stowage_kube::api::{Backup, BackupPhase, Restore, RestorePhase, VolumeBackup, VolumeRestore};
use stowage_testkit::cluster::{Cluster, ClusterOptions};
use stowage_testkit::kubelet::KubeletVolumesStandIn;
use stowage_testkit::provisioner::{stand_in_provisioner, STAND_IN_CLASS};

const PASSWORD: &str = "stowage-bench password";
const NAMESPACE: &str = "stowage";
const APP: &str = "app";
const RESTORED: &str = "app-restored";
const FILES_PER_DIR: u64 = 1000;
/// How long one backup or restore may take.
const WAIT: Duration = Duration::from_secs(4 * 3600);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Options {
    stowage: PathBuf,
    files: u64,
    work: Option<PathBuf>,
    json: Option<PathBuf>,
    keep: bool,
    restic: String,
}

fn options() -> Options {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut o = Options {
        stowage: env("STOWAGE_BIN")
            .unwrap_or_else(|| "target/release/stowage".into())
            .into(),
        files: env("BENCH_FILES")
            .map(|v| v.parse().expect("BENCH_FILES is a number"))
            .unwrap_or(1_000_000),
        work: env("BENCH_WORK").map(PathBuf::from),
        json: env("BENCH_JSON").map(PathBuf::from),
        keep: false,
        restic: env("RESTIC_BIN").unwrap_or_else(|| "restic".into()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("{a} needs a value");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--stowage" => o.stowage = value().into(),
            "--files" => o.files = value().parse().expect("--files is a number"),
            "--work" => o.work = Some(value().into()),
            "--json" => o.json = Some(value().into()),
            "--keep" => o.keep = true,
            _ => {
                eprintln!(
                    "usage: stowage-bench-agent [--stowage PATH] [--files N] [--work DIR] [--json PATH] [--keep]"
                );
                std::process::exit(2);
            }
        }
    }
    o
}

fn say(msg: impl std::fmt::Display) {
    eprintln!("bench-agent: {msg}");
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM`, `VmRSS`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's VmRSS (and VmHWM) every `every` until stopped; keeps the maxima.
struct Sampler {
    stop: Arc<AtomicBool>,
    max_rss: Arc<AtomicU64>,
    max_hwm: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max_rss = Arc::new(AtomicU64::new(0));
        let max_hwm = Arc::new(AtomicU64::new(0));
        let (s, r, h) = (stop.clone(), max_rss.clone(), max_hwm.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(v) = status_kib(pid, "VmRSS") {
                    r.fetch_max(v, Ordering::Relaxed);
                }
                if let Some(v) = status_kib(pid, "VmHWM") {
                    h.fetch_max(v, Ordering::Relaxed);
                }
                std::thread::sleep(every);
            }
        });
        Sampler {
            stop,
            max_rss,
            max_hwm,
            thread: Some(thread),
        }
    }

    /// (max sampled VmRSS, max sampled VmHWM) in KiB.
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.max_rss.load(Ordering::Relaxed),
            self.max_hwm.load(Ordering::Relaxed),
        )
    }
}

/// A child process killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cmd: &mut Command, log: PathBuf) -> Res<Proc> {
    let out = std::fs::File::create(&log)?;
    let child = cmd.stdout(Stdio::null()).stderr(out).spawn()?;
    Ok(Proc { child, log })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Polls `f` every 500 ms until it returns `Some`, or fails after `timeout`.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Res<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}: {last}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn create<K>(api: &Api<K>, obj: Value) -> Res<K>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj)?;
    Ok(api.create(&PostParams::default(), &o).await?)
}

/// A cheap deterministic generator (splitmix64).
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `files` files below `dir`, `FILES_PER_DIR` a directory, 0..4 KiB each, from the
/// file's index alone; returns the bytes written.
fn write_files(dir: &Path, files: u64) -> Res<u64> {
    let dirs = files.div_ceil(FILES_PER_DIR);
    let written = AtomicU64::new(0);
    (0..dirs)
        .into_par_iter()
        .try_for_each(|d| -> Result<(), String> {
            let sub = dir.join(format!("d{d:04}"));
            std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
            let mut buf = Vec::with_capacity(4096 + 8);
            for f in (d * FILES_PER_DIR)..((d + 1) * FILES_PER_DIR).min(files) {
                let mut x = f ^ 0x5107_a6e0;
                let len = (splitmix(&mut x) % 4097) as usize;
                buf.clear();
                while buf.len() < len {
                    buf.extend_from_slice(&splitmix(&mut x).to_le_bytes());
                }
                buf.truncate(len);
                std::fs::write(sub.join(format!("f{f:07}")), &buf).map_err(|e| e.to_string())?;
                written.fetch_add(len as u64, Ordering::Relaxed);
            }
            Ok(())
        })?;
    Ok(written.into_inner())
}

/// (regular files, their bytes) below `dir`.
fn count(dir: &Path) -> Res<(u64, u64)> {
    let mut stack = vec![dir.to_path_buf()];
    let (mut files, mut bytes) = (0, 0);
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                files += 1;
                bytes += e.metadata()?.len();
            }
        }
    }
    Ok((files, bytes))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Seconds between two RFC 3339 timestamps in a status.
fn duration_of(status: &Value) -> Option<f64> {
    let t = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(status.get(k)?.as_str()?)
            .ok()
            .map(|t| t.timestamp_millis())
    };
    Some((t("completionTimestamp")? - t("startTimestamp")?) as f64 / 1000.0)
}

/// One measured step.
#[derive(Default, Clone)]
struct Step {
    seconds: f64,
    /// Item duration from the work item's timestamps (Stowage only).
    item_seconds: Option<f64>,
    peak_kib: Option<u64>,
    sampled_kib: Option<u64>,
}

impl Step {
    fn json(&self) -> Value {
        json!({
            "seconds": round(self.seconds),
            "item_seconds": self.item_seconds.map(round),
            "peak_rss_mib": self.peak_kib.map(|k| round(mib(k))),
            "sampled_rss_mib": self.sampled_kib.map(|k| round(mib(k))),
        })
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Runs a command, timed, its peak RSS from GNU time when there is one, else sampled.
fn run_measured(cmd: &[&str], envs: &[(&str, &str)], log: &Path) -> Res<Step> {
    let gnu_time = Path::new("/usr/bin/time").is_file();
    let rss_file = log.with_extension("rss");
    let mut c = if gnu_time {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).args(cmd);
        c
    } else {
        let mut c = Command::new(cmd[0]);
        c.args(&cmd[1..]);
        c
    };
    c.envs(envs.iter().copied())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?);
    let start = Instant::now();
    let mut child = c.spawn()?;
    let sampler = Sampler::start(child.id(), Duration::from_millis(100));
    let status = child.wait()?;
    let seconds = start.elapsed().as_secs_f64();
    let (rss, hwm) = sampler.finish();
    if !status.success() {
        return Err(format!(
            "{} failed ({status}): {}",
            cmd.join(" "),
            tail(&log.with_extension("err"), 20)
        )
        .into());
    }
    let peak = match gnu_time {
        true => std::fs::read_to_string(&rss_file)?
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok()),
        false => Some(hwm.max(rss)),
    };
    Ok(Step {
        seconds,
        item_seconds: None,
        peak_kib: peak,
        sampled_kib: Some(rss),
    })
}

fn main() {
    let o = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(run(&o)) {
        say(format!("error: {e}"));
        std::process::exit(1);
    }
}

async fn run(o: &Options) -> Res<()> {
    if !is_root() {
        return Err("must run as root (the kubelet stand-in bind-mounts volumes)".into());
    }
    let stowage = o.stowage.canonicalize().map_err(|e| {
        format!(
            "the stowage binary {} ({e}); build it with cargo build --release --bin stowage",
            o.stowage.display()
        )
    })?;
    let (scratch, work) = match &o.work {
        Some(w) => {
            std::fs::create_dir_all(w)?;
            (None, w.canonicalize()?)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("stowage-bench-agent.")
                .tempdir_in("/tmp")?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    say(format!("work directory {}", work.display()));
    let result = bench(o, &stowage, &work).await;
    match (o.keep, scratch) {
        (true, Some(t)) => {
            let p = t.keep();
            say(format!("kept {}", p.display()));
        }
        (false, Some(t)) => {
            // The kubelet stand-in unmounted its bind mounts when it was dropped.
            if let Err(e) = t.close() {
                say(format!("could not remove the work directory: {e}"));
            }
        }
        _ => {}
    }
    result
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

async fn bench(o: &Options, stowage: &Path, work: &Path) -> Res<()> {
    // ---- the cluster -----------------------------------------------------------------------
    say("starting a one-node control plane...");
    let cluster = Cluster::start(ClusterOptions {
        nodes: 1,
        dir: Some(work.join("cluster")),
        crds: stowage_kube::crds::crds(),
        ..Default::default()
    })
    .await?;
    let client = cluster.client();
    let node = cluster.node_names()[0].clone();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [NAMESPACE, APP] {
        create(&namespaces, json!({"metadata": {"name": ns}})).await?;
    }
    let role: ClusterRole =
        serde_yaml::from_str(include_str!("../../../../deploy/rbac/controller.yaml"))?;
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    for sa in ["controller", "agent"] {
        create(&accounts, json!({"metadata": {"name": sa}})).await?;
    }
    create(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        json!({
            "metadata": {"name": "stowage-controller"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "stowage-controller"},
            "subjects": [{"kind": "ServiceAccount", "name": "controller", "namespace": NAMESPACE}],
        }),
    )
    .await?;
    let agent_role: Role =
        serde_yaml::from_str(include_str!("../../../../deploy/rbac/agent.yaml"))?;
    Api::<Role>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &agent_role)
        .await?;
    create(
        &Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": "stowage-agent"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "stowage-agent"},
            "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": NAMESPACE}],
        }),
    )
    .await?;
    let controller_kc = cluster
        .service_account_kubeconfig(NAMESPACE, "controller")
        .await?;
    let agent_kc = cluster
        .service_account_kubeconfig(NAMESPACE, "agent")
        .await?;
    create(
        &Api::<Secret>::namespaced(client.clone(), NAMESPACE),
        json!({"metadata": {"name": "repo-password"}, "stringData": {"password": PASSWORD}}),
    )
    .await?;
    let repo = work.join("repo");
    std::fs::create_dir_all(&repo)?;
    create(
        &Api::<stowage_kube::api::BackupStorageLocation>::namespaced(client.clone(), NAMESPACE),
        json!({
            "apiVersion": "stowage.dev/v1alpha1", "kind": "BackupStorageLocation",
            "metadata": {"name": "default"},
            "spec": {"provider": "filesystem", "filesystem": {"path": repo.to_str().unwrap()},
                     "repositoryPassword": {"name": "repo-password", "key": "password"},
                     "default": true},
        }),
    )
    .await?;
    let kubelet = KubeletVolumesStandIn::start(
        client.clone(),
        &work.join("nodes"),
        std::slice::from_ref(&node),
    )
    .await?;
    let provisioner = stand_in_provisioner(&client).await;

    // ---- the application and its data -------------------------------------------------------
    create(
        &Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(client.clone(), APP),
        json!({"metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STAND_IN_CLASS,
                        "resources": {"requests": {"storage": "100Gi"}}}}),
    )
    .await?;
    create(
        &Api::<Pod>::namespaced(client.clone(), APP),
        json!({"metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "image": "app:1"}],
                        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}}),
    )
    .await?;
    let volume = kubelet
        .wait_volume(APP, "p", "data", Duration::from_secs(180))
        .await?;
    let pv =
        Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(client.clone(), APP)
            .get("data")
            .await?
            .spec
            .and_then(|s| s.volume_name)
            .ok_or("the claim has no volume")?;
    let source = kubelet.pv_data(&pv);
    say(format!(
        "writing {} files into {}...",
        o.files,
        source.display()
    ));
    let t = Instant::now();
    let bytes = write_files(&source, o.files)?;
    say(format!(
        "wrote {} files, {bytes} bytes in {:.1} s",
        o.files,
        t.elapsed().as_secs_f64()
    ));
    let (seen, seen_bytes) = count(&volume)?;
    if (seen, seen_bytes) != (o.files, bytes) {
        return Err(format!("the pod's volume shows {seen} files, {seen_bytes} bytes").into());
    }

    // ---- Stowage backup ---------------------------------------------------------------------
    let log_env = ("STOWAGE_LOG", "stowage=info,stowage_kube=info");
    let controller = spawn(
        Command::new(stowage)
            .arg("controller")
            .args(["--namespace", NAMESPACE])
            .arg("--kubeconfig")
            .arg(&controller_kc)
            .arg("--work-dir")
            .arg(work.join("controller-work"))
            .env(log_env.0, log_env.1),
        work.join("controller.log"),
    )?;
    let mut starts = 0;
    let mut start_agent = || {
        starts += 1;
        spawn(
            Command::new(stowage)
                .args(["agent", "--node", &node, "--namespace", NAMESPACE])
                .arg("--kubeconfig")
                .arg(&agent_kc)
                .arg("--kubelet-root")
                .arg(kubelet.root(&node))
                .arg("--work-dir")
                .arg(work.join("agent-work"))
                .args(["--mount-wait", "120s"])
                .env(log_env.0, log_env.1),
            work.join(format!("agent-{starts}.log")),
        )
    };
    let agent = start_agent()?;
    let sampler = Sampler::start(agent.pid(), Duration::from_millis(200));
    say("backing up...");
    let backups: Api<Backup> = Api::namespaced(client.clone(), NAMESPACE);
    let t = Instant::now();
    create(
        &backups,
        json!({"apiVersion": "stowage.dev/v1alpha1", "kind": "Backup",
               "metadata": {"name": "bench"},
               "spec": {"includedNamespaces": [APP], "defaultVolumesToFsBackup": true}}),
    )
    .await?;
    let backup = poll("the backup to end", WAIT, || {
        let backups = backups.clone();
        async move {
            let b = backups.get("bench").await.map_err(|e| e.to_string())?;
            Ok(b.phase().is_terminal().then_some(b))
        }
    })
    .await?;
    let backup_wall = t.elapsed().as_secs_f64();
    let backup_hwm = status_kib(agent.pid(), "VmHWM");
    let (backup_rss, _) = sampler.finish();
    if backup.phase() != BackupPhase::Completed {
        return Err(format!(
            "the backup ended {}: {:#?}\nagent log:\n{}",
            backup.phase(),
            backup.status,
            tail(&agent.log, 30)
        )
        .into());
    }
    let items = Api::<VolumeBackup>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels("stowage.dev/backup-name=bench"))
        .await?
        .items;
    let item = serde_json::to_value(&items.first().ok_or("no VolumeBackup")?.status)?;
    let snapshot_files = item["progress"]["filesDone"].as_u64();
    let backup_step = Step {
        seconds: backup_wall,
        item_seconds: duration_of(&item),
        peak_kib: backup_hwm,
        sampled_kib: Some(backup_rss),
    };
    say(format!(
        "backup: {:.1} s (item {:?} s), agent VmHWM {:.1} MiB, sampled VmRSS {:.1} MiB, snapshot {} files",
        backup_wall,
        backup_step.item_seconds,
        mib(backup_hwm.unwrap_or(0)),
        mib(backup_rss),
        snapshot_files.map_or("?".into(), |f| f.to_string())
    ));

    // ---- Stowage restore --------------------------------------------------------------------
    drop(agent);
    let agent = start_agent()?;
    let sampler = Sampler::start(agent.pid(), Duration::from_millis(200));
    say("restoring...");
    let restores: Api<Restore> = Api::namespaced(client.clone(), NAMESPACE);
    let t = Instant::now();
    let restore = create(
        &restores,
        json!({"apiVersion": "stowage.dev/v1alpha1", "kind": "Restore",
               "metadata": {"name": "bench"},
               "spec": {"backupName": "bench", "namespaceMapping": {APP: RESTORED}}}),
    )
    .await?;
    let restore_uid = restore.metadata.uid.unwrap_or_default();
    let restore = poll("the restore to end", WAIT, || {
        let restores = restores.clone();
        async move {
            let r = restores.get("bench").await.map_err(|e| e.to_string())?;
            Ok(r.phase().is_terminal().then_some(r))
        }
    })
    .await?;
    let restore_wall = t.elapsed().as_secs_f64();
    let restore_hwm = status_kib(agent.pid(), "VmHWM");
    let (restore_rss, _) = sampler.finish();
    let verified = restore
        .status
        .as_ref()
        .and_then(|s| s.verification.as_ref())
        .map(|v| v.volumes_verified);
    if restore.phase() != RestorePhase::Completed || verified != Some(1) {
        return Err(format!(
            "the restore ended {} with {verified:?} volumes verified: {:#?}\nagent log:\n{}",
            restore.phase(),
            restore.status,
            tail(&agent.log, 30)
        )
        .into());
    }
    let items = Api::<VolumeRestore>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels(&format!("stowage.dev/owner-uid={restore_uid}")))
        .await?
        .items;
    let item = serde_json::to_value(&items.first().ok_or("no VolumeRestore")?.status)?;
    let restore_step = Step {
        seconds: restore_wall,
        item_seconds: duration_of(&item),
        peak_kib: restore_hwm,
        sampled_kib: Some(restore_rss),
    };
    drop(agent);
    let restored = kubelet
        .wait_volume(RESTORED, "p", "data", Duration::from_secs(180))
        .await?;
    let (restored_files, restored_bytes) = count(&restored)?;
    say(format!(
        "restore: {:.1} s (item {:?} s), agent VmHWM {:.1} MiB, sampled VmRSS {:.1} MiB; restored {restored_files} files, {restored_bytes} bytes",
        restore_wall,
        restore_step.item_seconds,
        mib(restore_hwm.unwrap_or(0)),
        mib(restore_rss),
    ));
    if (restored_files, restored_bytes) != (o.files, bytes) {
        return Err(format!(
            "the restored volume has {restored_files} files, {restored_bytes} bytes; expected {}, {bytes}",
            o.files
        )
        .into());
    }
    drop(controller);
    provisioner.abort();

    // ---- restic -----------------------------------------------------------------------------
    let restic_ok = Command::new(&o.restic)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut restic: Option<(Step, Step, u64, u64)> = None;
    if !restic_ok {
        say(format!(
            "NOTICE: restic ({}) is not installed: skipping it (BENCH_INSTALL=1 installs it)",
            o.restic
        ));
    } else {
        let rrepo = work.join("restic-repo");
        let target = work.join("restic-restore");
        let envs = [
            ("RESTIC_REPOSITORY", rrepo.to_str().unwrap()),
            ("RESTIC_PASSWORD", PASSWORD),
            (
                "RESTIC_CACHE_DIR",
                &*work.join("restic-cache").to_string_lossy(),
            ),
        ]
        .map(|(k, v)| (k, v.to_string()));
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = &o.restic;
        run_measured(&[r, "init"], &envs, &work.join("restic-init.log"))?;
        say("restic backup...");
        let src = source.to_str().unwrap();
        let b = run_measured(&[r, "backup", src], &envs, &work.join("restic-backup.log"))?;
        say("restic restore...");
        let rs = run_measured(
            &[r, "restore", "latest", "--target", target.to_str().unwrap()],
            &envs,
            &work.join("restic-restore.log"),
        )?;
        let (f, by) = count(&target)?;
        if (f, by) != (o.files, bytes) {
            say(format!("WARNING: restic restored {f} files, {by} bytes"));
        }
        restic = Some((b, rs, f, by));
    }
    drop(kubelet);
    drop(cluster);

    // ---- figures ----------------------------------------------------------------------------
    let row = |name: &str, s: &Step| {
        println!(
            "{name:<24} {:>10.1} {:>10} {:>12.1} {:>12.1}",
            s.seconds,
            s.item_seconds.map_or("-".into(), |v| format!("{v:.1}")),
            mib(s.peak_kib.unwrap_or(0)),
            mib(s.sampled_kib.unwrap_or(0)),
        )
    };
    println!(
        "files: {}  bytes: {bytes} ({:.1} MiB)  snapshot files: {}",
        o.files,
        bytes as f64 / 1048576.0,
        snapshot_files.map_or("?".into(), |f| f.to_string())
    );
    println!(
        "{:<24} {:>10} {:>10} {:>12} {:>12}",
        "", "wall s", "item s", "peak MiB", "sampled MiB"
    );
    row("stowage agent backup", &backup_step);
    row("stowage agent restore", &restore_step);
    if let Some((b, r, _, _)) = &restic {
        row("restic backup", b);
        row("restic restore", r);
    } else {
        println!("restic: skipped (not installed)");
    }
    let figures = json!({
        "files": o.files,
        "bytes": bytes,
        "snapshot_files": snapshot_files,
        "stowage_agent": {"backup": backup_step.json(), "restore": restore_step.json(),
                          "restore_verified_volumes": verified},
        "restic": restic.as_ref().map(|(b, r, f, by)| json!({
            "backup": b.json(), "restore": r.json(),
            "restored_files": f, "restored_bytes": by,
            "peak_rss_from": if Path::new("/usr/bin/time").is_file() { "GNU time %M" } else { "sampled /proc VmHWM" },
        })),
    });
    let json_path = o.json.clone().unwrap_or_else(|| "bench-agent.json".into());
    let mut f = std::fs::File::create(&json_path)?;
    writeln!(f, "{}", serde_json::to_string_pretty(&figures)?)?;
    say(format!("figures written to {}", json_path.display()));
    Ok(())
}
