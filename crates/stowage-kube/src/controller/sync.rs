//! Sync: the backups a location's repository holds become Backup objects in this cluster
//! (Velero's backup sync), so that a second cluster whose location points at the same
//! repository (usually `ReadOnly`) sees them and can restore them.
//!
//! For each Kubernetes backup snapshot whose Backup name has no object here, the snapshot's
//! `metadata/backup.json` is read and the Backup is created, with this location's name, the
//! annotation [`BACKUP_UID_ANNOTATION`] holding the UID its snapshot is tagged with, and its
//! final status. Synced objects whose snapshot is gone (forgotten) are removed; other
//! objects are never touched. Deleting a Backup object never deletes data: the next sync
//! brings it back.

use super::restores::BACKUP_UID_ANNOTATION;
use super::Context;
use crate::api::{labels, Backup, BackupStorageLocation};
use crate::layout::{self, files};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Api;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use stowage_core::repo::session::{IndexSource, Locked, ReadWork};
use stowage_core::repo::Repository;

/// The default sync period when a location does not set `backupSyncPeriod` (Velero's 1m).
pub const DEFAULT_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// A backup snapshot of the repository: its Backup's name and UID.
struct Found {
    name: String,
    uid: String,
    id: stowage_core::id::Id,
}

fn snapshots(repo: &Repository) -> Result<Vec<Found>, stowage_core::repo::RepoError> {
    let mut by_uid: BTreeMap<String, (chrono::DateTime<chrono::Utc>, Found)> = BTreeMap::new();
    for (id, s) in repo.list_snapshots()? {
        let tag = |prefix: &str| {
            s.tags
                .iter()
                .find_map(|t| t.strip_prefix(prefix))
                .map(str::to_string)
        };
        let (Some(name), Some(uid)) = (tag(layout::TAG_NAME), tag(layout::TAG_UID)) else {
            continue;
        };
        let newer = by_uid.get(&uid).is_none_or(|(t, _)| s.time > *t);
        if newer {
            by_uid.insert(uid.clone(), (s.time, Found { name, uid, id }));
        }
    }
    Ok(by_uid.into_values().map(|(_, f)| f).collect())
}

/// Reads the `metadata/backup.json` of each of `ids` (one index load for all of them); `None`
/// for a snapshot whose record cannot be read.
fn ended(repo: &Arc<Repository>, ids: &[stowage_core::id::Id]) -> Vec<Option<Backup>> {
    let Ok(session) = Locked::<ReadWork>::without_lock(repo).load_index(&IndexSource::Memory, &())
    else {
        return vec![None; ids.len()];
    };
    ids.iter()
        .map(|id| {
            let snapshot = repo.read_snapshot(id).ok()?;
            let bytes = layout::read_file(&session, &snapshot, files::BACKUP).ok()?;
            serde_json::from_slice(&bytes).ok()
        })
        .collect()
}

/// Syncs one location; gives how many objects it created and removed.
pub(super) async fn sync(
    ctx: &Context,
    bsl: &BackupStorageLocation,
    repo: Arc<Repository>,
) -> Result<(usize, usize), String> {
    let location = bsl.metadata.name.clone().unwrap_or_default();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &ctx.opts.namespace);
    let existing = api
        .list(&Default::default())
        .await
        .map_err(|e| crate::collect::describe(&e))?
        .items;
    let names: BTreeSet<String> = existing
        .iter()
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    let found = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || snapshots(&repo))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    // Names with no object, and synced objects whose status never got written (the sync
    // that made them stopped in between): both get the record's content.
    let statusless: BTreeSet<String> = existing
        .iter()
        .filter(|b| {
            b.status.as_ref().and_then(|s| s.phase).is_none()
                && b.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(BACKUP_UID_ANNOTATION))
        })
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    let wanted: Vec<&Found> = found
        .iter()
        .filter(|f| !names.contains(&f.name) || statusless.contains(&f.name))
        .collect();
    let records = {
        let repo = repo.clone();
        let ids: Vec<_> = wanted.iter().map(|f| f.id).collect();
        tokio::task::spawn_blocking(move || ended(&repo, &ids))
            .await
            .map_err(|e| e.to_string())?
    };
    let mut created = 0;
    for (f, record) in wanted.into_iter().zip(records) {
        let Some(mut b) = record else {
            tracing::warn!(location, backup = %f.name, "its snapshot has no readable backup.json; not synced");
            continue;
        };
        let mut status = b.status.take().unwrap_or_default();
        status.snapshot_id = Some(f.id.to_hex());
        let mut labels_map = b.metadata.labels.take().unwrap_or_default();
        labels_map.insert(labels::STORAGE_LOCATION.into(), location.clone());
        let mut annotations = BTreeMap::new();
        annotations.insert(BACKUP_UID_ANNOTATION.to_string(), f.uid.clone());
        b.metadata = ObjectMeta {
            name: Some(f.name.clone()),
            namespace: Some(ctx.opts.namespace.clone()),
            labels: Some(labels_map),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        };
        b.spec.storage_location = Some(location.clone());
        if !statusless.contains(&f.name) {
            match api.create(&PostParams::default(), &b).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(crate::collect::describe(&e)),
            }
        }
        api.patch_status(
            &f.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .map_err(|e| crate::collect::describe(&e))?;
        created += 1;
        tracing::info!(location, backup = %f.name, "synced a backup from the repository");
    }
    // Synced objects of this location whose snapshot was forgotten.
    let live: BTreeSet<&str> = found.iter().map(|f| f.uid.as_str()).collect();
    let mut removed = 0;
    for b in &existing {
        let synced_uid = b
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(BACKUP_UID_ANNOTATION));
        let here = b.spec.storage_location.as_deref() == Some(location.as_str());
        if let (Some(uid), true) = (synced_uid, here) {
            if !live.contains(uid.as_str()) {
                let name = b.metadata.name.clone().unwrap_or_default();
                if api.delete(&name, &DeleteParams::default()).await.is_ok() {
                    removed += 1;
                    tracing::info!(location, backup = %name, "removed: its snapshot is gone from the repository");
                }
            }
        }
    }
    Ok((created, removed))
}
