//! Secrets (Velero's `velero.io/secret` action): service account tokens are skipped, since the
//! cluster issues new ones; other secrets lose the UID of the account they were made for.

use super::{annotation, pointer_mut};
use serde_json::{Map, Value};

/// Why a secret is not restored: it is a token the cluster issues again.
pub(super) fn skip_reason(object: &Value) -> Option<&'static str> {
    let kind = object.get("type").and_then(Value::as_str);
    (kind == Some("kubernetes.io/service-account-token")
        && annotation(object, "kubernetes.io/service-account.name").is_some())
    .then_some("a service account token: the cluster issues new ones")
}

/// The old account's UID does not name the restored account.
pub(super) fn reset(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(annotations)) = pointer_mut(obj, "/metadata/annotations") {
        annotations.remove("kubernetes.io/service-account.uid");
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn an_account_token_is_skipped_other_secrets_are_not() {
        assert!(skipped(
            "secrets",
            json!({"metadata": {"name": "t", "annotations": {"kubernetes.io/service-account.name": "sa"}},
            "type": "kubernetes.io/service-account-token"})
        ));
        assert!(!skipped(
            "secrets",
            json!({"metadata": {"name": "o"}, "type": "Opaque"})
        ));
    }

    #[test]
    fn a_secret_loses_the_old_account_uid() {
        let s = created(
            "secrets",
            json!({"metadata": {"name": "s", "annotations": {
                "kubernetes.io/service-account.uid": "u", "keep": "me"}}, "type": "Opaque"}),
            &opts(),
        );
        assert_eq!(s["metadata"]["annotations"], json!({"keep": "me"}));
    }
}
