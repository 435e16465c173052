//! The `-o s3.KEY=VALUE` options and S3's size limits they are checked against.

use crate::error::S3Error;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const MIB: u64 = 1 << 20;
/// S3's smallest multipart part (but the last).
pub(crate) const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest single PUT and largest part.
pub(crate) const MAX_PUT_SIZE: u64 = 5 << 30;
/// S3's largest number of parts in one upload.
pub(crate) const MAX_PARTS: u64 = 10_000;

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
    Kms {
        /// The KMS key's id or ARN.
        key_id: Option<String>,
    },
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
    /// Server-side encryption of new objects; the bucket's default when unset.
    pub sse: Option<Sse>,
    /// Requests in flight at once, and the number of upload threads asked of the blob writer.
    pub connections: usize,
    /// Longest wait for a response to start or for the next bytes of a response body.
    pub timeout: Duration,
    /// Retries after the first attempt of each request.
    pub retries: u32,
    /// Objects larger than this go up as multipart uploads.
    pub multipart_threshold: u64,
    /// The size of each part of a multipart upload (but the last).
    pub part_size: u64,
    /// `create()` makes the bucket when it is missing (`init --create-bucket`).
    pub create_bucket: bool,
    /// Keys to sign with instead of the standard AWS chain (a storage location's Secret).
    pub credentials: Option<StaticCredentials>,
}

/// An access key given directly, as a storage location's Secret holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// A session token, for temporary keys.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
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
            credentials: None,
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
    pub(crate) fn max_object_size(&self) -> u64 {
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
pub(crate) fn parse_mib(v: &str, min: u64, max: u64) -> Option<u64> {
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
#[cfg(test)]
mod tests {
    use super::*;

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
}
