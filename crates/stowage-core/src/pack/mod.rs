//! Pack files: many sealed blobs in one stored file, followed by an encrypted header listing
//! them, so the index can always be rebuilt from the packs alone.
//!
//! Layout: `blob_0 || ... || blob_n-1 || sealed header || header length (u32 LE) || "STWPACK1"`.
//! The header plaintext is `count (u32 LE)` then `count` entries of [`ENTRY_LEN`] bytes
//! (see [`PackBlob::encode`]). `repo-format/` documents every byte.

use crate::crypto::{CryptoError, FileAad, MasterKeys, SEAL_OVERHEAD};
use crate::error::{Classified, ErrorClass};
use crate::id::{BlobType, Id};

/// Magic bytes at the very end of every pack.
pub const PACK_MAGIC: &[u8; 8] = b"STWPACK1";
/// Length of the fixed trailer: header length (4) and magic (8).
pub const TRAILER_LEN: usize = 12;
/// Bytes of one blob entry in a pack header or index file.
pub const ENTRY_LEN: usize = 46;
/// Largest header accepted when reading (bounds allocation on untrusted input).
pub const MAX_HEADER_LEN: usize = 16 << 20;
/// How many bytes of a pack's tail to fetch in one request to read its header.
pub const TAIL_GUESS: u64 = 16 * 1024;

/// Errors decoding a pack.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The pack's tail or header does not decode.
    #[error("pack {pack}: {msg}")]
    Malformed {
        /// The pack's name.
        pack: String,
        /// What is wrong.
        msg: String,
    },
    /// The header (or a blob) does not open.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl Classified for PackError {
    fn class(&self) -> ErrorClass {
        match self {
            PackError::Malformed { .. } => ErrorClass::Corruption,
            PackError::Crypto(e) => e.class(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            PackError::Malformed { .. } => "pack.malformed",
            PackError::Crypto(e) => e.kind(),
        }
    }
}

/// Where one blob lives inside its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackBlob {
    /// Whether the blob is file data or a tree.
    pub blob_type: BlobType,
    /// The blob's id (keyed hash of its plaintext).
    pub id: Id,
    /// Offset of the sealed blob from the start of the pack.
    pub offset: u32,
    /// Length of the sealed blob (ciphertext with nonce and tag).
    pub length: u32,
    /// Length of the plaintext after decompression.
    pub raw_length: u32,
}

impl PackBlob {
    /// Encodes as `type (u8) || reserved 0 (u8) || id (32) || offset || length || raw_length`
    /// (each u32 little-endian): 46 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.blob_type.code());
        out.push(0);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_length.to_le_bytes());
    }

    /// Decodes one 46-byte entry.
    pub fn decode(b: &[u8]) -> Result<PackBlob, String> {
        if b.len() != ENTRY_LEN {
            return Err(format!("entry has {} bytes, expected {ENTRY_LEN}", b.len()));
        }
        let blob_type =
            BlobType::from_code(b[0]).ok_or_else(|| format!("unknown blob type {}", b[0]))?;
        if b[1] != 0 {
            return Err(format!("reserved byte is {}, expected 0", b[1]));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let e = PackBlob {
            blob_type,
            id: Id::from_slice(&b[2..34]).unwrap(),
            offset: u32_at(34),
            length: u32_at(38),
            raw_length: u32_at(42),
        };
        if (e.length as usize) < SEAL_OVERHEAD + 1 {
            return Err(format!(
                "blob {} is {} bytes, too short to be sealed",
                e.id.short(),
                e.length
            ));
        }
        if e.raw_length as usize > crate::crypto::MAX_BLOB_LEN {
            return Err(format!(
                "blob {} claims {} bytes",
                e.id.short(),
                e.raw_length
            ));
        }
        Ok(e)
    }

    /// Offset just past the sealed blob.
    pub fn end(&self) -> u64 {
        self.offset as u64 + self.length as u64
    }
}

/// Assembles one pack in memory.
pub struct PackWriter {
    data: Vec<u8>,
    blobs: Vec<PackBlob>,
}

impl Default for PackWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PackWriter {
    /// An empty pack.
    pub fn new() -> Self {
        Self::with_buffer(Vec::new())
    }

    /// A writer that assembles the pack in `buffer` (cleared first), so a caller can reuse the
    /// buffer of a pack it finished and stored, and size it once for a whole pack: the pack is
    /// copied only if it outgrows the buffer's capacity.
    pub fn with_buffer(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        PackWriter {
            data: buffer,
            blobs: Vec::new(),
        }
    }

    /// Bytes of header and trailer that [`PackWriter::finish`] appends to a pack of `blobs` blobs.
    pub fn header_len(blobs: usize) -> usize {
        4 + blobs * ENTRY_LEN + SEAL_OVERHEAD + TRAILER_LEN
    }

    /// Appends a sealed blob.
    pub fn add(&mut self, blob_type: BlobType, id: Id, sealed: &[u8], raw_length: usize) {
        let offset = u32::try_from(self.data.len()).expect("packs stay below 4 GiB");
        self.data.extend_from_slice(sealed);
        self.blobs.push(PackBlob {
            blob_type,
            id,
            offset,
            length: sealed.len() as u32,
            raw_length: raw_length as u32,
        });
    }

    /// Bytes of blob data so far.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// Number of blobs added.
    pub fn count(&self) -> usize {
        self.blobs.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Appends the sealed header and trailer. Returns the pack bytes, its id (BLAKE3 of the
    /// bytes) and its blobs.
    pub fn finish(mut self, keys: &MasterKeys) -> (Vec<u8>, Id, Vec<PackBlob>) {
        let mut header = Vec::with_capacity(4 + self.blobs.len() * ENTRY_LEN);
        header.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        for b in &self.blobs {
            b.encode(&mut header);
        }
        let sealed = keys.seal_file(FileAad::PackHeader, &header);
        self.data.reserve_exact(sealed.len() + TRAILER_LEN);
        self.data.extend_from_slice(&sealed);
        self.data
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        self.data.extend_from_slice(PACK_MAGIC);
        let id = Id::hash_of(&self.data);
        (self.data, id, self.blobs)
    }
}

/// Given the last bytes of a pack (`tail`, which ends at the end of the pack) and the pack's total
/// size, returns the offset and length of the sealed header, so a caller can fetch it if `tail` is
/// too short to contain it.
pub fn header_location(pack: &str, tail: &[u8], pack_size: u64) -> Result<(u64, usize), PackError> {
    let bad = |msg: String| PackError::Malformed {
        pack: pack.to_string(),
        msg,
    };
    if tail.len() < TRAILER_LEN || pack_size < TRAILER_LEN as u64 {
        return Err(bad(format!(
            "{pack_size} bytes is too short to be a pack (truncated?)"
        )));
    }
    let t = &tail[tail.len() - TRAILER_LEN..];
    if &t[4..] != PACK_MAGIC {
        return Err(bad("missing pack trailer (truncated or not a pack)".into()));
    }
    let len = u32::from_le_bytes(t[..4].try_into().unwrap()) as usize;
    if !(SEAL_OVERHEAD + 4..=MAX_HEADER_LEN).contains(&len)
        || len as u64 > pack_size - TRAILER_LEN as u64
    {
        return Err(bad(format!(
            "header length {len} is impossible for a pack of {pack_size} bytes"
        )));
    }
    Ok((pack_size - TRAILER_LEN as u64 - len as u64, len))
}

/// Verifies and decodes a sealed pack header. `header_offset` is where it starts in the pack:
/// every blob must lie before it.
pub fn decode_header(
    keys: &MasterKeys,
    pack: &str,
    sealed: &[u8],
    header_offset: u64,
) -> Result<Vec<PackBlob>, PackError> {
    let plain = keys.open_file(
        FileAad::PackHeader,
        &format!("header of pack {pack}"),
        sealed,
    )?;
    decode_header_plaintext(pack, &plain, header_offset)
}

/// Decodes a header after its MAC was verified (split out for fuzzing).
pub fn decode_header_plaintext(
    pack: &str,
    plain: &[u8],
    header_offset: u64,
) -> Result<Vec<PackBlob>, PackError> {
    let bad = |msg: String| PackError::Malformed {
        pack: pack.to_string(),
        msg,
    };
    if plain.len() < 4 {
        return Err(bad("header too short".into()));
    }
    let count = u32::from_le_bytes(plain[..4].try_into().unwrap()) as usize;
    if (plain.len() - 4)
        != count
            .checked_mul(ENTRY_LEN)
            .ok_or_else(|| bad("count overflows".into()))?
    {
        return Err(bad(format!(
            "header lists {count} blobs but has {} bytes",
            plain.len()
        )));
    }
    let mut blobs = Vec::with_capacity(count);
    for chunk in plain[4..].chunks_exact(ENTRY_LEN) {
        let b = PackBlob::decode(chunk).map_err(&bad)?;
        if b.end() > header_offset {
            return Err(bad(format!(
                "blob {} extends past the blob area",
                b.id.short()
            )));
        }
        blobs.push(b);
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{open_blob, seal_blob};
    use proptest::prelude::*;

    fn read_back(keys: &MasterKeys, bytes: &[u8]) -> Vec<PackBlob> {
        let (off, len) = header_location("p", bytes, bytes.len() as u64).unwrap();
        decode_header(keys, "p", &bytes[off as usize..off as usize + len], off).unwrap()
    }

    #[test]
    fn empty_pack_round_trips() {
        let k = MasterKeys::generate();
        let (bytes, id, blobs) = PackWriter::new().finish(&k);
        assert_eq!(id, Id::hash_of(&bytes));
        assert!(blobs.is_empty());
        assert!(read_back(&k, &bytes).is_empty());
    }

    #[test]
    fn reused_buffer_gives_the_same_pack_layout() {
        let k = MasterKeys::generate();
        let id = k.blob_id(b"abc");
        let sealed = seal_blob(&k, BlobType::Data, &id, b"abc", 0);
        let mut w = PackWriter::with_buffer(b"old pack bytes".to_vec());
        w.add(BlobType::Data, id, &sealed, 3);
        let (bytes, pack_id, blobs) = w.finish(&k);
        assert_eq!(blobs[0].offset, 0);
        assert_eq!(bytes.len(), sealed.len() + PackWriter::header_len(1));
        assert_eq!(pack_id, Id::hash_of(&bytes));
        assert_eq!(read_back(&k, &bytes), blobs);
    }

    #[test]
    fn truncated_pack_is_reported() {
        let k = MasterKeys::generate();
        let mut w = PackWriter::new();
        let id = k.blob_id(b"abc");
        w.add(
            BlobType::Data,
            id,
            &seal_blob(&k, BlobType::Data, &id, b"abc", 0),
            3,
        );
        let (bytes, _, _) = w.finish(&k);
        let cut = &bytes[..bytes.len() - 5];
        assert!(header_location("p", cut, cut.len() as u64).is_err());
    }

    #[test]
    fn corrupted_header_fails_mac() {
        let k = MasterKeys::generate();
        let (mut bytes, _, _) = PackWriter::new().finish(&k);
        bytes[3] ^= 0x40;
        let (off, len) = header_location("p", &bytes, bytes.len() as u64).unwrap();
        let r = decode_header(&k, "p", &bytes[off as usize..off as usize + len], off);
        assert!(matches!(r, Err(PackError::Crypto(CryptoError::Mac(_)))));
    }

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..20)) {
            let k = MasterKeys::generate();
            let mut w = PackWriter::new();
            for b in &blobs {
                let id = k.blob_id(b);
                w.add(BlobType::Data, id, &seal_blob(&k, BlobType::Data, &id, b, 1), b.len());
            }
            let (bytes, _, written) = w.finish(&k);
            let read = read_back(&k, &bytes);
            prop_assert_eq!(&read, &written);
            for (e, b) in read.iter().zip(&blobs) {
                let sealed = &bytes[e.offset as usize..e.end() as usize];
                prop_assert_eq!(&open_blob(&k, e.blob_type, &e.id, sealed, e.raw_length as usize).unwrap(), b);
            }
        }

        #[test]
        fn entry_round_trip(t in 0u8..2, id in any::<[u8; 32]>(), offset in any::<u32>(), length in 29u32.., raw in 0u32..(128 << 20)) {
            let e = PackBlob { blob_type: BlobType::from_code(t).unwrap(), id: Id(id), offset, length, raw_length: raw };
            let mut v = Vec::new();
            e.encode(&mut v);
            prop_assert_eq!(v.len(), ENTRY_LEN);
            prop_assert_eq!(PackBlob::decode(&v).unwrap(), e);
        }
    }
}
