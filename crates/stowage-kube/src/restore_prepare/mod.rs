//! An object read from a backup, made ready to create (issue 16, velero.md §4.4 and §4.5):
//! server-set metadata stripped (owner references are kept, for the caller to point at the
//! owners' new UIDs), status dropped unless asked for, the namespace mapped, the restore's labels
//! added, and the per-kind rules of Velero's built-in restore actions applied: storage classes
//! and volume names mapped (§4.6), and the OpenShift rules of OADP's plugins.
//! Pure functions of JSON: the Restore controller calls them on each object before it creates it.
//!
//! This module holds what every object goes through and the dispatch by group-resource; each
//! kind family's rules live in a module of their own, as Velero's restore actions do.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

mod job;
mod namespace;
mod openshift;
mod pod;
mod rbac;
mod secret;
mod service;
mod service_account;
mod statefulset;
mod volume;

/// Label naming the backup a restored object came from.
pub const LABEL_BACKUP: &str = "stowage.dev/backup-name";
/// Label naming the restore that created an object.
pub const LABEL_RESTORE: &str = "stowage.dev/restore-name";

/// What the restore asks for, as far as preparing objects goes.
#[derive(Clone, Debug, Default)]
pub struct PrepareOptions {
    /// The backup's name (the value of [`LABEL_BACKUP`]).
    pub backup: String,
    /// The restore's name (the value of [`LABEL_RESTORE`]).
    pub restore: String,
    /// Source namespace to target namespace (`spec.namespaceMapping`).
    pub namespace_mapping: BTreeMap<String, String>,
    /// Keep Services' node ports (`spec.preserveNodePorts`).
    pub preserve_node_ports: bool,
    /// Keep the object's `status` (chosen per type by `spec.restoreStatus`).
    pub keep_status: bool,
    /// Old storage class to new (`spec.storageClassMapping`), applied to claims, volumes and
    /// StatefulSets' claim templates.
    pub storage_class_mapping: BTreeMap<String, String>,
    /// Old PV name to what becomes of it: `Some(new name)` when the restore gives the volume a
    /// new name, `None` when the volume is not restored and its claim provisions a new one.
    pub volume_names: BTreeMap<String, Option<String>>,
}

impl PrepareOptions {
    /// Replaces the namespace name in `slot`, if it is a string the mapping names.
    fn remap_namespace(&self, slot: Option<&mut Value>) {
        if let Some(Value::String(ns)) = slot {
            if let Some(to) = self.namespace_mapping.get(ns.as_str()) {
                *ns = to.clone();
            }
        }
    }
}

/// What preparing decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Prepared {
    /// Create this object.
    Create(Value),
    /// Do not create it, for this reason (the restore counts it as skipped).
    Skip(&'static str),
}

/// Server-set metadata a created object must not carry. `ownerReferences` is kept: the caller
/// points it at the owners' new UIDs.
const SERVER_SET: [&str; 8] = [
    "generateName",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Prepares one object of type `group_resource` (`pods`, `jobs.batch`).
pub fn prepare(group_resource: &str, mut object: Value, opts: &PrepareOptions) -> Prepared {
    if let Some(why) = skip_reason(group_resource, &object) {
        return Prepared::Skip(why);
    }
    let Some(obj) = object.as_object_mut() else {
        return Prepared::Skip("not a JSON object");
    };
    reset_metadata(obj, opts);
    if !opts.keep_status {
        obj.remove("status");
    }
    match group_resource {
        "namespaces" => namespace::map_name(obj, opts),
        "services" => service::reset(obj, opts.preserve_node_ports),
        "pods" => pod::reset(obj),
        "jobs.batch" => job::reset(obj),
        "statefulsets.apps" => statefulset::map_claim_templates(obj, opts),
        "persistentvolumeclaims" => volume::reset_claim(obj, opts),
        "persistentvolumes" => volume::reset_volume(obj, opts),
        "rolebindings.rbac.authorization.k8s.io"
        | "clusterrolebindings.rbac.authorization.k8s.io" => rbac::map_subjects(obj, opts),
        "serviceaccounts" => {
            service_account::drop_token_secrets(obj);
            openshift::drop_generated_pull_secrets(obj);
        }
        "secrets" => secret::reset(obj),
        "routes.route.openshift.io" => openshift::reset_route(obj),
        "securitycontextconstraints.security.openshift.io" => openshift::map_scc_users(obj, opts),
        _ => {}
    }
    Prepared::Create(object)
}

/// Objects the cluster makes again by itself, or that are over: skipped (velero.md §4.2).
fn skip_reason(group_resource: &str, object: &Value) -> Option<&'static str> {
    match group_resource {
        "pods" => pod::skip_reason(object).or_else(|| openshift::build_pod_skip_reason(object)),
        "jobs.batch" => job::skip_reason(object),
        "secrets" => secret::skip_reason(object).or_else(|| openshift::secret_skip_reason(object)),
        _ => None,
    }
}

/// What every object goes through: server-set metadata removed, the namespace mapped and the
/// restore's labels added.
fn reset_metadata(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    let Some(Value::Object(meta)) = obj.get_mut("metadata") else {
        return;
    };
    for key in SERVER_SET {
        meta.remove(key);
    }
    opts.remap_namespace(meta.get_mut("namespace"));
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(LABEL_BACKUP.into(), Value::String(opts.backup.clone()));
        labels.insert(LABEL_RESTORE.into(), Value::String(opts.restore.clone()));
    }
}

/// The value of annotation `key` on `object`, if it has one.
fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.get("metadata")?.get("annotations")?.get(key)
}

/// The value at `path`, a `/`-separated list of object keys (no escapes, no array indexes).
fn pointer_mut<'a>(obj: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    let mut parts = path.trim_start_matches('/').split('/');
    let mut v = obj.get_mut(parts.next()?)?;
    for p in parts {
        v = v.get_mut(p)?;
    }
    Some(v)
}

/// What the per-kind modules' tests share.
#[cfg(test)]
mod test_support {
    use super::*;

    /// Options of a restore `r1` of backup `nightly` that maps `prod` to `staging`.
    pub(super) fn opts() -> PrepareOptions {
        PrepareOptions {
            backup: "nightly".into(),
            restore: "r1".into(),
            namespace_mapping: [("prod".to_string(), "staging".to_string())].into(),
            ..PrepareOptions::default()
        }
    }

    /// The object `prepare` makes, failing the test if it skips it.
    pub(super) fn created(gr: &str, v: Value, o: &PrepareOptions) -> Value {
        match prepare(gr, v, o) {
            Prepared::Create(v) => v,
            Prepared::Skip(why) => panic!("skipped: {why}"),
        }
    }

    /// Whether `prepare` skips the object, with the default test options.
    pub(super) fn skipped(gr: &str, v: Value) -> bool {
        matches!(prepare(gr, v, &opts()), Prepared::Skip(_))
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn server_metadata_and_status_go_owners_stay_the_namespace_maps_and_labels_are_added() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "prod", "uid": "u", "resourceVersion": "7", "generation": 2,
                         "creationTimestamp": "2026-01-01T00:00:00Z", "ownerReferences": [{"uid": "x"}],
                         "labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["f"]},
            "data": {"k": "v"}, "status": {"x": 1}});
        let out = created("configmaps", cm, &opts());
        assert_eq!(
            out,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "staging", "ownerReferences": [{"uid": "x"}],
                         "labels": {"app": "web", LABEL_BACKUP: "nightly", LABEL_RESTORE: "r1"},
                         "annotations": {"a": "b"}, "finalizers": ["f"]},
            "data": {"k": "v"}})
        );
        let kept = created(
            "configmaps",
            json!({"metadata": {"name": "c"}, "status": {"x": 1}}),
            &PrepareOptions {
                keep_status: true,
                ..opts()
            },
        );
        assert_eq!(kept["status"], json!({"x": 1}));
    }

    #[test]
    fn a_namespace_that_is_not_mapped_stays_and_a_non_object_is_skipped() {
        let out = created(
            "configmaps",
            json!({"metadata": {"name": "c", "namespace": "dev"}}),
            &opts(),
        );
        assert_eq!(out["metadata"]["namespace"], "dev");
        assert_eq!(
            prepare("configmaps", json!([1]), &opts()),
            Prepared::Skip("not a JSON object")
        );
    }
}
