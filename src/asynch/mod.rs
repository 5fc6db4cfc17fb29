//! async/await over the rings' eventcounts (feature `async`, or `tokio`
//! which adds the tokio adapter of the readiness fd).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let name = &format!("doc-async-{}", std::process::id());
//! use shmring::asynch::{AsyncConsumer, AsyncProducer};
//! use shmring::spsc::{Consumer, Producer};
//!
//! let mut tx = Producer::<u64>::open_or_create(name, 1024)?;
//! let mut rx = Consumer::<u64>::open(name)?;
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! rt.block_on(async {
//!     tx.send(7).await?;
//!     assert_eq!(rx.recv().await?, 7);
//!     Ok::<_, shmring::Error>(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! Every consumer kind implements [`AsyncConsumer`] (`recv().await`, and
//! `stream()`, a futures-core [`Stream`](futures_core::Stream)); every
//! producer kind implements [`AsyncProducer`] (`send(value).await`).
//!
//! # How it waits
//!
//! A future first tries, like `try_pop`/`try_push`. If the ring is empty
//! (full), it registers in the ring's eventcount exactly as a blocking
//! sleeper does (key, waiter count, barrier, re-check: see
//! [`crate::wait`]) and hands the registration to one process-wide waker
//! thread, which sleeps in `futex_waitv` on the futex words of every ring
//! with a pending async waiter and wakes the task whose word moved. So:
//!
//! * publishers pay nothing new: they already look at the waiter count,
//!   and make a `FUTEX_WAKE` only while someone waits;
//! * no runtime worker thread ever blocks, and nothing spins while idle:
//!   an idle waiter costs a wake-up every [`PEER_CHECK_INTERVAL`] (its
//!   check of the peer's liveness);
//! * a producer that dies (even by `kill -9`) is noticed within
//!   [`PEER_CHECK_INTERVAL`] (plus scheduling): `recv` returns
//!   [`PopError::Disconnected`] once the ring is drained, and the stream
//!   yields it and ends. One that detaches cleanly is noticed at once.
//!
//! Up to 127 rings are watched with one `futex_waitv` call; past that (or
//! on kernels before 5.16, without `futex_waitv`) the thread also looks at
//! every word each millisecond.
//!
//! # Cancellation
//!
//! A future holds no claim between polls: a message is taken and returned
//! in the same poll, so dropping a [`Recv`] (in `tokio::select!`, a
//! timeout, ...) loses nothing and duplicates nothing, and dropping a
//! [`SendFuture`] sends nothing. Dropping either only withdraws its
//! registration.
//!
//! # Readiness fd
//!
//! [`Readiness`] is an eventfd that the same thread signals when a ring it
//! was armed on has a message ([`Readiness::arm`], for consumers) or room
//! ([`Readiness::arm_producer`], for producers that found their ring full):
//! for epoll, mio, tokio's `AsyncFd`, or another language's event loop.
//! Arming registers in the same eventcount as a sleeper, so the peer pays
//! a `FUTEX_WAKE` per message (or pop) only while the fd is armed and the
//! waker thread has not yet seen the first one, and nothing while nobody
//! is armed.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmring::asynch::Readiness;
//! use shmring::spsc::{Producer, TryPushError};
//!
//! let mut tx = Producer::<u64>::open("ticks")?;
//! let ready = Readiness::new()?;
//! let mut next = 0u64;
//! loop {
//!     match tx.try_push(next) {
//!         Ok(()) => next += 1,
//!         Err(TryPushError::Full(_)) => {
//!             ready.arm_producer(&mut tx);
//!             // ... register `ready.as_fd()` with epoll/mio and wait
//!             // until it is readable (another process popped) ...
//!             ready.clear()?;
//!         }
//!         Err(e) => return Err(e.into()),
//!     }
//! }
//! # }
//! ```
//!
//! # New ring kinds
//!
//! A kind gets all of this by implementing [`AsyncConsumer`] /
//! [`AsyncProducer`] in `kinds.rs`: a non-blocking poll (the one its
//! blocking calls run in their wait loop) and its eventcount (`wait_parts`).

mod future;
mod kinds;
mod readiness;
mod waker;

pub use future::{Recv, RecvStream, SendFuture};
pub use readiness::Readiness;

use std::sync::Arc;

#[cfg(doc)]
use crate::ring::PopError;
use crate::segment::Segment;
#[cfg(doc)]
use crate::wait::PEER_CHECK_INTERVAL;
use crate::wait::ReadyEvent;

mod sealed {
    /// Only this crate's handles implement the async traits.
    pub trait Sealed {}
}

/// A consuming handle that can be awaited: every consumer kind.
pub trait AsyncConsumer: sealed::Sealed {
    /// What one receive yields: a message `T`, or a frame's bytes (with
    /// its sequence number on broadcast rings).
    type Item;

    /// Why a receive yielded no message: [`PopError`], or
    /// [`crate::broadcast::PopError`] for broadcast subscribers (which also
    /// say how many messages they missed, and go on).
    type Error;

    /// The next message; `Err(Disconnected)` once the producers are gone
    /// and the ring is drained. Cancel-safe (see the module docs).
    fn recv(&mut self) -> Recv<'_, Self> {
        Recv::new(self)
    }

    /// Every message as a [`Stream`](futures_core::Stream), ending after
    /// yielding `Disconnected` (or `Corrupted`) once (a broadcast
    /// subscriber's `Lagged`/`Evicted` are yielded and the stream goes on).
    fn stream(&mut self) -> RecvStream<'_, Self> {
        RecvStream::new(self)
    }

    /// The kind's non-blocking poll: `Some` when done; `check_peer` asks
    /// it to check its peers' liveness now (system calls).
    #[doc(hidden)]
    fn __poll_recv(&mut self, check_peer: bool) -> Option<Result<Self::Item, Self::Error>>;

    /// Does this error end the stream (the ring is finished)?
    #[doc(hidden)]
    fn __is_final(_error: &Self::Error) -> bool {
        true
    }

    /// Is something ready (or the ring finished) without taking it? A hint
    /// for [`Readiness`].
    #[doc(hidden)]
    fn __is_ready(&mut self) -> bool;

    /// The "data" eventcount and the segment holding it.
    #[doc(hidden)]
    fn __wait_parts(&self) -> (ReadyEvent<'_>, &Arc<Segment>);
}

/// A producing handle that can be awaited with a `V`: every producer kind
/// (`T` for typed rings, `&[u8]` for frame and byte rings).
pub trait AsyncProducer<V>: sealed::Sealed {
    /// Why a send failed ([`crate::ring::PushError`] gives the value back).
    type Error;

    /// Sends `value`, waiting while the ring is full; `Disconnected` once
    /// the consumers of a non-persistent ring are gone. Cancel-safe:
    /// dropped before it completes, it has sent nothing.
    fn send(&mut self, value: V) -> SendFuture<'_, Self, V> {
        SendFuture::new(self, value)
    }

    /// The kind's non-blocking poll: `Ok` when done, `Err(value)` while
    /// full.
    #[doc(hidden)]
    fn __poll_send(&mut self, value: V, check_peer: bool) -> Result<Result<(), Self::Error>, V>;

    /// Would a send find room now (or the ring finished) without sending?
    /// A hint for [`Readiness::arm_producer`] that errs towards `false`:
    /// `true` means a send of any value would not wait.
    #[doc(hidden)]
    fn __is_writable(&mut self) -> bool;

    /// The "space" eventcount and the segment holding it.
    #[doc(hidden)]
    fn __wait_parts(&self) -> (ReadyEvent<'_>, &Arc<Segment>);
}
