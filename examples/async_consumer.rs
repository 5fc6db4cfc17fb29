//! A tokio consumer: a producer process pushes 1 million `u64`; a tokio
//! current-thread runtime receives them all as a `Stream` while a 10 ms
//! ticker keeps ticking on the same thread; then it measures the async
//! round trip next to blocking ones. Needs the `tokio` feature.
//!
//! ```sh
//! cargo run --release --features tokio --example async_consumer             # 1,000,000 messages
//! cargo run --release --features tokio --example async_consumer -- 20000    # fewer
//! ```
//!
//! No task blocks the runtime's thread and nothing spins while a ring is
//! empty: an awaiting `recv` sleeps in the process's one waker thread
//! (`futex_waitv` on the ring's eventcount), which wakes the task when the
//! producer publishes.

use std::future::poll_fn;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_core::Stream;
use shmring::asynch::{AsyncConsumer, AsyncProducer};
use shmring::spsc::{Consumer, PopError, Producer};
use shmring::wait::WaitStrategy;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Round trips measured for each way of waiting.
const ROUND_TRIPS: usize = 20_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("producer") {
        return produce(&args[2], args[3].parse()?);
    }
    let count: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let base = format!("example-async-{}", std::process::id());

    let mut data = Consumer::<u64>::create(&format!("{base}-data"), 4096)?;
    let mut pings = Producer::<u64>::create(&format!("{base}-ping"), 64)?;
    let mut pongs = Consumer::<u64>::create(&format!("{base}-pong"), 64)?;
    let mut producer = Command::new(std::env::current_exe()?)
        .args(["producer", &base, &count.to_string()])
        .spawn()?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let (received, ticks, async_rtt) = rt.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                let mut interval = tokio::time::interval(Duration::from_millis(10));
                loop {
                    interval.tick().await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Every message, in order, until the producer leaves.
        let mut stream = data.stream();
        let mut received = 0u64;
        loop {
            match poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
                Some(Ok(v)) if v == received => received += 1,
                Some(Ok(v)) => return Err(format!("got {v}, expected {received}").into()),
                Some(Err(PopError::Disconnected)) | None => break,
                Some(Err(e)) => return Err(e.into()),
            }
        }
        let ticks = ticks.load(Ordering::Relaxed);
        // The async round trip: send a ping, await its pong.
        let mut samples = Vec::with_capacity(ROUND_TRIPS);
        for i in 0..ROUND_TRIPS as u64 {
            let start = Instant::now();
            pings.send(i).await?;
            let pong = pongs.recv().await?;
            samples.push(start.elapsed());
            if pong != i {
                return Err(format!("pong {pong} to ping {i}").into());
            }
        }
        ticker.abort();
        Ok::<_, Box<dyn std::error::Error>>((received, ticks, samples))
    })?;
    println!(
        "consumer: received {received} u64 in order; the 10 ms ticker ticked {ticks} times meanwhile"
    );

    // The same round trip with blocking calls, for comparison.
    let mut blocking =
        |strategy: WaitStrategy| -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
            pongs.set_wait_strategy(strategy);
            let mut samples = Vec::with_capacity(ROUND_TRIPS);
            for i in 0..ROUND_TRIPS as u64 {
                let start = Instant::now();
                pings.push(i)?;
                let pong = pongs.pop_timeout(Some(TIMEOUT))?;
                samples.push(start.elapsed());
                if pong != i {
                    return Err(format!("pong {pong} to ping {i}").into());
                }
            }
            Ok(samples)
        };
    let park = blocking(WaitStrategy::default())?;
    let park0 = blocking(WaitStrategy::Park {
        spin: Duration::ZERO,
    })?;
    drop(pings); // the producer's echo loop sees Disconnected and exits
    let status = producer.wait()?;
    println!(
        "round trip p50: async (tokio) {:?}, blocking default (adaptive) {:?}, blocking Park (no spin) {:?}",
        p50(async_rtt),
        p50(park),
        p50(park0)
    );
    if !status.success() {
        return Err(format!("producer failed: {status}").into());
    }
    Ok(())
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The producer process: pushes `count` u64, leaves the data ring, then
/// echoes pings as pongs (blocking, default strategy) until the pings end.
fn produce(base: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut data = Producer::<u64>::builder(format!("{base}-data"))
        .wait_for(TIMEOUT)
        .open()?;
    for i in 0..count {
        data.push(i)?;
    }
    data.flush(TIMEOUT)?;
    drop(data);
    let mut pings = Consumer::<u64>::builder(format!("{base}-ping"))
        .wait_for(TIMEOUT)
        .open()?;
    let mut pongs = Producer::<u64>::builder(format!("{base}-pong"))
        .wait_for(TIMEOUT)
        .open()?;
    loop {
        match pings.pop() {
            Ok(v) => pongs.push(v)?,
            Err(PopError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
