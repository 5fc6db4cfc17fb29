//! A readiness fd: an eventfd that the waker thread signals when a ring it
//! was armed on has something to take (a consumer) or room (a producer).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use super::waker::{self, Target, Ticket, Watch};
use super::{AsyncConsumer, AsyncProducer};
use crate::sys;

/// The eventfd, shared with the waker thread's entries.
pub(crate) struct Shared {
    fd: OwnedFd,
}

impl Shared {
    /// Makes the fd readable (the waker thread, on a fired entry).
    pub(crate) fn signal(&self) {
        if let Err(e) = sys::eventfd_signal(self.fd.as_fd()) {
            log::debug!("eventfd write failed: {e}");
        }
    }
}

/// An eventfd for event loops (epoll, mio, tokio's `AsyncFd`, other
/// languages): it becomes readable when a consumer it was
/// [armed](Readiness::arm) on has a message (or its ring finished), or
/// when a producer it was [armed](Readiness::arm_producer) on has room (or
/// its ring finished: consumers of a non-persistent ring gone).
///
/// Arming is one-shot, like `EPOLLONESHOT`: the loop is
///
/// 1. `arm` every consumer and `arm_producer` every producer that found
///    its ring full; wait until the fd is readable;
/// 2. [`clear`](Readiness::clear) it, drain each consumer with `try_pop`
///    (or `recv().await` in async code), push with `try_push` until
///    `Full`, and arm them again.
///
/// One fd can watch consumers and producers of any kinds at once.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::asynch::Readiness;
/// use shmring::spsc::{self, TryPushError};
///
/// // The consumer is usually another process; an anonymous pair here.
/// let (mut tx, mut rx) = spsc::anonymous::<u64>(4)?;
/// let ready = Readiness::new()?;
/// let mut next = 0u64;
/// loop {
///     match tx.try_push(next) {
///         Ok(()) => next += 1,
///         Err(TryPushError::Full(_)) => break,
///         Err(e) => return Err(e.into()),
///     }
/// }
/// // Full: arm the producer. The fd stays quiet while nobody pops.
/// ready.arm_producer(&mut tx);
/// assert!(!ready.clear()?);
/// assert_eq!(rx.try_pop()?, 0);
/// // Wait until `ready.as_fd()` is readable (poll(2), epoll, mio, AsyncFd).
/// # let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
/// # while !ready.clear()? {
/// #     assert!(std::time::Instant::now() < deadline, "not signalled");
/// #     std::thread::sleep(std::time::Duration::from_millis(1));
/// # }
/// // The fd was readable (and is cleared): there is room again.
/// tx.try_push(next)?;
/// # Ok(()) }
/// ```
///
/// An armed ring makes its publisher (for a producer's fd: the consumer
/// that frees room) bump the futex word and issue a `FUTEX_WAKE` for each
/// message (or pop) from arming until the waker thread has seen the first
/// one and withdrawn the registration (a few microseconds: the time the
/// thread takes to be scheduled), then nothing until it is armed again: no
/// system call per message while nobody is armed, and an idle fd stays
/// quiet.
/// The fd does not notice a peer that crashes (a dead process signals
/// nothing): an event loop that must know checks `is_producer_alive` (or
/// `is_consumer_alive`), or tries its push, every
/// [`crate::wait::PEER_CHECK_INTERVAL`] or so. A peer that detaches
/// cleanly does signal it.
pub struct Readiness {
    shared: Arc<Shared>,
    /// Entries armed and perhaps not fired yet, with their futex word.
    armed: Mutex<Vec<(Ticket, usize)>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("fd", &self.shared.fd.as_raw_fd())
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// A new readiness fd (non-blocking, close-on-exec), not signalled.
    pub fn new() -> io::Result<Readiness> {
        Ok(Readiness {
            shared: Arc::new(Shared {
                fd: sys::eventfd()?,
            }),
            armed: Mutex::new(Vec::new()),
        })
    }

    /// Arms the fd on `consumer`: it is signalled once, as soon as the
    /// consumer has something to take (at once if it has now). Arming a
    /// ring that is still armed does nothing.
    pub fn arm<C: AsyncConsumer + ?Sized>(&self, consumer: &mut C) {
        let (event, seg) = consumer.__wait_parts();
        let watch = Watch::new(event.0, seg);
        self.arm_watch(watch, || consumer.__is_ready());
    }

    /// Arms the fd on `producer` (every producer kind, typed or bytes):
    /// it is signalled once, as soon as the producer's ring has room (at
    /// once if it has now), or once it is finished (the consumers of a
    /// non-persistent ring are gone, or it is corrupted): the next
    /// `try_push` says which. Arming a ring that is still armed does
    /// nothing. Arm after a push found the ring full.
    ///
    /// "Room" is room for any message: for a frame ring, room for the
    /// largest frame, or the consumer's next take after arming. So a loop
    /// that arms again after `Full` never spins, whatever the size of the
    /// frame it is holding. A consumer pays for this only while the fd is
    /// armed (a `FUTEX_WAKE` per take until the waker thread has seen the
    /// first one).
    pub fn arm_producer<P, V>(&self, producer: &mut P)
    where
        P: AsyncProducer<V> + ?Sized,
    {
        let (event, seg) = producer.__wait_parts();
        let watch = Watch::new(event.0, seg);
        self.arm_watch(watch, || producer.__is_writable());
    }

    /// Registers on `watch`'s eventcount, then signals at once if `ready()`
    /// (the re-check of the eventcount protocol), else hands the
    /// registration to the waker thread.
    fn arm_watch(&self, watch: Watch, ready: impl FnOnce() -> bool) {
        let word = std::ptr::from_ref(&watch.event().line.seq) as usize;
        // A poisoned lock only means a panic elsewhere; the list is valid.
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.retain(|&(t, _)| waker::pending(t));
        if armed.iter().any(|&(_, w)| w == word) {
            return;
        }
        let key = watch.event().register();
        if ready() {
            watch.event().unregister();
            self.shared.signal();
            return;
        }
        match waker::add(watch, key, None, Target::Fd(self.shared.clone())) {
            Ok(ticket) => armed.push((ticket, word)),
            Err(watch) => {
                watch.event().unregister();
                self.shared.signal();
            }
        }
    }

    /// Resets the fd (read it); returns whether it was signalled.
    pub fn clear(&self) -> io::Result<bool> {
        Ok(sys::eventfd_drain(self.shared.fd.as_fd())? > 0)
    }

    /// The fd as a tokio `AsyncFd`, inside a runtime with I/O enabled:
    /// `afd.readable().await?` then `guard.clear_ready()` and
    /// `afd.get_ref().clear()`.
    #[cfg(feature = "tokio")]
    pub fn into_async_fd(self) -> io::Result<tokio::io::unix::AsyncFd<Readiness>> {
        // SAFETY: the eventfd is owned by `self` (moved into the AsyncFd)
        // and closed only when it drops, so `as_raw_fd` returns the same
        // open descriptor for the AsyncFd's whole life.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE)
        }
        .map_err(io::Error::from)
    }
}

impl AsFd for Readiness {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.fd.as_fd()
    }
}

impl AsRawFd for Readiness {
    fn as_raw_fd(&self) -> RawFd {
        self.shared.fd.as_raw_fd()
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        let armed = self.armed.get_mut().unwrap_or_else(|p| p.into_inner());
        for (ticket, _) in armed.drain(..) {
            waker::remove(ticket);
        }
    }
}
