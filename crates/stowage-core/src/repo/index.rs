//! Index files (`index/<id>`) and the in-memory master index built from them.
//!
//! An index file is sealed with [`FileAad::Index`]; its plaintext is
//! `version (u8 = 1) || superseded count (u32) || superseded ids (32 each) ||
//!  pack count (u32) || per pack: pack id (32) || blob count (u32) || blob entries (46 each)`,
//! all integers little-endian, blob entries as in pack headers ([`PackBlob`]).

use super::error::{RepoError, Result};
use crate::crypto::{FileAad, MasterKeys};
use crate::id::{BlobType, Id, ID_LEN};
use crate::pack::{PackBlob, ENTRY_LEN};
use std::collections::HashMap;

/// Version byte at the start of an index file's plaintext.
pub const INDEX_VERSION: u8 = 1;
/// Largest index file accepted.
pub const MAX_INDEX_LEN: usize = 256 << 20;

/// The blobs of one pack, as listed in an index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack's id (hash of its content, and its file name).
    pub id: Id,
    /// Its blobs.
    pub blobs: Vec<PackBlob>,
}

/// The decoded content of one index file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Index files this one replaces (written by index consolidation); readers ignore them.
    pub supersedes: Vec<Id>,
    /// The packs this file lists.
    pub packs: Vec<IndexPack>,
    /// Packs that prune has marked for deletion (see `repo-format/`, "Concurrency").
    pub condemned: Vec<CondemnedBatch>,
}

/// Packs marked for deletion by one prune run. Backups do not deduplicate against blobs that
/// are only in condemned packs; readers still use them. The packs may be deleted once none of
/// `blocking_locks` is held any more and no snapshot needs a blob found only in them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CondemnedBatch {
    /// Unix time (seconds) at which the mark was written (informational).
    pub marked_at: i64,
    /// Whether `blocking_locks` was taken after the mark was stored. A batch written by a prune
    /// that died before that is undetermined: the next prune takes the live locks as its
    /// blocking set before anything in it may be deleted.
    pub determined: bool,
    /// Identities of the locks that were live right after the mark was stored.
    pub blocking_locks: Vec<Id>,
    /// The condemned packs.
    pub packs: Vec<Id>,
}

impl IndexFile {
    /// The plaintext encoding (before sealing) described in `repo-format/`.
    pub fn encode_plaintext(&self) -> Vec<u8> {
        let blobs: usize = self.packs.iter().map(|p| p.blobs.len()).sum();
        let mut out = Vec::with_capacity(
            9 + self.supersedes.len() * ID_LEN + self.packs.len() * 36 + blobs * ENTRY_LEN,
        );
        out.push(INDEX_VERSION);
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for id in &self.supersedes {
            out.extend_from_slice(id.as_bytes());
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(p.id.as_bytes());
            out.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
            for b in &p.blobs {
                b.encode(&mut out);
            }
        }
        if !self.condemned.is_empty() {
            out.extend_from_slice(&(self.condemned.len() as u32).to_le_bytes());
            for c in &self.condemned {
                out.extend_from_slice(&c.marked_at.to_le_bytes());
                out.push(c.determined as u8);
                out.extend_from_slice(&(c.blocking_locks.len() as u32).to_le_bytes());
                for id in &c.blocking_locks {
                    out.extend_from_slice(id.as_bytes());
                }
                out.extend_from_slice(&(c.packs.len() as u32).to_le_bytes());
                for id in &c.packs {
                    out.extend_from_slice(id.as_bytes());
                }
            }
        }
        out
    }

    /// Seals the index for storage.
    pub fn encode(&self, keys: &MasterKeys) -> Vec<u8> {
        keys.seal_file(FileAad::Index, &self.encode_plaintext())
    }

    /// Verifies the MAC, then decodes.
    pub fn decode(keys: &MasterKeys, name: &str, sealed: &[u8]) -> Result<IndexFile> {
        if sealed.len() > MAX_INDEX_LEN {
            return Err(RepoError::TooLarge {
                what: format!("index {name}"),
                size: sealed.len() as u64,
                limit: MAX_INDEX_LEN as u64,
            });
        }
        let plain = keys.open_file(FileAad::Index, &format!("index {name}"), sealed)?;
        Self::decode_plaintext(name, &plain)
    }

    /// Decodes a verified plaintext. Every count is checked against the bytes left before
    /// anything is allocated.
    pub fn decode_plaintext(name: &str, b: &[u8]) -> Result<IndexFile> {
        let bad = |msg: &str| RepoError::malformed(format!("index {name}"), msg);
        let mut r = Reader { b, pos: 0 };
        let version = r.u8().ok_or_else(|| bad("empty"))?;
        if version != INDEX_VERSION {
            return Err(RepoError::UnsupportedFileVersion {
                what: format!("index {name}"),
                version: version.into(),
            });
        }
        let n = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        if n.saturating_mul(ID_LEN) > r.left() {
            return Err(bad("superseded count exceeds the data"));
        }
        let mut supersedes = Vec::with_capacity(n);
        for _ in 0..n {
            supersedes.push(r.id().ok_or_else(|| bad("truncated"))?);
        }
        let np = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        if np.saturating_mul(ID_LEN + 4) > r.left() {
            return Err(bad("pack count exceeds the data"));
        }
        let mut packs = Vec::with_capacity(np);
        for _ in 0..np {
            let id = r.id().ok_or_else(|| bad("truncated"))?;
            let nb = r.u32().ok_or_else(|| bad("truncated"))? as usize;
            if nb.saturating_mul(ENTRY_LEN) > r.left() {
                return Err(bad("blob count exceeds the data"));
            }
            let mut blobs = Vec::with_capacity(nb);
            for _ in 0..nb {
                let e = r.take(ENTRY_LEN).ok_or_else(|| bad("truncated"))?;
                blobs.push(PackBlob::decode(e).map_err(|m| bad(&m))?);
            }
            packs.push(IndexPack { id, blobs });
        }
        let mut condemned = Vec::new();
        if r.left() != 0 {
            let nb = r.u32().ok_or_else(|| bad("truncated"))? as usize;
            // Writers omit an empty section: one with no batch is not canonical.
            if nb == 0 {
                return Err(bad("empty condemned section"));
            }
            if nb.saturating_mul(17) > r.left() {
                return Err(bad("condemned batch count exceeds the data"));
            }
            for _ in 0..nb {
                let marked_at = r.take(8).map(|s| i64::from_le_bytes(s.try_into().unwrap()));
                let marked_at = marked_at.ok_or_else(|| bad("truncated"))?;
                let determined = match r.u8() {
                    Some(0) => false,
                    Some(1) => true,
                    _ => return Err(bad("bad condemned batch state")),
                };
                let mut ids = |what: &str| -> Result<Vec<Id>> {
                    let n = r.u32().ok_or_else(|| bad("truncated"))? as usize;
                    if n.saturating_mul(ID_LEN) > r.left() {
                        return Err(bad(&format!("{what} count exceeds the data")));
                    }
                    (0..n)
                        .map(|_| r.id().ok_or_else(|| bad("truncated")))
                        .collect()
                };
                let blocking_locks = ids("lock")?;
                let packs = ids("condemned pack")?;
                condemned.push(CondemnedBatch {
                    marked_at,
                    determined,
                    blocking_locks,
                    packs,
                });
            }
            if r.left() != 0 {
                return Err(bad("trailing bytes"));
            }
        }
        Ok(IndexFile {
            supersedes,
            packs,
            condemned,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.left() < n {
            return None;
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    }
    fn id(&mut self) -> Option<Id> {
        self.take(ID_LEN).and_then(Id::from_slice)
    }
}

/// Where a blob is stored, as looked up in the master index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// Whether the blob is data or a tree.
    pub blob_type: BlobType,
    /// The pack it is in.
    pub pack: Id,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
}

#[derive(Clone, Copy)]
struct Slot {
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// Looking blobs up: what backup, restore and check need from an index, whether it is held in
/// memory ([`MasterIndex`]) or in the local cache (`repo::cache::IndexCache`).
pub trait BlobIndex: Send + Sync {
    /// Where a blob is stored (a location outside condemned packs when there is one).
    fn get(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation>;
    /// Whether a blob is stored outside condemned packs (see [`MasterIndex::contains_live`]).
    fn contains_live(&self, blob_type: BlobType, id: &Id) -> bool;
    /// Number of blobs of both types.
    fn len(&self) -> usize;
    /// Whether a blob is stored (in any pack, condemned or not).
    fn contains(&self, blob_type: BlobType, id: &Id) -> bool {
        self.get(blob_type, id).is_some()
    }
    /// Whether the index holds no blob.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A locally kept copy of a sealed blob (still encrypted, verified again when opened), if
    /// the index has a local store for them (the cache keeps tree blobs).
    fn cached_blob(&self, _blob_type: BlobType, _id: &Id) -> Option<Vec<u8>> {
        None
    }
    /// Offers a sealed blob to the local store (read from, or just written to, a pack).
    fn cache_blob(&self, _blob_type: BlobType, _id: &Id, _sealed: &[u8]) {}
}

impl BlobIndex for MasterIndex {
    fn get(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        MasterIndex::get(self, blob_type, id)
    }
    fn contains_live(&self, blob_type: BlobType, id: &Id) -> bool {
        MasterIndex::contains_live(self, blob_type, id)
    }
    fn len(&self) -> usize {
        MasterIndex::len(self)
    }
}

/// All index files merged: (blob type, blob id) -> location. Data and tree blobs are kept apart,
/// so a file whose bytes equal a serialized tree never stands in for that tree (nor the other
/// way round). Pack ids are interned so each entry costs about 48 bytes plus the hash table's
/// overhead.
#[derive(Default)]
pub struct MasterIndex {
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    /// One table per blob type, indexed by [`BlobType::code`].
    blobs: [HashMap<Id, Slot>; 2],
    /// Numbers of packs marked for deletion by prune.
    condemned: std::collections::HashSet<u32>,
}

impl MasterIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn pack_number(&mut self, id: Id) -> u32 {
        match self.pack_numbers.get(&id) {
            Some(&n) => n,
            None => {
                let n = self.packs.len() as u32;
                self.packs.push(id);
                self.pack_numbers.insert(id, n);
                n
            }
        }
    }

    /// Builds the master index from index files: every mark first, so that every blob is
    /// located outside condemned packs where possible.
    pub fn from_files<'a>(files: impl IntoIterator<Item = &'a IndexFile> + Clone) -> MasterIndex {
        let mut index = MasterIndex::new();
        for f in files.clone() {
            for c in &f.condemned {
                index.condemn(c.packs.iter().copied());
            }
        }
        for f in files {
            index.add_file(f);
        }
        index
    }

    /// Marks packs as condemned (call before adding the packs, so that blobs stored both in a
    /// condemned pack and elsewhere are located elsewhere).
    pub fn condemn(&mut self, packs: impl IntoIterator<Item = Id>) {
        for id in packs {
            let n = self.pack_number(id);
            self.condemned.insert(n);
        }
    }

    /// Adds every blob of an index pack. A blob already known keeps its first location, unless
    /// that location is in a condemned pack and this one is not.
    pub fn add_pack(&mut self, pack: &IndexPack) {
        let n = self.pack_number(pack.id);
        let live = !self.condemned.contains(&n);
        for b in &pack.blobs {
            let slot = Slot {
                pack: n,
                offset: b.offset,
                length: b.length,
                raw_length: b.raw_length,
            };
            match self.blobs[b.blob_type.code() as usize].entry(b.id) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(slot);
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    if live && self.condemned.contains(&e.get().pack) {
                        e.insert(slot);
                    }
                }
            }
        }
    }

    /// Whether a pack is condemned.
    pub fn is_condemned(&self, pack: &Id) -> bool {
        self.pack_numbers
            .get(pack)
            .is_some_and(|n| self.condemned.contains(n))
    }

    /// Whether a blob is stored outside condemned packs: only such blobs may be deduplicated
    /// against, since condemned packs may be deleted once the backups that saw them are done.
    pub fn contains_live(&self, blob_type: BlobType, id: &Id) -> bool {
        self.blobs[blob_type.code() as usize]
            .get(id)
            .is_some_and(|s| !self.condemned.contains(&s.pack))
    }

    /// Adds the packs and condemned batches of one index file.
    pub fn add_file(&mut self, file: &IndexFile) {
        for c in &file.condemned {
            self.condemn(c.packs.iter().copied());
        }
        for p in &file.packs {
            self.add_pack(p);
        }
    }

    /// Where a blob is stored: a copy outside condemned packs when there is one.
    pub fn get(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        self.blobs[blob_type.code() as usize]
            .get(id)
            .map(|s| self.location(blob_type, s))
    }

    fn location(&self, blob_type: BlobType, s: &Slot) -> BlobLocation {
        BlobLocation {
            blob_type,
            pack: self.packs[s.pack as usize],
            offset: s.offset,
            length: s.length,
            raw_length: s.raw_length,
        }
    }

    /// Whether a blob is stored (in any pack, condemned or not).
    pub fn contains(&self, blob_type: BlobType, id: &Id) -> bool {
        self.blobs[blob_type.code() as usize].contains_key(id)
    }

    /// Number of blobs of both types.
    pub fn len(&self) -> usize {
        self.blobs.iter().map(HashMap::len).sum()
    }

    /// Whether the index holds no blob.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every pack the index knows.
    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    /// Every blob with its location.
    pub fn iter(&self) -> impl Iterator<Item = (Id, BlobLocation)> + '_ {
        [BlobType::Data, BlobType::Tree]
            .into_iter()
            .flat_map(move |t| {
                self.blobs[t.code() as usize]
                    .iter()
                    .map(move |(id, s)| (*id, self.location(t, s)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = PackBlob> {
        (
            0u8..2,
            any::<[u8; 32]>(),
            any::<u32>(),
            29u32..1 << 30,
            0u32..1 << 20,
        )
            .prop_map(|(t, id, o, l, r)| PackBlob {
                blob_type: BlobType::from_code(t).unwrap(),
                id: Id(id),
                offset: o,
                length: l,
                raw_length: r,
            })
    }

    proptest! {
        #[test]
        fn index_round_trip(
            sup in proptest::collection::vec(any::<[u8; 32]>(), 0..3),
            packs in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec(entry(), 0..10)), 0..5),
            condemned in proptest::collection::vec((any::<i64>(), proptest::collection::vec(any::<[u8; 32]>(), 0..3), proptest::collection::vec(any::<[u8; 32]>(), 0..4)), 0..3),
        ) {
            let f = IndexFile {
                supersedes: sup.into_iter().map(Id).collect(),
                packs: packs.into_iter().map(|(id, blobs)| IndexPack { id: Id(id), blobs }).collect(),
                condemned: condemned.into_iter().map(|(t, l, p)| CondemnedBatch {
                    marked_at: t,
                    determined: t % 2 == 0,
                    blocking_locks: l.into_iter().map(Id).collect(),
                    packs: p.into_iter().map(Id).collect(),
                }).collect(),
            };
            let k = MasterKeys::generate();
            prop_assert_eq!(IndexFile::decode(&k, "i", &f.encode(&k)).unwrap(), f);
        }

        #[test]
        fn decoding_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexFile::decode_plaintext("x", &b);
        }
    }

    #[test]
    fn huge_counts_are_refused_without_allocating() {
        let mut b = vec![INDEX_VERSION];
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(IndexFile::decode_plaintext("x", &b).is_err());
    }

    #[test]
    fn live_location_is_preferred_over_a_condemned_one() {
        let (old, new) = (Id::random(), Id::random());
        let b = PackBlob {
            blob_type: BlobType::Data,
            id: Id::random(),
            offset: 0,
            length: 40,
            raw_length: 12,
        };
        let mut m = MasterIndex::new();
        m.condemn([old]);
        m.add_pack(&IndexPack {
            id: old,
            blobs: vec![b],
        });
        assert!(!m.contains_live(BlobType::Data, &b.id));
        assert_eq!(m.get(BlobType::Data, &b.id).unwrap().pack, old);
        m.add_pack(&IndexPack {
            id: new,
            blobs: vec![b],
        });
        assert!(m.contains_live(BlobType::Data, &b.id));
        assert_eq!(m.get(BlobType::Data, &b.id).unwrap().pack, new);
    }

    #[test]
    fn master_index_finds_blobs() {
        let mut m = MasterIndex::new();
        let pack = Id::random();
        let b = PackBlob {
            blob_type: BlobType::Tree,
            id: Id::random(),
            offset: 10,
            length: 40,
            raw_length: 12,
        };
        m.add_pack(&IndexPack {
            id: pack,
            blobs: vec![b],
        });
        let loc = m.get(BlobType::Tree, &b.id).unwrap();
        assert_eq!(loc.pack, pack);
        assert_eq!(loc.offset, 10);
        assert_eq!(loc.blob_type, BlobType::Tree);
        assert!(
            m.get(BlobType::Data, &b.id).is_none(),
            "types are kept apart"
        );
        assert!(m.get(BlobType::Tree, &Id::random()).is_none());
    }
}
