//! Services (Velero's `velero.io/service` action): new cluster addresses, new node ports unless
//! they are to be kept.

use serde_json::{Map, Value};

/// The cluster gives a restored Service a new cluster IP (a headless one stays headless), and
/// new node ports unless they are to be kept.
pub(super) fn reset(obj: &mut Map<String, Value>, preserve_node_ports: bool) {
    let Some(Value::Object(spec)) = obj.get_mut("spec") else {
        return;
    };
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if !headless {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    if !preserve_node_ports {
        spec.remove("healthCheckNodePort");
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.remove("nodePort");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::PrepareOptions;
    use serde_json::json;

    #[test]
    fn services_get_new_addresses_unless_headless_and_ports_unless_kept() {
        let svc = json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
            "type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        let out = created("services", svc.clone(), &opts());
        assert_eq!(
            out["spec"],
            json!({"type": "NodePort", "ports": [{"port": 80}]})
        );
        let kept = created(
            "services",
            svc,
            &PrepareOptions {
                preserve_node_ports: true,
                ..opts()
            },
        );
        assert_eq!(kept["spec"]["ports"][0]["nodePort"], 30080);
        let headless = created(
            "services",
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}),
            &opts(),
        );
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }
}
