//! Typed handles: producers and consumers of `T` and their zero-copy
//! chunks.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::RingStats;
use super::core::Core;
use crate::error::Result;
use crate::layout::Kind;
use crate::message::{Message, TypeIdentity};
use crate::ring::builder::{self, Settings};
use crate::ring::{PopError, PushError, TryPopError, TryPushError};
use crate::segment::Segment;
#[cfg(all(feature = "async", not(loom)))]
use crate::wait::Poll;
use crate::wait::WaitStrategy;

/// A producing handle on an MPMC ring of `T`. Each holds one of the ring's
/// producer roles (an OFD lock) for its lifetime.
pub struct Producer<T: Pod> {
    core: Core,
    _marker: PhantomData<T>,
}

impl<T: Message> Producer<T> {
    crate::ring::builder::entry_points!(
        "a free producer",
        "messages (and 64 roles of each side unless the builder says otherwise)"
    );

    /// Takes a free producer role on an attached segment (tools; most code
    /// uses [`open`](Self::open) and friends). The ring must be an MPMC
    /// ring of `T`.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        builder::check_ring(&seg, Kind::Mpmc, &TypeIdentity::of::<T>())?;
        Self::attach_checked(seg, &Settings::default())
    }
}

impl<T: Pod> Producer<T> {
    pub(crate) fn attach_checked(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        Ok(Producer {
            core: Core::attach(seg, true, settings)?,
            _marker: PhantomData,
        })
    }

    /// The segment.
    pub fn segment(&self) -> &Arc<Segment> {
        self.core.side.segment()
    }

    /// The producer role this handle holds (0-based).
    pub fn role(&self) -> u32 {
        self.core.side.role()
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    fn write(&mut self, pos: u64, value: T) {
        // SAFETY: position `pos` is claimed by us (its slot is ours until we
        // publish it); the payload is in bounds and aligned for T (checked
        // at attach: the ring was made for T's size and alignment).
        unsafe { self.core.ring.payload(pos).cast::<T>().write(value) };
    }

    /// Pushes one message, or gives it back if the ring is full.
    #[inline]
    pub fn try_push(&mut self, value: T) -> std::result::Result<(), TryPushError<T>> {
        match self.core.claim_write_one() {
            Ok(pos) => {
                self.write(pos, value);
                self.core.publish(pos, 1, false);
                Ok(())
            }
            Err(TryPushError::Full(())) => Err(TryPushError::Full(value)),
            Err(TryPushError::Disconnected(())) => Err(TryPushError::Disconnected(value)),
            Err(TryPushError::Corrupted((), w)) => Err(TryPushError::Corrupted(value, w)),
        }
    }

    /// Pushes one message, waiting while the ring is full.
    pub fn push(&mut self, value: T) -> std::result::Result<(), PushError<T>> {
        self.push_timeout(value, None)
    }

    /// Pushes one message, waiting at most `timeout` (`None`: no limit).
    /// `Disconnected` once every consumer of a non-persistent ring is gone
    /// and the ring is full.
    pub fn push_timeout(
        &mut self,
        value: T,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), PushError<T>> {
        match self.core.claim_write_blocking(1, timeout) {
            Ok((pos, _)) => {
                self.write(pos, value);
                self.core.publish(pos, 1, false);
                Ok(())
            }
            Err(PushError::Timeout(())) => Err(PushError::Timeout(value)),
            Err(PushError::Disconnected(())) => Err(PushError::Disconnected(value)),
            Err(PushError::Corrupted((), w)) => Err(PushError::Corrupted(value, w)),
        }
    }

    /// One poll of a waiting push (the async layer): `Err(value)` while
    /// full; `check_peer` checks the consumers' locks now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_push(
        &mut self,
        value: T,
        check_peer: bool,
    ) -> std::result::Result<std::result::Result<(), PushError<T>>, T> {
        match self.core.poll_write_one(check_peer) {
            Poll::Ready(Ok(pos)) => {
                self.write(pos, value);
                self.core.publish(pos, 1, false);
                Ok(Ok(()))
            }
            Poll::Ready(Err(PushError::Timeout(()))) => Ok(Err(PushError::Timeout(value))),
            Poll::Ready(Err(PushError::Disconnected(()))) => {
                Ok(Err(PushError::Disconnected(value)))
            }
            Poll::Ready(Err(PushError::Corrupted((), w))) => {
                Ok(Err(PushError::Corrupted(value, w)))
            }
            Poll::Pending => Err(value),
        }
    }

    /// The event a waiting push sleeps on, and the segment that holds it.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (crate::wait::Event<'_>, &Arc<Segment>) {
        self.core.wait_parts(false)
    }

    /// Would a send find room now (or the ring finished)? Sends nothing (a
    /// readiness hint).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn writable(&mut self) -> bool {
        self.core.writable()
    }

    /// Pushes as many of `values` as there are free consecutive slots, with
    /// one claim; returns how many. `Full` if none.
    pub fn push_slice(&mut self, values: &[T]) -> std::result::Result<usize, TryPushError<()>> {
        if values.is_empty() {
            return Ok(0);
        }
        let (pos, n) = self.core.claim_write(values.len() as u64, false)?;
        for (i, v) in values.iter().take(n as usize).enumerate() {
            self.write(pos + i as u64, *v);
        }
        self.core.publish(pos, n, false);
        Ok(n as usize)
    }

    /// Pushes as many of `values` as fit with one claim, waiting at most
    /// `timeout` (`None`: no limit) for room for the first; returns how
    /// many were pushed.
    pub fn push_slice_timeout(
        &mut self,
        values: &[T],
        timeout: Option<Duration>,
    ) -> std::result::Result<usize, PushError<()>> {
        if values.is_empty() {
            return Ok(0);
        }
        // A second view of the ring, so the wait's event does not borrow
        // the handle the attempts need.
        let ring = super::raw::RawMpmc::new(self.core.side.segment())
            .map_err(|e| PushError::Corrupted((), e.to_string()))?;
        let strategy = self.core.strategy;
        crate::ring::push_batch_blocking(ring.space_wait(), strategy, timeout, |check| {
            let (pos, n) = self.core.claim_write(values.len() as u64, check)?;
            for (i, v) in values.iter().take(n as usize).enumerate() {
                self.write(pos + i as u64, *v);
            }
            self.core.publish(pos, n, false);
            Ok(n as usize)
        })
    }

    /// Claims one slot to fill in place (zero-copy); nothing is visible to
    /// consumers until [`WriteChunk::commit`]. Dropping the chunk
    /// uncommitted publishes nothing (the slot is published as skipped,
    /// which consumers never see). Consumers wait for a claimed slot, so do
    /// not hold one for long.
    pub fn write_chunk(&mut self) -> std::result::Result<WriteChunk<'_, T>, TryPushError<()>> {
        let pos = self.core.claim_write_one()?;
        Ok(WriteChunk {
            producer: self,
            pos,
            done: false,
        })
    }

    /// Capacity in slots.
    pub fn capacity(&self) -> usize {
        self.core.ring.capacity() as usize
    }

    /// Messages in the ring, from every producer (published or being
    /// written; reads both positions).
    pub fn len(&self) -> usize {
        self.core.ring.len().unwrap_or(0) as usize
    }

    /// True when the ring holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until consumers have claimed every message this producer
    /// pushed so far, at most `timeout`. [`Error::Timeout`](crate::Error::Timeout)
    /// if they have not by then (while no consumer ever attached, this
    /// waits for one); [`Error::Disconnected`](crate::Error::Disconnected)
    /// if every consumer left first.
    pub fn flush(&mut self, timeout: Duration) -> Result<()> {
        self.core.flush(timeout)
    }

    /// Is some consumer attached and alive right now? (System calls.)
    pub fn is_consumer_alive(&self) -> bool {
        self.core.side.peer_alive_now()
    }

    /// The ring's shared counters.
    pub fn stats(&self) -> RingStats {
        self.core.stats()
    }
}

impl<T: Pod> Drop for Producer<T> {
    /// Lingers (see [`Builder::linger`](crate::ring::Builder::linger)) while this producer's messages are
    /// unread, then reports with `log::warn!` those that may be lost.
    fn drop(&mut self) {
        self.core.linger_on_drop();
    }
}

impl<T: Pod> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Producer")
            .field("ring", &self.core.side.segment().path())
            .field("message", &std::any::type_name::<T>())
            .field("role", &self.role())
            .field("capacity", &self.core.ring.capacity())
            .finish_non_exhaustive()
    }
}

/// A claimed slot lent by [`Producer::write_chunk`].
pub struct WriteChunk<'a, T: Pod> {
    producer: &'a mut Producer<T>,
    pos: u64,
    done: bool,
}

impl<T: Pod> WriteChunk<'_, T> {
    /// The slot's message. It holds stale bytes (a valid `T`: `T` is Pod)
    /// until written.
    pub fn value_mut(&mut self) -> &mut T {
        // SAFETY: the slot is claimed by us: no consumer reads it and no
        // producer writes it until we publish; in bounds and aligned for T.
        unsafe { &mut *self.producer.core.ring.payload(self.pos).cast::<T>() }
    }

    /// Publishes the slot.
    pub fn commit(mut self) {
        self.done = true;
        self.producer.core.publish(self.pos, 1, false);
    }
}

impl<T: Pod> std::fmt::Debug for WriteChunk<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::WriteChunk")
            .field("position", &self.pos)
            .finish()
    }
}

impl<T: Pod> Drop for WriteChunk<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.producer.core.publish(self.pos, 1, true);
        }
    }
}

/// A consuming handle on an MPMC ring of `T`. Each holds one of the ring's
/// consumer roles for its lifetime.
pub struct Consumer<T: Pod> {
    core: Core,
    _marker: PhantomData<T>,
}

impl<T: Message> Consumer<T> {
    crate::ring::builder::entry_points!(
        "a free consumer",
        "messages (and 64 roles of each side unless the builder says otherwise)"
    );

    /// Takes a free consumer role on an attached segment (tools; most code
    /// uses [`open`](Self::open) and friends). The ring must be an MPMC
    /// ring of `T`.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        builder::check_ring(&seg, Kind::Mpmc, &TypeIdentity::of::<T>())?;
        Self::attach_checked(seg, &Settings::default())
    }
}

impl<T: Pod> Consumer<T> {
    pub(crate) fn attach_checked(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        Ok(Consumer {
            core: Core::attach(seg, false, settings)?,
            _marker: PhantomData,
        })
    }

    /// The segment.
    pub fn segment(&self) -> &Arc<Segment> {
        self.core.side.segment()
    }

    /// The consumer role this handle holds (0-based among consumers).
    pub fn role(&self) -> u32 {
        self.core.side.role() - self.core.ring.producers
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// Copies out the claimed messages `pos .. pos + n` that are not skips,
    /// releases them, and returns how many were copied.
    fn take(&mut self, pos: u64, n: u64, out: &mut [T]) -> usize {
        let mut got = 0;
        for p in pos..pos + n {
            if self.core.ring.is_skip(p) {
                continue;
            }
            // SAFETY: position p is claimed by us and published (checked by
            // the claim); in bounds and aligned for T; T is Pod, so any
            // bytes are a valid T. Copied out before the release below.
            out[got] = unsafe { self.core.ring.payload(p).cast::<T>().read() };
            got += 1;
        }
        self.core.release(pos, n);
        got
    }

    /// Copies out the claimed message `pos` unless it is a skip, and
    /// releases it.
    #[inline]
    fn take_one(&mut self, pos: u64) -> Option<T> {
        let value = if self.core.ring.is_skip(pos) {
            None
        } else {
            // SAFETY: position pos is claimed by us and published (checked
            // by the claim); in bounds and aligned for T; T is Pod, so any
            // bytes are a valid T. Copied out before the release below.
            Some(unsafe { self.core.ring.payload(pos).cast::<T>().read() })
        };
        self.core.release(pos, 1);
        value
    }

    /// Takes one message.
    #[inline]
    pub fn try_pop(&mut self) -> std::result::Result<T, TryPopError> {
        loop {
            let pos = self.core.claim_read_one()?;
            if let Some(value) = self.take_one(pos) {
                return Ok(value);
            }
        }
    }

    /// Takes one message, waiting while the ring is empty.
    pub fn pop(&mut self) -> std::result::Result<T, PopError> {
        self.pop_timeout(None)
    }

    /// Takes one message, waiting at most `timeout` (`None`: no limit).
    /// `Disconnected` once every producer is gone and the ring is drained.
    pub fn pop_timeout(&mut self, timeout: Option<Duration>) -> std::result::Result<T, PopError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let (pos, _) = self.core.claim_read_blocking(1, left)?;
            if let Some(value) = self.take_one(pos) {
                return Ok(value);
            }
        }
    }

    /// One poll of a waiting pop (the async layer); `check_peer` checks
    /// the producers' locks now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_pop(&mut self, check_peer: bool) -> Poll<std::result::Result<T, PopError>> {
        loop {
            match self.core.poll_read_one(check_peer) {
                Poll::Ready(Ok(pos)) => {
                    if let Some(value) = self.take_one(pos) {
                        return Poll::Ready(Ok(value));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The event a waiting pop sleeps on, and the segment that holds it.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (crate::wait::Event<'_>, &Arc<Segment>) {
        self.core.wait_parts(true)
    }

    /// Is a message (or a skipped slot) ready to claim? Claims nothing.
    #[cfg(not(loom))]
    pub(crate) fn readable(&self) -> bool {
        self.core.readable()
    }

    /// Takes up to `out.len()` consecutive published messages with one
    /// claim; returns how many were stored (0 if all were skipped slots).
    pub fn pop_into(&mut self, out: &mut [T]) -> std::result::Result<usize, TryPopError> {
        if out.is_empty() {
            return Ok(0);
        }
        let (pos, n) = self.core.claim_read(out.len() as u64, false)?;
        Ok(self.take(pos, n, out))
    }

    /// Takes up to `out.len()` messages with one claim, waiting at most
    /// `timeout` (`None`: no limit) for the first; returns how many.
    pub fn pop_into_timeout(
        &mut self,
        out: &mut [T],
        timeout: Option<Duration>,
    ) -> std::result::Result<usize, PopError> {
        if out.is_empty() {
            return Ok(0);
        }
        let ring = super::raw::RawMpmc::new(self.core.side.segment())
            .map_err(|e| PopError::Corrupted(e.to_string()))?;
        let strategy = self.core.strategy;
        crate::ring::pop_batch_blocking(ring.data_wait(), strategy, timeout, |check| {
            let (pos, n) = self.core.claim_read(out.len() as u64, check)?;
            Ok(self.take(pos, n, out))
        })
    }

    /// Claims the next message and lends it in place (zero-copy); it is
    /// consumed (freed for producers) when the [`ReadChunk`] drops. If this
    /// process dies while holding it, the message is redelivered (see the
    /// module docs), so processing in place gives at-least-once delivery.
    pub fn read_chunk(&mut self) -> std::result::Result<ReadChunk<'_, T>, TryPopError> {
        loop {
            let pos = self.core.claim_read_one()?;
            if self.core.ring.is_skip(pos) {
                self.core.release(pos, 1);
                continue;
            }
            return Ok(ReadChunk {
                consumer: self,
                pos,
            });
        }
    }

    /// Capacity in slots.
    pub fn capacity(&self) -> usize {
        self.core.ring.capacity() as usize
    }

    /// Messages in the ring (published or being written; reads both
    /// positions).
    pub fn len(&self) -> usize {
        self.core.ring.len().unwrap_or(0) as usize
    }

    /// True when the ring holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Is some producer attached and alive right now? (System calls.)
    pub fn is_producer_alive(&self) -> bool {
        self.core.side.peer_alive_now()
    }

    /// The ring's shared counters.
    pub fn stats(&self) -> RingStats {
        self.core.stats()
    }
}

impl<T: Pod> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Consumer")
            .field("ring", &self.core.side.segment().path())
            .field("message", &std::any::type_name::<T>())
            .field("role", &self.role())
            .field("capacity", &self.core.ring.capacity())
            .finish_non_exhaustive()
    }
}

/// A claimed message lent by [`Consumer::read_chunk`]; dropping it
/// consumes the message.
pub struct ReadChunk<'a, T: Pod> {
    consumer: &'a mut Consumer<T>,
    pos: u64,
}

impl<T: Pod> ReadChunk<'_, T> {
    /// The message, in the ring.
    pub fn get(&self) -> &T {
        // SAFETY: the slot is claimed by us and published: no producer
        // writes it until we release it; in bounds and aligned for T; T is
        // Pod.
        unsafe { &*self.consumer.core.ring.payload(self.pos).cast::<T>() }
    }
}

impl<T: Pod> std::fmt::Debug for ReadChunk<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::ReadChunk")
            .field("position", &self.pos)
            .finish()
    }
}

impl<T: Pod> Drop for ReadChunk<'_, T> {
    fn drop(&mut self) {
        self.consumer.core.release(self.pos, 1);
    }
}

/// `select` over MPMC consumers: ready when a message is published (or the
/// producers are gone).
#[cfg(not(loom))]
impl<T: Pod> crate::wait::Selectable for Consumer<T> {
    fn is_ready(&mut self) -> bool {
        self.readable() || self.core.side.peer_gone()
    }

    fn producer_gone(&self) -> bool {
        self.core.side.peer_gone_now()
    }

    fn ready_event(&self) -> crate::wait::ReadyEvent<'_> {
        crate::wait::ReadyEvent(self.core.ring.data_wait())
    }
}

/// `select` waits for room as well as for data: ready when the ring is not
/// full (or the consumers of a non-persistent ring are gone).
#[cfg(not(loom))]
impl<T: Pod> crate::wait::Selectable for Producer<T> {
    fn is_ready(&mut self) -> bool {
        let ring = &self.core.ring;
        ring.len().is_none_or(|used| used < ring.capacity())
            || (!self.core.persistent && self.core.side.peer_gone())
    }

    fn producer_gone(&self) -> bool {
        self.core.side.peer_gone_now()
    }

    fn ready_event(&self) -> crate::wait::ReadyEvent<'_> {
        crate::wait::ReadyEvent(self.core.ring.space_wait())
    }
}
