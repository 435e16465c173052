//! Listing and deleting: ListObjectsV2 pages (1,000 keys each) turned into repository file names,
//! single and batched deletes (DeleteObjects, 1,000 keys a request, one by one where the store
//! lacks it), and the bucket itself (checked, and created when asked).

use crate::client::Bucket;
use crate::error::S3Error;
use crate::retry::{classify, FailureKind};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier,
};
use stowage_core::backend::{FileInfo, FileKind};

/// Keys in one ListObjectsV2 page and in one DeleteObjects request (S3's maximum for both).
pub(crate) const BATCH: usize = 1000;

impl Bucket {
    /// The files of `kind` (not `Config`) under the repository's prefix, with their sizes.
    /// Keys that are not repository files (temporary names, deeper folders) are skipped.
    pub(crate) async fn list_files(&self, kind: FileKind) -> Result<Vec<FileInfo>, S3Error> {
        let prefix = self.loc.under_prefix(&format!("{}/", kind.dir_name()));
        let keys = self.list_keys(&prefix).await?;
        Ok(keys
            .into_iter()
            .filter_map(|(key, size)| {
                let rest = &key[prefix.len()..];
                let name = match (kind, rest.split_once('/')) {
                    // data/XX/NAME
                    (FileKind::Pack, Some((_, name))) if !name.contains('/') => name,
                    (FileKind::Pack, _) => return None,
                    (_, None) => rest,
                    (_, Some(_)) => return None,
                };
                (!name.is_empty() && !name.starts_with('.')).then(|| FileInfo {
                    name: name.to_string(),
                    size,
                })
            })
            .collect())
    }

    /// Deletes one object; one that does not exist is not an error.
    pub(crate) async fn delete(&self, key: &str) -> Result<(), S3Error> {
        let r = self
            .retry("remove", key, |_| {
                self.timed(self.opts.timeout, async {
                    self.client
                        .delete_object()
                        .bucket(&self.loc.bucket)
                        .key(key)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(classify)
                })
            })
            .await;
        match r {
            Ok(()) => Ok(()),
            Err((f, _)) if f.kind == FailureKind::NotFound => Ok(()),
            Err(e) => Err(self.error("remove", key, e)),
        }
    }

    /// Deletes files of `kind`, [`BATCH`] keys a request; files that do not exist are not an
    /// error.
    pub(crate) async fn delete_many(
        &self,
        kind: FileKind,
        names: &[String],
    ) -> Result<(), S3Error> {
        for batch in names.chunks(BATCH) {
            let ids: Vec<ObjectIdentifier> = batch
                .iter()
                .filter_map(|n| {
                    ObjectIdentifier::builder()
                        .key(self.loc.key(kind, n))
                        .build()
                        .ok()
                })
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| S3Error::Request {
                    op: "remove",
                    object: kind.dir_name().to_string(),
                    detail: e.to_string(),
                })?;
            let what = format!("{} {} files", batch.len(), kind);
            let r = self
                .retry("remove", &what, |_| {
                    let delete = delete.clone();
                    self.timed(self.opts.timeout, async move {
                        self.client
                            .delete_objects()
                            .bucket(&self.loc.bucket)
                            .delete(delete)
                            .send()
                            .await
                            .map_err(classify)
                    })
                })
                .await;
            match r {
                Ok(out) => {
                    if let Some(e) = out.errors().iter().find(|e| e.code() != Some("NoSuchKey")) {
                        return Err(S3Error::Request {
                            op: "remove",
                            object: e.key().unwrap_or("?").to_string(),
                            detail: format!(
                                "{}: {}",
                                e.code().unwrap_or("error"),
                                e.message().unwrap_or("")
                            ),
                        });
                    }
                }
                // Stores without DeleteObjects: one by one.
                Err((f, _)) if f.kind == FailureKind::NotImplemented => {
                    for n in batch {
                        self.delete(&self.loc.key(kind, n)).await?;
                    }
                }
                Err(e) => return Err(self.error("remove", &what, e)),
            }
        }
        Ok(())
    }

    pub(crate) async fn list_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retry("list", prefix, |_| {
                    let req = self
                        .client
                        .list_objects_v2()
                        .bucket(&self.loc.bucket)
                        .prefix(prefix)
                        .max_keys(BATCH as i32)
                        .set_continuation_token(token.clone());
                    self.timed(self.opts.timeout, async move {
                        req.send().await.map_err(classify)
                    })
                })
                .await
                .map_err(|e| self.error("list", prefix, e))?;
            for obj in page.contents() {
                if let Some(key) = obj.key() {
                    out.push((key.to_string(), obj.size().unwrap_or(0).max(0) as u64));
                }
            }
            if page.is_truncated() == Some(true) {
                match page.next_continuation_token() {
                    Some(t) if Some(t) != token.as_deref() => token = Some(t.to_string()),
                    _ => {
                        return Err(S3Error::Request {
                            op: "list",
                            object: prefix.to_string(),
                            detail: "the store says the listing is truncated but gives no new continuation token".into(),
                        })
                    }
                }
            } else {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) async fn ensure_bucket(&self) -> Result<(), S3Error> {
        let head = self
            .retry("open bucket", "", |_| {
                self.timed(self.opts.timeout, async {
                    self.client
                        .head_bucket()
                        .bucket(&self.loc.bucket)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(classify)
                })
            })
            .await;
        match head {
            Ok(()) => return Ok(()),
            Err((f, _)) if matches!(f.kind, FailureKind::NotFound | FailureKind::NoSuchBucket) => {}
            // HEAD answers carry no error code: ask again with a request whose answer does, to
            // tell wrong credentials from missing permissions.
            Err((f, n)) if f.kind == FailureKind::AccessDenied => {
                self.list_one().await?;
                return Err(self.error("open bucket", "", (f, n)));
            }
            Err(e) => return Err(self.error("open bucket", "", e)),
        }
        if !self.opts.create_bucket {
            return Err(S3Error::NoSuchBucket {
                bucket: self.loc.bucket.clone(),
                endpoint: self.endpoint.clone(),
            });
        }
        let region = self.client.config().region().map(|r| r.to_string());
        let created = self
            .retry("create bucket", "", |_| {
                let mut req = self.client.create_bucket().bucket(&self.loc.bucket);
                if let Some(r) = region.as_deref().filter(|r| *r != "us-east-1") {
                    req = req.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(r))
                            .build(),
                    );
                }
                self.timed(self.opts.timeout, async move {
                    req.send().await.map(|_| ()).map_err(classify)
                })
            })
            .await;
        match created {
            Ok(()) => {
                tracing::info!("created bucket {} at {}", self.loc.bucket, self.endpoint);
                Ok(())
            }
            Err((f, _)) if f.kind == FailureKind::BucketOwnedByYou => Ok(()),
            Err(e) => Err(self.error("create bucket", "", e)),
        }
    }

    /// Lists one key, for its error.
    pub(crate) async fn list_one(&self) -> Result<(), S3Error> {
        self.retry("list", "", |_| {
            self.timed(self.opts.timeout, async {
                self.client
                    .list_objects_v2()
                    .bucket(&self.loc.bucket)
                    .max_keys(1)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(classify)
            })
        })
        .await
        .map_err(|e| self.error("list", "", e))
    }
}
