//! The broadcast rows (issue 16): a round trip through two broadcast
//! rings (one each way), and one publisher feeding 1, 2 and 4 reader
//! processes, next to the same number of SPSC rings fed copy by copy (how
//! one fans out without broadcast). Each reader measures its own rate, the
//! publisher its own, over windows that start together.
//!
//! Both fan-outs are lossless: the broadcast ring is `block` without
//! eviction, so its publisher waits for the slowest subscriber as the SPSC
//! producer waits for the fullest ring. A row with more processes than
//! cores waits by yielding instead of spinning (spinning processes sharing
//! a core would wait out each other's time slices), and says so.

use super::*;

use shmring::broadcast::{Overflow, PopError, Publisher, Subscriber};
use shmring::ring::Start;

/// Reader counts of the fan-out rows.
pub(super) const READERS: [u32; 3] = [1, 2, 4];

/// The longest one blocking step waits before the measuring loop looks
/// at the clock again.
const STEP_WAIT: Duration = Duration::from_millis(10);

/// How long a fan-out waits for its readers to attach, or to finish
/// measuring, before it gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// Lossless, like an SPSC ring: the publisher waits for the slowest
/// subscriber, never evicts it.
const LOCKSTEP: Overflow = Overflow::Block { evict_after: None };

/// Round trips through two broadcast rings, one subscriber each: we
/// publish on `ping`, the child echoes on `pong`.
pub(super) fn broadcast_rtt(
    n: &Names,
    strategy: WaitStrategy,
    dur: Duration,
    pinned: bool,
) -> Result<Vec<u64>, Error> {
    let mut tx = n
        .builder::<Publisher<u64>>("bc-ping", strategy)
        .capacity(64)
        .subscribers(1)
        .overflow(LOCKSTEP)
        .create()?;
    let mut rx = n
        .builder::<Subscriber<u64>>("bc-pong", strategy)
        .capacity(64)
        .subscribers(1)
        .overflow(LOCKSTEP)
        .create()?;
    let child = fork(pinned, || {
        let mut rx = n
            .builder::<Subscriber<u64>>("bc-ping", strategy)
            .open()
            .expect("bench child: the parent created the ping ring");
        let mut tx = n
            .builder::<Publisher<u64>>("bc-pong", strategy)
            .open()
            .expect("bench child: the parent created the pong ring");
        while let Ok((_, v)) = rx.pop() {
            if tx.push(v).is_err() {
                return;
            }
        }
    })?;
    let p = time_rtts(dur, |i| {
        assert!(tx.push(i).is_ok(), "bench push");
        assert!(matches!(rx.pop(), Ok((_, v)) if v == i), "bench pop");
    });
    // The child dies first, so that our detach is the last and removes
    // the rings.
    drop(child);
    drop((tx, rx));
    Ok(p)
}

/// What one fan-out measured, in messages per second: the publisher's
/// rate (each message reaching every reader) and each reader's.
#[derive(Clone, Debug)]
pub(super) struct FanRates {
    pub(super) publisher: f64,
    pub(super) readers: Vec<f64>,
}

/// A fan-out row in the report: medians over rounds.
#[derive(Serialize, Clone, Debug)]
pub(super) struct Fanout {
    /// How every process waited: `spin`, or `yield` when there are more
    /// processes than cores.
    pub(super) wait: &'static str,
    /// Processes: the publisher and its readers.
    pub(super) processes: u32,
    /// The publisher's messages per second (the row's value under
    /// `throughput_msgs_per_s`).
    pub(super) publisher: f64,
    /// Each reader's messages per second.
    pub(super) readers: Vec<f64>,
}

/// How a fan-out row with `readers` readers waits: spinning only when
/// every process has a core of its own.
fn strategy(readers: u32, cores: usize, pinned: bool) -> WaitStrategy {
    if pinned && (readers as usize) < cores {
        WaitStrategy::Spin
    } else {
        WaitStrategy::Yield
    }
}

/// The name of a strategy [`strategy`] returns.
fn wait_name(s: WaitStrategy) -> &'static str {
    if s == WaitStrategy::Spin {
        "spin"
    } else {
        "yield"
    }
}

/// The report's fan-out rows from each round's rates.
pub(super) fn fanout_report(
    rounds: BTreeMap<String, Vec<FanRates>>,
    cores: usize,
    pinned: bool,
) -> BTreeMap<String, Fanout> {
    rounds
        .into_iter()
        .filter_map(|(key, runs)| {
            let readers = runs.first()?.readers.len();
            let each = (0..readers)
                .map(|i| {
                    median(
                        runs.iter()
                            .filter_map(|r| r.readers.get(i).copied())
                            .collect(),
                    )
                })
                .collect();
            let row = Fanout {
                wait: wait_name(strategy(readers as u32, cores, pinned)),
                processes: readers as u32 + 1,
                publisher: median(runs.iter().map(|r| r.publisher).collect()),
                readers: each,
            };
            Some((key, row))
        })
        .collect()
}

/// Words of the page the publisher and its readers coordinate through.
const READY: usize = 0;
const GO: usize = 1;
const STOP: usize = 2;
/// Reader `i`'s rate (f64 bits) at `RATE + i`, its "done" flag at
/// `DONE + i`.
const RATE: usize = 8;
const DONE: usize = 16;

/// The readers' side: forks `readers` children (spread over the cores
/// other than ours), each opening its reader with `open(i)` and counting
/// what `pop` takes for `dur` once told to go; the parent publishes with
/// `push` (one message to every reader; false when nothing moved within
/// [`STEP_WAIT`]) over the same window, and keeps publishing until every
/// reader is done.
fn fan_out<R>(
    dur: Duration,
    readers: u32,
    cores: usize,
    pinned: bool,
    open: impl Fn(u32) -> R,
    pop: impl Fn(&mut R) -> bool,
    mut push: impl FnMut(u64) -> bool,
) -> Result<FanRates, Error> {
    let (map, _file) = shared_page("fanout")?;
    // SAFETY: page-aligned and 4096 bytes long (512 u64 words), shared
    // with the children forked below, and accessed only atomically.
    let words: &[AtomicU64] =
        unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<AtomicU64>(), 512) };
    let mut children = Vec::new();
    for i in 0..readers {
        let cpu = pinned.then(|| 1 + i as usize % (cores - 1).max(1));
        let (open, pop) = (&open, &pop);
        children.push(fork_on(cpu, move || {
            let mut reader = open(i);
            words[READY].fetch_add(1, Ordering::AcqRel);
            let patience = Instant::now() + PATIENCE;
            let mut spins = 0;
            while words[GO].load(Ordering::Acquire) == 0 && Instant::now() < patience {
                relax(&mut spins);
            }
            let rate = count_for(dur, |_| u64::from(pop(&mut reader)));
            words[RATE + i as usize].store(rate.to_bits(), Ordering::Relaxed);
            words[DONE + i as usize].store(1, Ordering::Release);
            // Keep reading, so that the publisher is not held up while
            // the other readers finish their windows.
            let patience = Instant::now() + PATIENCE;
            while words[STOP].load(Ordering::Acquire) == 0 && Instant::now() < patience {
                pop(&mut reader);
            }
        })?);
    }
    let patience = Instant::now() + PATIENCE;
    while words[READY].load(Ordering::Acquire) < u64::from(readers) {
        if Instant::now() >= patience {
            return Err(err("bench: fan-out readers did not attach within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    words[GO].store(1, Ordering::Release);
    let mut seq = 0u64;
    let publisher = count_for(dur, |_| {
        seq += 1;
        u64::from(push(seq))
    });
    let done = |i: u32| words[DONE + i as usize].load(Ordering::Acquire) == 1;
    let patience = Instant::now() + PATIENCE;
    while !(0..readers).all(done) {
        if Instant::now() >= patience {
            return Err(err("bench: fan-out readers did not finish within 30 s"));
        }
        seq += 1;
        push(seq);
    }
    words[STOP].store(1, Ordering::Release);
    let readers = (0..readers as usize)
        .map(|i| f64::from_bits(words[RATE + i].load(Ordering::Relaxed)))
        .collect();
    drop(children);
    Ok(FanRates { publisher, readers })
}

/// One fan-out row to measure.
pub(super) struct FanRun<'a> {
    pub(super) n: &'a Names,
    /// Broadcast, or SPSC rings fed copy by copy.
    pub(super) broadcast: bool,
    pub(super) readers: u32,
    /// Slots of each ring.
    pub(super) cap: u64,
    pub(super) dur: Duration,
    pub(super) cores: usize,
    pub(super) pinned: bool,
}

impl FanRun<'_> {
    /// The row's key under `throughput_msgs_per_s` and `fanout`.
    pub(super) fn key(&self) -> String {
        if self.broadcast {
            format!("shmring_broadcast_u64_{}sub", self.readers)
        } else {
            format!("spsc_fanout_u64_{}", self.readers)
        }
    }

    /// Measures the row.
    pub(super) fn measure(&self) -> Result<FanRates, Error> {
        let s = strategy(self.readers, self.cores, self.pinned);
        if self.broadcast {
            broadcast_fanout(self, s)
        } else {
            spsc_fanout(self, s)
        }
    }

    fn run<R>(
        &self,
        open: impl Fn(u32) -> R,
        pop: impl Fn(&mut R) -> bool,
        push: impl FnMut(u64) -> bool,
    ) -> Result<FanRates, Error> {
        let (dur, readers, cores, pinned) = (self.dur, self.readers, self.cores, self.pinned);
        fan_out(dur, readers, cores, pinned, open, pop, push)
    }
}

/// A poll that found nothing (spinning rows poll with `try_*` as the other
/// throughput rows do; the others wait by the rings' strategy): a spin
/// hint, and false.
fn missed() -> bool {
    std::hint::spin_loop();
    false
}

/// One publisher, `readers` subscriber processes, one broadcast ring of
/// `cap` slots.
fn broadcast_fanout(f: &FanRun, s: WaitStrategy) -> Result<FanRates, Error> {
    let FanRun {
        n, readers, cap, ..
    } = *f;
    let tag = format!("bc-fan{readers}");
    let mut tx = n
        .builder::<Publisher<u64>>(&tag, s)
        .capacity(cap)
        .subscribers(readers)
        .overflow(LOCKSTEP)
        .create()?;
    let open = |_| {
        n.builder::<Subscriber<u64>>(&tag, s)
            .start(Start::Oldest)
            .open()
            .expect("bench child: the parent created the ring")
    };
    let spin = s == WaitStrategy::Spin;
    let pop = |rx: &mut Subscriber<u64>| {
        let got = if spin {
            rx.try_pop().map_err(PopError::from)
        } else {
            rx.pop_timeout(Some(STEP_WAIT))
        };
        match got {
            Ok((_, v)) => {
                std::hint::black_box(v);
                true
            }
            Err(PopError::Timeout | PopError::Disconnected) => missed(),
            Err(e) => panic!("bench: broadcast subscriber failed: {e}"),
        }
    };
    let push = |v: u64| {
        if spin {
            match tx.try_push(v) {
                Ok(_) => true,
                Err(TryPushError::Full(_)) => missed(),
                Err(e) => panic!("bench: broadcast publisher failed: {e}"),
            }
        } else {
            match tx.push_timeout(v, Some(STEP_WAIT)) {
                Ok(_) => true,
                Err(shmring::ring::PushError::Timeout(_)) => false,
                Err(e) => panic!("bench: broadcast publisher failed: {e}"),
            }
        }
    };
    f.run(open, pop, push)
}

/// One producer feeding `readers` SPSC rings of `cap` slots, each message
/// pushed into every ring, one consumer process per ring.
fn spsc_fanout(f: &FanRun, s: WaitStrategy) -> Result<FanRates, Error> {
    let FanRun {
        n, readers, cap, ..
    } = *f;
    let tag = |i: u32| format!("spsc-fan{readers}-{i}");
    let mut txs = Vec::new();
    for i in 0..readers {
        let mut tx = Producer::<u64>::attach(n.seg(&tag(i), &spsc::layout::<u64>(cap)?)?)?;
        tx.set_wait_strategy(s);
        txs.push(tx);
    }
    let open = |i| {
        let mut rx = Consumer::<u64>::attach(n.open(&tag(i)))
            .expect("bench child: the parent created the ring");
        rx.set_wait_strategy(s);
        rx
    };
    let spin = s == WaitStrategy::Spin;
    let pop = |rx: &mut Consumer<u64>| {
        let got = if spin {
            rx.try_pop().map_err(|e| match e {
                TryPopError::Empty => spsc::PopError::Timeout,
                TryPopError::Disconnected => spsc::PopError::Disconnected,
                TryPopError::Corrupted(w) => spsc::PopError::Corrupted(w),
            })
        } else {
            rx.pop_timeout(Some(STEP_WAIT))
        };
        match got {
            Ok(v) => {
                std::hint::black_box(v);
                true
            }
            Err(spsc::PopError::Timeout | spsc::PopError::Disconnected) => missed(),
            Err(e) => panic!("bench: spsc consumer failed: {e}"),
        }
    };
    // Every ring gets the message before the next one: a full ring holds
    // the producer up, as the slowest subscriber holds up the publisher.
    let push = |v: u64| {
        for tx in &mut txs {
            // The clock only once a ring was full for a whole step.
            // The clock only now and then while the ring stays full.
            let mut patience = None;
            for misses in 0u64.. {
                if spin {
                    match tx.try_push(v) {
                        Ok(()) => break,
                        Err(TryPushError::Full(_)) => missed(),
                        Err(e) => panic!("bench: spsc producer failed: {e}"),
                    };
                } else {
                    match tx.push_timeout(v, Some(STEP_WAIT)) {
                        Ok(()) => break,
                        Err(shmring::ring::PushError::Timeout(_)) => {}
                        Err(e) => panic!("bench: spsc producer failed: {e}"),
                    }
                }
                if !spin || misses.is_multiple_of(1 << 16) {
                    let until = *patience.get_or_insert_with(|| Instant::now() + PATIENCE);
                    assert!(
                        Instant::now() < until,
                        "bench: an spsc consumer took nothing for 30 s"
                    );
                }
            }
        }
        true
    };
    f.run(open, pop, push)
}
