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

fn ring_pair(dir: &crate::segment::TestDir, capacity: u64) -> (Arc<Segment>, Producer, Consumer) {
    let seg = Arc::new(
        SegmentOptions::new()
            .dir(&dir.0)
            .create("r", &bytes_spec(&layout(capacity).unwrap()))
            .unwrap(),
    );
    let tx = Producer::attach(seg.clone()).unwrap();
    let rx = Consumer::attach(seg.clone()).unwrap();
    (seg, tx, rx)
}

/// Batches across wrap markers, released in part: every frame comes out
/// once, in order, whatever the batch size and however much is released.
#[test]
fn batches_release_exactly_what_they_are_told_across_wraps() {
    let dir = crate::segment::TestDir::new("frames-batch");
    let (_seg, mut tx, mut rx) = ring_pair(&dir, 256);
    let (mut sent, mut got) = (0u32, 0u32);
    // Lengths 0..=40 cycle, so frames straddle the end of the area at
    // changing offsets.
    let frame = |i: u32| vec![i as u8; (i % 41) as usize];
    for round in 0..2000u32 {
        while tx.try_push(&frame(sent)).is_ok() {
            sent += 1;
        }
        let max = 1 + (round % 7) as usize;
        let batch = rx.read_frames(max).unwrap();
        assert!(batch.len() <= max && !batch.is_empty());
        for (k, f) in batch.iter().enumerate() {
            assert_eq!(f, frame(got + k as u32), "frame {}", got + k as u32);
        }
        let keep = (round % 3) as usize; // 0, 1 or 2 left in the ring
        let n = batch.len().saturating_sub(keep);
        batch.release(n);
        got += n as u32;
    }
    // Drain: dropping a batch consumes all of it.
    while let Ok(batch) = rx.read_frames(64) {
        for (k, f) in batch.iter().enumerate() {
            assert_eq!(f, frame(got + k as u32));
        }
        got += batch.len() as u32;
    }
    assert_eq!(got, sent);
    assert!(sent > 5_000, "only {sent} frames went round");
}

/// A header that fails its checks behind good frames: the batch stops
/// before it, and the read that reaches it reports `Corrupted`.
#[test]
fn a_bad_header_ends_the_batch_and_the_next_read_reports_it() {
    let dir = crate::segment::TestDir::new("frames-batch-bad");
    let (seg, mut tx, mut rx) = ring_pair(&dir, 1024);
    for f in [&b"aaaa"[..], b"bbbb", b"cccc"] {
        tx.try_push(f).unwrap();
    }
    // The third frame's header (at 32: two 16-byte frames before it) says
    // 1000 bytes, more than was published.
    let ring = RawRing::new(&seg).unwrap();
    ring.word(32)
        .store(encode(1000, TAG_FRAME), Ordering::Relaxed);
    let batch = rx.read_frames(16).unwrap();
    assert_eq!(batch.iter().collect::<Vec<_>>(), [&b"aaaa"[..], b"bbbb"]);
    drop(batch);
    match rx.read_frames(16) {
        Err(TryPopError::Corrupted(w)) => assert!(w.contains("does not fit"), "{w}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
}

/// Releasing none leaves the whole batch for the next read, and a new
/// consumer starts with it.
#[test]
fn released_none_is_read_again_by_the_next_consumer() {
    let dir = crate::segment::TestDir::new("frames-batch-keep");
    let (seg, mut tx, mut rx) = ring_pair(&dir, 1024);
    tx.try_push(b"first").unwrap();
    tx.try_push(b"second").unwrap();
    rx.read_frames(8).unwrap().release(0);
    drop(rx);
    let mut rx = Consumer::attach(seg.clone()).unwrap();
    let batch = rx.read_frames(8).unwrap();
    assert_eq!(batch.get(0), Some(&b"first"[..]));
    assert_eq!(batch.bytes(2), 11);
    batch.release(1);
    let mut out = Vec::new();
    rx.try_pop(&mut out).unwrap();
    assert_eq!(out, b"second");
}

/// A batch's receipt stays with frames not released: the next consumer's
/// batch returns it with how many frames it covers; releasing all of them
/// (or some but not all) leaves nothing for the next batch.
#[test]
fn a_receipt_goes_with_the_frames_it_describes() {
    let dir = crate::segment::TestDir::new("frames-receipt");
    let (seg, mut tx, mut rx) = ring_pair(&dir, 1024);
    for f in [&b"a"[..], b"b", b"c"] {
        tx.try_push(f).unwrap();
    }
    let mut batch = rx.read_frames(2).unwrap();
    assert_eq!(batch.receipt(), None);
    batch.set_receipt([9, 8, 7, 6]);
    batch.release(0);
    drop(rx);
    let mut rx = Consumer::attach(seg.clone()).unwrap();
    let batch = rx.read_frames(8).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(
        batch.receipt(),
        Some(BatchReceipt {
            words: [9, 8, 7, 6],
            frames: 2
        })
    );
    batch.release(2);
    let mut batch = rx.read_frames(8).unwrap();
    assert_eq!(batch.receipt(), None, "released frames keep no receipt");
    batch.set_receipt([1, 1, 1, 1]);
    tx.try_push(b"d").unwrap();
    batch.release(1);
    let batch = rx.read_frames(8).unwrap();
    assert_eq!(batch.get(0), Some(&b"d"[..]));
    assert_eq!(batch.receipt(), None);
}
