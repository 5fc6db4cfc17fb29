//! The SPSC index protocol over a raw region: the ring view and each
//! side's private cursor. Frame rings run the same protocol over bytes.

use crate::error::{Error, Result};
use crate::layout::{ConsumerLine, LINE, ProducerLine, SPSC_CONTROL_SIZE, SpscControl, WaitLine};
use crate::ring::role::{MEMORY_LOST, Side, memory_lost};
use crate::ring::{TryPopError, TryPushError};
use crate::segment::Segment;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sys::sigbus::Poison;
use crate::wait::{Event, WaitCounters};

/// The control lines and the data area, as raw pointers into memory that
/// outlives this struct (the owner keeps the `Arc<Segment>`).
///
/// Ring algorithms see only this, never the segment, so the same code can
/// run over heap memory in a loom model.
pub(crate) struct RawRing {
    /// Producer line, consumer line and the two wait lines; fields are
    /// reached with `addr_of!`-style place projections, never through a
    /// reference to the whole (concurrently written) struct.
    control: *const SpscControl,
    /// Data area: `capacity * stride` bytes.
    data: *mut u8,
    /// Slots (typed) or bytes (frames); a power of two.
    capacity: u64,
    /// Bytes per slot.
    stride: usize,
    /// The segment's lost-memory mark (a truncating peer; see
    /// `ring::role`), checked at the start of every operation.
    poison: Poison,
}

// SAFETY: the pointers refer to shared memory accessed only through atomics
// or by the single side that owns a region at a time; the owning handle keeps
// the mapping alive.
unsafe impl Send for RawRing {}

impl RawRing {
    /// Builds the view of a validated segment whose first control lines are
    /// an [`SpscControl`] (SPSC and frame rings; an MPMC ring's first four
    /// lines have the same shape). Everything the accessors rely on is
    /// checked here, once, before any pointer is formed: the capacity is a
    /// power of two, `capacity * stride` (checked arithmetic) fits in the
    /// data area, and the control lines and the data area lie inside the
    /// mapping, 128-byte aligned.
    pub(crate) fn new(seg: &Segment) -> Result<RawRing> {
        let l = seg.layout();
        let corrupted = |what: &str| Error::corrupted(seg.path(), what.to_string());
        let (capacity, stride) = (l.capacity(), l.slot_stride());
        if !capacity.is_power_of_two() || stride == 0 {
            return Err(corrupted("ring capacity or slot stride out of range"));
        }
        let need = capacity
            .checked_mul(stride)
            .filter(|&n| n <= l.data_size())
            .ok_or_else(|| corrupted("ring slots exceed the data area"))?;
        let stride = usize::try_from(stride).map_err(|_| corrupted("slot stride too large"))?;
        let control = seg
            .region(l.control_offset(), SPSC_CONTROL_SIZE as u64)
            .ok_or_else(|| corrupted("ring control lines outside the mapping"))?;
        let data = seg
            .region(l.data_offset(), need)
            .ok_or_else(|| corrupted("ring data area outside the mapping"))?;
        if !(control as usize).is_multiple_of(LINE) || !(data as usize).is_multiple_of(8) {
            return Err(corrupted("ring regions misaligned"));
        }
        Ok(RawRing {
            control: control.cast::<SpscControl>(),
            data,
            capacity,
            stride,
            poison: seg.guard().poison(),
        })
    }

    /// Has this process lost the ring's memory (a peer truncated it)?
    #[inline(always)]
    pub(crate) fn lost(&self) -> bool {
        self.poison.is_set()
    }

    /// [`lost`](Self::lost), or is the file shorter than the ring now (one
    /// `fstat`)? For error paths: a value that fails a check may be the
    /// zeroed tail of a page a truncation cut in the middle.
    #[cold]
    pub(crate) fn lost_now(&self) -> bool {
        self.poison.check_size()
    }

    #[inline]
    fn producer_line(&self) -> &ProducerLine {
        // `new` checked SPSC_CONTROL_SIZE bytes inside the mapping, 128-byte
        // aligned (in loom models, the caller of `from_parts` guarantees it).
        // SAFETY: in bounds and aligned; atomics only, so peers may write it.
        unsafe { &*std::ptr::addr_of!((*self.control).producer) }
    }

    #[inline]
    fn consumer_line(&self) -> &ConsumerLine {
        // SAFETY: as for `producer_line`.
        unsafe { &*std::ptr::addr_of!((*self.control).consumer) }
    }

    #[inline]
    fn wait_line(&self, which: usize) -> &WaitLine {
        // SAFETY: as for `producer_line`; `which` is 0 or 1 (index checked
        // by the array projection).
        unsafe { &*std::ptr::addr_of!((*self.control).waits[which]) }
    }

    /// Sleepers waiting for data (woken by the producer).
    #[inline]
    pub(crate) fn data_wait(&self) -> Event<'_> {
        Event {
            line: self.wait_line(0),
            waiters: &self.producer_line().data_waiters,
        }
    }

    /// Both directions' wait counters.
    pub(crate) fn wait_counters(&self) -> (WaitCounters, WaitCounters) {
        (self.data_wait().counters(), self.space_wait().counters())
    }

    /// Sleepers waiting for space (woken by the consumer).
    #[inline]
    pub(crate) fn space_wait(&self) -> Event<'_> {
        Event {
            line: self.wait_line(1),
            waiters: &self.consumer_line().space_waiters,
        }
    }

    /// A ring over caller-provided memory (loom models, unit tests).
    ///
    /// # Safety
    /// `control` must be a valid `SpscControl` and `data` valid for
    /// `capacity * stride` bytes, all for the lifetime of the `RawRing`;
    /// `capacity` a power of two.
    #[cfg(all(loom, test))]
    pub(crate) unsafe fn from_parts(
        control: *const SpscControl,
        data: *mut u8,
        capacity: u64,
        stride: usize,
    ) -> RawRing {
        RawRing {
            control,
            data,
            capacity,
            stride,
            poison: Poison::never(),
        }
    }

    #[inline]
    pub(crate) fn tail(&self) -> &AtomicU64 {
        &self.producer_line().tail
    }

    #[inline]
    pub(crate) fn head(&self) -> &AtomicU64 {
        &self.consumer_line().head
    }

    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The 8-byte word at byte position `pos` (8-aligned) of a byte ring:
    /// frame headers are read and written only through it.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn word(&self, pos: u64) -> &AtomicU64 {
        let offset = (pos & (self.capacity - 1) & !7) as usize;
        // Frame capacities are powers of two >= 64 (`Layout::with_roles`);
        // `new` checked capacity * stride <= the 8-aligned data area.
        // SAFETY: offset + 8 <= capacity, so in bounds and 8-aligned.
        unsafe { &*self.data.add(offset).cast::<AtomicU64>() }
    }

    /// Under loom the byte area is modelled as an array of atomics, one per
    /// 8 bytes; `data` points at its first element.
    #[cfg(loom)]
    #[inline]
    pub(crate) fn word(&self, pos: u64) -> &AtomicU64 {
        let index = ((pos & (self.capacity - 1)) / 8) as usize;
        // SAFETY: the loom model allocates capacity / 8 atomics at `data`.
        unsafe { &*self.data.cast::<AtomicU64>().add(index) }
    }

    /// Producer line, second word: messages published (frame rings; for
    /// `stat`). Written only by the producer.
    /// The consumer's receipt (frame rings; `shmring recv`).
    pub(crate) fn receipt(&self) -> &crate::layout::Receipt {
        &self.consumer_line().receipt
    }

    pub(crate) fn produced(&self) -> &AtomicU64 {
        &self.producer_line().produced
    }

    /// Consumer line, second word: messages consumed. Written only by the
    /// consumer.
    pub(crate) fn consumed(&self) -> &AtomicU64 {
        &self.consumer_line().consumed
    }

    /// Address of slot `pos % capacity`.
    #[inline]
    pub(crate) fn slot(&self, pos: u64) -> *mut u8 {
        let index = (pos & (self.capacity - 1)) as usize;
        // SAFETY: index < capacity, and the data area holds capacity *
        // stride bytes (checked with checked arithmetic in `new`).
        unsafe { self.data.add(index * self.stride) }
    }

    /// Checks an index pair read from shared memory: the producer may be at
    /// most `capacity` ahead of the consumer and never behind it.
    /// Indices read from memory this process lost (zeros) mean nothing:
    /// that is reported instead, whatever they look like.
    #[inline]
    pub(crate) fn check(&self, tail: u64, head: u64) -> std::result::Result<u64, String> {
        if self.lost() {
            return Err(memory_lost());
        }
        let used = tail.wrapping_sub(head);
        if used > self.capacity {
            if self.lost_now() {
                return Err(memory_lost());
            }
            return Err(format!(
                "producer index {tail} and consumer index {head} are {used} apart, more than the capacity {}",
                self.capacity
            ));
        }
        Ok(used)
    }
}

/// The producer's private state: its position and its cached copy of the
/// consumer's. Shared by typed and frame rings.
pub(crate) struct ProducerCursor {
    /// Next position to write. Never read back from shared memory.
    pub(crate) tail: u64,
    /// Private copy of the consumer's `head`, refreshed only when full.
    cached_head: u64,
}

impl ProducerCursor {
    /// Starts after whatever a predecessor published; checks the indices.
    pub(crate) fn attach(ring: &RawRing) -> std::result::Result<Self, String> {
        // Acquire on both: a restarted producer continues after what its
        // predecessor published and sees the consumer's progress.
        let tail = ring.tail().load(Ordering::Acquire);
        let head = ring.head().load(Ordering::Acquire);
        ring.check(tail, head)?;
        Ok(ProducerCursor {
            tail,
            cached_head: head,
        })
    }

    /// Free units, refreshing the consumer's index only when the cached copy
    /// says fewer than `want` are free.
    #[inline]
    pub(crate) fn free(&mut self, ring: &RawRing, want: u64) -> std::result::Result<u64, String> {
        if ring.lost() {
            return Err(memory_lost());
        }
        let cap = ring.capacity();
        let free = cap - self.tail.wrapping_sub(self.cached_head).min(cap);
        if free >= want {
            return Ok(free);
        }
        // Acquire: pairs with the consumer's release store of `head`, made
        // after it copied the slots out, so units below `head` may be reused.
        let head = ring.head().load(Ordering::Acquire);
        let used = ring.check(self.tail, head)?;
        self.cached_head = head;
        Ok(cap - used)
    }

    /// Advances the tail by `n` and publishes it.
    #[inline]
    pub(crate) fn publish(&mut self, ring: &RawRing, n: u64) {
        self.tail = self.tail.wrapping_add(n);
        // Release: the writes into the published units happen-before any
        // consumer load (acquire) that observes the new tail.
        ring.tail().store(self.tail, Ordering::Release);
        ring.data_wait().notify();
    }
}

/// The consumer's private state: its position and its cached copy of the
/// producer's.
pub(crate) struct ConsumerCursor {
    /// Next position to read. Never read back from shared memory.
    pub(crate) head: u64,
    /// Private copy of the producer's `tail`, refreshed only when empty.
    cached_tail: u64,
}

impl ConsumerCursor {
    /// Starts where a predecessor's last release left off; checks the indices.
    pub(crate) fn attach(ring: &RawRing) -> std::result::Result<Self, String> {
        // Acquire: a restarted consumer continues exactly after its
        // predecessor's last release store of `head`.
        let head = ring.head().load(Ordering::Acquire);
        let tail = ring.tail().load(Ordering::Acquire);
        ring.check(tail, head)?;
        Ok(ConsumerCursor {
            head,
            cached_tail: head,
        })
    }

    /// Published units, refreshing the producer's index only when the cached
    /// copy says fewer than `want` are available. With none available:
    /// `Empty`, or `Disconnected` once the producer is gone and drained.
    #[inline]
    pub(crate) fn available(
        &mut self,
        ring: &RawRing,
        mut peer_gone: impl FnMut() -> bool,
        want: u64,
    ) -> std::result::Result<u64, TryPopError> {
        if ring.lost() {
            return Err(TryPopError::Corrupted(memory_lost()));
        }
        let avail = self.cached_tail.wrapping_sub(self.head);
        if avail >= want {
            return Ok(avail);
        }
        let avail = self.refresh(ring)?;
        if avail > 0 {
            return Ok(avail);
        }
        if !peer_gone() {
            // The idle poll may have found the file truncated.
            if ring.lost() {
                return Err(TryPopError::Corrupted(memory_lost()));
            }
            return Err(TryPopError::Empty);
        }
        // The producer is gone; it may have published just before it left
        // (its DETACHED store is a release after its last publish).
        match self.refresh(ring)? {
            0 => Err(TryPopError::Disconnected),
            n => Ok(n),
        }
    }

    /// Units published from `pos` on (`head <= pos <= the cached tail`),
    /// as far as the cached copy of the producer's index knows, after one
    /// refresh of that copy: what a batch read may look at.
    pub(crate) fn published_from(
        &mut self,
        ring: &RawRing,
        pos: u64,
    ) -> std::result::Result<u64, TryPopError> {
        self.refresh(ring)?;
        Ok(self.cached_tail.wrapping_sub(pos))
    }

    fn refresh(&mut self, ring: &RawRing) -> std::result::Result<u64, TryPopError> {
        // Acquire: pairs with the producer's release store of `tail`, so the
        // units below it are fully written.
        let tail = ring.tail().load(Ordering::Acquire);
        let avail = ring
            .check(tail, self.head)
            .map_err(TryPopError::Corrupted)?;
        self.cached_tail = tail;
        Ok(avail)
    }

    /// Advances the head by `n` and releases the units to the producer.
    #[inline]
    pub(crate) fn release(&mut self, ring: &RawRing, n: u64) {
        self.head = self.head.wrapping_add(n);
        // Release: our reads of the units happen-before the producer's
        // acquire load that observes the new head (and its reuse of them).
        ring.head().store(self.head, Ordering::Release);
        ring.space_wait().notify();
    }
}

/// What full means for a producer: `Disconnected` once the consumer of a
/// non-persistent ring is gone, `Full` otherwise; `Corrupted` if the idle
/// poll found the ring's memory lost.
pub(crate) fn full_error<V>(side: &mut Side, persistent: bool, value: V) -> TryPushError<V> {
    // Polled on persistent rings too: it also runs the lost-memory watch.
    let gone = side.peer_gone() && !persistent;
    if side.memory_lost() {
        TryPushError::Corrupted(value, MEMORY_LOST.to_string())
    } else if gone {
        TryPushError::Disconnected(value)
    } else {
        TryPushError::Full(value)
    }
}

/// How many units from `pos`, up to `want`, lie before the end of the data
/// area of a ring of `capacity` units.
#[inline]
pub(crate) fn contiguous(capacity: u64, pos: u64, want: usize) -> usize {
    let to_end = capacity - (pos & (capacity - 1));
    (want as u64).min(to_end) as usize
}
