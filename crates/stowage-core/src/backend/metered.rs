//! A decorator that measures the calls made to a backend, for metrics: calls and failures by
//! operation and file kind, bytes read and written, and latency (total, largest, and a small
//! fixed histogram). Counting is a handful of relaxed atomic additions per call; a caller reads a
//! consistent-enough [`MeterSnapshot`] whenever it likes (each counter is exact, the set is not
//! taken at one instant).
//!
//! What only a backend itself sees (HTTP attempts and retries of the S3 backend) it counts
//! itself; this decorator counts the calls the layers above make.

use super::{Backend, FileInfo, FileKind, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The backend operations that are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`Backend::create`].
    Create,
    /// [`Backend::list`].
    List,
    /// [`Backend::read`].
    Read,
    /// [`Backend::read_range`] and [`Backend::read_range_into`].
    ReadRange,
    /// [`Backend::write`].
    Write,
    /// [`Backend::remove`].
    Remove,
    /// [`Backend::remove_many`] (one call, however many files).
    RemoveMany,
    /// [`Backend::size`].
    Size,
    /// [`Backend::exists`].
    Exists,
}

impl Operation {
    /// Every operation, in a fixed order.
    pub const ALL: [Operation; 9] = [
        Operation::Create,
        Operation::List,
        Operation::Read,
        Operation::ReadRange,
        Operation::Write,
        Operation::Remove,
        Operation::RemoveMany,
        Operation::Size,
        Operation::Exists,
    ];

    /// A stable lower-case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::List => "list",
            Operation::Read => "read",
            Operation::ReadRange => "read_range",
            Operation::Write => "write",
            Operation::Remove => "remove",
            Operation::RemoveMany => "remove_many",
            Operation::Size => "size",
            Operation::Exists => "exists",
        }
    }
}

/// The upper bounds of the latency histogram's buckets; a last bucket holds the slower calls.
pub const LATENCY_BOUNDS: [Duration; 6] = [
    Duration::from_millis(1),
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(10),
    Duration::from_secs(60),
];
const BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

/// Every file kind (`create` is counted under `Config`).
const KINDS: [FileKind; 6] = [
    FileKind::Config,
    FileKind::Key,
    FileKind::Pack,
    FileKind::Index,
    FileKind::Snapshot,
    FileKind::Lock,
];

fn kind_index(kind: FileKind) -> usize {
    match kind {
        FileKind::Config => 0,
        FileKind::Key => 1,
        FileKind::Pack => 2,
        FileKind::Index => 3,
        FileKind::Snapshot => 4,
        FileKind::Lock => 5,
    }
}

/// The counters of one operation on one file kind.
#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    nanos_total: AtomicU64,
    nanos_max: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// What was measured for one operation on one file kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationStats {
    /// Calls made, failed ones included.
    pub calls: u64,
    /// Calls that returned an error (a `NotFound` from `read` or `size` too).
    pub errors: u64,
    /// Bytes returned by reads or passed to writes (successful calls only).
    pub bytes: u64,
    /// Time spent in the calls, all together.
    pub latency_total: Duration,
    /// The slowest call.
    pub latency_max: Duration,
    /// Calls per latency bucket: `buckets[i]` counts those up to [`LATENCY_BOUNDS`]`[i]` (and
    /// above the bound before it); the last one those slower than every bound.
    pub buckets: [u64; BUCKETS],
}

impl OperationStats {
    fn add(&mut self, other: &OperationStats) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.latency_total += other.latency_total;
        self.latency_max = self.latency_max.max(other.latency_max);
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }
}

/// The measurements of a [`MeteredBackend`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterSnapshot {
    /// Every operation and file kind that was called at least once.
    pub entries: Vec<(Operation, FileKind, OperationStats)>,
}

impl MeterSnapshot {
    /// The stats of `op` on `kind` (zero if never called).
    pub fn get(&self, op: Operation, kind: FileKind) -> OperationStats {
        self.entries
            .iter()
            .find(|(o, k, _)| *o == op && *k == kind)
            .map(|(_, _, s)| s.clone())
            .unwrap_or_default()
    }

    /// The stats of `op` over every file kind.
    pub fn operation(&self, op: Operation) -> OperationStats {
        let mut total = OperationStats::default();
        for (_, _, s) in self.entries.iter().filter(|(o, _, _)| *o == op) {
            total.add(s);
        }
        total
    }

    /// Calls of every operation.
    pub fn calls(&self) -> u64 {
        self.entries.iter().map(|(_, _, s)| s.calls).sum()
    }

    /// Bytes returned by `read` and `read_range`.
    pub fn bytes_read(&self) -> u64 {
        self.operation(Operation::Read).bytes + self.operation(Operation::ReadRange).bytes
    }

    /// Bytes stored by `write`.
    pub fn bytes_written(&self) -> u64 {
        self.operation(Operation::Write).bytes
    }
}

/// `inner`, with every call measured. See the module documentation.
pub struct MeteredBackend<B> {
    inner: B,
    counters: Box<[[Counters; KINDS.len()]; Operation::ALL.len()]>,
}

impl<B: Backend> MeteredBackend<B> {
    /// Wraps `inner`, with every counter at zero.
    pub fn new(inner: B) -> Self {
        MeteredBackend {
            inner,
            counters: Box::default(),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The measurements so far.
    pub fn snapshot(&self) -> MeterSnapshot {
        let mut entries = Vec::new();
        for (o, op) in Operation::ALL.iter().enumerate() {
            for (k, kind) in KINDS.iter().enumerate() {
                let c = &self.counters[o][k];
                let calls = c.calls.load(Ordering::Relaxed);
                if calls == 0 {
                    continue;
                }
                let stats = OperationStats {
                    calls,
                    errors: c.errors.load(Ordering::Relaxed),
                    bytes: c.bytes.load(Ordering::Relaxed),
                    latency_total: Duration::from_nanos(c.nanos_total.load(Ordering::Relaxed)),
                    latency_max: Duration::from_nanos(c.nanos_max.load(Ordering::Relaxed)),
                    buckets: std::array::from_fn(|i| c.buckets[i].load(Ordering::Relaxed)),
                };
                entries.push((*op, *kind, stats));
            }
        }
        MeterSnapshot { entries }
    }

    /// Runs `call`, counting it under `op` and `kind`; `bytes` says how many bytes a success
    /// moved.
    fn measure<T>(
        &self,
        op: Operation,
        kind: FileKind,
        bytes: impl FnOnce(&T) -> u64,
        call: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let start = Instant::now();
        let r = call();
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let c = &self.counters[op as usize][kind_index(kind)];
        c.calls.fetch_add(1, Ordering::Relaxed);
        match &r {
            Ok(v) => {
                c.bytes.fetch_add(bytes(v), Ordering::Relaxed);
            }
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        c.nanos_total.fetch_add(nanos, Ordering::Relaxed);
        c.nanos_max.fetch_max(nanos, Ordering::Relaxed);
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|b| nanos <= b.as_nanos() as u64)
            .unwrap_or(BUCKETS - 1);
        c.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        r
    }
}

fn none<T>(_: &T) -> u64 {
    0
}

impl<B: Backend> Backend for MeteredBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<()> {
        self.measure(Operation::Create, FileKind::Config, none, || {
            self.inner.create()
        })
    }
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        self.measure(Operation::List, kind, none, || self.inner.list(kind))
    }
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.measure(
            Operation::Read,
            kind,
            |v: &Vec<u8>| v.len() as u64,
            || self.inner.read(kind, name),
        )
    }
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.measure(
            Operation::ReadRange,
            kind,
            |v: &Vec<u8>| v.len() as u64,
            || self.inner.read_range(kind, name, offset, len),
        )
    }
    fn read_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.measure(
            Operation::ReadRange,
            kind,
            |_| len,
            || self.inner.read_range_into(kind, name, offset, len, buf),
        )
    }
    fn write(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
        self.measure(
            Operation::Write,
            kind,
            |_| data.len() as u64,
            || self.inner.write(kind, name, data, exclusive),
        )
    }
    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        self.measure(Operation::Remove, kind, none, || {
            self.inner.remove(kind, name)
        })
    }
    fn remove_many(&self, kind: FileKind, names: &[String]) -> Result<()> {
        self.measure(Operation::RemoveMany, kind, none, || {
            self.inner.remove_many(kind, names)
        })
    }
    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.measure(Operation::Size, kind, none, || self.inner.size(kind, name))
    }
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        self.measure(Operation::Exists, kind, none, || {
            self.inner.exists(kind, name)
        })
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

    #[test]
    fn calls_bytes_and_errors_are_counted_by_operation_and_kind() {
        let b = MeteredBackend::new(MemoryBackend::new());
        b.create().unwrap();
        b.write(FileKind::Pack, "p1", &[7; 1000], false).unwrap();
        b.write(FileKind::Pack, "p2", &[7; 24], true).unwrap();
        assert!(b.write(FileKind::Pack, "p2", &[7; 24], true).is_err());
        b.write(FileKind::Index, "i1", b"index", false).unwrap();
        assert_eq!(b.read(FileKind::Pack, "p1").unwrap().len(), 1000);
        assert_eq!(
            b.read_range(FileKind::Pack, "p1", 10, 90).unwrap().len(),
            90
        );
        let mut buf = Vec::new();
        b.read_range_into(FileKind::Pack, "p1", 0, 10, &mut buf)
            .unwrap();
        assert!(b.read(FileKind::Snapshot, "missing").is_err());
        assert!(!b.exists(FileKind::Snapshot, "missing").unwrap());
        b.list(FileKind::Pack).unwrap();
        b.remove_many(FileKind::Pack, &["p1".into(), "p2".into()])
            .unwrap();

        let s = b.snapshot();
        let writes = s.get(Operation::Write, FileKind::Pack);
        assert_eq!((writes.calls, writes.errors, writes.bytes), (3, 1, 1024));
        assert_eq!(s.bytes_written(), 1024 + 5);
        assert_eq!(s.bytes_read(), 1000 + 90 + 10);
        assert_eq!(s.get(Operation::ReadRange, FileKind::Pack).calls, 2);
        let missing = s.get(Operation::Read, FileKind::Snapshot);
        assert_eq!((missing.calls, missing.errors, missing.bytes), (1, 1, 0));
        assert_eq!(s.get(Operation::Exists, FileKind::Snapshot).errors, 0);
        assert_eq!(s.get(Operation::Create, FileKind::Config).calls, 1);
        assert_eq!(s.get(Operation::RemoveMany, FileKind::Pack).calls, 1);
        assert_eq!(s.operation(Operation::Read).calls, 2);
        assert_eq!(s.calls(), 12);
        // Nothing here was called.
        assert_eq!(
            s.get(Operation::Size, FileKind::Lock),
            OperationStats::default()
        );
    }

    /// A backend whose reads take a while.
    struct Slow(MemoryBackend, Duration);

    impl Backend for Slow {
        fn location(&self) -> String {
            self.0.location()
        }
        fn create(&self) -> Result<()> {
            self.0.create()
        }
        fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
            self.0.list(kind)
        }
        fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
            std::thread::sleep(self.1);
            self.0.read(kind, name)
        }
        fn read_range(&self, k: FileKind, n: &str, o: u64, l: u64) -> Result<Vec<u8>> {
            self.0.read_range(k, n, o, l)
        }
        fn write(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
            self.0.write(kind, name, data, exclusive)
        }
        fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
            self.0.remove(kind, name)
        }
        fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
            self.0.size(kind, name)
        }
    }

    #[test]
    fn latency_is_summed_maxed_and_bucketed() {
        let b = MeteredBackend::new(Slow(MemoryBackend::new(), Duration::from_millis(15)));
        b.write(FileKind::Key, "k", b"key", false).unwrap();
        for _ in 0..3 {
            b.read(FileKind::Key, "k").unwrap();
        }
        let reads = b.snapshot().get(Operation::Read, FileKind::Key);
        assert_eq!(reads.calls, 3);
        assert!(
            reads.latency_total >= Duration::from_millis(45),
            "{reads:?}"
        );
        assert!(reads.latency_max >= Duration::from_millis(15), "{reads:?}");
        assert!(reads.latency_max <= reads.latency_total);
        // Above 10 ms: the third bucket or a slower one, never the first two.
        assert_eq!(reads.buckets[..2], [0, 0]);
        assert_eq!(reads.buckets.iter().sum::<u64>(), 3);
        let writes = b.snapshot().get(Operation::Write, FileKind::Key);
        assert_eq!(writes.buckets.iter().sum::<u64>(), 1);
    }
}
