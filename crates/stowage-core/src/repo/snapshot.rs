//! Snapshots (`snapshots/<id>`): sealed JSON naming the root tree and describing the backup.

use super::error::{RepoError, Result};
use crate::crypto::{FileAad, MasterKeys};
use crate::id::Id;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Largest snapshot file accepted.
pub const MAX_SNAPSHOT_LEN: usize = 16 << 20;

/// What a backup did, recorded in its snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose content or metadata changed since the parent.
    pub files_changed: u64,
    /// Files unchanged since the parent.
    pub files_unchanged: u64,
    /// Directories not in the parent snapshot.
    pub dirs_new: u64,
    /// Directories that changed since the parent.
    pub dirs_changed: u64,
    /// Directories unchanged since the parent.
    pub dirs_unchanged: u64,
    /// Bytes of file content read from the source.
    pub bytes_read: u64,
    /// Plaintext bytes of the blobs that were new to the repository.
    pub bytes_added: u64,
    /// Bytes those blobs take in packs (compressed and encrypted).
    pub bytes_added_stored: u64,
    /// Blobs that were new to the repository.
    pub blobs_added: u64,
    /// Total size of the files in the snapshot.
    pub total_bytes: u64,
    /// Number of files in the snapshot.
    pub total_files: u64,
    /// Entries that could not be read and are missing from the snapshot.
    pub errors: u64,
    /// How long the backup took.
    pub duration_secs: f64,
}

/// One backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the backup started.
    pub time: DateTime<Utc>,
    /// The host it ran on.
    pub hostname: String,
    /// The user it ran as.
    pub username: String,
    /// The paths given to `backup`, absolute.
    pub paths: Vec<String>,
    #[serde(default)]
    /// Tags given to the backup.
    pub tags: Vec<String>,
    /// The root tree.
    pub tree: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The snapshot the backup compared against, if any.
    pub parent: Option<Id>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// The exclude patterns the backup used.
    pub excludes: Vec<String>,
    /// True if some entries could not be read.
    #[serde(default)]
    pub incomplete: bool,
    /// The program that wrote it, e.g. "stowage 0.1.0".
    pub program: String,
    /// What the backup did.
    pub summary: SnapshotSummary,
}

impl Snapshot {
    /// The sealed bytes of the snapshot file.
    pub fn encode(&self, keys: &MasterKeys) -> Vec<u8> {
        keys.seal_file(
            FileAad::Snapshot,
            &serde_json::to_vec(self).expect("snapshots serialize"),
        )
    }

    /// Opens and parses the snapshot file `name`.
    pub fn decode(keys: &MasterKeys, name: &str, sealed: &[u8]) -> Result<Snapshot> {
        let what = || format!("snapshot {}", crate::util::short_name(name));
        if sealed.len() > MAX_SNAPSHOT_LEN {
            return Err(RepoError::TooLarge {
                what: what(),
                size: sealed.len() as u64,
                limit: MAX_SNAPSHOT_LEN as u64,
            });
        }
        let plain = keys.open_file(FileAad::Snapshot, &what(), sealed)?;
        Self::decode_plaintext(name, &plain)
    }

    /// Parses an opened snapshot (`name` is for messages).
    pub fn decode_plaintext(name: &str, plain: &[u8]) -> Result<Snapshot> {
        serde_json::from_slice(plain)
            .map_err(|e| RepoError::malformed(format!("snapshot {name}"), e))
    }

    /// Whether this snapshot is of the same host and paths (the default parent choice).
    pub fn same_source(&self, other: &Snapshot) -> bool {
        self.hostname == other.hostname && self.paths == other.paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trip() {
        let k = MasterKeys::generate();
        let s = Snapshot {
            time: Utc::now(),
            hostname: "h".into(),
            username: "u".into(),
            paths: vec!["/data".into()],
            tags: vec!["daily".into()],
            tree: Id::random(),
            parent: None,
            excludes: vec![],
            incomplete: false,
            program: "stowage test".into(),
            summary: SnapshotSummary::default(),
        };
        assert_eq!(Snapshot::decode(&k, "abc", &s.encode(&k)).unwrap(), s);
        assert!(Snapshot::decode(&MasterKeys::generate(), "abc", &s.encode(&k)).is_err());
    }
}
