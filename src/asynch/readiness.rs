//! A readiness fd: an eventfd that the waker thread signals when a ring it
//! was armed on has something to take.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use super::AsyncConsumer;
use super::waker::{self, Target, Ticket, Watch};
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
/// [armed](Readiness::arm) on has a message (or its ring finished).
///
/// Arming is one-shot, like `EPOLLONESHOT`: the loop is
///
/// 1. `arm` every consumer; wait until the fd is readable;
/// 2. [`clear`](Readiness::clear) it, drain each consumer with `try_pop`
///    (or `recv().await` in async code), and arm them again.
///
/// An armed ring makes its publisher bump the futex word and issue one
/// `FUTEX_WAKE` for the first message after arming, then nothing until it
/// is armed again: no system call per message, and an idle fd stays quiet.
/// The fd does not notice a peer that crashes (a dead process signals
/// nothing): an event loop that must know checks `is_producer_alive`
/// every [`crate::wait::PEER_CHECK_INTERVAL`] or so. A peer that detaches
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
        let word = std::ptr::from_ref(&watch.event().line.seq) as usize;
        // A poisoned lock only means a panic elsewhere; the list is valid.
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.retain(|&(t, _)| waker::pending(t));
        if armed.iter().any(|&(_, w)| w == word) {
            return;
        }
        let key = watch.event().register();
        if consumer.__is_ready() {
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
