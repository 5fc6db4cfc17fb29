//! Every `#[repr(C)]` structure that lives in shared memory, with its
//! offsets checked at compile time, and the computation and validation of a
//! ring's shape (DESIGN.md, "Shared-memory rules").
//!
//! The segment is, in order: the header (below), the role records
//! ([`RoleRecord`]), the per-kind control lines ([`SpscControl`] for SPSC and
//! frame rings; [`MpmcControl`] then one [`ClaimLine`] per role for MPMC
//! rings; [`BroadcastControl`] then one [`SubscriberLine`] per role for
//! broadcast rings), then the data area.
//!
//! # The header
//!
//! The header has three parts:
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
//! * the **upstream line** (bytes 384..512, layout 1.5): what a relay that
//!   produces into the ring records about its source ([`UpstreamLine`]).
//!
//! Everything is `#[repr(C)]` and made of fixed-width integers; the offsets are
//! checked at compile time beside each structure. Any change to this layout bumps
//! [`VERSION_MAJOR`] (incompatible) or [`VERSION_MINOR`] (new fields in reserved
//! space that older readers may ignore).

mod control;
mod header;
mod shape;
#[cfg(test)]
mod tests;

// Every item keeps its `crate::layout::X` path (and `shmring::raw::X`).
pub use control::*;
pub use header::*;
pub use shape::*;

/// First eight bytes of every ring: `b"SHMRING\x01"` read as little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\x01");
/// Layout major version: a reader refuses any other major.
pub const VERSION_MAJOR: u16 = 1;
/// Layout minor version: additions that older readers refuse cleanly or may
/// ignore; readers accept any minor. 1.1 added [`Kind::Mpmc`] (a 1.0 reader
/// refuses it as an unknown kind). 1.2 records the message type's name
/// ([`Descriptor::type_name`], in space that was reserved and zero, so a
/// 1.1 reader ignores it and a ring written by 1.1 has no name). 1.3 adds
/// a consumer's [`Receipt`] to the SPSC consumer line and
/// to each MPMC claim line (space that was zero; older readers ignore it).
/// 1.4 adds [`Kind::Broadcast`] (a 1.3 reader refuses it as an unknown
/// kind), with its overflow policy in [`Descriptor::overflow`] and
/// [`Descriptor::evict_after_us`] (space that was zero). 1.5 adds the
/// [`UpstreamLine`] (the header's last line, which was zero; older readers
/// ignore it).
pub const VERSION_MINOR: u16 = 5;
