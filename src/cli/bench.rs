//! `shmring bench`: shmring against the hardware limit and the alternatives,
//! in one run, as ratios. The peer is a forked child process pinned to
//! another core (when there is one).

use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use shmring::frames::{self, FrameConsumer, FrameProducer, ReserveError};
use shmring::spsc::{self, Consumer, Producer, TryPopError, TryPushError};
use shmring::wait::{WaitStrategy, raw};
use shmring::{Error, Segment, SegmentOptions};

/// Options of `shmring bench`.
#[derive(clap::Args, Debug, Clone)]
pub(super) struct BenchArgs {
    /// Seconds per measurement (there are nine).
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Frame size in bytes for the frame, pipe and socket throughput runs.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Ring capacity in slots (typed rings) for the shmring runs.
    #[arg(long, default_value_t = 1024)]
    capacity: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
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

#[derive(Serialize, Clone, Copy, Debug)]
struct Percentiles {
    p50: f64,
    p99: f64,
    p999: f64,
    samples: usize,
}

#[derive(Serialize, Debug, Default)]
struct Report {
    rtt_ns: std::collections::BTreeMap<&'static str, Percentiles>,
    throughput_msgs_per_s: std::collections::BTreeMap<String, f64>,
    memcpy_gb_per_s: f64,
    frames_gb_per_s: f64,
    frame_size: usize,
    cpu: String,
    cores: usize,
    pinned: bool,
    idle_cpu_percent: std::collections::BTreeMap<&'static str, f64>,
    not_measured: Vec<&'static str>,
    /// The rings' directory and backing options.
    backing: String,
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
    let at = |q: f64| {
        if v.is_empty() {
            return 0.0;
        }
        v[((v.len() - 1) as f64 * q).round() as usize] as f64
    };
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        samples: v.len(),
    }
}

/// Times round trips of `one` (which must do one full round trip) for
/// `dur`, after a short warm-up.
fn time_rtts(dur: Duration, mut one: impl FnMut(u64)) -> Percentiles {
    for i in 0..10_000 {
        one(i);
    }
    let mut samples = Vec::with_capacity(1 << 20);
    let end = Instant::now() + dur;
    let mut i = 10_000u64;
    while samples.len() < 4_000_000 {
        let t = Instant::now();
        one(i);
        samples.push(t.elapsed().as_nanos() as u64);
        i += 1;
        if i.is_multiple_of(1024) && Instant::now() >= end {
            break;
        }
    }
    percentiles(samples)
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

fn atomic_limit(dur: Duration, pinned: bool) -> Result<Percentiles, Error> {
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

/// Round trips through two SPSC rings, both sides waiting by `strategy`.
fn shmring_rtt(
    n: &Names,
    tag: &str,
    strategy: WaitStrategy,
    dur: Duration,
    pinned: bool,
) -> Result<Percentiles, Error> {
    let l = spsc::layout::<u64>(64)?;
    let id = spsc::type_id::<u64>();
    let (ping_name, pong_name) = (format!("{tag}-ping"), format!("{tag}-pong"));
    let ping = n.seg(&ping_name, &l, id)?;
    let pong = n.seg(&pong_name, &l, id)?;
    let child = fork(pinned, || {
        let mut rx = Consumer::<u64>::attach(n.open(&ping_name)).expect("ping consumer");
        let mut tx = Producer::<u64>::attach(n.open(&pong_name)).expect("pong producer");
        rx.set_wait_strategy(strategy);
        tx.set_wait_strategy(strategy);
        while let Ok(v) = rx.pop() {
            if tx.push(v).is_err() {
                return;
            }
        }
    })?;
    let mut tx = Producer::<u64>::attach(ping)?;
    let mut rx = Consumer::<u64>::attach(pong)?;
    tx.set_wait_strategy(strategy);
    rx.set_wait_strategy(strategy);
    let p = time_rtts(dur, |i| {
        tx.push(i).expect("bench push");
        rx.pop().expect("bench pop");
    });
    // The child dies first so that our detach is the last one and removes
    // the rings (a killed process never detaches).
    drop(child);
    drop((tx, rx));
    Ok(p)
}

/// A bare futex ping-pong: the floor for any design that sleeps per message.
fn futex_limit(dur: Duration, pinned: bool) -> Result<Percentiles, Error> {
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

/// CPU used by a consumer waiting `dur` on an empty ring by `strategy`, in
/// percent of one core (from the child's utime + stime).
fn idle_cpu(
    n: &Names,
    tag: &str,
    strategy: WaitStrategy,
    dur: Duration,
    pinned: bool,
) -> Result<f64, Error> {
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
    std::thread::sleep(dur.min(Duration::from_secs(2)));
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
) -> Result<Percentiles, Error> {
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

/// Messages per second: the child sends for `dur`, we count what arrives.
fn spsc_throughput(
    n: &Names,
    dur: Duration,
    pinned: bool,
    batch: usize,
    cap: u64,
) -> Result<f64, Error> {
    let seg = n.seg(
        &format!("tp{batch}"),
        &spsc::layout::<u64>(cap)?,
        spsc::type_id::<u64>(),
    )?;
    let child = fork(pinned, || {
        let mut tx = Producer::<u64>::attach(n.open(&format!("tp{batch}"))).expect("producer");
        let end = Instant::now() + dur + Duration::from_millis(200);
        let buf: Vec<u64> = (0..batch as u64).collect();
        let mut i = 0u64;
        while Instant::now() < end {
            for _ in 0..1024 {
                if batch == 1 {
                    match tx.try_push(i) {
                        Ok(()) => i += 1,
                        Err(TryPushError::Full(_)) => std::hint::spin_loop(),
                        Err(_) => return,
                    }
                } else {
                    match tx.push_slice(&buf) {
                        Ok(k) => i += k as u64,
                        Err(TryPushError::Full(())) => std::hint::spin_loop(),
                        Err(_) => return,
                    }
                }
            }
        }
    })?;
    let mut rx = Consumer::<u64>::attach(seg)?;
    let mut out = vec![0u64; batch];
    let mut count = 0u64;
    // Skip the start-up, then count for `dur`.
    let start_at = Instant::now() + Duration::from_millis(100);
    let mut started: Option<Instant> = None;
    let mut spins = 0;
    loop {
        let got = if batch == 1 {
            rx.try_pop().map(|_| 1)
        } else {
            rx.pop_into(&mut out)
        };
        match got {
            Ok(k) => {
                if let Some(s) = started {
                    count += k as u64;
                    if count % 4096 < k as u64 && s.elapsed() >= dur {
                        break;
                    }
                } else if Instant::now() >= start_at {
                    started = Some(Instant::now());
                }
            }
            Err(TryPopError::Empty) => relax(&mut spins),
            Err(_) => break,
        }
    }
    let secs = started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(1.0);
    drop(child);
    drop(rx);
    Ok(count as f64 / secs)
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
            true
        }
        Err(TryPopError::Empty) => {
            relax(spins);
            false
        }
        Err(_) => panic!("bench: frame ring failed"),
    });
    std::hint::black_box(&dst);
    drop(child);
    drop(rx);
    Ok(count)
}

/// Calls `step` until `dur` has passed after a 100 ms warm-up; returns the
/// rate of `true` results per second.
fn count_for(dur: Duration, mut step: impl FnMut(&mut u32) -> bool) -> f64 {
    let warm = Instant::now() + Duration::from_millis(100);
    let mut spins = 0;
    while Instant::now() < warm {
        step(&mut spins);
    }
    let start = Instant::now();
    let mut count = 0u64;
    loop {
        if step(&mut spins) {
            count += 1;
            spins = 0;
        }
        if count.is_multiple_of(256) && start.elapsed() >= dur {
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
        true
    });
    drop(ours);
    drop(child);
    Ok(rate)
}

fn memcpy_gb_per_s(size: usize, dur: Duration) -> f64 {
    let src = vec![0x5au8; size];
    let mut dst = vec![0u8; size];
    let rate = count_for(dur.min(Duration::from_secs(1)), |_| {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        true
    });
    rate * size as f64 / 1e9
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

pub(super) fn run(args: BenchArgs, dir: &std::path::Path) -> Result<(), Error> {
    if !(0.05..=600.0).contains(&args.duration) {
        return Err(err("--duration must be between 0.05 and 600 seconds"));
    }
    if args.size == 0 || args.size > 1 << 20 {
        return Err(err("--size must be between 1 and 1048576 bytes"));
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
    let mut r = Report {
        frame_size: size,
        cpu: cpu_name(),
        cores,
        pinned,
        not_measured: vec!["mpmc (not in shmring bench yet)"],
        backing: format!(
            "dir {}, huge pages {:?}, populate {}, mlock {}",
            dir.display(),
            args.huge_pages,
            args.populate,
            args.lock_memory
        ),
        ..Report::default()
    };
    let steps = 16;
    let progress = std::io::stderr().is_terminal() && !args.json;
    let mut step = 0;
    let mut tick = |what: &str| {
        step += 1;
        if progress {
            let done = "#".repeat(step * 30 / steps);
            eprint!("\r[{done:<30}] {step}/{steps} {what:<32}");
        }
    };
    tick("atomic ping-pong (hardware limit)");
    r.rtt_ns.insert("atomic_limit", atomic_limit(dur, pinned)?);
    tick("shmring spin round trip");
    r.rtt_ns.insert(
        "shmring_spin",
        shmring_rtt(&n, "spin", WaitStrategy::Spin, dur, pinned)?,
    );
    tick("shmring default (park after 50 us)");
    r.rtt_ns.insert(
        "shmring_default",
        shmring_rtt(&n, "default", WaitStrategy::default(), dur, pinned)?,
    );
    tick("futex ping-pong (sleeping limit)");
    r.rtt_ns.insert("futex_limit", futex_limit(dur, pinned)?);
    tick("shmring park round trip");
    let park = WaitStrategy::Park {
        spin: Duration::ZERO,
    };
    r.rtt_ns
        .insert("shmring_park", shmring_rtt(&n, "park", park, dur, pinned)?);
    for (key, strategy) in [
        ("spin", WaitStrategy::Spin),
        ("yield", WaitStrategy::Yield),
        ("park", WaitStrategy::default()),
    ] {
        tick("idle consumer CPU");
        r.idle_cpu_percent.insert(
            key,
            idle_cpu(&n, &format!("idle-{key}"), strategy, dur, pinned)?,
        );
    }
    tick("pipe round trip");
    let (a, b) = pipes()?;
    let mut b = Some(b);
    r.rtt_ns.insert(
        "pipe",
        stream_rtt(dur, pinned, a, || b.take().expect("once"))?,
    );
    tick("unix socket round trip");
    let (a, b) = UnixStream::pair().map_err(|e| Error::io("socketpair", "socketpair", e))?;
    let mut b = Some(b);
    r.rtt_ns.insert(
        "unix_socket",
        stream_rtt(dur, pinned, a, || b.take().expect("once"))?,
    );
    tick("shmring u64 one by one");
    let one = spsc_throughput(&n, dur, pinned, 1, args.capacity)?;
    r.throughput_msgs_per_s
        .insert("shmring_spsc_u64".into(), one);
    tick("shmring u64 batched");
    let batched = spsc_throughput(&n, dur, pinned, 64, args.capacity)?;
    r.throughput_msgs_per_s
        .insert("shmring_spsc_u64_batched".into(), batched);
    tick("shmring frames");
    let fr = frames_throughput(&n, dur, pinned, size)?;
    r.throughput_msgs_per_s
        .insert(format!("shmring_frames_{}", size_tag(size)), fr);
    r.frames_gb_per_s = fr * size as f64 / 1e9;
    tick("pipe throughput");
    let (a, b) = pipes()?;
    let mut b = Some(b);
    let p = stream_throughput(dur, pinned, size, a, || b.take().expect("once"))?;
    r.throughput_msgs_per_s
        .insert(format!("pipe_{}", size_tag(size)), p);
    tick("unix socket throughput");
    let (a, b) = UnixStream::pair().map_err(|e| Error::io("socketpair", "socketpair", e))?;
    let mut b = Some(b);
    let u = stream_throughput(dur, pinned, size, a, || b.take().expect("once"))?;
    r.throughput_msgs_per_s
        .insert(format!("unix_socket_{}", size_tag(size)), u);
    tick("memcpy");
    r.memcpy_gb_per_s = memcpy_gb_per_s(size, dur);
    if progress {
        eprintln!();
    }
    if args.json {
        let text = serde_json::to_string_pretty(&r).map_err(|e| err(e.to_string()))?;
        println!("{text}");
    } else {
        print_report(&r, size);
    }
    Ok(())
}

fn size_tag(size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{}k", size / 1024)
    } else {
        format!("{size}b")
    }
}

fn print_report(r: &Report, size: usize) {
    println!(
        "shmring bench: {} ({} cores{})",
        r.cpu,
        r.cores,
        if r.pinned {
            ", pinned to cores 0 and 1"
        } else {
            ", not pinned"
        }
    );
    println!("rings: {}", r.backing);
    println!();
    let limit = r.rtt_ns.get("atomic_limit").map(|p| p.p50).unwrap_or(0.0);
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>12}",
        "round trip (ns)", "p50", "p99", "p99.9", "p50 / limit"
    );
    for key in [
        "atomic_limit",
        "shmring_spin",
        "shmring_default",
        "futex_limit",
        "shmring_park",
        "pipe",
        "unix_socket",
    ] {
        if let Some(p) = r.rtt_ns.get(key) {
            println!(
                "{:<22} {:>10.0} {:>10.0} {:>10.0} {:>11.2}x",
                key,
                p.p50,
                p.p99,
                p.p999,
                if limit > 0.0 { p.p50 / limit } else { 0.0 }
            );
        }
    }
    println!();
    let tag = size_tag(size);
    let socket = r
        .throughput_msgs_per_s
        .get(&format!("unix_socket_{tag}"))
        .copied()
        .unwrap_or(0.0);
    println!("{:<26} {:>16} {:>14}", "throughput", "msgs/s", "vs socket");
    for (k, v) in &r.throughput_msgs_per_s {
        let vs = if k.ends_with(&tag) && socket > 0.0 {
            format!("{:.1}x", v / socket)
        } else {
            "-".into()
        };
        println!("{k:<26} {v:>16.0} {vs:>14}");
    }
    println!();
    println!(
        "{tag} frames: {:.2} GB/s = {:.2}x a single-core memcpy of {size} bytes ({:.2} GB/s)",
        r.frames_gb_per_s,
        if r.memcpy_gb_per_s > 0.0 {
            r.frames_gb_per_s / r.memcpy_gb_per_s
        } else {
            0.0
        },
        r.memcpy_gb_per_s
    );
    let futex = r.rtt_ns.get("futex_limit").map(|p| p.p50).unwrap_or(0.0);
    if let Some(p) = r.rtt_ns.get("shmring_park")
        && futex > 0.0
    {
        println!("shmring_park p50 = {:.2}x the futex limit", p.p50 / futex);
    }
    let idle: Vec<String> = r
        .idle_cpu_percent
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}%"))
        .collect();
    println!("idle consumer CPU (percent of a core): {}", idle.join(", "));
    for m in &r.not_measured {
        println!("not measured: {m}");
    }
}
