//! OpenShift kinds, as OADP's restore plugins treat them: generated route hosts, service
//! account users of security context constraints, and the pull and token secrets and build pods
//! that OpenShift makes again by itself.

use super::{annotation, PrepareOptions};
use serde_json::{Map, Value};

/// The prefix of a service account's user name: `system:serviceaccount:<ns>:<name>`.
const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:";

/// Why a secret is not restored: OpenShift generates it for a service account again.
pub(super) fn secret_skip_reason(object: &Value) -> Option<&'static str> {
    let kind = object.get("type").and_then(Value::as_str);
    if kind == Some("kubernetes.io/dockercfg")
        && annotation(object, "kubernetes.io/service-account.name").is_some()
    {
        return Some("a generated pull secret: OpenShift makes it again for its service account");
    }
    if annotation(object, "openshift.io/token-secret.name").is_some() {
        return Some("a secret made from a service account token: OpenShift makes it again");
    }
    None
}

/// Why a pod is not restored: a build made it, and the build runs again.
pub(super) fn build_pod_skip_reason(object: &Value) -> Option<&'static str> {
    annotation(object, "openshift.io/build.name")
        .is_some()
        .then_some("a build pod: its build runs again")
}

/// A service account loses its references to the generated pull secrets
/// (`<account>-dockercfg-*`), which are not restored.
pub(super) fn drop_generated_pull_secrets(obj: &mut Map<String, Value>) {
    let account = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let generated = format!("{account}-dockercfg-");
    for key in ["secrets", "imagePullSecrets"] {
        if let Some(Value::Array(refs)) = obj.get_mut(key) {
            refs.retain(|r| {
                !r.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with(&generated))
            });
        }
    }
}

/// A route whose host the router generated gets a new one in its new place; a host the user
/// set is kept.
pub(super) fn reset_route(obj: &mut Map<String, Value>) {
    let generated = obj
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get("openshift.io/host.generated"))
        .and_then(Value::as_str)
        == Some("true");
    if generated {
        if let Some(Value::Object(spec)) = obj.get_mut("spec") {
            spec.remove("host");
        }
    }
}

/// The service account users of a security context constraint follow the namespace mapping.
pub(super) fn map_scc_users(obj: &mut Map<String, Value>, opts: &PrepareOptions) {
    let Some(Value::Array(users)) = obj.get_mut("users") else {
        return;
    };
    for user in users.iter_mut() {
        let Value::String(name) = user else {
            continue;
        };
        let Some(rest) = name.strip_prefix(SERVICE_ACCOUNT_USER) else {
            continue;
        };
        let Some((ns, account)) = rest.split_once(':') else {
            continue;
        };
        if let Some(to) = opts.namespace_mapping.get(ns) {
            *name = format!("{SERVICE_ACCOUNT_USER}{to}:{account}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{prepare, Prepared};
    use serde_json::json;

    #[test]
    fn a_generated_route_host_goes_a_set_one_stays() {
        let route = |generated: &str| {
            created(
                "routes.route.openshift.io",
                json!({"metadata": {"name": "r", "annotations": {"openshift.io/host.generated": generated}},
                "spec": {"host": "r-prod.apps.example.com", "to": {"name": "web"}}}),
                &opts(),
            )
        };
        assert_eq!(route("true")["spec"], json!({"to": {"name": "web"}}));
        assert_eq!(route("false")["spec"]["host"], "r-prod.apps.example.com");
        let plain = created(
            "routes.route.openshift.io",
            json!({"metadata": {"name": "r"}, "spec": {"host": "shop.example.com"}}),
            &opts(),
        );
        assert_eq!(plain["spec"]["host"], "shop.example.com");
    }

    #[test]
    fn scc_service_account_users_follow_the_namespace_mapping() {
        let scc = created(
            "securitycontextconstraints.security.openshift.io",
            json!({"metadata": {"name": "s"}, "users": [
                "system:serviceaccount:prod:builder", "system:serviceaccount:dev:builder",
                "system:admin", "alice"]}),
            &opts(),
        );
        assert_eq!(
            scc["users"],
            json!([
                "system:serviceaccount:staging:builder",
                "system:serviceaccount:dev:builder",
                "system:admin",
                "alice"
            ])
        );
    }

    #[test]
    fn generated_pull_and_token_secrets_are_skipped_with_a_reason() {
        let pull = json!({"metadata": {"name": "builder-dockercfg-x7k2p",
            "annotations": {"kubernetes.io/service-account.name": "builder"}},
            "type": "kubernetes.io/dockercfg"});
        assert!(
            matches!(prepare("secrets", pull, &opts()), Prepared::Skip(why) if why.contains("pull secret"))
        );
        let token = json!({"metadata": {"name": "builder-token-abcde",
            "annotations": {"openshift.io/token-secret.name": "builder-token-abcde"}},
            "type": "Opaque"});
        assert!(skipped("secrets", token));
        let users_own =
            json!({"metadata": {"name": "registry"}, "type": "kubernetes.io/dockercfg"});
        assert!(!skipped("secrets", users_own));
    }

    #[test]
    fn an_account_forgets_its_generated_pull_secrets() {
        let sa = created(
            "serviceaccounts",
            json!({"metadata": {"name": "builder"},
            "secrets": [{"name": "builder-dockercfg-x7k2p"}, {"name": "mine"}],
            "imagePullSecrets": [{"name": "builder-dockercfg-x7k2p"}, {"name": "registry"},
                                 {"name": "quay-dockercfg-prod"}]}),
            &opts(),
        );
        assert_eq!(sa["secrets"], json!([{"name": "mine"}]));
        // A user's pull secret whose name only looks generated stays.
        assert_eq!(
            sa["imagePullSecrets"],
            json!([{"name": "registry"}, {"name": "quay-dockercfg-prod"}])
        );
    }

    #[test]
    fn a_build_pod_is_skipped() {
        let pod = json!({"metadata": {"name": "app-1-build",
            "annotations": {"openshift.io/build.name": "app-1"}}, "status": {"phase": "Running"}});
        assert_eq!(
            prepare("pods", pod, &opts()),
            Prepared::Skip("a build pod: its build runs again")
        );
    }
}
