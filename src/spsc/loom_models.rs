//! Model checks of the index protocol: run with
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_models`.
//!
//! The payload is written and read with *relaxed* atomics, so loom can
//! return stale values for it: if the tail/head orderings did not order
//! the payload, a model would observe a wrong or old message.

use super::raw::*;
use crate::layout::{ConsumerLine, ProducerLine, SpscControl, WaitLine};
use crate::ring::TryPopError;
use crate::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;
use loom::thread;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

const CAP: u64 = 2;
const N: u64 = 3;

struct Mem {
    control: SpscControl,
    data: [AtomicU64; CAP as usize],
    producer_detached: AtomicU32,
}

impl Mem {
    fn new() -> Mem {
        Mem {
            control: SpscControl::new_for_model(),
            data: [AtomicU64::new(0), AtomicU64::new(0)],
            producer_detached: AtomicU32::new(0),
        }
    }

    fn ring(&self) -> RawRing {
        // SAFETY: the control lines and the array live as long as the
        // Arc<Mem> each thread holds, which outlives the RawRing built
        // here; CAP is a power of two.
        unsafe {
            RawRing::from_parts(
                &self.control,
                self.data.as_ptr() as *mut u8,
                CAP,
                std::mem::size_of::<AtomicU64>(),
            )
        }
    }
}

fn slot(ring: &RawRing, pos: u64) -> &AtomicU64 {
    // SAFETY: slot() stays inside `data`, an array of AtomicU64.
    unsafe { &*ring.slot(pos).cast::<AtomicU64>() }
}

fn produce(mem: &Mem) {
    let ring = mem.ring();
    let mut cursor = ProducerCursor::attach(&ring).unwrap();
    let mut v = 1;
    while v <= N {
        if cursor.free(&ring, 1).unwrap() == 0 {
            thread::yield_now();
            continue;
        }
        slot(&ring, cursor.tail).store(v, Relaxed);
        cursor.publish(&ring, 1);
        v += 1;
    }
    // As `Side::drop` does: detach with release after the last publish.
    mem.producer_detached.store(1, Release);
}

#[test]
fn messages_arrive_in_order_and_intact_across_the_wrap() {
    loom::model(|| {
        let mem = Arc::new(Mem::new());
        let m2 = mem.clone();
        let producer = thread::spawn(move || produce(&m2));
        let ring = mem.ring();
        let mut cursor = ConsumerCursor::attach(&ring).unwrap();
        let mut expect = 1;
        while expect <= N {
            match cursor.available(&ring, || false, 1) {
                Ok(_) => {
                    assert_eq!(slot(&ring, cursor.head).load(Relaxed), expect);
                    cursor.release(&ring, 1);
                    expect += 1;
                }
                Err(TryPopError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn disconnected_only_after_everything_published_was_taken() {
    loom::model(|| {
        let mem = Arc::new(Mem::new());
        let m2 = mem.clone();
        let producer = thread::spawn(move || produce(&m2));
        let ring = mem.ring();
        let mut cursor = ConsumerCursor::attach(&ring).unwrap();
        let mut got = 0;
        loop {
            let gone = || mem.producer_detached.load(Acquire) == 1;
            match cursor.available(&ring, gone, 1) {
                Ok(_) => {
                    got += 1;
                    assert_eq!(slot(&ring, cursor.head).load(Relaxed), got);
                    cursor.release(&ring, 1);
                }
                Err(TryPopError::Empty) => thread::yield_now(),
                Err(TryPopError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, N, "Disconnected before the last message");
        producer.join().unwrap();
    });
}
