//! Regressions found by fuzzing (`fuzz/`, target `attach_consume`).

use super::raw::RawMpmc;
use super::*;
use crate::SegmentOptions;
use crate::ring::{TryPopError, TryPushError};

/// A ring in a private directory, removed with the directory.
fn ring(tag: &str) -> (crate::segment::TestDir, Arc<Segment>) {
    let dir = crate::segment::TestDir::new(&format!("mpmc-{tag}"));
    let seg = SegmentOptions::new()
        .dir(&dir.0)
        .create(
            "r",
            &crate::raw::typed_spec::<u64>(&layout_with_roles::<u64>(16, 2, 2).unwrap()),
        )
        .unwrap();
    (dir, Arc::new(seg))
}

/// A ring view refuses a layout whose slots exceed the data area or
/// whose roles' claim lines exceed the control area.
#[test]
fn a_forged_layout_is_refused() {
    let (_dir, seg) = ring("forged");
    let mut seg = Arc::into_inner(seg).unwrap();
    let good = *seg.layout();
    assert!(RawMpmc::new(&seg).is_ok());
    let mut forged = good;
    forged.capacity = 1 << 20;
    seg.forge_layout_for_test(forged);
    assert!(matches!(RawMpmc::new(&seg), Err(Error::Corrupted { .. })));
    let mut forged = good;
    forged.max_consumers = 1 << 20;
    seg.forge_layout_for_test(forged);
    assert!(matches!(RawMpmc::new(&seg), Err(Error::Corrupted { .. })));
}

#[test]
fn positions_scribbled_near_the_top_are_corrupted_not_an_overflow() {
    for (which, top) in [("dequeue", u64::MAX), ("enqueue", POS - 1)] {
        let (dir, seg) = ring(which);
        let mut tx = Producer::<u64>::attach(seg.clone()).unwrap();
        let mut rx = Consumer::<u64>::attach(seg.clone()).unwrap();
        tx.try_push(7).unwrap();
        let raw = RawMpmc::new(&seg).unwrap();
        let word = if which == "dequeue" {
            raw.head()
        } else {
            raw.tail()
        };
        word.store(top, Ordering::Relaxed);
        let what = if which == "dequeue" {
            match rx.try_pop() {
                Err(TryPopError::Corrupted(w)) => w,
                other => panic!("pop after a scribbled head: {other:?}"),
            }
        } else {
            match tx.try_push(8) {
                Err(TryPushError::Corrupted(_, w)) => w,
                other => panic!("push after a scribbled tail: {other:?}"),
            }
        };
        assert!(
            what.contains(&format!("{which} position")) && what.contains("beyond"),
            "{what}"
        );
        drop((tx, rx, raw, seg, dir));
    }
}

/// A claim record a hostile peer wrote into a free consumer role (a count
/// over the capacity, or positions nobody claimed) is not taken over: the
/// new holder clears it and the ring works.
#[test]
fn a_forged_claim_record_is_not_taken_over() {
    for (pos, len) in [(1u64, 1u64 << 40), (5, 3), (u64::MAX, 1)] {
        let (dir, seg) = ring("forged-claim");
        let mut tx = Producer::<u64>::attach(seg.clone()).unwrap();
        let raw = RawMpmc::new(&seg).unwrap();
        let consumer_role = raw.producers;
        let line = raw.claim_line(consumer_role).unwrap();
        line.len.store(len, Ordering::Relaxed);
        line.pos.store(pos, Ordering::Relaxed);
        tx.try_push(7).unwrap();
        let mut rx = Consumer::<u64>::attach(seg.clone()).unwrap();
        assert_eq!(rx.try_pop().unwrap(), 7, "record ({pos}, {len})");
        assert!(matches!(rx.try_pop(), Err(TryPopError::Empty)));
        assert_eq!(line.pos.load(Ordering::Relaxed), 0);
        drop((tx, rx, raw, seg, dir));
    }
}

/// A byte message put back comes again, with the receipt written for it;
/// a consumer that takes over the role of one that left it claimed gets it
/// first, with the receipt, and then the rest in order.
#[test]
fn put_back_and_take_over_keep_the_message_and_its_receipt() {
    let dir = crate::segment::TestDir::new("mpmc-bytes-receipt");
    let seg = Arc::new(
        SegmentOptions::new()
            .dir(&dir.0)
            .create(
                "r",
                &crate::raw::bytes_spec(&Layout::with_roles(Kind::Mpmc, 8, 32, 8, 1, 1).unwrap()),
            )
            .unwrap(),
    );
    initialize(&seg).unwrap();
    let mut tx = BytesProducer::attach(seg.clone()).unwrap();
    for m in [&b"one"[..], b"two", b"three"] {
        tx.push_timeout(m, None).unwrap();
    }
    let mut rx = BytesConsumer::attach(seg.clone()).unwrap();
    let mut msg = rx.read_chunk_timeout(None).unwrap();
    assert_eq!(&*msg, b"one");
    assert_eq!(msg.receipt(), None);
    msg.set_receipt([1, 2, 3, 4]);
    msg.put_back();
    let msg = rx.read_chunk_timeout(None).unwrap();
    assert_eq!((&*msg, msg.receipt()), (&b"one"[..], Some([1, 2, 3, 4])));
    msg.release();
    // "two" claimed, its receipt written, then the consumer goes away
    // without releasing it (as a killed process would).
    let mut msg = rx.read_chunk_timeout(None).unwrap();
    msg.set_receipt([5, 6, 7, 8]);
    std::mem::forget(msg);
    drop(rx);
    let mut rx = BytesConsumer::attach(seg.clone()).unwrap();
    let msg = rx.read_chunk_timeout(None).unwrap();
    assert_eq!((&*msg, msg.receipt()), (&b"two"[..], Some([5, 6, 7, 8])));
    drop(msg);
    let mut out = Vec::new();
    rx.pop_timeout(&mut out, None).unwrap();
    assert_eq!(out, b"three");
    assert_eq!(RawMpmc::new(&seg).unwrap().counts(), (0, 0));
    drop((tx, rx, seg));
    drop(dir);
}
