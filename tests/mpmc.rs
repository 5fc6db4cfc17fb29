//! MPMC rings across processes: many producers and consumers, and a
//! consumer that dies holding a message.

mod common;

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use shmring::SegmentOptions;
use shmring::mpmc::{self, Consumer, Producer, TryPopError, TryPushError};

/// How long a child waits for the ring its parent creates.
const OPEN_WAIT: Duration = Duration::from_secs(20);

/// Messages carry their producer's tag in the top bits.
const TAG_SHIFT: u32 = 40;

#[test]
fn mpmc_child() {
    let Some(role) = child_role() else { return };
    let dir = env_str("M_DIR");
    let name = env_str("M_NAME");
    match role.as_str() {
        // Pushes TAG<<40 | 0..COUNT after a "go" line on stdin.
        "producer" => {
            let tag: u64 = env_str("M_TAG").parse().unwrap();
            let count: u64 = env_str("M_COUNT").parse().unwrap();
            let mut tx = Producer::<u64>::builder(&name)
                .dir(&dir)
                .wait_for(OPEN_WAIT)
                .open()
                .unwrap();
            println!("ready");
            let mut go = String::new();
            std::io::stdin().lock().read_line(&mut go).unwrap();
            for seq in 0..count {
                tx.push((tag << TAG_SHIFT) | seq).unwrap();
            }
        }
        // Pops until Disconnected, checking per-producer order, and writes
        // everything it got to M_OUT.
        "consumer" => drain_mpmc_to_file(&dir, &name, &env_str("M_OUT"), TAG_SHIFT),
        // Takes one message in place and holds it until killed.
        "holder" => {
            let mut rx = Consumer::<u64>::builder(&name)
                .dir(&dir)
                .wait_for(OPEN_WAIT)
                .open()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match rx.read_chunk() {
                    Ok(slot) => {
                        println!("holding {}", slot.get());
                        std::mem::forget(slot);
                        break;
                    }
                    Err(TryPopError::Empty) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    Err(e) => panic!("holder: {e}"),
                }
            }
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn spawn(role: &str, dir: &TestDir, extra: &[(&str, String)]) -> ChildGuard {
    let mut env = vec![
        ("M_DIR", dir.path.display().to_string()),
        ("M_NAME", "r".to_string()),
    ];
    env.extend(extra.iter().cloned());
    ChildGuard(Some(
        spawn_self("mpmc_child", role, &env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

#[test]
fn in_process_round_trip_across_the_wrap() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("mpmc-inproc");
    // One segment shared by several handles (and a handle of the wrong
    // kind): the low-level path.
    let layout = mpmc::layout_with_roles::<u64>(4, 2, 2).unwrap();
    let seg = Arc::new(
        SegmentOptions::new()
            .dir(&dir.path)
            .create("r", &shmring::raw::typed_spec::<u64>(&layout))
            .unwrap(),
    );
    let mut tx = Producer::<u64>::attach(seg.clone()).unwrap();
    let mut rx = Consumer::<u64>::attach(seg.clone()).unwrap();
    for round in 0..10u64 {
        for i in 0..4 {
            tx.try_push(round * 10 + i).unwrap();
        }
        assert!(matches!(tx.try_push(99), Err(TryPushError::Full(99))));
        for i in 0..4 {
            assert_eq!(rx.try_pop(), Ok(round * 10 + i));
        }
        assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    }
    // Batches: one claim each.
    assert_eq!(tx.push_slice(&[1, 2, 3, 4, 5]), Ok(4));
    let mut out = [0u64; 8];
    assert_eq!(rx.pop_into(&mut out), Ok(4));
    assert_eq!(&out[..4], &[1, 2, 3, 4]);
    // An uncommitted grant is published as a skip, never delivered.
    let mut slot = tx.write_chunk().unwrap();
    *slot.value_mut() = 77;
    drop(slot);
    tx.try_push(78).unwrap();
    assert_eq!(rx.try_pop(), Ok(78));
    assert_eq!(rx.stats().skipped, 1);
    // The role limit is enforced.
    let tx2 = Producer::<u64>::attach(seg.clone()).unwrap();
    assert!(matches!(
        Producer::<u64>::attach(seg.clone()),
        Err(shmring::Error::RoleTaken { .. })
    ));
    assert!(matches!(
        shmring::spsc::Producer::<u64>::attach(seg.clone()),
        Err(shmring::Error::LayoutMismatch { .. })
    ));
    drop((tx, tx2));
    assert_eq!(rx.try_pop(), Err(TryPopError::Disconnected));
    drop((rx, seg));
    dir.finish();
}

#[test]
fn four_producers_four_consumers_a_million_each_through_64_slots() {
    if child_role().is_some() {
        return;
    }
    const PRODUCERS: u64 = 4;
    const CONSUMERS: usize = 4;
    const COUNT: u64 = 1_000_000;
    let dir = TestDir::new("mpmc-4x4");
    let files = TestDir::new("mpmc-4x4-out");
    // The ring must outlive every child's attach, but this process holds
    // no role in it: an extra producer would keep the consumers from ever
    // seeing "every producer gone", and an extra role of either side would
    // change the 4 + 4 shape. So create it through a consumer handle, keep
    // its segment, and let the handle (and its role) go at once.
    let seg = Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .producers(4)
        .consumers(4)
        .create()
        .unwrap()
        .segment()
        .clone();
    let started = Instant::now();
    let mut consumers: Vec<ChildGuard> = (0..CONSUMERS)
        .map(|i| {
            let out = files.file(&format!("c{i}")).display().to_string();
            let mut c = spawn("consumer", &dir, &[("M_OUT", out)]);
            read_line_starting(c.child().stdout.take().unwrap(), "ready");
            c
        })
        .collect();
    // Every producer attaches before any starts, so the consumers never see
    // "all producers gone" until the end.
    let mut producers: Vec<ChildGuard> = (0..PRODUCERS)
        .map(|tag| {
            let mut p = spawn(
                "producer",
                &dir,
                &[("M_TAG", tag.to_string()), ("M_COUNT", COUNT.to_string())],
            );
            read_line_starting(p.child().stdout.take().unwrap(), "ready");
            p
        })
        .collect();
    for p in &mut producers {
        p.child().stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    for p in &mut producers {
        assert!(p.wait_within(Duration::from_secs(300)).success());
    }
    for c in &mut consumers {
        assert!(c.wait_within(Duration::from_secs(60)).success());
    }
    let elapsed = started.elapsed();
    let mut seen: Vec<Vec<bool>> = vec![vec![false; COUNT as usize]; PRODUCERS as usize];
    let mut per_consumer = Vec::new();
    for i in 0..CONSUMERS {
        let bytes = std::fs::read(files.file(&format!("c{i}"))).unwrap();
        per_consumer.push(bytes.len() / 8);
        for w in bytes.chunks_exact(8) {
            let v = u64::from_le_bytes(w.try_into().unwrap());
            let (tag, seq) = ((v >> TAG_SHIFT) as usize, v & ((1 << TAG_SHIFT) - 1));
            assert!(
                tag < PRODUCERS as usize && seq < COUNT,
                "bogus message {v:#x}"
            );
            assert!(!seen[tag][seq as usize], "duplicate {tag}/{seq}");
            seen[tag][seq as usize] = true;
        }
    }
    for (tag, s) in seen.iter().enumerate() {
        let missing = s.iter().filter(|&&b| !b).count();
        assert_eq!(missing, 0, "producer {tag}: {missing} messages lost");
    }
    eprintln!(
        "4x4 processes, {} messages through 64 slots in {elapsed:.2?} ({:.1} M/s); per consumer {per_consumer:?}",
        PRODUCERS * COUNT,
        (PRODUCERS * COUNT) as f64 / elapsed.as_secs_f64() / 1e6
    );
    drop(seg);
    dir.finish();
    for i in 0..CONSUMERS {
        std::fs::remove_file(files.file(&format!("c{i}"))).unwrap();
    }
    files.finish();
}

/// Creates ring `r` (capacity 4, 2 roles each) with 42 in it, and a child
/// consumer holding 42 when it is killed. `first` attaches before the
/// child, so the child takes the second consumer role.
fn killed_holder(dir: &TestDir, first: bool) -> (Producer<u64>, Option<Consumer<u64>>) {
    let mut tx = Producer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(4)
        .producers(2)
        .consumers(2)
        .create()
        .unwrap();
    let rx = first.then(|| Consumer::<u64>::builder("r").dir(&dir.path).open().unwrap());
    tx.push(42).unwrap();
    let mut holder = spawn("holder", dir, &[]);
    let line = read_line_starting(holder.child().stdout.take().unwrap(), "holding");
    assert_eq!(line.trim(), "holding 42");
    holder.kill9();
    (tx, rx)
}

/// Pushes 100..110 around whatever the ring holds, popping with `rx`
/// whenever it is full; returns everything popped.
fn fill_around(tx: &mut Producer<u64>, rx: &mut Consumer<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    let mut next = 100u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while next < 110 {
        assert!(Instant::now() < deadline, "stalled; got {got:?}");
        match tx.try_push(next) {
            Ok(()) => next += 1,
            Err(TryPushError::Full(_)) => {
                if let Ok(v) = rx.try_pop() {
                    got.push(v);
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    while let Ok(v) = rx.try_pop() {
        got.push(v);
    }
    got
}

#[test]
fn a_message_held_by_a_killed_consumer_goes_first_to_the_next_holder_of_its_role() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("mpmc-adopt");
    let (mut tx, _) = killed_holder(&dir, false);
    // The holder's role is the first free one: this consumer takes it
    // over, with the claim on 42.
    let mut rx = Consumer::<u64>::builder("r").dir(&dir.path).open().unwrap();
    let got = fill_around(&mut tx, &mut rx);
    let expected: Vec<u64> = std::iter::once(42).chain(100..110).collect();
    assert_eq!(
        got, expected,
        "the held message first, then the rest in order"
    );
    let stats = rx.stats();
    assert_eq!((stats.redelivered, stats.skipped), (0, 0));
    drop((tx, rx));
    dir.finish();
}

#[test]
fn a_message_held_by_a_killed_consumer_is_redelivered_once_when_nobody_takes_its_role() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("mpmc-redeliver");
    let (mut tx, rx) = killed_holder(&dir, true);
    let mut rx = rx.unwrap();
    // The producer that reaches the held slot puts 42 back once the slot
    // stayed stuck for the grace period.
    let got = fill_around(&mut tx, &mut rx);
    assert_eq!(
        got.iter().filter(|&&v| v == 42).count(),
        1,
        "held message not redelivered exactly once: {got:?}"
    );
    let mut rest: Vec<u64> = got.iter().copied().filter(|&v| v != 42).collect();
    rest.sort_unstable();
    assert_eq!(rest, (100..110).collect::<Vec<_>>());
    let stats = rx.stats();
    assert_eq!((stats.redelivered, stats.skipped), (1, 0));
    eprintln!("redelivered after the holder's kill: {got:?}");
    drop((tx, rx));
    dir.finish();
}
