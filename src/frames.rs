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
use crate::header::{Kind, Layout};
use crate::role::{CONSUMER, PRODUCER, Side};
use crate::segment::Segment;
use crate::spsc::{ConsumerCursor, ProducerCursor, RawRing, TryPopError, TryPushError, full_error};
use crate::sync::atomic::Ordering;

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
        }
    }
}

impl std::error::Error for ReserveError {}

/// Writes an 8-byte frame header at `ptr`.
///
/// # Safety
/// `ptr` must be valid for 8 bytes and 8-byte aligned.
#[inline]
unsafe fn write_header(ptr: *mut u8, len: u32, tag: u32) {
    let word = u64::from(len) | (u64::from(tag) << 32);
    // SAFETY: guaranteed by the caller.
    unsafe { ptr.cast::<u64>().write(word.to_le()) };
}

/// The producing half of a frame ring.
pub struct FrameProducer {
    ring: RawRing,
    cursor: ProducerCursor,
    side: Side,
    persistent: bool,
    frames: u64,
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
        let size = frame_size(len as u64);
        let offset = self.cursor.tail & (cap - 1);
        let to_end = cap - offset;
        let need = if size <= to_end { size } else { to_end + size };
        let free = self
            .cursor
            .free(&self.ring, need)
            .map_err(ReserveError::Corrupted)?;
        if free < need {
            return Err(match full_error(&mut self.side, self.persistent, ()) {
                TryPushError::Disconnected(()) => ReserveError::Disconnected,
                _ => ReserveError::Full,
            });
        }
        let start = if size <= to_end {
            self.cursor.tail
        } else {
            // SAFETY: offset is 8-aligned (all frames are) and at least 8
            // bytes remain before the end (to_end >= 8); the bytes are free.
            unsafe { write_header(self.ring.slot(self.cursor.tail), 0, TAG_WRAP) };
            self.cursor.tail + to_end
        };
        Ok(FrameGrant {
            producer: self,
            start,
            len,
        })
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
        // SAFETY: `start` is 8-aligned and the frame's bytes are free and in
        // bounds (checked in `reserve`).
        unsafe { write_header(p.ring.slot(self.start), self.len as u32, TAG_FRAME) };
        p.frames += 1;
        p.ring.produced().store(p.frames, Ordering::Relaxed);
        let end = self.start + frame_size(self.len as u64);
        let n = end - p.cursor.tail;
        p.cursor.publish(&p.ring, n);
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
        let cap = self.ring.capacity();
        // At most one wrap marker precedes a frame.
        for _ in 0..2 {
            let avail =
                self.cursor
                    .available(&self.ring, || self.side.peer_gone(), FRAME_HEADER)?;
            let corrupt = |w: String| Err(TryPopError::Corrupted(w));
            if avail < FRAME_HEADER || avail % 8 != 0 {
                return corrupt(format!("{avail} bytes published, not whole frames"));
            }
            let offset = self.cursor.head & (cap - 1);
            // SAFETY: offset is 8-aligned (head only advances by multiples of
            // 8, checked above) and 8 bytes are in bounds (cap is a multiple
            // of 8); the bytes are published. A copy is taken, then checked.
            let word = u64::from_le(unsafe {
                self.ring
                    .slot(self.cursor.head)
                    .cast::<u64>()
                    .read_volatile()
            });
            let (len, tag) = (word as u32 as u64, (word >> 32) as u32);
            match tag {
                TAG_WRAP if offset != 0 => {
                    let skip = cap - offset;
                    if skip > avail {
                        return corrupt(format!(
                            "wrap marker skips {skip} bytes, only {avail} published"
                        ));
                    }
                    self.cursor.release(&self.ring, skip);
                }
                TAG_FRAME => {
                    let size = frame_size(len);
                    if len > max_payload(cap) || size > avail || offset + size > cap {
                        return corrupt(format!(
                            "frame of {len} bytes at offset {offset} does not fit ({avail} bytes published, capacity {cap})"
                        ));
                    }
                    return Ok(Frame {
                        consumer: self,
                        len: len as usize,
                        size,
                    });
                }
                _ => return corrupt(format!("bad frame tag {tag:#x} at offset {offset}")),
            }
        }
        Err(TryPopError::Corrupted("two wrap markers in a row".into()))
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
        c.frames += 1;
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
