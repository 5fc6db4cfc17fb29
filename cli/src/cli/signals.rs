//! SIGINT, SIGTERM and SIGHUP (and, for `recv`, a closed stdout) end `send`
//! and `recv` cleanly: the handler only records the signal; the blocking
//! loops wait in bounded slices ([`SLICE`]) and look at the record between
//! them, then return normally, so every handle is dropped (a non-persistent
//! ring whose last user leaves is removed) before the process exits with
//! 128 + the signal's number.
//!
//! The handlers are installed without `SA_RESTART`, so a blocked `read` of
//! stdin or `write` of stdout returns `EINTR` at once instead of resuming.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use shmring::Error;

/// The longest a blocking wait of `send` or `recv` lasts before it looks at
/// the signal record again. Longer than the library's peer-check interval
/// (100 ms), so that every slice checks whether the peer died.
pub(super) const SLICE: Duration = Duration::from_millis(250);

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(signal: libc::c_int) {
    // Async-signal-safe: one lock-free atomic operation. The first signal
    // wins; a second one changes nothing (the process is already leaving).
    let _ = RECEIVED.compare_exchange(0, signal, Ordering::Relaxed, Ordering::Relaxed);
}

/// The signals that end `send` and `recv`.
const ENDING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Installs the recording handler for SIGINT, SIGTERM and SIGHUP. With
/// `ignore_pipe` (`recv`), SIGPIPE is ignored, so that a write to a closed
/// pipe returns `EPIPE`, which [`note_broken_pipe`] turns into the same
/// clean exit (status 141, as if SIGPIPE had killed the process).
pub(super) fn install(ignore_pipe: bool) -> Result<(), Error> {
    let action = SigAction::new(
        SigHandler::Handler(note),
        // No SA_RESTART: blocked reads and writes return EINTR.
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in ENDING {
        // SAFETY: `note` is async-signal-safe (it does one atomic
        // compare-exchange on a static and touches nothing else).
        unsafe { sigaction(signal, &action) }
            .map_err(|e| Error::io("signal handler", "sigaction", e.into()))?;
    }
    if ignore_pipe {
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { sigaction(Signal::SIGPIPE, &ignore) }
            .map_err(|e| Error::io("signal handler", "sigaction", e.into()))?;
    }
    Ok(())
}

/// The signal that asked this process to stop, if any.
pub(super) fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// Records that stdout's reader is gone (`EPIPE` with SIGPIPE ignored):
/// the process ends as if by SIGPIPE, once it has detached.
pub(super) fn note_broken_pipe() {
    note(libc::SIGPIPE);
}

/// The conventional exit status of a process ended by `signal`.
pub(super) fn exit_status(signal: i32) -> i32 {
    128 + signal
}

/// The signal's name, for messages ("SIGINT").
pub(super) fn name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}
