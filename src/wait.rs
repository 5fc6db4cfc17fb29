//! Blocking without burning a core: wait strategies and the eventcount.
//!
//! Each direction of a ring has a *wait line* in the segment: a 32-bit
//! sequence word that sleepers wait on with `FUTEX_WAIT` (shared, not
//! private: the sleepers are in other processes), a waiter count beside it,
//! and counters for `stat`.
//!
//! The protocol (no lost wake-ups):
//!
//! * a **sleeper** reads the sequence (its key), registers in the waiter
//!   count, issues a SeqCst fence, re-checks its condition (data or space),
//!   and only then waits while the sequence still equals its key;
//! * a **publisher** makes its data visible (release store of its index),
//!   issues a SeqCst fence, and reads the waiter count: only if it is
//!   non-zero does it bump the sequence and call `FUTEX_WAKE`.
//!
//! The two fences order "publish, then check waiters" against "register,
//! then check data": at least one side sees the other, so either the sleeper
//! finds the data or the publisher finds the sleeper. A ring with no sleepers
//! therefore makes no system call per message. A loom model checks it, with
//! the futex emulated by a mutex and condition variable.

use std::time::{Duration, Instant};

use crate::layout::WaitLine;
use crate::sync::atomic::{AtomicU32, Ordering};

/// How a blocking call waits when the ring is empty (or full).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Busy-spin with `spin_loop` hints: lowest latency, burns a core.
    Spin,
    /// Spin briefly, then `sched_yield` between polls: gives the core to
    /// other runnable threads, still never sleeps.
    Yield,
    /// Spin for up to `spin` (measured on the monotonic clock), then sleep on
    /// the ring's futex until woken. Idle rings cost no CPU.
    Park {
        /// How long to spin before sleeping.
        spin: Duration,
    },
    /// The default: spin, then yield, then park, with the spin window
    /// learned from how this thread's recent waits ended (see
    /// [`adaptive`]): it stays at spinning latency while spinning pays (a
    /// peer on another core), shrinks to a yield at once when only yielding
    /// pays (a peer sharing this core, which a spinner would starve), and
    /// grows again when the peer answers just after a park. Idle rings
    /// sleep and cost no CPU.
    Adaptive,
}

impl Default for WaitStrategy {
    /// [`WaitStrategy::Adaptive`].
    fn default() -> Self {
        WaitStrategy::Adaptive
    }
}

/// The learning behind [`WaitStrategy::Adaptive`]: one spin window per
/// thread (the thread's placement is what matters: whether its peers run on
/// other cores), adjusted after every wait that was not satisfied at once.
///
/// * satisfied while spinning, after `t`: spinning pays; the window grows
///   to at least `4t` (it never shrinks here);
/// * satisfied while yielding: the peer ran when we gave up the core, so it
///   probably shares it; the window halves (down to [`MIN_SPIN`]);
/// * satisfied within [`SHORT_PARK`] after parking: the peer answered just
///   after we gave up; the window doubles (up to [`MAX_SPIN`]).
///
/// A wait spins for the window, then yields the core between polls for
/// [`YIELD_FOR`], then parks on the futex. A single yield that took
/// [`LONG_YIELD`] or more handed the core to a third task for its time
/// slice (a busy machine: the peer itself answers in microseconds), where a
/// parked waiter would have been woken at once: the wait parks right away,
/// and the thread's next [`SKIP_YIELDS`] waits go from spinning straight to
/// parking. On a busy 2-vCPU machine (two CPU hogs, the pair unpinned; two
/// bench runs each, 2026-12-07) this
/// took the adaptive default's mean round trip from 6-31x the best fixed
/// strategy's to 0.6-0.7x; with both processes on one core (no third task)
/// yields stay short and nothing changes.
pub mod adaptive {
    use std::cell::Cell;
    use std::time::Duration;

    /// Shortest spin window.
    pub const MIN_SPIN: Duration = Duration::from_micros(1);
    /// Longest spin window (and the first one).
    pub const MAX_SPIN: Duration = Duration::from_micros(50);
    /// How long a wait yields between polls before it parks.
    pub const YIELD_FOR: Duration = Duration::from_micros(100);
    /// A park that ends this soon counts as "the peer answered just after".
    pub const SHORT_PARK: Duration = Duration::from_micros(200);
    /// A single yield that lasts this long gave the core to a third task
    /// for its time slice (the peer answering takes microseconds): then
    /// parking, which a wake-up ends at once, beats yielding.
    pub const LONG_YIELD: Duration = Duration::from_micros(500);
    /// How many waits skip the yield phase after a long yield.
    pub const SKIP_YIELDS: u32 = 256;

    thread_local! {
        static SPIN: Cell<Duration> = const { Cell::new(MAX_SPIN) };
        static SKIP: Cell<u32> = const { Cell::new(0) };
    }

    /// How long this wait yields: [`YIELD_FOR`], or nothing for the
    /// [`SKIP_YIELDS`] waits after a long yield.
    pub(crate) fn yield_for() -> Duration {
        SKIP.with(|s| match s.get() {
            0 => YIELD_FOR,
            n => {
                s.set(n - 1);
                Duration::ZERO
            }
        })
    }

    /// A yield lasted [`LONG_YIELD`] or more.
    pub(crate) fn long_yield() {
        SKIP.with(|s| s.set(SKIP_YIELDS));
    }

    /// Where a wait was satisfied.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Phase {
        Spin,
        Yield,
        Park,
    }

    /// This thread's spin window now.
    pub fn spin_window() -> Duration {
        SPIN.with(Cell::get)
    }

    /// Learns from a wait satisfied in `phase` after `waited` (of which
    /// `parked` asleep).
    pub(crate) fn learn(phase: Phase, waited: Duration, parked: Duration) {
        SPIN.with(|spin| {
            let now = spin.get();
            let next = match phase {
                Phase::Spin => now.max(waited.saturating_mul(4)),
                Phase::Yield => now / 2,
                Phase::Park if parked <= SHORT_PARK => now.saturating_mul(2),
                Phase::Park => now,
            };
            spin.set(next.clamp(MIN_SPIN, MAX_SPIN));
        });
    }
}

/// Longest single sleep: a sleeper wakes at least this often to check
/// whether its peer is still alive (a killed peer cannot wake it).
pub const PEER_CHECK_INTERVAL: Duration = Duration::from_millis(100);

pub use crate::layout::WaitCounters;

/// One direction's eventcount: its wait line, and its waiter count, which
/// lives on the publisher's own index line (the line it writes for every
/// message anyway), so checking it is an L1 hit; a sleeper writes it only
/// when it goes to sleep.
#[derive(Clone, Copy)]
pub(crate) struct Event<'a> {
    pub(crate) line: &'a WaitLine,
    /// Number of sleepers registered (or about to sleep).
    pub(crate) waiters: &'a AtomicU32,
}

impl Event<'_> {
    /// Called by a publisher right after its release store of the index.
    /// Costs a compiler fence and one load from its own line when nobody
    /// sleeps; a `FUTEX_WAKE` only when someone does.
    #[inline]
    pub(crate) fn notify(&self) {
        // Orders our index store before the load of `waiters`, pairing with
        // the sleeper's barrier between registering and checking: in a
        // process registered for membarrier this is only a compiler fence
        // (the sleeper's membarrier supplies the CPU barrier); otherwise a
        // full SeqCst fence.
        barrier::light();
        // Acquire: if we see a sleeper's registration, its key load (made
        // before registering) happens-before our bump, so it cannot have
        // read the bumped value and then miss the wake.
        if self.waiters.load(Ordering::Acquire) != 0 {
            self.wake();
        }
    }

    /// Bumps the sequence and wakes every sleeper (also used on detach).
    #[cold]
    pub(crate) fn wake(&self) {
        // Release: a woken sleeper that reads the new value sees our data.
        self.line.seq.fetch_add(1, Ordering::Release);
        self.line.wakeups.fetch_add(1, Ordering::Relaxed);
        futex::wake(&self.line.seq);
    }

    /// Registers a sleeper; returns the key to sleep on. The caller must
    /// re-check its condition after this and call [`Event::unregister`]
    /// afterwards, whatever happens.
    pub(crate) fn register(&self) -> u32 {
        // Acquire: pairs with the publisher's release bump.
        let key = self.line.seq.load(Ordering::Acquire);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        // Orders the registration before the caller's re-check of the index
        // (pairs with `barrier::light` in `notify`): a SeqCst fence here, and
        // a membarrier that makes every publisher's CPU execute one too.
        barrier::heavy();
        key
    }

    /// Registers without the barrier; the caller issues one
    /// `barrier::heavy()` after registering on every event it waits for.
    #[cfg(not(loom))]
    fn register_quiet(&self) -> u32 {
        // Acquire: pairs with the publisher's release bump.
        let key = self.line.seq.load(Ordering::Acquire);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        key
    }

    /// Undoes [`Event::register`].
    pub(crate) fn unregister(&self) {
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Sleeps while the sequence equals `key`, at most `timeout`.
    pub(crate) fn sleep(&self, key: u32, timeout: Duration) {
        self.line.sleeps.fetch_add(1, Ordering::Relaxed);
        futex::wait(&self.line.seq, key, timeout);
    }

    /// Counts a sleep that found nothing to do.
    pub(crate) fn spurious(&self) {
        self.line.spurious.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters.
    pub(crate) fn counters(&self) -> WaitCounters {
        WaitCounters {
            wakeups: self.line.wakeups.load(Ordering::Relaxed),
            sleeps: self.line.sleeps.load(Ordering::Relaxed),
            spurious: self.line.spurious.load(Ordering::Relaxed),
            waiters: self.waiters.load(Ordering::Relaxed),
        }
    }
}

/// An opaque handle on a ring's "data available" event, for [`select`].
#[cfg(not(loom))]
pub struct ReadyEvent<'a>(pub(crate) Event<'a>);

#[cfg(not(loom))]
impl std::fmt::Debug for ReadyEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadyEvent")
    }
}

/// A ring handle that [`select`] can wait on: every consumer kind (ready:
/// a message is there), and the producers (ready: there is room), so one
/// `select` can wait for data on some rings and for space on others.
#[cfg(not(loom))]
pub trait Selectable {
    /// Is a message ready (or the ring finished: producer gone and drained,
    /// or corrupted), without taking anything? The next pop or read says
    /// which.
    fn is_ready(&mut self) -> bool;
    /// Has the peer gone (checked now, one system call per peer)? For a
    /// consumer its producers, for a producer its consumers.
    fn producer_gone(&self) -> bool;
    /// The event `select` sleeps on.
    fn ready_event(&self) -> ReadyEvent<'_>;
}

/// Most rings one `select` call waits on (the kernel's `futex_waitv` limit).
#[cfg(not(loom))]
pub const SELECT_MAX: usize = 128;

/// Waits until any of `rings` is ready (see [`Selectable::is_ready`]) and
/// returns its index; `None` when `timeout` ran out first.
///
/// Spins for 50 µs, then sleeps on all the rings' futexes at once with
/// `futex_waitv` (Linux 5.16 and later). On older kernels it falls back to
/// sleeping on the first ring for at most 1 ms at a time and polling the
/// others in between, which costs up to 1 ms of latency and a wake-up per
/// millisecond while idle. At most [`SELECT_MAX`] rings.
#[cfg(not(loom))]
pub fn select(rings: &mut [&mut dyn Selectable], timeout: Option<Duration>) -> Option<usize> {
    assert!(
        rings.len() <= SELECT_MAX,
        "select takes at most {SELECT_MAX} rings"
    );
    let ready = |rings: &mut [&mut dyn Selectable]| rings.iter_mut().position(|r| r.is_ready());
    if let Some(i) = ready(rings) {
        return Some(i);
    }
    let start = Instant::now();
    let deadline = timeout.map(|t| start + t);
    let spin = Duration::from_micros(50);
    let mut next_peer_check = start + PEER_CHECK_INTERVAL;
    loop {
        if let Some(i) = ready(rings) {
            return Some(i);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return None;
        }
        if now >= next_peer_check {
            next_peer_check = now + PEER_CHECK_INTERVAL;
            if let Some(i) = rings.iter().position(|r| r.producer_gone()) {
                return Some(i);
            }
        }
        if now.duration_since(start) < spin {
            std::hint::spin_loop();
            continue;
        }
        let mut keys = [0u32; SELECT_MAX];
        for (k, r) in keys.iter_mut().zip(rings.iter()) {
            *k = r.ready_event().0.register_quiet();
        }
        barrier::heavy();
        let found = ready(rings);
        if found.is_none() {
            let mut nap = next_peer_check.saturating_duration_since(now);
            if let Some(d) = deadline {
                nap = nap.min(d.saturating_duration_since(now));
            }
            let events: Vec<Event<'_>> = rings.iter().map(|r| r.ready_event().0).collect();
            futex::wait_any(
                &events,
                &keys[..rings.len()],
                nap.max(Duration::from_micros(1)),
            );
        }
        for r in rings.iter() {
            r.ready_event().0.unregister();
        }
        if found.is_some() {
            return found;
        }
    }
}

/// What a poll found.
pub(crate) enum Poll<R> {
    /// Done (a value, or a final error).
    Ready(R),
    /// Nothing yet; wait.
    Pending,
}

/// Runs `poll` until it is ready, waiting by `strategy` in between, for at
/// most `timeout` (`None`: no limit); `Err(())` when the timeout ran out.
/// `poll(true)` is called at least every [`PEER_CHECK_INTERVAL`] of waiting:
/// that is when it should check whether its peer died (a dead peer cannot
/// wake us).
pub(crate) fn block_on<R>(
    line: Event<'_>,
    strategy: WaitStrategy,
    timeout: Option<Duration>,
    mut poll: impl FnMut(bool) -> Poll<R>,
) -> Result<R, ()> {
    // Fast path: no clock read when the first poll succeeds.
    if let Poll::Ready(r) = poll(false) {
        return Ok(r);
    }
    let start = Instant::now();
    let deadline = timeout.map(|t| start + t);
    let mut next_peer_check = start + PEER_CHECK_INTERVAL;
    let adaptive = strategy == WaitStrategy::Adaptive;
    // (spin until, then yield until; then park)
    let (spin_for, mut yield_until) = match strategy {
        WaitStrategy::Park { spin } => (spin, spin),
        WaitStrategy::Adaptive => {
            let spin = adaptive::spin_window();
            (spin, spin + adaptive::yield_for())
        }
        WaitStrategy::Spin | WaitStrategy::Yield => (Duration::MAX, Duration::MAX),
    };
    // What an adaptive wait learns from, once satisfied: the phase, and
    // the time waited as of the last clock read (no extra read on the
    // fast path: a wait satisfied before the first one teaches nothing).
    let mut phase = adaptive::Phase::Spin;
    let mut parked = Duration::ZERO;
    let mut waited = Duration::ZERO;
    let done = |phase: adaptive::Phase, waited: Duration, parked: Duration| {
        if adaptive && !waited.is_zero() {
            adaptive::learn(phase, waited, parked);
        }
    };
    let mut polls: u32 = 0;
    loop {
        if let Poll::Ready(r) = poll(false) {
            done(phase, waited, parked);
            return Ok(r);
        }
        polls = polls.wrapping_add(1);
        // Read the clock only every 64 polls while spinning (every poll
        // while yielding: the yield costs far more).
        if phase == adaptive::Phase::Yield {
            let t = Instant::now();
            std::thread::yield_now();
            if adaptive && t.elapsed() >= adaptive::LONG_YIELD {
                // A third task had the core: park from now on.
                adaptive::long_yield();
                yield_until = Duration::ZERO;
            }
        } else if !polls.is_multiple_of(64) {
            match strategy {
                WaitStrategy::Yield if polls > 256 => std::thread::yield_now(),
                _ => std::hint::spin_loop(),
            }
            continue;
        }
        let now = Instant::now();
        let check_peer = now >= next_peer_check;
        if check_peer {
            next_peer_check = now + PEER_CHECK_INTERVAL;
            if let Poll::Ready(r) = poll(true) {
                done(phase, waited, parked);
                return Ok(r);
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            return Err(());
        }
        waited = now.duration_since(start);
        if waited < spin_for {
            continue;
        }
        if waited < yield_until {
            phase = adaptive::Phase::Yield;
            continue;
        }
        // Park: register, re-check, sleep while nothing changed.
        let key = line.register();
        if let Poll::Ready(r) = poll(false) {
            line.unregister();
            done(phase, waited, parked);
            return Ok(r);
        }
        let mut nap = next_peer_check.saturating_duration_since(now);
        if let Some(d) = deadline {
            nap = nap.min(d.saturating_duration_since(now));
        }
        line.sleep(key, nap.max(Duration::from_micros(1)));
        line.unregister();
        phase = adaptive::Phase::Park;
        let slept = now.elapsed();
        parked += slept;
        waited += slept;
        if let Poll::Ready(r) = poll(false) {
            done(phase, waited, parked);
            return Ok(r);
        }
        if line.line.seq.load(Ordering::Relaxed) == key {
            // Woken (or timed out) with the sequence unchanged and nothing
            // to do: spurious, or a periodic wake-up.
            line.spurious();
        }
    }
}

/// Asymmetric barriers: publishers, on the hot path, pay only a compiler
/// fence; sleepers, rarely, pay a `membarrier` system call that forces a
/// full barrier on every CPU running a registered process.
#[cfg(not(loom))]
pub(crate) mod barrier {
    use std::sync::Once;
    use std::sync::atomic::{AtomicBool, Ordering, compiler_fence, fence};

    const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
    const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
    const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

    /// True until this process registered for expedited membarriers; while
    /// true, `light` is a full fence (correct whatever the sleeper does).
    static PUBLISHER_NEEDS_FENCE: AtomicBool = AtomicBool::new(true);
    /// Whether `heavy` may issue the expedited global membarrier.
    static SLEEPER_CAN_MEMBARRIER: AtomicBool = AtomicBool::new(false);
    static INIT: Once = Once::new();

    /// The membarrier result, or -1 when the call failed (unsupported:
    /// the barriers then stay full fences).
    fn membarrier(cmd: libc::c_int) -> libc::c_long {
        crate::sys::membarrier(cmd).unwrap_or(-1)
    }

    /// Registers this process (once). Called when a ring side attaches.
    pub(crate) fn init() {
        INIT.call_once(|| {
            let supported = membarrier(MEMBARRIER_CMD_QUERY);
            if supported < 0 || supported & libc::c_long::from(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0
            {
                return;
            }
            SLEEPER_CAN_MEMBARRIER.store(true, Ordering::Relaxed);
            if membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0 {
                PUBLISHER_NEEDS_FENCE.store(false, Ordering::Relaxed);
            }
        });
    }

    /// The publisher's side.
    #[inline]
    pub(crate) fn light() {
        if PUBLISHER_NEEDS_FENCE.load(Ordering::Relaxed) {
            fence(Ordering::SeqCst);
        } else {
            compiler_fence(Ordering::SeqCst);
        }
    }

    /// The sleeper's side.
    pub(crate) fn heavy() {
        fence(Ordering::SeqCst);
        if SLEEPER_CAN_MEMBARRIER.load(Ordering::Relaxed) {
            membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
        }
    }
}

/// Under loom both sides use a SeqCst fence (loom cannot model
/// membarrier); the model checks the protocol's pairing.
#[cfg(loom)]
pub(crate) mod barrier {
    use crate::sync::atomic::{Ordering, fence};

    pub(crate) fn init() {}

    pub(crate) fn light() {
        fence(Ordering::SeqCst);
    }

    pub(crate) fn heavy() {
        fence(Ordering::SeqCst);
    }
}

/// Raw shared futex operations, exposed for baselines (`shmring bench`
/// measures a bare futex ping-pong next to the rings). Not needed to use
/// the rings.
#[cfg(not(loom))]
#[doc(hidden)]
pub mod raw {
    use std::time::Duration;

    use crate::sync::atomic::AtomicU32;

    /// Sleeps while `word == expected`, at most `timeout` (re-check after).
    pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
        super::futex::wait(word, expected, timeout);
    }

    /// Wakes every sleeper on `word`.
    pub fn wake(word: &AtomicU32) {
        super::futex::wake(word);
    }
}

/// The futex operations the wait logic needs, over [`crate::sys`]. Every
/// wait outcome (woken, value changed, timed out, interrupted) means the
/// same here: re-check the condition.
#[cfg(not(loom))]
mod futex {
    use std::time::Duration;

    use crate::sync::atomic::AtomicU32;
    use crate::sys;

    /// Sleeps while `word == expected`, at most `timeout`. An unexpected
    /// error (a bad address cannot happen: the word is borrowed) is
    /// logged; the caller's loop re-checks either way.
    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
        if let Err(e) = sys::futex_wait(word, expected, timeout) {
            log::debug!("futex wait failed: {e}");
        }
    }

    /// Sleeps until any event's sequence differs from its key, or a wake,
    /// or `timeout`. `futex_waitv` where the kernel has it; otherwise a
    /// wait of at most 1 ms on the first event (the caller polls the rest).
    pub(super) fn wait_any(events: &[super::Event<'_>], keys: &[u32], timeout: Duration) {
        for e in events {
            e.line
                .sleeps
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let words: Vec<(&AtomicU32, u32)> = events
            .iter()
            .zip(keys)
            .map(|(e, &k)| (&e.line.seq, k))
            .collect();
        match sys::futex_waitv(&words, timeout) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                if let Some(&(w, k)) = words.first() {
                    wait(w, k, timeout.min(Duration::from_millis(1)));
                }
            }
            Err(e) => log::debug!("futex_waitv failed: {e}"),
        }
    }

    /// Wakes every sleeper on `word`.
    pub(super) fn wake(word: &AtomicU32) {
        if let Err(e) = sys::futex_wake(word) {
            log::debug!("futex wake failed: {e}");
        }
    }
}

#[cfg(loom)]
mod futex {
    //! The futex, emulated for loom: the value check and the sleep happen
    //! under one mutex that `wake` also takes, which is exactly the futex's
    //! "compare and block atomically with respect to wake". Timeouts are
    //! ignored, so a lost wake-up is a deadlock loom reports.
    use std::time::Duration;

    use crate::sync::atomic::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        static ref LOCK: Mutex<()> = Mutex::new(());
        static ref COND: Condvar = Condvar::new();
    }

    pub(super) fn wait(word: &AtomicU32, expected: u32, _timeout: Duration) {
        // Never poisoned: no model thread panics while holding the lock.
        let guard = LOCK.lock().expect("futex emulation lock");
        if word.load(Ordering::Relaxed) == expected {
            drop(COND.wait(guard).expect("futex emulation lock"));
        }
    }

    pub(super) fn wake(_word: &AtomicU32) {
        let _guard = LOCK.lock().expect("futex emulation lock");
        COND.notify_all();
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_models`
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    struct Shared {
        line: WaitLine,
        waiters: AtomicU32,
        data: AtomicU32,
    }

    /// A publisher sets the data and notifies; a sleeper registers,
    /// re-checks and sleeps. With timeouts ignored, a lost wake-up would
    /// leave the sleeper blocked forever: loom reports a deadlock.
    #[test]
    fn eventcount_loses_no_wakeup() {
        loom::model(|| {
            let s = Arc::new(Shared {
                waiters: AtomicU32::new(0),
                line: WaitLine::new_for_model(),
                data: AtomicU32::new(0),
            });
            let s2 = s.clone();
            let publisher = thread::spawn(move || {
                s2.data.store(1, Ordering::Release);
                Event {
                    line: &s2.line,
                    waiters: &s2.waiters,
                }
                .notify();
            });
            let ev = Event {
                line: &s.line,
                waiters: &s.waiters,
            };
            loop {
                if s.data.load(Ordering::Acquire) == 1 {
                    break;
                }
                let key = ev.register();
                if s.data.load(Ordering::Acquire) == 1 {
                    ev.unregister();
                    break;
                }
                ev.sleep(key, Duration::from_secs(1));
                ev.unregister();
            }
            publisher.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod adaptive_tests {
    use super::adaptive::{self, MAX_SPIN, MIN_SPIN, Phase, SHORT_PARK};
    use std::time::Duration;

    /// Each test runs on its own thread, so it starts from the first
    /// window.
    #[test]
    fn the_window_shrinks_when_only_yielding_pays_and_grows_back() {
        assert_eq!(adaptive::spin_window(), MAX_SPIN);
        // A peer on our core: every wait ends while yielding.
        for _ in 0..20 {
            adaptive::learn(Phase::Yield, Duration::from_micros(60), Duration::ZERO);
        }
        assert_eq!(adaptive::spin_window(), MIN_SPIN);
        // Spinning that pays keeps (and widens) the window: 4x the wait.
        adaptive::learn(Phase::Spin, Duration::from_micros(2), Duration::ZERO);
        assert_eq!(adaptive::spin_window(), Duration::from_micros(8));
        adaptive::learn(Phase::Spin, Duration::from_nanos(300), Duration::ZERO);
        assert_eq!(adaptive::spin_window(), Duration::from_micros(8));
        // The peer answering just after a park doubles it, up to the cap.
        adaptive::learn(Phase::Park, Duration::from_micros(150), SHORT_PARK / 2);
        assert_eq!(adaptive::spin_window(), Duration::from_micros(16));
        for _ in 0..10 {
            adaptive::learn(Phase::Park, Duration::from_micros(150), SHORT_PARK / 2);
        }
        assert_eq!(adaptive::spin_window(), MAX_SPIN);
        // A long sleep (an idle ring) teaches nothing.
        adaptive::learn(Phase::Yield, Duration::from_micros(60), Duration::ZERO);
        let before = adaptive::spin_window();
        adaptive::learn(Phase::Park, Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(adaptive::spin_window(), before);
    }
}
