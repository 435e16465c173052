//! Validation of a Backup before it runs (Velero's `prepareBackupRequest` checks): the
//! storage location the controller resolved, the selection ([`BackupFilter`]), `ttl` and
//! `orderedResources`. Every problem is reported at once, as the `status.validationErrors` of
//! a `FailedValidation` backup.
//!
//! Pure: the controller looks the location up and passes what it found as a
//! [`LocationCheck`]; nothing here reads the cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::api::{parse_duration, BackupSpec, DEFAULT_TTL};
use crate::filter::{BackupFilter, ResourceCatalog};

/// What the controller found when it resolved the Backup's storage location (its
/// `spec.storageLocation`, or the location marked default). Each variant carries the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationCheck {
    /// No location of that name (or no default location) in the namespace.
    NotFound(String),
    /// The location is `accessMode: ReadOnly`.
    ReadOnly(String),
    /// The location's phase is not `Available`; the second field is its status message.
    Unavailable(String, String),
    /// The location can take the backup.
    Ok(String),
}

/// A Backup whose spec passed validation, with everything the run needs resolved.
#[derive(Debug, Clone)]
pub struct ValidatedBackup {
    /// The selection.
    pub filter: BackupFilter,
    /// How long to keep the backup: `spec.ttl`, or [`DEFAULT_TTL`] when unset or zero.
    pub ttl: Duration,
    /// The storage location's name.
    pub location: String,
    /// `orderedResources`, keyed by group-resource (`pods`, `deployments.apps`): the objects to
    /// back up first, in order, as (namespace, name); the namespace is `None` for
    /// cluster-scoped types.
    pub ordered: BTreeMap<String, Vec<(Option<String>, String)>>,
}

/// Validates `spec` against the cluster's resources and the location the controller found.
/// The error holds every problem, one readable sentence each.
pub fn validate_backup(
    spec: &BackupSpec,
    catalog: &ResourceCatalog,
    location: LocationCheck,
) -> Result<ValidatedBackup, Vec<String>> {
    let mut problems = Vec::new();

    let location = match location {
        LocationCheck::Ok(name) => Some(name),
        LocationCheck::NotFound(name) => {
            problems.push(format!("backup storage location {name:?} not found"));
            None
        }
        LocationCheck::ReadOnly(name) => {
            problems.push(format!(
                "backup storage location {name:?} is ReadOnly: backups cannot be written to it"
            ));
            None
        }
        LocationCheck::Unavailable(name, message) => {
            let why = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            problems.push(format!(
                "backup storage location {name:?} is unavailable{why}"
            ));
            None
        }
    };

    let filter = BackupFilter::new(spec, catalog)
        .map_err(|e| problems.extend(e))
        .ok();

    let ttl = match spec.ttl.as_deref() {
        None => Some(DEFAULT_TTL),
        Some(text) => match parse_duration(text) {
            Ok(d) if d.is_zero() => Some(DEFAULT_TTL),
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(format!("ttl: {e}"));
                None
            }
        },
    };

    let ordered = ordered_resources(spec, catalog, &mut problems);
    problems.extend(crate::volumes::check_policies(&spec.volume_policies));

    match (filter, ttl, location) {
        (Some(filter), Some(ttl), Some(location)) if problems.is_empty() => Ok(ValidatedBackup {
            filter,
            ttl,
            location,
            ordered,
        }),
        _ => Err(problems),
    }
}

/// Parses `orderedResources`: keys resolved like the filters' resource names, values
/// comma-separated `namespace/name` (namespaced types) or `name` (cluster-scoped types).
fn ordered_resources(
    spec: &BackupSpec,
    catalog: &ResourceCatalog,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Vec<(Option<String>, String)>> {
    let mut ordered: BTreeMap<String, Vec<(Option<String>, String)>> = BTreeMap::new();
    for (key, value) in &spec.ordered_resources {
        let field = format!("orderedResources[{key}]");
        let Some(resource) = catalog.resolve(key) else {
            problems.push(format!(
                "{field}: unknown resource {key:?} (not served by this cluster)"
            ));
            continue;
        };
        let gr = resource.group_resource();
        if ordered.contains_key(&gr) {
            problems.push(format!("{field}: {gr} is listed more than once"));
            continue;
        }
        let mut items = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let parts: Vec<&str> = entry.split('/').collect();
            match (resource.namespaced, parts.as_slice()) {
                (true, [ns, name]) if !ns.is_empty() && !name.is_empty() => {
                    items.push((Some(ns.to_string()), name.to_string()));
                }
                (true, _) => problems.push(format!(
                    "{field}: {entry:?} must be namespace/name ({gr} is namespaced)"
                )),
                (false, [name]) => items.push((None, name.to_string())),
                (false, _) => problems.push(format!(
                    "{field}: {entry:?} must be a bare name ({gr} is cluster-scoped)"
                )),
            }
        }
        ordered.insert(gr, items);
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::fixtures::catalog;

    fn ok(name: &str) -> LocationCheck {
        LocationCheck::Ok(name.to_string())
    }

    #[test]
    fn a_plain_backup_gets_the_default_ttl_and_its_location() {
        let v = validate_backup(&BackupSpec::default(), &catalog(), ok("default")).unwrap();
        assert_eq!(v.ttl, DEFAULT_TTL);
        assert_eq!(v.ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(v.location, "default");
        assert!(v.ordered.is_empty());
    }

    #[test]
    fn ttl_is_a_go_duration_and_zero_means_the_default() {
        let with = |ttl: &str| BackupSpec {
            ttl: Some(ttl.to_string()),
            ..BackupSpec::default()
        };
        let v = validate_backup(&with("72h0m0s"), &catalog(), ok("l")).unwrap();
        assert_eq!(v.ttl, Duration::from_secs(72 * 3600));
        let v = validate_backup(&with("0s"), &catalog(), ok("l")).unwrap();
        assert_eq!(v.ttl, DEFAULT_TTL);
        let e = validate_backup(&with("3 days"), &catalog(), ok("l")).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("ttl: "), "{e:?}");
    }

    #[test]
    fn each_location_problem_is_a_validation_error() {
        let spec = BackupSpec::default();
        let cases = [
            (
                LocationCheck::NotFound("x".into()),
                "backup storage location \"x\" not found",
            ),
            (
                LocationCheck::ReadOnly("ro".into()),
                "backup storage location \"ro\" is ReadOnly: backups cannot be written to it",
            ),
            (
                LocationCheck::Unavailable("u".into(), "bucket not found".into()),
                "backup storage location \"u\" is unavailable: bucket not found",
            ),
            (
                LocationCheck::Unavailable("u".into(), String::new()),
                "backup storage location \"u\" is unavailable",
            ),
        ];
        for (check, want) in cases {
            assert_eq!(
                validate_backup(&spec, &catalog(), check).unwrap_err(),
                [want]
            );
        }
    }

    #[test]
    fn ordered_resources_resolve_and_keep_their_order() {
        let spec = BackupSpec {
            ordered_resources: [
                ("po".to_string(), "app/web-1, app/web-0,".to_string()),
                ("pv".to_string(), "pv-b,pv-a".to_string()),
                ("deploy".to_string(), "app/web".to_string()),
            ]
            .into(),
            ..BackupSpec::default()
        };
        let v = validate_backup(&spec, &catalog(), ok("l")).unwrap();
        let ns = |n: &str, name: &str| (Some(n.to_string()), name.to_string());
        assert_eq!(v.ordered["pods"], [ns("app", "web-1"), ns("app", "web-0")]);
        assert_eq!(
            v.ordered["persistentvolumes"],
            [(None, "pv-b".to_string()), (None, "pv-a".to_string())]
        );
        assert_eq!(v.ordered["deployments.apps"], [ns("app", "web")]);
    }

    #[test]
    fn bad_ordered_resources_are_refused() {
        let spec = BackupSpec {
            ordered_resources: [
                ("gadgets".to_string(), "a/b".to_string()),
                ("pods".to_string(), "web-0,app/,a/b/c".to_string()),
                ("pv".to_string(), "ns/pv-a".to_string()),
            ]
            .into(),
            ..BackupSpec::default()
        };
        let e = validate_backup(&spec, &catalog(), ok("l")).unwrap_err();
        assert_eq!(
            e,
            [
                "orderedResources[gadgets]: unknown resource \"gadgets\" (not served by this cluster)",
                "orderedResources[pods]: \"web-0\" must be namespace/name (pods is namespaced)",
                "orderedResources[pods]: \"app/\" must be namespace/name (pods is namespaced)",
                "orderedResources[pods]: \"a/b/c\" must be namespace/name (pods is namespaced)",
                "orderedResources[pv]: \"ns/pv-a\" must be a bare name (persistentvolumes is cluster-scoped)",
            ]
        );
        let twice = BackupSpec {
            ordered_resources: [
                ("po".to_string(), "a/b".to_string()),
                ("pods".to_string(), "a/c".to_string()),
            ]
            .into(),
            ..BackupSpec::default()
        };
        let e = validate_backup(&twice, &catalog(), ok("l")).unwrap_err();
        assert_eq!(e, ["orderedResources[pods]: pods is listed more than once"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let spec = BackupSpec {
            ttl: Some("soon".into()),
            included_resources: s(&["gadgets"]),
            included_namespace_scoped_resources: s(&["pods"]),
            ordered_resources: [("nope".to_string(), "x".to_string())].into(),
            ..BackupSpec::default()
        };
        let e = validate_backup(&spec, &catalog(), LocationCheck::NotFound("default".into()))
            .unwrap_err();
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(e[0].contains("not found"));
        assert!(e.iter().any(|m| m.contains("cannot be combined")));
        assert!(e.iter().any(|m| m.contains("unknown resource \"gadgets\"")));
        assert!(e.iter().any(|m| m.starts_with("ttl: ")));
        assert!(e.iter().any(|m| m.starts_with("orderedResources[nope]")));
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
}
