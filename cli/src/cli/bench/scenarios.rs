//! The measured scenarios, one function per row of the report: round trips
//! (the atomic and futex limits, shmring rings, pipes, sockets), idle CPU,
//! and throughputs (shmring rings, the in-process rtrb and crossbeam
//! references, streams, memcpy).

use super::*;

pub(super) fn atomic_limit(dur: Duration, pinned: bool) -> Result<Vec<u64>, Error> {
    let (map, _file) = shared_page("atomic")?;
    // SAFETY: page-aligned, 4096 bytes long, accessed only atomically.
    let word: &AtomicU64 = unsafe { &*map.as_ptr().cast::<AtomicU64>() };
    let deadline = dur + Duration::from_secs(30);
    let _child = fork(pinned, || {
        let end = Instant::now() + deadline;
        let mut last = 0;
        while Instant::now() < end {
            let mut spins = 0;
            let v = loop {
                let v = word.load(Ordering::Acquire);
                if v != last && v % 2 == 1 {
                    break v;
                }
                relax(&mut spins);
                if spins > 1 << 24 {
                    return;
                }
            };
            if v == u64::MAX {
                return;
            }
            last = v + 1;
            word.store(last, Ordering::Release);
        }
    })?;
    let p = time_rtts(dur, |i| {
        let ping = 2 * i + 1;
        word.store(ping, Ordering::Release);
        let mut spins = 0;
        while word.load(Ordering::Acquire) != ping + 1 {
            relax(&mut spins);
        }
    });
    word.store(u64::MAX, Ordering::Release);
    Ok(p)
}

/// The sending half of a ring the round-trip bench bounces u64s through.
pub(super) trait PingTx: Sized {
    fn attach_to(seg: Arc<Segment>, strategy: WaitStrategy) -> Result<Self, Error>;
    /// Blocking push; false when the ring is finished.
    fn send(&mut self, v: u64) -> bool;
}

/// The receiving half.
pub(super) trait PingRx: Sized {
    fn attach_to(seg: Arc<Segment>, strategy: WaitStrategy) -> Result<Self, Error>;
    /// Blocking pop; `None` when the ring is finished.
    fn recv(&mut self) -> Option<u64>;
}

macro_rules! ping_halves {
    ($tx:ty, $rx:ty) => {
        impl PingTx for $tx {
            fn attach_to(seg: Arc<Segment>, strategy: WaitStrategy) -> Result<Self, Error> {
                let mut h = <$tx>::attach(seg)?;
                h.set_wait_strategy(strategy);
                Ok(h)
            }
            #[inline]
            fn send(&mut self, v: u64) -> bool {
                self.push(v).is_ok()
            }
        }
        impl PingRx for $rx {
            fn attach_to(seg: Arc<Segment>, strategy: WaitStrategy) -> Result<Self, Error> {
                let mut h = <$rx>::attach(seg)?;
                h.set_wait_strategy(strategy);
                Ok(h)
            }
            #[inline]
            fn recv(&mut self) -> Option<u64> {
                self.pop().ok()
            }
        }
    };
}

ping_halves!(Producer<u64>, Consumer<u64>);
ping_halves!(mpmc::Producer<u64>, mpmc::Consumer<u64>);

/// Round trips through two rings of one kind, both sides waiting by
/// `strategy`; the child echoes.
pub(super) fn ring_rtt<Tx: PingTx, Rx: PingRx>(
    n: &Names,
    tag: &str,
    layout: shmring::Layout,
    strategy: WaitStrategy,
    dur: Duration,
    pinned: bool,
) -> Result<Vec<u64>, Error> {
    ring_rtt_on::<Tx, Rx>(n, tag, layout, strategy, dur, pinned.then_some(1))
}

/// [`ring_rtt`] with the echoing child on core `child_cpu` (`Some(0)`: the
/// core the bench itself is pinned to, so both share one core).
pub(super) fn ring_rtt_on<Tx: PingTx, Rx: PingRx>(
    n: &Names,
    tag: &str,
    layout: shmring::Layout,
    strategy: WaitStrategy,
    dur: Duration,
    child_cpu: Option<usize>,
) -> Result<Vec<u64>, Error> {
    let (ping_name, pong_name) = (format!("{tag}-ping"), format!("{tag}-pong"));
    let ping = n.seg(&ping_name, &layout)?;
    let pong = n.seg(&pong_name, &layout)?;
    let child = fork_on(child_cpu, || {
        let mut rx = Rx::attach_to(n.open(&ping_name), strategy).expect("ping consumer");
        let mut tx = Tx::attach_to(n.open(&pong_name), strategy).expect("pong producer");
        while let Some(v) = rx.recv() {
            if !tx.send(v) {
                return;
            }
        }
    })?;
    let mut tx = Tx::attach_to(ping, strategy)?;
    let mut rx = Rx::attach_to(pong, strategy)?;
    let p = time_rtts(dur, |i| {
        assert!(tx.send(i), "bench push");
        assert_eq!(rx.recv(), Some(i), "bench pop");
    });
    // The child dies first so that our detach is the last one and removes
    // the rings (a killed process never detaches).
    drop(child);
    drop((tx, rx));
    Ok(p)
}

/// A bare futex ping-pong: the floor for any design that sleeps per message.
pub(super) fn futex_limit(dur: Duration, pinned: bool) -> Result<Vec<u64>, Error> {
    let (map, _file) = shared_page("futex")?;
    // SAFETY: page-aligned, 4096 bytes long, accessed only atomically.
    let word: &std::sync::atomic::AtomicU32 = unsafe { &*map.as_ptr().cast() };
    let deadline = dur + Duration::from_secs(30);
    let _child = fork(pinned, || {
        let end = Instant::now() + deadline;
        let mut want = 1u32;
        while Instant::now() < end {
            let v = word.load(Ordering::Acquire);
            if v == u32::MAX {
                return;
            }
            if v != want {
                raw::wait(word, v, Duration::from_millis(100));
                continue;
            }
            word.store(want + 1, Ordering::Release);
            raw::wake(word);
            want += 2;
        }
    })?;
    let mut next = 1u32;
    let p = time_rtts(dur, |_| {
        word.store(next, Ordering::Release);
        raw::wake(word);
        loop {
            let v = word.load(Ordering::Acquire);
            if v == next + 1 {
                break;
            }
            raw::wait(word, v, Duration::from_millis(100));
        }
        next += 2;
    });
    word.store(u32::MAX, Ordering::Release);
    raw::wake(word);
    Ok(p)
}

/// CPU used by a consumer waiting a second on an empty ring by `strategy`,
/// in percent of one core (from the child's utime + stime).
pub(super) fn idle_cpu(
    n: &Names,
    tag: &str,
    strategy: WaitStrategy,
    pinned: bool,
) -> Result<f64, Error> {
    let seg = n.seg(tag, &spsc::layout::<u64>(64)?)?;
    let tx = Producer::<u64>::attach(seg)?;
    let child = fork(pinned, || {
        let mut rx = Consumer::<u64>::attach(n.open(tag)).expect("consumer");
        rx.set_wait_strategy(strategy);
        let _ = rx.pop();
    })?;
    std::thread::sleep(Duration::from_millis(100));
    let before = cpu_seconds(child.0);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_seconds(child.0) - before;
    let pct = 100.0 * used / t.elapsed().as_secs_f64();
    drop(child);
    drop(tx);
    Ok(pct)
}

pub(super) fn cpu_seconds(pid: libc::pid_t) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf reads a constant; no memory is involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

pub(super) fn stream_rtt<S: Read + Write>(
    dur: Duration,
    pinned: bool,
    mut ours: S,
    mut theirs: impl FnMut() -> S,
) -> Result<Vec<u64>, Error> {
    let child = fork(pinned, || {
        let mut s = theirs();
        let mut b = [0u8; 8];
        while s.read_exact(&mut b).is_ok() {
            if s.write_all(&b).is_err() {
                return;
            }
        }
    })?;
    let p = time_rtts(dur, |i| {
        let mut b = i.to_le_bytes();
        ours.write_all(&b).expect("bench write");
        ours.read_exact(&mut b).expect("bench read");
    });
    drop(ours);
    drop(child);
    Ok(p)
}

/// One receive step of a throughput run: `Ok(k)` messages taken (0: none
/// ready, the caller relaxes), `Err` when the ring failed.
pub(super) fn took(got: Result<usize, TryPopError>, spins: &mut u32) -> u64 {
    match got {
        Ok(k) => k as u64,
        Err(TryPopError::Empty) => {
            relax(spins);
            0
        }
        Err(e) => panic!("bench: ring failed: {e}"),
    }
}

/// Drops the value carried by a push error.
pub(super) fn unit<T>(e: TryPushError<T>) -> TryPushError<()> {
    match e {
        TryPushError::Full(_) => TryPushError::Full(()),
        TryPushError::Disconnected(_) => TryPushError::Disconnected(()),
        TryPushError::Corrupted(_, w) => TryPushError::Corrupted((), w),
    }
}

/// Sends `batch` u64s at a time (one by one when 1) with `push` until the
/// window closes or the ring fails.
pub(super) fn send_u64s(
    dur: Duration,
    batch: usize,
    mut push: impl FnMut(&[u64]) -> Result<usize, TryPushError<()>>,
) {
    let end = send_window(dur);
    let buf: Vec<u64> = (0..batch as u64).collect();
    while Instant::now() < end {
        for _ in 0..1024 {
            match push(&buf) {
                Ok(_) => {}
                Err(TryPushError::Full(())) => std::hint::spin_loop(),
                Err(_) => return,
            }
        }
    }
}

/// SPSC u64 messages per second across processes: the child sends, we
/// count what arrives (`batch` 1: `try_push`/`try_pop`, else slices).
pub(super) fn spsc_throughput(
    n: &Names,
    dur: Duration,
    pinned: bool,
    batch: usize,
    cap: u64,
) -> Result<f64, Error> {
    let tag = format!("tp{batch}");
    let seg = n.seg(&tag, &spsc::layout::<u64>(cap)?)?;
    let child = fork(pinned, || {
        let mut tx = Producer::<u64>::attach(n.open(&tag)).expect("producer");
        send_u64s(dur, batch, |b| {
            if batch == 1 {
                tx.try_push(b[0]).map(|()| 1).map_err(unit)
            } else {
                tx.push_slice(b)
            }
        });
    })?;
    let mut rx = Consumer::<u64>::attach(seg)?;
    let mut out = vec![0u64; batch];
    let rate = count_for(dur, |spins| {
        let got = if batch == 1 {
            rx.try_pop().map(|v| {
                std::hint::black_box(v);
                1
            })
        } else {
            rx.pop_into(&mut out)
        };
        took(got, spins)
    });
    drop(child);
    drop(rx);
    Ok(rate)
}

/// MPMC u64 messages per second, one by one: `producers` child processes
/// (all on the second core) send, we consume.
pub(super) fn mpmc_throughput(
    n: &Names,
    dur: Duration,
    pinned: bool,
    producers: u32,
    cap: u64,
) -> Result<f64, Error> {
    let tag = format!("mpmc-tp{producers}");
    let seg = n.seg(&tag, &mpmc::layout_with_roles::<u64>(cap, producers, 1)?)?;
    let mut children = Vec::new();
    for _ in 0..producers {
        children.push(fork(pinned, || {
            let mut tx = mpmc::Producer::<u64>::attach(n.open(&tag)).expect("producer");
            send_u64s(dur, 1, |b| tx.try_push(b[0]).map(|()| 1).map_err(unit));
        })?);
    }
    let mut rx = mpmc::Consumer::<u64>::attach(seg)?;
    let rate = count_for(dur, |spins| {
        took(
            rx.try_pop().map(|v| {
                std::hint::black_box(v);
                1
            }),
            spins,
        )
    });
    drop(children);
    drop(rx);
    Ok(rate)
}

/// In-process baselines: `push` runs on a second thread (pinned to the
/// second core) until we have counted for `dur`.
pub(super) fn two_threads(
    dur: Duration,
    pinned: bool,
    mut push: impl FnMut() -> bool + Send,
    mut pop: impl FnMut() -> bool,
) -> f64 {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            if pinned {
                pin(1);
            }
            let mut i = 0u32;
            loop {
                if !push() {
                    std::hint::spin_loop();
                }
                i = i.wrapping_add(1);
                if i.is_multiple_of(1024) && stop.load(Ordering::Relaxed) {
                    return;
                }
            }
        });
        let rate = count_for(dur, |spins| {
            if pop() {
                1
            } else {
                relax(spins);
                0
            }
        });
        stop.store(true, Ordering::Relaxed);
        rate
    })
}

/// rtrb (the in-process SPSC reference), u64 one by one.
pub(super) fn rtrb_throughput(dur: Duration, pinned: bool, cap: usize) -> f64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(cap);
    let mut i = 0u64;
    two_threads(
        dur,
        pinned,
        move || {
            i += 1;
            tx.push(i).is_ok()
        },
        move || rx.pop().map(std::hint::black_box).is_ok(),
    )
}

/// crossbeam's ArrayQueue (the in-process MPMC reference), one producer
/// and one consumer, u64 one by one.
pub(super) fn array_queue_throughput(dur: Duration, pinned: bool, cap: usize) -> f64 {
    let q = crossbeam_queue::ArrayQueue::<u64>::new(cap);
    let mut i = 0u64;
    two_threads(
        dur,
        pinned,
        || {
            i += 1;
            q.push(i).is_ok()
        },
        || q.pop().map(std::hint::black_box).is_some(),
    )
}

pub(super) fn frames_throughput(
    n: &Names,
    dur: Duration,
    pinned: bool,
    size: usize,
) -> Result<f64, Error> {
    let bytes = (size as u64 * 64).next_power_of_two().max(1 << 16);
    let seg = n.seg("frames", &frames::layout(bytes)?)?;
    let child = fork(pinned, || {
        let mut tx = frames::Producer::attach(n.open("frames")).expect("producer");
        let src = vec![0x5au8; size];
        let end = send_window(dur);
        while Instant::now() < end {
            for _ in 0..256 {
                match tx.write_chunk(size) {
                    Ok(mut g) => {
                        g.copy_from_slice(&src);
                        g.commit();
                    }
                    Err(FramePushError::Full) => std::hint::spin_loop(),
                    Err(e) => {
                        eprintln!("bench: frame producer failed: {e}");
                        return;
                    }
                }
            }
        }
    })?;
    let mut rx = frames::Consumer::attach(seg)?;
    let mut dst = vec![0u8; size];
    let count = count_for(dur, |spins| match rx.read_chunk() {
        Ok(f) => {
            dst.copy_from_slice(&f);
            drop(f); // consumes the frame
            1
        }
        Err(TryPopError::Empty) => {
            relax(spins);
            0
        }
        Err(e) => panic!("bench: frame ring failed: {e}"),
    });
    std::hint::black_box(&dst);
    drop(child);
    drop(rx);
    Ok(count)
}

pub(super) fn stream_throughput<S: Read + Write>(
    dur: Duration,
    pinned: bool,
    size: usize,
    mut ours: S,
    mut theirs: impl FnMut() -> S,
) -> Result<f64, Error> {
    let child = fork(pinned, || {
        let mut s = theirs();
        let src = vec![0x5au8; size];
        while s.write_all(&src).is_ok() {}
    })?;
    let mut dst = vec![0u8; size];
    let rate = count_for(dur, |_| {
        ours.read_exact(&mut dst).expect("bench read");
        1
    });
    drop(ours);
    drop(child);
    Ok(rate)
}

/// The best single-core `memcpy` rate of `size` bytes over a few relative
/// alignments of source and destination: some CPUs' `rep movsb` slows down
/// many times over when the two sit at certain distances modulo 4 KiB,
/// and a baseline must not depend on where the allocator put them.
pub(super) fn memcpy_gb_per_s(size: usize, dur: Duration) -> f64 {
    const PAGE: usize = 4096;
    let span = size.next_multiple_of(PAGE) + 2 * PAGE;
    let mut buf = vec![0x5au8; 2 * span + PAGE];
    let base = buf.as_ptr().align_offset(PAGE);
    let (src_area, dst_area) = buf[base..].split_at_mut(span);
    let src = &src_area[..size];
    [0usize, 64, 1024, 2048 + 64]
        .into_iter()
        .map(|off| {
            let dst = &mut dst_area[off..off + size];
            let each = (dur / 4).min(Duration::from_millis(250));
            count_for(each, |_| {
                dst.copy_from_slice(std::hint::black_box(src));
                std::hint::black_box(&mut *dst);
                1
            }) * size as f64
                / 1e9
        })
        .fold(0.0, f64::max)
}
