//! # shmring
//!
//! Lock-free ring buffers in POSIX shared memory, for moving messages
//! between processes on one Linux host at close to the speed of the
//! hardware.
//!
//! A ring has a name (a file in `/dev/shm`), a kind and a message type.
//! Each process opens it in one expression, as the handle it needs:
//!
//! ```
//! # fn main() -> Result<(), shmring::Error> {
//! # let name = &format!("doc-quotes-{}", std::process::id());
//! use shmring::spsc::{Consumer, Producer};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, shmring::Message)]
//! #[message(name = "quote/v1")] // what other programs know it by
//! #[repr(C)]
//! struct Quote { bid: f64, ask: f64 }
//!
//! // Process A: create the ring (or join it) and produce.
//! let mut tx = Producer::<Quote>::open_or_create(name, 4096)?;
//! tx.push(Quote { bid: 1.0, ask: 1.5 })?;
//!
//! // Process B: attach and consume.
//! let mut rx = Consumer::<Quote>::open(name)?;
//! assert_eq!(rx.pop()?, Quote { bid: 1.0, ask: 1.5 });
//! # Ok(()) }
//! ```
//!
//! | kind | handles | carries |
//! |---|---|---|
//! | [`spsc`] | one [`spsc::Producer<T>`], one [`spsc::Consumer<T>`] | typed messages, in order |
//! | [`frames`] | one [`frames::Producer`], one [`frames::Consumer`] | byte frames of any length up to half the ring |
//! | [`mpmc`] | up to N [`mpmc::Producer<T>`] and M [`mpmc::Consumer<T>`] | typed messages, each to exactly one consumer |
//! | [`broadcast`] | one [`broadcast::Publisher<T>`], up to N [`broadcast::Subscriber<T>`] | typed (or byte) messages, each to every subscriber, with sequence numbers |
//!
//! Every kind speaks the same vocabulary: `try_push`/`try_pop` never wait,
//! `push`/`pop` wait (with `_timeout` variants), `write_chunk`/`read_chunk`
//! lend memory inside the ring for zero-copy work. Dropping a write chunk
//! publishes nothing; dropping a read chunk consumes what it lent. Each
//! handle type has a [`Builder`] (`Producer::<T>::builder(name)`) for the
//! options: capacity, persistence, permissions, directory, huge pages,
//! waiting for a creator (`wait_for`), the wait strategy, and how long a
//! dropped producer lingers for its unread messages. `anonymous(n)` in each
//! kind makes a connected pair over an unnamed memfd, like
//! `rtrb::RingBuffer::new(n)`, which [`Segment::send`] can pass to another
//! process.
//!
//! # Messages
//!
//! A message type is plain old data ([`Pod`]: every bit pattern valid, no
//! padding) with a name: [`Message`]. The derive checks both at compile
//! time. The ring records the name, size and alignment; a process that
//! opens it with another type gets [`Error::LayoutMismatch`] naming both.
//! See [`message`] for how another language computes the same identity.
//!
//! # Safety
//!
//! Everything read from shared memory is untrusted: a buggy or hostile peer
//! can make this crate return [`Error::Corrupted`] (or lose or forge
//! messages), never read or write outside the mapping, panic, or hang. The
//! lifecycle protocol in [`segment`] guarantees that one name never refers
//! to two live rings and that a ring is removed when its last user detaches
//! (unless it is persistent). The design is described in `DESIGN.md` in
//! the repository.
//!
//! # Errors
//!
//! Setting up, attaching and administering return [`Error`], whose
//! variants say what to do. Queue operations return small errors
//! ([`spsc::TryPushError`], [`spsc::PopError`], ...) that give an unsent
//! value back; `?` turns them into [`Error`].
#![deny(unsafe_op_in_unsafe_fn, missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(all(feature = "async", not(loom)))]
pub mod asynch;
pub mod broadcast;
pub mod error;
pub mod frames;
mod layout;
pub mod message;
pub mod mpmc;
pub mod ring;
pub mod segment;
pub mod spsc;
mod sync;
mod sys;
pub mod wait;

pub mod raw;

pub use bytemuck::{Pod, Zeroable};
pub use error::{Error, Result};
pub use layout::{Kind, Layout};
pub use message::{Message, TypeIdentity};
pub use ring::Builder;
pub use segment::{Segment, SegmentOptions};
/// `#[derive(Message)]`: see [`message`].
#[cfg(feature = "derive")]
pub use shmring_derive::Message;

/// Not public API: paths used by the code `#[derive(Message)]` generates.
#[doc(hidden)]
pub mod __private {
    pub use bytemuck;
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
