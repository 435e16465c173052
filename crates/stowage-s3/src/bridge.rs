//! The backend's private tokio runtime, on which every request runs.

use crate::error::S3Error;
use std::future::Future;

/// The runtime the S3 requests run on.
pub(crate) struct IoRuntime {
    runtime: tokio::runtime::Runtime,
}

impl IoRuntime {
    /// A runtime with two I/O worker threads.
    pub(crate) fn new() -> Result<IoRuntime, S3Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-io")
            .enable_all()
            .build()
            .map_err(|e| S3Error::Runtime(e.to_string()))?;
        Ok(IoRuntime { runtime })
    }

    /// Runs `f` to completion and returns its output.
    pub(crate) fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.block_on(f)
    }
}
