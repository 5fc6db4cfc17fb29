//! [`AsyncConsumer`] and [`AsyncProducer`] for every ring kind: each
//! delegates to the kind's own one-poll function (the one its blocking
//! calls run) and names its eventcount.
//!
//! A kind adds its impls here: `__poll_recv` / `__poll_send` from its
//! wait-loop poll, `__wait_parts` from its data or space event,
//! `__is_ready` from a look that claims nothing.

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

/// The impls of a producer kind: what it sends, its error, its poll.
macro_rules! producer {
    ([$($g:tt)*] $ty:ty, $value:ty, $error:ty, |$h:ident, $v:ident, $check:ident| $poll:expr) => {
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

impl<T: Pod> Sealed for spsc::Producer<T> {}
producer!([T: Pod] spsc::Producer<T>, T, PushError<T>, |h, v, check| h.poll_push(v, check));
impl Sealed for frames::Producer {}
producer!(['a] frames::Producer, &'a [u8], FramePushError, |h, v, check| {
    bytes_sent(v, h.poll_push(v, check))
});
impl<T: Pod> Sealed for mpmc::Producer<T> {}
producer!([T: Pod] mpmc::Producer<T>, T, PushError<T>, |h, v, check| h.poll_push(v, check));
impl Sealed for mpmc::BytesProducer {}
producer!(['a] mpmc::BytesProducer, &'a [u8], FramePushError, |h, v, check| {
    bytes_sent(v, h.poll_push(v, check))
});

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

impl<T: Message> Sealed for broadcast::Publisher<T> {}
producer!([T: Message] broadcast::Publisher<T>, T, PushError<T>, |h, v, check| h.poll_push(v, check));
impl Sealed for broadcast::BytesPublisher {}
producer!(['a] broadcast::BytesPublisher, &'a [u8], FramePushError, |h, v, check| {
    bytes_sent(v, h.poll_push(v, check))
});
