//! The engine side of a work item: one volume backed up into, or restored from, a repository.
//! These run on a blocking thread and reach the engine through its session API only.
//!
//! A file-system volume becomes a snapshot of one directory (its root entry is the mount
//! directory's name, so a restore takes that entry as its subpath); a block volume becomes a
//! snapshot of one file, the device's bytes, read with the device's holes skipped. Both are
//! tagged so they are found again: by the work item (an agent restarted after writing the
//! snapshot adopts it instead of writing another), by the claim (the next backup's parent), and
//! by the Backup.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stowage_core::backup::{self, BackupError, BackupOptions, BackupSource, ParentChoice};
use stowage_core::error::{Classified, ErrorClass};
use stowage_core::id::Id;
use stowage_core::progress::Control;
use stowage_core::repo::session::{BackupWork, IndexSource, ReadWork};
use stowage_core::repo::{RepoError, Repository};
use stowage_core::restore::{self, RestoreError, RestoreOptions, RestoreTarget};

use crate::api::VolumeMode;
use crate::layout;

/// Tag prefix naming the VolumeBackup (its UID) that wrote a volume snapshot.
pub const TAG_WORK_ITEM: &str = "stowage.dev/volume-backup-uid=";
/// Tag prefix holding the claim's UID: the latest snapshot carrying it is the next parent.
pub const TAG_PVC_UID: &str = "stowage.dev/pvc-uid=";
/// Tag prefix naming the claim, `<namespace>/<name>`.
pub const TAG_PVC: &str = "stowage.dev/pvc=";
/// Tag prefix of the volume mode (`Filesystem`, `Block`).
pub const TAG_MODE: &str = "stowage.dev/volume-mode=";
/// The file name a block volume's bytes are stored under.
pub const DEVICE_FILE: &str = "device";

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Canceled on request; for a backup nothing was recorded.
    #[error("canceled")]
    Canceled,
    /// Failed in a way worth another attempt (the store, a lock held by a prune).
    #[error("{0}")]
    Transient(String),
    /// Failed for good; the message says why.
    #[error("{0}")]
    Fatal(String),
}

impl JobError {
    fn classify(class: ErrorClass, message: String) -> JobError {
        match class {
            ErrorClass::Canceled => JobError::Canceled,
            ErrorClass::Transient => JobError::Transient(message),
            _ => JobError::Fatal(message),
        }
    }
}

impl From<RepoError> for JobError {
    fn from(e: RepoError) -> Self {
        JobError::classify(e.class(), format!("repository: {e}"))
    }
}

impl From<BackupError> for JobError {
    fn from(e: BackupError) -> Self {
        JobError::classify(e.class(), format!("backup: {e}"))
    }
}

impl From<RestoreError> for JobError {
    fn from(e: RestoreError) -> Self {
        JobError::classify(e.class(), format!("restore: {e}"))
    }
}

/// Where the index comes from: the on-disk cache (bounded memory) or memory.
fn index_source(cache: &Option<PathBuf>) -> IndexSource {
    match cache {
        Some(dir) => IndexSource::Cache(dir.clone()),
        None => IndexSource::Memory,
    }
}

/// One volume to back up.
pub struct BackupJob {
    /// The repository.
    pub repo: Arc<Repository>,
    /// The volume's directory or device, resolved inside the kubelet root.
    pub path: PathBuf,
    /// File system or block.
    pub mode: VolumeMode,
    /// The work item's UID (see [`TAG_WORK_ITEM`]).
    pub work_uid: String,
    /// The claim's UID (see [`TAG_PVC_UID`]).
    pub pvc_uid: String,
    /// Every tag to record, the agent's own included.
    pub tags: Vec<String>,
    /// Recorded as the snapshot's host.
    pub hostname: String,
    /// The parent the work item names; `None`: the latest snapshot of the claim in this mode.
    pub parent: Option<String>,
    /// The index cache directory.
    pub cache: Option<PathBuf>,
}

/// What a finished backup job wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupDone {
    /// The snapshot.
    pub snapshot_id: String,
    /// Its parent, if one was used.
    pub parent: Option<String>,
    /// Bytes added after deduplication and compression.
    pub bytes_added: u64,
    /// Bytes of the volume's files (or the device).
    pub bytes: u64,
    /// Files in the snapshot.
    pub files: u64,
    /// Entries that could not be read.
    pub warnings: Vec<String>,
    /// Whether the snapshot was found already written (by an earlier run of the same item).
    pub adopted: bool,
}

/// The latest snapshot of the claim in this mode, to be the next one's parent.
fn latest_of_claim(
    repo: &Repository,
    pvc_uid: &str,
    mode: VolumeMode,
) -> Result<Option<Id>, RepoError> {
    let claim = format!("{TAG_PVC_UID}{pvc_uid}");
    let mode = format!("{TAG_MODE}{mode}");
    Ok(repo
        .list_snapshots()?
        .into_iter()
        .filter(|(_, s)| s.tags.contains(&claim) && s.tags.contains(&mode) && !s.incomplete)
        .max_by_key(|(_, s)| s.time)
        .map(|(id, _)| id))
}

/// Backs the volume up, or adopts the snapshot an earlier run of the same item wrote.
pub fn back_up(job: &BackupJob, control: &Control<'_>) -> Result<BackupDone, JobError> {
    if let Some((id, snap)) =
        layout::find_tagged(&job.repo, &format!("{TAG_WORK_ITEM}{}", job.work_uid))?
    {
        return Ok(BackupDone {
            snapshot_id: id.to_hex(),
            parent: snap.parent.map(|p| p.to_hex()),
            bytes_added: snap.summary.bytes_added_stored,
            bytes: snap.summary.total_bytes,
            files: snap.summary.total_files,
            warnings: Vec::new(),
            adopted: true,
        });
    }
    let parent = match &job.parent {
        Some(p) => match p.parse::<Id>() {
            Ok(id) => ParentChoice::Id(id),
            Err(_) => {
                return Err(JobError::Fatal(format!(
                    "parent snapshot {p:?} is not an id"
                )))
            }
        },
        None => match latest_of_claim(&job.repo, &job.pvc_uid, job.mode)? {
            Some(id) => ParentChoice::Id(id),
            None => ParentChoice::None,
        },
    };
    let session = job
        .repo
        .lock::<BackupWork>()?
        .load_index(&index_source(&job.cache), &())?;
    let opts = BackupOptions {
        tags: job.tags.clone(),
        hostname: Some(job.hostname.clone()),
        one_file_system: true,
        parent,
        ..BackupOptions::default()
    };
    let source = match job.mode {
        VolumeMode::Filesystem => BackupSource::Paths(vec![job.path.clone()]),
        VolumeMode::Block => BackupSource::Device {
            path: job.path.clone(),
            name: Some(DEVICE_FILE.into()),
        },
    };
    let report = backup::run(&session, source, &opts, control);
    session.finish();
    let report = report?;
    let s = &report.snapshot.summary;
    Ok(BackupDone {
        snapshot_id: report.snapshot_id.to_hex(),
        parent: report.parent.map(|p| p.to_hex()),
        bytes_added: s.bytes_added_stored,
        bytes: s.total_bytes,
        files: s.total_files,
        warnings: report.warnings.iter().map(|w| w.to_string()).collect(),
        adopted: false,
    })
}

/// One volume to restore.
pub struct RestoreJob {
    /// The repository.
    pub repo: Arc<Repository>,
    /// The volume snapshot.
    pub snapshot_id: String,
    /// The helper pod's mount directory, or the device, resolved inside the kubelet root.
    pub path: PathBuf,
    /// File system or block: must be the snapshot's.
    pub mode: VolumeMode,
    /// The index cache directory.
    pub cache: Option<PathBuf>,
    /// Whether the repository is read-only (no lock can be written).
    pub read_only: bool,
}

/// What a finished restore job wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreDone {
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files read back and found equal to the snapshot.
    pub verified_files: u64,
    /// Entries that could not be restored.
    pub warnings: Vec<String>,
}

/// Writes the snapshot into the volume (replacing what is in the way, so a run interrupted
/// half-way can be run again) and reads every file back against the snapshot.
pub fn restore(job: &RestoreJob, control: &Control<'_>) -> Result<RestoreDone, JobError> {
    let id: Id = job
        .snapshot_id
        .parse()
        .map_err(|_| JobError::Fatal(format!("{:?} is not a snapshot id", job.snapshot_id)))?;
    let snapshot = job.repo.read_snapshot(&id)?;
    let recorded = snapshot
        .tags
        .iter()
        .find_map(|t| t.strip_prefix(TAG_MODE))
        .unwrap_or("Filesystem");
    if recorded != job.mode.to_string() {
        return Err(JobError::Fatal(format!(
            "snapshot {} holds a {recorded} volume; the claim is {}",
            id.short(),
            job.mode
        )));
    }
    let locked = if job.read_only {
        stowage_core::repo::session::Locked::<ReadWork>::without_lock(&job.repo)
    } else {
        job.repo.lock::<ReadWork>()?
    };
    let session = locked.load_index(&index_source(&job.cache), &())?;
    let (target, subpath) = match job.mode {
        VolumeMode::Filesystem => (
            RestoreTarget::Directory(job.path.clone()),
            Some(root_entry(&snapshot.paths)?),
        ),
        VolumeMode::Block => (RestoreTarget::InPlace(job.path.clone()), None),
    };
    let opts = RestoreOptions {
        subpath,
        overwrite: true,
        verify: true,
        ..RestoreOptions::default()
    };
    let report = restore::run(&session, &snapshot, target, &opts, control);
    session.finish();
    let report = report?;
    Ok(RestoreDone {
        files: report.files,
        bytes: report.bytes,
        verified_files: report.verified_files,
        warnings: report.warnings.iter().map(|w| w.to_string()).collect(),
    })
}

/// The name of a file-system volume snapshot's one root entry: the last component of the one
/// path it was made of.
fn root_entry(paths: &[String]) -> Result<String, JobError> {
    let [path] = paths else {
        return Err(JobError::Fatal(format!(
            "a volume snapshot has one path; this one has {}",
            paths.len()
        )));
    };
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| JobError::Fatal(format!("the snapshot's path {path:?} has no name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_entry_is_the_last_component_of_the_one_path() {
        assert_eq!(
            root_entry(&["/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount".into()])
                .unwrap(),
            "mount"
        );
        assert!(root_entry(&[]).is_err());
        assert!(root_entry(&["/a".into(), "/b".into()]).is_err());
        assert!(root_entry(&["/".into()]).is_err());
    }
}
