//! The bridge rows (`--kind bridge`, cargo feature `bridge`): messages
//! through shmring bridges over loopback TCP next to a direct Zenoh
//! publisher and subscriber on the same kind of session pair.
//!
//! - Throughput: ring -> bridge out -> Zenoh over TCP on 127.0.0.1 ->
//!   bridge in -> ring, against a Zenoh publisher whose subscriber counts.
//! - Round trips: ring -> two bridges -> an echo that pushes each message
//!   back -> ring -> two bridges -> ring, against a Zenoh ping-pong.
//!
//! Zenoh starts threads, and the bench forks its peers from a
//! single-threaded process, so each measurement runs in a forked child of
//! its own, which opens two peer sessions joined by TCP (on a port the
//! kernel picked free), measures, and sends its figures back through a
//! pipe. The child is not pinned: a bridge is several threads (the bridges'
//! own and Zenoh's), and the parent only waits.

use super::*;
use shmring_zenoh::net::NetOptions;
use shmring_zenoh::zenoh::{self, Wait};
use shmring_zenoh::{gaps, inbound, out};

use std::sync::atomic::AtomicBool;

/// How long setting up may take: sessions connecting, subscribers matching,
/// the first message through.
const SETUP: Duration = Duration::from_secs(10);

/// Messages per second through two bridges (`bridged`) or from a Zenoh
/// publisher to its subscriber.
pub(super) fn zenoh_throughput(n: &Names, dur: Duration, bridged: bool) -> Result<f64, Error> {
    if !bridged {
        return in_child("direct zenoh throughput", dur, || {
            let (s1, s2) = session_pair()?;
            direct_throughput(&s1, &s2, dur)
        });
    }
    let layout = frames::layout(1 << 16)?;
    let rings = [n.seg("zab-a", &layout)?, n.seg("zab-b", &layout)?];
    let rate = in_child("bridge throughput", dur, || {
        let (s1, s2) = session_pair()?;
        bridged_throughput(n, &s1, &s2, dur)
    });
    drop(rings);
    rate
}

/// Round trips, in nanoseconds, through two bridge pairs (`bridged`) or
/// a Zenoh ping-pong.
pub(super) fn zenoh_rtt(n: &Names, dur: Duration, bridged: bool) -> Result<Vec<u64>, Error> {
    if !bridged {
        return in_child("direct zenoh round trip", dur, || {
            let (s1, s2) = session_pair()?;
            direct_rtt(&s1, &s2, dur)
        });
    }
    let layout = frames::layout(1 << 16)?;
    let mut rings = Vec::new();
    for tag in ["zrt-a", "zrt-b", "zrt-c", "zrt-d"] {
        rings.push(n.seg(tag, &layout)?);
    }
    let samples = in_child("bridge round trip", dur, || {
        let (s1, s2) = session_pair()?;
        bridged_rtt(n, &s1, &s2, dur)
    });
    drop(rings);
    samples
}

/// Runs `measure` in a forked child, unpinned, and returns what it sent
/// back. The child ends itself (SIGALRM) if it is not done a minute after
/// `dur`, so the parent's read is bounded.
fn in_child<T>(
    what: &str,
    dur: Duration,
    measure: impl FnOnce() -> Result<T, String>,
) -> Result<T, Error>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let (mut reader, mut writer) = std::io::pipe().map_err(|e| Error::io("pipe", "pipe", e))?;
    let limit = u32::try_from(dur.as_secs() + 60).unwrap_or(u32::MAX);
    let child = fork_on(None, move || {
        unpin();
        // SAFETY: alarm takes an integer; SIGALRM's default action ends
        // this child, which is all it is for.
        unsafe { libc::alarm(limit) };
        let result = measure();
        // A failure to encode or write shows as an empty answer.
        if let Ok(text) = serde_json::to_vec(&result) {
            let _ = writer.write_all(&text);
        }
    })?;
    // The parent's copy of the write end went with the closure: the read
    // ends when the child's closes.
    let mut text = Vec::new();
    let read = reader.read_to_end(&mut text);
    drop(child);
    read.map_err(|e| Error::io("pipe", "read", e))?;
    let result: Result<T, String> = serde_json::from_slice(&text)
        .map_err(|_| err(format!("{what}: the measuring process failed (see above)")))?;
    result.map_err(|e| err(format!("{what}: {e}")))
}

/// Lets this process's threads run on every core.
fn unpin() {
    let mut set = nix::sched::CpuSet::new();
    for cpu in 0..nix::sched::CpuSet::count() {
        let _ = set.set(cpu);
    }
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
}

/// Two peer sessions in this process joined by TCP on 127.0.0.1: the first
/// listens on a port the kernel picked free, the second connects to it.
fn session_pair() -> Result<(zenoh::Session, zenoh::Session), String> {
    let mut failed = String::new();
    // The port is free when picked; another process may take it before
    // the session listens: then another port.
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let endpoint = format!("tcp/127.0.0.1:{port}");
        let listening = NetOptions {
            listen: vec![endpoint.clone()],
            ..NetOptions::default()
        }
        .open();
        match listening {
            Ok(s1) => {
                let s2 = NetOptions {
                    connect: vec![endpoint],
                    ..NetOptions::default()
                }
                .open()
                .map_err(|e| e.to_string())?;
                return Ok((s1, s2));
            }
            Err(e) => failed = e.to_string(),
        }
    }
    Err(failed)
}

/// A key expression of this child's own.
fn key(row: &str) -> String {
    format!("shmring-bench/{}/{row}", std::process::id())
}

/// The message every row sends.
fn payload() -> [u8; BRIDGE_MSG] {
    [0x5a; BRIDGE_MSG]
}

/// Bridges run on scoped threads until `stop`; each returns its error.
type BridgeThread<'scope> = std::thread::ScopedJoinHandle<'scope, Result<(), String>>;

/// Starts a bridge out from ring `from` on `tx` and a bridge in from the
/// same key into ring `to` on `rx`, as `shmring bridge` runs them.
fn bridge<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    stop: &'env AtomicBool,
    n: &'env Names,
    (tx, from): (&'env zenoh::Session, &str),
    (rx, to): (&'env zenoh::Session, &str),
    key: String,
) -> [BridgeThread<'scope>; 2] {
    let stopped = move || stop.load(Ordering::Relaxed);
    let (source, sink) = (n.open(from), n.open(to));
    let out_key = key.clone();
    [
        scope.spawn(move || {
            let options = out::Options {
                qos: NetOptions::default().qos(),
                report_every: None,
                wait: WaitStrategy::default(),
            };
            let counters = out::Counters::default();
            out::run(
                tx,
                &out_key,
                source,
                &options,
                &stopped,
                &counters,
                &mut |_| {},
            )
            .map_err(|e| format!("bridge out: {e}"))
        }),
        scope.spawn(move || {
            let options = inbound::Options {
                report_every: None,
                wait: WaitStrategy::default(),
            };
            let counters = gaps::Counters::default();
            inbound::run(rx, &key, sink, &options, &stopped, &counters, &mut |_| {})
                .map_err(|e| format!("bridge in: {e}"))
        }),
    ]
}

/// Stops the bridges and returns `measured`, or the first bridge's error
/// (which explains a failed measurement better than the measurement).
fn finish<T>(
    stop: &AtomicBool,
    bridges: Vec<BridgeThread<'_>>,
    measured: Result<T, String>,
) -> Result<T, String> {
    stop.store(true, Ordering::Relaxed);
    let mut failed = None;
    for b in bridges {
        let e = match b.join() {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => "a bridge thread panicked".into(),
        };
        failed.get_or_insert(e);
    }
    match failed {
        Some(e) => Err(e),
        None => measured,
    }
}

/// How fast `count` grows over `dur`, after a 100 ms warm-up.
fn rate_over(count: &AtomicU64, dur: Duration) -> f64 {
    std::thread::sleep(Duration::from_millis(100));
    let before = count.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(dur);
    let got = count.load(Ordering::Relaxed) - before;
    got as f64 / start.elapsed().as_secs_f64()
}

/// Pushes one message into `tx` and waits for one out of `rx` (the
/// bridges take nothing before their subscriber matches).
fn first_through(tx: &mut frames::Producer, rx: &mut frames::Consumer) -> Result<(), String> {
    let mut buf = Vec::new();
    tx.push(&payload()).map_err(|e| format!("push: {e}"))?;
    rx.pop_timeout(&mut buf, Some(SETUP))
        .map_err(|e| format!("no message through the bridges within {SETUP:?}: {e}"))
}

fn bridged_throughput(
    n: &Names,
    s1: &zenoh::Session,
    s2: &zenoh::Session,
    dur: Duration,
) -> Result<f64, String> {
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let ring_err = |e: Error| e.to_string();
    let mut a = frames::Producer::attach(n.open("zab-a")).map_err(ring_err)?;
    let mut b = frames::Consumer::attach(n.open("zab-b")).map_err(ring_err)?;
    std::thread::scope(|scope| {
        let bridges = bridge(scope, &stop, n, (s1, "zab-a"), (s2, "zab-b"), key("ab"));
        let measured = first_through(&mut a, &mut b).map(|()| {
            let (stop, count) = (&stop, &count);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // A full ring is the bridges' back-pressure: try again.
                    let _ = a.push_timeout(&payload(), Some(shmring_zenoh::SLICE));
                }
            });
            scope.spawn(move || {
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if b.pop_timeout(&mut buf, Some(shmring_zenoh::SLICE)).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            rate_over(count, dur)
        });
        finish(&stop, bridges.into(), measured)
    })
}

fn bridged_rtt(
    n: &Names,
    s1: &zenoh::Session,
    s2: &zenoh::Session,
    dur: Duration,
) -> Result<Vec<u64>, String> {
    let stop = AtomicBool::new(false);
    let ring_err = |e: Error| e.to_string();
    let mut a = frames::Producer::attach(n.open("zrt-a")).map_err(ring_err)?;
    let mut b = frames::Consumer::attach(n.open("zrt-b")).map_err(ring_err)?;
    let mut c = frames::Producer::attach(n.open("zrt-c")).map_err(ring_err)?;
    let mut d = frames::Consumer::attach(n.open("zrt-d")).map_err(ring_err)?;
    std::thread::scope(|scope| {
        let mut bridges: Vec<_> = bridge(scope, &stop, n, (s1, "zrt-a"), (s2, "zrt-b"), key("ab"))
            .into_iter()
            .collect();
        bridges.extend(bridge(
            scope,
            &stop,
            n,
            (s2, "zrt-c"),
            (s1, "zrt-d"),
            key("cd"),
        ));
        let stopped = &stop;
        // The far end: each message back as it came.
        scope.spawn(move || {
            let mut buf = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                if b.pop_timeout(&mut buf, Some(shmring_zenoh::SLICE)).is_ok()
                    && c.push_timeout(&buf, Some(SETUP)).is_err()
                {
                    return;
                }
            }
        });
        let measured = first_through(&mut a, &mut d).and_then(|()| {
            let mut buf = Vec::new();
            let mut failed = None;
            let samples = time_rtts(dur, |_| {
                if failed.is_some() {
                    return;
                }
                let trip = a
                    .push(&payload())
                    .map_err(|e| format!("push: {e}"))
                    .and_then(|()| {
                        d.pop_timeout(&mut buf, Some(SETUP))
                            .map_err(|e| format!("no echo within {SETUP:?}: {e}"))
                    });
                failed = trip.err();
            });
            failed.map_or(Ok(samples), Err)
        });
        finish(&stop, bridges, measured)
    })
}

/// A publisher on `row`'s key, blocking when congested as the bridges
/// do, once a subscriber matches it.
fn publisher(
    session: &zenoh::Session,
    row: &str,
) -> Result<zenoh::pubsub::Publisher<'static>, String> {
    let publisher = session
        .declare_publisher(key(row))
        .congestion_control(NetOptions::default().qos().congestion)
        .wait()
        .map_err(|e| e.to_string())?;
    let end = Instant::now() + SETUP;
    loop {
        let status = publisher
            .matching_status()
            .wait()
            .map_err(|e| e.to_string())?;
        if status.matching() {
            return Ok(publisher);
        }
        if Instant::now() >= end {
            return Err(format!("no subscriber matched {row} within {SETUP:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn direct_throughput(
    s1: &zenoh::Session,
    s2: &zenoh::Session,
    dur: Duration,
) -> Result<f64, String> {
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let zerr = |e: zenoh::Error| e.to_string();
    let _subscriber = s2
        .declare_subscriber(key("direct"))
        .callback(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        })
        .wait()
        .map_err(zerr)?;
    let publisher = publisher(s1, "direct")?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                publisher
                    .put(&payload()[..])
                    .wait()
                    .map_err(|e| format!("put: {e}"))?;
            }
            Ok(())
        });
        let rate = rate_over(&count, dur);
        finish(&stop, vec![sender], Ok(rate))
    })
}

fn direct_rtt(s1: &zenoh::Session, s2: &zenoh::Session, dur: Duration) -> Result<Vec<u64>, String> {
    let zerr = |e: zenoh::Error| e.to_string();
    let (pong, pongs) = std::sync::mpsc::sync_channel::<()>(1);
    let _ponged = s1
        .declare_subscriber(key("pong"))
        .callback(move |_| {
            let _ = pong.send(());
        })
        .wait()
        .map_err(zerr)?;
    let echo = publisher(s2, "pong")?;
    let _echoer = s2
        .declare_subscriber(key("ping"))
        .callback(move |sample| {
            let _ = echo.put(sample.payload().clone()).wait();
        })
        .wait()
        .map_err(zerr)?;
    let ping = publisher(s1, "ping")?;
    let mut failed = None;
    let samples = time_rtts(dur, |_| {
        if failed.is_some() {
            return;
        }
        let trip = ping
            .put(&payload()[..])
            .wait()
            .map_err(|e| format!("put: {e}"))
            .and_then(|()| {
                pongs
                    .recv_timeout(SETUP)
                    .map_err(|_| format!("no pong within {SETUP:?}"))
            });
        failed = trip.err();
    });
    failed.map_or(Ok(samples), Err)
}
