//! [`S3Backend`]: the [`Backend`] trait on top of a [`Bucket`]. Each method builds one future
//! that owns what it needs (the bucket by `Arc`, keys and data by value) and hands it to the
//! backend's runtime through [`IoRuntime::run`], the crate's one bridge from synchronous callers
//! to async requests.

use crate::bridge::IoRuntime;
use crate::client::{build_client, http_client, Bucket};
use crate::error::S3Error;
use crate::location::S3Location;
use crate::options::{S3Options, MAX_PARTS, MAX_PUT_SIZE};
use crate::retry::{Failure, FailureKind};
use crate::uploads::content_md5;
use bytes::Bytes;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use stowage_core::backend::{Backend, BackendError, FileInfo, FileKind, Result};

/// Counters of what only the S3 backend sees: the HTTP requests it sent (every attempt counts)
/// and how many of them were retries. Calls of the [`Backend`] methods, bytes and latency are
/// counted by wrapping the backend in
/// [`MeteredBackend`](stowage_core::backend::metered::MeteredBackend).
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// HTTP requests sent, retries included.
    pub requests: AtomicU64,
    /// Requests that were retries of a failed attempt.
    pub retries: AtomicU64,
}

/// A repository in an S3 bucket. See the crate documentation.
pub struct S3Backend {
    // Field order matters: the client must be dropped before the runtime it runs on.
    bucket: Arc<Bucket>,
    runtime: IoRuntime,
}

impl S3Backend {
    /// Connects to the store named by `location` (see [`S3Location::parse`]). Makes no request
    /// but resolving credentials, which fails here with a clear message when there are none.
    pub fn open(location: &str, opts: S3Options) -> Result<S3Backend, S3Error> {
        let loc = S3Location::parse(location)?;
        let runtime = IoRuntime::new()?;
        let http_client = http_client(&opts)?;
        let client = {
            let (loc, opts) = (loc.clone(), opts.clone());
            runtime.run(async move { build_client(&loc, &opts, http_client).await })?
        };
        Ok(S3Backend {
            bucket: Arc::new(Bucket::new(client, loc, opts)),
            runtime,
        })
    }

    /// The requests made so far (each attempt counts).
    pub fn request_counts(&self) -> &RequestCounts {
        &self.bucket.counts
    }

    fn key(&self, kind: FileKind, name: &str) -> String {
        self.bucket.loc.key(kind, name)
    }

    /// Runs `f` with the bucket on the backend's runtime and waits for its result.
    fn run<T, F, Fut>(&self, f: F) -> T
    where
        F: FnOnce(Arc<Bucket>) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime.run(f(self.bucket.clone()))
    }

    fn not_found_or(
        &self,
        kind: FileKind,
        name: &str,
        op: &'static str,
        key: &str,
        e: (Failure, u32),
    ) -> BackendError {
        if e.0.kind == FailureKind::NotFound {
            BackendError::NotFound {
                kind,
                name: name.to_string(),
            }
        } else {
            self.bucket.error(op, key, e).into()
        }
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.bucket.loc.to_string()
    }

    fn create(&self) -> Result<()> {
        let key = self.key(FileKind::Config, "");
        self.run(|b| async move {
            b.ensure_bucket().await?;
            match b.retry("stat", &key, |_| b.head(&key)).await {
                Ok(_) => Err(BackendError::AlreadyExists {
                    kind: FileKind::Config,
                    name: "config".into(),
                }),
                Err((f, _)) if f.kind == FailureKind::NotFound => Ok(()),
                Err(e) => Err(b.error("stat", &key, e).into()),
            }
        })
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        if kind == FileKind::Config {
            return match self.size(kind, "") {
                Ok(size) => Ok(vec![FileInfo {
                    name: "config".into(),
                    size,
                }]),
                Err(BackendError::NotFound { .. }) => Ok(vec![]),
                Err(e) => Err(e),
            };
        }
        Ok(self.run(|b| async move { b.list_files(kind).await })?)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let key = self.key(kind, name);
        let k = key.clone();
        self.run(|b| async move { b.retry("read", &k, |_| b.get(&k, None)).await })
            .map_err(|e| self.not_found_or(kind, name, "read", &key, e))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let key = self.key(kind, name);
        let short = || BackendError::ShortRead {
            kind,
            name: name.to_string(),
            offset,
            len,
        };
        if offset.checked_add(len).is_none() {
            return Err(short());
        }
        if len == 0 {
            // A Range cannot ask for nothing; still say whether the file exists and is that long.
            return if self.size(kind, name)? >= offset {
                Ok(Vec::new())
            } else {
                Err(short())
            };
        }
        let k = key.clone();
        let r = self.run(|b| async move {
            b.retry("read", &k, |_| b.get(&k, Some((offset, len))))
                .await
        });
        match r {
            Ok(v) => Ok(v),
            Err((f, _)) if f.kind == FailureKind::InvalidRange => Err(short()),
            Err(e) => Err(self.not_found_or(kind, name, "read", &key, e)),
        }
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
        let key = self.key(kind, name);
        let opts = &self.bucket.opts;
        if data.len() as u64 > opts.max_object_size().min(MAX_PUT_SIZE * MAX_PARTS) {
            return Err(S3Error::Request {
                op: "write",
                object: key,
                detail: format!(
                    "{} bytes is more than S3 can store in one object",
                    data.len()
                ),
            }
            .into());
        }
        let multipart = !exclusive && data.len() as u64 > opts.multipart_threshold;
        let md5 = if multipart {
            String::new()
        } else {
            content_md5(data)
        };
        let data = Bytes::copy_from_slice(data);
        let name = name.to_string();
        self.run(|b| async move {
            if exclusive {
                b.write_exclusive(kind, &name, &key, data, &md5).await
            } else if multipart {
                Ok(b.write_multipart(&key, data).await?)
            } else {
                b.retry("write", &key, |_| b.put(&key, &data, &md5, false))
                    .await
                    .map_err(|e| b.error("write", &key, e).into())
            }
        })
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let key = self.key(kind, name);
        Ok(self.run(|b| async move { b.delete(&key).await })?)
    }

    fn remove_many(&self, kind: FileKind, names: &[String]) -> Result<()> {
        let names = names.to_vec();
        Ok(self.run(|b| async move { b.delete_many(kind, &names).await })?)
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let key = self.key(kind, name);
        let k = key.clone();
        self.run(|b| async move { b.retry("stat", &k, |_| b.head(&k)).await })
            .map_err(|e| self.not_found_or(kind, name, "stat", &key, e))
    }

    fn preferred_uploaders(&self) -> usize {
        self.bucket.opts.connections
    }

    fn preferred_read_size(&self) -> u64 {
        // A whole 16 MiB pack (and then some) in one GET.
        32 << 20
    }
}
