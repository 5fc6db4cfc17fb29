//! `shmring send` and `shmring recv`: lines in, frames through the ring,
//! lines out.
//!
//! # Nothing lost when `recv` dies, nothing twice into a file
//!
//! `recv` takes messages out of the ring only after their bytes were
//! handed to the kernel. On a frame ring it borrows up to
//! [`LINES_PER_WRITE`] published frames in place
//! ([`frames::Consumer::read_frames_timeout`]), writes them with one
//! `writev` (payloads straight from the ring, each followed by a newline)
//! and then releases exactly the lines that got out whole. On an MPMC ring
//! it claims one message ([`BytesConsumer::read_chunk_timeout`]), writes
//! it, and only then releases it; a claim this process dies holding goes
//! first to the next `recv` (the next holder of its consumer role). So a
//! `recv` killed at any moment leaves every message it did not write in the
//! ring, in order.
//!
//! When stdout is a regular file, each write also leaves a *receipt* in the
//! ring beside the messages it carries: the file's device and inode, the
//! offset the write starts at and its length. The next `recv` on the same
//! file reads the receipt with the messages, sees from the file's length
//! (and its bytes, which must be the messages' first bytes) how much of
//! that write got in before the kill, writes the rest and releases them:
//! each line exactly once, even one a kill cut in the middle. To a pipe or
//! a terminal the delivery is at-least-once: a kill after a write and
//! before its release repeats that write's lines (at most
//! [`LINES_PER_WRITE`] on a frame ring, one line on an MPMC ring), and a
//! line cut by a kill is followed by the whole line (README, "The
//! command-line tool").
//!
//! # Signals
//!
//! See [`super::signals`]: SIGINT, SIGTERM and SIGHUP (and `EPIPE` on
//! stdout, for `recv`) end the loops below between two messages; the
//! handles are dropped normally, then the process exits with 128 + signal.

use std::fs::File;
use std::io::{IoSlice, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
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
pub(super) struct LineReader {
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
pub(super) enum Next {
    /// A line, without its newline: a range of [`LineReader::buf`].
    Line(std::ops::Range<usize>),
    /// End of input.
    Eof,
    /// Nothing yet (a wait slice passed, or a signal came): look at the
    /// signal record, then call again.
    Idle,
}

impl LineReader {
    pub(super) fn stdin() -> Result<LineReader, Error> {
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

    pub(super) fn next(&mut self) -> Result<Next, Error> {
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

    pub(super) fn line(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// How a batch's write ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Written {
    /// Every byte reached the kernel.
    All,
    /// A signal, or a closed pipe (`EPIPE`), stopped it; the signal record
    /// says which.
    Stopped,
}

/// How long a `recv` stopped by a signal in the middle of a line waits
/// (each time) for stdout to take the rest of it.
const FINISH_WAIT: Duration = Duration::from_secs(1);

/// Most lines one `writev` carries (two parts each, under `IOV_MAX`).
pub(super) const LINES_PER_WRITE: usize = 512;

/// stdout, written with `writev(2)` and no user-space buffer: a line
/// counted as written by [`Output::write_lines`] is the kernel's.
pub(super) struct Output {
    file: File,
    /// A regular file: its device and inode, and whether it is open for
    /// appending. Writes there carry receipts (see the module docs).
    regular: Option<(u64, u64, bool)>,
}

impl Output {
    pub(super) fn stdout() -> Result<Output, Error> {
        let fd = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("stdout", "dup", e))?;
        let file = File::from(fd);
        let regular = file.metadata().ok().filter(|m| m.is_file()).map(|m| {
            // SAFETY: F_GETFL on a descriptor we own reads its flags.
            let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
            (m.dev(), m.ino(), flags >= 0 && flags & libc::O_APPEND != 0)
        });
        Ok(Output { file, regular })
    }

    /// The receipt for writing `lines` next: the file, where the write
    /// lands and its length. `None` unless stdout is a regular file.
    fn receipt<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]>) -> Option<[u64; 4]> {
        let (dev, ino, append) = self.regular?;
        let at = if append {
            self.file.metadata().ok()?.len()
        } else {
            self.file.stream_position().ok()?
        };
        Some([dev, ino, at, stream_len(lines)])
    }

    /// How many bytes of `lines` (each with its newline) a predecessor
    /// that left `receipt` got into this same file before it died: the
    /// file must have grown by at most their length since the offset it
    /// noted, and what it holds there must be their first bytes. `None`
    /// when the receipt is not about this output (the next write then
    /// starts from the first line).
    fn resume<'a>(
        &self,
        receipt: [u64; 4],
        lines: impl Iterator<Item = &'a [u8]> + Clone,
    ) -> Option<usize> {
        let (dev, ino, _) = self.regular?;
        let [r_dev, r_ino, at, total] = receipt;
        if (r_dev, r_ino) != (dev, ino) || stream_len(lines.clone()) != total {
            return None;
        }
        let done = self.file.metadata().ok()?.len().checked_sub(at)?;
        if done > total {
            return None;
        }
        // stdout is usually open for writing only: read the file through
        // a descriptor of our own (the same inode, checked).
        let reader = File::open(format!("/proc/self/fd/{}", self.file.as_raw_fd())).ok()?;
        let meta = reader.metadata().ok()?;
        if (meta.dev(), meta.ino()) != (dev, ino) {
            return None;
        }
        let mut there = vec![0u8; done as usize];
        reader.read_exact_at(&mut there, at).ok()?;
        let expected = lines.flat_map(|l| l.iter().chain(b"\n"));
        there
            .iter()
            .zip(expected)
            .all(|(a, b)| a == b)
            .then_some(done as usize)
    }

    /// Writes up to [`LINES_PER_WRITE`] of `lines`, each followed by a
    /// newline, leaving out the first `skip` bytes (one `writev` unless
    /// the kernel takes less). Returns how many lines are out whole, and
    /// how the write ended: a signal stops it between two system calls, so
    /// a line may have got out in part.
    pub(super) fn write_lines<'a>(
        &mut self,
        lines: impl Iterator<Item = &'a [u8]>,
        skip: usize,
    ) -> (usize, Result<Written, Error>) {
        let mut storage = [IoSlice::new(&[]); 2 * LINES_PER_WRITE];
        let mut lens = [0usize; LINES_PER_WRITE];
        let mut used = 0;
        for line in lines.take(LINES_PER_WRITE) {
            storage[used] = IoSlice::new(line);
            storage[used + 1] = IoSlice::new(b"\n");
            lens[used / 2] = line.len();
            used += 2;
        }
        let mut parts = &mut storage[..used];
        IoSlice::advance_slices(&mut parts, skip);
        let done = |parts: &[IoSlice]| (used - parts.len()) / 2;
        let fd = self.file.as_raw_fd();
        while !parts.is_empty() {
            match self.file.write_vectored(parts) {
                Ok(0) => {
                    let e = Error::io("stdout", "write", std::io::ErrorKind::WriteZero.into());
                    return (done(parts), Err(e));
                }
                Ok(n) => IoSlice::advance_slices(&mut parts, n),
                Err(e) => match e.kind() {
                    std::io::ErrorKind::BrokenPipe => {
                        signals::note_broken_pipe();
                        return (done(parts), Ok(Written::Stopped));
                    }
                    std::io::ErrorKind::Interrupted => {}
                    std::io::ErrorKind::WouldBlock => {
                        // A non-blocking stdout (inherited O_NONBLOCK).
                        if let Err(e) = wait_fd(fd, libc::POLLOUT, SLICE) {
                            return (done(parts), Err(Error::io("stdout", "poll", e)));
                        }
                    }
                    _ => return (done(parts), Err(Error::io("stdout", "write", e))),
                },
            }
            if !parts.is_empty() && signals::received().is_some() {
                // Stop between two lines: finish one a write left in part.
                let next = used - parts.len();
                let started = next % 2 == 1 || parts[0].len() < lens[next / 2];
                if !started {
                    return (done(parts), Ok(Written::Stopped));
                }
                let rest = if next % 2 == 1 { 1 } else { 2 };
                let mut line = &mut parts[..rest];
                let finished = self.finish_line(&mut line);
                let written = done(parts) + usize::from(finished);
                return (written, Ok(Written::Stopped));
            }
        }
        (done(parts), Ok(Written::All))
    }

    /// Writes what is left of a line after a signal, waiting at most
    /// [`FINISH_WAIT`] at a time for stdout to take more. True when it got
    /// out whole; otherwise the next `recv` writes it again, after the part
    /// that got out.
    fn finish_line(&mut self, line: &mut &mut [IoSlice]) -> bool {
        let fd = self.file.as_raw_fd();
        while !line.is_empty() {
            if !wait_fd(fd, libc::POLLOUT, FINISH_WAIT).unwrap_or(false) {
                eprintln!(
                    "shmring: a line cut by the signal could not be finished: stdout accepted nothing for {} s",
                    FINISH_WAIT.as_secs()
                );
                return false;
            }
            match self.file.write_vectored(line) {
                Ok(0) => return false,
                Ok(n) => IoSlice::advance_slices(line, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        signals::note_broken_pipe();
                    }
                    return false;
                }
            }
        }
        true
    }
}

/// Bytes of `lines` written one per line.
fn stream_len<'a>(lines: impl Iterator<Item = &'a [u8]>) -> u64 {
    lines.map(|l| l.len() as u64 + 1).sum()
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
    /// This many messages were written to stdout and released.
    Written(u64),
    /// A signal or a closed stdout stopped the write; the messages that
    /// got out whole were released, the others stay in the ring.
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

    /// Waits at most `timeout` for messages, writes up to `max` of them
    /// to `out` and releases exactly those that got out whole (see the
    /// module's documentation).
    fn deliver(
        &mut self,
        timeout: Duration,
        max: u64,
        out: &mut Output,
    ) -> Result<Delivery, Error> {
        let max = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(LINES_PER_WRITE);
        let (written, how) = match self {
            Rx::Frames(r) => match r.read_frames_timeout(max, Some(timeout)) {
                Ok(mut batch) => {
                    // A predecessor's unfinished write of these frames to
                    // this file: finish it. Otherwise note ours.
                    let resumed = batch.receipt().and_then(|r| {
                        let lines = batch.iter().take(r.frames);
                        Some((r.frames, out.resume(r.words, lines)?))
                    });
                    let (n, skip) = resumed.unwrap_or((batch.len(), 0));
                    let receipt = resumed.is_some()
                        || match out.receipt(batch.iter()) {
                            Some(words) => {
                                batch.set_receipt(words);
                                true
                            }
                            None => false,
                        };
                    let (written, how) = out.write_lines(batch.iter().take(n), skip);
                    // With a receipt, an unfinished write stays in the
                    // ring whole, to be finished from the file's length.
                    let done = matches!(how, Ok(Written::All));
                    batch.release(if receipt && !done { 0 } else { written });
                    (written, how)
                }
                Err(e) => return Ok(Delivery::Nothing(e)),
            },
            Rx::Mpmc(r) => match r.read_chunk_timeout(Some(timeout)) {
                Ok(mut msg) => {
                    let line = std::iter::once(&*msg);
                    let skip = msg.receipt().and_then(|w| out.resume(w, line.clone()));
                    if skip.is_none()
                        && let Some(words) = out.receipt(line)
                    {
                        msg.set_receipt(words);
                    }
                    let (written, how) = out.write_lines(std::iter::once(&*msg), skip.unwrap_or(0));
                    if written == 1 {
                        msg.release();
                    } else {
                        // Still claimed by this role: the next `recv`
                        // (the next holder of the role) writes it first.
                        msg.put_back();
                    }
                    (written, how)
                }
                Err(e) => return Ok(Delivery::Nothing(e)),
            },
        };
        let written = written as u64;
        Ok(match how? {
            Written::All => Delivery::Written(written),
            Written::Stopped => Delivery::Stopped,
        })
    }

    fn is_producer_alive(&self) -> bool {
        match self {
            Rx::Frames(r) => r.is_producer_alive(),
            Rx::Mpmc(r) => r.is_producer_alive(),
        }
    }
}

/// Time left of `limit` since `since` (`None`: no limit).
pub(super) fn left(limit: Option<Duration>, since: Instant) -> Option<Duration> {
    limit.map(|l| l.saturating_sub(since.elapsed()))
}

/// One wait slice: at most [`SLICE`], at most what is left.
pub(super) fn slice(left: Option<Duration>) -> Duration {
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
                Err(e @ (FramePushError::TooLarge { .. } | FramePushError::WrongSize { .. })) => {
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
        let max = count.map_or(u64::MAX, |c| c - received);
        match rx.deliver(wait, max, &mut out)? {
            Delivery::Written(n) => {
                received += n;
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
