//! A decorator for a storage location that must never be written (a migration's source, a
//! repository mounted for inspection): reads pass through to the wrapped backend; every
//! `create`, `write`, `remove` and `remove_many` fails before reaching it, with a
//! [`ReadOnlyError`] of class [`Config`](ErrorClass::Config) and kind `backend.read_only`.

use super::{Backend, BackendError, FileInfo, FileKind, Result};
use crate::error::{Classified, ErrorClass};

/// The refusal of a change to a read-only location.
#[derive(Debug, thiserror::Error)]
#[error("{location} is read-only: refused to {op} {target}")]
pub struct ReadOnlyError {
    /// The wrapped backend's location.
    pub location: String,
    /// The operation refused (`create`, `write`, `remove`).
    pub op: &'static str,
    /// What it would have changed: a file (`pack "ab12..."`), or the repository.
    pub target: String,
}

impl Classified for ReadOnlyError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }

    fn kind(&self) -> &'static str {
        "backend.read_only"
    }
}

impl From<ReadOnlyError> for BackendError {
    fn from(e: ReadOnlyError) -> Self {
        BackendError::Remote {
            class: e.class(),
            kind: e.kind(),
            source: Box::new(e),
        }
    }
}

/// `inner`, with every change refused. See the module documentation.
pub struct ReadOnlyBackend<B> {
    inner: B,
}

impl<B: Backend> ReadOnlyBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        ReadOnlyBackend { inner }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn refuse(&self, op: &'static str, target: String) -> BackendError {
        ReadOnlyError {
            location: self.inner.location(),
            op,
            target,
        }
        .into()
    }
}

impl<B: Backend> Backend for ReadOnlyBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<()> {
        Err(self.refuse("create", "the repository".into()))
    }
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        self.inner.list(kind)
    }
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.inner.read(kind, name)
    }
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read_range(kind, name, offset, len)
    }
    fn read_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.read_range_into(kind, name, offset, len, buf)
    }
    fn write(&self, kind: FileKind, name: &str, _data: &[u8], _exclusive: bool) -> Result<()> {
        Err(self.refuse("write", format!("{kind} {name:?}")))
    }
    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        Err(self.refuse("remove", format!("{kind} {name:?}")))
    }
    fn remove_many(&self, kind: FileKind, names: &[String]) -> Result<()> {
        Err(self.refuse("remove", format!("{} {kind} files", names.len())))
    }
    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        self.inner.exists(kind, name)
    }
    fn preferred_uploaders(&self) -> usize {
        self.inner.preferred_uploaders()
    }
    fn will_read(&self, kind: FileKind, name: &str, offset: u64, len: u64) {
        self.inner.will_read(kind, name, offset, len)
    }
    fn preferred_read_size(&self) -> u64 {
        self.inner.preferred_read_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    fn refused(r: Result<()>) -> String {
        match r {
            Err(BackendError::Remote {
                class,
                kind,
                source,
            }) => {
                assert_eq!(class, ErrorClass::Config);
                assert_eq!(kind, "backend.read_only");
                source.to_string()
            }
            other => panic!("expected a read-only refusal, got {other:?}"),
        }
    }

    #[test]
    fn reads_pass_and_every_change_is_refused_before_the_store() {
        let store = MemoryBackend::new();
        store
            .write(FileKind::Snapshot, "s1", b"snap", false)
            .unwrap();
        let b = ReadOnlyBackend::new(store);
        assert_eq!(b.read(FileKind::Snapshot, "s1").unwrap(), b"snap");
        assert_eq!(b.read_range(FileKind::Snapshot, "s1", 1, 2).unwrap(), b"na");
        assert_eq!(b.size(FileKind::Snapshot, "s1").unwrap(), 4);
        assert_eq!(b.list(FileKind::Snapshot).unwrap().len(), 1);
        assert!(matches!(
            b.read(FileKind::Snapshot, "nope"),
            Err(BackendError::NotFound { .. })
        ));

        let e = refused(b.write(FileKind::Pack, "p1", b"x", true));
        assert!(
            e.contains("memory is read-only") && e.contains("pack \"p1\""),
            "{e}"
        );
        refused(b.remove(FileKind::Snapshot, "s1"));
        refused(b.remove_many(FileKind::Snapshot, &["s1".to_string()]));
        refused(b.create());
        // Nothing reached the store.
        assert_eq!(b.inner().file_count(), 1);
        assert_eq!(b.read(FileKind::Snapshot, "s1").unwrap(), b"snap");
    }
}
