//! Jobs (Velero's `velero.io/job` action): completed jobs are skipped, the others lose the
//! labels that name the old job's UID.

use super::pointer_mut;
use serde_json::{Map, Value};

/// Why a job is not restored: it has completed.
pub(super) fn skip_reason(object: &Value) -> Option<&'static str> {
    object
        .pointer("/status/completionTime")
        .is_some_and(|v| !v.is_null())
        .then_some("a job that has completed")
}

/// A job's controller-uid labels name the old job.
pub(super) fn reset(obj: &mut Map<String, Value>) {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn a_completed_job_is_skipped() {
        assert!(skipped(
            "jobs.batch",
            json!({"metadata": {"name": "j"}, "status": {"completionTime": "2026-01-01T00:00:00Z"}})
        ));
        assert!(!skipped(
            "jobs.batch",
            json!({"metadata": {"name": "j"}, "status": {"completionTime": null}})
        ));
    }

    #[test]
    fn a_job_loses_the_labels_naming_the_old_job() {
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
    }
}
