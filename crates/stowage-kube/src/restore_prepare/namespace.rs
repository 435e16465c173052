//! Namespace objects: created under the name the namespace mapping gives them (velero.md §4.4).

use super::PrepareOptions;
use serde_json::{Map, Value};

/// The label the API server gives every namespace, its own name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Renames a Namespace object to its mapping's target; the name label the API server sets
/// goes (it sets it again, to the new name).
pub(super) fn map_name(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    opts.remap_namespace(obj.get_mut("metadata").and_then(|m| m.get_mut("name")));
    if let Some(Value::Object(labels)) = obj.get_mut("metadata").and_then(|m| m.get_mut("labels")) {
        labels.remove(NAME_LABEL);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::NAME_LABEL;
    use serde_json::json;

    #[test]
    fn a_mapped_namespace_is_created_under_its_new_name() {
        let ns = created(
            "namespaces",
            json!({"metadata": {"name": "prod", "labels": {NAME_LABEL: "prod", "team": "a"}},
                   "spec": {"finalizers": ["kubernetes"]}}),
            &opts(),
        );
        assert_eq!(ns["metadata"]["name"], "staging");
        assert_eq!(ns["metadata"]["labels"]["team"], "a");
        assert!(ns["metadata"]["labels"].get(NAME_LABEL).is_none());
        assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
    }
}
