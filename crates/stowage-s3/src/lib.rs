//! A repository in an S3 bucket: AWS S3 or any S3-compatible store (MinIO, Ceph RGW, GCS through
//! its interoperability API, ...).
//!
//! Object keys are the repository's relative paths (`config`, `keys/ID`, `data/XX/ID`, ...) under
//! an optional prefix. The [`Backend`] trait is synchronous and called from many plain threads at
//! once; the backend keeps a private tokio runtime and blocks on it in every method.
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
//!   instance metadata), never from the repository URL.

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
pub use options::{S3Options, Sse, OPTION_KEYS};
