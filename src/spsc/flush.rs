//! Nothing lost silently, for producers of the SPSC index protocol (typed
//! and frame rings): waiting until the consumer has taken everything, and
//! what a dropped producer does with unread messages.

use std::time::Duration;

use super::raw::RawRing;
use crate::error::{Error, Result};
use crate::ring::role::Side;
use crate::sync::atomic::Ordering;
use crate::wait::{self, Poll, WaitStrategy};

/// Units published below `tail` that the consumer has not taken (the
/// capacity if the consumer's index is out of range).
pub(crate) fn unread(ring: &RawRing, tail: u64) -> u64 {
    // Acquire: pairs with the consumer's release of `head`.
    let head = ring.head().load(Ordering::Acquire);
    ring.check(tail, head).unwrap_or(ring.capacity())
}

/// Waits until the consumer has taken every unit below `tail`, at most
/// `timeout`. `units` names what is counted in the timeout message.
pub(crate) fn flush(
    ring: &RawRing,
    tail: u64,
    side: &mut Side,
    strategy: WaitStrategy,
    timeout: Duration,
    units: &str,
) -> Result<()> {
    let outcome = wait::block_on(ring.space_wait(), strategy, Some(timeout), |check| {
        // On the periodic check, also look for a truncated file (then
        // `check` below reports the lost memory).
        if check {
            side.memory_lost_now();
        }
        // Acquire: pairs with the consumer's release of `head`.
        let head = ring.head().load(Ordering::Acquire);
        match ring.check(tail, head) {
            Ok(0) => Poll::Ready(Ok(())),
            Ok(_) if side.peer_gone() => Poll::Ready(Err(Error::Disconnected {
                path: side.segment().path().to_path_buf(),
            })),
            Ok(_) => Poll::Pending,
            Err(w) => Poll::Ready(Err(Error::corrupted(side.segment().path(), w))),
        }
    });
    outcome.unwrap_or_else(|()| {
        Err(Error::Timeout {
            path: side.segment().path().to_path_buf(),
            what: format!(
                "flushing: the consumer has not taken {} {units}",
                unread(ring, tail)
            ),
            waited: timeout,
        })
    })
}

/// What a producer does when dropped: if anything is unread on a ring that
/// is not persistent, wait up to `linger` for the consumer to take it, then
/// report with `log::warn!` what is still unread while no consumer is
/// attached (it goes with the ring when its last user leaves).
pub(crate) fn linger_on_drop(
    ring: &RawRing,
    tail: u64,
    side: &mut Side,
    strategy: WaitStrategy,
    linger: Duration,
    persistent: bool,
    units: &str,
) {
    // Lost memory (a truncating peer): nothing can be flushed, and the
    // indices mean nothing.
    if persistent || ring.lost() || unread(ring, tail) == 0 {
        return;
    }
    if !linger.is_zero() {
        let _ = flush(ring, tail, side, strategy, linger, units);
    }
    let left = unread(ring, tail);
    if left > 0 && !side.peer_alive_now() {
        log::warn!(
            "{}: producer dropped with {left} unread {units} and no consumer attached; they are lost if nobody attaches before the ring is removed (flush() first, or build the producer with linger(..))",
            side.segment().path().display()
        );
    }
}
