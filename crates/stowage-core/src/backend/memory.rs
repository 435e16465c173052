//! A backend that keeps its files in memory, for tests: it gives every guarantee of the
//! [`Backend`] trait (atomic and, when asked, exclusive writes; `NotFound` for a missing file;
//! `ShortRead` for a range past the end), so that code tested on it behaves the same on a real
//! store. Nothing survives the value.

use super::{Backend, BackendError, FileInfo, FileKind, Result};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The files of one repository, by kind and name, in memory. Shared between threads like any
/// backend; a write replaces a whole file under a lock, so readers see all of it or nothing.
#[derive(Default)]
pub struct MemoryBackend {
    files: RwLock<Files>,
}

/// The contents of the files, by kind and name.
type Files = HashMap<(FileKind, String), Arc<[u8]>>;

/// The map key of a file: the config has one name whatever the caller passes, as in the other
/// backends.
fn key(kind: FileKind, name: &str) -> (FileKind, String) {
    match kind {
        FileKind::Config => (kind, "config".to_string()),
        _ => (kind, name.to_string()),
    }
}

impl MemoryBackend {
    /// An empty store (`create` has not been called yet, but nothing needs it to be).
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// How many files it holds, of every kind.
    pub fn file_count(&self) -> usize {
        self.files.read().expect("memory backend lock").len()
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Arc<[u8]>> {
        self.files
            .read()
            .expect("memory backend lock")
            .get(&key(kind, name))
            .cloned()
            .ok_or_else(|| BackendError::NotFound {
                kind,
                name: name.to_string(),
            })
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn create(&self) -> Result<()> {
        if self.exists(FileKind::Config, "")? {
            return Err(BackendError::AlreadyExists {
                kind: FileKind::Config,
                name: "config".into(),
            });
        }
        Ok(())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        Ok(self
            .files
            .read()
            .expect("memory backend lock")
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, name), data)| FileInfo {
                name: name.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        Ok(self.get(kind, name)?.to_vec())
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let data = self.get(kind, name)?;
        let short = || BackendError::ShortRead {
            kind,
            name: name.to_string(),
            offset,
            len,
        };
        let end = offset.checked_add(len).ok_or_else(short)?;
        if end > data.len() as u64 {
            return Err(short());
        }
        Ok(data[offset as usize..end as usize].to_vec())
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
        let mut files = self.files.write().expect("memory backend lock");
        let k = key(kind, name);
        if exclusive && files.contains_key(&k) {
            return Err(BackendError::AlreadyExists {
                kind,
                name: name.to_string(),
            });
        }
        files.insert(k, data.into());
        Ok(())
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        self.files
            .write()
            .expect("memory backend lock")
            .remove(&key(kind, name));
        Ok(())
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        Ok(self.get(kind, name)?.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_stored_listed_and_removed_by_kind() {
        let b = MemoryBackend::new();
        b.create().unwrap();
        b.write(FileKind::Pack, "aa01", b"pack", false).unwrap();
        b.write(FileKind::Index, "aa01", b"index!", false).unwrap();
        assert_eq!(b.read(FileKind::Pack, "aa01").unwrap(), b"pack");
        assert_eq!(
            b.list(FileKind::Index).unwrap(),
            vec![FileInfo {
                name: "aa01".into(),
                size: 6
            }]
        );
        b.remove(FileKind::Pack, "aa01").unwrap();
        b.remove(FileKind::Pack, "aa01").unwrap();
        assert!(b.list(FileKind::Pack).unwrap().is_empty());
        assert_eq!(b.file_count(), 1);
    }

    #[test]
    fn exclusive_writes_refuse_an_existing_file_and_others_replace_it() {
        let b = MemoryBackend::new();
        b.write(FileKind::Lock, "l", b"one", true).unwrap();
        assert!(matches!(
            b.write(FileKind::Lock, "l", b"two", true),
            Err(BackendError::AlreadyExists {
                kind: FileKind::Lock,
                ..
            })
        ));
        assert_eq!(b.read(FileKind::Lock, "l").unwrap(), b"one");
        b.write(FileKind::Lock, "l", b"three", false).unwrap();
        assert_eq!(b.read(FileKind::Lock, "l").unwrap(), b"three");
    }

    #[test]
    fn missing_files_are_not_found_and_ranges_past_the_end_short() {
        let b = MemoryBackend::new();
        for r in [
            b.read(FileKind::Snapshot, "x").map(|_| ()),
            b.size(FileKind::Snapshot, "x").map(|_| ()),
            b.read_range(FileKind::Snapshot, "x", 0, 1).map(|_| ()),
        ] {
            assert!(matches!(r, Err(BackendError::NotFound { .. })), "{r:?}");
        }
        assert!(!b.exists(FileKind::Snapshot, "x").unwrap());
        b.write(FileKind::Pack, "p", b"0123456789", false).unwrap();
        assert_eq!(b.read_range(FileKind::Pack, "p", 2, 3).unwrap(), b"234");
        assert_eq!(b.read_range(FileKind::Pack, "p", 10, 0).unwrap(), b"");
        for (offset, len) in [(8, 3), (11, 0), (u64::MAX, 2)] {
            assert!(matches!(
                b.read_range(FileKind::Pack, "p", offset, len),
                Err(BackendError::ShortRead { .. })
            ));
        }
    }

    #[test]
    fn create_refuses_a_store_that_has_a_config() {
        let b = MemoryBackend::new();
        b.create().unwrap();
        b.write(FileKind::Config, "", b"{}", true).unwrap();
        assert_eq!(b.list(FileKind::Config).unwrap()[0].name, "config");
        assert!(matches!(
            b.create(),
            Err(BackendError::AlreadyExists {
                kind: FileKind::Config,
                ..
            })
        ));
    }
}
