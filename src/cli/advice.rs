//! What the command line adds to an engine error: advice phrased for this program's flags and
//! commands, looked up by the error's stable kind (see `stowage_core::error::Classified`). The
//! libraries' messages stay free of it, so that other front ends can show them as they are.

/// The advice for an error of this kind, if the command line has any.
pub fn for_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        // The S3 backend (stowage_s3::S3Error).
        "s3.no_such_bucket" => "create it, or run `stowage init --create-bucket`",
        "s3.bucket_taken" => "choose another bucket name",
        "s3.credentials_in_location" => {
            "use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a web identity"
        }
        "s3.no_credentials" => {
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, choose a profile with AWS_PROFILE, \
             or use a web identity (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE)"
        }
        "s3.bad_credentials" => {
            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the AWS profile) for this store"
        }
        "s3.access_denied" => {
            "grant these credentials s3:GetObject, s3:PutObject, s3:DeleteObject and \
             s3:ListBucket on the bucket"
        }
        "s3.wrong_region" => "set -o s3.region=REGION",
        "s3.unreachable" => {
            "check the address in the repository URL and that the server is running"
        }
        "s3.tls" => {
            "for a private CA use -o s3.ca-bundle=FILE (-o s3.insecure-tls=true skips \
             verification: unsafe)"
        }
        "s3.tls_not_spoken" => "is the endpoint http:// rather than https://?",
        _ => return None,
    })
}

/// The advice for the first error in `e`'s chain whose kind has some: a backend's
/// `BackendError::Remote`, or an S3 error met on its own (from opening the backend).
pub fn for_error(e: &anyhow::Error) -> Option<&'static str> {
    e.chain().find_map(|c| {
        let kind = if let Some(stowage_core::backend::BackendError::Remote { kind, .. }) =
            c.downcast_ref()
        {
            kind
        } else {
            stowage_core::error::Classified::kind(c.downcast_ref::<stowage_s3::S3Error>()?)
        };
        for_kind(kind)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::backend::BackendError;
    use stowage_s3::S3Error;

    #[test]
    fn s3_advice_is_found_through_context_and_the_backend_error() {
        let missing = || S3Error::NoSuchBucket {
            bucket: "b".into(),
            endpoint: "http://127.0.0.1:1".into(),
        };
        let wrapped = anyhow::Error::new(BackendError::from(missing())).context("opening");
        assert_eq!(for_error(&wrapped), for_kind("s3.no_such_bucket"));
        let direct = anyhow::Error::new(missing()).context("opening");
        assert!(for_error(&direct).unwrap().contains("--create-bucket"));
        assert_eq!(for_error(&anyhow::anyhow!("plain")), None);
    }
}
