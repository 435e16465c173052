//! The component processes of one cluster and the guarantees about them:
//!
//! - each runs in a process group of its own (stopping it stops anything it started);
//! - each gets `PR_SET_PDEATHSIG(SIGKILL)`, so a test process that is killed (SIGKILL, a crash)
//!   takes its cluster with it instead of leaving servers behind. The signal follows the *thread*
//!   that forked the child, so every component is forked by one supervisor thread per cluster,
//!   which lives exactly as long as the cluster: a test's thread or a runtime's worker exiting
//!   cannot kill a cluster that is still in use;
//! - stopping sends SIGTERM to each group in the reverse of the start order, waits up to
//!   [`STOP_GRACE`], then SIGKILLs what is left of the group before reaping its leader (a group's
//!   id cannot be reused while its leader is unreaped, so the SIGKILL never reaches a stranger);
//! - stdout and stderr go to `DIR/logs/<component>.log`; [`log_tail`] reads the end of one.
//!
//! This is the one module with `unsafe`: the `pre_exec` hook.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::{ClusterError, Result};

/// How long a component gets to exit after SIGTERM before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// The thread that forks a cluster's components (see the module comment for why).
pub(crate) struct Supervisor {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    pub fn new() -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("stowage-cluster-supervisor".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .map_err(|e| ClusterError::io("starting the supervisor thread", e))?;
        Ok(Supervisor {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Starts `command` as component `name`, its output appended to `log`.
    pub fn spawn(&self, name: &'static str, mut command: Command, log: &Path) -> Result<Component> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| ClusterError::io(format!("opening {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| ClusterError::io(format!("opening {}", log.display()), e))?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // The testkit's one unsafe block: `pre_exec` is unsafe because the hook runs between fork
        // and exec, and std has no safe way to ask for a parent-death signal.
        // SAFETY: the hook runs in the forked child before exec and only makes the prctl system
        // call (async-signal-safe, no allocation, no locks).
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = reply_tx.send(command.spawn());
        });
        let spawned = self
            .jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .and_then(|()| reply_rx.recv().ok())
            .unwrap_or_else(|| Err(std::io::Error::other("the supervisor thread is gone")));
        let child = spawned.map_err(|e| ClusterError::io(format!("starting {name}"), e))?;
        Ok(Component {
            name,
            child,
            log: log.to_path_buf(),
        })
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One running component process.
pub(crate) struct Component {
    pub name: &'static str,
    child: Child,
    pub log: PathBuf,
}

impl Component {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has; the process stays unreaped either way.
    pub fn exit_status(&self) -> Option<String> {
        let pid = Pid::from_raw(self.child.id() as i32);
        match waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(WaitStatus::Exited(_, code)) => Some(format!("exit status {code}")),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(format!("killed by {sig}")),
            Ok(other) => Some(format!("{other:?}")),
            Err(e) => Some(format!("cannot wait for it: {e}")),
        }
    }

    /// An error for a component that exited while it was expected to run.
    pub fn exited_error(&self, status: String) -> ClusterError {
        ClusterError::ComponentExited {
            component: self.name,
            status,
            log_tail: log_tail(&self.log, 40),
        }
    }

    fn signal_group(&self, signal: Signal) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), signal);
    }
}

/// Stops the components in the reverse of their start order, each with SIGTERM, up to
/// [`STOP_GRACE`] to exit, then SIGKILL to whatever remains of its group, and its leader reaped.
/// One at a time because order matters: an API server whose etcd is already gone waits out its
/// whole grace period instead of exiting in about a second.
pub(crate) fn stop_all(components: &mut Vec<Component>) {
    while let Some(mut c) = components.pop() {
        c.signal_group(Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && c.exit_status().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        c.signal_group(Signal::SIGKILL);
        let _ = c.child.wait();
    }
}

/// The last `lines` lines of a log file (at most its last 64 KiB), or a note saying why not.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let all: Vec<&str> = text.lines().collect();
        Ok(all[all.len().saturating_sub(lines)..].join("\n"))
    };
    read().unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}
