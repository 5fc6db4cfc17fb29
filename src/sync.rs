//! The atomics the ring algorithms use: `std`'s, or loom's under `cfg(loom)`
//! so the same algorithm code can be model-checked on heap memory.
//!
//! The header and role records always use `std` atomics: they are part of the
//! shared layout, whose sizes and offsets are fixed.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic;

#[cfg(loom)]
pub(crate) use loom::sync::atomic;

/// A pause in a retry loop: a CPU spin hint, or under loom a yield so the
/// model lets other threads run.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
