//! The lock-free core of a broadcast ring over a raw region: slots with a
//! sequence word, the publisher's write, a subscriber's checked read, the
//! `block` mode's view of the subscribers, joining, and evicting.
//!
//! # Slots
//!
//! Slot `pos % capacity` holds message `pos`, as words: word 0 is the
//! sequence word, word 1 the message's length in bytes, the message starts
//! at word `payload`. The sequence word is `2 * pos + 1` while message
//! `pos` is being written and `2 * pos + 2` once it is complete (0: never
//! written), so a subscriber that wants message `p` polls the slot it will
//! read anyway: one cache line moves per small message, and nobody polls
//! the publisher's line.
//!
//! The payload is written and read with relaxed atomic word stores and
//! loads (a seqlock: Boehm, "Can seqlocks get along with programming
//! language memory models?", 2012): the publisher stores the odd sequence,
//! a release fence, the words, then the even sequence with release; a
//! reader loads the sequence with acquire, the words, an acquire fence, and
//! the sequence again. The copy is returned only if both loads saw `2p + 2`;
//! otherwise the slot was overwritten while it was read, and the copy
//! (never exposed) is discarded. No reference to the payload is ever formed,
//! so a concurrent overwrite is a detected race, not undefined behaviour.

use crate::error::{Error, Result};
use crate::layout::{
    BROADCAST_CONTROL_SIZE, BroadcastControl, Kind, LINE, PublisherLine, SpaceLine, SubscriberLine,
    WaitLine,
};
use crate::segment::Segment;
use crate::sync::atomic::{AtomicU64, Ordering, fence};
use crate::wait::Event;

/// Highest position a ring reaches (2^62 messages would take centuries);
/// a position read from the mapping beyond it was written by a broken or
/// hostile peer. Keeps `2 * pos + 2` and `pos + capacity` from overflowing.
pub(crate) const MAX_POS: u64 = 1 << 62;

/// Word of a slot holding its sequence.
const SEQ: usize = 0;
/// Word of a slot holding the message length.
const LEN: usize = 1;

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// The message, `len` bytes, is in the caller's buffer.
    Got(usize),
    /// Not published yet.
    Empty,
    /// Overwritten by a later lap (before or while it was read).
    Lapped,
    /// A complete slot whose length no publisher writes.
    Corrupted(String),
}

/// The shared parts of a broadcast ring as raw pointers into memory that
/// outlives this struct (the owning handle keeps the `Arc<Segment>`); over
/// heap memory in loom models.
pub(crate) struct RawBroadcast {
    /// Publisher, space and wait lines; fields reached by place projection.
    control: *const BroadcastControl,
    /// One line per role (role 0, the publisher's, unused).
    subs: *const SubscriberLine,
    /// `capacity * stride` words of slots.
    slots: *const AtomicU64,
    capacity: u64,
    /// Words per slot.
    stride: usize,
    /// Word where the message starts.
    payload: usize,
    /// Largest message, bytes; `payload + ceil(slot_size / 8) <= stride`.
    slot_size: usize,
    /// Roles: the publisher and the subscribers.
    roles: u32,
}

// SAFETY: the pointers refer to shared memory accessed only through
// atomics; the owning handle keeps the mapping alive.
unsafe impl Send for RawBroadcast {}

impl RawBroadcast {
    /// The view of a validated broadcast segment. Everything the accessors
    /// rely on is checked here, once, before any pointer is formed: the
    /// kind, a power-of-two capacity, whole-word slots with the message
    /// inside, the slots inside the data area, and the control lines (one
    /// subscriber line per role) and the data inside the mapping and
    /// aligned.
    pub(crate) fn new(seg: &Segment) -> Result<RawBroadcast> {
        let l = seg.layout();
        let corrupted = |what: &str| Error::corrupted(seg.path(), what.to_string());
        if l.kind() != Kind::Broadcast {
            return Err(corrupted("not a broadcast ring"));
        }
        let (capacity, stride) = (l.capacity(), l.slot_stride());
        let payload = crate::layout::broadcast_payload_offset(l.slot_align());
        let slot_size = u64::from(l.slot_size());
        if !capacity.is_power_of_two()
            || capacity > MAX_POS
            || !stride.is_multiple_of(8)
            || !payload.is_multiple_of(8)
            || payload + slot_size.next_multiple_of(8) > stride
        {
            return Err(corrupted("broadcast slot shape out of range"));
        }
        let need = capacity
            .checked_mul(stride)
            .filter(|&n| n <= l.data_size())
            .ok_or_else(|| corrupted("ring slots exceed the data area"))?;
        let roles = l.roles();
        let control_len = BROADCAST_CONTROL_SIZE as u64 + u64::from(roles) * LINE as u64;
        let control = seg
            .region(l.control_offset(), control_len)
            .ok_or_else(|| corrupted("ring control lines outside the mapping"))?;
        let data = seg
            .region(l.data_offset(), need)
            .ok_or_else(|| corrupted("ring data area outside the mapping"))?;
        if !(control as usize).is_multiple_of(LINE) || !(data as usize).is_multiple_of(8) {
            return Err(corrupted("ring regions misaligned"));
        }
        let words =
            |bytes: u64| usize::try_from(bytes / 8).map_err(|_| corrupted("slot too large"));
        Ok(RawBroadcast {
            control: control.cast::<BroadcastControl>(),
            // SAFETY: the control region spans BROADCAST_CONTROL_SIZE +
            // roles * LINE bytes (checked by `region` above), so the
            // subscriber lines start inside it.
            subs: unsafe { control.add(BROADCAST_CONTROL_SIZE) }.cast::<SubscriberLine>(),
            slots: data.cast::<AtomicU64>(),
            capacity,
            stride: words(stride)?,
            payload: words(payload)?,
            slot_size: slot_size as usize,
            roles,
        })
    }

    /// A ring over caller-provided memory (loom models).
    ///
    /// # Safety
    /// `control` must be a valid `BroadcastControl`, `subs` valid for
    /// `roles` lines, `slots` for `capacity * stride` atomics, with
    /// `payload + ceil(slot_size / 8) <= stride` and `capacity` a power of
    /// two, all for the lifetime of the `RawBroadcast`.
    #[cfg(all(loom, test))]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn from_parts(
        control: *const BroadcastControl,
        subs: *const SubscriberLine,
        slots: *const AtomicU64,
        capacity: u64,
        stride: usize,
        payload: usize,
        slot_size: usize,
        roles: u32,
    ) -> RawBroadcast {
        RawBroadcast {
            control,
            subs,
            slots,
            capacity,
            stride,
            payload,
            slot_size,
            roles,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Largest message in bytes.
    pub(crate) fn slot_size(&self) -> usize {
        self.slot_size
    }

    #[inline]
    pub(crate) fn publisher_line(&self) -> &PublisherLine {
        // `new` checked BROADCAST_CONTROL_SIZE bytes inside the mapping,
        // 128-byte aligned (in loom models, `from_parts`'s caller does).
        // SAFETY: in bounds and aligned; atomics only, so peers may write.
        unsafe { &*std::ptr::addr_of!((*self.control).publisher) }
    }

    #[inline]
    fn space_line(&self) -> &SpaceLine {
        // SAFETY: as for `publisher_line`.
        unsafe { &*std::ptr::addr_of!((*self.control).space) }
    }

    #[inline]
    fn wait_line(&self, which: usize) -> &WaitLine {
        // SAFETY: as for `publisher_line`; the array projection checks
        // `which`.
        unsafe { &*std::ptr::addr_of!((*self.control).waits[which]) }
    }

    /// Role `role`'s line (`None` past the last role).
    #[inline]
    pub(crate) fn sub_line(&self, role: u32) -> Option<&SubscriberLine> {
        if role >= self.roles {
            return None;
        }
        // SAFETY: role < roles, and `new` checked a line per role inside
        // the control region; atomics only.
        Some(unsafe { &*self.subs.add(role as usize) })
    }

    /// Word `i` (`i < stride`) of the slot of `pos`.
    #[inline]
    fn word(&self, pos: u64, i: usize) -> &AtomicU64 {
        debug_assert!(i < self.stride);
        let index = (pos & (self.capacity - 1)) as usize;
        // Every caller passes SEQ, LEN or a payload word below payload +
        // ceil(slot_size / 8), which `new` checked is <= stride.
        // SAFETY: index < capacity, i < stride: inside the checked words.
        unsafe { &*self.slots.add(index * self.stride + i) }
    }

    /// Sleepers waiting for data (woken by the publisher).
    pub(crate) fn data_wait(&self) -> Event<'_> {
        Event {
            line: self.wait_line(0),
            waiters: &self.publisher_line().data_waiters,
        }
    }

    /// The publisher waiting for space (woken by subscribers).
    pub(crate) fn space_wait(&self) -> Event<'_> {
        Event {
            line: self.wait_line(1),
            waiters: &self.space_line().space_waiters,
        }
    }

    /// Sequence number of the next message to be published, if in range.
    pub(crate) fn tail(&self) -> Option<u64> {
        // Acquire: pairs with the publisher's release store after a slot,
        // so the slots before `tail` are visible.
        let t = self.publisher_line().tail.load(Ordering::Acquire);
        (t <= MAX_POS).then_some(t)
    }

    /// Publishes message `n` (the publisher's next; space checked by the
    /// caller): `bytes` (at most `slot_size`) into its slot, then the
    /// sequence and the tail. Wakes sleeping subscribers, if any.
    #[inline]
    pub(crate) fn write(&self, n: u64, bytes: &[u8]) {
        debug_assert!(bytes.len() <= self.slot_size && n < MAX_POS);
        // The handles check lengths; this keeps every word in the slot even
        // if one did not.
        let bytes = &bytes[..bytes.len().min(self.slot_size)];
        let seq = self.word(n, SEQ);
        // Relaxed + release fence: a reader that sees any payload word
        // below sees the odd sequence (or later), so its second sequence
        // load fails (the seqlock writer's side).
        seq.store(2 * n + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.word(n, LEN)
            .store(bytes.len() as u64, Ordering::Relaxed);
        let mut chunks = bytes.chunks_exact(8);
        let mut i = self.payload;
        for c in &mut chunks {
            let w = u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
            self.word(n, i).store(w, Ordering::Relaxed);
            i += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.word(n, i)
                .store(u64::from_ne_bytes(last), Ordering::Relaxed);
        }
        // Release: a reader that sees the even sequence sees the words.
        seq.store(2 * n + 2, Ordering::Release);
        // Release: a subscriber that reads `tail` (to join or after a lap)
        // sees every slot before it complete.
        self.publisher_line().tail.store(n + 1, Ordering::Release);
        self.data_wait().notify();
    }

    /// Reads message `p` into `dst` (at least `slot_size` bytes) if its
    /// slot holds it, complete and unchanged while copied.
    #[inline]
    pub(crate) fn read(&self, p: u64, dst: &mut [u8]) -> Read {
        let seq = self.word(p, SEQ);
        let want = 2 * p + 2;
        // Acquire: pairs with the publisher's release store of `want`, so
        // the words below are at least that message's.
        let s1 = seq.load(Ordering::Acquire);
        if s1 != want {
            return if s1 < want { Read::Empty } else { Read::Lapped };
        }
        // Untrusted: bounded before it sizes the copy.
        let len = self.word(p, LEN).load(Ordering::Relaxed);
        let n = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(self.slot_size)
            .min(dst.len());
        let mut chunks = dst[..n].chunks_exact_mut(8);
        let mut i = self.payload;
        for c in &mut chunks {
            c.copy_from_slice(&self.word(p, i).load(Ordering::Relaxed).to_ne_bytes());
            i += 1;
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let w = self.word(p, i).load(Ordering::Relaxed).to_ne_bytes();
            rest.copy_from_slice(&w[..rest.len()]);
        }
        // Acquire fence: orders the word loads above before the re-check
        // (the seqlock reader's side).
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) != want {
            return Read::Lapped;
        }
        if len > self.slot_size as u64 || n < len as usize {
            return Read::Corrupted(format!(
                "message {p} is {len} bytes long; slots hold {}",
                self.slot_size
            ));
        }
        Read::Got(n)
    }

    /// Has the slot of `p` moved past "not yet written" (message `p` is
    /// there, or it was overwritten)? For readiness checks.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn is_published(&self, p: u64) -> bool {
        // Acquire: as in `read`.
        self.word(p, SEQ).load(Ordering::Acquire) >= 2 * p + 2
    }

    /// Where a subscriber lapped at `p` continues: the oldest message that
    /// may still be intact (a read checks it).
    pub(crate) fn resume_after_lap(&self, p: u64) -> std::result::Result<u64, String> {
        let t = self
            .tail()
            .ok_or_else(|| "the publisher's position is beyond any reachable one".to_string())?;
        // The lap means message p + capacity was being written, so the
        // tail was at least that when read (its store follows the slot's).
        // The tail we read may be older than the overwrite we saw (the odd
        // sequence store that announces it is relaxed), so move at least
        // one past `p`, which is gone; a later message found overwritten
        // too is counted by the next read.
        let _ = p
            .checked_add(1)
            .filter(|&q| q <= MAX_POS)
            .ok_or_else(|| format!("message {p} is beyond any reachable position"))?;
        Ok(t.saturating_sub(self.capacity).max(p + 1))
    }

    /// The lowest position among the subscribers `include` accepts and
    /// that are not evicted, each capped at `n` (a subscriber cannot be
    /// ahead of the publisher; one that says so is treated as caught up);
    /// `n` when there is none.
    pub(crate) fn min_position(&self, n: u64, include: &dyn Fn(u32) -> bool) -> u64 {
        let mut min = n;
        for role in 1..self.roles {
            let Some(line) = self.sub_line(role) else {
                break;
            };
            if !include(role) || self.is_evicted(line) {
                continue;
            }
            // Acquire: pairs with the subscriber's release store of its
            // position, so its reads of the slots below happen-before our
            // overwriting them.
            min = min.min(line.pos.load(Ordering::Acquire));
        }
        min
    }

    /// Is the subscriber of `line` evicted from its current join?
    #[inline]
    pub(crate) fn is_evicted(&self, line: &SubscriberLine) -> bool {
        // Acquire: pairs with the publisher's release store of `evicted`.
        let evicted = line.evicted.load(Ordering::Acquire);
        evicted != 0 && evicted == line.epoch.load(Ordering::Acquire)
    }

    /// `block` mode: how far the publisher at `n` may write (exclusive):
    /// the lowest live position plus the capacity.
    ///
    /// The join handshake: the publisher stores its new `floor`, issues a
    /// SeqCst fence, then reads every position again; a joiner stores its
    /// position, issues a SeqCst fence, then reads `floor` and moves up to
    /// it. The two fences are ordered one way or the other: if the
    /// publisher's comes first, the joiner's read of `floor` sees the new
    /// floor (it starts at or above it, which the limit protects); if the
    /// joiner's comes first, the publisher's second read sees the joiner's
    /// position (the limit counts it). Checked by a loom model.
    pub(crate) fn rescan(&self, n: u64, include: &dyn Fn(u32) -> bool) -> u64 {
        let first = self.min_position(n, include);
        // The floor never goes down: a joiner seen at a lower position is
        // still moving up to the floor it read (and is protected meanwhile,
        // since the limit counts its lower position). Relaxed: only the
        // publisher stores it.
        let floor = &self.publisher_line().floor;
        let raised = first.max(floor.load(Ordering::Relaxed).min(n));
        // Release: a joiner that starts at the floor sees the slots below
        // the tail (stored before).
        floor.store(raised, Ordering::Release);
        fence(Ordering::SeqCst);
        let second = self.min_position(n, include);
        first.min(second) + self.capacity
    }

    /// Takes a subscriber's new position in the `block` handshake: stores
    /// `p`, then moves up to the publisher's floor until the floor is not
    /// above it (see [`rescan`](Self::rescan)). Returns where it starts.
    pub(crate) fn join_block(&self, line: &SubscriberLine, mut p: u64) -> u64 {
        loop {
            // Relaxed + SeqCst fence: the joiner's half of the handshake.
            line.pos.store(p, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            // Acquire: pairs with the publisher's release store of `floor`.
            let floor = self.publisher_line().floor.load(Ordering::Acquire);
            if floor <= p || floor > MAX_POS {
                return p;
            }
            p = floor;
        }
    }

    /// The lowest message a `block` ring keeps for a joiner.
    pub(crate) fn floor(&self) -> u64 {
        // Acquire: a floor is stored after the slots below the tail.
        self.publisher_line()
            .floor
            .load(Ordering::Acquire)
            .min(MAX_POS)
    }

    /// A subscriber's new position after reading message `p - 1` (release:
    /// its reads happen-before a publisher that sees the position and
    /// overwrites the slot). `block` rings also wake the publisher if it
    /// sleeps.
    #[inline]
    pub(crate) fn advance(&self, line: &SubscriberLine, p: u64, block: bool) {
        line.pos.store(p, Ordering::Release);
        if block {
            self.space_wait().notify();
        }
    }

    /// Evicts the subscriber of `role` from its current join (if it is
    /// still the join `epoch` names). Counted for `stat` if `count` (a live
    /// subscriber evicted, not a dead one left behind).
    pub(crate) fn evict(&self, role: u32, epoch: u64, count: bool) {
        if let Some(line) = self.sub_line(role) {
            // Release: the subscriber that sees it (acquire) sees why.
            line.evicted.store(epoch, Ordering::Release);
            if count {
                self.space_line().evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Subscribers evicted so far.
    pub(crate) fn evictions(&self) -> u64 {
        self.space_line().evictions.load(Ordering::Relaxed)
    }
}
