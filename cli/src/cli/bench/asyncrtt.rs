//! The async round trip (issue 17): a ping and its echo through two SPSC
//! rings with `send(v).await` and `recv().await` on a tokio current-thread
//! runtime in each process, next to the blocking `Park` round trip (the
//! `SpscRtt(Park)` row) and to a tokio `UnixStream` round trip of the same
//! 8 bytes, also current-thread in both processes.
//!
//! Both sides of each run in forked children: a process that used the
//! async layer keeps shmring's waker thread, and the bench forks its peers
//! from a single-threaded process. The measuring child sends its samples
//! back over a pipe. (The bench's `PingTx`/`PingRx` also name their
//! methods `send`/`recv`: the async ones are called by their traits.)

use super::*;

use shmring::asynch::{AsyncConsumer, AsyncProducer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `rtt_ns` key of the async shmring row.
pub(super) const ASYNC_KEY: &str = "shmring_async";
/// The `rtt_ns` key of the tokio `UnixStream` row.
pub(super) const TOKIO_UNIX_KEY: &str = "tokio_unix_socket";

/// A bench child's runtime: current-thread, with the I/O driver (for the
/// `UnixStream`s).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("bench child: a tokio runtime")
}

/// [`time_rtts`] for a round trip that is awaited.
async fn time_rtts_async(dur: Duration, mut one: impl AsyncFnMut(u64)) -> Vec<u64> {
    let mut clock = RttClock::new(dur);
    while clock.warming() {
        one(clock.next()).await;
    }
    loop {
        let i = clock.next();
        let t = Instant::now();
        one(i).await;
        if !clock.record(t) {
            return clock.samples;
        }
    }
}

/// Runs `measure` in a child forked onto our core and returns the samples
/// it sends back.
fn measured_in_child(pinned: bool, measure: impl FnOnce() -> Vec<u64>) -> Result<Vec<u64>, Error> {
    let (mut from_child, mut to_parent) =
        std::io::pipe().map_err(|e| Error::io("pipe", "pipe", e))?;
    // The closure owns the writing end: in this process it is dropped (and
    // the end closed) when `fork_on` returns, so the read below ends when
    // the child exits.
    let child = fork_on(pinned.then_some(0), move || {
        let bytes: Vec<u8> = measure().iter().flat_map(|s| s.to_le_bytes()).collect();
        to_parent
            .write_all(&bytes)
            .expect("bench child: send the samples");
    })?;
    let mut bytes = Vec::new();
    let read = from_child.read_to_end(&mut bytes);
    drop(child);
    read.map_err(|e| Error::io("pipe", "read", e))?;
    if bytes.is_empty() {
        return Err(err("bench: an async round trip's measuring process failed"));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("chunks of 8")))
        .collect())
}

/// Round trips through two SPSC rings, awaited on both sides.
pub(super) fn async_rtt(n: &Names, dur: Duration, pinned: bool) -> Result<Vec<u64>, Error> {
    let layout = spsc::layout::<u64>(64)?;
    let (ping, pong) = ("async-ping", "async-pong");
    let rings = (n.seg(ping, &layout)?, n.seg(pong, &layout)?);
    let echo = fork(pinned, || {
        runtime().block_on(async {
            let mut rx = Consumer::<u64>::attach(n.open(ping)).expect("ping consumer");
            let mut tx = Producer::<u64>::attach(n.open(pong)).expect("pong producer");
            while let Ok(v) = AsyncConsumer::recv(&mut rx).await {
                if AsyncProducer::send(&mut tx, v).await.is_err() {
                    return;
                }
            }
        });
    })?;
    let p = measured_in_child(pinned, || {
        runtime().block_on(async {
            let mut tx = Producer::<u64>::attach(n.open(ping)).expect("ping producer");
            let mut rx = Consumer::<u64>::attach(n.open(pong)).expect("pong consumer");
            time_rtts_async(dur, async |i| {
                assert!(AsyncProducer::send(&mut tx, i).await.is_ok(), "bench send");
                let got = AsyncConsumer::recv(&mut rx).await;
                assert!(matches!(got, Ok(v) if v == i), "bench recv");
            })
            .await
        })
    });
    // The children are gone before the rings' last detach (ours), which
    // removes them.
    drop(echo);
    drop(rings);
    p
}

/// A std stream as a tokio one (inside a runtime).
fn tokio_stream(s: UnixStream) -> tokio::net::UnixStream {
    s.set_nonblocking(true)
        .expect("bench child: a non-blocking socket");
    tokio::net::UnixStream::from_std(s).expect("bench child: a tokio socket")
}

/// Round trips of 8 bytes over a tokio `UnixStream`, awaited on both sides.
pub(super) fn tokio_unix_rtt(dur: Duration, pinned: bool) -> Result<Vec<u64>, Error> {
    let (ours, theirs) = socket_pair()?;
    // Each closure owns its end, so that this process keeps neither.
    let echo = fork(pinned, move || {
        runtime().block_on(async move {
            let mut s = tokio_stream(theirs);
            let mut b = [0u8; 8];
            while s.read_exact(&mut b).await.is_ok() {
                if s.write_all(&b).await.is_err() {
                    return;
                }
            }
        });
    })?;
    let p = measured_in_child(pinned, move || {
        runtime().block_on(async move {
            let mut s = tokio_stream(ours);
            time_rtts_async(dur, async |i| {
                let mut b = i.to_le_bytes();
                s.write_all(&b).await.expect("bench write");
                s.read_exact(&mut b).await.expect("bench read");
            })
            .await
        })
    });
    drop(echo);
    p
}

/// The async round trip against its references, from their p50s.
#[derive(Serialize, Clone, Debug)]
pub(super) struct AsyncRtt {
    /// shmring SPSC, awaited on both sides.
    pub(super) shmring_async_p50_ns: f64,
    /// shmring SPSC, blocking with `Park` (no spin), when it ran.
    pub(super) shmring_park_p50_ns: Option<f64>,
    /// tokio `UnixStream`, awaited on both sides.
    pub(super) tokio_unix_socket_p50_ns: Option<f64>,
    /// async / blocking `Park` (above 1: async is slower).
    pub(super) async_over_park: Option<f64>,
    /// async / tokio `UnixStream` (below 1: shmring is faster).
    pub(super) async_over_tokio_unix_socket: Option<f64>,
}

/// The async row against its references, when it ran.
pub(super) fn async_report(r: &Report) -> Option<AsyncRtt> {
    let p50 = |k: &str| r.rtt_ns.get(k).map(|p| p.p50).filter(|v| *v > 0.0);
    let a = p50(ASYNC_KEY)?;
    let park = p50("shmring_park");
    let unix = p50(TOKIO_UNIX_KEY);
    Some(AsyncRtt {
        shmring_async_p50_ns: a,
        shmring_park_p50_ns: park,
        tokio_unix_socket_p50_ns: unix,
        async_over_park: park.map(|p| a / p),
        async_over_tokio_unix_socket: unix.map(|u| a / u),
    })
}
