//! Whether a live object already is what a restore would make of the backed-up one: every
//! field the prepared object sets must have the same value in the live one. Fields only the
//! live object has (defaults, a new cluster IP, a claim's bound volume) do not count, nor do
//! server-set metadata, the restore's own labels or, unless restored, `status`.
//!
//! The same comparison decides `existingResourcePolicy` (equal objects are "unchanged") and
//! verifies a restore (each restored object read back).

use crate::restore_prepare::{LABEL_BACKUP, LABEL_RESTORE};
use serde_json::{Map, Value};

/// The most differing paths reported for one object.
const MAX_PATHS: usize = 8;

/// The part of a prepared object a comparison looks at: everything but `apiVersion`, `kind`,
/// `status` (unless `with_status`) and `metadata`, of which only the labels (without the
/// restore's own) and annotations count.
pub fn comparable(object: &Value, with_status: bool) -> Value {
    let mut out = Map::new();
    let Some(obj) = object.as_object() else {
        return Value::Object(out);
    };
    for (k, v) in obj {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if !with_status => {}
            "metadata" => {
                let mut meta = Map::new();
                if let Some(Value::Object(labels)) = v.get("labels") {
                    let mut labels = labels.clone();
                    labels.remove(LABEL_BACKUP);
                    labels.remove(LABEL_RESTORE);
                    if !labels.is_empty() {
                        meta.insert("labels".into(), Value::Object(labels));
                    }
                }
                if let Some(a @ Value::Object(m)) = v.get("annotations") {
                    if !m.is_empty() {
                        meta.insert("annotations".into(), a.clone());
                    }
                }
                if !meta.is_empty() {
                    out.insert("metadata".into(), Value::Object(meta));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// The JSON pointers (at most a few) where `live` lacks a value of `desired`, comparing the
/// [`comparable`] parts of both. Empty: the live object matches.
pub fn differences(desired: &Value, live: &Value, with_status: bool) -> Vec<String> {
    let desired = comparable(desired, with_status);
    let mut paths = Vec::new();
    diff(&desired, live, &mut String::new(), &mut paths);
    paths
}

fn diff(desired: &Value, live: &Value, path: &mut String, out: &mut Vec<String>) {
    if out.len() >= MAX_PATHS {
        return;
    }
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                match l.get(k) {
                    Some(lv) => diff(dv, lv, path, out),
                    // An empty value and an absent one are the same to the API server.
                    None if is_empty(dv) => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            for (i, (dv, lv)) in d.iter().zip(l).enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                diff(dv, lv, path, out);
                path.truncate(len);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (d, l) if d == l => {}
        (d, Value::Null) if is_empty(d) => {}
        _ => out.push(if path.is_empty() {
            "/".into()
        } else {
            path.clone()
        }),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_only_the_live_object_has_do_not_count() {
        let desired = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web", LABEL_RESTORE: "r1"}},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}});
        let live = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "uid": "u", "labels": {"app": "web"}},
            "spec": {"clusterIP": "10.0.0.7", "ports": [{"port": 80, "protocol": "TCP"}],
                     "selector": {"app": "web"}},
            "status": {"loadBalancer": {}}});
        assert!(differences(&desired, &live, false).is_empty());
    }

    #[test]
    fn changed_added_and_removed_values_are_named_by_pointer() {
        let desired = json!({"metadata": {"annotations": {"a/b": "1"}},
            "data": {"k": "v", "gone": "x"}, "spec": {"list": [1, 2]}});
        let live = json!({"metadata": {"annotations": {"a/b": "2"}},
            "data": {"k": "changed"}, "spec": {"list": [1, 2, 3]}});
        let mut found = differences(&desired, &live, false);
        found.sort();
        assert_eq!(
            found,
            [
                "/data/gone",
                "/data/k",
                "/metadata/annotations/a~1b",
                "/spec/list"
            ]
        );
    }

    #[test]
    fn status_counts_only_when_it_is_restored() {
        let desired = json!({"spec": {}, "status": {"ready": true}});
        let live = json!({"spec": {}, "status": {"ready": false}});
        assert!(differences(&desired, &live, false).is_empty());
        assert_eq!(differences(&desired, &live, true), ["/status/ready"]);
    }

    #[test]
    fn empty_values_equal_absent_ones_and_numbers_compare_by_value() {
        let desired = json!({"spec": {"tolerations": [], "x": {}, "n": 1.0}});
        let live = json!({"spec": {"n": 1}});
        assert!(differences(&desired, &live, false).is_empty());
    }
}
