//! Byte-message handles over byte slots (what `shmring send` and `recv`
//! use on MPMC rings).

use std::sync::Arc;
use std::time::Duration;

use super::core::Core;
use crate::error::{Error, Result};
use crate::layout::Kind;
use crate::message::TypeIdentity;
use crate::ring::builder::{self, Settings};
use crate::ring::{FramePushError, PopError, check_message_len};
use crate::segment::Segment;
#[cfg(all(feature = "async", not(loom)))]
use crate::wait::Poll;
use crate::wait::WaitStrategy;

/// Bytes of the length prefix of a [`BytesProducer`] message.
const LEN_PREFIX: usize = 4;

/// Checks that `seg` is a byte-slot MPMC ring (type id 0, room for the
/// length prefix and a byte); returns its slot size.
fn check_bytes(seg: &Segment) -> Result<usize> {
    let l = seg.layout();
    builder::check_ring(
        seg,
        Kind::Mpmc,
        &TypeIdentity::bytes(l.slot_size()).with_align(l.slot_align()),
    )?;
    if (l.slot_size() as usize) < LEN_PREFIX + 1 {
        return Err(Error::LayoutMismatch {
            path: seg.path().to_path_buf(),
            what: format!(
                "byte messages need slots of at least {} bytes",
                LEN_PREFIX + 1
            ),
        });
    }
    Ok(l.slot_size() as usize)
}

/// The framing of a ring's messages: byte rings carry a length prefix;
/// on a typed ring every message fills its slot (see
/// [`BytesProducer::attach_any`]). Returns the slot size and the prefix.
fn framing(seg: &Segment) -> Result<(usize, usize)> {
    let l = seg.layout();
    if !builder::carries_type(seg) {
        return Ok((check_bytes(seg)?, LEN_PREFIX));
    }
    builder::check_kind(seg, Kind::Mpmc)?;
    Ok((l.slot_size() as usize, 0))
}

/// A producer of variable-length byte messages (up to the slot size minus
/// a 4-byte length) on an MPMC ring created with any slot size and type id
/// 0 (what `shmring create --kind mpmc` makes). Used by `shmring send`.
pub struct BytesProducer {
    core: Core,
    slot_size: usize,
    /// Bytes of the length prefix: [`LEN_PREFIX`], or 0 on a typed ring
    /// (whole-slot messages, [`attach_any`](Self::attach_any)).
    prefix: usize,
}

impl BytesProducer {
    /// Takes a free producer role on a byte-slot MPMC ring.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        let slot_size = check_bytes(&seg)?;
        Self::with_framing(seg, slot_size, LEN_PREFIX)
    }

    /// Takes the role on a ring whose framing was checked.
    fn with_framing(seg: Arc<Segment>, slot_size: usize, prefix: usize) -> Result<Self> {
        Ok(BytesProducer {
            core: Core::attach(seg, true, &Settings::default())?,
            slot_size,
            prefix,
        })
    }

    /// Takes a free producer role on any MPMC ring: a byte-slot ring as
    /// [`attach`](Self::attach); on a typed ring each message is the bytes
    /// of one value, exactly the type's size (any bytes are a valid value
    /// of a ring's `Pod` type). For tools that move messages of a type
    /// they do not know at compile time (the Zenoh bridge).
    pub fn attach_any(seg: Arc<Segment>) -> Result<Self> {
        let (slot_size, prefix) = framing(&seg)?;
        Self::with_framing(seg, slot_size, prefix)
    }

    /// Longest message (on a typed ring, the only length).
    pub fn max_len(&self) -> usize {
        self.slot_size - self.prefix
    }

    /// Is `msg`'s length one this ring takes?
    fn check_len(&self, msg: &[u8]) -> std::result::Result<(), FramePushError> {
        check_message_len(msg.len(), self.max_len(), self.prefix == 0)
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// Sends one message, waiting at most `timeout` (`None`: no limit)
    /// while the ring is full.
    pub fn push_timeout(
        &mut self,
        msg: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<(), FramePushError> {
        self.check_len(msg)?;
        let (pos, _) = self
            .core
            .claim_write_blocking(1, timeout)
            .map_err(FramePushError::from)?;
        self.write_at(pos, msg);
        Ok(())
    }

    /// Writes `msg` (checked by `check_len`) into the claimed slot `pos`
    /// and publishes it.
    fn write_at(&mut self, pos: u64, msg: &[u8]) {
        let slot = self.core.ring.payload(pos);
        // SAFETY: the slot is claimed by us; prefix + msg.len() <=
        // slot_size bytes at the payload are in bounds (`check_len`);
        // unaligned writes.
        unsafe {
            if self.prefix == LEN_PREFIX {
                slot.cast::<[u8; LEN_PREFIX]>()
                    .write_unaligned((msg.len() as u32).to_le_bytes());
            }
            std::ptr::copy_nonoverlapping(msg.as_ptr(), slot.add(self.prefix), msg.len());
        }
        self.core.publish(pos, 1, false);
    }

    /// One poll of a waiting send (the async layer); `check_peer` checks
    /// the consumers' locks now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_push(
        &mut self,
        msg: &[u8],
        check_peer: bool,
    ) -> Poll<std::result::Result<(), FramePushError>> {
        if let Err(e) = self.check_len(msg) {
            return Poll::Ready(Err(e));
        }
        match self.core.poll_write_one(check_peer) {
            Poll::Ready(Ok(pos)) => {
                self.write_at(pos, msg);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The event a waiting send sleeps on, and the segment that holds it.
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

    /// Is some consumer attached and alive right now?
    pub fn is_consumer_alive(&self) -> bool {
        self.core.side.peer_alive_now()
    }

    /// Messages not yet taken (published or being written).
    pub fn len(&self) -> usize {
        self.core.ring.len().unwrap_or(0) as usize
    }

    /// Waits until consumers have claimed every message this producer
    /// sent, at most `timeout` (see [`super::Producer::flush`]).
    pub fn flush(&mut self, timeout: Duration) -> Result<()> {
        self.core.flush(timeout)
    }

    /// True when consumers have taken everything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for BytesProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BytesProducer")
            .field("ring", &self.core.side.segment().path())
            .field("slot_size", &self.slot_size)
            .finish_non_exhaustive()
    }
}

/// The consumer of [`BytesProducer`] messages. Used by `shmring recv`.
pub struct BytesConsumer {
    core: Core,
    slot_size: usize,
    /// As [`BytesProducer`]'s: [`LEN_PREFIX`], or 0 on a typed ring.
    prefix: usize,
}

impl BytesConsumer {
    /// Takes a free consumer role on a byte-slot MPMC ring.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        let slot_size = check_bytes(&seg)?;
        Self::with_framing(seg, slot_size, LEN_PREFIX)
    }

    /// Takes the role on a ring whose framing was checked.
    fn with_framing(seg: Arc<Segment>, slot_size: usize, prefix: usize) -> Result<Self> {
        Ok(BytesConsumer {
            core: Core::attach(seg, false, &Settings::default())?,
            slot_size,
            prefix,
        })
    }

    /// Takes a free consumer role on any MPMC ring: a byte-slot ring as
    /// [`attach`](Self::attach); on a typed ring each message is the bytes
    /// of one value (see [`BytesProducer::attach_any`]).
    pub fn attach_any(seg: Arc<Segment>) -> Result<Self> {
        let (slot_size, prefix) = framing(&seg)?;
        Self::with_framing(seg, slot_size, prefix)
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// Receives one message into `out` (replacing its contents), waiting
    /// at most `timeout` (`None`: no limit).
    pub fn pop_timeout(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), PopError> {
        let msg = self.read_chunk_timeout(timeout)?;
        out.clear();
        out.extend_from_slice(&msg);
        Ok(())
    }

    /// Claims the next message and lends it in place (zero-copy), waiting
    /// at most `timeout` (`None`: no limit). Dropping the chunk (or
    /// [`release`](BytesReadChunk::release)) consumes it;
    /// [`put_back`](BytesReadChunk::put_back) keeps it claimed for the
    /// next read. If this process dies holding it, the next holder of this
    /// consumer role gets it first (or, if none comes within
    /// [`super::REDELIVERY_GRACE`], a producer re-publishes it): what a
    /// consumer that writes messages elsewhere uses to release each only
    /// after it was written (at-least-once: one that was written when the
    /// process died comes again).
    pub fn read_chunk_timeout(
        &mut self,
        timeout: Option<Duration>,
    ) -> std::result::Result<BytesReadChunk<'_>, PopError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let (pos, _) = self.core.claim_read_blocking(1, left)?;
            if !self.released_skip(pos) {
                return self.lend(pos);
            }
        }
    }

    /// Releases the claimed position `pos` if it is a skipped slot (and
    /// says so).
    fn released_skip(&mut self, pos: u64) -> bool {
        let skip = self.core.ring.is_skip(pos);
        if skip {
            self.core.release(pos, 1);
        }
        skip
    }

    /// Lends the claimed message `pos` (not a skip); `Corrupted`
    /// (released) if its length is out of range.
    fn lend(&mut self, pos: u64) -> std::result::Result<BytesReadChunk<'_>, PopError> {
        if self.prefix == 0 {
            let len = self.slot_size;
            return Ok(BytesReadChunk {
                consumer: self,
                pos,
                len,
                release: true,
            });
        }
        let slot = self.core.ring.payload(pos);
        let mut len = [0u8; LEN_PREFIX];
        // SAFETY: the slot is claimed by us and published; LEN_PREFIX
        // bytes at the payload are in bounds (slot_size >= LEN_PREFIX
        // + 1, checked at attach).
        unsafe { std::ptr::copy_nonoverlapping(slot, len.as_mut_ptr(), LEN_PREFIX) };
        let len = u32::from_le_bytes(len) as usize;
        if len > self.max_len() {
            self.core.release(pos, 1);
            return Err(PopError::Corrupted(format!(
                "message length {len} exceeds the slot's {} bytes",
                self.max_len()
            )));
        }
        Ok(BytesReadChunk {
            consumer: self,
            pos,
            len,
            release: true,
        })
    }

    /// One poll of a waiting receive into `out` (the async layer);
    /// `check_peer` checks the producers' locks now.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn poll_pop_into(
        &mut self,
        out: &mut Vec<u8>,
        check_peer: bool,
    ) -> Poll<std::result::Result<(), PopError>> {
        loop {
            let pos = match self.core.poll_read_one(check_peer) {
                Poll::Ready(Ok(pos)) => pos,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if self.released_skip(pos) {
                continue;
            }
            return Poll::Ready(self.lend(pos).map(|msg| {
                out.clear();
                out.extend_from_slice(&msg);
            }));
        }
    }

    /// The event a waiting receive sleeps on, and the segment that holds it.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn wait_parts(&self) -> (crate::wait::Event<'_>, &Arc<Segment>) {
        self.core.wait_parts(true)
    }

    /// Is a message (or a skipped slot) ready to claim? Claims nothing.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn readable(&self) -> bool {
        self.core.readable()
    }

    /// Longest message (on a typed ring, the only length).
    pub fn max_len(&self) -> usize {
        self.slot_size - self.prefix
    }

    /// Is some producer attached and alive right now?
    pub fn is_producer_alive(&self) -> bool {
        self.core.side.peer_alive_now()
    }
}

impl std::fmt::Debug for BytesConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BytesConsumer")
            .field("ring", &self.core.side.segment().path())
            .field("slot_size", &self.slot_size)
            .finish_non_exhaustive()
    }
}

/// A message lent by [`BytesConsumer::read_chunk_timeout`], claimed by the
/// consumer until it is released (dropping the chunk) or put back.
pub struct BytesReadChunk<'a> {
    consumer: &'a mut BytesConsumer,
    pos: u64,
    /// Checked against the slot size when the chunk was made.
    len: usize,
    release: bool,
}

impl BytesReadChunk<'_> {
    /// Consumes the message (the same as dropping the chunk).
    pub fn release(self) {}

    /// Writes this consumer role's receipt for the message: four words of
    /// the caller's (what it is doing with it, e.g. where it writes it),
    /// kept in the ring with the claim. If this process dies before
    /// releasing the message, the next holder of the role gets it first,
    /// and [`receipt`](Self::receipt) returns the words. No system call.
    pub fn set_receipt(&mut self, words: [u64; 4]) {
        let core = &self.consumer.core;
        if let Some(r) = core.ring.receipt(core.side.role()) {
            r.write(self.pos, words);
        }
    }

    /// The receipt written for this message by a consumer that held it
    /// before (a dead predecessor in this role, or this consumer before a
    /// [`put_back`](Self::put_back)), if any.
    pub fn receipt(&self) -> Option<[u64; 4]> {
        let core = &self.consumer.core;
        let (at, words) = core.ring.receipt(core.side.role())?.read()?;
        (at == self.pos).then_some(words)
    }

    /// Keeps the message claimed and hands it out again on the next read
    /// of this consumer; if the consumer goes away first, the next holder
    /// of its role gets it (see [`BytesConsumer::read_chunk_timeout`]).
    pub fn put_back(mut self) {
        self.release = false;
        self.consumer.core.put_back(self.pos);
    }
}

impl std::ops::Deref for BytesReadChunk<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the slot is claimed by us and published, so no producer
        // writes it until we release it (which needs `self`); `len` was
        // checked to fit the slot after the prefix, in bounds.
        unsafe {
            std::slice::from_raw_parts(
                self.consumer
                    .core
                    .ring
                    .payload(self.pos)
                    .add(self.consumer.prefix),
                self.len,
            )
        }
    }
}

impl Drop for BytesReadChunk<'_> {
    fn drop(&mut self) {
        if self.release {
            self.consumer.core.release(self.pos, 1);
        }
    }
}

impl std::fmt::Debug for BytesReadChunk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BytesReadChunk")
            .field("position", &self.pos)
            .field("len", &self.len)
            .finish()
    }
}
