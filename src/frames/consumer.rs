//! The consuming half of a frame ring.

use std::sync::Arc;
use std::time::Duration;

use super::{Header, check_ring, next_frame, parse_header};
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
    /// The frames a [`ReadFrames`] lends: checked copies of their headers
    /// (grown to the largest batch asked for, then reused).
    batch: Vec<Span>,
}

/// One frame of a batch: where its payload starts, its length, and the
/// position just after it. Taken from a header checked by `parse_header`,
/// so the payload lies inside the byte area and the published range.
#[derive(Clone, Copy, Debug)]
struct Span {
    payload: u64,
    len: usize,
    end: u64,
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
            batch: Vec::new(),
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

    /// Up to `max` frames at once, lent from the ring (zero-copy): the
    /// first one as [`read_chunk`](Self::read_chunk) finds it, then those
    /// already published behind it. Release some or all of them with
    /// [`ReadFrames::release`]; dropping the batch consumes all of them.
    /// What a consumer that writes frames elsewhere uses to make one system
    /// call per batch and still release only what was written.
    pub fn read_frames(&mut self, max: usize) -> std::result::Result<ReadFrames<'_>, TryPopError> {
        let (len, size) = next_frame(&self.ring, &mut self.cursor, || self.side.peer_gone())?;
        self.fill_batch(len, size, max);
        Ok(self.lend_batch())
    }

    /// [`read_frames`](Self::read_frames), waiting at most `timeout` for
    /// the first frame (`None`: no limit).
    pub fn read_frames_timeout(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
    ) -> std::result::Result<ReadFrames<'_>, PopError> {
        let (len, size) = self.wait_frame(timeout)?;
        self.fill_batch(len, size, max);
        Ok(self.lend_batch())
    }

    /// Records the frame at the head (found by `next_frame`) and up to
    /// `max - 1` more published behind it. A header that fails its checks
    /// ends the batch there; the read that reaches it reports it.
    fn fill_batch(&mut self, len: u64, size: u64, max: usize) {
        let head = self.cursor.head;
        self.batch.clear();
        self.batch.push(Span {
            payload: head + super::FRAME_HEADER,
            len: len as usize,
            end: head + size,
        });
        let Ok(avail) = self.cursor.published_from(&self.ring, head) else {
            return;
        };
        let mut pos = head + size;
        // Each step moves `pos` forward by at least one header, inside the
        // published range: the loop ends.
        while self.batch.len() < max && pos - head < avail {
            match parse_header(&self.ring, pos, avail - (pos - head)) {
                Ok(Header::Wrap(skip)) => pos += skip,
                Ok(Header::Frame { len, size }) => {
                    self.batch.push(Span {
                        payload: pos + super::FRAME_HEADER,
                        len: len as usize,
                        end: pos + size,
                    });
                    pos += size;
                }
                Err(_) => break,
            }
        }
    }

    fn lend_batch(&mut self) -> ReadFrames<'_> {
        let release = self.batch.len();
        ReadFrames {
            consumer: self,
            release,
            receipt_written: false,
        }
    }

    /// Waits for the next frame (see `read_chunk_timeout`).
    fn wait_frame(
        &mut self,
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, u64), PopError> {
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        let outcome = wait::block_on(ring.data_wait(), self.strategy, timeout, |check_peer| {
            pop_poll(check_peer, side, |side| {
                next_frame(ring, cursor, || side.peer_gone())
            })
        });
        outcome.unwrap_or(Err(PopError::Timeout))
    }

    /// One poll of a waiting pop into `out` (the async layer);
    /// `check_peer` checks the producer's lock now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_pop_into(
        &mut self,
        out: &mut Vec<u8>,
        check_peer: bool,
    ) -> wait::Poll<std::result::Result<(), PopError>> {
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        let found = pop_poll(check_peer, side, |side| {
            next_frame(ring, cursor, || side.peer_gone())
        });
        match found {
            wait::Poll::Ready(Ok((len, size))) => {
                let frame = ReadChunk {
                    consumer: self,
                    len: len as usize,
                    size,
                };
                out.clear();
                out.extend_from_slice(&frame);
                wait::Poll::Ready(Ok(()))
            }
            wait::Poll::Ready(Err(e)) => wait::Poll::Ready(Err(e)),
            wait::Poll::Pending => wait::Poll::Pending,
        }
    }

    /// The event a waiting pop sleeps on, and the segment that holds it.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (wait::Event<'_>, &Arc<Segment>) {
        (self.ring.data_wait(), self.side.segment())
    }

    /// Consumes the frames up to position `end` (`frames` of them).
    fn consume(&mut self, end: u64, frames: u64) {
        self.frames = self.frames.wrapping_add(frames);
        // Relaxed: a statistic for `stat`, written only by the consumer.
        self.ring.consumed().store(self.frames, Ordering::Relaxed);
        self.cursor
            .release(&self.ring, end.wrapping_sub(self.cursor.head));
        self.side.active();
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
        let (len, size) = self.wait_frame(timeout)?;
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
        let end = self.consumer.cursor.head.wrapping_add(self.size);
        self.consumer.consume(end, 1);
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

/// Frames lent by [`Consumer::read_frames`], in ring order. Dropping the
/// batch consumes every frame in it; [`release`](Self::release) consumes
/// only the first `n` and leaves the rest in the ring, for the next read
/// (of this consumer, or of the next one if this one goes away).
///
/// ```
/// # fn main() -> Result<(), shmring::Error> {
/// let (mut tx, mut rx) = shmring::frames::anonymous(4096)?;
/// for line in [&b"one"[..], b"two", b"three"] {
///     tx.try_push(line)?;
/// }
/// let batch = rx.read_frames(16)?;
/// assert_eq!(batch.len(), 3);
/// assert_eq!(batch.iter().collect::<Vec<_>>(), [&b"one"[..], b"two", b"three"]);
/// batch.release(2); // "three" stays
/// assert_eq!(&*rx.read_chunk()?, b"three");
/// # Ok(()) }
/// ```
pub struct ReadFrames<'a> {
    consumer: &'a mut Consumer,
    /// How many frames dropping the batch consumes.
    release: usize,
    /// Did this batch write the receipt?
    receipt_written: bool,
}

/// A receipt left with frames a consumer did not release (see
/// [`ReadFrames::set_receipt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchReceipt {
    /// The words it wrote.
    pub words: [u64; 4],
    /// How many frames, from the first of the batch, it covers.
    pub frames: usize,
}

impl ReadFrames<'_> {
    /// Frames in the batch (at least one).
    pub fn len(&self) -> usize {
        self.consumer.batch.len()
    }

    /// Never true: a batch holds at least one frame.
    pub fn is_empty(&self) -> bool {
        self.consumer.batch.is_empty()
    }

    /// Frame `i` of the batch.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.consumer.batch.get(i).map(|span| self.frame(*span))
    }

    /// The frames, in ring order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + Clone + '_ {
        self.consumer.batch.iter().map(|span| self.frame(*span))
    }

    /// Bytes of payload in the first `n` frames.
    pub fn bytes(&self, n: usize) -> usize {
        self.consumer.batch.iter().take(n).map(|s| s.len).sum()
    }

    /// Consumes the first `n` frames (all of them if `n` is larger) and
    /// leaves the others in the ring. Releasing some but not all clears a
    /// receipt this batch wrote (it described all of them); releasing none
    /// keeps it.
    pub fn release(mut self, n: usize) {
        self.release = n.min(self.len());
        if self.release > 0 && self.release < self.len() && self.receipt_written {
            self.consumer.ring.receipt().clear();
        }
    }

    /// Writes the consumer's receipt for this batch: four words of the
    /// caller's (what it is doing with these frames, e.g. where it writes
    /// them), kept in the ring until the batch is released. If this process
    /// dies first, the next consumer's batch returns them from
    /// [`receipt`](Self::receipt), so that it can finish the job exactly
    /// once. Two stores to the consumer's own line, no system call.
    pub fn set_receipt(&mut self, words: [u64; 4]) {
        if let Some(last) = self.consumer.batch.last() {
            self.consumer.ring.receipt().write(last.end, words);
            self.receipt_written = true;
        }
    }

    /// The receipt a previous consumer wrote for frames it did not
    /// release, if it covers the first frames of this batch: its words and
    /// how many frames it covers. (A receipt never describes a consumer's
    /// own released frames: it is only returned for frames still here.)
    pub fn receipt(&self) -> Option<BatchReceipt> {
        let (end, words) = self.consumer.ring.receipt().read()?;
        // Untrusted: it must end exactly at one of our frames.
        let frames = self.consumer.batch.iter().position(|s| s.end == end)? + 1;
        Some(BatchReceipt { words, frames })
    }

    fn frame(&self, span: Span) -> &[u8] {
        // The payload lies in the byte area and the published range
        // (`parse_header`); release needs `self` by value or its drop.
        // SAFETY: in bounds, published, and unwritten while `self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.consumer.ring.slot(span.payload), span.len) }
    }
}

impl Drop for ReadFrames<'_> {
    fn drop(&mut self) {
        // `release <= len` (set from `len` or clamped to it).
        if let Some(last) = self.release.checked_sub(1)
            && let Some(span) = self.consumer.batch.get(last)
        {
            let end = span.end;
            self.consumer.consume(end, self.release as u64);
        }
    }
}

impl std::fmt::Debug for ReadFrames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("frames::ReadFrames")
            .field("frames", &self.len())
            .field("bytes", &self.bytes(self.len()))
            .finish()
    }
}
