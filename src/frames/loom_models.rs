//! Model check of reserve/commit/read/release, including a wrap marker:
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_models`.
//! Payload words are written and read with relaxed atomics, so a missing
//! release/acquire edge would show up as a wrong payload.

use super::*;
use crate::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::Ordering::Relaxed;

const CAP: u64 = 64;
/// Sizes 32, 24, 32 bytes: the third does not fit before the end (8
/// bytes left at offset 56), so it leaves a wrap marker and starts at 0
/// once the consumer has freed the first.
const LENS: [u64; 3] = [24, 16, 24];

struct Mem {
    control: crate::layout::SpscControl,
    words: [AtomicU64; (CAP / 8) as usize],
}

impl Mem {
    fn new() -> Mem {
        Mem {
            control: crate::layout::SpscControl::new_for_model(),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn ring(&self) -> RawRing {
        // SAFETY: the control lines and the array outlive the RawRing
        // (each thread holds the Arc<Mem>); under loom `word()` indexes
        // `words` by pos / 8; CAP is a power of two.
        unsafe { RawRing::from_parts(&self.control, self.words.as_ptr() as *mut u8, CAP, 1) }
    }
}

fn payload(frame: usize, k: u64) -> u64 {
    frame as u64 * 100 + k + 1
}

#[test]
fn frames_arrive_intact_across_a_wrap_marker() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let mem = Arc::new(Mem::new());
        let m2 = mem.clone();
        let producer = thread::spawn(move || {
            let ring = m2.ring();
            let mut cursor = ProducerCursor::attach(&ring).unwrap();
            for (i, &len) in LENS.iter().enumerate() {
                let start = loop {
                    match reserve_at(&ring, &mut cursor, len).unwrap() {
                        Some(start) => break start,
                        None => thread::yield_now(),
                    }
                };
                for k in 0..len / 8 {
                    ring.word(start + 8 + 8 * k).store(payload(i, k), Relaxed);
                }
                commit_at(&ring, &mut cursor, start, len);
            }
        });
        let ring = mem.ring();
        let mut cursor = ConsumerCursor::attach(&ring).unwrap();
        for (i, &want) in LENS.iter().enumerate() {
            let (len, size) = loop {
                match next_frame(&ring, &mut cursor, || false) {
                    Ok(found) => break found,
                    Err(TryPopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            };
            assert_eq!(len, want);
            for k in 0..len / 8 {
                let got = ring.word(cursor.head + 8 + 8 * k).load(Relaxed);
                assert_eq!(got, payload(i, k), "frame {i} word {k}");
            }
            cursor.release(&ring, size);
        }
        producer.join().unwrap();
    });
}
