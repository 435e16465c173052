//! Cryptography: the master key set, blob ids, authenticated encryption of blobs and files, and
//! the password-based wrapping of master keys (in [`kdf`]).
//!
//! Every ciphertext is `nonce (12) || AES-256-GCM ciphertext || tag (16)` with a fresh random
//! nonce. The associated data binds each ciphertext to what it is (a blob of a given type and id,
//! an index file, a snapshot...), so nothing can be swapped for something else undetected.

pub mod kdf;

use crate::id::{BlobType, Id};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroize;

/// Bytes of nonce in front of every ciphertext.
pub const NONCE_LEN: usize = 12;
/// Bytes of authentication tag at the end of every ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object is longer than its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Errors of the crypto layer.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{0}: authentication failed (wrong key, or the data is corrupted)")]
    Mac(String),
    #[error("{0}: too short to be a sealed object")]
    TooShort(String),
    #[error("{what}: {msg}")]
    Invalid { what: String, msg: String },
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// The secrets of one repository, generated once at `init` and stored only wrapped by passwords.
#[derive(Clone)]
pub struct MasterKeys {
    /// AES-256-GCM key for every blob and file.
    pub encryption: [u8; 32],
    /// BLAKE3 key for blob ids.
    pub id_key: [u8; 32],
    /// Seed of the chunker's gear table.
    pub chunker_seed: u64,
    cipher: Aes256Gcm,
}

impl Drop for MasterKeys {
    fn drop(&mut self) {
        self.encryption.zeroize();
        self.id_key.zeroize();
        self.chunker_seed.zeroize();
    }
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKeys(..)")
    }
}

impl MasterKeys {
    pub fn new(encryption: [u8; 32], id_key: [u8; 32], chunker_seed: u64) -> Self {
        let cipher = Aes256Gcm::new_from_slice(&encryption).expect("32-byte key");
        MasterKeys {
            encryption,
            id_key,
            chunker_seed,
            cipher,
        }
    }

    /// A fresh random key set.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut e = [0u8; 32];
        let mut i = [0u8; 32];
        rng.fill_bytes(&mut e);
        rng.fill_bytes(&mut i);
        // The chunker treats a zero seed as "no seed"; never pick it.
        let seed = rng.next_u64() | 1;
        MasterKeys::new(e, i, seed)
    }

    /// The id of a blob: BLAKE3 keyed with the repository's id key, so the store never learns
    /// plaintext hashes.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// A fingerprint of the key set that reveals nothing about it, recorded in the config.
    pub fn fingerprint(&self) -> Id {
        let mut h = blake3::Hasher::new_derive_key("stowage 2026 master key fingerprint v1");
        h.update(&self.encryption);
        h.update(&self.id_key);
        h.update(&self.chunker_seed.to_le_bytes());
        Id(*h.finalize().as_bytes())
    }

    /// Encrypts `plaintext` with a fresh nonce, binding `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.cipher, aad, plaintext)
    }

    /// Checks the tag and decrypts. `what` names the object in the error.
    pub fn open(&self, what: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.cipher, what, aad, sealed)
    }

    /// Seals a repository file (index, snapshot...) whose kind is bound as associated data.
    pub fn seal_file(&self, kind: FileAad, plaintext: &[u8]) -> Vec<u8> {
        self.seal(kind.aad(), plaintext)
    }

    /// Opens a repository file sealed by [`MasterKeys::seal_file`].
    pub fn open_file(
        &self,
        kind: FileAad,
        what: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.open(what, kind.aad(), sealed)
    }
}

/// The associated data that tells sealed repository files apart.
#[derive(Clone, Copy, Debug)]
pub enum FileAad {
    Config,
    Index,
    Snapshot,
    PackHeader,
    Lock,
}

impl FileAad {
    pub fn aad(self) -> &'static [u8] {
        match self {
            FileAad::Config => b"stowage config v1",
            FileAad::Index => b"stowage index v1",
            FileAad::Snapshot => b"stowage snapshot v1",
            FileAad::PackHeader => b"stowage pack header v1",
            FileAad::Lock => b"stowage lock v1",
        }
    }
}

/// Associated data of a blob: a label, the blob type code and the blob id (49 bytes).
pub fn blob_aad(blob_type: BlobType, id: &Id) -> [u8; 49] {
    let mut aad = [0u8; 49];
    aad[..16].copy_from_slice(b"stowage blob v1\0");
    aad[16] = blob_type.code();
    aad[17..].copy_from_slice(id.as_bytes());
    aad
}

pub(crate) fn seal_with(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

pub(crate) fn open_with(
    cipher: &Aes256Gcm,
    what: &str,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::TooShort(what.to_string()));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Mac(what.to_string()))
}

/// How a blob's payload is stored inside its ciphertext: the first plaintext byte.
const PAYLOAD_RAW: u8 = 0;
const PAYLOAD_ZSTD: u8 = 1;

/// Largest plaintext a blob may have; bounds decompression of untrusted data.
pub const MAX_BLOB_LEN: usize = 128 << 20;

/// Compresses (when it pays) and encrypts a blob. Returns the sealed bytes:
/// `nonce || AES-GCM(flag || payload) || tag`, where `flag` 0 = raw, 1 = zstd frame.
///
/// `level` 0 disables compression. Data that does not shrink by at least 1/32 is stored raw,
/// so incompressible data costs one failed attempt and no decompression on restore.
pub fn seal_blob(
    keys: &MasterKeys,
    blob_type: BlobType,
    id: &Id,
    data: &[u8],
    level: i32,
) -> Vec<u8> {
    let mut plain = Vec::with_capacity(data.len() + 1);
    plain.push(PAYLOAD_RAW);
    let mut compressed = false;
    if level != 0 && data.len() >= 64 {
        // zstd never writes more than the bound; cap at what we accept, else keep it raw.
        let limit = data.len() - data.len() / 32;
        plain.resize(1 + zstd::zstd_safe::compress_bound(data.len()), 0);
        if let Ok(n) = zstd::bulk::compress_to_buffer(data, &mut plain[1..], level) {
            if n < limit {
                plain.truncate(1 + n);
                plain[0] = PAYLOAD_ZSTD;
                compressed = true;
            }
        }
    }
    if !compressed {
        plain.clear();
        plain.push(PAYLOAD_RAW);
        plain.extend_from_slice(data);
    }
    let sealed = keys.seal(&blob_aad(blob_type, id), &plain);
    plain.zeroize();
    sealed
}

/// Verifies and decrypts a blob, decompresses it, and checks that its content hashes to `id`.
/// `raw_len` is the length the index promises; it bounds decompression.
pub fn open_blob(
    keys: &MasterKeys,
    blob_type: BlobType,
    id: &Id,
    sealed: &[u8],
    raw_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let what = || format!("{blob_type} blob {}", id.short());
    if raw_len > MAX_BLOB_LEN {
        return Err(CryptoError::Invalid {
            what: what(),
            msg: format!("claims {raw_len} bytes, more than the limit of {MAX_BLOB_LEN}"),
        });
    }
    let mut plain = keys.open(&what(), &blob_aad(blob_type, id), sealed)?;
    let data = match plain.first() {
        Some(&PAYLOAD_RAW) => {
            plain.remove(0);
            plain
        }
        Some(&PAYLOAD_ZSTD) => {
            // The capacity bounds the output: a frame that inflates past raw_len is an error.
            zstd::bulk::decompress(&plain[1..], raw_len).map_err(|e| CryptoError::Invalid {
                what: what(),
                msg: format!("decompression failed: {e}"),
            })?
        }
        _ => {
            return Err(CryptoError::Invalid {
                what: what(),
                msg: "unknown payload encoding".into(),
            })
        }
    };
    if data.len() != raw_len {
        return Err(CryptoError::Invalid {
            what: what(),
            msg: format!("has {} bytes, the index says {raw_len}", data.len()),
        });
    }
    if keys.blob_id(&data) != *id {
        return Err(CryptoError::Invalid {
            what: what(),
            msg: "content does not match its id".into(),
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let k = MasterKeys::generate();
        let s = k.seal(b"ad", b"secret");
        assert_eq!(s.len(), 6 + SEAL_OVERHEAD);
        assert_eq!(k.open("x", b"ad", &s).unwrap(), b"secret");
    }

    #[test]
    fn wrong_aad_fails_mac() {
        let k = MasterKeys::generate();
        let s = k.seal_file(FileAad::Index, b"data");
        assert!(matches!(
            k.open_file(FileAad::Snapshot, "x", &s),
            Err(CryptoError::Mac(_))
        ));
    }

    #[test]
    fn flipped_bit_fails_mac() {
        let k = MasterKeys::generate();
        let mut s = k.seal(b"", b"data");
        s[14] ^= 1;
        assert!(k.open("x", b"", &s).is_err());
    }

    #[test]
    fn blob_round_trip_compressible_and_not() {
        let k = MasterKeys::generate();
        let text = b"hello hello hello hello ".repeat(1000);
        let mut random = vec![0u8; 10_000];
        rand::rngs::OsRng.fill_bytes(&mut random);
        for data in [&text[..], &random[..], b"", b"x"] {
            let id = k.blob_id(data);
            let s = seal_blob(&k, BlobType::Data, &id, data, 3);
            assert_eq!(
                open_blob(&k, BlobType::Data, &id, &s, data.len()).unwrap(),
                data
            );
        }
        let id = k.blob_id(&text);
        assert!(seal_blob(&k, BlobType::Data, &id, &text, 3).len() < text.len() / 10);
        let id = k.blob_id(&random);
        assert_eq!(
            seal_blob(&k, BlobType::Data, &id, &random, 3).len(),
            random.len() + 1 + SEAL_OVERHEAD
        );
    }

    #[test]
    fn blob_type_is_bound() {
        let k = MasterKeys::generate();
        let id = k.blob_id(b"abc");
        let s = seal_blob(&k, BlobType::Data, &id, b"abc", 0);
        assert!(open_blob(&k, BlobType::Tree, &id, &s, 3).is_err());
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = MasterKeys::generate();
        let b = MasterKeys::generate();
        assert_ne!(a.blob_id(b"same"), b.blob_id(b"same"));
        assert_eq!(a.blob_id(b"same"), a.blob_id(b"same"));
    }
}
