//! Throughput and round trips through two bridges over loopback TCP, next
//! to a direct Zenoh publisher/subscriber pair on the same two sessions,
//! in one run:
//!
//! ```text
//! cargo run --release -p shmring-zenoh --example bridge_bench
//! ```
//!
//! Rings a -> bridge out (session 1) -> bridge in (session 2) -> ring b,
//! and back through rings c and d for the round trips. The two Zenoh
//! sessions are peers in this process, joined by TCP on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shmring::frames::{Consumer, Producer};
use shmring::{Segment, SegmentOptions};
use shmring_zenoh::net::NetOptions;
use shmring_zenoh::{gaps, inbound, out};
use zenoh::Wait;

const MESSAGES: u64 = 200_000;
const ROUND_TRIPS: usize = 20_000;
const SIZE: usize = 16;

/// The wait strategy of the bridges and of the bench's own ring handles:
/// `SHMRING_BENCH_WAIT=park0` sleeps at once (no spinning), otherwise the
/// library's default (spin 50 us, then sleep).
fn wait() -> shmring::wait::WaitStrategy {
    match std::env::var("SHMRING_BENCH_WAIT").as_deref() {
        Ok("park0") => shmring::wait::WaitStrategy::Park {
            spin: Duration::ZERO,
        },
        _ => shmring::wait::WaitStrategy::default(),
    }
}

fn ring(name: &str) -> Arc<Segment> {
    let layout = shmring::frames::layout(1 << 16).expect("layout");
    Arc::new(
        SegmentOptions::new()
            .create(name, &shmring::raw::bytes_spec(&layout))
            .expect("create ring"),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn report(what: &str, rate: f64, rtts: &mut [Duration]) {
    rtts.sort();
    println!(
        "{what:<34} {:>10.0} msg/s   rtt median {:>7.1} us  p99 {:>7.1} us",
        rate,
        percentile(rtts, 0.5).as_secs_f64() * 1e6,
        percentile(rtts, 0.99).as_secs_f64() * 1e6
    );
}

fn main() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let s1 = NetOptions {
        listen: vec![endpoint.clone()],
        ..NetOptions::default()
    }
    .open()
    .expect("session 1");
    let s2 = NetOptions {
        connect: vec![endpoint],
        ..NetOptions::default()
    }
    .open()
    .expect("session 2");

    let pid = std::process::id();
    let names: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| format!("bridge-bench-{pid}-{n}"))
        .collect();
    let rings: Vec<Arc<Segment>> = names.iter().map(|n| ring(n)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let qos = NetOptions::default().qos();
    for (session, from, key, into_session, to) in [
        (&s1, 0, "bench/bridge/ab", &s2, 1),
        (&s2, 2, "bench/bridge/cd", &s1, 3),
    ] {
        let (session, seg, st) = (session.clone(), rings[from].clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let options = out::Options {
                qos,
                report_every: None,
                wait: wait(),
            };
            let stopped = move || st.load(Ordering::Relaxed);
            out::run(
                &session,
                key,
                seg,
                &options,
                &stopped,
                &out::Counters::default(),
                &mut |_| {},
            )
            .expect("bridge out");
        }));
        let (session, seg, st) = (into_session.clone(), rings[to].clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let options = inbound::Options {
                report_every: None,
                wait: wait(),
            };
            let stopped = move || st.load(Ordering::Relaxed);
            inbound::run(
                &session,
                key,
                seg,
                &options,
                &stopped,
                &gaps::Counters::default(),
                &mut |_| {},
            )
            .expect("bridge in");
        }));
    }
    let mut a = Producer::attach(rings[0].clone()).expect("a");
    let mut b = Consumer::attach(rings[1].clone()).expect("b");
    let mut c = Producer::attach(rings[2].clone()).expect("c");
    let mut d = Consumer::attach(rings[3].clone()).expect("d");
    a.set_wait_strategy(wait());
    b.set_wait_strategy(wait());
    c.set_wait_strategy(wait());
    d.set_wait_strategy(wait());
    std::thread::sleep(Duration::from_secs(1)); // subscribers matched

    // Through the bridges: throughput a -> b.
    let payload = [7u8; SIZE];
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        for _ in 0..MESSAGES {
            a.push(&payload).expect("push a");
        }
        a
    });
    let mut buf = Vec::new();
    for _ in 0..MESSAGES {
        b.pop(&mut buf).expect("pop b");
    }
    let bridged_rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    let mut a = sender.join().expect("sender");

    // Through the bridges: round trips a -> b, c -> d.
    let pong = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for _ in 0..ROUND_TRIPS {
            b.pop(&mut buf).expect("pop b");
            c.push(&buf).expect("push c");
        }
    });
    let mut bridged_rtts = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        a.push(&payload).expect("push a");
        d.pop(&mut buf).expect("pop d");
        bridged_rtts.push(t.elapsed());
    }
    pong.join().expect("pong");

    // Direct Zenoh, the same two sessions: throughput.
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1024);
    let _sub = s2
        .declare_subscriber("bench/direct/thr")
        .callback(move |_| {
            let _ = tx.send(());
        })
        .wait()
        .expect("subscriber");
    let publisher = s1
        .declare_publisher("bench/direct/thr")
        .congestion_control(qos.congestion)
        .wait()
        .expect("publisher");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let counter = std::thread::spawn(move || {
        for _ in 0..MESSAGES {
            rx.recv().expect("direct sample");
        }
    });
    for _ in 0..MESSAGES {
        publisher.put(&payload[..]).wait().expect("put");
    }
    counter.join().expect("counter");
    let direct_rate = MESSAGES as f64 / started.elapsed().as_secs_f64();

    // Direct Zenoh: round trips (s2 echoes ping to pong).
    let echo = s2
        .declare_publisher("bench/direct/pong")
        .congestion_control(qos.congestion)
        .wait()
        .expect("echo publisher");
    let _echoer = s2
        .declare_subscriber("bench/direct/ping")
        .callback(move |s| {
            let _ = echo.put(s.payload().clone()).wait();
        })
        .wait()
        .expect("echo subscriber");
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let _ponger = s1
        .declare_subscriber("bench/direct/pong")
        .callback(move |_| {
            let _ = tx.send(());
        })
        .wait()
        .expect("pong subscriber");
    let ping = s1
        .declare_publisher("bench/direct/ping")
        .congestion_control(qos.congestion)
        .wait()
        .expect("ping publisher");
    std::thread::sleep(Duration::from_millis(500));
    let mut direct_rtts = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        ping.put(&payload[..]).wait().expect("ping");
        rx.recv().expect("pong");
        direct_rtts.push(t.elapsed());
    }

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("bridge thread");
    }
    println!("{SIZE}-byte messages, {MESSAGES} one way, {ROUND_TRIPS} round trips, loopback TCP");
    report(
        "two bridges (ring->zenoh->ring)",
        bridged_rate,
        &mut bridged_rtts,
    );
    report("direct zenoh pub/sub", direct_rate, &mut direct_rtts);
    let added = percentile(&bridged_rtts, 0.5).saturating_sub(percentile(&direct_rtts, 0.5));
    println!(
        "added by the bridges: {:.1} us median round trip",
        added.as_secs_f64() * 1e6
    );
    drop(rings);
}
