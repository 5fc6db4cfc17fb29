//! What every ring kind shares: the queue operations' errors, a side's role
//! and liveness, and the builder that opens or creates a ring for a handle.
//!
//! The errors are small, cheap to build on a hot path, and give an unsent
//! value back; each converts into [`crate::Error`] with `?`.

pub(crate) mod builder;
pub(crate) mod role;

pub use builder::{Builder, Endpoint, Start};

use std::path::PathBuf;

use crate::error::Error;
use crate::wait::Poll;
use role::Side;

/// Why a non-blocking push failed; the value comes back.
#[derive(PartialEq, Eq)]
pub enum TryPushError<T> {
    /// The ring is full.
    Full(T),
    /// The ring is full and its consumer is gone (non-persistent rings).
    Disconnected(T),
    /// The consumer's index is out of range: a buggy or hostile peer.
    Corrupted(T, String),
}

impl<T> TryPushError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Full(v)
            | TryPushError::Disconnected(v)
            | TryPushError::Corrupted(v, _) => v,
        }
    }
}

// Not derived: a message type need not be `Debug` for its error to be.
impl<T> std::fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("Full(..)"),
            TryPushError::Disconnected(_) => f.write_str("Disconnected(..)"),
            TryPushError::Corrupted(_, w) => write!(f, "Corrupted(.., {w:?})"),
        }
    }
}

impl<T> std::fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("ring is full"),
            TryPushError::Disconnected(_) => f.write_str("ring is full and its consumer is gone"),
            TryPushError::Corrupted(_, what) => write!(f, "corrupted ring: {what}"),
        }
    }
}

impl<T> std::error::Error for TryPushError<T> {}

/// Why a non-blocking pop failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryPopError {
    /// Nothing published yet.
    Empty,
    /// Empty, and the producer is gone: nothing more will arrive (until a
    /// new producer attaches to a persistent ring).
    Disconnected,
    /// The producer's index or a frame is out of range.
    Corrupted(String),
}

impl std::fmt::Display for TryPopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPopError::Empty => f.write_str("ring is empty"),
            TryPopError::Disconnected => f.write_str("ring is empty and its producer is gone"),
            TryPopError::Corrupted(what) => write!(f, "corrupted ring: {what}"),
        }
    }
}

impl std::error::Error for TryPopError {}

/// Why a blocking push failed; the value comes back.
#[derive(PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring stayed full for the whole timeout.
    Timeout(T),
    /// The consumer of a non-persistent ring is gone.
    Disconnected(T),
    /// The consumer's index is out of range.
    Corrupted(T, String),
}

impl<T> PushError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Timeout(v) | PushError::Disconnected(v) | PushError::Corrupted(v, _) => v,
        }
    }
}

impl<T> std::fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Timeout(_) => f.write_str("Timeout(..)"),
            PushError::Disconnected(_) => f.write_str("Disconnected(..)"),
            PushError::Corrupted(_, w) => write!(f, "Corrupted(.., {w:?})"),
        }
    }
}

impl<T> std::fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Timeout(_) => f.write_str("timed out waiting for space"),
            PushError::Disconnected(_) => f.write_str("the consumer is gone"),
            PushError::Corrupted(_, what) => write!(f, "corrupted ring: {what}"),
        }
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Why a blocking pop (or frame read) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PopError {
    /// Nothing arrived within the timeout.
    Timeout,
    /// The producer is gone and everything it published was taken.
    Disconnected,
    /// The producer's index or a frame is out of range.
    Corrupted(String),
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PopError::Timeout => f.write_str("timed out waiting for a message"),
            PopError::Disconnected => f.write_str("the producer is gone and the ring is drained"),
            PopError::Corrupted(what) => write!(f, "corrupted ring: {what}"),
        }
    }
}

impl std::error::Error for PopError {}

/// Why a frame could not be written (frame rings, and the byte slots of
/// MPMC rings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramePushError {
    /// Not enough free space now.
    Full,
    /// Full, and the consumer of a non-persistent ring is gone.
    Disconnected,
    /// The frame can never fit in this ring.
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload this ring accepts.
        max: usize,
    },
    /// The ring carries messages of one size (a typed ring, reached
    /// through a whole-slot byte handle) and this one is not of it.
    WrongSize {
        /// Length of the message.
        len: usize,
        /// The ring's message size.
        size: usize,
    },
    /// The consumer's index is out of range.
    Corrupted(String),
    /// No room appeared within the timeout (blocking calls only).
    Timeout,
}

impl std::fmt::Display for FramePushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FramePushError::Full => f.write_str("ring is full"),
            FramePushError::Disconnected => f.write_str("ring is full and its consumer is gone"),
            FramePushError::TooLarge { len, max } => write!(
                f,
                "a {len}-byte frame can never fit: this ring takes frames up to {max} bytes; create it with a larger capacity"
            ),
            FramePushError::WrongSize { len, size } => write!(
                f,
                "a {len}-byte message cannot go into this ring: its type's messages are exactly {size} bytes"
            ),
            FramePushError::Corrupted(w) => write!(f, "corrupted ring: {w}"),
            FramePushError::Timeout => f.write_str("timed out waiting for space"),
        }
    }
}

impl std::error::Error for FramePushError {}

/// Is a `len`-byte message one a ring takes? At most `max` bytes; exactly
/// `max` when `exact` (a typed ring reached through a whole-slot byte
/// handle, whose every message is one value).
pub(crate) fn check_message_len(
    len: usize,
    max: usize,
    exact: bool,
) -> std::result::Result<(), FramePushError> {
    if exact && len != max {
        Err(FramePushError::WrongSize { len, size: max })
    } else if len > max {
        Err(FramePushError::TooLarge { len, max })
    } else {
        Ok(())
    }
}

/// A blocking push's error, with the value dropped (byte handles give the
/// message back by not taking it).
impl<T> From<PushError<T>> for FramePushError {
    fn from(e: PushError<T>) -> FramePushError {
        match e {
            PushError::Timeout(_) => FramePushError::Timeout,
            PushError::Disconnected(_) => FramePushError::Disconnected,
            PushError::Corrupted(_, w) => FramePushError::Corrupted(w),
        }
    }
}

/// A non-blocking push's error, with the value dropped.
impl<T> From<TryPushError<T>> for FramePushError {
    fn from(e: TryPushError<T>) -> FramePushError {
        match e {
            TryPushError::Full(_) => FramePushError::Full,
            TryPushError::Disconnected(_) => FramePushError::Disconnected,
            TryPushError::Corrupted(_, w) => FramePushError::Corrupted(w),
        }
    }
}

// Conversions into the crate's error, so `?` works in functions returning
// `shmring::Result`. Queue errors carry no path (they are built on the hot
// path); the unsent value is dropped.

fn disconnected() -> Error {
    Error::Disconnected {
        path: PathBuf::new(),
    }
}

fn corrupted(what: String) -> Error {
    Error::Corrupted {
        path: PathBuf::new(),
        what,
    }
}

fn timeout(what: &str) -> Error {
    Error::Timeout {
        path: PathBuf::new(),
        what: what.to_string(),
        waited: std::time::Duration::ZERO,
    }
}

impl<T> From<TryPushError<T>> for Error {
    fn from(e: TryPushError<T>) -> Error {
        match e {
            TryPushError::Full(_) => Error::Full,
            TryPushError::Disconnected(_) => disconnected(),
            TryPushError::Corrupted(_, w) => corrupted(w),
        }
    }
}

impl From<TryPopError> for Error {
    fn from(e: TryPopError) -> Error {
        match e {
            TryPopError::Empty => Error::Empty,
            TryPopError::Disconnected => disconnected(),
            TryPopError::Corrupted(w) => corrupted(w),
        }
    }
}

impl<T> From<PushError<T>> for Error {
    fn from(e: PushError<T>) -> Error {
        match e {
            PushError::Timeout(_) => timeout("waiting for space in the ring"),
            PushError::Disconnected(_) => disconnected(),
            PushError::Corrupted(_, w) => corrupted(w),
        }
    }
}

impl From<PopError> for Error {
    fn from(e: PopError) -> Error {
        match e {
            PopError::Timeout => timeout("waiting for a message"),
            PopError::Disconnected => disconnected(),
            PopError::Corrupted(w) => corrupted(w),
        }
    }
}

impl From<FramePushError> for Error {
    fn from(e: FramePushError) -> Error {
        match e {
            FramePushError::Full => Error::Full,
            FramePushError::Disconnected => disconnected(),
            e @ (FramePushError::TooLarge { .. } | FramePushError::WrongSize { .. }) => {
                Error::InvalidConfig {
                    what: e.to_string(),
                }
            }
            FramePushError::Corrupted(w) => corrupted(w),
            FramePushError::Timeout => timeout("waiting for space in the ring"),
        }
    }
}

/// Turns a non-blocking pop result into a wait-loop poll: `Empty` is
/// pending, unless `check_peer` finds the producer gone, in which case one
/// more try decides between a last message and `Disconnected`.
pub(crate) fn pop_poll<R>(
    check_peer: bool,
    side: &mut Side,
    mut attempt: impl FnMut(&mut Side) -> std::result::Result<R, TryPopError>,
) -> Poll<std::result::Result<R, PopError>> {
    let settle = |r: std::result::Result<R, TryPopError>| match r {
        Ok(v) => Poll::Ready(Ok(v)),
        Err(TryPopError::Empty) => Poll::Pending,
        Err(TryPopError::Disconnected) => Poll::Ready(Err(PopError::Disconnected)),
        Err(TryPopError::Corrupted(w)) => Poll::Ready(Err(PopError::Corrupted(w))),
    };
    match settle(attempt(side)) {
        Poll::Pending if check_peer && side.peer_gone_now() => match settle(attempt(side)) {
            Poll::Pending => Poll::Ready(Err(PopError::Disconnected)),
            ready => ready,
        },
        other => other,
    }
}

/// The blocking form of a batch pop: runs `attempt(check_peer)` (a
/// non-blocking batch pop that checks the producers' locks when asked)
/// until it takes something, waiting on `event` by `strategy` for at most
/// `timeout`.
pub(crate) fn pop_batch_blocking<R>(
    event: crate::wait::Event<'_>,
    strategy: crate::wait::WaitStrategy,
    timeout: Option<std::time::Duration>,
    mut attempt: impl FnMut(bool) -> std::result::Result<R, TryPopError>,
) -> std::result::Result<R, PopError> {
    let outcome = crate::wait::block_on(event, strategy, timeout, |check| match attempt(check) {
        Err(TryPopError::Empty) => Poll::Pending,
        Ok(r) => Poll::Ready(Ok(r)),
        Err(TryPopError::Disconnected) => Poll::Ready(Err(PopError::Disconnected)),
        Err(TryPopError::Corrupted(w)) => Poll::Ready(Err(PopError::Corrupted(w))),
    });
    outcome.unwrap_or(Err(PopError::Timeout))
}

/// The blocking form of a batch push: runs `attempt(check_peer)` until it
/// pushes something, waiting on `event` by `strategy` for at most
/// `timeout`.
pub(crate) fn push_batch_blocking(
    event: crate::wait::Event<'_>,
    strategy: crate::wait::WaitStrategy,
    timeout: Option<std::time::Duration>,
    mut attempt: impl FnMut(bool) -> std::result::Result<usize, TryPushError<()>>,
) -> std::result::Result<usize, PushError<()>> {
    let outcome = crate::wait::block_on(event, strategy, timeout, |check| match attempt(check) {
        Err(TryPushError::Full(())) => Poll::Pending,
        Ok(n) => Poll::Ready(Ok(n)),
        Err(TryPushError::Disconnected(())) => Poll::Ready(Err(PushError::Disconnected(()))),
        Err(TryPushError::Corrupted((), w)) => Poll::Ready(Err(PushError::Corrupted((), w))),
    });
    outcome.unwrap_or(Err(PushError::Timeout(())))
}
