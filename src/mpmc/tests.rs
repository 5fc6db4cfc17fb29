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
