//! Progress of a running backup or restore as structured events, and what a caller hands an
//! operation to watch and steer it ([`Control`]).
//!
//! The engine counts with relaxed atomic additions where the work happens (per chunk, per blob
//! written, per file), never calls the caller from there, and has one thread of its own sample
//! the counters and deliver a [`ProgressEvent`] at most every [`Control::interval`], plus a last
//! one (with `finished` set) when the operation ends, whether it succeeded, failed or was
//! cancelled. A sink therefore never slows the work down and may be as slow as it likes (a
//! status update to an API server); events it is too slow for are skipped, not queued.

use crate::cancel::CancelToken;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How often progress is delivered unless the caller says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

/// A snapshot of an operation's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressEvent {
    /// Files finished: stored (backup) or written with all their content (restore).
    pub files_done: u64,
    /// Files the operation will handle, if known. While [`counting`](Self::counting) is set
    /// this is the number found so far and still grows.
    pub files_expected: Option<u64>,
    /// Content bytes read (backup) or written (restore).
    pub bytes_done: u64,
    /// Content bytes the operation will handle, if known (not for a stream); grows while
    /// [`counting`](Self::counting) is set.
    pub bytes_expected: Option<u64>,
    /// Bytes of content new to the repository (backup only; zero for a restore).
    pub bytes_added: u64,
    /// Warnings so far (entries that could not be read or written).
    pub warnings: u64,
    /// Whether the expected totals are still being counted (a backup's walk is not over).
    pub counting: bool,
    /// What is being worked on: a directory being listed, a large file being read, a pack
    /// being restored.
    pub current: Option<String>,
    /// Set on the last event of the operation, which always comes.
    pub finished: bool,
}

/// Receives progress events, from a thread of the engine (not the caller's).
pub trait ProgressSink: Sync {
    /// Called at most once per interval, and once more with `finished` set at the end.
    fn progress(&self, event: &ProgressEvent);
}

impl<F: Fn(&ProgressEvent) + Sync> ProgressSink for F {
    fn progress(&self, event: &ProgressEvent) {
        self(event)
    }
}

/// What a caller gives a running operation: a token to cancel it with, and where its progress
/// goes.
#[derive(Clone)]
pub struct Control<'a> {
    /// Checked by the operation at every file, chunk and blob; see [`crate::cancel`].
    pub cancel: CancelToken,
    /// Receives [`ProgressEvent`]s; `None`: nobody watches, and no thread samples.
    pub progress: Option<&'a dyn ProgressSink>,
    /// Least time between two events (the last one excepted).
    pub interval: Duration,
}

impl Default for Control<'_> {
    fn default() -> Self {
        Control {
            cancel: CancelToken::new(),
            progress: None,
            interval: DEFAULT_INTERVAL,
        }
    }
}

impl<'a> Control<'a> {
    /// No progress, and a token of its own (which nobody else can cancel).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, cancelled through `token`.
    pub fn with_cancel(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// The same, delivering progress to `sink`.
    pub fn with_progress(mut self, sink: &'a dyn ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }
}

/// The counters an operation updates as it works, sampled into events.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    pub files_done: AtomicU64,
    pub files_expected: AtomicU64,
    pub bytes_done: AtomicU64,
    pub bytes_expected: AtomicU64,
    pub bytes_added: AtomicU64,
    pub warnings: AtomicU64,
    /// Whether `files_expected` and `bytes_expected` mean anything.
    pub expected_known: AtomicBool,
    /// Whether only `bytes_expected` is unknown (a stream).
    pub bytes_unknown: AtomicBool,
    pub counting: AtomicBool,
    current: Mutex<Option<String>>,
}

impl Meter {
    /// Adds to a counter (relaxed: only the sampler reads it).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Names what is being worked on. Skipped when another thread is setting it at that moment:
    /// it is only a hint, and no worker waits for another here.
    pub fn set_current(&self, what: impl FnOnce() -> String) {
        if let Ok(mut c) = self.current.try_lock() {
            *c = Some(what());
        }
    }

    /// Sets the expected totals, known from the start.
    pub fn expect(&self, files: u64, bytes: Option<u64>) {
        self.files_expected.store(files, Ordering::Relaxed);
        self.bytes_expected
            .store(bytes.unwrap_or(0), Ordering::Relaxed);
        self.bytes_unknown.store(bytes.is_none(), Ordering::Relaxed);
        self.expected_known.store(true, Ordering::Relaxed);
    }

    /// The counters as an event.
    pub fn sample(&self, finished: bool) -> ProgressEvent {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let known = self.expected_known.load(Ordering::Relaxed);
        ProgressEvent {
            files_done: ld(&self.files_done),
            files_expected: known.then(|| ld(&self.files_expected)),
            bytes_done: ld(&self.bytes_done),
            bytes_expected: (known && !self.bytes_unknown.load(Ordering::Relaxed))
                .then(|| ld(&self.bytes_expected)),
            bytes_added: ld(&self.bytes_added),
            warnings: ld(&self.warnings),
            counting: self.counting.load(Ordering::Relaxed),
            current: if finished {
                None
            } else {
                self.current.lock().unwrap().clone()
            },
            finished,
        }
    }

    /// Runs `work` while a thread delivers this meter's events to `control`'s sink at its
    /// interval; then delivers the last event. Without a sink, just runs `work`.
    pub fn observe<R>(&self, control: &Control<'_>, work: impl FnOnce() -> R) -> R {
        let Some(sink) = control.progress else {
            return work();
        };
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                // Returns when the sender is dropped, at the latest one interval later.
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(control.interval)
                {
                    sink.progress(&self.sample(false));
                }
            });
            let r = work();
            drop(stop_tx);
            r
        });
        sink.progress(&self.sample(true));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn events_come_at_the_interval_and_one_last_one() {
        let meter = Meter::default();
        let events = Mutex::new(Vec::new());
        let sink = |e: &ProgressEvent| events.lock().unwrap().push((Instant::now(), e.clone()));
        let control = Control {
            interval: Duration::from_millis(20),
            ..Control::new().with_progress(&sink)
        };
        meter.expect(3, Some(30));
        let started = Instant::now();
        meter.observe(&control, || {
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(30));
                Meter::add(&meter.files_done, 1);
                Meter::add(&meter.bytes_done, 10);
            }
        });
        let events = events.into_inner().unwrap();
        let (last_at, last) = events.last().unwrap();
        assert!(last.finished && last.files_done == 3 && last.bytes_done == 30);
        assert_eq!(last.files_expected, Some(3));
        assert_eq!(last.bytes_expected, Some(30));
        assert_eq!(events.iter().filter(|(_, e)| e.finished).count(), 1);
        // 90 ms of work at 20 ms: a few events, never more than one per interval.
        let elapsed = last_at.duration_since(started).as_millis() as usize;
        assert!(
            events.len() >= 2 && events.len() <= elapsed / 20 + 1,
            "{}",
            events.len()
        );
    }

    #[test]
    fn without_a_sink_nothing_is_sampled() {
        let meter = Meter::default();
        assert_eq!(meter.observe(&Control::new(), || 7), 7);
        assert_eq!(meter.sample(false).files_expected, None);
    }
}
