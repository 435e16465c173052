//! Persistent volume claims and volumes (Velero's `velero.io/pvc` action and the PV branch of
//! `restoreItem`, velero.md §4.6): a restored claim binds afresh, a statically restored volume
//! follows its claim's namespace.

use super::{pointer_mut, PrepareOptions};
use serde_json::{Map, Value};

/// PVC annotations the binding controllers set, which would stop a restored claim from binding
/// afresh.
const PVC_BINDING_ANNOTATIONS: [&str; 5] = [
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
];

/// A claim loses the annotations of its old binding.
pub(super) fn reset_claim(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(annotations)) = pointer_mut(obj, "/metadata/annotations") {
        for key in PVC_BINDING_ANNOTATIONS {
            annotations.remove(key);
        }
    }
}

/// A statically restored volume's claim reference follows the namespace mapping, and loses the
/// old claim's UID and version so that the restored claim can bind it.
pub(super) fn map_claim_ref(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    if let Some(Value::Object(claim)) = pointer_mut(obj, "/spec/claimRef") {
        claim.remove("uid");
        claim.remove("resourceVersion");
        opts.remap_namespace(claim.get_mut("namespace"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn a_claim_loses_its_binding_annotations_only() {
        let pvc = created(
            "persistentvolumeclaims",
            json!({"metadata": {"name": "d", "namespace": "prod",
            "annotations": {"pv.kubernetes.io/bind-completed": "yes", "keep": "me"}}}),
            &opts(),
        );
        assert_eq!(pvc["metadata"]["annotations"], json!({"keep": "me"}));
    }

    #[test]
    fn a_volume_claim_ref_follows_the_namespace_and_forgets_the_old_claim() {
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
    }
}
