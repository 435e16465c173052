//! Cryptography: the master key set, blob ids, authenticated encryption of blobs and files, and
//! the password-based wrapping of master keys (in [`kdf`]).
//!
//! Every ciphertext is `nonce (12) || AES-256-GCM ciphertext || tag (16)` with a fresh random
//! nonce. The associated data binds each ciphertext to what it is (a blob of a given type and id,
//! an index file, a snapshot...), so nothing can be swapped for something else undetected.
//!
//! AES-256-GCM is `ring`'s (AES-NI/VAES with carry-less multiplication, ~9 GB/s per core on the
//! benchmark machine, against ~1 GB/s for the portable RustCrypto crate used before; the bytes
//! are the same, see `gcm_matches_a_published_test_vector`).

pub mod kdf;

use crate::error::{Classified, ErrorClass};
use crate::id::{BlobType, Id};
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use std::cell::RefCell;
use zeroize::Zeroize;

/// Bytes of nonce in front of every ciphertext.
pub const NONCE_LEN: usize = 12;
/// Bytes of authentication tag at the end of every ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object is longer than its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Errors of the crypto layer. Each names the object (`what`) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The authentication tag does not match: the key is not the one the object was sealed
    /// with, or the bytes changed. Within an opened repository (whose keys are known to be
    /// right) this is damage; a wrong password is reported as
    /// [`crate::repo::RepoError::WrongPassword`] instead.
    #[error("{0}: authentication failed (wrong key, or the data is corrupted)")]
    Mac(String),
    /// The object is shorter than a nonce and a tag.
    #[error("{0}: too short to be a sealed object")]
    TooShort(String),
    /// The object opened, but its content is not what it must be (bad encoding, a
    /// decompression failure, content that does not match its id).
    #[error("{what}: {msg}")]
    Invalid {
        /// The object.
        what: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A key file names a key derivation this program does not know (written by a newer
    /// version).
    #[error("unsupported key derivation {algorithm} version {version}")]
    UnsupportedKdf {
        /// The algorithm's name in the key file.
        algorithm: String,
        /// Its version.
        version: u32,
    },
    /// A key file's key derivation parameters are out of range or malformed.
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

impl Classified for CryptoError {
    fn class(&self) -> ErrorClass {
        match self {
            CryptoError::UnsupportedKdf { .. } => ErrorClass::Config,
            CryptoError::Mac(_)
            | CryptoError::TooShort(_)
            | CryptoError::Invalid { .. }
            | CryptoError::Kdf(_) => ErrorClass::Corruption,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            CryptoError::Mac(_) => "crypto.authentication_failed",
            CryptoError::TooShort(_) => "crypto.too_short",
            CryptoError::Invalid { .. } => "crypto.malformed",
            CryptoError::UnsupportedKdf { .. } => "crypto.unsupported_kdf",
            CryptoError::Kdf(_) => "crypto.bad_kdf_parameters",
        }
    }
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
    cipher: Cipher,
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
    /// Keys from their parts (generated at `init`, or unwrapped from a key file).
    pub fn new(encryption: [u8; 32], id_key: [u8; 32], chunker_seed: u64) -> Self {
        let cipher = Cipher::new(&encryption);
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
        self.cipher.seal(aad, plaintext)
    }

    /// Checks the tag and decrypts. `what` names the object in the error.
    pub fn open(&self, what: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.cipher.open(what, aad, sealed)
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
    /// The repository's `config` file.
    Config,
    /// An index file.
    Index,
    /// A snapshot file.
    Snapshot,
    /// The header at the end of a pack.
    PackHeader,
    /// A lock file.
    Lock,
}

impl FileAad {
    /// The associated data sealed with files of this kind, so one cannot be passed off as another.
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

/// An AES-256-GCM key, ready to seal and open `nonce || ciphertext || tag` objects.
#[derive(Clone)]
pub(crate) struct Cipher(LessSafeKey);

impl Cipher {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Cipher(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, key).expect("AES-256-GCM takes a 32-byte key"),
        ))
    }

    /// Encrypts `plaintext` with a fresh random nonce, binding `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&[0; NONCE_LEN]);
        out.extend_from_slice(plaintext);
        let tag = self.seal_in_place(aad, &mut out);
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Draws a nonce into `buf[..NONCE_LEN]` and encrypts `buf[NONCE_LEN..]` in place; the
    /// caller appends the returned tag.
    fn seal_in_place(&self, aad: &[u8], buf: &mut [u8]) -> Tag {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        self.seal_in_place_with_nonce(nonce, aad, &mut buf[NONCE_LEN..])
    }

    /// Encrypts `data` in place under `nonce`, which must never have been used with this key.
    fn seal_in_place_with_nonce(&self, nonce: [u8; NONCE_LEN], aad: &[u8], data: &mut [u8]) -> Tag {
        self.0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), data)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail")
    }

    /// Checks the tag and decrypts into a new buffer. `what` names the object in the error.
    pub(crate) fn open(
        &self,
        what: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(CryptoError::TooShort(what.to_string()));
        }
        let mut buf = sealed[NONCE_LEN..].to_vec();
        let n = self
            .open_in_place(aad, &sealed[..NONCE_LEN], &mut buf)
            .map_err(|_| CryptoError::Mac(what.to_string()))?
            .len();
        buf.truncate(n);
        Ok(buf)
    }

    /// Checks the tag at the end of `ct_and_tag` and decrypts the ciphertext in front of it in
    /// place; returns the plaintext (a prefix of `ct_and_tag`). Fails when the tag does not match
    /// (or `nonce` is not [`NONCE_LEN`] bytes, or `ct_and_tag` is shorter than a tag).
    fn open_in_place<'b>(
        &self,
        aad: &[u8],
        nonce: &[u8],
        ct_and_tag: &'b mut [u8],
    ) -> Result<&'b mut [u8], ring::error::Unspecified> {
        let nonce = Nonce::try_assume_unique_for_key(nonce)?;
        self.0.open_in_place(nonce, Aad::from(aad), ct_and_tag)
    }
}

/// How a blob's payload is stored inside its ciphertext: the first plaintext byte.
const PAYLOAD_RAW: u8 = 0;
const PAYLOAD_ZSTD: u8 = 1;

/// Largest plaintext a blob may have; bounds decompression of untrusted data.
pub const MAX_BLOB_LEN: usize = 128 << 20;

/// Bytes a sealed blob is longer than its plaintext when stored raw: the flag byte, the nonce
/// and the tag. A sealed blob is never longer than its plaintext plus this.
pub const BLOB_OVERHEAD: usize = 1 + SEAL_OVERHEAD;

/// Blobs at least this long are sampled before compression (see [`worth_compressing`]);
/// shorter ones are simply compressed.
const SAMPLE_MIN_BLOB: usize = 64 * 1024;
/// Bytes taken from each of [`SAMPLES`] evenly spaced places of a blob for the sample.
const SAMPLE_LEN: usize = 4 * 1024;
const SAMPLES: usize = 4;
/// zstd level used on the sample: the cheapest one that still finds what level 3 finds.
const SAMPLE_LEVEL: i32 = 1;

thread_local! {
    /// One compression context per thread and level, reused for every blob: creating a zstd
    /// context costs more than compressing a small blob.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static SAMPLER: RefCell<Option<SampleCompressor>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// The sample of a blob and the context that compresses it, kept per thread.
struct SampleCompressor {
    zstd: zstd::bulk::Compressor<'static>,
    sample: Vec<u8>,
    out: Vec<u8>,
}

/// Whether compressing `data` is worth trying: `false` when a sample of it (four 4 KiB pieces
/// from evenly spaced places) does not shrink by at least 3% at zstd level 1, which is what
/// random or already compressed data does. The answer depends only on `data`. Blobs shorter than
/// 64 KiB are always worth trying (the sample would cost as much as the attempt).
pub fn worth_compressing(data: &[u8]) -> bool {
    if data.len() < SAMPLE_MIN_BLOB {
        return true;
    }
    SAMPLER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match zstd::bulk::Compressor::new(SAMPLE_LEVEL) {
                Ok(zstd) => {
                    *slot = Some(SampleCompressor {
                        zstd,
                        sample: Vec::with_capacity(SAMPLES * SAMPLE_LEN),
                        out: Vec::with_capacity(zstd::zstd_safe::compress_bound(
                            SAMPLES * SAMPLE_LEN,
                        )),
                    })
                }
                // No context (out of memory): let the real attempt decide.
                Err(_) => return true,
            }
        }
        let s = slot.as_mut().expect("set above");
        s.sample.clear();
        let step = (data.len() - SAMPLE_LEN) / (SAMPLES - 1);
        for i in 0..SAMPLES {
            s.sample
                .extend_from_slice(&data[i * step..i * step + SAMPLE_LEN]);
        }
        s.out.clear();
        match s.zstd.compress_to_buffer(&s.sample, &mut s.out) {
            // Saves at least 3%.
            Ok(n) => n * 100 <= s.sample.len() * 97,
            Err(_) => true,
        }
    })
}

/// Compresses `data` at `level` onto the end of `out` if that saves at least 1/32 of its
/// length, and returns whether it did; `out` is left as it was otherwise. Writes into `out`'s
/// spare capacity, so the caller reserves `data.len()` bytes first.
fn compress_onto(data: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    // zstd fails when the frame does not fit below the limit, which is also our answer.
    let limit = data.len() - data.len() / 32;
    if out.capacity() - start < limit {
        return false;
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut() {
            Some((l, c)) if *l != level => {
                if c.set_compression_level(level).is_err() {
                    *slot = None;
                    return false;
                }
                *l = level;
            }
            Some(_) => {}
            None => match zstd::bulk::Compressor::new(level) {
                Ok(c) => *slot = Some((level, c)),
                Err(_) => return false,
            },
        }
        let (_, c) = slot.as_mut().expect("set above");
        let mut cursor = std::io::Cursor::new(&mut *out);
        cursor.set_position(start as u64);
        match c.compress_to_buffer(data, &mut cursor) {
            Ok(n) if n < limit => true,
            _ => {
                out.truncate(start);
                false
            }
        }
    })
}

/// Compresses (when it pays) and encrypts a blob. Returns the sealed bytes:
/// `nonce || AES-GCM(flag || payload) || tag`, where `flag` 0 = raw, 1 = zstd frame.
///
/// `level` 0 disables compression. Data that [`worth_compressing`] rejects, or that does not
/// shrink by at least 1/32, is stored raw, so incompressible data costs little and needs no
/// decompression on restore.
pub fn seal_blob(
    keys: &MasterKeys,
    blob_type: BlobType,
    id: &Id,
    data: &[u8],
    level: i32,
) -> Vec<u8> {
    let mut out = Vec::new();
    seal_blob_into(keys, blob_type, id, data, level, &mut out);
    out
}

/// Like [`seal_blob`], appending the sealed blob to `out` (a buffer reused from blob to blob)
/// and returning its length. `out` grows by at most the raw form's length (reserved exactly), and
/// what is appended is ciphertext only.
pub fn seal_blob_into(
    keys: &MasterKeys,
    blob_type: BlobType,
    id: &Id,
    data: &[u8],
    level: i32,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    out.reserve_exact(data.len() + BLOB_OVERHEAD);
    out.extend_from_slice(&[0; NONCE_LEN]);
    out.push(PAYLOAD_ZSTD);
    let compressed = level != 0
        && data.len() >= 64
        && worth_compressing(data)
        && compress_onto(data, level, out);
    if !compressed {
        out[start + NONCE_LEN] = PAYLOAD_RAW;
        out.extend_from_slice(data);
    }
    let tag = keys
        .cipher
        .seal_in_place(&blob_aad(blob_type, id), &mut out[start..]);
    out.extend_from_slice(tag.as_ref());
    out.len() - start
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
    let mut buf = sealed.to_vec();
    let mut inflated = Vec::new();
    match open_blob_parts(keys, blob_type, id, &mut buf, raw_len, &mut inflated)? {
        Plaintext::Inflated => Ok(inflated),
        Plaintext::InPlace(range) => {
            buf.truncate(range.end);
            buf.drain(..range.start);
            Ok(buf)
        }
    }
}

/// [`open_blob`] without allocating: `sealed` is decrypted in place, and a compressed payload is
/// inflated into `scratch`, a buffer reused from blob to blob (it grows to the largest blob
/// opened, at most [`MAX_BLOB_LEN`]). Returns the verified plaintext, which lies in `sealed` or in
/// `scratch`. On error, the contents of both are unspecified.
pub fn open_blob_in_place<'a>(
    keys: &MasterKeys,
    blob_type: BlobType,
    id: &Id,
    sealed: &'a mut [u8],
    raw_len: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], CryptoError> {
    Ok(
        match open_blob_parts(keys, blob_type, id, sealed, raw_len, scratch)? {
            Plaintext::InPlace(range) => &sealed[range],
            Plaintext::Inflated => scratch,
        },
    )
}

/// Where [`open_blob_parts`] left a blob's plaintext.
enum Plaintext {
    /// This range of the sealed buffer (a blob stored raw).
    InPlace(std::ops::Range<usize>),
    /// The whole scratch buffer (a compressed blob).
    Inflated,
}

fn open_blob_parts(
    keys: &MasterKeys,
    blob_type: BlobType,
    id: &Id,
    sealed: &mut [u8],
    raw_len: usize,
    scratch: &mut Vec<u8>,
) -> Result<Plaintext, CryptoError> {
    let what = || format!("{blob_type} blob {}", id.short());
    let invalid = |msg: String| CryptoError::Invalid { what: what(), msg };
    if raw_len > MAX_BLOB_LEN {
        return Err(invalid(format!(
            "claims {raw_len} bytes, more than the limit of {MAX_BLOB_LEN}"
        )));
    }
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::TooShort(what()));
    }
    let (nonce, ct_and_tag) = sealed.split_at_mut(NONCE_LEN);
    let plain = keys
        .cipher
        .open_in_place(&blob_aad(blob_type, id), nonce, ct_and_tag)
        .map_err(|_| CryptoError::Mac(what()))?;
    let (data, at) = match plain.split_first() {
        Some((&PAYLOAD_RAW, payload)) => (
            payload,
            Plaintext::InPlace(NONCE_LEN + 1..NONCE_LEN + 1 + payload.len()),
        ),
        Some((&PAYLOAD_ZSTD, frame)) => {
            // The capacity bounds the output: a frame that inflates past it is an error, one
            // that inflates past raw_len but not past it fails the length check below.
            scratch.clear();
            scratch.reserve(raw_len);
            decompress_into(frame, scratch)
                .map_err(|e| invalid(format!("decompression failed: {e}")))?;
            (&scratch[..], Plaintext::Inflated)
        }
        _ => return Err(invalid("unknown payload encoding".into())),
    };
    if data.len() != raw_len {
        return Err(invalid(format!(
            "has {} bytes, the index says {raw_len}",
            data.len()
        )));
    }
    if keys.blob_id(data) != *id {
        return Err(invalid("content does not match its id".into()));
    }
    Ok(at)
}

/// Decompresses one zstd frame into `out`'s capacity (never allocating), with this thread's
/// reused context.
fn decompress_into(frame: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        let d = slot.as_mut().expect("set above");
        let r = d.decompress_to_buffer(frame, out);
        if r.is_err() {
            // A failed frame can leave the context mid-frame: start the next one afresh.
            *slot = None;
        }
        r
    })
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
    fn gcm_matches_a_published_test_vector() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16 (AES-256, 96-bit
        // IV, with associated data): the format depends on standard AES-256-GCM bytes.
        let key: [u8; 32] =
            hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
                .unwrap()
                .try_into()
                .unwrap();
        let iv = hex::decode("cafebabefacedbaddecaf888").unwrap();
        let plain = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let sealed = hex::decode(
            "cafebabefacedbaddecaf888\
             522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b",
        )
        .unwrap();
        let c = Cipher::new(&key);
        assert_eq!(c.open("x", &aad, &sealed).unwrap(), plain);
        let mut buf = plain.clone();
        let tag = c.seal_in_place_with_nonce(iv.try_into().unwrap(), &aad, &mut buf);
        assert_eq!([&sealed[..NONCE_LEN], &buf, tag.as_ref()].concat(), sealed);
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

    fn random_bytes(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rand::rngs::OsRng.fill_bytes(&mut v);
        v
    }

    #[test]
    fn large_incompressible_blob_is_stored_raw_and_round_trips() {
        let k = MasterKeys::generate();
        let data = random_bytes(1 << 20);
        let id = k.blob_id(&data);
        let s = seal_blob(&k, BlobType::Data, &id, &data, 3);
        assert_eq!(s.len(), data.len() + BLOB_OVERHEAD);
        assert_eq!(
            open_blob(&k, BlobType::Data, &id, &s, data.len()).unwrap(),
            data
        );
    }

    #[test]
    fn compressibility_guess_is_deterministic_and_tells_text_from_random() {
        let text = b"INFO request completed in 13 ms for user 42\n".repeat(5000);
        let random = random_bytes(300_000);
        for _ in 0..2 {
            assert!(worth_compressing(&text));
            assert!(!worth_compressing(&random));
        }
        // Short blobs are always tried.
        assert!(worth_compressing(&random[..SAMPLE_MIN_BLOB - 1]));
    }

    #[test]
    fn blob_half_random_half_text_is_still_compressed() {
        let k = MasterKeys::generate();
        let mut data = random_bytes(512 * 1024);
        data.extend_from_slice(&b"the backup of the snapshot and the index\n".repeat(12_000));
        let id = k.blob_id(&data);
        let s = seal_blob(&k, BlobType::Data, &id, &data, 3);
        assert!(s.len() < data.len() * 3 / 4);
        assert_eq!(
            open_blob(&k, BlobType::Data, &id, &s, data.len()).unwrap(),
            data
        );
    }

    #[test]
    fn seal_blob_into_appends_and_reuses_the_buffer() {
        let k = MasterKeys::generate();
        let text = b"hello hello hello hello ".repeat(4000);
        let random = random_bytes(100_000);
        let mut out = b"prefix".to_vec();
        let mut spans = Vec::new();
        for data in [&text[..], &random[..], &text[..], b"x"] {
            let id = k.blob_id(data);
            let start = out.len();
            let n = seal_blob_into(&k, BlobType::Data, &id, data, 3, &mut out);
            assert_eq!(out.len(), start + n);
            spans.push((id, start, n, data));
        }
        assert_eq!(&out[..6], b"prefix");
        for (id, start, n, data) in spans {
            let sealed = &out[start..start + n];
            assert_eq!(
                open_blob(&k, BlobType::Data, &id, sealed, data.len()).unwrap(),
                data
            );
        }
    }

    #[test]
    fn compressed_blob_inflating_past_its_claimed_length_is_rejected() {
        let k = MasterKeys::generate();
        let text = b"hello hello hello hello ".repeat(4000);
        let id = k.blob_id(&text);
        let s = seal_blob(&k, BlobType::Data, &id, &text, 3);
        assert!(matches!(
            open_blob(&k, BlobType::Data, &id, &s, text.len() - 1),
            Err(CryptoError::Invalid { .. })
        ));
        // The context is still good for the next blob.
        assert_eq!(
            open_blob(&k, BlobType::Data, &id, &s, text.len()).unwrap(),
            text
        );
    }

    #[test]
    fn blobs_open_in_place_with_one_scratch_buffer() {
        let k = MasterKeys::generate();
        let text = b"hello hello hello hello ".repeat(4000);
        let random = random_bytes(100_000);
        let small_text = b"again and again and again ".repeat(100);
        let mut scratch = Vec::new();
        for (data, compressed) in [
            (&text[..], true),
            (&random[..], false),
            (&small_text[..], true),
            (&b""[..], false),
        ] {
            let id = k.blob_id(data);
            let mut sealed = seal_blob(&k, BlobType::Data, &id, data, 3);
            let sealed_at = sealed.as_ptr_range();
            let plain = open_blob_in_place(
                &k,
                BlobType::Data,
                &id,
                &mut sealed,
                data.len(),
                &mut scratch,
            )
            .unwrap();
            assert_eq!(plain, data);
            // Raw blobs are read where they were decrypted, compressed ones from the scratch.
            assert_eq!(sealed_at.contains(&plain.as_ptr()), !compressed);
        }
        assert!(scratch.capacity() >= text.len());
    }

    #[test]
    fn compressed_blob_inflating_past_its_length_is_rejected_whatever_the_scratch_holds() {
        let k = MasterKeys::generate();
        let text = b"hello hello hello hello ".repeat(4000);
        let id = k.blob_id(&text);
        let sealed = seal_blob(&k, BlobType::Data, &id, &text, 3);
        let mut scratch = Vec::with_capacity(10 * text.len());
        let open = |sealed: &[u8], raw_len: usize, scratch: &mut Vec<u8>| {
            let mut copy = sealed.to_vec();
            open_blob_in_place(&k, BlobType::Data, &id, &mut copy, raw_len, scratch)
                .map(<[u8]>::to_vec)
        };
        assert!(matches!(
            open(&sealed, text.len() - 1, &mut scratch),
            Err(CryptoError::Invalid { .. })
        ));
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN + 3] ^= 1;
        assert!(matches!(
            open(&tampered, text.len(), &mut scratch),
            Err(CryptoError::Mac(_))
        ));
        assert!(matches!(
            open(&sealed[..SEAL_OVERHEAD - 1], text.len(), &mut scratch),
            Err(CryptoError::TooShort(_))
        ));
        assert_eq!(open(&sealed, text.len(), &mut scratch).unwrap(), text);
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
