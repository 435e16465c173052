//! Cancellation of a running operation by its caller.
//!
//! A [`CancelToken`] is a shared flag: cloning it is cheap, any clone may cancel, and the engine
//! checks it with one relaxed atomic load at coarse points (per directory entry, per file, per
//! chunk, per blob written), never per byte. Cancellation is cooperative: the operation stops at
//! its next check, cleans up what it must (a backup writes no snapshot) and returns an error of
//! class [`crate::error::ErrorClass::Canceled`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cheap, cloneable cancellation flag shared between a caller and the operations it runs.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every operation holding a clone of this token to stop. It cannot be undone.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called on this token or one of its clones.
    #[inline]
    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_cancels_the_original() {
        let t = CancelToken::new();
        let c = t.clone();
        assert!(!t.is_canceled());
        c.cancel();
        assert!(t.is_canceled() && c.is_canceled());
    }
}
