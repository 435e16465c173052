//! What the command line adds to an engine error: advice phrased for this program's flags and
//! commands, looked up by the error's stable kind (see `stowage_core::error::Classified`). The
//! libraries' messages stay free of it, so that other front ends can show them as they are.

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

/// `msg` with the advice for the first engine error in `err`'s chain appended, if there is any.
pub fn with_advice(msg: String, err: &anyhow::Error) -> String {
    let advice = stowage_core::error::classify(err.as_ref()).and_then(|(_, kind)| for_kind(kind));
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
    fn errors_without_advice_are_printed_as_they_are() {
        let e = anyhow::anyhow!("plain");
        assert_eq!(with_advice("m".into(), &e), "m");
    }
}
