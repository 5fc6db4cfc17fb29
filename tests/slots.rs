//! Whole-slot byte handles on typed rings (`spsc::SlotProducer` and
//! `SlotConsumer`, `attach_any` of the MPMC and broadcast byte handles):
//! the bytes of one value go in, the typed peer gets that value, and the
//! other way round; a message of another length than the type's is refused,
//! never written; a ring of another kind is refused at attach.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use shmring::broadcast::{BytesPublisher, BytesSubscriber, Publisher, Start, Subscriber};
use shmring::frames::FramePushError;
use shmring::mpmc::{BytesConsumer, BytesProducer};
use shmring::spsc::{SlotConsumer, SlotProducer};
use shmring::{Error, Segment, mpmc, spsc};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn values() -> [u64; 3] {
    [1, 0x0102_0304_0506_0708, u64::MAX - 5]
}

#[test]
fn spsc_slot_handles_carry_the_bytes_of_typed_values() {
    let dir = TestDir::new("slots-spsc");
    let mut typed_tx = spsc::Producer::<u64>::builder("a")
        .dir(&dir.path)
        .capacity(4)
        .create()
        .unwrap();
    let seg_a: Arc<Segment> = typed_tx.segment().clone();
    let mut typed_rx = spsc::Consumer::<u64>::builder("b")
        .dir(&dir.path)
        .capacity(4)
        .create()
        .unwrap();
    let seg_b = typed_rx.segment().clone();

    // Typed producer -> slot consumer.
    let mut rx = SlotConsumer::attach(seg_a).unwrap();
    assert_eq!(rx.message_size(), 8);
    let mut buf = Vec::new();
    for v in values() {
        typed_tx.push(v).unwrap();
        rx.pop_into_timeout(&mut buf, WAIT).unwrap();
        assert_eq!(buf, v.to_ne_bytes());
    }
    // A forwarded message stays in the ring until `forward` returns.
    typed_tx.push(9).unwrap();
    let seen = rx
        .pop_forward_timeout(&mut buf, WAIT, |msg| (msg.to_vec(), typed_tx.len()))
        .unwrap();
    assert_eq!(seen, (9u64.to_ne_bytes().to_vec(), 1));
    assert_eq!(typed_tx.len(), 0);
    assert!(matches!(
        rx.pop_into_timeout(&mut buf, Some(Duration::from_millis(20))),
        Err(spsc::PopError::Timeout)
    ));
    assert!(buf.is_empty());

    // Slot producer -> typed consumer; wrong lengths are refused and
    // write nothing.
    let mut tx = SlotProducer::attach(seg_b).unwrap();
    assert_eq!(
        tx.try_push(&[1; 7]),
        Err(FramePushError::WrongSize { len: 7, size: 8 })
    );
    assert_eq!(
        tx.push_timeout(&[1; 9], WAIT),
        Err(FramePushError::WrongSize { len: 9, size: 8 })
    );
    assert!(typed_rx.is_empty());
    for v in values() {
        tx.push_timeout(&v.to_ne_bytes(), WAIT).unwrap();
        assert_eq!(typed_rx.pop_timeout(WAIT).unwrap(), v);
    }
    // Full: try_push says so, push_timeout times out.
    for _ in 0..4 {
        tx.try_push(&[0; 8]).unwrap();
    }
    assert_eq!(tx.try_push(&[0; 8]), Err(FramePushError::Full));
    assert_eq!(
        tx.push_timeout(&[0; 8], Some(Duration::from_millis(20))),
        Err(FramePushError::Timeout)
    );
    drop((typed_tx, typed_rx, rx, tx));
    dir.finish();
}

#[test]
fn slot_handles_refuse_rings_of_other_kinds_and_taken_roles() {
    let dir = TestDir::new("slots-kinds");
    let frames = shmring::frames::Producer::builder("f")
        .dir(&dir.path)
        .capacity(4096)
        .create()
        .unwrap();
    let err = SlotConsumer::attach(frames.segment().clone()).unwrap_err();
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{err}");
    assert!(err.to_string().contains("needs a spsc ring"), "{err}");
    let tx = spsc::Producer::<u64>::builder("s")
        .dir(&dir.path)
        .create()
        .unwrap();
    // The producer role is held by `tx`.
    assert!(SlotProducer::attach(tx.segment().clone()).is_err());
    let err = BytesProducer::attach_any(tx.segment().clone()).unwrap_err();
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{err}");
    drop((frames, tx));
    dir.finish();
}

#[test]
fn mpmc_attach_any_carries_whole_slots_on_typed_rings_and_frames_on_byte_rings() {
    let dir = TestDir::new("slots-mpmc");
    let mut typed_tx = mpmc::Producer::<u64>::builder("a")
        .dir(&dir.path)
        .capacity(8)
        .create()
        .unwrap();
    let mut typed_rx = mpmc::Consumer::<u64>::builder("a")
        .dir(&dir.path)
        .open()
        .unwrap();
    let seg = typed_tx.segment().clone();
    let mut tx = BytesProducer::attach_any(seg.clone()).unwrap();
    let mut rx = BytesConsumer::attach_any(seg).unwrap();
    assert_eq!(tx.max_len(), 8);
    assert_eq!(
        tx.push_timeout(&[3; 5], WAIT),
        Err(FramePushError::WrongSize { len: 5, size: 8 })
    );
    assert_eq!(
        tx.push_timeout(&[3; 12], WAIT),
        Err(FramePushError::WrongSize { len: 12, size: 8 })
    );
    assert!(typed_rx.is_empty());
    let mut buf = Vec::new();
    for v in values() {
        tx.push_timeout(&v.to_ne_bytes(), WAIT).unwrap();
        assert_eq!(typed_rx.pop_timeout(WAIT).unwrap(), v);
        typed_tx.push(v).unwrap();
        rx.pop_timeout(&mut buf, WAIT).unwrap();
        assert_eq!(buf, v.to_ne_bytes());
    }
    drop((tx, rx, typed_tx, typed_rx));

    // A byte-slot ring: attach_any is attach (length-prefixed messages of
    // any length up to the slot).
    let seg = Arc::new(
        shmring::SegmentOptions::new()
            .dir(&dir.path)
            .create(
                "bytes",
                &shmring::raw::bytes_spec(
                    &shmring::raw::Layout::with_roles(shmring::Kind::Mpmc, 8, 32, 8, 2, 2).unwrap(),
                ),
            )
            .unwrap(),
    );
    let mut tx = BytesProducer::attach_any(seg.clone()).unwrap();
    let mut rx = BytesConsumer::attach_any(seg).unwrap();
    assert_eq!(tx.max_len(), 28);
    for msg in [&b"a"[..], b"", b"a longer message"] {
        tx.push_timeout(msg, WAIT).unwrap();
        rx.pop_timeout(&mut buf, WAIT).unwrap();
        assert_eq!(buf, msg);
    }
    drop((tx, rx));
    dir.finish();
}

#[test]
fn broadcast_attach_any_publishes_exact_values_on_typed_rings() {
    let dir = TestDir::new("slots-bcast");
    let mut typed_tx = Publisher::<u64>::builder("a")
        .dir(&dir.path)
        .capacity(8)
        .create()
        .unwrap();
    let seg = open_ring(&dir.path.to_string_lossy(), "a");
    let mut typed_rx = Subscriber::<u64>::builder("a")
        .dir(&dir.path)
        .open()
        .unwrap();
    let mut rx = BytesSubscriber::attach_any(seg.clone(), Start::Oldest).unwrap();
    let mut buf = Vec::new();
    for v in values() {
        typed_tx.push_timeout(v, WAIT).unwrap();
        assert_eq!(typed_rx.pop_timeout(WAIT).unwrap().1, v);
        rx.pop_into_timeout(&mut buf, WAIT).unwrap();
        assert_eq!(buf, v.to_ne_bytes());
    }
    drop(typed_tx);
    let mut tx = BytesPublisher::attach_any(seg).unwrap();
    assert_eq!(
        tx.try_push(&[1; 3]),
        Err(FramePushError::WrongSize { len: 3, size: 8 })
    );
    for v in values() {
        tx.push_timeout(&v.to_ne_bytes(), WAIT).unwrap();
        assert_eq!(typed_rx.pop_timeout(WAIT).unwrap().1, v);
    }
    drop((tx, rx, typed_rx));
    dir.finish();
}
