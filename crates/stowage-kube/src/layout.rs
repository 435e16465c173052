//! How a Kubernetes backup is laid out in the repository (the contract in
//! `repo-format/README.md`, "Kubernetes backups"): one snapshot per Backup, tagged with the
//! Backup's name and UID, holding the objects under `resources/` and the backup's own records
//! under `metadata/`.

use stowage_core::id::Id;
use stowage_core::progress::Control;
use stowage_core::repo::session::{Indexed, ReadWork};
use stowage_core::repo::snapshot::Snapshot;
use stowage_core::repo::{RepoError, Repository};
use stowage_core::restore::{self, RestoreError, RestoreOptions, RestoreTarget};

/// The version of this layout, recorded in `metadata/version` and the Backup's
/// `status.formatVersion`.
pub const FORMAT_VERSION: &str = "1";

/// The snapshot's path label: `k8s-backup:<namespace>/<name>`.
pub fn label(namespace: &str, name: &str) -> String {
    format!("k8s-backup:{namespace}/{name}")
}

/// Where an object goes: `resources/<group-resource>/namespaces/<ns>/<name>.json`, or
/// `.../cluster/<name>.json` for a cluster-scoped one.
pub fn object_path(group_resource: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("resources/{group_resource}/namespaces/{ns}/{name}.json"),
        None => format!("resources/{group_resource}/cluster/{name}.json"),
    }
}

/// An object's bytes: compact JSON, members sorted by name at every level.
pub fn encode_object(object: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(object).expect("a JSON value serialises")
}

/// The bytes of a `metadata/` record: pretty JSON and a newline.
pub fn encode_record<T: serde::Serialize + ?Sized>(record: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(record).expect("records serialise");
    v.push(b'\n');
    v
}

/// Tag prefix naming the Backup (`stowage.dev/backup=<name>`).
pub const TAG_NAME: &str = "stowage.dev/backup=";
/// Tag prefix holding the Backup's UID (`stowage.dev/backup-uid=<uid>`): what finds a
/// backup's snapshot again, after a restart or from another cluster.
pub const TAG_UID: &str = "stowage.dev/backup-uid=";

/// The files under `metadata/`.
pub mod files {
    /// The layout's version, `1\n`.
    pub const VERSION: &str = "metadata/version";
    /// The Backup object as it ended (its status final but for the snapshot's own id).
    pub const BACKUP: &str = "metadata/backup.json";
    /// `{"<apiVersion>/<Kind>": ["namespace/name" | "name", ...]}`, sorted, as Velero's.
    pub const RESOURCE_LIST: &str = "metadata/resource-list.json";
    /// `{"warnings": [Problem...], "errors": [Problem...]}`: every finding, typed.
    pub const RESULTS: &str = "metadata/results.json";
    /// The backup's log, one line per entry: `<RFC 3339 time> <level> <message>`.
    pub const LOG: &str = "metadata/log.txt";
    /// The volume snapshots that belong to the backup (the node-agent and CSI issues fill it;
    /// `[]` until then).
    pub const VOLUME_SNAPSHOTS: &str = "metadata/volume-snapshots.json";
}

/// Why a backup's files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Reading the file failed (it may be absent: an older layout, or a damaged snapshot).
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: RestoreError,
    },
    /// No snapshot carries this Backup's UID.
    #[error("no snapshot in the repository belongs to backup UID {0}")]
    NoSnapshot(String),
}

/// The snapshot of the Backup with this UID, if the repository has one (the newest, should a
/// crash have left two).
pub fn find_snapshot(repo: &Repository, uid: &str) -> Result<Option<(Id, Snapshot)>, RepoError> {
    find_tagged(repo, &format!("{TAG_UID}{uid}"))
}

/// The newest snapshot carrying `tag`, if any.
pub fn find_tagged(repo: &Repository, tag: &str) -> Result<Option<(Id, Snapshot)>, RepoError> {
    Ok(repo
        .list_snapshots()?
        .into_iter()
        .filter(|(_, s)| s.tags.iter().any(|t| t == tag))
        .max_by_key(|(_, s)| s.time))
}

/// Reads one file of a backup's snapshot (`metadata/log.txt`, a resource's JSON) through a read
/// session the caller opened (locked, or `Locked::without_lock` for read-only storage).
pub fn read_file(
    session: &Indexed<ReadWork>,
    snapshot: &Snapshot,
    path: &str,
) -> Result<Vec<u8>, LayoutError> {
    let mut out = Vec::new();
    let opts = RestoreOptions {
        subpath: Some(path.to_string()),
        ..RestoreOptions::default()
    };
    restore::run(
        session,
        snapshot,
        RestoreTarget::Stream(&mut out),
        &opts,
        &Control::new(),
    )
    .map_err(|source| LayoutError::Read {
        path: path.to_string(),
        source,
    })?;
    Ok(out)
}
