//! The publisher: typed and byte handles over one core that decides when a
//! `block` ring has room (and whom to stop waiting for).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::raw::{MAX_POS, RawBroadcast};
use crate::error::{Error, Result};
use crate::layout::{Overflow, ROLE_ATTACHED};
use crate::message::Message;
use crate::ring::builder::{Settings, entry_points};
use crate::ring::role::{LOCK_CHECK_EVERY, Side, memory_lost};
use crate::ring::{FramePushError, PushError, TryPushError};
use crate::segment::Segment;
use crate::sync::atomic::Ordering;
use crate::wait::{self, Poll, WaitCounters, WaitStrategy};

/// How many consecutive full polls between two looks at the clock for
/// eviction.
const CLOCK_EVERY: u32 = 64;

/// Why the publisher cannot write now.
enum Blocked {
    Full,
    Corrupted(String),
}

/// What every publisher handle holds.
pub(crate) struct PubCore {
    ring: RawBroadcast,
    side: Side,
    /// Sequence number of the next message.
    next: u64,
    /// `block`: messages below this may be written without looking at the
    /// subscribers (their lowest position plus the capacity, when last
    /// read).
    limit: u64,
    overflow: Overflow,
    strategy: WaitStrategy,
    /// Consecutive polls that found the ring full.
    full_polls: u32,
    /// When the current wait for a subscriber began.
    blocked_since: Option<Instant>,
}

impl PubCore {
    pub(crate) fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<PubCore> {
        let ring = RawBroadcast::new(&seg)?;
        let overflow = seg.layout().overflow();
        let roles = seg.layout().roles();
        let side = Side::attach_any(seg, 0..1, 1..roles, "publisher", super::wake_all)?;
        // A previous publisher's count; untrusted.
        let next = ring.tail().ok_or_else(|| {
            Error::corrupted(side.segment().path(), "publisher position out of range")
        })?;
        Ok(PubCore {
            ring,
            side,
            next,
            // Look at the subscribers before the first write.
            limit: next,
            overflow,
            strategy: settings.strategy.unwrap_or_default(),
            full_polls: 0,
            blocked_since: None,
        })
    }

    /// Is subscriber `role` attached (by its record: one load)?
    fn attached(seg: &Segment, role: u32) -> bool {
        seg.role_record(role)
            .is_some_and(|r| r.state.load(Ordering::Acquire) == ROLE_ATTACHED)
    }

    /// Would a push not wait now (room, or an error to report)? Writes
    /// nothing (`select` and the readiness fd).
    #[cfg(not(loom))]
    fn writable(&mut self) -> bool {
        !matches!(self.room(false), Err(Blocked::Full))
    }

    /// Room for one more message now? `check_now`: also check the locks of
    /// the subscribers that hold the publisher up, and the eviction delay.
    fn room(&mut self, check_now: bool) -> std::result::Result<(), Blocked> {
        if self.side.memory_lost() {
            return Err(Blocked::Corrupted(memory_lost()));
        }
        if self.next >= MAX_POS {
            return Err(Blocked::Corrupted(
                "the ring has reached its last sequence number".into(),
            ));
        }
        let Overflow::Block { evict_after } = self.overflow else {
            return Ok(());
        };
        if self.next < self.limit {
            return Ok(());
        }
        let seg = self.side.segment().clone();
        let include = |role: u32| Self::attached(&seg, role);
        self.limit = self.ring.rescan(self.next, &include);
        if self.next < self.limit {
            self.full_polls = 0;
            self.blocked_since = None;
            return Ok(());
        }
        self.full_polls = self.full_polls.wrapping_add(1);
        let since = *self.blocked_since.get_or_insert_with(Instant::now);
        let locks = check_now || self.full_polls.is_multiple_of(LOCK_CHECK_EVERY);
        let clock = evict_after.is_some() && self.full_polls.is_multiple_of(CLOCK_EVERY);
        if locks || clock {
            let overdue = evict_after.is_some_and(|d| since.elapsed() >= d);
            if self.drop_blockers(&seg, locks, overdue) {
                self.limit = self.ring.rescan(self.next, &include);
                if self.next < self.limit {
                    self.full_polls = 0;
                    self.blocked_since = None;
                    return Ok(());
                }
            }
        }
        Err(Blocked::Full)
    }

    /// Evicts the subscribers that hold the publisher up and are dead
    /// (their lock is free: checked if `locks`) or, if `overdue`, all of
    /// them. True if any was evicted.
    fn drop_blockers(&self, seg: &Segment, locks: bool, overdue: bool) -> bool {
        let mut any = false;
        let cap = self.ring.capacity();
        for role in 1..seg.layout().roles() {
            let Some(line) = self.ring.sub_line(role) else {
                break;
            };
            if !Self::attached(seg, role) || self.ring.is_evicted(line) {
                continue;
            }
            // Acquire: pairs with the subscriber's join.
            let epoch = line.epoch.load(Ordering::Acquire);
            let pos = line.pos.load(Ordering::Acquire);
            if pos.saturating_add(cap) > self.next {
                continue; // not the one holding us up
            }
            let dead = locks && !seg.role_alive(role);
            if dead || overdue {
                self.ring.evict(role, epoch, !dead);
                any = true;
            }
        }
        any
    }

    /// Writes `bytes` as the next message; returns its sequence number.
    fn publish(&mut self, bytes: &[u8]) -> u64 {
        let n = self.next;
        self.ring.write(n, bytes);
        self.next = n + 1;
        self.side.active();
        n
    }

    /// Waits for room per the strategy, at most `timeout`.
    fn wait_room(&mut self, timeout: Option<Duration>) -> std::result::Result<(), Blocked> {
        if self.room(false).is_ok() {
            return Ok(());
        }
        let ring = RawBroadcast::new(self.side.segment())
            .map_err(|e| Blocked::Corrupted(e.to_string()))?;
        let strategy = self.strategy;
        let outcome = wait::block_on(ring.space_wait(), strategy, timeout, |check| {
            match self.room(check) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(Blocked::Full) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            }
        });
        outcome.unwrap_or(Err(Blocked::Full))
    }

    /// Sequence number of the next message.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next
    }

    /// Subscriber roles held now, as their records say (one load each; a
    /// subscriber that crashed counts until its lock is checked).
    pub(crate) fn subscribers(&self) -> usize {
        let seg = self.side.segment();
        (1..seg.layout().roles())
            .filter(|&role| Self::attached(seg, role))
            .count()
    }
}

/// The publisher of a broadcast ring of `T` (one per ring).
///
/// `try_push` never waits; `push` waits for room (only on a `block` ring
/// whose slowest live subscriber is a whole ring behind). Each returns the
/// message's sequence number.
pub struct Publisher<T> {
    core: PubCore,
    _message: PhantomData<fn(T)>,
}

impl<T: Message> Publisher<T> {
    entry_points!("the publisher", "messages");

    pub(crate) fn from_core(core: PubCore) -> Result<Self> {
        Ok(Publisher {
            core,
            _message: PhantomData,
        })
    }

    /// Publishes `value` if there is room now; returns its sequence number.
    pub fn try_push(&mut self, value: T) -> std::result::Result<u64, TryPushError<T>> {
        match self.core.room(false) {
            Ok(()) => Ok(self.core.publish(bytemuck::bytes_of(&value))),
            Err(Blocked::Full) => Err(TryPushError::Full(value)),
            Err(Blocked::Corrupted(w)) => Err(TryPushError::Corrupted(value, w)),
        }
    }

    /// Publishes `value`, waiting for room as long as it takes.
    pub fn push(&mut self, value: T) -> std::result::Result<u64, PushError<T>> {
        self.push_timeout(value, None)
    }

    /// Publishes `value`, waiting for room at most `timeout` (`None`: no
    /// limit).
    pub fn push_timeout(
        &mut self,
        value: T,
        timeout: Option<Duration>,
    ) -> std::result::Result<u64, PushError<T>> {
        match self.core.wait_room(timeout) {
            Ok(()) => Ok(self.core.publish(bytemuck::bytes_of(&value))),
            Err(Blocked::Full) => Err(PushError::Timeout(value)),
            Err(Blocked::Corrupted(w)) => Err(PushError::Corrupted(value, w)),
        }
    }

    /// Sequence number the next message will get (messages published so
    /// far, by every publisher this ring had).
    pub fn next_seq(&self) -> u64 {
        self.core.next_seq()
    }

    /// One poll of a waiting push (the async layer): `Err(value)` while
    /// full; `check_peer` checks the blocking subscribers' locks now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_push(
        &mut self,
        value: T,
        check_peer: bool,
    ) -> std::result::Result<std::result::Result<(), PushError<T>>, T> {
        match self.core.room(check_peer) {
            Ok(()) => {
                self.core.publish(bytemuck::bytes_of(&value));
                Ok(Ok(()))
            }
            Err(Blocked::Full) => Err(value),
            Err(Blocked::Corrupted(w)) => Ok(Err(PushError::Corrupted(value, w))),
        }
    }

    /// The space eventcount and the segment (the async layer).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (wait::Event<'_>, &Arc<Segment>) {
        (self.core.ring.space_wait(), self.core.side.segment())
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// The ring's overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.core.overflow
    }

    /// Subscribers attached now (a subscriber that crashed counts until the
    /// publisher next checks its lock).
    pub fn subscribers(&self) -> usize {
        self.core.subscribers()
    }

    /// Subscribers evicted from this ring so far.
    pub fn evictions(&self) -> u64 {
        self.core.ring.evictions()
    }

    /// The wait lines' counters: (subscribers waiting for data, the
    /// publisher waiting for space).
    pub fn wait_counters(&self) -> (WaitCounters, WaitCounters) {
        (
            self.core.ring.data_wait().counters(),
            self.core.ring.space_wait().counters(),
        )
    }
}

impl<T> std::fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::Publisher")
            .field("path", &self.core.side.segment().path())
            .field("next", &self.core.next)
            .finish_non_exhaustive()
    }
}

/// The publisher of a byte-message broadcast ring (messages up to the slot
/// size chosen at creation). Used by `shmring send`.
pub struct BytesPublisher {
    core: PubCore,
    /// A typed ring's (see [`attach_any`](Self::attach_any)): every
    /// message is exactly the slot size.
    exact: bool,
}

impl BytesPublisher {
    entry_points!("the publisher", "messages");

    pub(crate) fn from_core(core: PubCore) -> Self {
        BytesPublisher { core, exact: false }
    }

    /// Takes the publisher role of a byte broadcast ring already opened as
    /// a [`Segment`] (tools that handle rings of any kind: the CLI, the
    /// bridge).
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        super::check_bytes(&seg)?;
        Ok(BytesPublisher::from_core(PubCore::attach(
            seg,
            &Settings::default(),
        )?))
    }

    /// Takes the publisher role of any broadcast ring: a byte ring as
    /// [`attach`](Self::attach); on a typed ring each message is the bytes
    /// of one value, exactly the type's size (any bytes are a valid value
    /// of a ring's `Pod` type). For tools that move messages of a type
    /// they do not know at compile time (the Zenoh bridge).
    pub fn attach_any(seg: Arc<Segment>) -> Result<Self> {
        let exact = super::check_any(&seg)?;
        let core = PubCore::attach(seg, &Settings::default())?;
        Ok(BytesPublisher { core, exact })
    }

    /// Largest message (on a typed ring, the only length).
    pub fn max_len(&self) -> usize {
        self.core.ring.slot_size()
    }

    /// Is `msg`'s length one this ring takes?
    fn check_len(&self, msg: &[u8]) -> std::result::Result<(), FramePushError> {
        crate::ring::check_message_len(msg.len(), self.max_len(), self.exact)
    }

    /// Publishes `msg` if there is room now; returns its sequence number.
    pub fn try_push(&mut self, msg: &[u8]) -> std::result::Result<u64, FramePushError> {
        self.push_timeout(msg, Some(Duration::ZERO))
            .map_err(|e| match e {
                FramePushError::Timeout => FramePushError::Full,
                e => e,
            })
    }

    /// Publishes `msg`, waiting for room at most `timeout` (`None`: no
    /// limit).
    pub fn push_timeout(
        &mut self,
        msg: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<u64, FramePushError> {
        self.check_len(msg)?;
        let ready = if timeout == Some(Duration::ZERO) {
            self.core.room(false)
        } else {
            self.core.wait_room(timeout)
        };
        match ready {
            Ok(()) => Ok(self.core.publish(msg)),
            Err(Blocked::Full) => Err(FramePushError::Timeout),
            Err(Blocked::Corrupted(w)) => Err(FramePushError::Corrupted(w)),
        }
    }

    /// Sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.core.next_seq()
    }

    /// One poll of a waiting push (the async layer).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_push(
        &mut self,
        msg: &[u8],
        check_peer: bool,
    ) -> Poll<std::result::Result<(), FramePushError>> {
        if let Err(e) = self.check_len(msg) {
            return Poll::Ready(Err(e));
        }
        match self.core.room(check_peer) {
            Ok(()) => {
                self.core.publish(msg);
                Poll::Ready(Ok(()))
            }
            Err(Blocked::Full) => Poll::Pending,
            Err(Blocked::Corrupted(w)) => Poll::Ready(Err(FramePushError::Corrupted(w))),
        }
    }

    /// The space eventcount and the segment (the async layer).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (wait::Event<'_>, &Arc<Segment>) {
        (self.core.ring.space_wait(), self.core.side.segment())
    }

    /// Would a push not wait now (always, on an `overwrite` ring)? Writes
    /// nothing (a readiness hint).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn writable(&mut self) -> bool {
        self.core.writable()
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// The ring's overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.core.overflow
    }

    /// Subscribers attached now (see [`Publisher::subscribers`]).
    pub fn subscribers(&self) -> usize {
        self.core.subscribers()
    }
}

impl std::fmt::Debug for BytesPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::BytesPublisher")
            .field("path", &self.core.side.segment().path())
            .field("next", &self.core.next)
            .finish_non_exhaustive()
    }
}

/// `select` waits for room as well as for data: ready when a push would
/// not wait (always, on an `overwrite` ring).
#[cfg(not(loom))]
impl<T: Message> wait::Selectable for Publisher<T> {
    fn is_ready(&mut self) -> bool {
        self.core.writable()
    }

    fn producer_gone(&self) -> bool {
        // A publisher has no single peer to lose: it never reports one gone.
        false
    }

    fn ready_event(&self) -> wait::ReadyEvent<'_> {
        wait::ReadyEvent(self.core.ring.space_wait())
    }
}
