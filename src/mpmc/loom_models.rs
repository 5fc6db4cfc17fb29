//! Model checks of the MPMC protocol: run with
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_models`.
//! Payloads are relaxed atomics, so a missing ordering shows up as a
//! stale or wrong message.

use super::raw::{Claim, FastRead, RawMpmc, Stuck};
use super::*;
use crate::layout::{ClaimLine, MpmcControl};
use crate::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::sync::atomic::AtomicBool;
use loom::thread;
use std::sync::atomic::Ordering::Relaxed;

struct Slot {
    seq: AtomicU64,
    val: AtomicU64,
}

struct Mem {
    cap: u64,
    control: MpmcControl,
    slots: Vec<Slot>,
    claims: Vec<ClaimLine>,
    alive: Vec<AtomicBool>,
}

const PRODUCERS: u32 = 2;
const CONSUMERS: u32 = 1;

/// Three threads over several atomics: exhaustive search does not end
/// in CI time, so preemptions are bounded (loom's documented way).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.max_branches = 20_000;
    b.check(f);
}

impl Mem {
    fn new(cap: u64) -> Mem {
        Mem {
            cap,
            control: MpmcControl::new_for_model(),
            slots: (0..cap)
                .map(|i| Slot {
                    seq: AtomicU64::new(i),
                    val: AtomicU64::new(0),
                })
                .collect(),
            claims: (0..PRODUCERS + CONSUMERS)
                .map(|_| ClaimLine::new_for_model())
                .collect(),
            alive: (0..PRODUCERS + CONSUMERS)
                .map(|_| AtomicBool::new(true))
                .collect(),
        }
    }

    fn ring(&self) -> RawMpmc {
        // SAFETY: every array lives as long as the Arc<Mem> each thread
        // holds, which outlives the RawMpmc built here.
        unsafe {
            RawMpmc::from_parts(
                &self.control,
                self.slots.as_ptr() as *mut u8,
                self.cap,
                std::mem::size_of::<Slot>(),
                std::mem::offset_of!(Slot, val),
                self.claims.as_ptr(),
                PRODUCERS,
                CONSUMERS,
            )
        }
    }

    fn alive(&self, role: u32) -> bool {
        self.alive[role as usize].load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn val(ring: &RawMpmc, pos: u64) -> &AtomicU64 {
    // SAFETY: payload() points at a slot's `val`, an AtomicU64.
    unsafe { &*ring.payload(pos).cast::<AtomicU64>() }
}

/// One claim for writing as `Producer::try_push` makes it: the fast path
/// first, then the general one.
fn claim_one_for_write(mem: &Mem, ring: &RawMpmc, me: u32, stuck: &mut Stuck) -> Claim {
    match ring.claim_one_for_write(me) {
        Some(pos) => Claim::Got(pos, 1),
        None => ring.claim_for_write(me, 1, stuck, false, &|r| mem.alive(r)),
    }
}

/// Producer `me` pushes `values` as `Producer::try_push` does: the fast
/// path first, then the general one.
fn produce(mem: &Mem, me: u32, values: &[u64]) {
    let ring = mem.ring();
    let mut stuck = Stuck::default();
    for &v in values {
        loop {
            match claim_one_for_write(mem, &ring, me, &mut stuck) {
                Claim::Got(pos, 1) => {
                    val(&ring, pos).store(v, Relaxed);
                    ring.publish(me, pos, 1, false);
                    break;
                }
                Claim::Nothing => thread::yield_now(),
                other => panic!("{other:?}"),
            }
        }
    }
}

/// The consumer takes `n` messages (skips excluded), as
/// `Consumer::try_pop` does: the fast path first, then the general one.
fn consume(mem: &Mem, n: usize) -> Vec<u64> {
    let ring = mem.ring();
    let me = PRODUCERS;
    let mut stuck = Stuck::default();
    let mut got = Vec::new();
    while got.len() < n {
        let claim = match ring.claim_one_for_read(me) {
            FastRead::Got(pos) => Claim::Got(pos, 1),
            // As `Core::claim_read_one`: count the stuck poll; once due
            // (at once under loom), the general path checks the producers.
            FastRead::Unpublished(h) if !stuck.due(h, false) => Claim::Nothing,
            FastRead::Unpublished(_) => {
                ring.claim_for_read(me, 1, &mut stuck, true, &|r| mem.alive(r))
            }
            FastRead::Other => ring.claim_for_read(me, 1, &mut stuck, false, &|r| mem.alive(r)),
        };
        match claim {
            Claim::Got(pos, 1) => {
                if !ring.is_skip(pos) {
                    got.push(val(&ring, pos).load(Relaxed));
                }
                ring.release(me, pos, 1);
            }
            Claim::Nothing => thread::yield_now(),
            other => panic!("{other:?}"),
        }
    }
    got
}

#[test]
fn two_producers_deliver_everything_once_in_per_producer_order() {
    model(|| {
        // Capacity 4: no producer waits for space (that is the next
        // model's job), so the search stays small.
        let mem = Arc::new(Mem::new(4));
        let m1 = mem.clone();
        let m2 = mem.clone();
        let p1 = thread::spawn(move || produce(&m1, 0, &[1, 2]));
        let p2 = thread::spawn(move || produce(&m2, 1, &[11]));
        let got = consume(&mem, 3);
        p1.join().unwrap();
        p2.join().unwrap();
        let ones: Vec<u64> = got.iter().copied().filter(|&v| v < 10).collect();
        assert_eq!(ones, vec![1, 2], "producer 0 out of order or lost: {got:?}");
        assert!(got.contains(&11), "producer 1's message lost: {got:?}");
        assert_eq!(mem.control.stats.skipped.load(Relaxed), 0);
    });
}

#[test]
fn messages_cross_the_wrap_intact_and_in_order() {
    model(|| {
        let mem = Arc::new(Mem::new(2));
        let m1 = mem.clone();
        let p = thread::spawn(move || produce(&m1, 0, &[1, 2, 3]));
        let got = consume(&mem, 3);
        p.join().unwrap();
        assert_eq!(got, vec![1, 2, 3]);
    });
}

#[test]
fn a_slow_live_producer_is_never_skipped() {
    model(|| {
        let mem = Arc::new(Mem::new(2));
        let m1 = mem.clone();
        // Producer 0 claims, is descheduled (yields), then publishes.
        let slow = thread::spawn(move || {
            let ring = m1.ring();
            let mut stuck = Stuck::default();
            let Claim::Got(pos, 1) = claim_one_for_write(&m1, &ring, 0, &mut stuck) else {
                panic!("empty ring must have space");
            };
            thread::yield_now();
            val(&ring, pos).store(5, Relaxed);
            ring.publish(0, pos, 1, false);
        });
        // The consumer checks the claimants at every stuck poll
        // (STUCK_POLLS is 1 under loom), with the producer alive.
        let got = consume(&mem, 1);
        slow.join().unwrap();
        assert_eq!(got, vec![5]);
        assert_eq!(
            mem.control.stats.skipped.load(Relaxed),
            0,
            "a live producer was skipped"
        );
    });
}

#[test]
fn a_dead_producers_claim_is_skipped_and_traffic_continues() {
    model(|| {
        let mem = Arc::new(Mem::new(2));
        let m1 = mem.clone();
        let m2 = mem.clone();
        // Producer 0 claims a slot and dies before publishing: its lock
        // is released (alive = false), its record stays.
        let dying = thread::spawn(move || {
            let ring = m1.ring();
            let mut stuck = Stuck::default();
            if let Claim::Got(..) = claim_one_for_write(&m1, &ring, 0, &mut stuck) {
                m1.alive[0].store(false, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let p2 = thread::spawn(move || produce(&m2, 1, &[7]));
        let got = consume(&mem, 1);
        dying.join().unwrap();
        p2.join().unwrap();
        assert_eq!(got, vec![7]);
        let skipped = mem.control.stats.skipped.load(Relaxed);
        assert!(skipped <= 1);
    });
}

/// Producer 0 tries (at most 3 times) to push 3; true if it did.
fn try_push_3(mem: &Mem) -> bool {
    let ring = mem.ring();
    let mut stuck = Stuck::default();
    for _ in 0..3 {
        match claim_one_for_write(mem, &ring, 0, &mut stuck) {
            Claim::Got(pos, 1) => {
                val(&ring, pos).store(3, Relaxed);
                ring.publish(0, pos, 1, false);
                return true;
            }
            Claim::Nothing => thread::yield_now(),
            other => panic!("{other:?}"),
        }
    }
    false
}

/// A consumer died holding message 1 (claimed, not released) with the ring
/// full behind it. A producer that wants space races a consumer taking the
/// dead role over: the producer may re-publish 1 (after announcing it in
/// its record, then checking the role's lock), the new holder may deliver
/// it (after taking the lock, then checking the producers' records). In
/// every interleaving message 1 comes out exactly once.
#[test]
fn a_dead_consumers_message_is_delivered_once_by_the_new_holder_or_a_producer() {
    model(|| {
        let mem = Arc::new(Mem::new(2));
        let consumer = PRODUCERS;
        {
            let ring = mem.ring();
            produce(&mem, 0, &[1]);
            let FastRead::Got(0) = ring.claim_one_for_read(consumer) else {
                panic!("message 1 must be claimable");
            };
            // The holder dies: its lock is released, its record stays.
            mem.alive[consumer as usize].store(false, std::sync::atomic::Ordering::SeqCst);
            produce(&mem, 0, &[2]);
        }
        let m1 = mem.clone();
        let producer = thread::spawn(move || try_push_3(&m1));
        // The new holder: takes the lock (a system call: SeqCst), fences,
        // then takes over unless a producer announces a re-publication.
        mem.alive[consumer as usize].store(true, std::sync::atomic::Ordering::SeqCst);
        crate::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let ring = mem.ring();
        let alive = |r: u32| mem.alive(r);
        let (pos, n) = ring
            .recorded_claim(consumer)
            .expect("the dead holder's record");
        let mut adopted = false;
        for _ in 0..3 {
            if !ring.takeover_contested(pos, n, &alive) {
                adopted = true;
                break;
            }
            thread::yield_now();
        }
        let mut got = Vec::new();
        if adopted && ring.held(pos) {
            got.push(val(&ring, pos).load(Relaxed));
            ring.release(consumer, pos, 1);
        } else {
            ring.clear(consumer);
        }
        // A producer keeps trying while the ring is full: once the holder
        // gave up (cleared the record), the next try re-publishes 1.
        let pushed = producer.join().unwrap() || try_push_3(&mem);
        let mut stuck = Stuck::default();
        for _ in 0..4 {
            match ring.claim_for_read(consumer, 1, &mut stuck, true, &alive) {
                Claim::Got(p, 1) => {
                    if !ring.is_skip(p) {
                        got.push(val(&ring, p).load(Relaxed));
                    }
                    ring.release(consumer, p, 1);
                }
                Claim::Nothing => break,
                other => panic!("{other:?}"),
            }
        }
        let count = |v: u64| got.iter().filter(|&&g| g == v).count();
        assert_eq!(count(1), 1, "message 1: {got:?}");
        assert_eq!(count(2), 1, "message 2: {got:?}");
        assert_eq!(got.contains(&3), pushed, "message 3: {got:?}");
    });
}
