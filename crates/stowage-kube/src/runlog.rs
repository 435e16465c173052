//! One backup's log: every line goes to the process's structured log with the backup's name,
//! and is kept (up to a bound) to be stored in the repository with the backup.

use std::sync::Mutex;

/// Bytes of log kept per backup; later lines are counted, not kept.
pub const MAX_LOG_BYTES: usize = 4 << 20;

/// The log of one run.
#[derive(Debug)]
pub struct RunLog {
    /// `namespace/name` of the object the run is for.
    subject: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    text: String,
    dropped: u64,
    warnings: u64,
    errors: u64,
}

impl RunLog {
    /// An empty log for `subject` (`namespace/name`).
    pub fn new(subject: impl Into<String>) -> Self {
        RunLog {
            subject: subject.into(),
            state: Mutex::new(State::default()),
        }
    }

    fn push(&self, level: &str, line: &str) {
        let mut s = self.state.lock().unwrap();
        match level {
            "warning" => s.warnings += 1,
            "error" => s.errors += 1,
            _ => {}
        }
        let entry = format!(
            "{} {level} {}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            line
        );
        if s.text.len() + entry.len() > MAX_LOG_BYTES {
            s.dropped += 1;
        } else {
            s.text.push_str(&entry);
        }
    }

    /// A line of progress.
    pub fn info(&self, line: &str) {
        tracing::info!(backup = %self.subject, "{line}");
        self.push("info", line);
    }

    /// Something the user should know that does not make the run fail.
    pub fn warn(&self, line: &str) {
        tracing::warn!(backup = %self.subject, "{line}");
        self.push("warning", line);
    }

    /// Something selected that the run could not do.
    pub fn error(&self, line: &str) {
        tracing::error!(backup = %self.subject, "{line}");
        self.push("error", line);
    }

    /// The text kept, with a last line counting those dropped.
    pub fn text(&self) -> String {
        let s = self.state.lock().unwrap();
        let mut text = s.text.clone();
        if s.dropped > 0 {
            text.push_str(&format!(
                "({} more lines not kept: the log is limited to {} MiB)\n",
                s.dropped,
                MAX_LOG_BYTES >> 20
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_up_to_the_bound_and_counts_the_rest() {
        let log = RunLog::new("ns/b");
        log.info("started");
        log.error("ListFailed pods: forbidden");
        let text = log.text();
        assert!(text.contains(" info started\n"), "{text}");
        assert!(
            text.contains(" error ListFailed pods: forbidden\n"),
            "{text}"
        );
        let big = "x".repeat(1 << 20);
        for _ in 0..6 {
            log.info(&big);
        }
        let text = log.text();
        assert!(text.len() <= MAX_LOG_BYTES + 200);
        assert!(
            text.ends_with("more lines not kept: the log is limited to 4 MiB)\n"),
            "{}",
            &text[text.len() - 100..]
        );
    }
}
