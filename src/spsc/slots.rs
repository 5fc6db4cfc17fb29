//! Whole-slot byte handles on typed SPSC rings: each message is the bytes
//! of one slot, of the ring's message size. For tools that move messages
//! of a type they do not know at compile time (the Zenoh bridge, which
//! checks the type identity on the wire instead); programs use the typed
//! [`Producer`](super::Producer) and [`Consumer`](super::Consumer).
//!
//! Every message type of a ring is `Pod` (any bytes are a valid value), so
//! bytes pushed here are a valid message for the typed consumer on the
//! other side; only the length is checked: exactly the slot size.

use std::sync::Arc;
use std::time::Duration;

use super::consumer::pop_one;
use super::producer::{push_blocking, push_one};
use super::raw::{ConsumerCursor, ProducerCursor, RawRing};
use super::wake_all;
use crate::error::{Error, Result};
use crate::layout::Kind;
use crate::ring::builder::check_kind;
use crate::ring::role::{CONSUMER, PRODUCER, Side};
use crate::ring::{FramePushError, PopError, check_message_len, pop_poll};
use crate::segment::Segment;
use crate::wait::{self, WaitStrategy};

/// The ring's message size, checked against its stride (so a slot always
/// holds `size` bytes).
fn message_size(seg: &Segment) -> Result<usize> {
    check_kind(seg, Kind::Spsc)?;
    let l = seg.layout();
    let size = l.slot_size() as usize;
    if size == 0 || size as u64 > l.slot_stride() {
        return Err(Error::corrupted(
            seg.path(),
            format!(
                "message size {size} does not fit the slot stride {}",
                l.slot_stride()
            ),
        ));
    }
    Ok(size)
}

/// Copies one message into a slot handed out by `push_one`.
#[inline(always)]
fn write_bytes(slot: *mut u8, msg: &[u8]) {
    // `push_one` hands out a free, in-bounds slot of `stride >= size` bytes
    // (`message_size`) that the consumer reads only after we publish.
    // SAFETY: callers check `msg.len() == size`; private source, no overlap.
    unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), slot, msg.len()) }
}

/// The producing half of a typed SPSC ring, fed with each message's bytes
/// (see the module docs). Holds the ring's producer role, like
/// [`Producer`](super::Producer).
pub struct SlotProducer {
    ring: RawRing,
    cursor: ProducerCursor,
    side: Side,
    persistent: bool,
    strategy: WaitStrategy,
    /// The ring's message size (<= its stride, checked at attach).
    size: usize,
}

impl SlotProducer {
    /// Takes the producer role of an SPSC ring of any message type.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        let size = message_size(&seg)?;
        let ring = RawRing::new(&seg)?;
        let persistent = seg.is_persistent();
        let side = Side::attach(seg, PRODUCER, CONSUMER, wake_all)?;
        let cursor = ProducerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        Ok(SlotProducer {
            ring,
            cursor,
            side,
            persistent,
            strategy: WaitStrategy::default(),
            size,
        })
    }

    /// Bytes of every message (the ring type's size).
    pub fn message_size(&self) -> usize {
        self.size
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Pushes one message (exactly [`message_size`](Self::message_size)
    /// bytes) if there is room now.
    pub fn try_push(&mut self, msg: &[u8]) -> std::result::Result<(), FramePushError> {
        check_message_len(msg.len(), self.size, true)?;
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        push_one(ring, cursor, side, self.persistent, msg, write_bytes)
            .map_err(FramePushError::from)
    }

    /// Pushes one message, waiting at most `timeout` (`None`: no limit)
    /// while the ring is full.
    pub fn push_timeout(
        &mut self,
        msg: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<(), FramePushError> {
        check_message_len(msg.len(), self.size, true)?;
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        let strategy = self.strategy;
        push_blocking(
            ring,
            cursor,
            side,
            self.persistent,
            strategy,
            msg,
            timeout,
            write_bytes,
        )
        .map_err(FramePushError::from)
    }

    /// Is the consumer attached and alive right now?
    pub fn is_consumer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }
}

impl std::fmt::Debug for SlotProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::SlotProducer")
            .field("ring", &self.side.segment().path())
            .field("message_size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The consuming half of a typed SPSC ring, giving each message's bytes
/// (see the module docs). Holds the ring's consumer role.
pub struct SlotConsumer {
    ring: RawRing,
    cursor: ConsumerCursor,
    side: Side,
    strategy: WaitStrategy,
    /// The ring's message size (<= its stride, checked at attach).
    size: usize,
}

impl SlotConsumer {
    /// Takes the consumer role of an SPSC ring of any message type.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        let size = message_size(&seg)?;
        let ring = RawRing::new(&seg)?;
        let side = Side::attach(seg, CONSUMER, PRODUCER, wake_all)?;
        let cursor = ConsumerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        Ok(SlotConsumer {
            ring,
            cursor,
            side,
            strategy: WaitStrategy::default(),
            size,
        })
    }

    /// Bytes of every message (the ring type's size).
    pub fn message_size(&self) -> usize {
        self.size
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Replaces `out`'s contents with the next message, waiting at most
    /// `timeout` (`None`: no limit).
    pub fn pop_into_timeout(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), PopError> {
        self.pop_forward_timeout(out, timeout, |_| ())
    }

    /// As [`pop_into_timeout`](Self::pop_into_timeout), and hands the
    /// message to `forward` before it leaves the ring: its slot is released
    /// only once `forward` has returned, so a process killed inside
    /// `forward` leaves the message for the next consumer (at-least-once;
    /// what a relay uses).
    pub fn pop_forward_timeout<R>(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
        forward: impl FnOnce(&[u8]) -> R,
    ) -> std::result::Result<R, PopError> {
        out.resize(self.size, 0);
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        let dst = out.as_mut_slice();
        let mut forward = Some(forward);
        let outcome = wait::block_on(ring.data_wait(), self.strategy, timeout, |check_peer| {
            pop_poll(check_peer, side, |side| {
                pop_one(ring, cursor, side, |slot| {
                    // `pop_one` hands out a published, in-bounds slot of
                    // `stride >= size` bytes, unwritten until its release.
                    // SAFETY: as above; `dst` is private, `size` bytes.
                    unsafe { std::ptr::copy_nonoverlapping(slot, dst.as_mut_ptr(), dst.len()) };
                    // `pop_one` calls this at most once per wait (it
                    // returns as soon as a message is there).
                    forward.take().map(|f| f(dst))
                })
            })
        });
        match outcome.unwrap_or(Err(PopError::Timeout)) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(PopError::Corrupted(
                "a message was taken twice in one wait".into(),
            )),
            Err(e) => {
                out.clear();
                Err(e)
            }
        }
    }

    /// Is the producer attached and alive right now?
    pub fn is_producer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }
}

impl std::fmt::Debug for SlotConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::SlotConsumer")
            .field("ring", &self.side.segment().path())
            .field("message_size", &self.size)
            .finish_non_exhaustive()
    }
}
