//! What the command line adds to an engine error: advice phrased for this program's flags and
//! commands, looked up by the error's stable kind (see `stowage_core::error::Classified`). The
//! libraries' messages stay free of it, so that other front ends can show them as they are.

/// The advice for an error of this kind, if the command line has any.
pub fn for_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        _ => return None,
    })
}
