//! [`AsyncConsumer`] and [`AsyncProducer`] for every ring kind: each
//! delegates to the kind's own one-poll function (the one its blocking
//! calls run) and names its eventcount.
//!
//! A kind adds its impls here: `__poll_recv` / `__poll_send` from its
//! wait-loop poll, `__wait_parts` from its data or space event,
//! `__is_ready` / `__is_writable` from a look that claims nothing.

use std::sync::Arc;

use bytemuck::Pod;

use super::{AsyncConsumer, AsyncProducer, sealed::Sealed};
use crate::message::Message;
use crate::ring::{FramePushError, PopError, PushError};
use crate::segment::Segment;
use crate::wait::{self, ReadyEvent, Selectable};
use crate::{broadcast, frames, mpmc, spsc};

fn ready<R>(p: wait::Poll<R>) -> Option<R> {
    match p {
        wait::Poll::Ready(r) => Some(r),
        wait::Poll::Pending => None,
    }
}

/// A frame kind's poll (into a fresh buffer), as the traits want it.
fn frame(
    poll: impl FnOnce(&mut Vec<u8>) -> wait::Poll<Result<(), PopError>>,
) -> Option<Result<Vec<u8>, PopError>> {
    let mut out = Vec::new();
    ready(poll(&mut out)).map(|r| r.map(|()| out))
}

/// A byte kind's push poll, as the traits want it.
fn bytes_sent(
    payload: &[u8],
    poll: wait::Poll<Result<(), FramePushError>>,
) -> Result<Result<(), FramePushError>, &[u8]> {
    ready(poll).ok_or(payload)
}

fn parts<'a>(
    (event, seg): (wait::Event<'a>, &'a Arc<Segment>),
) -> (ReadyEvent<'a>, &'a Arc<Segment>) {
    (ReadyEvent(event), seg)
}

/// The impls of a consumer kind: its item, its poll (`$poll` with `$h` the
/// handle and `$check` the flag), its readiness look.
macro_rules! consumer {
    ([$($g:tt)*] $ty:ty, $item:ty, |$h:ident, $check:ident| $poll:expr, $ready:ident) => {
        impl<$($g)*> Sealed for $ty {}
        impl<$($g)*> AsyncConsumer for $ty {
            type Item = $item;
            type Error = PopError;
            fn __poll_recv(&mut self, $check: bool) -> Option<Result<$item, PopError>> {
                let $h = self;
                $poll
            }
            fn __is_ready(&mut self) -> bool {
                self.$ready()
            }
            fn __wait_parts(&self) -> (ReadyEvent<'_>, &Arc<Segment>) {
                parts(self.wait_parts())
            }
        }
    };
}

/// The impls of a producer kind: what it sends, its error, its poll, its
/// room look (conservative: `true` only when a send would not wait).
macro_rules! producer {
    ([$($g:tt)*] $ty:ty, $value:ty, $error:ty, |$h:ident, $v:ident, $check:ident| $poll:expr, $room:ident) => {
        impl<$($g)*> AsyncProducer<$value> for $ty {
            type Error = $error;
            fn __poll_send(
                &mut self,
                $v: $value,
                $check: bool,
            ) -> Result<Result<(), $error>, $value> {
                let $h = self;
                $poll
            }
            fn __is_writable(&mut self) -> bool {
                self.$room()
            }
            fn __wait_parts(&self) -> (ReadyEvent<'_>, &Arc<Segment>) {
                parts(self.wait_parts())
            }
        }
    };
}

consumer!([T: Pod] spsc::Consumer<T>, T, |h, check| ready(h.poll_pop(check)), is_ready);
consumer!(
    [] frames::Consumer,
    Vec<u8>,
    |h, check| frame(|out| h.poll_pop_into(out, check)),
    is_ready
);
consumer!([T: Pod] mpmc::Consumer<T>, T, |h, check| ready(h.poll_pop(check)), readable);
consumer!(
    [] mpmc::BytesConsumer,
    Vec<u8>,
    |h, check| frame(|out| h.poll_pop_into(out, check)),
    readable
);

/// A typed producer kind (sends a `T`, `PushError` gives it back), with its
/// room look.
macro_rules! typed_producer {
    ([$($g:tt)*] $ty:ty, $room:ident) => {
        impl<$($g)*> Sealed for $ty {}
        producer!([$($g)*] $ty, T, PushError<T>, |h, v, check| h.poll_push(v, check), $room);
    };
}

/// A byte producer kind (sends a `&[u8]`), with its room look.
macro_rules! bytes_producer {
    ($ty:ty, $room:ident) => {
        impl Sealed for $ty {}
        producer!(['a] $ty, &'a [u8], FramePushError, |h, v, check| {
            bytes_sent(v, h.poll_push(v, check))
        }, $room);
    };
}

// The spsc and typed broadcast looks are their `select` readiness (exact:
// room for one message, or finished); the others are `writable` (for
// frames: room for the largest frame).
typed_producer!([T: Pod] spsc::Producer<T>, is_ready);
bytes_producer!(frames::Producer, writable);
typed_producer!([T: Pod] mpmc::Producer<T>, writable);
bytes_producer!(mpmc::BytesProducer, writable);

/// Broadcast subscribers: each message with its sequence number; a lap or
/// an eviction is reported and the stream goes on.
macro_rules! subscriber {
    ([$($g:tt)*] $ty:ty, $item:ty) => {
        impl<$($g)*> Sealed for $ty {}
        impl<$($g)*> AsyncConsumer for $ty {
            type Item = $item;
            type Error = broadcast::PopError;
            fn __poll_recv(&mut self, check: bool) -> Option<Result<$item, broadcast::PopError>> {
                ready(self.poll_pop(check))
            }
            fn __is_final(e: &broadcast::PopError) -> bool {
                matches!(
                    e,
                    broadcast::PopError::Disconnected | broadcast::PopError::Corrupted(_)
                )
            }
            fn __is_ready(&mut self) -> bool {
                Selectable::is_ready(self)
            }
            fn __wait_parts(&self) -> (ReadyEvent<'_>, &Arc<Segment>) {
                parts(self.wait_parts())
            }
        }
    };
}
subscriber!([T: Message] broadcast::Subscriber<T>, (u64, T));
subscriber!([] broadcast::BytesSubscriber, (u64, Vec<u8>));

typed_producer!([T: Message] broadcast::Publisher<T>, is_ready);
bytes_producer!(broadcast::BytesPublisher, writable);
