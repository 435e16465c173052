//! Repository locations as the command line names them (`-r`/`--repo`, `-o KEY=VALUE`): the
//! one place that knows which backend crate serves which kind of location.

use std::sync::Arc;
use stowage_core::backend::local::LocalBackend;
use stowage_core::backend::Backend;
use stowage_s3::{S3Backend, S3Location, S3Options, OPTION_KEYS};

/// How to open a backend beyond its location: `-o KEY=VALUE` options and what `init` asks for.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// `KEY=VALUE` pairs; keys are namespaced by backend (`s3.region`, ...).
    pub options: Vec<(String, String)>,
    /// `init --create-bucket`: `create()` may create the bucket.
    pub create_bucket: bool,
}

/// Parses one `-o KEY=VALUE` argument.
pub fn parse_option(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "expected KEY=VALUE (for example s3.region=eu-west-1), got {arg:?}"
        )),
    }
}

/// Opens the backend a repository location names: `s3:...` (see [`S3Location`]), or a local
/// path (optionally prefixed with `local:`). Options of another backend are ignored; unknown
/// options are errors.
pub fn open_location(location: &str, opts: &OpenOptions) -> anyhow::Result<Arc<dyn Backend>> {
    for (key, _) in &opts.options {
        if !key.starts_with("s3.") {
            anyhow::bail!(
                "unknown option {key:?}; options are {}",
                OPTION_KEYS.join(", ")
            );
        }
    }
    let pairs = || opts.options.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    if S3Location::is_s3(location) {
        let mut o = S3Options::from_pairs(pairs())?;
        o.create_bucket |= opts.create_bucket;
        return Ok(Arc::new(S3Backend::open(location, o)?));
    }
    // Check the S3 options' syntax even here, so a typo is not silently ignored.
    S3Options::from_pairs(pairs())?;
    let path = location.strip_prefix("local:").unwrap_or(location);
    Ok(Arc::new(LocalBackend::new(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_as_key_value() {
        assert_eq!(
            parse_option("s3.region=eu-west-1").unwrap(),
            ("s3.region".to_string(), "eu-west-1".to_string())
        );
        assert_eq!(parse_option("s3.sse-kms-key-id=a=b").unwrap().1, "a=b");
        assert!(parse_option("s3.region").is_err());
        assert!(parse_option("=x").is_err());
    }

    #[test]
    fn unknown_options_are_refused_for_every_backend() {
        let opts = |k: &str| OpenOptions {
            options: vec![(k.to_string(), "1".to_string())],
            create_bucket: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        assert!(open_location(path, &opts("s3.connections")).is_ok());
        for bad in ["s3.conections", "region"] {
            let e = open_location(path, &opts(bad)).err().unwrap().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn s3_locations_must_parse() {
        let e = open_location("s3:https://host:9000", &OpenOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bucket name is missing"), "{e}");
    }
}
