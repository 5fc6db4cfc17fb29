//! Attach a consumer to a segment another process scribbled on, and pop
//! until empty or an error.
//!
//! Input: a kind byte (SPSC typed, frames, MPMC, broadcast: a byte
//! subscriber, whose reads are seqlock-checked copies), a count of messages to
//! push first, then 10-byte patches (a little-endian u16 word index, taken
//! modulo the file's words, and a u64 value) applied to the file with
//! pwrite, header included. The consumer must open, attach and pop with
//! `Ok` or an error, never a panic, a crash or an out-of-bounds access
//! (the fuzz build runs under AddressSanitizer), and every loop must end.
#![no_main]

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shmring::raw::{bytes_spec, typed_spec};
use shmring::{SegmentOptions, broadcast, frames, mpmc, spsc};

#[path = "scratch.rs"]
mod scratch;
use scratch::dir;

/// Pops at most this many times: a ring holds fewer messages than this, so
/// more would mean a loop that never ends.
const MAX_POPS: usize = 4096;

/// Pops (`step(i)`, i = 0, 1, ...) until the first error, at most
/// `MAX_POPS` times.
fn drain<E>(mut step: impl FnMut(usize) -> Result<usize, E>) {
    for i in 0..MAX_POPS {
        if step(i).is_err() {
            break;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (count, patches) = rest.split_first().map_or((0, &[][..]), |(c, p)| (*c, p));
    let kind = kind % 4;
    // A scribbled "not ready yet" state would make `open` wait its whole
    // timeout for a creator that is not there.
    let opts = SegmentOptions::new()
        .dir(dir())
        .persistent(true)
        .timeout(std::time::Duration::from_millis(1));
    let name = "r";
    let path = dir().join(name);
    let _ = std::fs::remove_file(&path);
    let layout = match kind {
        0 => spsc::layout::<u64>(16),
        1 => frames::layout(1024),
        2 => mpmc::layout_with_roles::<u64>(16, 2, 2),
        _ => broadcast::layout(16, 24, 8, 2, broadcast::Overflow::Overwrite),
    }
    .unwrap();
    let spec = match kind {
        1 | 3 => bytes_spec(&layout),
        _ => typed_spec::<u64>(&layout),
    };
    let seg = Arc::new(opts.create(name, &spec).unwrap());
    // Some traffic first, so the consumer has something to read.
    match kind {
        0 => {
            let mut tx = spsc::Producer::<u64>::attach(seg.clone()).unwrap();
            for i in 0..u64::from(count) {
                let _ = tx.try_push(i);
            }
        }
        1 => {
            let mut tx = frames::Producer::attach(seg.clone()).unwrap();
            for i in 0..usize::from(count) {
                let _ = tx.try_push(&vec![i as u8; i % 40]);
            }
        }
        2 => {
            let mut tx = mpmc::Producer::<u64>::attach(seg.clone()).unwrap();
            for i in 0..u64::from(count) {
                let _ = tx.try_push(i);
            }
        }
        _ => {
            let mut tx = broadcast::BytesPublisher::attach(seg.clone()).unwrap();
            for i in 0..usize::from(count) {
                let _ = tx.try_push(&vec![i as u8; i % 25]);
            }
        }
    }
    drop(seg);
    // The hostile writes, straight into the object.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let words = file.metadata().unwrap().len() / 8;
    for p in patches.chunks_exact(10) {
        let word = u64::from(u16::from_le_bytes([p[0], p[1]])) % words;
        let _ = file.write_at(&p[2..10], word * 8);
    }
    drop(file);
    if let Ok(seg) = opts.open(name) {
        let seg = Arc::new(seg);
        let mut buf = [0u64; 5];
        match kind {
            0 => {
                if let Ok(mut rx) = spsc::Consumer::<u64>::attach(seg) {
                    drain(|i| match i % 2 {
                        0 => rx.try_pop().map(|_| 1),
                        _ => rx.pop_into(&mut buf),
                    });
                }
            }
            1 => {
                if let Ok(mut rx) = frames::Consumer::attach(seg) {
                    let mut out = Vec::new();
                    drain(|_| rx.try_pop(&mut out).map(|()| 1));
                }
            }
            2 => {
                if let Ok(mut rx) = mpmc::Consumer::<u64>::attach(seg) {
                    drain(|i| match i % 2 {
                        0 => rx.try_pop().map(|_| 1),
                        _ => rx.pop_into(&mut buf),
                    });
                }
            }
            _ => {
                if let Ok(mut rx) =
                    broadcast::BytesSubscriber::attach(seg, broadcast::Start::Oldest)
                {
                    let mut out = Vec::new();
                    // A lap is not an end: the next pop goes on.
                    drain(|_| match rx.try_pop_into(&mut out) {
                        Ok(_) | Err(broadcast::TryPopError::Lagged(_)) => Ok(1),
                        Err(e) => Err(e),
                    });
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
