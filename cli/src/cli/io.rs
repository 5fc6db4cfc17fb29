//! `shmring send` and `shmring recv`: lines in, frames through the ring,
//! lines out.
//!
//! # Nothing lost when `recv` dies
//!
//! `recv` takes a message out of the ring only after its bytes were handed
//! to the kernel: a frame is lent in place by the ring
//! ([`frames::Consumer::read_chunk_timeout`]), written to stdout with one
//! `writev` (the payload straight from the ring, then the newline), and
//! only then released. So a `recv` killed at any moment leaves every
//! message it did not write in the ring, and a new `recv` on a persistent
//! ring starts with the first one. What may repeat is the one line being
//! written when the kill landed: a process killed inside `write(2)` dies
//! once the write is done, before the release, and the next `recv` writes
//! that line again; if a kill ever cuts a write short, the part that got
//! out is followed by the whole line (at-least-once, at most one line per
//! kill; README, "The command-line tool").
//!
//! The frame ring lends one frame at a time, so this is one system call
//! per line: there is no way to hold several frames and release them after
//! one write (that needs a batch read in the library).
//!
//! MPMC byte rings (`BytesConsumer`) copy a message out and release it in
//! one call, so there `recv` can only write it right after: a kill between
//! the two loses that one line. (A claim held across the write needs a
//! library change.)
//!
//! # Signals
//!
//! See [`super::signals`]: SIGINT, SIGTERM and SIGHUP (and `EPIPE` on
//! stdout, for `recv`) end the loops below between two messages; the
//! handles are dropped normally, then the process exits with 128 + signal.

use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::frames::{self, FramePushError};
use shmring::mpmc::{BytesConsumer, BytesProducer};
use shmring::spsc::PopError;
use shmring::wait::WaitStrategy;
use shmring::{Error, Kind, Layout, Segment, SegmentOptions};

use super::signals::{self, SLICE};

/// How `send` or `recv` ended without an error: the process's exit status.
pub(super) type Status = i32;

fn attach(
    opts: &SegmentOptions,
    name: &str,
    create: Option<Layout>,
) -> Result<Arc<Segment>, Error> {
    let seg = match create {
        Some(layout) => opts.open_or_create(name, &shmring::raw::bytes_spec(&layout))?,
        None => opts.open(name)?,
    };
    Ok(Arc::new(seg))
}

fn timeout_error(seg: &Segment, what: &str, waited: Duration) -> Error {
    Error::Timeout {
        path: seg.path().to_path_buf(),
        what: what.to_string(),
        waited,
    }
}

fn disconnected(seg: &Segment) -> Error {
    Error::Disconnected {
        path: seg.path().to_path_buf(),
    }
}

fn corrupted(seg: &Segment, what: String) -> Error {
    Error::Corrupted {
        path: seg.path().to_path_buf(),
        what,
    }
}

/// The exit status of `send` or `recv` stopped by `signal` (after its
/// handles are dropped).
fn stopped_by(signal: i32) -> Status {
    signals::exit_status(signal)
}

/// Waits until `fd` is ready for `events` (`libc::POLLIN` or `POLLOUT`),
/// at most `timeout`. False on timeout or when a signal interrupted the
/// wait; true when ready (or in error or hung up: the next read or write
/// says which).
fn wait_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> Result<bool, std::io::Error> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, and nfds = 1 says so; poll writes only its
    // `revents`.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(rc > 0)
}

/// stdin, read in large blocks and cut into lines, without hiding `EINTR`
/// (std's `read_until` retries it, which would keep a blocked `send` from
/// seeing a signal).
struct LineReader {
    file: File,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// `buf[start..scanned]` holds no newline.
    scanned: usize,
    eof: bool,
}

/// What [`LineReader::next`] found.
enum Next {
    /// A line, without its newline: a range of [`LineReader::buf`].
    Line(std::ops::Range<usize>),
    /// End of input.
    Eof,
    /// Nothing yet (a wait slice passed, or a signal came): look at the
    /// signal record, then call again.
    Idle,
}

impl LineReader {
    fn stdin() -> Result<LineReader, Error> {
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("stdin", "dup", e))?;
        Ok(LineReader {
            file: File::from(fd),
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
            scanned: 0,
            eof: false,
        })
    }

    fn next(&mut self) -> Result<Next, Error> {
        loop {
            if let Some(i) = self.buf[self.scanned..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = self.start..self.scanned + i;
                self.start = line.end + 1;
                self.scanned = self.start;
                return Ok(Next::Line(line));
            }
            self.scanned = self.end;
            if self.eof {
                if self.start < self.end {
                    let line = self.start..self.end;
                    self.start = self.end;
                    self.scanned = self.end;
                    return Ok(Next::Line(line));
                }
                return Ok(Next::Eof);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scanned -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            // A bounded wait first: a signal that lands just before a
            // blocking read would otherwise go unseen until input arrives.
            let ready = wait_fd(self.file.as_raw_fd(), libc::POLLIN, SLICE)
                .map_err(|e| Error::io("stdin", "poll", e))?;
            if !ready {
                return Ok(Next::Idle);
            }
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Ok(Next::Idle);
                }
                Err(e) => return Err(Error::io("stdin", "read", e)),
            }
        }
    }

    fn line(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// What a write does when a signal interrupts it before it is complete.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnSignal {
    /// Stop: the message is still in the ring (frame rings) and the next
    /// `recv` writes it again.
    Abandon,
    /// Finish it (MPMC: the message already left the ring), waiting at most
    /// [`FINISH_WAIT`] at a time for the output to take more.
    Finish,
}

/// How long an interrupted MPMC write waits for stdout to accept more
/// before it gives the line up.
const FINISH_WAIT: Duration = Duration::from_secs(1);

/// How a line's write ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Written {
    /// Every byte reached the kernel.
    All,
    /// A signal, or a closed pipe (`EPIPE`), stopped it; the signal record
    /// says which.
    Stopped,
}

/// stdout, written with `write(2)` and no user-space buffer: once
/// [`Output::write_line`] returns `All`, the line is the kernel's.
struct Output {
    file: File,
}

impl Output {
    fn stdout() -> Result<Output, Error> {
        let fd = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("stdout", "dup", e))?;
        Ok(Output {
            file: File::from(fd),
        })
    }

    /// Writes `line` and a newline (one `writev` unless the kernel takes
    /// less).
    fn write_line(&mut self, line: &[u8], on_signal: OnSignal) -> Result<Written, Error> {
        let mut parts = [IoSlice::new(line), IoSlice::new(b"\n")];
        let mut parts = &mut parts[..];
        let fd = self.file.as_raw_fd();
        while !parts.is_empty() {
            if on_signal == OnSignal::Finish
                && signals::received().is_some()
                && !wait_fd(fd, libc::POLLOUT, FINISH_WAIT)
                    .map_err(|e| Error::io("stdout", "poll", e))?
            {
                eprintln!(
                    "shmring: a line taken from the ring could not be written: stdout accepted nothing for {} s after the signal",
                    FINISH_WAIT.as_secs()
                );
                return Ok(Written::Stopped);
            }
            match self.file.write_vectored(parts) {
                Ok(0) => {
                    return Err(Error::io(
                        "stdout",
                        "write",
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(n) => IoSlice::advance_slices(&mut parts, n),
                Err(e) => match e.kind() {
                    std::io::ErrorKind::BrokenPipe => {
                        signals::note_broken_pipe();
                        return Ok(Written::Stopped);
                    }
                    std::io::ErrorKind::Interrupted => {
                        if on_signal == OnSignal::Abandon && signals::received().is_some() {
                            return Ok(Written::Stopped);
                        }
                    }
                    std::io::ErrorKind::WouldBlock => {
                        // A non-blocking stdout (inherited O_NONBLOCK).
                        wait_fd(fd, libc::POLLOUT, SLICE)
                            .map_err(|e| Error::io("stdout", "poll", e))?;
                        if on_signal == OnSignal::Abandon && signals::received().is_some() {
                            return Ok(Written::Stopped);
                        }
                    }
                    _ => return Err(Error::io("stdout", "write", e)),
                },
            }
        }
        Ok(Written::All)
    }
}

/// The sending half of a frame ring or of a byte-slot MPMC ring.
enum Tx {
    Frames(frames::Producer),
    Mpmc(BytesProducer),
}

impl Tx {
    fn attach(seg: &Arc<Segment>) -> Result<Tx, Error> {
        Ok(match seg.layout().kind() {
            Kind::Mpmc => Tx::Mpmc(BytesProducer::attach(seg.clone())?),
            _ => Tx::Frames(frames::Producer::attach(seg.clone())?),
        })
    }

    fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        match self {
            Tx::Frames(t) => t.set_wait_strategy(strategy),
            Tx::Mpmc(t) => t.set_wait_strategy(strategy),
        }
    }

    fn send_timeout(&mut self, msg: &[u8], limit: Option<Duration>) -> Result<(), FramePushError> {
        match self {
            Tx::Frames(t) => t.push_timeout(msg, limit),
            Tx::Mpmc(t) => t.push_timeout(msg, limit),
        }
    }

    fn is_consumer_alive(&self) -> bool {
        match self {
            Tx::Frames(t) => t.is_consumer_alive(),
            Tx::Mpmc(t) => t.is_consumer_alive(),
        }
    }

    fn is_drained(&self) -> bool {
        match self {
            Tx::Frames(t) => t.is_empty(),
            Tx::Mpmc(t) => t.is_empty(),
        }
    }

    /// What is still unread, in words.
    fn unread(&self) -> String {
        match self {
            Tx::Frames(t) => format!("{} bytes of frames", t.len()),
            Tx::Mpmc(t) => format!("{} message(s)", t.len()),
        }
    }
}

/// The receiving half of a frame ring or of a byte-slot MPMC ring.
enum Rx {
    Frames(frames::Consumer),
    Mpmc(BytesConsumer),
}

/// What one [`Rx::deliver`] did.
enum Delivery {
    /// One message was written to stdout and released.
    Written,
    /// A signal or a closed stdout stopped the write (frame rings: the
    /// message stays in the ring).
    Stopped,
    /// Nothing was received.
    Nothing(PopError),
}

impl Rx {
    fn attach(seg: &Arc<Segment>) -> Result<Rx, Error> {
        Ok(match seg.layout().kind() {
            Kind::Mpmc => Rx::Mpmc(BytesConsumer::attach(seg.clone())?),
            _ => Rx::Frames(frames::Consumer::attach(seg.clone())?),
        })
    }

    fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        match self {
            Rx::Frames(r) => r.set_wait_strategy(strategy),
            Rx::Mpmc(r) => r.set_wait_strategy(strategy),
        }
    }

    /// Waits at most `timeout` for one message, writes it to `out` and only
    /// then releases it (frame rings; see the module's documentation).
    fn deliver(
        &mut self,
        timeout: Duration,
        buf: &mut Vec<u8>,
        out: &mut Output,
    ) -> Result<Delivery, Error> {
        match self {
            Rx::Frames(r) => match r.read_chunk_timeout(Some(timeout)) {
                Ok(frame) => {
                    let written = out.write_line(&frame, OnSignal::Abandon);
                    if matches!(written, Ok(Written::All)) {
                        frame.release();
                        return Ok(Delivery::Written);
                    }
                    // Stopped, or the write failed: not consumed. Dropping
                    // the chunk would release the frame; forgetting it
                    // leaves the frame in the ring for the next consumer
                    // (the chunk owns nothing else).
                    std::mem::forget(frame);
                    written.map(|_| Delivery::Stopped)
                }
                Err(e) => Ok(Delivery::Nothing(e)),
            },
            Rx::Mpmc(r) => match r.pop_timeout(buf, Some(timeout)) {
                Ok(()) => Ok(match out.write_line(buf, OnSignal::Finish)? {
                    Written::All => Delivery::Written,
                    Written::Stopped => Delivery::Stopped,
                }),
                Err(e) => Ok(Delivery::Nothing(e)),
            },
        }
    }

    fn is_producer_alive(&self) -> bool {
        match self {
            Rx::Frames(r) => r.is_producer_alive(),
            Rx::Mpmc(r) => r.is_producer_alive(),
        }
    }
}

/// Time left of `limit` since `since` (`None`: no limit).
fn left(limit: Option<Duration>, since: Instant) -> Option<Duration> {
    limit.map(|l| l.saturating_sub(since.elapsed()))
}

/// One wait slice: at most [`SLICE`], at most what is left.
fn slice(left: Option<Duration>) -> Duration {
    left.map_or(SLICE, |l| l.min(SLICE))
}

pub(super) fn send(
    opts: &SegmentOptions,
    name: &str,
    create: Option<Layout>,
    timeout_ms: Option<u64>,
    strategy: WaitStrategy,
) -> Result<Status, Error> {
    let seg = attach(opts, name, create)?;
    let mut tx = Tx::attach(&seg)?;
    tx.set_wait_strategy(strategy);
    let limit = timeout_ms.map(Duration::from_millis);
    let mut input = LineReader::stdin()?;
    loop {
        if let Some(signal) = signals::received() {
            return Ok(leave_on_signal(&seg, &tx, signal));
        }
        let line = match input.next()? {
            Next::Line(range) => input.line(range),
            Next::Eof => break,
            Next::Idle => continue,
        };
        let started = limit.map(|_| Instant::now());
        loop {
            let left = started.and_then(|t| left(limit, t));
            match tx.send_timeout(line, Some(slice(left))) {
                Ok(()) => break,
                Err(FramePushError::Timeout) => {
                    if let Some(signal) = signals::received() {
                        return Ok(leave_on_signal(&seg, &tx, signal));
                    }
                    if left.is_some_and(|l| l <= SLICE) {
                        return Err(timeout_error(
                            &seg,
                            "waiting for space in the ring",
                            limit.unwrap_or_default(),
                        ));
                    }
                }
                Err(FramePushError::Full | FramePushError::Disconnected) => {
                    return Err(disconnected(&seg));
                }
                Err(FramePushError::TooLarge { len, max }) if seg.layout().kind() == Kind::Mpmc => {
                    return Err(Error::InvalidConfig {
                        what: format!(
                            "a {len}-byte line does not fit this ring's slots (at most {max} bytes each); create it with a larger --slot-size"
                        ),
                    });
                }
                Err(e @ FramePushError::TooLarge { .. }) => {
                    return Err(Error::InvalidConfig {
                        what: e.to_string(),
                    });
                }
                Err(FramePushError::Corrupted(w)) => return Err(corrupted(&seg, w)),
            }
        }
    }
    // A non-persistent ring disappears with its last user: stay until the
    // consumer has taken everything, so no line is lost.
    if !seg.is_persistent() {
        let started = Instant::now();
        let mut seen_consumer = false;
        loop {
            if let Some(signal) = signals::received() {
                return Ok(leave_on_signal(&seg, &tx, signal));
            }
            let consumer_alive = tx.is_consumer_alive();
            seen_consumer |= consumer_alive;
            if tx.is_drained() {
                break;
            }
            if seen_consumer && !consumer_alive {
                return Err(disconnected(&seg));
            }
            if let Some(l) = limit
                && started.elapsed() >= l
            {
                return Err(timeout_error(
                    &seg,
                    "waiting for a consumer to take the last lines",
                    l,
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(0)
}

/// `send` stopped by a signal. Lines already in the ring stay there for
/// the consumer: a persistent ring keeps them, and a non-persistent one
/// lives as long as its consumer is attached, which then drains it. Only a
/// non-persistent ring with no consumer goes with us, unread lines and
/// all: say so (the library's "nothing lost silently" rule for a producer
/// dropped without linger).
fn leave_on_signal(seg: &Segment, tx: &Tx, signal: i32) -> Status {
    if !seg.is_persistent() && !tx.is_drained() && !tx.is_consumer_alive() {
        eprintln!(
            "shmring: {}: {} unread in {} are lost: no consumer is attached and the ring goes with its last user",
            signals::name(signal),
            tx.unread(),
            seg.path().display()
        );
    }
    stopped_by(signal)
}

pub(super) fn recv(
    opts: &SegmentOptions,
    name: &str,
    create: Option<Layout>,
    count: Option<u64>,
    timeout_ms: Option<u64>,
    strategy: WaitStrategy,
) -> Result<Status, Error> {
    let seg = attach(opts, name, create)?;
    let mut rx = Rx::attach(&seg)?;
    rx.set_wait_strategy(strategy);
    let limit = timeout_ms.map(Duration::from_millis);
    let mut out = Output::stdout()?;
    let mut received = 0u64;
    let mut buf = Vec::new();
    // A producer of an earlier session may have left its record marked
    // detached: `Disconnected` ends the run only once a producer was seen.
    let mut seen_producer = false;
    let mut idle_since = Instant::now();
    while count.is_none_or(|c| received < c) {
        if let Some(signal) = signals::received() {
            return Ok(stopped_by(signal));
        }
        let left = left(limit, idle_since);
        if left == Some(Duration::ZERO) {
            return Err(timeout_error(
                &seg,
                if seen_producer {
                    "waiting for a message"
                } else {
                    "waiting for a producer"
                },
                limit.unwrap_or_default(),
            ));
        }
        // Before a producer was seen, wake up now and then to look for
        // one; after, sleep until a message, the deadline or the end of a
        // slice (to look at the signal record).
        let wait = if seen_producer {
            slice(left)
        } else {
            slice(left).min(Duration::from_millis(20))
        };
        match rx.deliver(wait, &mut buf, &mut out)? {
            Delivery::Written => {
                received += 1;
                seen_producer = true;
                if limit.is_some() {
                    idle_since = Instant::now();
                }
            }
            Delivery::Stopped => {
                // A signal or EPIPE: recorded by the write.
                return Ok(stopped_by(signals::received().unwrap_or(libc::SIGPIPE)));
            }
            Delivery::Nothing(PopError::Timeout) => {
                if !seen_producer {
                    seen_producer = rx.is_producer_alive();
                }
            }
            Delivery::Nothing(PopError::Disconnected) if !seen_producer => {
                seen_producer = rx.is_producer_alive();
                if !seen_producer {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Delivery::Nothing(PopError::Disconnected) => break,
            Delivery::Nothing(PopError::Corrupted(w)) => return Err(corrupted(&seg, w)),
        }
    }
    Ok(0)
}
