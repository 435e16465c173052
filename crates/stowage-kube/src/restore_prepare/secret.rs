//! Secrets (Velero's `velero.io/secret` action): the legacy token secrets the cluster generated
//! for an account (`<account>-token-<suffix>`) are skipped, since the cluster issues new ones;
//! a token secret a user made (the long-lived token pattern since Kubernetes 1.24) is restored
//! without its token, which the token controller fills in for the restored account; every
//! secret loses the UID of the account it was made for.

use super::{annotation, pointer_mut};
use serde_json::{Map, Value};

const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

/// Why a secret is not restored: it is a token the cluster generated, and generates again.
pub(super) fn skip_reason(object: &Value) -> Option<&'static str> {
    let kind = object.get("type").and_then(Value::as_str);
    let account = annotation(object, "kubernetes.io/service-account.name").and_then(Value::as_str);
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (kind, account) {
        (Some(TOKEN_TYPE), Some(account)) if name.starts_with(&format!("{account}-token-")) => {
            Some("a service account token the cluster generated: it issues a new one")
        }
        _ => None,
    }
}

/// The old account's UID does not name the restored account; a token secret's token (signed
/// for the old account) goes, and the token controller issues one for the restored account.
pub(super) fn reset(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(annotations)) = pointer_mut(obj, "/metadata/annotations") {
        annotations.remove("kubernetes.io/service-account.uid");
    }
    if obj.get("type").and_then(Value::as_str) == Some(TOKEN_TYPE) {
        if let Some(Value::Object(data)) = obj.get_mut("data") {
            for key in ["token", "ca.crt", "namespace"] {
                data.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn a_generated_account_token_is_skipped_other_secrets_are_not() {
        assert!(skipped(
            "secrets",
            json!({"metadata": {"name": "sa-token-x7k2p", "annotations": {"kubernetes.io/service-account.name": "sa"}},
            "type": "kubernetes.io/service-account-token"})
        ));
        // A long-lived token a user made: restored, its token issued anew.
        let mine = json!({"metadata": {"name": "ci-token", "annotations": {
                "kubernetes.io/service-account.name": "ci", "kubernetes.io/service-account.uid": "old"}},
            "type": "kubernetes.io/service-account-token",
            "data": {"token": "dG9r", "ca.crt": "Y2E=", "namespace": "bnM=", "extra": "eA=="}});
        assert!(!skipped("secrets", mine.clone()));
        let s = created("secrets", mine, &opts());
        assert_eq!(s["data"], json!({"extra": "eA=="}));
        assert!(s["metadata"]["annotations"]
            .get("kubernetes.io/service-account.uid")
            .is_none());
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
