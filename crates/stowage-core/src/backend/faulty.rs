//! A backend decorator that fails chosen operations: for tests of how the layers above react to
//! a store that fails a write, a delete or a listing at a chosen moment.

use super::{Backend, BackendError, FileInfo, FileKind, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Which operations count towards the failure point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOn {
    /// Writes of files.
    Writes,
    /// Removals of files.
    Removes,
    /// Listings of a folder.
    Lists,
    /// Writes and removes.
    Mutations,
}

/// Passes every call to `inner` until the `fail_at`-th counted operation, which fails (and, if
/// `sticky`, every counted operation after it).
pub struct FaultyBackend<B> {
    /// The backend every call is passed to.
    pub inner: B,
    /// Which operations count.
    pub on: FaultOn,
    /// The counted operation (1-based) that fails.
    pub fail_at: usize,
    /// Whether every counted operation after the failing one fails too.
    pub sticky: bool,
    /// Counted operations so far.
    pub count: AtomicUsize,
    /// Operations count only once armed (so opening the repository is not disturbed).
    pub armed: std::sync::atomic::AtomicBool,
}

impl<B: Backend> FaultyBackend<B> {
    /// Wraps `inner`; failures start only once armed.
    pub fn new(inner: B, on: FaultOn, fail_at: usize, sticky: bool) -> Self {
        FaultyBackend {
            inner,
            on,
            fail_at,
            sticky,
            count: AtomicUsize::new(0),
            armed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn tick(&self, what: FaultOn, op: &str, kind: FileKind, name: &str) -> Result<()> {
        let counted = self.on == what
            || (self.on == FaultOn::Mutations
                && matches!(what, FaultOn::Writes | FaultOn::Removes));
        if !counted || !self.armed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at || (self.sticky && n > self.fail_at) {
            return Err(BackendError::Io {
                op: "fault injected into",
                path: format!("{op} {kind} {name}"),
                source: std::io::Error::other("injected fault"),
            });
        }
        Ok(())
    }

    /// How many counted operations happened.
    pub fn operations(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl<B: Backend> Backend for FaultyBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        self.tick(FaultOn::Lists, "list", kind, "")?;
        self.inner.list(kind)
    }
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.inner.read(kind, name)
    }
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read_range(kind, name, offset, len)
    }
    fn write(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
        self.tick(FaultOn::Writes, "write", kind, name)?;
        self.inner.write(kind, name, data, exclusive)
    }
    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        self.tick(FaultOn::Removes, "remove", kind, name)?;
        self.inner.remove(kind, name)
    }
    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
}
