//! The control lines (at `control_offset`, 128-byte aligned): the SPSC and
//! MPMC index lines, the wait lines, the MPMC statistics and claim lines,
//! with their offsets checked at compile time.

/// The control-line atomics: `std`'s, or loom's in loom models (which build
/// these structures on the heap). Their sizes are asserted only for `std`.
use crate::sync::atomic as ring_atomic;

use super::header::LINE;

/// SPSC/frames producer line: written only by the producer (and by
/// sleepers registering in `data_waiters`).
#[repr(C, align(128))]
#[derive(Debug)]
pub struct ProducerLine {
    /// Next position to be written (published with release).
    pub(crate) tail: ring_atomic::AtomicU64,
    /// Messages published (frame rings; for `stat`).
    pub(crate) produced: ring_atomic::AtomicU64,
    /// Sleepers waiting for data: beside the index the producer writes for
    /// every message, so its check is an L1 hit.
    pub(crate) data_waiters: ring_atomic::AtomicU32,
}

/// SPSC/frames consumer line: written only by the consumer (and by
/// sleepers registering in `space_waiters`).
#[repr(C, align(128))]
#[derive(Debug)]
pub struct ConsumerLine {
    /// Next position to be read (released with release).
    pub(crate) head: ring_atomic::AtomicU64,
    /// Messages consumed.
    pub(crate) consumed: ring_atomic::AtomicU64,
    /// Sleepers waiting for space.
    pub(crate) space_waiters: ring_atomic::AtomicU32,
    /// The consumer's receipt for the frames it holds (layout 1.3).
    pub(crate) receipt: Receipt,
}

/// A consumer's receipt (layout 1.3; zero, and ignored, in older rings):
/// four words of the consumer's own about the messages it holds and has not
/// released, for the next holder of its role to finish what it was doing
/// with them exactly once. `shmring recv` notes there the output file
/// (device, inode) and the offset and length of the write that carries
/// them. Written only by the role's holder, read by its successor.
#[repr(C)]
#[derive(Debug)]
pub struct Receipt {
    /// The ring position the receipt ends at, plus one (frames: the end of
    /// the last frame it covers; MPMC: the claimed position); 0: none.
    /// Stored last, with release, after the words.
    pub(crate) at: ring_atomic::AtomicU64,
    /// The holder's words.
    pub(crate) words: [ring_atomic::AtomicU64; 4],
}

/// One direction's wait line. Atomics only. Touched only when someone
/// sleeps or wakes, never per message (see [`crate::wait`]).
#[repr(C, align(128))]
#[derive(Debug)]
pub struct WaitLine {
    /// The futex word: bumped by a publisher that found waiters.
    pub(crate) seq: ring_atomic::AtomicU32,
    /// Zero; reserved.
    pub(crate) reserved: ring_atomic::AtomicU32,
    /// `FUTEX_WAKE` calls issued.
    pub(crate) wakeups: ring_atomic::AtomicU64,
    /// `FUTEX_WAIT` calls made.
    pub(crate) sleeps: ring_atomic::AtomicU64,
    /// Sleeps that ended with nothing to do.
    pub(crate) spurious: ring_atomic::AtomicU64,
}

/// Counters of one wait line, for `stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WaitCounters {
    /// `FUTEX_WAKE` calls issued by publishers.
    pub wakeups: u64,
    /// `FUTEX_WAIT` calls made by sleepers.
    pub sleeps: u64,
    /// Sleeps that ended with nothing to do.
    pub spurious: u64,
    /// Sleepers registered right now.
    pub waiters: u32,
}

/// The control area of an SPSC or frame ring.
#[repr(C)]
#[derive(Debug)]
pub struct SpscControl {
    /// Line 0.
    pub(crate) producer: ProducerLine,
    /// Line 1.
    pub(crate) consumer: ConsumerLine,
    /// Lines 2 and 3: sleepers waiting for data, then for space.
    pub(crate) waits: [WaitLine; 2],
}

/// Bytes of [`SpscControl`].
pub const SPSC_CONTROL_SIZE: usize = 4 * LINE;

/// MPMC enqueue line: the producers' claim index.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct EnqueueLine {
    /// Next position to claim for writing.
    pub(crate) tail: ring_atomic::AtomicU64,
    /// Zero; reserved.
    pub(crate) reserved: ring_atomic::AtomicU64,
    /// Sleepers waiting for data.
    pub(crate) data_waiters: ring_atomic::AtomicU32,
}

/// MPMC dequeue line: the consumers' claim index.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct DequeueLine {
    /// Next position to claim for reading.
    pub(crate) head: ring_atomic::AtomicU64,
    /// Zero; reserved.
    pub(crate) reserved: ring_atomic::AtomicU64,
    /// Sleepers waiting for space.
    pub(crate) space_waiters: ring_atomic::AtomicU32,
}

/// The MPMC statistics line.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct Stats {
    /// Slots skipped because their producer died before publishing.
    pub(crate) skipped: ring_atomic::AtomicU64,
    /// Messages re-published because their consumer died before releasing.
    pub(crate) redelivered: ring_atomic::AtomicU64,
}

/// One MPMC role's claim line (after the [`MpmcControl`] lines, one per
/// role, producers first). Written only by the role's holder, and by a new
/// holder that clears a dead predecessor's record.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct ClaimLine {
    /// First position being claimed, plus one; 0: no claim in progress.
    /// Stored (relaxed) before the claiming CAS, whose release publishes
    /// it; cleared with release after the positions were published.
    pub(crate) pos: ring_atomic::AtomicU64,
    /// How many consecutive positions from `pos - 1` are claimed.
    pub(crate) len: ring_atomic::AtomicU64,
    /// Consumers: the receipt for the claimed message (layout 1.3).
    pub(crate) receipt: Receipt,
}

/// The fixed part of an MPMC ring's control area; the claim lines follow.
#[repr(C)]
#[derive(Debug)]
pub struct MpmcControl {
    /// Line 0.
    pub(crate) enqueue: EnqueueLine,
    /// Line 1.
    pub(crate) dequeue: DequeueLine,
    /// Lines 2 and 3: sleepers waiting for data, then for space.
    pub(crate) waits: [WaitLine; 2],
    /// Line [`MPMC_STATS_LINE`].
    pub(crate) stats: Stats,
}

/// Broadcast publisher line: written only by the publisher (and by
/// sleepers registering in `data_waiters`). Subscribers read it only to
/// join, to recover from a lap, and to tell that they are drained: they
/// poll the message's own slot, not this line.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct PublisherLine {
    /// Sequence number of the next message: messages `0..tail` were
    /// published (release store after each one's slot).
    pub(crate) tail: ring_atomic::AtomicU64,
    /// `block` rings: no message numbered `floor` or later is overwritten
    /// before the publisher next reads the subscribers' positions; a
    /// joining subscriber never starts before it (see `broadcast::raw`).
    pub(crate) floor: ring_atomic::AtomicU64,
    /// Sleepers waiting for data.
    pub(crate) data_waiters: ring_atomic::AtomicU32,
}

/// Broadcast space line: read (one load, a shared line) by each subscriber
/// of a `block` ring after each read; written only when the publisher
/// sleeps or evicts someone.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct SpaceLine {
    /// Sleepers waiting for space (the publisher).
    pub(crate) space_waiters: ring_atomic::AtomicU32,
    /// Zero; reserved.
    pub(crate) reserved: ring_atomic::AtomicU32,
    /// Subscribers evicted so far (for `stat`).
    pub(crate) evictions: ring_atomic::AtomicU64,
}

/// One broadcast role's line (after the [`BroadcastControl`] lines, one per
/// role, the publisher's first and unused). Written by the role's holder,
/// except `evicted`, which only the publisher writes.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct SubscriberLine {
    /// Sequence number of the next message this subscriber reads (release
    /// after each read; SeqCst while joining).
    pub(crate) pos: ring_atomic::AtomicU64,
    /// Bumped by the holder each time it joins (attach, or rejoin after an
    /// eviction), so an eviction names the join it applies to.
    pub(crate) epoch: ring_atomic::AtomicU64,
    /// The epoch the publisher evicted (0: none); the subscriber is skipped
    /// while this equals `epoch`.
    pub(crate) evicted: ring_atomic::AtomicU64,
    /// Messages this role's holders missed (lapped or evicted), for `stat`.
    pub(crate) missed: ring_atomic::AtomicU64,
    /// Times this role's holders were evicted, for `stat`.
    pub(crate) evictions: ring_atomic::AtomicU64,
}

/// The fixed part of a broadcast ring's control area; the subscriber lines
/// follow.
#[repr(C)]
#[derive(Debug)]
pub struct BroadcastControl {
    /// Line 0.
    pub(crate) publisher: PublisherLine,
    /// Line 1.
    pub(crate) space: SpaceLine,
    /// Lines 2 and 3: sleepers waiting for data, then for space.
    pub(crate) waits: [WaitLine; 2],
}

/// Bytes of [`BroadcastControl`].
pub const BROADCAST_CONTROL_SIZE: usize = 4 * LINE;
/// Offsets in a [`SubscriberLine`], for readers that `pread` them.
pub const SUB_POS_WORD: usize = 0;
/// See [`SUB_POS_WORD`].
pub const SUB_EPOCH_WORD: usize = 8;
/// See [`SUB_POS_WORD`].
pub const SUB_EVICTED_WORD: usize = 16;
/// See [`SUB_POS_WORD`].
pub const SUB_MISSED_WORD: usize = 24;
/// See [`SUB_POS_WORD`].
pub const SUB_EVICTIONS_WORD: usize = 32;
/// Offset of `floor` in a [`PublisherLine`].
pub const FLOOR_WORD: usize = 8;

/// Control line of the producer (SPSC) or enqueue (MPMC) index.
pub const PRODUCER_LINE: usize = 0;
/// Control line of the consumer (SPSC) or dequeue (MPMC) index.
pub const CONSUMER_LINE: usize = 1;
/// Control line of the first wait line (data; the space one follows).
pub const WAIT_LINES: usize = 2;
/// MPMC control area: index of the statistics line (skipped, redelivered).
pub const MPMC_STATS_LINE: usize = 4;
/// MPMC control area: index of the first claim line (one per role,
/// producers first).
pub const MPMC_CLAIMS_LINE: usize = 5;
/// Offset of the index (tail/head) in a producer or consumer line.
pub const INDEX_WORD: usize = 0;
/// Offset of the message count in a producer or consumer line.
pub const COUNT_WORD: usize = 8;
/// Offset of the waiter count in a producer or consumer line.
pub const WAITERS_WORD: usize = 16;
/// Offset of the [`Receipt`] in a consumer line.
pub const RECEIPT_WORD: usize = 24;
/// Offset of the [`Receipt`] in a claim line.
pub const CLAIM_RECEIPT_WORD: usize = 16;
/// Bytes of [`MpmcControl`].
pub const MPMC_CONTROL_SIZE: usize = MPMC_CLAIMS_LINE * LINE;
/// Offsets of the [`WaitLine`] counters, for readers that `pread` them.
pub const WAIT_WAKEUPS_WORD: usize = 8;
/// See [`WAIT_WAKEUPS_WORD`].
pub const WAIT_SLEEPS_WORD: usize = 16;
/// See [`WAIT_WAKEUPS_WORD`].
pub const WAIT_SPURIOUS_WORD: usize = 24;
/// Offset of `skipped` in [`Stats`].
pub const STATS_SKIPPED_WORD: usize = 0;
/// Offset of `redelivered` in [`Stats`].
pub const STATS_REDELIVERED_WORD: usize = 8;

impl Receipt {
    /// Writes a receipt ending at position `at` (not `u64::MAX`): clears
    /// it, stores the words, then `at + 1` with release, so a successor
    /// that reads `at` (acquire) reads the words that go with it.
    pub(crate) fn write(&self, at: u64, words: [u64; 4]) {
        // Relaxed: the release store below publishes both.
        self.at.store(0, ring_atomic::Ordering::Relaxed);
        for (slot, w) in self.words.iter().zip(words) {
            slot.store(w, ring_atomic::Ordering::Relaxed);
        }
        self.at
            .store(at.wrapping_add(1), ring_atomic::Ordering::Release);
    }

    /// Clears the receipt.
    pub(crate) fn clear(&self) {
        // Relaxed: only the role's next holder reads it, after taking the
        // role's lock (a system call that orders it after our stores).
        self.at.store(0, ring_atomic::Ordering::Relaxed);
    }

    /// The receipt's position and words, if one is there. Untrusted: the
    /// caller checks the position against what it holds.
    pub(crate) fn read(&self) -> Option<(u64, [u64; 4])> {
        // Acquire: pairs with the release store of `at` in `write`.
        let at = self
            .at
            .load(ring_atomic::Ordering::Acquire)
            .checked_sub(1)?;
        let words = std::array::from_fn(|i| self.words[i].load(ring_atomic::Ordering::Relaxed));
        Some((at, words))
    }
}

/// The control lines' offsets. With loom's atomics the sizes differ (the
/// models build these on the heap), so they are checked for `std` only.
#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<ProducerLine>() == LINE && align_of::<ProducerLine>() == LINE);
    assert!(offset_of!(ProducerLine, tail) == INDEX_WORD);
    assert!(offset_of!(ProducerLine, produced) == COUNT_WORD);
    assert!(offset_of!(ProducerLine, data_waiters) == WAITERS_WORD);
    assert!(size_of::<ConsumerLine>() == LINE && align_of::<ConsumerLine>() == LINE);
    assert!(offset_of!(ConsumerLine, head) == INDEX_WORD);
    assert!(offset_of!(ConsumerLine, consumed) == COUNT_WORD);
    assert!(offset_of!(ConsumerLine, space_waiters) == WAITERS_WORD);
    assert!(offset_of!(ConsumerLine, receipt) == RECEIPT_WORD);
    assert!(size_of::<Receipt>() == 40 && offset_of!(Receipt, words) == 8);
    assert!(size_of::<WaitLine>() == LINE && align_of::<WaitLine>() == LINE);
    assert!(offset_of!(WaitLine, seq) == 0);
    assert!(offset_of!(WaitLine, reserved) == 4);
    assert!(offset_of!(WaitLine, wakeups) == WAIT_WAKEUPS_WORD);
    assert!(offset_of!(WaitLine, sleeps) == WAIT_SLEEPS_WORD);
    assert!(offset_of!(WaitLine, spurious) == WAIT_SPURIOUS_WORD);
    assert!(size_of::<SpscControl>() == SPSC_CONTROL_SIZE);
    assert!(offset_of!(SpscControl, producer) == PRODUCER_LINE * LINE);
    assert!(offset_of!(SpscControl, consumer) == CONSUMER_LINE * LINE);
    assert!(offset_of!(SpscControl, waits) == WAIT_LINES * LINE);
    assert!(size_of::<EnqueueLine>() == LINE && align_of::<EnqueueLine>() == LINE);
    assert!(offset_of!(EnqueueLine, tail) == INDEX_WORD);
    assert!(offset_of!(EnqueueLine, data_waiters) == WAITERS_WORD);
    assert!(size_of::<DequeueLine>() == LINE && align_of::<DequeueLine>() == LINE);
    assert!(offset_of!(DequeueLine, head) == INDEX_WORD);
    assert!(offset_of!(DequeueLine, space_waiters) == WAITERS_WORD);
    assert!(size_of::<Stats>() == LINE && align_of::<Stats>() == LINE);
    assert!(offset_of!(Stats, skipped) == STATS_SKIPPED_WORD);
    assert!(offset_of!(Stats, redelivered) == STATS_REDELIVERED_WORD);
    assert!(size_of::<ClaimLine>() == LINE && align_of::<ClaimLine>() == LINE);
    assert!(offset_of!(ClaimLine, pos) == 0);
    assert!(offset_of!(ClaimLine, len) == 8);
    assert!(offset_of!(ClaimLine, receipt) == CLAIM_RECEIPT_WORD);
    assert!(size_of::<MpmcControl>() == MPMC_CONTROL_SIZE);
    assert!(offset_of!(MpmcControl, enqueue) == PRODUCER_LINE * LINE);
    assert!(offset_of!(MpmcControl, dequeue) == CONSUMER_LINE * LINE);
    assert!(offset_of!(MpmcControl, waits) == WAIT_LINES * LINE);
    assert!(offset_of!(MpmcControl, stats) == MPMC_STATS_LINE * LINE);
    assert!(size_of::<PublisherLine>() == LINE && align_of::<PublisherLine>() == LINE);
    assert!(offset_of!(PublisherLine, tail) == INDEX_WORD);
    assert!(offset_of!(PublisherLine, floor) == FLOOR_WORD);
    assert!(offset_of!(PublisherLine, data_waiters) == WAITERS_WORD);
    assert!(size_of::<SpaceLine>() == LINE && align_of::<SpaceLine>() == LINE);
    assert!(offset_of!(SpaceLine, space_waiters) == 0);
    assert!(offset_of!(SpaceLine, evictions) == 8);
    assert!(size_of::<SubscriberLine>() == LINE && align_of::<SubscriberLine>() == LINE);
    assert!(offset_of!(SubscriberLine, pos) == SUB_POS_WORD);
    assert!(offset_of!(SubscriberLine, epoch) == SUB_EPOCH_WORD);
    assert!(offset_of!(SubscriberLine, evicted) == SUB_EVICTED_WORD);
    assert!(offset_of!(SubscriberLine, missed) == SUB_MISSED_WORD);
    assert!(offset_of!(SubscriberLine, evictions) == SUB_EVICTIONS_WORD);
    assert!(size_of::<BroadcastControl>() == BROADCAST_CONTROL_SIZE);
    assert!(offset_of!(BroadcastControl, publisher) == PRODUCER_LINE * LINE);
    assert!(offset_of!(BroadcastControl, space) == CONSUMER_LINE * LINE);
    assert!(offset_of!(BroadcastControl, waits) == WAIT_LINES * LINE);
};

/// Zeroed control lines on the heap, for loom models.
#[cfg(all(test, loom))]
mod model_support {
    use super::*;
    use ring_atomic::{AtomicU32, AtomicU64};

    impl WaitLine {
        pub(crate) fn new_for_model() -> WaitLine {
            WaitLine {
                seq: AtomicU32::new(0),
                reserved: AtomicU32::new(0),
                wakeups: AtomicU64::new(0),
                sleeps: AtomicU64::new(0),
                spurious: AtomicU64::new(0),
            }
        }
    }

    impl Receipt {
        pub(crate) fn new_for_model() -> Receipt {
            Receipt {
                at: AtomicU64::new(0),
                words: std::array::from_fn(|_| AtomicU64::new(0)),
            }
        }
    }

    impl SpscControl {
        pub(crate) fn new_for_model() -> SpscControl {
            SpscControl {
                producer: ProducerLine {
                    tail: AtomicU64::new(0),
                    produced: AtomicU64::new(0),
                    data_waiters: AtomicU32::new(0),
                },
                consumer: ConsumerLine {
                    head: AtomicU64::new(0),
                    consumed: AtomicU64::new(0),
                    space_waiters: AtomicU32::new(0),
                    receipt: Receipt::new_for_model(),
                },
                waits: [WaitLine::new_for_model(), WaitLine::new_for_model()],
            }
        }
    }

    impl MpmcControl {
        pub(crate) fn new_for_model() -> MpmcControl {
            MpmcControl {
                enqueue: EnqueueLine {
                    tail: AtomicU64::new(0),
                    reserved: AtomicU64::new(0),
                    data_waiters: AtomicU32::new(0),
                },
                dequeue: DequeueLine {
                    head: AtomicU64::new(0),
                    reserved: AtomicU64::new(0),
                    space_waiters: AtomicU32::new(0),
                },
                waits: [WaitLine::new_for_model(), WaitLine::new_for_model()],
                stats: Stats {
                    skipped: AtomicU64::new(0),
                    redelivered: AtomicU64::new(0),
                },
            }
        }
    }

    impl BroadcastControl {
        pub(crate) fn new_for_model() -> BroadcastControl {
            BroadcastControl {
                publisher: PublisherLine {
                    tail: AtomicU64::new(0),
                    floor: AtomicU64::new(0),
                    data_waiters: AtomicU32::new(0),
                },
                space: SpaceLine {
                    space_waiters: AtomicU32::new(0),
                    reserved: AtomicU32::new(0),
                    evictions: AtomicU64::new(0),
                },
                waits: [WaitLine::new_for_model(), WaitLine::new_for_model()],
            }
        }
    }

    impl SubscriberLine {
        pub(crate) fn new_for_model() -> SubscriberLine {
            SubscriberLine {
                pos: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                missed: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            }
        }
    }

    impl ClaimLine {
        pub(crate) fn new_for_model() -> ClaimLine {
            ClaimLine {
                pos: AtomicU64::new(0),
                len: AtomicU64::new(0),
                receipt: Receipt::new_for_model(),
            }
        }
    }
}
