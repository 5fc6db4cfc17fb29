//! The bench's harness: forked peer processes pinned to their cores, ring
//! and shared-page setup, timing loops, and the plumbing (pipes, sockets)
//! the stream baselines run over.

use super::*;

/// A forked child, killed and reaped on drop.
pub(super) struct Child(pub(super) libc::pid_t);

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: kill and waitpid on our own child's pid; no memory involved.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

pub(super) fn pin(cpu: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).is_ok()
        && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

/// Forks; the child pins itself to core 1 and runs `body`, then exits
/// without unwinding into the parent's code.
pub(super) fn fork(pinned: bool, body: impl FnOnce()) -> Result<Child, Error> {
    fork_on(pinned.then_some(1), body)
}

/// [`fork`], the child pinned to core `cpu` (`None`: not pinned).
pub(super) fn fork_on(cpu: Option<usize>, body: impl FnOnce()) -> Result<Child, Error> {
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
        // SAFETY: prctl with integer arguments only: the kernel kills this
        // child if the bench dies, so no sender outlives it.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        if let Some(cpu) = cpu {
            pin(cpu);
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_ok();
        // SAFETY: ends the child immediately, skipping the parent's
        // destructors (which would detach the parent's handles twice).
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    Ok(Child(pid))
}

/// Times round trips of `one` (which must do one full round trip) for
/// `dur`, after a warm-up ([`RttClock`]); returns the samples in
/// nanoseconds.
pub(super) fn time_rtts(dur: Duration, mut one: impl FnMut(u64)) -> Vec<u64> {
    let mut clock = RttClock::new(dur);
    while clock.warming() {
        one(clock.next());
    }
    loop {
        let i = clock.next();
        let t = Instant::now();
        one(i);
        if !clock.record(t) {
            return clock.samples;
        }
    }
}

/// The clock of a round-trip measurement, for synchronous and async loops
/// alike: a warm-up of 10,000 round trips and at least 100 ms (a
/// measurement otherwise pays for cores waking up), but at most
/// [`RttClock::WARM_MAX`] (a round trip that waits out time slices takes
/// milliseconds); then samples until `dur` has passed (at most 4 million).
pub(super) struct RttClock {
    dur: Duration,
    start: Instant,
    end: Option<Instant>,
    i: u64,
    pub(super) samples: Vec<u64>,
}

impl RttClock {
    /// The longest warm-up.
    pub(super) const WARM_MAX: Duration = Duration::from_millis(500);

    pub(super) fn new(dur: Duration) -> RttClock {
        RttClock {
            dur,
            start: Instant::now(),
            end: None,
            i: 0,
            samples: Vec::with_capacity(1 << 20),
        }
    }

    /// Whether the warm-up goes on (the clock is read every 64 round trips
    /// until the 10,000th, then every time).
    pub(super) fn warming(&self) -> bool {
        if self.i < 10_000 && !self.i.is_multiple_of(64) {
            return true;
        }
        let t = self.start.elapsed();
        t < Duration::from_millis(100) || (self.i < 10_000 && t < Self::WARM_MAX)
    }

    /// The next round trip's number.
    pub(super) fn next(&mut self) -> u64 {
        self.i += 1;
        self.i - 1
    }

    /// Records a round trip that started at `t`; false once the window has
    /// closed.
    pub(super) fn record(&mut self, t: Instant) -> bool {
        let end = *self.end.get_or_insert(t + self.dur);
        self.samples.push(t.elapsed().as_nanos() as u64);
        t < end && self.samples.len() < 4_000_000
    }
}

/// Spins with a bound, then yields, so a benchmark on a busy machine still
/// makes progress.
#[inline]
pub(super) fn relax(spins: &mut u32) {
    *spins += 1;
    if *spins < 1 << 14 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

pub(super) struct Names {
    pub(super) prefix: String,
    pub(super) opts: SegmentOptions,
    /// The backing options of `opts`, for handles' builders.
    pub(super) huge_pages: shmring::segment::HugePages,
    pub(super) populate: bool,
    pub(super) lock_memory: bool,
}

impl Names {
    /// Creates the ring `tag` of `layout` carrying u64 (typed kinds) or
    /// bytes (frames).
    pub(super) fn seg(&self, tag: &str, layout: &shmring::Layout) -> Result<Arc<Segment>, Error> {
        let spec = match layout.kind() {
            shmring::Kind::Frames => shmring::raw::bytes_spec(layout),
            _ => shmring::raw::typed_spec::<u64>(layout),
        };
        Ok(Arc::new(
            self.opts.create(&format!("{}-{tag}", self.prefix), &spec)?,
        ))
    }

    /// A builder of a handle on the ring `tag`, in the bench's directory
    /// with its backing options (for kinds opened only through builders).
    pub(super) fn builder<H: shmring::ring::Endpoint>(
        &self,
        tag: &str,
        strategy: WaitStrategy,
    ) -> shmring::Builder<H> {
        shmring::Builder::new(format!("{}-{tag}", self.prefix))
            .dir(self.opts.directory())
            .huge_pages(self.huge_pages)
            .populate(self.populate)
            .lock_memory(self.lock_memory)
            .wait_strategy(strategy)
    }

    pub(super) fn open(&self, tag: &str) -> Arc<Segment> {
        Arc::new(
            self.opts
                .open(&format!("{}-{tag}", self.prefix))
                .expect("bench child: open ring"),
        )
    }
}

/// A shared page the forked child inherits: a /dev/shm file unlinked at
/// once, so nothing can be left behind.
pub(super) fn shared_page(tag: &str) -> Result<(memmap2::MmapMut, std::fs::File), Error> {
    shared_mapping(tag, 4096)
}

/// `len` zeroed, page-aligned bytes shared with children forked later, as
/// [`shared_page`].
pub(super) fn shared_mapping(
    tag: &str,
    len: u64,
) -> Result<(memmap2::MmapMut, std::fs::File), Error> {
    let path = format!("/dev/shm/shmring-bench-{}-{tag}", std::process::id());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(&path, "open", e))?;
    let _ = std::fs::remove_file(&path);
    file.set_len(len)
        .map_err(|e| Error::io(&path, "ftruncate", e))?;
    // SAFETY: a fresh file nobody else has opened; both processes use it
    // only through atomics or slots those atomics hand over (textbook rings).
    let map = unsafe { memmap2::MmapMut::map_mut(&file) };
    let map = map.map_err(|e| Error::io(&path, "mmap", e))?;
    Ok((map, file))
}

/// A duplex pair of pipes as one Read + Write stream.
pub(super) struct PipePair(std::io::PipeReader, std::io::PipeWriter);

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

pub(super) fn pipes() -> Result<(PipePair, PipePair), Error> {
    let io = |e| Error::io("pipe", "pipe", e);
    let (r1, w1) = std::io::pipe().map_err(io)?;
    let (r2, w2) = std::io::pipe().map_err(io)?;
    Ok((PipePair(r1, w2), PipePair(r2, w1)))
}

/// How long a throughput child keeps sending: past the consumer's warm-up
/// and measurement, with a wide margin (the consumer may be descheduled for
/// seconds on a loaded machine, and would take the sender's exit for a
/// failure); it is killed when the measurement ends, and this only bounds
/// an orphan's life.
pub(super) fn send_window(dur: Duration) -> Instant {
    Instant::now() + dur + Duration::from_secs(60)
}

/// Calls `step` until `dur` has passed after a 100 ms warm-up; returns the
/// number of messages `step` reported per second.
pub(super) fn count_for(dur: Duration, mut step: impl FnMut(&mut u32) -> u64) -> f64 {
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

pub(super) fn cpu_name() -> String {
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

pub(super) fn socket_pair() -> Result<(UnixStream, UnixStream), Error> {
    UnixStream::pair().map_err(|e| Error::io("socketpair", "socketpair", e))
}
