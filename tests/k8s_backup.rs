//! Kubernetes backups end to end, against the real control plane: the real `stowage controller`
//! (as its own ServiceAccount with the ClusterRole of deploy/rbac/controller.yaml) backs up a
//! sample application into a filesystem storage location, and the repository is read back.

mod k8s;

use k8s::*;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use stowage_kube::api::{BackupPhase, BackupStorageLocation, LocationPhase};
use stowage_testkit::cluster::shared::eventually;

macro_rules! setup {
    () => {
        match Setup::new().await {
            Some(s) => s,
            None => return,
        }
    };
}

fn random_text(len: usize, seed: u64) -> String {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

/// The sample application of the issue, in namespace `ns`; its cluster-scoped parts are named
/// after `ns`. Returns the names of the cluster-scoped objects it made.
async fn sample_app(
    client: &kube::Client,
    ns: &str,
    bulk: usize,
) -> (String, String, String, String) {
    let group = format!("{ns}.example.com");
    let crd_name = format!("widgets.{group}");
    let pv = format!("pv-{ns}");
    let reader = format!("{ns}-reader");
    let pc = format!("{ns}-high");
    create_all(client, &[json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    })])
    .await;
    wait_established(client, &crd_name).await;
    let labels = json!({"app": "web"});
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns, "labels": labels}, "data": {"mode": "production"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-password", "namespace": ns}, "stringData": {"password": "hunter2"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "web", "namespace": ns},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "web", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "web"},
               "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": ns}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": reader},
               "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": reader},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
               "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": ns}]}),
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": pc}, "value": 1000}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": format!("/tmp/{pv}")},
                        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": ""}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": pv, "storageClassName": ""}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns, "labels": labels},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"serviceAccountName": "web", "priorityClassName": pc,
                                              "containers": [{"name": "web", "image": "example/web:1"}],
                                              "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
               "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                        "template": {"metadata": {"labels": {"app": "db"}},
                                     "spec": {"containers": [{"name": "db", "image": "example/db:1"}]}}}}),
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "blue", "namespace": ns}, "spec": {"size": 3}}),
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "green", "namespace": ns}, "spec": {"size": 5}}),
    ];
    for i in 0..bulk {
        objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("bulk-{i:04}"), "namespace": ns},
                            "data": {"payload": random_text(3000, i as u64 + 7)}}));
    }
    create_all(client, &objects).await;
    (crd_name, pv, reader, pc)
}

/// Waits until the PVC is Bound and the Deployment's pod exists (so the backup sees them).
async fn app_settled(client: &kube::Client, ns: &str) {
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), ns);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    eventually("the PVC Bound and the pods Running", WAIT, || {
        let (pvcs, pods) = (pvcs.clone(), pods.clone());
        async move {
            let pvc = pvcs.get("data").await.map_err(|e| e.to_string())?;
            let bound = pvc.status.and_then(|s| s.phase).as_deref() == Some("Bound");
            let running = pods
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            if bound && running >= 2 {
                Ok(())
            } else {
                Err(format!("bound {bound}, running pods {running}"))
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backs_up_a_sample_application_exactly() {
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let client = s.client();
    let app = s.cluster.namespace("app").await.unwrap();
    let other = s.cluster.namespace("other").await.unwrap();
    create_all(&client, &[json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "elsewhere", "namespace": other}})]).await;
    let (crd, pv, reader, pc) = sample_app(&client, &app, 300).await;
    app_settled(&client, &app).await;

    // The location becomes Available (and its repository is created on first use).
    let bsls: Api<BackupStorageLocation> = Api::namespaced(client.clone(), &s.namespace);
    eventually("the location Available", WAIT, || {
        let bsls = bsls.clone();
        async move {
            let b = bsls.get("default").await.map_err(|e| e.to_string())?;
            match b.status.as_ref().and_then(|s| s.phase) {
                Some(LocationPhase::Available) => Ok(()),
                other => Err(format!("{other:?}: {:?}", b.status)),
            }
        }
    })
    .await;

    let first = s
        .backup("first", json!({"includedNamespaces": [app]}))
        .await;
    assert_completed(&first);
    let files = s.files(&first);
    let keys: BTreeSet<String> = object_keys(&files).into_iter().collect();
    let ns_key = |gr: &str, name: &str| format!("{gr} {app}/{name}");
    for must in [
        ns_key("configmaps", "settings"),
        ns_key("configmaps", "bulk-0299"),
        ns_key("secrets", "db-password"),
        ns_key("serviceaccounts", "web"),
        ns_key("roles.rbac.authorization.k8s.io", "web"),
        ns_key("rolebindings.rbac.authorization.k8s.io", "web"),
        ns_key("services", "web"),
        ns_key("deployments.apps", "web"),
        ns_key("statefulsets.apps", "db"),
        ns_key("persistentvolumeclaims", "data"),
        ns_key(&crd, "blue"),
        ns_key(&crd, "green"),
        format!("namespaces {app}"),
        format!("persistentvolumes {pv}"),
        format!("clusterrolebindings.rbac.authorization.k8s.io {reader}"),
        format!("clusterroles.rbac.authorization.k8s.io {reader}"),
        format!("priorityclasses.scheduling.k8s.io {pc}"),
        format!("customresourcedefinitions.apiextensions.k8s.io {crd}"),
    ] {
        assert!(
            keys.contains(&must),
            "{must} missing; the backup holds {keys:#?}"
        );
    }
    assert!(
        keys.iter().any(|k| k.starts_with("pods ")),
        "the pods: {keys:#?}"
    );
    // Nothing of another namespace, and no cluster-scoped object but the related ones.
    let allowed_cluster: BTreeSet<String> = [
        format!("namespaces {app}"),
        format!("persistentvolumes {pv}"),
        format!("clusterrolebindings.rbac.authorization.k8s.io {reader}"),
        format!("clusterroles.rbac.authorization.k8s.io {reader}"),
        format!("priorityclasses.scheduling.k8s.io {pc}"),
        format!("customresourcedefinitions.apiextensions.k8s.io {crd}"),
    ]
    .into();
    for k in &keys {
        let (_, who) = k.split_once(' ').unwrap();
        match who.split_once('/') {
            Some((ns, _)) => assert_eq!(ns, app, "{k} is of another namespace"),
            None => assert!(allowed_cluster.contains(k), "unexpected cluster-scoped {k}"),
        }
    }

    // Each object file is the object as the API server returns it (unless it changed since).
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let mut compared = 0;
    for (path, data) in &files {
        let Some(rest) = path.strip_prefix("resources/") else {
            continue;
        };
        let stored: Value = serde_json::from_slice(data).unwrap();
        let api_version = stored["apiVersion"].as_str().unwrap();
        let kind = stored["kind"].as_str().unwrap();
        let gvk = kube::api::GroupVersionKind::try_from(&kube::api::TypeMeta {
            api_version: api_version.into(),
            kind: kind.into(),
        })
        .unwrap();
        let (ar, caps) = discovery.resolve_gvk(&gvk).unwrap();
        let name = stored["metadata"]["name"].as_str().unwrap();
        let api: Api<DynamicObject> = match stored["metadata"]["namespace"].as_str() {
            Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
                Api::namespaced_with(client.clone(), ns, &ar)
            }
            _ => Api::all_with(client.clone(), &ar),
        };
        let live = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
        assert!(
            rest.starts_with(&format!(
                "{}{}/",
                ar.plural,
                if ar.group.is_empty() {
                    String::new()
                } else {
                    format!(".{}", ar.group)
                }
            )),
            "{path}"
        );
        if live["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"] {
            assert_eq!(stored, live, "{path} differs from the API server's object");
            compared += 1;
        }
    }
    assert!(
        compared * 10 >= keys.len() * 9,
        "only {compared} of {} objects were unchanged",
        keys.len()
    );

    // The records under metadata/, and the status.
    let status = first.status.clone().unwrap();
    assert_eq!(files["metadata/version"], b"1\n");
    let ended: Value = serde_json::from_slice(&files["metadata/backup.json"]).unwrap();
    assert_eq!(ended["status"]["phase"], "Completed");
    assert_eq!(ended["metadata"]["uid"], json!(first.metadata.uid));
    let list: Value = serde_json::from_slice(&files["metadata/resource-list.json"]).unwrap();
    assert!(list["v1/ConfigMap"]
        .as_array()
        .unwrap()
        .contains(&json!(format!("{app}/settings"))));
    assert!(list["v1/PersistentVolume"]
        .as_array()
        .unwrap()
        .contains(&json!(pv)));
    let results: Value = serde_json::from_slice(&files["metadata/results.json"]).unwrap();
    assert_eq!(results["errors"], json!([]));
    let log = String::from_utf8(files["metadata/log.txt"].clone()).unwrap();
    assert!(log.contains("collected"), "{log}");
    assert_eq!(status.format_version.as_deref(), Some("1"));
    assert_eq!(
        status.progress.as_ref().unwrap().items_backed_up as usize,
        keys.len()
    );
    assert_eq!(status.errors, 0);
    assert!(
        status.snapshot_id.is_some()
            && status.start_timestamp.is_some()
            && status.completion_timestamp.is_some()
    );
    let ttl = status
        .expiration
        .unwrap()
        .0
        .duration_since(status.start_timestamp.unwrap().0);
    assert_eq!(ttl.as_secs() / 3600, 720, "default ttl");
    assert!(!keys.iter().any(|k| k.contains("elsewhere")));

    // Unchanged objects deduplicate: a second backup adds under 1% of the first's bytes.
    let second = s
        .backup("second", json!({"includedNamespaces": [app]}))
        .await;
    assert_completed(&second);
    let (a, b) = (
        first.status.unwrap().bytes_added.unwrap(),
        second.status.unwrap().bytes_added.unwrap(),
    );
    assert!(b * 100 < a, "second backup added {b} bytes, the first {a}");

    // The Backup has events.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), &s.namespace);
    let reasons: BTreeSet<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains("Started") && reasons.contains("Completed"),
        "{reasons:?}"
    );

    // The repository is sound.
    check_repository(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_specs_with_a_message_per_problem() {
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let b = s
        .backup(
            "bad",
            json!({
                "storageLocation": "nowhere",
                "includedNamespaces": ["[unclosed"],
                "includedResources": ["nosuchthings"],
                "labelSelector": {"matchLabels": {"a": "b"}},
                "orLabelSelectors": [{"matchLabels": {"c": "d"}}],
            }),
        )
        .await;
    assert_eq!(b.phase(), BackupPhase::FailedValidation);
    let problems = b.status.unwrap().validation_errors;
    let all = problems.join("\n");
    for needle in ["nowhere", "[unclosed", "nosuchthings", "orLabelSelectors"] {
        assert!(all.contains(needle), "no problem names {needle:?}: {all}");
    }
    assert!(problems.len() >= 4, "{problems:#?}");

    // A read-only location takes no backups.
    let bsls: Api<BackupStorageLocation> = Api::namespaced(s.client(), &s.namespace);
    bsls.patch(
        "default",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"accessMode": "ReadOnly"}})),
    )
    .await
    .unwrap();
    let ro = s.backup("read-only", json!({})).await;
    assert_eq!(ro.phase(), BackupPhase::FailedValidation);
    assert!(ro
        .status
        .unwrap()
        .validation_errors
        .join(" ")
        .contains("ReadOnly"));

    // Cancelled before it starts: Canceled, without a snapshot.
    bsls.patch(
        "default",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"accessMode": "ReadWrite"}})),
    )
    .await
    .unwrap();
    let c = s.backup("canceled", json!({"cancel": true})).await;
    assert_eq!(c.phase(), BackupPhase::Canceled);
}
