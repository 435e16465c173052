//! The repository `config` file: format version and parameters, readable without a password so
//! an unknown version is refused with a clear message, with the parameters sealed under the
//! master key so they cannot be tampered with.

use super::error::{RepoError, Result};
use crate::chunker::{ChunkerParams, LargeFileChunking};
use crate::crypto::{FileAad, MasterKeys};
use crate::id::Id;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The repository format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// zstd level of new repositories: level 2 stores the benchmark's data set 0.7% larger than
/// level 3 for 15% less backup CPU time (decompression costs the same).
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 2;
/// Largest `config` file accepted.
pub const MAX_CONFIG_LEN: usize = 64 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The parameters of a repository, fixed at `init`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// The repository format version (see `repo-format/`).
    pub format_version: u32,
    /// A random id, fixed at `init`: names the local cache.
    pub repository_id: Id,
    /// Fingerprint of the master keys ([`MasterKeys::fingerprint`]).
    pub master_key_fingerprint: Id,
    /// The parameters files are cut with.
    pub chunker: ChunkerParams,
    /// Finer chunks for large files; absent: every file is cut with `chunker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_files: Option<LargeFileChunking>,
    /// Target size of pack files in bytes.
    pub pack_size: u32,
    /// Default zstd level for new blobs (0 = no compression).
    pub compression_level: i32,
}

/// The stored form of `config`.
#[derive(Serialize, Deserialize)]
struct ConfigFile {
    format_version: u32,
    repository_id: Id,
    /// Base64 of the [`RepoConfig`] JSON sealed with [`FileAad::Config`].
    sealed: String,
}

impl RepoConfig {
    /// Serializes and seals the config for storage.
    pub fn encode(&self, keys: &MasterKeys) -> Vec<u8> {
        let inner = serde_json::to_vec(self).expect("config serializes");
        let file = ConfigFile {
            format_version: self.format_version,
            repository_id: self.repository_id,
            sealed: B64.encode(keys.seal_file(FileAad::Config, &inner)),
        };
        let mut out = serde_json::to_vec_pretty(&file).expect("config serializes");
        out.push(b'\n');
        out
    }

    /// Reads the unauthenticated outer part: just enough to refuse an unknown format version
    /// before asking for a password.
    pub fn peek_version(bytes: &[u8]) -> Result<u32> {
        if bytes.len() > MAX_CONFIG_LEN {
            return Err(RepoError::TooLarge {
                what: "config".into(),
                size: bytes.len() as u64,
                limit: MAX_CONFIG_LEN as u64,
            });
        }
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let v: Version =
            serde_json::from_slice(bytes).map_err(|e| RepoError::malformed("config", e))?;
        if v.format_version != FORMAT_VERSION {
            return Err(RepoError::UnsupportedVersion {
                found: v.format_version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(v.format_version)
    }

    /// Verifies and decodes the config with the master keys.
    pub fn decode(bytes: &[u8], keys: &MasterKeys) -> Result<RepoConfig> {
        Self::peek_version(bytes)?;
        let file: ConfigFile =
            serde_json::from_slice(bytes).map_err(|e| RepoError::malformed("config", e))?;
        let sealed = B64
            .decode(&file.sealed)
            .map_err(|e| RepoError::malformed("config", e))?;
        let inner = keys.open_file(FileAad::Config, "config", &sealed)?;
        let cfg: RepoConfig =
            serde_json::from_slice(&inner).map_err(|e| RepoError::malformed("config", e))?;
        if cfg.format_version != file.format_version || cfg.repository_id != file.repository_id {
            return Err(RepoError::malformed(
                "config",
                "outer and sealed fields disagree",
            ));
        }
        if cfg.master_key_fingerprint != keys.fingerprint() {
            return Err(RepoError::malformed(
                "config",
                "belongs to other master keys",
            ));
        }
        cfg.chunker
            .validate()
            .map_err(|e| RepoError::malformed("config", e))?;
        if let Some(large) = &cfg.large_files {
            large
                .chunker
                .validate()
                .map_err(|e| RepoError::malformed("config", format!("large files: {e}")))?;
        }
        if !(1 << 20..=1 << 30).contains(&cfg.pack_size) {
            return Err(RepoError::malformed(
                "config",
                format!("pack size {} out of range", cfg.pack_size),
            ));
        }
        if !(0..=22).contains(&cfg.compression_level) {
            return Err(RepoError::malformed(
                "config",
                "compression level out of range",
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(keys: &MasterKeys) -> RepoConfig {
        RepoConfig {
            format_version: FORMAT_VERSION,
            repository_id: Id::random(),
            master_key_fingerprint: keys.fingerprint(),
            chunker: ChunkerParams::default(),
            large_files: Some(LargeFileChunking::default()),
            pack_size: 16 << 20,
            compression_level: 3,
        }
    }

    #[test]
    fn round_trip() {
        let k = MasterKeys::generate();
        let c = sample(&k);
        assert_eq!(RepoConfig::decode(&c.encode(&k), &k).unwrap(), c);
    }

    #[test]
    fn unknown_version_is_refused_before_decryption() {
        let bytes = br#"{"format_version": 7, "repository_id": "00", "sealed": ""}"#;
        assert!(matches!(
            RepoConfig::peek_version(bytes),
            Err(RepoError::UnsupportedVersion { found: 7, .. })
        ));
    }

    #[test]
    fn other_keys_cannot_open_it() {
        let k = MasterKeys::generate();
        let c = sample(&k);
        assert!(RepoConfig::decode(&c.encode(&k), &MasterKeys::generate()).is_err());
    }

    #[test]
    fn large_file_chunking_is_optional() {
        let k = MasterKeys::generate();
        let mut c = sample(&k);
        c.large_files = None;
        let inner = serde_json::to_string(&c).unwrap();
        assert!(!inner.contains("large_files"), "{inner}");
        assert_eq!(RepoConfig::decode(&c.encode(&k), &k).unwrap(), c);
    }

    #[test]
    fn invalid_large_file_chunker_is_refused() {
        let k = MasterKeys::generate();
        let mut c = sample(&k);
        let mut large = LargeFileChunking::default();
        large.chunker.min_size = large.chunker.max_size + 1;
        c.large_files = Some(large);
        let err = RepoConfig::decode(&c.encode(&k), &k)
            .unwrap_err()
            .to_string();
        assert!(err.contains("large files"), "{err}");
    }
}
