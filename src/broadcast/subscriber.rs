//! Subscribers: typed and byte handles over one core that joins, reads
//! checked copies, and recovers from laps and evictions.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{MAX_POS, RawBroadcast, Read};
use super::{PopError, TryPopError};
use crate::error::{Error, Result};
use crate::layout::Overflow;
use crate::message::Message;
use crate::ring::Start;
use crate::ring::builder::{Settings, entry_points};
use crate::ring::role::{Side, memory_lost};
use crate::segment::Segment;
use crate::sync::atomic::Ordering;
use crate::wait::{self, Poll, WaitStrategy};

/// What every subscriber handle holds.
pub(crate) struct SubCore {
    ring: RawBroadcast,
    side: Side,
    /// Sequence number of the next message to read.
    pos: u64,
    /// A `block` ring (positions matter to the publisher).
    block: bool,
    /// Messages missed while joining, reported by the next pop.
    missed_at_join: u64,
    strategy: WaitStrategy,
}

impl SubCore {
    pub(crate) fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<SubCore> {
        let ring = RawBroadcast::new(&seg)?;
        let block = matches!(seg.layout().overflow(), Overflow::Block { .. });
        let roles = seg.layout().roles();
        let side = Side::attach_any(seg, 1..roles, 0..1, "subscriber", super::wake_all)?;
        let mut core = SubCore {
            ring,
            side,
            pos: 0,
            block,
            missed_at_join: 0,
            strategy: settings.strategy.unwrap_or_default(),
        };
        core.join(settings.start)
            .map_err(|w| Error::corrupted(core.side.segment().path(), w))?;
        Ok(core)
    }

    /// Joins (again) at `start`: a new epoch, then the position.
    fn join(&mut self, start: Start) -> std::result::Result<u64, String> {
        let Some(line) = self.ring.sub_line(self.side.role()) else {
            return Err("subscriber role without a line".into());
        };
        let tail = self
            .ring
            .tail()
            .ok_or_else(|| "the publisher's position is beyond any reachable one".to_string())?;
        // The epoch first, so an eviction of an earlier join cannot apply
        // to this one (the publisher names the epoch it evicts).
        let epoch = line.epoch.load(Ordering::Relaxed).wrapping_add(1).max(1);
        line.epoch.store(epoch, Ordering::SeqCst);
        let cap = self.ring.capacity();
        let want = match start {
            Start::Latest => tail,
            Start::At(seq) => seq.min(MAX_POS),
            Start::Oldest if self.block => self.ring.floor().max(tail.saturating_sub(cap)),
            Start::Oldest => tail.saturating_sub(cap),
        };
        let pos = if self.block {
            self.ring.join_block(line, want)
        } else {
            line.pos.store(want, Ordering::Release);
            want
        };
        self.pos = pos;
        self.missed_at_join = pos.saturating_sub(want);
        Ok(pos)
    }

    /// Reads the next message into `dst` (at least the slot size); returns
    /// its sequence number and length.
    fn try_read(&mut self, dst: &mut [u8]) -> std::result::Result<(u64, usize), TryPopError> {
        if self.side.memory_lost() {
            return Err(TryPopError::Corrupted(memory_lost()));
        }
        if self.missed_at_join != 0 {
            let missed = std::mem::take(&mut self.missed_at_join);
            self.note_missed(missed, false);
            return Err(TryPopError::Lagged(missed));
        }
        let Some(line) = self.ring.sub_line(self.side.role()) else {
            return Err(TryPopError::Corrupted(
                "subscriber role without a line".into(),
            ));
        };
        match self.ring.read(self.pos, dst) {
            Read::Got(n) => {
                let seq = self.pos;
                self.pos += 1;
                self.ring.advance(line, self.pos, self.block);
                self.side.active();
                Ok((seq, n))
            }
            Read::Empty => Err(TryPopError::Empty),
            Read::Corrupted(w) => Err(TryPopError::Corrupted(w)),
            Read::Lapped if self.block && self.ring.is_evicted(line) => {
                let from = self.pos;
                let now = self.join(Start::Latest).map_err(TryPopError::Corrupted)?;
                let missed = now.saturating_sub(from);
                self.note_missed(missed, true);
                Err(TryPopError::Evicted { missed })
            }
            Read::Lapped => {
                let next = self
                    .ring
                    .resume_after_lap(self.pos)
                    .map_err(TryPopError::Corrupted)?;
                let missed = next - self.pos;
                self.pos = next;
                self.ring.advance(line, next, self.block);
                self.note_missed(missed, false);
                Err(TryPopError::Lagged(missed))
            }
        }
    }

    /// Counts missed messages (and an eviction) on this role's line, for
    /// `stat`.
    fn note_missed(&self, missed: u64, evicted: bool) {
        if let Some(line) = self.ring.sub_line(self.side.role()) {
            // Relaxed: statistics only this role's holder writes.
            line.missed.fetch_add(missed, Ordering::Relaxed);
            if evicted {
                line.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `try_read`, telling `Disconnected` from `Empty` (the publisher gone
    /// and everything it published read).
    fn try_read_or_gone(
        &mut self,
        dst: &mut [u8],
        check_now: bool,
    ) -> std::result::Result<(u64, usize), TryPopError> {
        match self.try_read(dst) {
            Err(TryPopError::Empty) => {
                let gone = if check_now {
                    self.side.peer_gone_now()
                } else {
                    self.side.peer_gone()
                };
                if !gone {
                    return Err(TryPopError::Empty);
                }
                // The publisher's last messages may have landed since.
                match self.try_read(dst) {
                    Err(TryPopError::Empty) => Err(TryPopError::Disconnected),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Waits for the next message per the strategy, at most `timeout`.
    fn read_timeout(
        &mut self,
        dst: &mut [u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, usize), PopError> {
        match self.try_read_or_gone(dst, false) {
            Err(TryPopError::Empty) => {}
            other => return other.map_err(PopError::from),
        }
        let ring = RawBroadcast::new(self.side.segment())
            .map_err(|e| PopError::Corrupted(e.to_string()))?;
        let strategy = self.strategy;
        let outcome = wait::block_on(ring.data_wait(), strategy, timeout, |check| {
            match self.try_read_or_gone(dst, check) {
                Err(TryPopError::Empty) => Poll::Pending,
                other => Poll::Ready(other),
            }
        });
        match outcome {
            Ok(r) => r.map_err(PopError::from),
            Err(()) => Err(PopError::Timeout),
        }
    }

    /// Is a pop going to return something other than `Empty`?
    #[cfg(not(loom))]
    fn is_ready(&mut self) -> bool {
        self.missed_at_join != 0
            || self.side.memory_lost()
            || self.ring.is_published(self.pos)
            || self.side.peer_gone()
    }

    /// Messages published that this subscriber has not read (or missed).
    fn lag(&self) -> u64 {
        self.ring
            .tail()
            .unwrap_or(self.pos)
            .saturating_sub(self.pos)
    }
}

/// A subscriber of a broadcast ring of `T`: sees every message the
/// publisher sends from where it joined, in order, each with its sequence
/// number (see the [module docs](super) for slow subscribers).
pub struct Subscriber<T> {
    core: SubCore,
    _message: PhantomData<fn() -> T>,
}

impl<T: Message> Subscriber<T> {
    entry_points!("a subscriber", "messages");

    pub(crate) fn from_core(core: SubCore) -> Result<Self> {
        Ok(Subscriber {
            core,
            _message: PhantomData,
        })
    }

    /// The next message and its sequence number, if one is there.
    pub fn try_pop(&mut self) -> std::result::Result<(u64, T), TryPopError> {
        let mut value = T::zeroed();
        let (seq, n) = self
            .core
            .try_read_or_gone(bytemuck::bytes_of_mut(&mut value), false)?;
        check_len::<T>(seq, n).map_err(TryPopError::Corrupted)?;
        Ok((seq, value))
    }

    /// The next message and its sequence number, waiting as long as it
    /// takes.
    pub fn pop(&mut self) -> std::result::Result<(u64, T), PopError> {
        self.pop_timeout(None)
    }

    /// The next message and its sequence number, waiting at most `timeout`
    /// (`None`: no limit).
    pub fn pop_timeout(
        &mut self,
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, T), PopError> {
        let mut value = T::zeroed();
        let (seq, n) = self
            .core
            .read_timeout(bytemuck::bytes_of_mut(&mut value), timeout)?;
        check_len::<T>(seq, n).map_err(PopError::Corrupted)?;
        Ok((seq, value))
    }

    /// Sequence number of the next message this subscriber reads.
    pub fn position(&self) -> u64 {
        self.core.pos
    }

    /// Messages published that this subscriber has not read yet.
    pub fn lag(&self) -> u64 {
        self.core.lag()
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// One poll of a waiting pop (the async layer); `check_peer` checks
    /// the publisher's lock now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_pop(
        &mut self,
        check_peer: bool,
    ) -> Poll<std::result::Result<(u64, T), PopError>> {
        let mut value = T::zeroed();
        match self
            .core
            .try_read_or_gone(bytemuck::bytes_of_mut(&mut value), check_peer)
        {
            Err(TryPopError::Empty) => Poll::Pending,
            Ok((seq, n)) => Poll::Ready(
                check_len::<T>(seq, n)
                    .map(|()| (seq, value))
                    .map_err(PopError::Corrupted),
            ),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    /// The data eventcount and the segment (the async layer).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (wait::Event<'_>, &Arc<Segment>) {
        (self.core.ring.data_wait(), self.core.side.segment())
    }
}

/// `select` over subscribers: ready when a pop would not say `Empty`.
#[cfg(not(loom))]
macro_rules! selectable {
    ($($generics:tt)*) => {
        impl $($generics)* {
            fn is_ready(&mut self) -> bool {
                self.core.is_ready()
            }

            fn producer_gone(&self) -> bool {
                self.core.side.peer_gone_now()
            }

            fn ready_event(&self) -> wait::ReadyEvent<'_> {
                wait::ReadyEvent(self.core.ring.data_wait())
            }
        }
    };
}
#[cfg(not(loom))]
selectable!(<T: Message> wait::Selectable for Subscriber<T>);
#[cfg(not(loom))]
selectable!(wait::Selectable for BytesSubscriber);

/// A typed message must fill its slot exactly.
fn check_len<T>(seq: u64, n: usize) -> std::result::Result<(), String> {
    if n == std::mem::size_of::<T>() {
        Ok(())
    } else {
        Err(format!(
            "message {seq} is {n} bytes long, the ring's type is {}",
            std::mem::size_of::<T>()
        ))
    }
}

impl<T> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::Subscriber")
            .field("path", &self.core.side.segment().path())
            .field("role", &self.core.side.role())
            .field("pos", &self.core.pos)
            .finish_non_exhaustive()
    }
}

/// A subscriber of a byte-message broadcast ring. Used by `shmring recv`.
pub struct BytesSubscriber {
    core: SubCore,
}

impl BytesSubscriber {
    entry_points!("a subscriber", "messages");

    pub(crate) fn from_core(core: SubCore) -> Self {
        BytesSubscriber { core }
    }

    /// Takes a free subscriber role of a byte broadcast ring already opened
    /// as a [`Segment`], starting at `start` (tools that handle rings of
    /// any kind: the CLI, the bridge).
    pub fn attach(seg: Arc<Segment>, start: Start) -> Result<Self> {
        super::check_bytes(&seg)?;
        Self::subscribe(seg, start)
    }

    /// Takes a subscriber role of a checked ring, starting at `start`.
    fn subscribe(seg: Arc<Segment>, start: Start) -> Result<Self> {
        let settings = Settings {
            start,
            ..Settings::default()
        };
        Ok(BytesSubscriber::from_core(SubCore::attach(seg, &settings)?))
    }

    /// Takes a free subscriber role of any broadcast ring, starting at
    /// `start`: a byte ring as [`attach`](Self::attach); on a typed ring
    /// each message is the bytes of one value (see
    /// [`BytesPublisher::attach_any`](super::BytesPublisher::attach_any)).
    pub fn attach_any(seg: Arc<Segment>, start: Start) -> Result<Self> {
        super::check_any(&seg)?;
        Self::subscribe(seg, start)
    }

    /// Largest message.
    pub fn max_len(&self) -> usize {
        self.core.ring.slot_size()
    }

    /// Replaces `buf`'s contents with the next message, if one is there;
    /// returns its sequence number.
    pub fn try_pop_into(&mut self, buf: &mut Vec<u8>) -> std::result::Result<u64, TryPopError> {
        buf.resize(self.max_len(), 0);
        match self.core.try_read_or_gone(buf, false) {
            Ok((seq, n)) => {
                buf.truncate(n);
                Ok(seq)
            }
            Err(e) => {
                buf.clear();
                Err(e)
            }
        }
    }

    /// Replaces `buf`'s contents with the next message, waiting at most
    /// `timeout` (`None`: no limit); returns its sequence number.
    pub fn pop_into_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> std::result::Result<u64, PopError> {
        buf.resize(self.max_len(), 0);
        match self.core.read_timeout(buf, timeout) {
            Ok((seq, n)) => {
                buf.truncate(n);
                Ok(seq)
            }
            Err(e) => {
                buf.clear();
                Err(e)
            }
        }
    }

    /// Sequence number of the next message this subscriber reads.
    pub fn position(&self) -> u64 {
        self.core.pos
    }

    /// Messages published that this subscriber has not read yet.
    pub fn lag(&self) -> u64 {
        self.core.lag()
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// One poll of a waiting pop (the async layer); `check_peer` checks
    /// the publisher's lock now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_pop(
        &mut self,
        check_peer: bool,
    ) -> Poll<std::result::Result<(u64, Vec<u8>), PopError>> {
        let mut buf = vec![0; self.max_len()];
        match self.core.try_read_or_gone(&mut buf, check_peer) {
            Err(TryPopError::Empty) => Poll::Pending,
            Ok((seq, n)) => {
                buf.truncate(n);
                Poll::Ready(Ok((seq, buf)))
            }
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    /// The data eventcount and the segment (the async layer).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (wait::Event<'_>, &Arc<Segment>) {
        (self.core.ring.data_wait(), self.core.side.segment())
    }
}

impl std::fmt::Debug for BytesSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::BytesSubscriber")
            .field("path", &self.core.side.segment().path())
            .field("role", &self.core.side.role())
            .field("pos", &self.core.pos)
            .finish_non_exhaustive()
    }
}
