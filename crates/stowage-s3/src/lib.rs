//! A repository in an S3 bucket: AWS S3 or any S3-compatible store (MinIO, Ceph RGW, GCS through
//! its interoperability API, ...).
//!
//! Object keys are the repository's relative paths (`config`, `keys/ID`, `data/XX/ID`, ...) under
//! an optional prefix. The [`Backend`](stowage_core::backend::Backend) trait is synchronous and
//! called from many plain threads at once; the backend keeps a private tokio runtime on which
//! every request runs.
//!
//! # Calling it from async code
//!
//! The engine is synchronous, and the one way async code calls it is
//! `tokio::task::spawn_blocking` around the engine call (a backup, a restore, a prune), which
//! then calls this backend from a blocking thread. The backend also tolerates being called
//! directly from a thread that belongs to a tokio runtime, multi-thread or current-thread: it
//! neither panics nor deadlocks there (the request runs on the backend's own runtime while the
//! caller waits), but it does block that thread for as long as the request takes, stalling the
//! other tasks of a current-thread runtime. Creating and dropping an [`S3Backend`] inside a
//! runtime is fine too.
//!
//! What it guarantees on top of the trait:
//! - every request is retried with exponential backoff and full jitter on throttling (503
//!   SlowDown, 429), 5xx, timeouts, connection resets and truncated or garbled responses, up to a
//!   bounded number of attempts; then the error names the operation and the object;
//! - a write is one PUT (or one completed multipart upload, aborted on failure), so readers never
//!   see a partial object; every upload carries a Content-MD5 the store verifies;
//! - `exclusive` writes send `If-None-Match: *`, so two writers cannot both create an object;
//!   a store that answers 501 to it gets a check-then-write instead;
//! - credentials come only from the standard AWS chain (environment, profile, web identity, ECS,
//!   instance metadata), never from the repository URL;
//! - every error is an [`S3Error`] with a class (retry, fix the configuration, a bug) and a
//!   stable kind (`s3.no_such_bucket`, ...), carried into
//!   [`BackendError::Remote`](stowage_core::backend::BackendError::Remote).
//!
//! The modules follow the layers of a request: `location` and `options` say where and how;
//! `client` builds the SDK client and its TLS; `retry` classifies failures and retries them;
//! `reads`, `uploads` and `listing` are the requests; `backend` puts them behind the `Backend`
//! trait through `bridge`, the runtime they run on.

mod backend;
mod bridge;
mod client;
mod error;
mod listing;
mod location;
mod options;
mod reads;
mod retry;
mod uploads;

pub use backend::{RequestCounts, S3Backend};
pub use error::S3Error;
pub use location::S3Location;
pub use options::{S3Options, Sse, StaticCredentials, OPTION_KEYS};
