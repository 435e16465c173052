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

use aws_sdk_s3::config::{
    RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
    Delete, ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use base64::Engine as _;
use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stowage_core::backend::{Backend, BackendError, FileInfo, FileKind, Result};
use stowage_core::error::ErrorClass;

const MIB: u64 = 1 << 20;
/// S3's smallest multipart part (but the last).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest single PUT and largest part.
const MAX_PUT_SIZE: u64 = 5 << 30;
/// S3's largest number of parts in one upload.
const MAX_PARTS: u64 = 10_000;
/// Keys in one ListObjectsV2 page and in one DeleteObjects request (S3's maximum for both).
const BATCH: usize = 1000;
/// First backoff delay; doubled each attempt, capped at [`MAX_BACKOFF`], then jittered.
const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Uploads may take as long as `timeout` plus their size at this rate before they are abandoned
/// (a stalled upload is caught sooner by the stalled-stream protection).
const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 64 * 1024;

/// Errors of the S3 backend that are not "not found" or "already exists". Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("invalid S3 repository location {location:?}: {reason}")]
    InvalidLocation { location: String, reason: String },
    #[error("invalid option {key}={value:?}: {reason}")]
    InvalidOption {
        key: String,
        value: String,
        reason: String,
    },
    #[error("unknown option {0:?}; S3 options are {known}", known = OPTION_KEYS.join(", "))]
    UnknownOption(String),
    #[error("reading the CA bundle {path}: {reason}")]
    CaBundle { path: PathBuf, reason: String },
    #[error("starting the S3 client: {0}")]
    Runtime(String),
    #[error("no AWS credentials found ({detail}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, choose a profile with AWS_PROFILE, or use a web identity (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE)")]
    NoCredentials { detail: String },
    #[error("bucket {bucket:?} does not exist at {endpoint}; create it, or run `stowage init --create-bucket`")]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error("bucket {bucket:?} is owned by another account; choose another bucket name")]
    BucketTaken { bucket: String },
    #[error("{endpoint} rejected the credentials ({code}) on {op} {object}; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the AWS profile) for this store")]
    BadCredentials {
        endpoint: String,
        code: String,
        op: &'static str,
        object: String,
    },
    #[error("access denied to {op} {object} ({detail}); grant these credentials s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on the bucket")]
    AccessDenied {
        op: &'static str,
        object: String,
        detail: String,
    },
    #[error("bucket {bucket:?} is not in region {region}{hint}; set -o s3.region=REGION")]
    WrongRegion {
        bucket: String,
        region: String,
        hint: String,
    },
    #[error("cannot connect to the S3 endpoint {endpoint} ({detail}) after {attempts} attempts; check the address in the repository URL and that the server is running")]
    Unreachable {
        endpoint: String,
        detail: String,
        attempts: u32,
    },
    #[error("TLS connection to {endpoint} failed ({detail}); {hint}")]
    Tls {
        endpoint: String,
        detail: String,
        hint: &'static str,
    },
    #[error("{op} {object}: gave up after {attempts} attempts: {detail}")]
    GaveUp {
        op: &'static str,
        object: String,
        attempts: u32,
        detail: String,
    },
    #[error("{op} {object}: {detail}")]
    Request {
        op: &'static str,
        object: String,
        detail: String,
    },
}

impl S3Error {
    /// Whether a caller may retry, must change something, or faces a bug.
    pub fn class(&self) -> ErrorClass {
        match self {
            S3Error::Unreachable { .. } | S3Error::GaveUp { .. } => ErrorClass::Transient,
            S3Error::Runtime(_) => ErrorClass::Internal,
            S3Error::InvalidLocation { .. }
            | S3Error::InvalidOption { .. }
            | S3Error::UnknownOption(_)
            | S3Error::CaBundle { .. }
            | S3Error::NoCredentials { .. }
            | S3Error::NoSuchBucket { .. }
            | S3Error::BucketTaken { .. }
            | S3Error::BadCredentials { .. }
            | S3Error::AccessDenied { .. }
            | S3Error::WrongRegion { .. }
            | S3Error::Tls { .. }
            | S3Error::Request { .. } => ErrorClass::Config,
        }
    }
}

impl From<S3Error> for BackendError {
    fn from(e: S3Error) -> Self {
        BackendError::Remote {
            class: e.class(),
            kind: "s3.error",
            source: Box::new(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Location
// ---------------------------------------------------------------------------------------------

/// Where a repository lives, parsed from the repository URL.
///
/// - `s3:https://HOST[:PORT]/BUCKET[/PREFIX]` (also `s3:http://`): a custom endpoint, path-style
///   addressing by default;
/// - `s3:HOST[:PORT]/BUCKET[/PREFIX]`: the same over https (restic's form);
/// - `s3://BUCKET[/PREFIX]`: AWS S3, virtual-hosted-style addressing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// `scheme://host[:port]` of a custom endpoint; `None` for AWS.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Key prefix without leading or trailing slashes; empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    /// Whether `location` names an S3 repository (and so must parse as one).
    pub fn is_s3(location: &str) -> bool {
        location.starts_with("s3:")
    }

    /// Parses a repository URL. Credentials in it are refused: they belong in the AWS chain.
    pub fn parse(location: &str) -> Result<S3Location, S3Error> {
        let bad = |reason: &str| S3Error::InvalidLocation {
            location: redact_userinfo(location),
            reason: reason.to_string(),
        };
        let (endpoint, path) = if let Some(rest) = location.strip_prefix("s3://") {
            (None, rest)
        } else if let Some(rest) = location.strip_prefix("s3:") {
            let (scheme, rest) = if let Some(r) = rest.strip_prefix("https://") {
                ("https", r)
            } else if let Some(r) = rest.strip_prefix("http://") {
                ("http", r)
            } else if rest.contains("://") {
                return Err(bad("the endpoint must be http:// or https://"));
            } else {
                ("https", rest)
            };
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.contains('@') {
                return Err(bad(
                    "credentials never go in the repository URL; use AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, a profile or a web identity",
                ));
            }
            validate_host(host).map_err(|r| bad(&r))?;
            (Some(format!("{scheme}://{host}")), path)
        } else {
            return Err(bad(
                "expected s3:https://HOST[:PORT]/BUCKET[/PREFIX] or s3://BUCKET[/PREFIX]",
            ));
        };
        if path.contains(['?', '#']) {
            return Err(bad("query strings and fragments are not allowed"));
        }
        let path = path.trim_end_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket name is missing"));
        }
        if bucket.contains('@') || bucket.contains(':') && endpoint.is_none() {
            return Err(bad(
                "credentials never go in the repository URL; use AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, a profile or a web identity",
            ));
        }
        if bucket.len() > 255
            || !bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(bad(&format!(
                "{bucket:?} is not a valid bucket name (letters, digits, '.', '-' and '_')"
            )));
        }
        let prefix = prefix.trim_start_matches('/');
        for seg in prefix.split('/').filter(|_| !prefix.is_empty()) {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(bad(
                    "the prefix must not contain empty, '.' or '..' path segments",
                ));
            }
            if seg.chars().any(|c| c.is_control()) {
                return Err(bad("the prefix must not contain control characters"));
            }
        }
        Ok(S3Location {
            endpoint,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The key of a repository file.
    pub fn key(&self, kind: FileKind, name: &str) -> String {
        self.under_prefix(&kind.relative_path(name))
    }

    /// `path` under the prefix.
    fn under_prefix(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{}", self.prefix, path)
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            Some(e) => write!(f, "s3:{e}/{}", self.bucket)?,
            None => write!(f, "s3://{}", self.bucket)?,
        }
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// `location` with whatever stands before an `@` in its authority replaced by `***`, so a secret
/// pasted into a URL is not echoed into logs.
fn redact_userinfo(location: &str) -> String {
    let start = location.find("://").map(|i| i + 3).unwrap_or_else(|| {
        if location.starts_with("s3:") {
            3
        } else {
            0
        }
    });
    match location[start..].find('@') {
        Some(at) if !location[start..start + at].contains('/') => {
            format!("{}***{}", &location[..start], &location[start + at..])
        }
        _ => location.to_string(),
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the endpoint host is missing".into());
    }
    // [v6]:port, host:port or host.
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{host:?} is not a valid host"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} is not a valid IPv6 address"));
        }
        match after {
            "" => (v6, None),
            p => (
                v6,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{host:?} is not a valid host"))?,
                ),
            ),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{p:?} is not a valid port"));
        }
    }
    if name.is_empty()
        || !host.starts_with('[')
            && !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!("{host:?} is not a valid host"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// The `-o s3.KEY=VALUE` options this backend knows.
pub const OPTION_KEYS: [&str; 13] = [
    "s3.region",
    "s3.path-style",
    "s3.ca-bundle",
    "s3.insecure-tls",
    "s3.storage-class",
    "s3.sse",
    "s3.sse-kms-key-id",
    "s3.connections",
    "s3.timeout",
    "s3.retries",
    "s3.multipart-threshold",
    "s3.part-size",
    "s3.create-bucket",
];

/// Server-side encryption the store applies to new objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3 (`AES256`): keys managed by the store.
    S3,
    /// SSE-KMS (`aws:kms`), with the bucket's default key when `key_id` is `None`.
    Kms { key_id: Option<String> },
}

/// How to talk to the store: everything `-o s3.*` can set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Options {
    /// Region to sign for; from the AWS chain (AWS_REGION, profile) when unset, else us-east-1.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); default: on for custom endpoints, off
    /// for AWS.
    pub path_style: Option<bool>,
    /// Extra PEM certificates to trust, besides the system's.
    pub ca_bundle: Option<PathBuf>,
    /// Skip TLS certificate verification (unsafe; warns on every start).
    pub insecure_tls: bool,
    /// Storage class of new objects (STANDARD, STANDARD_IA, INTELLIGENT_TIERING, ...).
    pub storage_class: Option<String>,
    pub sse: Option<Sse>,
    /// Requests in flight at once, and the number of upload threads asked of the blob writer.
    pub connections: usize,
    /// Longest wait for a response to start or for the next bytes of a response body.
    pub timeout: Duration,
    /// Retries after the first attempt of each request.
    pub retries: u32,
    /// Objects larger than this go up as multipart uploads.
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// `create()` makes the bucket when it is missing (`init --create-bucket`).
    pub create_bucket: bool,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            region: None,
            path_style: None,
            ca_bundle: None,
            insecure_tls: false,
            storage_class: None,
            sse: None,
            connections: 8,
            timeout: Duration::from_secs(60),
            retries: 5,
            multipart_threshold: 64 * MIB,
            part_size: 16 * MIB,
            create_bucket: false,
        }
    }
}

impl S3Options {
    /// Builds options from `-o` pairs. Keys outside `s3.` are not this backend's business and
    /// are skipped; unknown `s3.` keys and bad values are errors.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<S3Options, S3Error> {
        let mut o = S3Options::default();
        let mut sse_kind: Option<String> = None;
        let mut kms_key: Option<String> = None;
        for (key, value) in pairs {
            if !key.starts_with("s3.") {
                continue;
            }
            let invalid = |reason: &str| S3Error::InvalidOption {
                key: key.to_string(),
                value: value.to_string(),
                reason: reason.to_string(),
            };
            let non_empty = || {
                if value.is_empty() {
                    Err(invalid("must not be empty"))
                } else {
                    Ok(value.to_string())
                }
            };
            match key {
                "s3.region" => o.region = Some(non_empty()?),
                "s3.path-style" => {
                    o.path_style =
                        Some(parse_bool(value).ok_or_else(|| invalid("expected true or false"))?)
                }
                "s3.ca-bundle" => o.ca_bundle = Some(PathBuf::from(non_empty()?)),
                "s3.insecure-tls" => {
                    o.insecure_tls =
                        parse_bool(value).ok_or_else(|| invalid("expected true or false"))?
                }
                "s3.create-bucket" => {
                    o.create_bucket =
                        parse_bool(value).ok_or_else(|| invalid("expected true or false"))?
                }
                "s3.storage-class" => {
                    let class = value.to_ascii_uppercase();
                    match class.as_str() {
                        "" => return Err(invalid("must not be empty")),
                        "GLACIER" | "DEEP_ARCHIVE" => {
                            return Err(invalid(
                                "objects in this class cannot be read without a restore request; use GLACIER_IR or a class with immediate access",
                            ))
                        }
                        _ if !class.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                            return Err(invalid("expected a storage class such as STANDARD, STANDARD_IA or INTELLIGENT_TIERING"))
                        }
                        _ => o.storage_class = Some(class),
                    }
                }
                "s3.sse" => {
                    let v = value.to_ascii_lowercase();
                    match v.as_str() {
                        "aes256" | "sse-s3" | "s3" | "aws:kms" | "kms" | "sse-kms" => {
                            sse_kind = Some(v)
                        }
                        "" | "none" | "off" => sse_kind = Some("none".into()),
                        _ => return Err(invalid("expected AES256 (SSE-S3) or aws:kms (SSE-KMS)")),
                    }
                }
                "s3.sse-kms-key-id" => kms_key = Some(non_empty()?),
                "s3.connections" => {
                    o.connections = parse_in_range(value, 1, 256)
                        .ok_or_else(|| invalid("expected a number from 1 to 256"))?
                        as usize
                }
                "s3.timeout" => {
                    let secs = value.strip_suffix('s').unwrap_or(value);
                    o.timeout = secs
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && (0.1..=3600.0).contains(s))
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| invalid("expected seconds, from 0.1 to 3600"))?
                }
                "s3.retries" => {
                    o.retries = parse_in_range(value, 0, 100)
                        .ok_or_else(|| invalid("expected a number from 0 to 100"))?
                        as u32
                }
                "s3.multipart-threshold" => {
                    o.multipart_threshold = parse_mib(value, MIN_PART_SIZE, MAX_PUT_SIZE)
                        .ok_or_else(|| {
                            invalid("expected MiB from 5 to 5120 (suffixes K, M, G allowed)")
                        })?
                }
                "s3.part-size" => {
                    o.part_size =
                        parse_mib(value, MIN_PART_SIZE, MAX_PUT_SIZE).ok_or_else(|| {
                            invalid("expected MiB from 5 to 5120 (suffixes K, M, G allowed)")
                        })?
                }
                _ => return Err(S3Error::UnknownOption(key.to_string())),
            }
        }
        o.sse = match (sse_kind.as_deref(), kms_key) {
            (None | Some("none"), None) => None,
            (Some("none"), Some(_)) => {
                return Err(S3Error::InvalidOption {
                    key: "s3.sse-kms-key-id".into(),
                    value: String::new(),
                    reason: "needs s3.sse=aws:kms".into(),
                })
            }
            (Some("aes256" | "sse-s3" | "s3"), None) => Some(Sse::S3),
            (Some("aes256" | "sse-s3" | "s3"), Some(k)) => {
                return Err(S3Error::InvalidOption {
                    key: "s3.sse-kms-key-id".into(),
                    value: k,
                    reason: "a KMS key needs s3.sse=aws:kms, not AES256".into(),
                })
            }
            (_, key_id) => Some(Sse::Kms { key_id }),
        };
        Ok(o)
    }

    /// The largest object this configuration can store.
    fn max_object_size(&self) -> u64 {
        self.part_size.saturating_mul(MAX_PARTS)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_in_range(v: &str, min: u64, max: u64) -> Option<u64> {
    v.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
}

/// A size in MiB, or with a K/M/G suffix (binary units).
fn parse_mib(v: &str, min: u64, max: u64) -> Option<u64> {
    let v = v.trim().to_ascii_uppercase();
    let v = v
        .strip_suffix("IB")
        .or_else(|| v.strip_suffix('B'))
        .unwrap_or(&v);
    let (num, unit) = match v.chars().last()? {
        'K' => (&v[..v.len() - 1], 1u64 << 10),
        'M' => (&v[..v.len() - 1], MIB),
        'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, MIB),
    };
    num.trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(unit)
        .filter(|n| (min..=max).contains(n))
}

// ---------------------------------------------------------------------------------------------
// Failures and retries
// ---------------------------------------------------------------------------------------------

/// What went wrong with one attempt of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FailureKind {
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
struct Failure {
    kind: FailureKind,
    detail: String,
}

impl Failure {
    fn new(kind: FailureKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }

    fn retryable(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Transient | FailureKind::Unreachable | FailureKind::Unparsed
        )
    }
}

/// The messages of an error and its sources on one line, without repeats and without the
/// SDK's layers of wrapping ("dispatch failure", "io error", ...) that tell a user nothing.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
fn one_line(s: &str) -> String {
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
fn classify<E>(err: SdkError<E, HttpResponse>) -> Failure
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

// ---------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------

/// Counters of the requests a backend made, for messages and benchmarks.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

/// A repository in an S3 bucket. See the module documentation.
pub struct S3Backend {
    // Field order matters: the client must be dropped before the runtime it runs on.
    client: aws_sdk_s3::Client,
    runtime: tokio::runtime::Runtime,
    loc: S3Location,
    opts: S3Options,
    /// Human-readable endpoint for messages.
    endpoint: String,
    permits: Arc<tokio::sync::Semaphore>,
    /// Cleared when the store answers 501 to `If-None-Match: *`.
    conditional_writes: AtomicBool,
    counts: RequestCounts,
}

impl S3Backend {
    /// Connects to the store named by `location` (see [`S3Location::parse`]). Makes no request
    /// but resolving credentials, which fails here with a clear message when there are none.
    pub fn open(location: &str, opts: S3Options) -> Result<S3Backend, S3Error> {
        let loc = S3Location::parse(location)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-io")
            .enable_all()
            .build()
            .map_err(|e| S3Error::Runtime(e.to_string()))?;
        let http_client = http_client(&opts)?;
        let endpoint = loc.endpoint.clone().unwrap_or_else(|| "AWS S3".to_string());
        let client = runtime.block_on(build_client(&loc, &opts, http_client))?;
        let permits = Arc::new(tokio::sync::Semaphore::new(opts.connections));
        Ok(S3Backend {
            client,
            runtime,
            loc,
            endpoint,
            permits,
            conditional_writes: AtomicBool::new(true),
            counts: RequestCounts::default(),
            opts,
        })
    }

    /// The requests made so far (each attempt counts).
    pub fn request_counts(&self) -> &RequestCounts {
        &self.counts
    }

    fn key(&self, kind: FileKind, name: &str) -> String {
        self.loc.key(kind, name)
    }

    /// Runs `attempt` until it succeeds, fails for good or runs out of retries. `attempt` gets
    /// the attempt number (1-based). At most `connections` attempts are in flight at once. `key`
    /// names the object in messages ("" for the bucket).
    async fn retry<T, F, Fut>(
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
    fn error(&self, op: &'static str, key: &str, (f, attempts): (Failure, u32)) -> S3Error {
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
                hint: actual.map(|r| format!(" but in {r}")).unwrap_or_default(),
            },
            FailureKind::Unreachable => S3Error::Unreachable {
                endpoint: self.endpoint.clone(),
                detail: f.detail,
                attempts,
            },
            FailureKind::Tls => S3Error::Tls {
                endpoint: self.endpoint.clone(),
                hint: if f.detail.contains("InvalidContentType")
                    || f.detail.contains("corrupt message")
                {
                    "the server does not speak TLS on that port: is the endpoint http:// rather than https://?"
                } else {
                    "for a private CA use -o s3.ca-bundle=FILE (-o s3.insecure-tls=true skips verification: unsafe)"
                },
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

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Waits for a response to start, at most `timeout`.
    async fn timed<T>(
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

    /// Reads a response body, giving up when no bytes arrive for `timeout` and when it is not
    /// `expected` bytes long.
    async fn collect(&self, mut body: ByteStream, expected: u64) -> Result<Vec<u8>, Failure> {
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
    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, Failure> {
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

    async fn head(&self, key: &str) -> Result<u64, Failure> {
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

    /// One PUT of a whole object. `if_none_match` makes it fail with PreconditionFailed when the
    /// object exists.
    async fn put(
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

    fn upload_limit(&self, len: usize) -> Duration {
        self.opts.timeout + Duration::from_secs(len as u64 / SLOWEST_UPLOAD_BYTES_PER_SEC)
    }

    /// Whether the object at `key` holds exactly `data` (after a conditional write that may have
    /// been ours, whose answer was lost).
    async fn holds(&self, key: &str, data: &Bytes) -> Result<bool, Failure> {
        match self.get(key, None).await {
            Ok(stored) => Ok(stored == data[..]),
            Err(f) if f.kind == FailureKind::NotFound => Ok(false),
            Err(f) => Err(f),
        }
    }

    async fn write_exclusive(
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

    async fn write_multipart(&self, key: &str, data: Bytes) -> Result<(), S3Error> {
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

    async fn upload_parts(&self, key: &str, upload_id: &str, data: &Bytes) -> Result<(), S3Error> {
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

    async fn list_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
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

    async fn ensure_bucket(&self) -> Result<(), S3Error> {
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
    async fn list_one(&self) -> Result<(), S3Error> {
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
            self.error(op, key, e).into()
        }
    }
}

fn content_md5(data: &[u8]) -> String {
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.loc.to_string()
    }

    fn create(&self) -> Result<()> {
        self.block_on(async {
            self.ensure_bucket().await?;
            let key = self.key(FileKind::Config, "");
            match self.retry("stat", &key, |_| self.head(&key)).await {
                Ok(_) => Err(BackendError::AlreadyExists {
                    kind: FileKind::Config,
                    name: "config".into(),
                }),
                Err((f, _)) if f.kind == FailureKind::NotFound => Ok(()),
                Err(e) => Err(self.error("stat", &key, e).into()),
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
        let prefix = self.loc.under_prefix(&format!("{}/", kind.dir_name()));
        let keys = self.block_on(self.list_keys(&prefix))?;
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

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let key = self.key(kind, name);
        self.block_on(self.retry("read", &key, |_| self.get(&key, None)))
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
        match self.block_on(self.retry("read", &key, |_| self.get(&key, Some((offset, len))))) {
            Ok(v) => Ok(v),
            Err((f, _)) if f.kind == FailureKind::InvalidRange => Err(short()),
            Err(e) => Err(self.not_found_or(kind, name, "read", &key, e)),
        }
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
        let key = self.key(kind, name);
        if data.len() as u64 > self.opts.max_object_size().min(MAX_PUT_SIZE * MAX_PARTS) {
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
        let multipart = !exclusive && data.len() as u64 > self.opts.multipart_threshold;
        let md5 = if multipart {
            String::new()
        } else {
            content_md5(data)
        };
        let data = Bytes::copy_from_slice(data);
        self.block_on(async {
            if exclusive {
                self.write_exclusive(kind, name, &key, data, &md5).await
            } else if multipart {
                Ok(self.write_multipart(&key, data).await?)
            } else {
                self.retry("write", &key, |_| self.put(&key, &data, &md5, false))
                    .await
                    .map_err(|e| self.error("write", &key, e).into())
            }
        })
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let key = self.key(kind, name);
        let r = self.block_on(self.retry("remove", &key, |_| {
            self.timed(self.opts.timeout, async {
                self.client
                    .delete_object()
                    .bucket(&self.loc.bucket)
                    .key(&key)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(classify)
            })
        }));
        match r {
            Ok(()) => Ok(()),
            Err((f, _)) if f.kind == FailureKind::NotFound => Ok(()),
            Err(e) => Err(self.error("remove", &key, e).into()),
        }
    }

    fn remove_many(&self, kind: FileKind, names: &[String]) -> Result<()> {
        for batch in names.chunks(BATCH) {
            let ids: Vec<ObjectIdentifier> = batch
                .iter()
                .filter_map(|n| {
                    ObjectIdentifier::builder()
                        .key(self.key(kind, n))
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
            let r = self.block_on(self.retry("remove", &what, |_| {
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
            }));
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
                        }
                        .into());
                    }
                }
                // Stores without DeleteObjects: one by one.
                Err((f, _)) if f.kind == FailureKind::NotImplemented => {
                    for n in batch {
                        self.remove(kind, n)?;
                    }
                }
                Err(e) => return Err(self.error("remove", &what, e).into()),
            }
        }
        Ok(())
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let key = self.key(kind, name);
        self.block_on(self.retry("stat", &key, |_| self.head(&key)))
            .map_err(|e| self.not_found_or(kind, name, "stat", &key, e))
    }

    fn preferred_uploaders(&self) -> usize {
        self.opts.connections
    }

    fn preferred_read_size(&self) -> u64 {
        // A whole 16 MiB pack (and then some) in one GET.
        32 << 20
    }
}

// ---------------------------------------------------------------------------------------------
// Client construction
// ---------------------------------------------------------------------------------------------

async fn build_client(
    loc: &S3Location,
    opts: &S3Options,
    http_client: aws_sdk_s3::config::SharedHttpClient,
) -> Result<aws_sdk_s3::Client, S3Error> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled());
    let region = match (&opts.region, &loc.endpoint) {
        (Some(r), _) => Some(r.clone()),
        // A custom endpoint rarely cares about the region; do not look for one in the
        // environment's chain (which may ask instance metadata).
        (None, Some(_)) => Some(
            std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|_| "us-east-1".into()),
        ),
        (None, None) => None,
    };
    if let Some(r) = &region {
        loader = loader.region(aws_sdk_s3::config::Region::new(r.clone()));
    }
    let sdk = loader.load().await;
    // Credentials are resolved now so their absence is one clear error, not one per request.
    match sdk.credentials_provider() {
        Some(p) => {
            use aws_sdk_s3::config::ProvideCredentials;
            if let Err(e) = p.provide_credentials().await {
                return Err(S3Error::NoCredentials {
                    detail: error_chain(&e),
                });
            }
        }
        None => {
            return Err(S3Error::NoCredentials {
                detail: "no credential provider".into(),
            })
        }
    }
    let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(opts.timeout)
                .build(),
        )
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
                .build(),
        );
    if sdk.region().is_none() {
        conf = conf.region(aws_sdk_s3::config::Region::new("us-east-1"));
    }
    if let Some(e) = &loc.endpoint {
        conf = conf.endpoint_url(e);
    }
    conf = conf.force_path_style(opts.path_style.unwrap_or(loc.endpoint.is_some()));
    Ok(aws_sdk_s3::Client::from_conf(conf.build()))
}

fn http_client(opts: &S3Options) -> Result<aws_sdk_s3::config::SharedHttpClient, S3Error> {
    use aws_smithy_http_client::tls;
    if opts.insecure_tls {
        tracing::warn!(
            "WARNING: s3.insecure-tls=true: TLS certificates are NOT verified; anyone on the \
             network path can impersonate the store. Use s3.ca-bundle=FILE instead."
        );
        return Ok(insecure::http_client());
    }
    let mut trust = tls::TrustStore::default();
    if let Some(path) = &opts.ca_bundle {
        let pem = std::fs::read(path).map_err(|e| S3Error::CaBundle {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| S3Error::CaBundle {
                path: path.clone(),
                reason: format!("not a PEM certificate file: {e}"),
            })?;
        if certs.is_empty() {
            return Err(S3Error::CaBundle {
                path: path.clone(),
                reason: "no PEM certificate in it".into(),
            });
        }
        trust = trust.with_pem_certificate(pem);
    }
    let ctx = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| S3Error::Runtime(e.to_string()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(ctx)
        .build_https())
}

/// An HTTP client that accepts any server certificate, for `s3.insecure-tls=true`.
mod insecure {
    use aws_sdk_s3::config::SharedHttpClient;
    use aws_smithy_runtime_api::client::http::{
        http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use std::sync::Arc;
    use std::time::Duration;

    #[derive(Debug)]
    struct AcceptAnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    type HyperClient = Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        SdkBody,
    >;

    #[derive(Debug, Clone)]
    struct Connector(HyperClient);

    impl HttpConnector for Connector {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let client = self.0.clone();
            HttpConnectorFuture::new(async move {
                let request = request
                    .try_into_http1x()
                    .map_err(|e| ConnectorError::user(e.into()))?;
                let response = client.request(request).await.map_err(|e| {
                    if e.is_connect() {
                        ConnectorError::io(e.into())
                    } else {
                        ConnectorError::other(e.into(), None)
                    }
                })?;
                let response = response.map(SdkBody::from_body_1_x);
                HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
            })
        }
    }

    pub(super) fn http_client() -> SharedHttpClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client: HyperClient = Client::builder(TokioExecutor::new()).build(https);
        let connector = SharedHttpConnector::new(Connector(client));
        http_client_fn(move |_, _| connector.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> S3Location {
        S3Location::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad_loc(s: &str) -> String {
        S3Location::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn custom_endpoint_urls_parse() {
        let l = loc("s3:https://minio.local:9000/backups/team/a");
        assert_eq!(l.endpoint.as_deref(), Some("https://minio.local:9000"));
        assert_eq!(l.bucket, "backups");
        assert_eq!(l.prefix, "team/a");
        let l = loc("s3:http://127.0.0.1:9000/b");
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(l.prefix, "");
        let l = loc("s3:http://[::1]:9000/b/");
        assert_eq!(l.endpoint.as_deref(), Some("http://[::1]:9000"));
        assert_eq!(l.bucket, "b");
    }

    #[test]
    fn restic_style_host_defaults_to_https() {
        let l = loc("s3:s3.example.com/bucket/p");
        assert_eq!(l.endpoint.as_deref(), Some("https://s3.example.com"));
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("bucket", "p"));
    }

    #[test]
    fn aws_urls_parse() {
        let l = loc("s3://my-bucket/some/prefix/");
        assert_eq!(l.endpoint, None);
        assert_eq!(l.bucket, "my-bucket");
        assert_eq!(l.prefix, "some/prefix");
        assert_eq!(loc("s3://b").prefix, "");
    }

    #[test]
    fn location_displays_as_parsed() {
        for s in [
            "s3:https://h:1/b/p/q",
            "s3:http://h/b",
            "s3://bucket",
            "s3://bucket/x",
        ] {
            assert_eq!(loc(s).to_string(), s);
        }
    }

    #[test]
    fn keys_follow_the_local_layout_under_the_prefix() {
        let l = loc("s3://b/pre/fix");
        assert_eq!(l.key(FileKind::Config, ""), "pre/fix/config");
        assert_eq!(l.key(FileKind::Pack, "abcd"), "pre/fix/data/ab/abcd");
        assert_eq!(l.key(FileKind::Snapshot, "ff"), "pre/fix/snapshots/ff");
        assert_eq!(loc("s3://b").key(FileKind::Index, "01"), "index/01");
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_not_echoed() {
        for s in [
            "s3:https://AKIA:secret@host/b",
            "s3://AKIA:secret@bucket",
            "s3:AKIA:secret@host/b",
        ] {
            let e = bad_loc(s);
            assert!(e.contains("credentials never go"), "{e}");
            assert!(!e.contains("secret@"), "{e}");
        }
    }

    #[test]
    fn malformed_urls_are_refused() {
        for (s, why) in [
            ("s3:https://host:9000", "bucket name is missing"),
            ("s3:https://host:9000/", "bucket name is missing"),
            ("s3://", "bucket name is missing"),
            ("s3:https:///b", "host is missing"),
            ("s3:https://host:99999/b", "not a valid port"),
            ("s3:https://host:0/b", "not a valid port"),
            ("s3:ftp://host/b", "http:// or https://"),
            ("s3://b/a//c", "empty, '.' or '..'"),
            ("s3://b/a/../c", "empty, '.' or '..'"),
            ("s3://b/x?versionId=1", "query strings"),
            ("s3://b c/x", "not a valid bucket name"),
            ("s3:https://ho st/b", "not a valid host"),
            ("gs://b", "expected s3:"),
        ] {
            let e = bad_loc(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    fn opts(pairs: &[(&str, &str)]) -> Result<S3Options, S3Error> {
        S3Options::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn options_default_sensibly() {
        let o = opts(&[]).unwrap();
        assert_eq!(o, S3Options::default());
        assert!(!o.insecure_tls);
        assert_eq!(o.connections, 8);
        assert_eq!(o.sse, None);
    }

    #[test]
    fn options_parse() {
        let o = opts(&[
            ("s3.region", "eu-west-3"),
            ("s3.path-style", "false"),
            ("s3.ca-bundle", "/etc/ca.pem"),
            ("s3.insecure-tls", "yes"),
            ("s3.storage-class", "standard_ia"),
            ("s3.connections", "16"),
            ("s3.timeout", "2.5s"),
            ("s3.retries", "0"),
            ("s3.multipart-threshold", "100"),
            ("s3.part-size", "8M"),
            ("s3.create-bucket", "true"),
        ])
        .unwrap();
        assert_eq!(o.region.as_deref(), Some("eu-west-3"));
        assert_eq!(o.path_style, Some(false));
        assert_eq!(o.ca_bundle, Some(PathBuf::from("/etc/ca.pem")));
        assert!(o.insecure_tls && o.create_bucket);
        assert_eq!(o.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(o.connections, 16);
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.retries, 0);
        assert_eq!(o.multipart_threshold, 100 * MIB);
        assert_eq!(o.part_size, 8 * MIB);
    }

    #[test]
    fn server_side_encryption_options() {
        assert_eq!(opts(&[("s3.sse", "AES256")]).unwrap().sse, Some(Sse::S3));
        assert_eq!(
            opts(&[("s3.sse", "aws:kms")]).unwrap().sse,
            Some(Sse::Kms { key_id: None })
        );
        assert_eq!(
            opts(&[("s3.sse-kms-key-id", "arn:aws:kms:k")]).unwrap().sse,
            Some(Sse::Kms {
                key_id: Some("arn:aws:kms:k".into())
            })
        );
        assert!(opts(&[("s3.sse", "AES256"), ("s3.sse-kms-key-id", "k")]).is_err());
        assert!(opts(&[("s3.sse", "rot13")]).is_err());
    }

    #[test]
    fn bad_option_values_are_refused_with_the_key() {
        for (k, v) in [
            ("s3.path-style", "maybe"),
            ("s3.connections", "0"),
            ("s3.connections", "many"),
            ("s3.timeout", "-1"),
            ("s3.timeout", "NaN"),
            ("s3.part-size", "1"),
            ("s3.part-size", "6G"),
            ("s3.storage-class", "GLACIER"),
            ("s3.storage-class", "a b"),
            ("s3.region", ""),
        ] {
            let e = opts(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(k), "{k}={v}: {e}");
        }
    }

    #[test]
    fn unknown_s3_options_are_refused_and_others_ignored() {
        let e = opts(&[("s3.regoin", "x")]).unwrap_err().to_string();
        assert!(e.contains("s3.regoin") && e.contains("s3.region"), "{e}");
        assert!(opts(&[("sftp.command", "x")]).is_ok());
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_mib("5", MIN_PART_SIZE, MAX_PUT_SIZE), Some(5 * MIB));
        assert_eq!(
            parse_mib("5MiB", MIN_PART_SIZE, MAX_PUT_SIZE),
            Some(5 * MIB)
        );
        assert_eq!(parse_mib("1G", MIN_PART_SIZE, MAX_PUT_SIZE), Some(1 << 30));
        assert_eq!(
            parse_mib("6144k", MIN_PART_SIZE, MAX_PUT_SIZE),
            Some(6 * MIB)
        );
        assert_eq!(parse_mib("4", MIN_PART_SIZE, MAX_PUT_SIZE), None);
        assert_eq!(parse_mib("", MIN_PART_SIZE, MAX_PUT_SIZE), None);
    }

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

    #[test]
    fn content_md5_is_base64_of_the_digest() {
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
