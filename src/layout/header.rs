//! The header (descriptor and live line), the role records, and their
//! constants: sizes, states, flags and backing bits.

use std::sync::atomic::{AtomicU32, AtomicU64};

use bytemuck::{Pod, Zeroable};

// Names the doc comments link to.
#[cfg(doc)]
use super::{Kind, MAGIC, VERSION_MAJOR, VERSION_MINOR};

/// Bytes of [`Descriptor::type_name`].
pub const TYPE_NAME_LEN: usize = 64;

/// Bytes reserved for the header (descriptor + live line + spare).
pub const HEADER_SIZE: usize = 512;
/// Bytes of the descriptor part.
pub const DESCRIPTOR_SIZE: usize = 256;
/// Offset of the live line.
pub const LIVE_OFFSET: usize = 256;
/// Offset of the upstream line ([`UpstreamLine`], layout 1.5): the last
/// 128-byte line of the header, zero in rings written before 1.5.
pub const UPSTREAM_OFFSET: usize = 384;
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
    /// Broadcast rings (layout 1.4; zero elsewhere): what the publisher does
    /// when the slowest subscriber is a whole ring behind:
    /// [`OVERFLOW_BLOCK`] or [`OVERFLOW_OVERWRITE`].
    pub overflow: u32,
    /// Zero; room for minor-version additions.
    pub reserved_u32: u32,
    /// Broadcast rings in `block` mode: microseconds a live subscriber may
    /// keep the publisher waiting before it is evicted; 0: never.
    pub evict_after_us: u64,
    /// Zero; room for minor-version additions.
    pub reserved: [u64; 6],
}

/// [`Descriptor::overflow`]: the publisher waits for the slowest live
/// subscriber (lossless).
pub const OVERFLOW_BLOCK: u32 = 0;
/// [`Descriptor::overflow`]: the publisher never waits; lapped subscribers
/// are told how many messages they missed.
pub const OVERFLOW_OVERWRITE: u32 = 1;

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
    assert!(offset_of!(Descriptor, overflow) == 192);
    assert!(offset_of!(Descriptor, reserved_u32) == 196);
    assert!(offset_of!(Descriptor, evict_after_us) == 200);
    assert!(offset_of!(Descriptor, reserved) == 208);
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

/// [`UpstreamLine::state`]: never written.
pub const UPSTREAM_NEVER: u64 = 0;
/// [`UpstreamLine::state`]: the message the record describes is in the ring.
pub const UPSTREAM_LANDED: u64 = 1;
/// [`UpstreamLine::state`]: the writer was pushing the message the record
/// describes; it is in the ring if and only if the ring's producer position
/// moved past [`UpstreamLine::mark`].
pub const UPSTREAM_PENDING: u64 = 2;

/// The upstream line (layout 1.5): where a ring's messages come from when a
/// relay (a network bridge) produces them, so that `stat` shows what was lost
/// upstream and a restarted relay continues its predecessor's count exactly.
///
/// Written only by the process that holds it ([`writer`](Self::writer)),
/// under a sequence lock ([`version`](Self::version)): every other word is
/// stored between the two increments, and a reader accepts a copy only if it
/// saw the same even version before and after reading. Atomics only; every
/// value is a plain number for display, except `writer` (a pid, range-checked
/// before it is used) and `mark` (compared, never used as an index).
#[repr(C, align(128))]
#[derive(Debug)]
pub struct UpstreamLine {
    /// Sequence lock: odd while the writer updates the other words.
    pub version: AtomicU64,
    /// Pid of the process that holds the record (0: nobody).
    pub writer: AtomicU32,
    /// Zero.
    pub reserved_u32: AtomicU32,
    /// [`UPSTREAM_NEVER`], [`UPSTREAM_LANDED`] or [`UPSTREAM_PENDING`].
    pub state: AtomicU64,
    /// The source's session number of the last message.
    pub session: AtomicU64,
    /// The source's sequence number of the last message.
    pub last_seq: AtomicU64,
    /// Messages the sequence numbers say were lost before reaching this ring,
    /// over every relay run that held the record.
    pub gaps: AtomicU64,
    /// Messages relayed into this ring (counting the last one).
    pub delivered: AtomicU64,
    /// The ring's producer position just before the last message's push.
    pub mark: AtomicU64,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<UpstreamLine>() == LINE);
    assert!(align_of::<UpstreamLine>() == LINE);
    assert!(offset_of!(UpstreamLine, version) == 0);
    assert!(offset_of!(UpstreamLine, writer) == 8);
    assert!(offset_of!(UpstreamLine, reserved_u32) == 12);
    assert!(offset_of!(UpstreamLine, state) == 16);
    assert!(offset_of!(UpstreamLine, session) == 24);
    assert!(offset_of!(UpstreamLine, last_seq) == 32);
    assert!(offset_of!(UpstreamLine, gaps) == 40);
    assert!(offset_of!(UpstreamLine, delivered) == 48);
    assert!(offset_of!(UpstreamLine, mark) == 56);
    assert!(UPSTREAM_OFFSET == LIVE_OFFSET + LINE);
    assert!(UPSTREAM_OFFSET + LINE == HEADER_SIZE);
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
