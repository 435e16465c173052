//! Kubernetes restores end to end, against the real control plane: the real `stowage
//! controller` (with the identity of deploy/rbac/controller.yaml) backs up an application and
//! restores it: into the deleted namespace (CRD and volume gone too), into a mapped namespace
//! beside the original, over a partly changed namespace with each existing-resource policy and
//! as a dry run, with resource modifiers, with bad input, and with the controller killed
//! mid-restore.

mod k8s;

use k8s::*;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::time::Duration;
use stowage_kube::api::{Restore, RestorePhase};
use stowage_testkit::cluster::shared::eventually;

macro_rules! setup {
    () => {
        match Setup::new().await {
            Some(s) => s,
            None => return,
        }
    };
}

fn restores(s: &Setup) -> Api<Restore> {
    Api::namespaced(s.client(), &s.namespace)
}

async fn create_restore(s: &Setup, name: &str, spec: Value) {
    let r: Restore = serde_json::from_value(json!({
        "apiVersion": "stowage.dev/v1alpha1", "kind": "Restore",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    restores(s)
        .create(&PostParams::default(), &r)
        .await
        .unwrap();
}

async fn wait_restore(s: &Setup, name: &str) -> Restore {
    let api = restores(s);
    eventually(&format!("restore {name} to end"), WAIT, || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            let r = api.get(&name).await.map_err(|e| e.to_string())?;
            match r.phase() {
                p if p.is_terminal() => Ok(r),
                p => Err(format!("phase {p}, status {:?}", r.status)),
            }
        }
    })
    .await
}

async fn restore(s: &Setup, name: &str, spec: Value) -> Restore {
    create_restore(s, name, spec).await;
    wait_restore(s, name).await
}

fn assert_restore_completed(r: &Restore) {
    assert_eq!(
        r.phase(),
        RestorePhase::Completed,
        "{} status: {:#?}",
        r.metadata.name.as_deref().unwrap_or(""),
        r.status
    );
}

/// Every object read back matched the backup.
fn assert_verified(r: &Restore) {
    let v = r
        .status
        .as_ref()
        .and_then(|s| s.verification.clone())
        .expect("a verification");
    assert!(v.checked > 0, "{v:?}");
    assert_eq!(
        (v.matched, v.differed, v.missing),
        (v.checked, 0, 0),
        "verification: {v:#?}"
    );
}

fn counts(r: &Restore) -> stowage_kube::api::RestoreCounts {
    r.status
        .as_ref()
        .and_then(|s| s.counts.clone())
        .unwrap_or_default()
}

/// A small application in `ns`: a CRD and two of its objects, config, a secret, RBAC, a static
/// volume with its claim, a Service and a Deployment. Gives the CRD's and the PV's names.
async fn app(client: &kube::Client, ns: &str) -> (String, String) {
    let group = format!("{ns}.example.com");
    let crd = format!("widgets.{group}");
    let pv = format!("pv-{ns}");
    create_all(client, &[json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    })])
    .await;
    wait_established(client, &crd).await;
    create_all(client, &[
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns, "labels": {"app": "web"}}, "data": {"mode": "production"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-password", "namespace": ns}, "stringData": {"password": "hunter2"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "web", "namespace": ns},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "web", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "web"},
               "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": ns}]}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": format!("/tmp/{pv}")},
                        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STAND_IN_CLASS}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": pv, "storageClassName": STAND_IN_CLASS}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"serviceAccountName": "web",
                                              "containers": [{"name": "web", "image": "example/web:1"}],
                                              "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}}),
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "blue", "namespace": ns}, "spec": {"size": 3}}),
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "green", "namespace": ns}, "spec": {"size": 5}}),
    ])
    .await;
    // The account the cluster made gets a pull secret: a restore must add it to the one the
    // cluster makes again.
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), ns)
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({"imagePullSecrets": [{"name": "regcred"}]})),
        )
        .await
        .unwrap();
    (crd, pv)
}

/// Waits until the claim is bound (to `pv`) and the Deployment runs `pods` pods.
async fn running(client: &kube::Client, ns: &str, pv: &str, pods: usize) {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("{ns}: claim bound to {pv}, {pods} pods running"),
        WAIT,
        || {
            let (pvcs, pod_api) = (pvcs.clone(), pod_api.clone());
            let pv = pv.to_string();
            async move {
                let pvc = pvcs.get("data").await.map_err(|e| e.to_string())?;
                let status = pvc.status.and_then(|s| s.phase).unwrap_or_default();
                let volume = pvc.spec.and_then(|s| s.volume_name).unwrap_or_default();
                let running = pod_api
                    .list(&Default::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .count();
                match (status == "Bound" && volume == pv, running == pods) {
                    (true, true) => Ok(()),
                    _ => Err(format!(
                        "claim {status} to {volume:?}, {running} pods running"
                    )),
                }
            }
        },
    )
    .await;
}

async fn gone<K>(api: Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("deleting {name}: {e}"),
    }
    eventually(&format!("{name} gone"), WAIT, || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            match api.get_opt(&name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        }
    })
    .await;
}

fn widgets(client: &kube::Client, crd: &str, ns: &str) -> Api<DynamicObject> {
    let group = crd.strip_prefix("widgets.").unwrap();
    let ar = kube::api::ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// The application's namespace and CRD are deleted (its Retain volume stays, Released); the
/// restore brings back every object (the CRD first, Established before its widgets), frees the
/// volume for the restored claim, which binds it again, adds the backed-up pull secret to the
/// account the cluster made anew, the Deployment runs its pods, and reading everything back
/// finds it equal to the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_deleted_application_and_verifies_it() {
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let client = s.client();
    let provisioner = stand_in_provisioner(&client).await;
    let ns = s.cluster.namespace("app").await.unwrap();
    let (crd, pv) = app(&client, &ns).await;
    running(&client, &ns, &pv, 2).await;
    let b = s.backup("full", json!({"includedNamespaces": [ns]})).await;
    assert_completed(&b);

    gone(Api::<Namespace>::all(client.clone()), &ns).await;
    gone(Api::<CustomResourceDefinition>::all(client.clone()), &crd).await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    eventually("the volume Released", WAIT, || {
        let pvs = pvs.clone();
        let pv = pv.clone();
        async move {
            let phase = pvs
                .get(&pv)
                .await
                .map_err(|e| e.to_string())?
                .status
                .and_then(|s| s.phase);
            (phase.as_deref() == Some("Released"))
                .then_some(())
                .ok_or(format!("{phase:?}"))
        }
    })
    .await;

    let r = restore(&s, "back", json!({"backupName": "full"})).await;
    assert_restore_completed(&r);
    assert_verified(&r);
    let c = counts(&r);
    assert_eq!(c.failed, 0, "{c:?}");
    assert!(c.created >= 12, "{c:?}");
    assert!(
        c.skipped_reasons.keys().any(|k| k.contains("controller")),
        "the Deployment's pods are made again by their ReplicaSet: {c:?}"
    );

    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let settings = maps.get("settings").await.unwrap();
    assert_eq!(settings.data.unwrap()["mode"], "production");
    let labels = settings.metadata.labels.unwrap();
    assert_eq!(labels["stowage.dev/restore-name"], "back");
    assert_eq!(labels["stowage.dev/backup-name"], "full");
    let blue = widgets(&client, &crd, &ns).get("blue").await.unwrap();
    assert_eq!(blue.data["spec"]["size"], 3);
    running(&client, &ns, &pv, 2).await;
    let bindings: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()),
    );
    let rb = bindings.get("web").await.unwrap();
    assert_eq!(rb.data["subjects"][0]["namespace"], ns.as_str());
    let account =
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &ns)
            .get("default")
            .await
            .unwrap();
    let pulls: Vec<String> = account
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(pulls.contains(&"regcred".to_string()), "{pulls:?}");
    provisioner.abort();
}

/// A clone of the application into another namespace while the original runs: nothing
/// collides (the original's volume is not copied, whose storage the clone would share: the
/// clone's claim provisions a volume of its own), the clone is complete, and the original is
/// untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_an_application_into_a_mapped_namespace_beside_the_original() {
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let client = s.client();
    let provisioner = stand_in_provisioner(&client).await;
    let ns = s.cluster.namespace("prod").await.unwrap();
    let (crd, pv) = app(&client, &ns).await;
    running(&client, &ns, &pv, 2).await;
    let b = s.backup("prod", json!({"includedNamespaces": [ns]})).await;
    assert_completed(&b);

    let clone = format!("{ns}-staging");
    let r = restore(
        &s,
        "staging",
        json!({"backupName": "prod", "namespaceMapping": {ns.clone(): clone}}),
    )
    .await;
    assert_restore_completed(&r);
    assert_verified(&r);
    let c = counts(&r);
    assert!(c.unchanged >= 1, "the CRD exists already: {c:?}");

    // The clone's claim gets its volume from the (stand-in) provisioner, a moment later.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &clone);
    let volume = eventually("the clone's claim given a volume", WAIT, || {
        let pvcs = pvcs.clone();
        async move {
            let pvc = pvcs.get("data").await.map_err(|e| e.to_string())?;
            pvc.spec
                .and_then(|s| s.volume_name)
                .ok_or_else(|| "no volume yet".to_string())
        }
    })
    .await;
    assert_ne!(
        volume, pv,
        "the clone's claim must not take the original's volume"
    );
    assert!(volume.starts_with("standin-"), "provisioned anew: {volume}");
    assert!(
        c.skipped_reasons
            .keys()
            .any(|k| k.contains("belongs to the original volume")),
        "{c:?}"
    );
    running(&client, &clone, &volume, 2).await;
    running(&client, &ns, &pv, 2).await;
    assert!(widgets(&client, &crd, &clone)
        .get_opt("green")
        .await
        .unwrap()
        .is_some());
    let bindings: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &clone,
        &kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()),
    );
    let rb = bindings.get("web").await.unwrap();
    assert_eq!(
        rb.data["subjects"][0]["namespace"],
        clone.as_str(),
        "subjects follow the mapping"
    );
    // Cleaning up the clone leaves the original alone.
    gone(Api::<Namespace>::all(client.clone()), &clone).await;
    running(&client, &ns, &pv, 2).await;
    provisioner.abort();
}

fn resource_versions(list: &[ConfigMap]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().unwrap(),
                c.metadata.resource_version.clone().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Over a namespace where one object was changed, one relabelled and one deleted: a dry run
/// reports what a restore would do and changes nothing; `none` creates the deleted one and
/// warns about the two others; `update` patches them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_objects_are_left_patched_or_only_reported_in_a_dry_run() {
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let client = s.client();
    let ns = s.cluster.namespace("partly").await.unwrap();
    let maps: Vec<Value> = (1..=5)
        .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("c{i}"), "namespace": ns, "labels": {"tier": "a"}},
                        "data": {"value": format!("v{i}")}}))
        .collect();
    create_all(&client, &maps).await;
    let b = s
        .backup(
            "partly",
            json!({"includedNamespaces": [ns], "includedResources": ["configmaps"]}),
        )
        .await;
    assert_completed(&b);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PatchParams::default();
    api.patch(
        "c1",
        &pp,
        &Patch::Merge(json!({"data": {"value": "changed"}})),
    )
    .await
    .unwrap();
    api.patch(
        "c2",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "b"}}})),
    )
    .await
    .unwrap();
    api.delete("c3", &DeleteParams::default()).await.unwrap();
    let before = resource_versions(&api.list(&Default::default()).await.unwrap().items);

    let spec = |policy: &str, dry: bool| json!({"backupName": "partly", "existingResourcePolicy": policy, "dryRun": dry});
    let dry = restore(&s, "dry", spec("update", true)).await;
    assert_restore_completed(&dry);
    let after = resource_versions(&api.list(&Default::default()).await.unwrap().items);
    assert_eq!(before, after, "a dry run changed something");
    let c = counts(&dry);
    assert_eq!((c.created, c.updated, c.failed), (1, 2, 0), "{c:?}");
    assert!(dry.status.as_ref().unwrap().verification.is_none());

    let none = restore(&s, "none", spec("none", false)).await;
    assert_restore_completed(&none);
    let c = counts(&none);
    assert_eq!((c.created, c.updated, c.failed), (1, 0, 0), "{c:?}");
    assert_eq!(
        c.skipped_reasons
            .iter()
            .filter(|(k, _)| k.contains("differs"))
            .map(|(_, n)| *n)
            .sum::<u64>(),
        2,
        "{c:?}"
    );
    assert_eq!(none.status.as_ref().unwrap().warnings, 2);
    assert_eq!(
        api.get("c1").await.unwrap().data.unwrap()["value"],
        "changed"
    );
    assert!(api.get_opt("c3").await.unwrap().is_some());

    let update = restore(&s, "update", spec("update", false)).await;
    assert_restore_completed(&update);
    assert_verified(&update);
    let c = counts(&update);
    assert_eq!((c.created, c.updated, c.failed), (0, 2, 0), "{c:?}");
    assert!(
        c.unchanged >= 3,
        "c3 (made by the last restore), c4, c5: {c:?}"
    );
    assert_eq!(api.get("c1").await.unwrap().data.unwrap()["value"], "v1");
    assert_eq!(
        api.get("c2").await.unwrap().metadata.labels.unwrap()["tier"],
        "a"
    );
}

/// Resource modifiers: a JSON patch on the objects a name pattern selects, and a merge patch
/// on every object of a type in a namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_modifiers_change_objects_before_they_are_created() {
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let client = s.client();
    let ns = s.cluster.namespace("mod").await.unwrap();
    create_all(&client, &[
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "db-config", "namespace": ns}, "data": {"host": "db.old"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": ns}, "data": {"host": "web.old"}}),
    ])
    .await;
    let b = s
        .backup(
            "mod",
            json!({"includedNamespaces": [ns], "includedResources": ["configmaps"]}),
        )
        .await;
    assert_completed(&b);
    let target = format!("{ns}-new");
    let rules = format!(
        r#"version: v1
resourceModifierRules:
- conditions:
    groupResource: configmaps
    resourceNameRegex: "^db-.*$"
  patches:
  - operation: replace
    path: /data/host
    value: "\"db.new\""
- conditions:
    groupResource: configmaps
    namespaces: [{ns}]
  mergePatches:
  - patchData: |
      {{"metadata": {{"annotations": {{"moved": "yes"}}}}}}
"#
    );
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "rules"}, "data": {"rules.yaml": rules},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &s.namespace)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let r = restore(
        &s,
        "modified",
        json!({"backupName": "mod", "namespaceMapping": {ns.clone(): target},
               "resourceModifier": {"kind": "ConfigMap", "name": "rules"}}),
    )
    .await;
    assert_restore_completed(&r);
    assert_verified(&r);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &target);
    let db = api.get("db-config").await.unwrap();
    assert_eq!(db.data.unwrap()["host"], "db.new");
    assert_eq!(db.metadata.annotations.unwrap()["moved"], "yes");
    let web = api.get("web-config").await.unwrap();
    assert_eq!(
        web.data.unwrap()["host"],
        "web.old",
        "the name pattern does not match it"
    );
    assert_eq!(web.metadata.annotations.unwrap()["moved"], "yes");
}

/// Bad input ends FailedValidation with the reason, before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_restores_fail_validation_with_the_reason() {
    let mut s = setup!();
    // Slow listing, so that a backup is still running when a restore of it is asked for.
    let _controller = s.start_controller(&["--client-qps", "5", "--page-size", "1"]);
    let client = s.client();
    let ns = s.cluster.namespace("bad").await.unwrap();
    create_all(&client, &[json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": ns}})]).await;
    assert_completed(&s.backup("bad", json!({"includedNamespaces": [ns]})).await);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "broken-rules"}, "data": {"rules.yaml": "version: v1\nresourceModifierRules: [ {conditions: "},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &s.namespace)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    s.create_backup("running", json!({"includedNamespaces": [ns]}))
        .await;
    for (name, spec, says) in [
        (
            "early",
            json!({"backupName": "running"}),
            "restore it once it has completed",
        ),
        (
            "unknown",
            json!({"backupName": "nope"}),
            "backup nope not found",
        ),
        (
            "mapping",
            json!({"backupName": "bad", "namespaceMapping": {ns.clone(): "Not_A_Namespace"}}),
            "not a valid namespace name",
        ),
        (
            "modifier",
            json!({"backupName": "bad", "resourceModifier": {"kind": "ConfigMap", "name": "broken-rules"}}),
            "broken-rules",
        ),
        (
            "class",
            json!({"backupName": "bad", "storageClassMapping": {"a": ""}}),
            "storageClassMapping",
        ),
    ] {
        let r = restore(&s, name, spec).await;
        assert_eq!(
            r.phase(),
            RestorePhase::FailedValidation,
            "{name}: {:?}",
            r.status
        );
        let errors = r.status.unwrap().validation_errors.join("; ");
        assert!(errors.contains(says), "{name}: {errors}");
    }
}

/// The controller killed at random points of restores: each restore is run again after the
/// restart and ends Completed, with every object there once and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_survive_the_controller_killed_at_random_points() {
    let mut s = setup!();
    let trials: u32 = std::env::var("STOWAGE_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if std::env::var_os("CI").is_some() {
            10
        } else {
            3
        });
    let client = s.client();
    let ns = s.cluster.namespace("many").await.unwrap();
    let maps: Vec<Value> = (0..150)
        .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("m{i:03}"), "namespace": ns}, "data": {"i": i.to_string()}}))
        .collect();
    create_all(&client, &maps).await;
    let controller = s.start_controller(&["--client-qps", "40"]);
    assert_completed(
        &s.backup(
            "many",
            json!({"includedNamespaces": [ns], "includedResources": ["configmaps"]}),
        )
        .await,
    );
    controller.kill();
    let seed = std::process::id() as u64;
    for trial in 0..trials {
        let target = format!("{ns}-t{trial}");
        let name = format!("kill-{trial}");
        let controller = s.start_controller(&["--client-qps", "40"]);
        create_restore(
            &s,
            &name,
            json!({"backupName": "many", "namespaceMapping": {ns.clone(): target}}),
        )
        .await;
        let delay = Duration::from_millis(
            500 + (seed
                .wrapping_mul(2654435761)
                .wrapping_add(u64::from(trial) * 7919))
                % 4000,
        );
        tokio::time::sleep(delay).await;
        let phase = restores(&s).get(&name).await.unwrap().phase();
        controller.kill();
        let _controller = s.start_controller(&["--client-qps", "40"]);
        let r = wait_restore(&s, &name).await;
        assert_restore_completed(&r);
        assert_verified(&r);
        let c = counts(&r);
        let live = Api::<ConfigMap>::namespaced(client.clone(), &target)
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        let restored = live
            .iter()
            .filter(|m| {
                m.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with('m'))
            })
            .count();
        eprintln!(
            "trial {trial}: killed after {delay:?} in phase {phase}, {} run(s), {c:?}",
            r.status.as_ref().unwrap().attempt
        );
        assert_eq!(restored, 150, "trial {trial}");
        assert_eq!(c.failed, 0, "trial {trial}: {c:?}");
        assert!(
            c.created >= 150,
            "trial {trial}: every object counted as created: {c:?}"
        );
        drop(_controller);
    }
}

/// Migration: a backup made in this cluster is restored in a second one whose location points
/// at the same repository, ReadOnly. Its controller syncs the backup; a restore that would
/// need a storage class the second cluster lacks fails validation and says so (a dry run lists
/// it and changes nothing); with the class and the namespace mapped, the application comes
/// up there, CRD first. The second cluster writes nothing to the repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_an_application_to_another_cluster_through_a_read_only_location() {
    use stowage_testkit::cluster::shared::{binaries_or_skip, TestCluster};
    use stowage_testkit::cluster::{Cluster, ClusterOptions};
    let mut a = setup!();
    let Some(bin) = binaries_or_skip() else {
        return;
    };
    let _controller_a = a.start_controller(&[]);
    let client_a = a.client();
    let ns = a.cluster.namespace("mig").await.unwrap();
    let group = format!("{ns}.example.com");
    let crd = format!("gadgets.{group}");
    create_all(&client_a, &[
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": format!("fast-{ns}")},
               "provisioner": "example.com/none"}),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": crd},
               "spec": {"group": group, "scope": "Namespaced",
                        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
    ]).await;
    wait_established(&client_a, &crd).await;
    create_all(&client_a, &[
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}, "data": {"mode": "production"}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": format!("fast-{ns}")}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "example/web:1"}]}}}}),
        json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget", "metadata": {"name": "g1", "namespace": ns}, "spec": {"size": 1}}),
    ]).await;
    let b = a.backup("mig", json!({"includedNamespaces": [ns]})).await;
    assert_completed(&b);
    let snapshots_before = a.repo().list_snapshots().unwrap().len();

    // The second cluster: a ReadOnly location on the same repository, synced every 2s.
    let cluster_b = Cluster::start(ClusterOptions {
        nodes: 1,
        bin_dir: Some(bin),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let tc = TestCluster::open(cluster_b.kubeconfig()).await.unwrap();
    let mut b_side = Setup::on(
        tc,
        Some(a.repo_path()),
        &json!({"accessMode": "ReadOnly", "backupSyncPeriod": "2s"}),
    )
    .await;
    let client_b = b_side.client();
    create_all(&client_b, &[json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                    "metadata": {"name": "standard"}, "provisioner": "example.com/none"})]).await;
    let _controller_b = b_side.start_controller(&[]);
    let synced = eventually("the backup synced into the second cluster", WAIT, || {
        let api = b_side.backups();
        async move {
            match api.get_opt("mig").await.map_err(|e| e.to_string())? {
                Some(b) if b.phase() == stowage_kube::api::BackupPhase::Completed => Ok(b),
                other => Err(format!("{:?}", other.map(|b| b.status))),
            }
        }
    })
    .await;
    assert_eq!(synced.spec.storage_location.as_deref(), Some("default"));

    // Without the class mapped: refused, with what is missing.
    let refused = restore(&b_side, "unmapped", json!({"backupName": "mig"})).await;
    assert_eq!(
        refused.phase(),
        RestorePhase::FailedValidation,
        "{:?}",
        refused.status
    );
    let lacks = refused.status.as_ref().unwrap().target_lacks.join("; ");
    assert!(
        lacks.contains(&format!("storage class fast-{ns}")),
        "{lacks}"
    );
    // A dry run reports the same and creates nothing.
    let dry = restore(&b_side, "dry", json!({"backupName": "mig", "dryRun": true})).await;
    assert_restore_completed(&dry);
    assert_eq!(counts(&dry).failed, 0, "{:?}", dry.status);
    let lacks = dry.status.as_ref().unwrap().target_lacks.join("; ");
    assert!(
        lacks.contains(&format!("storage class fast-{ns}")),
        "{lacks}"
    );
    let namespaces: Api<Namespace> = Api::all(client_b.clone());
    assert!(
        namespaces.get_opt(&ns).await.unwrap().is_none(),
        "a dry run made the namespace"
    );

    // Mapped: the application, its CRD first, under the new namespace and class.
    let target = format!("{ns}-b");
    let r = restore(
        &b_side,
        "moved",
        json!({"backupName": "mig",
        "namespaceMapping": {ns.clone(): target.clone()},
        "storageClassMapping": {format!("fast-{ns}"): "standard"}}),
    )
    .await;
    assert_restore_completed(&r);
    assert_verified(&r);
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client_b.clone(), &target)
        .get("data")
        .await
        .unwrap();
    assert_eq!(
        pvc.spec.unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    let gadgets: Api<DynamicObject> = Api::namespaced_with(
        client_b.clone(),
        &target,
        &kube::api::ApiResource {
            group: group.clone(),
            version: "v1".into(),
            api_version: format!("{group}/v1"),
            kind: "Gadget".into(),
            plural: "gadgets".into(),
        },
    );
    assert_eq!(gadgets.get("g1").await.unwrap().data["spec"]["size"], 1);
    let pods: Api<Pod> = Api::namespaced(client_b.clone(), &target);
    eventually("the moved Deployment's pod running", WAIT, || {
        let pods = pods.clone();
        async move {
            let running = pods
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            (running == 1)
                .then_some(())
                .ok_or(format!("{running} running"))
        }
    })
    .await;
    assert!(r.status.as_ref().unwrap().record_snapshot_id.is_none());
    assert_eq!(
        a.repo().list_snapshots().unwrap().len(),
        snapshots_before,
        "the ReadOnly side wrote to the repository"
    );
}

/// OpenShift's kinds, with the Route and SecurityContextConstraints CRDs that openshift/api
/// publishes (scripts/openshift-crds.sh): a Route whose host the cluster generated loses it
/// (the target generates its own), a static host stays, and an SCC's service-account users
/// follow the namespace mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openshift_routes_and_sccs_follow_oadps_rules() {
    let mut s = setup!();
    let dir = match std::env::var_os("STOWAGE_TEST_OPENSHIFT_CRDS") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "STOWAGE_TEST_OPENSHIFT_CRDS must be set in CI (scripts/test.sh sets it)"
            );
            eprintln!("NOTICE: skipped: STOWAGE_TEST_OPENSHIFT_CRDS is not set (scripts/openshift-crds.sh)");
            return;
        }
    };
    let client = s.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in [
        "routes.route.openshift.io",
        "securitycontextconstraints.security.openshift.io",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{file}.yaml"))).unwrap();
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
        crds.patch(
            file,
            &PatchParams::apply("stowage-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        wait_established(&client, file).await;
    }
    let _controller = s.start_controller(&[]);
    let ns = s.cluster.namespace("ocp").await.unwrap();
    let scc = format!("{ns}-restricted");
    create_all(&client, &[
        json!({"apiVersion": "route.openshift.io/v1", "kind": "Route",
               "metadata": {"name": "generated", "namespace": ns, "annotations": {"openshift.io/host.generated": "true"}},
               "spec": {"host": format!("generated-{ns}.apps.old.example.com"), "to": {"kind": "Service", "name": "web"}}}),
        json!({"apiVersion": "route.openshift.io/v1", "kind": "Route",
               "metadata": {"name": "static", "namespace": ns},
               "spec": {"host": "shop.example.com", "to": {"kind": "Service", "name": "web"}}}),
        json!({"apiVersion": "security.openshift.io/v1", "kind": "SecurityContextConstraints",
               "metadata": {"name": scc},
               "allowPrivilegedContainer": false, "allowHostDirVolumePlugin": false, "allowHostIPC": false,
               "allowHostNetwork": false, "allowHostPID": false, "allowHostPorts": false, "readOnlyRootFilesystem": false,
               "runAsUser": {"type": "MustRunAsRange"}, "seLinuxContext": {"type": "MustRunAs"},
               "allowedCapabilities": null, "defaultAddCapabilities": null, "priority": null,
               "requiredDropCapabilities": ["KILL"], "volumes": ["configMap", "secret"],
               "users": [format!("system:serviceaccount:{ns}:web"), "alice"]}),
    ])
    .await;
    let b = s
        .backup("ocp", json!({"includedNamespaces": [ns],
            "includedClusterScopedResources": ["securitycontextconstraints.security.openshift.io"]}))
        .await;
    assert_completed(&b);
    let sccs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource {
            group: "security.openshift.io".into(),
            version: "v1".into(),
            api_version: "security.openshift.io/v1".into(),
            kind: "SecurityContextConstraints".into(),
            plural: "securitycontextconstraints".into(),
        },
    );
    gone(sccs.clone(), &scc).await;
    let clone = format!("{ns}-clone");
    let r = restore(&s, "ocp", json!({"backupName": "ocp", "includeClusterResources": true,
        "includedResources": ["routes.route.openshift.io", "securitycontextconstraints.security.openshift.io", "namespaces"],
        "namespaceMapping": {ns.clone(): clone.clone()}}))
    .await;
    assert_restore_completed(&r);
    assert_verified(&r);
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &clone,
        &kube::api::ApiResource {
            group: "route.openshift.io".into(),
            version: "v1".into(),
            api_version: "route.openshift.io/v1".into(),
            kind: "Route".into(),
            plural: "routes".into(),
        },
    );
    let generated = routes.get("generated").await.unwrap();
    assert!(
        generated.data["spec"].get("host").is_none(),
        "{:?}",
        generated.data["spec"]
    );
    let fixed = routes.get("static").await.unwrap();
    assert_eq!(fixed.data["spec"]["host"], "shop.example.com");
    let restored = sccs.get(&scc).await.unwrap();
    assert_eq!(
        restored.data["users"],
        json!([format!("system:serviceaccount:{clone}:web"), "alice"])
    );
}

/// `stowage k8s restore ...` as a user runs it: create and wait, list, describe with the
/// record's details, the log, a refused restore in one line with exit 1, delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_waits_for_describes_and_reads_restores() {
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let client = s.client();
    let ns = s.cluster.namespace("cli-rst").await.unwrap();
    create_all(&client, &[json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}, "data": {"a": "1"}})]).await;
    assert_completed(&s.backup("cli", json!({"includedNamespaces": [ns]})).await);
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
            .arg("k8s")
            .args(args)
            .args(["-n", &s.namespace])
            .env("KUBECONFIG", s.cluster.kubeconfig())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let out = cli(&[
        "restore",
        "create",
        "back",
        "--from-backup",
        "cli",
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Restore \"back\" Completed: 1 created"),
        "{stdout}"
    );
    assert!(stdout.contains("verified"), "{stdout}");
    assert!(Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get_opt("settings")
        .await
        .unwrap()
        .is_some());

    let listed = text(&cli(&["restore", "get"]).stdout);
    assert!(
        listed.starts_with("NAME") && listed.contains("back") && listed.contains("Completed"),
        "{listed}"
    );
    let described = cli(&["restore", "describe", "back", "--details"]);
    let described_text = text(&described.stdout);
    assert!(
        described.status.success(),
        "{described_text}{}",
        text(&described.stderr)
    );
    for must in [
        "Phase:        Completed",
        "Backup:       cli",
        "Outcome:      1 created",
        "Verification:",
        "Record:       snapshot",
    ] {
        assert!(described_text.contains(must), "{must}: {described_text}");
    }
    let log = text(&cli(&["restore", "logs", "back"]).stdout);
    assert!(log.contains("restoring from snapshot"), "{log}");

    let refused = cli(&[
        "restore",
        "create",
        "bad",
        "--from-backup",
        "nope",
        "--wait",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    // Progress lines, then the error in one line.
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert_eq!(
        last, "stowage: error: restore \"bad\" failed validation: backup nope not found",
        "{err}"
    );

    let deleted = cli(&["restore", "delete", "back", "--confirm"]);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    assert!(restores(&s).get_opt("back").await.unwrap().is_none());
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get_opt("settings")
            .await
            .unwrap()
            .is_some(),
        "restored objects stay"
    );
}
