//! Pods (Velero's `velero.io/pod` action): mirror and finished pods are skipped, the others are
//! scheduled afresh.

use super::annotation;
use serde_json::{Map, Value};

/// Why a pod is not restored: its kubelet makes it again, or it has finished.
pub(super) fn skip_reason(object: &Value) -> Option<&'static str> {
    if annotation(object, "kubernetes.io/config.mirror").is_some() {
        return Some("a mirror pod: its kubelet makes it from a static manifest");
    }
    match object.pointer("/status/phase").and_then(Value::as_str) {
        Some("Succeeded") | Some("Failed") => Some("a pod that has finished"),
        _ => None,
    }
}

/// A restored pod is scheduled afresh.
pub(super) fn reset(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(spec)) = obj.get_mut("spec") {
        spec.remove("nodeName");
        spec.remove("priority");
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn finished_and_mirror_pods_are_skipped_running_ones_are_not() {
        assert!(skipped(
            "pods",
            json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}})
        ));
        assert!(skipped(
            "pods",
            json!({"metadata": {"name": "p"}, "status": {"phase": "Failed"}})
        ));
        assert!(skipped(
            "pods",
            json!({"metadata": {"name": "p", "annotations": {"kubernetes.io/config.mirror": "x"}}})
        ));
        assert!(!skipped(
            "pods",
            json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}})
        ));
    }

    #[test]
    fn a_restored_pod_loses_its_node_and_priority() {
        let pod = created(
            "pods",
            json!({"metadata": {"name": "p", "namespace": "prod"},
            "spec": {"nodeName": "n1", "priority": 5, "containers": []}}),
            &opts(),
        );
        assert_eq!(pod["spec"], json!({"containers": []}));
    }
}
