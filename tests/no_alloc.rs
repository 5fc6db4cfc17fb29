//! The hot paths (Spin) allocate nothing and make no futex calls: a
//! counting global allocator (per thread, so the harness's own threads do
//! not count) and the rings' wake and sleep counters show it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use common::*;
use shmring::SegmentOptions;
use shmring::broadcast;
use shmring::frames;
use shmring::mpmc;
use shmring::raw::{bytes_spec, typed_spec};
use shmring::spsc::{Consumer, Producer};
use shmring::wait::WaitStrategy;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY (test): forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn messages_move_without_allocating_or_sleeping() {
    const N: u64 = 100_000;
    let dir = TestDir::new("noalloc");
    let typed = Arc::new(create_u64_ring(&dir.path, "typed", 64));
    let mut tx = Producer::<u64>::attach(typed.clone()).unwrap();
    let mut rx = Consumer::<u64>::attach(typed.clone()).unwrap();
    tx.set_wait_strategy(WaitStrategy::Spin);
    rx.set_wait_strategy(WaitStrategy::Spin);
    let fseg = Arc::new(
        SegmentOptions::new()
            .dir(&dir.path)
            .create("frames", &bytes_spec(&frames::layout(1 << 16).unwrap()))
            .unwrap(),
    );
    let mut ftx = frames::Producer::attach(fseg.clone()).unwrap();
    let mut frx = frames::Consumer::attach(fseg.clone()).unwrap();
    let mseg = Arc::new(
        SegmentOptions::new()
            .dir(&dir.path)
            .create(
                "mpmc",
                &typed_spec::<u64>(&mpmc::layout_with_roles::<u64>(64, 2, 2).unwrap()),
            )
            .unwrap(),
    );
    let mut mtx = mpmc::Producer::<u64>::attach(mseg.clone()).unwrap();
    let mut mrx = mpmc::Consumer::<u64>::attach(mseg.clone()).unwrap();
    mtx.set_wait_strategy(WaitStrategy::Spin);
    mrx.set_wait_strategy(WaitStrategy::Spin);
    let mut btx = broadcast::Publisher::<u64>::builder("bcast")
        .dir(&dir.path)
        .capacity(64)
        .wait_strategy(WaitStrategy::Spin)
        .create()
        .unwrap();
    let mut brx = broadcast::Subscriber::<u64>::builder("bcast")
        .dir(&dir.path)
        .wait_strategy(WaitStrategy::Spin)
        .open()
        .unwrap();
    let mut bbtx = broadcast::BytesPublisher::builder("bbytes")
        .dir(&dir.path)
        .capacity(64)
        .slot_size(1000)
        .overflow(broadcast::Overflow::Overwrite)
        .create()
        .unwrap();
    let mut bbrx = broadcast::BytesSubscriber::builder("bbytes")
        .dir(&dir.path)
        .open()
        .unwrap();
    let mut bcast_buf = Vec::with_capacity(1000);
    let payload = [7u8; 1000];
    let mut frame_buf = Vec::with_capacity(4096);
    let mut batch = [0u64; 16];

    let before = allocations();
    for i in 0..N {
        tx.try_push(i).unwrap();
        assert_eq!(rx.try_pop(), Ok(i));
        tx.push(i).unwrap();
        assert_eq!(rx.pop(), Ok(i));
        assert_eq!(tx.push_slice(&[i; 16]), Ok(16));
        assert_eq!(rx.pop_into(&mut batch), Ok(16));
        ftx.try_push(&payload).unwrap();
        frx.try_pop(&mut frame_buf).unwrap();
        assert_eq!(frame_buf.len(), payload.len());
        mtx.try_push(i).unwrap();
        assert_eq!(mrx.try_pop(), Ok(i));
        mtx.push(i).unwrap();
        assert_eq!(mrx.pop(), Ok(i));
        assert_eq!(mtx.push_slice(&[i; 16]), Ok(16));
        assert_eq!(mrx.pop_into(&mut batch), Ok(16));
        assert_eq!(btx.try_push(i), Ok(2 * i));
        assert_eq!(brx.try_pop(), Ok((2 * i, i)));
        assert_eq!(btx.push(i), Ok(2 * i + 1));
        assert_eq!(brx.pop(), Ok((2 * i + 1, i)));
        assert_eq!(bbtx.try_push(&payload), Ok(i));
        assert_eq!(bbrx.pop_into_timeout(&mut bcast_buf, None), Ok(i));
        assert_eq!(bcast_buf.len(), payload.len());
    }
    let allocated = allocations() - before;
    assert_eq!(allocated, 0, "the hot paths allocated {allocated} times");
    let (data, space) = tx.wait_counters();
    let m = mrx.stats();
    let (bdata, bspace) = btx.wait_counters();
    for w in [data, space, m.wait_data, m.wait_space, bdata, bspace] {
        assert_eq!(
            (w.wakeups, w.sleeps),
            (0, 0),
            "a futex call on the hot path"
        );
    }
    eprintln!(
        "{} messages through typed, frame, MPMC and broadcast rings: 0 allocations, 0 futex wakes or sleeps",
        N * 73
    );
    drop((tx, rx, ftx, frx, mtx, mrx, typed, fseg, mseg));
    drop((btx, brx, bbtx, bbrx));
    dir.finish();
}
