//! Every `#[repr(C)]` structure that lives in shared memory, with its
//! offsets checked at compile time, and the computation and validation of a
//! ring's shape (DESIGN.md, "Shared-memory rules").
//!
//! The segment is, in order: the header (below), the role records
//! ([`RoleRecord`]), the per-kind control lines ([`SpscControl`] for SPSC and
//! frame rings; [`MpmcControl`] then one [`ClaimLine`] per role for MPMC
//! rings), then the data area.
//!
//! # The header
//!
//! The header has two parts:
//!
//! * the **descriptor** (bytes 0..256): written once by the creator while it
//!   holds the exclusive initialization lock, never changed afterwards. An
//!   attaching process copies it out (with `pread`, before mapping anything),
//!   validates the copy and from then on uses only its private copy, so a peer
//!   that later scribbles over the descriptor cannot change how this process
//!   computes addresses.
//! * the **live line** (bytes 256..384): atomics that change after creation
//!   (the initialization state, the "removed" mark). Only ever accessed through
//!   atomic operations.
//!
//! Everything is `#[repr(C)]` and made of fixed-width integers; the offsets are
//! checked at compile time below. Any change to this layout bumps
//! [`VERSION_MAJOR`] (incompatible) or [`VERSION_MINOR`] (new fields in reserved
//! space that older readers may ignore).

use std::path::Path;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use std::sync::atomic::AtomicU32;

/// The control-line atomics: `std`'s, or loom's in loom models (which build
/// these structures on the heap). Their sizes are asserted only for `std`.
use crate::sync::atomic as ring_atomic;

/// First eight bytes of every ring: `b"SHMRING\x01"` read as little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\x01");
/// Layout major version: a reader refuses any other major.
pub const VERSION_MAJOR: u16 = 1;
/// Layout minor version: additions that older readers refuse cleanly or may
/// ignore; readers accept any minor. 1.1 added [`Kind::Mpmc`] (a 1.0 reader
/// refuses it as an unknown kind). 1.2 records the message type's name
/// ([`Descriptor::type_name`], in space that was reserved and zero, so a
/// 1.1 reader ignores it and a ring written by 1.1 has no name).
pub const VERSION_MINOR: u16 = 2;

/// Bytes of [`Descriptor::type_name`].
pub const TYPE_NAME_LEN: usize = 64;

/// Bytes reserved for the header (descriptor + live line + spare).
pub const HEADER_SIZE: usize = 512;
/// Bytes of the descriptor part.
pub const DESCRIPTOR_SIZE: usize = 256;
/// Offset of the live line.
pub const LIVE_OFFSET: usize = 256;
/// Size of one role record.
pub const ROLE_RECORD_SIZE: usize = 64;
/// The alignment every shared region starts on: two cache lines, so that
/// adjacent-line prefetching never couples two regions (DESIGN.md rule 2).
pub const LINE: usize = 128;
/// Page size that object sizes are rounded to.
pub const PAGE: usize = 4096;

/// `state` value while the creator is still writing the header.
pub const STATE_INITIALIZING: u32 = 0;
/// `state` value once the header and the ring are ready ("REDY").
pub const STATE_READY: u32 = 0x5944_4552;

/// Descriptor flag: the ring is kept when its last user detaches.
pub const FLAG_PERSISTENT: u32 = 1 << 0;
/// Backing bits 0..2: huge pages were not asked for.
pub const BACKING_HUGE_OFF: u32 = 0;
/// Backing bits 0..2: huge pages preferred (fall back to normal pages).
pub const BACKING_HUGE_PREFER: u32 = 1;
/// Backing bits 0..2: huge pages required.
pub const BACKING_HUGE_REQUIRE: u32 = 2;
/// Mask of the huge-page request.
pub const BACKING_HUGE_MASK: u32 = 3;
/// Backing bit: pages are prefaulted (`MAP_POPULATE`) on every attach.
pub const BACKING_POPULATE: u32 = 1 << 2;
/// Backing bit: pages are locked (`mlock`) on every attach.
pub const BACKING_LOCK: u32 = 1 << 3;
/// Backing bit: an anonymous memfd, not a named file.
pub const BACKING_MEMFD: u32 = 1 << 4;
/// Backing bit: huge pages are in use (hugetlbfs, or transparent huge
/// pages advised on shmem).
pub const BACKING_HUGE_ACTIVE: u32 = 1 << 5;
/// Every backing bit this version understands (plus the fallback code).
pub const KNOWN_BACKING: u32 = 0x3f | 0xff00;

/// Why preferred huge pages were not used, recorded at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeFallback {
    /// Transparent huge pages for shared memory are disabled
    /// (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`).
    ShmemThpDisabled,
    /// Not enough free huge pages (`HugePages_Free`).
    NoFreePages,
}

impl HugeFallback {
    /// The code stored in bits 8..16 of `backing`.
    pub const fn code(self) -> u32 {
        match self {
            HugeFallback::ShmemThpDisabled => 1,
            HugeFallback::NoFreePages => 2,
        }
    }

    /// Decodes bits 8..16 of `backing`.
    pub const fn from_backing(backing: u32) -> Option<HugeFallback> {
        match (backing >> 8) & 0xff {
            1 => Some(HugeFallback::ShmemThpDisabled),
            2 => Some(HugeFallback::NoFreePages),
            _ => None,
        }
    }

    /// In words, for `stat` and the log.
    pub const fn describe(self) -> &'static str {
        match self {
            HugeFallback::ShmemThpDisabled => {
                "transparent huge pages for shared memory are disabled (/sys/kernel/mm/transparent_hugepage/shmem_enabled); normal pages used"
            }
            HugeFallback::NoFreePages => {
                "not enough free huge pages (HugePages_Free); normal pages used"
            }
        }
    }
}

/// All flags this version understands.
pub const KNOWN_FLAGS: u32 = FLAG_PERSISTENT;

/// Largest capacity (slots or bytes) a ring may have: 2^40.
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Largest slot (message) size: 1 MiB.
pub const MAX_SLOT_SIZE: u32 = 1 << 20;
/// Largest slot alignment.
pub const MAX_SLOT_ALIGN: u32 = 4096;
/// Largest number of producer or consumer roles.
pub const MAX_ROLES: u32 = 1024;
/// Producer and consumer roles of an MPMC ring unless the creator says
/// otherwise.
pub const DEFAULT_MPMC_ROLES: u32 = 64;
/// Largest object size: 1 TiB.
pub const MAX_TOTAL_SIZE: u64 = 1 << 40;

/// What a ring holds and how it is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Single producer, single consumer, fixed-size typed slots.
    Spsc,
    /// Single producer, single consumer, variable-length byte frames.
    Frames,
    /// Many producers, many consumers, fixed-size typed slots each with a
    /// sequence number.
    Mpmc,
}

impl Kind {
    /// The value stored in the header.
    pub const fn code(self) -> u32 {
        match self {
            Kind::Spsc => 1,
            Kind::Frames => 2,
            Kind::Mpmc => 3,
        }
    }

    /// Decodes a header value.
    pub const fn from_code(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Frames),
            3 => Some(Kind::Mpmc),
            _ => None,
        }
    }

    /// The name used by the CLI and in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Spsc => "spsc",
            Kind::Frames => "frames",
            Kind::Mpmc => "mpmc",
        }
    }

    /// What [`Layout::capacity`] counts: "slots", or "bytes" for frame
    /// rings.
    pub const fn capacity_unit(self) -> &'static str {
        match self {
            Kind::Frames => "bytes",
            Kind::Spsc | Kind::Mpmc => "slots",
        }
    }

    /// Bytes of per-kind control lines (indices, wait words, claims) before
    /// the data, for a ring with `roles` roles.
    const fn control_size(self, roles: u32) -> usize {
        match self {
            // producer line, consumer line, two wait lines
            Kind::Spsc | Kind::Frames => SPSC_CONTROL_SIZE,
            // enqueue line, dequeue line, two wait lines, the statistics
            // line, then one claim line per role (see `mpmc`)
            Kind::Mpmc => MPMC_CONTROL_SIZE + roles as usize * LINE,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The descriptor: written once at creation, then read-only.
///
/// `Pod`, so a copy can be made from any 256 bytes and validated afterwards.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct Descriptor {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION_MAJOR`] of the writer.
    pub version_major: u16,
    /// [`VERSION_MINOR`] of the writer.
    pub version_minor: u16,
    /// [`HEADER_SIZE`] of the writer.
    pub header_size: u32,
    /// [`Kind::code`].
    pub kind: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Size of the object in bytes, as created (the `fstat` size must match).
    pub total_size: u64,
    /// Number of slots (typed rings) or bytes (frame rings); a power of two.
    pub capacity: u64,
    /// Size of one message in bytes (`size_of::<T>()`; 1 for frame rings).
    pub slot_size: u32,
    /// Alignment of one message (`align_of::<T>()`).
    pub slot_align: u32,
    /// Caller-chosen or derived identifier of the message type.
    pub type_id: u64,
    /// Offset of the role records.
    pub roles_offset: u64,
    /// Offset of the per-kind control lines.
    pub control_offset: u64,
    /// Offset of the slots / byte area.
    pub data_offset: u64,
    /// Bytes of the slot / byte area.
    pub data_size: u64,
    /// Number of producer roles (1 for SPSC).
    pub max_producers: u32,
    /// Number of consumer roles (1 for SPSC).
    pub max_consumers: u32,
    /// Pid of the creating process.
    pub creator_pid: u32,
    /// Permission bits the object was created with.
    pub mode: u32,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// A number unique to this object among all objects ever created under
    /// this name (time-based), so that a re-created ring is told apart even
    /// if the file system reuses the inode number.
    pub generation: u64,
    /// How the memory is backed and treated: `BACKING_*` bits, and in bits
    /// 8..16 a [`HugeFallback`] code when huge pages were preferred but not
    /// used.
    pub backing: u32,
    /// Size in KiB of the pages backing the object (4 for normal pages,
    /// 2048 for 2 MiB huge pages); the object's size is a multiple of it.
    pub page_size_kib: u32,
    /// The message type's name (`Message::NAME`, printable ASCII), padded
    /// with zero bytes; all zero for byte rings and rings written before
    /// layout 1.2. Informative: [`type_id`](Self::type_id) already covers
    /// the name, and readers never rely on it.
    pub type_name: [u8; TYPE_NAME_LEN],
    /// Zero; room for minor-version additions.
    pub reserved: [u64; 8],
}

impl Descriptor {
    /// The recorded message type name, if any, with anything but printable
    /// ASCII shown as `?` (a peer may have written anything there).
    pub fn type_name(&self) -> Option<String> {
        let len = self
            .type_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(TYPE_NAME_LEN);
        if len == 0 {
            return None;
        }
        Some(
            self.type_name[..len]
                .iter()
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .collect(),
        )
    }
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Descriptor>() == DESCRIPTOR_SIZE);
    assert!(offset_of!(Descriptor, magic) == 0);
    assert!(offset_of!(Descriptor, version_major) == 8);
    assert!(offset_of!(Descriptor, version_minor) == 10);
    assert!(offset_of!(Descriptor, header_size) == 12);
    assert!(offset_of!(Descriptor, kind) == 16);
    assert!(offset_of!(Descriptor, flags) == 20);
    assert!(offset_of!(Descriptor, total_size) == 24);
    assert!(offset_of!(Descriptor, capacity) == 32);
    assert!(offset_of!(Descriptor, slot_size) == 40);
    assert!(offset_of!(Descriptor, slot_align) == 44);
    assert!(offset_of!(Descriptor, type_id) == 48);
    assert!(offset_of!(Descriptor, roles_offset) == 56);
    assert!(offset_of!(Descriptor, control_offset) == 64);
    assert!(offset_of!(Descriptor, data_offset) == 72);
    assert!(offset_of!(Descriptor, data_size) == 80);
    assert!(offset_of!(Descriptor, max_producers) == 88);
    assert!(offset_of!(Descriptor, max_consumers) == 92);
    assert!(offset_of!(Descriptor, creator_pid) == 96);
    assert!(offset_of!(Descriptor, mode) == 100);
    assert!(offset_of!(Descriptor, created_unix_ns) == 104);
    assert!(offset_of!(Descriptor, generation) == 112);
    assert!(offset_of!(Descriptor, backing) == 120);
    assert!(offset_of!(Descriptor, page_size_kib) == 124);
    assert!(offset_of!(Descriptor, type_name) == 128);
    assert!(offset_of!(Descriptor, reserved) == 192);
};

/// The live line of the header: atomics only.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct Live {
    /// [`STATE_INITIALIZING`] until the creator publishes [`STATE_READY`]
    /// with a release store (after every other header and ring word is
    /// written); readers load it with acquire.
    pub state: AtomicU32,
    /// Set to non-zero (release) by whoever unlinks the name while handles
    /// may still be attached (`rm --force`), so that [`is_current`] answers
    /// without a system call in that case.
    ///
    /// [`is_current`]: crate::Segment::is_current
    pub removed: AtomicU32,
    /// Bumped (release) by every role holder that detaches cleanly, after
    /// marking its record: a side watching many peers reloads this one word
    /// per idle poll and scans the peers' records only when it changed
    /// (or, for crashed peers, on a slower schedule).
    pub detaches: AtomicU32,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Live>() == LINE);
    assert!(align_of::<Live>() == LINE);
    assert!(offset_of!(Live, state) == 0);
    assert!(offset_of!(Live, removed) == 4);
    assert!(offset_of!(Live, detaches) == 8);
    assert!(LIVE_OFFSET.is_multiple_of(LINE));
    assert!(LIVE_OFFSET + LINE <= HEADER_SIZE);
    assert!(HEADER_SIZE <= PAGE);
};

/// One role's record: who holds it and whether it left cleanly.
///
/// The holder's OFD byte-range lock is the authority on liveness; the record
/// only carries what a lock cannot: the holder's pid for `stat`, and a clean
/// "detached" mark so a peer can tell "gone" from "crashed" without a system
/// call.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct RoleRecord {
    /// Pid of the current or last holder (0: never held).
    pub pid: AtomicU32,
    /// [`ROLE_NEVER`], [`ROLE_ATTACHED`] or [`ROLE_DETACHED`].
    pub state: AtomicU32,
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<RoleRecord>() == ROLE_RECORD_SIZE);
    assert!(offset_of!(RoleRecord, pid) == 0);
    assert!(offset_of!(RoleRecord, state) == 4);
};

/// Role record state: never held.
pub const ROLE_NEVER: u32 = 0;
/// Role record state: held by a live handle (or by one that crashed).
pub const ROLE_ATTACHED: u32 = 1;
/// Role record state: its last holder detached cleanly.
pub const ROLE_DETACHED: u32 = 2;

// ---------------------------------------------------------------------------
// Control lines (at `control_offset`, 128-byte aligned)
// ---------------------------------------------------------------------------

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
    assert!(size_of::<MpmcControl>() == MPMC_CONTROL_SIZE);
    assert!(offset_of!(MpmcControl, enqueue) == PRODUCER_LINE * LINE);
    assert!(offset_of!(MpmcControl, dequeue) == CONSUMER_LINE * LINE);
    assert!(offset_of!(MpmcControl, waits) == WAIT_LINES * LINE);
    assert!(offset_of!(MpmcControl, stats) == MPMC_STATS_LINE * LINE);
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

    impl ClaimLine {
        pub(crate) fn new_for_model() -> ClaimLine {
            ClaimLine {
                pos: AtomicU64::new(0),
                len: AtomicU64::new(0),
            }
        }
    }
}

/// The shape of a ring, computed from its parameters; the header's
/// offsets and sizes must equal what this computes.
///
/// Only the checked constructors ([`Layout::new`], [`Layout::with_roles`],
/// and `validate` for a header) build one, so every `Layout` is
/// consistent; its fields are read through getters. A forged layout does
/// not compile:
///
/// ```compile_fail
/// let mut l = shmring::spsc::layout::<u64>(8)?;
/// l.capacity = 1 << 20;
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// What the ring holds.
    pub(crate) kind: Kind,
    /// Slots (typed) or bytes (frames); a power of two.
    pub(crate) capacity: u64,
    /// Bytes of one message (typed) or 1 (frames).
    pub(crate) slot_size: u32,
    /// Alignment of one message.
    pub(crate) slot_align: u32,
    /// Distance between two slots in the data area (typed rings).
    pub(crate) slot_stride: u64,
    /// Producer roles.
    pub(crate) max_producers: u32,
    /// Consumer roles.
    pub(crate) max_consumers: u32,
    /// Offset of the role records.
    pub(crate) roles_offset: u64,
    /// Offset of the control lines.
    pub(crate) control_offset: u64,
    /// Offset of the data area.
    pub(crate) data_offset: u64,
    /// Bytes of the data area.
    pub(crate) data_size: u64,
    /// Size of the whole object (a multiple of [`PAGE`]).
    pub(crate) total_size: u64,
}

fn round_up(value: u64, to: u64) -> Option<u64> {
    debug_assert!(to.is_power_of_two());
    Some(value.checked_add(to - 1)? & !(to - 1))
}

impl Layout {
    /// Computes the layout of a ring; every parameter is range-checked.
    /// MPMC rings get [`DEFAULT_MPMC_ROLES`] producer and consumer roles
    /// (see [`Layout::with_roles`]); the others have one of each.
    pub fn new(kind: Kind, capacity: u64, slot_size: u32, slot_align: u32) -> Result<Layout> {
        let roles = match kind {
            Kind::Mpmc => DEFAULT_MPMC_ROLES,
            Kind::Spsc | Kind::Frames => 1,
        };
        Layout::with_roles(kind, capacity, slot_size, slot_align, roles, roles)
    }

    /// Computes the layout of a ring with `producers` producer roles and
    /// `consumers` consumer roles (both 1 for SPSC and frame rings, 1 to
    /// [`MAX_ROLES`] for MPMC). Every parameter is range-checked, so this is
    /// also how an attaching process validates a header.
    pub fn with_roles(
        kind: Kind,
        capacity: u64,
        slot_size: u32,
        slot_align: u32,
        producers: u32,
        consumers: u32,
    ) -> Result<Layout> {
        let bad = |what: String| Err(Error::InvalidConfig { what });
        match kind {
            Kind::Spsc | Kind::Frames if producers != 1 || consumers != 1 => {
                return bad(format!(
                    "a {kind} ring has one producer and one consumer role, not {producers} and {consumers}"
                ));
            }
            Kind::Mpmc
                if !(1..=MAX_ROLES).contains(&producers)
                    || !(1..=MAX_ROLES).contains(&consumers) =>
            {
                return bad(format!(
                    "an mpmc ring has 1 to {MAX_ROLES} producer and consumer roles, not {producers} and {consumers}"
                ));
            }
            _ => {}
        }
        if !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
            return bad(format!(
                "capacity {capacity} must be a power of two between 1 and {MAX_CAPACITY}"
            ));
        }
        if slot_size == 0 || slot_size > MAX_SLOT_SIZE {
            return bad(format!(
                "slot size {slot_size} must be between 1 and {MAX_SLOT_SIZE} bytes"
            ));
        }
        if !slot_align.is_power_of_two() || slot_align > MAX_SLOT_ALIGN {
            return bad(format!(
                "slot alignment {slot_align} must be a power of two up to {MAX_SLOT_ALIGN}"
            ));
        }
        let (slot_stride, data_size) = match kind {
            Kind::Spsc => {
                // A contiguous array of messages, so that batches and
                // zero-copy grants are plain slices.
                let stride = round_up(u64::from(slot_size), u64::from(slot_align))
                    .expect("slot size and alignment are bounded");
                (stride, stride.checked_mul(capacity))
            }
            Kind::Frames => {
                if slot_size != 1 || slot_align != 1 {
                    return bad("frame rings have slot size 1 and alignment 1".into());
                }
                if capacity < 64 {
                    return bad(format!(
                        "frame ring capacity {capacity} must be at least 64 bytes"
                    ));
                }
                (1, Some(capacity))
            }
            Kind::Mpmc => {
                // Each slot: its sequence number, then the message at
                // `mpmc_payload_offset`.
                let stride = round_up(
                    mpmc_payload_offset(slot_align) + u64::from(slot_size),
                    u64::from(slot_align.max(8)),
                )
                .expect("slot size and alignment are bounded");
                (stride, stride.checked_mul(capacity))
            }
        };
        let roles = producers + consumers;
        let roles_offset = HEADER_SIZE as u64;
        let control_offset = round_up(
            roles_offset + u64::from(roles) * ROLE_RECORD_SIZE as u64,
            LINE as u64,
        )
        .expect("bounded by MAX_ROLES");
        let data_align = u64::from(slot_align).max(LINE as u64);
        let data_offset = round_up(control_offset + kind.control_size(roles) as u64, data_align)
            .expect("bounded by MAX_SLOT_ALIGN and MAX_ROLES");
        let total = data_size
            .and_then(|d| d.checked_add(data_offset))
            .and_then(|t| round_up(t, PAGE as u64))
            .filter(|&t| t <= MAX_TOTAL_SIZE);
        let Some(total_size) = total else {
            return bad(format!(
                "a ring of {capacity} x {slot_size} bytes exceeds the {MAX_TOTAL_SIZE}-byte limit"
            ));
        };
        Ok(Layout {
            kind,
            capacity,
            slot_size,
            slot_align,
            slot_stride,
            max_producers: producers,
            max_consumers: consumers,
            roles_offset,
            control_offset,
            data_offset,
            data_size: data_size.expect("checked above"),
            total_size,
        })
    }

    /// What the ring holds.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Slots (typed) or bytes (frames); a power of two.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes of one message (typed) or 1 (frames).
    pub fn slot_size(&self) -> u32 {
        self.slot_size
    }

    /// Alignment of one message.
    pub fn slot_align(&self) -> u32 {
        self.slot_align
    }

    /// Distance between two slots in the data area (typed rings).
    pub fn slot_stride(&self) -> u64 {
        self.slot_stride
    }

    /// Producer roles.
    pub fn max_producers(&self) -> u32 {
        self.max_producers
    }

    /// Consumer roles.
    pub fn max_consumers(&self) -> u32 {
        self.max_consumers
    }

    /// Offset of the role records.
    pub fn roles_offset(&self) -> u64 {
        self.roles_offset
    }

    /// Offset of the control lines.
    pub fn control_offset(&self) -> u64 {
        self.control_offset
    }

    /// Offset of the data area.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Bytes of the data area.
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// Size of the whole object (a multiple of [`PAGE`], or of the backing
    /// page size once recorded in a header).
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Total number of roles (producers first, then consumers).
    pub fn roles(&self) -> u32 {
        self.max_producers + self.max_consumers
    }

    /// Offset of role `index`'s record.
    pub fn role_record_offset(&self, index: u32) -> u64 {
        self.roles_offset + u64::from(index) * ROLE_RECORD_SIZE as u64
    }
}

/// Offset of the message inside an MPMC slot: after the 8-byte sequence
/// number, aligned for the message.
pub const fn mpmc_payload_offset(slot_align: u32) -> u64 {
    if slot_align > 8 { slot_align as u64 } else { 8 }
}

/// Builds the descriptor a creator writes.
pub(crate) fn descriptor_for(
    layout: &Layout,
    type_id: u64,
    type_name: &str,
    flags: u32,
    mode: u32,
    pid: u32,
    now_ns: u64,
) -> Descriptor {
    Descriptor {
        magic: MAGIC,
        version_major: VERSION_MAJOR,
        version_minor: VERSION_MINOR,
        header_size: HEADER_SIZE as u32,
        kind: layout.kind.code(),
        flags,
        total_size: layout.total_size,
        capacity: layout.capacity,
        slot_size: layout.slot_size,
        slot_align: layout.slot_align,
        type_id,
        roles_offset: layout.roles_offset,
        control_offset: layout.control_offset,
        data_offset: layout.data_offset,
        data_size: layout.data_size,
        max_producers: layout.max_producers,
        max_consumers: layout.max_consumers,
        creator_pid: pid,
        mode,
        created_unix_ns: now_ns,
        generation: now_ns ^ (u64::from(pid) << 40),
        backing: 0,
        page_size_kib: (PAGE / 1024) as u32,
        type_name: {
            let mut bytes = [0; TYPE_NAME_LEN];
            let name = type_name.as_bytes();
            let n = name.len().min(TYPE_NAME_LEN);
            bytes[..n].copy_from_slice(&name[..n]);
            bytes
        },
        reserved: [0; 8],
    }
}

/// Validates a descriptor copied out of an object of `file_size` bytes and
/// returns the layout it describes. Each failure is its own error.
pub fn validate(desc: &Descriptor, path: &Path, file_size: u64) -> Result<Layout> {
    if desc.magic != MAGIC {
        return Err(Error::NotARing {
            path: path.to_path_buf(),
            found: desc.magic,
        });
    }
    if desc.version_major != VERSION_MAJOR {
        return Err(Error::VersionMismatch {
            path: path.to_path_buf(),
            found: (desc.version_major, desc.version_minor),
            supported: (VERSION_MAJOR, VERSION_MINOR),
        });
    }
    if desc.header_size != HEADER_SIZE as u32 {
        return Err(Error::corrupted(
            path,
            format!("header size {} (expected {HEADER_SIZE})", desc.header_size),
        ));
    }
    if desc.total_size != file_size {
        return Err(Error::SizeMismatch {
            path: path.to_path_buf(),
            recorded: desc.total_size,
            actual: file_size,
        });
    }
    let Some(kind) = Kind::from_code(desc.kind) else {
        let newer = if desc.version_minor > VERSION_MINOR {
            format!(
                " (made by shmring layout {}.{}, newer than this reader's {VERSION_MAJOR}.{VERSION_MINOR}: upgrade)",
                desc.version_major, desc.version_minor
            )
        } else {
            String::new()
        };
        return Err(Error::corrupted(
            path,
            format!("unknown ring kind {}{newer}", desc.kind),
        ));
    };
    if desc.flags & !KNOWN_FLAGS != 0 {
        return Err(Error::corrupted(
            path,
            format!("unknown flags {:#x}", desc.flags & !KNOWN_FLAGS),
        ));
    }
    let layout = Layout::with_roles(
        kind,
        desc.capacity,
        desc.slot_size,
        desc.slot_align,
        desc.max_producers,
        desc.max_consumers,
    )
    .map_err(|e| Error::corrupted(path, format!("layout out of range: {e}")))?;
    // The object may be larger than the layout needs: rounded up to its
    // backing page size (huge pages), never by a whole page or more.
    let page = u64::from(desc.page_size_kib) * 1024;
    if !page.is_power_of_two() || page < PAGE as u64 || page > 1 << 30 {
        return Err(Error::corrupted(
            path,
            format!("page size {} KiB", desc.page_size_kib),
        ));
    }
    if desc.backing & !KNOWN_BACKING != 0 {
        return Err(Error::corrupted(
            path,
            format!("unknown backing bits {:#x}", desc.backing & !KNOWN_BACKING),
        ));
    }
    let rounded = desc.total_size >= layout.total_size
        && desc.total_size.is_multiple_of(page)
        && desc.total_size - layout.total_size < page;
    let mut layout = layout;
    let consistent = rounded
        && layout.data_offset == desc.data_offset
        && layout.data_size == desc.data_size
        && layout.control_offset == desc.control_offset
        && layout.roles_offset == desc.roles_offset
        && layout.max_producers == desc.max_producers
        && layout.max_consumers == desc.max_consumers;
    if !consistent {
        return Err(Error::corrupted(
            path,
            format!(
                "layout fields disagree with each other (a {kind} ring of capacity {} and slot size {} is {} bytes with data at {}, header says {} bytes with data at {})",
                desc.capacity,
                desc.slot_size,
                layout.total_size,
                layout.data_offset,
                desc.total_size,
                desc.data_offset
            ),
        ));
    }
    layout.total_size = desc.total_size;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> (Layout, Descriptor) {
        let layout = Layout::new(Kind::Spsc, 64, 8, 8).unwrap();
        let desc = descriptor_for(&layout, 7, "t/v1", 0, 0o600, 1, 2);
        (layout, desc)
    }

    #[test]
    fn round_trip_validates() {
        let (layout, desc) = good();
        assert_eq!(
            validate(&desc, Path::new("x"), layout.total_size).unwrap(),
            layout
        );
        assert_eq!(layout.total_size % PAGE as u64, 0);
        assert_eq!(layout.slot_stride, 8);
        assert!(layout.data_offset % LINE as u64 == 0);
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let (layout, desc) = good();
        let p = Path::new("x");
        let mut d = desc;
        d.magic = 1;
        assert!(matches!(
            validate(&d, p, layout.total_size),
            Err(Error::NotARing { .. })
        ));
        let mut d = desc;
        d.version_major = 2;
        assert!(matches!(
            validate(&d, p, layout.total_size),
            Err(Error::VersionMismatch {
                found: (2, 1),
                supported: (VERSION_MAJOR, VERSION_MINOR),
                ..
            })
        ));
        assert!(matches!(
            validate(&desc, p, layout.total_size + 4096),
            Err(Error::SizeMismatch { .. })
        ));
        let mut d = desc;
        d.capacity = 63;
        assert!(matches!(
            validate(&d, p, layout.total_size),
            Err(Error::Corrupted { .. })
        ));
        let mut d = desc;
        d.data_offset += 8;
        assert!(matches!(
            validate(&d, p, layout.total_size),
            Err(Error::Corrupted { .. })
        ));
        let mut d = desc;
        d.kind = 99;
        assert!(matches!(
            validate(&d, p, layout.total_size),
            Err(Error::Corrupted { .. })
        ));
    }

    #[test]
    fn arbitrary_descriptors_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            let mut words = [0u64; DESCRIPTOR_SIZE / 8];
            for w in &mut words {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *w = x;
            }
            words[0] = MAGIC;
            let mut d: Descriptor = bytemuck::cast(words);
            d.version_major = VERSION_MAJOR;
            d.header_size = HEADER_SIZE as u32;
            d.kind = (x % 4) as u32;
            d.flags = 0;
            let _ = validate(&d, Path::new("x"), d.total_size);
        }
    }

    #[test]
    fn huge_parameters_are_refused_not_overflowed() {
        assert!(Layout::new(Kind::Spsc, 1 << 40, MAX_SLOT_SIZE, 8).is_err());
        assert!(Layout::new(Kind::Spsc, 3, 8, 8).is_err());
        assert!(Layout::new(Kind::Spsc, 4, 8, 3).is_err());
        assert!(Layout::new(Kind::Frames, 32, 1, 1).is_err());
        assert!(Layout::with_roles(Kind::Mpmc, 4, 8, 8, 0, 1).is_err());
        assert!(Layout::with_roles(Kind::Mpmc, 4, 8, 8, 1, MAX_ROLES + 1).is_err());
        assert!(Layout::with_roles(Kind::Spsc, 4, 8, 8, 2, 1).is_err());
    }

    #[test]
    fn mpmc_layout_has_claim_lines_and_aligned_slots() {
        let l = Layout::with_roles(Kind::Mpmc, 8, 24, 8, 3, 2).unwrap();
        assert_eq!(l.slot_stride, 32);
        assert_eq!(
            l.data_offset - l.control_offset,
            ((MPMC_CLAIMS_LINE + 5) * LINE) as u64
        );
        let l = Layout::with_roles(Kind::Mpmc, 8, 8, 64, 1, 1).unwrap();
        assert_eq!(mpmc_payload_offset(64), 64);
        assert_eq!(l.slot_stride, 128);
        let desc = descriptor_for(&l, 1, "", 0, 0o600, 1, 2);
        assert_eq!(validate(&desc, Path::new("x"), l.total_size).unwrap(), l);
    }
}
