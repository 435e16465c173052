//! What can go wrong starting, using or stopping a test cluster. Errors about a component carry
//! the last lines of its log, so a failed start explains itself without a second look.

use std::path::PathBuf;
use std::time::Duration;

/// An error of the cluster harness.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The control-plane binaries could not be found or built.
    #[error("the Kubernetes test environment is not available: {0}")]
    Binaries(String),

    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },

    /// Generating a key or certificate failed.
    #[error("generating the cluster's certificates: {0}")]
    Pki(#[from] rcgen::Error),

    /// A component exited while the cluster was starting.
    #[error("{component} exited during start-up ({status}); the end of its log:\n{log_tail}")]
    ComponentExited {
        /// The component (etcd, kube-apiserver, ...).
        component: &'static str,
        /// How it exited.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },

    /// Something the start-up waits for did not happen in time.
    #[error(
        "timed out after {timeout:?} waiting for {what} (last observation: {last})\n{log_tails}"
    )]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last state seen.
        last: String,
        /// The last lines of every component's log.
        log_tails: String,
    },

    /// A client certificate was asked for with more groups than the harness can put in one.
    #[error("a client certificate carries at most two groups, {0} were asked for")]
    TooManyGroups(usize),

    /// A request to the API server failed.
    #[error("Kubernetes API request failed: {0}")]
    Api(#[from] kube::Error),

    /// A kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// Why it could not be used.
        #[source]
        source: kube::config::KubeconfigError,
    },

    /// A cluster directory does not have the layout the harness writes.
    #[error("{path} is not a stowage test cluster directory: {reason}")]
    NotAClusterDir {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
}

impl ClusterError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ClusterError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The harness's result type.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
