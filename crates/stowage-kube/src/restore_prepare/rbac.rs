//! RoleBindings and ClusterRoleBindings (Velero's `rolebinding_action.go` and
//! `clusterrolebinding_action.go`): subjects follow the namespace mapping.

use super::PrepareOptions;
use serde_json::{Map, Value};

/// Maps the namespace of each subject.
pub(super) fn map_subjects(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    if let Some(Value::Array(subjects)) = obj.get_mut("subjects") {
        for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
            opts.remap_namespace(s.get_mut("namespace"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn role_binding_subjects_follow_the_namespace_mapping() {
        let rb = created(
            "rolebindings.rbac.authorization.k8s.io",
            json!({"metadata": {"name": "b", "namespace": "prod"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "prod"}, {"kind": "User", "name": "u"}]}),
            &opts(),
        );
        assert_eq!(rb["subjects"][0]["namespace"], "staging");
        assert_eq!(rb["subjects"][1], json!({"kind": "User", "name": "u"}));
        assert_eq!(rb["metadata"]["namespace"], "staging");
    }
}
