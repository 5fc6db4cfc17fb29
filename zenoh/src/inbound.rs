//! Bridge in: a key expression's messages, produced into a local ring.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::broadcast::BytesPublisher;
use shmring::frames::{self, FramePushError};
use shmring::mpmc::BytesProducer;
use shmring::segment::{Upstream, UpstreamWriter};
use shmring::spsc::SlotProducer;
use shmring::wait::WaitStrategy;
use shmring::{Kind, Segment};
use std::sync::mpsc::RecvTimeoutError;
use zenoh::Wait;

use crate::gaps::{Counters, Seen, Snapshot, Tracker};
use crate::wire::{self, Identity};
use crate::{BridgeError, SLICE};

/// Samples Zenoh queues for the bridge before it blocks the network
/// (that block is the back-pressure of the reliable mode).
const QUEUE: usize = 1024;

/// What a bridge in tells its caller as it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Subscribed; nothing received yet.
    Subscribed,
    /// The first message of a source session ([`Seen::First`]).
    Joined {
        /// The source's session number.
        session: u64,
        /// The message's sequence number (`seq - 1` were sent before).
        seq: u64,
        /// A new session after another one: the source restarted.
        restarted: bool,
    },
    /// Messages were lost just before sequence number `seq`.
    Gap {
        /// How many.
        missing: u64,
        /// The first one after them.
        seq: u64,
    },
    /// The ring's upstream record continued: what the bridges before this
    /// one delivered into it and lost (a killed predecessor's last push
    /// settled; see [`shmring::segment::UpstreamWriter`]).
    Resumed {
        /// The source session of the last message.
        session: u64,
        /// Its sequence number.
        last_seq: u64,
        /// Messages delivered into the ring so far.
        delivered: u64,
        /// Messages lost before reaching the ring so far.
        gaps: u64,
        /// The predecessor was killed while pushing: whether that message
        /// reached the ring (`false`: counted in `gaps`).
        interrupted_push: Option<bool>,
    },
    /// Another running relay holds the ring's upstream record: this
    /// bridge counts its gaps in its log only.
    RecordHeld {
        /// That relay's pid.
        pid: u32,
    },
    /// A progress report (every `report_every`).
    Progress(Snapshot),
}

/// One sample, copied out of Zenoh's buffers.
struct Received {
    attachment: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// Options of [`run`].
#[derive(Clone, Debug)]
pub struct Options {
    /// How often to send [`Event::Progress`] (`None`: never).
    pub report_every: Option<Duration>,
    /// How the bridge waits on its ring.
    pub wait: WaitStrategy,
}

/// The producing half of the destination ring: any kind, byte or typed
/// (a typed ring gets each message's bytes as one value, after the type
/// identity in its attachment matched the ring's).
enum Sink {
    Frames(frames::Producer),
    Spsc(SlotProducer),
    Mpmc(BytesProducer),
    Broadcast(BytesPublisher),
}

impl Sink {
    fn attach(seg: &Arc<Segment>, wait: WaitStrategy) -> Result<Sink, BridgeError> {
        let mut sink = match seg.layout().kind() {
            Kind::Frames => Sink::Frames(frames::Producer::attach(seg.clone())?),
            Kind::Spsc => Sink::Spsc(SlotProducer::attach(seg.clone())?),
            Kind::Mpmc => Sink::Mpmc(BytesProducer::attach_any(seg.clone())?),
            Kind::Broadcast => Sink::Broadcast(BytesPublisher::attach_any(seg.clone())?),
        };
        match &mut sink {
            Sink::Frames(tx) => tx.set_wait_strategy(wait),
            Sink::Spsc(tx) => tx.set_wait_strategy(wait),
            Sink::Mpmc(tx) => tx.set_wait_strategy(wait),
            Sink::Broadcast(tx) => tx.set_wait_strategy(wait),
        }
        Ok(sink)
    }

    fn push_timeout(&mut self, msg: &[u8], limit: Duration) -> Result<(), FramePushError> {
        match self {
            Sink::Frames(tx) => tx.push_timeout(msg, Some(limit)),
            Sink::Spsc(tx) => tx.push_timeout(msg, Some(limit)),
            Sink::Mpmc(tx) => tx.push_timeout(msg, Some(limit)),
            Sink::Broadcast(tx) => tx.push_timeout(msg, Some(limit)).map(|_| ()),
        }
    }
}

/// Subscribes to `key` on `session` and produces each message into `seg`
/// until `stop` returns true (looked at every [`SLICE`] at least).
/// Refuses (returns an error for) a message whose type is not the ring's.
/// Reports through `events`; counts in `counters`.
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
    let expected = Identity::of_ring(&seg);
    let expected_wire = wire::encode(0, &expected);
    // The type is checked before the producer role is taken, so that a
    // mismatch is refused even for rings this bridge cannot fill.
    let mut sink = None;
    // Each sample is copied out in Zenoh's callback, so no receive buffer
    // of Zenoh's is held while the message waits here; the bounded queue
    // blocks the callback when full (the back-pressure of the reliable
    // mode).
    let (queue, received) = std::sync::mpsc::sync_channel::<Received>(QUEUE);
    let _subscriber = session
        .declare_subscriber(key_expr)
        .callback(move |sample| {
            let _ = queue.send(Received {
                attachment: sample.attachment().map(|a| a.to_bytes().into_owned()),
                payload: sample.payload().to_bytes().into_owned(),
            });
        })
        .wait()
        .map_err(|e| {
            BridgeError::Network(format!(
                "cannot subscribe to {key:?}: {}",
                crate::reason(&e)
            ))
        })?;
    events(Event::Subscribed);
    let (mut record, resumed) = match UpstreamWriter::take(seg.clone()) {
        Ok((writer, resumed)) => (Some(writer), resumed),
        Err(held) => {
            events(Event::RecordHeld { pid: held.pid });
            (None, None)
        }
    };
    // The counts before this run (zero for the first bridge).
    let base = resumed.map(|r| r.counts).unwrap_or_default();
    let mut tracker = match resumed {
        Some(r) => {
            events(Event::Resumed {
                session: base.session,
                last_seq: base.last_seq,
                delivered: base.delivered,
                gaps: base.gaps,
                interrupted_push: r.interrupted_push,
            });
            Tracker::resume(base.session, base.last_seq)
        }
        None => Tracker::new(),
    };
    let mut last_report = Instant::now();
    while !stop() {
        if let Some(every) = options.report_every
            && last_report.elapsed() >= every
        {
            last_report = Instant::now();
            events(Event::Progress(counters.snapshot()));
        }
        let sample = match received.recv_timeout(SLICE) {
            Ok(s) => s,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(BridgeError::Network(format!(
                    "the subscription to {key:?} ended"
                )));
            }
        };
        let header =
            wire::decode(sample.attachment.as_deref()).map_err(|e| BridgeError::Foreign {
                key: key.to_string(),
                what: e.to_string(),
            })?;
        if !header.is_type(&expected_wire) {
            return Err(BridgeError::TypeMismatch(Box::new(crate::Mismatch {
                key: key.to_string(),
                source: header.identity(),
                ring: seg.path().to_path_buf(),
                expected,
            })));
        }
        let sink = match &mut sink {
            Some(s) => s,
            None => sink.insert(Sink::attach(&seg, options.wait)?),
        };
        match tracker.observe(header.session, header.seq, counters) {
            Seen::Repeat => continue,
            Seen::Next => {}
            Seen::First { seq, restarted } => events(Event::Joined {
                session: header.session,
                seq,
                restarted,
            }),
            Seen::Gap { missing } => events(Event::Gap {
                missing,
                seq: header.seq,
            }),
        }
        if let Some(r) = &mut record {
            // Recorded before the push, as if it landed: a successor
            // settles it from the ring's position if we die before
            // `landed`.
            r.pushing(&Upstream {
                session: header.session,
                last_seq: header.seq,
                gaps: base.gaps + counters.gaps.load(Ordering::Relaxed),
                delivered: base.delivered + counters.delivered.load(Ordering::Relaxed) + 1,
            });
        }
        let payload = &sample.payload;
        loop {
            match sink.push_timeout(payload, SLICE) {
                Ok(()) => break,
                Err(FramePushError::Timeout) if !stop() => {}
                Err(FramePushError::Timeout) => return Ok(()),
                // Nobody consumes the ring and it is full: keep waiting
                // for a consumer (the back-pressure reaches the source).
                Err(FramePushError::Full | FramePushError::Disconnected) => {
                    if stop() {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(FramePushError::TooLarge { len, max }) => {
                    return Err(BridgeError::Unsupported(format!(
                        "a {len}-byte message (sequence number {}) does not fit {} (at most {max} bytes each): recreate it larger",
                        header.seq,
                        seg.path().display()
                    )));
                }
                // The type matched but the length is not the type's: a
                // malformed message from a foreign or buggy source.
                Err(e @ FramePushError::WrongSize { .. }) => {
                    return Err(BridgeError::Foreign {
                        key: key.to_string(),
                        what: format!("message {}: {e}", header.seq),
                    });
                }
                Err(FramePushError::Corrupted(what)) => {
                    return Err(BridgeError::Ring(shmring::Error::Corrupted {
                        path: seg.path().to_path_buf(),
                        what,
                    }));
                }
            }
        }
        if let Some(r) = &mut record {
            r.landed();
        }
        counters.delivered.fetch_add(1, Ordering::Relaxed);
        counters.last_seq.store(header.seq, Ordering::Relaxed);
    }
    Ok(())
}
