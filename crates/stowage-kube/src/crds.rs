//! The CustomResourceDefinitions of the `stowage.dev` resources, generated from the Rust types
//! so the schema the API server enforces is the one the controller deserialises.
//!
//! `deploy/crds/<plural>.stowage.dev.yaml` holds one file per CRD, written from [`crd_files`];
//! a unit test fails when a file differs from what the types generate, and rewrites them all
//! when run with `STOWAGE_UPDATE_CRDS=1` (`STOWAGE_UPDATE_CRDS=1 cargo test -p stowage-kube
//! crds`). Output is deterministic: fixed CRD order and sorted map keys.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{Backup, BackupStorageLocation, Restore, VolumeBackup, VolumeRestore};

/// The comment at the top of every generated YAML file.
pub const GENERATED_HEADER: &str =
    "# Generated from the Rust types in crates/stowage-kube/src/api by stowage_kube::crds.\n\
# Do not edit: change the types and run `STOWAGE_UPDATE_CRDS=1 cargo test -p stowage-kube crds`.\n";

/// Every Stowage CRD, locations first (a Backup names a location, a Restore a Backup).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        BackupStorageLocation::crd(),
        Backup::crd(),
        Restore::crd(),
        VolumeBackup::crd(),
        VolumeRestore::crd(),
    ]
    .into_iter()
    .map(without_unsigned_formats)
    .collect()
}

/// Drops schemars' `format: uint32` / `uint64` from integer schemas: the API server does not
/// know those formats and warns on every apply. `minimum: 0` stays and says the same.
fn without_unsigned_formats(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map
                    .get("format")
                    .and_then(|f| f.as_str())
                    .is_some_and(|f| f.starts_with("uint"))
                {
                    map.remove("format");
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(list) => list.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD always serialises");
    walk(&mut value);
    serde_json::from_value(value).expect("removing a format keeps a valid CRD")
}

/// One CRD as a YAML document (no header, no `---`).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    // Through serde_json::Value, whose maps are sorted, so key order never depends on the
    // derive's field order or a hash seed.
    let value = serde_json::to_value(crd).expect("a CRD always serialises");
    serde_yaml::to_string(&value).expect("a JSON value always serialises as YAML")
}

/// All CRDs as one multi-document YAML stream, with [`GENERATED_HEADER`] on top, for
/// `kubectl apply -f -`.
pub fn crds_yaml() -> String {
    let mut out = String::from(GENERATED_HEADER);
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&crd_yaml(&crd));
    }
    out
}

/// The files of `deploy/crds/`: `(file name, contents)`, one `<plural>.<group>.yaml` per CRD
/// (the CRD's own name), each with [`GENERATED_HEADER`].
pub fn crd_files() -> Vec<(String, String)> {
    crds()
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().expect("derived CRDs are named");
            (
                format!("{name}.yaml"),
                format!("{GENERATED_HEADER}---\n{}", crd_yaml(crd)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn deploy_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
    }

    #[test]
    fn crds_in_deploy_match_the_types() {
        let dir = deploy_dir();
        let update = std::env::var_os("STOWAGE_UPDATE_CRDS").is_some_and(|v| v == "1");
        let files = crd_files();
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    std::fs::remove_file(path).unwrap();
                }
            }
            for (name, text) in &files {
                std::fs::write(dir.join(name), text).unwrap();
            }
            return;
        }
        let mut stale = Vec::new();
        for (name, text) in &files {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(on_disk) if on_disk == *text => {}
                Ok(_) => stale.push(format!("{name} differs")),
                Err(e) => stale.push(format!("{name}: {e}")),
            }
        }
        let expected: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                if name.ends_with(".yaml") && !expected.contains(&name.as_str()) {
                    stale.push(format!("{name} is not generated from any type"));
                }
            }
        }
        assert!(
            stale.is_empty(),
            "deploy/crds is out of date with the types in src/api ({}).\n\
             Regenerate with: STOWAGE_UPDATE_CRDS=1 cargo test -p stowage-kube crds",
            stale.join("; ")
        );
    }

    #[test]
    fn crds_yaml_is_deterministic_and_parses_back() {
        let text = crds_yaml();
        assert_eq!(text, crds_yaml());
        assert!(text.starts_with("# Generated"));
        let docs: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs, crds());
    }

    #[test]
    fn crds_have_the_names_velero_users_type() {
        let crds = crds();
        let names: Vec<_> = crds
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "backupstoragelocations.stowage.dev",
                "backups.stowage.dev",
                "restores.stowage.dev",
                "volumebackups.stowage.dev",
                "volumerestores.stowage.dev"
            ]
        );
        let bsl = &crds[0].spec;
        assert_eq!(
            bsl.names.short_names.as_deref(),
            Some(&["bsl".to_string()][..])
        );
        assert_eq!(bsl.scope, "Namespaced");
        for crd in &crds {
            let v = &crd.spec.versions[0];
            assert_eq!(v.name, "v1alpha1");
            assert!(
                v.subresources.as_ref().unwrap().status.is_some(),
                "status subresource"
            );
        }
    }

    /// Walks a schema the way the API server's structural-schema check does, for the rules
    /// a derive most easily breaks: every node has a `type` (or is a preserve-unknown-fields /
    /// int-or-string node), no `anyOf`/`oneOf` carries types or properties, `additionalProperties`
    /// never sits beside `properties`, no `$ref`, no duplicate enum values, and no `format` the
    /// API server would warn about.
    fn check_structural(path: &str, schema: &serde_json::Value, problems: &mut Vec<String>) {
        let Some(obj) = schema.as_object() else {
            problems.push(format!("{path}: not an object"));
            return;
        };
        let special = obj.contains_key("x-kubernetes-int-or-string")
            || obj.contains_key("x-kubernetes-preserve-unknown-fields");
        if !obj.contains_key("type") && !special {
            problems.push(format!("{path}: no type"));
        }
        if let Some(t) = obj.get("type") {
            if !t.is_string() {
                problems.push(format!("{path}: type {t} is not a single string"));
            }
        }
        if let Some(values) = obj.get("enum").and_then(|v| v.as_array()) {
            let mut seen = std::collections::HashSet::new();
            for v in values {
                if !seen.insert(v.to_string()) {
                    problems.push(format!("{path}: enum lists {v} twice"));
                }
            }
        }
        if let Some(format) = obj.get("format").and_then(|f| f.as_str()) {
            if !["int32", "int64", "date-time", "byte", "double", "float"].contains(&format) {
                problems.push(format!(
                    "{path}: format {format} is unknown to the API server"
                ));
            }
        }
        if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
            problems.push(format!(
                "{path}: properties and additionalProperties together"
            ));
        }
        for key in ["$ref", "definitions", "$defs", "$schema"] {
            if obj.contains_key(key) {
                problems.push(format!("{path}: {key} is not allowed"));
            }
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = obj.get(key).and_then(|v| v.as_array()) {
                for (i, s) in list.iter().enumerate() {
                    for banned in [
                        "type",
                        "properties",
                        "items",
                        "additionalProperties",
                        "nullable",
                        "default",
                    ] {
                        if s.get(banned).is_some() {
                            problems.push(format!("{path}.{key}[{i}]: {banned} inside {key}"));
                        }
                    }
                }
            }
        }
        if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
            for (name, s) in props {
                check_structural(&format!("{path}.{name}"), s, problems);
            }
        }
        if let Some(items) = obj.get("items") {
            check_structural(&format!("{path}[]"), items, problems);
        }
        if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
            check_structural(&format!("{path}{{}}"), extra, problems);
        }
    }

    #[test]
    fn schemas_are_structural() {
        for crd in crds() {
            let name = crd.metadata.name.clone().unwrap();
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("a schema");
            let value = serde_json::to_value(schema).unwrap();
            let mut problems = Vec::new();
            check_structural(&name, &value, &mut problems);
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        }
    }
}
