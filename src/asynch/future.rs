//! The futures and the stream, over one state machine ([`Waiter`]): try;
//! if nothing, register in the ring's eventcount, try again, and hand the
//! registration to the waker thread.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::waker::{self, Target, Ticket, Watch};
use super::{AsyncConsumer, AsyncProducer};
use crate::wait::PEER_CHECK_INTERVAL;

/// A waiter's registration with the waker thread, and when it next checks
/// its peer's liveness. Holds no claim on the ring: dropping it only
/// withdraws the registration.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    ticket: Option<Ticket>,
    check_at: Option<Instant>,
}

impl Waiter {
    /// One poll: `attempt(handle, check_peer)` is the handle's non-blocking
    /// try (`Some` when done); `parts` its eventcount and segment.
    pub(crate) fn poll<H: ?Sized, R>(
        &mut self,
        cx: &mut Context<'_>,
        handle: &mut H,
        parts: impl Fn(&H) -> Watch,
        attempt: impl FnMut(&mut H, bool) -> Option<R>,
    ) -> Poll<R> {
        // Under tokio, each message spends the task's cooperative budget,
        // so a consumer that always finds data still lets the runtime's
        // other tasks (timers, ...) run.
        #[cfg(feature = "tokio")]
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let r = std::task::ready!(self.poll_unbudgeted(cx, handle, parts, attempt));
        #[cfg(feature = "tokio")]
        coop.made_progress();
        Poll::Ready(r)
    }

    fn poll_unbudgeted<H: ?Sized, R>(
        &mut self,
        cx: &mut Context<'_>,
        handle: &mut H,
        parts: impl Fn(&H) -> Watch,
        mut attempt: impl FnMut(&mut H, bool) -> Option<R>,
    ) -> Poll<R> {
        let now = Instant::now();
        let check_at = *self.check_at.get_or_insert(now + PEER_CHECK_INTERVAL);
        let check_peer = now >= check_at;
        if check_peer {
            self.check_at = Some(now + PEER_CHECK_INTERVAL);
        }
        if let Some(r) = attempt(handle, check_peer) {
            self.cancel();
            return Poll::Ready(r);
        }
        if let Some(ticket) = self.ticket {
            if waker::refresh(ticket, cx.waker()) {
                return Poll::Pending;
            }
            // Fired since: the word moved (or the peer check is due), but
            // the try above found nothing yet; register again.
            self.ticket = None;
        }
        // The eventcount protocol: key, waiter count, barrier (all in
        // `register`), then the re-check.
        let watch = parts(handle);
        let key = watch.event().register();
        if let Some(r) = attempt(handle, false) {
            watch.event().unregister();
            return Poll::Ready(r);
        }
        match waker::add(watch, key, self.check_at, Target::Task(cx.waker().clone())) {
            Ok(ticket) => self.ticket = Some(ticket),
            Err(watch) => {
                // No waker thread: poll again soon rather than never.
                watch.event().unregister();
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }

    fn cancel(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            waker::remove(ticket);
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The future of [`AsyncConsumer::recv`]: the next message, or why there
/// is none. Cancel-safe: dropping it before it completes takes nothing.
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct Recv<'a, C: ?Sized> {
    consumer: &'a mut C,
    waiter: Waiter,
}

impl<'a, C: AsyncConsumer + ?Sized> Recv<'a, C> {
    pub(crate) fn new(consumer: &'a mut C) -> Self {
        Recv {
            consumer,
            waiter: Waiter::default(),
        }
    }
}

impl<C: AsyncConsumer + ?Sized> Future for Recv<'_, C> {
    type Output = Result<C::Item, C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.waiter
            .poll(cx, this.consumer, watch_of, |c, check| c.__poll_recv(check))
    }
}

fn watch_of<H: AsyncConsumer + ?Sized>(h: &H) -> Watch {
    let (event, seg) = h.__wait_parts();
    Watch::new(event.0, seg)
}

/// The stream of [`AsyncConsumer::stream`]: every message in order, then,
/// once the producers are gone and the ring drained (or it is corrupted),
/// that error once, then the end. Cancel-safe between items.
#[must_use = "streams do nothing unless polled"]
#[derive(Debug)]
pub struct RecvStream<'a, C: ?Sized> {
    consumer: &'a mut C,
    waiter: Waiter,
    done: bool,
}

impl<'a, C: AsyncConsumer + ?Sized> RecvStream<'a, C> {
    pub(crate) fn new(consumer: &'a mut C) -> Self {
        RecvStream {
            consumer,
            waiter: Waiter::default(),
            done: false,
        }
    }
}

impl<C: AsyncConsumer + ?Sized> futures_core::Stream for RecvStream<'_, C> {
    type Item = Result<C::Item, C::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let r = std::task::ready!(this.waiter.poll(cx, this.consumer, watch_of, |c, check| {
            c.__poll_recv(check)
        }));
        this.done = r.as_ref().err().is_some_and(C::__is_final);
        Poll::Ready(Some(r))
    }
}

impl<C: AsyncConsumer + ?Sized> futures_core::FusedStream for RecvStream<'_, C> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

/// The future of [`AsyncProducer::send`]. Cancel-safe: dropping it before
/// it completes sends nothing (the value is dropped with it).
#[must_use = "futures do nothing unless awaited"]
pub struct SendFuture<'a, P: ?Sized, V> {
    producer: &'a mut P,
    value: Option<V>,
    waiter: Waiter,
}

impl<P: ?Sized, V> std::fmt::Debug for SendFuture<'_, P, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture")
            .field("sent", &self.value.is_none())
            .finish_non_exhaustive()
    }
}

impl<'a, P: AsyncProducer<V> + ?Sized, V> SendFuture<'a, P, V> {
    pub(crate) fn new(producer: &'a mut P, value: V) -> Self {
        SendFuture {
            producer,
            value: Some(value),
            waiter: Waiter::default(),
        }
    }
}

// The value is moved in and out by value, never pinned.
impl<P: ?Sized, V> Unpin for SendFuture<'_, P, V> {}

impl<P: AsyncProducer<V> + ?Sized, V> Future for SendFuture<'_, P, V> {
    type Output = Result<(), P::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let slot = &mut this.value;
        this.waiter.poll(
            cx,
            this.producer,
            |p| {
                let (event, seg) = p.__wait_parts();
                Watch::new(event.0, seg)
            },
            |p, check| {
                // Polled again after completing: nothing left to send.
                let v = slot.take()?;
                match p.__poll_send(v, check) {
                    Ok(done) => Some(done),
                    Err(v) => {
                        *slot = Some(v);
                        None
                    }
                }
            },
        )
    }
}
