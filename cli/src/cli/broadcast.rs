//! Broadcast rings in the command-line tool: their `create` flags, `send`
//! (one publisher: stdin's lines), `recv` (one subscriber each: every line,
//! from where it joined) and what `stat` shows about them.
//!
//! # Delivery
//!
//! A subscriber's position is its own: `recv` takes nothing out of the
//! ring, so the receipts and releases of `io` (for frame and MPMC rings,
//! where a message goes to one consumer) have no counterpart here. `recv`
//! reads up to [`LINES_PER_WRITE`] lines ahead and writes them with one
//! `writev`; a `recv` killed in between loses those lines to its output,
//! and nobody else. Its last position stays in `stat` (each subscriber's
//! `position`), and a `recv` stopped by a signal names it on stderr, so a
//! new `recv --from SEQ` takes up again while the lines are still in the
//! ring. Lines a subscriber missed (lapped on an `overwrite` ring, evicted
//! on a `block` ring) are reported on stderr with their count, and `recv`
//! goes on.

use std::path::Path;
use std::time::{Duration, Instant};

use shmring::broadcast::{BytesPublisher, BytesSubscriber, Overflow, PopError};
use shmring::frames::FramePushError;
use shmring::ring::{Builder, Endpoint, Start};
use shmring::segment::{self, Inspection};
use shmring::wait::WaitStrategy;
use shmring::{Error, Kind, Layout};

use super::io::{LINES_PER_WRITE, LineReader, Next, Output, Status, Written, left, slice};
use super::signals::{self, SLICE};
use super::{Shape, invalid};

/// `--overflow`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum OverflowArg {
    /// Lossless: the publisher waits for the slowest live subscriber (one
    /// that keeps it waiting longer than --evict-after is evicted and told
    /// how many lines it missed).
    Block,
    /// Lossy: the publisher never waits; a subscriber that falls a whole
    /// ring behind is told how many lines it missed and continues.
    Overwrite,
}

/// `--evict-after`: a duration, or `never` (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EvictAfter(pub(super) Option<Duration>);

/// Parses `--evict-after`: `never`, or a number with a unit (`ns`, `us`
/// or `µs`, `ms`, `s`, `m`, `h`), such as `1s`, `250ms` or `1.5s`.
pub(super) fn parse_evict_after(s: &str) -> Result<EvictAfter, String> {
    if s == "never" {
        return Ok(EvictAfter(None));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "{s:?} has no unit: write it as 500ms, 2s or 1m (or `never`)"
            ));
        }
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use ns, us, ms, s, m or h; or `never`)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms or 2s (or `never`)"))?;
    let secs = value * scale;
    let max = shmring::raw::MAX_EVICT_AFTER;
    if !(1e-6..=max.as_secs_f64()).contains(&secs) {
        return Err(format!(
            "{s:?} is out of range: between 1us and {}s, or `never`",
            max.as_secs()
        ));
    }
    Ok(EvictAfter(Some(Duration::from_secs_f64(secs))))
}

/// Parses `recv --from`: `oldest`, `latest` or a sequence number.
pub(super) fn parse_from(s: &str) -> Result<Start, String> {
    match s {
        "oldest" => Ok(Start::Oldest),
        "latest" => Ok(Start::Latest),
        _ => s
            .parse()
            .map(Start::At)
            .map_err(|_| format!("{s:?} is not oldest, latest or a sequence number such as 1200")),
    }
}

/// The broadcast flags the user gave, by name (refused for other kinds).
pub(super) fn flags_given(shape: &Shape) -> Vec<&'static str> {
    [
        ("--subscribers", shape.subscribers.is_some()),
        ("--overflow", shape.overflow.is_some()),
        ("--evict-after", shape.evict_after.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect()
}

/// The layout of a byte broadcast ring of `capacity` slots of this shape
/// (word-aligned slots, type id 0: what `BytesPublisher` and
/// `BytesSubscriber` open).
pub(super) fn layout(shape: &Shape, capacity: u64) -> Result<Layout, Error> {
    let subscribers = shape
        .subscribers
        .unwrap_or(shmring::broadcast::DEFAULT_SUBSCRIBERS);
    let max = shmring::raw::MAX_ROLES;
    if !(1..=max).contains(&subscribers) {
        return Err(invalid(format!(
            "--subscribers {subscribers}: a broadcast ring has 1 to {max} subscriber roles"
        )));
    }
    if shape.slot_size == 0 {
        return Err(invalid(
            "--slot-size 0: a broadcast ring's slots hold the longest line, at least 1 byte".into(),
        ));
    }
    let overflow = match (shape.overflow, shape.evict_after) {
        (Some(OverflowArg::Overwrite), Some(_)) => {
            return Err(invalid(
                "--evict-after is for --overflow block: an overwrite ring's publisher never waits"
                    .into(),
            ));
        }
        (Some(OverflowArg::Overwrite), None) => Overflow::Overwrite,
        (_, Some(EvictAfter(evict_after))) => Overflow::Block { evict_after },
        (_, None) => Overflow::default(),
    };
    shmring::broadcast::layout(capacity, shape.slot_size, 8, subscribers, overflow)
}

/// What `create` adds for a broadcast ring: roles and overflow policy.
pub(super) fn describe(layout: &Layout) -> String {
    format!(
        "; {} subscriber roles, overflow {}",
        layout.max_consumers(),
        layout.overflow()
    )
}

/// Is `name` a broadcast ring: the one `create` asks for, or else the
/// existing one (looked at without attaching; a ring that cannot be
/// inspected is left to the other kinds' code, which reports why).
pub(super) fn is_broadcast(dir: &Path, name: &str, create: Option<&Layout>) -> bool {
    match create {
        Some(layout) => layout.kind() == Kind::Broadcast,
        None => segment::inspect(dir, name).is_ok_and(|i| i.kind.as_deref() == Some("broadcast")),
    }
}

/// The builder of a `send` or `recv` handle: an existing ring, or (with
/// `create`) that ring opened or created.
fn builder<H: Endpoint>(
    dir: &Path,
    name: &str,
    shape: &Shape,
    timeout_ms: Option<u64>,
    strategy: WaitStrategy,
) -> Builder<H> {
    let b = Builder::<H>::new(name)
        .dir(dir)
        .huge_pages(shape.huge_pages.into())
        .populate(shape.populate)
        .lock_memory(shape.lock_memory)
        .wait_strategy(strategy);
    match timeout_ms {
        // The ring exists (`is_broadcast` saw it) or is created here:
        // this bounds the wait for a creator still initializing it.
        Some(ms) => b.wait_for(Duration::from_millis(ms)),
        None => b,
    }
}

fn open<H: Endpoint>(b: Builder<H>, create: Option<&Layout>) -> Result<H, Error> {
    match create {
        Some(l) => b
            .capacity(l.capacity())
            .slot_size(l.slot_size())
            .subscribers(l.max_consumers())
            .overflow(l.overflow())
            .open_or_create(),
        None => b.open(),
    }
}

fn timeout_error(path: &Path, what: &str, waited: Duration) -> Error {
    Error::Timeout {
        path: path.to_path_buf(),
        what: what.to_string(),
        waited,
    }
}

fn corrupted(path: &Path, what: String) -> Error {
    Error::Corrupted {
        path: path.to_path_buf(),
        what,
    }
}

/// `send` on a broadcast ring: each line of stdin is one message to every
/// subscriber. On a `block` ring it waits while the slowest live
/// subscriber is a whole ring behind; on an `overwrite` ring never.
pub(super) fn send(
    dir: &Path,
    name: &str,
    shape: &Shape,
    create: Option<&Layout>,
    timeout_ms: Option<u64>,
    strategy: WaitStrategy,
) -> Result<Status, Error> {
    let path = dir.join(name);
    let mut tx: BytesPublisher = open(builder(dir, name, shape, timeout_ms, strategy), create)?;
    let limit = timeout_ms.map(Duration::from_millis);
    let mut input = LineReader::stdin()?;
    loop {
        if let Some(signal) = signals::received() {
            return Ok(signals::exit_status(signal));
        }
        let line = match input.next()? {
            Next::Line(range) => input.line(range),
            Next::Eof => return Ok(0),
            Next::Idle => continue,
        };
        let started = Instant::now();
        loop {
            let left = left(limit, started);
            match tx.push_timeout(line, Some(slice(left))) {
                Ok(_) => break,
                Err(FramePushError::Timeout | FramePushError::Full) => {
                    if let Some(signal) = signals::received() {
                        return Ok(signals::exit_status(signal));
                    }
                    if left.is_some_and(|l| l <= SLICE) {
                        return Err(timeout_error(
                            &path,
                            "waiting for the slowest subscriber to make room",
                            limit.unwrap_or_default(),
                        ));
                    }
                }
                Err(FramePushError::TooLarge { len, max }) => {
                    return Err(invalid(format!(
                        "a {len}-byte line does not fit this ring's slots (at most {max} bytes each); create it with a larger --slot-size"
                    )));
                }
                Err(e @ FramePushError::WrongSize { .. }) => return Err(invalid(e.to_string())),
                Err(FramePushError::Corrupted(w)) => return Err(corrupted(&path, w)),
                Err(FramePushError::Disconnected) => {
                    return Err(Error::Disconnected { path });
                }
            }
        }
    }
}

/// Lines read ahead and not yet written: their bytes back to back, and
/// each one's end and sequence number.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: Vec<(usize, u64)>,
}

impl Batch {
    fn push(&mut self, line: &[u8], seq: u64) {
        self.bytes.extend_from_slice(line);
        self.lines.push((self.bytes.len(), seq));
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.lines.iter().map(|&(end, _)| end));
        starts
            .zip(&self.lines)
            .map(|(start, &(end, _))| &self.bytes[start..end])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.lines.clear();
    }
}

/// Says on stderr that this subscriber missed `missed` lines and where it
/// goes on.
fn warn_missed(what: &str, missed: u64, next: u64) {
    eprintln!(
        "shmring: warning: {what}: missed {missed} line{}; continuing at sequence {next}",
        if missed == 1 { "" } else { "s" }
    );
}

/// Says on stderr what `e` made this subscriber miss, if it is a lap or
/// an eviction (true then: it goes on).
fn warn_if_missed(e: &PopError, sub: &BytesSubscriber) -> bool {
    match *e {
        PopError::Lagged(n) => {
            warn_missed("lapped by the publisher", n, sub.position());
            true
        }
        PopError::Evicted { missed } => {
            warn_missed(
                "evicted for keeping the publisher waiting",
                missed,
                sub.position(),
            );
            true
        }
        _ => false,
    }
}

/// Is a live process holding the ring's publisher role?
fn publisher_alive(dir: &Path, name: &str) -> bool {
    segment::inspect(dir, name)
        .is_ok_and(|i: Inspection| i.roles.iter().any(|r| r.role == "publisher" && r.alive))
}

/// How one read-ahead ended.
enum Ahead {
    /// Lines to write (possibly none, after a warning).
    Lines,
    /// Nothing arrived within the wait.
    Idle,
    /// Drained, and the publisher is gone.
    Gone,
}

/// The `recv` loop's state.
struct Reader {
    sub: BytesSubscriber,
    buf: Vec<u8>,
    batch: Batch,
    /// Sequence number after the last line written whole.
    next_out: u64,
    /// An error met after the batch's lines were read: reported once they
    /// are written.
    pending: Option<Error>,
}

impl Reader {
    /// Waits up to `wait` for a line, then takes up to `max` of those
    /// that are there.
    fn read_ahead(&mut self, wait: Duration, max: usize, path: &Path) -> Result<Ahead, Error> {
        match self.sub.pop_into_timeout(&mut self.buf, Some(wait)) {
            Ok(seq) => self.batch.push(&self.buf, seq),
            Err(e) if warn_if_missed(&e, &self.sub) => return Ok(Ahead::Lines),
            Err(PopError::Timeout) => return Ok(Ahead::Idle),
            Err(PopError::Disconnected) => return Ok(Ahead::Gone),
            Err(PopError::Corrupted(w)) => return Err(corrupted(path, w)),
            Err(_) => return Ok(Ahead::Idle),
        }
        while self.batch.lines.len() < max {
            match self.sub.try_pop_into(&mut self.buf) {
                Ok(seq) => self.batch.push(&self.buf, seq),
                Err(e) => {
                    let e = PopError::from(e);
                    if !warn_if_missed(&e, &self.sub) {
                        if let PopError::Corrupted(w) = e {
                            self.pending = Some(corrupted(path, w));
                        }
                        break;
                    }
                }
            }
        }
        Ok(Ahead::Lines)
    }

    /// Writes the batch; how many lines got out whole, and how.
    fn write(&mut self, out: &mut Output) -> Result<(u64, Written), Error> {
        let mut done = 0;
        while done < self.batch.lines.len() {
            let (n, how) = out.write_lines(self.batch.iter().skip(done), 0);
            if n > 0 {
                self.next_out = self.batch.lines[done + n - 1].1 + 1;
            }
            done += n;
            if how? == Written::Stopped {
                self.batch.clear();
                return Ok((done as u64, Written::Stopped));
            }
        }
        self.batch.clear();
        Ok((done as u64, Written::All))
    }

    /// The exit status of a `recv` stopped by `signal`, after saying where
    /// a new one can take up.
    fn stopped(&self, signal: i32) -> Status {
        eprintln!(
            "shmring: {}: stopped before sequence {n} (`recv --from {n}` resumes there while it is in the ring)",
            signals::name(signal),
            n = self.next_out
        );
        signals::exit_status(signal)
    }
}

/// `recv` on a broadcast ring: every line published from `from` on, until
/// the publisher is gone and everything is read (or `count` lines, or
/// `--timeout` without one).
#[allow(clippy::too_many_arguments)]
pub(super) fn recv(
    dir: &Path,
    name: &str,
    shape: &Shape,
    create: Option<&Layout>,
    from: Start,
    count: Option<u64>,
    timeout_ms: Option<u64>,
    strategy: WaitStrategy,
) -> Result<Status, Error> {
    let path = dir.join(name);
    let sub: BytesSubscriber = open(
        builder(dir, name, shape, timeout_ms, strategy).start(from),
        create,
    )?;
    let mut r = Reader {
        next_out: sub.position(),
        buf: Vec::with_capacity(sub.max_len()),
        sub,
        batch: Batch::default(),
        pending: None,
    };
    let limit = timeout_ms.map(Duration::from_millis);
    let mut out = Output::stdout()?;
    let mut received = 0u64;
    // A publisher of an earlier session may have left its record marked
    // detached: the end of the publisher ends the run only once one was
    // seen (a line came, or a live publisher was found).
    let mut seen_publisher = false;
    let mut idle_since = Instant::now();
    while count.is_none_or(|c| received < c) {
        if let Some(signal) = signals::received() {
            return Ok(r.stopped(signal));
        }
        let left = left(limit, idle_since);
        if left == Some(Duration::ZERO) {
            let what = if seen_publisher {
                "waiting for a line"
            } else {
                "waiting for a publisher"
            };
            return Err(timeout_error(&path, what, limit.unwrap_or_default()));
        }
        let wait = if seen_publisher {
            slice(left)
        } else {
            slice(left).min(Duration::from_millis(20))
        };
        let max = count.map_or(LINES_PER_WRITE, |c| {
            usize::try_from(c - received).map_or(LINES_PER_WRITE, |n| n.min(LINES_PER_WRITE))
        });
        match r.read_ahead(wait, max, &path)? {
            Ahead::Lines => {}
            Ahead::Idle => {
                seen_publisher = seen_publisher || publisher_alive(dir, name);
                continue;
            }
            Ahead::Gone if seen_publisher => break,
            Ahead::Gone => {
                seen_publisher = publisher_alive(dir, name);
                if !seen_publisher {
                    std::thread::sleep(Duration::from_millis(5));
                }
                continue;
            }
        }
        // Lines, or a count of missed ones: a publisher was there.
        seen_publisher = true;
        if r.batch.lines.is_empty() {
            continue;
        }
        let (n, how) = r.write(&mut out)?;
        received += n;
        if how == Written::Stopped {
            // A signal or EPIPE: recorded by the write.
            return Ok(r.stopped(signals::received().unwrap_or(libc::SIGPIPE)));
        }
        if let Some(e) = r.pending.take() {
            return Err(e);
        }
        idle_since = Instant::now();
    }
    Ok(0)
}

/// `stat`'s lines about a broadcast ring: the policy, the publisher's
/// count and each subscriber role ever held.
pub(super) fn stat_lines(i: &Inspection, line: &dyn Fn(&str, String)) {
    if let Some(o) = &i.overflow {
        line("overflow", o.clone());
    }
    if let Some(p) = i.published {
        line("published", p.to_string());
    }
    if let Some(e) = i.evictions {
        line("evictions", e.to_string());
    }
    let Some(subs) = &i.subscribers else {
        return;
    };
    if subs.is_empty() {
        line("subscribers", "none yet".into());
    }
    for s in subs {
        line(
            &format!("subscriber {}", s.role),
            format!(
                "{} (pid {}): position {}, lag {}, missed {}, evictions {}{}",
                if s.alive { "alive" } else { "not held" },
                s.pid,
                s.position,
                s.lag,
                s.missed,
                s.evictions,
                if s.evicted { ", evicted" } else { "" }
            ),
        );
    }
}
