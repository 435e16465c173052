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
    let advice = stowage_core::error::classify(err.as_ref())
        .and_then(|(class, kind)| for_error(class, kind));
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
}
