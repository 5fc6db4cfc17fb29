//! `shmring bench`: shmring against the hardware limit and the alternatives,
//! in one run, as ratios. The peer is a forked child process pinned to
//! another core (when there is one).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use shmring::frames::{self, FrameConsumer, FrameProducer, ReserveError};
use shmring::spsc::{self, Consumer, Producer, TryPopError, TryPushError};
use shmring::wait::{WaitStrategy, raw};
use shmring::{Error, Segment, SegmentOptions, mpmc};

/// Options of `shmring bench`.
#[derive(clap::Args, Debug, Clone)]
pub(super) struct BenchArgs {
    /// Seconds per measurement, split over the rounds.
    #[arg(long, default_value_t = 1.5)]
    duration: f64,
    /// Rounds: every measurement runs this many times, interleaved with the
    /// others, so that each row sees the same mix of machine states (a
    /// virtual machine's cores move); round trips pool their samples,
    /// throughputs report the median round.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Which ring kinds to measure (the baselines always run).
    #[arg(long, value_enum, default_value = "all")]
    kind: KindArg,
    /// Which wait strategies to measure round trips (and idle CPU) with;
    /// `all` means spin, default and park.
    #[arg(long, value_enum, default_value = "all")]
    wait: WaitArg,
    /// Frame size in bytes for the frame, pipe and socket throughput runs.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Ring capacity in slots (typed rings) for the shmring runs.
    #[arg(long, default_value_t = 1024)]
    capacity: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Write the round-trip latency distributions as an SVG plot to FILE.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
    /// Huge pages for the benchmark's rings (see `create --huge-pages`;
    /// with the global --dir on a hugetlbfs mount every ring is huge).
    #[arg(long, value_enum, default_value = "off")]
    huge_pages: super::HugeArg,
    /// Prefault the rings (MAP_POPULATE).
    #[arg(long)]
    populate: bool,
    /// Lock the rings in memory (mlock).
    #[arg(long)]
    lock_memory: bool,
}

/// `--kind`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum KindArg {
    /// SPSC typed, frames and MPMC.
    All,
    /// Typed SPSC rings (round trips and u64 throughput).
    Spsc,
    /// Frame rings (throughput at --size, against pipe, socket, memcpy).
    Frames,
    /// MPMC rings (round trips, 1 and 2 producers).
    Mpmc,
}

/// `--wait`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum WaitArg {
    /// spin, default and park.
    All,
    /// `WaitStrategy::Spin`.
    Spin,
    /// `WaitStrategy::Yield`.
    Yield,
    /// `WaitStrategy::Park` with no spinning: sleep at once.
    Park,
    /// The default strategy: spin 50 µs, then park.
    Default,
}

impl WaitArg {
    fn strategy(self) -> WaitStrategy {
        match self {
            WaitArg::Spin | WaitArg::All => WaitStrategy::Spin,
            WaitArg::Yield => WaitStrategy::Yield,
            WaitArg::Park => WaitStrategy::Park {
                spin: Duration::ZERO,
            },
            WaitArg::Default => WaitStrategy::default(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            WaitArg::Spin | WaitArg::All => "spin",
            WaitArg::Yield => "yield",
            WaitArg::Park => "park",
            WaitArg::Default => "default",
        }
    }
}

#[derive(Serialize, Clone, Debug, Default)]
struct Percentiles {
    p50: f64,
    p99: f64,
    p999: f64,
    samples: usize,
    /// (nines, ns) points of the distribution for `--plot`, where nines is
    /// -log10(1 - quantile).
    #[serde(skip)]
    curve: Vec<(f64, f64)>,
}

/// One performance target of issue 7, checked against this run.
#[derive(Serialize, Clone, Debug)]
struct Target {
    what: &'static str,
    /// The measured ratio.
    ratio: f64,
    /// The bound it must meet.
    goal: &'static str,
    met: bool,
}

#[derive(Serialize, Debug, Default)]
struct Report {
    rtt_ns: BTreeMap<String, Percentiles>,
    throughput_msgs_per_s: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memcpy_gb_per_s: Option<f64>,
    /// `frames_<size>_gb_per_s`, e.g. `frames_4k_gb_per_s`.
    #[serde(flatten)]
    frames_gb: BTreeMap<String, f64>,
    frame_size: usize,
    cpu: String,
    cores: usize,
    pinned: bool,
    idle_cpu_percent: BTreeMap<String, f64>,
    targets: Vec<Target>,
    /// The rings' directory and backing options.
    backing: String,
    /// Seconds per measurement, over all rounds.
    duration_s: f64,
    /// Interleaved rounds each measurement was split into.
    rounds: u32,
    /// Each throughput's value in every round (targets compare rounds
    /// pairwise: neighbours in time see the same machine state).
    #[serde(skip)]
    throughput_rounds: BTreeMap<String, Vec<f64>>,
    #[serde(skip)]
    memcpy_rounds: Vec<f64>,
}

fn err(what: impl Into<String>) -> Error {
    Error::InvalidConfig { what: what.into() }
}

/// A forked child, killed and reaped on drop.
struct Child(libc::pid_t);

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: kill and waitpid on our own child's pid; no memory involved.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

fn pin(cpu: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).is_ok()
        && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

/// Forks; the child pins itself to core 1 and runs `body`, then exits
/// without unwinding into the parent's code.
fn fork(pinned: bool, body: impl FnOnce()) -> Result<Child, Error> {
    std::io::stdout().flush().ok();
    // SAFETY: the bench runs single-threaded, so the child inherits a
    // consistent copy of the process; it runs only `body` and then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(err(format!(
            "fork failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        if pinned {
            pin(1);
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_ok();
        // SAFETY: ends the child immediately, skipping the parent's
        // destructors (which would detach the parent's handles twice).
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    Ok(Child(pid))
}

fn percentiles(mut v: Vec<u64>) -> Percentiles {
    v.sort_unstable();
    if v.is_empty() {
        return Percentiles::default();
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64;
    // The plot runs to the last quantile the samples resolve.
    let max_nines = (v.len() as f64).log10().clamp(0.0, 6.0);
    let curve = (0..=240)
        .map(|i| {
            let nines = max_nines * f64::from(i) / 240.0;
            (nines, at(1.0 - 10f64.powf(-nines)))
        })
        .collect();
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        samples: v.len(),
        curve,
    }
}

/// Times round trips of `one` (which must do one full round trip) for
/// `dur`, after a short warm-up; returns the samples in nanoseconds.
fn time_rtts(dur: Duration, mut one: impl FnMut(u64)) -> Vec<u64> {
    // Warm up for 10,000 round trips and at least 100 ms: a measurement
    // otherwise pays for cores waking up.
    let warm = Instant::now() + Duration::from_millis(100);
    let mut i = 0u64;
    while i < 10_000 || Instant::now() < warm {
        one(i);
        i += 1;
    }
    let mut samples = Vec::with_capacity(1 << 20);
    let end = Instant::now() + dur;
    while samples.len() < 4_000_000 {
        let t = Instant::now();
        one(i);
        samples.push(t.elapsed().as_nanos() as u64);
        i += 1;
        if i.is_multiple_of(1024) && Instant::now() >= end {
            break;
        }
    }
    samples
}

/// Spins with a bound, then yields, so a benchmark on a busy machine still
/// makes progress.
#[inline]
fn relax(spins: &mut u32) {
    *spins += 1;
    if *spins < 1 << 14 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

struct Names {
    prefix: String,
    opts: SegmentOptions,
}

impl Names {
    fn seg(
        &self,
        tag: &str,
        layout: &shmring::Layout,
        type_id: u64,
    ) -> Result<Arc<Segment>, Error> {
        Ok(Arc::new(self.opts.create(
            &format!("{}-{tag}", self.prefix),
            layout,
            type_id,
        )?))
    }

    fn open(&self, tag: &str) -> Arc<Segment> {
        Arc::new(
            self.opts
                .open(&format!("{}-{tag}", self.prefix))
                .expect("bench child: open ring"),
        )
    }
}

/// A shared page the forked child inherits: a /dev/shm file unlinked at
/// once, so nothing can be left behind.
fn shared_page(tag: &str) -> Result<(memmap2::MmapMut, std::fs::File), Error> {
    let path = format!("/dev/shm/shmring-bench-{}-{tag}", std::process::id());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(&path, "open", e))?;
    let _ = std::fs::remove_file(&path);
    file.set_len(4096)
        .map_err(|e| Error::io(&path, "ftruncate", e))?;
    // SAFETY: a fresh file nobody else has opened; both processes access the
    // page only through atomics.
    let map =
        unsafe { memmap2::MmapMut::map_mut(&file) }.map_err(|e| Error::io(&path, "mmap", e))?;
    Ok((map, file))
}

fn atomic_limit(dur: Duration, pinned: bool) -> Result<Vec<u64>, Error> {
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
trait PingTx: Sized {
    fn attach_to(seg: Arc<Segment>, strategy: WaitStrategy) -> Result<Self, Error>;
    /// Blocking push; false when the ring is finished.
    fn send(&mut self, v: u64) -> bool;
}

/// The receiving half.
trait PingRx: Sized {
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
fn ring_rtt<Tx: PingTx, Rx: PingRx>(
    n: &Names,
    tag: &str,
    (layout, type_id): (shmring::Layout, u64),
    strategy: WaitStrategy,
    dur: Duration,
    pinned: bool,
) -> Result<Vec<u64>, Error> {
    let (ping_name, pong_name) = (format!("{tag}-ping"), format!("{tag}-pong"));
    let ping = n.seg(&ping_name, &layout, type_id)?;
    let pong = n.seg(&pong_name, &layout, type_id)?;
    let child = fork(pinned, || {
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
fn futex_limit(dur: Duration, pinned: bool) -> Result<Vec<u64>, Error> {
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
fn idle_cpu(n: &Names, tag: &str, strategy: WaitStrategy, pinned: bool) -> Result<f64, Error> {
    let seg = n.seg(tag, &spsc::layout::<u64>(64)?, spsc::type_id::<u64>())?;
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

fn cpu_seconds(pid: libc::pid_t) -> f64 {
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

fn stream_rtt<S: Read + Write>(
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

/// A duplex pair of pipes as one Read + Write stream.
struct PipePair(std::io::PipeReader, std::io::PipeWriter);

impl Read for PipePair {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for PipePair {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn pipes() -> Result<(PipePair, PipePair), Error> {
    let io = |e| Error::io("pipe", "pipe", e);
    let (r1, w1) = std::io::pipe().map_err(io)?;
    let (r2, w2) = std::io::pipe().map_err(io)?;
    Ok((PipePair(r1, w2), PipePair(r2, w1)))
}

/// How long a throughput child keeps sending: past the consumer's warm-up
/// and measurement, with margin; it is killed when the measurement ends.
fn send_window(dur: Duration) -> Instant {
    Instant::now() + dur + Duration::from_secs(2)
}

/// One receive step of a throughput run: `Ok(k)` messages taken (0: none
/// ready, the caller relaxes), `Err` when the ring failed.
fn took(got: Result<usize, TryPopError>, spins: &mut u32) -> u64 {
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
fn unit<T>(e: TryPushError<T>) -> TryPushError<()> {
    match e {
        TryPushError::Full(_) => TryPushError::Full(()),
        TryPushError::Disconnected(_) => TryPushError::Disconnected(()),
        TryPushError::Corrupted(_, w) => TryPushError::Corrupted((), w),
    }
}

/// Sends `batch` u64s at a time (one by one when 1) with `push` until the
/// window closes or the ring fails.
fn send_u64s(
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
fn spsc_throughput(
    n: &Names,
    dur: Duration,
    pinned: bool,
    batch: usize,
    cap: u64,
) -> Result<f64, Error> {
    let tag = format!("tp{batch}");
    let seg = n.seg(&tag, &spsc::layout::<u64>(cap)?, spsc::type_id::<u64>())?;
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
fn mpmc_throughput(
    n: &Names,
    dur: Duration,
    pinned: bool,
    producers: u32,
    cap: u64,
) -> Result<f64, Error> {
    let tag = format!("mpmc-tp{producers}");
    let seg = n.seg(
        &tag,
        &mpmc::layout_with_roles::<u64>(cap, producers, 1)?,
        mpmc::type_id::<u64>(),
    )?;
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
fn two_threads(
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
fn rtrb_throughput(dur: Duration, pinned: bool, cap: usize) -> f64 {
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
fn array_queue_throughput(dur: Duration, pinned: bool, cap: usize) -> f64 {
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

fn frames_throughput(n: &Names, dur: Duration, pinned: bool, size: usize) -> Result<f64, Error> {
    let bytes = (size as u64 * 64).next_power_of_two().max(1 << 16);
    let seg = n.seg("frames", &frames::layout(bytes)?, 0)?;
    let child = fork(pinned, || {
        let mut tx = FrameProducer::attach(n.open("frames")).expect("producer");
        let src = vec![0x5au8; size];
        let end = Instant::now() + dur + Duration::from_millis(200);
        while Instant::now() < end {
            for _ in 0..256 {
                match tx.reserve(size) {
                    Ok(mut g) => {
                        g.copy_from_slice(&src);
                        g.commit();
                    }
                    Err(ReserveError::Full) => std::hint::spin_loop(),
                    Err(_) => return,
                }
            }
        }
    })?;
    let mut rx = FrameConsumer::attach(seg)?;
    let mut dst = vec![0u8; size];
    let count = count_for(dur, |spins| match rx.read() {
        Ok(f) => {
            dst.copy_from_slice(&f);
            f.release();
            1
        }
        Err(TryPopError::Empty) => {
            relax(spins);
            0
        }
        Err(_) => panic!("bench: frame ring failed"),
    });
    std::hint::black_box(&dst);
    drop(child);
    drop(rx);
    Ok(count)
}

/// Calls `step` until `dur` has passed after a 100 ms warm-up; returns the
/// number of messages `step` reported per second.
fn count_for(dur: Duration, mut step: impl FnMut(&mut u32) -> u64) -> f64 {
    let warm = Instant::now() + Duration::from_millis(100);
    let mut spins = 0;
    while Instant::now() < warm {
        step(&mut spins);
    }
    let start = Instant::now();
    let mut count = 0u64;
    let mut calls = 0u32;
    loop {
        let got = step(&mut spins);
        if got > 0 {
            count += got;
            spins = 0;
        }
        calls = calls.wrapping_add(1);
        if calls.is_multiple_of(256) && start.elapsed() >= dur {
            break;
        }
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn stream_throughput<S: Read + Write>(
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
fn memcpy_gb_per_s(size: usize, dur: Duration) -> f64 {
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

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// One measurement of the run.
#[derive(Clone, Copy, Debug)]
enum Step {
    AtomicLimit,
    FutexLimit,
    SpscRtt(WaitArg),
    MpmcRtt(WaitArg),
    IdleCpu(WaitArg),
    PipeRtt,
    UnixRtt,
    SpscU64,
    SpscU64Batched,
    Rtrb,
    Frames,
    PipeThroughput,
    UnixThroughput,
    Memcpy,
    MpmcU64(u32),
    ArrayQueue,
}

impl Step {
    fn label(self) -> String {
        match self {
            Step::AtomicLimit => "atomic ping-pong (hardware limit)".into(),
            Step::FutexLimit => "futex ping-pong (sleeping limit)".into(),
            Step::SpscRtt(w) => format!("spsc round trip, {}", w.name()),
            Step::MpmcRtt(w) => format!("mpmc round trip, {}", w.name()),
            Step::IdleCpu(w) => format!("idle consumer CPU, {}", w.name()),
            Step::PipeRtt => "pipe round trip".into(),
            Step::UnixRtt => "unix socket round trip".into(),
            Step::SpscU64 => "spsc u64 one by one".into(),
            Step::SpscU64Batched => "spsc u64 batched".into(),
            Step::Rtrb => "rtrb in-process".into(),
            Step::Frames => "frames".into(),
            Step::PipeThroughput => "pipe throughput".into(),
            Step::UnixThroughput => "unix socket throughput".into(),
            Step::Memcpy => "memcpy".into(),
            Step::MpmcU64(p) => format!("mpmc u64, {p} producer(s)"),
            Step::ArrayQueue => "crossbeam ArrayQueue in-process".into(),
        }
    }
}

/// The measurements `--kind` and `--wait` ask for, in order.
fn plan(kind: KindArg, wait: WaitArg) -> Vec<Step> {
    let waits = if wait == WaitArg::All {
        vec![WaitArg::Spin, WaitArg::Default, WaitArg::Park]
    } else {
        vec![wait]
    };
    let has = |k: KindArg| kind == KindArg::All || kind == k;
    let mut steps = vec![Step::AtomicLimit];
    if has(KindArg::Spsc) {
        steps.extend(waits.iter().map(|&w| Step::SpscRtt(w)));
    }
    if has(KindArg::Mpmc) {
        // One strategy is enough to compare the kinds' round trips.
        steps.push(Step::MpmcRtt(waits[0]));
    }
    steps.push(Step::FutexLimit);
    steps.extend(waits.iter().map(|&w| Step::IdleCpu(w)));
    steps.extend([Step::PipeRtt, Step::UnixRtt]);
    if has(KindArg::Spsc) {
        // Each shmring row next to its reference, so that a pair sees the
        // same machine state.
        steps.extend([Step::SpscU64, Step::Rtrb, Step::SpscU64Batched]);
    }
    if has(KindArg::Frames) {
        steps.extend([
            Step::UnixThroughput,
            Step::Frames,
            Step::Memcpy,
            Step::PipeThroughput,
        ]);
    }
    if has(KindArg::Mpmc) {
        steps.extend([Step::MpmcU64(1), Step::ArrayQueue, Step::MpmcU64(2)]);
    }
    steps
}

pub(super) fn run(args: BenchArgs, dir: &std::path::Path) -> Result<(), Error> {
    if !(0.05..=600.0).contains(&args.duration) {
        return Err(err("--duration must be between 0.05 and 600 seconds"));
    }
    if args.size == 0 || args.size > 1 << 20 {
        return Err(err("--size must be between 1 and 1048576 bytes"));
    }
    if !(1..=20).contains(&args.rounds) {
        return Err(err("--rounds must be between 1 and 20"));
    }
    if !(2..=1 << 24).contains(&args.capacity) {
        return Err(err("--capacity must be between 2 and 16777216 slots"));
    }
    let dur = Duration::from_secs_f64(args.duration);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pinned = cores >= 2 && pin(0);
    let n = Names {
        prefix: format!("shmring-bench-{}", std::process::id()),
        opts: SegmentOptions::new()
            .dir(dir)
            .huge_pages(args.huge_pages.into())
            .populate(args.populate)
            .lock_memory(args.lock_memory),
    };
    let size = args.size;
    let tag = size_tag(size);
    let cap = args.capacity;
    let mut r = Report {
        frame_size: size,
        cpu: cpu_name(),
        cores,
        pinned,
        backing: format!(
            "dir {}, huge pages {:?}, populate {}, mlock {}",
            dir.display(),
            args.huge_pages,
            args.populate,
            args.lock_memory
        ),
        duration_s: args.duration,
        rounds: args.rounds,
        ..Report::default()
    };
    let steps = plan(args.kind, args.wait);
    let progress = std::io::stderr().is_terminal() && !args.json;
    let spsc_ring = (spsc::layout::<u64>(64)?, spsc::type_id::<u64>());
    let mpmc_ring = (
        mpmc::layout_with_roles::<u64>(64, 1, 1)?,
        mpmc::type_id::<u64>(),
    );
    let rounds = args.rounds;
    let dur = dur / rounds;
    let total = steps.len() * rounds as usize;
    let mut rtt: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut tps: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut memcpy = Vec::new();
    let mut done = 0;
    for round in 0..rounds {
        for &step in &steps {
            done += 1;
            if progress {
                let bar = "#".repeat(done * 30 / total);
                eprint!(
                    "\r[{bar:<30}] {done}/{total} round {}: {:<40}",
                    round + 1,
                    step.label()
                );
            }
            let mut put = |key: String, v: f64| tps.entry(key).or_default().push(v);
            let mut pool = |key: String, v: Vec<u64>| rtt.entry(key).or_default().extend(v);
            match step {
                Step::AtomicLimit => pool("atomic_limit".into(), atomic_limit(dur, pinned)?),
                Step::FutexLimit => pool("futex_limit".into(), futex_limit(dur, pinned)?),
                Step::SpscRtt(w) => {
                    let key = format!("shmring_{}", w.name());
                    let p = ring_rtt::<Producer<u64>, Consumer<u64>>(
                        &n,
                        &key,
                        spsc_ring,
                        w.strategy(),
                        dur,
                        pinned,
                    )?;
                    pool(key, p);
                }
                Step::MpmcRtt(w) => {
                    let key = format!("shmring_mpmc_{}", w.name());
                    let p = ring_rtt::<mpmc::Producer<u64>, mpmc::Consumer<u64>>(
                        &n,
                        &key,
                        mpmc_ring,
                        w.strategy(),
                        dur,
                        pinned,
                    )?;
                    pool(key, p);
                }
                // Once is enough: it measures sleeping, not speed.
                Step::IdleCpu(_) if round > 0 => {}
                Step::IdleCpu(w) => {
                    let pct = idle_cpu(&n, &format!("idle-{}", w.name()), w.strategy(), pinned)?;
                    r.idle_cpu_percent.insert(w.name().into(), pct);
                }
                Step::PipeRtt => {
                    let (a, b) = pipes()?;
                    let mut b = Some(b);
                    let p = stream_rtt(dur, pinned, a, || b.take().expect("once"))?;
                    pool("pipe".into(), p);
                }
                Step::UnixRtt => {
                    let (a, b) = socket_pair()?;
                    let mut b = Some(b);
                    let p = stream_rtt(dur, pinned, a, || b.take().expect("once"))?;
                    pool("unix_socket".into(), p);
                }
                Step::SpscU64 => {
                    let v = spsc_throughput(&n, dur, pinned, 1, cap)?;
                    put("shmring_spsc_u64".into(), v);
                }
                Step::SpscU64Batched => {
                    let v = spsc_throughput(&n, dur, pinned, 64, cap)?;
                    put("shmring_spsc_u64_batched".into(), v);
                }
                Step::Rtrb => {
                    let v = rtrb_throughput(dur, pinned, cap as usize);
                    put("rtrb_u64_in_process".into(), v);
                }
                Step::Frames => {
                    let v = frames_throughput(&n, dur, pinned, size)?;
                    put(format!("shmring_frames_{tag}"), v);
                }
                Step::PipeThroughput => {
                    let (a, b) = pipes()?;
                    let mut b = Some(b);
                    let v = stream_throughput(dur, pinned, size, a, || b.take().expect("once"))?;
                    put(format!("pipe_{tag}"), v);
                }
                Step::UnixThroughput => {
                    let (a, b) = socket_pair()?;
                    let mut b = Some(b);
                    let v = stream_throughput(dur, pinned, size, a, || b.take().expect("once"))?;
                    put(format!("unix_socket_{tag}"), v);
                }
                Step::Memcpy => memcpy.push(memcpy_gb_per_s(size, dur)),
                Step::MpmcU64(p) => {
                    let v = mpmc_throughput(&n, dur, pinned, p, cap)?;
                    let key = if p == 1 {
                        "shmring_mpmc_u64".to_string()
                    } else {
                        format!("shmring_mpmc_u64_{p}p")
                    };
                    put(key, v);
                }
                Step::ArrayQueue => {
                    let v = array_queue_throughput(dur, pinned, cap as usize);
                    put("crossbeam_array_queue_u64_in_process".into(), v);
                }
            }
        }
    }
    for (key, samples) in rtt {
        r.rtt_ns.insert(key, percentiles(samples));
    }
    for (key, runs) in &tps {
        r.throughput_msgs_per_s
            .insert(key.clone(), median(runs.clone()));
    }
    r.throughput_rounds = tps;
    r.memcpy_rounds = memcpy.clone();
    if let Some(fr) = r
        .throughput_msgs_per_s
        .get(&format!("shmring_frames_{tag}"))
    {
        r.frames_gb
            .insert(format!("frames_{tag}_gb_per_s"), fr * size as f64 / 1e9);
    }
    if !memcpy.is_empty() {
        r.memcpy_gb_per_s = Some(median(memcpy));
    }
    if progress {
        eprintln!();
    }
    r.targets = targets(&r, &tag);
    if let Some(path) = &args.plot {
        std::fs::write(path, plot_svg(&r))
            .map_err(|e| Error::io(path.display().to_string(), "write", e))?;
    }
    if args.json {
        let text = serde_json::to_string_pretty(&r).map_err(|e| err(e.to_string()))?;
        println!("{text}");
    } else {
        print_report(&r, &tag);
        if let Some(path) = &args.plot {
            println!("latency plot: {}", path.display());
        }
    }
    Ok(())
}

/// The median of a non-empty list (the lower middle for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

fn socket_pair() -> Result<(UnixStream, UnixStream), Error> {
    UnixStream::pair().map_err(|e| Error::io("socketpair", "socketpair", e))
}

/// Issue 7's performance targets, for the rows this run measured.
fn targets(r: &Report, tag: &str) -> Vec<Target> {
    let rtt = |k: &str| r.rtt_ns.get(k).map(|p| p.p50).filter(|v| *v > 0.0);
    // The median over rounds of a / b, each pair measured in one round.
    let rounds = |k: &str| r.throughput_rounds.get(k).filter(|v| !v.is_empty());
    let per_round = |a: &[f64], b: &[f64], scale: f64| {
        let ratios: Vec<f64> = a
            .iter()
            .zip(b)
            .filter(|(_, b)| **b > 0.0)
            .map(|(a, b)| a * scale / b)
            .collect();
        (!ratios.is_empty()).then(|| median(ratios))
    };
    let tp_ratio = |a: &str, b: &str| per_round(rounds(a)?, rounds(b)?, 1.0);
    let mut out = Vec::new();
    let mut at_most = |what, goal, bound: f64, ratio: Option<f64>| {
        if let Some(ratio) = ratio {
            out.push(Target {
                what,
                ratio,
                goal,
                met: ratio <= bound,
            });
        }
    };
    let spin = rtt("shmring_spin");
    at_most(
        "shmring_spin p50 / atomic_limit p50",
        "<= 1.3",
        1.3,
        spin.zip(rtt("atomic_limit")).map(|(a, b)| a / b),
    );
    at_most(
        "shmring_park p50 / futex_limit p50",
        "<= 1.1",
        1.1,
        rtt("shmring_park")
            .zip(rtt("futex_limit"))
            .map(|(a, b)| a / b),
    );
    at_most(
        "shmring_default p50 / shmring_spin p50 (steady ping-pong)",
        "<= 1.1",
        1.1,
        rtt("shmring_default").zip(spin).map(|(a, b)| a / b),
    );
    at_most(
        "idle consumer CPU with the default strategy, % of a core",
        "<= 2",
        2.0,
        r.idle_cpu_percent.get("default").copied(),
    );
    let mut at_least = |what, goal, bound: f64, ratio: Option<f64>| {
        if let Some(ratio) = ratio {
            out.push(Target {
                what,
                ratio,
                goal,
                met: ratio >= bound,
            });
        }
    };
    at_least(
        "pipe p50 / shmring_spin p50",
        ">= 20",
        20.0,
        rtt("pipe").zip(spin).map(|(a, b)| a / b),
    );
    at_least(
        "unix_socket p50 / shmring_spin p50",
        ">= 20",
        20.0,
        rtt("unix_socket").zip(spin).map(|(a, b)| a / b),
    );
    at_least(
        "shmring_spsc_u64 (2 processes) / rtrb (2 threads), median of rounds",
        ">= 1.0",
        1.0,
        tp_ratio("shmring_spsc_u64", "rtrb_u64_in_process"),
    );
    at_least(
        "shmring_spsc_u64_batched / shmring_spsc_u64, median of rounds",
        ">= 2",
        2.0,
        tp_ratio("shmring_spsc_u64_batched", "shmring_spsc_u64"),
    );
    let frames = format!("shmring_frames_{tag}");
    at_least(
        "frames GB/s / single-core memcpy GB/s, median of rounds",
        ">= 0.5",
        0.5,
        rounds(&frames).and_then(|f| per_round(f, &r.memcpy_rounds, r.frame_size as f64 / 1e9)),
    );
    at_least(
        "frames msgs/s / unix socket msgs/s, median of rounds",
        ">= 10",
        10.0,
        tp_ratio(&frames, &format!("unix_socket_{tag}")),
    );
    at_least(
        "shmring_mpmc_u64 (2 processes) / ArrayQueue (2 threads), median of rounds",
        ">= 0.8",
        0.8,
        tp_ratio("shmring_mpmc_u64", "crossbeam_array_queue_u64_in_process"),
    );
    out
}

fn size_tag(size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{}k", size / 1024)
    } else {
        format!("{size}b")
    }
}

fn print_report(r: &Report, tag: &str) {
    println!(
        "shmring bench: {} ({} cores{}), {} s per measurement in {} interleaved rounds",
        r.cpu,
        r.cores,
        if r.pinned {
            ", pinned to cores 0 and 1"
        } else {
            ", not pinned"
        },
        r.duration_s,
        r.rounds
    );
    println!("rings: {}", r.backing);
    println!();
    let limit = r.rtt_ns.get("atomic_limit").map(|p| p.p50).unwrap_or(0.0);
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>12}",
        "round trip (ns)", "p50", "p99", "p99.9", "p50 / limit"
    );
    let mut rows: Vec<(&String, &Percentiles)> = r.rtt_ns.iter().collect();
    rows.sort_by(|a, b| a.1.p50.total_cmp(&b.1.p50));
    for (key, p) in rows {
        println!(
            "{:<22} {:>10.0} {:>10.0} {:>10.0} {:>11.2}x",
            key,
            p.p50,
            p.p99,
            p.p999,
            if limit > 0.0 { p.p50 / limit } else { 0.0 }
        );
    }
    println!();
    let socket = r
        .throughput_msgs_per_s
        .get(&format!("unix_socket_{tag}"))
        .copied()
        .unwrap_or(0.0);
    println!("{:<38} {:>16} {:>10}", "throughput", "msgs/s", "vs socket");
    for (k, v) in &r.throughput_msgs_per_s {
        let vs = if k.ends_with(tag) && socket > 0.0 {
            format!("{:.1}x", v / socket)
        } else {
            "-".into()
        };
        println!("{k:<38} {v:>16.0} {vs:>10}");
    }
    if let (Some(gb), Some(m)) = (
        r.frames_gb.get(&format!("frames_{tag}_gb_per_s")),
        r.memcpy_gb_per_s,
    ) {
        println!(
            "{tag} frames: {gb:.2} GB/s; a single-core memcpy of {} bytes: {m:.2} GB/s",
            r.frame_size
        );
    }
    let idle: Vec<String> = r
        .idle_cpu_percent
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}%"))
        .collect();
    println!("idle consumer CPU (percent of a core): {}", idle.join(", "));
    println!();
    println!("targets (issue 7):");
    for t in &r.targets {
        println!(
            "  {:<72} {:>8.2} {:<7} {}",
            t.what,
            t.ratio,
            t.goal,
            if t.met { "met" } else { "MISSED" }
        );
    }
}

/// The round-trip distributions as an SVG line plot: latency (log scale)
/// against the quantile, in nines (p50, p90, p99, ...).
fn plot_svg(r: &Report) -> String {
    use std::fmt::Write as _;
    let (w, h, left, right, top, bottom) = (960.0, 560.0, 80.0, 250.0, 30.0, 60.0);
    let curves: Vec<(&String, &Vec<(f64, f64)>)> = r
        .rtt_ns
        .iter()
        .filter(|(_, p)| !p.curve.is_empty())
        .map(|(k, p)| (k, &p.curve))
        .collect();
    let points = || curves.iter().flat_map(|(_, c)| c.iter());
    let max_x = points().map(|p| p.0).fold(1.0, f64::max).ceil();
    let lo = points()
        .map(|p| p.1.max(1.0).log10())
        .fold(f64::INFINITY, f64::min)
        .floor()
        .min(2.0);
    let hi = points()
        .map(|p| p.1.max(1.0).log10())
        .fold(lo + 1.0, f64::max)
        .ceil();
    let x = |nines: f64| left + (w - left - right) * nines / max_x;
    let y = |ns: f64| top + (h - top - bottom) * (1.0 - (ns.max(1.0).log10() - lo) / (hi - lo));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18" font-size="14">shmring bench: round-trip latency by quantile ({}, {} cores)</text>"#,
        xml(&r.cpu),
        r.cores
    );
    let mut decade = lo;
    while decade <= hi {
        let ns = 10f64.powf(decade);
        let yy = y(ns);
        let label = if ns >= 1e6 {
            format!("{} ms", ns / 1e6)
        } else if ns >= 1e3 {
            format!("{} µs", ns / 1e3)
        } else {
            format!("{ns} ns")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0
        );
        decade += 1.0;
    }
    for nines in 0..=(max_x as u32) {
        let xx = x(f64::from(nines));
        let label = match nines {
            0 => "p0".to_string(),
            1 => "p90".to_string(),
            n => format!("p99.{}", "9".repeat(n as usize - 2))
                .trim_end_matches('.')
                .to_string(),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            h - bottom,
            h - bottom + 16.0
        );
    }
    let p50 = x(2f64.log10());
    let _ = writeln!(
        s,
        r##"<line x1="{p50:.1}" y1="{top}" x2="{p50:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="4 3"/><text x="{p50:.1}" y="{:.1}" text-anchor="middle">p50</text>"##,
        h - bottom,
        h - bottom + 32.0
    );
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    for (i, (name, curve)) in curves.iter().enumerate() {
        let color = colors[i % colors.len()];
        let pts: Vec<String> = curve
            .iter()
            .map(|&(n, ns)| format!("{:.1},{:.1}", x(n), y(ns)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = top + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            w - right + 15.0,
            w - right + 40.0,
            w - right + 46.0,
            ly + 4.0,
            xml(name)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">quantile (log scale of 1 / (1 - q))</text>"#,
        (left + w - right) / 2.0,
        h - 8.0
    );
    s.push_str("</svg>\n");
    s
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
