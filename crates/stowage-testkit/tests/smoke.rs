//! Smoke tests of the real behaviour later work relies on, against the suite's shared cluster
//! (`STOWAGE_TEST_KUBECONFIG`, started by scripts/test.sh; see `stowage_testkit::cluster::shared`
//! for the skip rule). Each test works in namespaces of its own, so they run in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, PropagationPolicy, WatchEvent, WatchParams,
};
use serde_json::json;
use stowage_testkit::cluster::client_from_kubeconfig;
use stowage_testkit::cluster::shared::{eventually, shared_cluster};

const WAIT: Duration = Duration::from_secs(90);

macro_rules! cluster {
    () => {
        match shared_cluster().await {
            Some(c) => c,
            None => return,
        }
    };
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// The Kubernetes release testenv/go.mod pins.
fn pinned_version() -> String {
    include_str!("../../../testenv/go.mod")
        .lines()
        .find_map(|l| l.trim().strip_prefix("k8s.io/kubernetes "))
        .expect("testenv/go.mod requires k8s.io/kubernetes")
        .trim()
        .to_string()
}

async fn fake_nodes(client: &kube::Client) -> BTreeSet<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default().labels("stowage.test/fake-node=kwok"))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect()
}

fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn container(name: &str) -> serde_json::Value {
    // No image is ever pulled: KWOK plays the kubelet.
    json!([{ "name": name, "image": "stowage-test/none:0" }])
}

#[tokio::test]
async fn version_reports_the_pinned_release_and_discovery_lists_the_built_in_groups() {
    let cluster = cluster!();
    let client = cluster.client();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, pinned_version());
    assert_eq!(
        (version.major.as_str(), version.git_tree_state.as_str()),
        ("1", "clean")
    );

    let core = client.list_core_api_versions().await.unwrap();
    assert!(
        core.versions.contains(&"v1".to_string()),
        "{:?}",
        core.versions
    );
    let groups: BTreeSet<String> = client
        .list_api_groups()
        .await
        .unwrap()
        .groups
        .into_iter()
        .map(|g| g.name)
        .collect();
    for group in [
        "apps",
        "batch",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "coordination.k8s.io",
        "storage.k8s.io",
        "policy",
        "authentication.k8s.io",
        "authorization.k8s.io",
    ] {
        assert!(groups.contains(group), "{group} missing from {groups:?}");
    }
}

#[tokio::test]
async fn a_deployment_gets_a_replica_set_and_running_pods_bound_to_fake_nodes() {
    let cluster = cluster!();
    let client = cluster.client();
    let ns = cluster.namespace("deploy").await.unwrap();
    let nodes = fake_nodes(&client).await;
    assert!(!nodes.is_empty());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment: Deployment = from_json(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": container("web") },
            },
        },
    }));
    let created = deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();

    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    eventually("a ReplicaSet owned by the Deployment", WAIT, || async {
        let list = sets
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let owned = list.items.iter().any(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.kind == "Deployment")
        });
        owned
            .then_some(())
            .ok_or(format!("{} ReplicaSets, none owned", list.items.len()))
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let running = eventually("2 Running pods on fake nodes", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        let running: Vec<&Pod> = list.items.iter().filter(|p| is_running(p)).collect();
        if running.len() == 2 {
            Ok(list.items.clone())
        } else {
            Err(format!(
                "{} pods, {} Running",
                list.items.len(),
                running.len()
            ))
        }
    })
    .await;
    for pod in &running {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(
            nodes.contains(&node),
            "pod bound to {node:?}, not one of {nodes:?}"
        );
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert!(ready, "a Running pod is Ready");
    }
}

#[tokio::test]
async fn a_daemon_set_gets_one_running_pod_per_node() {
    let cluster = cluster!();
    let client = cluster.client();
    let ns = cluster.namespace("daemonset").await.unwrap();
    let nodes = fake_nodes(&client).await;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    let set: DaemonSet = from_json(json!({
        "metadata": { "name": "agent" },
        "spec": {
            "selector": { "matchLabels": { "app": "agent" } },
            "template": {
                "metadata": { "labels": { "app": "agent" } },
                "spec": { "containers": container("agent") },
            },
        },
    }));
    sets.create(&PostParams::default(), &set).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let on_nodes = eventually("one Running pod per node", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=agent"))
            .await
            .map_err(|e| e.to_string())?;
        let running: Vec<String> = list
            .items
            .iter()
            .filter(|p| is_running(p))
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        if running.len() == nodes.len() && list.items.len() == nodes.len() {
            Ok(running)
        } else {
            Err(format!("{} pods, Running on {running:?}", list.items.len()))
        }
    })
    .await;
    assert_eq!(on_nodes.into_iter().collect::<BTreeSet<_>>(), nodes);
}

fn widget_crd() -> CustomResourceDefinition {
    from_json(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.smoke.stowage.test" },
        "spec": {
            "group": "smoke.stowage.test",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList" },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": {
                                "size": { "type": "integer", "minimum": 1 },
                                "color": { "type": "string", "enum": ["red", "blue"] },
                            },
                        },
                        "status": {
                            "type": "object",
                            "properties": { "ready": { "type": "boolean" } },
                        },
                    },
                }},
            }],
        },
    }))
}

#[tokio::test]
async fn a_crd_is_established_and_its_objects_are_listed_paged_watched_validated_and_given_status()
{
    let cluster = cluster!();
    let client = cluster.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply("stowage-smoke").force();
    crds.patch(
        "widgets.smoke.stowage.test",
        &apply,
        &Patch::Apply(widget_crd()),
    )
    .await
    .unwrap();
    eventually("the CRD Established", WAIT, || async {
        let crd = crds
            .get("widgets.smoke.stowage.test")
            .await
            .map_err(|e| e.to_string())?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let established = conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(()).ok_or(format!("{conditions:?}"))
    })
    .await;

    let ns = cluster.namespace("crd").await.unwrap();
    let gvk = GroupVersionKind::gvk("smoke.stowage.test", "v1", "Widget");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let widget = |name: &str, tier: &str, size: i64| -> DynamicObject {
        from_json(json!({
            "apiVersion": "smoke.stowage.test/v1",
            "kind": "Widget",
            "metadata": { "name": name, "labels": { "tier": tier } },
            "spec": { "size": size, "color": "red" },
        }))
    };
    // Established means served, but the discovery of a fresh group can lag by a moment.
    eventually("the first Widget created", WAIT, || async {
        widgets
            .create(&PostParams::default(), &widget("w0", "a", 1))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    for (i, tier) in ["a", "a", "b", "b"].iter().enumerate() {
        widgets
            .create(
                &PostParams::default(),
                &widget(&format!("w{}", i + 1), tier, 2),
            )
            .await
            .unwrap();
    }

    let tier_a = widgets
        .list(&ListParams::default().labels("tier=a"))
        .await
        .unwrap();
    let names: BTreeSet<String> = tier_a
        .items
        .iter()
        .filter_map(|w| w.metadata.name.clone())
        .collect();
    assert_eq!(names, ["w0", "w1", "w2"].map(String::from).into());

    let mut paged = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(2);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = widgets.list(&params).await.unwrap();
        assert!(page.items.len() <= 2);
        pages += 1;
        paged.extend(page.items.into_iter().filter_map(|w| w.metadata.name));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!((pages, paged.len()), (3, 5), "{paged:?}");

    let version = widgets
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = widgets
        .watch(&WatchParams::default().timeout(60), &version)
        .await
        .unwrap()
        .boxed();
    widgets
        .create(&PostParams::default(), &widget("w5", "b", 3))
        .await
        .unwrap();
    let added = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.try_next().await.unwrap() {
            if let WatchEvent::Added(w) = event {
                return w.metadata.name;
            }
        }
        None
    })
    .await
    .expect("a watch event in time");
    assert_eq!(added.as_deref(), Some("w5"));

    // Status goes through the status subresource; the main resource ignores it.
    let through_main = json!({ "spec": { "size": 4 }, "status": { "ready": true } });
    let patched = widgets
        .patch("w0", &PatchParams::default(), &Patch::Merge(&through_main))
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["size"], 4);
    assert!(patched.data.get("status").is_none(), "{:?}", patched.data);
    let status = json!({ "status": { "ready": true } });
    widgets
        .patch_status("w0", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(
        widgets.get("w0").await.unwrap().data["status"]["ready"],
        true
    );

    for (name, bad) in [
        ("too-small", json!({ "size": 0 })),
        ("no-size", json!({ "color": "red" })),
        ("wrong-color", json!({ "size": 1, "color": "green" })),
    ] {
        let mut object = widget(name, "a", 1);
        object.data["spec"] = bad;
        match widgets.create(&PostParams::default(), &object).await {
            Err(kube::Error::Api(e)) => assert_eq!(
                (e.code, e.reason.as_str()),
                (422, "Invalid"),
                "{name}: {e:?}"
            ),
            other => panic!("{name}: the schema should refuse it, got {other:?}"),
        }
    }
}

async fn gone<K>(api: &Api<K>, name: &str) -> Result<(), String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(format!("{name} still exists")),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn deleting_a_namespace_completes_and_its_objects_are_gone() {
    let cluster = cluster!();
    let client = cluster.client();
    let ns = cluster.namespace("nsdelete").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    maps.create(
        &PostParams::default(),
        &from_json(json!({ "metadata": { "name": "m" }, "data": { "k": "v" } })),
    )
    .await
    .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the namespace gone", WAIT, || gone(&namespaces, &ns)).await;
    // A namespace of the same name starts empty: the old one's objects went with it.
    namespaces
        .create(
            &PostParams::default(),
            &from_json(json!({ "metadata": { "name": ns } })),
        )
        .await
        .unwrap();
    assert!(maps.get_opt("m").await.unwrap().is_none());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    let cluster = cluster!();
    let client = cluster.client();
    let ns = cluster.namespace("gc").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = maps
        .create(
            &PostParams::default(),
            &from_json(json!({ "metadata": { "name": "owner" } })),
        )
        .await
        .unwrap();
    for name in ["dependent-1", "dependent-2"] {
        let dependent = json!({ "metadata": { "name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid,
        }]}});
        maps.create(&PostParams::default(), &from_json(dependent))
            .await
            .unwrap();
    }
    maps.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    for name in ["dependent-1", "dependent-2"] {
        eventually(&format!("{name} collected"), WAIT, || gone(&maps, name)).await;
    }

    // Foreground deletion through two levels: Deployment -> ReplicaSet -> pods.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment: Deployment = from_json(json!({
        "metadata": { "name": "app" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "gc" } },
            "template": { "metadata": { "labels": { "app": "gc" } }, "spec": { "containers": container("app") } },
        },
    }));
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("the Deployment's pod", WAIT, || async {
        let n = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        (n == 1).then_some(()).ok_or(format!("{n} pods"))
    })
    .await;
    let foreground = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    deployments.delete("app", &foreground).await.unwrap();
    eventually("the Deployment gone after its dependents", WAIT, || {
        gone(&deployments, "app")
    })
    .await;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    assert!(sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    eventually("the pods gone", WAIT, || async {
        let n = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        (n == 0).then_some(()).ok_or(format!("{n} pods"))
    })
    .await;
}

#[tokio::test]
async fn a_pvc_binds_to_a_matching_static_pv_and_is_deleted_past_its_protection() {
    let cluster = cluster!();
    let client = cluster.client();
    let ns = cluster.namespace("pvc").await.unwrap();
    // PVs are cluster-scoped: named and classed after the namespace so tests never meet.
    let class = format!("static-{ns}");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for (name, size) in [
        (format!("{ns}-small"), "1Gi"),
        (format!("{ns}-large"), "5Gi"),
    ] {
        let pv = json!({
            "metadata": { "name": name },
            "spec": {
                "capacity": { "storage": size },
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": class,
                // Never mounted: there is no kubelet.
                "hostPath": { "path": format!("/nonexistent/stowage-test/{name}") },
            },
        });
        pvs.create(&PostParams::default(), &from_json(pv))
            .await
            .unwrap();
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let claim = json!({
        "metadata": { "name": "data" },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": { "requests": { "storage": "3Gi" } },
        },
    });
    claims
        .create(&PostParams::default(), &from_json(claim))
        .await
        .unwrap();
    let bound = eventually("the claim Bound", WAIT, || async {
        let pvc = claims.get("data").await.map_err(|e| e.to_string())?;
        let phase = pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        (phase == "Bound").then_some(pvc).ok_or(phase)
    })
    .await;
    let large = format!("{ns}-large");
    assert_eq!(
        bound.spec.unwrap().volume_name.as_deref(),
        Some(large.as_str()),
        "the only PV big enough"
    );
    let pv = pvs.get(&large).await.unwrap();
    let claim_ref = pv.spec.unwrap().claim_ref.unwrap();
    assert_eq!(
        (claim_ref.namespace.as_deref(), claim_ref.name.as_deref()),
        (Some(ns.as_str()), Some("data"))
    );
    let finalizers = claims
        .get("data")
        .await
        .unwrap()
        .metadata
        .finalizers
        .unwrap_or_default();
    assert!(
        finalizers.contains(&"kubernetes.io/pvc-protection".to_string()),
        "{finalizers:?}"
    );

    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the claim deleted (no pod uses it)", WAIT, || {
        gone(&claims, "data")
    })
    .await;
    for name in [format!("{ns}-small"), large] {
        pvs.delete(&name, &DeleteParams::default()).await.unwrap();
    }
}

/// Who the API server says a client is: (user, groups).
async fn whoami(client: &kube::Client) -> (String, Vec<String>) {
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    (
        user.username.unwrap_or_default(),
        user.groups.unwrap_or_default(),
    )
}

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(e)) => assert_eq!(
            (e.code, e.reason.as_str()),
            (403, "Forbidden"),
            "{what}: {e:?}"
        ),
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

async fn grant(
    client: &kube::Client,
    ns: &str,
    name: &str,
    resource: &str,
    subject: serde_json::Value,
) {
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    let role = json!({ "metadata": { "name": name }, "rules": [{
        "apiGroups": [""], "resources": [resource], "verbs": ["get", "list"],
    }]});
    roles
        .create(&PostParams::default(), &from_json(role))
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    let binding = json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
        "subjects": [subject],
    });
    bindings
        .create(&PostParams::default(), &from_json(binding))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_service_account_without_rights_gets_403_until_a_role_is_bound() {
    let cluster = cluster!();
    let admin = cluster.client();
    let ns = cluster.namespace("rbac-sa").await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    accounts
        .create(
            &PostParams::default(),
            &from_json(json!({ "metadata": { "name": "nobody" } })),
        )
        .await
        .unwrap();
    let kubeconfig = cluster
        .service_account_kubeconfig(&ns, "nobody")
        .await
        .unwrap();
    let client = client_from_kubeconfig(&kubeconfig).await.unwrap();
    let (user, groups) = whoami(&client).await;
    assert_eq!(user, format!("system:serviceaccount:{ns}:nobody"));
    assert!(
        groups.contains(&"system:serviceaccounts".to_string()),
        "{groups:?}"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert_forbidden(pods.list(&ListParams::default()).await, "listing pods");
    grant(
        &admin,
        &ns,
        "read-pods",
        "pods",
        json!({ "kind": "ServiceAccount", "name": "nobody", "namespace": ns }),
    )
    .await;
    eventually("the binding in effect", WAIT, || async {
        pods.list(&ListParams::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let maps: Api<ConfigMap> = Api::namespaced(client, &ns);
    assert_forbidden(
        maps.list(&ListParams::default()).await,
        "listing config maps (not granted)",
    );
}

#[tokio::test]
async fn a_client_certificate_user_without_rights_gets_403_until_its_group_is_bound() {
    let cluster = cluster!();
    let admin = cluster.client();
    let ns = cluster.namespace("rbac-user").await.unwrap();
    let kubeconfig = cluster
        .user_kubeconfig("alice", &["stowage:testers", "stowage:readers"])
        .unwrap();
    let client = client_from_kubeconfig(&kubeconfig).await.unwrap();
    let (user, groups) = whoami(&client).await;
    assert_eq!(user, "alice");
    for group in ["stowage:testers", "stowage:readers", "system:authenticated"] {
        assert!(
            groups.contains(&group.to_string()),
            "{group} missing from {groups:?}"
        );
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert_forbidden(
        maps.list(&ListParams::default()).await,
        "listing config maps",
    );
    assert_forbidden(
        Api::<Namespace>::all(client.clone())
            .list(&ListParams::default())
            .await,
        "listing namespaces",
    );
    grant(
        &admin,
        &ns,
        "read-maps",
        "configmaps",
        json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "stowage:readers" }),
    )
    .await;
    eventually("the binding in effect", WAIT, || async {
        maps.list(&ListParams::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
}

#[tokio::test]
async fn a_server_side_dry_run_create_changes_nothing() {
    let cluster = cluster!();
    let client = cluster.client();
    let ns = cluster.namespace("dryrun").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let map: ConfigMap =
        from_json(json!({ "metadata": { "name": "planned" }, "data": { "k": "v" } }));
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let answer = maps.create(&params, &map).await.unwrap();
    assert_eq!(
        answer.data,
        Some(BTreeMap::from([("k".to_string(), "v".to_string())]))
    );
    assert!(maps.get_opt("planned").await.unwrap().is_none());

    // Server-side apply too: the dry run answers with the object, the store stays empty.
    let apply = PatchParams::apply("stowage-smoke").dry_run();
    maps.patch("planned", &apply, &Patch::Apply(&map))
        .await
        .unwrap();
    assert!(maps.get_opt("planned").await.unwrap().is_none());
    assert!(maps
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .all(|m| m.metadata.name.as_deref() != Some("planned")));

    // And the real create then works, proving the dry run was not refused.
    maps.create(&PostParams::default(), &map).await.unwrap();
    assert!(maps.get_opt("planned").await.unwrap().is_some());
}
