//! Persistent volume claims and volumes (Velero's `velero.io/pvc` and
//! `velero.io/change-storage-class` actions and the PV branch of `restoreItem`, velero.md §4.6):
//! a restored claim binds afresh, to the volume's new name or to a newly provisioned volume; a
//! statically restored volume follows its claim's namespace; both take the mapped storage class.

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

/// The annotation that named a claim's storage class before `spec.storageClassName`.
const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// A claim loses the annotations of its old binding, takes the mapped storage class, and names
/// its volume's new name, or no volume when the volume is provisioned afresh.
pub(super) fn reset_claim(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    if let Some(Value::Object(annotations)) = pointer_mut(obj, "/metadata/annotations") {
        for key in PVC_BINDING_ANNOTATIONS {
            annotations.remove(key);
        }
    }
    map_claim_storage_class(obj, opts);
    let Some(Value::Object(spec)) = obj.get_mut("spec") else {
        return;
    };
    let Some(old) = spec.get("volumeName").and_then(Value::as_str) else {
        return;
    };
    match opts.volume_names.get(old) {
        Some(Some(new)) => {
            spec.insert("volumeName".into(), Value::String(new.clone()));
        }
        Some(None) => {
            spec.remove("volumeName");
        }
        None => {}
    }
}

/// The storage class of a claim, or of a StatefulSet's claim template: `spec.storageClassName`
/// and the older annotation.
pub(super) fn map_claim_storage_class(claim: &mut Map<String, Value>, opts: &PrepareOptions) {
    if let Some(Value::Object(annotations)) = pointer_mut(claim, "/metadata/annotations") {
        map_storage_class(annotations.get_mut(STORAGE_CLASS_ANNOTATION), opts);
    }
    map_storage_class(pointer_mut(claim, "/spec/storageClassName"), opts);
}

/// A statically restored volume's claim reference follows the namespace mapping, and loses the
/// old claim's UID and version so that the restored claim can bind it; the volume takes the
/// mapped storage class and its new name.
pub(super) fn reset_volume(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    if let Some(Value::Object(claim)) = pointer_mut(obj, "/spec/claimRef") {
        claim.remove("uid");
        claim.remove("resourceVersion");
        opts.remap_namespace(claim.get_mut("namespace"));
    }
    map_storage_class(pointer_mut(obj, "/spec/storageClassName"), opts);
    if let Some(Value::String(name)) = pointer_mut(obj, "/metadata/name") {
        if let Some(Some(new)) = opts.volume_names.get(name.as_str()) {
            *name = new.clone();
        }
    }
}

/// Replaces the storage class name in `slot`, if it is a string the mapping names.
fn map_storage_class(slot: Option<&mut Value>, opts: &PrepareOptions) {
    if let Some(Value::String(class)) = slot {
        if let Some(to) = opts.storage_class_mapping.get(class.as_str()) {
            *class = to.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::PrepareOptions;
    use serde_json::json;

    fn mapping_opts() -> PrepareOptions {
        PrepareOptions {
            storage_class_mapping: [("gp2".to_string(), "gp3".to_string())].into(),
            volume_names: [
                ("pv-old".to_string(), Some("pv-new".to_string())),
                ("pv-gone".to_string(), None),
            ]
            .into(),
            ..opts()
        }
    }

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
    fn a_claim_takes_the_mapped_storage_class_in_its_spec_and_annotation() {
        let pvc = created(
            "persistentvolumeclaims",
            json!({"metadata": {"name": "d", "annotations": {"volume.beta.kubernetes.io/storage-class": "gp2"}},
            "spec": {"storageClassName": "gp2"}}),
            &mapping_opts(),
        );
        assert_eq!(pvc["spec"]["storageClassName"], "gp3");
        assert_eq!(
            pvc["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"],
            "gp3"
        );
        let other = created(
            "persistentvolumeclaims",
            json!({"metadata": {"name": "d"}, "spec": {"storageClassName": "fast"}}),
            &mapping_opts(),
        );
        assert_eq!(other["spec"]["storageClassName"], "fast");
    }

    #[test]
    fn a_claim_names_its_renamed_volume_or_none_when_the_volume_is_provisioned_afresh() {
        let claim = |volume: &str| {
            created(
                "persistentvolumeclaims",
                json!({"metadata": {"name": "d"}, "spec": {"volumeName": volume, "resources": {}}}),
                &mapping_opts(),
            )
        };
        assert_eq!(claim("pv-old")["spec"]["volumeName"], "pv-new");
        assert_eq!(claim("pv-gone")["spec"], json!({"resources": {}}));
        assert_eq!(claim("pv-kept")["spec"]["volumeName"], "pv-kept");
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

    #[test]
    fn a_volume_takes_the_mapped_storage_class_and_its_new_name() {
        let pv = |name: &str| {
            created(
                "persistentvolumes",
                json!({"metadata": {"name": name}, "spec": {"storageClassName": "gp2"}}),
                &mapping_opts(),
            )
        };
        let renamed = pv("pv-old");
        assert_eq!(renamed["metadata"]["name"], "pv-new");
        assert_eq!(renamed["spec"]["storageClassName"], "gp3");
        assert_eq!(pv("pv-gone")["metadata"]["name"], "pv-gone");
        assert_eq!(pv("pv-other")["metadata"]["name"], "pv-other");
    }
}
