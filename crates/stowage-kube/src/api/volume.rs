//! Volume data: the work items the node agents carry out (`VolumeBackup`, `VolumeRestore`, one
//! per volume, owned by their Backup or Restore), the volume policies a Backup selects volumes
//! with, and the per-volume results Backups and Restores report.
//!
//! A work item names everything its node's agent needs to find the volume under the kubelet's
//! directory (node, pod UID, persistent volume name, volume mode) and to write or read the
//! repository (storage location, snapshot). The agent writes its status; the controller that
//! made the item only reads it, except to fail an item whose node is gone.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The label every work item carries with its node's name, so each agent watches its own.
pub const NODE_LABEL: &str = "stowage.dev/node";
/// The label a VolumeBackup carries with its Backup's UID (a VolumeRestore: its Restore's).
pub const OWNER_UID_LABEL: &str = "stowage.dev/owner-uid";

/// A namespaced object a work item refers to, with its UID.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID.
    #[serde(default)]
    pub uid: String,
}

/// How a pod sees a volume: a mounted file system, or a raw block device.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum VolumeMode {
    /// A file system, backed up as a file tree.
    #[default]
    Filesystem,
    /// A block device, backed up as one stream of its bytes.
    Block,
}

impl std::fmt::Display for VolumeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Where a work item is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum VolumePhase {
    /// Created, not yet taken by its node's agent.
    #[default]
    New,
    /// Taken by the agent and waiting for one of its slots (`status.message` says so).
    Accepted,
    /// Being copied.
    InProgress,
    /// Cancel requested while running; the copy is stopping.
    Canceling,
    /// Stopped on request; nothing was recorded.
    Canceled,
    /// Done (`status.snapshotId`).
    Completed,
    /// Could not be done (`status.message` says why).
    Failed,
}

impl VolumePhase {
    /// Whether the item is finished for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            VolumePhase::Canceled | VolumePhase::Completed | VolumePhase::Failed
        )
    }
}

impl std::fmt::Display for VolumePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// How far a work item is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProgress {
    /// Bytes copied (for a backup, unchanged files count as done).
    #[serde(default)]
    pub bytes_done: u64,
    /// Bytes to copy, once known.
    #[serde(default)]
    pub bytes_total: u64,
    /// Files copied.
    #[serde(default)]
    pub files_done: u64,
    /// Files to copy, once known.
    #[serde(default)]
    pub files_total: u64,
}

/// The status both kinds of work item have.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeWorkStatus {
    /// Where the item is; unset is `New`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VolumePhase>,
    /// Progress while running and at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<VolumeProgress>,
    /// The snapshot written (VolumeBackup) or read (VolumeRestore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The snapshot the backup compared with to skip unchanged files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_snapshot: Option<String>,
    /// Bytes the backup added to the repository after deduplication and compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
    /// Files the restore read back and found equal to the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_files: Option<u64>,
    /// Entries that could not be read or written (the first few are in `message`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warnings: u32,
    /// What is happening, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The agent (pod or host name) that ran it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Runs started: above 1 when an agent restart interrupted an earlier one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// When the agent took the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_timestamp: Option<Time>,
    /// When the copy started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// When it ended, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<Time>,
}

/// Every member of [`VolumeWorkStatus`], so a merge patch can clear those now unset.
pub const VOLUME_STATUS_MEMBERS: [&str; 13] = [
    "phase",
    "progress",
    "snapshotId",
    "parentSnapshot",
    "bytesAdded",
    "verifiedFiles",
    "warnings",
    "message",
    "agent",
    "attempt",
    "acceptedTimestamp",
    "startTimestamp",
    "completionTimestamp",
];

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One volume of a Backup, copied into the repository by the agent of the node it is mounted on.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stowage.dev",
    version = "v1alpha1",
    kind = "VolumeBackup",
    plural = "volumebackups",
    singular = "volumebackup",
    shortname = "vb",
    namespaced,
    status = "VolumeWorkStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "One volume of a Backup, copied by its node's agent (Velero's PodVolumeBackup).",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.pvc.namespace"}"#,
    printcolumn = r#"{"name":"Claim","type":"string","jsonPath":".spec.pvc.name"}"#,
    printcolumn = r#"{"name":"Bytes","type":"integer","jsonPath":".status.progress.bytesDone"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeBackupSpec {
    /// The Backup this volume belongs to (same namespace).
    pub backup_name: String,
    /// The node the pod runs on: only that node's agent takes the item.
    pub node: String,
    /// The pod whose mount is read.
    pub pod: ObjectRef,
    /// The volume's name in the pod.
    pub volume: String,
    /// The claim.
    pub pvc: ObjectRef,
    /// The persistent volume bound to the claim (the kubelet's directory is named after it).
    pub persistent_volume: String,
    /// File system or block device.
    #[serde(default)]
    pub volume_mode: VolumeMode,
    /// The BackupStorageLocation to write to.
    pub storage_location: String,
    /// The snapshot to compare with; unset: the latest snapshot of the same claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_snapshot: Option<String>,
    /// Tags recorded on the snapshot besides the agent's own (backup, namespace, claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// `true` stops the copy; the item ends `Canceled` and no snapshot is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,
}

/// One volume of a Restore, written from the repository by the agent of the node its helper
/// pod is mounted on, before any workload uses the claim.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stowage.dev",
    version = "v1alpha1",
    kind = "VolumeRestore",
    plural = "volumerestores",
    singular = "volumerestore",
    shortname = "vr",
    namespaced,
    status = "VolumeWorkStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "One volume of a Restore, written by its node's agent (Velero's PodVolumeRestore).",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.pvc.namespace"}"#,
    printcolumn = r#"{"name":"Claim","type":"string","jsonPath":".spec.pvc.name"}"#,
    printcolumn = r#"{"name":"Bytes","type":"integer","jsonPath":".status.progress.bytesDone"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRestoreSpec {
    /// The Restore this volume belongs to (same namespace).
    pub restore_name: String,
    /// The node the helper pod runs on: only that node's agent takes the item.
    pub node: String,
    /// The helper pod that mounts the claim (never a user's pod).
    pub pod: ObjectRef,
    /// The volume's name in the helper pod.
    pub volume: String,
    /// The claim written to.
    pub pvc: ObjectRef,
    /// The persistent volume bound to the claim.
    pub persistent_volume: String,
    /// File system or block device.
    #[serde(default)]
    pub volume_mode: VolumeMode,
    /// The BackupStorageLocation to read from.
    pub storage_location: String,
    /// The volume's snapshot.
    pub snapshot_id: String,
    /// `true` stops the copy; the item ends `Canceled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,
}

/// What both kinds of work item have in common, for code that serves both.
pub trait VolumeWork {
    /// The node whose agent carries it out.
    fn node(&self) -> &str;
    /// Whether cancel was requested.
    fn cancel_requested(&self) -> bool;
    /// Its phase, `New` when unset.
    fn phase(&self) -> VolumePhase;
}

macro_rules! volume_work {
    ($t:ty) => {
        impl VolumeWork for $t {
            fn node(&self) -> &str {
                &self.spec.node
            }
            fn cancel_requested(&self) -> bool {
                self.spec.cancel == Some(true)
            }
            fn phase(&self) -> VolumePhase {
                self.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .unwrap_or_default()
            }
        }
    };
}
volume_work!(VolumeBackup);
volume_work!(VolumeRestore);

/// How a volume's data was (or was not) protected.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum VolumeMethod {
    /// Copied from the pod's mount by the node agent.
    #[default]
    FileSystem,
    /// Not copied (`reason` says why).
    Skipped,
}

/// The outcome of one volume, in a Backup's or a Restore's status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum VolumeOutcome {
    /// Not finished yet.
    #[default]
    Pending,
    /// Copied (and, for a restore, verified).
    Completed,
    /// Could not be copied.
    Failed,
    /// Stopped on request.
    Canceled,
    /// Left out on purpose.
    Skipped,
}

impl std::fmt::Display for VolumeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One volume's line in a Backup's or a Restore's status (and in the backup's
/// `metadata/volumes.json`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeResult {
    /// The pod's (and claim's) namespace, as backed up.
    pub namespace: String,
    /// The pod that mounts it (the one read, for a claim several pods mount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The volume's name in the pod.
    pub volume: String,
    /// The claim, for a PersistentVolumeClaim volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<String>,
    /// How the data was protected.
    pub method: VolumeMethod,
    /// File system or block device.
    #[serde(default)]
    pub volume_mode: VolumeMode,
    /// The outcome.
    pub outcome: VolumeOutcome,
    /// The volume's snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Bytes of data (the volume's files, or the device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// For a restore: files read back and found equal to the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_files: Option<u64>,
    /// Why it was skipped or failed, or what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A Backup's volume policy (Velero's `volumePolicies` entry): the first policy whose every
/// condition holds decides what happens to a claim's volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumePolicy {
    /// What the volume must match; no conditions match every volume.
    #[serde(default)]
    pub conditions: VolumeConditions,
    /// What to do with a matching volume.
    pub action: VolumeAction,
}

/// The conditions of a [`VolumePolicy`]; every one set must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeConditions {
    /// `"MIN,MAX"` capacity bounds (`"0,10Gi"`, `"100Gi,"`): either may be empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// The claim's storage class is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_class: Vec<String>,
    /// The volume is a CSI volume of this driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi: Option<CsiCondition>,
    /// The claim has all these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pvc_labels: BTreeMap<String, String>,
}

/// The CSI condition of a [`VolumePolicy`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsiCondition {
    /// The CSI driver's name.
    pub driver: String,
}

/// The action of a [`VolumePolicy`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAction {
    /// `skip` (leave the data out), `fs-backup` (copy it with the node agent, whatever the
    /// pod's annotations say) or `snapshot` (a CSI snapshot).
    #[serde(rename = "type")]
    pub type_: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_velero_volume_policy_reads_as_is() {
        let yaml = r#"
- conditions:
    capacity: "0,10Gi"
    storageClass: [gp2, standard]
    csi: {driver: ebs.csi.aws.com}
    pvcLabels: {env: prod}
  action: {type: skip}
- action: {type: fs-backup}
"#;
        let p: Vec<VolumePolicy> = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(p[0].conditions.capacity.as_deref(), Some("0,10Gi"));
        assert_eq!(p[0].conditions.storage_class, ["gp2", "standard"]);
        assert_eq!(
            p[0].conditions.csi.as_ref().unwrap().driver,
            "ebs.csi.aws.com"
        );
        assert_eq!(p[0].conditions.pvc_labels["env"], "prod");
        assert_eq!(p[0].action.type_, "skip");
        assert_eq!(p[1].conditions, VolumeConditions::default());
    }

    #[test]
    fn the_status_member_list_is_complete() {
        let full = VolumeWorkStatus {
            phase: Some(VolumePhase::Completed),
            progress: Some(Default::default()),
            snapshot_id: Some("a".into()),
            parent_snapshot: Some("b".into()),
            bytes_added: Some(1),
            verified_files: Some(1),
            warnings: 1,
            message: Some("m".into()),
            agent: Some("a".into()),
            attempt: 1,
            accepted_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            start_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            completion_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
        };
        let json = serde_json::to_value(&full).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        let mut known = VOLUME_STATUS_MEMBERS.to_vec();
        known.sort();
        assert_eq!(keys, known);
    }

    #[test]
    fn only_finished_items_are_terminal() {
        use VolumePhase::*;
        for p in [Canceled, Completed, Failed] {
            assert!(p.is_terminal());
        }
        for p in [New, Accepted, InProgress, Canceling] {
            assert!(!p.is_terminal());
        }
    }
}
