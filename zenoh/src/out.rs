//! Bridge out: a ring's messages, published to a key expression.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmring::broadcast::{self, BytesSubscriber, Start};
use shmring::frames;
use shmring::mpmc::BytesConsumer;
use shmring::spsc::{PopError, SlotConsumer};
use shmring::wait::WaitStrategy;
use shmring::{Kind, Segment};
use zenoh::Wait;

use crate::net::QoS;
use crate::wire::{self, Identity};
use crate::{BridgeError, SLICE};

/// Most frames taken from a frame ring at once (released together once
/// all of them are handed to Zenoh).
const BATCH: usize = 256;

/// The counters of a bridge out, readable from any thread while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages published.
    pub published: AtomicU64,
    /// Sequence number of the last one (equal to `published`: numbers
    /// start at 1 each run).
    pub last_seq: AtomicU64,
}

/// What a bridge out tells its caller as it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Publishing as `session`; no subscriber matches the key yet, so
    /// nothing is taken from the ring.
    Waiting {
        /// This run's session number (in every attachment).
        session: u64,
    },
    /// A subscriber matches: messages flow.
    Matched,
    /// No subscriber matches any more: messages stay in the ring.
    Unmatched {
        /// Messages published so far.
        published: u64,
    },
    /// A progress report (every `report_every`).
    Progress {
        /// Messages published so far.
        published: u64,
    },
}

/// Options of [`run`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Congestion control.
    pub qos: QoS,
    /// How often to send [`Event::Progress`] (`None`: never).
    pub report_every: Option<Duration>,
    /// How the bridge waits on its ring.
    pub wait: WaitStrategy,
}

/// The consuming half of the source ring: any kind, byte or typed (a
/// typed ring's messages travel as the bytes of one value each, its type
/// identity in the attachment).
enum Source {
    Frames(frames::Consumer),
    /// An SPSC ring, and the buffer each message is copied into.
    Spsc(SlotConsumer, Vec<u8>),
    Mpmc(BytesConsumer),
    /// One subscriber of a broadcast ring, from the oldest message kept.
    Broadcast(BytesSubscriber, Vec<u8>),
}

impl Source {
    fn attach(seg: &Arc<Segment>) -> Result<Source, BridgeError> {
        Ok(match seg.layout().kind() {
            Kind::Frames => Source::Frames(frames::Consumer::attach(seg.clone())?),
            Kind::Spsc => Source::Spsc(SlotConsumer::attach(seg.clone())?, Vec::new()),
            Kind::Mpmc => Source::Mpmc(BytesConsumer::attach_any(seg.clone())?),
            Kind::Broadcast => Source::Broadcast(
                BytesSubscriber::attach_any(seg.clone(), Start::Oldest)?,
                Vec::new(),
            ),
        })
    }

    fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        match self {
            Source::Frames(rx) => rx.set_wait_strategy(wait),
            Source::Spsc(rx, _) => rx.set_wait_strategy(wait),
            Source::Mpmc(rx) => rx.set_wait_strategy(wait),
            Source::Broadcast(rx, _) => rx.set_wait_strategy(wait),
        }
    }
}

/// Consumes `seg` and publishes each message to `key` on `session` until
/// `stop` returns true (looked at every [`SLICE`] at least). Reports
/// through `events`; counts in `counters`.
pub fn run(
    session: &zenoh::Session,
    key: &str,
    seg: Arc<Segment>,
    options: &Options,
    stop: &dyn Fn() -> bool,
    counters: &Counters,
    events: &mut dyn FnMut(Event),
) -> Result<(), BridgeError> {
    let key_expr = crate::net::key_expr(key)?;
    let mut source = Source::attach(&seg)?;
    source.set_wait_strategy(options.wait);
    let publisher = session
        .declare_publisher(key_expr)
        .congestion_control(options.qos.congestion)
        .wait()
        .map_err(|e| {
            BridgeError::Network(format!("cannot publish on {key:?}: {}", crate::reason(&e)))
        })?;
    let matched = Arc::new(AtomicBool::new(false));
    let flag = matched.clone();
    let _listener = publisher
        .matching_listener()
        .callback(move |status| flag.store(status.matching(), Ordering::Release))
        .wait()
        .map_err(|e| {
            BridgeError::Network(format!(
                "cannot watch subscribers of {key:?}: {}",
                crate::reason(&e)
            ))
        })?;
    let session_id = crate::session_id();
    let mut attachment = wire::encode(session_id, &Identity::of_ring(&seg));
    let mut seq = 0u64;
    events(Event::Waiting {
        session: session_id,
    });
    let mut flowing = false;
    let mut last_report = Instant::now();
    let publish = |payload: &[u8], attachment: &mut Vec<u8>, seq: &mut u64| {
        *seq += 1;
        wire::stamp(attachment, *seq);
        publisher
            .put(payload)
            .attachment(&*attachment)
            .wait()
            .map_err(|e| {
                BridgeError::Network(format!("cannot publish on {key:?}: {}", crate::reason(&e)))
            })?;
        counters.published.fetch_add(1, Ordering::Relaxed);
        counters.last_seq.store(*seq, Ordering::Relaxed);
        Ok::<(), BridgeError>(())
    };
    while !stop() {
        if let Some(every) = options.report_every
            && last_report.elapsed() >= every
        {
            last_report = Instant::now();
            events(Event::Progress { published: seq });
        }
        let now = matched.load(Ordering::Acquire);
        if now != flowing {
            flowing = now;
            events(if now {
                Event::Matched
            } else {
                Event::Unmatched { published: seq }
            });
        }
        if !flowing {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let outcome = match &mut source {
            Source::Frames(rx) => match rx.read_frames_timeout(BATCH, Some(SLICE)) {
                Ok(batch) => {
                    for frame in batch.iter() {
                        publish(frame, &mut attachment, &mut seq)?;
                    }
                    let n = batch.len();
                    batch.release(n);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            // Released once published (a bridge killed meanwhile leaves
            // the message for the next one).
            Source::Spsc(rx, buf) => match rx.pop_forward_timeout(buf, Some(SLICE), |msg| {
                publish(msg, &mut attachment, &mut seq)
            }) {
                Ok(published) => {
                    published?;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Source::Mpmc(rx) => match rx.read_chunk_timeout(Some(SLICE)) {
                Ok(msg) => {
                    publish(&msg, &mut attachment, &mut seq)?;
                    msg.release();
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Source::Broadcast(rx, buf) => match rx.pop_into_timeout(buf, Some(SLICE)) {
                Ok(_) => {
                    publish(buf, &mut attachment, &mut seq)?;
                    Ok(())
                }
                // Missed before the bridge (lapped, or evicted while no
                // subscriber matched): nothing to forward; go on.
                Err(broadcast::PopError::Lagged(_) | broadcast::PopError::Evicted { .. }) => Ok(()),
                Err(broadcast::PopError::Timeout) => Err(PopError::Timeout),
                Err(broadcast::PopError::Disconnected) => Err(PopError::Disconnected),
                Err(broadcast::PopError::Corrupted(w)) => Err(PopError::Corrupted(w)),
            },
        };
        match outcome {
            Ok(()) | Err(PopError::Timeout) => {}
            // No producer now: one may come (the bridge outlives it).
            Err(PopError::Disconnected) => std::thread::sleep(Duration::from_millis(10)),
            Err(PopError::Corrupted(what)) => {
                return Err(BridgeError::Ring(shmring::Error::Corrupted {
                    path: seg.path().to_path_buf(),
                    what,
                }));
            }
        }
    }
    Ok(())
}
