//! The errors of the S3 backend that the [`Backend`](stowage_core::backend::Backend) trait has no
//! variant of its own for, each with its [`ErrorClass`].

use crate::options::OPTION_KEYS;
use std::path::PathBuf;
use stowage_core::backend::BackendError;
use stowage_core::error::ErrorClass;

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
