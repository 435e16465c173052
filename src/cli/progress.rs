//! Progress bars on a terminal. Backup and restore feed them with the engine's progress events
//! (see `stowage_core::progress`), which call [`Progress::update`] from the engine's thread at
//! its bounded rate; other commands have a thread sample their counters ([`Progress::start`]).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A progress display, cleared when dropped. Does nothing off a terminal.
pub struct Progress {
    shown: Option<Arc<Shown>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Shown {
    bar: ProgressBar,
    /// Whether the bar shows a total (else a spinner).
    has_total: AtomicBool,
}

impl Shown {
    fn update(&self, done: u64, total: Option<u64>, msg: String) {
        if let Some(t) = total {
            if !self.has_total.swap(true, Ordering::Relaxed) {
                self.bar.set_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                    )
                    .unwrap()
                    .progress_chars("=> "),
                );
            }
            self.bar.set_length(t);
        }
        self.bar.set_position(done);
        self.bar.set_message(msg);
    }
}

impl Progress {
    /// A display on stderr, if `enabled` and stderr is a terminal, updated by
    /// [`update`](Self::update).
    pub fn new(enabled: bool) -> Progress {
        let shown = (enabled && std::io::stderr().is_terminal()).then(|| {
            Arc::new(Shown {
                bar: ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} {spinner} {bytes} {bytes_per_sec} {msg}",
                    )
                    .unwrap(),
                ),
                has_total: AtomicBool::new(false),
            })
        });
        Progress {
            shown,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }

    /// A display that a thread updates every 100 ms from `sample`, which returns (done bytes,
    /// total bytes if known, message).
    pub fn start<F>(enabled: bool, sample: F) -> Progress
    where
        F: Fn() -> (u64, Option<u64>, String) + Send + 'static,
    {
        let mut p = Progress::new(enabled);
        if let Some(shown) = p.shown.clone() {
            let stop = p.stop.clone();
            p.thread = Some(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (done, total, msg) = sample();
                    shown.update(done, total, msg);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }));
        }
        p
    }

    /// Shows `done` bytes of `total` (a spinner while the total is unknown) and a message.
    pub fn update(&self, done: u64, total: Option<u64>, msg: String) {
        if let Some(s) = &self.shown {
            s.update(done, total, msg);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(s) = &self.shown {
            s.bar.finish_and_clear();
        }
    }
}
