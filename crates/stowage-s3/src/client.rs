//! The connection to the store: building the SDK client (credentials from the standard AWS
//! chain, resolved up front; the SDK's own retries off, ours on top) and its HTTP client (rustls
//! with the system's roots plus an optional CA bundle, or, for `s3.insecure-tls`, a verifier that
//! accepts any certificate), and [`Bucket`], the client together with what every request needs.

mod insecure;

use crate::backend::RequestCounts;
use crate::error::S3Error;
use crate::location::S3Location;
use crate::options::S3Options;
use crate::retry::error_chain;
use aws_sdk_s3::config::{
    RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// One bucket of one store, as the requests see it: the SDK client, where the repository is in
/// the bucket, the options, and the state shared by all requests.
pub(crate) struct Bucket {
    pub(crate) client: aws_sdk_s3::Client,
    pub(crate) loc: S3Location,
    pub(crate) opts: S3Options,
    /// Human-readable endpoint for messages.
    pub(crate) endpoint: String,
    /// At most `opts.connections` requests in flight.
    pub(crate) permits: tokio::sync::Semaphore,
    /// Cleared when the store answers 501 to `If-None-Match: *`.
    pub(crate) conditional_writes: AtomicBool,
    pub(crate) counts: RequestCounts,
}

impl Bucket {
    /// A bucket reached through `client`.
    pub(crate) fn new(client: aws_sdk_s3::Client, loc: S3Location, opts: S3Options) -> Bucket {
        Bucket {
            client,
            endpoint: loc.endpoint.clone().unwrap_or_else(|| "AWS S3".to_string()),
            loc,
            permits: tokio::sync::Semaphore::new(opts.connections),
            conditional_writes: AtomicBool::new(true),
            counts: RequestCounts::default(),
            opts,
        }
    }
}

/// The SDK client for `loc` with `opts`, over `http_client`. Resolves the credentials, so that
/// their absence is one clear error here rather than one per request.
pub(crate) async fn build_client(
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
    if let Some(c) = &opts.credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "stowage-static",
        ));
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

/// The HTTP client `opts` ask for: verifying certificates against the system roots and the CA
/// bundle, or, with `s3.insecure-tls`, not at all (with a warning).
pub(crate) fn http_client(
    opts: &S3Options,
) -> Result<aws_sdk_s3::config::SharedHttpClient, S3Error> {
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
