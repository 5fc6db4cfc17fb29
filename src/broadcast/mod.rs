//! Broadcast rings: one publisher, up to N subscribers, and every
//! subscriber sees every message, in order, each with its sequence number.
//!
//! ```
//! # fn main() -> Result<(), shmring::Error> {
//! # let name = &format!("doc-broadcast-{}", std::process::id());
//! use shmring::broadcast::{Publisher, Subscriber};
//!
//! let mut tx = Publisher::<u64>::open_or_create(name, 1024)?;
//! // In other processes (two here): each subscriber gets every message.
//! let mut a = Subscriber::<u64>::open(name)?;
//! let mut b = Subscriber::<u64>::open(name)?;
//! tx.push(7)?;
//! assert_eq!(a.pop()?, (0, 7)); // (sequence number, message)
//! assert_eq!(b.pop()?, (0, 7));
//! # Ok(()) }
//! ```
//!
//! The creator chooses the number of subscriber roles
//! ([`Builder::subscribers`](crate::Builder::subscribers), default
//! [`DEFAULT_SUBSCRIBERS`]) and what happens to a slow subscriber
//! ([`Builder::overflow`](crate::Builder::overflow), shown by `shmring
//! stat`):
//!
//! * [`Overflow::Block`] (lossless, the default): the publisher never
//!   overwrites a message some live subscriber has not read. A subscriber
//!   that dies stops counting at once (its role lock is gone; a clean
//!   detach is seen at the next message, a crash within about 100 ms). A
//!   live subscriber that keeps the publisher waiting longer than
//!   `evict_after` (default 1 s) is evicted: it is skipped from then on,
//!   and its first pop that lost a message returns
//!   [`TryPopError::Evicted`] with the count and continues at the newest
//!   message. `evict_after: None` means strict lockstep.
//! * [`Overflow::Overwrite`] (lossy): the publisher never waits. A
//!   subscriber that was lapped gets [`TryPopError::Lagged`] with exactly
//!   how many messages it missed, and continues at the oldest message still
//!   intact.
//!
//! A late joiner chooses where to start ([`Builder::start`](crate::Builder::start)): the
//! oldest message still in the ring, the next new one, or a sequence
//! number it recorded.
//!
//! # How it works
//!
//! Each slot carries a sequence word that the publisher stores last, with
//! release; a subscriber polls the slot of the message it wants, not a
//! shared index, so a small message costs one cache-line transfer. Reads
//! are copies checked against the sequence word before and after (a
//! seqlock): a message overwritten while it was read is never returned.
//! Each subscriber keeps its position on its own line; in `block` mode the
//! publisher reads those lines only when its cached view says the ring is
//! full (once per lap at most while everyone keeps up). A publisher with no
//! sleepers to wake makes no system call per message; it wakes all parked
//! subscribers with one futex wake when some are parked.
//!
//! Messages are typed ([`Publisher<T>`], [`Subscriber<T>`], any
//! [`Message`]) or byte strings up to the slot size chosen at creation
//! ([`BytesPublisher`], [`BytesSubscriber`]: what `shmring send` and `recv`
//! use).

#[cfg(all(test, loom))]
mod loom_models;
mod publisher;
pub(crate) mod raw;
mod subscriber;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use crate::layout::{DEFAULT_SUBSCRIBERS, Overflow};
pub use crate::ring::Start;
pub use publisher::{BytesPublisher, Publisher};
pub use subscriber::{BytesSubscriber, Subscriber};

use crate::error::{Error, Result};
use crate::layout::{Kind, Layout};
use crate::message::{Message, TypeIdentity};
use crate::ring::builder::{self, Endpoint, Request, Settings, Shape};
use crate::segment::{self, Segment};

/// Slots of a broadcast ring unless the creator says otherwise.
pub const DEFAULT_CAPACITY: u64 = 1024;
/// Largest message of a byte broadcast ring unless the creator says
/// otherwise.
pub const DEFAULT_SLOT_SIZE: u32 = 256;

/// Why a non-blocking pop returned no message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryPopError {
    /// Nothing new yet.
    Empty,
    /// `overwrite` rings: the publisher overwrote this many messages
    /// before they were read; the next pop continues at the oldest message
    /// still intact.
    Lagged(u64),
    /// `block` rings: this subscriber kept the publisher waiting too long
    /// and was evicted, missing this many messages; it has rejoined at the
    /// newest message.
    Evicted {
        /// Messages lost to this subscriber.
        missed: u64,
    },
    /// Drained, and the publisher is gone.
    Disconnected,
    /// A slot or position that no publisher writes.
    Corrupted(String),
}

/// Why a blocking pop returned no message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PopError {
    /// Nothing arrived within the timeout.
    Timeout,
    /// See [`TryPopError::Lagged`].
    Lagged(u64),
    /// See [`TryPopError::Evicted`].
    Evicted {
        /// Messages lost to this subscriber.
        missed: u64,
    },
    /// Drained, and the publisher is gone.
    Disconnected,
    /// A slot or position that no publisher writes.
    Corrupted(String),
}

impl std::fmt::Display for TryPopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPopError::Empty => f.write_str("no new message"),
            TryPopError::Lagged(n) => write!(f, "lapped by the publisher: missed {n} messages"),
            TryPopError::Evicted { missed } => {
                write!(
                    f,
                    "evicted for keeping the publisher waiting: missed {missed} messages"
                )
            }
            TryPopError::Disconnected => f.write_str("drained, and the publisher is gone"),
            TryPopError::Corrupted(w) => write!(f, "corrupted ring: {w}"),
        }
    }
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PopError::Timeout => f.write_str("timed out waiting for a message"),
            PopError::Lagged(n) => TryPopError::Lagged(*n).fmt(f),
            PopError::Evicted { missed } => TryPopError::Evicted { missed: *missed }.fmt(f),
            PopError::Disconnected => TryPopError::Disconnected.fmt(f),
            PopError::Corrupted(w) => write!(f, "corrupted ring: {w}"),
        }
    }
}

impl std::error::Error for TryPopError {}
impl std::error::Error for PopError {}

impl From<TryPopError> for Error {
    fn from(e: TryPopError) -> Error {
        match e {
            TryPopError::Empty => Error::Empty,
            TryPopError::Lagged(missed) => Error::Lagged { missed },
            TryPopError::Evicted { missed } => Error::Evicted { missed },
            TryPopError::Disconnected => crate::ring::TryPopError::Disconnected.into(),
            TryPopError::Corrupted(w) => crate::ring::TryPopError::Corrupted(w).into(),
        }
    }
}

impl From<PopError> for Error {
    fn from(e: PopError) -> Error {
        match e {
            PopError::Timeout => crate::ring::PopError::Timeout.into(),
            PopError::Lagged(missed) => Error::Lagged { missed },
            PopError::Evicted { missed } => Error::Evicted { missed },
            PopError::Disconnected => crate::ring::PopError::Disconnected.into(),
            PopError::Corrupted(w) => crate::ring::PopError::Corrupted(w).into(),
        }
    }
}

impl From<TryPopError> for PopError {
    fn from(e: TryPopError) -> PopError {
        match e {
            TryPopError::Empty => PopError::Timeout,
            TryPopError::Lagged(n) => PopError::Lagged(n),
            TryPopError::Evicted { missed } => PopError::Evicted { missed },
            TryPopError::Disconnected => PopError::Disconnected,
            TryPopError::Corrupted(w) => PopError::Corrupted(w),
        }
    }
}

/// The layout of a broadcast ring of `capacity` messages of `slot_size`
/// bytes (alignment `slot_align`) with `subscribers` subscriber roles and
/// the overflow policy `overflow`.
pub fn layout(
    capacity: u64,
    slot_size: u32,
    slot_align: u32,
    subscribers: u32,
    overflow: Overflow,
) -> Result<Layout> {
    Layout::with_roles(
        Kind::Broadcast,
        capacity,
        slot_size,
        slot_align,
        1,
        subscribers,
    )?
    .with_overflow(overflow)
}

/// The shape of a broadcast ring of `identity` for `request`.
fn shape_of(request: &Request, identity: TypeIdentity) -> Result<Shape> {
    if request.producers.is_some_and(|p| p != 1) {
        return Err(Error::InvalidConfig {
            what: "a broadcast ring has exactly one publisher".into(),
        });
    }
    let layout = layout(
        request.capacity.unwrap_or(DEFAULT_CAPACITY),
        identity.size(),
        identity.align(),
        request.consumers.unwrap_or(DEFAULT_SUBSCRIBERS),
        request.overflow.unwrap_or_default(),
    )?;
    Ok(Shape {
        layout,
        identity,
        init: segment::zeroed,
    })
}

/// The type identity of typed handles; refuses a slot size request.
fn typed_identity<T: Message>(request: &Request) -> Result<TypeIdentity> {
    if request.slot_size.is_some() {
        return Err(Error::InvalidConfig {
            what: "the slot size of a typed broadcast ring is the message type's size".into(),
        });
    }
    Ok(TypeIdentity::of::<T>())
}

/// The type identity of byte rings: untyped slots of the requested size,
/// word-aligned.
fn bytes_identity(request: &Request) -> TypeIdentity {
    TypeIdentity::bytes(request.slot_size.unwrap_or(DEFAULT_SLOT_SIZE)).with_align(8)
}

/// Checks that `seg` is a byte broadcast ring.
fn check_bytes(seg: &Segment) -> Result<()> {
    let l = seg.layout();
    builder::check_ring(
        seg,
        Kind::Broadcast,
        &TypeIdentity::bytes(l.slot_size()).with_align(l.slot_align()),
    )
}

/// Checks that `seg` is a broadcast ring of any message type; true when it
/// is a typed one (whose messages fill their slots exactly).
fn check_any(seg: &Segment) -> Result<bool> {
    if !builder::carries_type(seg) {
        check_bytes(seg)?;
        return Ok(false);
    }
    builder::check_kind(seg, Kind::Broadcast)?;
    Ok(true)
}

/// Wakes every sleeper on a broadcast ring (a side detaching).
fn wake_all(seg: &Segment) {
    if let Ok(ring) = raw::RawBroadcast::new(seg) {
        ring.data_wait().wake();
        ring.space_wait().wake();
    }
}

impl<T: Message> builder::Sealed for Publisher<T> {}
impl<T: Message> builder::Sealed for Subscriber<T> {}
impl builder::Sealed for BytesPublisher {}
impl builder::Sealed for BytesSubscriber {}

impl<T: Message> Endpoint for Publisher<T> {
    const ROLE: &'static str = "publisher";
    fn shape(request: &Request) -> Result<Shape> {
        shape_of(request, typed_identity::<T>(request)?)
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        builder::check_ring(&seg, Kind::Broadcast, &TypeIdentity::of::<T>())?;
        Publisher::from_core(publisher::PubCore::attach(seg, settings)?)
    }
}

impl<T: Message> Endpoint for Subscriber<T> {
    const ROLE: &'static str = "subscriber";
    fn shape(request: &Request) -> Result<Shape> {
        shape_of(request, typed_identity::<T>(request)?)
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        builder::check_ring(&seg, Kind::Broadcast, &TypeIdentity::of::<T>())?;
        Subscriber::from_core(subscriber::SubCore::attach(seg, settings)?)
    }
}

impl Endpoint for BytesPublisher {
    const ROLE: &'static str = "publisher";
    fn shape(request: &Request) -> Result<Shape> {
        shape_of(request, bytes_identity(request))
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        check_bytes(&seg)?;
        Ok(BytesPublisher::from_core(publisher::PubCore::attach(
            seg, settings,
        )?))
    }
}

impl Endpoint for BytesSubscriber {
    const ROLE: &'static str = "subscriber";
    fn shape(request: &Request) -> Result<Shape> {
        shape_of(request, bytes_identity(request))
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        check_bytes(&seg)?;
        Ok(BytesSubscriber::from_core(subscriber::SubCore::attach(
            seg, settings,
        )?))
    }
}
