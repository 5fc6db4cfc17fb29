//! One side of a ring: its role lock, its role record, and how it learns
//! that the peer is gone.
//!
//! Liveness has two sources. A peer that detaches cleanly marks its record
//! [`ROLE_DETACHED`] (one atomic load tells). A peer that crashed leaves its
//! record at [`ROLE_ATTACHED`], but the kernel released its OFD lock; that
//! costs an `fcntl`, so it is checked only once every [`LOCK_CHECK_EVERY`]
//! consecutive empty (or full) polls, never per message.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::header::{ROLE_ATTACHED, ROLE_DETACHED, ROLE_NEVER};
use crate::segment::Segment;
use crate::spsc::RawRing;

/// Index of the producer role on single-producer rings.
pub(crate) const PRODUCER: u32 = 0;
/// Index of the consumer role on single-consumer rings.
pub(crate) const CONSUMER: u32 = 1;

/// How many consecutive unproductive polls between two lock checks.
pub(crate) const LOCK_CHECK_EVERY: u32 = 1024;

fn role_name(index: u32) -> &'static str {
    if index == PRODUCER {
        "producer"
    } else {
        "consumer"
    }
}

/// A held role. Dropping it marks the record detached and releases the lock.
pub(crate) struct Side {
    seg: Arc<Segment>,
    me: u32,
    peer: u32,
    idle_polls: u32,
}

impl Side {
    /// Takes role `me` on `seg`; `peer` is the role whose liveness matters.
    pub(crate) fn attach(seg: Arc<Segment>, me: u32, peer: u32) -> Result<Side> {
        // Every process with a ring side registers for the asymmetric
        // barrier that makes publishing fence-free (see `wait`).
        crate::wait::barrier::init();
        seg.lock_role(me, role_name(me))?;
        if let Some(rec) = seg.role_record(me) {
            rec.pid.store(std::process::id(), Ordering::Relaxed);
            // Release: a peer that sees ATTACHED also sees our pid.
            rec.state.store(ROLE_ATTACHED, Ordering::Release);
        }
        Ok(Side {
            seg,
            me,
            peer,
            idle_polls: 0,
        })
    }

    /// The segment.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Called after a productive poll: resets the idle counter.
    #[inline]
    pub(crate) fn active(&mut self) {
        self.idle_polls = 0;
    }

    /// Has the peer gone (detached cleanly, or died)? `false` while it never
    /// attached: a side that starts first waits for its peer.
    pub(crate) fn peer_gone(&mut self) -> bool {
        let Some(rec) = self.seg.role_record(self.peer) else {
            return false;
        };
        // Acquire: pairs with the peer's release store of DETACHED, made
        // after its last publish, so a re-check of the indices after seeing
        // DETACHED sees everything it published.
        match rec.state.load(Ordering::Acquire) {
            ROLE_DETACHED => true,
            ROLE_NEVER => false,
            _ => {
                self.idle_polls = self.idle_polls.wrapping_add(1);
                if !self.idle_polls.is_multiple_of(LOCK_CHECK_EVERY) {
                    return false;
                }
                !self.seg.role_alive(self.peer)
            }
        }
    }

    /// Has the peer gone, checking its lock now (one system call) rather
    /// than on the counter's schedule? `false` while it never attached.
    pub(crate) fn peer_gone_now(&self) -> bool {
        let Some(rec) = self.seg.role_record(self.peer) else {
            return false;
        };
        // Acquire: as in `peer_gone`.
        match rec.state.load(Ordering::Acquire) {
            ROLE_DETACHED => true,
            ROLE_NEVER => false,
            _ => !self.seg.role_alive(self.peer),
        }
    }

    /// Checks the peer's lock now (one system call), whatever the counters.
    pub(crate) fn peer_alive_now(&self) -> bool {
        match self.seg.role_record(self.peer) {
            Some(rec) if rec.state.load(Ordering::Acquire) == ROLE_DETACHED => false,
            _ => self.seg.role_alive(self.peer),
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        if let Some(rec) = self.seg.role_record(self.me) {
            // Release: everything this side published happens-before a peer
            // that observes DETACHED with acquire.
            rec.state.store(ROLE_DETACHED, Ordering::Release);
        }
        // Wake a peer asleep in a blocking call, so it sees DETACHED now
        // rather than at its next periodic check.
        if let Ok(ring) = RawRing::new(&self.seg) {
            ring.data_wait().notify();
            ring.space_wait().notify();
        }
        self.seg.unlock_role(self.me);
    }
}
