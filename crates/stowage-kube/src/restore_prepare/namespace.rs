//! Namespace objects: created under the name the namespace mapping gives them (velero.md §4.4).

use super::PrepareOptions;
use serde_json::{Map, Value};

/// Renames a Namespace object to its mapping's target.
pub(super) fn map_name(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    opts.remap_namespace(obj.get_mut("metadata").and_then(|m| m.get_mut("name")));
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn a_mapped_namespace_is_created_under_its_new_name() {
        let ns = created(
            "namespaces",
            json!({"metadata": {"name": "prod"}, "spec": {"finalizers": ["kubernetes"]}}),
            &opts(),
        );
        assert_eq!(ns["metadata"]["name"], "staging");
        assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
    }
}
