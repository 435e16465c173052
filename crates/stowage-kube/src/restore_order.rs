//! The order in which a restore creates a backup's resource types (velero.md §4.1), and the
//! types it never creates (§4.2).
//!
//! Custom resource definitions come first (each must be Established before its objects are
//! created), then the high-priority types in their listed order, then every other type of the
//! backup in alphabetical order of `<resource>.<group>`, then the low-priority types. The lists
//! are configurable with Velero's syntax: a comma list of high-priority types, optionally `-`,
//! then the low-priority ones (`--restore-resource-priorities`).

use std::collections::BTreeSet;

/// Velero's default high-priority types, in order.
pub const DEFAULT_HIGH: [&str; 23] = [
    "customresourcedefinitions",
    "namespaces",
    "storageclasses",
    // Velero lists the singular `volumesnapshotclass`, which names no resource.
    "volumesnapshotclasses.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
    "volumesnapshots.snapshot.storage.k8s.io",
    "datauploads.velero.io",
    "persistentvolumes",
    "persistentvolumeclaims",
    "clusterroles",
    "roles",
    "serviceaccounts",
    "clusterrolebindings",
    "rolebindings",
    "secrets",
    "configmaps",
    "limitranges",
    "priorityclasses",
    "pods",
    "replicasets.apps",
    "clusterclasses.cluster.x-k8s.io",
    "endpoints",
    "services",
];

/// Velero's default low-priority types, in order.
pub const DEFAULT_LOW: [&str; 5] = [
    "clusterbootstraps.run.tanzu.vmware.com",
    "clusters.cluster.x-k8s.io",
    "clusterresourcesets.addons.cluster.x-k8s.io",
    "apps.kappctrl.k14s.io",
    "packageinstalls.packaging.carvel.dev",
];

/// Types a restore never creates, with the reason it gives.
pub const NEVER_RESTORED: [(&str, &str); 9] = [
    ("nodes", "nodes belong to the cluster, not to a backup"),
    ("events", "events are history, not state"),
    ("events.events.k8s.io", "events are history, not state"),
    (
        "csinodes.storage.k8s.io",
        "CSI nodes are written by each node's kubelet",
    ),
    (
        "volumeattachments.storage.k8s.io",
        "volume attachments are made by the attach controller",
    ),
    (
        "backups.stowage.dev",
        "Stowage's own objects are synced from the repository, not restored",
    ),
    (
        "restores.stowage.dev",
        "Stowage's own objects are not restored",
    ),
    (
        "backupstoragelocations.stowage.dev",
        "Stowage's own objects are not restored",
    ),
    (
        "deletebackuprequests.stowage.dev",
        "Stowage's own objects are not restored",
    ),
];

/// Why a type is not restored, if it is never restored.
pub fn never_restored(group_resource: &str) -> Option<&'static str> {
    NEVER_RESTORED
        .iter()
        .find(|(gr, _)| *gr == group_resource)
        .map(|(_, why)| *why)
}

/// A priorities setting that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrioritiesError {
    /// More than one `-`.
    #[error(
        "resource priorities have more than one \"-\" (it separates the high from the low ones)"
    )]
    TwoSeparators,
    /// An empty entry (`a,,b`).
    #[error("resource priorities have an empty entry")]
    Empty,
    /// A type is listed twice.
    #[error("resource priorities list {0:?} twice")]
    Duplicate(String),
}

/// The high- and low-priority lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priorities {
    /// Created first, in this order (after the CRDs).
    pub high: Vec<String>,
    /// Created last, in this order.
    pub low: Vec<String>,
}

impl Default for Priorities {
    fn default() -> Self {
        Priorities {
            high: DEFAULT_HIGH.iter().map(|s| s.to_string()).collect(),
            low: DEFAULT_LOW.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Priorities {
    /// Parses Velero's syntax: `a,b,c` or `a,b,-,y,z` (whitespace around entries ignored).
    pub fn parse(text: &str) -> Result<Priorities, PrioritiesError> {
        let mut high = Vec::new();
        let mut low = Vec::new();
        let mut seen = BTreeSet::new();
        let mut in_low = false;
        for entry in text.split(',').map(str::trim) {
            match entry {
                "" => return Err(PrioritiesError::Empty),
                "-" if in_low => return Err(PrioritiesError::TwoSeparators),
                "-" => in_low = true,
                name => {
                    if !seen.insert(name.to_string()) {
                        return Err(PrioritiesError::Duplicate(name.to_string()));
                    }
                    match in_low {
                        true => low.push(name.to_string()),
                        false => high.push(name.to_string()),
                    }
                }
            }
        }
        Ok(Priorities { high, low })
    }

    /// The order in which to create the given types: CRDs, the high list, the rest sorted,
    /// the low list. Names in the lists may omit the `.group` of a built-in type
    /// (`customresourcedefinitions`, `clusterroles`), as Velero's do; types of the lists that
    /// the backup lacks are left out.
    pub fn order<'a>(&self, types: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut rest: BTreeSet<String> = types.into_iter().map(str::to_string).collect();
        let mut take = |wanted: &str| -> Option<String> {
            let found = rest.iter().find(|gr| matches(wanted, gr)).cloned()?;
            rest.remove(&found);
            Some(found)
        };
        let mut out = Vec::new();
        if let Some(crds) = take(CRDS) {
            out.push(crds);
        }
        for wanted in &self.high {
            out.extend(take(wanted));
        }
        let mut low = Vec::new();
        for wanted in &self.low {
            low.extend(take(wanted));
        }
        out.extend(rest);
        out.extend(low);
        out
    }
}

const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";

/// Whether a priority entry names a group-resource: exactly, or by its resource alone when the
/// group is a built-in one (`*.k8s.io` or the core group).
fn matches(entry: &str, group_resource: &str) -> bool {
    if entry == group_resource {
        return true;
    }
    match group_resource.split_once('.') {
        Some((resource, group)) => {
            resource == entry && (group.ends_with(".k8s.io") || group == "apps" || group == "batch")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_first_then_the_high_list_then_the_rest_sorted_then_the_low_list() {
        let types = [
            "widgets.example.com",
            "services",
            "deployments.apps",
            "clusters.cluster.x-k8s.io",
            "configmaps",
            "namespaces",
            "customresourcedefinitions.apiextensions.k8s.io",
            "clusterroles.rbac.authorization.k8s.io",
            "persistentvolumeclaims",
            "persistentvolumes",
            "replicasets.apps",
            "statefulsets.apps",
        ];
        let order = Priorities::default().order(types);
        assert_eq!(
            order,
            [
                "customresourcedefinitions.apiextensions.k8s.io",
                "namespaces",
                "persistentvolumes",
                "persistentvolumeclaims",
                "clusterroles.rbac.authorization.k8s.io",
                "configmaps",
                "replicasets.apps",
                "services",
                "deployments.apps",
                "statefulsets.apps",
                "widgets.example.com",
                "clusters.cluster.x-k8s.io",
            ]
        );
    }

    #[test]
    fn velero_syntax_parses_and_bad_lists_are_refused() {
        let p = Priorities::parse("namespaces, secrets ,-,widgets.example.com").unwrap();
        assert_eq!(p.high, ["namespaces", "secrets"]);
        assert_eq!(p.low, ["widgets.example.com"]);
        assert_eq!(
            p.order(["widgets.example.com", "configmaps", "secrets", "namespaces"]),
            ["namespaces", "secrets", "configmaps", "widgets.example.com"]
        );
        assert_eq!(
            Priorities::parse("a,-,b,-,c"),
            Err(PrioritiesError::TwoSeparators)
        );
        assert_eq!(Priorities::parse("a,,b"), Err(PrioritiesError::Empty));
        assert_eq!(
            Priorities::parse("a,b,a"),
            Err(PrioritiesError::Duplicate("a".into()))
        );
        let only_high = Priorities::parse("pods").unwrap();
        assert!(only_high.low.is_empty());
    }

    #[test]
    fn a_short_name_matches_only_built_in_groups() {
        assert!(matches(
            "clusterroles",
            "clusterroles.rbac.authorization.k8s.io"
        ));
        assert!(matches("pods", "pods"));
        assert!(!matches("clusters", "clusters.example.com"));
        assert!(!matches("roles", "clusterroles.rbac.authorization.k8s.io"));
    }

    #[test]
    fn the_cluster_and_our_own_objects_are_never_restored() {
        assert!(never_restored("nodes").is_some());
        assert!(never_restored("events.events.k8s.io").is_some());
        assert!(never_restored("backups.stowage.dev").is_some());
        assert_eq!(never_restored("configmaps"), None);
    }

    #[test]
    fn every_type_comes_out_once() {
        let types = [
            "b",
            "a",
            "namespaces",
            "c.example.com",
            "apps.kappctrl.k14s.io",
        ];
        let order = Priorities::default().order(types);
        let mut sorted = order.clone();
        sorted.sort();
        let mut want: Vec<String> = types.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(sorted, want);
        assert_eq!(
            order.last().map(String::as_str),
            Some("apps.kappctrl.k14s.io")
        );
    }
}
