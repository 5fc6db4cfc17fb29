//! Variable-length byte frames on an SPSC byte ring, without copies.
//!
//! ```
//! # fn main() -> Result<(), shmring::Error> {
//! # let name = &format!("doc-frames-{}", std::process::id());
//! use shmring::frames::{Consumer, Producer};
//!
//! // 64 KiB of frames, created or joined by name.
//! let mut tx = Producer::open_or_create(name, 1 << 16)?;
//! tx.try_push(b"copied in")?;
//! let mut chunk = tx.write_chunk(5)?; // zero-copy: a &mut [u8] inside the ring
//! chunk.copy_from_slice(b"hello");
//! chunk.commit();
//!
//! let mut rx = Consumer::open(name)?;
//! let mut buf = Vec::new();
//! rx.try_pop(&mut buf)?; // copies out
//! assert_eq!(buf, b"copied in");
//! let frame = rx.read_chunk()?; // zero-copy: a &[u8] inside the ring
//! assert_eq!(&*frame, b"hello");
//! drop(frame); // consumed
//! # Ok(()) }
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

mod consumer;
#[cfg(all(test, loom))]
mod loom_models;
mod producer;
#[cfg(all(test, not(loom)))]
mod tests;

pub use consumer::{BatchReceipt, Consumer, ReadChunk, ReadFrames};
pub use producer::{Producer, WriteChunk};

pub use crate::ring::{Builder, FramePushError, PopError, TryPopError};

use std::sync::Arc;

use crate::error::Result;
use crate::layout::{Kind, Layout};
use crate::message::TypeIdentity;
use crate::ring::builder::{self, Endpoint, Request, Settings, Shape};
use crate::segment::{self, Segment};
use crate::spsc::raw::{ConsumerCursor, ProducerCursor, RawRing};
use crate::sync::atomic::Ordering;

/// Capacity of a frame ring whose creator did not choose one: 64 KiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 16;

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
pub(crate) fn frame_size(len: u64) -> u64 {
    FRAME_HEADER + ((len + 7) & !7)
}

/// Largest payload a ring of `capacity` bytes accepts.
#[inline]
pub(crate) fn max_payload(capacity: u64) -> u64 {
    capacity / 2 - FRAME_HEADER
}

/// A connected producer and consumer over an anonymous frame ring (a
/// sealed memfd) of `capacity` bytes; see [`crate::spsc::anonymous`].
pub fn anonymous(capacity: u64) -> Result<(Producer, Consumer)> {
    builder::anonymous_pair(&Request {
        capacity: Some(capacity),
        ..Request::default()
    })
}

fn shape(request: &Request) -> Result<Shape> {
    builder::one_role_each(request, "a frame")?;
    Ok(Shape {
        layout: layout(request.capacity.unwrap_or(DEFAULT_CAPACITY))?,
        identity: TypeIdentity::bytes(1),
        init: segment::zeroed,
    })
}

fn check_ring(seg: &Segment) -> Result<()> {
    builder::check_ring(seg, Kind::Frames, &TypeIdentity::bytes(1))
}

impl builder::Sealed for Producer {}
impl builder::Sealed for Consumer {}

impl Endpoint for Producer {
    const ROLE: &'static str = "producer";
    fn shape(request: &Request) -> Result<Shape> {
        shape(request)
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        Producer::attach_checked(seg, settings)
    }
}

impl Endpoint for Consumer {
    const ROLE: &'static str = "consumer";
    fn shape(request: &Request) -> Result<Shape> {
        shape(request)
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        Consumer::attach_checked(seg, settings)
    }
}

#[inline]
fn encode(len: u64, tag: u32) -> u64 {
    len | (u64::from(tag) << 32)
}

// The frame protocol as functions over the ring and the cursors, so that the
// handles below and the loom model run the same code.

/// Bytes a frame of `len` payload bytes takes when written at `tail` in a
/// ring of `cap` bytes: its size, plus the rest of the area before it when
/// it does not fit there and must start at offset 0.
#[inline]
pub(crate) fn room_needed(cap: u64, tail: u64, len: u64) -> u64 {
    let size = frame_size(len);
    let to_end = cap - (tail & (cap - 1));
    if size <= to_end { size } else { to_end + size }
}

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
    let to_end = cap - (cursor.tail & (cap - 1));
    let need = room_needed(cap, cursor.tail, len);
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

/// What the header at a position says.
pub(crate) enum Header {
    /// A wrap marker: skip this many bytes to offset 0.
    Wrap(u64),
    /// A frame of `len` payload bytes occupying `size` bytes.
    Frame { len: u64, size: u64 },
}

/// Reads and checks the header at `pos`, with `avail` bytes published from
/// `pos` on (the caller has acquired them). Every value is checked: the
/// tag, the length against the maximum, and that the frame (or the bytes a
/// wrap marker skips) lies inside both the byte area and the published
/// range.
#[inline]
pub(crate) fn parse_header(
    ring: &RawRing,
    pos: u64,
    avail: u64,
) -> std::result::Result<Header, String> {
    let cap = ring.capacity();
    if avail < FRAME_HEADER || !avail.is_multiple_of(8) {
        return Err(format!("{avail} bytes published, not whole frames"));
    }
    let offset = pos & (cap - 1);
    // Relaxed: the header was published by the producer's release of the
    // tail, which the caller loaded with acquire. A copy is checked.
    let word = ring.word(pos).load(Ordering::Relaxed);
    let (len, tag) = (word & 0xffff_ffff, (word >> 32) as u32);
    match tag {
        TAG_WRAP if offset != 0 => {
            let skip = cap - offset;
            if skip > avail {
                return Err(format!(
                    "wrap marker skips {skip} bytes, only {avail} published"
                ));
            }
            Ok(Header::Wrap(skip))
        }
        TAG_FRAME => {
            let size = frame_size(len);
            if len > max_payload(cap) || size > avail || offset + size > cap {
                return Err(format!(
                    "frame of {len} bytes at offset {offset} does not fit ({avail} bytes published, capacity {cap})"
                ));
            }
            Ok(Header::Frame { len, size })
        }
        _ => Err(format!("bad frame tag {tag:#x} at offset {offset}")),
    }
}

/// Finds the next frame: skips (and releases) a wrap marker and checks the
/// header. Returns (payload length, bytes the frame occupies); the payload
/// starts 8 bytes after `cursor.head`.
#[inline]
pub(crate) fn next_frame(
    ring: &RawRing,
    cursor: &mut ConsumerCursor,
    mut peer_gone: impl FnMut() -> bool,
) -> std::result::Result<(u64, u64), TryPopError> {
    // At most one wrap marker precedes a frame.
    for _ in 0..2 {
        let avail = cursor.available(ring, &mut peer_gone, FRAME_HEADER)?;
        match parse_header(ring, cursor.head, avail) {
            Ok(Header::Wrap(skip)) => cursor.release(ring, skip),
            Ok(Header::Frame { len, size }) => return Ok((len, size)),
            Err(w) => return Err(corrupt(ring, w)),
        }
    }
    Err(corrupt(ring, "two wrap markers in a row".into()))
}

/// `Corrupted(what)`, or the loss of the ring's memory if that is what
/// happened: a header read from memory this process lost (zeros) says
/// nothing about the peer.
pub(crate) fn corrupt(ring: &RawRing, what: String) -> TryPopError {
    TryPopError::Corrupted(if ring.lost_now() {
        crate::ring::role::memory_lost()
    } else {
        what
    })
}
