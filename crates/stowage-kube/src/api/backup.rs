//! `Backup`: one request to copy a selection of cluster objects (and their volumes) into a
//! repository, and the record of how that went.
//!
//! The spec's filter fields are Velero's, with Velero's meanings (see [`crate::filter`]); the
//! status keeps Velero's names where the concept is the same (`phase`, `validationErrors`,
//! `progress`, `warnings`, `errors`, timestamps, `expiration`, `formatVersion`,
//! `queuePosition`) and adds what a repository snapshot has (`snapshotId`, `bytesAdded`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The TTL of a backup whose `spec.ttl` is unset or zero: 30 days, Velero's default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(720 * 3600);

/// What to back up, where to, and for how long to keep it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stowage.dev",
    version = "v1alpha1",
    kind = "Backup",
    plural = "backups",
    singular = "backup",
    shortname = "bk",
    namespaced,
    status = "BackupStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "A backup of cluster objects and volumes into a repository (Velero's Backup).",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Location","type":"string","jsonPath":".spec.storageLocation"}"#,
    printcolumn = r#"{"name":"Items","type":"integer","jsonPath":".status.progress.itemsBackedUp"}"#,
    printcolumn = r#"{"name":"Errors","type":"integer","jsonPath":".status.errors"}"#,
    printcolumn = r#"{"name":"Warnings","type":"integer","jsonPath":".status.warnings"}"#,
    printcolumn = r#"{"name":"Started","type":"date","jsonPath":".status.startTimestamp"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".status.expiration","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Namespaces to back up (globs `*`, `?`, `[...]`); empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces to leave out (globs); wins over `includedNamespaces`. Namespaces labelled
    /// `stowage.dev/exclude-from-backup=true` are left out as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Old-style resource filter: resource types to back up (`pods`, `po`, `deployments.apps`,
    /// `Deployment`, or `*` alone); empty means all. Cannot be combined with the scoped filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Old-style resource filter: resource types to leave out (`*` not allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// Old-style filter for cluster-scoped types: unset lists them only for a backup of all
    /// namespaces (related ones, like a PVC's PV, still come along); `true` always lists them;
    /// `false` never backs any up, not even related ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// Scoped filter: cluster-scoped types to list (`*` for all). Empty: all of them for a
    /// backup of everything, otherwise only related ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_cluster_scoped_resources: Vec<String>,
    /// Scoped filter: cluster-scoped types never backed up, related or not (`*` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_cluster_scoped_resources: Vec<String>,
    /// Scoped filter: namespaced types to back up; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespace_scoped_resources: Vec<String>,
    /// Scoped filter: namespaced types to leave out (`*` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespace_scoped_resources: Vec<String>,
    /// Only objects (and namespaces) with matching labels. Not with `orLabelSelectors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects matching any of these selectors. Not with `labelSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub or_label_selectors: Vec<LabelSelector>,
    /// Objects to back up first, in order: key a resource (`pods`, `deployments.apps`), value
    /// a comma-separated list of `namespace/name` (or `name` for cluster-scoped types).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ordered_resources: BTreeMap<String, String>,
    /// How long to keep the backup, a Go duration (`720h0m0s`); unset or zero: 720h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// The BackupStorageLocation (same namespace) to write to; unset: the default location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Back up every pod volume by copying its files unless the pod opts out; unset: the
    /// controller's default (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_fs_backup: Option<bool>,
    /// `false` disables volume snapshots; unset: snapshot where possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,
    /// Copy the data of CSI snapshots into the repository; unset: the controller's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_move_data: Option<bool>,
    /// Volume policies (Velero's `volumePolicies`): the first whose conditions a claim's
    /// volume meets decides whether its data is skipped or copied, before the pods'
    /// annotations are looked at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_policies: Vec<super::VolumePolicy>,
    /// `true` asks the controller to stop a queued or running backup; it ends `Canceled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,
}

impl BackupSpec {
    /// Whether the user asked for the backup to be canceled.
    pub fn cancel_requested(&self) -> bool {
        self.cancel == Some(true)
    }
}

/// Where a backup is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum BackupPhase {
    /// Created, not yet looked at by the controller.
    #[default]
    New,
    /// Accepted and waiting for its turn (`status.queuePosition`).
    Queued,
    /// Running.
    InProgress,
    /// Finished with no errors.
    Completed,
    /// Finished, but some items or volumes could not be backed up (`status.errors`).
    PartiallyFailed,
    /// Stopped by an error that made the whole backup unusable (`status.failureReason`).
    Failed,
    /// The spec was refused before anything ran (`status.validationErrors`).
    FailedValidation,
    /// Stopped on request (`spec.cancel`).
    Canceled,
    /// Its snapshot is being deleted from the repository; the object goes when that is done.
    Deleting,
}

impl BackupPhase {
    /// Whether the run is over and its outcome final: `Completed`, `PartiallyFailed`,
    /// `Failed`, `FailedValidation`, `Canceled`. `Deleting` is not terminal: the object is
    /// still being worked on (by deletion), and a terminal backup may still become `Deleting`.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BackupPhase::Completed
                | BackupPhase::PartiallyFailed
                | BackupPhase::Failed
                | BackupPhase::FailedValidation
                | BackupPhase::Canceled
        )
    }

    /// Whether a finished backup has a snapshot worth restoring from.
    pub fn has_snapshot(self) -> bool {
        matches!(self, BackupPhase::Completed | BackupPhase::PartiallyFailed)
    }
}

impl std::fmt::Display for BackupPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Counts of items, patched while the backup runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    /// Items the backup expects to write (known once listing is done).
    #[serde(default)]
    pub total_items: u64,
    /// Items written so far.
    #[serde(default)]
    pub items_backed_up: u64,
}

/// What went wrong with one item, or one resource type, during a backup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The kind of problem.
    pub kind: ProblemKind,
    /// The resource type, as `resource.group` (`pods`, `deployments.apps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The namespace of the item, or the namespace being listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The item's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What happened, for a human.
    pub message: String,
}

/// The kinds of [`Problem`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ProblemKind {
    /// Listing a resource type (in a namespace) failed.
    ListFailed,
    /// Reading one item failed.
    GetFailed,
    /// A namespace named in `includedNamespaces` does not exist.
    NamespaceNotFound,
    /// An item was deliberately left out (a warning, not an error).
    Skipped,
    /// Writing an item or a volume into the repository failed.
    WriteFailed,
    /// Anything else; the message says what.
    #[default]
    Other,
}

/// What the controller did with a backup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Where the backup is in its life; unset is `New`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Every reason the spec was refused (phase `FailedValidation`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
    /// Item counts while running and at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<BackupProgress>,
    /// How many warnings the run had (`firstWarnings` holds the first few).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warnings: u32,
    /// How many errors the run had; any makes the backup `PartiallyFailed`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors: u32,
    /// The first warnings, in the order they happened (bounded by the controller).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_warnings: Vec<Problem>,
    /// The first errors, in the order they happened (bounded by the controller).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_errors: Vec<Problem>,
    /// Why the backup `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// When the run ended, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<Time>,
    /// When the backup is to be deleted: creation + TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Time>,
    /// The repository snapshot holding this backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Bytes the snapshot added to the repository after deduplication and compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
    /// Version of the layout of the backup inside the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<String>,
    /// Every pod volume of the backup with data (claims, and the kinds never copied, with the
    /// reason): how it was protected and the outcome. Bounded (see the controller); all of
    /// them are in the backup's `metadata/volumes.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<super::VolumeResult>,
    /// Place in the queue (1 is next), only while `Queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// How many times a run of this backup was started: above 1 when a controller restart
    /// interrupted an earlier run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Backup {
    /// The phase, `New` when the controller has not written one yet.
    pub fn phase(&self) -> BackupPhase {
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
    fn a_velero_backup_manifest_reads_with_only_the_api_version_changed() {
        let yaml = r#"
apiVersion: stowage.dev/v1alpha1
kind: Backup
metadata:
  name: nightly
  namespace: velero
  labels:
    team: a
spec:
  includedNamespaces: ["app-*"]
  excludedNamespaces: [app-tmp]
  includedNamespaceScopedResources: [deployments.apps, po]
  excludedClusterScopedResources: [nodes]
  labelSelector:
    matchLabels:
      app: web
    matchExpressions:
    - {key: tier, operator: In, values: [front, back]}
  orderedResources:
    pods: app-a/web-0,app-a/web-1
  ttl: 72h0m0s
  storageLocation: default
  defaultVolumesToFsBackup: true
  snapshotVolumes: false
  snapshotMoveData: false
"#;
        let b: Backup = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(b.spec.included_namespaces, ["app-*"]);
        assert_eq!(b.spec.excluded_namespaces, ["app-tmp"]);
        assert_eq!(
            b.spec.included_namespace_scoped_resources,
            ["deployments.apps", "po"]
        );
        assert_eq!(b.spec.excluded_cluster_scoped_resources, ["nodes"]);
        let sel = b.spec.label_selector.as_ref().unwrap();
        assert_eq!(sel.match_labels.as_ref().unwrap()["app"], "web");
        assert_eq!(sel.match_expressions.as_ref().unwrap()[0].operator, "In");
        assert_eq!(b.spec.ordered_resources["pods"], "app-a/web-0,app-a/web-1");
        assert_eq!(b.spec.ttl.as_deref(), Some("72h0m0s"));
        assert_eq!(b.spec.default_volumes_to_fs_backup, Some(true));
        assert_eq!(b.spec.snapshot_volumes, Some(false));
        assert_eq!(b.metadata.labels.as_ref().unwrap()["team"], "a");
        assert_eq!(b.phase(), BackupPhase::New);
        assert!(!b.spec.cancel_requested());
    }

    #[test]
    fn empty_lists_and_unset_options_are_not_written() {
        let spec = BackupSpec {
            included_namespaces: vec!["a".into()],
            ..BackupSpec::default()
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::json!({"includedNamespaces": ["a"]})
        );
        assert_eq!(
            serde_json::to_value(BackupStatus::default()).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn status_round_trips_with_velero_names() {
        let status = BackupStatus {
            phase: Some(BackupPhase::PartiallyFailed),
            progress: Some(BackupProgress {
                total_items: 10,
                items_backed_up: 9,
            }),
            errors: 1,
            first_errors: vec![Problem {
                kind: ProblemKind::GetFailed,
                resource: Some("pods".into()),
                namespace: Some("a".into()),
                name: Some("web-0".into()),
                message: "forbidden".into(),
            }],
            snapshot_id: Some("ab12".into()),
            attempt: 1,
            ..BackupStatus::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["phase"], "PartiallyFailed");
        assert_eq!(json["progress"]["itemsBackedUp"], 9);
        assert_eq!(json["firstErrors"][0]["kind"], "GetFailed");
        assert_eq!(json["snapshotId"], "ab12");
        assert_eq!(
            serde_json::from_value::<BackupStatus>(json).unwrap(),
            status
        );
    }

    #[test]
    fn only_finished_runs_are_terminal() {
        use BackupPhase::*;
        for p in [
            Completed,
            PartiallyFailed,
            Failed,
            FailedValidation,
            Canceled,
        ] {
            assert!(p.is_terminal(), "{p}");
        }
        for p in [New, Queued, InProgress, Deleting] {
            assert!(!p.is_terminal(), "{p}");
        }
        assert!(Completed.has_snapshot() && PartiallyFailed.has_snapshot());
        assert!(!Failed.has_snapshot());
    }
}
