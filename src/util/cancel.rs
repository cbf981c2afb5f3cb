//! Stopping a long computation from outside it: the caller owns a
//! [`CancelToken`], hands a clone to training, and cancels it from anywhere
//! (a Ctrl-C handler, another thread, a notebook). Training checks it after
//! every step, saves its full state and returns
//! [`crate::util::error::Error::Interrupted`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shared stop request; clones share one flag.
///
/// ```
/// use physlens::CancelToken;
/// let token = CancelToken::new();
/// let seen_by_training = token.clone();
/// token.cancel();
/// assert!(seen_by_training.is_cancelled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder of a clone to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
