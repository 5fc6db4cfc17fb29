//! Variable-length byte frames on an SPSC byte ring, without copies.
//!
//! ```no_run
//! use std::sync::Arc;
//! use shmring::frames::{self, FrameConsumer, FrameProducer};
//! use shmring::SegmentOptions;
//!
//! let seg = SegmentOptions::new().open_or_create("log", &frames::layout(1 << 16)?, 0)?;
//! let mut tx = FrameProducer::attach(Arc::new(seg))?;
//! let mut grant = tx.reserve(5).expect("space");
//! grant.copy_from_slice(b"hello");
//! grant.commit();
//!
//! let seg = SegmentOptions::new().open("log")?;
//! let mut rx = FrameConsumer::attach(Arc::new(seg))?;
//! if let Ok(frame) = rx.read() {
//!     assert_eq!(&*frame, b"hello");
//!     frame.release();
//! }
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! # Format
//!
//! Positions count bytes. Every frame starts on an 8-byte boundary with an
//! 8-byte header: the payload length (`u32`, little-endian) and a tag
//! ([`TAG_FRAME`]). The payload follows, padded to a multiple of 8. A frame
//! that does not fit before the end of the byte area leaves a header tagged
//! [`TAG_WRAP`] where it would have started and begins at offset 0 instead.
//! The largest payload is `capacity / 2 - 8` bytes: such a frame always fits
//! into an empty ring, wherever the free space starts.
//!
//! The consumer checks every header it reads: the tag, that the length is at
//! most the maximum, and that the frame lies inside both the byte area and
//! the published range. Anything else is `Corrupted`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layout::{Kind, Layout};
use crate::role::{CONSUMER, PRODUCER, Side};
use crate::segment::Segment;
use crate::spsc::{
    ConsumerCursor, PopError, ProducerCursor, RawRing, TryPopError, TryPushError, full_error,
    pop_poll,
};
use crate::sync::atomic::Ordering;
use crate::wait::{self, Poll, WaitStrategy};

/// Tag of a frame header ("FRM1").
pub const TAG_FRAME: u32 = u32::from_le_bytes(*b"FRM1");
/// Tag of a wrap marker ("WRAP"): skip to offset 0.
pub const TAG_WRAP: u32 = u32::from_le_bytes(*b"WRAP");
/// Bytes of a frame header.
pub const FRAME_HEADER: u64 = 8;

/// The layout of a frame ring with `capacity` bytes (a power of two, at
/// least 64).
pub fn layout(capacity: u64) -> Result<Layout> {
    Layout::new(Kind::Frames, capacity, 1, 1)
}

/// Bytes a frame of `len` payload bytes occupies.
#[inline]
fn frame_size(len: u64) -> u64 {
    FRAME_HEADER + ((len + 7) & !7)
}

/// Largest payload a ring of `capacity` bytes accepts.
#[inline]
fn max_payload(capacity: u64) -> u64 {
    capacity / 2 - FRAME_HEADER
}

fn check_kind(seg: &Segment) -> Result<()> {
    if seg.layout().kind != Kind::Frames {
        return Err(Error::LayoutMismatch {
            path: seg.path().to_path_buf(),
            what: format!("the ring holds {}, not frames", seg.layout().kind),
        });
    }
    Ok(())
}

/// Why `reserve` failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// Not enough free space now.
    Full,
    /// Full, and the consumer of a non-persistent ring is gone.
    Disconnected,
    /// The frame can never fit in this ring.
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload this ring accepts.
        max: usize,
    },
    /// The consumer's index is out of range.
    Corrupted(String),
    /// No room appeared within the timeout (blocking calls only).
    Timeout,
}

impl std::fmt::Display for ReserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReserveError::Full => f.write_str("ring is full"),
            ReserveError::Disconnected => f.write_str("ring is full and its consumer is gone"),
            ReserveError::TooLarge { len, max } => write!(
                f,
                "a {len}-byte frame can never fit: this ring takes frames up to {max} bytes; create it with a larger capacity"
            ),
            ReserveError::Corrupted(w) => write!(f, "corrupted ring: {w}"),
            ReserveError::Timeout => f.write_str("timed out waiting for space"),
        }
    }
}

impl std::error::Error for ReserveError {}

#[inline]
fn encode(len: u64, tag: u32) -> u64 {
    len | (u64::from(tag) << 32)
}

// The frame protocol as functions over the ring and the cursors, so that the
// handles below and the loom model run the same code.

/// Finds room for a frame of `len` payload bytes (`len <= max_payload`).
/// Writes a wrap marker if the frame must start at offset 0. Returns the
/// position of the frame's header, or `None` when there is not enough room.
#[inline]
pub(crate) fn reserve_at(
    ring: &RawRing,
    cursor: &mut ProducerCursor,
    len: u64,
) -> std::result::Result<Option<u64>, String> {
    let cap = ring.capacity();
    let size = frame_size(len);
    let offset = cursor.tail & (cap - 1);
    let to_end = cap - offset;
    let need = if size <= to_end { size } else { to_end + size };
    if cursor.free(ring, need)? < need {
        return Ok(None);
    }
    if size <= to_end {
        return Ok(Some(cursor.tail));
    }
    // Relaxed: the marker is published by the release store of the tail in
    // `commit_at`; the consumer does not look past the tail.
    ring.word(cursor.tail)
        .store(encode(0, TAG_WRAP), Ordering::Relaxed);
    Ok(Some(cursor.tail + to_end))
}

/// Writes the header of the frame reserved at `start` and publishes it (and
/// any wrap marker before it).
#[inline]
pub(crate) fn commit_at(ring: &RawRing, cursor: &mut ProducerCursor, start: u64, len: u64) {
    // Relaxed: published by the release store of the tail just below.
    ring.word(start)
        .store(encode(len, TAG_FRAME), Ordering::Relaxed);
    let end = start + frame_size(len);
    cursor.publish(ring, end - cursor.tail);
}

/// Finds the next frame: skips a wrap marker and checks the header. Returns
/// (payload length, bytes the frame occupies); the payload starts 8 bytes
/// after `cursor.head`.
#[inline]
pub(crate) fn next_frame(
    ring: &RawRing,
    cursor: &mut ConsumerCursor,
    mut peer_gone: impl FnMut() -> bool,
) -> std::result::Result<(u64, u64), TryPopError> {
    let cap = ring.capacity();
    let corrupt = |w: String| Err(TryPopError::Corrupted(w));
    // At most one wrap marker precedes a frame.
    for _ in 0..2 {
        let avail = cursor.available(ring, &mut peer_gone, FRAME_HEADER)?;
        if avail < FRAME_HEADER || avail % 8 != 0 {
            return corrupt(format!("{avail} bytes published, not whole frames"));
        }
        let offset = cursor.head & (cap - 1);
        // Relaxed: the header was published by the producer's release of the
        // tail, which `available` loaded with acquire. A copy is checked.
        let word = ring.word(cursor.head).load(Ordering::Relaxed);
        let (len, tag) = (word & 0xffff_ffff, (word >> 32) as u32);
        match tag {
            TAG_WRAP if offset != 0 => {
                let skip = cap - offset;
                if skip > avail {
                    return corrupt(format!(
                        "wrap marker skips {skip} bytes, only {avail} published"
                    ));
                }
                cursor.release(ring, skip);
            }
            TAG_FRAME => {
                let size = frame_size(len);
                if len > max_payload(cap) || size > avail || offset + size > cap {
                    return corrupt(format!(
                        "frame of {len} bytes at offset {offset} does not fit ({avail} bytes published, capacity {cap})"
                    ));
                }
                return Ok((len, size));
            }
            _ => return corrupt(format!("bad frame tag {tag:#x} at offset {offset}")),
        }
    }
    corrupt("two wrap markers in a row".into())
}

/// The producing half of a frame ring.
pub struct FrameProducer {
    ring: RawRing,
    cursor: ProducerCursor,
    side: Side,
    persistent: bool,
    frames: u64,
    strategy: WaitStrategy,
}

impl FrameProducer {
    /// Takes the producer role on a frame ring.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        check_kind(&seg)?;
        let ring = RawRing::new(&seg)?;
        let persistent = seg.is_persistent();
        let side = Side::attach(seg, PRODUCER, CONSUMER)?;
        let cursor = ProducerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        // The frame counter lives beside the tail; only we write it.
        let frames = ring.produced().load(Ordering::Relaxed);
        Ok(FrameProducer {
            ring,
            cursor,
            side,
            persistent,
            frames,
            strategy: WaitStrategy::default(),
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

    /// Reserves a frame of exactly `len` bytes; fill the returned buffer and
    /// [`commit`](FrameGrant::commit) it. Dropping the grant publishes
    /// nothing.
    pub fn reserve(&mut self, len: usize) -> std::result::Result<FrameGrant<'_>, ReserveError> {
        let cap = self.ring.capacity();
        let max = max_payload(cap);
        if len as u64 > max {
            return Err(ReserveError::TooLarge {
                len,
                max: max as usize,
            });
        }
        let Some(start) = reserve_at(&self.ring, &mut self.cursor, len as u64)
            .map_err(ReserveError::Corrupted)?
        else {
            return Err(match full_error(&mut self.side, self.persistent, ()) {
                TryPushError::Disconnected(()) => ReserveError::Disconnected,
                _ => ReserveError::Full,
            });
        };
        Ok(FrameGrant {
            producer: self,
            start,
            len,
        })
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Reserves a frame of `len` bytes, waiting at most `timeout` (`None`:
    /// no limit) for room. A consumer that dies meanwhile is noticed within
    /// [`crate::wait::PEER_CHECK_INTERVAL`].
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Option<std::time::Duration>,
    ) -> std::result::Result<FrameGrant<'_>, ReserveError> {
        let max = max_payload(self.ring.capacity());
        if len as u64 > max {
            return Err(ReserveError::TooLarge {
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
        let outcome =
            wait::block_on(
                ring.space_wait(),
                self.strategy,
                timeout,
                |check_peer| match reserve_at(ring, cursor, len as u64) {
                    Ok(Some(start)) => Poll::Ready(Ok(start)),
                    Ok(None) => {
                        let gone = if check_peer {
                            side.peer_gone_now()
                        } else {
                            side.peer_gone()
                        };
                        if !persistent && gone {
                            Poll::Ready(Err(ReserveError::Disconnected))
                        } else {
                            Poll::Pending
                        }
                    }
                    Err(w) => Poll::Ready(Err(ReserveError::Corrupted(w))),
                },
            );
        let start = outcome.unwrap_or(Err(ReserveError::Timeout))?;
        Ok(FrameGrant {
            producer: self,
            start,
            len,
        })
    }

    /// Copies `payload` into one frame, waiting at most `timeout` for room.
    pub fn send_timeout(
        &mut self,
        payload: &[u8],
        timeout: Option<std::time::Duration>,
    ) -> std::result::Result<(), ReserveError> {
        let mut grant = self.reserve_timeout(payload.len(), timeout)?;
        grant.copy_from_slice(payload);
        grant.commit();
        Ok(())
    }

    /// Copies `payload` into one frame. Convenience over `reserve`/`commit`.
    pub fn try_send(&mut self, payload: &[u8]) -> std::result::Result<(), ReserveError> {
        let mut grant = self.reserve(payload.len())?;
        grant.copy_from_slice(payload);
        grant.commit();
        Ok(())
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    /// Has the consumer taken every published frame? (Reads its index.)
    pub fn is_drained(&self) -> bool {
        // Acquire: pairs with the consumer's release of `head`.
        self.ring.head().load(Ordering::Acquire) == self.cursor.tail
    }

    /// Is the consumer attached and alive right now? (One system call.)
    pub fn is_consumer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }
}

/// A reserved frame: a writable buffer in the ring, published by `commit`.
pub struct FrameGrant<'a> {
    producer: &'a mut FrameProducer,
    /// Position of the frame header.
    start: u64,
    len: usize,
}

impl FrameGrant<'_> {
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

impl std::ops::Deref for FrameGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` reserved bytes after the header, in bounds (reserve
        // checked that the frame fits before the end of the area); only this
        // producer touches them until commit.
        unsafe { std::slice::from_raw_parts(self.producer.ring.slot(self.start).add(8), self.len) }
    }
}

impl std::ops::DerefMut for FrameGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique here.
        unsafe {
            std::slice::from_raw_parts_mut(self.producer.ring.slot(self.start).add(8), self.len)
        }
    }
}

/// The consuming half of a frame ring.
pub struct FrameConsumer {
    ring: RawRing,
    cursor: ConsumerCursor,
    side: Side,
    frames: u64,
    strategy: WaitStrategy,
}

impl FrameConsumer {
    /// Takes the consumer role on a frame ring.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        check_kind(&seg)?;
        let ring = RawRing::new(&seg)?;
        let side = Side::attach(seg, CONSUMER, PRODUCER)?;
        let cursor = ConsumerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        let frames = ring.consumed().load(Ordering::Relaxed);
        Ok(FrameConsumer {
            ring,
            cursor,
            side,
            frames,
            strategy: WaitStrategy::default(),
        })
    }

    /// The segment this consumer reads from.
    pub fn segment(&self) -> &Arc<Segment> {
        self.side.segment()
    }

    /// The next frame, borrowed from the ring until
    /// [`release`](Frame::release). Dropping it without release leaves it to
    /// be read again.
    pub fn read(&mut self) -> std::result::Result<Frame<'_>, TryPopError> {
        let (len, size) = next_frame(&self.ring, &mut self.cursor, || self.side.peer_gone())?;
        Ok(Frame {
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
    pub fn read_timeout(
        &mut self,
        timeout: Option<std::time::Duration>,
    ) -> std::result::Result<Frame<'_>, PopError> {
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        let outcome = wait::block_on(ring.data_wait(), self.strategy, timeout, |check_peer| {
            pop_poll(check_peer, side, |side| {
                next_frame(ring, cursor, || side.peer_gone())
            })
        });
        let (len, size) = outcome.unwrap_or(Err(PopError::Timeout))?;
        Ok(Frame {
            consumer: self,
            len: len as usize,
            size,
        })
    }

    /// Copies the next frame into `out` (cleared first) and releases it.
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> std::result::Result<(), TryPopError> {
        let frame = self.read()?;
        out.clear();
        out.extend_from_slice(&frame);
        frame.release();
        Ok(())
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    /// Is the producer attached and alive right now? (One system call.)
    pub fn is_producer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }
}

#[cfg(not(loom))]
impl wait::Selectable for FrameConsumer {
    fn is_ready(&mut self) -> bool {
        !matches!(
            self.cursor
                .available(&self.ring, || self.side.peer_gone(), FRAME_HEADER),
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

/// A frame borrowed from the ring.
pub struct Frame<'a> {
    consumer: &'a mut FrameConsumer,
    len: usize,
    size: u64,
}

impl Frame<'_> {
    /// Frees the frame for the producer.
    pub fn release(self) {
        let c = self.consumer;
        c.frames = c.frames.wrapping_add(1);
        c.ring.consumed().store(c.frames, Ordering::Relaxed);
        c.cursor.release(&c.ring, self.size);
        c.side.active();
    }
}

impl std::ops::Deref for Frame<'_> {
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

#[cfg(all(test, loom))]
mod loom_models {
    //! Model check of reserve/commit/read/release, including a wrap marker:
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_models`.
    //! Payload words are written and read with relaxed atomics, so a missing
    //! release/acquire edge would show up as a wrong payload.

    use super::*;
    use crate::sync::atomic::AtomicU64;
    use loom::sync::Arc;
    use loom::thread;
    use std::sync::atomic::Ordering::Relaxed;

    const CAP: u64 = 64;
    /// Sizes 32, 24, 32 bytes: the third does not fit before the end (8
    /// bytes left at offset 56), so it leaves a wrap marker and starts at 0
    /// once the consumer has freed the first.
    const LENS: [u64; 3] = [24, 16, 24];

    struct Mem {
        control: crate::layout::SpscControl,
        words: [AtomicU64; (CAP / 8) as usize],
    }

    impl Mem {
        fn new() -> Mem {
            Mem {
                control: crate::layout::SpscControl::new_for_model(),
                words: std::array::from_fn(|_| AtomicU64::new(0)),
            }
        }

        fn ring(&self) -> RawRing {
            // SAFETY: the control lines and the array outlive the RawRing
            // (each thread holds the Arc<Mem>); under loom `word()` indexes
            // `words` by pos / 8; CAP is a power of two.
            unsafe { RawRing::from_parts(&self.control, self.words.as_ptr() as *mut u8, CAP, 1) }
        }
    }

    fn payload(frame: usize, k: u64) -> u64 {
        frame as u64 * 100 + k + 1
    }

    #[test]
    fn frames_arrive_intact_across_a_wrap_marker() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let mem = Arc::new(Mem::new());
            let m2 = mem.clone();
            let producer = thread::spawn(move || {
                let ring = m2.ring();
                let mut cursor = ProducerCursor::attach(&ring).unwrap();
                for (i, &len) in LENS.iter().enumerate() {
                    let start = loop {
                        match reserve_at(&ring, &mut cursor, len).unwrap() {
                            Some(start) => break start,
                            None => thread::yield_now(),
                        }
                    };
                    for k in 0..len / 8 {
                        ring.word(start + 8 + 8 * k).store(payload(i, k), Relaxed);
                    }
                    commit_at(&ring, &mut cursor, start, len);
                }
            });
            let ring = mem.ring();
            let mut cursor = ConsumerCursor::attach(&ring).unwrap();
            for (i, &want) in LENS.iter().enumerate() {
                let (len, size) = loop {
                    match next_frame(&ring, &mut cursor, || false) {
                        Ok(found) => break found,
                        Err(TryPopError::Empty) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                };
                assert_eq!(len, want);
                for k in 0..len / 8 {
                    let got = ring.word(cursor.head + 8 + 8 * k).load(Relaxed);
                    assert_eq!(got, payload(i, k), "frame {i} word {k}");
                }
                cursor.release(&ring, size);
            }
            producer.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Regressions found by fuzzing (`fuzz/`, target `attach_consume`).
    //! The overflow they guard against panics only where overflow checks
    //! are on: `cargo test` (debug) and the fuzz builds, which also replay
    //! the input that found it (`scripts/fuzz.sh` writes it to the corpus).

    use super::*;
    use crate::SegmentOptions;

    #[test]
    fn frame_counters_scribbled_to_the_maximum_wrap_instead_of_panicking() {
        let dir = crate::segment::TestDir::new("frames");
        let seg = Arc::new(
            SegmentOptions::new()
                .dir(&dir.0)
                .create("r", &layout(1024).unwrap(), 0)
                .unwrap(),
        );
        let mut tx = FrameProducer::attach(seg.clone()).unwrap();
        let mut rx = FrameConsumer::attach(seg.clone()).unwrap();
        // A hostile peer sets both counters to u64::MAX before we attach
        // again (the halves load them at attach).
        drop((tx, rx));
        let ring = RawRing::new(&seg).unwrap();
        ring.produced().store(u64::MAX, Ordering::Relaxed);
        ring.consumed().store(u64::MAX, Ordering::Relaxed);
        tx = FrameProducer::attach(seg.clone()).unwrap();
        rx = FrameConsumer::attach(seg.clone()).unwrap();
        tx.try_send(b"one").unwrap();
        let mut out = Vec::new();
        rx.try_recv(&mut out).unwrap();
        assert_eq!(out, b"one");
        assert_eq!(ring.produced().load(Ordering::Relaxed), 0);
        assert_eq!(ring.consumed().load(Ordering::Relaxed), 0);
        drop((tx, rx, ring, seg));
    }
}
