//! Multi-producer multi-consumer ring of fixed-size typed slots, shared by
//! processes that may die at any instruction.
//!
//! ```
//! # fn main() -> Result<(), shmring::Error> {
//! # let name = &format!("doc-mpmc-{}", std::process::id());
//! use shmring::mpmc::{Consumer, Producer};
//!
//! // Any number of processes, up to the ring's role counts (16 each here).
//! let mut tx = Producer::<u64>::builder(name)
//!     .capacity(1024)
//!     .producers(16)
//!     .consumers(16)
//!     .open_or_create()?;
//! let mut rx = Consumer::<u64>::open(name)?;
//! tx.push(7)?;
//! assert_eq!(rx.pop()?, 7);
//! # Ok(()) }
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
//!   and releases it before returning; a read chunk releases when it is
//!   dropped), so it is delivered again, in one of two ways:
//!   - **to the next holder of the role, first**: a consumer that takes a
//!     role whose record still claims positions takes them over (the
//!     record stays; the new holder owns the lock) and hands them out
//!     before claiming anything new, so a restarted consumer continues in
//!     order. A consumer that writes messages elsewhere can leave a
//!     *receipt* with the claim ([`BytesReadChunk::set_receipt`]) for its
//!     successor to finish that write exactly once (`shmring recv` does).
//!   - **by a producer, at the end**, if no consumer took the role over
//!     within [`REDELIVERY_GRACE`]: a producer that finds the slot still
//!     occupied a lap later, with `head` past it and no live consumer
//!     claiming it, claims the next enqueue position for it and
//!     re-publishes the old contents there (counted as redelivered); the
//!     message then arrives after newer ones. Producers wait at that slot
//!     for the grace period first (the ring is full up to it meanwhile).
//!
//!   The two cannot both deliver it: the producer records the position it
//!   re-publishes at, fences, then checks the role's lock; the new holder
//!   takes the lock, fences, then waits for any such record to clear and
//!   takes over only the positions whose slot still holds the old claim.
//!   Nothing is lost and nothing is delivered twice to the application.
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

mod bytes;
mod claims;
mod core;
#[cfg(all(test, loom))]
mod loom_models;
pub(crate) mod raw;
#[cfg(all(test, not(loom)))]
mod tests;
mod typed;

pub use bytes::{BytesConsumer, BytesProducer, BytesReadChunk};
pub use core::RingStats;
pub use typed::{Consumer, Producer, ReadChunk, WriteChunk};

pub use crate::ring::{Builder, PopError, PushError, TryPopError, TryPushError};

use std::sync::Arc;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::layout::{DEFAULT_MPMC_ROLES, Kind, Layout};
use crate::message::{Message, TypeIdentity};
use crate::ring::builder::{self, Endpoint, Request, Settings, Shape};
use crate::segment::Segment;
use crate::sync::atomic::Ordering;
use raw::RawMpmc;

/// Capacity of a ring whose creator did not choose one: 1024 slots.
pub const DEFAULT_CAPACITY: u64 = 1024;

/// Bit 63 of a sequence number: the slot was published empty (its producer
/// died, or dropped an uncommitted [`WriteChunk`]); consumers drop it.
pub const SKIP: u64 = 1 << 63;
pub(crate) const POS: u64 = !SKIP;

/// Polls a stuck slot must stay stuck before its claimant's liveness is
/// checked (tens of microseconds of polling).
#[cfg(not(loom))]
pub const STUCK_POLLS: u32 = 4096;
/// Under loom: check at once (liveness is decided by the model).
#[cfg(loom)]
pub const STUCK_POLLS: u32 = 1;

/// How long a producer leaves a dead consumer's claimed message in place
/// before it re-publishes it at the end of the queue: the time the next
/// holder of that consumer role (a restarted consumer) has to take it over
/// and deliver it in order.
#[cfg(not(loom))]
pub const REDELIVERY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Most attempts one operation makes before reporting `Full` or `Empty`
/// (only reachable under extreme contention or with a peer that keeps
/// rewriting the indices).
#[cfg(not(loom))]
pub const MAX_RETRIES: u32 = 1 << 16;
/// Under loom: a few (the caller's own loop retries).
#[cfg(loom)]
pub const MAX_RETRIES: u32 = 3;

/// The layout of an MPMC ring of `capacity` messages of type `T`, with
/// 64 producer and
/// consumer roles.
pub fn layout<T: Pod>(capacity: u64) -> Result<Layout> {
    let r = DEFAULT_MPMC_ROLES;
    layout_with_roles::<T>(capacity, r, r)
}

/// The layout of an MPMC ring with chosen numbers of producer and consumer
/// roles (each 1 to 1024).
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

/// Writes the initial sequence numbers (slot `i` free for position `i`) of
/// a freshly created MPMC ring; the creator calls it before marking the
/// header ready. The `init` of a [`RingSpec`](crate::segment::RingSpec) for
/// an MPMC ring made by hand (tools; the handles' builders pass it).
pub fn initialize(seg: &Segment) -> Result<()> {
    let ring = RawMpmc::new(seg)?;
    for pos in 0..ring.capacity {
        // Relaxed: published by the creator's release store of READY.
        ring.seq(pos).store(pos, Ordering::Relaxed);
    }
    Ok(())
}

/// A connected producer and consumer over an anonymous MPMC ring (a sealed
/// memfd) of `capacity` messages with the default role counts; more
/// handles can attach to the same ring through [`Segment::send`] or by
/// [`Producer::attach`] on the same segment.
pub fn anonymous<T: Message>(capacity: u64) -> Result<(Producer<T>, Consumer<T>)> {
    builder::anonymous_pair(&Request {
        capacity: Some(capacity),
        ..Request::default()
    })
}

/// The shape of an MPMC ring of `identity` for `request`.
fn shape_of(request: &Request, identity: TypeIdentity) -> Result<Shape> {
    let capacity = request.capacity.unwrap_or(DEFAULT_CAPACITY);
    let layout = Layout::with_roles(
        Kind::Mpmc,
        capacity,
        identity.size(),
        identity.align(),
        request.producers.unwrap_or(DEFAULT_MPMC_ROLES),
        request.consumers.unwrap_or(DEFAULT_MPMC_ROLES),
    )?;
    Ok(Shape {
        layout,
        identity,
        init: initialize,
    })
}

impl<T: Pod> builder::Sealed for Producer<T> {}
impl<T: Pod> builder::Sealed for Consumer<T> {}

impl<T: Message> Endpoint for Producer<T> {
    const ROLE: &'static str = "producer";
    fn shape(request: &Request) -> Result<Shape> {
        shape_of(request, TypeIdentity::of::<T>())
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        Producer::attach_checked(seg, settings)
    }
}

impl<T: Message> Endpoint for Consumer<T> {
    const ROLE: &'static str = "consumer";
    fn shape(request: &Request) -> Result<Shape> {
        shape_of(request, TypeIdentity::of::<T>())
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        Consumer::attach_checked(seg, settings)
    }
}
