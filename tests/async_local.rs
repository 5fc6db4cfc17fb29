//! The async layer within one process: every kind sends and receives with
//! both sides waiting, cancellation loses and duplicates nothing, one task
//! awaits 100 rings, and the readiness fd fires when armed.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::*;
use futures_core::Stream;
use shmring::asynch::{AsyncConsumer, AsyncProducer, Readiness};
use shmring::{frames, mpmc, spsc};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

const N: u64 = 20_000;

#[test]
fn spsc_both_sides_wait_and_everything_arrives_in_order() {
    let (mut tx, mut rx) = spsc::anonymous::<u64>(4).unwrap();
    let rt = runtime();
    rt.block_on(async move {
        let producer = tokio::spawn(async move {
            for i in 0..N {
                tx.send(i).await.unwrap();
            }
        });
        for i in 0..N {
            assert_eq!(rx.recv().await.unwrap(), i);
        }
        producer.await.unwrap();
        // The producer is gone and the ring drained.
        assert!(matches!(
            rx.recv().await,
            Err(shmring::spsc::PopError::Disconnected)
        ));
        let (data, space) = rx.wait_counters();
        assert_eq!((data.waiters, space.waiters), (0, 0), "registrations left");
    });
}

#[test]
fn frames_both_sides_wait_and_everything_arrives_in_order() {
    let (mut tx, mut rx) = frames::anonymous(256).unwrap();
    let rt = runtime();
    rt.block_on(async move {
        let producer = tokio::spawn(async move {
            for i in 0..N {
                let payload = vec![i as u8; (i % 50) as usize + 1];
                tx.send(&payload[..]).await.unwrap();
            }
        });
        let mut stream = rx.stream();
        for i in 0..N {
            let got = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx))
                .await
                .expect("stream ended early")
                .unwrap();
            assert_eq!(got, vec![i as u8; (i % 50) as usize + 1]);
        }
        producer.await.unwrap();
        let end = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await;
        assert!(matches!(
            end,
            Some(Err(shmring::ring::PopError::Disconnected))
        ));
        let end = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await;
        assert!(end.is_none(), "the stream ends after Disconnected");
    });
}

#[test]
fn mpmc_typed_two_producers_two_consumers() {
    let (tx, rx) = mpmc::anonymous::<u64>(8).unwrap();
    let seg = tx.segment().clone();
    let tx2 = mpmc::Producer::<u64>::attach(seg.clone()).unwrap();
    let rx2 = mpmc::Consumer::<u64>::attach(seg).unwrap();
    let rt = runtime();
    let got = rt.block_on(async move {
        let mut producers = Vec::new();
        for (tag, mut tx) in [(0u64, tx), (1u64 << 32, tx2)] {
            producers.push(tokio::spawn(async move {
                for i in 0..N {
                    tx.send(tag | i).await.unwrap();
                }
            }));
        }
        let mut consumers = Vec::new();
        for mut rx in [rx, rx2] {
            consumers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    match rx.recv().await {
                        Ok(v) => got.push(v),
                        Err(shmring::ring::PopError::Disconnected) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        for p in producers {
            p.await.unwrap();
        }
        let mut all = Vec::new();
        for c in consumers {
            let got = c.await.unwrap();
            // Each producer's messages reach one consumer in order.
            for tag in [0u64, 1 << 32] {
                let mine: Vec<u64> = got
                    .iter()
                    .copied()
                    .filter(|v| v & (1 << 32) == tag)
                    .collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "out of order");
            }
            all.extend(got);
        }
        all
    });
    let mut all = got;
    all.sort_unstable();
    let mut want: Vec<u64> = (0..N).chain((0..N).map(|i| (1 << 32) | i)).collect();
    want.sort_unstable();
    assert_eq!(all, want, "lost or duplicated messages");
}

#[test]
fn mpmc_bytes_both_sides_wait() {
    let dir = TestDir::new("async-bytes");
    let name = unique("bytes");
    let layout = mpmc::layout::<[u8; 32]>(4).unwrap();
    let seg = shmring::SegmentOptions::new()
        .dir(&dir.path)
        .create(&name, &shmring::raw::bytes_spec(&layout))
        .unwrap();
    let seg = Arc::new(seg);
    let mut tx = mpmc::BytesProducer::attach(seg.clone()).unwrap();
    let mut rx = mpmc::BytesConsumer::attach(seg.clone()).unwrap();
    drop(seg);
    let rt = runtime();
    rt.block_on(async move {
        let producer = tokio::spawn(async move {
            for i in 0..N {
                tx.send(i.to_string().as_bytes()).await.unwrap();
            }
        });
        for i in 0..N {
            assert_eq!(rx.recv().await.unwrap(), i.to_string().into_bytes());
        }
        producer.await.unwrap();
        drop(rx);
    });
    dir.finish();
}

#[test]
fn a_recv_dropped_at_random_points_loses_and_duplicates_nothing() {
    const MESSAGES: u64 = 50_000;
    let (mut tx, mut rx) = spsc::anonymous::<u64>(16).unwrap();
    rx.set_wait_strategy(shmring::wait::WaitStrategy::Yield);
    let producer = std::thread::spawn(move || {
        let mut rng = Rng(0x1234_5678);
        for i in 0..MESSAGES {
            tx.push(i).unwrap();
            if rng.next().is_multiple_of(64) {
                std::thread::sleep(Duration::from_micros(rng.next() % 200));
            }
        }
    });
    let mut cx = Context::from_waker(Waker::noop());
    let mut rng = Rng(0x9abc_def0);
    let (mut expect, mut dropped) = (0u64, 0u32);
    while expect < MESSAGES {
        let mut fut = rx.recv();
        // Poll 0 to 3 times, with pauses, then drop it if not done.
        let polls = rng.next() % 4;
        let mut got = None;
        for _ in 0..polls {
            if let Poll::Ready(r) = Pin::new(&mut fut).poll(&mut cx) {
                got = Some(r);
                break;
            }
            for _ in 0..rng.next() % 500 {
                std::hint::spin_loop();
            }
        }
        drop(fut);
        match got {
            Some(r) => {
                assert_eq!(r.unwrap(), expect, "lost or duplicated");
                expect += 1;
            }
            None => dropped += 1,
        }
    }
    producer.join().unwrap();
    assert!(dropped >= 10_000, "only {dropped} futures were dropped");
    assert!(matches!(rx.try_pop(), Err(spsc::TryPopError::Disconnected)));
    assert_eq!(rx.wait_counters().0.waiters, 0, "registrations left");
}

#[test]
fn one_task_awaits_100_rings() {
    const RINGS: usize = 100;
    const EACH: u64 = 200;
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..RINGS {
        let (tx, rx) = spsc::anonymous::<u64>(8).unwrap();
        txs.push(tx);
        rxs.push(rx);
    }
    let producer = std::thread::spawn(move || {
        let mut rng = Rng(42);
        let mut sent = [0u64; RINGS];
        let mut left = RINGS as u64 * EACH;
        while left > 0 {
            let r = (rng.next() % RINGS as u64) as usize;
            if sent[r] == EACH {
                continue;
            }
            txs[r].push(sent[r]).unwrap();
            sent[r] += 1;
            left -= 1;
            if rng.next().is_multiple_of(16) {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let next = rt.block_on(async {
        let mut streams: Vec<_> = rxs.iter_mut().map(|rx| rx.stream()).collect();
        let mut next = [0u64; RINGS];
        let mut finished = 0;
        while finished < RINGS {
            let (i, item) = std::future::poll_fn(|cx| {
                for (i, s) in streams.iter_mut().enumerate() {
                    if let Poll::Ready(Some(item)) = Pin::new(s).poll_next(cx) {
                        return Poll::Ready((i, item));
                    }
                }
                Poll::Pending
            })
            .await;
            match item {
                Ok(v) => {
                    assert_eq!(v, next[i], "ring {i} out of order");
                    next[i] += 1;
                }
                Err(shmring::ring::PopError::Disconnected) => finished += 1,
                Err(e) => panic!("{e}"),
            }
        }
        next
    });
    producer.join().unwrap();
    assert!(next.iter().all(|&n| n == EACH), "{next:?}");
}

#[test]
fn the_readiness_fd_fires_when_an_armed_ring_has_a_message() {
    let (mut tx, mut rx) = spsc::anonymous::<u64>(16).unwrap();
    let ready = Readiness::new().unwrap();
    ready.arm(&mut rx);
    assert!(!ready.clear().unwrap(), "signalled with nothing sent");
    assert_eq!(rx.wait_counters().0.waiters, 1, "armed: one waiter");
    tx.push(5).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || ready.clear().unwrap()),
        "not signalled"
    );
    assert_eq!(
        rx.wait_counters().0.waiters,
        0,
        "fired: registration undone"
    );
    // Armed on a ring with a message: signalled at once.
    ready.arm(&mut rx);
    assert!(ready.clear().unwrap());
    assert_eq!(rx.try_pop().unwrap(), 5);
    // With tokio's AsyncFd.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let afd = ready.into_async_fd().unwrap();
        afd.get_ref().arm(&mut rx);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.push(6).unwrap();
            tx
        });
        let mut guard = afd.readable().await.unwrap();
        guard.clear_ready();
        assert!(afd.get_ref().clear().unwrap());
        assert_eq!(rx.try_pop().unwrap(), 6);
        drop(sender.join().unwrap());
    });
}

#[test]
fn tokio_select_over_two_rings_gets_every_message_once() {
    let (mut tx_a, mut rx_a) = spsc::anonymous::<u64>(8).unwrap();
    let (mut tx_b, mut rx_b) = spsc::anonymous::<u64>(8).unwrap();
    let producer = std::thread::spawn(move || {
        for i in 0..N {
            if i % 3 == 0 {
                tx_b.push(i).unwrap();
            } else {
                tx_a.push(i).unwrap();
            }
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = rt.block_on(async {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut a_done, mut b_done) = (false, false);
        while !(a_done && b_done) {
            // The losing branch's future is dropped: it must take nothing.
            tokio::select! {
                r = rx_a.recv(), if !a_done => match r {
                    Ok(v) => a.push(v),
                    Err(_) => a_done = true,
                },
                r = rx_b.recv(), if !b_done => match r {
                    Ok(v) => b.push(v),
                    Err(_) => b_done = true,
                },
            }
        }
        (a, b)
    });
    producer.join().unwrap();
    assert_eq!(a, (0..N).filter(|i| i % 3 != 0).collect::<Vec<_>>());
    assert_eq!(b, (0..N).filter(|i| i % 3 == 0).collect::<Vec<_>>());
}

#[test]
fn broadcast_publisher_and_two_async_subscribers_every_message_to_each() {
    use shmring::broadcast::{Overflow, PopError, Publisher, Subscriber};
    let dir = TestDir::new("async-bcast");
    // Block mode on 4 slots: the publisher's send waits for both
    // subscribers, and each subscriber's recv waits for the publisher.
    let mut tx = Publisher::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(4)
        .overflow(Overflow::Block { evict_after: None })
        .create()
        .unwrap();
    let subs: Vec<Subscriber<u64>> = (0..2)
        .map(|_| {
            Subscriber::<u64>::builder("r")
                .dir(&dir.path)
                .open()
                .unwrap()
        })
        .collect();
    let rt = runtime();
    rt.block_on(async move {
        let readers: Vec<_> = subs
            .into_iter()
            .map(|mut rx| {
                tokio::spawn(async move {
                    for i in 0..N {
                        assert_eq!(rx.recv().await.unwrap(), (i, i * 3));
                    }
                    // The publisher is gone and everything read.
                    assert_eq!(rx.recv().await, Err(PopError::Disconnected));
                })
            })
            .collect();
        for i in 0..N {
            tx.send(i * 3).await.unwrap();
        }
        drop(tx);
        for r in readers {
            r.await.unwrap();
        }
    });
    dir.finish();
}
