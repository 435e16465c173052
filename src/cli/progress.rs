//! Progress bars on a terminal: a thread samples the operation's atomic counters.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A progress display that updates itself until dropped. Does nothing off a terminal.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// `sample` returns (done bytes, total bytes if known, message).
    pub fn start<F>(enabled: bool, sample: F) -> Progress
    where
        F: Fn() -> (u64, Option<u64>, String) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { stop, thread: None };
        }
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (_, total, _) = sample();
            let bar = match total {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                    )
                    .unwrap()
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} {spinner} {bytes} {bytes_per_sec} {msg}",
                    )
                    .unwrap(),
                ),
            };
            while !s.load(Ordering::Relaxed) {
                let (done, total, msg) = sample();
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_position(done);
                bar.set_message(msg);
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
