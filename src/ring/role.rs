//! One side of a ring: its role lock, its role record, and how it learns
//! that the peer is gone.
//!
//! Liveness has two sources. A peer that detaches cleanly marks its record
//! [`ROLE_DETACHED`] (one atomic load tells). A peer that crashed leaves its
//! record at [`ROLE_ATTACHED`], but the kernel released its OFD lock; that
//! costs an `fcntl`, so it is checked only once every [`LOCK_CHECK_EVERY`]
//! consecutive empty (or full) polls, never per message.
//!
//! On MPMC rings a side watches a range of peer roles (all the producers, or
//! all the consumers): they are gone when none is attached and at least one
//! ever was. Their records are scanned when the header's detach counter
//! moved (one load per idle poll) and every [`SCAN_EVERY`] idle polls, not on
//! every poll.
//!
//! A side also watches for the loss of the ring's memory (a peer truncated
//! the file: see `sys::sigbus`). An access to a lost page marks the segment
//! at once; a side that only waits would never touch one, so every
//! [`LOCK_CHECK_EVERY`] consecutive idle polls (with the lock check), on
//! every check of the peers' locks now, and at attach, it also compares the
//! file's size with the mapping's (one `fstat`). The ring kinds check the mark ([`Side::memory_lost`], or their
//! view's copy of it) at the start of every operation and report
//! [`MEMORY_LOST`] as `Corrupted`.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::layout::{ROLE_ATTACHED, ROLE_DETACHED, ROLE_NEVER};
use crate::segment::Segment;
use crate::sys::sigbus::Poison;

/// What `Corrupted` says once this process lost the ring's memory.
pub(crate) const MEMORY_LOST: &str = "another process truncated the ring's file (or its huge pages could not be provided), so this process lost the ring's shared memory: its mapping now holds private zero pages and nothing more is exchanged through this handle; drop it (messages in flight are lost), recreate the ring, and use an anonymous (memfd) ring, which cannot be truncated, if peers may be hostile";

/// [`MEMORY_LOST`] as an owned string, for the error variants.
#[cold]
pub(crate) fn memory_lost() -> String {
    MEMORY_LOST.to_string()
}

/// Index of the producer role on single-producer rings.
pub(crate) const PRODUCER: u32 = 0;
/// Index of the consumer role on single-consumer rings.
pub(crate) const CONSUMER: u32 = 1;

/// How many consecutive unproductive polls between two lock checks.
pub(crate) const LOCK_CHECK_EVERY: u32 = 1024;
/// How many consecutive unproductive polls between two scans of the peers'
/// records on rings with several peers.
pub(crate) const SCAN_EVERY: u32 = 64;

/// What the peers' records and locks say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peers {
    /// Some peer is attached (or its lock was not checked this time).
    Present,
    /// No peer ever attached.
    NeverSeen,
    /// Peers were attached, none is now.
    Gone,
}

/// A held role. Dropping it marks the record detached and releases the lock.
pub(crate) struct Side {
    seg: Arc<Segment>,
    me: u32,
    peers: Range<u32>,
    idle_polls: u32,
    /// The live line's detach count at our last scan (`None`: never
    /// scanned, so the first idle poll scans).
    seen_detaches: Option<u32>,
    /// The kind's way of waking every sleeper on the ring, called on drop
    /// so a peer asleep in a blocking call sees us leave at once.
    wake: fn(&Segment),
    /// The segment's lost-memory mark (a copy: no pointer chase to check).
    poison: Poison,
}

impl Side {
    /// Takes role `me` on `seg`; `peer` is the role whose liveness matters.
    pub(crate) fn attach(
        seg: Arc<Segment>,
        me: u32,
        peer: u32,
        wake: fn(&Segment),
    ) -> Result<Side> {
        let name = if me == PRODUCER {
            "producer"
        } else {
            "consumer"
        };
        Side::attach_any(seg, me..me + 1, peer..peer + 1, name, wake)
    }

    /// Takes the first free role in `candidates` (named `name` in errors);
    /// `peers` are the roles whose liveness matters.
    pub(crate) fn attach_any(
        seg: Arc<Segment>,
        candidates: Range<u32>,
        peers: Range<u32>,
        name: &str,
        wake: fn(&Segment),
    ) -> Result<Side> {
        // Every process with a ring side registers for the asymmetric
        // barrier that makes publishing fence-free (see `wait`).
        crate::wait::barrier::init();
        let mut taken = None;
        let mut me = None;
        for index in candidates.clone() {
            match seg.lock_role(index, name) {
                Ok(()) => {
                    me = Some(index);
                    break;
                }
                Err(e @ crate::Error::RoleTaken { .. }) => taken = Some(e),
                Err(e) => return Err(e),
            }
        }
        let Some(me) = me else {
            return Err(match taken {
                Some(crate::Error::RoleTaken { path, pid, .. }) if candidates.len() == 1 => {
                    crate::Error::RoleTaken {
                        path,
                        role: name.to_string(),
                        pid,
                    }
                }
                _ => crate::Error::RoleTaken {
                    path: seg.path().to_path_buf(),
                    role: format!("all {} {name} roles", candidates.len()),
                    pid: None,
                },
            });
        };
        if let Some(rec) = seg.role_record(me) {
            rec.pid.store(std::process::id(), Ordering::Relaxed);
            // Release: a peer that sees ATTACHED also sees our pid.
            rec.state.store(ROLE_ATTACHED, Ordering::Release);
        }
        let poison = seg.guard().poison();
        let side = Side {
            seg,
            me,
            peers,
            idle_polls: 0,
            seen_detaches: None,
            wake,
            poison,
        };
        // A ring truncated before or while we attached is refused here
        // (dropping `side` gives the role back).
        if side.memory_lost_now() {
            return Err(crate::Error::corrupted(side.seg.path(), MEMORY_LOST));
        }
        Ok(side)
    }

    /// Has this process lost the ring's memory (see the module docs)? Two
    /// relaxed loads of process-local words; cheap enough for every
    /// operation.
    #[inline]
    pub(crate) fn memory_lost(&self) -> bool {
        self.poison.is_set()
    }

    /// [`memory_lost`](Self::memory_lost), or is the file shorter than the
    /// ring now (one `fstat`)? For error paths (see `Poison::check_size`).
    #[cold]
    pub(crate) fn memory_lost_now(&self) -> bool {
        self.poison.check_size()
    }

    /// The segment.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// The role this side holds.
    pub(crate) fn role(&self) -> u32 {
        self.me
    }

    /// Scans the peers' records; checks the locks of attached ones only if
    /// `check_locks` (one `fcntl` each), otherwise counts them as present.
    fn scan(&self, check_locks: bool) -> Peers {
        let mut seen = false;
        for index in self.peers.clone() {
            let Some(rec) = self.seg.role_record(index) else {
                continue;
            };
            // Acquire: pairs with the peer's release store of DETACHED, made
            // after its last publish (see `peer_gone`).
            match rec.state.load(Ordering::Acquire) {
                ROLE_NEVER => {}
                ROLE_DETACHED => seen = true,
                _ => {
                    seen = true;
                    if !check_locks || self.seg.role_alive(index) {
                        return Peers::Present;
                    }
                }
            }
        }
        if seen { Peers::Gone } else { Peers::NeverSeen }
    }

    /// Called after a productive poll: resets the idle counter.
    #[inline]
    pub(crate) fn active(&mut self) {
        self.idle_polls = 0;
    }

    /// Has the peer gone (detached cleanly, or died)? `false` while it never
    /// attached: a side that starts first waits for its peer. Also `false`
    /// once the ring's memory is lost (what the peers' records say is
    /// meaningless then): the caller's next look at [`Side::memory_lost`]
    /// reports it.
    pub(crate) fn peer_gone(&mut self) -> bool {
        self.idle_polls = self.idle_polls.wrapping_add(1);
        // On the lock checks' schedule (LOCK_CHECK_EVERY consecutive idle
        // polls: never while messages flow), one `fstat` for a truncation.
        if self.idle_polls.is_multiple_of(LOCK_CHECK_EVERY) && self.memory_lost_now() {
            return false;
        }
        if self.peers.len() != 1 {
            // Scan when a peer detached cleanly since the last scan (one
            // load of a read-mostly line says so), and every SCAN_EVERY
            // idle polls for peers that crashed.
            // Acquire: pairs with the detacher's release bump, made after
            // its DETACHED store, so the scan sees that record.
            let detaches = self.seg.live().detaches.load(Ordering::Acquire);
            if self.seen_detaches == Some(detaches) && !self.idle_polls.is_multiple_of(SCAN_EVERY) {
                return false;
            }
            self.seen_detaches = Some(detaches);
            return self.scan(self.idle_polls.is_multiple_of(LOCK_CHECK_EVERY)) == Peers::Gone;
        }
        let peer = self.peers.start;
        let Some(rec) = self.seg.role_record(peer) else {
            return false;
        };
        // Acquire: pairs with the peer's release store of DETACHED, made
        // after its last publish, so a re-check of the indices after seeing
        // DETACHED sees everything it published.
        match rec.state.load(Ordering::Acquire) {
            ROLE_DETACHED => true,
            ROLE_NEVER => false,
            _ => {
                if !self.idle_polls.is_multiple_of(LOCK_CHECK_EVERY) {
                    return false;
                }
                !self.seg.role_alive(peer)
            }
        }
    }

    /// Have the peers gone, checking their locks now (one system call per
    /// attached peer) rather than on the counter's schedule? `false` while
    /// none ever attached, and once the ring's memory is lost (checked now
    /// too: one `fstat`).
    pub(crate) fn peer_gone_now(&self) -> bool {
        if self.memory_lost_now() {
            return false;
        }
        self.scan(true) == Peers::Gone
    }

    /// Is some peer attached and alive right now? (Checks the locks.)
    pub(crate) fn peer_alive_now(&self) -> bool {
        self.peers.clone().any(|index| {
            self.seg.role_record(index).is_some_and(|rec| {
                rec.state.load(Ordering::Acquire) != ROLE_DETACHED && self.seg.role_alive(index)
            })
        })
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        if let Some(rec) = self.seg.role_record(self.me) {
            // Release: everything this side published happens-before a peer
            // that observes DETACHED with acquire.
            rec.state.store(ROLE_DETACHED, Ordering::Release);
        }
        // Release: a peer that sees the new count (acquire) sees DETACHED.
        self.seg.live().detaches.fetch_add(1, Ordering::Release);
        // Wake a peer asleep in a blocking call, so it sees DETACHED now
        // rather than at its next periodic check.
        (self.wake)(&self.seg);
        self.seg.unlock_role(self.me);
    }
}
