//! What went wrong with one attempt of one request, whether it is worth another, and the loop
//! that retries with exponential backoff and full jitter. After the last attempt the failure
//! becomes an [`S3Error`] that names the operation and the object.

use crate::client::Bucket;
use crate::error::S3Error;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// First backoff delay; doubled each attempt, capped at [`MAX_BACKOFF`], then jittered.
const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// What went wrong with one attempt of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FailureKind {
    NotFound,
    NoSuchBucket,
    PreconditionFailed,
    InvalidRange,
    NotImplemented,
    BadCredentials(String),
    AccessDenied,
    WrongRegion(Option<String>),
    BucketOwnedByYou,
    BucketTaken,
    Unreachable,
    Tls,
    /// Worth another attempt: throttling, 5xx, timeouts, resets, truncated responses.
    Transient,
    /// A 2xx answer the client could not understand (some stores name XML elements their own
    /// way); retried like `Transient`.
    Unparsed,
    /// Not worth another attempt.
    Permanent,
}

#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }

    pub(crate) fn retryable(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Transient | FailureKind::Unreachable | FailureKind::Unparsed
        )
    }
}

/// The messages of an error and its sources on one line, without repeats and without the
/// SDK's layers of wrapping ("dispatch failure", "io error", ...) that tell a user nothing.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    const NOISE: [&str; 6] = [
        "dispatch failure",
        "io error",
        "other",
        "client error (Connect)",
        "client error (SendRequest)",
        "unhandled error",
    ];
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = one_line(&err.to_string());
        if !s.is_empty() && !NOISE.contains(&s.as_str()) && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// `s` with its line breaks and the indentation after them collapsed to "; ".
pub(crate) fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn looks_like_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "ssl",
        "handshake",
        "invalidcontenttype",
        "corrupt message",
        "peer is incompatible",
        "alert",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// Sorts an SDK error into retryable or not, and into the cases users need told apart.
pub(crate) fn classify<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ConstructionFailure(_) => Failure::new(FailureKind::Permanent, error_chain(&err)),
        SdkError::TimeoutError(_) => Failure::new(FailureKind::Transient, "timed out"),
        SdkError::DispatchFailure(d) => {
            let text = error_chain(&err);
            let lower = text.to_ascii_lowercase();
            if d.is_timeout() {
                Failure::new(FailureKind::Transient, text)
            } else if lower.contains("credential") {
                Failure::new(FailureKind::BadCredentials("no credentials".into()), text)
            } else if looks_like_tls(&text) && !lower.contains("connection reset") {
                Failure::new(FailureKind::Tls, text)
            } else if lower.contains("connection refused")
                || lower.contains("dns error")
                || lower.contains("failed to lookup")
                || lower.contains("no route to host")
                || lower.contains("network is unreachable")
            {
                Failure::new(FailureKind::Unreachable, text)
            } else if d.is_user() {
                Failure::new(FailureKind::Permanent, text)
            } else {
                Failure::new(FailureKind::Transient, text)
            }
        }
        // The response could not be read or parsed: cut short, garbled.
        SdkError::ResponseError(_) => Failure::new(FailureKind::Transient, error_chain(&err)),
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("").to_string();
            let message = s.err().message().unwrap_or("").to_string();
            let region_header = s
                .raw()
                .headers()
                .get("x-amz-bucket-region")
                .map(str::to_string);
            let detail = match (code.is_empty(), message.is_empty()) {
                (true, _) => {
                    // No error code: show the start of whatever the store said instead.
                    let body = s
                        .raw()
                        .body()
                        .bytes()
                        .map(|b| one_line(&String::from_utf8_lossy(&b[..b.len().min(200)])))
                        .unwrap_or_default();
                    if body.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {body}")
                    }
                }
                (false, true) => format!("HTTP {status} {code}"),
                (false, false) => format!("HTTP {status} {code}: {message}"),
            };
            Failure::new(classify_status(status, &code, region_header), detail)
        }
        _ => Failure::new(FailureKind::Transient, error_chain(&err)),
    }
}

fn classify_status(status: u16, code: &str, region: Option<String>) -> FailureKind {
    use FailureKind::*;
    match (status, code) {
        (_, "NoSuchBucket") => NoSuchBucket,
        (_, "NoSuchKey") => NotFound,
        (_, "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded") => {
            Transient
        }
        (_, "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "BadDigest") => Transient,
        (_, "OperationAborted" | "ConditionalRequestConflict" | "IncompleteBody") => Transient,
        (
            _,
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "NotSignedUp",
        ) => BadCredentials(code.to_string()),
        (_, "AccessDenied" | "AllAccessDisabled") => AccessDenied,
        (
            _,
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException",
        ) => WrongRegion(region),
        (_, "BucketAlreadyOwnedByYou") => BucketOwnedByYou,
        (_, "BucketAlreadyExists") => BucketTaken,
        (_, "NotImplemented") => NotImplemented,
        (_, "InvalidRange") => InvalidRange,
        (_, "PreconditionFailed") => PreconditionFailed,
        (301 | 307, _) => WrongRegion(region),
        (403, _) => AccessDenied,
        (404, _) => NotFound,
        (412, _) => PreconditionFailed,
        (416, _) => InvalidRange,
        (408 | 429, _) => Transient,
        (501, _) => NotImplemented,
        (500..=599, _) => Transient,
        (200..=299, _) => Unparsed,
        _ => Permanent,
    }
}

/// Delay before attempt `attempt + 1`: exponential with full jitter.
fn backoff(attempt: u32) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let cap = exp.min(MAX_BACKOFF);
    // Full jitter, but never less than a tenth of the cap so a burst spreads out.
    let frac = rand::random::<f64>() * 0.9 + 0.1;
    cap.mul_f64(frac)
}

impl Bucket {
    /// Runs `attempt` until it succeeds, fails for good or runs out of retries. `attempt` gets
    /// the attempt number (1-based). At most `connections` attempts are in flight at once. `key`
    /// names the object in messages ("" for the bucket).
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        mut attempt: F,
    ) -> Result<T, (Failure, u32)>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            let result = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                self.counts.requests.fetch_add(1, Ordering::Relaxed);
                attempt(n).await
            };
            match result {
                Ok(v) => return Ok(v),
                Err(f) if f.retryable() && n <= self.opts.retries => {
                    let delay = backoff(n);
                    self.counts.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "{op} s3://{}/{key}: {}; retrying in {:.1}s (attempt {} of {})",
                        self.loc.bucket,
                        f.detail,
                        delay.as_secs_f64(),
                        n + 1,
                        self.opts.retries + 1
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(f) => return Err((f, n)),
            }
        }
    }

    /// The error to report for a failed request.
    /// `key` is the object's key, or "" for the bucket itself.
    pub(crate) fn error(
        &self,
        op: &'static str,
        key: &str,
        (f, attempts): (Failure, u32),
    ) -> S3Error {
        let object = format!("s3://{}/{}", self.loc.bucket, key);
        match f.kind {
            FailureKind::NoSuchBucket => S3Error::NoSuchBucket {
                bucket: self.loc.bucket.clone(),
                endpoint: self.endpoint.clone(),
            },
            FailureKind::BucketTaken => S3Error::BucketTaken {
                bucket: self.loc.bucket.clone(),
            },
            FailureKind::BadCredentials(code) if code == "no credentials" => {
                S3Error::NoCredentials { detail: f.detail }
            }
            FailureKind::BadCredentials(code) => S3Error::BadCredentials {
                endpoint: self.endpoint.clone(),
                code,
                op,
                object,
            },
            FailureKind::AccessDenied => S3Error::AccessDenied {
                op,
                object,
                detail: f.detail,
            },
            FailureKind::WrongRegion(actual) => S3Error::WrongRegion {
                bucket: self.loc.bucket.clone(),
                region: self
                    .opts
                    .region
                    .clone()
                    .unwrap_or_else(|| "the one configured".into()),
                actual,
            },
            FailureKind::Unreachable => S3Error::Unreachable {
                endpoint: self.endpoint.clone(),
                detail: f.detail,
                attempts,
            },
            FailureKind::Tls
                if f.detail.contains("InvalidContentType")
                    || f.detail.contains("corrupt message") =>
            {
                S3Error::TlsNotSpoken {
                    endpoint: self.endpoint.clone(),
                    detail: f.detail,
                }
            }
            FailureKind::Tls => S3Error::Tls {
                endpoint: self.endpoint.clone(),
                detail: f.detail,
            },
            FailureKind::Transient | FailureKind::Unparsed => S3Error::GaveUp {
                op,
                object,
                attempts,
                detail: f.detail,
            },
            _ => S3Error::Request {
                op,
                object,
                detail: f.detail,
            },
        }
    }

    /// Waits for a response to start, at most `timeout`.
    pub(crate) async fn timed<T>(
        &self,
        limit: Duration,
        f: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                FailureKind::Transient,
                format!("no response within {:.1}s", limit.as_secs_f64()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        use FailureKind::*;
        assert_eq!(classify_status(503, "SlowDown", None), Transient);
        assert_eq!(classify_status(500, "", None), Transient);
        assert_eq!(classify_status(429, "", None), Transient);
        assert_eq!(classify_status(400, "RequestTimeout", None), Transient);
        assert_eq!(classify_status(404, "", None), NotFound);
        assert_eq!(classify_status(404, "NoSuchKey", None), NotFound);
        assert_eq!(classify_status(404, "NoSuchBucket", None), NoSuchBucket);
        assert_eq!(
            classify_status(403, "InvalidAccessKeyId", None),
            BadCredentials("InvalidAccessKeyId".into())
        );
        assert_eq!(classify_status(403, "AccessDenied", None), AccessDenied);
        assert_eq!(classify_status(412, "", None), PreconditionFailed);
        assert_eq!(classify_status(416, "", None), InvalidRange);
        assert_eq!(classify_status(501, "", None), NotImplemented);
        assert_eq!(
            classify_status(301, "", Some("eu-west-1".into())),
            WrongRegion(Some("eu-west-1".into()))
        );
        assert_eq!(classify_status(400, "InvalidArgument", None), Permanent);
        assert_eq!(classify_status(200, "", None), Unparsed);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let d = backoff(attempt);
            let cap = BASE_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            assert!(d <= cap && d >= cap / 10, "{attempt}: {d:?}");
        }
    }
}
