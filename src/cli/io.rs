//! `shmring send` and `shmring recv`: lines in, frames through the ring,
//! lines out.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::frames::{FrameConsumer, FrameProducer, ReserveError};
use shmring::spsc::TryPopError;
use shmring::{Error, Layout, Segment, SegmentOptions};

/// Waits between unproductive polls: a bounded spin (crossbeam's Backoff),
/// then sleeps growing to 1 ms. Futex parking replaces the sleeps once the
/// wait layer exists.
struct Idle {
    backoff: crossbeam_utils::Backoff,
    sleep: Duration,
    since: Instant,
}

impl Idle {
    fn new() -> Idle {
        Idle {
            backoff: crossbeam_utils::Backoff::new(),
            sleep: Duration::from_micros(10),
            since: Instant::now(),
        }
    }

    fn wait(&mut self) {
        if !self.backoff.is_completed() {
            self.backoff.snooze();
        } else {
            std::thread::sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(Duration::from_millis(1));
        }
    }

    fn reset(&mut self) {
        self.backoff.reset();
        self.sleep = Duration::from_micros(10);
        self.since = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.since.elapsed()
    }
}

fn attach(dir: &Path, name: &str, create: Option<Layout>) -> Result<Arc<Segment>, Error> {
    let opts = SegmentOptions::new().dir(dir);
    let seg = match create {
        Some(layout) => opts.open_or_create(name, &layout, 0)?,
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

pub(super) fn send(
    dir: &Path,
    name: &str,
    create: Option<Layout>,
    timeout_ms: Option<u64>,
) -> Result<(), Error> {
    let seg = attach(dir, name, create)?;
    let mut tx = FrameProducer::attach(seg.clone())?;
    let limit = timeout_ms.map(Duration::from_millis);
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    let mut idle = Idle::new();
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line).map_err(|e| Error::Io {
            path: "stdin".into(),
            call: "read",
            source: e,
        })?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        loop {
            match tx.try_send(&line) {
                Ok(()) => {
                    idle.reset();
                    break;
                }
                Err(ReserveError::Full) => {
                    if let Some(l) = limit
                        && idle.idle_for() >= l
                    {
                        return Err(timeout_error(&seg, "waiting for space in the ring", l));
                    }
                    idle.wait();
                }
                Err(ReserveError::Disconnected) => return Err(disconnected(&seg)),
                Err(e @ ReserveError::TooLarge { .. }) => {
                    return Err(Error::InvalidConfig {
                        what: e.to_string(),
                    });
                }
                Err(ReserveError::Corrupted(w)) => return Err(corrupted(&seg, w)),
            }
        }
    }
    // A non-persistent ring disappears with its last user: stay until the
    // consumer has taken everything, so no line is lost.
    if !seg.is_persistent() {
        let mut seen_consumer = false;
        idle.reset();
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
                && idle.idle_for() >= l
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

pub(super) fn recv(
    dir: &Path,
    name: &str,
    create: Option<Layout>,
    count: Option<u64>,
    timeout_ms: Option<u64>,
) -> Result<(), Error> {
    let seg = attach(dir, name, create)?;
    let mut rx = FrameConsumer::attach(seg.clone())?;
    let limit = timeout_ms.map(Duration::from_millis);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let write_err = |e: std::io::Error| Error::Io {
        path: "stdout".into(),
        call: "write",
        source: e,
    };
    let mut received = 0u64;
    let mut seen_producer = false;
    let mut idle = Idle::new();
    while count.is_none_or(|c| received < c) {
        match rx.read() {
            Ok(frame) => {
                out.write_all(&frame).map_err(write_err)?;
                out.write_all(b"\n").map_err(write_err)?;
                frame.release();
                received += 1;
                seen_producer = true;
                idle.reset();
            }
            Err(TryPopError::Empty) | Err(TryPopError::Disconnected) if !seen_producer => {
                // A producer of an earlier session may have left its record;
                // wait for one to be really there.
                seen_producer = rx.is_producer_alive();
                if !seen_producer {
                    out.flush().map_err(write_err)?;
                    if let Some(l) = limit
                        && idle.idle_for() >= l
                    {
                        return Err(timeout_error(&seg, "waiting for a message", l));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(TryPopError::Empty) => {
                out.flush().map_err(write_err)?;
                if let Some(l) = limit
                    && idle.idle_for() >= l
                {
                    return Err(timeout_error(&seg, "waiting for a message", l));
                }
                idle.wait();
            }
            Err(TryPopError::Disconnected) => break,
            Err(TryPopError::Corrupted(w)) => return Err(corrupted(&seg, w)),
        }
    }
    out.flush().map_err(write_err)?;
    Ok(())
}
