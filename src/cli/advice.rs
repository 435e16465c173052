//! What the command line adds to an engine error: advice phrased for this program's flags and
//! commands, looked up by the error's stable kind (see `stowage_core::error::Classified`). The
//! libraries' messages stay free of it, so that other front ends can show them as they are.

use stowage_core::error::ErrorClass;

/// The advice for an error of this kind, if the command line has any.
pub fn for_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "repo.not_a_repository" => "run `stowage init` first",
        "repo.unsupported_version" | "repo.unsupported_file_version" => "upgrade stowage",
        "repo.lock_conflict" => "if it is dead, run `stowage unlock`",
        "repo.listing_unstable" => "try again",
        "prune.index_unreadable" => "run `stowage repair index`",
        "prune.pack_missing" => "run `stowage repair index` and `stowage repair snapshots`",
        "prune.tree_not_indexed" | "prune.blob_not_indexed" => {
            "run `stowage check` and `stowage repair`"
        }
        "prune.tree_unreadable" | "prune.snapshot_unreadable" => "run `stowage check`",
        "restore.target_not_empty" => "use --overwrite to restore into it anyway",
        "backup.lock_lost" => "run the backup again",
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

/// The advice for an error of this class and kind. A prune refused because the store failed
/// while it read is not facing damage: the repair commands for its kind would mislead.
pub fn for_error(class: ErrorClass, kind: &str) -> Option<&'static str> {
    if class == ErrorClass::Transient && kind.starts_with("prune.") {
        return Some("try again");
    }
    for_kind(kind)
}

/// `msg` with the advice for the first engine error in `err`'s chain appended, if there is any.
pub fn with_advice(msg: String, err: &anyhow::Error) -> String {
    // The engine's errors (a backend's errors among them, by their kind); an S3 error met on
    // its own, from opening the backend, is not one of the core's types.
    let found = stowage_core::error::classify(err.as_ref()).or_else(|| {
        err.chain()
            .find_map(|c| c.downcast_ref::<stowage_s3::S3Error>())
            .map(|e| (e.class(), e.kind()))
    });
    let advice = found.and_then(|(class, kind)| for_error(class, kind));
    match advice {
        Some(a) => format!("{msg}; {a}"),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_is_found_through_context() {
        let e = anyhow::Error::new(stowage_core::repo::RepoError::NotARepository("/x".into()))
            .context("opening the repository");
        assert_eq!(with_advice("m".into(), &e), "m; run `stowage init` first");
    }

    #[test]
    fn a_prune_refused_over_a_store_failure_is_not_sent_to_repair() {
        assert_eq!(
            for_error(ErrorClass::Corruption, "prune.index_unreadable"),
            Some("run `stowage repair index`")
        );
        assert_eq!(
            for_error(ErrorClass::Transient, "prune.index_unreadable"),
            Some("try again")
        );
    }

    #[test]
    fn errors_without_advice_are_printed_as_they_are() {
        let e = anyhow::anyhow!("plain");
        assert_eq!(with_advice("m".into(), &e), "m");
    }

    #[test]
    fn s3_advice_is_found_through_context_and_the_backend_error() {
        use stowage_core::backend::BackendError;
        use stowage_s3::S3Error;
        let missing = || S3Error::NoSuchBucket {
            bucket: "b".into(),
            endpoint: "http://127.0.0.1:1".into(),
        };
        let wrapped = anyhow::Error::new(BackendError::from(missing())).context("opening");
        assert_eq!(
            with_advice("m".into(), &wrapped),
            format!("m; {}", for_kind("s3.no_such_bucket").unwrap())
        );
        let direct = anyhow::Error::new(missing()).context("opening");
        assert!(with_advice("m".into(), &direct).contains("--create-bucket"));
    }
}
