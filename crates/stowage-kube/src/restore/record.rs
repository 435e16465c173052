//! A restore's record in the repository (repo-format §18, "Restore records"): one small
//! snapshot holding the Restore as it ended, every warning, error and difference (the status
//! keeps only the first few), and the restore's log. Written when the restore has run and its
//! location may be written; a ReadOnly location (a migration target) keeps the status only.

use crate::api::{Restore, RestoreItem};
use crate::layout::{self, files};
use std::path::PathBuf;
use std::sync::Arc;
use stowage_core::backup::{
    self, BackupError, BackupOptions, BackupSource, Document, ParentChoice,
};
use stowage_core::id::Id;
use stowage_core::progress::Control;
use stowage_core::repo::session::{BackupWork, IndexSource};
use stowage_core::repo::snapshot::Snapshot;
use stowage_core::repo::{RepoError, Repository};

/// Tag prefix naming the Restore (`stowage.dev/restore=<name>`).
pub const TAG_NAME: &str = "stowage.dev/restore=";
/// Tag prefix holding the Restore's UID.
pub const TAG_UID: &str = "stowage.dev/restore-uid=";
/// The file holding the Restore as it ended.
pub const RESTORE: &str = "metadata/restore.json";

/// The snapshot's path label: `k8s-restore:<namespace>/<name>`.
pub fn label(namespace: &str, name: &str) -> String {
    format!("k8s-restore:{namespace}/{name}")
}

/// Every problem of a restore, for `metadata/results.json`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Results {
    /// Warnings, in the order they happened.
    pub warnings: Vec<RestoreItem>,
    /// Errors: items that could not be restored.
    pub errors: Vec<RestoreItem>,
    /// Restored objects that, read back, differ from the backup.
    pub differences: Vec<RestoreItem>,
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The repository could not be opened for writing.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The snapshot could not be written.
    #[error(transparent)]
    Backup(#[from] BackupError),
}

/// Writes the record of `ended` (its status final); gives the snapshot's id.
pub fn write(
    repo: &Arc<Repository>,
    cache_dir: Option<PathBuf>,
    ended: &Restore,
    results: &Results,
    log: &str,
    cluster_name: &str,
) -> Result<Id, RecordError> {
    let namespace = ended.metadata.namespace.clone().unwrap_or_default();
    let name = ended.metadata.name.clone().unwrap_or_default();
    let uid = ended.metadata.uid.clone().unwrap_or_default();
    let source = match cache_dir {
        Some(dir) => IndexSource::Cache(dir),
        None => IndexSource::Memory,
    };
    let session = repo.lock::<BackupWork>()?.load_index(&source, &())?;
    let mut object = ended.clone();
    object.metadata.managed_fields = None;
    let documents = vec![
        Document::new(files::VERSION, format!("{}\n", layout::FORMAT_VERSION)),
        Document::new(RESTORE, layout::encode_record(&object)),
        Document::new(files::RESULTS, layout::encode_record(results)),
        Document::new(files::LOG, log.as_bytes().to_vec()),
    ];
    let opts = BackupOptions {
        tags: vec![format!("{TAG_NAME}{name}"), format!("{TAG_UID}{uid}")],
        hostname: Some(cluster_name.to_string()),
        parent: ParentChoice::None,
        ..BackupOptions::default()
    };
    let report = backup::run(
        &session,
        BackupSource::Documents {
            label: label(&namespace, &name),
            documents,
        },
        &opts,
        &Control::new(),
    )?;
    Ok(report.snapshot_id)
}

/// The record of the Restore with this UID, if the repository has one (the newest).
pub fn find(repo: &Repository, uid: &str) -> Result<Option<(Id, Snapshot)>, RepoError> {
    layout::find_tagged(repo, &format!("{TAG_UID}{uid}"))
}
