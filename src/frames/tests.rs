//! Regressions found by fuzzing (`fuzz/`, target `attach_consume`).
//! The overflow they guard against panics only where overflow checks
//! are on: `cargo test` (debug) and the fuzz builds, which also replay
//! the input that found it (`scripts/fuzz.sh` writes it to the corpus).

use super::*;
use crate::SegmentOptions;
use crate::raw::bytes_spec;

#[test]
fn frame_counters_scribbled_to_the_maximum_wrap_instead_of_panicking() {
    let dir = crate::segment::TestDir::new("frames");
    let seg = Arc::new(
        SegmentOptions::new()
            .dir(&dir.0)
            .create("r", &bytes_spec(&layout(1024).unwrap()))
            .unwrap(),
    );
    let mut tx = Producer::attach(seg.clone()).unwrap();
    let mut rx = Consumer::attach(seg.clone()).unwrap();
    // A hostile peer sets both counters to u64::MAX before we attach
    // again (the halves load them at attach).
    drop((tx, rx));
    let ring = RawRing::new(&seg).unwrap();
    ring.produced().store(u64::MAX, Ordering::Relaxed);
    ring.consumed().store(u64::MAX, Ordering::Relaxed);
    tx = Producer::attach(seg.clone()).unwrap();
    rx = Consumer::attach(seg.clone()).unwrap();
    tx.try_push(b"one").unwrap();
    let mut out = Vec::new();
    rx.try_pop(&mut out).unwrap();
    assert_eq!(out, b"one");
    assert_eq!(ring.produced().load(Ordering::Relaxed), 0);
    assert_eq!(ring.consumed().load(Ordering::Relaxed), 0);
    drop((tx, rx, ring, seg));
}
