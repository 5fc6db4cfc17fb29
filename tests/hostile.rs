//! A hostile peer scribbles over shared state while a victim process uses the
//! ring. The victim must end with `Corrupted`, `Disconnected` or its own
//! timeout: never a crash (signal), a panic, or a hang past its bound.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use shmring::frames::{self, FramePushError};
use shmring::mpmc;
use shmring::spsc::{self, Consumer, PopError, Producer, PushError, TryPopError, TryPushError};
use shmring::{Layout, SegmentOptions};

/// How long a victim waits for the ring its parent creates.
const OPEN_WAIT: Duration = Duration::from_secs(20);

/// How long a victim runs before it reports "timeout" (its own bound).
const VICTIM_SECS: u64 = 1;

#[test]
fn victim_child() {
    let Some(role) = child_role() else { return };
    let dir = env_str("H_DIR");
    let name = env_str("H_NAME");
    let deadline = Instant::now() + Duration::from_secs(VICTIM_SECS);
    let mut out = Vec::new();
    let mut got = 0u64;
    let mut skipped = 0u64;
    // Rotates through the operations, blocking ones (short timeouts, so
    // the waiter counts and wait lines are in play) among them.
    let mut op = 0u64;
    let wait = Some(Duration::from_millis(20));
    let verdict: String = loop {
        if Instant::now() >= deadline {
            break "timeout".into();
        }
        op += 1;
        match role.as_str() {
            "typed-consumer" => {
                thread_local! { static RX: std::cell::RefCell<Option<Consumer<u64>>> = const { std::cell::RefCell::new(None) }; }
                let r = RX.with(|rx| {
                    let mut rx = rx.borrow_mut();
                    let rx = rx.get_or_insert_with(|| {
                        let c = Consumer::<u64>::builder(&name)
                            .dir(&dir)
                            .wait_for(OPEN_WAIT)
                            .open()
                            .unwrap();
                        println!("ready");
                        c
                    });
                    let mut buf = [0u64; 7];
                    match op % 4 {
                        0 => rx.try_pop().map(|_| 1),
                        1 => rx.pop_into(&mut buf),
                        2 => rx.pop_timeout(wait).map(|_| 1).map_err(pop_err),
                        _ => rx.read_chunk(5).map(|c| {
                            let n = c.as_slice().iter().count();
                            c.release(n);
                            n
                        }),
                    }
                });
                match r {
                    Ok(n) => got += n as u64,
                    Err(TryPopError::Empty) => std::thread::yield_now(),
                    Err(TryPopError::Disconnected) => break "disconnected".into(),
                    Err(TryPopError::Corrupted(w)) => break format!("corrupted: {w}"),
                }
            }
            "frame-consumer" => {
                thread_local! { static RX: std::cell::RefCell<Option<frames::Consumer>> = const { std::cell::RefCell::new(None) }; }
                let r = RX.with(|rx| {
                    let mut rx = rx.borrow_mut();
                    let rx = rx.get_or_insert_with(|| {
                        let c = frames::Consumer::builder(&name)
                            .dir(&dir)
                            .wait_for(OPEN_WAIT)
                            .open()
                            .unwrap();
                        println!("ready");
                        c
                    });
                    if op.is_multiple_of(2) {
                        rx.try_pop(&mut out)
                    } else {
                        rx.read_chunk_timeout(wait)
                            .map(|f| f.release())
                            .map_err(pop_err)
                    }
                });
                match r {
                    Ok(()) => got += 1,
                    Err(TryPopError::Empty) => std::thread::yield_now(),
                    Err(TryPopError::Disconnected) => break "disconnected".into(),
                    Err(TryPopError::Corrupted(w)) => break format!("corrupted: {w}"),
                }
            }
            "frame-producer" => {
                thread_local! { static TX: std::cell::RefCell<Option<frames::Producer>> = const { std::cell::RefCell::new(None) }; }
                let r = TX.with(|tx| {
                    let mut tx = tx.borrow_mut();
                    let tx = tx.get_or_insert_with(|| {
                        let p = frames::Producer::builder(&name)
                            .dir(&dir)
                            .wait_for(OPEN_WAIT)
                            .open()
                            .unwrap();
                        println!("ready");
                        p
                    });
                    if op.is_multiple_of(2) {
                        tx.try_push(&[7u8; 100])
                    } else {
                        tx.push_timeout(&[7u8; 100], wait)
                    }
                });
                match r {
                    Ok(()) => got += 1,
                    Err(FramePushError::Full | FramePushError::Timeout) => std::thread::yield_now(),
                    Err(FramePushError::Disconnected) => break "disconnected".into(),
                    Err(FramePushError::Corrupted(w)) => break format!("corrupted: {w}"),
                    Err(e) => panic!("{e}"),
                }
            }
            "typed-producer" => {
                thread_local! { static TX: std::cell::RefCell<Option<Producer<u64>>> = const { std::cell::RefCell::new(None) }; }
                let r = TX.with(|tx| {
                    let mut tx = tx.borrow_mut();
                    let tx = tx.get_or_insert_with(|| {
                        let p = Producer::<u64>::builder(&name)
                            .dir(&dir)
                            .wait_for(OPEN_WAIT)
                            .open()
                            .unwrap();
                        println!("ready");
                        p
                    });
                    match op % 3 {
                        0 => tx.try_push(got).map(|()| 1).map_err(try_push_err),
                        1 => tx.push_timeout(got, wait).map(|()| 1).map_err(push_err),
                        _ => tx.push_slice(&[1, 2, 3]),
                    }
                });
                match r {
                    Ok(n) => got += n as u64,
                    Err(TryPushError::Full(())) => std::thread::yield_now(),
                    Err(TryPushError::Disconnected(())) => break "disconnected".into(),
                    Err(TryPushError::Corrupted((), w)) => break format!("corrupted: {w}"),
                }
            }
            "mpmc-consumer" => {
                thread_local! { static RX: std::cell::RefCell<Option<mpmc::Consumer<u64>>> = const { std::cell::RefCell::new(None) }; }
                let r = RX.with(|rx| {
                    let mut rx = rx.borrow_mut();
                    let rx = rx.get_or_insert_with(|| {
                        let c = mpmc::Consumer::<u64>::builder(&name)
                            .dir(&dir)
                            .wait_for(OPEN_WAIT)
                            .open()
                            .unwrap();
                        println!("ready");
                        c
                    });
                    let mut buf = [0u64; 7];
                    let r = match op % 4 {
                        0 => rx.try_pop().map(|_| 1),
                        1 => rx.pop_into(&mut buf),
                        2 => rx.pop_timeout(wait).map(|_| 1).map_err(pop_err),
                        _ => rx.read_chunk().map(|s| usize::from(*s.get() != u64::MAX)),
                    };
                    (r, rx.stats().skipped)
                });
                skipped = r.1;
                match r.0 {
                    Ok(n) => got += n as u64,
                    Err(TryPopError::Empty) => std::thread::yield_now(),
                    Err(TryPopError::Disconnected) => break "disconnected".into(),
                    Err(TryPopError::Corrupted(w)) => break format!("corrupted: {w}"),
                }
            }
            "mpmc-producer" => {
                thread_local! { static TX: std::cell::RefCell<Option<mpmc::Producer<u64>>> = const { std::cell::RefCell::new(None) }; }
                let r = TX.with(|tx| {
                    let mut tx = tx.borrow_mut();
                    let tx = tx.get_or_insert_with(|| {
                        let p = mpmc::Producer::<u64>::builder(&name)
                            .dir(&dir)
                            .wait_for(OPEN_WAIT)
                            .open()
                            .unwrap();
                        println!("ready");
                        p
                    });
                    match op % 3 {
                        0 => tx.try_push(got).map(|()| 1).map_err(try_push_err),
                        1 => tx.push_timeout(got, wait).map(|()| 1).map_err(push_err),
                        _ => tx.push_slice(&[1, 2, 3]),
                    }
                });
                match r {
                    Ok(n) => got += n as u64,
                    Err(TryPushError::Full(())) => std::thread::yield_now(),
                    Err(TryPushError::Disconnected(())) => break "disconnected".into(),
                    Err(TryPushError::Corrupted((), w)) => break format!("corrupted: {w}"),
                }
            }
            other => panic!("unknown role {other}"),
        }
    };
    println!("verdict {verdict} after {got} (skipped {skipped})");
    std::process::exit(0);
}

/// A blocking pop's error as a non-blocking one (a timeout is "empty").
fn pop_err(e: PopError) -> TryPopError {
    match e {
        PopError::Timeout => TryPopError::Empty,
        PopError::Disconnected => TryPopError::Disconnected,
        PopError::Corrupted(w) => TryPopError::Corrupted(w),
    }
}

/// A blocking push's error, without its value (a timeout is "full").
fn push_err<T>(e: PushError<T>) -> TryPushError<()> {
    match e {
        PushError::Timeout(_) => TryPushError::Full(()),
        PushError::Disconnected(_) => TryPushError::Disconnected(()),
        PushError::Corrupted(_, w) => TryPushError::Corrupted((), w),
    }
}

fn try_push_err<T>(e: TryPushError<T>) -> TryPushError<()> {
    match e {
        TryPushError::Full(_) => TryPushError::Full(()),
        TryPushError::Disconnected(_) => TryPushError::Disconnected(()),
        TryPushError::Corrupted(_, w) => TryPushError::Corrupted((), w),
    }
}

/// The words a hostile peer writes to, as (description, offset).
fn targets(l: &Layout) -> Vec<(String, u64)> {
    if l.kind() == shmring::Kind::Mpmc {
        let claims = l.control_offset() + 5 * 128;
        let mut t = vec![
            ("enqueue position".to_string(), l.control_offset()),
            ("dequeue position".to_string(), l.control_offset() + 128),
            ("skipped counter".to_string(), l.control_offset() + 4 * 128),
            ("producer 0 claim".to_string(), claims),
            ("producer 0 claim length".to_string(), claims + 8),
            (
                "consumer 0 claim".to_string(),
                claims + u64::from(l.max_producers()) * 128,
            ),
            ("producer role record".to_string(), l.roles_offset()),
            ("header capacity".to_string(), 32),
        ];
        t.extend(wait_targets(l));
        for i in [0, 1, l.capacity() / 2, l.capacity() - 1] {
            let slot = l.data_offset() + i * l.slot_stride();
            t.push((format!("slot {i} sequence"), slot));
            t.push((format!("slot {i} message"), slot + 8));
        }
        return t;
    }
    let mut t = vec![
        ("tail".to_string(), l.control_offset()),
        ("frames produced".to_string(), l.control_offset() + 8),
        ("head".to_string(), l.control_offset() + 128),
        ("frames consumed".to_string(), l.control_offset() + 136),
        ("producer role record".to_string(), l.roles_offset()),
        ("consumer role record".to_string(), l.roles_offset() + 64),
        ("header magic".to_string(), 0),
        ("header capacity".to_string(), 32),
        ("header live state".to_string(), 256),
    ];
    t.extend(wait_targets(l));
    for i in 0..4 {
        let off = l.data_offset() + (l.data_size() / 4) * i;
        t.push((format!("data word {i}"), off & !7));
    }
    t
}

/// The waiting words, at the same offsets in every kind: the waiter
/// counts on the two index lines, and the two wait lines (futex word and
/// counters).
fn wait_targets(l: &Layout) -> Vec<(String, u64)> {
    let c = l.control_offset();
    vec![
        ("data waiter count".to_string(), c + 16),
        ("space waiter count".to_string(), c + 128 + 16),
        ("data futex word".to_string(), c + 2 * 128),
        ("data wake counters".to_string(), c + 2 * 128 + 8),
        ("space futex word".to_string(), c + 3 * 128),
    ]
}

fn values(current: u64) -> [u64; 5] {
    [
        rand::random(),
        u64::MAX,
        0,
        current.wrapping_sub(1000),
        current.wrapping_add(rand::random_range(1..1_000_000)),
    ]
}

/// Runs `victim` against a ring while this process plays `peer` and
/// scribbles `value_index` values into `target`.
fn attack(kind: &str, victim: &str, target_index: usize, value_index: usize) -> String {
    let dir = TestDir::new("hostile");
    let layout = layout_of(kind);
    // The low-level path: this process maps the object itself to scribble
    // on it, and needs its offsets.
    let spec = match kind {
        "typed" | "mpmc" => shmring::raw::typed_spec::<u64>(&layout),
        _ => shmring::raw::bytes_spec(&layout),
    };
    let seg = Arc::new(
        SegmentOptions::new()
            .dir(&dir.path)
            .create("r", &spec)
            .unwrap(),
    );
    let mut child = ChildGuard(Some(
        spawn_self(
            "victim_child",
            victim,
            &[
                ("H_DIR", dir.path.display().to_string()),
                ("H_NAME", "r".to_string()),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap(),
    ));
    let stdout = child.child().stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    {
        use std::io::BufRead;
        let mut line = String::new();
        while !line.starts_with("ready") {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "victim died early"
            );
        }
    }
    // Our own side of the ring, running beside the scribbling.
    enum Peer {
        Typed(Producer<u64>),
        TypedRx(Consumer<u64>),
        Frames(frames::Producer),
        FrameRx(frames::Consumer),
        MpmcTx(mpmc::Producer<u64>),
        MpmcRx(mpmc::Consumer<u64>),
    }
    let mut peer = match victim {
        "typed-consumer" => Peer::Typed(Producer::attach(seg.clone()).unwrap()),
        "typed-producer" => Peer::TypedRx(Consumer::attach(seg.clone()).unwrap()),
        "frame-consumer" => Peer::Frames(frames::Producer::attach(seg.clone()).unwrap()),
        "mpmc-consumer" => Peer::MpmcTx(mpmc::Producer::attach(seg.clone()).unwrap()),
        "mpmc-producer" => Peer::MpmcRx(mpmc::Consumer::attach(seg.clone()).unwrap()),
        _ => Peer::FrameRx(frames::Consumer::attach(seg.clone()).unwrap()),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.file("r"))
        .unwrap();
    // SAFETY (test): the hostile peer writes only through atomics to
    // 8-aligned offsets inside the file.
    let map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
    let (what, offset) = targets(&layout)[target_index].clone();
    // SAFETY (test): offset is 8-aligned and inside the mapping.
    let word = unsafe { &*map.as_ptr().add(offset as usize).cast::<AtomicU64>() };
    let start = Instant::now();
    let mut n = 0u64;
    let mut buf = Vec::new();
    while child.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(VICTIM_SECS + 20),
            "victim hung ({what})"
        );
        // Keep traffic flowing (our own errors are fine: we are the hostile one).
        match &mut peer {
            Peer::Typed(tx) => {
                let _ = tx.try_push(n);
            }
            Peer::TypedRx(rx) => {
                let _ = rx.try_pop();
            }
            Peer::Frames(tx) => {
                let _ = tx.try_push(&n.to_le_bytes());
            }
            Peer::FrameRx(rx) => {
                let _ = rx.try_pop(&mut buf);
            }
            Peer::MpmcTx(tx) => {
                let _ = tx.try_push(n);
            }
            Peer::MpmcRx(rx) => {
                let _ = rx.try_pop();
            }
        }
        n += 1;
        if n.is_multiple_of(64) {
            let v = values(word.load(Ordering::Relaxed))[value_index];
            word.store(v, Ordering::Relaxed);
        }
        if n.is_multiple_of(1024) {
            std::thread::yield_now();
        }
    }
    let status = child.wait_within(Duration::from_secs(5));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(
        status.success(),
        "victim {victim} crashed ({status:?}) while {what} was scribbled: {rest}"
    );
    assert!(rest.contains("verdict"), "no verdict: {rest}");
    drop(peer);
    drop(map);
    drop(seg);
    dir.finish();
    format!("{victim} / {what} / value {value_index}: {}", rest.trim())
}

fn layout_of(kind: &str) -> Layout {
    match kind {
        "typed" => spsc::layout::<u64>(64).unwrap(),
        "mpmc" => mpmc::layout_with_roles::<u64>(64, 4, 4).unwrap(),
        _ => frames::layout(4096).unwrap(),
    }
}

fn run_all(kind: &str, victim: &str) {
    let layout = layout_of(kind);
    let mut corrupted = 0;
    // Every target once, each with one kind of value, rotating so that
    // every kind (random, all-ones, zero, stale, ahead) hits the indices.
    let kinds = values(0).len();
    for t in 0..targets(&layout).len() {
        for v in [t % kinds, (t + 2) % kinds] {
            let line = attack(kind, victim, t, v);
            if line.contains("corrupted") {
                corrupted += 1;
            }
            eprintln!("{line}");
        }
    }
    // Scribbling the indices must be caught at least sometimes.
    assert!(corrupted > 0, "no attack was ever reported as corruption");
}

#[test]
fn hostile_peer_vs_typed_consumer() {
    if child_role().is_some() {
        return;
    }
    run_all("typed", "typed-consumer");
}

#[test]
fn hostile_peer_vs_frame_consumer() {
    if child_role().is_some() {
        return;
    }
    run_all("frames", "frame-consumer");
}

#[test]
fn hostile_peer_vs_frame_producer() {
    if child_role().is_some() {
        return;
    }
    run_all("frames", "frame-producer");
}

#[test]
fn hostile_peer_vs_typed_producer() {
    if child_role().is_some() {
        return;
    }
    run_all("typed", "typed-producer");
}

#[test]
fn hostile_peer_vs_mpmc_consumer() {
    if child_role().is_some() {
        return;
    }
    run_all("mpmc", "mpmc-consumer");
}

#[test]
fn hostile_peer_vs_mpmc_producer() {
    if child_role().is_some() {
        return;
    }
    run_all("mpmc", "mpmc-producer");
}
