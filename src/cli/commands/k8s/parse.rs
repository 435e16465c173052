//! Parsers of the `stowage k8s` flag values, in Velero's syntax: label selectors (and the
//! `" or "`-separated list of `--or-selector`), `--ordered-resources`, `KEY=VALUE` lists,
//! `SECRET=KEY` references and Go durations. Each returns a message naming what is wrong,
//! which clap prints as a usage error (exit 2).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::SecretKeySelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use stowage_kube::api::{format_duration, parse_duration};

/// The `--or-selector` value: selectors any of which an object must match.
#[derive(Clone, Debug, PartialEq)]
pub struct OrSelectors(pub Vec<LabelSelector>);

/// The `--ordered-resources` value: resource to a comma-separated list of objects.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderedResources(pub BTreeMap<String, String>);

/// One requirement of a selector, before it is sorted into `matchLabels` or
/// `matchExpressions`.
#[derive(Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    Expression(LabelSelectorRequirement),
}

/// Parses a label selector as kubectl and Velero write it: requirements separated by commas,
/// each `k=v` (or `k==v`), `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists) or `!k` (does
/// not exist). `k=v` becomes `matchLabels`; the rest `matchExpressions` (`!=` as `NotIn`), as
/// Kubernetes' `ParseToLabelSelector` does.
pub fn label_selector(input: &str) -> Result<LabelSelector, String> {
    if input.trim().is_empty() {
        return Err("empty label selector".into());
    }
    let mut labels = BTreeMap::new();
    let mut expressions = Vec::new();
    for part in split_top_level(input)? {
        match requirement(part)? {
            Requirement::Equals(k, v) => match labels.get(&k) {
                Some(old) if *old != v => {
                    return Err(format!(
                        "label {k:?} is required to equal both {old:?} and {v:?}"
                    ))
                }
                _ => {
                    labels.insert(k, v);
                }
            },
            Requirement::Expression(e) => expressions.push(e),
        }
    }
    Ok(LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    })
}

/// Parses `--or-selector`: label selectors separated by `" or "` (Velero's syntax).
pub fn or_label_selectors(input: &str) -> Result<OrSelectors, String> {
    let parts: Vec<&str> = input.split(" or ").collect();
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let sel = label_selector(part).map_err(|e| match parts.len() {
            1 => e,
            _ => format!(
                "selector {} of {} ({:?}): {e}",
                i + 1,
                parts.len(),
                part.trim()
            ),
        })?;
        out.push(sel);
    }
    Ok(OrSelectors(out))
}

/// Splits at the commas that are not inside `( )`.
fn split_top_level(input: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(format!("nested parentheses in {input:?}")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(format!("unbalanced ')' in {input:?}")),
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("missing ')' in {input:?}"));
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn requirement(part: &str) -> Result<Requirement, String> {
    let r = part.trim();
    if r.is_empty() {
        return Err("empty requirement (two commas in a row, or a trailing comma?)".into());
    }
    let expression = |key: &str, operator: &str, values: Option<Vec<String>>| {
        Requirement::Expression(LabelSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values,
        })
    };
    if let Some(key) = r.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(expression(key, "DoesNotExist", None));
    }
    let end = r.find(|c: char| !is_key_char(c)).unwrap_or(r.len());
    let (key, rest) = r.split_at(end);
    check_key(key)?;
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(expression(key, "Exists", None));
    }
    if let Some(v) = rest.strip_prefix("!=") {
        let v = v.trim();
        check_value(v)?;
        return Ok(expression(key, "NotIn", Some(vec![v.to_string()])));
    }
    if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        let v = v.trim();
        check_value(v)?;
        return Ok(Requirement::Equals(key.to_string(), v.to_string()));
    }
    for (word, operator) in [("notin", "NotIn"), ("in", "In")] {
        if let Some(set) = rest.strip_prefix(word) {
            if set.starts_with(|c: char| c == '(' || c.is_whitespace()) {
                return Ok(expression(key, operator, Some(value_set(set.trim())?)));
            }
        }
    }
    if rest.starts_with(['<', '>']) {
        return Err(format!(
            "{r:?}: a label selector of a Backup cannot compare numbers (< and > are not allowed)"
        ));
    }
    Err(format!(
        "{r:?}: expected KEY, !KEY, KEY=VALUE, KEY!=VALUE, KEY in (V1,V2) or KEY notin (V1,V2)"
    ))
}

fn value_set(set: &str) -> Result<Vec<String>, String> {
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("{set:?}: expected a set of values in parentheses, (a,b)"))?;
    if inner.trim().is_empty() {
        return Err("an empty set of values, (), matches nothing".into());
    }
    let mut values = Vec::new();
    for v in inner.split(',') {
        let v = v.trim();
        check_value(v)?;
        values.push(v.to_string());
    }
    Ok(values)
}

/// A label name: at most 63 characters, alphanumeric at both ends, `-_.` inside.
fn check_name(name: &str, what: &str, full: &str) -> Result<(), String> {
    let ok = name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    match ok {
        true => Ok(()),
        false => Err(format!(
            "invalid label {what} {full:?}: at most 63 characters, letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
        )),
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a requirement has no label key".into());
    }
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "invalid label key {key:?}: the prefix before '/' must be a DNS subdomain (lower case, like example.com)"
            ));
        }
    }
    check_name(name, "key", key)
}

fn check_value(value: &str) -> Result<(), String> {
    match value.is_empty() {
        true => Ok(()),
        false => check_name(value, "value", value),
    }
}

/// Parses `--ordered-resources`: `RESOURCE=OBJ1,OBJ2;RESOURCE2=...` where an object is
/// `namespace/name`, or `name` for a cluster-scoped type (Velero's syntax).
pub fn ordered_resources(input: &str) -> Result<OrderedResources, String> {
    let mut out = BTreeMap::new();
    for entry in input.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (resource, objects) = entry.split_once('=').ok_or_else(|| {
            format!("{entry:?}: expected RESOURCE=NAMESPACE/NAME,... (e.g. pods=ns1/a,ns1/b)")
        })?;
        let resource = resource.trim();
        if resource.is_empty() {
            return Err(format!("{entry:?}: no resource before '='"));
        }
        let objects: Vec<&str> = objects
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .collect();
        if objects.is_empty() {
            return Err(format!("{entry:?}: no objects after '='"));
        }
        if let Some(bad) = objects.iter().find(|o| o.matches('/').count() > 1) {
            return Err(format!(
                "{bad:?}: an object is NAMESPACE/NAME, or NAME for a cluster-scoped type"
            ));
        }
        if out
            .insert(resource.to_string(), objects.join(","))
            .is_some()
        {
            return Err(format!("resource {resource:?} is given twice"));
        }
    }
    if out.is_empty() {
        return Err("empty: expected RESOURCE=NAMESPACE/NAME,...;RESOURCE2=...".into());
    }
    Ok(OrderedResources(out))
}

/// Parses one `KEY=VALUE` of a list flag (`--labels`, `--config`); the value may be empty.
pub fn key_value(input: &str) -> Result<(String, String), String> {
    let (k, v) = input
        .split_once('=')
        .ok_or_else(|| format!("{input:?}: expected KEY=VALUE"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("{input:?}: no key before '='"));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

/// Parses `SECRET=KEY`: a key of a Secret in the controller's namespace.
pub fn secret_ref(input: &str) -> Result<SecretKeySelector, String> {
    match input.split_once('=') {
        Some((name, key))
            if !name.trim().is_empty() && !key.trim().is_empty() && !key.contains('=') =>
        {
            Ok(SecretKeySelector {
                name: name.trim().to_string(),
                key: key.trim().to_string(),
                optional: None,
            })
        }
        _ => Err(format!(
            "{input:?}: expected SECRET=KEY, the name of a Secret and one of its keys"
        )),
    }
}

/// Parses a Go duration (`72h`, `1h30m`) and writes it back the way the API stores one
/// (`72h0m0s`).
pub fn duration(input: &str) -> Result<String, String> {
    parse_duration(input)
        .map(format_duration)
        .map_err(|e| e.to_string())
}

/// A selector as kubectl prints one: `app=web,tier in (a,b),!legacy`, sorted; `<none>` when
/// empty.
pub fn format_selector(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        });
    }
    parts.sort();
    match parts.is_empty() {
        true => "<none>".into(),
        false => parts.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn equality_requirements_become_match_labels() {
        let sel = label_selector("app=web, tier==front").unwrap();
        assert_eq!(
            sel.match_labels,
            Some(BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "front".to_string())
            ]))
        );
        assert_eq!(sel.match_expressions, None);
        assert_eq!(
            label_selector("app.kubernetes.io/name=")
                .unwrap()
                .match_labels,
            Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                String::new()
            )]))
        );
    }

    #[test]
    fn set_existence_and_inequality_requirements_become_expressions() {
        let sel = label_selector("k2 in (a, b),env notin (dev),release,!legacy,x!=y").unwrap();
        assert_eq!(sel.match_labels, None);
        assert_eq!(
            sel.match_expressions.unwrap(),
            vec![
                expr("k2", "In", Some(&["a", "b"])),
                expr("env", "NotIn", Some(&["dev"])),
                expr("release", "Exists", None),
                expr("legacy", "DoesNotExist", None),
                expr("x", "NotIn", Some(&["y"])),
            ]
        );
        let mixed = label_selector("k=v,k2 in (a,b)").unwrap();
        assert_eq!(mixed.match_labels.unwrap()["k"], "v");
        assert_eq!(
            mixed.match_expressions.unwrap(),
            vec![expr("k2", "In", Some(&["a", "b"]))]
        );
        // `in` glued to the set, and a key that merely starts with "in".
        assert_eq!(
            label_selector("k in(a)")
                .unwrap()
                .match_expressions
                .unwrap(),
            vec![expr("k", "In", Some(&["a"]))]
        );
        assert_eq!(
            label_selector("inner").unwrap().match_expressions.unwrap(),
            vec![expr("inner", "Exists", None)]
        );
    }

    #[test]
    fn bad_selectors_are_refused_with_a_reason() {
        for (bad, says) in [
            ("", "empty"),
            ("a=b,", "empty requirement"),
            ("k in (a,b", "missing ')'"),
            ("k in ()", "empty set"),
            ("k in a", "parentheses"),
            ("a=b=c", "invalid label value"),
            ("a>1", "cannot compare"),
            ("-a=b", "invalid label key"),
            ("Example.com/a=b", "DNS subdomain"),
            ("a=x,a=y", "both"),
            ("k foo", "expected KEY"),
            ("a=b)", "unbalanced"),
        ] {
            let err = label_selector(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?} gave {err:?}");
        }
        let long = format!("a={}", "v".repeat(64));
        assert!(label_selector(&long).is_err());
    }

    #[test]
    fn or_selectors_split_on_the_word_or() {
        let OrSelectors(sels) = or_label_selectors("a=b or c in (d,e) or !f").unwrap();
        assert_eq!(sels.len(), 3);
        assert_eq!(sels[0].match_labels.as_ref().unwrap()["a"], "b");
        assert_eq!(
            sels[1].match_expressions.clone().unwrap(),
            vec![expr("c", "In", Some(&["d", "e"]))]
        );
        assert_eq!(
            sels[2].match_expressions.clone().unwrap(),
            vec![expr("f", "DoesNotExist", None)]
        );
        let err = or_label_selectors("a=b or c=d=e").unwrap_err();
        assert!(err.starts_with("selector 2 of 2"), "{err}");
        assert!(or_label_selectors("a=b or ").is_err());
    }

    #[test]
    fn selectors_print_back_in_their_own_syntax() {
        for s in ["app=web,k2 in (a,b)", "!legacy,env notin (dev),release"] {
            assert_eq!(format_selector(&label_selector(s).unwrap()), s);
        }
        assert_eq!(format_selector(&LabelSelector::default()), "<none>");
        assert_eq!(
            format_selector(&label_selector("x!=y").unwrap()),
            "x notin (y)"
        );
    }

    #[test]
    fn ordered_resources_read_velero_syntax() {
        let OrderedResources(m) =
            ordered_resources("pods=ns/a, ns/b; persistentvolumes=pv1;").unwrap();
        assert_eq!(
            m,
            BTreeMap::from([
                ("pods".to_string(), "ns/a,ns/b".to_string()),
                ("persistentvolumes".to_string(), "pv1".to_string()),
            ])
        );
        for bad in ["pods", "=a", "pods=", "pods=a/b/c", "pods=a;pods=b", ""] {
            assert!(ordered_resources(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_values_and_secret_refs() {
        assert_eq!(
            key_value("region=eu-1"),
            Ok(("region".into(), "eu-1".into()))
        );
        assert_eq!(
            key_value("s3Url=http://h:9000/?a=b"),
            Ok(("s3Url".into(), "http://h:9000/?a=b".into()))
        );
        assert_eq!(key_value("empty="), Ok(("empty".into(), String::new())));
        assert!(key_value("novalue").is_err());
        assert!(key_value("=v").is_err());

        let s = secret_ref("cloud-credentials=cloud").unwrap();
        assert_eq!(
            (s.name.as_str(), s.key.as_str()),
            ("cloud-credentials", "cloud")
        );
        for bad in ["secret", "=key", "secret=", "a=b=c"] {
            assert!(secret_ref(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_are_stored_the_way_go_writes_them() {
        assert_eq!(duration("72h").as_deref(), Ok("72h0m0s"));
        assert_eq!(duration("90m").as_deref(), Ok("1h30m0s"));
        assert!(duration("3d").unwrap_err().contains("unknown unit"));
    }
}
