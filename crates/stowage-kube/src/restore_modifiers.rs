//! Velero's resource modifiers (issue 16, velero.md §4.8): rules, read from the single data value
//! of a ConfigMap, that patch restored objects before they are created.
//!
//! ```yaml
//! version: v1
//! resourceModifierRules:
//! - conditions:
//!     groupResource: persistentvolumeclaims   # required; `resource.group`, a glob ("*.apps")
//!     resourceNameRegex: "^mysql.*$"         # optional, searched in metadata.name
//!     namespaces: [bar, foo]                 # optional, exact names
//!     labelSelector: {matchLabels: {app: db}} # optional, Kubernetes LabelSelector semantics
//!     matches: [{path: /spec/replicas, value: "3"}] # optional, all must hold
//!   patches:                                 # RFC 6902, all or none
//!   - {operation: replace, path: /spec/storageClassName, value: premium}
//!   mergePatches:                            # RFC 7386
//!   - patchData: '{"metadata": {"annotations": {"foo": null}}}'
//! ```
//!
//! Guarantees: [`ResourceModifiers::parse`] checks everything it can before any object is seen
//! (the version, each rule's group-resource glob, name regex, selector, JSON pointers, patch
//! operations and patch data), and refuses a text over [`MAX_TEXT_BYTES`] or with more than
//! [`MAX_RULES`] rules. [`ResourceModifiers::apply`] applies the matching rules in order, each
//! judged on the object as the rules before it left it; a rule whose JSON patch fails leaves the
//! object as it was before that rule. Strategic merge patches are not supported: they need the
//! Go types' patch strategies, and a rule that has any is refused at parse time.
//!
//! A patch `value` may be a YAML value or, as in Velero, a string holding JSON or YAML text: a
//! string is read as YAML (of which JSON is a part), so `"3"` is the number 3 and `'"3"'` the
//! string "3".

use globset::{Glob, GlobMatcher};
use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, CopyOperation, MoveOperation, PatchOperation, RemoveOperation, ReplaceOperation,
    TestOperation,
};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The largest rule text accepted, in bytes (a ConfigMap holds at most 1 MiB).
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// The most rules one text may hold.
pub const MAX_RULES: usize = 1000;
/// The one format version there is.
const VERSION: &str = "v1";

/// What is wrong with a rule text, or with applying it. `rule` is the index of the rule in
/// `resourceModifierRules`, from 0; `patch` the index of the patch in its list.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModifierError {
    /// The text is larger than [`MAX_TEXT_BYTES`].
    #[error("the resource modifier text is {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// The text's size in bytes.
        size: usize,
        /// [`MAX_TEXT_BYTES`].
        limit: usize,
    },
    /// The text holds more than [`MAX_RULES`] rules.
    #[error("the resource modifier text has {count} rules, more than the {limit} allowed")]
    TooManyRules {
        /// How many rules the text has.
        count: usize,
        /// [`MAX_RULES`].
        limit: usize,
    },
    /// The text is not a YAML or JSON document of the expected shape.
    #[error("the resource modifier text cannot be read: {reason}")]
    Unreadable {
        /// The parser's message.
        reason: String,
    },
    /// `version` is missing or not `v1`.
    #[error("unsupported resource modifier version {found:?}, expected \"v1\"")]
    UnsupportedVersion {
        /// The version given, empty when there is none.
        found: String,
    },
    /// A ConfigMap holding rules must have exactly one data key.
    #[error("a resource modifier ConfigMap must have exactly one data key, this one has {count}")]
    ConfigMapKeys {
        /// How many data keys the ConfigMap has.
        count: usize,
    },
    /// A rule is not of the expected shape (an unknown field, a value of the wrong type).
    #[error("resourceModifierRules[{rule}]: {reason}")]
    BadRule {
        /// The rule's index.
        rule: usize,
        /// The parser's message.
        reason: String,
    },
    /// A rule has no `conditions.groupResource`.
    #[error("resourceModifierRules[{rule}]: conditions.groupResource is required")]
    MissingGroupResource {
        /// The rule's index.
        rule: usize,
    },
    /// `conditions.groupResource` is not a valid glob.
    #[error(
        "resourceModifierRules[{rule}]: groupResource {pattern:?} is not a valid glob: {reason}"
    )]
    BadGroupResource {
        /// The rule's index.
        rule: usize,
        /// The pattern given.
        pattern: String,
        /// The glob parser's message.
        reason: String,
    },
    /// `conditions.resourceNameRegex` is not a valid regular expression.
    #[error("resourceModifierRules[{rule}]: resourceNameRegex is not a valid regex: {reason}")]
    BadRegex {
        /// The rule's index.
        rule: usize,
        /// The regex parser's message.
        reason: String,
    },
    /// `conditions.labelSelector` is not a valid selector.
    #[error("resourceModifierRules[{rule}]: labelSelector: {reason}")]
    BadSelector {
        /// The rule's index.
        rule: usize,
        /// What is wrong.
        reason: String,
    },
    /// A path of `conditions.matches` is not a JSON pointer.
    #[error(
        "resourceModifierRules[{rule}]: matches[{index}]: path {path:?} is not a JSON pointer"
    )]
    BadMatchPath {
        /// The rule's index.
        rule: usize,
        /// The match's index.
        index: usize,
        /// The path given.
        path: String,
    },
    /// A JSON patch names an operation other than add, remove, replace, move, copy and test.
    #[error("resourceModifierRules[{rule}]: patches[{patch}]: unknown operation {operation:?}")]
    BadPatchOperation {
        /// The rule's index.
        rule: usize,
        /// The patch's index.
        patch: usize,
        /// The operation given.
        operation: String,
    },
    /// A JSON patch lacks a field its operation needs, or has a path that is not a JSON
    /// pointer, or a value that cannot be read.
    #[error("resourceModifierRules[{rule}]: patches[{patch}]: {reason}")]
    BadPatch {
        /// The rule's index.
        rule: usize,
        /// The patch's index.
        patch: usize,
        /// What is wrong.
        reason: String,
    },
    /// A merge patch's `patchData` is not JSON or YAML text.
    #[error(
        "resourceModifierRules[{rule}]: mergePatches[{patch}]: patchData cannot be read: {reason}"
    )]
    BadPatchData {
        /// The rule's index.
        rule: usize,
        /// The merge patch's index.
        patch: usize,
        /// The parser's message.
        reason: String,
    },
    /// A rule has strategic merge patches, which are not supported.
    #[error("resourceModifierRules[{rule}]: strategic merge patches are not supported")]
    StrategicPatchUnsupported {
        /// The rule's index.
        rule: usize,
    },
    /// Applying a rule's JSON patch failed (a path that is not there, a test that does not
    /// hold); the object is as it was before the rule.
    #[error("resourceModifierRules[{rule}]: patches[{patch}] at {path:?} failed: {reason}")]
    PatchFailed {
        /// The rule's index.
        rule: usize,
        /// The failing patch's index.
        patch: usize,
        /// The failing patch's path.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

/// A parsed, checked list of resource modifier rules.
#[derive(Clone, Debug)]
pub struct ResourceModifiers {
    rules: Vec<Rule>,
}

impl ResourceModifiers {
    /// Parses and checks the YAML (or JSON) text of a rule list.
    pub fn parse(text: &str) -> Result<ResourceModifiers, ModifierError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(ModifierError::TooLarge {
                size: text.len(),
                limit: MAX_TEXT_BYTES,
            });
        }
        let doc: RawDocument =
            serde_yaml::from_str(text).map_err(|e| ModifierError::Unreadable {
                reason: e.to_string(),
            })?;
        if doc.version.as_deref() != Some(VERSION) {
            return Err(ModifierError::UnsupportedVersion {
                found: doc.version.unwrap_or_default(),
            });
        }
        if doc.resource_modifier_rules.len() > MAX_RULES {
            return Err(ModifierError::TooManyRules {
                count: doc.resource_modifier_rules.len(),
                limit: MAX_RULES,
            });
        }
        let rules = doc
            .resource_modifier_rules
            .into_iter()
            .enumerate()
            .map(|(index, raw)| Rule::parse(index, raw))
            .collect::<Result<_, _>>()?;
        Ok(ResourceModifiers { rules })
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies, in order, every rule whose conditions hold for `object` of type
    /// `group_resource` (`persistentvolumeclaims`, `deployments.apps`) as the rules before it
    /// left it, and returns how many applied. The namespace the conditions see is
    /// `metadata.namespace`, so the caller passes objects after namespace mapping. On an error
    /// the object keeps the rules applied before the failing one.
    pub fn apply(&self, group_resource: &str, object: &mut Value) -> Result<usize, ModifierError> {
        let mut applied = 0;
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.conditions.hold(group_resource, object) {
                rule.apply(index, object)?;
                applied += 1;
            }
        }
        Ok(applied)
    }
}

/// Parses the rules in a ConfigMap's data, which must have exactly one key.
pub fn from_config_map_data(
    data: &BTreeMap<String, String>,
) -> Result<ResourceModifiers, ModifierError> {
    match data.values().next() {
        Some(text) if data.len() == 1 => ResourceModifiers::parse(text),
        _ => Err(ModifierError::ConfigMapKeys { count: data.len() }),
    }
}

/// One checked rule.
#[derive(Clone, Debug)]
struct Rule {
    conditions: Conditions,
    /// The JSON patches, applied together: all or none.
    patches: Vec<PatchOperation>,
    /// The merge patches, applied after the JSON patches.
    merge_patches: Vec<Value>,
}

impl Rule {
    fn parse(rule: usize, raw: serde_yaml::Value) -> Result<Rule, ModifierError> {
        let raw: RawRule = serde_yaml::from_value(raw).map_err(|e| ModifierError::BadRule {
            rule,
            reason: e.to_string(),
        })?;
        if !raw.strategic_patches.is_empty() {
            return Err(ModifierError::StrategicPatchUnsupported { rule });
        }
        let conditions = Conditions::parse(rule, raw.conditions.unwrap_or_default())?;
        let patches = raw
            .patches
            .into_iter()
            .enumerate()
            .map(|(patch, p)| p.parse(rule, patch))
            .collect::<Result<_, _>>()?;
        let merge_patches = raw
            .merge_patches
            .into_iter()
            .enumerate()
            .map(|(patch, p)| {
                yaml_or_text(p.patch_data).map_err(|reason| ModifierError::BadPatchData {
                    rule,
                    patch,
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Rule {
            conditions,
            patches,
            merge_patches,
        })
    }

    /// Applies the JSON patches, then the merge patches. The JSON patches undo themselves when
    /// one fails, and merge patches cannot fail, so an error leaves `object` as it was.
    fn apply(&self, rule: usize, object: &mut Value) -> Result<(), ModifierError> {
        json_patch::patch(object, &self.patches).map_err(|e| ModifierError::PatchFailed {
            rule,
            patch: e.operation,
            path: e.path.to_string(),
            reason: e.kind.to_string(),
        })?;
        for merge in &self.merge_patches {
            json_patch::merge(object, merge);
        }
        Ok(())
    }
}

/// What must hold of an object for a rule to apply to it.
#[derive(Clone, Debug)]
struct Conditions {
    group_resource: GlobMatcher,
    name: Option<Regex>,
    /// Empty: any namespace, and cluster-scoped objects too.
    namespaces: Vec<String>,
    selector: Option<LabelSelector>,
    matches: Vec<FieldMatch>,
}

impl Conditions {
    fn parse(rule: usize, raw: RawConditions) -> Result<Conditions, ModifierError> {
        if raw.group_resource.is_empty() {
            return Err(ModifierError::MissingGroupResource { rule });
        }
        let group_resource = Glob::new(&raw.group_resource)
            .map_err(|e| ModifierError::BadGroupResource {
                rule,
                pattern: raw.group_resource.clone(),
                reason: e.kind().to_string(),
            })?
            .compile_matcher();
        let name = raw
            .resource_name_regex
            .filter(|r| !r.is_empty())
            .map(|r| Regex::new(&r))
            .transpose()
            .map_err(|e| ModifierError::BadRegex {
                rule,
                reason: e.to_string(),
            })?;
        let selector = raw
            .label_selector
            .map(LabelSelector::parse)
            .transpose()
            .map_err(|reason| ModifierError::BadSelector { rule, reason })?;
        let matches = raw
            .matches
            .into_iter()
            .enumerate()
            .map(|(index, m)| {
                if PointerBuf::parse(m.path.as_str()).is_err() {
                    return Err(ModifierError::BadMatchPath {
                        rule,
                        index,
                        path: m.path,
                    });
                }
                Ok(FieldMatch {
                    path: m.path,
                    value: m.value,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Conditions {
            group_resource,
            name,
            namespaces: raw.namespaces,
            selector,
            matches,
        })
    }

    fn hold(&self, group_resource: &str, object: &Value) -> bool {
        let meta = |key: &str| object.get("metadata").and_then(|m| m.get(key));
        let name = meta("name").and_then(Value::as_str).unwrap_or_default();
        let namespace = meta("namespace").and_then(Value::as_str);
        self.group_resource.is_match(group_resource)
            && self.name.as_ref().is_none_or(|re| re.is_match(name))
            && (self.namespaces.is_empty()
                || namespace.is_some_and(|ns| self.namespaces.iter().any(|n| n == ns)))
            && self
                .selector
                .as_ref()
                .is_none_or(|s| s.matches(meta("labels")))
            && self.matches.iter().all(|m| m.holds(object))
    }
}

/// A `conditions.matches` entry: the value at a JSON pointer.
#[derive(Clone, Debug)]
struct FieldMatch {
    path: String,
    value: String,
}

impl FieldMatch {
    /// Holds when the value at the path, in string form (a string's text, any other value's
    /// JSON), is the expected text, or when the expected text is that value's JSON, as Velero
    /// writes it (`'"premium"'`).
    fn holds(&self, object: &Value) -> bool {
        let Some(found) = object.pointer(&self.path) else {
            return false;
        };
        let text = match found {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text == self.value || serde_json::from_str::<Value>(&self.value).is_ok_and(|v| &v == found)
    }
}

/// A Kubernetes label selector: every `matchLabels` pair and every expression must hold.
#[derive(Clone, Debug)]
struct LabelSelector {
    labels: BTreeMap<String, String>,
    expressions: Vec<Expression>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug)]
enum Expression {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelSelector {
    fn parse(raw: RawLabelSelector) -> Result<LabelSelector, String> {
        let expressions = raw
            .match_expressions
            .into_iter()
            .map(|e| {
                let needs_values = matches!(e.operator.as_str(), "In" | "NotIn");
                if needs_values == e.values.is_empty() {
                    let want = if needs_values { "some" } else { "no" };
                    return Err(format!(
                        "operator {} on key {:?} takes {want} values",
                        e.operator, e.key
                    ));
                }
                Ok(match e.operator.as_str() {
                    "In" => Expression::In(e.key, e.values),
                    "NotIn" => Expression::NotIn(e.key, e.values),
                    "Exists" => Expression::Exists(e.key),
                    "DoesNotExist" => Expression::DoesNotExist(e.key),
                    other => return Err(format!("unknown operator {other:?}")),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector {
            labels: raw.match_labels,
            expressions,
        })
    }

    fn matches(&self, labels: Option<&Value>) -> bool {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.labels.iter().all(|(k, v)| label(k) == Some(v))
            && self.expressions.iter().all(|e| match e {
                Expression::In(k, values) => {
                    label(k).is_some_and(|l| values.iter().any(|v| v == l))
                }
                Expression::NotIn(k, values) => {
                    label(k).is_none_or(|l| values.iter().all(|v| v != l))
                }
                Expression::Exists(k) => label(k).is_some(),
                Expression::DoesNotExist(k) => label(k).is_none(),
            })
    }
}

/// Reads a YAML value that may be a string holding JSON or YAML text.
fn yaml_or_text(value: serde_yaml::Value) -> Result<Value, String> {
    match value {
        serde_yaml::Value::String(text) => serde_yaml::from_str(&text).map_err(|e| e.to_string()),
        other => serde_json::to_value(other).map_err(|e| e.to_string()),
    }
}

/// The document as written, before checking.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDocument {
    version: Option<String>,
    /// Kept as YAML values so that a rule's errors can name the rule.
    #[serde(default)]
    resource_modifier_rules: Vec<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    conditions: Option<RawConditions>,
    #[serde(default)]
    patches: Vec<RawJsonPatch>,
    #[serde(default)]
    merge_patches: Vec<RawMergePatch>,
    #[serde(default)]
    strategic_patches: Vec<serde_yaml::Value>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConditions {
    #[serde(default)]
    group_resource: String,
    resource_name_regex: Option<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    label_selector: Option<RawLabelSelector>,
    #[serde(default)]
    matches: Vec<RawMatch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<RawExpression>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    path: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJsonPatch {
    operation: String,
    path: String,
    from: Option<String>,
    value: Option<serde_yaml::Value>,
}

impl RawJsonPatch {
    fn parse(self, rule: usize, patch: usize) -> Result<PatchOperation, ModifierError> {
        let bad = |reason: String| ModifierError::BadPatch {
            rule,
            patch,
            reason,
        };
        let pointer = |field: &str, text: &str| {
            PointerBuf::parse(text)
                .map_err(|_| bad(format!("{field} {text:?} is not a JSON pointer")))
        };
        let path = pointer("path", &self.path)?;
        let value = || match &self.value {
            Some(v) => {
                yaml_or_text(v.clone()).map_err(|e| bad(format!("value cannot be read: {e}")))
            }
            None => Err(bad(format!("operation {} needs a value", self.operation))),
        };
        let from = || match &self.from {
            Some(f) => pointer("from", f),
            None => Err(bad(format!("operation {} needs a from", self.operation))),
        };
        Ok(match self.operation.as_str() {
            "add" => PatchOperation::Add(AddOperation {
                path,
                value: value()?,
            }),
            "remove" => PatchOperation::Remove(RemoveOperation { path }),
            "replace" => PatchOperation::Replace(ReplaceOperation {
                path,
                value: value()?,
            }),
            "move" => PatchOperation::Move(MoveOperation {
                from: from()?,
                path,
            }),
            "copy" => PatchOperation::Copy(CopyOperation {
                from: from()?,
                path,
            }),
            "test" => PatchOperation::Test(TestOperation {
                path,
                value: value()?,
            }),
            _ => {
                return Err(ModifierError::BadPatchOperation {
                    rule,
                    patch,
                    operation: self.operation,
                })
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMergePatch {
    patch_data: serde_yaml::Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc() -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "mysql-data", "namespace": "foo",
                         "labels": {"app": "mysql", "tier": "db"},
                         "annotations": {"a": "1", "b": "2"}},
            "spec": {"storageClassName": "gp2", "resources": {"requests": {"storage": "1Gi"}}}})
    }

    fn rules(body: &str) -> ResourceModifiers {
        ResourceModifiers::parse(&format!("version: v1\nresourceModifierRules:\n{body}"))
            .expect("rules parse")
    }

    /// A rule on PVCs with extra conditions `conds` that sets the storage class to "premium".
    fn premium_if(conds: &str) -> ResourceModifiers {
        rules(&format!(
            "- conditions:\n    groupResource: persistentvolumeclaims\n{conds}  patches:\n  - operation: replace\n    path: /spec/storageClassName\n    value: '\"premium\"'\n"
        ))
    }

    fn applies(m: &ResourceModifiers, gr: &str, object: &Value) -> bool {
        let mut copy = object.clone();
        m.apply(gr, &mut copy).expect("applies") == 1
    }

    #[test]
    fn json_patches_add_replace_remove_and_test() {
        let m = rules(
            r#"
- conditions:
    groupResource: persistentvolumeclaims
  patches:
  - operation: test
    path: /spec/storageClassName
    value: '"gp2"'
  - operation: replace
    path: /spec/storageClassName
    value: premium
  - operation: add
    path: /metadata/labels/restored
    value: "true"
  - operation: add
    path: /spec/accessModes
    value: [ReadWriteOnce]
  - operation: remove
    path: /metadata/annotations/a
"#,
        );
        let mut object = pvc();
        assert_eq!(m.apply("persistentvolumeclaims", &mut object), Ok(1));
        assert_eq!(object["spec"]["storageClassName"], "premium");
        assert_eq!(object["metadata"]["labels"]["restored"], json!(true));
        assert_eq!(object["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(object["metadata"]["annotations"], json!({"b": "2"}));
    }

    #[test]
    fn move_and_copy_take_their_from_path() {
        let m = rules(
            r#"
- conditions: {groupResource: persistentvolumeclaims}
  patches:
  - {operation: copy, from: /metadata/labels/app, path: /metadata/annotations/app}
  - {operation: move, from: /metadata/labels/tier, path: /metadata/labels/layer}
"#,
        );
        let mut object = pvc();
        m.apply("persistentvolumeclaims", &mut object).unwrap();
        assert_eq!(object["metadata"]["annotations"]["app"], "mysql");
        assert_eq!(
            object["metadata"]["labels"],
            json!({"app": "mysql", "layer": "db"})
        );
    }

    #[test]
    fn a_failing_patch_names_rule_and_path_and_leaves_the_object_as_before_the_rule() {
        let m = rules(
            r#"
- conditions: {groupResource: persistentvolumeclaims}
  patches:
  - {operation: add, path: /metadata/labels/first, value: x}
- conditions: {groupResource: persistentvolumeclaims}
  patches:
  - {operation: replace, path: /spec/storageClassName, value: premium}
  - {operation: remove, path: /spec/missing}
  mergePatches:
  - patchData: '{"metadata": {"annotations": {"b": null}}}'
"#,
        );
        let mut object = pvc();
        let err = m.apply("persistentvolumeclaims", &mut object).unwrap_err();
        assert!(matches!(
            &err,
            ModifierError::PatchFailed { rule: 1, patch: 1, path, .. } if path == "/spec/missing"
        ));
        let mut expected = pvc();
        expected["metadata"]["labels"]["first"] = json!("x");
        assert_eq!(object, expected);

        let failing_test = rules(
            "- conditions: {groupResource: '*'}\n  patches:\n  - {operation: replace, path: /spec/storageClassName, value: x}\n  - {operation: test, path: /spec/storageClassName, value: gp2}\n",
        );
        let mut object = pvc();
        let err = failing_test
            .apply("persistentvolumeclaims", &mut object)
            .unwrap_err();
        assert!(
            err.to_string().contains("resourceModifierRules[0]"),
            "{err}"
        );
        assert!(err.to_string().contains("/spec/storageClassName"), "{err}");
        assert_eq!(object, pvc());
    }

    #[test]
    fn merge_patches_merge_and_null_deletes() {
        let m = rules(
            r#"
- conditions: {groupResource: persistentvolumeclaims}
  mergePatches:
  - patchData: |
      metadata:
        annotations:
          a: null
          c: "3"
  - patchData: '{"spec": {"resources": {"requests": {"storage": "5Gi"}}}}'
"#,
        );
        let mut object = pvc();
        assert_eq!(m.apply("persistentvolumeclaims", &mut object), Ok(1));
        assert_eq!(
            object["metadata"]["annotations"],
            json!({"b": "2", "c": "3"})
        );
        assert_eq!(object["spec"]["resources"]["requests"]["storage"], "5Gi");
        assert_eq!(object["spec"]["storageClassName"], "gp2");
    }

    #[test]
    fn group_resource_is_a_glob_on_resource_dot_group() {
        let apps = rules(
            "- conditions: {groupResource: '*.apps'}\n  mergePatches:\n  - patchData: '{\"x\": 1}'\n",
        );
        assert!(applies(&apps, "deployments.apps", &pvc()));
        assert!(applies(&apps, "statefulsets.apps", &pvc()));
        assert!(!applies(&apps, "persistentvolumeclaims", &pvc()));
        let exact = premium_if("");
        assert!(applies(&exact, "persistentvolumeclaims", &pvc()));
        assert!(!applies(&exact, "persistentvolumes", &pvc()));
    }

    #[test]
    fn the_name_regex_is_searched_in_the_name() {
        assert!(applies(
            &premium_if("    resourceNameRegex: '^mysql.*$'\n"),
            "persistentvolumeclaims",
            &pvc()
        ));
        assert!(applies(
            &premium_if("    resourceNameRegex: 'data'\n"),
            "persistentvolumeclaims",
            &pvc()
        ));
        assert!(!applies(
            &premium_if("    resourceNameRegex: '^postgres'\n"),
            "persistentvolumeclaims",
            &pvc()
        ));
    }

    #[test]
    fn namespaces_are_exact_and_exclude_cluster_scoped_objects() {
        let m = premium_if("    namespaces: [bar, foo]\n");
        assert!(applies(&m, "persistentvolumeclaims", &pvc()));
        let mut elsewhere = pvc();
        elsewhere["metadata"]["namespace"] = json!("food");
        assert!(!applies(&m, "persistentvolumeclaims", &elsewhere));
        let mut cluster_scoped = pvc();
        cluster_scoped["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        assert!(!applies(&m, "persistentvolumeclaims", &cluster_scoped));
    }

    #[test]
    fn label_selectors_have_kubernetes_semantics() {
        let holds = |selector: &str| {
            applies(
                &premium_if(&format!("    labelSelector: {selector}\n")),
                "persistentvolumeclaims",
                &pvc(),
            )
        };
        assert!(holds("{matchLabels: {app: mysql}}"));
        assert!(!holds("{matchLabels: {app: mysql, tier: web}}"));
        assert!(holds(
            "{matchExpressions: [{key: tier, operator: In, values: [db, cache]}]}"
        ));
        assert!(!holds(
            "{matchExpressions: [{key: tier, operator: NotIn, values: [db]}]}"
        ));
        assert!(holds(
            "{matchExpressions: [{key: zone, operator: NotIn, values: [a]}]}"
        ));
        assert!(holds("{matchExpressions: [{key: app, operator: Exists}]}"));
        assert!(!holds(
            "{matchExpressions: [{key: app, operator: DoesNotExist}]}"
        ));
        assert!(holds(
            "{matchExpressions: [{key: zone, operator: DoesNotExist}]}"
        ));
    }

    #[test]
    fn matches_compare_the_value_string_form() {
        let holds = |matches: &str| {
            applies(
                &premium_if(&format!("    matches: {matches}\n")),
                "persistentvolumeclaims",
                &pvc(),
            )
        };
        assert!(holds("[{path: /spec/storageClassName, value: gp2}]"));
        assert!(holds(
            "[{path: /spec/storageClassName, value: '\"gp2\"'}, {path: /metadata/labels/app, value: mysql}]"
        ));
        assert!(!holds("[{path: /spec/storageClassName, value: gp3}]"));
        assert!(!holds("[{path: /spec/volumeMode, value: Filesystem}]"));
        let mut replicas = pvc();
        replicas["spec"]["replicas"] = json!(3);
        let m = premium_if("    matches: [{path: /spec/replicas, value: '3'}]\n");
        assert!(applies(&m, "persistentvolumeclaims", &replicas));
    }

    #[test]
    fn each_rule_sees_the_object_as_the_rules_before_left_it() {
        let m = rules(
            r#"
- conditions: {groupResource: persistentvolumeclaims}
  patches:
  - {operation: replace, path: /spec/storageClassName, value: premium}
- conditions:
    groupResource: persistentvolumeclaims
    matches: [{path: /spec/storageClassName, value: premium}]
  patches:
  - {operation: add, path: /metadata/labels/premium, value: "yes"}
- conditions:
    groupResource: persistentvolumeclaims
    matches: [{path: /spec/storageClassName, value: gp2}]
  patches:
  - {operation: add, path: /metadata/labels/old, value: "yes"}
"#,
        );
        let mut object = pvc();
        assert_eq!(m.apply("persistentvolumeclaims", &mut object), Ok(2));
        assert_eq!(object["metadata"]["labels"]["premium"], "yes");
        assert!(object["metadata"]["labels"].get("old").is_none());
    }

    #[test]
    fn parse_errors_name_the_rule_and_the_problem() {
        let err = |text: &str| ResourceModifiers::parse(text).unwrap_err();
        assert_eq!(
            err("version: v2\nresourceModifierRules: []\n"),
            ModifierError::UnsupportedVersion { found: "v2".into() }
        );
        assert_eq!(
            err("resourceModifierRules: []\n"),
            ModifierError::UnsupportedVersion { found: "".into() }
        );
        let with_rule = |rule: &str| {
            err(&format!(
                "version: v1\nresourceModifierRules:\n- conditions: {{groupResource: pods}}\n{rule}"
            ))
        };
        assert_eq!(
            with_rule("- conditions: {namespaces: [a]}\n"),
            ModifierError::MissingGroupResource { rule: 1 }
        );
        assert_eq!(
            with_rule("- patches: [{operation: remove, path: /a}]\n"),
            ModifierError::MissingGroupResource { rule: 1 }
        );
        assert!(matches!(
            with_rule("- conditions: {groupResource: pods, resourceNameRegex: '(unclosed'}\n"),
            ModifierError::BadRegex { rule: 1, .. }
        ));
        assert!(matches!(
            with_rule("- conditions: {groupResource: 'pods[', namespaces: [a]}\n"),
            ModifierError::BadGroupResource { rule: 1, .. }
        ));
        assert_eq!(
            with_rule("- conditions: {groupResource: pods}\n  patches: [{operation: upsert, path: /a, value: '1'}]\n"),
            ModifierError::BadPatchOperation {
                rule: 1,
                patch: 0,
                operation: "upsert".into()
            }
        );
        assert!(matches!(
            with_rule(
                "- conditions: {groupResource: pods}\n  patches: [{operation: add, path: /a}]\n"
            ),
            ModifierError::BadPatch {
                rule: 1,
                patch: 0,
                ..
            }
        ));
        assert!(matches!(
            with_rule("- conditions: {groupResource: pods}\n  patches: [{operation: add, path: no-slash, value: '1'}]\n"),
            ModifierError::BadPatch { rule: 1, patch: 0, .. }
        ));
        assert!(matches!(
            with_rule(
                "- conditions: {groupResource: pods}\n  patches: [{operation: move, path: /a}]\n"
            ),
            ModifierError::BadPatch {
                rule: 1,
                patch: 0,
                ..
            }
        ));
        assert!(matches!(
            with_rule("- conditions: {groupResource: pods}\n  mergePatches: [{patchData: '{\"a\": [1,'}]\n"),
            ModifierError::BadPatchData { rule: 1, patch: 0, .. }
        ));
        assert_eq!(
            with_rule(
                "- conditions: {groupResource: pods}\n  strategicPatches: [{patchData: '{}'}]\n"
            ),
            ModifierError::StrategicPatchUnsupported { rule: 1 }
        );
        assert!(matches!(
            with_rule("- conditions: {groupResource: pods, labelSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}\n"),
            ModifierError::BadSelector { rule: 1, .. }
        ));
        assert!(matches!(
            with_rule("- conditions: {groupResource: pods, labelSelector: {matchExpressions: [{key: a, operator: Near, values: [x]}]}}\n"),
            ModifierError::BadSelector { rule: 1, .. }
        ));
        assert!(matches!(
            with_rule("- conditions: {groupResource: pods, matches: [{path: spec, value: x}]}\n"),
            ModifierError::BadMatchPath {
                rule: 1,
                index: 0,
                ..
            }
        ));
        assert!(matches!(
            with_rule("- conditions: {groupResource: pods}\n  mergePatch: []\n"),
            ModifierError::BadRule { rule: 1, .. }
        ));
        assert!(matches!(
            err("version: v1\nresourceModifierRules: []\nresourceModifierRules: []\n"),
            ModifierError::Unreadable { .. }
        ));
        assert!(matches!(
            err("version: [v1\n"),
            ModifierError::Unreadable { .. }
        ));
    }

    #[test]
    fn oversized_texts_and_rule_lists_are_refused() {
        let big = format!("version: v1\n#{}\n", "x".repeat(MAX_TEXT_BYTES));
        assert!(matches!(
            ResourceModifiers::parse(&big),
            Err(ModifierError::TooLarge { .. })
        ));
        let rule = "- conditions: {groupResource: pods}\n";
        let at_limit = format!(
            "version: v1\nresourceModifierRules:\n{}",
            rule.repeat(MAX_RULES)
        );
        assert_eq!(
            ResourceModifiers::parse(&at_limit).unwrap().len(),
            MAX_RULES
        );
        let over = format!("{at_limit}{rule}");
        assert_eq!(
            ResourceModifiers::parse(&over).unwrap_err(),
            ModifierError::TooManyRules {
                count: MAX_RULES + 1,
                limit: MAX_RULES
            }
        );
    }

    #[test]
    fn json_text_is_accepted_too() {
        let m = ResourceModifiers::parse(
            r#"{"version": "v1", "resourceModifierRules": [{"conditions": {"groupResource": "persistentvolumeclaims"},
                "patches": [{"operation": "replace", "path": "/spec/storageClassName", "value": "\"premium\""}]}]}"#,
        )
        .unwrap();
        let mut object = pvc();
        assert_eq!(m.apply("persistentvolumeclaims", &mut object), Ok(1));
        assert_eq!(object["spec"]["storageClassName"], "premium");
    }

    #[test]
    fn a_config_map_must_hold_exactly_one_key() {
        let text = "version: v1\nresourceModifierRules:\n- conditions: {groupResource: pods}\n";
        let one: BTreeMap<String, String> = [("rules.yaml".to_string(), text.to_string())].into();
        assert_eq!(from_config_map_data(&one).unwrap().len(), 1);
        assert_eq!(
            from_config_map_data(&BTreeMap::new()).unwrap_err(),
            ModifierError::ConfigMapKeys { count: 0 }
        );
        let two: BTreeMap<String, String> = [
            ("a".to_string(), text.to_string()),
            ("b".to_string(), text.to_string()),
        ]
        .into();
        assert_eq!(
            from_config_map_data(&two).unwrap_err(),
            ModifierError::ConfigMapKeys { count: 2 }
        );
    }
}
