//! The consuming half of a typed SPSC ring.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::raw::{ConsumerCursor, RawRing, contiguous};
use super::{check_ring, wake_all};
use crate::error::{Error, Result};
use crate::message::{Message, TypeIdentity};
use crate::ring::builder::Settings;
use crate::ring::role::{CONSUMER, PRODUCER, Side};
use crate::ring::{PopError, TryPopError, pop_poll};
use crate::segment::Segment;
use crate::sync::atomic::Ordering;
use crate::wait::{self, WaitCounters, WaitStrategy};

/// One non-blocking pop, on the consumer's parts. `read` takes the message
/// out of a slot: it gets a pointer to the published slot at the head (in
/// bounds, `stride` bytes, aligned for the ring's type), which is released
/// as soon as it returns.
#[inline]
pub(super) fn pop_one<R>(
    ring: &RawRing,
    cursor: &mut ConsumerCursor,
    side: &mut Side,
    read: impl FnOnce(*const u8) -> R,
) -> std::result::Result<R, TryPopError> {
    cursor.available(ring, || side.peer_gone(), 1)?;
    // The slot at the head is published (head < tail, tail read with
    // acquire) and in bounds (masked position); the producer does not
    // write it again until we release it below.
    let v = read(ring.slot(cursor.head));
    cursor.release(ring, 1);
    side.active();
    Ok(v)
}

/// Reads a `T` out of a slot handed out by [`pop_one`].
#[inline(always)]
fn read_value<T: Pod>(slot: *const u8) -> T {
    // SAFETY: `pop_one` hands out a published, in-bounds slot aligned for T
    // (the ring is an SPSC ring of T, checked at attach); T is Pod so any
    // bytes are a valid T. `read` copies it out before the release.
    unsafe { slot.cast::<T>().read() }
}

/// The consuming half of a typed SPSC ring. At most one exists per ring.
pub struct Consumer<T: Pod> {
    ring: RawRing,
    cursor: ConsumerCursor,
    side: Side,
    strategy: WaitStrategy,
    _marker: PhantomData<T>,
}

impl<T: Message> Consumer<T> {
    crate::ring::builder::entry_points!("its consumer", "messages");

    /// Takes the consumer role on an attached segment (tools; most code
    /// uses [`open`](Self::open) and friends). The ring must be an SPSC
    /// ring of `T`.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        check_ring(&seg, &TypeIdentity::of::<T>())?;
        Self::attach_checked(seg, &Settings::default())
    }
}

impl<T: Pod> Consumer<T> {
    pub(crate) fn attach_checked(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        let ring = RawRing::new(&seg)?;
        let side = Side::attach(seg, CONSUMER, PRODUCER, wake_all)?;
        let cursor = ConsumerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        Ok(Consumer {
            ring,
            cursor,
            side,
            strategy: settings.strategy.unwrap_or_default(),
            _marker: PhantomData,
        })
    }

    /// The segment this consumer reads from.
    pub fn segment(&self) -> &Arc<Segment> {
        self.side.segment()
    }

    #[inline]
    fn release(&mut self, n: u64) {
        self.cursor.release(&self.ring, n);
        self.side.active();
    }

    /// Takes one message.
    #[inline]
    pub fn try_pop(&mut self) -> std::result::Result<T, TryPopError> {
        pop_one(
            &self.ring,
            &mut self.cursor,
            &mut self.side,
            read_value::<T>,
        )
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Takes one message, waiting while the ring is empty.
    pub fn pop(&mut self) -> std::result::Result<T, PopError> {
        self.pop_timeout(None)
    }

    /// Takes one message, waiting at most `timeout` (`None`: no limit). A
    /// producer that dies while we wait is noticed within
    /// [`wait::PEER_CHECK_INTERVAL`]; one that detaches, at once.
    pub fn pop_timeout(&mut self, timeout: Option<Duration>) -> std::result::Result<T, PopError> {
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        let outcome = wait::block_on(ring.data_wait(), self.strategy, timeout, |check_peer| {
            pop_poll(check_peer, side, |side| {
                pop_one(ring, cursor, side, read_value::<T>)
            })
        });
        outcome.unwrap_or(Err(PopError::Timeout))
    }

    /// One poll of a waiting pop (the async layer); `check_peer` checks
    /// the producer's lock now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_pop(
        &mut self,
        check_peer: bool,
    ) -> wait::Poll<std::result::Result<T, PopError>> {
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        pop_poll(check_peer, side, |side| {
            pop_one(ring, cursor, side, read_value::<T>)
        })
    }

    /// The event a waiting pop sleeps on, and the segment that holds it.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (wait::Event<'_>, &Arc<Segment>) {
        (self.ring.data_wait(), self.side.segment())
    }

    /// Takes up to `out.len()` messages with one index update; returns how
    /// many. `Empty`/`Disconnected` if there were none.
    pub fn pop_into(&mut self, out: &mut [T]) -> std::result::Result<usize, TryPopError> {
        if out.is_empty() {
            return Ok(0);
        }
        let avail =
            self.cursor
                .available(&self.ring, || self.side.peer_gone(), out.len() as u64)?;
        let n = (out.len() as u64).min(avail) as usize;
        let mut done = 0;
        while done < n {
            let pos = self.cursor.head.wrapping_add(done as u64);
            let run = contiguous(self.ring.capacity(), pos, n - done);
            // SAFETY: `run` published, in-bounds, aligned slots; the output
            // is a distinct private buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.ring.slot(pos).cast::<T>(),
                    out.as_mut_ptr().add(done),
                    run,
                );
            }
            done += run;
        }
        self.release(n as u64);
        Ok(n)
    }

    /// Takes up to `out.len()` messages with one index update, waiting at
    /// most `timeout` (`None`: no limit) for the first; returns how many.
    pub fn pop_into_timeout(
        &mut self,
        out: &mut [T],
        timeout: Option<Duration>,
    ) -> std::result::Result<usize, PopError> {
        match self.pop_into(out) {
            Err(TryPopError::Empty) => {}
            Ok(n) => return Ok(n),
            Err(TryPopError::Disconnected) => return Err(PopError::Disconnected),
            Err(TryPopError::Corrupted(w)) => return Err(PopError::Corrupted(w)),
        }
        // A second view of the ring, so the wait's event does not borrow
        // the handle the attempts need.
        let ring =
            RawRing::new(self.side.segment()).map_err(|e| PopError::Corrupted(e.to_string()))?;
        let strategy = self.strategy;
        crate::ring::pop_batch_blocking(ring.data_wait(), strategy, timeout, |check| {
            match self.pop_into(out) {
                Err(TryPopError::Empty) if check && self.side.peer_gone_now() => {
                    // Gone: what it published just before is still taken.
                    match self.pop_into(out) {
                        Err(TryPopError::Empty) => Err(TryPopError::Disconnected),
                        other => other,
                    }
                }
                other => other,
            }
        })
    }

    /// A zero-copy view of up to `n` published messages, contiguous in
    /// memory (shorter than asked at the wrap). [`ReadChunk::release`]
    /// consumes the first few and keeps the rest; dropping the chunk
    /// consumes all it lent.
    pub fn read_chunk(&mut self, n: usize) -> std::result::Result<ReadChunk<'_, T>, TryPopError> {
        let avail = self
            .cursor
            .available(&self.ring, || self.side.peer_gone(), n.max(1) as u64)?;
        let len = contiguous(
            self.ring.capacity(),
            self.cursor.head,
            (n as u64).min(avail) as usize,
        );
        let ptr = self.ring.slot(self.cursor.head).cast::<T>();
        Ok(ReadChunk {
            consumer: self,
            ptr,
            len,
        })
    }

    /// Messages waiting (reads the producer's index).
    pub fn len(&self) -> usize {
        let tail = self.ring.tail().load(Ordering::Acquire);
        self.ring.check(tail, self.cursor.head).unwrap_or(0) as usize
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity in slots.
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Is the producer attached and alive right now? (One system call.)
    pub fn is_producer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }

    /// The ring's wait counters: (data direction, space direction).
    pub fn wait_counters(&self) -> (WaitCounters, WaitCounters) {
        self.ring.wait_counters()
    }
}

#[cfg(not(loom))]
impl<T: Pod> wait::Selectable for Consumer<T> {
    fn is_ready(&mut self) -> bool {
        !matches!(
            self.cursor
                .available(&self.ring, || self.side.peer_gone(), 1),
            Err(TryPopError::Empty)
        )
    }

    fn producer_gone(&self) -> bool {
        self.side.peer_gone_now()
    }

    fn ready_event(&self) -> wait::ReadyEvent<'_> {
        wait::ReadyEvent(self.ring.data_wait())
    }
}

impl<T: Pod> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("ring", &self.side.segment().path())
            .field("message", &std::any::type_name::<T>())
            .field("capacity", &self.ring.capacity())
            .field("position", &self.cursor.head)
            .finish_non_exhaustive()
    }
}

/// Published messages lent by [`Consumer::read_chunk`]. Dropping it
/// consumes them all; [`release`](Self::release) consumes only the first
/// few.
pub struct ReadChunk<'a, T: Pod> {
    consumer: &'a mut Consumer<T>,
    ptr: *const T,
    len: usize,
}

impl<T: Pod> ReadChunk<'_, T> {
    /// The messages. The producer does not overwrite them until released.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `len` published, in-bounds, aligned slots that the producer
        // does not write until `release` advances the head; T is Pod.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Number of messages lent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing was lent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Consumes the first `n` messages (capped at the chunk's length); the
    /// rest stay in the ring for the next read.
    pub fn release(mut self, n: usize) {
        let n = n.min(self.len);
        self.len = 0; // `drop` releases nothing more
        if n > 0 {
            self.consumer.release(n as u64);
        }
    }
}

impl<T: Pod> Drop for ReadChunk<'_, T> {
    fn drop(&mut self) {
        if self.len > 0 {
            self.consumer.release(self.len as u64);
        }
    }
}

impl<T: Pod> std::fmt::Debug for ReadChunk<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadChunk").field("len", &self.len).finish()
    }
}
