//! Textbook baselines (issue 15): the simplest correct rings a skeptical
//! engineer would write in an afternoon, in a mapping shared by the bench's
//! two pinned processes, so that each shmring row has a reference measured
//! the same way in the same run:
//!
//! * a Lamport SPSC ring of u64 (one by one and in batches),
//! * the same ring moving fixed-size records by `memcpy` in and out (the
//!   cross-core copy limit for frames),
//! * Vyukov's bounded MPMC queue of u64.
//!
//! No wake-ups, no liveness, no counters, no validation of what the peer
//! wrote: waiting is the caller's spin loop (`relax`, a spin hint).

use super::*;

use std::cell::UnsafeCell;

/// Each index sits alone in 128 bytes (two cache lines, so the adjacent-line
/// prefetcher does not couple them either).
const PAD: usize = 128;

/// Bytes a Lamport ring of `cap` slots of `stride` bytes needs:
/// `[head: 128][tail: 128][slots]`.
pub(super) fn lamport_bytes(cap: u64, stride: usize) -> u64 {
    (2 * PAD as u64 + cap * stride as u64).next_multiple_of(4096)
}

/// The producer of a Lamport ring.
pub(super) struct LamportTx<'a> {
    /// The consumer's index (next slot it reads); only read here.
    head: &'a AtomicU64,
    /// Ours (next slot we write); only this side stores it.
    tail: &'a AtomicU64,
    slots: *mut u8,
    mask: u64,
    stride: usize,
    /// Our index, as last stored to `tail`.
    pos: u64,
    /// The consumer's index as last read: at least this much is free.
    head_cache: u64,
}

/// The consumer of a Lamport ring.
pub(super) struct LamportRx<'a> {
    head: &'a AtomicU64,
    tail: &'a AtomicU64,
    slots: *mut u8,
    mask: u64,
    stride: usize,
    pos: u64,
    /// The producer's index as last read: at least this much is ready.
    tail_cache: u64,
}

/// Splits `mem` (zeroed, 128-byte aligned, `lamport_bytes(cap, stride)`
/// long) into the two halves of a ring of `cap` (a power of two) slots of
/// `stride` bytes. A forked child takes one half with it.
pub(super) fn lamport(mem: &mut [u8], cap: u64, stride: usize) -> (LamportTx<'_>, LamportRx<'_>) {
    assert!(cap.is_power_of_two() && stride > 0);
    assert!(mem.len() as u64 >= lamport_bytes(cap, stride));
    assert!(mem.as_ptr().addr().is_multiple_of(PAD));
    let base = mem.as_mut_ptr();
    // SAFETY: both words are in bounds, 8-byte aligned, zeroed (a valid
    // AtomicU64), and only ever accessed atomically, by both processes; the
    // halves borrow `mem`, so the mapping outlives them.
    let (head, tail) = unsafe {
        (
            &*base.cast::<AtomicU64>(),
            &*base.add(PAD).cast::<AtomicU64>(),
        )
    };
    // SAFETY: in bounds (checked above).
    let slots = unsafe { base.add(2 * PAD) };
    let mask = cap - 1;
    let tx = LamportTx {
        head,
        tail,
        slots,
        mask,
        stride,
        pos: 0,
        head_cache: 0,
    };
    let rx = LamportRx {
        head,
        tail,
        slots,
        mask,
        stride,
        pos: 0,
        tail_cache: 0,
    };
    (tx, rx)
}

impl LamportTx<'_> {
    /// Up to `want` free slots; re-reads the consumer's index only when the
    /// cached copy says there are fewer.
    #[inline]
    fn free(&mut self, want: u64) -> u64 {
        let cap = self.mask + 1;
        if cap - (self.pos - self.head_cache) < want {
            // Acquire: pairs with the consumer's Release store of `head`, so
            // its reads of the slots it gave back happen before we overwrite
            // them.
            self.head_cache = self.head.load(Ordering::Acquire);
        }
        (cap - (self.pos - self.head_cache)).min(want)
    }

    #[inline]
    fn publish(&mut self, n: u64) {
        self.pos += n;
        // Release: our slot writes happen before the consumer's Acquire load
        // that sees this index.
        self.tail.store(self.pos, Ordering::Release);
    }

    /// Pushes `v` (a u64 ring: `stride` 8); false when full.
    #[inline]
    pub(super) fn try_push(&mut self, v: u64) -> bool {
        debug_assert_eq!(self.stride, 8);
        if self.free(1) == 0 {
            return false;
        }
        // SAFETY: the slot is in bounds (masked index) and 8-byte aligned;
        // `free` says the consumer is done with it and will not read it until
        // `publish`.
        unsafe {
            self.slots
                .cast::<u64>()
                .add((self.pos & self.mask) as usize)
                .write(v)
        };
        self.publish(1);
        true
    }

    /// Pushes as many of `vs` as fit with one index store; returns how many.
    #[inline]
    pub(super) fn push_slice(&mut self, vs: &[u64]) -> usize {
        debug_assert_eq!(self.stride, 8);
        let n = self.free(vs.len() as u64) as usize;
        let at = (self.pos & self.mask) as usize;
        let first = n.min(self.mask as usize + 1 - at);
        // SAFETY: as in `try_push`, for the `n` free slots from `at`, split
        // at the end of the slot array; `vs` is private memory.
        unsafe {
            let slots = self.slots.cast::<u64>();
            std::ptr::copy_nonoverlapping(vs.as_ptr(), slots.add(at), first);
            std::ptr::copy_nonoverlapping(vs.as_ptr().add(first), slots, n - first);
        }
        if n > 0 {
            self.publish(n as u64);
        }
        n
    }

    /// Copies `src` (at most `stride` bytes) into the next slot; false when
    /// full.
    #[inline]
    pub(super) fn try_push_record(&mut self, src: &[u8]) -> bool {
        debug_assert!(src.len() <= self.stride);
        if self.free(1) == 0 {
            return false;
        }
        // SAFETY: the slot's `stride` bytes are in bounds and free (as in
        // `try_push`); `src` is private memory.
        unsafe {
            let slot = self
                .slots
                .add((self.pos & self.mask) as usize * self.stride);
            std::ptr::copy_nonoverlapping(src.as_ptr(), slot, src.len());
        }
        self.publish(1);
        true
    }
}

impl LamportRx<'_> {
    /// Up to `want` ready slots; re-reads the producer's index only when the
    /// cached copy says there are fewer.
    #[inline]
    fn ready(&mut self, want: u64) -> u64 {
        if self.tail_cache - self.pos < want {
            // Acquire: pairs with the producer's Release store of `tail`: the
            // slots below it are written and visible.
            self.tail_cache = self.tail.load(Ordering::Acquire);
        }
        (self.tail_cache - self.pos).min(want)
    }

    #[inline]
    fn release(&mut self, n: u64) {
        self.pos += n;
        // Release: our reads of the slots happen before the producer, seeing
        // this index (Acquire), overwrites them.
        self.head.store(self.pos, Ordering::Release);
    }

    #[inline]
    pub(super) fn try_pop(&mut self) -> Option<u64> {
        debug_assert_eq!(self.stride, 8);
        if self.ready(1) == 0 {
            return None;
        }
        // SAFETY: in bounds and aligned; published by the producer (`ready`)
        // and not rewritten before `release`.
        let v = unsafe {
            self.slots
                .cast::<u64>()
                .add((self.pos & self.mask) as usize)
                .read()
        };
        self.release(1);
        Some(v)
    }

    /// Takes up to `out.len()` values with one index store; returns how many.
    #[inline]
    pub(super) fn pop_into(&mut self, out: &mut [u64]) -> usize {
        debug_assert_eq!(self.stride, 8);
        let n = self.ready(out.len() as u64) as usize;
        let at = (self.pos & self.mask) as usize;
        let first = n.min(self.mask as usize + 1 - at);
        // SAFETY: as in `try_pop`, for the `n` ready slots from `at`, split
        // at the end of the slot array; `out` is private memory.
        unsafe {
            let slots = self.slots.cast::<u64>();
            std::ptr::copy_nonoverlapping(slots.add(at), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(slots, out.as_mut_ptr().add(first), n - first);
        }
        if n > 0 {
            self.release(n as u64);
        }
        n
    }

    /// Copies the next record into `dst` (at most `stride` bytes); false
    /// when empty.
    #[inline]
    pub(super) fn try_pop_record(&mut self, dst: &mut [u8]) -> bool {
        debug_assert!(dst.len() <= self.stride);
        if self.ready(1) == 0 {
            return false;
        }
        // SAFETY: as in `try_pop`, for the slot's `stride` bytes.
        unsafe {
            let slot = self
                .slots
                .add((self.pos & self.mask) as usize * self.stride);
            std::ptr::copy_nonoverlapping(slot, dst.as_mut_ptr(), dst.len());
        }
        self.release(1);
        true
    }
}

/// One cell of Vyukov's queue: a sequence number saying whose turn the
/// cell is, and the value.
#[repr(C)]
struct Cell {
    seq: AtomicU64,
    value: UnsafeCell<u64>,
}

/// Vyukov's bounded MPMC queue of u64: `[enqueue position: 128][dequeue
/// position: 128][cells of 16 bytes]`. Every producer and consumer uses the
/// same handle (a forked child takes a copy).
#[derive(Clone, Copy)]
pub(super) struct Vyukov<'a> {
    enqueue: &'a AtomicU64,
    dequeue: &'a AtomicU64,
    cells: &'a [Cell],
    mask: u64,
}

pub(super) fn vyukov_bytes(cap: u64) -> u64 {
    (2 * PAD as u64 + cap * size_of::<Cell>() as u64).next_multiple_of(4096)
}

/// Lays a queue of `cap` (a power of two) cells over `mem` (zeroed, 128-byte
/// aligned, `vyukov_bytes(cap)` long).
pub(super) fn vyukov(mem: &mut [u8], cap: u64) -> Vyukov<'_> {
    assert!(cap.is_power_of_two());
    assert!(mem.len() as u64 >= vyukov_bytes(cap));
    assert!(mem.as_ptr().addr().is_multiple_of(PAD));
    let base = mem.as_mut_ptr();
    // SAFETY: in bounds, aligned, zeroed (valid atomics and u64s); the
    // positions and sequence numbers are only accessed atomically, a value
    // only by the side its sequence number hands it to; `mem` outlives 'a.
    let q = unsafe {
        Vyukov {
            enqueue: &*base.cast::<AtomicU64>(),
            dequeue: &*base.add(PAD).cast::<AtomicU64>(),
            cells: std::slice::from_raw_parts(base.add(2 * PAD).cast::<Cell>(), cap as usize),
            mask: cap - 1,
        }
    };
    for (i, c) in q.cells.iter().enumerate() {
        // Relaxed: set before the fork; no other process exists yet.
        c.seq.store(i as u64, Ordering::Relaxed);
    }
    q
}

impl Vyukov<'_> {
    /// Enqueues `v`; false when full.
    #[inline]
    pub(super) fn try_push(&self, v: u64) -> bool {
        let mut pos = self.enqueue.load(Ordering::Relaxed);
        let cell = loop {
            let cell = &self.cells[(pos & self.mask) as usize];
            // Acquire: pairs with the Release store of the consumer that
            // emptied the cell: its read of the value happens before our write.
            let seq = cell.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as i64;
            if diff == 0 {
                // Relaxed: the CAS only claims the cell; `seq` orders the data.
                match self.enqueue.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break cell,
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                return false; // a lap behind: full
            } else {
                pos = self.enqueue.load(Ordering::Relaxed);
            }
        };
        // SAFETY: the CAS made this cell ours until the store below.
        unsafe { cell.value.get().write(v) };
        // Release: the value is written before a consumer sees seq = pos + 1.
        cell.seq.store(pos + 1, Ordering::Release);
        true
    }

    /// Dequeues a value; `None` when empty.
    #[inline]
    pub(super) fn try_pop(&self) -> Option<u64> {
        let mut pos = self.dequeue.load(Ordering::Relaxed);
        let cell = loop {
            let cell = &self.cells[(pos & self.mask) as usize];
            // Acquire: pairs with the producer's Release store: its value is
            // visible.
            let seq = cell.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos + 1) as i64;
            if diff == 0 {
                match self.dequeue.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break cell,
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                return None; // not written yet: empty
            } else {
                pos = self.dequeue.load(Ordering::Relaxed);
            }
        };
        // SAFETY: the CAS made this cell ours until the store below.
        let v = unsafe { cell.value.get().read() };
        // Release: our read happens before a producer a lap later reuses it.
        cell.seq.store(pos + self.mask + 1, Ordering::Release);
        Some(v)
    }
}

/// Calls `f` until it gives a value, waiting by `relax`; `None` after
/// 2^24 waits (seconds of yielding): the other process is gone.
fn spin_on<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let mut spins = 0;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        relax(&mut spins);
        if spins > 1 << 24 {
            return None;
        }
    }
}

fn power_of_two(cap: u64) -> Result<u64, Error> {
    if cap.is_power_of_two() {
        Ok(cap)
    } else {
        Err(err(format!("capacity {cap} must be a power of two")))
    }
}

/// Round trips of a u64 through two textbook rings of 64 slots (as
/// `ring_rtt` does with shmring's): we push to "ping", the child echoes
/// into "pong".
pub(super) fn textbook_rtt(dur: Duration, pinned: bool) -> Result<Vec<u64>, Error> {
    let one = lamport_bytes(64, 8) as usize;
    let (mut map, _file) = shared_mapping("textbook-rtt", 2 * one as u64)?;
    let (ping, pong) = map.split_at_mut(one);
    let (mut ping_tx, mut ping_rx) = lamport(ping, 64, 8);
    let (mut pong_tx, mut pong_rx) = lamport(pong, 64, 8);
    let child = fork(pinned, move || {
        while let Some(v) = spin_on(|| ping_rx.try_pop()) {
            if spin_on(|| pong_tx.try_push(v).then_some(())).is_none() {
                return;
            }
        }
    })?;
    let p = time_rtts(dur, |i| {
        spin_on(|| ping_tx.try_push(i).then_some(())).expect("textbook push");
        assert_eq!(spin_on(|| pong_rx.try_pop()), Some(i), "textbook pop");
    });
    drop(child);
    Ok(p)
}

/// Textbook SPSC u64 messages per second across processes, measured as
/// `spsc_throughput` measures shmring's (`batch` 1: one by one, else
/// slices).
pub(super) fn textbook_throughput(
    dur: Duration,
    pinned: bool,
    batch: usize,
    cap: u64,
) -> Result<f64, Error> {
    let cap = power_of_two(cap)?;
    let (mut map, _file) = shared_mapping(&format!("textbook-tp{batch}"), lamport_bytes(cap, 8))?;
    let (mut tx, mut rx) = lamport(&mut map, cap, 8);
    let child = fork(pinned, move || {
        send_u64s(dur, batch, |b| {
            let n = if batch == 1 {
                usize::from(tx.try_push(b[0]))
            } else {
                tx.push_slice(b)
            };
            if n == 0 {
                Err(TryPushError::Full(()))
            } else {
                Ok(n)
            }
        });
    })?;
    let mut out = vec![0u64; batch];
    let rate = count_for(dur, |spins| {
        let n = if batch == 1 {
            rx.try_pop().map_or(0, |v| {
                std::hint::black_box(v);
                1
            })
        } else {
            rx.pop_into(std::hint::black_box(&mut out))
        };
        if n == 0 {
            relax(spins);
        }
        n as u64
    });
    drop(child);
    Ok(rate)
}

/// Textbook Vyukov queue, one producer process and one consumer, u64 one
/// by one, measured as `mpmc_throughput` measures shmring's.
pub(super) fn textbook_mpmc_throughput(
    dur: Duration,
    pinned: bool,
    cap: u64,
) -> Result<f64, Error> {
    let cap = power_of_two(cap)?;
    let (mut map, _file) = shared_mapping("textbook-mpmc", vyukov_bytes(cap))?;
    let q = vyukov(&mut map, cap);
    let child = fork(pinned, move || {
        send_u64s(dur, 1, |b| {
            if q.try_push(b[0]) {
                Ok(1)
            } else {
                Err(TryPushError::Full(()))
            }
        });
    })?;
    let rate = count_for(dur, |spins| match q.try_pop() {
        Some(v) => {
            std::hint::black_box(v);
            1
        }
        None => {
            relax(spins);
            0
        }
    });
    drop(child);
    Ok(rate)
}

/// Textbook ring of `size`-byte records (slots rounded up to 64 bytes, the
/// byte budget of `frames_throughput`'s ring), `memcpy` in on one core and
/// out on the other: the cross-core copy limit. Records per second.
pub(super) fn textbook_records_throughput(
    dur: Duration,
    pinned: bool,
    size: usize,
) -> Result<f64, Error> {
    let stride = size.next_multiple_of(64);
    let budget = (size as u64 * 64).next_power_of_two().max(1 << 16);
    let slots = (budget / stride as u64).max(2);
    let cap = if slots.is_power_of_two() {
        slots
    } else {
        slots.next_power_of_two() / 2
    };
    let (mut map, _file) = shared_mapping("textbook-records", lamport_bytes(cap, stride))?;
    let (mut tx, mut rx) = lamport(&mut map, cap, stride);
    let child = fork(pinned, move || {
        let src = vec![0x5au8; size];
        let end = send_window(dur);
        while Instant::now() < end {
            for _ in 0..256 {
                if !tx.try_push_record(&src) {
                    std::hint::spin_loop();
                }
            }
        }
    })?;
    let mut dst = vec![0u8; size];
    let count = count_for(dur, |spins| {
        if rx.try_pop_record(&mut dst) {
            1
        } else {
            relax(spins);
            0
        }
    });
    std::hint::black_box(&dst);
    drop(child);
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moves a ring half to another thread (the bench moves it to another
    /// process instead).
    struct Sendable<T>(T);
    // SAFETY: each half (and each Vyukov handle) is used by one thread at a
    // time, and the memory it points to outlives the scoped threads.
    unsafe impl<T> Send for Sendable<T> {}

    fn mem(len: u64) -> memmap2::MmapMut {
        memmap2::MmapMut::map_anon(len as usize).unwrap()
    }

    #[test]
    fn lamport_keeps_order_across_wraps_one_by_one_and_in_batches() {
        const N: u64 = 200_000;
        let mut m = mem(lamport_bytes(8, 8));
        let (tx, mut rx) = lamport(&mut m, 8, 8);
        let tx = Sendable(tx);
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut tx = tx;
                let mut next = 0;
                while next < N {
                    if next % 3 == 0 {
                        next += u64::from(tx.0.try_push(next));
                    } else {
                        let batch: Vec<u64> = (next..N.min(next + 5)).collect();
                        next += tx.0.push_slice(&batch) as u64;
                    }
                }
            });
            let mut out = [0u64; 3];
            let mut want = 0;
            while want < N {
                if want % 2 == 0 {
                    if let Some(v) = rx.try_pop() {
                        assert_eq!(v, want);
                        want += 1;
                    }
                } else {
                    let n = rx.pop_into(&mut out);
                    for &v in &out[..n] {
                        assert_eq!(v, want);
                        want += 1;
                    }
                }
            }
        });
    }

    #[test]
    fn records_arrive_whole_and_in_order() {
        let mut m = mem(lamport_bytes(4, 128));
        let (tx, mut rx) = lamport(&mut m, 4, 128);
        let tx = Sendable(tx);
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut tx = tx;
                for i in 0..20_000u32 {
                    let rec = [i as u8; 100];
                    while !tx.0.try_push_record(&rec) {}
                }
            });
            let mut dst = [0u8; 100];
            for i in 0..20_000u32 {
                while !rx.try_pop_record(&mut dst) {}
                assert_eq!(dst, [i as u8; 100]);
            }
        });
    }

    #[test]
    fn vyukov_delivers_every_value_once_with_two_producers() {
        const N: u64 = 100_000;
        let mut m = mem(vyukov_bytes(16));
        let q = vyukov(&mut m, 16);
        std::thread::scope(|s| {
            for p in 0..2 {
                let q = Sendable(q);
                s.spawn(move || {
                    let q = q;
                    for i in 0..N {
                        while !q.0.try_push(i * 2 + p) {}
                    }
                });
            }
            let mut last = [None::<u64>; 2];
            for _ in 0..2 * N {
                let v = loop {
                    if let Some(v) = q.try_pop() {
                        break v;
                    }
                };
                // Each producer's values come out in its order.
                let p = (v % 2) as usize;
                assert!(last[p].is_none_or(|l| l < v), "{v} after {last:?}");
                last[p] = Some(v);
            }
            assert_eq!(q.try_pop(), None);
        });
    }
}
