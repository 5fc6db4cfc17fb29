//! Multi-producer multi-consumer ring of fixed-size typed slots, shared by
//! processes that may die at any instruction.
//!
//! ```no_run
//! use std::sync::Arc;
//! use shmring::mpmc::{self, Consumer, Producer};
//! use shmring::SegmentOptions;
//!
//! // any number of processes, up to the ring's role counts (64 each here)
//! let layout = mpmc::layout::<u64>(1024)?;
//! let seg = Arc::new(SegmentOptions::new().open_or_create("jobs", &layout, mpmc::type_id::<u64>())?);
//! let mut tx = Producer::<u64>::attach(seg.clone())?;
//! let mut rx = Consumer::<u64>::attach(seg)?;
//! tx.push(7).ok();
//! assert_eq!(rx.pop().ok(), Some(7));
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! # Protocol
//!
//! Dmitry Vyukov's bounded MPMC queue (as in crossbeam's `ArrayQueue`), over
//! absolute `u64` positions. Each slot starts with a sequence number `seq`:
//!
//! * `seq == pos`: free for the producer of position `pos`;
//! * `seq == pos + 1`: published, for the consumer of position `pos` (bit 63,
//!   [`SKIP`], set: published *empty*, to be dropped, see below);
//! * after a consumer copied it out: `seq = pos + capacity`, free for the
//!   next lap.
//!
//! Producers claim positions by a CAS on the enqueue position (`tail`),
//! consumers by a CAS on the dequeue position (`head`), each on its own
//! 128-byte line. A claimant then owns the slot until it stores the next
//! sequence number (release), so payloads are never touched by two sides at
//! once. A batch claims several consecutive free (or published) slots with a
//! single CAS.
//!
//! # Dying in the middle
//!
//! Every role has a *claim line* in the segment: before its CAS a side
//! records the positions it is about to claim there, and clears the record
//! once it has published (or released) them. The record and the role's OFD
//! lock decide what to do with a slot whose claimant vanished:
//!
//! * **A producer died between claiming and publishing.** A consumer that
//!   finds the slot at `head` unpublished although `tail` has moved past it
//!   waits a little ([`STUCK_POLLS`] polls, or one peer-check interval when
//!   blocking), then looks for a *live* producer whose claim covers the
//!   position. If none does, the claimant is dead (a live claimant keeps its
//!   record until it publishes, and a new holder of a dead role clears the
//!   stale record when it attaches), so the consumer marks the slot
//!   skipped with a CAS on its sequence number (a CAS, so that it can never
//!   overwrite a publish) and counts it in the statistics line. The half
//!   written message is lost: its producer never finished it.
//! * **A consumer died between claiming and releasing.** The message was
//!   claimed but never returned to the application (a pop copies the slot
//!   and releases it before returning), so it is **redelivered**: a
//!   producer that finds the slot still occupied a lap later, with `head`
//!   past it and no live consumer claiming it, claims the next enqueue
//!   position for it and re-publishes the old contents there (counted as
//!   redelivered). Nothing is lost and nothing is delivered twice to the
//!   application; the redelivered message arrives after newer ones.
//!
//! A live but slow claimant is never skipped nor redelivered: its record
//! stays and its lock is held.
//!
//! # Untrusted memory
//!
//! Slot addresses come from private positions masked by the capacity;
//! sequence numbers and indices read from the segment are classified, and a
//! value no legal interleaving produces ends in `Corrupted` (or, for a slot
//! that never becomes published, a skip), never an out-of-bounds access or
//! an endless loop: every retry loop is bounded by [`MAX_RETRIES`].

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::frames::ReserveError;
use crate::layout::{
    ClaimLine, DequeueLine, EnqueueLine, Kind, LINE, Layout, MPMC_CONTROL_SIZE, MpmcControl, Stats,
    WaitLine, derive_type_id,
};
use crate::role::Side;
use crate::segment::Segment;
use crate::spsc::{PopError, PushError, TryPopError, TryPushError};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::spin_hint;
use crate::wait::{self, Event, Poll, WaitCounters, WaitStrategy};

/// Bit 63 of a sequence number: the slot was published empty (its producer
/// died, or dropped an uncommitted [`WriteSlot`]); consumers drop it.
pub const SKIP: u64 = 1 << 63;
const POS: u64 = !SKIP;

/// Polls a stuck slot must stay stuck before its claimant's liveness is
/// checked (tens of microseconds of polling).
#[cfg(not(loom))]
pub const STUCK_POLLS: u32 = 4096;
/// Under loom: check at once (liveness is decided by the model).
#[cfg(loom)]
pub const STUCK_POLLS: u32 = 1;

/// Most attempts one operation makes before reporting `Full` or `Empty`
/// (only reachable under extreme contention or with a peer that keeps
/// rewriting the indices).
#[cfg(not(loom))]
pub const MAX_RETRIES: u32 = 1 << 16;
/// Under loom: a few (the caller's own loop retries).
#[cfg(loom)]
pub const MAX_RETRIES: u32 = 3;

/// The layout of an MPMC ring of `capacity` messages of type `T`, with
/// [`DEFAULT_MPMC_ROLES`](crate::layout::DEFAULT_MPMC_ROLES) producer and
/// consumer roles.
pub fn layout<T: Pod>(capacity: u64) -> Result<Layout> {
    let r = crate::layout::DEFAULT_MPMC_ROLES;
    layout_with_roles::<T>(capacity, r, r)
}

/// The layout of an MPMC ring with chosen numbers of producer and consumer
/// roles (each 1 to [`MAX_ROLES`](crate::layout::MAX_ROLES)).
pub fn layout_with_roles<T: Pod>(capacity: u64, producers: u32, consumers: u32) -> Result<Layout> {
    let size = u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX);
    if size == 0 {
        return Err(Error::InvalidConfig {
            what: "zero-sized message types carry nothing through shared memory".into(),
        });
    }
    Layout::with_roles(
        Kind::Mpmc,
        capacity,
        size,
        std::mem::align_of::<T>() as u32,
        producers,
        consumers,
    )
}

/// The type id recorded for `T` unless the caller supplies one.
pub fn type_id<T: Pod>() -> u64 {
    derive_type_id::<T>()
}

/// The shared parts of an MPMC ring as raw pointers into memory that
/// outlives this struct (the owner keeps the `Arc<Segment>`); over heap
/// memory in loom models.
pub(crate) struct RawMpmc {
    /// Enqueue, dequeue, wait and statistics lines; fields are reached by
    /// place projection, never through a reference to the whole struct.
    control: *const MpmcControl,
    /// Slots: `capacity * stride` bytes, each a sequence number then the
    /// message at `payload`.
    data: *mut u8,
    capacity: u64,
    stride: usize,
    payload: usize,
    /// One claim line per role, producers first (right after `control`).
    claims: *const ClaimLine,
    producers: u32,
    consumers: u32,
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

/// A side's memory of the slot it found stuck, so that it checks the
/// claimants only after the slot stayed stuck for a while.
#[derive(Default)]
pub(crate) struct Stuck {
    pos: u64,
    polls: u32,
}

impl Stuck {
    /// Counts one more poll stuck at `pos`; true when the claimants should
    /// be checked now.
    fn due(&mut self, pos: u64, now: bool) -> bool {
        if self.pos != pos {
            self.pos = pos;
            self.polls = 0;
        }
        self.polls += 1;
        if now || self.polls >= STUCK_POLLS {
            self.polls = 0;
            return true;
        }
        false
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
    #[cfg(loom)]
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
    fn enqueue_line(&self) -> &EnqueueLine {
        // SAFETY: `control` points at MPMC_CONTROL_SIZE bytes inside the
        // mapping, 128-byte aligned (checked in `new`; in loom models the
        // caller of `from_parts` guarantees it). The line holds only
        // atomics, so a shared reference is sound while peers write it.
        unsafe { &*std::ptr::addr_of!((*self.control).enqueue) }
    }

    #[inline]
    fn dequeue_line(&self) -> &DequeueLine {
        // SAFETY: as for `enqueue_line`.
        unsafe { &*std::ptr::addr_of!((*self.control).dequeue) }
    }

    #[inline]
    fn wait_line(&self, which: usize) -> &WaitLine {
        // SAFETY: as for `enqueue_line`; `which` is bounds-checked by the
        // array projection.
        unsafe { &*std::ptr::addr_of!((*self.control).waits[which]) }
    }

    #[inline]
    fn tail(&self) -> &AtomicU64 {
        &self.enqueue_line().tail
    }

    #[inline]
    fn head(&self) -> &AtomicU64 {
        &self.dequeue_line().head
    }

    fn stats(&self) -> &Stats {
        // SAFETY: as for `enqueue_line`.
        unsafe { &*std::ptr::addr_of!((*self.control).stats) }
    }

    /// The claim line of role `role` (`None` past the last role).
    fn claim_line(&self, role: u32) -> Option<&ClaimLine> {
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
    fn check_position(&self, pos: u64, which: &str) -> std::result::Result<(), String> {
        if pos > POS - 2 * self.capacity {
            return Err(format!(
                "{which} position {pos:#x} is beyond any reachable position"
            ));
        }
        Ok(())
    }

    /// The sequence number of the slot of `pos`.
    #[inline]
    fn seq(&self, pos: u64) -> &AtomicU64 {
        let index = (pos & (self.capacity - 1)) as usize;
        // SAFETY: index < capacity and the data area holds capacity *
        // stride bytes; each slot starts with its 8-aligned sequence number
        // (stride and the data area's start are multiples of 8): all checked
        // in `new`.
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
    fn record(&self, me: u32, pos: u64, n: u64) {
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
    fn claimed_by_live(
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

    /// Tries to claim up to `want` free slots for producer role `me`.
    /// `scan_now`: check a stuck slot's consumer now, not after
    /// [`STUCK_POLLS`].
    pub(crate) fn claim_for_write(
        &self,
        me: u32,
        want: u64,
        stuck: &mut Stuck,
        scan_now: bool,
        alive: &dyn Fn(u32) -> bool,
    ) -> Claim {
        let cap = self.capacity;
        let want = want.clamp(1, cap);
        let mut recorded = false;
        let outcome = 'retry: {
            for _ in 0..MAX_RETRIES {
                let t = self.tail().load(Ordering::Relaxed);
                if let Err(w) = self.check_position(t, "enqueue") {
                    break 'retry Claim::Corrupted(w);
                }
                // Acquire: pairs with the release that freed the slot, so
                // the previous consumer's reads happen-before our writes.
                let s = self.seq(t).load(Ordering::Acquire);
                let diff = (s & POS).wrapping_sub(t) as i64;
                if diff == 0 {
                    let mut n = 1;
                    while n < want && self.seq(t + n).load(Ordering::Acquire) & POS == t + n {
                        n += 1;
                    }
                    self.record(me, t, n);
                    recorded = true;
                    // SeqCst on success: releases our record and orders the
                    // claim in the single order of all claims; on failure
                    // Relaxed (we reload everything).
                    if self
                        .tail()
                        .compare_exchange_weak(t, t + n, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Claim::Got(t, n);
                    }
                    spin_hint();
                    continue;
                }
                if diff > 0 {
                    // The slot is ahead of `t`: someone claimed `t` since we
                    // read the tail. If the tail did not move, the slot lies.
                    if self.tail().load(Ordering::SeqCst) == t {
                        break 'retry Claim::Corrupted(format!(
                            "slot sequence {s:#x} is ahead of the enqueue position {t}"
                        ));
                    }
                    spin_hint();
                    continue;
                }
                // The slot still holds position t - cap's message: full,
                // unless the consumer that took it died before releasing.
                let h = self.head().load(Ordering::Acquire);
                let used = t.wrapping_sub(h);
                if used > cap {
                    if self.tail().load(Ordering::SeqCst) != t {
                        spin_hint();
                        continue;
                    }
                    break 'retry Claim::Corrupted(format!(
                        "enqueue position {t} and dequeue position {h} are {used} apart, more than the capacity {cap}"
                    ));
                }
                let prev = t.wrapping_sub(cap);
                if used == cap || s & POS != prev.wrapping_add(1) || !stuck.due(t, scan_now) {
                    break 'retry Claim::Nothing;
                }
                if self.claimed_by_live(
                    self.producers..self.producers + self.consumers,
                    prev,
                    alive,
                ) {
                    break 'retry Claim::Nothing;
                }
                // Nobody alive holds position `prev`: put its message back,
                // at position t.
                self.record(me, t, 1);
                recorded = true;
                if self
                    .tail()
                    .compare_exchange(t, t + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
                {
                    spin_hint();
                    continue;
                }
                // AcqRel: acquire the old contents, release them as the
                // message of position t.
                match self.seq(t).compare_exchange(
                    s,
                    (t + 1) | (s & SKIP),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        if s & SKIP == 0 {
                            self.stats().redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        self.clear(me);
                        recorded = false;
                        self.data_wait().notify();
                    }
                    // Released after all (a slow consumer): position t is
                    // ours and free.
                    Err(now) if now == t => return Claim::Got(t, 1),
                    Err(now) => {
                        break 'retry Claim::Corrupted(format!(
                            "slot sequence {now:#x} changed under a claimed position {t}"
                        ));
                    }
                }
            }
            Claim::Nothing
        };
        if recorded {
            self.clear(me);
        }
        outcome
    }

    /// Publishes positions `pos .. pos + n` claimed by producer `me` (empty,
    /// to be skipped, if `skip`), then clears its claim.
    #[inline]
    pub(crate) fn publish(&self, me: u32, pos: u64, n: u64, skip: bool) {
        let flag = if skip { SKIP } else { 0 };
        for p in pos..pos + n {
            // Release: our payload writes happen-before the consumer's
            // acquire load that sees the slot published.
            self.seq(p).store((p + 1) | flag, Ordering::Release);
        }
        if skip {
            self.stats().skipped.fetch_add(n, Ordering::Relaxed);
        }
        self.clear(me);
        self.data_wait().notify();
    }

    /// Tries to claim up to `want` published slots for consumer role `me`.
    /// `scan_now`: check a stuck slot's producer now, not after
    /// [`STUCK_POLLS`].
    pub(crate) fn claim_for_read(
        &self,
        me: u32,
        want: u64,
        stuck: &mut Stuck,
        scan_now: bool,
        alive: &dyn Fn(u32) -> bool,
    ) -> Claim {
        let cap = self.capacity;
        let want = want.clamp(1, cap);
        let mut recorded = false;
        let outcome = 'retry: {
            for _ in 0..MAX_RETRIES {
                let h = self.head().load(Ordering::Relaxed);
                if let Err(w) = self.check_position(h, "dequeue") {
                    break 'retry Claim::Corrupted(w);
                }
                // Acquire: pairs with the producer's release publish.
                let s = self.seq(h).load(Ordering::Acquire);
                let diff = (s & POS).wrapping_sub(h + 1) as i64;
                if diff == 0 {
                    let mut n = 1;
                    while n < want && self.seq(h + n).load(Ordering::Acquire) & POS == h + n + 1 {
                        n += 1;
                    }
                    self.record(me, h, n);
                    recorded = true;
                    // SeqCst on success, as for producers; Relaxed on
                    // failure (we reload everything).
                    if self
                        .head()
                        .compare_exchange_weak(h, h + n, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Claim::Got(h, n);
                    }
                    spin_hint();
                    continue;
                }
                if diff > 0 {
                    if self.head().load(Ordering::SeqCst) == h {
                        break 'retry Claim::Corrupted(format!(
                            "slot sequence {s:#x} is ahead of the dequeue position {h}"
                        ));
                    }
                    spin_hint();
                    continue;
                }
                // Not published. Acquire: if a producer's claim moved the
                // tail past h, its claim record is visible to us now.
                let t = self.tail().load(Ordering::Acquire);
                let used = t.wrapping_sub(h);
                if used > cap {
                    if self.head().load(Ordering::SeqCst) != h {
                        spin_hint();
                        continue;
                    }
                    break 'retry Claim::Corrupted(format!(
                        "enqueue position {t} and dequeue position {h} are {used} apart, more than the capacity {cap}"
                    ));
                }
                if used == 0 || !stuck.due(h, scan_now) {
                    break 'retry Claim::Nothing;
                }
                if self.claimed_by_live(0..self.producers, h, alive) {
                    break 'retry Claim::Nothing;
                }
                // Claimed, unpublished, and no live producer claims it: its
                // producer died mid-write. Mark it published-empty; the CAS
                // fails if it was published meanwhile.
                if self
                    .seq(h)
                    .compare_exchange(s, (h + 1) | SKIP, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.stats().skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Claim::Nothing
        };
        if recorded {
            self.clear(me);
        }
        outcome
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
        for p in pos..pos + n {
            // Release: our payload reads happen-before the producer's
            // acquire load that sees the slot free.
            self.seq(p)
                .store(p.wrapping_add(self.capacity), Ordering::Release);
        }
        self.clear(me);
        self.space_wait().notify();
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

/// Writes the initial sequence numbers (slot `i` free for position `i`) of
/// a freshly created MPMC ring; the creator calls it before marking the
/// header ready.
pub(crate) fn initialize(seg: &Segment) -> Result<()> {
    let ring = RawMpmc::new(seg)?;
    for pos in 0..ring.capacity {
        // Relaxed: published by the creator's release store of READY.
        ring.seq(pos).store(pos, Ordering::Relaxed);
    }
    Ok(())
}

fn check_type(seg: &Segment, size: u32, align: u32, type_id: u64, name: &str) -> Result<()> {
    let l = seg.layout();
    let mismatch = |what: String| {
        Err(Error::LayoutMismatch {
            path: seg.path().to_path_buf(),
            what,
        })
    };
    if l.kind != Kind::Mpmc {
        return mismatch(format!("the ring holds {}, not mpmc slots", l.kind));
    }
    if l.slot_size != size || l.slot_align != align {
        return mismatch(format!(
            "the ring's slots are {} bytes aligned to {}, but {name} is {size} bytes aligned to {align}",
            l.slot_size, l.slot_align
        ));
    }
    let found = seg.descriptor().type_id;
    if found != type_id {
        return mismatch(format!(
            "the ring's type id is {found:#x}, but {name} has type id {type_id:#x}"
        ));
    }
    Ok(())
}

/// One side of an MPMC ring, whatever it carries: its role, its view of
/// the ring and how it waits.
struct Core {
    ring: RawMpmc,
    side: Side,
    stuck: Stuck,
    persistent: bool,
    strategy: WaitStrategy,
}

impl Core {
    fn attach(seg: Arc<Segment>, producer: bool) -> Result<Core> {
        let ring = RawMpmc::new(&seg)?;
        let persistent = seg.is_persistent();
        let (p, c) = (ring.producers, ring.consumers);
        let side = if producer {
            Side::attach_any(seg, 0..p, p..p + c, "producer")?
        } else {
            Side::attach_any(seg, p..p + c, 0..p, "consumer")?
        };
        // A predecessor in this role died (or left) with a claim recorded:
        // we hold its lock now, so it is gone; clearing lets peers recover
        // its slot.
        ring.clear(side.role());
        Ok(Core {
            ring,
            side,
            stuck: Stuck::default(),
            persistent,
            strategy: WaitStrategy::default(),
        })
    }

    fn claim_write(
        &mut self,
        want: u64,
        scan_now: bool,
    ) -> std::result::Result<(u64, u64), TryPushError<()>> {
        let Core {
            ring,
            side,
            stuck,
            persistent,
            ..
        } = self;
        claim_write(ring, side, stuck, *persistent, want, scan_now)
    }

    fn claim_read(
        &mut self,
        want: u64,
        scan_now: bool,
    ) -> std::result::Result<(u64, u64), TryPopError> {
        let Core {
            ring, side, stuck, ..
        } = self;
        claim_read(ring, side, stuck, want, scan_now)
    }

    /// Claims up to `want` slots for writing, waiting while full.
    fn claim_write_blocking(
        &mut self,
        want: u64,
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, u64), PushError<()>> {
        let Core {
            ring,
            side,
            stuck,
            persistent,
            strategy,
        } = self;
        let persistent = *persistent;
        let outcome =
            wait::block_on(
                ring.space_wait(),
                *strategy,
                timeout,
                |check_peer| match claim_write(ring, side, stuck, persistent, want, check_peer) {
                    Ok(got) => Poll::Ready(Ok(got)),
                    Err(TryPushError::Full(())) => {
                        if check_peer && !persistent && side.peer_gone_now() {
                            return Poll::Ready(Err(PushError::Disconnected(())));
                        }
                        Poll::Pending
                    }
                    Err(TryPushError::Disconnected(())) => {
                        Poll::Ready(Err(PushError::Disconnected(())))
                    }
                    Err(TryPushError::Corrupted((), w)) => {
                        Poll::Ready(Err(PushError::Corrupted((), w)))
                    }
                },
            );
        outcome.unwrap_or(Err(PushError::Timeout(())))
    }

    /// Claims up to `want` published slots, waiting while empty.
    fn claim_read_blocking(
        &mut self,
        want: u64,
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, u64), PopError> {
        let Core {
            ring,
            side,
            stuck,
            strategy,
            ..
        } = self;
        let outcome = wait::block_on(ring.data_wait(), *strategy, timeout, |check_peer| {
            let mut result = claim_read(ring, side, stuck, want, check_peer);
            if check_peer && result == Err(TryPopError::Empty) && side.peer_gone_now() {
                result = last_read(ring, side, stuck, want);
            }
            match result {
                Ok(got) => Poll::Ready(Ok(got)),
                Err(TryPopError::Empty) => Poll::Pending,
                Err(TryPopError::Disconnected) => Poll::Ready(Err(PopError::Disconnected)),
                Err(TryPopError::Corrupted(w)) => Poll::Ready(Err(PopError::Corrupted(w))),
            }
        });
        outcome.unwrap_or(Err(PopError::Timeout))
    }

    fn publish(&mut self, pos: u64, n: u64, skip: bool) {
        self.ring.publish(self.side.role(), pos, n, skip);
    }

    fn release(&mut self, pos: u64, n: u64) {
        self.ring.release(self.side.role(), pos, n);
    }

    fn stats(&self) -> RingStats {
        let (skipped, redelivered) = self.ring.counts();
        let (data, space) = (
            self.ring.data_wait().counters(),
            self.ring.space_wait().counters(),
        );
        RingStats {
            len: self.ring.len(),
            enqueued: self.ring.tail().load(Ordering::Acquire),
            dequeued: self.ring.head().load(Ordering::Acquire),
            skipped,
            redelivered,
            wait_data: data,
            wait_space: space,
        }
    }
}

/// One non-blocking claim for writing, on a producer's parts.
fn claim_write(
    ring: &RawMpmc,
    side: &mut Side,
    stuck: &mut Stuck,
    persistent: bool,
    want: u64,
    scan_now: bool,
) -> std::result::Result<(u64, u64), TryPushError<()>> {
    let seg = side.segment();
    let claim = ring.claim_for_write(side.role(), want, stuck, scan_now, &|r| seg.role_alive(r));
    match claim {
        Claim::Got(pos, n) => {
            side.active();
            Ok((pos, n))
        }
        Claim::Nothing => Err(crate::spsc::full_error(side, persistent, ())),
        Claim::Corrupted(w) => Err(TryPushError::Corrupted((), w)),
    }
}

/// One non-blocking claim for reading, on a consumer's parts: `Empty`, or
/// `Disconnected` once every producer is gone and the ring is drained.
fn claim_read(
    ring: &RawMpmc,
    side: &mut Side,
    stuck: &mut Stuck,
    want: u64,
    scan_now: bool,
) -> std::result::Result<(u64, u64), TryPopError> {
    let seg = side.segment();
    let claim = ring.claim_for_read(side.role(), want, stuck, scan_now, &|r| seg.role_alive(r));
    match claim {
        Claim::Got(pos, n) => {
            side.active();
            Ok((pos, n))
        }
        Claim::Corrupted(w) => Err(TryPopError::Corrupted(w)),
        Claim::Nothing if side.peer_gone() => last_read(ring, side, stuck, want),
        Claim::Nothing => Err(TryPopError::Empty),
    }
}

/// Every producer is gone: one more look, checking a stuck slot's claimant
/// now, decides between a last message and `Disconnected`.
fn last_read(
    ring: &RawMpmc,
    side: &mut Side,
    stuck: &mut Stuck,
    want: u64,
) -> std::result::Result<(u64, u64), TryPopError> {
    let seg = side.segment();
    match ring.claim_for_read(side.role(), want, stuck, true, &|r| seg.role_alive(r)) {
        Claim::Got(pos, n) => Ok((pos, n)),
        Claim::Corrupted(w) => Err(TryPopError::Corrupted(w)),
        Claim::Nothing => match ring.len() {
            // A dead producer's slot was just marked skipped: the next call
            // takes it.
            Some(n) if n > 0 => Err(TryPopError::Empty),
            _ => Err(TryPopError::Disconnected),
        },
    }
}

/// A snapshot of an MPMC ring's shared counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingStats {
    /// Messages published or being written (`None`: indices inconsistent).
    pub len: Option<u64>,
    /// Slots skipped because their producer died before publishing them
    /// (or dropped a [`WriteSlot`] without committing it).
    pub skipped: u64,
    /// Messages re-published because their consumer died before releasing.
    pub redelivered: u64,
    /// Positions claimed by producers since creation (messages, skipped
    /// slots and redeliveries).
    pub enqueued: u64,
    /// Positions claimed by consumers since creation.
    pub dequeued: u64,
    /// The data direction's wait counters.
    pub wait_data: WaitCounters,
    /// The space direction's wait counters.
    pub wait_space: WaitCounters,
}

/// A producing handle on an MPMC ring of `T`. Each holds one of the ring's
/// producer roles (an OFD lock) for its lifetime.
pub struct Producer<T: Pod> {
    core: Core,
    _marker: PhantomData<T>,
}

impl<T: Pod> Producer<T> {
    /// Takes a free producer role on an MPMC ring of `T` (type id derived
    /// from `T`). `RoleTaken` when all are in use.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        Self::attach_with_type_id(seg, type_id::<T>())
    }

    /// Takes a free producer role, checking an explicit type id.
    pub fn attach_with_type_id(seg: Arc<Segment>, type_id: u64) -> Result<Self> {
        check_type(
            &seg,
            std::mem::size_of::<T>() as u32,
            std::mem::align_of::<T>() as u32,
            type_id,
            std::any::type_name::<T>(),
        )?;
        Ok(Producer {
            core: Core::attach(seg, true)?,
            _marker: PhantomData,
        })
    }

    /// The segment.
    pub fn segment(&self) -> &Arc<Segment> {
        self.core.side.segment()
    }

    /// The producer role this handle holds (0-based).
    pub fn role(&self) -> u32 {
        self.core.side.role()
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    fn write(&mut self, pos: u64, value: T) {
        // SAFETY: position `pos` is claimed by us (its slot is ours until we
        // publish it); the payload is in bounds and aligned for T (checked
        // at attach: the ring was made for T's size and alignment).
        unsafe { self.core.ring.payload(pos).cast::<T>().write(value) };
    }

    /// Pushes one message, or gives it back if the ring is full.
    #[inline]
    pub fn try_push(&mut self, value: T) -> std::result::Result<(), TryPushError<T>> {
        match self.core.claim_write(1, false) {
            Ok((pos, _)) => {
                self.write(pos, value);
                self.core.publish(pos, 1, false);
                Ok(())
            }
            Err(TryPushError::Full(())) => Err(TryPushError::Full(value)),
            Err(TryPushError::Disconnected(())) => Err(TryPushError::Disconnected(value)),
            Err(TryPushError::Corrupted((), w)) => Err(TryPushError::Corrupted(value, w)),
        }
    }

    /// Pushes one message, waiting while the ring is full.
    pub fn push(&mut self, value: T) -> std::result::Result<(), PushError<T>> {
        self.push_timeout(value, None)
    }

    /// Pushes one message, waiting at most `timeout` (`None`: no limit).
    /// `Disconnected` once every consumer of a non-persistent ring is gone
    /// and the ring is full.
    pub fn push_timeout(
        &mut self,
        value: T,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), PushError<T>> {
        match self.core.claim_write_blocking(1, timeout) {
            Ok((pos, _)) => {
                self.write(pos, value);
                self.core.publish(pos, 1, false);
                Ok(())
            }
            Err(PushError::Timeout(())) => Err(PushError::Timeout(value)),
            Err(PushError::Disconnected(())) => Err(PushError::Disconnected(value)),
            Err(PushError::Corrupted((), w)) => Err(PushError::Corrupted(value, w)),
        }
    }

    /// Pushes as many of `values` as there are free consecutive slots, with
    /// one claim; returns how many. `Full` if none.
    pub fn push_slice(&mut self, values: &[T]) -> std::result::Result<usize, TryPushError<()>> {
        if values.is_empty() {
            return Ok(0);
        }
        let (pos, n) = self.core.claim_write(values.len() as u64, false)?;
        for (i, v) in values.iter().take(n as usize).enumerate() {
            self.write(pos + i as u64, *v);
        }
        self.core.publish(pos, n, false);
        Ok(n as usize)
    }

    /// Claims one slot to fill in place; nothing is visible to consumers
    /// until [`WriteSlot::commit`]. Dropping the grant uncommitted
    /// publishes the slot as skipped (consumers never see it). Consumers
    /// wait for a claimed slot, so do not hold one for long.
    pub fn write_slot(&mut self) -> std::result::Result<WriteSlot<'_, T>, TryPushError<()>> {
        let (pos, _) = self.core.claim_write(1, false)?;
        Ok(WriteSlot {
            producer: self,
            pos,
            done: false,
        })
    }

    /// Capacity in slots.
    pub fn capacity(&self) -> u64 {
        self.core.ring.capacity()
    }

    /// Is some consumer attached and alive right now? (System calls.)
    pub fn is_consumer_alive(&self) -> bool {
        self.core.side.peer_alive_now()
    }

    /// The ring's shared counters.
    pub fn stats(&self) -> RingStats {
        self.core.stats()
    }
}

/// A claimed slot lent by [`Producer::write_slot`].
pub struct WriteSlot<'a, T: Pod> {
    producer: &'a mut Producer<T>,
    pos: u64,
    done: bool,
}

impl<T: Pod> WriteSlot<'_, T> {
    /// The slot's message. It holds stale bytes (a valid `T`: `T` is Pod)
    /// until written.
    pub fn value_mut(&mut self) -> &mut T {
        // SAFETY: the slot is claimed by us: no consumer reads it and no
        // producer writes it until we publish; in bounds and aligned for T.
        unsafe { &mut *self.producer.core.ring.payload(self.pos).cast::<T>() }
    }

    /// Publishes the slot.
    pub fn commit(mut self) {
        self.done = true;
        self.producer.core.publish(self.pos, 1, false);
    }
}

impl<T: Pod> Drop for WriteSlot<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.producer.core.publish(self.pos, 1, true);
        }
    }
}

/// A consuming handle on an MPMC ring of `T`. Each holds one of the ring's
/// consumer roles for its lifetime.
pub struct Consumer<T: Pod> {
    core: Core,
    _marker: PhantomData<T>,
}

impl<T: Pod> Consumer<T> {
    /// Takes a free consumer role on an MPMC ring of `T`.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        Self::attach_with_type_id(seg, type_id::<T>())
    }

    /// Takes a free consumer role, checking an explicit type id.
    pub fn attach_with_type_id(seg: Arc<Segment>, type_id: u64) -> Result<Self> {
        check_type(
            &seg,
            std::mem::size_of::<T>() as u32,
            std::mem::align_of::<T>() as u32,
            type_id,
            std::any::type_name::<T>(),
        )?;
        Ok(Consumer {
            core: Core::attach(seg, false)?,
            _marker: PhantomData,
        })
    }

    /// The segment.
    pub fn segment(&self) -> &Arc<Segment> {
        self.core.side.segment()
    }

    /// The consumer role this handle holds (0-based among consumers).
    pub fn role(&self) -> u32 {
        self.core.side.role() - self.core.ring.producers
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// Copies out the claimed messages `pos .. pos + n` that are not skips,
    /// releases them, and returns how many were copied.
    fn take(&mut self, pos: u64, n: u64, out: &mut [T]) -> usize {
        let mut got = 0;
        for p in pos..pos + n {
            if self.core.ring.is_skip(p) {
                continue;
            }
            // SAFETY: position p is claimed by us and published (checked by
            // the claim); in bounds and aligned for T; T is Pod, so any
            // bytes are a valid T. Copied out before the release below.
            out[got] = unsafe { self.core.ring.payload(p).cast::<T>().read() };
            got += 1;
        }
        self.core.release(pos, n);
        got
    }

    /// Takes one message.
    #[inline]
    pub fn try_pop(&mut self) -> std::result::Result<T, TryPopError> {
        loop {
            let (pos, _) = self.core.claim_read(1, false)?;
            let mut out = [T::zeroed()];
            if self.take(pos, 1, &mut out) == 1 {
                return Ok(out[0]);
            }
        }
    }

    /// Takes one message, waiting while the ring is empty.
    pub fn pop(&mut self) -> std::result::Result<T, PopError> {
        self.pop_timeout(None)
    }

    /// Takes one message, waiting at most `timeout` (`None`: no limit).
    /// `Disconnected` once every producer is gone and the ring is drained.
    pub fn pop_timeout(&mut self, timeout: Option<Duration>) -> std::result::Result<T, PopError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let (pos, _) = self.core.claim_read_blocking(1, left)?;
            let mut out = [T::zeroed()];
            if self.take(pos, 1, &mut out) == 1 {
                return Ok(out[0]);
            }
        }
    }

    /// Takes up to `out.len()` consecutive published messages with one
    /// claim; returns how many were stored (0 if all were skipped slots).
    pub fn pop_into(&mut self, out: &mut [T]) -> std::result::Result<usize, TryPopError> {
        if out.is_empty() {
            return Ok(0);
        }
        let (pos, n) = self.core.claim_read(out.len() as u64, false)?;
        Ok(self.take(pos, n, out))
    }

    /// Claims the next message and lends it in place; it is released (freed
    /// for producers) when the [`ReadSlot`] drops. If this process dies
    /// while holding it, the message is redelivered (see the module docs),
    /// so processing in place gives at-least-once delivery.
    pub fn read_slot(&mut self) -> std::result::Result<ReadSlot<'_, T>, TryPopError> {
        loop {
            let (pos, _) = self.core.claim_read(1, false)?;
            if self.core.ring.is_skip(pos) {
                self.core.release(pos, 1);
                continue;
            }
            return Ok(ReadSlot {
                consumer: self,
                pos,
            });
        }
    }

    /// Capacity in slots.
    pub fn capacity(&self) -> u64 {
        self.core.ring.capacity()
    }

    /// Is some producer attached and alive right now? (System calls.)
    pub fn is_producer_alive(&self) -> bool {
        self.core.side.peer_alive_now()
    }

    /// The ring's shared counters.
    pub fn stats(&self) -> RingStats {
        self.core.stats()
    }
}

/// A claimed message lent by [`Consumer::read_slot`].
pub struct ReadSlot<'a, T: Pod> {
    consumer: &'a mut Consumer<T>,
    pos: u64,
}

impl<T: Pod> ReadSlot<'_, T> {
    /// The message, in the ring.
    pub fn get(&self) -> &T {
        // SAFETY: the slot is claimed by us and published: no producer
        // writes it until we release it; in bounds and aligned for T; T is
        // Pod.
        unsafe { &*self.consumer.core.ring.payload(self.pos).cast::<T>() }
    }
}

impl<T: Pod> Drop for ReadSlot<'_, T> {
    fn drop(&mut self) {
        self.consumer.core.release(self.pos, 1);
    }
}

/// Bytes of the length prefix of a [`BytesProducer`] message.
const LEN_PREFIX: usize = 4;

/// Checks that `seg` is a byte-slot MPMC ring (type id 0, room for the
/// length prefix and a byte); returns its slot size.
fn check_bytes(seg: &Segment) -> Result<usize> {
    let l = seg.layout();
    check_type(seg, l.slot_size, l.slot_align, 0, "a byte message")?;
    if (l.slot_size as usize) < LEN_PREFIX + 1 {
        return Err(Error::LayoutMismatch {
            path: seg.path().to_path_buf(),
            what: format!(
                "byte messages need slots of at least {} bytes",
                LEN_PREFIX + 1
            ),
        });
    }
    Ok(l.slot_size as usize)
}

/// A producer of variable-length byte messages (up to the slot size minus
/// a 4-byte length) on an MPMC ring created with any slot size and type id
/// 0 (what `shmring create --kind mpmc` makes). Used by `shmring send`.
pub struct BytesProducer {
    core: Core,
    slot_size: usize,
}

impl BytesProducer {
    /// Takes a free producer role on a byte-slot MPMC ring.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        let slot_size = check_bytes(&seg)?;
        Ok(BytesProducer {
            core: Core::attach(seg, true)?,
            slot_size,
        })
    }

    /// Longest message.
    pub fn max_len(&self) -> usize {
        self.slot_size - LEN_PREFIX
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// Sends one message, waiting at most `timeout` (`None`: no limit)
    /// while the ring is full.
    pub fn send_timeout(
        &mut self,
        msg: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<(), ReserveError> {
        if msg.len() > self.max_len() {
            return Err(ReserveError::TooLarge {
                len: msg.len(),
                max: self.max_len(),
            });
        }
        let (pos, _) = self
            .core
            .claim_write_blocking(1, timeout)
            .map_err(|e| match e {
                PushError::Timeout(()) => ReserveError::Timeout,
                PushError::Disconnected(()) => ReserveError::Disconnected,
                PushError::Corrupted((), w) => ReserveError::Corrupted(w),
            })?;
        let slot = self.core.ring.payload(pos);
        // SAFETY: the slot is claimed by us; LEN_PREFIX + msg.len() <=
        // slot_size bytes at the payload are in bounds; unaligned writes.
        unsafe {
            slot.cast::<[u8; LEN_PREFIX]>()
                .write_unaligned((msg.len() as u32).to_le_bytes());
            std::ptr::copy_nonoverlapping(msg.as_ptr(), slot.add(LEN_PREFIX), msg.len());
        }
        self.core.publish(pos, 1, false);
        Ok(())
    }

    /// Is some consumer attached and alive right now?
    pub fn is_consumer_alive(&self) -> bool {
        self.core.side.peer_alive_now()
    }

    /// Messages not yet taken (published or being written).
    pub fn len(&self) -> u64 {
        self.core.ring.len().unwrap_or(0)
    }

    /// True when consumers have taken everything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The consumer of [`BytesProducer`] messages. Used by `shmring recv`.
pub struct BytesConsumer {
    core: Core,
    slot_size: usize,
}

impl BytesConsumer {
    /// Takes a free consumer role on a byte-slot MPMC ring.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        let slot_size = check_bytes(&seg)?;
        Ok(BytesConsumer {
            core: Core::attach(seg, false)?,
            slot_size,
        })
    }

    /// How blocking calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
    }

    /// Receives one message into `out` (replacing its contents), waiting
    /// at most `timeout` (`None`: no limit).
    pub fn recv_timeout(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), PopError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let (pos, _) = self.core.claim_read_blocking(1, left)?;
            if self.core.ring.is_skip(pos) {
                self.core.release(pos, 1);
                continue;
            }
            let slot = self.core.ring.payload(pos);
            let mut len = [0u8; LEN_PREFIX];
            // SAFETY: the slot is claimed by us and published; LEN_PREFIX
            // bytes at the payload are in bounds.
            unsafe { std::ptr::copy_nonoverlapping(slot, len.as_mut_ptr(), LEN_PREFIX) };
            let len = u32::from_le_bytes(len) as usize;
            if len > self.slot_size - LEN_PREFIX {
                self.core.release(pos, 1);
                return Err(PopError::Corrupted(format!(
                    "message length {len} exceeds the slot's {} bytes",
                    self.slot_size - LEN_PREFIX
                )));
            }
            out.clear();
            out.resize(len, 0);
            // SAFETY: len <= slot_size - LEN_PREFIX (checked above): in
            // bounds; `out` is a distinct private buffer of len bytes.
            unsafe { std::ptr::copy_nonoverlapping(slot.add(LEN_PREFIX), out.as_mut_ptr(), len) };
            self.core.release(pos, 1);
            return Ok(());
        }
    }

    /// Is some producer attached and alive right now?
    pub fn is_producer_alive(&self) -> bool {
        self.core.side.peer_alive_now()
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Model checks of the MPMC protocol: run with
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_models`.
    //! Payloads are relaxed atomics, so a missing ordering shows up as a
    //! stale or wrong message.

    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;
    use loom::thread;
    use std::sync::atomic::Ordering::Relaxed;

    struct Slot {
        seq: AtomicU64,
        val: AtomicU64,
    }

    struct Mem {
        cap: u64,
        control: MpmcControl,
        slots: Vec<Slot>,
        claims: Vec<ClaimLine>,
        alive: Vec<AtomicBool>,
    }

    const PRODUCERS: u32 = 2;
    const CONSUMERS: u32 = 1;

    /// Three threads over several atomics: exhaustive search does not end
    /// in CI time, so preemptions are bounded (loom's documented way).
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.max_branches = 20_000;
        b.check(f);
    }

    impl Mem {
        fn new(cap: u64) -> Mem {
            Mem {
                cap,
                control: MpmcControl::new_for_model(),
                slots: (0..cap)
                    .map(|i| Slot {
                        seq: AtomicU64::new(i),
                        val: AtomicU64::new(0),
                    })
                    .collect(),
                claims: (0..PRODUCERS + CONSUMERS)
                    .map(|_| ClaimLine::new_for_model())
                    .collect(),
                alive: (0..PRODUCERS + CONSUMERS)
                    .map(|_| AtomicBool::new(true))
                    .collect(),
            }
        }

        fn ring(&self) -> RawMpmc {
            // SAFETY: every array lives as long as the Arc<Mem> each thread
            // holds, which outlives the RawMpmc built here.
            unsafe {
                RawMpmc::from_parts(
                    &self.control,
                    self.slots.as_ptr() as *mut u8,
                    self.cap,
                    std::mem::size_of::<Slot>(),
                    std::mem::offset_of!(Slot, val),
                    self.claims.as_ptr(),
                    PRODUCERS,
                    CONSUMERS,
                )
            }
        }

        fn alive(&self, role: u32) -> bool {
            self.alive[role as usize].load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn val(ring: &RawMpmc, pos: u64) -> &AtomicU64 {
        // SAFETY: payload() points at a slot's `val`, an AtomicU64.
        unsafe { &*ring.payload(pos).cast::<AtomicU64>() }
    }

    /// Producer `me` pushes `values`.
    fn produce(mem: &Mem, me: u32, values: &[u64]) {
        let ring = mem.ring();
        let mut stuck = Stuck::default();
        for &v in values {
            loop {
                match ring.claim_for_write(me, 1, &mut stuck, false, &|r| mem.alive(r)) {
                    Claim::Got(pos, 1) => {
                        val(&ring, pos).store(v, Relaxed);
                        ring.publish(me, pos, 1, false);
                        break;
                    }
                    Claim::Nothing => thread::yield_now(),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    /// The consumer takes `n` messages (skips excluded).
    fn consume(mem: &Mem, n: usize) -> Vec<u64> {
        let ring = mem.ring();
        let me = PRODUCERS;
        let mut stuck = Stuck::default();
        let mut got = Vec::new();
        while got.len() < n {
            match ring.claim_for_read(me, 1, &mut stuck, false, &|r| mem.alive(r)) {
                Claim::Got(pos, 1) => {
                    if !ring.is_skip(pos) {
                        got.push(val(&ring, pos).load(Relaxed));
                    }
                    ring.release(me, pos, 1);
                }
                Claim::Nothing => thread::yield_now(),
                other => panic!("{other:?}"),
            }
        }
        got
    }

    #[test]
    fn two_producers_deliver_everything_once_in_per_producer_order() {
        model(|| {
            // Capacity 4: no producer waits for space (that is the next
            // model's job), so the search stays small.
            let mem = Arc::new(Mem::new(4));
            let m1 = mem.clone();
            let m2 = mem.clone();
            let p1 = thread::spawn(move || produce(&m1, 0, &[1, 2]));
            let p2 = thread::spawn(move || produce(&m2, 1, &[11]));
            let got = consume(&mem, 3);
            p1.join().unwrap();
            p2.join().unwrap();
            let ones: Vec<u64> = got.iter().copied().filter(|&v| v < 10).collect();
            assert_eq!(ones, vec![1, 2], "producer 0 out of order or lost: {got:?}");
            assert!(got.contains(&11), "producer 1's message lost: {got:?}");
            assert_eq!(mem.control.stats.skipped.load(Relaxed), 0);
        });
    }

    #[test]
    fn messages_cross_the_wrap_intact_and_in_order() {
        model(|| {
            let mem = Arc::new(Mem::new(2));
            let m1 = mem.clone();
            let p = thread::spawn(move || produce(&m1, 0, &[1, 2, 3]));
            let got = consume(&mem, 3);
            p.join().unwrap();
            assert_eq!(got, vec![1, 2, 3]);
        });
    }

    #[test]
    fn a_slow_live_producer_is_never_skipped() {
        model(|| {
            let mem = Arc::new(Mem::new(2));
            let m1 = mem.clone();
            // Producer 0 claims, is descheduled (yields), then publishes.
            let slow = thread::spawn(move || {
                let ring = m1.ring();
                let mut stuck = Stuck::default();
                let Claim::Got(pos, 1) =
                    ring.claim_for_write(0, 1, &mut stuck, false, &|r| m1.alive(r))
                else {
                    panic!("empty ring must have space");
                };
                thread::yield_now();
                val(&ring, pos).store(5, Relaxed);
                ring.publish(0, pos, 1, false);
            });
            // The consumer checks the claimants at every stuck poll
            // (STUCK_POLLS is 1 under loom), with the producer alive.
            let got = consume(&mem, 1);
            slow.join().unwrap();
            assert_eq!(got, vec![5]);
            assert_eq!(
                mem.control.stats.skipped.load(Relaxed),
                0,
                "a live producer was skipped"
            );
        });
    }

    #[test]
    fn a_dead_producers_claim_is_skipped_and_traffic_continues() {
        model(|| {
            let mem = Arc::new(Mem::new(2));
            let m1 = mem.clone();
            let m2 = mem.clone();
            // Producer 0 claims a slot and dies before publishing: its lock
            // is released (alive = false), its record stays.
            let dying = thread::spawn(move || {
                let ring = m1.ring();
                let mut stuck = Stuck::default();
                if let Claim::Got(..) =
                    ring.claim_for_write(0, 1, &mut stuck, false, &|r| m1.alive(r))
                {
                    m1.alive[0].store(false, std::sync::atomic::Ordering::SeqCst);
                }
            });
            let p2 = thread::spawn(move || produce(&m2, 1, &[7]));
            let got = consume(&mem, 1);
            dying.join().unwrap();
            p2.join().unwrap();
            assert_eq!(got, vec![7]);
            let skipped = mem.control.stats.skipped.load(Relaxed);
            assert!(skipped <= 1);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Regressions found by fuzzing (`fuzz/`, target `attach_consume`).

    use super::*;
    use crate::SegmentOptions;

    /// A ring in a private directory, removed with the directory.
    fn ring(tag: &str) -> (crate::segment::TestDir, Arc<Segment>) {
        let dir = crate::segment::TestDir::new(&format!("mpmc-{tag}"));
        let seg = SegmentOptions::new()
            .dir(&dir.0)
            .create(
                "r",
                &layout_with_roles::<u64>(16, 2, 2).unwrap(),
                type_id::<u64>(),
            )
            .unwrap();
        (dir, Arc::new(seg))
    }

    /// A ring view refuses a layout whose slots exceed the data area or
    /// whose roles' claim lines exceed the control area.
    #[test]
    fn a_forged_layout_is_refused() {
        let (_dir, seg) = ring("forged");
        let mut seg = Arc::into_inner(seg).unwrap();
        let good = *seg.layout();
        assert!(RawMpmc::new(&seg).is_ok());
        let mut forged = good;
        forged.capacity = 1 << 20;
        seg.forge_layout_for_test(forged);
        assert!(matches!(RawMpmc::new(&seg), Err(Error::Corrupted { .. })));
        let mut forged = good;
        forged.max_consumers = 1 << 20;
        seg.forge_layout_for_test(forged);
        assert!(matches!(RawMpmc::new(&seg), Err(Error::Corrupted { .. })));
    }

    #[test]
    fn positions_scribbled_near_the_top_are_corrupted_not_an_overflow() {
        for (which, top) in [("dequeue", u64::MAX), ("enqueue", POS - 1)] {
            let (dir, seg) = ring(which);
            let mut tx = Producer::<u64>::attach(seg.clone()).unwrap();
            let mut rx = Consumer::<u64>::attach(seg.clone()).unwrap();
            tx.try_push(7).unwrap();
            let raw = RawMpmc::new(&seg).unwrap();
            let word = if which == "dequeue" {
                raw.head()
            } else {
                raw.tail()
            };
            word.store(top, Ordering::Relaxed);
            let what = if which == "dequeue" {
                match rx.try_pop() {
                    Err(TryPopError::Corrupted(w)) => w,
                    other => panic!("pop after a scribbled head: {other:?}"),
                }
            } else {
                match tx.try_push(8) {
                    Err(TryPushError::Corrupted(_, w)) => w,
                    other => panic!("push after a scribbled tail: {other:?}"),
                }
            };
            assert!(
                what.contains(&format!("{which} position")) && what.contains("beyond"),
                "{what}"
            );
            drop((tx, rx, raw, seg, dir));
        }
    }
}
