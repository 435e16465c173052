//! A backup's own records (log, resource list, results, volume snapshots), and a restore's
//! (results, log), read from the location's repository, for `describe --details` and `logs`.
//!
//! The command line only reads: the location is opened as if it were `ReadOnly` (so a missing
//! repository is reported, never created) and the files are read without a lock, as `stowage
//! ls` does. Opening needs read access to the location's Secrets.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use kube::api::ListParams;
use kube::Api;
use stowage_core::id::Id;
use stowage_core::progress::Control;
use stowage_core::repo::session::{IndexSource, Indexed, Locked, ReadWork};
use stowage_core::repo::snapshot::Snapshot;
use stowage_core::repo::Repository;
use stowage_core::restore::{self, RestoreOptions, RestoreTarget};
use stowage_kube::api::{labels, AccessMode, Backup, BackupStorageLocation};
use stowage_kube::layout;

use super::Kube;

/// The location a backup was (or is to be) written to: `spec.storageLocation`, else the label
/// the controller sets, else the location marked default.
pub async fn location_of(kube: &Kube, backup: &Backup) -> Result<BackupStorageLocation> {
    let api: Api<BackupStorageLocation> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let named = backup.spec.storage_location.clone().or_else(|| {
        backup
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::STORAGE_LOCATION).cloned())
    });
    if let Some(name) = named {
        return api
            .get(&name)
            .await
            .map_err(|e| kube.error(e, "backupstoragelocation", Some(&name)));
    }
    let all = api
        .list(&ListParams::default())
        .await
        .map_err(|e| kube.error(e, "backupstoragelocation", None))?;
    all.items
        .into_iter()
        .find(|l| l.spec.default)
        .ok_or_else(|| {
            anyhow!(
                "the backup names no storage location and namespace {} has no default one",
                kube.namespace
            )
        })
}

/// A backup's snapshot in its repository, with the index loaded for reading its files.
pub struct BackupRecords {
    session: Indexed<ReadWork>,
    snapshot: Snapshot,
    /// The snapshot's id.
    pub id: Id,
    /// Where the repository is (`s3:...`, a path), for messages.
    pub location: String,
}

impl BackupRecords {
    /// Opens the backup's location read-only and finds its snapshot: `status.snapshotId`, else
    /// the snapshot tagged with the Backup's UID.
    pub async fn open(kube: &Kube, backup: &Backup) -> Result<BackupRecords> {
        let (repo, location) = open_read_only(kube, backup).await?;
        let snapshot_id = backup.status.as_ref().and_then(|s| s.snapshot_id.clone());
        let uid = backup.metadata.uid.clone().unwrap_or_default();
        let name = backup.metadata.name.clone().unwrap_or_default();
        let found = tokio::task::spawn_blocking(move || find(&repo, snapshot_id, &uid, &name))
            .await
            .context("reading the repository")??;
        let (id, snapshot, session) = found;
        Ok(BackupRecords {
            session,
            snapshot,
            id,
            location,
        })
    }

    /// Opens the record a restore wrote (its results and log), in the location of the backup
    /// it restored.
    pub async fn open_restore(
        kube: &Kube,
        restore: &stowage_kube::api::Restore,
    ) -> Result<BackupRecords> {
        let name = restore.metadata.name.clone().unwrap_or_default();
        let status = restore.status.clone().unwrap_or_default();
        let Some(id) = status.record_snapshot_id.clone() else {
            return Err(anyhow!(
                "restore {name:?} has no record in the repository (it is still running, failed validation, or restored from a ReadOnly location); `stowage k8s restore describe {name}` shows its status"
            ));
        };
        let backup_name = status
            .backup_name
            .or_else(|| restore.spec.backup_name.clone())
            .unwrap_or_default();
        let backups: Api<Backup> = Api::namespaced(kube.client.clone(), &kube.namespace);
        let backup = backups
            .get(&backup_name)
            .await
            .map_err(|e| kube.error(e, "backup", Some(&backup_name)))?;
        let (repo, location) = open_read_only(kube, &backup).await?;
        let found = tokio::task::spawn_blocking(move || -> Result<_> {
            let (id, snapshot) = repo
                .find_snapshot(&id)
                .with_context(|| format!("the record {id} of restore {name:?}"))?;
            let session =
                Locked::<ReadWork>::without_lock(&repo).load_index(&IndexSource::Memory, &())?;
            Ok((id, snapshot, session))
        })
        .await
        .context("reading the repository")??;
        let (id, snapshot, session) = found;
        Ok(BackupRecords {
            session,
            snapshot,
            id,
            location,
        })
    }

    /// Reads one file of the snapshot (`layout::files::LOG`, ...).
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let opts = RestoreOptions {
            subpath: Some(path.to_string()),
            ..RestoreOptions::default()
        };
        tokio::task::block_in_place(|| {
            restore::run(
                &self.session,
                &self.snapshot,
                RestoreTarget::Stream(&mut out),
                &opts,
                &Control::new(),
            )
        })
        .with_context(|| format!("reading {path} of snapshot {}", self.id.short()))?;
        Ok(out)
    }

    /// Reads and parses one JSON file of the snapshot.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let bytes = self.read(path)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{path} of snapshot {} is not valid", self.id.short()))
    }
}

/// The repository of the backup's location, opened as if the location were `ReadOnly` (never
/// created, never locked), and where it is, for messages.
async fn open_read_only(kube: &Kube, backup: &Backup) -> Result<(Arc<Repository>, String)> {
    let mut bsl = location_of(kube, backup).await?;
    let bsl_name = bsl.metadata.name.clone().unwrap_or_default();
    bsl.spec.access_mode = AccessMode::ReadOnly;
    let scratch = Scratch::new()?;
    let opened = stowage_kube::store::open(&kube.client, &bsl, &scratch.0)
        .await
        .map_err(|e| anyhow!("cannot open the repository of location {bsl_name:?}: {e}"))?;
    Ok((opened.repo, opened.describe))
}

fn find(
    repo: &Arc<Repository>,
    snapshot_id: Option<String>,
    uid: &str,
    name: &str,
) -> Result<(Id, Snapshot, Indexed<ReadWork>)> {
    let (id, snapshot) = match snapshot_id {
        Some(id) => repo
            .find_snapshot(&id)
            .with_context(|| format!("snapshot {id} of backup {name:?}"))?,
        None => layout::find_snapshot(repo, uid)?.ok_or_else(|| {
            anyhow!("the repository has no snapshot of backup {name:?} (UID {uid}) yet")
        })?,
    };
    let session = Locked::<ReadWork>::without_lock(repo).load_index(&IndexSource::Memory, &())?;
    Ok((id, snapshot, session))
}

/// A private directory for the location's CA bundle, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("stowage-k8s-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the scratch directory {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
