//! Lock files (`locks/<id>`): who is working on the repository right now.
//!
//! Locks are not exclusive for backups: any number of backups run at once. They exist so that
//! prune can tell which operations might still hold on to a view of the index from before its
//! marks (see `repo-format/`, "Concurrency"), and so that two prunes do not run at once. A lock
//! is refreshed every [`REFRESH_INTERVAL`]; one not refreshed for [`STALE_AFTER`], or whose
//! process is gone from this host, is stale and ignored (and removed by `unlock`).

use super::error::{RepoError, Result};
use super::Repository;
use crate::backend::FileKind;
use crate::crypto::FileAad;
use crate::id::Id;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a held lock is rewritten.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long belongs to a dead process.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// Largest lock file accepted.
pub const MAX_LOCK_LEN: usize = 64 * 1024;

/// What a lock holder is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// Adds data; never deletes. Many may run at once.
    Backup,
    /// Deletes data. At most one at a time.
    Prune,
    /// Reads data for a long time (restore, check): prune does not delete packs it may need.
    Read,
    /// A kind written by a newer version: treated like a backup (it blocks deletion).
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for LockKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockKind::Backup => "backup",
            LockKind::Prune => "prune",
            LockKind::Read => "read",
            LockKind::Unknown => "operation",
        })
    }
}

/// The content of a lock file (sealed JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Stays the same when the lock is refreshed (the file name changes).
    pub lock_id: Id,
    /// What the holder is doing.
    pub kind: LockKind,
    /// The holder's host name.
    pub hostname: String,
    /// The holder's process id on its host.
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (`/proc/PID/stat` field 22), so a
    /// recycled pid is not mistaken for the holder.
    pub process_start: u64,
    /// When the lock was first taken.
    pub created: DateTime<Utc>,
    /// When it was last rewritten.
    pub refreshed: DateTime<Utc>,
    /// Identifies the kernel and pid namespace of the holder (boot id and pid namespace), so
    /// only a process that can really see the holder's pid judges it by its pid. Empty when
    /// unknown: then only the refresh time counts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_id: String,
}

/// The boot id and pid namespace of this process, or "" if they cannot be read.
pub fn host_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if boot.trim().is_empty() || ns.is_empty() {
        return String::new();
    }
    format!("{} {}", boot.trim(), ns)
}

fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl LockInfo {
    /// Whether the holder is certainly gone: not refreshed for [`STALE_AFTER`], or on this host
    /// with its process no longer running.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        let age = now.signed_duration_since(self.refreshed);
        if age > ChronoDuration::from_std(STALE_AFTER).expect("constant fits") {
            return true;
        }
        // Judge by the process only from the same kernel boot and pid namespace, and only when
        // the holder's start time was known.
        if !self.host_id.is_empty() && self.host_id == host_id() && self.process_start != 0 {
            return process_start(self.pid) != Some(self.process_start);
        }
        false
    }

    /// The sealed bytes of the lock file.
    pub fn encode(&self, repo: &Repository) -> Vec<u8> {
        repo.keys().seal_file(
            FileAad::Lock,
            &serde_json::to_vec(self).expect("locks serialize"),
        )
    }

    /// Opens and parses the lock file `name`.
    pub fn decode(repo: &Repository, name: &str, sealed: &[u8]) -> Result<LockInfo> {
        let what = format!("lock {}", crate::util::short_name(name));
        if sealed.len() > MAX_LOCK_LEN {
            return Err(RepoError::TooLarge {
                what,
                size: sealed.len() as u64,
                limit: MAX_LOCK_LEN as u64,
            });
        }
        let plain = repo.keys().open_file(FileAad::Lock, &what, sealed)?;
        serde_json::from_slice(&plain).map_err(|e| RepoError::malformed(what, e))
    }
}

/// Reads every lock file. Unreadable ones are skipped with a warning: a damaged lock must not
/// stop maintenance forever, and its holder, if alive, rewrites it within [`REFRESH_INTERVAL`].
///
/// A refresh writes the new file before deleting the old one, so a file that vanishes between
/// listing and reading may have a successor the listing missed: the listing is then taken again
/// until it is stable.
pub fn list_locks(repo: &Repository) -> Result<Vec<(String, LockInfo)>> {
    for _ in 0..20 {
        let first: std::collections::HashSet<String> = repo
            .backend()
            .list(FileKind::Lock)?
            .into_iter()
            .map(|f| f.name)
            .collect();
        let mut out = Vec::new();
        for name in &first {
            let bytes = match repo.backend().read(FileKind::Lock, name) {
                Ok(b) => b,
                Err(crate::backend::BackendError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            match LockInfo::decode(repo, name, &bytes) {
                Ok(info) => out.push((name.clone(), info)),
                Err(e) => tracing::warn!("ignoring {e}"),
            }
        }
        // Listings are not atomic, and a refresh stores its new file before deleting the old:
        // only when a second listing shows no name the first missed is every live lock known.
        let second = repo.backend().list(FileKind::Lock)?;
        if second.iter().all(|f| first.contains(&f.name)) {
            return Ok(out);
        }
    }
    Err(RepoError::ListingUnstable(FileKind::Lock))
}

/// Locks that are not stale.
pub fn live_locks(repo: &Repository) -> Result<Vec<(String, LockInfo)>> {
    let now = Utc::now();
    Ok(list_locks(repo)?
        .into_iter()
        .filter(|(_, l)| !l.is_stale(now))
        .collect())
}

/// Removes stale locks; returns how many.
pub fn remove_stale_locks(repo: &Repository) -> Result<usize> {
    let now = Utc::now();
    let mut n = 0;
    for (name, info) in list_locks(repo)? {
        if info.is_stale(now) {
            repo.backend().remove(FileKind::Lock, &name)?;
            n += 1;
        }
    }
    Ok(n)
}

struct Held {
    info: LockInfo,
    file: String,
}

/// A lock held by this process; refreshed in the background and removed when dropped.
pub struct Lock {
    repo: Arc<Repository>,
    held: Arc<Mutex<Held>>,
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    refresher: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
    /// The `refreshed` time of the last lock file written successfully.
    last_written: Arc<Mutex<DateTime<Utc>>>,
}

fn write_lock(repo: &Repository, info: &LockInfo) -> Result<String> {
    let bytes = info.encode(repo);
    let name = Id::hash_of(&bytes).to_hex();
    repo.backend().write(FileKind::Lock, &name, &bytes, false)?;
    Ok(name)
}

impl Lock {
    /// Takes a lock of `kind`. A prune lock fails if another live prune lock exists.
    pub fn acquire(repo: &Arc<Repository>, kind: LockKind) -> Result<Lock> {
        let now = Utc::now();
        let pid = std::process::id();
        let info = LockInfo {
            lock_id: Id::random(),
            kind,
            hostname: crate::util::hostname(),
            pid,
            process_start: process_start(pid).unwrap_or(0),
            created: now,
            refreshed: now,
            host_id: host_id(),
        };
        let file = write_lock(repo, &info)?;
        let held = Arc::new(Mutex::new(Held { info, file }));
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let failed = Arc::new(AtomicBool::new(false));
        let last_written = Arc::new(Mutex::new(now));
        let refresher = {
            let (repo, held, stop, failed) =
                (repo.clone(), held.clone(), stop.clone(), failed.clone());
            let last_written = last_written.clone();
            std::thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || loop {
                    let (m, cv) = &*stop;
                    let guard = m.lock().unwrap();
                    // `_while` checks the flag before sleeping: a stop signalled before this
                    // thread got here is not lost.
                    let (guard, _) = cv
                        .wait_timeout_while(guard, REFRESH_INTERVAL, |stopped| !*stopped)
                        .unwrap();
                    if *guard {
                        return;
                    }
                    drop(guard);
                    let mut h = held.lock().unwrap();
                    h.info.refreshed = Utc::now();
                    match write_lock(&repo, &h.info) {
                        Ok(name) => {
                            *last_written.lock().unwrap() = h.info.refreshed;
                            let old = std::mem::replace(&mut h.file, name);
                            let _ = repo.backend().remove(FileKind::Lock, &old);
                        }
                        Err(e) => {
                            tracing::warn!("refreshing lock: {e}");
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                })
                .expect("spawning the lock refresher")
        };
        let lock = Lock {
            repo: repo.clone(),
            held,
            stop,
            refresher: Some(refresher),
            failed,
            last_written,
        };
        if kind == LockKind::Prune {
            let me = lock.id();
            let others: Vec<LockInfo> = live_locks(repo)?
                .into_iter()
                .map(|(_, l)| l)
                .filter(|l| l.kind == LockKind::Prune && l.lock_id != me)
                .collect();
            if let Some(o) = others.first() {
                return Err(RepoError::LockConflict {
                    kind: o.kind,
                    hostname: o.hostname.clone(),
                    pid: o.pid,
                    since: o.created,
                });
            }
        }
        Ok(lock)
    }

    /// The identity of this lock (stable across refreshes).
    pub fn id(&self) -> Id {
        self.held.lock().unwrap().info.lock_id
    }

    /// Whether a refresh failed (the lock may look stale to others).
    pub fn refresh_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Whether others certainly still see this lock as live: it was written less than
    /// `STALE_AFTER - REFRESH_INTERVAL` ago. A backup must not store a snapshot otherwise,
    /// since a prune may have taken it for dead and deleted data it relies on.
    ///
    /// Judged by the wall clock, as other hosts judge it (a monotonic clock would not count
    /// time spent suspended).
    pub fn still_held(&self) -> bool {
        let age = Utc::now().signed_duration_since(*self.last_written.lock().unwrap());
        age < ChronoDuration::from_std(STALE_AFTER - REFRESH_INTERVAL).expect("constant fits")
    }

    /// Fails unless [`Lock::still_held`]: called by destructive operations before each phase.
    pub fn ensure_held(&self) -> Result<()> {
        if self.still_held() {
            Ok(())
        } else {
            Err(RepoError::LockLost)
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            *m.lock().unwrap() = true;
            cv.notify_all();
        }
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let file = self.held.lock().unwrap().file.clone();
        if let Err(e) = self.repo.backend().remove(FileKind::Lock, &file) {
            tracing::warn!("removing lock {}: {e}", crate::util::short_name(&file));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(hostname: &str, pid: u32, start: u64, refreshed: DateTime<Utc>) -> LockInfo {
        LockInfo {
            lock_id: Id::random(),
            kind: LockKind::Backup,
            hostname: hostname.into(),
            pid,
            process_start: start,
            created: refreshed,
            refreshed,
            host_id: if hostname == crate::util::hostname() {
                host_id()
            } else {
                "elsewhere".into()
            },
        }
    }

    #[test]
    fn own_live_process_is_not_stale() {
        let pid = std::process::id();
        let l = info(
            &crate::util::hostname(),
            pid,
            process_start(pid).unwrap(),
            Utc::now(),
        );
        assert!(!l.is_stale(Utc::now()));
    }

    #[test]
    fn recycled_pid_on_this_host_is_stale() {
        let pid = std::process::id();
        let l = info(
            &crate::util::hostname(),
            pid,
            process_start(pid).unwrap() + 1,
            Utc::now(),
        );
        assert!(l.is_stale(Utc::now()));
    }

    #[test]
    fn old_lock_of_another_host_is_stale_only_after_the_timeout() {
        let now = Utc::now();
        assert!(!info("elsewhere", 1, 1, now - ChronoDuration::minutes(10)).is_stale(now));
        assert!(info("elsewhere", 1, 1, now - ChronoDuration::minutes(31)).is_stale(now));
    }
}
