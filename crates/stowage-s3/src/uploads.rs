//! Writing objects: one PUT with a Content-MD5 for most, a multipart upload (aborted on failure,
//! so no parts are left behind) for large ones, and exclusive creation with `If-None-Match: *`
//! (or, where the store does not support it, check-then-write).

use crate::client::Bucket;
use crate::error::S3Error;
use crate::options::Sse;
use crate::retry::{classify, Failure, FailureKind};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use base64::Engine as _;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::Duration;
use stowage_core::backend::{BackendError, FileKind, Result};

/// Uploads may take as long as `timeout` plus their size at this rate before they are abandoned
/// (a stalled upload is caught sooner by the stalled-stream protection).
const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 64 * 1024;

impl Bucket {
    /// One PUT of a whole object. `if_none_match` makes it fail with PreconditionFailed when the
    /// object exists.
    pub(crate) async fn put(
        &self,
        key: &str,
        data: &Bytes,
        md5: &str,
        if_none_match: bool,
    ) -> Result<(), Failure> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.loc.bucket)
            .key(key)
            .content_length(data.len() as i64)
            .content_md5(md5)
            .body(ByteStream::from(data.clone()));
        if if_none_match {
            req = req.if_none_match("*");
        }
        if let Some(class) = &self.opts.storage_class {
            req = req.storage_class(StorageClass::from(class.as_str()));
        }
        match &self.opts.sse {
            None => {}
            Some(Sse::S3) => req = req.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id }) => {
                req = req
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(key_id.clone())
            }
        }
        let limit = self.upload_limit(data.len());
        self.timed(limit, async {
            req.customize()
                .disable_payload_signing()
                .send()
                .await
                .map(|_| ())
                .map_err(classify)
        })
        .await
    }

    pub(crate) fn upload_limit(&self, len: usize) -> Duration {
        self.opts.timeout + Duration::from_secs(len as u64 / SLOWEST_UPLOAD_BYTES_PER_SEC)
    }

    /// Whether the object at `key` holds exactly `data` (after a conditional write that may have
    /// been ours, whose answer was lost).
    pub(crate) async fn holds(&self, key: &str, data: &Bytes) -> Result<bool, Failure> {
        match self.get(key, None).await {
            Ok(stored) => Ok(stored == data[..]),
            Err(f) if f.kind == FailureKind::NotFound => Ok(false),
            Err(f) => Err(f),
        }
    }

    pub(crate) async fn write_exclusive(
        &self,
        kind: FileKind,
        name: &str,
        key: &str,
        data: Bytes,
        md5: &str,
    ) -> Result<()> {
        let already = || BackendError::AlreadyExists {
            kind,
            name: name.to_string(),
        };
        if self.conditional_writes.load(Ordering::Relaxed) {
            let r = self
                .retry("create", key, |n| {
                    let data = &data;
                    async move {
                        match self.put(key, data, md5, true).await {
                            // An earlier attempt may have succeeded without us hearing of it.
                            Err(f) if f.kind == FailureKind::PreconditionFailed && n > 1 => {
                                if self.holds(key, data).await? {
                                    Ok(())
                                } else {
                                    Err(f)
                                }
                            }
                            r => r,
                        }
                    }
                })
                .await;
            match r {
                Ok(()) => return Ok(()),
                Err((f, _)) if f.kind == FailureKind::PreconditionFailed => return Err(already()),
                Err((f, _)) if f.kind == FailureKind::NotImplemented => {
                    tracing::warn!(
                        "{} does not support conditional writes (If-None-Match); falling back to check-then-write, which cannot stop two concurrent writers",
                        self.endpoint
                    );
                    self.conditional_writes.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(self.error("create", key, e).into()),
            }
        }
        let exists = self
            .retry("stat", key, |_| self.head(key))
            .await
            .map(|_| true)
            .or_else(|(f, n)| {
                if f.kind == FailureKind::NotFound {
                    Ok(false)
                } else {
                    Err((f, n))
                }
            })
            .map_err(|e| self.error("stat", key, e))?;
        if exists {
            return Err(already());
        }
        self.retry("write", key, |_| self.put(key, &data, md5, false))
            .await
            .map_err(|e| self.error("write", key, e).into())
    }

    pub(crate) async fn write_multipart(&self, key: &str, data: Bytes) -> Result<(), S3Error> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.loc.bucket)
            .key(key);
        if let Some(class) = &self.opts.storage_class {
            create = create.storage_class(StorageClass::from(class.as_str()));
        }
        match &self.opts.sse {
            None => {}
            Some(Sse::S3) => create = create.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id }) => {
                create = create
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(key_id.clone())
            }
        }
        let upload_id = self
            .retry("start multipart upload of", key, |_| {
                let create = create.clone();
                self.timed(self.opts.timeout, async move {
                    create.send().await.map_err(classify)
                })
            })
            .await
            .map_err(|e| self.error("start multipart upload of", key, e))?
            .upload_id
            .ok_or_else(|| S3Error::Request {
                op: "start multipart upload of",
                object: key.to_string(),
                detail: "the store returned no upload id".into(),
            })?;
        let result = self.upload_parts(key, &upload_id, &data).await;
        if result.is_err() {
            // No orphaned parts: abort (a store keeps them, and bills them, until then).
            let abort = self
                .retry("abort multipart upload of", key, |_| {
                    self.timed(self.opts.timeout, async {
                        self.client
                            .abort_multipart_upload()
                            .bucket(&self.loc.bucket)
                            .key(key)
                            .upload_id(&upload_id)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(classify)
                    })
                })
                .await;
            match abort {
                Ok(()) => {}
                Err((f, _)) if f.kind == FailureKind::NotFound => {}
                Err((f, _)) => tracing::warn!(
                    "could not abort multipart upload {upload_id} of {key}: {}; a lifecycle rule \
                     (AbortIncompleteMultipartUpload) removes its parts",
                    f.detail
                ),
            }
        }
        result
    }

    pub(crate) async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        data: &Bytes,
    ) -> Result<(), S3Error> {
        let part_size = self.opts.part_size as usize;
        let mut parts = Vec::new();
        for (i, start) in (0..data.len()).step_by(part_size).enumerate() {
            let part = data.slice(start..(start + part_size).min(data.len()));
            let md5 = content_md5(&part);
            let number = i as i32 + 1;
            let etag = self
                .retry("upload part of", key, |_| {
                    let part = part.clone();
                    let md5 = md5.clone();
                    let limit = self.upload_limit(part.len());
                    self.timed(limit, async move {
                        self.client
                            .upload_part()
                            .bucket(&self.loc.bucket)
                            .key(key)
                            .upload_id(upload_id)
                            .part_number(number)
                            .content_length(part.len() as i64)
                            .content_md5(md5)
                            .body(ByteStream::from(part))
                            .customize()
                            .disable_payload_signing()
                            .send()
                            .await
                            .map_err(classify)
                    })
                })
                .await
                .map_err(|e| self.error("upload part of", key, e))?
                .e_tag
                .ok_or_else(|| S3Error::Request {
                    op: "upload part of",
                    object: key.to_string(),
                    detail: format!("the store returned no ETag for part {number}"),
                })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .build(),
            );
        }
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let total = data.len() as u64;
        self.retry("complete multipart upload of", key, |n| {
            let done = done.clone();
            async move {
                let r = self
                    .timed(self.opts.timeout * 2, async {
                        self.client
                            .complete_multipart_upload()
                            .bucket(&self.loc.bucket)
                            .key(key)
                            .upload_id(upload_id)
                            .multipart_upload(done)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(classify)
                    })
                    .await;
                match r {
                    // A retry of a completion whose answer was lost: the upload is gone because
                    // it became the object. Or a success the SDK could not parse (moto, for
                    // one, names the answer's root element differently from AWS).
                    Err(f)
                        if n > 1 && f.kind == FailureKind::NotFound
                            || f.kind == FailureKind::Unparsed =>
                    {
                        match self.head(key).await {
                            Ok(size) if size == total => Ok(()),
                            _ => Err(f),
                        }
                    }
                    r => r,
                }
            }
        })
        .await
        .map_err(|e| self.error("complete multipart upload of", key, e))
    }
}

/// The Content-MD5 header of `data`: the base64 of its MD5 digest.
pub(crate) fn content_md5(data: &[u8]) -> String {
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_base64_of_the_digest() {
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
