//! A ring's shape: its kind, the [`Layout`] computed from its parameters
//! and limits, the descriptor a creator writes, and the validation of a
//! descriptor read back.

use std::path::Path;

use std::time::Duration;

use super::control::{BROADCAST_CONTROL_SIZE, MPMC_CONTROL_SIZE, SPSC_CONTROL_SIZE};
use super::header::{
    Descriptor, HEADER_SIZE, KNOWN_BACKING, KNOWN_FLAGS, LINE, OVERFLOW_BLOCK, OVERFLOW_OVERWRITE,
    PAGE, ROLE_RECORD_SIZE, TYPE_NAME_LEN,
};
use super::{MAGIC, VERSION_MAJOR, VERSION_MINOR};
use crate::error::{Error, Result};

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
/// Subscriber roles of a broadcast ring unless the creator says otherwise.
pub const DEFAULT_SUBSCRIBERS: u32 = 32;
/// Longest eviction delay a broadcast ring records: about 49 days.
pub const MAX_EVICT_AFTER: Duration = Duration::from_secs(1 << 22);
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
    /// One publisher, many subscribers, each of which sees every message:
    /// fixed-size slots (typed messages, or byte messages up to the slot
    /// size) each with a sequence number.
    Broadcast,
}

/// What a broadcast ring's publisher does when the slowest subscriber is a
/// whole ring behind. Chosen at creation, recorded in the header, shown by
/// `stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// Lossless: the publisher never overwrites a message a live subscriber
    /// has not read; it waits. A subscriber that dies stops counting at once
    /// (its role lock is gone). With `evict_after`, a live subscriber that
    /// keeps the publisher waiting that long is evicted: it is skipped from
    /// then on, and its next read that lost a message says so
    /// (`Evicted { missed }`) and continues at the newest message.
    Block {
        /// How long one subscriber may keep the publisher waiting; `None`:
        /// forever (the user asked for strict lockstep).
        evict_after: Option<Duration>,
    },
    /// Lossy: the publisher never waits. A subscriber that was lapped learns
    /// exactly how many messages it missed (`Lagged(n)`) and continues at
    /// the oldest message still intact; a torn read is detected and never
    /// returned.
    Overwrite,
}

impl Default for Overflow {
    /// `Block` with eviction after one second: lossless for every subscriber
    /// that keeps up, and one stuck subscriber cannot stall the rest for
    /// longer than that.
    fn default() -> Self {
        Overflow::Block {
            evict_after: Some(Duration::from_secs(1)),
        }
    }
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overflow::Overwrite => f.write_str("overwrite"),
            Overflow::Block { evict_after: None } => f.write_str("block"),
            Overflow::Block {
                evict_after: Some(d),
            } => write!(f, "block (evict after {d:?})"),
        }
    }
}

impl Kind {
    /// The value stored in the header.
    pub const fn code(self) -> u32 {
        match self {
            Kind::Spsc => 1,
            Kind::Frames => 2,
            Kind::Mpmc => 3,
            Kind::Broadcast => 4,
        }
    }

    /// Decodes a header value.
    pub const fn from_code(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Frames),
            3 => Some(Kind::Mpmc),
            4 => Some(Kind::Broadcast),
            _ => None,
        }
    }

    /// The name used by the CLI and in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Spsc => "spsc",
            Kind::Frames => "frames",
            Kind::Mpmc => "mpmc",
            Kind::Broadcast => "broadcast",
        }
    }

    /// What [`Layout::capacity`] counts: "slots", or "bytes" for frame
    /// rings.
    pub const fn capacity_unit(self) -> &'static str {
        match self {
            Kind::Frames => "bytes",
            Kind::Spsc | Kind::Mpmc | Kind::Broadcast => "slots",
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
            // publisher line, space line, two wait lines, then one
            // subscriber line per role (see `broadcast`)
            Kind::Broadcast => BROADCAST_CONTROL_SIZE + roles as usize * LINE,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
    /// Broadcast rings: the overflow policy (`Block` without eviction for
    /// the other kinds, where it means nothing).
    pub(crate) overflow: Overflow,
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
        let (producers, consumers) = match kind {
            Kind::Mpmc => (DEFAULT_MPMC_ROLES, DEFAULT_MPMC_ROLES),
            Kind::Broadcast => (1, DEFAULT_SUBSCRIBERS),
            Kind::Spsc | Kind::Frames => (1, 1),
        };
        Layout::with_roles(kind, capacity, slot_size, slot_align, producers, consumers)
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
            Kind::Broadcast if producers != 1 || !(1..=MAX_ROLES).contains(&consumers) => {
                return bad(format!(
                    "a broadcast ring has one publisher and 1 to {MAX_ROLES} subscriber roles, not {producers} and {consumers}"
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
            Kind::Broadcast => {
                // Each slot: its sequence word, its length word, then the
                // message at `broadcast_payload_offset`, in whole words.
                let stride = round_up(u64::from(slot_size), 8)
                    .and_then(|words| {
                        round_up(
                            broadcast_payload_offset(slot_align) + words,
                            u64::from(slot_align.max(8)),
                        )
                    })
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
            overflow: Overflow::Block { evict_after: None },
        })
    }

    /// The same layout with a broadcast ring's overflow policy (an eviction
    /// delay is kept to whole microseconds, at most [`MAX_EVICT_AFTER`]).
    pub fn with_overflow(mut self, overflow: Overflow) -> Result<Layout> {
        if self.kind != Kind::Broadcast {
            return Err(Error::InvalidConfig {
                what: format!(
                    "an overflow policy is for broadcast rings, not {} rings",
                    self.kind
                ),
            });
        }
        self.overflow = match overflow {
            Overflow::Block {
                evict_after: Some(d),
            } => {
                if d.is_zero() || d > MAX_EVICT_AFTER {
                    return Err(Error::InvalidConfig {
                        what: format!(
                            "eviction delay {d:?} must be between 1 µs and {MAX_EVICT_AFTER:?}"
                        ),
                    });
                }
                Overflow::Block {
                    evict_after: Some(Duration::from_micros(d.as_micros().max(1) as u64)),
                }
            }
            other => other,
        };
        Ok(self)
    }

    /// Broadcast rings: what the publisher does when the slowest subscriber
    /// is a whole ring behind.
    pub fn overflow(&self) -> Overflow {
        self.overflow
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

/// Offset of the message inside a broadcast slot: after the sequence and
/// length words, aligned for the message.
pub const fn broadcast_payload_offset(slot_align: u32) -> u64 {
    if slot_align > 16 {
        slot_align as u64
    } else {
        16
    }
}

/// The descriptor's encoding of an overflow policy: (overflow, evict_after_us).
fn encode_overflow(overflow: Overflow) -> (u32, u64) {
    match overflow {
        Overflow::Overwrite => (OVERFLOW_OVERWRITE, 0),
        Overflow::Block { evict_after } => (
            OVERFLOW_BLOCK,
            evict_after.map_or(0, |d| d.as_micros() as u64),
        ),
    }
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
        overflow: encode_overflow(layout.overflow).0,
        reserved_u32: 0,
        evict_after_us: encode_overflow(layout.overflow).1,
        reserved: [0; 6],
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
    if kind == Kind::Broadcast {
        let evict = Duration::from_micros(desc.evict_after_us);
        layout.overflow = match desc.overflow {
            OVERFLOW_OVERWRITE if desc.evict_after_us == 0 => Overflow::Overwrite,
            OVERFLOW_BLOCK if evict <= MAX_EVICT_AFTER => Overflow::Block {
                evict_after: (!evict.is_zero()).then_some(evict),
            },
            _ => {
                return Err(Error::corrupted(
                    path,
                    format!(
                        "overflow policy {} with eviction after {} µs",
                        desc.overflow, desc.evict_after_us
                    ),
                ));
            }
        };
    }
    Ok(layout)
}
