//! SIGINT/SIGTERM/SIGHUP ask the running job to stop; the job saves its state and the process
//! exits with 128 + the signal number.

use crate::progress::{Control, StopReason};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::{Arc, OnceLock};

static CONTROL: OnceLock<Arc<Control>> = OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomics here: this runs inside a signal handler.
    if let Some(c) = CONTROL.get() {
        c.request_stop(StopReason::Signal(sig));
    }
}

/// Routes the stop signals to `control`. Call once, before the job starts.
pub fn install(control: Arc<Control>) -> crate::Result<()> {
    let _ = CONTROL.set(control);
    // SA_RESTART: a read in progress is finished rather than interrupted; the job checks the flag
    // between reads.
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only touches atomics through a OnceLock that is set before.
        unsafe { sigaction(sig, &action) }
            .map_err(|e| crate::Error::Internal(format!("installing {sig} handler: {e}")))?;
    }
    Ok(())
}
