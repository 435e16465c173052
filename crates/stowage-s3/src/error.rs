//! The errors of the S3 backend that the [`Backend`](stowage_core::backend::Backend) trait has no
//! variant of its own for. Each has a class and a stable kind ([`Classified`]); its message says
//! what is wrong with which object and nothing about what to type next: front ends render that
//! advice from the kind (the CLI in `src/cli/advice.rs`), so that a controller can show the
//! message as it is.

use crate::options::OPTION_KEYS;
use std::path::PathBuf;
use stowage_core::backend::BackendError;
use stowage_core::error::{Classified, ErrorClass};

/// Errors of the S3 backend that are not "not found" or "already exists".
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The repository URL is not an S3 location this backend understands.
    #[error("invalid S3 repository location {location:?}: {reason}")]
    InvalidLocation {
        /// The location as given, with anything that looks like credentials redacted.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The repository URL carries credentials, which this backend refuses to read from it.
    #[error(
        "invalid S3 repository location {location:?}: credentials never go in the repository URL"
    )]
    CredentialsInLocation {
        /// The location with the credentials redacted.
        location: String,
    },
    /// An `s3.` option has a value this backend cannot use.
    #[error("invalid option {key}={value:?}: {reason}")]
    InvalidOption {
        /// The option's key (`s3.part-size`, ...).
        key: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `s3.` option this backend does not know (the key is in the field).
    #[error("unknown option {0:?}; S3 options are {known}", known = OPTION_KEYS.join(", "))]
    UnknownOption(String),
    /// The CA bundle of `s3.ca-bundle` cannot be read or holds no certificate.
    #[error("reading the CA bundle {path}: {reason}")]
    CaBundle {
        /// The file named by the option.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The backend's runtime or TLS setup could not be started: a bug or an exhausted system.
    #[error("starting the S3 client: {0}")]
    Runtime(String),
    /// The standard AWS chain found no credentials.
    #[error("no AWS credentials found ({detail})")]
    NoCredentials {
        /// What the chain reported.
        detail: String,
    },
    /// The bucket does not exist (and creating it was not asked for).
    #[error("bucket {bucket:?} does not exist at {endpoint}")]
    NoSuchBucket {
        /// The bucket's name.
        bucket: String,
        /// The store, for messages.
        endpoint: String,
    },
    /// Creating the bucket failed: the name belongs to another account.
    #[error("bucket {bucket:?} is owned by another account")]
    BucketTaken {
        /// The bucket's name.
        bucket: String,
    },
    /// The store does not accept the credentials (unknown key, wrong secret, expired token).
    #[error("{endpoint} rejected the credentials ({code}) on {op} {object}")]
    BadCredentials {
        /// The store, for messages.
        endpoint: String,
        /// The store's error code (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, ...).
        code: String,
        /// The operation refused.
        op: &'static str,
        /// The object (`s3://bucket/key`) it was refused on.
        object: String,
    },
    /// The credentials are valid but lack a permission.
    #[error("access denied to {op} {object} ({detail})")]
    AccessDenied {
        /// The operation refused.
        op: &'static str,
        /// The object (`s3://bucket/key`) it was refused on.
        object: String,
        /// What the store said.
        detail: String,
    },
    /// The bucket lives in another region than the one requests are signed for.
    #[error("bucket {bucket:?} is not in region {region}{}", .actual.as_deref().map(|r| format!(" but in {r}")).unwrap_or_default())]
    WrongRegion {
        /// The bucket's name.
        bucket: String,
        /// The region requests were signed for.
        region: String,
        /// The bucket's region, when the store said.
        actual: Option<String>,
    },
    /// No connection could be made to the endpoint, on every attempt.
    #[error("cannot connect to the S3 endpoint {endpoint} ({detail}) after {attempts} attempts")]
    Unreachable {
        /// The store.
        endpoint: String,
        /// The last connection error.
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The TLS handshake failed, typically because the server's certificate is not trusted.
    #[error("TLS connection to {endpoint} failed ({detail})")]
    Tls {
        /// The store.
        endpoint: String,
        /// What the TLS layer reported.
        detail: String,
    },
    /// The endpoint answered a TLS handshake with something that is not TLS.
    #[error("TLS connection to {endpoint} failed ({detail}): the server does not speak TLS on that port")]
    TlsNotSpoken {
        /// The store.
        endpoint: String,
        /// What the TLS layer reported.
        detail: String,
    },
    /// A request kept failing in a way worth retrying, and the retries ran out.
    #[error("{op} {object}: gave up after {attempts} attempts: {detail}")]
    GaveUp {
        /// The operation.
        op: &'static str,
        /// The object (`s3://bucket/key`).
        object: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// The store refused a request for good, or answered it in a way this backend cannot use.
    #[error("{op} {object}: {detail}")]
    Request {
        /// The operation.
        op: &'static str,
        /// The object (`s3://bucket/key`, or what the request concerned).
        object: String,
        /// What went wrong.
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
            | S3Error::CredentialsInLocation { .. }
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
            | S3Error::TlsNotSpoken { .. }
            | S3Error::Request { .. } => ErrorClass::Config,
        }
    }

    /// The stable kind of this error, `s3.` and a name that does not change between releases.
    pub fn kind(&self) -> &'static str {
        match self {
            S3Error::InvalidLocation { .. } => "s3.invalid_location",
            S3Error::CredentialsInLocation { .. } => "s3.credentials_in_location",
            S3Error::InvalidOption { .. } => "s3.invalid_option",
            S3Error::UnknownOption(_) => "s3.unknown_option",
            S3Error::CaBundle { .. } => "s3.ca_bundle",
            S3Error::Runtime(_) => "s3.runtime",
            S3Error::NoCredentials { .. } => "s3.no_credentials",
            S3Error::NoSuchBucket { .. } => "s3.no_such_bucket",
            S3Error::BucketTaken { .. } => "s3.bucket_taken",
            S3Error::BadCredentials { .. } => "s3.bad_credentials",
            S3Error::AccessDenied { .. } => "s3.access_denied",
            S3Error::WrongRegion { .. } => "s3.wrong_region",
            S3Error::Unreachable { .. } => "s3.unreachable",
            S3Error::Tls { .. } => "s3.tls",
            S3Error::TlsNotSpoken { .. } => "s3.tls_not_spoken",
            S3Error::GaveUp { .. } => "s3.gave_up",
            S3Error::Request { .. } => "s3.request_failed",
        }
    }
}

impl Classified for S3Error {
    fn class(&self) -> ErrorClass {
        S3Error::class(self)
    }

    fn kind(&self) -> &'static str {
        S3Error::kind(self)
    }
}

impl From<S3Error> for BackendError {
    fn from(e: S3Error) -> Self {
        BackendError::Remote {
            class: e.class(),
            kind: e.kind(),
            source: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<S3Error> {
        let s = String::new;
        vec![
            S3Error::InvalidLocation {
                location: s(),
                reason: s(),
            },
            S3Error::CredentialsInLocation { location: s() },
            S3Error::InvalidOption {
                key: s(),
                value: s(),
                reason: s(),
            },
            S3Error::UnknownOption(s()),
            S3Error::CaBundle {
                path: PathBuf::new(),
                reason: s(),
            },
            S3Error::Runtime(s()),
            S3Error::NoCredentials { detail: s() },
            S3Error::NoSuchBucket {
                bucket: s(),
                endpoint: s(),
            },
            S3Error::BucketTaken { bucket: s() },
            S3Error::BadCredentials {
                endpoint: s(),
                code: s(),
                op: "read",
                object: s(),
            },
            S3Error::AccessDenied {
                op: "read",
                object: s(),
                detail: s(),
            },
            S3Error::WrongRegion {
                bucket: "b".into(),
                region: "us-east-1".into(),
                actual: Some("eu-west-3".into()),
            },
            S3Error::Unreachable {
                endpoint: s(),
                detail: s(),
                attempts: 1,
            },
            S3Error::Tls {
                endpoint: s(),
                detail: s(),
            },
            S3Error::TlsNotSpoken {
                endpoint: s(),
                detail: s(),
            },
            S3Error::GaveUp {
                op: "read",
                object: s(),
                attempts: 1,
                detail: s(),
            },
            S3Error::Request {
                op: "read",
                object: s(),
                detail: s(),
            },
        ]
    }

    #[test]
    fn every_error_has_its_own_stable_kind() {
        let kinds: Vec<&str> = samples().iter().map(|e| e.kind()).collect();
        let mut unique = kinds.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), kinds.len(), "{kinds:?}");
        assert!(kinds
            .iter()
            .all(|k| k.starts_with("s3.")
                && k[3..].chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }

    #[test]
    fn only_connection_failures_and_exhausted_retries_are_transient() {
        for e in samples() {
            let transient = matches!(e, S3Error::Unreachable { .. } | S3Error::GaveUp { .. });
            assert_eq!(e.class() == ErrorClass::Transient, transient, "{e:?}");
        }
    }

    #[test]
    fn a_backend_error_carries_the_kind_and_class() {
        for e in samples() {
            let (class, kind, text) = (e.class(), e.kind(), e.to_string());
            match BackendError::from(e) {
                BackendError::Remote {
                    class: c,
                    kind: k,
                    source,
                } => {
                    assert_eq!((c, k), (class, kind));
                    assert_eq!(source.to_string(), text);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn messages_give_no_command_line_advice() {
        for e in samples() {
            let text = e.to_string();
            for advice in [
                "stowage ",
                "-o ",
                "--",
                "AWS_ACCESS_KEY_ID",
                "grant ",
                "check ",
            ] {
                assert!(!text.contains(advice), "{text}");
            }
        }
        let region = &samples()[11];
        assert_eq!(
            region.to_string(),
            "bucket \"b\" is not in region us-east-1 but in eu-west-3"
        );
    }
}
