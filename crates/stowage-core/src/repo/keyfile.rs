//! Key files under `keys/`: the master keys wrapped by one password each. Several key files mean
//! several passwords can open the same repository.

use super::error::{RepoError, Result};
use crate::crypto::kdf::{unwrap_master_keys, wrap_master_keys, KdfParams};
use crate::crypto::MasterKeys;
use base64::Engine;
use serde::{Deserialize, Serialize};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Largest key file accepted.
pub const MAX_KEY_FILE_LEN: usize = 64 * 1024;

/// The stored form of a key file (JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    /// Always 1.
    pub version: u32,
    /// RFC 3339 time of creation.
    pub created: String,
    /// Host that created the key.
    pub hostname: String,
    /// User that created the key.
    pub username: String,
    /// How the password is turned into the wrapping key.
    pub kdf: KdfParams,
    /// Base64 of the master keys sealed with the password-derived key.
    pub master: String,
}

impl KeyFile {
    /// Wraps `keys` under `password`.
    pub fn create(keys: &MasterKeys, password: &[u8], kdf: KdfParams) -> Result<KeyFile> {
        let sealed = wrap_master_keys(keys, &kdf, password)?;
        Ok(KeyFile {
            version: 1,
            created: chrono::Utc::now().to_rfc3339(),
            hostname: crate::util::hostname(),
            username: crate::util::username(),
            kdf,
            master: B64.encode(sealed),
        })
    }

    /// The file's bytes: pretty JSON and a newline.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("key file serializes");
        v.push(b'\n');
        v
    }

    /// Parses the key file `name` (its contents are not trusted: sizes and versions are checked).
    pub fn decode(name: &str, bytes: &[u8]) -> Result<KeyFile> {
        let what = || format!("key file {name}");
        if bytes.len() > MAX_KEY_FILE_LEN {
            return Err(RepoError::TooLarge {
                what: what(),
                size: bytes.len() as u64,
                limit: MAX_KEY_FILE_LEN as u64,
            });
        }
        let k: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| RepoError::malformed(what(), e))?;
        if k.version != 1 {
            return Err(RepoError::UnsupportedFileVersion {
                what: what(),
                version: k.version,
            });
        }
        Ok(k)
    }

    /// Unwraps the master keys; a wrong password fails with a MAC error.
    pub fn unlock(&self, password: &[u8]) -> Result<MasterKeys> {
        let sealed = B64
            .decode(&self.master)
            .map_err(|e| RepoError::malformed("key file", e))?;
        Ok(unwrap_master_keys(&sealed, &self.kdf, password)?)
    }
}
