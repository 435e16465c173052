//! Identifiers shared by every layer: 32-byte ids of blobs and repository files.

use std::fmt;
use std::str::FromStr;

/// Length in bytes of every id in the repository.
pub const ID_LEN: usize = 32;

/// A 32-byte identifier, printed as 64 lowercase hex digits.
///
/// Blob ids are keyed BLAKE3 hashes of the plaintext; file ids (packs, indexes, snapshots, keys)
/// are plain BLAKE3 hashes of the stored bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; ID_LEN]);

impl Id {
    /// The plain BLAKE3 hash of `data`: the name of a stored file with these bytes.
    pub fn hash_of(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    /// A fresh random id (for repository ids and similar).
    pub fn random() -> Id {
        let mut b = [0u8; ID_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        Id(b)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The id as 64 lower-case hex digits (file names use it).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as shown in listings.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// An id from exactly 32 bytes, or `None` for another length.
    pub fn from_slice(b: &[u8]) -> Option<Id> {
        <[u8; ID_LEN]>::try_from(b).ok().map(Id)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

/// The string was not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid id {0:?}: expected 64 hex digits")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut b).map_err(|_| ParseIdError(s.to_string()))?;
        Ok(Id(b))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor that parses the string where the deserializer holds it: trees carry an id
        // per chunk and per subtree, and going through an owned string cost an allocation each.
        struct HexId;
        impl serde::de::Visitor<'_> for HexId {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an id of 64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Id, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(HexId)
    }
}

/// The kind of data a blob holds. Bound into the blob's encryption as associated data, so a
/// tree blob can never be passed off as file data or the other way round.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// A serialized directory (one per directory).
    Tree,
}

impl BlobType {
    /// The one-byte code used in pack headers, index files and associated data.
    pub fn code(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }

    /// The blob type with this code, or `None` for an unknown one.
    pub fn from_code(c: u8) -> Option<BlobType> {
        match c {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }
}

impl fmt::Display for BlobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::random();
        assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
    }

    #[test]
    fn rejects_short_hex() {
        assert!("abcd".parse::<Id>().is_err());
    }

    #[test]
    fn blob_type_codes_round_trip() {
        for t in [BlobType::Data, BlobType::Tree] {
            assert_eq!(BlobType::from_code(t.code()), Some(t));
        }
        assert_eq!(BlobType::from_code(7), None);
    }
}
