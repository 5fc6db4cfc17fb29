//! `shmring send` and `shmring recv`: lines in, frames through the ring,
//! lines out.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::frames::{self, FramePushError};
use shmring::mpmc::{BytesConsumer, BytesProducer};
use shmring::spsc::PopError;
use shmring::wait::WaitStrategy;
use shmring::{Error, Kind, Layout, Segment, SegmentOptions};

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
}

/// The receiving half of a frame ring or of a byte-slot MPMC ring.
enum Rx {
    Frames(frames::Consumer),
    Mpmc(BytesConsumer),
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

    /// Receives one message, handing its bytes to `sink`.
    fn recv_timeout(
        &mut self,
        timeout: Option<Duration>,
        buf: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<Result<(), PopError>, Error> {
        match self {
            Rx::Frames(r) => match r.read_chunk_timeout(timeout) {
                Ok(frame) => {
                    sink(&frame)?;
                    frame.release();
                    Ok(Ok(()))
                }
                Err(e) => Ok(Err(e)),
            },
            Rx::Mpmc(r) => match r.pop_timeout(buf, timeout) {
                Ok(()) => sink(buf).map(Ok),
                Err(e) => Ok(Err(e)),
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

pub(super) fn send(
    opts: &SegmentOptions,
    name: &str,
    create: Option<Layout>,
    timeout_ms: Option<u64>,
    strategy: WaitStrategy,
) -> Result<(), Error> {
    let seg = attach(opts, name, create)?;
    let mut tx = Tx::attach(&seg)?;
    tx.set_wait_strategy(strategy);
    let limit = timeout_ms.map(Duration::from_millis);
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io("stdin", "read", e))?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        match tx.send_timeout(&line, limit) {
            Ok(()) => {}
            Err(FramePushError::Timeout) => {
                return Err(timeout_error(
                    &seg,
                    "waiting for space in the ring",
                    limit.unwrap_or_default(),
                ));
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
    // A non-persistent ring disappears with its last user: stay until the
    // consumer has taken everything, so no line is lost.
    if !seg.is_persistent() {
        let started = Instant::now();
        let mut seen_consumer = false;
        loop {
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
    Ok(())
}

fn write_line(out: &mut impl Write, bytes: &[u8]) -> Result<(), Error> {
    out.write_all(bytes)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| Error::io("stdout", "write", e))
}

pub(super) fn recv(
    opts: &SegmentOptions,
    name: &str,
    create: Option<Layout>,
    count: Option<u64>,
    timeout_ms: Option<u64>,
    strategy: WaitStrategy,
) -> Result<(), Error> {
    let seg = attach(opts, name, create)?;
    let mut rx = Rx::attach(&seg)?;
    rx.set_wait_strategy(strategy);
    let limit = timeout_ms.map(Duration::from_millis);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let write_err = |e: std::io::Error| Error::io("stdout", "write", e);
    let mut received = 0u64;
    let mut buf = Vec::new();
    // A producer of an earlier session may have left its record marked
    // detached: `Disconnected` ends the run only once a producer was seen.
    let mut seen_producer = false;
    let mut idle_since = Instant::now();
    while count.is_none_or(|c| received < c) {
        // Flush before blocking, so a reader of our output sees every line
        // that has arrived.
        let mut got = rx.recv_timeout(Some(Duration::ZERO), &mut buf, &mut |b| {
            write_line(&mut out, b)
        })?;
        if got == Err(PopError::Timeout) {
            out.flush().map_err(write_err)?;
            let left = limit.map(|l| l.saturating_sub(idle_since.elapsed()));
            if left == Some(Duration::ZERO) {
                return Err(timeout_error(
                    &seg,
                    "waiting for a message",
                    limit.unwrap_or_default(),
                ));
            }
            // Before a producer was seen, wake up now and then to look
            // for one; after, sleep until a message or the deadline.
            let slice = if seen_producer {
                left
            } else {
                Some(left.unwrap_or(Duration::MAX).min(Duration::from_millis(20)))
            };
            got = rx.recv_timeout(slice, &mut buf, &mut |b| write_line(&mut out, b))?;
        }
        match got {
            Ok(()) => {
                received += 1;
                seen_producer = true;
                idle_since = Instant::now();
            }
            Err(PopError::Timeout) => {
                if !seen_producer {
                    seen_producer = rx.is_producer_alive();
                }
            }
            Err(PopError::Disconnected) if !seen_producer => {
                seen_producer = rx.is_producer_alive();
                if !seen_producer {
                    out.flush().map_err(write_err)?;
                    if limit.is_some_and(|l| idle_since.elapsed() >= l) {
                        return Err(timeout_error(
                            &seg,
                            "waiting for a producer",
                            limit.unwrap_or_default(),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Err(PopError::Disconnected) => break,
            Err(PopError::Corrupted(w)) => return Err(corrupted(&seg, w)),
        }
    }
    out.flush().map_err(write_err)?;
    Ok(())
}
