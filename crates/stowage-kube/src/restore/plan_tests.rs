use super::*;
use crate::filter::fixtures;
use serde_json::json;

fn obj(items: &[(Item, Value)]) -> impl FnMut(&Item) -> Result<Value, SourceError> + '_ {
    move |it: &Item| Ok(items.iter().find(|(i, _)| i == it).unwrap().1.clone())
}

fn target() -> TargetState {
    TargetState {
        catalog: {
            let mut c = fixtures::catalog();
            for (g, r, k) in [
                ("apps", "replicasets", "ReplicaSet"),
                ("", "configmaps", "ConfigMap"),
            ] {
                c.resources.push(ApiResource {
                    group: g.into(),
                    version: "v1".into(),
                    resource: r.into(),
                    kind: k.into(),
                    namespaced: true,
                    ..ApiResource::default()
                });
            }
            c
        },
        storage_classes: ["fast".to_string()].into(),
        namespaces: BTreeMap::new(),
        volumes: BTreeSet::new(),
    }
}

fn spec() -> RestoreSpec {
    RestoreSpec {
        backup_name: Some("b".into()),
        ..RestoreSpec::default()
    }
}

fn app() -> Vec<(Item, Value)> {
    let owned = |kind: &str, owner_kind: &str, owner: &str, api: &str| {
        json!({"apiVersion": api, "kind": kind, "metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": owner_kind, "name": owner, "uid": "old",
             "controller": kind != "Pod"}]}})
    };
    vec![
        (
            Item::for_test("deployments.apps", Some("a"), "web"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
        ),
        (
            Item::for_test("replicasets.apps", Some("a"), "web-1"),
            owned("ReplicaSet", "Deployment", "web", "apps/v1"),
        ),
        (
            Item::for_test("pods", Some("a"), "web-1-x"),
            owned("Pod", "ReplicaSet", "web-1", "v1"),
        ),
        (
            Item::for_test("configmaps", Some("a"), "cfg"),
            json!({"apiVersion": "v1", "kind": "ConfigMap"}),
        ),
        (
            Item::for_test("namespaces", None, "a"),
            json!({"apiVersion": "v1", "kind": "Namespace"}),
        ),
        (
            Item::for_test("persistentvolumeclaims", Some("a"), "data"),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "spec": {"volumeName": "pv-1", "storageClassName": "fast"}}),
        ),
        (
            Item::for_test("persistentvolumes", None, "pv-1"),
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
                   "spec": {"claimRef": {"namespace": "a", "name": "data"},
                            "storageClassName": "fast",
                            "persistentVolumeReclaimPolicy": "Retain"}}),
        ),
        (
            Item::for_test("persistentvolumes", None, "unrelated"),
            json!({"apiVersion": "v1", "kind": "PersistentVolume"}),
        ),
        (
            Item::for_test("nodes", None, "n1"),
            json!({"apiVersion": "v1", "kind": "Node"}),
        ),
    ]
}

fn names(plan: &Plan, items: &[(Item, Value)]) -> Vec<String> {
    plan.waves
        .iter()
        .map(|w| {
            let mut n: Vec<&str> = w.items.iter().map(|&i| items[i].0.name.as_str()).collect();
            n.sort();
            n.join(",")
        })
        .collect()
}

#[test]
fn owners_come_before_what_they_own_and_related_cluster_objects_come_along() {
    let items = app();
    let list: Vec<Item> = items.iter().map(|(i, _)| i.clone()).collect();
    let mut s = spec();
    s.included_namespaces = vec!["a".into()];
    let plan = plan(&s, &list, &target(), obj(&items)).unwrap();
    assert_eq!(
        names(&plan, &items),
        ["a", "pv-1", "data", "cfg", "web", "web-1", "web-1-x"]
    );
    assert_eq!(plan.skipped.len(), 1, "the node: {:?}", plan.skipped);
    assert!(plan.lacks.is_empty(), "{:?}", plan.lacks);
    assert!(plan.bare_namespaces.is_empty());
    assert_eq!(plan.total(), 8);
}

#[test]
fn a_remapped_claims_volume_is_not_copied_while_the_original_is_there() {
    let items = app();
    let list: Vec<Item> = items.iter().map(|(i, _)| i.clone()).collect();
    let mut s = spec();
    s.included_namespaces = vec!["a".into()];
    s.namespace_mapping = [("a".to_string(), "b".to_string())].into();
    // Another cluster (or the original gone): the volume object is restored as it was.
    let plan = plan(&s, &list, &target(), obj(&items)).unwrap();
    assert!(!plan.volume_names.contains_key("pv-1"));
    assert!(names(&plan, &items).contains(&"pv-1".to_string()));
    // The original still here: not copied (the clone would share its storage); the clone's
    // claim provisions its own.
    let mut t = target();
    t.volumes.insert("pv-1".into());
    let plan = super::plan(&s, &list, &t, obj(&items)).unwrap();
    assert_eq!(plan.volume_names["pv-1"], None);
    assert!(plan
        .skipped
        .iter()
        .any(|(i, why)| items[*i].0.name == "pv-1" && why.contains("belongs to the original")));
    // Owner lookups use the target namespace.
    assert!(plan.owners.contains_key(&(
        "apps".into(),
        "Deployment".into(),
        Some("b".into()),
        "web".into()
    )));
}

#[test]
fn cluster_resources_follow_the_tri_state() {
    let mut items = app();
    items.push((
        Item::for_test("clusterroles.rbac.authorization.k8s.io", None, "reader"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}),
    ));
    let list: Vec<Item> = items.iter().map(|(i, _)| i.clone()).collect();
    let has = |plan: &Plan, name: &str| {
        names(plan, &items)
            .iter()
            .any(|w| w.split(',').any(|n| n == name))
    };
    // Unset, all namespaces: every cluster-scoped object.
    let p = plan(&spec(), &list, &target(), obj(&items)).unwrap();
    assert!(has(&p, "reader") && has(&p, "pv-1"));
    // Unset, some namespaces: only the related ones.
    let mut s = spec();
    s.included_namespaces = vec!["a".into()];
    let p = plan(&s, &list, &target(), obj(&items)).unwrap();
    assert!(!has(&p, "reader") && has(&p, "pv-1") && has(&p, "a"));
    // true: all of them; false: none, not even related ones (the namespace is still made).
    s.include_cluster_resources = Some(true);
    let p = plan(&s, &list, &target(), obj(&items)).unwrap();
    assert!(has(&p, "reader") && has(&p, "pv-1"));
    s.include_cluster_resources = Some(false);
    let p = plan(&s, &list, &target(), obj(&items)).unwrap();
    assert!(!has(&p, "reader") && !has(&p, "pv-1") && has(&p, "a"));
}

#[test]
fn pods_a_restored_controller_makes_are_left_to_it() {
    let mut items = app();
    items.push((
        Item::for_test("pods", Some("a"), "web-1-y"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "controller": true}]}}),
    ));
    let list: Vec<Item> = items.iter().map(|(i, _)| i.clone()).collect();
    let p = plan(&spec(), &list, &target(), obj(&items)).unwrap();
    assert!(p
        .skipped
        .iter()
        .any(|(i, why)| items[*i].0.name == "web-1-y" && why.contains("ReplicaSet")));
}

#[test]
fn an_unreadable_object_is_that_items_error_not_the_restores() {
    let items = app();
    let list: Vec<Item> = items.iter().map(|(i, _)| i.clone()).collect();
    let read = |it: &Item| {
        if it.name == "cfg" {
            return Err(SourceError::Object {
                path: it.path(),
                why: "not JSON".into(),
            });
        }
        Ok(items.iter().find(|(i, _)| i == it).unwrap().1.clone())
    };
    let p = plan(&spec(), &list, &target(), read).unwrap();
    assert_eq!(p.unreadable.len(), 1);
    assert!(!names(&p, &items).iter().any(|w| w.contains("cfg")));
    assert_eq!(p.total(), 9);
}

#[test]
fn missing_storage_classes_types_and_terminating_namespaces_are_lacks() {
    let mut items = app();
    items.push((
        Item::for_test("gadgets.other.io", Some("a"), "w"),
        json!({"apiVersion": "other.io/v1", "kind": "Gadget"}),
    ));
    let list: Vec<Item> = items.iter().map(|(i, _)| i.clone()).collect();
    let mut t = target();
    t.storage_classes.clear();
    t.namespaces.insert("a".into(), true);
    let plan = plan(&spec(), &list, &t, obj(&items)).unwrap();
    let lacks: Vec<&str> = plan.lacks.iter().map(|l| l.message.as_str()).collect();
    assert!(
        lacks
            .iter()
            .any(|l| l.contains("namespace a is being deleted")),
        "{lacks:?}"
    );
    assert!(
        lacks.iter().any(|l| l.starts_with("storage class fast")),
        "{lacks:?}"
    );
    assert!(
        lacks
            .iter()
            .any(|l| l.contains("gadgets.other.io (1 objects")),
        "{lacks:?}"
    );
    // With the class mapped to one the cluster has, that lack goes.
    let mut s = spec();
    s.storage_class_mapping = [("fast".to_string(), "slow".to_string())].into();
    t.storage_classes.insert("slow".into());
    let plan = super::plan(&s, &list, &t, obj(&items)).unwrap();
    assert!(!plan
        .lacks
        .iter()
        .any(|l| l.message.contains("storage class")));
}

#[test]
fn dynamic_volumes_and_restore_pvs_false_leave_the_volume_to_the_claim() {
    let items = app();
    let list: Vec<Item> = items.iter().map(|(i, _)| i.clone()).collect();
    let mut s = spec();
    s.restore_p_vs = Some(false);
    let plan = plan(&s, &list, &target(), obj(&items)).unwrap();
    assert_eq!(plan.volume_names["pv-1"], None);
    assert!(plan
        .skipped
        .iter()
        .any(|(i, why)| items[*i].0.name == "pv-1" && why.contains("restorePVs")));
}

#[test]
fn bad_mappings_and_both_sources_are_refused() {
    let mut s = spec();
    s.schedule_name = Some("nightly".into());
    s.namespace_mapping = [("a".to_string(), "Not_OK".to_string())].into();
    let problems = check_spec(&s);
    assert_eq!(problems.len(), 2, "{problems:?}");
}
