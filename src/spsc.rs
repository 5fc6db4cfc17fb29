//! Single-producer single-consumer ring of fixed-size typed slots.
//!
//! ```no_run
//! use std::sync::Arc;
//! use shmring::spsc::{self, Consumer, Producer};
//! use shmring::SegmentOptions;
//!
//! // process A
//! let seg = SegmentOptions::new().open_or_create("ticks", &spsc::layout::<u64>(1024)?, spsc::type_id::<u64>())?;
//! let mut tx = Producer::<u64>::attach(Arc::new(seg))?;
//! tx.try_push(42).ok();
//!
//! // process B
//! let seg = SegmentOptions::new().open("ticks")?;
//! let mut rx = Consumer::<u64>::attach(Arc::new(seg))?;
//! if let Ok(v) = rx.try_pop() { println!("{v}"); }
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! # Protocol
//!
//! Positions are absolute `u64` counters (they never wrap in practice); slot
//! `pos % capacity` holds message `pos`. The producer owns `tail` (on its own
//! 128-byte line), the consumer owns `head` (on another). Each side keeps a
//! private copy of the other's index and reads the shared one only when its
//! copy says full (producer) or empty (consumer), so in steady state neither
//! touches the other's line per message.
//!
//! Every index read from shared memory is checked: `tail - head` must be at
//! most `capacity`, otherwise the operation fails with `Corrupted`. Slot
//! addresses are computed from private positions masked by the capacity, so
//! no value a peer writes can move an access outside the ring.

use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::layout::{
    ConsumerLine, Kind, LINE, Layout, ProducerLine, SPSC_CONTROL_SIZE, SpscControl, WaitLine,
    derive_type_id,
};
use crate::role::{CONSUMER, PRODUCER, Side};
use crate::segment::Segment;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::wait::{self, Event, Poll, WaitCounters, WaitStrategy};
use std::time::Duration;

/// The layout of an SPSC ring of `capacity` messages of type `T`.
pub fn layout<T: Pod>(capacity: u64) -> Result<Layout> {
    let size = u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX);
    if size == 0 {
        return Err(Error::InvalidConfig {
            what: "zero-sized message types carry nothing through shared memory".into(),
        });
    }
    Layout::new(Kind::Spsc, capacity, size, std::mem::align_of::<T>() as u32)
}

/// The type id recorded for `T` unless the caller supplies one.
pub fn type_id<T: Pod>() -> u64 {
    derive_type_id::<T>()
}

/// Why a push failed; the value comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum TryPushError<T> {
    /// The ring is full.
    Full(T),
    /// The ring is full and its consumer is gone (non-persistent rings).
    Disconnected(T),
    /// The consumer's index is out of range: a buggy or hostile peer.
    Corrupted(T, String),
}

impl<T> TryPushError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Full(v)
            | TryPushError::Disconnected(v)
            | TryPushError::Corrupted(v, _) => v,
        }
    }
}

impl<T> std::fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("ring is full"),
            TryPushError::Disconnected(_) => f.write_str("ring is full and its consumer is gone"),
            TryPushError::Corrupted(_, what) => write!(f, "corrupted ring: {what}"),
        }
    }
}

impl<T: std::fmt::Debug> std::error::Error for TryPushError<T> {}

/// Why a pop failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryPopError {
    /// Nothing published yet.
    Empty,
    /// Empty, and the producer is gone: nothing more will arrive (until a
    /// new producer attaches to a persistent ring).
    Disconnected,
    /// The producer's index or a frame is out of range.
    Corrupted(String),
}

impl std::fmt::Display for TryPopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPopError::Empty => f.write_str("ring is empty"),
            TryPopError::Disconnected => f.write_str("ring is empty and its producer is gone"),
            TryPopError::Corrupted(what) => write!(f, "corrupted ring: {what}"),
        }
    }
}

impl std::error::Error for TryPopError {}

/// Why a blocking push failed; the value comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring stayed full for the whole timeout.
    Timeout(T),
    /// The consumer of a non-persistent ring is gone.
    Disconnected(T),
    /// The consumer's index is out of range.
    Corrupted(T, String),
}

impl<T> std::fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Timeout(_) => f.write_str("timed out waiting for space"),
            PushError::Disconnected(_) => f.write_str("the consumer is gone"),
            PushError::Corrupted(_, what) => write!(f, "corrupted ring: {what}"),
        }
    }
}

impl<T: std::fmt::Debug> std::error::Error for PushError<T> {}

/// Why a blocking pop (or frame read) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PopError {
    /// Nothing arrived within the timeout.
    Timeout,
    /// The producer is gone and everything it published was taken.
    Disconnected,
    /// The producer's index or a frame is out of range.
    Corrupted(String),
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PopError::Timeout => f.write_str("timed out waiting for a message"),
            PopError::Disconnected => f.write_str("the producer is gone and the ring is drained"),
            PopError::Corrupted(what) => write!(f, "corrupted ring: {what}"),
        }
    }
}

impl std::error::Error for PopError {}

/// Turns a non-blocking pop result into a wait-loop poll: `Empty` is
/// pending, unless `check_peer` finds the producer gone, in which case one
/// more try decides between a last message and `Disconnected`.
pub(crate) fn pop_poll<R>(
    check_peer: bool,
    side: &mut Side,
    mut attempt: impl FnMut(&mut Side) -> std::result::Result<R, TryPopError>,
) -> Poll<std::result::Result<R, PopError>> {
    let settle = |r: std::result::Result<R, TryPopError>| match r {
        Ok(v) => Poll::Ready(Ok(v)),
        Err(TryPopError::Empty) => Poll::Pending,
        Err(TryPopError::Disconnected) => Poll::Ready(Err(PopError::Disconnected)),
        Err(TryPopError::Corrupted(w)) => Poll::Ready(Err(PopError::Corrupted(w))),
    };
    match settle(attempt(side)) {
        Poll::Pending if check_peer && side.peer_gone_now() => match settle(attempt(side)) {
            Poll::Pending => Poll::Ready(Err(PopError::Disconnected)),
            ready => ready,
        },
        other => other,
    }
}

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
        })
    }

    #[inline]
    fn producer_line(&self) -> &ProducerLine {
        // SAFETY: `control` points at SPSC_CONTROL_SIZE bytes inside the
        // mapping, 128-byte aligned (checked in `new`; in loom models, the
        // caller of `from_parts` guarantees it). The line holds only atomics,
        // so a shared reference to it is sound while peers write it.
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
    #[cfg(loom)]
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
        // SAFETY: offset + 8 <= capacity bytes of the data area (frame
        // capacities are powers of two of at least 64, enforced by
        // `Layout::with_roles`, the only way to build a layout; capacity *
        // stride <= data area checked in `new`); the data area is 8-aligned
        // (checked in `new`), so the word is aligned.
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
    #[inline]
    pub(crate) fn check(&self, tail: u64, head: u64) -> std::result::Result<u64, String> {
        let used = tail.wrapping_sub(head);
        if used > self.capacity {
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
        let avail = self.cached_tail.wrapping_sub(self.head);
        if avail >= want {
            return Ok(avail);
        }
        let avail = self.refresh(ring)?;
        if avail > 0 {
            return Ok(avail);
        }
        if !peer_gone() {
            return Err(TryPopError::Empty);
        }
        // The producer is gone; it may have published just before it left
        // (its DETACHED store is a release after its last publish).
        match self.refresh(ring)? {
            0 => Err(TryPopError::Disconnected),
            n => Ok(n),
        }
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

fn check_type<T: Pod>(seg: &Segment, type_id: u64) -> Result<()> {
    let l = seg.layout();
    let d = seg.descriptor();
    let want_size = std::mem::size_of::<T>() as u32;
    let want_align = std::mem::align_of::<T>() as u32;
    let mismatch = |what: String| {
        Err(Error::LayoutMismatch {
            path: seg.path().to_path_buf(),
            what,
        })
    };
    if l.kind != Kind::Spsc {
        return mismatch(format!("the ring holds {}, not typed spsc slots", l.kind));
    }
    if l.slot_size != want_size || l.slot_align != want_align {
        return mismatch(format!(
            "the ring's slots are {} bytes aligned to {}, but {} is {want_size} bytes aligned to {want_align}",
            l.slot_size,
            l.slot_align,
            std::any::type_name::<T>()
        ));
    }
    if d.type_id != type_id {
        return mismatch(format!(
            "the ring's type id is {:#x}, but {} has type id {type_id:#x}",
            d.type_id,
            std::any::type_name::<T>()
        ));
    }
    Ok(())
}

/// The producing half of a typed SPSC ring. At most one exists per ring, in
/// any process (an OFD lock enforces it).
pub struct Producer<T: Pod> {
    ring: RawRing,
    cursor: ProducerCursor,
    side: Side,
    persistent: bool,
    strategy: WaitStrategy,
    _marker: PhantomData<T>,
}

/// One non-blocking push, on the producer's parts (so a wait loop can
/// borrow the ring and the cursor separately).
#[inline]
fn push_one<T: Pod>(
    ring: &RawRing,
    cursor: &mut ProducerCursor,
    side: &mut Side,
    persistent: bool,
    value: T,
) -> std::result::Result<(), TryPushError<T>> {
    match cursor.free(ring, 1) {
        Ok(0) => return Err(full_error(side, persistent, value)),
        Ok(_) => {}
        Err(what) => return Err(TryPushError::Corrupted(value, what)),
    }
    // Slots are aligned for T: data_offset is aligned to max(128, align_of
    // T) and the stride is a multiple of align_of T.
    // SAFETY: in bounds (masked position) and aligned; free (tail - head <
    // capacity, head read with acquire), so the consumer reads it only after
    // we publish.
    unsafe { ring.slot(cursor.tail).cast::<T>().write(value) };
    cursor.publish(ring, 1);
    side.active();
    Ok(())
}

/// One non-blocking pop, on the consumer's parts.
#[inline]
fn pop_one<T: Pod>(
    ring: &RawRing,
    cursor: &mut ConsumerCursor,
    side: &mut Side,
) -> std::result::Result<T, TryPopError> {
    cursor.available(ring, || side.peer_gone(), 1)?;
    // SAFETY: the slot is in bounds (masked), aligned for T, and published
    // (head < tail, tail read with acquire); T is Pod so any bytes are a
    // valid T. `read` copies it out before we release it.
    let v = unsafe { ring.slot(cursor.head).cast::<T>().read() };
    cursor.release(ring, 1);
    side.active();
    Ok(v)
}

/// What full means for a producer: `Disconnected` once the consumer of a
/// non-persistent ring is gone, `Full` otherwise.
pub(crate) fn full_error<V>(side: &mut Side, persistent: bool, value: V) -> TryPushError<V> {
    if !persistent && side.peer_gone() {
        TryPushError::Disconnected(value)
    } else {
        TryPushError::Full(value)
    }
}

impl<T: Pod> Producer<T> {
    /// Takes the producer role on an SPSC ring of `T` (type id derived from
    /// `T`).
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        Self::attach_with_type_id(seg, type_id::<T>())
    }

    /// Takes the producer role, checking an explicit type id.
    pub fn attach_with_type_id(seg: Arc<Segment>, type_id: u64) -> Result<Self> {
        check_type::<T>(&seg, type_id)?;
        let ring = RawRing::new(&seg)?;
        let persistent = seg.is_persistent();
        let side = Side::attach(seg, PRODUCER, CONSUMER)?;
        let cursor = ProducerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        Ok(Producer {
            ring,
            cursor,
            side,
            persistent,
            strategy: WaitStrategy::default(),
            _marker: PhantomData,
        })
    }

    /// The segment this producer writes to.
    pub fn segment(&self) -> &Arc<Segment> {
        self.side.segment()
    }

    #[inline]
    fn publish(&mut self, n: u64) {
        self.cursor.publish(&self.ring, n);
        self.side.active();
    }

    /// Pushes one message, or gives it back if the ring is full.
    #[inline]
    pub fn try_push(&mut self, value: T) -> std::result::Result<(), TryPushError<T>> {
        push_one(
            &self.ring,
            &mut self.cursor,
            &mut self.side,
            self.persistent,
            value,
        )
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Pushes one message, waiting while the ring is full.
    pub fn push(&mut self, value: T) -> std::result::Result<(), PushError<T>> {
        self.push_timeout(value, None)
    }

    /// Pushes one message, waiting at most `timeout` (`None`: no limit)
    /// while the ring is full. A consumer that dies while we wait is noticed
    /// within [`wait::PEER_CHECK_INTERVAL`].
    pub fn push_timeout(
        &mut self,
        value: T,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), PushError<T>> {
        let (ring, cursor, side, persistent) = (
            &self.ring,
            &mut self.cursor,
            &mut self.side,
            self.persistent,
        );
        let mut slot = Some(value);
        let outcome = wait::block_on(ring.space_wait(), self.strategy, timeout, |check_peer| {
            let Some(v) = slot.take() else {
                return Poll::Ready(Ok(()));
            };
            match push_one(ring, cursor, side, persistent, v) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TryPushError::Full(v)) => {
                    if check_peer && !persistent && side.peer_gone_now() {
                        return Poll::Ready(Err(PushError::Disconnected(v)));
                    }
                    slot = Some(v);
                    Poll::Pending
                }
                Err(TryPushError::Disconnected(v)) => Poll::Ready(Err(PushError::Disconnected(v))),
                Err(TryPushError::Corrupted(v, w)) => Poll::Ready(Err(PushError::Corrupted(v, w))),
            }
        });
        match outcome {
            Ok(r) => r,
            Err(()) => Err(PushError::Timeout(
                slot.take().expect("value kept while pending"),
            )),
        }
    }

    /// Pushes as many of `values` as fit, with one index update. Returns how
    /// many were pushed; `Full` (with `()`) if none fit.
    pub fn push_slice(&mut self, values: &[T]) -> std::result::Result<usize, TryPushError<()>> {
        if values.is_empty() {
            return Ok(0);
        }
        let free = self
            .cursor
            .free(&self.ring, values.len() as u64)
            .map_err(|w| TryPushError::Corrupted((), w))?;
        let n = (values.len() as u64).min(free) as usize;
        if n == 0 {
            return Err(full_error(&mut self.side, self.persistent, ()));
        }
        let mut done = 0;
        while done < n {
            let pos = self.cursor.tail.wrapping_add(done as u64);
            let run = contiguous(self.ring.capacity(), pos, n - done);
            // SAFETY: `run` slots from `pos` are free, in bounds (contiguous
            // stops at the end of the data area) and aligned for T; the
            // source is a distinct private slice.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    values.as_ptr().add(done),
                    self.ring.slot(pos).cast::<T>(),
                    run,
                );
            }
            done += run;
        }
        self.publish(n as u64);
        Ok(n)
    }

    /// A zero-copy grant of up to `n` free slots, contiguous in memory (it may
    /// be shorter than asked at the wrap). Fill it, then [`WriteChunk::commit`].
    pub fn write_chunk(
        &mut self,
        n: usize,
    ) -> std::result::Result<WriteChunk<'_, T>, TryPushError<()>> {
        let free = self
            .cursor
            .free(&self.ring, n as u64)
            .map_err(|w| TryPushError::Corrupted((), w))?;
        if free == 0 && n > 0 {
            return Err(full_error(&mut self.side, self.persistent, ()));
        }
        let len = contiguous(
            self.ring.capacity(),
            self.cursor.tail,
            (n as u64).min(free) as usize,
        );
        let ptr = self.ring.slot(self.cursor.tail).cast::<T>();
        Ok(WriteChunk {
            producer: self,
            ptr,
            len,
        })
    }

    /// Messages the consumer has not taken yet (reads the consumer's index).
    pub fn len(&self) -> u64 {
        let head = self.ring.head().load(Ordering::Acquire);
        self.ring
            .check(self.cursor.tail, head)
            .unwrap_or(self.ring.capacity())
    }

    /// True when the consumer has taken everything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity in slots.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    /// Is the consumer attached and alive right now? (One system call.)
    pub fn is_consumer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }

    /// The ring's wait counters: (data direction, space direction).
    pub fn wait_counters(&self) -> (WaitCounters, WaitCounters) {
        self.ring.wait_counters()
    }
}

/// How many units from `pos`, up to `want`, lie before the end of the data
/// area of a ring of `capacity` units.
#[inline]
pub(crate) fn contiguous(capacity: u64, pos: u64, want: usize) -> usize {
    let to_end = capacity - (pos & (capacity - 1));
    (want as u64).min(to_end) as usize
}

/// Free slots lent by [`Producer::write_chunk`]; nothing is published until
/// [`commit`](WriteChunk::commit).
pub struct WriteChunk<'a, T: Pod> {
    producer: &'a mut Producer<T>,
    ptr: *mut T,
    len: usize,
}

impl<T: Pod> WriteChunk<'_, T> {
    /// The granted slots. Their previous contents are stale messages.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // The consumer does not access these slots until `commit` advances
        // the tail; T is Pod, so any stale bytes are a valid T.
        // SAFETY: `len` free, in-bounds, aligned slots that only this
        // producer may write until it publishes them.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Number of slots granted.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no slot was granted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Publishes the first `n` slots (`n` is capped at the grant's length).
    pub fn commit(self, n: usize) {
        let n = n.min(self.len);
        if n > 0 {
            self.producer.publish(n as u64);
        }
    }
}

/// The consuming half of a typed SPSC ring. At most one exists per ring.
pub struct Consumer<T: Pod> {
    ring: RawRing,
    cursor: ConsumerCursor,
    side: Side,
    strategy: WaitStrategy,
    _marker: PhantomData<T>,
}

impl<T: Pod> Consumer<T> {
    /// Takes the consumer role on an SPSC ring of `T`.
    pub fn attach(seg: Arc<Segment>) -> Result<Self> {
        Self::attach_with_type_id(seg, type_id::<T>())
    }

    /// Takes the consumer role, checking an explicit type id.
    pub fn attach_with_type_id(seg: Arc<Segment>, type_id: u64) -> Result<Self> {
        check_type::<T>(&seg, type_id)?;
        let ring = RawRing::new(&seg)?;
        let side = Side::attach(seg, CONSUMER, PRODUCER)?;
        let cursor = ConsumerCursor::attach(&ring)
            .map_err(|w| Error::corrupted(side.segment().path(), w))?;
        Ok(Consumer {
            ring,
            cursor,
            side,
            strategy: WaitStrategy::default(),
            _marker: PhantomData,
        })
    }

    /// The segment this consumer reads from.
    pub fn segment(&self) -> &Arc<Segment> {
        self.side.segment()
    }

    #[inline]
    fn release(&mut self, n: u64) {
        self.cursor.release(&self.ring, n);
        self.side.active();
    }

    /// Takes one message.
    #[inline]
    pub fn try_pop(&mut self) -> std::result::Result<T, TryPopError> {
        pop_one(&self.ring, &mut self.cursor, &mut self.side)
    }

    /// How blocking calls wait (default: [`WaitStrategy::default`]).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Takes one message, waiting while the ring is empty.
    pub fn pop(&mut self) -> std::result::Result<T, PopError> {
        self.pop_timeout(None)
    }

    /// Takes one message, waiting at most `timeout` (`None`: no limit). A
    /// producer that dies while we wait is noticed within
    /// [`wait::PEER_CHECK_INTERVAL`]; one that detaches, at once.
    pub fn pop_timeout(&mut self, timeout: Option<Duration>) -> std::result::Result<T, PopError> {
        let (ring, cursor, side) = (&self.ring, &mut self.cursor, &mut self.side);
        let outcome = wait::block_on(ring.data_wait(), self.strategy, timeout, |check_peer| {
            pop_poll(check_peer, side, |side| pop_one::<T>(ring, cursor, side))
        });
        outcome.unwrap_or(Err(PopError::Timeout))
    }

    /// Takes up to `out.len()` messages with one index update; returns how
    /// many. `Empty`/`Disconnected` if there were none.
    pub fn pop_into(&mut self, out: &mut [T]) -> std::result::Result<usize, TryPopError> {
        if out.is_empty() {
            return Ok(0);
        }
        let avail =
            self.cursor
                .available(&self.ring, || self.side.peer_gone(), out.len() as u64)?;
        let n = (out.len() as u64).min(avail) as usize;
        let mut done = 0;
        while done < n {
            let pos = self.cursor.head.wrapping_add(done as u64);
            let run = contiguous(self.ring.capacity(), pos, n - done);
            // SAFETY: `run` published, in-bounds, aligned slots; the output
            // is a distinct private buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.ring.slot(pos).cast::<T>(),
                    out.as_mut_ptr().add(done),
                    run,
                );
            }
            done += run;
        }
        self.release(n as u64);
        Ok(n)
    }

    /// A zero-copy view of up to `n` published messages, contiguous in
    /// memory (shorter than asked at the wrap). [`ReadChunk::release`] frees
    /// them; dropping the chunk releases nothing.
    pub fn read_chunk(&mut self, n: usize) -> std::result::Result<ReadChunk<'_, T>, TryPopError> {
        let avail = self
            .cursor
            .available(&self.ring, || self.side.peer_gone(), n.max(1) as u64)?;
        let len = contiguous(
            self.ring.capacity(),
            self.cursor.head,
            (n as u64).min(avail) as usize,
        );
        let ptr = self.ring.slot(self.cursor.head).cast::<T>();
        Ok(ReadChunk {
            consumer: self,
            ptr,
            len,
        })
    }

    /// Messages waiting (reads the producer's index).
    pub fn len(&self) -> u64 {
        let tail = self.ring.tail().load(Ordering::Acquire);
        self.ring.check(tail, self.cursor.head).unwrap_or(0)
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity in slots.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    /// Is the producer attached and alive right now? (One system call.)
    pub fn is_producer_alive(&self) -> bool {
        self.side.peer_alive_now()
    }

    /// The ring's wait counters: (data direction, space direction).
    pub fn wait_counters(&self) -> (WaitCounters, WaitCounters) {
        self.ring.wait_counters()
    }
}

#[cfg(not(loom))]
impl<T: Pod> wait::Selectable for Consumer<T> {
    fn is_ready(&mut self) -> bool {
        !matches!(
            self.cursor
                .available(&self.ring, || self.side.peer_gone(), 1),
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

/// Published messages lent by [`Consumer::read_chunk`].
pub struct ReadChunk<'a, T: Pod> {
    consumer: &'a mut Consumer<T>,
    ptr: *const T,
    len: usize,
}

impl<T: Pod> ReadChunk<'_, T> {
    /// The messages. The producer does not overwrite them until released.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `len` published, in-bounds, aligned slots that the producer
        // does not write until `release` advances the head; T is Pod.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Number of messages lent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing was lent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frees the first `n` messages (capped at the chunk's length).
    pub fn release(self, n: usize) {
        let n = n.min(self.len);
        if n > 0 {
            self.consumer.release(n as u64);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Model checks of the index protocol: run with
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_models`.
    //!
    //! The payload is written and read with *relaxed* atomics, so loom can
    //! return stale values for it: if the tail/head orderings did not order
    //! the payload, a model would observe a wrong or old message.

    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU32;
    use loom::thread;
    use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

    const CAP: u64 = 2;
    const N: u64 = 3;

    struct Mem {
        control: SpscControl,
        data: [AtomicU64; CAP as usize],
        producer_detached: AtomicU32,
    }

    impl Mem {
        fn new() -> Mem {
            Mem {
                control: SpscControl::new_for_model(),
                data: [AtomicU64::new(0), AtomicU64::new(0)],
                producer_detached: AtomicU32::new(0),
            }
        }

        fn ring(&self) -> RawRing {
            // SAFETY: the control lines and the array live as long as the
            // Arc<Mem> each thread holds, which outlives the RawRing built
            // here; CAP is a power of two.
            unsafe {
                RawRing::from_parts(
                    &self.control,
                    self.data.as_ptr() as *mut u8,
                    CAP,
                    std::mem::size_of::<AtomicU64>(),
                )
            }
        }
    }

    fn slot(ring: &RawRing, pos: u64) -> &AtomicU64 {
        // SAFETY: slot() stays inside `data`, an array of AtomicU64.
        unsafe { &*ring.slot(pos).cast::<AtomicU64>() }
    }

    fn produce(mem: &Mem) {
        let ring = mem.ring();
        let mut cursor = ProducerCursor::attach(&ring).unwrap();
        let mut v = 1;
        while v <= N {
            if cursor.free(&ring, 1).unwrap() == 0 {
                thread::yield_now();
                continue;
            }
            slot(&ring, cursor.tail).store(v, Relaxed);
            cursor.publish(&ring, 1);
            v += 1;
        }
        // As `Side::drop` does: detach with release after the last publish.
        mem.producer_detached.store(1, Release);
    }

    #[test]
    fn messages_arrive_in_order_and_intact_across_the_wrap() {
        loom::model(|| {
            let mem = Arc::new(Mem::new());
            let m2 = mem.clone();
            let producer = thread::spawn(move || produce(&m2));
            let ring = mem.ring();
            let mut cursor = ConsumerCursor::attach(&ring).unwrap();
            let mut expect = 1;
            while expect <= N {
                match cursor.available(&ring, || false, 1) {
                    Ok(_) => {
                        assert_eq!(slot(&ring, cursor.head).load(Relaxed), expect);
                        cursor.release(&ring, 1);
                        expect += 1;
                    }
                    Err(TryPopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
            producer.join().unwrap();
        });
    }

    #[test]
    fn disconnected_only_after_everything_published_was_taken() {
        loom::model(|| {
            let mem = Arc::new(Mem::new());
            let m2 = mem.clone();
            let producer = thread::spawn(move || produce(&m2));
            let ring = mem.ring();
            let mut cursor = ConsumerCursor::attach(&ring).unwrap();
            let mut got = 0;
            loop {
                let gone = || mem.producer_detached.load(Acquire) == 1;
                match cursor.available(&ring, gone, 1) {
                    Ok(_) => {
                        got += 1;
                        assert_eq!(slot(&ring, cursor.head).load(Relaxed), got);
                        cursor.release(&ring, 1);
                    }
                    Err(TryPopError::Empty) => thread::yield_now(),
                    Err(TryPopError::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(got, N, "Disconnected before the last message");
            producer.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::SegmentOptions;
    use crate::segment::TestDir;

    /// A layout whose capacity * stride exceeds the data area cannot be
    /// written by `create`, nor used by a ring view even if a handle were
    /// given one (a regression: safe code could set `Layout::capacity`
    /// and make `push` write past the mapping).
    #[test]
    fn a_forged_layout_is_refused() {
        let dir = TestDir::new("forged");
        let good = layout::<u64>(8).unwrap();
        let mut forged = good;
        forged.capacity = 1 << 20;
        let opts = SegmentOptions::new().dir(&dir.0);
        assert!(matches!(
            opts.create("forged", &forged, type_id::<u64>()),
            Err(Error::Corrupted { .. })
        ));
        let mut seg = opts.create("ok", &good, type_id::<u64>()).unwrap();
        assert!(RawRing::new(&seg).is_ok());
        seg.forge_layout_for_test(forged);
        assert!(matches!(RawRing::new(&seg), Err(Error::Corrupted { .. })));
        let mut beyond = good;
        beyond.data_offset = good.total_size;
        seg.forge_layout_for_test(beyond);
        assert!(matches!(RawRing::new(&seg), Err(Error::Corrupted { .. })));
    }
}
