//! The producing half of a typed SPSC ring.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::flush;
use super::raw::{ProducerCursor, RawRing, contiguous, full_error};
use super::{check_ring, wake_all};
use crate::error::{Error, Result};
use crate::message::{Message, TypeIdentity};
use crate::ring::builder::Settings;
use crate::ring::role::{CONSUMER, PRODUCER, Side};
use crate::ring::{PushError, TryPushError};
use crate::segment::Segment;
use crate::wait::{self, Poll, WaitCounters, WaitStrategy};

/// The producing half of a typed SPSC ring. At most one exists per ring, in
/// any process (an OFD lock enforces it).
pub struct Producer<T: Pod> {
    ring: RawRing,
    cursor: ProducerCursor,
    side: Side,
    persistent: bool,
    strategy: WaitStrategy,
    /// How long `drop` waits for unread messages to be taken.
    linger: Duration,
    _marker: PhantomData<T>,
}

/// One non-blocking push, on the producer's parts (so a wait loop can
/// borrow the ring and the cursor separately). `write` puts `value` into a
/// slot: it gets a pointer to the free slot at the tail (in bounds, `stride`
/// bytes, aligned for the ring's type; the consumer reads it only after we
/// publish).
#[inline]
pub(super) fn push_one<V>(
    ring: &RawRing,
    cursor: &mut ProducerCursor,
    side: &mut Side,
    persistent: bool,
    value: V,
    write: impl FnOnce(*mut u8, V),
) -> std::result::Result<(), TryPushError<V>> {
    match cursor.free(ring, 1) {
        Ok(0) => return Err(full_error(side, persistent, value)),
        Ok(_) => {}
        Err(what) => return Err(TryPushError::Corrupted(value, what)),
    }
    // The slot at the tail is free (tail - head < capacity, head read with
    // acquire) and in bounds (masked position).
    write(ring.slot(cursor.tail), value);
    cursor.publish(ring, 1);
    side.active();
    Ok(())
}

/// Writes a `T` into a slot handed out by [`push_one`].
#[inline(always)]
fn write_value<T: Pod>(slot: *mut u8, value: T) {
    // Slots are aligned for T: data_offset is aligned to max(128, align_of
    // T) and the stride is a multiple of align_of T (the ring is an SPSC
    // ring of T, checked at attach).
    // SAFETY: `push_one` hands out a free, in-bounds slot of at least
    // size_of T bytes that the consumer does not read until we publish.
    unsafe { slot.cast::<T>().write(value) }
}

/// One poll of a waiting push: `Ok` with the outcome once decided,
/// `Err(value)` while the ring is full. `check_peer`: look at the
/// consumer's lock now (a dead consumer cannot wake us).
pub(super) fn push_poll<V>(
    ring: &RawRing,
    cursor: &mut ProducerCursor,
    side: &mut Side,
    persistent: bool,
    value: V,
    check_peer: bool,
    write: impl FnOnce(*mut u8, V),
) -> std::result::Result<std::result::Result<(), PushError<V>>, V> {
    match push_one(ring, cursor, side, persistent, value, write) {
        Ok(()) => Ok(Ok(())),
        Err(TryPushError::Full(v)) => {
            // Checked on persistent rings too: it also looks for a
            // truncated file (the next poll reports it).
            if check_peer && side.peer_gone_now() && !persistent {
                return Ok(Err(PushError::Disconnected(v)));
            }
            Err(v)
        }
        Err(TryPushError::Disconnected(v)) => Ok(Err(PushError::Disconnected(v))),
        Err(TryPushError::Corrupted(v, w)) => Ok(Err(PushError::Corrupted(v, w))),
    }
}

/// A blocking push on the producer's parts: waits with `strategy` at most
/// `timeout` while the ring is full.
#[allow(clippy::too_many_arguments)]
pub(super) fn push_blocking<V>(
    ring: &RawRing,
    cursor: &mut ProducerCursor,
    side: &mut Side,
    persistent: bool,
    strategy: WaitStrategy,
    value: V,
    timeout: Option<Duration>,
    write: impl Fn(*mut u8, V),
) -> std::result::Result<(), PushError<V>> {
    let mut slot = Some(value);
    let outcome = wait::block_on(ring.space_wait(), strategy, timeout, |check_peer| {
        let Some(v) = slot.take() else {
            return Poll::Ready(Ok(()));
        };
        match push_poll(ring, cursor, side, persistent, v, check_peer, &write) {
            Ok(done) => Poll::Ready(done),
            Err(v) => {
                slot = Some(v);
                Poll::Pending
            }
        }
    });
    match outcome {
        Ok(r) => r,
        // The value is put back on every pending poll, and the wait ends
        // in a timeout only after a pending one.
        Err(()) => Err(PushError::Timeout(
            slot.take().expect("value kept while pending"),
        )),
    }
}

impl<T: Message> Producer<T> {
    crate::ring::builder::entry_points!("its producer", "messages");

    /// Takes the producer role on an attached segment (tools; most code
    /// uses [`open`](Self::open) and friends). The ring must be an SPSC
    /// ring of `T`.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        check_ring(&seg, &TypeIdentity::of::<T>())?;
        Self::attach_checked(seg, &Settings::default())
    }
}

impl<T: Pod> Producer<T> {
    pub(crate) fn attach_checked(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        let ring = RawRing::new(&seg)?;
        let persistent = seg.is_persistent();
        let side = Side::attach(seg, PRODUCER, CONSUMER, wake_all)?;
        let cursor = ProducerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        Ok(Producer {
            ring,
            cursor,
            side,
            persistent,
            strategy: settings.strategy.unwrap_or_default(),
            linger: settings.linger,
            _marker: PhantomData,
        })
    }

    /// The segment this producer writes to.
    pub fn segment(&self) -> &Arc<Segment> {
        self.side.segment()
    }

    #[inline]
    fn publish(&mut self, n: u64) {
        self.cursor.publish(&self.ring, n);
        self.side.active();
    }

    /// Pushes one message, or gives it back if the ring is full.
    #[inline]
    pub fn try_push(&mut self, value: T) -> std::result::Result<(), TryPushError<T>> {
        push_one(
            &self.ring,
            &mut self.cursor,
            &mut self.side,
            self.persistent,
            value,
            write_value::<T>,
        )
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Pushes one message, waiting while the ring is full.
    pub fn push(&mut self, value: T) -> std::result::Result<(), PushError<T>> {
        self.push_timeout(value, None)
    }

    /// Pushes one message, waiting at most `timeout` (`None`: no limit)
    /// while the ring is full. A consumer that dies while we wait is noticed
    /// within [`wait::PEER_CHECK_INTERVAL`].
    pub fn push_timeout(
        &mut self,
        value: T,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), PushError<T>> {
        push_blocking(
            &self.ring,
            &mut self.cursor,
            &mut self.side,
            self.persistent,
            self.strategy,
            value,
            timeout,
            write_value::<T>,
        )
    }

    /// One poll of a waiting push (the async layer): `Err(value)` while
    /// full; `check_peer` checks the consumer's lock now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_push(
        &mut self,
        value: T,
        check_peer: bool,
    ) -> std::result::Result<std::result::Result<(), PushError<T>>, T> {
        push_poll(
            &self.ring,
            &mut self.cursor,
            &mut self.side,
            self.persistent,
            value,
            check_peer,
            write_value::<T>,
        )
    }

    /// The event a waiting push sleeps on, and the segment that holds it.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (wait::Event<'_>, &Arc<Segment>) {
        (self.ring.space_wait(), self.side.segment())
    }

    /// Pushes as many of `values` as fit, with one index update. Returns how
    /// many were pushed; `Full` (with `()`) if none fit.
    pub fn push_slice(&mut self, values: &[T]) -> std::result::Result<usize, TryPushError<()>> {
        if values.is_empty() {
            return Ok(0);
        }
        let free = self
            .cursor
            .free(&self.ring, values.len() as u64)
            .map_err(|w| TryPushError::Corrupted((), w))?;
        let n = (values.len() as u64).min(free) as usize;
        if n == 0 {
            return Err(full_error(&mut self.side, self.persistent, ()));
        }
        let mut done = 0;
        while done < n {
            let pos = self.cursor.tail.wrapping_add(done as u64);
            let run = contiguous(self.ring.capacity(), pos, n - done);
            // SAFETY: `run` slots from `pos` are free, in bounds (contiguous
            // stops at the end of the data area) and aligned for T; the
            // source is a distinct private slice.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    values.as_ptr().add(done),
                    self.ring.slot(pos).cast::<T>(),
                    run,
                );
            }
            done += run;
        }
        self.publish(n as u64);
        Ok(n)
    }

    /// Pushes as many of `values` as fit with one index update, waiting at
    /// most `timeout` (`None`: no limit) for room for the first; returns
    /// how many were pushed.
    pub fn push_slice_timeout(
        &mut self,
        values: &[T],
        timeout: Option<Duration>,
    ) -> std::result::Result<usize, PushError<()>> {
        match self.push_slice(values) {
            Err(TryPushError::Full(())) => {}
            Ok(n) => return Ok(n),
            Err(TryPushError::Disconnected(())) => return Err(PushError::Disconnected(())),
            Err(TryPushError::Corrupted((), w)) => return Err(PushError::Corrupted((), w)),
        }
        // A second view of the ring, so the wait's event does not borrow
        // the handle the attempts need.
        let ring = RawRing::new(self.side.segment())
            .map_err(|e| PushError::Corrupted((), e.to_string()))?;
        let strategy = self.strategy;
        crate::ring::push_batch_blocking(ring.space_wait(), strategy, timeout, |check| {
            match self.push_slice(values) {
                Err(TryPushError::Full(()))
                    if check && !self.persistent && self.side.peer_gone_now() =>
                {
                    Err(TryPushError::Disconnected(()))
                }
                other => other,
            }
        })
    }

    /// A zero-copy grant of up to `n` free slots, contiguous in memory (it may
    /// be shorter than asked at the wrap). Fill it, then [`WriteChunk::commit`].
    pub fn write_chunk(
        &mut self,
        n: usize,
    ) -> std::result::Result<WriteChunk<'_, T>, TryPushError<()>> {
        let free = self
            .cursor
            .free(&self.ring, n as u64)
            .map_err(|w| TryPushError::Corrupted((), w))?;
        if free == 0 && n > 0 {
            return Err(full_error(&mut self.side, self.persistent, ()));
        }
        let len = contiguous(
            self.ring.capacity(),
            self.cursor.tail,
            (n as u64).min(free) as usize,
        );
        let ptr = self.ring.slot(self.cursor.tail).cast::<T>();
        Ok(WriteChunk {
            producer: self,
            ptr,
            len,
        })
    }

    /// Messages the consumer has not taken yet (reads the consumer's index).
    pub fn len(&self) -> usize {
        self.unread() as usize
    }

    fn unread(&self) -> u64 {
        flush::unread(&self.ring, self.cursor.tail)
    }

    /// Waits until the consumer has taken every message pushed so far, at
    /// most `timeout`. [`Error::Timeout`] if it has not by then (while no
    /// consumer ever attached, this waits for one);
    /// [`Error::Disconnected`] if the consumer left with messages unread.
    pub fn flush(&mut self, timeout: Duration) -> Result<()> {
        let tail = self.cursor.tail;
        flush::flush(
            &self.ring,
            tail,
            &mut self.side,
            self.strategy,
            timeout,
            "messages",
        )
    }

    /// True when the consumer has taken everything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity in slots.
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Is the consumer attached and alive right now? (One system call.)
    pub fn is_consumer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }

    /// The ring's wait counters: (data direction, space direction).
    pub fn wait_counters(&self) -> (WaitCounters, WaitCounters) {
        self.ring.wait_counters()
    }
}

impl<T: Pod> Drop for Producer<T> {
    /// Lingers (see [`Builder::linger`](crate::ring::Builder::linger)) while messages are unread, then
    /// reports with `log::warn!` any that are lost: unread, no consumer
    /// attached, and the ring not persistent.
    fn drop(&mut self) {
        flush::linger_on_drop(
            &self.ring,
            self.cursor.tail,
            &mut self.side,
            self.strategy,
            self.linger,
            self.persistent,
            "messages",
        );
    }
}

impl<T: Pod> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("ring", &self.side.segment().path())
            .field("message", &std::any::type_name::<T>())
            .field("capacity", &self.ring.capacity())
            .field("position", &self.cursor.tail)
            .finish_non_exhaustive()
    }
}

/// Free slots lent by [`Producer::write_chunk`]; nothing is published until
/// [`commit`](WriteChunk::commit). Dropping it publishes nothing.
pub struct WriteChunk<'a, T: Pod> {
    producer: &'a mut Producer<T>,
    ptr: *mut T,
    len: usize,
}

impl<T: Pod> std::fmt::Debug for WriteChunk<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteChunk")
            .field("len", &self.len)
            .finish()
    }
}

impl<T: Pod> WriteChunk<'_, T> {
    /// The granted slots. Their previous contents are stale messages.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // The consumer does not access these slots until `commit` advances
        // the tail; T is Pod, so any stale bytes are a valid T.
        // SAFETY: `len` free, in-bounds, aligned slots that only this
        // producer may write until it publishes them.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Number of slots granted.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no slot was granted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Publishes the first `n` slots (`n` is capped at the grant's length).
    pub fn commit(self, n: usize) {
        let n = n.min(self.len);
        if n > 0 {
            self.producer.publish(n as u64);
        }
    }
}

/// `select` waits for room as well as for data: ready when a push would
/// not find the ring full (or the consumer of a non-persistent ring gone).
#[cfg(not(loom))]
impl<T: Pod> wait::Selectable for Producer<T> {
    fn is_ready(&mut self) -> bool {
        !matches!(self.cursor.free(&self.ring, 1), Ok(0))
            || (!self.persistent && self.side.peer_gone())
    }

    fn producer_gone(&self) -> bool {
        self.side.peer_gone_now()
    }

    fn ready_event(&self) -> wait::ReadyEvent<'_> {
        wait::ReadyEvent(self.ring.space_wait())
    }
}
