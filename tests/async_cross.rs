//! The async layer across processes: a million messages reach an async
//! consumer in order, a producer killed with kill -9 ends the consumer's
//! stream with `Disconnected`, and an idle async consumer (and an armed,
//! idle readiness fd) costs next to nothing.

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use futures_core::Stream;
use shmring::asynch::{AsyncConsumer, Readiness};
use shmring::ring::PopError;
use shmring::spsc::{Consumer, Producer, TryPushError};

/// How long a child waits for the ring the parent creates.
const WAIT: Duration = Duration::from_secs(20);
/// A hang guard, far above anything expected (not a timing assertion).
const GUARD: Duration = Duration::from_secs(60);

#[test]
fn async_child() {
    let Some(role) = child_role() else { return };
    let dir = env_str("C_DIR");
    let name = env_str("C_NAME");
    let producer = || {
        let tx = Producer::<u64>::builder(&name)
            .dir(&dir)
            .wait_for(WAIT)
            .open()
            .unwrap();
        println!("ready");
        tx
    };
    match role.as_str() {
        // Pushes 0..C_COUNT, then leaves.
        "producer" => {
            let count: u64 = env_str("C_COUNT").parse().unwrap();
            let mut tx = producer();
            for i in 0..count {
                tx.push(i).unwrap();
            }
            tx.flush(GUARD).unwrap();
        }
        // Pushes 0, 1, ... until killed.
        "endless-producer" => {
            let mut tx = producer();
            let mut i = 0u64;
            loop {
                match tx.try_push(i) {
                    Ok(()) => i += 1,
                    Err(TryPushError::Full(_)) => std::thread::sleep(Duration::from_micros(100)),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        // Awaits a message that never comes for 2 s, with a readiness fd
        // armed on a second idle ring; reports its CPU time and whether
        // the fd was signalled.
        "idle-consumer" => {
            let mut rx = Consumer::<u64>::builder(&name)
                .dir(&dir)
                .wait_for(WAIT)
                .open()
                .unwrap();
            let mut watched = Consumer::<u64>::builder(format!("{name}-fd"))
                .dir(&dir)
                .wait_for(WAIT)
                .open()
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let ready = Readiness::new().unwrap();
            // Warm up: the waker thread and the runtime exist before the
            // measured window.
            rt.block_on(async {
                let r = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
                assert!(r.is_err(), "a message arrived: {r:?}");
            });
            ready.arm(&mut watched);
            let cpu0 = process_cpu();
            let t0 = Instant::now();
            rt.block_on(async {
                let r = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
                assert!(r.is_err(), "a message arrived: {r:?}");
            });
            let (cpu, wall) = (process_cpu() - cpu0, t0.elapsed());
            let signalled = ready.clear().unwrap();
            let waiters = watched.wait_counters().0.waiters;
            println!(
                "idle: cpu_ns={} wall_ns={} signalled={signalled} waiters={waiters}",
                cpu.as_nanos(),
                wall.as_nanos()
            );
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn spawn(role: &str, dir: &TestDir, name: &str, extra: &[(&str, String)]) -> ChildGuard {
    let mut env = vec![
        ("C_DIR", dir.path.display().to_string()),
        ("C_NAME", name.to_string()),
    ];
    env.extend(extra.iter().cloned());
    ChildGuard(Some(
        spawn_self("async_child", role, &env)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The next item of `stream`, or a panic past the hang guard.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(GUARD, poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
        .await
        .expect("the stream hung")
}

/// Takes messages, asserting they come in order (counted in `expect`),
/// until `expect` reaches `stop` (`None`) or the stream yields an error
/// (returned).
async fn in_order<S>(stream: &mut S, expect: &mut u64, stop: u64) -> Option<PopError>
where
    S: Stream<Item = Result<u64, PopError>> + Unpin,
{
    while *expect < stop {
        match next(stream).await {
            Some(Ok(v)) => {
                assert_eq!(v, *expect, "lost, repeated or out of order");
                *expect += 1;
            }
            Some(Err(e)) => return Some(e),
            None => panic!("the stream ended without an error"),
        }
    }
    None
}

#[test]
fn a_million_messages_reach_an_async_consumer_in_order() {
    if child_role().is_some() {
        return;
    }
    const COUNT: u64 = 1_000_000;
    let dir = TestDir::new("async-million");
    let mut rx = Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(1024)
        .create()
        .unwrap();
    let mut child = spawn("producer", &dir, "r", &[("C_COUNT", COUNT.to_string())]);
    runtime().block_on(async {
        let mut stream = rx.stream();
        let mut expect = 0u64;
        let end = in_order(&mut stream, &mut expect, u64::MAX).await;
        assert_eq!(end, Some(PopError::Disconnected));
        assert_eq!(expect, COUNT);
        assert!(next(&mut stream).await.is_none(), "the stream ended");
    });
    assert!(child.wait_within(GUARD).success());
    drop(rx);
    dir.finish();
}

#[test]
fn a_producer_killed_with_kill_9_ends_the_stream_with_disconnected() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("async-kill");
    let mut rx = Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .create()
        .unwrap();
    let mut child = spawn("endless-producer", &dir, "r", &[]);
    runtime().block_on(async {
        let mut stream = rx.stream();
        let mut expect = 0u64;
        // Some messages flow, then the producer dies mid-stream.
        assert_eq!(in_order(&mut stream, &mut expect, 10_000).await, None);
        child.kill9();
        let killed = Instant::now();
        // What it published still arrives, in order, then Disconnected.
        let end = in_order(&mut stream, &mut expect, u64::MAX).await;
        assert_eq!(end, Some(PopError::Disconnected));
        eprintln!(
            "Disconnected {:?} after kill -9 ({} messages)",
            killed.elapsed(),
            expect
        );
        assert!(next(&mut stream).await.is_none(), "the stream ended");
    });
    drop(rx);
    dir.finish();
}

#[test]
fn an_idle_async_consumer_and_an_idle_readiness_fd_stay_quiet() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("async-idle");
    // The producers stay attached and send nothing.
    let tx = Producer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .create()
        .unwrap();
    let tx_fd = Producer::<u64>::builder("r-fd")
        .dir(&dir.path)
        .capacity(64)
        .create()
        .unwrap();
    let child = spawn("idle-consumer", &dir, "r", &[]);
    let report = Report::find(&child.output_within(GUARD), "idle: ");
    let field = |key: &str| report.field(key);
    report.assert_idle(Duration::from_secs(2), "idle async consumer");
    assert_eq!(field("signalled="), "false", "the idle readiness fd fired");
    assert_eq!(
        field("waiters="),
        "1",
        "the armed ring lost its registration"
    );
    // Nobody woke anybody: the producers never published.
    assert_eq!(tx.wait_counters().0.wakeups, 0);
    assert_eq!(tx_fd.wait_counters().0.wakeups, 0);
    drop((tx, tx_fd));
    dir.finish();
}
