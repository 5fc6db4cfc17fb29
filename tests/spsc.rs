//! SPSC typed and frame rings across real processes: ordering, wrapping,
//! batch and zero-copy APIs, roles, disconnects, type checks.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use shmring::frames::{self, FramePushError};
use shmring::spsc::{self, Consumer, Producer, TryPopError, TryPushError};
use shmring::{Error, SegmentOptions};

/// Deterministic frame contents: length 0..=3072 and bytes from the index.
fn frame_for(i: u64, buf: &mut Vec<u8>) {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    x ^= x >> 29;
    let len = (x % 3073) as usize;
    buf.clear();
    for _ in 0..len.div_ceil(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
}

fn fnv(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

#[test]
fn spsc_child() {
    let Some(role) = child_role() else { return };
    let dir = env_str("SPSC_DIR");
    let name = env_str("SPSC_NAME");
    let count: u64 = env_str("SPSC_COUNT").parse().unwrap();
    // The parent creates the ring; a child waits for it.
    let producer = || {
        Producer::<u64>::builder(&name)
            .dir(&dir)
            .wait_for(Duration::from_secs(20))
            .open()
    };
    match role.as_str() {
        "u64-one-by-one" => {
            let mut tx = producer().unwrap();
            for v in 0..count {
                let mut v = v;
                loop {
                    match tx.try_push(v) {
                        Ok(()) => break,
                        Err(TryPushError::Full(back)) => {
                            v = back;
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("push: {e}"),
                    }
                }
            }
        }
        "u64-batched" => {
            // Alternates push_slice and zero-copy write_chunk.
            let mut tx = producer().unwrap();
            let mut next = 0u64;
            let mut round = 0u64;
            while next < count {
                round += 1;
                let want = ((round % 37) + 1).min(count - next) as usize;
                if round.is_multiple_of(2) {
                    let vals: Vec<u64> = (next..next + want as u64).collect();
                    match tx.push_slice(&vals) {
                        Ok(n) => next += n as u64,
                        Err(TryPushError::Full(())) => std::thread::yield_now(),
                        Err(e) => panic!("push_slice: {e}"),
                    }
                } else {
                    match tx.write_chunk(want) {
                        Ok(mut chunk) => {
                            let n = chunk.len();
                            for (i, slot) in chunk.as_mut_slice().iter_mut().enumerate() {
                                *slot = next + i as u64;
                            }
                            chunk.commit(n);
                            next += n as u64;
                        }
                        Err(TryPushError::Full(())) => std::thread::yield_now(),
                        Err(e) => panic!("write_chunk: {e}"),
                    }
                }
            }
        }
        "frames" => {
            let mut tx = frames::Producer::builder(&name)
                .dir(&dir)
                .wait_for(Duration::from_secs(20))
                .open()
                .unwrap();
            let mut buf = Vec::new();
            let mut hash = 0xcbf2_9ce4_8422_2325u64;
            for i in 0..count {
                frame_for(i, &mut buf);
                fnv(&mut hash, &buf);
                loop {
                    match tx.write_chunk(buf.len()) {
                        Ok(mut chunk) => {
                            chunk.copy_from_slice(&buf);
                            chunk.commit();
                            break;
                        }
                        Err(FramePushError::Full) => std::thread::yield_now(),
                        Err(e) => panic!("write_chunk: {e}"),
                    }
                }
            }
            println!("hash {hash:#x}");
        }
        "hold-producer" => {
            let _tx = producer().unwrap();
            println!("holding");
            std::thread::sleep(Duration::from_secs(60));
        }
        "second-producer" => match producer() {
            Err(e @ Error::RoleTaken { .. }) => {
                println!("refused: {e}");
                std::process::exit(0);
            }
            other => panic!("expected RoleTaken, got {:?}", other.map(|_| ())),
        },
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn spawn(role: &str, dir: &TestDir, name: &str, count: u64) -> ChildGuard {
    ChildGuard(Some(
        spawn_self(
            "spsc_child",
            role,
            &[
                ("SPSC_DIR", dir.path.display().to_string()),
                ("SPSC_NAME", name.to_string()),
                ("SPSC_COUNT", count.to_string()),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap(),
    ))
}

/// Pops until `Disconnected`, yielding when empty, checking that value i
/// arrives i-th. Returns how many arrived.
fn drain_in_order(rx: &mut Consumer<u64>, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut expect = 0u64;
    loop {
        match rx.try_pop() {
            Ok(v) => {
                assert_eq!(v, expect, "out of order");
                expect += 1;
            }
            Err(TryPopError::Empty) => {
                assert!(Instant::now() < deadline, "stalled at {expect}");
                std::thread::yield_now();
            }
            Err(TryPopError::Disconnected) => return expect,
            Err(e) => panic!("pop: {e}"),
        }
    }
}

#[test]
fn ten_million_u64_cross_process_through_64_slots() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("u64");
    let mut rx = Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .create()
        .unwrap();
    let n = 10_000_000;
    let mut child = spawn("u64-one-by-one", &dir, "r", n);
    let got = drain_in_order(&mut rx, Duration::from_secs(240));
    assert!(child.wait_within(Duration::from_secs(30)).success());
    assert_eq!(got, n);
    drop(rx);
    dir.finish();
}

#[test]
fn batched_and_zero_copy_cross_process() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("batch");
    let mut rx = Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .create()
        .unwrap();
    let n = 2_000_000u64;
    let mut child = spawn("u64-batched", &dir, "r", n);
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut expect = 0u64;
    let mut buf = [0u64; 23];
    let mut round = 0u64;
    loop {
        round += 1;
        let step = if round.is_multiple_of(2) {
            rx.pop_into(&mut buf[..(round % 23 + 1) as usize]).map(|k| {
                for &v in &buf[..k] {
                    assert_eq!(v, expect);
                    expect += 1;
                }
            })
        } else {
            rx.read_chunk((round % 29 + 1) as usize).map(|chunk| {
                let k = chunk.len();
                for &v in chunk.as_slice() {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                chunk.release(k);
            })
        };
        match step {
            Ok(()) => {}
            Err(TryPopError::Empty) => {
                assert!(Instant::now() < deadline, "stalled at {expect}");
                std::thread::yield_now();
            }
            Err(TryPopError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(child.wait_within(Duration::from_secs(30)).success());
    assert_eq!(expect, n);
    drop(rx);
    dir.finish();
}

#[test]
fn one_million_random_frames_cross_process() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("frames");
    let mut rx = frames::Consumer::builder("r")
        .dir(&dir.path)
        .capacity(64 << 10)
        .create()
        .unwrap();
    let n = 1_000_000u64;
    let child = spawn("frames", &dir, "r", n);
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut expect = Vec::new();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut i = 0u64;
    loop {
        match rx.read_chunk() {
            Ok(frame) => {
                frame_for(i, &mut expect);
                assert_eq!(&*frame, &expect[..], "frame {i} differs");
                fnv(&mut hash, &frame);
                frame.release();
                i += 1;
            }
            Err(TryPopError::Empty) => {
                assert!(Instant::now() < deadline, "stalled at {i}");
                std::thread::yield_now();
            }
            Err(TryPopError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(i, n);
    let out = child.output_within(Duration::from_secs(30));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("hash {hash:#x}")),
        "hash mismatch: {text}"
    );
    drop(rx);
    dir.finish();
}

#[test]
fn a_second_producer_is_refused_in_another_process_and_in_this_one() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("roles");
    let opts = SegmentOptions::new().dir(&dir.path);
    let layout = spsc::layout::<u64>(64).unwrap();
    let seg = Arc::new(
        opts.create("r", &shmring::raw::typed_spec::<u64>(&layout))
            .unwrap(),
    );
    let tx = Producer::<u64>::attach(seg.clone()).unwrap();
    // Same handle.
    assert!(matches!(
        Producer::<u64>::attach(seg.clone()),
        Err(Error::RoleTaken { .. })
    ));
    // Another handle in this process.
    let seg2 = Arc::new(opts.open("r").unwrap());
    match Producer::<u64>::attach(seg2.clone()) {
        Err(Error::RoleTaken { pid, .. }) => assert_eq!(pid, Some(std::process::id() as i32)),
        other => panic!("expected RoleTaken, got {:?}", other.map(|_| ())),
    }
    // Another process.
    let out = spawn("second-producer", &dir, "r", 0).output_within(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused"));
    // stat shows the live producer and its pid.
    let info = shmring::segment::inspect(&dir.path, "r").unwrap();
    assert!(info.roles[0].alive);
    assert_eq!(info.roles[0].pid, std::process::id());
    assert!(!info.roles[1].alive);
    // Released on drop: now it can be taken.
    drop(tx);
    let tx2 = Producer::<u64>::attach(seg2).unwrap();
    drop((tx2, seg));
    dir.finish();
}

#[test]
fn consumer_sees_disconnected_after_a_killed_producer_and_producer_after_a_dropped_consumer() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("disc");
    let opts = SegmentOptions::new().dir(&dir.path);
    let seg = Arc::new(
        opts.create(
            "r",
            &shmring::raw::typed_spec::<u64>(&spsc::layout::<u64>(4).unwrap()),
        )
        .unwrap(),
    );
    let mut rx = Consumer::<u64>::attach(seg.clone()).unwrap();
    // No producer yet: empty, not disconnected.
    assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    let mut child = spawn("hold-producer", &dir, "r", 0);
    read_line_starting(child.child().stdout.take().unwrap(), "holding");
    assert!(rx.is_producer_alive());
    child.kill9();
    assert!(!rx.is_producer_alive());
    // The crash is noticed within LOCK_CHECK_EVERY empty polls.
    let mut polls = 0;
    loop {
        match rx.try_pop() {
            Err(TryPopError::Empty) => polls += 1,
            Err(TryPopError::Disconnected) => break,
            other => panic!("{other:?}"),
        }
        assert!(polls <= 2048, "crash not noticed");
    }
    // Producer side: consumer dropped on a non-persistent ring.
    drop(rx);
    let mut tx = Producer::<u64>::attach(seg.clone()).unwrap();
    for v in 0..4 {
        tx.try_push(v).unwrap();
    }
    assert_eq!(tx.try_push(9), Err(TryPushError::Disconnected(9)));
    drop((tx, seg));
    dir.finish();
}

#[test]
fn wrong_message_type_or_kind_is_a_layout_mismatch() {
    let dir = TestDir::new("types");
    let opts = SegmentOptions::new().dir(&dir.path);
    let seg = Arc::new(
        opts.create(
            "r",
            &shmring::raw::typed_spec::<u64>(&spsc::layout::<u64>(64).unwrap()),
        )
        .unwrap(),
    );
    match Consumer::<u32>::attach(seg.clone()) {
        Err(e @ Error::LayoutMismatch { .. }) => {
            let text = e.to_string();
            assert!(text.contains("u32") && text.contains("8 bytes"), "{text}");
        }
        other => panic!("expected LayoutMismatch, got {:?}", other.map(|_| ())),
    }
    // Same size and alignment, another type: the type id differs.
    assert!(matches!(
        Consumer::<i64>::attach(seg.clone()),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        frames::Consumer::attach(seg.clone()),
        Err(Error::LayoutMismatch { .. })
    ));
    drop(seg);
    dir.finish();
}

#[test]
fn frames_too_large_are_refused_at_reserve_and_wrap_markers_work() {
    let dir = TestDir::new("toolarge");
    let opts = SegmentOptions::new().dir(&dir.path);
    let layout = frames::layout(1024).unwrap();
    let seg = Arc::new(
        opts.create("r", &shmring::raw::bytes_spec(&layout))
            .unwrap(),
    );
    let mut tx = frames::Producer::attach(seg.clone()).unwrap();
    let mut rx = frames::Consumer::attach(seg.clone()).unwrap();
    assert_eq!(tx.max_frame_len(), 504);
    assert_eq!(
        tx.write_chunk(505).err(),
        Some(FramePushError::TooLarge { len: 505, max: 504 })
    );
    // Frames of every size up to the maximum, many laps, in order.
    let mut out = Vec::new();
    for lap in 0..50u64 {
        for len in [0usize, 1, 7, 8, 9, 100, 504, 300, 255] {
            let payload: Vec<u8> = (0..len).map(|i| (i as u64 ^ lap) as u8).collect();
            tx.try_push(&payload).unwrap();
            rx.try_pop(&mut out).unwrap();
            assert_eq!(out, payload);
        }
    }
    assert_eq!(rx.try_pop(&mut out), Err(TryPopError::Empty));
    drop((tx, rx, seg));
    dir.finish();
}
