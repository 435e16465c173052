//! Each filter and selector of a Backup against the real control plane, with the exact set of
//! objects it must store (Velero's semantics, velero.md §2.2 to §2.5): namespaces and globs,
//! label selectors and their union, the old resource filters with the tri-state
//! `includeClusterResources`, the scoped filters, the exclude label, and related objects.

mod k8s;

use k8s::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

macro_rules! setup {
    () => {
        match Setup::new().await {
            Some(s) => s,
            None => return,
        }
    };
}

struct World {
    a: String,
    b: String,
    c: String,
    pv: String,
}

impl World {
    /// The keys of the objects this test made (other objects, such as each namespace's
    /// `kube-root-ca.crt` or `default` ServiceAccount, are not compared).
    fn ours(&self, keys: &[String]) -> BTreeSet<String> {
        keys.iter()
            .filter(|k| {
                let who = k.split_once(' ').unwrap().1;
                let name = who.rsplit('/').next().unwrap();
                name.starts_with("a-")
                    || name.starts_with("b-")
                    || name.starts_with("c-")
                    || name == self.pv
                    || [&self.a, &self.b, &self.c].contains(&&name.to_string())
            })
            .cloned()
            .collect()
    }
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

async fn world(s: &Setup) -> World {
    let client = s.client();
    let a = s.cluster.namespace("flt-a").await.unwrap();
    let b = s.cluster.namespace("flt-b").await.unwrap();
    let c = s.cluster.namespace("flt-c").await.unwrap();
    let pv = format!("pv-{a}");
    let cm = |ns: &str, name: &str, labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": {"k": name}});
    create_all(
        &client,
        &[
            cm(&a, "a-web", json!({"app": "web"})),
            cm(&a, "a-db", json!({"app": "db"})),
            cm(&a, "a-excluded", json!({"app": "web", "stowage.dev/exclude-from-backup": "true"})),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a-secret", "namespace": a, "labels": {"app": "web"}}, "stringData": {"x": "y"}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                   "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/x"}, "storageClassName": ""}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "a-data", "namespace": a},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": pv, "storageClassName": ""}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a-pod", "namespace": a, "labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "c", "image": "example/c:1"}],
                            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "a-data"}}]}}),
            cm(&b, "b-web", json!({"app": "web", "tier": "front"})),
            cm(&b, "b-other", json!({})),
            cm(&c, "c-cm", json!({"app": "web"})),
        ],
    )
    .await;
    // Namespace c is kept out of every backup by its label.
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    namespaces
        .patch(
            &c,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"labels": {"stowage.dev/exclude-from-backup": "true"}}}),
            ),
        )
        .await
        .unwrap();
    let pvcs: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        kube::Api::namespaced(client.clone(), &a);
    stowage_testkit::cluster::shared::eventually("the PVC Bound", WAIT, || {
        let pvcs = pvcs.clone();
        async move {
            let p = pvcs.get("a-data").await.map_err(|e| e.to_string())?;
            match p.status.and_then(|s| s.phase).as_deref() {
                Some("Bound") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    World { a, b, c, pv }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_selectors_select_exactly_what_velero_does() {
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let w = world(&s).await;
    let (a, b, c, pv) = (w.a.clone(), w.b.clone(), w.c.clone(), w.pv.clone());
    let k = |gr: &str, ns: &str, name: &str| format!("{gr} {ns}/{name}");
    let cl = |gr: &str, name: &str| format!("{gr} {name}");
    let mut n = 0;
    let mut run = |spec: Value| {
        n += 1;
        let name = format!("f{n}");
        let s = &s;
        async move {
            let backup = s.backup(&name, spec.clone()).await;
            assert_completed(&backup);
            object_keys(&s.files(&backup))
        }
    };

    // A label selector: the matching objects, their related ones (the pod's PVC, its PV),
    // the namespace they live in; not the excluded-by-label object.
    let keys =
        run(json!({"includedNamespaces": [a], "labelSelector": {"matchLabels": {"app": "web"}}}))
            .await;
    assert_eq!(
        w.ours(&keys),
        set(&[
            k("configmaps", &a, "a-web"),
            k("secrets", &a, "a-secret"),
            k("pods", &a, "a-pod"),
            k("persistentvolumeclaims", &a, "a-data"),
            cl("persistentvolumes", &pv),
            cl("namespaces", &a),
        ]),
        "labelSelector"
    );

    // orLabelSelectors: the union, over two namespaces.
    let keys = run(json!({"includedNamespaces": [a, b], "orLabelSelectors": [
        {"matchLabels": {"app": "db"}}, {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}]})).await;
    assert_eq!(
        w.ours(&keys),
        set(&[
            k("configmaps", &a, "a-db"),
            k("configmaps", &b, "b-web"),
            cl("namespaces", &a),
            cl("namespaces", &b)
        ]),
        "orLabelSelectors"
    );

    // A glob of namespaces and the old resource filter: every config map of a and b (c is
    // excluded by its label), nothing else: not even the namespaces, which the include list
    // does not name (as in Velero; a restore creates them).
    let glob = format!("{}?", &a[..a.len() - 1]);
    let keys = run(json!({"includedNamespaces": [glob, b, c], "includedResources": ["cm"]})).await;
    let ours = w.ours(&keys);
    assert_eq!(
        ours,
        set(&[
            k("configmaps", &a, "a-web"),
            k("configmaps", &a, "a-db"),
            k("configmaps", &b, "b-web"),
            k("configmaps", &b, "b-other")
        ]),
        "glob + includedResources"
    );
    assert!(
        !keys.iter().any(|k| k.contains(&c)),
        "namespace {c} is labelled out: {keys:#?}"
    );
    assert!(
        keys.iter().all(|k| k.starts_with("configmaps ")),
        "{keys:#?}"
    );
    assert!(!ours.contains(&k("configmaps", &a, "a-excluded")));

    // excludedResources: no secret at all.
    let keys = run(json!({"includedNamespaces": [a], "excludedResources": ["secrets"]})).await;
    assert!(!keys.iter().any(|k| k.starts_with("secrets ")), "{keys:#?}");
    assert!(keys.contains(&k("pods", &a, "a-pod")));

    // includeClusterResources false: no cluster-scoped object, not even related ones or the
    // namespace.
    let keys = run(json!({"includedNamespaces": [a], "includeClusterResources": false})).await;
    assert!(
        keys.iter()
            .all(|k| k.split_once(' ').unwrap().1.contains('/')),
        "cluster objects with false: {keys:#?}"
    );
    assert!(keys.contains(&k("persistentvolumeclaims", &a, "a-data")));

    // Only pods: the pod; its PVC is not pulled in (its type is not included), so neither is
    // the PV.
    let keys = run(json!({"includedNamespaces": [a], "includedResources": ["pods"]})).await;
    assert_eq!(
        w.ours(&keys),
        set(&[k("pods", &a, "a-pod")]),
        "includedResources pods"
    );
    // With the PVCs included but not matching the selector, the pod's claim comes in as a
    // related object; its volume only when the include list names volumes (Velero's
    // ShouldExclude for a cluster-scoped type with includeClusterResources unset), and then
    // only that volume: cluster-scoped types are not listed in a namespace-limited backup.
    let keys = run(
        json!({"includedNamespaces": [a], "includedResources": ["pods", "pvc", "namespaces"],
                          "labelSelector": {"matchLabels": {"app": "web"}}}),
    )
    .await;
    assert_eq!(
        w.ours(&keys),
        set(&[
            k("pods", &a, "a-pod"),
            k("persistentvolumeclaims", &a, "a-data"),
            cl("namespaces", &a)
        ]),
        "related objects"
    );
    let keys = run(
        json!({"includedNamespaces": [a], "includedResources": ["pods", "pvc", "pv"],
                          "labelSelector": {"matchLabels": {"app": "web"}}}),
    )
    .await;
    assert_eq!(
        w.ours(&keys),
        set(&[
            k("pods", &a, "a-pod"),
            k("persistentvolumeclaims", &a, "a-data"),
            cl("persistentvolumes", &pv)
        ]),
        "related volume"
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("persistentvolumes "))
            .count(),
        1,
        "{keys:#?}"
    );

    // includeClusterResources true: every cluster-scoped type is listed (nodes, every PV).
    let keys = run(json!({"includedNamespaces": [a], "includeClusterResources": true})).await;
    assert!(
        keys.iter().any(|k| k.starts_with("nodes ")),
        "no nodes with true: {keys:#?}"
    );
    assert!(keys.contains(&cl("persistentvolumes", &pv)));
    assert!(keys.contains(&cl("namespaces", &a)));

    // The scoped filters: config maps of a, and every persistent volume.
    let keys = run(
        json!({"includedNamespaces": [a], "includedNamespaceScopedResources": ["configmaps"],
                          "includedClusterScopedResources": ["persistentvolumes"]}),
    )
    .await;
    assert!(
        keys.iter().all(|k| k.starts_with("configmaps ")
            || k.starts_with("persistentvolumes ")
            || k.starts_with("namespaces ")),
        "{keys:#?}"
    );
    assert!(
        keys.contains(&cl("persistentvolumes", &pv))
            && keys.contains(&k("configmaps", &a, "a-web"))
    );
}
