//! The harness itself: clusters of its own, started here (next to the suite's shared one when
//! scripts/test.sh runs), independent of each other, and gone without a trace when dropped.
//! Needs the binaries (STOWAGE_TESTENV_BIN or scripts/testenv.sh); skipped without them outside CI.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
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
async fn a_cluster_writes_its_admin_kubeconfig_last_and_it_works_with_a_fresh_client() {
    let Some(bin) = binaries_or_skip() else {
        return;
    };
    let cluster = Cluster::start(options(&bin, 1)).await.unwrap();
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
