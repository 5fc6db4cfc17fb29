//! The textbook Lamport SPSC ring (issue 15), the reference shmring's SPSC
//! rows are read against: two indices, each alone in 128 bytes, a cached
//! copy of the other side's index, u64 slots, a power-of-two capacity; no
//! wake-ups, no liveness, no counters. The same ring as `shmring bench`'s
//! (cli/src/cli/bench/textbook.rs), over raw memory so that it can sit in a
//! heap block shared by two threads or in a page shared with a forked
//! process.

use std::sync::atomic::{AtomicU64, Ordering};

const PAD: usize = 128;

/// Bytes a ring of `cap` slots needs: `[head: 128][tail: 128][slots]`.
pub const fn bytes(cap: usize) -> usize {
    2 * PAD + cap * 8
}

pub struct Tx {
    head: *const AtomicU64,
    tail: *const AtomicU64,
    slots: *mut u64,
    mask: u64,
    pos: u64,
    head_cache: u64,
}

pub struct Rx {
    head: *const AtomicU64,
    tail: *const AtomicU64,
    slots: *mut u64,
    mask: u64,
    pos: u64,
    tail_cache: u64,
}

// SAFETY: each half is used by one thread at a time; the memory it points
// into is shared only through the atomics and the slots they hand over.
unsafe impl Send for Tx {}
// SAFETY: as for Tx.
unsafe impl Send for Rx {}

/// The two halves of a ring of `cap` (a power of two) slots over `mem`.
///
/// # Safety
///
/// `mem` is zeroed, 128-byte aligned, `bytes(cap)` long, used by nothing
/// else, and outlives both halves (in every process that has them).
pub unsafe fn split(mem: *mut u8, cap: usize) -> (Tx, Rx) {
    assert!(cap.is_power_of_two() && mem.addr().is_multiple_of(PAD));
    // SAFETY: in bounds of `mem` (the caller's promise).
    let (head, tail, slots) = unsafe { (mem.cast(), mem.add(PAD).cast(), mem.add(2 * PAD).cast()) };
    let mask = cap as u64 - 1;
    let tx = Tx {
        head,
        tail,
        slots,
        mask,
        pos: 0,
        head_cache: 0,
    };
    let rx = Rx {
        head,
        tail,
        slots,
        mask,
        pos: 0,
        tail_cache: 0,
    };
    (tx, rx)
}

impl Tx {
    /// Up to `want` free slots, re-reading the consumer's index only when
    /// the cached copy says there are fewer.
    #[inline]
    fn free(&mut self, want: u64) -> u64 {
        let cap = self.mask + 1;
        if cap - (self.pos - self.head_cache) < want {
            // SAFETY: a live, aligned atomic (`split`'s contract).
            // Acquire: pairs with the consumer's Release store; its reads of
            // the freed slots happen before our writes.
            self.head_cache = unsafe { &*self.head }.load(Ordering::Acquire);
        }
        (cap - (self.pos - self.head_cache)).min(want)
    }

    #[inline]
    fn publish(&mut self, n: u64) {
        self.pos += n;
        // SAFETY: as in `free`. Release: our slot writes happen before the
        // consumer's Acquire load sees the new index.
        unsafe { &*self.tail }.store(self.pos, Ordering::Release);
    }

    #[inline]
    pub fn try_push(&mut self, v: u64) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        // SAFETY: masked index, in bounds; the slot is free (`free`).
        unsafe { self.slots.add((self.pos & self.mask) as usize).write(v) };
        self.publish(1);
        true
    }

    /// Pushes as many of `vs` as fit with one index store.
    #[inline]
    pub fn push_slice(&mut self, vs: &[u64]) -> usize {
        let n = self.free(vs.len() as u64) as usize;
        let at = (self.pos & self.mask) as usize;
        let first = n.min(self.mask as usize + 1 - at);
        // SAFETY: the `n` free slots from `at`, split at the end of the
        // array; `vs` is private memory.
        unsafe {
            std::ptr::copy_nonoverlapping(vs.as_ptr(), self.slots.add(at), first);
            std::ptr::copy_nonoverlapping(vs.as_ptr().add(first), self.slots, n - first);
        }
        if n > 0 {
            self.publish(n as u64);
        }
        n
    }
}

impl Rx {
    #[inline]
    fn ready(&mut self, want: u64) -> u64 {
        if self.tail_cache - self.pos < want {
            // SAFETY: as in `Tx::free`. Acquire: pairs with the producer's
            // Release store; the slots below it are written.
            self.tail_cache = unsafe { &*self.tail }.load(Ordering::Acquire);
        }
        (self.tail_cache - self.pos).min(want)
    }

    #[inline]
    fn release(&mut self, n: u64) {
        self.pos += n;
        // SAFETY: as in `Tx::free`. Release: our slot reads happen before
        // the producer overwrites them.
        unsafe { &*self.head }.store(self.pos, Ordering::Release);
    }

    #[inline]
    pub fn try_pop(&mut self) -> Option<u64> {
        if self.ready(1) == 0 {
            return None;
        }
        // SAFETY: in bounds; published (`ready`), not rewritten before
        // `release`.
        let v = unsafe { self.slots.add((self.pos & self.mask) as usize).read() };
        self.release(1);
        Some(v)
    }

    /// Takes up to `out.len()` values with one index store.
    #[inline]
    pub fn pop_into(&mut self, out: &mut [u64]) -> usize {
        let n = self.ready(out.len() as u64) as usize;
        let at = (self.pos & self.mask) as usize;
        let first = n.min(self.mask as usize + 1 - at);
        // SAFETY: the `n` ready slots from `at`, split at the end of the
        // array; `out` is private memory.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slots.add(at), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(self.slots, out.as_mut_ptr().add(first), n - first);
        }
        if n > 0 {
            self.release(n as u64);
        }
        n
    }
}
