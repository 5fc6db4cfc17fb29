//! The shared parts of an MPMC ring as a raw view: slots, sequence
//! numbers, claim records, and publishing and releasing claimed slots.

#[cfg(not(loom))]
use super::REDELIVERY_GRACE;
use super::{POS, SKIP, STUCK_POLLS};
use crate::error::{Error, Result};
use crate::layout::{
    ClaimLine, DequeueLine, EnqueueLine, Kind, LINE, MPMC_CONTROL_SIZE, MpmcControl, Stats,
    WaitLine,
};
use crate::segment::Segment;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::wait::Event;

/// The shared parts of an MPMC ring as raw pointers into memory that
/// outlives this struct (the owner keeps the `Arc<Segment>`); over heap
/// memory in loom models.
pub(crate) struct RawMpmc {
    /// Enqueue, dequeue, wait and statistics lines; fields are reached by
    /// place projection, never through a reference to the whole struct.
    pub(super) control: *const MpmcControl,
    /// Slots: `capacity * stride` bytes, each a sequence number then the
    /// message at `payload`.
    pub(super) data: *mut u8,
    pub(super) capacity: u64,
    pub(super) stride: usize,
    pub(super) payload: usize,
    /// One claim line per role, producers first (right after `control`).
    pub(super) claims: *const ClaimLine,
    pub(super) producers: u32,
    pub(super) consumers: u32,
}

// SAFETY: the pointers refer to shared memory accessed through atomics, or
// (payloads) by the one side that claimed the slot; the owning handle keeps
// the mapping alive.
unsafe impl Send for RawMpmc {}

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Positions `pos .. pos + n` are ours.
    Got(u64, u64),
    /// Nothing to claim now (full for producers, empty for consumers).
    Nothing,
    /// A value that no legal interleaving produces.
    Corrupted(String),
}

/// What the consumers' fast path found (see
/// [`RawMpmc::claim_one_for_read`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FastRead {
    /// Position `pos` is ours (recorded and claimed).
    Got(u64),
    /// The slot at dequeue position `pos` is not published yet (its
    /// sequence number is exactly `pos`): empty, or a producer between
    /// claim and publish.
    Unpublished(u64),
    /// Anything else: the general path decides.
    Other,
}

/// A side's memory of the slot it found stuck, so that it checks the
/// claimants only after the slot stayed stuck for a while.
#[derive(Default)]
pub(crate) struct Stuck {
    pub(super) pos: u64,
    pub(super) polls: u32,
    /// When a producer first found `pos` stuck and worth a look (the
    /// redelivery grace runs from here).
    #[cfg(not(loom))]
    since: Option<std::time::Instant>,
}

impl Stuck {
    /// Counts one more poll stuck at `pos`; true when the claimants should
    /// be checked now.
    #[inline]
    pub(super) fn due(&mut self, pos: u64, now: bool) -> bool {
        if self.pos != pos {
            self.pos = pos;
            self.polls = 0;
            #[cfg(not(loom))]
            {
                self.since = None;
            }
        }
        self.polls += 1;
        if now || self.polls >= STUCK_POLLS {
            self.polls = 0;
            return true;
        }
        false
    }

    /// Has the slot at `pos` been stuck for [`REDELIVERY_GRACE`] since
    /// this side first asked (after `due` said it is worth a look)?
    pub(super) fn grace_over(&mut self, pos: u64) -> bool {
        #[cfg(not(loom))]
        {
            if self.pos != pos {
                return false;
            }
            let since = *self.since.get_or_insert_with(std::time::Instant::now);
            since.elapsed() >= REDELIVERY_GRACE
        }
        #[cfg(loom)]
        {
            self.pos == pos
        }
    }
}

impl RawMpmc {
    /// The view of a validated MPMC segment. Everything the accessors rely
    /// on is checked here, once, before any pointer is formed: the kind, a
    /// power-of-two capacity, the payload inside the stride, `capacity *
    /// stride` (checked arithmetic) inside the data area, and the control
    /// lines (with one claim line per role) and the data area inside the
    /// mapping and aligned.
    pub(crate) fn new(seg: &Segment) -> Result<RawMpmc> {
        let l = seg.layout();
        let corrupted = |what: &str| Error::corrupted(seg.path(), what.to_string());
        if l.kind() != Kind::Mpmc {
            return Err(corrupted("not an mpmc ring"));
        }
        let (capacity, stride) = (l.capacity(), l.slot_stride());
        let payload = crate::layout::mpmc_payload_offset(l.slot_align());
        if !capacity.is_power_of_two()
            || !stride.is_multiple_of(8)
            || payload + u64::from(l.slot_size()) > stride
        {
            return Err(corrupted("mpmc slot shape out of range"));
        }
        let need = capacity
            .checked_mul(stride)
            .filter(|&n| n <= l.data_size())
            .ok_or_else(|| corrupted("ring slots exceed the data area"))?;
        let roles = u64::from(l.roles());
        let control_len = MPMC_CONTROL_SIZE as u64 + roles * LINE as u64;
        let control = seg
            .region(l.control_offset(), control_len)
            .ok_or_else(|| corrupted("ring control lines outside the mapping"))?;
        let data = seg
            .region(l.data_offset(), need)
            .ok_or_else(|| corrupted("ring data area outside the mapping"))?;
        if !(control as usize).is_multiple_of(LINE) || !(data as usize).is_multiple_of(8) {
            return Err(corrupted("ring regions misaligned"));
        }
        let too_large = || corrupted("mpmc slot stride too large");
        Ok(RawMpmc {
            control: control.cast::<MpmcControl>(),
            data,
            capacity,
            stride: usize::try_from(stride).map_err(|_| too_large())?,
            payload: usize::try_from(payload).map_err(|_| too_large())?,
            // SAFETY: the control region spans MPMC_CONTROL_SIZE + roles *
            // LINE bytes (checked by `region` above), so the claim lines
            // start inside it.
            claims: unsafe { control.add(MPMC_CONTROL_SIZE) }.cast::<ClaimLine>(),
            producers: l.max_producers(),
            consumers: l.max_consumers(),
        })
    }

    /// A ring over caller-provided memory (loom models).
    ///
    /// # Safety
    /// Every pointer must be valid for the lifetime of the `RawMpmc`:
    /// `control` a valid `MpmcControl`, `data` for `capacity * stride`
    /// bytes of slots each starting with an `AtomicU64`, `claims` for
    /// `producers + consumers` lines; `capacity` a power of two.
    #[cfg(all(loom, test))]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn from_parts(
        control: *const MpmcControl,
        data: *mut u8,
        capacity: u64,
        stride: usize,
        payload: usize,
        claims: *const ClaimLine,
        producers: u32,
        consumers: u32,
    ) -> RawMpmc {
        RawMpmc {
            control,
            data,
            capacity,
            stride,
            payload,
            claims,
            producers,
            consumers,
        }
    }

    #[inline]
    pub(super) fn enqueue_line(&self) -> &EnqueueLine {
        // `new` checked MPMC_CONTROL_SIZE bytes inside the mapping, 128-byte
        // aligned (in loom models, the caller of `from_parts` guarantees it).
        // SAFETY: in bounds and aligned; atomics only, so peers may write it.
        unsafe { &*std::ptr::addr_of!((*self.control).enqueue) }
    }

    #[inline]
    pub(super) fn dequeue_line(&self) -> &DequeueLine {
        // SAFETY: as for `enqueue_line`.
        unsafe { &*std::ptr::addr_of!((*self.control).dequeue) }
    }

    #[inline]
    pub(super) fn wait_line(&self, which: usize) -> &WaitLine {
        // SAFETY: as for `enqueue_line`; `which` is bounds-checked by the
        // array projection.
        unsafe { &*std::ptr::addr_of!((*self.control).waits[which]) }
    }

    #[inline]
    pub(super) fn tail(&self) -> &AtomicU64 {
        &self.enqueue_line().tail
    }

    #[inline]
    pub(super) fn head(&self) -> &AtomicU64 {
        &self.dequeue_line().head
    }

    pub(super) fn stats(&self) -> &Stats {
        // SAFETY: as for `enqueue_line`.
        unsafe { &*std::ptr::addr_of!((*self.control).stats) }
    }

    /// The claim line of role `role` (`None` past the last role).
    #[inline]
    pub(super) fn claim_line(&self, role: u32) -> Option<&ClaimLine> {
        if role >= self.producers + self.consumers {
            return None;
        }
        // SAFETY: role < roles, and `new` checked that the control region
        // holds a claim line per role; atomics only.
        Some(unsafe { &*self.claims.add(role as usize) })
    }

    /// Positions count messages from 0 and fit in the 63 bits a sequence
    /// number holds; one this close to the top (2^63 messages would take
    /// centuries) was written by a hostile or broken peer. Checking it once
    /// per claim keeps every `pos + n` (n <= capacity) below 2^63, so no
    /// position arithmetic can overflow.
    #[inline]
    pub(super) fn check_position(&self, pos: u64, which: &str) -> std::result::Result<(), String> {
        if pos > POS - 2 * self.capacity {
            return Err(format!(
                "{which} position {pos:#x} is beyond any reachable position"
            ));
        }
        Ok(())
    }

    /// The sequence number of the slot of `pos`.
    #[inline]
    pub(super) fn seq(&self, pos: u64) -> &AtomicU64 {
        let index = (pos & (self.capacity - 1)) as usize;
        // `new` checked: capacity * stride bytes of data; stride and start
        // multiples of 8; each slot starts with its sequence number.
        // SAFETY: index < capacity, so in bounds and 8-aligned.
        unsafe { &*self.data.add(index * self.stride).cast::<AtomicU64>() }
    }

    /// The message bytes of the slot of `pos` (`slot_size` bytes, aligned
    /// for the message type).
    #[inline]
    pub(crate) fn payload(&self, pos: u64) -> *mut u8 {
        let index = (pos & (self.capacity - 1)) as usize;
        // SAFETY: index < capacity, capacity * stride bytes of data and
        // payload + slot_size <= stride (all checked in `new`).
        unsafe { self.data.add(index * self.stride + self.payload) }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Sleepers waiting for data (woken by producers).
    pub(crate) fn data_wait(&self) -> Event<'_> {
        Event {
            line: self.wait_line(0),
            waiters: &self.enqueue_line().data_waiters,
        }
    }

    /// Sleepers waiting for space (woken by consumers).
    pub(crate) fn space_wait(&self) -> Event<'_> {
        Event {
            line: self.wait_line(1),
            waiters: &self.dequeue_line().space_waiters,
        }
    }

    /// Records that role `me` is about to claim `n` positions from `pos`.
    #[inline]
    pub(super) fn record(&self, me: u32, pos: u64, n: u64) {
        if let Some(line) = self.claim_line(me) {
            // Relaxed: published by the release of the claiming CAS that
            // follows; a peer that saw the CAS's effect sees these.
            line.len.store(n, Ordering::Relaxed);
            line.pos.store(pos.wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// Clears role `me`'s claim record.
    #[inline]
    pub(crate) fn clear(&self, me: u32) {
        if let Some(line) = self.claim_line(me) {
            // Release: a peer that reads 0 (acquire) sees the sequence
            // numbers we stored before, so its CAS on a slot we published
            // fails instead of overwriting it.
            line.pos.store(0, Ordering::Release);
        }
    }

    /// Does a live role in `roles` claim position `pos`? `alive` checks a
    /// role's lock (a system call; made only for roles whose record covers
    /// `pos`).
    pub(super) fn claimed_by_live(
        &self,
        roles: std::ops::Range<u32>,
        pos: u64,
        alive: &dyn Fn(u32) -> bool,
    ) -> bool {
        roles.into_iter().any(|role| {
            let Some(line) = self.claim_line(role) else {
                return false;
            };
            // Acquire: pairs with the claimant's release CAS (its record is
            // visible once its claim is) and its release clear.
            let start = line.pos.load(Ordering::Acquire);
            let len = line.len.load(Ordering::Acquire);
            start != 0 && pos.wrapping_sub(start - 1) < len && alive(role)
        })
    }

    /// Is the claimed slot of `pos` a skipped (empty) one?
    #[inline]
    pub(crate) fn is_skip(&self, pos: u64) -> bool {
        // Relaxed: the claim's acquire load of this slot already ordered us
        // after its publish; the value has not changed since (we own it).
        self.seq(pos).load(Ordering::Relaxed) & SKIP != 0
    }

    /// Releases positions `pos .. pos + n` claimed by consumer `me` to the
    /// next lap's producers, then clears its claim.
    #[inline]
    pub(crate) fn release(&self, me: u32, pos: u64, n: u64) {
        self.free(pos, n);
        self.clear(me);
        self.space_wait().notify();
    }

    /// Frees positions `pos .. pos + n` for the next lap's producers,
    /// leaving the claim record as it is (it still covers others).
    #[inline]
    pub(crate) fn free(&self, pos: u64, n: u64) {
        for p in pos..pos + n {
            // Release: our payload reads happen-before the producer's
            // acquire load that sees the slot free.
            self.seq(p)
                .store(p.wrapping_add(self.capacity), Ordering::Release);
        }
    }

    /// The claim record role `me` holds now, if any, as (first position,
    /// count); `None` for an empty record or one no legal claim writes (a
    /// count of 0 or over the capacity, an unreachable position).
    pub(super) fn recorded_claim(&self, me: u32) -> Option<(u64, u64)> {
        let line = self.claim_line(me)?;
        // Acquire: pairs with the release of the claimant's CAS.
        let start = line.pos.load(Ordering::Acquire);
        let len = line.len.load(Ordering::Acquire);
        let pos = start.checked_sub(1)?;
        let valid =
            (1..=self.capacity).contains(&len) && self.check_position(pos, "claimed").is_ok();
        valid.then_some((pos, len))
    }

    /// Is a take-over of the claimed positions `pos .. pos + n` contested:
    /// does one of them still hold its claimed message while a live
    /// producer's record announces re-publishing it (at `p + capacity`)?
    /// See `Core::adopt`.
    pub(super) fn takeover_contested(&self, pos: u64, n: u64, alive: &dyn Fn(u32) -> bool) -> bool {
        (pos..pos + n).any(|p| {
            self.held(p) && self.claimed_by_live(0..self.producers, p + self.capacity, alive)
        })
    }

    /// Role `me`'s receipt, if `me` is a role.
    pub(crate) fn receipt(&self, me: u32) -> Option<&crate::layout::Receipt> {
        self.claim_line(me).map(|line| &line.receipt)
    }

    /// Is `pos` claimed by a consumer and still unreleased (published for
    /// it, skipped or not)?
    pub(super) fn held(&self, pos: u64) -> bool {
        // Acquire: if it is not ours any more, what replaced it is visible.
        self.seq(pos).load(Ordering::Acquire) & POS == pos.wrapping_add(1)
    }

    /// Is the slot at the head settled: published (or skipped) rather than
    /// still waiting for its producer? A hint for readiness (claims
    /// nothing; a consumer's claim decides).
    #[cfg(not(loom))]
    pub(crate) fn head_settled(&self) -> bool {
        // Acquire: pairs with the consumers' claiming CAS and the
        // producers' release publish.
        let h = self.head().load(Ordering::Acquire);
        if h > POS - 2 * self.capacity {
            return true; // out of range: the claim reports it
        }
        self.seq(h).load(Ordering::Acquire) != h
    }

    /// Is the slot at the tail free for this lap (its last consumer
    /// released it), so a producer's claim would find room? A hint for
    /// readiness (claims nothing; a producer's claim decides).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn tail_free(&self) -> bool {
        // Acquire: pairs with the producers' claiming CAS and the
        // consumers' release that freed the slot.
        let t = self.tail().load(Ordering::Acquire);
        if t > POS - 2 * self.capacity {
            return true; // out of range: the claim reports it
        }
        self.seq(t).load(Ordering::Acquire) == t
    }

    /// Messages published or being written (`tail - head`), or `None` if
    /// the indices are inconsistent.
    pub(crate) fn len(&self) -> Option<u64> {
        let h = self.head().load(Ordering::Acquire);
        let t = self.tail().load(Ordering::Acquire);
        let used = t.wrapping_sub(h);
        (used <= self.capacity).then_some(used)
    }

    /// (skipped, redelivered).
    pub(crate) fn counts(&self) -> (u64, u64) {
        let s = self.stats();
        (
            s.skipped.load(Ordering::Relaxed),
            s.redelivered.load(Ordering::Relaxed),
        )
    }
}
