//! Ctrl-C handling: the first SIGINT asks running training loops to stop
//! after their current step, save a full checkpoint and return
//! [`crate::error::Error::Interrupted`] (exit code 130).

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the SIGINT handler (once per process; later calls are no-ops).
pub fn install_handler() {
    // An error here means a handler is already installed, which is fine.
    let _ = ctrlc::set_handler(request);
}

/// Asks every training loop to stop at the end of its current step.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
