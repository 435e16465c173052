//! Reading objects: GET of a whole object or a range (checked against the length announced and
//! the range asked for, with a stall timeout on the body) and HEAD for a size.

use crate::client::Bucket;
use crate::retry::{classify, error_chain, Failure, FailureKind};
use aws_sdk_s3::primitives::ByteStream;

impl Bucket {
    /// Reads a response body, giving up when no bytes arrive for `timeout` and when it is not
    /// `expected` bytes long.
    pub(crate) async fn collect(
        &self,
        mut body: ByteStream,
        expected: u64,
    ) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::with_capacity(expected.min(1 << 30) as usize);
        loop {
            match tokio::time::timeout(self.opts.timeout, body.try_next()).await {
                Err(_) => {
                    return Err(Failure::new(
                        FailureKind::Transient,
                        format!(
                            "response body stalled for {:.1}s after {} of {expected} bytes",
                            self.opts.timeout.as_secs_f64(),
                            out.len()
                        ),
                    ))
                }
                Ok(Err(e)) => {
                    return Err(Failure::new(
                        FailureKind::Transient,
                        format!(
                            "reading the response body after {} of {expected} bytes: {}",
                            out.len(),
                            error_chain(&e)
                        ),
                    ))
                }
                Ok(Ok(Some(chunk))) => {
                    if out.len() + chunk.len() > expected as usize {
                        return Err(Failure::new(
                            FailureKind::Transient,
                            format!("response body is longer than the {expected} bytes announced"),
                        ));
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(Ok(None)) => break,
            }
        }
        if out.len() as u64 != expected {
            return Err(Failure::new(
                FailureKind::Transient,
                format!("response body cut short: {} of {expected} bytes", out.len()),
            ));
        }
        Ok(out)
    }

    /// GETs an object or a range of it. `range` is (offset, len), len > 0.
    pub(crate) async fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>, Failure> {
        let mut req = self.client.get_object().bucket(&self.loc.bucket).key(key);
        if let Some((off, len)) = range {
            req = req.range(format!("bytes={}-{}", off, off + len - 1));
        }
        let out = self
            .timed(self.opts.timeout, async {
                req.send().await.map_err(classify)
            })
            .await?;
        let announced = out.content_length().unwrap_or(-1);
        let Ok(announced) = u64::try_from(announced) else {
            return Err(Failure::new(
                FailureKind::Transient,
                "response without a Content-Length",
            ));
        };
        if let Some((_, len)) = range {
            if announced < len {
                // The object is shorter than the range asked for.
                return Err(Failure::new(FailureKind::InvalidRange, ""));
            }
            if out.content_range().is_none() && announced != len {
                return Err(Failure::new(
                    FailureKind::Transient,
                    "the store ignored the Range header",
                ));
            }
        }
        self.collect(out.body, announced).await
    }

    pub(crate) async fn head(&self, key: &str) -> Result<u64, Failure> {
        let out = self
            .timed(self.opts.timeout, async {
                self.client
                    .head_object()
                    .bucket(&self.loc.bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(classify)
            })
            .await?;
        u64::try_from(out.content_length().unwrap_or(-1))
            .map_err(|_| Failure::new(FailureKind::Transient, "HEAD without a Content-Length"))
    }
}
