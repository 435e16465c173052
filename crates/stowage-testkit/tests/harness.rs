//! The harness itself: clusters of its own, started here (next to the suite's shared one when
//! scripts/test.sh runs), independent of each other, and gone without a trace when dropped.
//! Needs the binaries (STOWAGE_TESTENV_BIN or scripts/testenv.sh); skipped without them outside CI.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use stowage_testkit::cluster::shared::binaries_or_skip;
use stowage_testkit::cluster::{
    client_from_kubeconfig, config_from_kubeconfig, Cluster, ClusterOptions,
};

fn options(bin: &Path, nodes: usize) -> ClusterOptions {
    ClusterOptions {
        nodes,
        bin_dir: Some(bin.to_path_buf()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_run_at_once_independently_and_leave_no_process_behind() {
    let Some(bin) = binaries_or_skip() else {
        return;
    };
    let (a, b) = tokio::join!(
        Cluster::start(options(&bin, 1)),
        Cluster::start(options(&bin, 3))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.server(), b.server());
    assert!(
        a.server().starts_with("https://127.0.0.1:"),
        "{}",
        a.server()
    );

    // Each has its own nodes, objects and identities.
    for (cluster, n) in [(&a, 1), (&b, 3)] {
        let nodes: Api<Node> = Api::all(cluster.client());
        assert_eq!(
            nodes
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            n
        );
        assert_eq!(cluster.node_names().len(), n);
    }
    let namespaces: Api<Namespace> = Api::all(a.client());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "only-in-a" } })).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let in_b: Api<Namespace> = Api::all(b.client());
    assert!(in_b.get_opt("only-in-a").await.unwrap().is_none());
    // A's admin is nobody to B: B's serving certificate is not trusted by A's kubeconfig, and
    // past that check B does not know A's client CA.
    let mut a_to_b = config_from_kubeconfig(a.kubeconfig()).await.unwrap();
    a_to_b.cluster_url = b.server().parse().unwrap();
    let maps: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(a_to_b.clone()).unwrap(), "default");
    assert!(
        maps.list(&ListParams::default()).await.is_err(),
        "B's certificate is trusted by A's CA"
    );
    a_to_b.accept_invalid_certs = true;
    let maps: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(a_to_b).unwrap(), "default");
    match maps.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 401, "{e:?}"),
        other => panic!("A's admin certificate on B: expected 401, got {other:?}"),
    }

    let pids: Vec<u32> = a
        .pids()
        .into_iter()
        .chain(b.pids())
        .map(|(_, pid)| pid)
        .collect();
    assert_eq!(pids.len(), 10, "five components each");
    let dirs = [a.dir().to_path_buf(), b.dir().to_path_buf()];
    drop(a);
    drop(b);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived its cluster"
        );
    }
    for dir in dirs {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
}

#[tokio::test]
async fn a_cluster_installs_the_crds_it_is_given_before_its_controllers_and_writes_its_kubeconfig()
{
    let Some(bin) = binaries_or_skip() else {
        return;
    };
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "gadgets.harness.stowage.test" },
        "spec": {
            "group": "harness.stowage.test",
            "scope": "Namespaced",
            "names": { "plural": "gadgets", "singular": "gadget", "kind": "Gadget" },
            "versions": [{ "name": "v1", "served": true, "storage": true, "schema": {
                "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
            }}],
        },
    }))
    .unwrap();
    let cluster = Cluster::start(ClusterOptions {
        crds: vec![crd],
        ..options(&bin, 1)
    })
    .await
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    let installed = crds.get("gadgets.harness.stowage.test").await.unwrap();
    let conditions = installed
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"),
        "{conditions:?}"
    );

    let kubeconfig = cluster.dir().join("kubeconfig");
    assert_eq!(cluster.kubeconfig(), kubeconfig);
    let client = client_from_kubeconfig(&kubeconfig).await.unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert!(version.git_version.starts_with("v1."), "{version:?}");
    for (name, _) in cluster.pids() {
        let log = cluster.dir().join("logs").join(format!("{name}.log"));
        assert!(log.exists(), "{} missing", log.display());
    }
}

/// The processes whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may contain spaces, so split after its ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Gone, or a zombie waiting for whoever inherited it: either way no longer running.
fn not_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn a_cluster_owner_killed_with_sigkill_takes_every_component_with_it() {
    let Some(bin) = binaries_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Its messages go to a file beside the cluster (not a pipe nobody reads), for the failure.
    let owner_log = dir.path().with_extension("owner.log");
    let mut owner = std::process::Command::new(env!("CARGO_BIN_EXE_stowage-cluster"))
        .args(["up", dir.path().to_str().unwrap(), "--nodes", "1"])
        .env("STOWAGE_TESTENV_BIN", &bin)
        .stderr(std::fs::File::create(&owner_log).unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !dir.path().join("kubeconfig").exists() {
        assert!(
            owner.try_wait().unwrap().is_none(),
            "stowage-cluster exited during start-up:\n{}",
            std::fs::read_to_string(&owner_log).unwrap_or_default()
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "no kubeconfig after 120 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let components = children_of(owner.id());
    assert_eq!(
        components.len(),
        5,
        "etcd, apiserver, controller manager, scheduler, kwok"
    );

    // No Drop runs: only PR_SET_PDEATHSIG can stop them now.
    owner.kill().unwrap();
    owner.wait().unwrap();
    let start = std::time::Instant::now();
    while !components.iter().all(|&pid| not_running(pid)) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "components still running after their owner was killed: {components:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
