//! An object read from a backup, made ready to create (issue 16, velero.md §4.4 and §4.5):
//! server-set metadata stripped, status dropped unless asked for, the namespace mapped, the
//! restore's labels added, and the per-kind rules of Velero's built-in restore actions applied.
//! Pure functions of JSON: the Restore controller calls them on each object before it creates it.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

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
}

/// What preparing decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Prepared {
    /// Create this object.
    Create(Value),
    /// Do not create it, for this reason (the restore counts it as skipped).
    Skip(&'static str),
}

/// Server-set metadata a created object must not carry.
const SERVER_SET: [&str; 9] = [
    "generateName",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
];

/// PVC annotations the binding controllers set, which would stop a restored claim from binding
/// afresh.
const PVC_BINDING_ANNOTATIONS: [&str; 5] = [
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
];

/// Prepares one object of type `group_resource` (`pods`, `jobs.batch`).
pub fn prepare(group_resource: &str, mut object: Value, opts: &PrepareOptions) -> Prepared {
    if let Some(why) = skip_reason(group_resource, &object) {
        return Prepared::Skip(why);
    }
    let Some(obj) = object.as_object_mut() else {
        return Prepared::Skip("not a JSON object");
    };
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        for key in SERVER_SET {
            meta.remove(key);
        }
        if let Some(Value::String(ns)) = meta.get_mut("namespace") {
            if let Some(to) = opts.namespace_mapping.get(ns.as_str()) {
                *ns = to.clone();
            }
        }
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(LABEL_BACKUP.into(), Value::String(opts.backup.clone()));
            labels.insert(LABEL_RESTORE.into(), Value::String(opts.restore.clone()));
        }
    }
    if !opts.keep_status {
        obj.remove("status");
    }
    match group_resource {
        "namespaces" => map_namespace_name(obj, opts),
        "services" => reset_service(obj, opts.preserve_node_ports),
        "pods" => reset_pod(obj),
        "jobs.batch" => reset_job(obj),
        "persistentvolumeclaims" => reset_claim(obj),
        "persistentvolumes" => map_claim_ref(obj, opts),
        "rolebindings.rbac.authorization.k8s.io"
        | "clusterrolebindings.rbac.authorization.k8s.io" => map_subjects(obj, opts),
        "serviceaccounts" => drop_token_secrets(obj),
        "secrets" => reset_secret(obj),
        _ => {}
    }
    Prepared::Create(object)
}

/// Objects the cluster makes again by itself, or that are over: skipped (velero.md §4.2).
fn skip_reason(group_resource: &str, object: &Value) -> Option<&'static str> {
    let annotation =
        |key: &str| object.pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")));
    match group_resource {
        "pods" if annotation("kubernetes.io/config.mirror").is_some() => {
            Some("a mirror pod: its kubelet makes it from a static manifest")
        }
        "pods" => match object.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") | Some("Failed") => Some("a pod that has finished"),
            _ => None,
        },
        "jobs.batch"
            if object
                .pointer("/status/completionTime")
                .is_some_and(|v| !v.is_null()) =>
        {
            Some("a job that has completed")
        }
        "secrets"
            if object.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token")
                && annotation("kubernetes.io/service-account.name").is_some() =>
        {
            Some("a service account token: the cluster issues new ones")
        }
        _ => None,
    }
}

fn map_namespace_name(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    if let Some(Value::String(name)) = obj.get_mut("metadata").and_then(|m| m.get_mut("name")) {
        if let Some(to) = opts.namespace_mapping.get(name.as_str()) {
            *name = to.clone();
        }
    }
}

/// The cluster gives a restored Service a new cluster IP (a headless one stays headless), and
/// new node ports unless they are to be kept.
fn reset_service(obj: &mut Map<String, Value>, preserve_node_ports: bool) {
    let Some(Value::Object(spec)) = obj.get_mut("spec") else {
        return;
    };
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if !headless {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    if !preserve_node_ports {
        spec.remove("healthCheckNodePort");
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.remove("nodePort");
            }
        }
    }
}

/// A restored pod is scheduled afresh.
fn reset_pod(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(spec)) = obj.get_mut("spec") {
        spec.remove("nodeName");
        spec.remove("priority");
    }
}

/// A job's controller-uid labels name the old job.
fn reset_job(obj: &mut Map<String, Value>) {
    for path in [
        "/spec/selector/matchLabels",
        "/spec/template/metadata/labels",
    ] {
        if let Some(Value::Object(labels)) = pointer_mut(obj, path) {
            labels.remove("controller-uid");
            labels.remove("batch.kubernetes.io/controller-uid");
        }
    }
}

fn reset_claim(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(annotations)) = pointer_mut(obj, "/metadata/annotations") {
        for key in PVC_BINDING_ANNOTATIONS {
            annotations.remove(key);
        }
    }
}

/// A statically restored volume's claim reference follows the namespace mapping, and loses the
/// old claim's UID and version so that the restored claim can bind it.
fn map_claim_ref(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    if let Some(Value::Object(claim)) = pointer_mut(obj, "/spec/claimRef") {
        claim.remove("uid");
        claim.remove("resourceVersion");
        if let Some(Value::String(ns)) = claim.get_mut("namespace") {
            if let Some(to) = opts.namespace_mapping.get(ns.as_str()) {
                *ns = to.clone();
            }
        }
    }
}

fn map_subjects(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    if let Some(Value::Array(subjects)) = obj.get_mut("subjects") {
        for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(Value::String(ns)) = s.get_mut("namespace") {
                if let Some(to) = opts.namespace_mapping.get(ns.as_str()) {
                    *ns = to.clone();
                }
            }
        }
    }
}

/// References to the old token Secrets, which are not restored.
fn drop_token_secrets(obj: &mut Map<String, Value>) {
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let prefix = format!("{name}-token-");
    if let Some(Value::Array(secrets)) = obj.get_mut("secrets") {
        secrets.retain(|s| {
            !s.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with(&prefix))
        });
    }
}

fn reset_secret(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(annotations)) = pointer_mut(obj, "/metadata/annotations") {
        annotations.remove("kubernetes.io/service-account.uid");
    }
}

fn pointer_mut<'a>(obj: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    let mut parts = path.trim_start_matches('/').split('/');
    let mut v = obj.get_mut(parts.next()?)?;
    for p in parts {
        v = v.get_mut(p)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts() -> PrepareOptions {
        PrepareOptions {
            backup: "nightly".into(),
            restore: "r1".into(),
            namespace_mapping: [("prod".to_string(), "staging".to_string())].into(),
            ..PrepareOptions::default()
        }
    }

    fn created(gr: &str, v: Value, o: &PrepareOptions) -> Value {
        match prepare(gr, v, o) {
            Prepared::Create(v) => v,
            Prepared::Skip(why) => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn server_metadata_and_status_go_the_namespace_maps_and_labels_are_added() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "prod", "uid": "u", "resourceVersion": "7", "generation": 2,
                         "creationTimestamp": "2026-01-01T00:00:00Z", "ownerReferences": [{"uid": "x"}],
                         "labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["f"]},
            "data": {"k": "v"}, "status": {"x": 1}});
        let out = created("configmaps", cm, &opts());
        assert_eq!(
            out,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "staging",
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
    fn services_get_new_addresses_unless_headless_and_ports_unless_kept() {
        let svc = json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
            "type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        let out = created("services", svc.clone(), &opts());
        assert_eq!(
            out["spec"],
            json!({"type": "NodePort", "ports": [{"port": 80}]})
        );
        let kept = created(
            "services",
            svc,
            &PrepareOptions {
                preserve_node_ports: true,
                ..opts()
            },
        );
        assert_eq!(kept["spec"]["ports"][0]["nodePort"], 30080);
        let headless = created(
            "services",
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}),
            &opts(),
        );
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }

    #[test]
    fn finished_pods_jobs_mirror_pods_and_tokens_are_skipped() {
        let skipped = |gr: &str, v: Value| matches!(prepare(gr, v, &opts()), Prepared::Skip(_));
        assert!(skipped(
            "pods",
            json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}})
        ));
        assert!(skipped(
            "pods",
            json!({"metadata": {"name": "p", "annotations": {"kubernetes.io/config.mirror": "x"}}})
        ));
        assert!(skipped(
            "jobs.batch",
            json!({"metadata": {"name": "j"}, "status": {"completionTime": "2026-01-01T00:00:00Z"}})
        ));
        assert!(skipped(
            "secrets",
            json!({"metadata": {"name": "t", "annotations": {"kubernetes.io/service-account.name": "sa"}},
            "type": "kubernetes.io/service-account-token"})
        ));
        assert!(!skipped(
            "pods",
            json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}})
        ));
    }

    #[test]
    fn pods_jobs_claims_volumes_bindings_and_accounts_follow_velero() {
        let pod = created(
            "pods",
            json!({"metadata": {"name": "p", "namespace": "prod"},
            "spec": {"nodeName": "n1", "priority": 5, "containers": []}}),
            &opts(),
        );
        assert_eq!(pod["spec"], json!({"containers": []}));

        let job = created(
            "jobs.batch",
            json!({"metadata": {"name": "j"}, "spec": {
            "selector": {"matchLabels": {"controller-uid": "x", "app": "a"}},
            "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "x", "app": "a"}}}}}),
            &opts(),
        );
        assert_eq!(job["spec"]["selector"]["matchLabels"], json!({"app": "a"}));
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "a"})
        );

        let pvc = created(
            "persistentvolumeclaims",
            json!({"metadata": {"name": "d", "namespace": "prod",
            "annotations": {"pv.kubernetes.io/bind-completed": "yes", "keep": "me"}}}),
            &opts(),
        );
        assert_eq!(pvc["metadata"]["annotations"], json!({"keep": "me"}));

        let pv = created(
            "persistentvolumes",
            json!({"metadata": {"name": "v"},
            "spec": {"claimRef": {"namespace": "prod", "name": "d", "uid": "u", "resourceVersion": "1"}}}),
            &opts(),
        );
        assert_eq!(
            pv["spec"]["claimRef"],
            json!({"namespace": "staging", "name": "d"})
        );

        let rb = created(
            "rolebindings.rbac.authorization.k8s.io",
            json!({"metadata": {"name": "b", "namespace": "prod"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "prod"}, {"kind": "User", "name": "u"}]}),
            &opts(),
        );
        assert_eq!(rb["subjects"][0]["namespace"], "staging");
        assert_eq!(rb["metadata"]["namespace"], "staging");

        let sa = created(
            "serviceaccounts",
            json!({"metadata": {"name": "sa"},
            "secrets": [{"name": "sa-token-abc"}, {"name": "pull"}]}),
            &opts(),
        );
        assert_eq!(sa["secrets"], json!([{"name": "pull"}]));

        let ns = created(
            "namespaces",
            json!({"metadata": {"name": "prod"}, "spec": {"finalizers": ["kubernetes"]}}),
            &opts(),
        );
        assert_eq!(ns["metadata"]["name"], "staging");
    }
}
