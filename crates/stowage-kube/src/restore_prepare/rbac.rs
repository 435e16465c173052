//! RoleBindings and ClusterRoleBindings (Velero's `rolebinding_action.go` and
//! `clusterrolebinding_action.go`): ServiceAccount subjects follow the namespace mapping.

use super::PrepareOptions;
use serde_json::{Map, Value};

/// Maps the namespace of each ServiceAccount subject; users and groups have no namespace.
pub(super) fn map_subjects(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    let Some(Value::Array(subjects)) = obj.get_mut("subjects") else {
        return;
    };
    for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
        if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount") {
            opts.remap_namespace(s.get_mut("namespace"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn role_binding_account_subjects_follow_the_namespace_mapping() {
        let rb = created(
            "rolebindings.rbac.authorization.k8s.io",
            json!({"metadata": {"name": "b", "namespace": "prod"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "prod"},
                         {"kind": "User", "name": "u"},
                         {"kind": "ServiceAccount", "name": "other", "namespace": "dev"}]}),
            &opts(),
        );
        assert_eq!(rb["subjects"][0]["namespace"], "staging");
        assert_eq!(rb["subjects"][1], json!({"kind": "User", "name": "u"}));
        assert_eq!(rb["subjects"][2]["namespace"], "dev");
        assert_eq!(rb["metadata"]["namespace"], "staging");
    }

    #[test]
    fn cluster_role_binding_account_subjects_follow_the_namespace_mapping() {
        let crb = created(
            "clusterrolebindings.rbac.authorization.k8s.io",
            json!({"metadata": {"name": "b"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "prod"},
                         {"kind": "Group", "name": "g", "namespace": "prod"}]}),
            &opts(),
        );
        assert_eq!(crb["subjects"][0]["namespace"], "staging");
        assert_eq!(crb["subjects"][1]["namespace"], "prod");
        assert!(crb["metadata"].get("namespace").is_none());
    }
}
