//! StatefulSets (Velero's `velero.io/change-storage-class` action): the claim templates take
//! the mapped storage class, as the claims made from them would.

use super::{volume, PrepareOptions};
use serde_json::{Map, Value};

/// Maps the storage class of each of `spec.volumeClaimTemplates`.
pub(super) fn map_claim_templates(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    let Some(Value::Array(templates)) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("volumeClaimTemplates"))
    else {
        return;
    };
    for template in templates.iter_mut().filter_map(Value::as_object_mut) {
        volume::map_claim_storage_class(template, opts);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::PrepareOptions;
    use serde_json::json;

    #[test]
    fn claim_templates_take_the_mapped_storage_class() {
        let sts = created(
            "statefulsets.apps",
            json!({"metadata": {"name": "db"}, "spec": {"volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"storageClassName": "gp2"}},
                {"metadata": {"name": "logs"}, "spec": {"storageClassName": "fast"}},
                {"metadata": {"name": "tmp"}, "spec": {}}]}}),
            &PrepareOptions {
                storage_class_mapping: [("gp2".to_string(), "gp3".to_string())].into(),
                ..opts()
            },
        );
        let templates = &sts["spec"]["volumeClaimTemplates"];
        assert_eq!(templates[0]["spec"]["storageClassName"], "gp3");
        assert_eq!(templates[1]["spec"]["storageClassName"], "fast");
        assert_eq!(templates[2]["spec"], json!({}));
    }
}
