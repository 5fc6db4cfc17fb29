//! Opening rings through the typed entry points: waiting for a creator that
//! comes later, timing out cleanly, and refusing a ring that is not the one
//! asked for (kind, message type, capacity), naming both sides.

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, TestDir, child_role, env_str, spawn_self};
use shmring::spsc::{Consumer, PopError, Producer};
use shmring::{Error, frames, mpmc};

const N: u64 = 1000;

/// Child: waits a while, then creates the ring and sends 1..=N.
#[test]
fn child_late_creator() {
    let Some(role) = child_role() else { return };
    assert_eq!(role, "late-creator");
    std::thread::sleep(Duration::from_millis(300));
    let mut tx = Producer::<u64>::builder(env_str("RING"))
        .dir(env_str("DIR"))
        .capacity(64)
        .create()
        .expect("create");
    for v in 1..=N {
        tx.push(v).expect("push");
    }
    tx.flush(Duration::from_secs(60)).expect("flush");
}

#[test]
fn open_wait_for_succeeds_when_the_creator_comes_later() {
    let dir = TestDir::new("open-late");
    let name = common::unique("late");
    let mut child = ChildGuard(Some(
        spawn_self(
            "child_late_creator",
            "late-creator",
            &[
                ("DIR", dir.path.display().to_string()),
                ("RING", name.clone()),
            ],
        )
        .spawn()
        .expect("spawn"),
    ));
    // Nothing exists yet: a plain open fails at once...
    let plain = Consumer::<u64>::builder(&name).dir(&dir.path).open();
    assert!(matches!(plain, Err(Error::NotFound { .. })), "{plain:?}");
    // ...and one that waits gets every message once the creator arrives.
    let mut rx = Consumer::<u64>::builder(&name)
        .dir(&dir.path)
        .wait_for(Duration::from_secs(60))
        .open()
        .expect("open with wait_for");
    let mut expect = 1;
    loop {
        match rx.pop_timeout(Some(Duration::from_secs(60))) {
            Ok(v) => {
                assert_eq!(v, expect);
                expect += 1;
            }
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(expect, N + 1, "every message arrived");
    assert!(child.wait_within(Duration::from_secs(60)).success());
    drop(rx);
    dir.finish();
}

#[test]
fn open_wait_for_times_out_cleanly_when_nobody_creates() {
    let dir = TestDir::new("open-timeout");
    let start = Instant::now();
    let r = Consumer::<u64>::builder("never")
        .dir(&dir.path)
        .wait_for(Duration::from_millis(200))
        .open();
    let waited = start.elapsed();
    match r {
        Err(e @ Error::Timeout { .. }) => {
            assert!(e.is_timeout());
            let text = e.to_string();
            assert!(text.contains("never"), "{text}");
            assert!(text.contains("created"), "{text}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    dir.finish();
}

#[test]
fn open_or_create_refuses_a_ring_of_another_capacity_naming_both() {
    let dir = TestDir::new("open-cap");
    let tx = Producer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(8)
        .create()
        .unwrap();
    let err = Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(1024)
        .open_or_create()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{text}");
    assert!(text.contains("8 slots") && text.contains("1024"), "{text}");
    // Without a capacity the existing ring is taken as it is.
    let rx = Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .open_or_create()
        .unwrap();
    assert_eq!(rx.capacity(), 8);
    drop((tx, rx));
    dir.finish();
}

#[test]
fn a_ring_of_another_kind_or_type_is_refused_naming_both() {
    let dir = TestDir::new("open-kind");
    let _f = frames::Producer::builder("f")
        .dir(&dir.path)
        .capacity(4096)
        .create()
        .unwrap();
    let err = Consumer::<u64>::builder("f")
        .dir(&dir.path)
        .open()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{text}");
    assert!(text.contains("frames") && text.contains("spsc"), "{text}");

    let _m = mpmc::Producer::<u32>::builder("m")
        .dir(&dir.path)
        .capacity(16)
        .create()
        .unwrap();
    let err = mpmc::Consumer::<u64>::builder("m")
        .dir(&dir.path)
        .open()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{text}");
    assert!(
        text.contains("\"u32\"") && text.contains("\"u64\""),
        "{text}"
    );
}

#[test]
fn one_expression_per_side_with_shortcuts() {
    let name = common::unique("short");
    let mut tx = Producer::<u64>::open_or_create(&name, 16).unwrap();
    let mut rx = Consumer::<u64>::open(&name).unwrap();
    tx.try_push(5).unwrap();
    assert_eq!(rx.try_pop().unwrap(), 5);
    // Create refuses an existing name.
    assert!(matches!(
        Producer::<u64>::create(&name, 16),
        Err(Error::AlreadyExists { .. })
    ));
    drop((tx, rx));
    assert!(!std::path::Path::new("/dev/shm").join(&name).exists());
}

#[test]
fn anonymous_pairs_are_connected_and_leave_nothing() {
    let (mut tx, mut rx) = shmring::spsc::anonymous::<u64>(8).unwrap();
    tx.push_slice(&[1, 2, 3]).unwrap();
    let mut out = [0u64; 3];
    assert_eq!(rx.pop_into(&mut out).unwrap(), 3);
    assert_eq!(out, [1, 2, 3]);
    let (mut ftx, mut frx) = frames::anonymous(4096).unwrap();
    ftx.try_push(b"hello").unwrap();
    let mut buf = Vec::new();
    frx.try_pop(&mut buf).unwrap();
    assert_eq!(buf, b"hello");
    let (mut mtx, mut mrx) = mpmc::anonymous::<u64>(8).unwrap();
    mtx.try_push(9).unwrap();
    assert_eq!(mrx.try_pop().unwrap(), 9);
}

#[test]
fn queue_errors_convert_into_the_crate_error() {
    fn pop_one(rx: &mut Consumer<u64>) -> Result<u64, Error> {
        Ok(rx.try_pop()?)
    }
    fn push_one(tx: &mut Producer<u64>, v: u64) -> Result<(), Error> {
        tx.try_push(v)?;
        Ok(())
    }
    let (mut tx, mut rx) = shmring::spsc::anonymous::<u64>(2).unwrap();
    assert!(matches!(pop_one(&mut rx), Err(Error::Empty)));
    push_one(&mut tx, 1).unwrap();
    push_one(&mut tx, 2).unwrap();
    assert!(matches!(push_one(&mut tx, 3), Err(Error::Full)));
    assert_eq!(pop_one(&mut rx).unwrap(), 1);
    assert!(format!("{tx:?}").contains("Producer"));
    assert!(format!("{rx:?}").contains("Consumer"));
}
