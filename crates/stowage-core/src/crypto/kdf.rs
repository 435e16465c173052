//! Password-based wrapping of the master keys with Argon2id.

use super::{Cipher, CryptoError, MasterKeys};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Associated data of the wrapped master keys inside a key file.
const KEY_AAD: &[u8] = b"stowage key v1";

/// Argon2id parameters, stored in each key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Always "argon2id".
    pub algorithm: String,
    /// Argon2 version number (19 = 0x13).
    pub version: u32,
    /// Argon2 memory cost in KiB.
    pub memory_kib: u32,
    /// Argon2 passes over the memory.
    pub iterations: u32,
    /// Argon2 lanes.
    pub parallelism: u32,
    /// Base64 of the random salt (16 bytes when written by us).
    pub salt: String,
}

/// Bounds applied to parameters read from a key file, so a hostile file cannot make us allocate
/// without limit or spin for hours.
pub const MAX_MEMORY_KIB: u32 = 4 << 20;
/// Largest number of passes accepted from a key file.
pub const MAX_ITERATIONS: u32 = 64;
/// Largest number of lanes accepted from a key file.
pub const MAX_PARALLELISM: u32 = 16;
/// Lanes of new key files. The lanes are computed on separate threads, so on a machine with
/// that many cores opening a repository takes a fraction of the time for the same memory and
/// work an attacker must spend per guess (a machine with fewer cores computes them in turn).
pub const DEFAULT_PARALLELISM: u32 = 4;

impl KdfParams {
    /// Fresh parameters with a random salt and [`DEFAULT_PARALLELISM`] lanes. Default cost:
    /// 64 MiB, 3 passes (with the 4 lanes, the second recommended option of RFC 9106).
    pub fn new(memory_kib: u32, iterations: u32) -> Self {
        let salt: [u8; 16] = rand::random();
        KdfParams {
            algorithm: "argon2id".into(),
            version: 0x13,
            memory_kib,
            iterations,
            parallelism: DEFAULT_PARALLELISM.min(memory_kib / 8).max(1),
            salt: B64.encode(salt),
        }
    }

    /// Derives the 32-byte wrapping key from a password.
    pub fn derive(&self, password: &[u8]) -> Result<[u8; 32], CryptoError> {
        if self.algorithm != "argon2id" || self.version != 0x13 {
            return Err(CryptoError::UnsupportedKdf {
                algorithm: self.algorithm.clone(),
                version: self.version,
            });
        }
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations == 0
            || self.iterations > MAX_ITERATIONS
            || self.parallelism == 0
            || self.parallelism > MAX_PARALLELISM
        {
            return Err(CryptoError::Kdf(
                "key file has out-of-range Argon2 parameters".into(),
            ));
        }
        let salt = B64
            .decode(&self.salt)
            .map_err(|_| CryptoError::Kdf("key file salt is not base64".into()))?;
        if !(8..=64).contains(&salt.len()) {
            return Err(CryptoError::Kdf("key file salt has a bad length".into()));
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password, &salt, &mut out)
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        Ok(out)
    }
}

/// The plaintext inside a key file's `master` field.
#[derive(Serialize, Deserialize)]
struct MasterKeysJson {
    encryption: String,
    id: String,
    chunker_seed: u64,
}

/// Encrypts the master keys under a key derived from `password`.
pub fn wrap_master_keys(
    keys: &MasterKeys,
    params: &KdfParams,
    password: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut wrapping = params.derive(password)?;
    let cipher = Cipher::new(&wrapping);
    wrapping.zeroize();
    let mut json = serde_json::to_vec(&MasterKeysJson {
        encryption: B64.encode(keys.encryption),
        id: B64.encode(keys.id_key),
        chunker_seed: keys.chunker_seed,
    })
    .expect("serializing keys cannot fail");
    let sealed = cipher.seal(KEY_AAD, &json);
    json.zeroize();
    Ok(sealed)
}

/// Decrypts master keys wrapped by [`wrap_master_keys`]. A wrong password fails the MAC.
pub fn unwrap_master_keys(
    sealed: &[u8],
    params: &KdfParams,
    password: &[u8],
) -> Result<MasterKeys, CryptoError> {
    let mut wrapping = params.derive(password)?;
    let cipher = Cipher::new(&wrapping);
    wrapping.zeroize();
    let mut json = cipher.open("key file", KEY_AAD, sealed)?;
    let parsed: Result<MasterKeysJson, _> = serde_json::from_slice(&json);
    json.zeroize();
    let invalid = |msg: &str| CryptoError::Invalid {
        what: "key file".into(),
        msg: msg.into(),
    };
    let mut m = parsed.map_err(|_| invalid("master keys are malformed"))?;
    let mut enc = B64
        .decode(&m.encryption)
        .map_err(|_| invalid("bad encryption key"))?;
    let mut idk = B64.decode(&m.id).map_err(|_| invalid("bad id key"))?;
    m.encryption.zeroize();
    m.id.zeroize();
    let e: [u8; 32] = enc
        .as_slice()
        .try_into()
        .map_err(|_| invalid("encryption key must be 32 bytes"))?;
    let i: [u8; 32] = idk
        .as_slice()
        .try_into()
        .map_err(|_| invalid("id key must be 32 bytes"))?;
    enc.zeroize();
    idk.zeroize();
    Ok(MasterKeys::new(e, i, m.chunker_seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_with_right_and_wrong_password() {
        let keys = MasterKeys::generate();
        let params = KdfParams::new(64, 1);
        let w = wrap_master_keys(&keys, &params, b"pw").unwrap();
        let back = unwrap_master_keys(&w, &params, b"pw").unwrap();
        assert_eq!(back.fingerprint(), keys.fingerprint());
        assert!(matches!(
            unwrap_master_keys(&w, &params, b"wrong"),
            Err(CryptoError::Mac(_))
        ));
    }

    /// Known answers from an independent implementation (the reference C code, through
    /// Python's argon2-cffi `hash_secret_raw`): one lane, and four lanes computed in parallel.
    #[test]
    fn derivation_matches_the_reference_implementation() {
        let mut p = KdfParams::new(256, 2);
        p.salt = "AAECAwQFBgcICQoLDA0ODw==".into(); // bytes 0..16
        assert_eq!(p.parallelism, 4);
        assert_eq!(
            hex::encode(p.derive(b"correct horse battery staple").unwrap()),
            "5141949fd9243397d73a77b840cf2d718c142cd490d88e54a115ca0ac0dd9a0f"
        );
        p.parallelism = 1;
        assert_eq!(
            hex::encode(p.derive(b"correct horse battery staple").unwrap()),
            "7989cae79eab72e4e4f4124a6acde0796b3cb91920807721145cf29a5a1daaa6"
        );
    }

    #[test]
    fn hostile_parameters_are_refused() {
        let mut p = KdfParams::new(64, 1);
        p.memory_kib = u32::MAX;
        assert!(p.derive(b"x").is_err());
        let mut p = KdfParams::new(64, 1);
        p.iterations = 0;
        assert!(p.derive(b"x").is_err());
    }
}
