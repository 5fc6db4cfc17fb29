//! Model checks of the broadcast protocol: run with
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_models`.
//! Payloads are relaxed atomic words, so a missing ordering shows up as a
//! torn or stale message returned as good.

use super::raw::{RawBroadcast, Read};
use crate::layout::{BroadcastControl, SubscriberLine};
use crate::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::sync::atomic::AtomicBool;
use loom::thread;
use std::sync::atomic::Ordering::{Acquire, Release};

/// Words per slot: sequence, length, two payload words.
const STRIDE: usize = 4;
const PAYLOAD: usize = 2;
const SLOT_SIZE: usize = 16;

struct Mem {
    cap: u64,
    control: BroadcastControl,
    subs: Vec<SubscriberLine>,
    slots: Vec<AtomicU64>,
    attached: Vec<AtomicBool>,
}

impl Mem {
    fn new(cap: u64, roles: u32) -> Mem {
        Mem {
            cap,
            control: BroadcastControl::new_for_model(),
            subs: (0..roles)
                .map(|_| SubscriberLine::new_for_model())
                .collect(),
            slots: (0..cap as usize * STRIDE)
                .map(|_| AtomicU64::new(0))
                .collect(),
            attached: (0..roles).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn ring(&self) -> RawBroadcast {
        // SAFETY: every pointer refers to `self`, which outlives the ring
        // (each thread holds the Arc); sizes as `from_parts` requires.
        unsafe {
            RawBroadcast::from_parts(
                &self.control,
                self.subs.as_ptr(),
                self.slots.as_ptr(),
                self.cap,
                STRIDE,
                PAYLOAD,
                SLOT_SIZE,
                self.subs.len() as u32,
            )
        }
    }
}

/// Message `n`'s bytes: two words that must agree (a torn read mixes two
/// messages' words).
fn message(n: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_ne_bytes());
    b[8..].copy_from_slice(&(n * 7 + 1).to_ne_bytes());
    b
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// `overwrite`: the publisher laps a subscriber of a 1-slot ring. Every
/// message the subscriber gets is whole and the one its sequence names, in
/// order, and what it got plus what it was told it missed is exactly how
/// far it went.
#[test]
fn a_lapped_subscriber_gets_whole_messages_and_an_exact_missed_count() {
    model(|| {
        let mem = Arc::new(Mem::new(1, 2));
        let m = mem.clone();
        let publisher = thread::spawn(move || {
            let ring = m.ring();
            for n in 0..3 {
                ring.write(n, &message(n));
            }
        });
        let ring = mem.ring();
        let (mut pos, mut got, mut missed) = (0u64, 0u64, 0u64);
        for _ in 0..3 {
            let mut buf = [0u8; 16];
            match ring.read(pos, &mut buf) {
                Read::Got(16) => {
                    assert_eq!(buf, message(pos), "torn or wrong message {pos}");
                    got += 1;
                    pos += 1;
                }
                Read::Empty => thread::yield_now(),
                Read::Lapped => {
                    let next = ring.resume_after_lap(pos).expect("a real lap");
                    assert!(next > pos);
                    missed += next - pos;
                    pos = next;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        publisher.join().unwrap();
        assert_eq!(got + missed, pos);
        assert!(pos <= 3);
    });
}

/// `block`: a subscriber joins (at the oldest message kept) while the
/// publisher of a 1-slot ring writes as far as its view of the subscribers
/// allows. The handshake on `floor` means the joiner is never lapped: it
/// reads every message from where it started, in order.
#[test]
fn a_joining_subscriber_is_never_overwritten_in_block_mode() {
    model(|| {
        let mem = Arc::new(Mem::new(1, 2));
        let m = mem.clone();
        let publisher = thread::spawn(move || {
            let ring = m.ring();
            let include = |role: u32| m.attached[role as usize].load(Acquire);
            let mut limit = 0;
            for n in 0..3 {
                if n >= limit {
                    limit = ring.rescan(n, &include);
                }
                if n >= limit {
                    break;
                }
                ring.write(n, &message(n));
            }
        });
        let ring = mem.ring();
        let line = &mem.subs[1];
        mem.attached[1].store(true, Release);
        let tail = ring.tail().unwrap();
        let start = ring.floor().max(tail.saturating_sub(mem.cap));
        let mut pos = ring.join_block(line, start);
        for _ in 0..3 {
            let mut buf = [0u8; 16];
            match ring.read(pos, &mut buf) {
                Read::Got(16) => {
                    assert_eq!(buf, message(pos));
                    pos += 1;
                    ring.advance(line, pos, true);
                }
                Read::Empty => thread::yield_now(),
                other => panic!("joiner at {pos}: {other:?}"),
            }
        }
        publisher.join().unwrap();
    });
}
