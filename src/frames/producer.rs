//! The producing half of a frame ring.

use std::sync::Arc;
use std::time::Duration;

use super::{check_ring, commit_at, max_payload, reserve_at};
use crate::error::{Error, Result};
use crate::ring::builder::Settings;
use crate::ring::role::{CONSUMER, PRODUCER, Side};
use crate::ring::{FramePushError, TryPushError};
use crate::segment::Segment;
use crate::spsc::raw::{ProducerCursor, RawRing, full_error};
use crate::spsc::{flush, wake_all};
use crate::sync::atomic::Ordering;
use crate::wait::{self, Poll, WaitStrategy};

/// One poll of a waiting reservation of a `len`-byte frame: its start,
/// `Disconnected` once the consumer of a non-persistent ring is gone
/// (`check_peer`: its lock is checked now), or pending while full.
fn reserve_poll(
    ring: &RawRing,
    cursor: &mut ProducerCursor,
    side: &mut Side,
    persistent: bool,
    len: usize,
    check_peer: bool,
) -> Poll<std::result::Result<u64, FramePushError>> {
    match reserve_at(ring, cursor, len as u64) {
        Ok(Some(start)) => Poll::Ready(Ok(start)),
        Ok(None) => {
            let gone = if check_peer {
                side.peer_gone_now()
            } else {
                side.peer_gone()
            };
            if !persistent && gone {
                Poll::Ready(Err(FramePushError::Disconnected))
            } else {
                Poll::Pending
            }
        }
        Err(w) => Poll::Ready(Err(FramePushError::Corrupted(w))),
    }
}

/// The producing half of a frame ring.
pub struct Producer {
    ring: RawRing,
    cursor: ProducerCursor,
    side: Side,
    persistent: bool,
    frames: u64,
    strategy: WaitStrategy,
    /// How long `drop` waits for unread frames to be taken.
    linger: Duration,
}

impl Producer {
    crate::ring::builder::entry_points!("its producer", "bytes of frames");

    /// Takes the producer role on an attached segment (tools; most code uses
    /// [`open`](Self::open) and friends).
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        check_ring(&seg)?;
        Self::attach_checked(seg, &Settings::default())
    }

    pub(crate) fn attach_checked(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        let ring = RawRing::new(&seg)?;
        let persistent = seg.is_persistent();
        let side = Side::attach(seg, PRODUCER, CONSUMER, wake_all)?;
        let cursor = ProducerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        // The frame counter lives beside the tail; only we write it.
        let frames = ring.produced().load(Ordering::Relaxed);
        Ok(Producer {
            ring,
            cursor,
            side,
            persistent,
            frames,
            strategy: settings.strategy.unwrap_or_default(),
            linger: settings.linger,
        })
    }

    /// The segment this producer writes to.
    pub fn segment(&self) -> &Arc<Segment> {
        self.side.segment()
    }

    /// Largest payload this ring accepts.
    pub fn max_frame_len(&self) -> usize {
        max_payload(self.ring.capacity()) as usize
    }

    /// Lends a frame of exactly `len` bytes inside the ring; fill it and
    /// [`commit`](WriteChunk::commit) it. Dropping the chunk publishes
    /// nothing.
    pub fn write_chunk(
        &mut self,
        len: usize,
    ) -> std::result::Result<WriteChunk<'_>, FramePushError> {
        let cap = self.ring.capacity();
        let max = max_payload(cap);
        if len as u64 > max {
            return Err(FramePushError::TooLarge {
                len,
                max: max as usize,
            });
        }
        let Some(start) = reserve_at(&self.ring, &mut self.cursor, len as u64)
            .map_err(FramePushError::Corrupted)?
        else {
            return Err(match full_error(&mut self.side, self.persistent, ()) {
                TryPushError::Disconnected(()) => FramePushError::Disconnected,
                TryPushError::Corrupted((), w) => FramePushError::Corrupted(w),
                TryPushError::Full(()) => FramePushError::Full,
            });
        };
        Ok(WriteChunk {
            producer: self,
            start,
            len,
        })
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Lends a frame of `len` bytes, waiting at most `timeout` (`None`: no
    /// limit) for room. A consumer that dies meanwhile is noticed within
    /// [`crate::wait::PEER_CHECK_INTERVAL`].
    pub fn write_chunk_timeout(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> std::result::Result<WriteChunk<'_>, FramePushError> {
        let max = max_payload(self.ring.capacity());
        if len as u64 > max {
            return Err(FramePushError::TooLarge {
                len,
                max: max as usize,
            });
        }
        let (ring, cursor, side, persistent) = (
            &self.ring,
            &mut self.cursor,
            &mut self.side,
            self.persistent,
        );
        let outcome = wait::block_on(ring.space_wait(), self.strategy, timeout, |check_peer| {
            reserve_poll(ring, cursor, side, persistent, len, check_peer)
        });
        let start = outcome.unwrap_or(Err(FramePushError::Timeout))?;
        Ok(WriteChunk {
            producer: self,
            start,
            len,
        })
    }

    /// One poll of a waiting push of `payload` (the async layer);
    /// `check_peer` checks the consumer's lock now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_push(
        &mut self,
        payload: &[u8],
        check_peer: bool,
    ) -> Poll<std::result::Result<(), FramePushError>> {
        let max = max_payload(self.ring.capacity());
        if payload.len() as u64 > max {
            return Poll::Ready(Err(FramePushError::TooLarge {
                len: payload.len(),
                max: max as usize,
            }));
        }
        let polled = reserve_poll(
            &self.ring,
            &mut self.cursor,
            &mut self.side,
            self.persistent,
            payload.len(),
            check_peer,
        );
        match polled {
            Poll::Ready(Ok(start)) => {
                let mut chunk = WriteChunk {
                    producer: self,
                    start,
                    len: payload.len(),
                };
                chunk.copy_from_slice(payload);
                chunk.commit();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The event a waiting push sleeps on, and the segment that holds it.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (wait::Event<'_>, &Arc<Segment>) {
        (self.ring.space_wait(), self.side.segment())
    }

    /// Would a frame of the largest size fit now (or is the consumer of a
    /// non-persistent ring gone, or the ring corrupted)? A readiness hint
    /// that reserves nothing. It errs towards `false` so that a loop
    /// re-arming after `Full` never spins: when it says so, a push of any
    /// size succeeds; when it does not, the consumer still has frames to
    /// take (an empty ring fits the largest frame), and its next one wakes
    /// the waiter.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn writable(&mut self) -> bool {
        let cap = self.ring.capacity();
        let need = super::room_needed(cap, self.cursor.tail, max_payload(cap));
        match self.cursor.free(&self.ring, need) {
            Ok(free) => {
                free >= need
                    || self.side.memory_lost()
                    || (!self.persistent && self.side.peer_gone())
            }
            Err(_) => true,
        }
    }

    /// Copies `payload` into one frame, waiting at most `timeout` (`None`:
    /// no limit) for room.
    pub fn push_timeout(
        &mut self,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<(), FramePushError> {
        let mut chunk = self.write_chunk_timeout(payload.len(), timeout)?;
        chunk.copy_from_slice(payload);
        chunk.commit();
        Ok(())
    }

    /// Copies `payload` into one frame, waiting while the ring is full.
    pub fn push(&mut self, payload: &[u8]) -> std::result::Result<(), FramePushError> {
        self.push_timeout(payload, None)
    }

    /// Copies `payload` into one frame if there is room now.
    pub fn try_push(&mut self, payload: &[u8]) -> std::result::Result<(), FramePushError> {
        let mut chunk = self.write_chunk(payload.len())?;
        chunk.copy_from_slice(payload);
        chunk.commit();
        Ok(())
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Bytes published and not yet taken by the consumer (frame headers
    /// and padding included).
    pub fn len(&self) -> usize {
        self.unread() as usize
    }

    /// Has the consumer taken every published frame? (Reads its index.)
    pub fn is_empty(&self) -> bool {
        self.unread() == 0
    }

    fn unread(&self) -> u64 {
        flush::unread(&self.ring, self.cursor.tail)
    }

    /// Waits until the consumer has taken every frame published so far, at
    /// most `timeout`; see [`crate::spsc::Producer::flush`].
    pub fn flush(&mut self, timeout: Duration) -> Result<()> {
        let tail = self.cursor.tail;
        flush::flush(
            &self.ring,
            tail,
            &mut self.side,
            self.strategy,
            timeout,
            "bytes of frames",
        )
    }

    /// Is the consumer attached and alive right now? (One system call.)
    pub fn is_consumer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }
}

impl Drop for Producer {
    /// Lingers while frames are unread, then reports lost ones; see
    /// [`crate::spsc::Producer`]'s `Drop`.
    fn drop(&mut self) {
        flush::linger_on_drop(
            &self.ring,
            self.cursor.tail,
            &mut self.side,
            self.strategy,
            self.linger,
            self.persistent,
            "bytes of frames",
        );
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("frames::Producer")
            .field("ring", &self.side.segment().path())
            .field("capacity", &self.ring.capacity())
            .field("position", &self.cursor.tail)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

/// A frame lent by [`Producer::write_chunk`]: a writable buffer in the
/// ring, published by `commit`. Dropping it publishes nothing.
pub struct WriteChunk<'a> {
    producer: &'a mut Producer,
    /// Position of the frame header.
    start: u64,
    len: usize,
}

impl std::fmt::Debug for WriteChunk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("frames::WriteChunk")
            .field("len", &self.len)
            .finish()
    }
}

impl WriteChunk<'_> {
    /// Publishes the frame.
    pub fn commit(self) {
        let p = self.producer;
        p.frames = p.frames.wrapping_add(1);
        // Relaxed: a statistic for `stat`, written only by the producer.
        p.ring.produced().store(p.frames, Ordering::Relaxed);
        commit_at(&p.ring, &mut p.cursor, self.start, self.len as u64);
        p.side.active();
    }
}

impl std::ops::Deref for WriteChunk<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` reserved bytes after the header, in bounds (reserve
        // checked that the frame fits before the end of the area); only this
        // producer touches them until commit.
        unsafe { std::slice::from_raw_parts(self.producer.ring.slot(self.start).add(8), self.len) }
    }
}

impl std::ops::DerefMut for WriteChunk<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique here.
        unsafe {
            std::slice::from_raw_parts_mut(self.producer.ring.slot(self.start).add(8), self.len)
        }
    }
}

/// `select` waits for room as well as for data: ready when a frame of a
/// few bytes would fit (or the consumer of a non-persistent ring is gone).
#[cfg(not(loom))]
impl wait::Selectable for Producer {
    fn is_ready(&mut self) -> bool {
        const SMALL_FRAME: u64 = 16;
        !matches!(self.cursor.free(&self.ring, SMALL_FRAME), Ok(f) if f < SMALL_FRAME)
            || (!self.persistent && self.side.peer_gone())
    }

    fn producer_gone(&self) -> bool {
        self.side.peer_gone_now()
    }

    fn ready_event(&self) -> wait::ReadyEvent<'_> {
        wait::ReadyEvent(self.ring.space_wait())
    }
}
