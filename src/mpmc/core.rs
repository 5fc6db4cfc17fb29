//! One side of an MPMC ring, whatever it carries: its role, its view of
//! the ring, how it claims and how it waits.

use std::sync::Arc;
use std::time::Duration;

use super::raw::{Claim, FastRead, RawMpmc, Stuck};
use crate::error::{Error, Result};
use crate::ring::builder::Settings;
use crate::ring::role::{Side, memory_lost};
use crate::ring::{PopError, PushError, TryPopError, TryPushError};
use crate::segment::Segment;
use crate::spsc::raw::full_error;
use crate::sync::atomic::{Ordering, fence};
use crate::wait::{self, Poll, WaitCounters, WaitStrategy};

/// One side of an MPMC ring, whatever it carries: its role, its view of
/// the ring and how it waits.
pub(super) struct Core {
    pub(super) ring: RawMpmc,
    pub(super) side: Side,
    pub(super) stuck: Stuck,
    pub(super) persistent: bool,
    pub(super) strategy: WaitStrategy,
    /// Producers: how long `drop` waits for unread messages to be taken.
    pub(super) linger: Duration,
    /// Producers: the position after the last message this side published
    /// (private; never read back from shared memory).
    pub(super) published_end: u64,
    /// Consumers: claimed positions not yet handed out, as (first, count):
    /// a dead predecessor's claim taken over at attach, or a message put
    /// back. Handed out before anything new is claimed; while it is `Some`
    /// the role's claim record still covers it.
    pending: Option<(u64, u64)>,
}

impl Core {
    pub(super) fn attach(seg: Arc<Segment>, producer: bool, settings: &Settings) -> Result<Core> {
        let ring = RawMpmc::new(&seg)?;
        let persistent = seg.is_persistent();
        let (p, c) = (ring.producers, ring.consumers);
        let side = if producer {
            Side::attach_any(seg, 0..p, p..p + c, "producer", wake_all)?
        } else {
            Side::attach_any(seg, p..p + c, 0..p, "consumer", wake_all)?
        };
        // A predecessor in this role died (or left) with a claim recorded:
        // we hold its lock now, so it is gone. A consumer takes over what
        // it had claimed and not released, to deliver it first, in order;
        // otherwise clearing lets peers recover its slots.
        let pending = if producer {
            None
        } else {
            let seg = side.segment();
            adopt(&ring, side.role(), &|r| seg.role_alive(r))
        };
        if pending.is_none() {
            ring.clear(side.role());
        }
        Ok(Core {
            ring,
            side,
            stuck: Stuck::default(),
            persistent,
            strategy: settings.strategy.unwrap_or_default(),
            linger: settings.linger,
            published_end: 0,
            pending,
        })
    }

    /// Claims one slot for writing: the fast path (see
    /// [`RawMpmc::claim_one_for_write`]), else the general one. The same
    /// outcomes as `claim_write(1, false)`.
    #[inline]
    pub(super) fn claim_write_one(&mut self) -> std::result::Result<u64, TryPushError<()>> {
        if let Some(pos) = self.fast_write_one() {
            return Ok(pos);
        }
        self.claim_write(1, false).map(|(pos, _)| pos)
    }

    /// The fast path alone: one slot claimed, or `None` (the caller runs
    /// the general path, which decides everything else).
    #[inline]
    fn fast_write_one(&mut self) -> Option<u64> {
        // The lost-memory mark first, as `claim_write` does: two relaxed
        // loads of process-local words.
        if self.side.memory_lost() {
            return None;
        }
        let pos = self.ring.claim_one_for_write(self.side.role())?;
        self.side.active();
        Some(pos)
    }

    /// As [`fast_write_one`](Self::fast_write_one), for reading: only
    /// while nothing taken over or put back is pending (those go first).
    #[inline]
    fn fast_read_one(&mut self) -> Option<u64> {
        if self.pending.is_some() || self.side.memory_lost() {
            return None;
        }
        match self.ring.claim_one_for_read(self.side.role()) {
            FastRead::Got(pos) => {
                self.side.active();
                Some(pos)
            }
            FastRead::Unpublished(_) | FastRead::Other => None,
        }
    }

    /// Claims one published slot: the fast path (see
    /// [`RawMpmc::claim_one_for_read`]) when nothing is pending, else the
    /// general one. The same outcomes as `claim_read(1, false)`.
    #[inline]
    pub(super) fn claim_read_one(&mut self) -> std::result::Result<u64, TryPopError> {
        if self.pending.is_some() || self.side.memory_lost() {
            return self.claim_read(1, false).map(|(pos, _)| pos);
        }
        match self.ring.claim_one_for_read(self.side.role()) {
            FastRead::Got(pos) => {
                self.side.active();
                Ok(pos)
            }
            // What the general path does on this value, without reloading
            // the lines: count the poll stuck at `h`; once due, the general
            // path checks the producers now.
            FastRead::Unpublished(h) => {
                if self.stuck.due(h, false) {
                    self.claim_read(1, true).map(|(pos, _)| pos)
                } else {
                    self.nothing_to_read()
                }
            }
            FastRead::Other => self.claim_read(1, false).map(|(pos, _)| pos),
        }
    }

    /// A poll that found nothing to claim: `Empty`, or what the peers'
    /// absence or the loss of the memory make of it (as `claim_read` does
    /// on `Claim::Nothing`).
    #[inline(never)]
    fn nothing_to_read(&mut self) -> std::result::Result<u64, TryPopError> {
        let Core {
            ring, side, stuck, ..
        } = self;
        nothing_read(ring, side, stuck, 1).map(|(pos, _)| pos)
    }

    #[inline(never)]
    pub(super) fn claim_write(
        &mut self,
        want: u64,
        scan_now: bool,
    ) -> std::result::Result<(u64, u64), TryPushError<()>> {
        let Core {
            ring,
            side,
            stuck,
            persistent,
            ..
        } = self;
        claim_write(ring, side, stuck, *persistent, want, scan_now)
    }

    /// The next position taken over or put back that is still ours, if
    /// any (one at a time). Clears the record once none is left.
    fn next_pending(&mut self) -> Option<(u64, u64)> {
        while let Some((pos, n)) = self.pending {
            self.pending = (n > 1).then(|| (pos.wrapping_add(1), n - 1));
            // Ours unless a producer re-published it before we took the
            // role over (then it is delivered at its new position).
            if self.ring.held(pos) {
                return Some((pos, 1));
            }
        }
        self.ring.clear(self.side.role());
        None
    }

    /// Consumers: hands position `pos` (claimed by this side, handed out
    /// and not released) out again on the next claim. Its record stays.
    pub(super) fn put_back(&mut self, pos: u64) {
        self.pending = match self.pending {
            Some((p, n)) if p == pos.wrapping_add(1) => Some((pos, n + 1)),
            _ => Some((pos, 1)),
        };
    }

    #[inline(never)]
    pub(super) fn claim_read(
        &mut self,
        want: u64,
        scan_now: bool,
    ) -> std::result::Result<(u64, u64), TryPopError> {
        if self.pending.is_some()
            && let Some(got) = self.next_pending()
        {
            return Ok(got);
        }
        let Core {
            ring, side, stuck, ..
        } = self;
        claim_read(ring, side, stuck, want, scan_now)
    }

    /// Claims up to `want` slots for writing, waiting while full.
    #[inline]
    pub(super) fn claim_write_blocking(
        &mut self,
        want: u64,
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, u64), PushError<()>> {
        if want == 1
            && let Some(pos) = self.fast_write_one()
        {
            return Ok((pos, 1));
        }
        self.claim_write_waiting(want, timeout)
    }

    /// The general path of `claim_write_blocking`.
    #[inline(never)]
    fn claim_write_waiting(
        &mut self,
        want: u64,
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, u64), PushError<()>> {
        let Core {
            ring,
            side,
            stuck,
            persistent,
            strategy,
            ..
        } = self;
        let persistent = *persistent;
        let outcome = wait::block_on(ring.space_wait(), *strategy, timeout, |check_peer| {
            write_poll(ring, side, stuck, persistent, want, check_peer)
        });
        outcome.unwrap_or(Err(PushError::Timeout(())))
    }

    /// Claims up to `want` published slots, waiting while empty.
    #[inline]
    pub(super) fn claim_read_blocking(
        &mut self,
        want: u64,
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, u64), PopError> {
        if want == 1
            && let Some(pos) = self.fast_read_one()
        {
            return Ok((pos, 1));
        }
        self.claim_read_waiting(want, timeout)
    }

    /// The general path of `claim_read_blocking`.
    #[inline(never)]
    fn claim_read_waiting(
        &mut self,
        want: u64,
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, u64), PopError> {
        if self.pending.is_some()
            && let Some(got) = self.next_pending()
        {
            return Ok(got);
        }
        let Core {
            ring,
            side,
            stuck,
            strategy,
            ..
        } = self;
        let outcome = wait::block_on(ring.data_wait(), *strategy, timeout, |check_peer| {
            read_poll(ring, side, stuck, want, check_peer)
        });
        outcome.unwrap_or(Err(PopError::Timeout))
    }

    /// One poll of a waiting claim of one published slot (the async
    /// layer): what was taken over or put back first, then the ring.
    #[cfg(all(feature = "async", not(loom)))]
    pub(super) fn poll_read_one(
        &mut self,
        check_peer: bool,
    ) -> Poll<std::result::Result<u64, PopError>> {
        if self.pending.is_some()
            && let Some((pos, _)) = self.next_pending()
        {
            return Poll::Ready(Ok(pos));
        }
        let Core {
            ring, side, stuck, ..
        } = self;
        match read_poll(ring, side, stuck, 1, check_peer) {
            Poll::Ready(r) => Poll::Ready(r.map(|(pos, _)| pos)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// One poll of a waiting claim of one free slot (the async layer).
    #[cfg(all(feature = "async", not(loom)))]
    pub(super) fn poll_write_one(
        &mut self,
        check_peer: bool,
    ) -> Poll<std::result::Result<u64, PushError<()>>> {
        let Core {
            ring,
            side,
            stuck,
            persistent,
            ..
        } = self;
        match write_poll(ring, side, stuck, *persistent, 1, check_peer) {
            Poll::Ready(r) => Poll::Ready(r.map(|(pos, _)| pos)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The event a waiting claim sleeps on (data for consumers, space for
    /// producers), and the segment that holds it.
    #[cfg(all(feature = "async", not(loom)))]
    pub(super) fn wait_parts(&self, consumer: bool) -> (wait::Event<'_>, &Arc<Segment>) {
        let event = if consumer {
            self.ring.data_wait()
        } else {
            self.ring.space_wait()
        };
        (event, self.side.segment())
    }

    /// Consumers: is there something to hand out without waiting (a
    /// position taken over or put back, or a published or skipped slot
    /// at the head)? Claims nothing.
    #[cfg(not(loom))]
    pub(super) fn readable(&self) -> bool {
        self.pending.is_some() || self.ring.head_settled()
    }

    /// Producers: would a claim of one slot find it free (or are the
    /// consumers of a non-persistent ring gone, or the memory lost)? A
    /// hint for readiness that claims nothing and errs towards `false`.
    #[cfg(all(feature = "async", not(loom)))]
    pub(super) fn writable(&mut self) -> bool {
        self.ring.tail_free()
            || self.side.memory_lost()
            || (!self.persistent && self.side.peer_gone())
    }

    #[inline]
    pub(super) fn publish(&mut self, pos: u64, n: u64, skip: bool) {
        self.ring.publish(self.side.role(), pos, n, skip);
        self.published_end = pos.wrapping_add(n);
    }

    /// Has a consumer claimed everything this producer published?
    fn all_taken(&self) -> bool {
        all_taken(&self.ring, self.published_end)
    }

    /// Producers: waits until consumers have claimed every message this
    /// side published, at most `timeout`.
    pub(super) fn flush(&mut self, timeout: Duration) -> Result<()> {
        let Core {
            ring,
            side,
            strategy,
            published_end,
            ..
        } = self;
        let outcome = wait::block_on(ring.space_wait(), *strategy, Some(timeout), |check| {
            // On the periodic check, also look for a truncated file.
            if side.memory_lost() || (check && side.memory_lost_now()) {
                return Poll::Ready(Err(Error::corrupted(side.segment().path(), memory_lost())));
            }
            if all_taken(ring, *published_end) {
                return Poll::Ready(Ok(()));
            }
            if side.peer_gone() {
                return Poll::Ready(Err(Error::Disconnected {
                    path: side.segment().path().to_path_buf(),
                }));
            }
            Poll::Pending
        });
        outcome.unwrap_or_else(|()| {
            Err(Error::Timeout {
                path: self.side.segment().path().to_path_buf(),
                what: "flushing: consumers have not taken every message this producer sent".into(),
                waited: timeout,
            })
        })
    }

    /// Producers, when dropped: lingers while this side's messages are
    /// unread, then reports them if no consumer is there to take them.
    pub(super) fn linger_on_drop(&mut self) {
        // Lost memory: nothing can be flushed, and what the indices say
        // means nothing.
        if self.persistent || self.side.memory_lost() || self.all_taken() {
            return;
        }
        if !self.linger.is_zero() {
            let _ = self.flush(self.linger);
        }
        if !self.all_taken() && !self.side.peer_alive_now() {
            log::warn!(
                "{}: producer dropped with {} message(s) in the ring and no consumer attached; they are lost if nobody attaches before the ring is removed (flush() first, or build the producer with linger(..))",
                self.side.segment().path().display(),
                self.ring.len().unwrap_or(0)
            );
        }
    }

    #[inline]
    pub(super) fn release(&mut self, pos: u64, n: u64) {
        if self.pending.is_some() {
            // The record still covers positions taken over: keep it.
            self.ring.free(pos, n);
            self.ring.space_wait().notify();
        } else {
            self.ring.release(self.side.role(), pos, n);
        }
    }

    pub(super) fn stats(&self) -> RingStats {
        let (skipped, redelivered) = self.ring.counts();
        let (data, space) = (
            self.ring.data_wait().counters(),
            self.ring.space_wait().counters(),
        );
        RingStats {
            len: self.ring.len(),
            enqueued: self.ring.tail().load(Ordering::Acquire),
            dequeued: self.ring.head().load(Ordering::Acquire),
            skipped,
            redelivered,
            wait_data: data,
            wait_space: space,
        }
    }
}

/// Longest a consumer taking over a dead predecessor's claim waits for a
/// producer caught re-publishing one of its messages (a few instructions,
/// unless that producer is stopped): then it leaves the claim to them.
const ADOPT_WAIT: Duration = Duration::from_secs(1);

/// A consumer that just took role `me` takes over the positions its dead
/// predecessor claimed and did not release, so that they are delivered
/// first and in order (instead of re-published at the end by a producer,
/// after [`super::REDELIVERY_GRACE`]). Returns them as (first, count), or
/// `None` when there is nothing to take over.
///
/// A producer re-publishes a dead consumer's message only after recording
/// the position it re-publishes at (`prev + capacity`), a SeqCst fence,
/// and finding no live role whose record covers `prev`. We took the lock
/// (a system call) and fence before reading the producers' records: so
/// either that producer sees this role alive with the record covering
/// `prev` and backs off, or we see its record and wait until it is done,
/// after which the slot shows which of us has the message (checked again
/// when the message is handed out). Model-checked in
/// `loom_models::a_dead_consumers_message_is_delivered_once_by_the_new_holder_or_a_producer`.
fn adopt(ring: &RawMpmc, me: u32, alive: &dyn Fn(u32) -> bool) -> Option<(u64, u64)> {
    let (pos, n) = ring.recorded_claim(me)?;
    fence(Ordering::SeqCst);
    let started = std::time::Instant::now();
    loop {
        if !ring.takeover_contested(pos, n, alive) {
            return Some((pos, n));
        }
        if started.elapsed() >= ADOPT_WAIT {
            return None;
        }
        // Look again soon: a producer retrying on a full ring sets its
        // record on every try and clears it in between; one look that
        // finds it clear is enough (a try that starts after our lock
        // backs off).
        std::thread::yield_now();
    }
}

/// Has a consumer claimed every position below `end`? (Reads the dequeue
/// position.)
fn all_taken(ring: &RawMpmc, end: u64) -> bool {
    // Acquire: pairs with the consumers' claiming CAS.
    let head = ring.head().load(Ordering::Acquire);
    // Positions are absolute: `head >= end`, wrap-safe.
    head.wrapping_sub(end) < 1 << 63
}

/// Wakes every sleeper on an MPMC ring (a side leaving).
fn wake_all(seg: &Segment) {
    if let Ok(ring) = RawMpmc::new(seg) {
        ring.data_wait().notify();
        ring.space_wait().notify();
    }
}

/// What a `Corrupted` claim reports: the loss of the ring's memory if that
/// is what happened (zeros read from it say nothing about the peers).
fn lost_or(side: &Side, what: String) -> String {
    if side.memory_lost_now() {
        memory_lost()
    } else {
        what
    }
}

/// One poll of a waiting claim for writing: `Disconnected` once every
/// consumer of a non-persistent ring is gone (`check_peer`: their locks
/// are checked now), pending while full.
fn write_poll(
    ring: &RawMpmc,
    side: &mut Side,
    stuck: &mut Stuck,
    persistent: bool,
    want: u64,
    check_peer: bool,
) -> Poll<std::result::Result<(u64, u64), PushError<()>>> {
    match claim_write(ring, side, stuck, persistent, want, check_peer) {
        Ok(got) => Poll::Ready(Ok(got)),
        Err(TryPushError::Full(())) => {
            // Checked on persistent rings too: it also looks for a
            // truncated file (the next poll reports it).
            if check_peer && side.peer_gone_now() && !persistent {
                return Poll::Ready(Err(PushError::Disconnected(())));
            }
            Poll::Pending
        }
        Err(TryPushError::Disconnected(())) => Poll::Ready(Err(PushError::Disconnected(()))),
        Err(TryPushError::Corrupted((), w)) => Poll::Ready(Err(PushError::Corrupted((), w))),
    }
}

/// One poll of a waiting claim for reading: `Disconnected` once every
/// producer is gone (`check_peer`: their locks are checked now) and the
/// ring is drained, pending while empty.
fn read_poll(
    ring: &RawMpmc,
    side: &mut Side,
    stuck: &mut Stuck,
    want: u64,
    check_peer: bool,
) -> Poll<std::result::Result<(u64, u64), PopError>> {
    let mut result = claim_read(ring, side, stuck, want, check_peer);
    if check_peer && result == Err(TryPopError::Empty) && side.peer_gone_now() {
        result = last_read(ring, side, stuck, want);
    }
    match result {
        Ok(got) => Poll::Ready(Ok(got)),
        Err(TryPopError::Empty) => Poll::Pending,
        Err(TryPopError::Disconnected) => Poll::Ready(Err(PopError::Disconnected)),
        Err(TryPopError::Corrupted(w)) => Poll::Ready(Err(PopError::Corrupted(w))),
    }
}

/// One non-blocking claim for writing, on a producer's parts.
fn claim_write(
    ring: &RawMpmc,
    side: &mut Side,
    stuck: &mut Stuck,
    persistent: bool,
    want: u64,
    scan_now: bool,
) -> std::result::Result<(u64, u64), TryPushError<()>> {
    if side.memory_lost() {
        return Err(TryPushError::Corrupted((), memory_lost()));
    }
    let seg = side.segment();
    let claim = ring.claim_for_write(side.role(), want, stuck, scan_now, &|r| seg.role_alive(r));
    match claim {
        Claim::Got(pos, n) => {
            side.active();
            Ok((pos, n))
        }
        Claim::Nothing => Err(full_error(side, persistent, ())),
        Claim::Corrupted(w) => Err(TryPushError::Corrupted((), lost_or(side, w))),
    }
}

/// One non-blocking claim for reading, on a consumer's parts: `Empty`, or
/// `Disconnected` once every producer is gone and the ring is drained.
fn claim_read(
    ring: &RawMpmc,
    side: &mut Side,
    stuck: &mut Stuck,
    want: u64,
    scan_now: bool,
) -> std::result::Result<(u64, u64), TryPopError> {
    if side.memory_lost() {
        return Err(TryPopError::Corrupted(memory_lost()));
    }
    let seg = side.segment();
    let claim = ring.claim_for_read(side.role(), want, stuck, scan_now, &|r| seg.role_alive(r));
    match claim {
        Claim::Got(pos, n) => {
            side.active();
            Ok((pos, n))
        }
        Claim::Corrupted(w) => Err(TryPopError::Corrupted(lost_or(side, w))),
        Claim::Nothing => nothing_read(ring, side, stuck, want),
    }
}

/// A consumer's poll found nothing: `Empty`, unless every producer is gone
/// (then one last look) or the memory was lost.
fn nothing_read(
    ring: &RawMpmc,
    side: &mut Side,
    stuck: &mut Stuck,
    want: u64,
) -> std::result::Result<(u64, u64), TryPopError> {
    if side.peer_gone() {
        return last_read(ring, side, stuck, want);
    }
    // The idle poll may have found the file truncated.
    if side.memory_lost() {
        return Err(TryPopError::Corrupted(memory_lost()));
    }
    Err(TryPopError::Empty)
}

/// Every producer is gone: one more look, checking a stuck slot's claimant
/// now, decides between a last message and `Disconnected`.
fn last_read(
    ring: &RawMpmc,
    side: &mut Side,
    stuck: &mut Stuck,
    want: u64,
) -> std::result::Result<(u64, u64), TryPopError> {
    let seg = side.segment();
    match ring.claim_for_read(side.role(), want, stuck, true, &|r| seg.role_alive(r)) {
        Claim::Got(pos, n) => Ok((pos, n)),
        Claim::Corrupted(w) => Err(TryPopError::Corrupted(lost_or(side, w))),
        Claim::Nothing => match ring.len() {
            // A dead producer's slot was just marked skipped: the next call
            // takes it.
            Some(n) if n > 0 => Err(TryPopError::Empty),
            _ => Err(TryPopError::Disconnected),
        },
    }
}

/// A snapshot of an MPMC ring's shared counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingStats {
    /// Messages published or being written (`None`: indices inconsistent).
    pub len: Option<u64>,
    /// Slots skipped because their producer died before publishing them
    /// (or dropped a [`WriteChunk`](super::WriteChunk) without committing it).
    pub skipped: u64,
    /// Messages re-published because their consumer died before releasing.
    pub redelivered: u64,
    /// Positions claimed by producers since creation (messages, skipped
    /// slots and redeliveries).
    pub enqueued: u64,
    /// Positions claimed by consumers since creation.
    pub dequeued: u64,
    /// The data direction's wait counters.
    pub wait_data: WaitCounters,
    /// The space direction's wait counters.
    pub wait_space: WaitCounters,
}
