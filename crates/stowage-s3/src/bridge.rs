//! The one bridge from the synchronous [`Backend`](stowage_core::backend::Backend) methods to the
//! async requests: the backend's private tokio runtime, and how a caller waits for it.
//!
//! - On a thread outside any tokio runtime (the engine's own worker threads), the future runs
//!   with `block_on`: it is polled on the calling thread, so the calls of many engine threads
//!   proceed in parallel as they always did.
//! - On a thread that belongs to a tokio runtime (wherever `Handle::try_current()` finds one: its
//!   workers, a `block_on`, and its `spawn_blocking` threads too), `block_on` could panic
//!   ("Cannot start a runtime from within a runtime"). The future is then
//!   spawned on the backend's own runtime and the caller waits for its result on a std channel.
//!   Nothing the future needs runs on the caller's runtime, so this cannot deadlock even when the
//!   caller is the only thread of a current-thread runtime; it does block that thread for the
//!   duration of the request, which is why async code should still call the engine through
//!   `tokio::task::spawn_blocking` (see the crate documentation).
//! - Dropping the runtime inside an async context would panic too (it waits for its worker
//!   threads): there it is shut down in the background instead.

use crate::error::S3Error;
use std::future::Future;

/// The runtime the S3 requests run on, and the way callers on any thread wait for them.
pub(crate) struct IoRuntime {
    /// `None` only while being dropped.
    runtime: Option<tokio::runtime::Runtime>,
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
        Ok(IoRuntime {
            runtime: Some(runtime),
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// Runs `f` to completion on this runtime and returns its output, from any thread: a plain
    /// one or one of any tokio runtime (see the module documentation). A panic of `f` is
    /// resumed on the caller.
    pub(crate) fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime();
        if tokio::runtime::Handle::try_current().is_err() {
            return runtime.block_on(f);
        }
        let task = runtime.spawn(f);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(task.await);
        });
        match rx.recv() {
            Ok(Ok(output)) => output,
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(e)) => panic!("an S3 request was cancelled: {e}"),
            Err(_) => panic!("the S3 runtime shut down during a request"),
        }
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Waiting for the worker threads is not allowed here; they stop on their own.
                runtime.shutdown_background();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer() -> u32 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        42
    }

    #[test]
    fn runs_on_a_plain_thread() {
        let io = IoRuntime::new().unwrap();
        assert_eq!(io.run(answer()), 42);
    }

    #[test]
    fn runs_and_drops_inside_a_current_thread_runtime() {
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        outer.block_on(async {
            let io = IoRuntime::new().unwrap();
            assert_eq!(io.run(answer()), 42);
            drop(io);
        });
    }

    #[test]
    fn runs_and_drops_inside_a_multi_thread_runtime() {
        let outer = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let io = outer.block_on(async {
            let io = IoRuntime::new().unwrap();
            assert_eq!(io.run(answer()), 42);
            io
        });
        // And from a spawned task, then a blocking thread of that runtime.
        let io = outer
            .block_on(outer.spawn(async move {
                assert_eq!(io.run(answer()), 42);
                io
            }))
            .unwrap();
        let io = outer
            .block_on(outer.spawn_blocking(move || {
                assert_eq!(io.run(answer()), 42);
                io
            }))
            .unwrap();
        outer.block_on(async move { drop(io) });
    }

    #[test]
    fn a_panic_in_the_future_reaches_the_caller() {
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let io = IoRuntime::new().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            outer.block_on(async { io.run(async { panic!("boom") }) })
        }));
        let payload = r.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    }
}
