//! The kubelet stand-in against a cluster of its own: bound volumes appear where the kubelet
//! puts them, go with their pod, and keep their data for the next pod, on another node.
//! Needs the binaries (STOWAGE_TESTENV_BIN or scripts/testenv.sh; skipped without them outside
//! CI) and root, for the bind mounts.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use stowage_testkit::cluster::shared::{binaries_or_skip, eventually};
use stowage_testkit::cluster::{Cluster, ClusterOptions};
use stowage_testkit::kubelet::KubeletVolumesStandIn;
use stowage_testkit::tree::random_bytes;

const WAIT: Duration = Duration::from_secs(60);
const NS: &str = "default";
const BLOCK_OFFSET: u64 = 1 << 20;

async fn create<K>(api: &Api<K>, value: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// A static CSI PV and a claim bound to it by name.
async fn static_volume(client: &kube::Client, claim: &str, mode: &str, size: &str) {
    let pv = format!("pv-{claim}");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    create(&pvs, json!({
        "metadata": {"name": pv},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "", "volumeMode": mode,
                 "csi": {"driver": "stand-in.csi.stowage.test", "volumeHandle": pv}}}))
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    create(
        &claims,
        json!({
        "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                 "volumeMode": mode, "resources": {"requests": {"storage": size}}}}),
    )
    .await;
}

/// A pod on `node` that mounts claim `fs` and uses claim `blk` as a device.
async fn pod_on(client: &kube::Client, name: &str, node: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    create(
        &pods,
        json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node,
                 "containers": [{"name": "c", "image": "busybox",
                                 "volumeMounts": [{"name": "fs", "mountPath": "/data"}],
                                 "volumeDevices": [{"name": "blk", "devicePath": "/dev/blk"}]}],
                 "volumes": [{"name": "fs", "persistentVolumeClaim": {"claimName": "fs"}},
                             {"name": "blk", "persistentVolumeClaim": {"claimName": "blk"}}]}}),
    )
    .await;
    pods.get(name).await.unwrap().metadata.uid.unwrap()
}

async fn delete_pod(client: &kube::Client, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.delete(name, &DeleteParams::default()).await.unwrap();
    eventually("the pod gone", WAIT, || async {
        match pods.get_opt(name).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// The mount points below `dir`, as the kernel lists them.
fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| Path::new(p).starts_with(&dir))
        .collect()
}

/// What a crashed run leaves behind: a bind mount below the base.
fn leave_a_stale_mount(base: &Path) {
    let (from, onto) = (
        base.join("pv-data/old"),
        base.join("nodes/node-0/pods/old/mount"),
    );
    fs::create_dir_all(&from).unwrap();
    fs::create_dir_all(&onto).unwrap();
    let status = std::process::Command::new("mount")
        .arg("--bind")
        .args([&from, &onto])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mounts_below(base).len(), 1);
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// The Block volume's symlink stays inside the node's root and leads to the device.
fn check_block_link(link: &Path, root: &Path) {
    let target = fs::read_link(link).unwrap();
    assert!(target.is_absolute(), "{}", target.display());
    assert!(
        target.starts_with(root),
        "{} outside the root",
        target.display()
    );
    assert!(link.canonicalize().unwrap().starts_with(root));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_volume_follows_its_pod_and_keeps_its_data_for_the_next_pod_on_another_node() {
    let Some(bin) = binaries_or_skip() else {
        return;
    };
    let options = ClusterOptions {
        bin_dir: Some(bin),
        ..Default::default()
    };
    let cluster = Cluster::start(options).await.unwrap();
    let client = cluster.client();
    let base = tempfile::tempdir().unwrap();
    leave_a_stale_mount(base.path());
    let kubelet = KubeletVolumesStandIn::start(client.clone(), base.path(), cluster.node_names())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mounts_below(base.path()), Vec::<String>::new(), "stale");
    static_volume(&client, "fs", "Filesystem", "1Gi").await;
    static_volume(&client, "blk", "Block", "64Mi").await;

    // First pod, on node-0: both volumes laid out as the kubelet does.
    let uid = pod_on(&client, "first", "node-0").await;
    let root0 = kubelet.root("node-0");
    let fs_path = kubelet
        .wait_volume(NS, "first", "fs", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let expected: PathBuf = [&uid, "volumes", "kubernetes.io~csi", "pv-fs", "mount"]
        .iter()
        .collect();
    assert_eq!(fs_path, root0.join("pods").join(expected));
    fs::write(fs_path.join("hello.txt"), b"written on node-0").unwrap();
    assert_eq!(
        fs::read(kubelet.pv_data("pv-fs").join("hello.txt")).unwrap(),
        b"written on node-0"
    );

    let link = kubelet.wait_volume(NS, "first", "blk", WAIT).await.unwrap();
    assert_eq!(
        link,
        root0.join(format!("pods/{uid}/volumeDevices/kubernetes.io~csi/pv-blk"))
    );
    check_block_link(&link, &root0);
    let device = kubelet.block_device("pv-blk").unwrap();
    eprintln!("block volume backed by {}", device.display());
    let image = kubelet.pv_data("pv-blk");
    assert_eq!(fs::metadata(&image).unwrap().len(), 64 << 20);
    let block_bytes = random_bytes(8192, 7);
    let mut dev = fs::OpenOptions::new().write(true).open(&link).unwrap();
    dev.seek(SeekFrom::Start(BLOCK_OFFSET)).unwrap();
    dev.write_all(&block_bytes).unwrap();
    dev.sync_all().unwrap();
    drop(dev);
    assert_eq!(read_at(&image, BLOCK_OFFSET, 8192), block_bytes);
    let all = kubelet.wait_pod_volumes(NS, "first", WAIT).await.unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["blk", "fs"]);

    // Gone with its pod; the data stays.
    delete_pod(&client, "first").await;
    let pod_dir = root0.join("pods").join(&uid);
    eventually("the first pod's directory removed", WAIT, || async {
        (!pod_dir.exists())
            .then_some(())
            .ok_or(format!("{:?}", mounts_below(&root0)))
    })
    .await;
    assert_eq!(mounts_below(&root0), Vec::<String>::new());
    assert_eq!(
        fs::read(kubelet.pv_data("pv-fs").join("hello.txt")).unwrap(),
        b"written on node-0"
    );

    // Second pod, on node-1: the same data.
    let uid = pod_on(&client, "second", "node-1").await;
    let root1 = kubelet.root("node-1");
    let fs_path = kubelet.wait_volume(NS, "second", "fs", WAIT).await.unwrap();
    assert!(fs_path.starts_with(root1.join("pods").join(&uid)));
    assert_eq!(
        fs::read(fs_path.join("hello.txt")).unwrap(),
        b"written on node-0"
    );
    let link = kubelet
        .wait_volume(NS, "second", "blk", WAIT)
        .await
        .unwrap();
    check_block_link(&link, &root1);
    assert_eq!(read_at(&link, BLOCK_OFFSET, 8192), block_bytes);

    // Stopping unmounts everything and detaches the loop device.
    kubelet.stop();
    assert_eq!(mounts_below(base.path()), Vec::<String>::new());
    if device.starts_with("/dev") {
        let out = std::process::Command::new("losetup")
            .arg("-j")
            .arg(&image)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    }
}
