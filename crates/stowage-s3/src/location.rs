//! Where a repository lives in S3, parsed from its URL: endpoint, bucket and key prefix. Parsing
//! refuses credentials in the URL and never echoes them back.

use crate::error::S3Error;
use std::fmt;
use stowage_core::backend::FileKind;

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
    /// The bucket's name.
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
        let credentials = || S3Error::CredentialsInLocation {
            location: redact_userinfo(location),
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
                return Err(credentials());
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
            return Err(credentials());
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
    pub(crate) fn under_prefix(&self, path: &str) -> String {
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
            let kind = S3Location::parse(s).unwrap_err().kind();
            assert_eq!(kind, "s3.credentials_in_location");
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
}
