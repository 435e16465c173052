//! `Restore`: one request to recreate a backup's objects in this cluster, and the record of how
//! that went, item by item.
//!
//! The spec's fields are Velero's (`velero.io/v1` Restore) with Velero's meanings; beyond
//! Velero, `storageClassMapping`, `dryRun` and `cancel` are first-class, and the status counts
//! every item's outcome (created, updated, unchanged, skipped, failed) and the verification of
//! the restored objects against the backup.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to restore, from which backup, and how.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stowage.dev",
    version = "v1alpha1",
    kind = "Restore",
    plural = "restores",
    singular = "restore",
    shortname = "rst",
    namespaced,
    status = "RestoreStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "A restore of a backup's objects into this cluster (Velero's Restore).",
    printcolumn = r#"{"name":"Backup","type":"string","jsonPath":".spec.backupName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Restored","type":"integer","jsonPath":".status.progress.itemsRestored"}"#,
    printcolumn = r#"{"name":"Total","type":"integer","jsonPath":".status.progress.totalItems"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.counts.failed"}"#,
    printcolumn = r#"{"name":"Warnings","type":"integer","jsonPath":".status.warnings"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// The Backup (same namespace) to restore from. Exactly one of `backupName` and
    /// `scheduleName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// Restore the latest Completed backup of this Schedule (backups labelled
    /// `stowage.dev/schedule-name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_name: Option<String>,
    /// Namespaces of the backup to restore (globs); empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces to leave out (globs); wins over `includedNamespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resource types to restore (`pods`, `deployments.apps`, `*`); empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resource types to leave out; wins over `includedResources`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// Unset: cluster-scoped objects are restored for a restore of all namespaces, and those
    /// related to restored objects (a claim's volume, a CRD of a restored custom resource)
    /// otherwise; `true`: all of the backup's; `false`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// Only objects with matching labels. Not with `orLabelSelectors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects matching any of these selectors. Not with `labelSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub or_label_selectors: Vec<LabelSelector>,
    /// Source namespace to target namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_mapping: BTreeMap<String, String>,
    /// Old storage class to new, for claims, volumes and stateful sets' claim templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_class_mapping: BTreeMap<String, String>,
    /// `false` leaves persistent volumes out (claims are still restored and provision new
    /// ones); unset or `true` restores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_p_vs: Option<bool>,
    /// Keep Services' node ports; unset: the cluster assigns new ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_node_ports: Option<bool>,
    /// What to do with an object that already exists and differs from the backup: `none`
    /// (default) leaves it and warns; `update` patches it to the backup's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_resource_policy: Option<ExistingResourcePolicy>,
    /// Resource types whose `status` is written back after they are created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_status: Option<RestoreStatusSpec>,
    /// A ConfigMap (same namespace) of JSON-patch and merge-patch rules applied to the objects
    /// before they are created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_modifier: Option<ResourceModifierRef>,
    /// The order of types: high-priority types, then optionally `-` and the low-priority ones
    /// (`--restore-resource-priorities` syntax); unset: Velero's default order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_priorities: Option<String>,
    /// Every create and patch is sent as a server-side dry run: the status reports what would
    /// happen, and nothing changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Read every restored object back and compare it with the backup; unset: `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// `true` asks the controller to stop the restore; it ends `Canceled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,
}

impl RestoreSpec {
    /// Whether the user asked for the restore to be canceled.
    pub fn cancel_requested(&self) -> bool {
        self.cancel == Some(true)
    }

    /// Whether creates and patches are dry runs.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run == Some(true)
    }
}

/// What to do with objects that already exist.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExistingResourcePolicy {
    /// Leave them; a differing one is a warning.
    #[default]
    None,
    /// Patch differing ones to the backup's content.
    Update,
}

/// `spec.restoreStatus`: which types get their status restored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatusSpec {
    /// Types whose status is restored (`*` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Types whose status is not; wins over `includedResources`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
}

/// `spec.resourceModifier`: Velero's reference to the rules' ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceModifierRef {
    /// Velero's field; only `ConfigMap` is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The ConfigMap's name.
    pub name: String,
}

/// Where a restore is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum RestorePhase {
    /// Created, not yet looked at by the controller.
    #[default]
    New,
    /// Running.
    InProgress,
    /// Every selected item is in the cluster as the backup has it (or was rightly skipped).
    Completed,
    /// Finished, but some items could not be restored (`status.counts.failed`).
    PartiallyFailed,
    /// Stopped by an error that made the whole restore impossible (`status.failureReason`).
    Failed,
    /// The spec was refused before anything ran (`status.validationErrors`).
    FailedValidation,
    /// Stopped on request (`spec.cancel`).
    Canceled,
}

impl RestorePhase {
    /// Whether the restore is over.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RestorePhase::New | RestorePhase::InProgress)
    }
}

impl std::fmt::Display for RestorePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Items done so far.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreProgress {
    /// Items of the backup selected for this restore.
    #[serde(default)]
    pub total_items: u64,
    /// Items dealt with so far, whatever their outcome.
    #[serde(default)]
    pub items_restored: u64,
}

/// How each item ended.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreCounts {
    /// Created (or, in a dry run, would be).
    #[serde(default)]
    pub created: u64,
    /// Existed, differed, and were patched (`existingResourcePolicy: update`).
    #[serde(default)]
    pub updated: u64,
    /// Existed and already matched the backup.
    #[serde(default)]
    pub unchanged: u64,
    /// Deliberately not restored; `skippedReasons` says why.
    #[serde(default)]
    pub skipped: u64,
    /// Could not be restored (errors).
    #[serde(default)]
    pub failed: u64,
    /// Skipped items by reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_reasons: BTreeMap<String, u64>,
}

/// The read-back of restored objects.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreVerification {
    /// Objects read back.
    #[serde(default)]
    pub checked: u64,
    /// Objects whose every restored field has the backup's value.
    #[serde(default)]
    pub matched: u64,
    /// Objects that differ (the first ones in `firstDifferences`).
    #[serde(default)]
    pub differed: u64,
    /// Objects no longer found.
    #[serde(default)]
    pub missing: u64,
    /// Objects that could not be read back (the API server refused the listing), so neither
    /// matched nor differed.
    #[serde(default)]
    pub unverified: u64,
    /// Volumes whose data was written and read back against its snapshot.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub volumes_verified: u64,
    /// Files of those volumes found equal to the snapshot.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub volume_files_verified: u64,
    /// Volumes whose data could not be written or did not verify.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub volumes_failed: u64,
    /// The first differing objects, with the fields that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_differences: Vec<RestoreItem>,
}

/// One item of a restore, with what happened to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreItem {
    /// The kind of problem.
    pub kind: RestoreProblemKind,
    /// The resource type, as `resource.group`.
    pub resource: String,
    /// The target namespace (after mapping), for a namespaced item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The item's name.
    pub name: String,
    /// What happened, for a human (for a difference, the fields that differ).
    pub message: String,
}

/// The kinds of [`RestoreItem`] problems.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum RestoreProblemKind {
    /// The API server refused to create or patch it.
    CreateFailed,
    /// The target cluster has no API for its type (or version).
    ApiMissing,
    /// It exists and differs, and the policy is `none`.
    ExistsDifferent,
    /// Deliberately not restored (a warning).
    Skipped,
    /// The type is never restored.
    Refused,
    /// A resource modifier rule could not be applied.
    ModifierFailed,
    /// Reading it from the repository failed.
    ReadFailed,
    /// Read back after the restore, it differs from the backup.
    Differs,
    /// A claim's volume data could not be written, or did not verify.
    VolumeFailed,
    /// Anything else; the message says what.
    #[default]
    Other,
}

/// What the controller did with a restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// Where the restore is in its life; unset is `New`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// Every reason the spec was refused (phase `FailedValidation`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
    /// The backup restored from (resolved from `scheduleName` when that was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// The repository snapshot restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Item counts while running and at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RestoreProgress>,
    /// How each item ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<RestoreCounts>,
    /// The read-back of the restored objects (unless `spec.verify` is `false` or a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<RestoreVerification>,
    /// Every volume with backed-up data the restore selected: written and verified before the
    /// workloads that use it were restored, or why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<super::VolumeResult>,
    /// What the target cluster lacks that the backup needs (found before anything is
    /// created): missing APIs, storage classes, namespaces being deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_lacks: Vec<String>,
    /// How many warnings the run had (`firstWarnings` holds the first few).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warnings: u32,
    /// How many errors the run had; any makes the restore `PartiallyFailed`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors: u32,
    /// The first warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_warnings: Vec<RestoreItem>,
    /// The first errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_errors: Vec<RestoreItem>,
    /// Why the restore `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// When it ended, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<Time>,
    /// The repository snapshot holding this restore's full results and log (none for a
    /// ReadOnly location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_snapshot_id: Option<String>,
    /// Runs started: above 1 when a controller restart interrupted an earlier one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero64(n: &u64) -> bool {
    *n == 0
}

impl Restore {
    /// The phase, `New` when the controller has not written one yet.
    pub fn phase(&self) -> RestorePhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_velero_restore_manifest_reads_with_only_the_api_version_changed() {
        let yaml = r#"
apiVersion: stowage.dev/v1alpha1
kind: Restore
metadata:
  name: r1
  namespace: velero
spec:
  backupName: nightly
  includedNamespaces: [app]
  excludedResources: [secrets]
  includeClusterResources: true
  namespaceMapping: {app: app-clone}
  restorePVs: false
  preserveNodePorts: true
  existingResourcePolicy: update
  restoreStatus:
    includedResources: [widgets.example.com]
  resourceModifier:
    kind: ConfigMap
    name: rules
"#;
        let r: Restore = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(r.spec.backup_name.as_deref(), Some("nightly"));
        assert_eq!(r.spec.namespace_mapping["app"], "app-clone");
        assert_eq!(r.spec.restore_p_vs, Some(false));
        assert_eq!(
            r.spec.existing_resource_policy,
            Some(ExistingResourcePolicy::Update)
        );
        assert_eq!(r.phase(), RestorePhase::New);
        assert_eq!(
            r.spec.restore_status.unwrap().included_resources,
            ["widgets.example.com"]
        );
        assert_eq!(r.spec.resource_modifier.unwrap().name, "rules");
    }

    #[test]
    fn only_finished_restores_are_terminal() {
        use RestorePhase::*;
        for p in [
            Completed,
            PartiallyFailed,
            Failed,
            FailedValidation,
            Canceled,
        ] {
            assert!(p.is_terminal(), "{p}");
        }
        assert!(!New.is_terminal() && !InProgress.is_terminal());
    }
}
