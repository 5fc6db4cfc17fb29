//! Single-producer single-consumer ring of fixed-size typed slots.
//!
//! ```
//! # fn main() -> Result<(), shmring::Error> {
//! # let name = &format!("doc-spsc-{}", std::process::id());
//! use shmring::spsc::{Consumer, Producer};
//!
//! // Process A: a ring of 1024 u64 slots, created or joined by name.
//! let mut tx = Producer::<u64>::open_or_create(name, 1024)?;
//! tx.try_push(42)?;
//! tx.push_slice(&[1, 2, 3])?; // one index update for all three
//!
//! // Process B: attach and consume.
//! let mut rx = Consumer::<u64>::open(name)?;
//! assert_eq!(rx.try_pop()?, 42);
//! let chunk = rx.read_chunk(8)?; // zero-copy: a &[u64] inside the ring
//! assert_eq!(chunk.as_slice(), &[1, 2, 3]);
//! drop(chunk); // consumed
//! # Ok(()) }
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

mod consumer;
pub(crate) mod flush;
#[cfg(all(test, loom))]
mod loom_models;
mod producer;
pub(crate) mod raw;
mod slots;
#[cfg(all(test, not(loom)))]
mod tests;

pub use consumer::{Consumer, ReadChunk};
pub use producer::{Producer, WriteChunk};
pub use slots::{SlotConsumer, SlotProducer};

pub use crate::ring::{Builder, PopError, PushError, TryPopError, TryPushError};

use std::sync::Arc;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::layout::{Kind, Layout};
use crate::message::{Message, TypeIdentity};
use crate::ring::builder::{self, Endpoint, Request, Settings, Shape};
use crate::segment::{self, Segment};
use raw::RawRing;

/// Capacity of a ring whose creator did not choose one: 1024 slots.
pub const DEFAULT_CAPACITY: u64 = 1024;

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

/// A connected producer and consumer over an anonymous ring (a sealed
/// memfd) of `capacity` messages: nothing in `/dev/shm`, freed by the
/// kernel with its last user. Like `rtrb::RingBuffer::new(capacity)`, but
/// the consumer can live in another process: pass the ring with
/// [`Segment::send`] and attach there with `Consumer::builder(..).receive`.
pub fn anonymous<T: Message>(capacity: u64) -> Result<(Producer<T>, Consumer<T>)> {
    builder::anonymous_pair(&Request {
        capacity: Some(capacity),
        ..Request::default()
    })
}

fn shape<T: Message>(request: &Request) -> Result<Shape> {
    builder::one_role_each(request, "an spsc")?;
    Ok(Shape {
        layout: layout::<T>(request.capacity.unwrap_or(DEFAULT_CAPACITY))?,
        identity: TypeIdentity::of::<T>(),
        init: segment::zeroed,
    })
}

/// Is `seg` an SPSC ring of the message type `identity`?
fn check_ring(seg: &Segment, identity: &TypeIdentity) -> Result<()> {
    builder::check_ring(seg, Kind::Spsc, identity)
}

/// Wakes every sleeper on an SPSC or frame ring (a side leaving).
pub(crate) fn wake_all(seg: &Segment) {
    if let Ok(ring) = RawRing::new(seg) {
        ring.data_wait().notify();
        ring.space_wait().notify();
    }
}

impl<T: Pod> builder::Sealed for Producer<T> {}
impl<T: Pod> builder::Sealed for Consumer<T> {}

impl<T: Message> Endpoint for Producer<T> {
    const ROLE: &'static str = "producer";
    fn shape(request: &Request) -> Result<Shape> {
        shape::<T>(request)
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        Producer::attach_checked(seg, settings)
    }
}

impl<T: Message> Endpoint for Consumer<T> {
    const ROLE: &'static str = "consumer";
    fn shape(request: &Request) -> Result<Shape> {
        shape::<T>(request)
    }
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self> {
        Consumer::attach_checked(seg, settings)
    }
}
