//! The consuming half of a frame ring.

use std::sync::Arc;
use std::time::Duration;

use super::{check_ring, next_frame};
use crate::error::{Error, Result};
use crate::ring::builder::Settings;
use crate::ring::role::{CONSUMER, PRODUCER, Side};
use crate::ring::{PopError, TryPopError, pop_poll};
use crate::segment::Segment;
use crate::spsc::raw::{ConsumerCursor, RawRing};
use crate::spsc::wake_all;
use crate::sync::atomic::Ordering;
use crate::wait::{self, WaitStrategy};

/// The consuming half of a frame ring.
pub struct Consumer {
    ring: RawRing,
    cursor: ConsumerCursor,
    side: Side,
    frames: u64,
    strategy: WaitStrategy,
}

impl Consumer {
    crate::ring::builder::entry_points!("its consumer", "bytes of frames");

    /// Takes the consumer role on an attached segment (tools; most code uses
    /// [`open`](Self::open) and friends).
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        check_ring(&seg)?;
        Self::attach_checked(seg, &Settings::default())
    }

    pub(crate) fn attach_checked(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        let ring = RawRing::new(&seg)?;
        let side = Side::attach(seg, CONSUMER, PRODUCER, wake_all)?;
        let cursor = ConsumerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        let frames = ring.consumed().load(Ordering::Relaxed);
        Ok(Consumer {
            ring,
            cursor,
            side,
            frames,
            strategy: settings.strategy.unwrap_or_default(),
        })
    }

    /// The segment this consumer reads from.
    pub fn segment(&self) -> &Arc<Segment> {
        self.side.segment()
    }

    /// The next frame, lent from the ring (zero-copy). Dropping the chunk
    /// (or [`release`](ReadChunk::release)) consumes the frame.
    pub fn read_chunk(&mut self) -> std::result::Result<ReadChunk<'_>, TryPopError> {
        let (len, size) = next_frame(&self.ring, &mut self.cursor, || self.side.peer_gone())?;
        Ok(ReadChunk {
            consumer: self,
            len: len as usize,
            size,
        })
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// The next frame, waiting at most `timeout` (`None`: no limit). A
    /// producer that detaches is noticed at once, one that dies within
    /// [`crate::wait::PEER_CHECK_INTERVAL`].
    pub fn read_chunk_timeout(
        &mut self,
        timeout: Option<Duration>,
    ) -> std::result::Result<ReadChunk<'_>, PopError> {
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        let outcome = wait::block_on(ring.data_wait(), self.strategy, timeout, |check_peer| {
            pop_poll(check_peer, side, |side| {
                next_frame(ring, cursor, || side.peer_gone())
            })
        });
        let (len, size) = outcome.unwrap_or(Err(PopError::Timeout))?;
        Ok(ReadChunk {
            consumer: self,
            len: len as usize,
            size,
        })
    }

    /// Copies the next frame into `out` (cleared first) and consumes it.
    pub fn try_pop(&mut self, out: &mut Vec<u8>) -> std::result::Result<(), TryPopError> {
        let frame = self.read_chunk()?;
        out.clear();
        out.extend_from_slice(&frame);
        Ok(())
    }

    /// Copies the next frame into `out` (cleared first) and consumes it,
    /// waiting at most `timeout` (`None`: no limit).
    pub fn pop_timeout(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), PopError> {
        let frame = self.read_chunk_timeout(timeout)?;
        out.clear();
        out.extend_from_slice(&frame);
        Ok(())
    }

    /// Copies the next frame into `out` (cleared first) and consumes it,
    /// waiting while the ring is empty.
    pub fn pop(&mut self, out: &mut Vec<u8>) -> std::result::Result<(), PopError> {
        self.pop_timeout(out, None)
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Is the producer attached and alive right now? (One system call.)
    pub fn is_producer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }
}

#[cfg(not(loom))]
impl wait::Selectable for Consumer {
    fn is_ready(&mut self) -> bool {
        !matches!(
            self.cursor
                .available(&self.ring, || self.side.peer_gone(), super::FRAME_HEADER),
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

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("frames::Consumer")
            .field("ring", &self.side.segment().path())
            .field("capacity", &self.ring.capacity())
            .field("position", &self.cursor.head)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

/// A frame lent by [`Consumer::read_chunk`]. Dropping it (or `release`)
/// consumes the frame.
pub struct ReadChunk<'a> {
    consumer: &'a mut Consumer,
    len: usize,
    size: u64,
}

impl ReadChunk<'_> {
    /// Consumes the frame (the same as dropping it).
    pub fn release(self) {}
}

impl Drop for ReadChunk<'_> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        c.frames = c.frames.wrapping_add(1);
        // Relaxed: a statistic for `stat`, written only by the consumer.
        c.ring.consumed().store(c.frames, Ordering::Relaxed);
        c.cursor.release(&c.ring, self.size);
        c.side.active();
    }
}

impl std::fmt::Debug for ReadChunk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("frames::ReadChunk")
            .field("len", &self.len)
            .finish()
    }
}

impl std::ops::Deref for ReadChunk<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `read` checked that the frame's `len` bytes after its
        // header lie inside the byte area and the published range; the
        // producer does not write them until `release`.
        unsafe {
            std::slice::from_raw_parts(
                self.consumer.ring.slot(self.consumer.cursor.head).add(8),
                self.len,
            )
        }
    }
}
