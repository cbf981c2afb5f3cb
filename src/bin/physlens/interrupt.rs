//! Ctrl-C: the first SIGINT cancels the token that training checks after
//! every step; the run then saves its full state and ends with
//! `Error::Interrupted` (exit code 130).

use physlens::CancelToken;

/// A token that Ctrl-C cancels (the handler is installed once per process).
pub fn cancel_on_ctrl_c() -> CancelToken {
    let token = CancelToken::new();
    let handle = token.clone();
    // An error here means a handler is already installed; training then
    // simply cannot be interrupted, which is not worth failing for.
    let _ = ctrlc::set_handler(move || handle.cancel());
    token
}
