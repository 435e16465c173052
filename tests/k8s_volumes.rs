//! Volume data end to end, against the real control plane: the real `stowage controller` and one
//! real `stowage agent` per fake node (each with the identity of deploy/rbac/agent.yaml, and the
//! node's kubelet root laid out by the testkit's kubelet stand-in) back up the volumes of a
//! StatefulSet (two replicas on two nodes, file trees with the awkward cases) and of a
//! Deployment's block-mode claim, incrementally, and restore them into the deleted namespace,
//! data before workload; cancel, agents killed mid-volume, and a volume directory that points out
//! of the kubelet root.

mod k8s;

use k8s::*;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use stowage_kube::api::{
    Restore, RestorePhase, VolumeBackup, VolumeOutcome, VolumePhase, VolumeRestore,
};
use stowage_testkit::cluster::shared::eventually;
use stowage_testkit::kubelet::KubeletVolumesStandIn;
use stowage_testkit::tree;

macro_rules! setup {
    () => {
        match Setup::new().await {
            Some(s) => s,
            None => return,
        }
    };
}

/// One `stowage agent` process; killed when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
    /// Where it serves its metrics.
    metrics: std::net::SocketAddr,
}

impl Agent {
    /// The sum of the agent's samples of metric `name` whose labels include every one of
    /// `labels` (`kind="backup"`).
    fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        use std::io::{Read, Write};
        let mut text = String::new();
        for _ in 0..100 {
            if let Ok(mut c) = std::net::TcpStream::connect(self.metrics) {
                let _ = c.write_all(b"GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n");
                let _ = c.read_to_string(&mut text);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            text.contains(" 200 OK"),
            "metrics of {}: {text}",
            self.metrics
        );
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// The sum over agents of [`Agent::metric`].
fn metric(agents: &[Agent], name: &str, labels: &[&str]) -> f64 {
    agents.iter().map(|a| a.metric(name, labels)).sum()
}

/// A loopback address nobody listens on now.
fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("agent log ({}) ends with:", self.log.display());
            for l in tail.into_iter().rev() {
                eprintln!("  {l}");
            }
        }
    }
}

/// The nodes, their agents' identities and the kubelet stand-in of one test.
struct Nodes {
    names: Vec<String>,
    kubelet: KubeletVolumesStandIn,
    kubeconfigs: BTreeMap<String, PathBuf>,
    starts: u32,
}

impl Nodes {
    /// The fake nodes with a kubelet stand-in below the test's directory, and a ServiceAccount
    /// per node bound to the agent's Role.
    async fn new(s: &Setup) -> Nodes {
        let client = s.client();
        let mut names: Vec<String> = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        names.sort();
        assert!(
            names.len() >= 2,
            "the test cluster has two nodes: {names:?}"
        );
        names.truncate(2);
        let kubelet =
            KubeletVolumesStandIn::start(client.clone(), &s.dir.path().join("nodes"), &names)
                .await
                .unwrap();
        let role: Role = serde_yaml::from_str(include_str!("../deploy/rbac/agent.yaml")).unwrap();
        Api::<Role>::namespaced(client.clone(), &s.namespace)
            .create(&PostParams::default(), &role)
            .await
            .unwrap();
        let mut kubeconfigs = BTreeMap::new();
        for node in &names {
            let sa_name = format!("agent-{node}");
            let sa: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": sa_name}})).unwrap();
            Api::<ServiceAccount>::namespaced(client.clone(), &s.namespace)
                .create(&PostParams::default(), &sa)
                .await
                .unwrap();
            let binding: RoleBinding = serde_json::from_value(json!({
                "metadata": {"name": sa_name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "stowage-agent"},
                "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": s.namespace}],
            }))
            .unwrap();
            Api::<RoleBinding>::namespaced(client.clone(), &s.namespace)
                .create(&PostParams::default(), &binding)
                .await
                .unwrap();
            let kc = s
                .cluster
                .service_account_kubeconfig(&s.namespace, &sa_name)
                .await
                .unwrap();
            kubeconfigs.insert(node.clone(), kc);
        }
        Nodes {
            names,
            kubelet,
            kubeconfigs,
            starts: 0,
        }
    }

    /// Starts `stowage agent` for `node`, with its own identity and kubelet root.
    fn start_agent(&mut self, s: &Setup, node: &str) -> Agent {
        self.starts += 1;
        let log = s
            .dir
            .path()
            .join(format!("agent-{node}-{}.log", self.starts));
        let metrics = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .args(["agent", "--node", node, "--namespace", &s.namespace])
            .arg("--kubeconfig")
            .arg(&self.kubeconfigs[node])
            .arg("--kubelet-root")
            .arg(self.kubelet.root(node))
            .arg("--work-dir")
            .arg(s.dir.path().join(format!("agent-work-{node}")))
            .args(["--progress-every", "500ms", "--mount-wait", "60s"])
            .arg("--metrics-address")
            .arg(metrics.to_string())
            .env("STOWAGE_LOG", "stowage=debug,stowage_kube=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent {
            child,
            log,
            metrics,
        }
    }

    fn start_agents(&mut self, s: &Setup) -> Vec<Agent> {
        let names = self.names.clone();
        names.iter().map(|n| self.start_agent(s, n)).collect()
    }
}

/// The application: a StatefulSet of two replicas spread over the two nodes, each with a
/// file-system claim, and a Deployment with a block-mode claim.
fn application(ns: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "db", "namespace": ns},
               "spec": {"serviceName": "db", "replicas": 2,
                        "selector": {"matchLabels": {"app": "db"}},
                        "template": {"metadata": {"labels": {"app": "db"}},
                                     "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                                                  {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}},
                                              "containers": [{"name": "db", "image": "db:1",
                                                              "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STAND_IN_CLASS,
                                     "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "raw", "namespace": ns},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STAND_IN_CLASS,
                        "volumeMode": "Block", "resources": {"requests": {"storage": "16Mi"}}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "raw", "namespace": ns},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "raw"}},
                        "template": {"metadata": {"labels": {"app": "raw"}},
                                     "spec": {"containers": [{"name": "raw", "image": "raw:1",
                                                              "volumeDevices": [{"name": "disk", "devicePath": "/dev/disk"}]}],
                                              "volumes": [{"name": "disk", "persistentVolumeClaim": {"claimName": "raw"}}]}}}}),
    ]
}

/// The running pods of the namespace, by name.
async fn running_pods(s: &Setup, ns: &str, count: usize) -> BTreeMap<String, Pod> {
    let pods: Api<Pod> = Api::namespaced(s.client(), ns);
    eventually(&format!("{count} running pods in {ns}"), WAIT, || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let running: BTreeMap<String, Pod> = list
                .items
                .into_iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
                .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
                .collect();
            match running.len() == count {
                true => Ok(running),
                false => Err(format!("running: {:?}", running.keys().collect::<Vec<_>>())),
            }
        }
    })
    .await
}

/// The pod volumes of the application: (claim, path) for each pod.
async fn volumes_of(
    nodes: &Nodes,
    ns: &str,
    pods: &BTreeMap<String, Pod>,
) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for name in pods.keys() {
        let claim = match name.strip_prefix("db-") {
            Some(_) => format!("data-{name}"),
            None => "raw".to_string(),
        };
        let path = nodes
            .kubelet
            .wait_volume(ns, name, &claim, WAIT)
            .await
            .unwrap();
        out.insert(claim, path);
    }
    out
}

const BLOCK_BYTES: usize = 16 << 20;

/// Fills the volumes: the awkward tree and a file of its own in each file system, a pattern
/// with a hole-sized run of zeros on the block device.
fn fill(volumes: &BTreeMap<String, PathBuf>) {
    for (claim, path) in volumes {
        if claim == "raw" {
            let mut data = tree::random_bytes(BLOCK_BYTES, 7);
            data[4 << 20..8 << 20].fill(0);
            std::fs::write(path, &data).unwrap();
        } else {
            tree::awkward_tree(path);
            std::fs::write(path.join("own.txt"), format!("I am {claim}\n")).unwrap();
        }
    }
}

/// What is on the volumes: a tree manifest per file system, the bytes' hash for the device.
fn state(volumes: &BTreeMap<String, PathBuf>) -> BTreeMap<String, String> {
    volumes
        .iter()
        .map(|(claim, path)| {
            let text = if claim == "raw" {
                let bytes = std::fs::read(path).unwrap();
                assert_eq!(bytes.len(), BLOCK_BYTES);
                blake3::hash(&bytes).to_hex().to_string()
            } else {
                format!("{:#?}", tree::manifest(path))
            };
            (claim.clone(), text)
        })
        .collect()
}

fn volume_backups(s: &Setup) -> Api<VolumeBackup> {
    Api::namespaced(s.client(), &s.namespace)
}

async fn items_of_backup(s: &Setup, backup: &str) -> Vec<VolumeBackup> {
    let lp = ListParams::default().labels(&format!("stowage.dev/backup-name={backup}"));
    let mut items = volume_backups(s).list(&lp).await.unwrap().items;
    items.sort_by_key(|i| i.spec.pvc.name.clone());
    items
}

async fn delete_namespace(s: &Setup, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(s.client());
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap();
    eventually(&format!("namespace {ns} gone"), WAIT, || {
        let namespaces = namespaces.clone();
        async move {
            match namespaces.get_opt(ns).await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
}

async fn run_restore(s: &Setup, name: &str, spec: Value) -> Restore {
    let api: Api<Restore> = Api::namespaced(s.client(), &s.namespace);
    let r: Restore = serde_json::from_value(json!({
        "apiVersion": "stowage.dev/v1alpha1", "kind": "Restore",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    api.create(&PostParams::default(), &r).await.unwrap();
    eventually(&format!("restore {name} to end"), WAIT, || {
        let api = api.clone();
        async move {
            let r = api.get(name).await.map_err(|e| e.to_string())?;
            match r.phase() {
                p if p.is_terminal() => Ok(r),
                p => Err(format!("phase {p}, status {:?}", r.status)),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_backed_up_incrementally_and_restored_before_their_workloads() {
    let mut s = setup!();
    let _provisioner = stand_in_provisioner(&s.client()).await;
    let mut nodes = Nodes::new(&s).await;
    let agents = nodes.start_agents(&s);
    let _controller = s.start_controller(&["--agent-timeout", "60s"]);
    let ns = s.cluster.namespace("vol-app").await.unwrap();
    let client = s.client();
    let app = application(&ns);
    create_all(&client, &app[1..]).await;

    let pods = running_pods(&s, &ns, 3).await;
    let nodes_used: std::collections::BTreeSet<String> = pods
        .values()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    assert_eq!(nodes_used.len(), 2, "the replicas run on both nodes");
    let volumes = volumes_of(&nodes, &ns, &pods).await;
    fill(&volumes);
    let before = state(&volumes);

    // The first backup copies every volume; the status lists each with its snapshot.
    let b1 = s
        .backup(
            "vol-1",
            json!({"includedNamespaces": [ns], "defaultVolumesToFsBackup": true}),
        )
        .await;
    assert_completed(&b1);
    let lines = b1.status.as_ref().unwrap().volumes.clone();
    let copied: Vec<(&str, VolumeOutcome)> = lines
        .iter()
        .map(|v| (v.pvc.as_deref().unwrap_or(""), v.outcome))
        .collect();
    assert_eq!(
        copied,
        [
            ("data-db-0", VolumeOutcome::Completed),
            ("data-db-1", VolumeOutcome::Completed),
            ("raw", VolumeOutcome::Completed)
        ],
        "{lines:#?}"
    );
    assert!(lines.iter().all(|v| v.snapshot_id.is_some()));
    let files = s.files(&b1);
    let recorded: Vec<Value> =
        serde_json::from_slice(&files["metadata/volume-snapshots.json"]).unwrap();
    assert_eq!(recorded.len(), 3);
    let first = items_of_backup(&s, "vol-1").await;
    assert_eq!(first.len(), 3);
    for item in &first {
        let st = item.status.as_ref().unwrap();
        assert_eq!(st.phase, Some(VolumePhase::Completed), "{st:?}");
        assert_eq!(st.attempt, 1);
    }

    // A small change: the second backup adds only its chunks, with the first as parent.
    std::fs::write(volumes["data-db-0"].join("own.txt"), "changed\n").unwrap();
    let b2 = s
        .backup(
            "vol-2",
            json!({"includedNamespaces": [ns], "defaultVolumesToFsBackup": true}),
        )
        .await;
    assert_completed(&b2);
    let second = items_of_backup(&s, "vol-2").await;
    for (a, b) in first.iter().zip(&second) {
        let (sa, sb) = (a.status.as_ref().unwrap(), b.status.as_ref().unwrap());
        assert_eq!(
            sb.parent_snapshot, sa.snapshot_id,
            "{}: parent",
            b.spec.pvc.name
        );
        let added = sb.bytes_added.unwrap();
        assert!(
            added < 64 << 10,
            "{}: {added} bytes added for a one-line change",
            b.spec.pvc.name
        );
    }
    let after_change = state(&volumes);
    let items = "stowage_agent_volume_items_total";
    let done = ["kind=\"backup\"", "outcome=\"completed\""];
    assert_eq!(
        metric(&agents, items, &done),
        6.0,
        "two backups of three volumes"
    );
    assert!(
        metric(
            &agents,
            "stowage_agent_volume_bytes_total",
            &["kind=\"backup\""]
        ) > 0.0
    );

    // The namespace goes; the restore brings the claims back with their data, and the
    // workloads only after it.
    delete_namespace(&s, &ns).await;
    let r = run_restore(&s, "vol-r", json!({"backupName": "vol-2"})).await;
    assert_eq!(r.phase(), RestorePhase::Completed, "{:#?}", r.status);
    let st = r.status.clone().unwrap();
    let verification = st.verification.clone().unwrap();
    assert_eq!(verification.volumes_verified, 3, "{verification:?}");
    assert_eq!(verification.volumes_failed, 0);
    assert!(verification.volume_files_verified > 20, "{verification:?}");
    assert!(
        st.volumes
            .iter()
            .all(|v| v.outcome == VolumeOutcome::Completed),
        "{:#?}",
        st.volumes
    );

    let restores: Vec<VolumeRestore> =
        Api::<VolumeRestore>::namespaced(client.clone(), &s.namespace)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
    assert_eq!(restores.len(), 3);
    let data_in = restores
        .iter()
        .map(|r| {
            r.status
                .as_ref()
                .unwrap()
                .completion_timestamp
                .clone()
                .unwrap()
                .0
        })
        .max()
        .unwrap();
    let pods = running_pods(&s, &ns, 3).await;
    for (name, pod) in &pods {
        let created = pod.metadata.creation_timestamp.clone().unwrap().0;
        assert!(
            created >= data_in,
            "pod {name} was created at {created}, before the data was in at {data_in}"
        );
    }
    let done = ["kind=\"restore\"", "outcome=\"completed\""];
    assert_eq!(
        metric(&agents, items, &done),
        3.0,
        "one restore of three volumes"
    );
    let helpers: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("stowage.dev/restore-helper"))
        .await
        .unwrap()
        .items;
    assert!(helpers.is_empty(), "the helper pods are gone");
    let restored = volumes_of(&nodes, &ns, &pods).await;
    let now = state(&restored);
    assert_eq!(
        now, after_change,
        "the restored volumes hold the second backup's data"
    );
    assert_ne!(now, before);
    check_repository(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_directory_pointing_out_of_the_kubelet_root_is_refused() {
    let mut s = setup!();
    let _provisioner = stand_in_provisioner(&s.client()).await;
    let mut nodes = Nodes::new(&s).await;
    let _agents = nodes.start_agents(&s);
    let _controller = s.start_controller(&["--agent-timeout", "60s"]);
    let ns = s.cluster.namespace("vol-evil").await.unwrap();
    let client = s.client();
    create_all(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STAND_IN_CLASS,
                 "resources": {"requests": {"storage": "1Gi"}}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
               "spec": {"containers": [{"name": "c", "image": "x"}],
                        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}}),
        ],
    )
    .await;
    let pods = running_pods(&s, &ns, 1).await;
    let path = nodes
        .kubelet
        .wait_volume(&ns, "p", "c", WAIT)
        .await
        .unwrap();
    // Whatever mounted it, the volume directory is now a symlink to the host's root.
    let mount = path.clone();
    let _ = Command::new("umount").arg("-l").arg(&mount).status();
    std::fs::remove_dir(&mount).unwrap();
    std::os::unix::fs::symlink("/", &mount).unwrap();
    let b = s
        .backup(
            "evil",
            json!({"includedNamespaces": [ns], "defaultVolumesToFsBackup": true}),
        )
        .await;
    assert_eq!(
        b.phase(),
        stowage_kube::api::BackupPhase::PartiallyFailed,
        "{:#?}",
        b.status
    );
    let line = &b.status.as_ref().unwrap().volumes[0];
    assert_eq!(line.outcome, VolumeOutcome::Failed);
    let reason = line.reason.clone().unwrap_or_default();
    assert!(reason.contains("outside the kubelet root"), "{reason}");
    assert!(line.snapshot_id.is_none());
    drop(pods);
    let _ = std::fs::remove_file(&mount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_volume_backup_is_canceled_and_leaves_no_snapshot() {
    let mut s = setup!();
    let _provisioner = stand_in_provisioner(&s.client()).await;
    let mut nodes = Nodes::new(&s).await;
    let _agents = nodes.start_agents(&s);
    let _controller = s.start_controller(&["--agent-timeout", "60s"]);
    let ns = s.cluster.namespace("vol-cancel").await.unwrap();
    let client = s.client();
    create_all(&client, &[json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "big", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STAND_IN_CLASS,
                 "resources": {"requests": {"storage": "4Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
               "spec": {"containers": [{"name": "c", "image": "x"}],
                        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "big"}}]}})]).await;
    running_pods(&s, &ns, 1).await;
    let path = nodes
        .kubelet
        .wait_volume(&ns, "p", "big", WAIT)
        .await
        .unwrap();
    // Enough data that the copy is still running when the cancel comes.
    for i in 0..48u64 {
        std::fs::write(path.join(format!("f{i}")), tree::random_bytes(16 << 20, i)).unwrap();
    }
    s.create_backup(
        "cancel-me",
        json!({"includedNamespaces": [ns], "defaultVolumesToFsBackup": true}),
    )
    .await;
    let items = volume_backups(&s);
    let item = eventually("the volume backup to run", WAIT, || {
        let items = items.clone();
        async move {
            let list = items
                .list(&ListParams::default().labels("stowage.dev/backup-name=cancel-me"))
                .await
                .map_err(|e| e.to_string())?;
            let item = list.items.into_iter().next().ok_or("no item yet")?;
            let st = item.status.clone().unwrap_or_default();
            match (st.phase, st.progress.as_ref().map_or(0, |p| p.bytes_done)) {
                (Some(VolumePhase::InProgress), done) if done > 0 => Ok(item),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    s.backups()
        .patch(
            "cancel-me",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .unwrap();
    let b = s.wait_backup("cancel-me").await;
    assert_eq!(
        b.phase(),
        stowage_kube::api::BackupPhase::Canceled,
        "{:#?}",
        b.status
    );
    let item = items
        .get(&item.metadata.name.clone().unwrap())
        .await
        .unwrap();
    let st = item.status.unwrap();
    assert_eq!(st.phase, Some(VolumePhase::Canceled), "{st:?}");
    assert!(st.snapshot_id.is_none());
    let tag = format!(
        "stowage.dev/volume-backup-uid={}",
        item.metadata.uid.clone().unwrap()
    );
    let repo = s.repo();
    assert!(
        repo.list_snapshots()
            .unwrap()
            .iter()
            .all(|(_, snap)| !snap.tags.contains(&tag)),
        "no snapshot of the canceled volume"
    );
    check_repository(&s);
}

/// A small pseudo-random sequence for kill delays.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// Waits until the work item selected by `lp` is running (or already done).
async fn wait_running<K>(api: &Api<K>, lp: &ListParams) -> K
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + stowage_kube::api::VolumeWork,
{
    eventually("the work item to start", WAIT, || {
        let (api, lp) = (api.clone(), lp.clone());
        async move {
            let list = api.list(&lp).await.map_err(|e| e.to_string())?;
            let item = list.items.into_iter().next().ok_or("no item yet")?;
            match item.phase() {
                VolumePhase::InProgress | VolumePhase::Completed => Ok(item),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
}

/// Agents SIGKILLed at random moments while they back up and restore (half the trials each):
/// every work item still completes, taken up by the restarted agent, and the data verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_killed_mid_volume_finish_their_work() {
    let trials: u32 = std::env::var("STOWAGE_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if stowage_testkit::cluster::shared::ci() {
            10
        } else {
            2
        });
    let mut s = setup!();
    let _provisioner = stand_in_provisioner(&s.client()).await;
    let mut nodes = Nodes::new(&s).await;
    let names = nodes.names.clone();
    let mut agents: BTreeMap<String, Agent> = names
        .iter()
        .map(|n| (n.clone(), nodes.start_agent(&s, n)))
        .collect();
    let _controller = s.start_controller(&["--agent-timeout", "60s"]);
    let ns = s.cluster.namespace("vol-kill").await.unwrap();
    let client = s.client();
    create_all(&client, &[json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STAND_IN_CLASS,
                 "resources": {"requests": {"storage": "1Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
               "spec": {"containers": [{"name": "c", "image": "x"}],
                        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}})]).await;
    running_pods(&s, &ns, 1).await;
    let path = nodes
        .kubelet
        .wait_volume(&ns, "p", "data", WAIT)
        .await
        .unwrap();
    tree::awkward_tree(&path);
    let mut seed = 0x5eed_u64;
    let mut last_backup = (String::new(), String::new());
    // Trials whose kill landed while the item ran (the rest landed after it ended).
    let mut interrupted = 0;
    for trial in 0..trials {
        // New data each trial, so each backup has work to do.
        for i in 0..6u64 {
            let data = tree::random_bytes(8 << 20, u64::from(trial) * 100 + i);
            std::fs::write(path.join(format!("t{trial}-{i}")), data).unwrap();
        }
        let expected = format!("{:#?}", tree::manifest(&path));
        let name = format!("kill-{trial}");
        s.create_backup(
            &name,
            json!({"includedNamespaces": [ns], "defaultVolumesToFsBackup": true}),
        )
        .await;
        let items = volume_backups(&s);
        let lp = ListParams::default().labels(&format!("stowage.dev/backup-name={name}"));
        let item = wait_running(&items, &lp).await;
        tokio::time::sleep(Duration::from_millis(next(&mut seed) % 1500)).await;
        let node = item.spec.node.clone();
        drop(agents.remove(&node));
        agents.insert(node.clone(), nodes.start_agent(&s, &node));
        let b = s.wait_backup(&name).await;
        assert_completed(&b);
        let item = items.list(&lp).await.unwrap().items.remove(0);
        let st = item.status.unwrap();
        assert_eq!(st.phase, Some(VolumePhase::Completed), "{st:?}");
        if st.attempt > 1 {
            interrupted += 1;
        }
        // The snapshot holds exactly the volume: restore it aside and compare.
        let aside = s.dir.path().join(format!("aside-{trial}"));
        let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .args([
                "restore",
                st.snapshot_id.as_deref().unwrap(),
                "--no-cache",
                "-r",
            ])
            .arg(s.repo_path())
            .arg("--target")
            .arg(&aside)
            .env("STOWAGE_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let restored = aside.join(Path::new(&path).file_name().unwrap());
        assert_eq!(
            format!("{:#?}", tree::manifest(&restored)),
            expected,
            "backup trial {trial}"
        );
        std::fs::remove_dir_all(&aside).unwrap();
        last_backup = (name, expected);
    }
    // Restores of the last backup into new namespaces (clones), the agent writing each killed.
    let (backup, expected) = last_backup;
    let restores: Api<VolumeRestore> = Api::namespaced(client.clone(), &s.namespace);
    for trial in 0..trials {
        let target = format!("{ns}-r{trial}");
        let name = format!("kill-r{trial}");
        let api: Api<Restore> = Api::namespaced(client.clone(), &s.namespace);
        let r: Restore = serde_json::from_value(json!({
            "apiVersion": "stowage.dev/v1alpha1", "kind": "Restore", "metadata": {"name": name},
            "spec": {"backupName": backup, "namespaceMapping": {ns.clone(): target.clone()}}}))
        .unwrap();
        api.create(&PostParams::default(), &r).await.unwrap();
        let lp = ListParams::default().labels(&format!(
            "stowage.dev/owner-uid={}",
            api.get(&name).await.unwrap().metadata.uid.unwrap()
        ));
        let item = wait_running(&restores, &lp).await;
        tokio::time::sleep(Duration::from_millis(next(&mut seed) % 1000)).await;
        let node = item.spec.node.clone();
        drop(agents.remove(&node));
        agents.insert(node.clone(), nodes.start_agent(&s, &node));
        let done = eventually(&format!("restore {name} to end"), WAIT, || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let r = api.get(&name).await.map_err(|e| e.to_string())?;
                match r.phase() {
                    p if p.is_terminal() => Ok(r),
                    p => Err(format!("phase {p}")),
                }
            }
        })
        .await;
        assert_eq!(done.phase(), RestorePhase::Completed, "{:#?}", done.status);
        let v = done.status.unwrap().verification.unwrap();
        assert_eq!((v.volumes_verified, v.volumes_failed), (1, 0), "{v:?}");
        let item = restores.list(&lp).await.unwrap().items.remove(0);
        if item.status.unwrap().attempt > 1 {
            interrupted += 1;
        }
        let pods = running_pods(&s, &target, 1).await;
        assert!(pods.contains_key("p"));
        let path = nodes
            .kubelet
            .wait_volume(&target, "p", "data", WAIT)
            .await
            .unwrap();
        assert_eq!(
            format!("{:#?}", tree::manifest(&path)),
            expected,
            "restore trial {trial}"
        );
        delete_namespace(&s, &target).await;
    }
    eprintln!(
        "{interrupted} of {} kills landed while the item ran",
        2 * trials
    );
    if trials >= 5 {
        assert!(interrupted > 0, "no kill landed while an item ran");
    }
    check_repository(&s);
}

/// A volume on a node whose agent never reports fails with that reason once the agent timeout
/// has passed; the backup ends PartiallyFailed, not stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_on_a_node_without_an_agent_fails_after_the_timeout() {
    let mut s = setup!();
    let _provisioner = stand_in_provisioner(&s.client()).await;
    let nodes = Nodes::new(&s).await;
    let silent = nodes.names[1].clone();
    let _controller = s.start_controller(&["--agent-timeout", "15s"]);
    let ns = s.cluster.namespace("vol-silent").await.unwrap();
    let client = s.client();
    create_all(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STAND_IN_CLASS,
                 "resources": {"requests": {"storage": "1Gi"}}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
               "spec": {"nodeName": silent, "containers": [{"name": "c", "image": "x"}],
                        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}}),
        ],
    )
    .await;
    running_pods(&s, &ns, 1).await;
    let b = s
        .backup(
            "silent",
            json!({"includedNamespaces": [ns], "defaultVolumesToFsBackup": true}),
        )
        .await;
    assert_eq!(
        b.phase(),
        stowage_kube::api::BackupPhase::PartiallyFailed,
        "{:#?}",
        b.status
    );
    let line = &b.status.as_ref().unwrap().volumes[0];
    assert_eq!(line.outcome, VolumeOutcome::Failed);
    let reason = line.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "the agent of node {silent} has not reported for 15s"
        )),
        "{reason}"
    );
    let item = items_of_backup(&s, "silent").await.remove(0);
    assert_eq!(item.status.unwrap().phase, Some(VolumePhase::Failed));
}
