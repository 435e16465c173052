//! ServiceAccounts (Velero's `velero.io/service-account` action): references to the old token
//! Secrets, which are not restored, are dropped.

use serde_json::{Map, Value};

/// Drops the `secrets` entries named `<account>-token-*`.
pub(super) fn drop_token_secrets(obj: &mut Map<String, Value>) {
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let prefix = format!("{name}-token-");
    if let Some(Value::Array(secrets)) = obj.get_mut("secrets") {
        secrets.retain(|s| {
            !s.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with(&prefix))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn an_account_forgets_its_old_token_secrets() {
        let sa = created(
            "serviceaccounts",
            json!({"metadata": {"name": "sa"},
            "secrets": [{"name": "sa-token-abc"}, {"name": "pull"}, {"name": "other-token-x"}]}),
            &opts(),
        );
        assert_eq!(
            sa["secrets"],
            json!([{"name": "pull"}, {"name": "other-token-x"}])
        );
    }
}
