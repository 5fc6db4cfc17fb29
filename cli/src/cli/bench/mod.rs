//! `shmring bench`: shmring against the hardware limit and the alternatives,
//! in one run, as ratios. The peer is a forked child process pinned to
//! another core (when there is one).
//!
//! The submodules: `harness` (forked peers, pinning, rings, timing loops),
//! `scenarios` (one function per measured row), `fanout` (the broadcast
//! rows and the SPSC fan-out they are read against), `asyncrtt` (the async
//! round trip and its tokio `UnixStream` reference), `placement` (the wait
//! strategies pinned, on one core and on a busy machine), `textbook` (the textbook
//! rings each shmring ring is read against, and their rows), `bridge` (rings
//! over Zenoh against Zenoh alone; feature `bridge`), `statistics`, `report`
//! (figures, targets), `table` (the printed table), `units` (figures with
//! their units), `progress` (what is running, on stderr) and `plot` (`--plot`
//! SVG). They take these imports and the items here with `use super::*`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use shmring::frames::{self, FramePushError};
use shmring::spsc::{self, Consumer, Producer, TryPopError, TryPushError};
use shmring::wait::{WaitStrategy, raw};
use shmring::{Error, Segment, SegmentOptions, mpmc};

mod asyncrtt;
#[cfg(feature = "bridge")]
mod bridge;
mod fanout;
mod harness;
mod placement;
mod plot;
mod progress;
mod report;
mod scenarios;
mod statistics;
mod table;
mod textbook;
mod units;

use asyncrtt::*;
#[cfg(feature = "bridge")]
use bridge::*;
use fanout::*;
use harness::*;
use placement::*;
use plot::*;
use report::*;
use scenarios::*;
use statistics::*;
use table::*;
use textbook::*;

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
    /// `all` means spin, default and park, and for SPSC round trips also
    /// yield, in every placement (pinned, one core, busy machine).
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
    /// SPSC typed, frames, MPMC, broadcast and (built with the `bridge`
    /// feature) the bridges.
    All,
    /// Typed SPSC rings (round trips, async round trip, strategies by
    /// placement, u64 throughput).
    Spsc,
    /// Frame rings (throughput at --size, against pipe, socket, memcpy).
    Frames,
    /// MPMC rings (round trips, 1 and 2 producers).
    Mpmc,
    /// Broadcast rings (round trip; 1, 2 and 4 subscribers against as many
    /// SPSC rings fed copy by copy).
    Broadcast,
    /// Frame rings carried by bridges over loopback TCP (ring to ring
    /// throughput, round trips through two bridge pairs) against a direct
    /// Zenoh publisher and subscriber; needs the `bridge` feature.
    Bridge,
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
    /// The default strategy (adaptive: spin, yield, then park).
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

fn err(what: impl Into<String>) -> Error {
    Error::InvalidConfig { what: what.into() }
}

/// One measurement of the run.
#[derive(Clone, Copy, Debug)]
enum Step {
    AtomicLimit,
    FutexLimit,
    SpscRtt(WaitArg),
    /// SPSC round trip with both processes pinned to one core.
    OneCoreRtt(WaitArg),
    /// SPSC round trip unpinned, with one CPU hog per core.
    BusyRtt(WaitArg),
    /// SPSC round trip awaited on tokio current-thread runtimes.
    AsyncRtt,
    /// tokio `UnixStream` round trip, current-thread on both sides.
    TokioUnixRtt,
    MpmcRtt(WaitArg),
    BroadcastRtt(WaitArg),
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
    TextbookRtt,
    TextbookU64,
    TextbookU64Batched,
    TextbookRecords,
    TextbookMpmc,
    /// One publisher and this many readers: broadcast (true) or SPSC
    /// rings fed copy by copy.
    Fanout(bool, u32),
    /// Ring to ring through two bridges over loopback TCP (true), or a
    /// Zenoh publisher to its subscriber.
    #[cfg(feature = "bridge")]
    ZenohThroughput(bool),
    /// Round trips through two bridge pairs (true), or a Zenoh ping-pong.
    #[cfg(feature = "bridge")]
    ZenohRtt(bool),
}

impl Step {
    fn label(self) -> String {
        match self {
            Step::AtomicLimit => "atomic ping-pong (hardware limit)".into(),
            Step::FutexLimit => "futex ping-pong (sleeping limit)".into(),
            Step::SpscRtt(w) => format!("spsc round trip, {}", w.name()),
            Step::OneCoreRtt(w) => format!("spsc round trip on one core, {}", w.name()),
            Step::BusyRtt(w) => format!("spsc round trip, busy machine, {}", w.name()),
            Step::AsyncRtt => "spsc async round trip (tokio)".into(),
            Step::TokioUnixRtt => "tokio unix socket round trip".into(),
            Step::MpmcRtt(w) => format!("mpmc round trip, {}", w.name()),
            Step::BroadcastRtt(w) => format!("broadcast round trip, {}", w.name()),
            Step::IdleCpu(w) => format!("idle consumer CPU, {}", w.name()),
            Step::PipeRtt => "pipe round trip".into(),
            Step::UnixRtt => "unix socket round trip".into(),
            Step::SpscU64 => "spsc u64 one by one".into(),
            Step::SpscU64Batched => "spsc u64 batched".into(),
            Step::Rtrb => "rtrb in-process".into(),
            Step::Frames => "frames".into(),
            Step::PipeThroughput => "pipe throughput".into(),
            Step::UnixThroughput => "unix socket throughput".into(),
            Step::Memcpy => "single-core hot memcpy".into(),
            Step::MpmcU64(p) => format!("mpmc u64, {p} producer(s)"),
            Step::ArrayQueue => "crossbeam ArrayQueue in-process".into(),
            Step::TextbookRtt => "textbook spsc round trip".into(),
            Step::TextbookU64 => "textbook spsc u64 one by one".into(),
            Step::TextbookU64Batched => "textbook spsc u64 batched".into(),
            Step::TextbookRecords => "textbook records (cross-core copy)".into(),
            Step::TextbookMpmc => "textbook vyukov mpmc u64".into(),
            Step::Fanout(false, k) => format!("spsc u64 fed copy by copy to {k} ring(s)"),
            Step::Fanout(true, k) => format!("broadcast u64, {k} subscriber(s)"),
            #[cfg(feature = "bridge")]
            Step::ZenohThroughput(true) => "bridges over loopback tcp, throughput".into(),
            #[cfg(feature = "bridge")]
            Step::ZenohThroughput(false) => "zenoh pub/sub over loopback tcp, throughput".into(),
            #[cfg(feature = "bridge")]
            Step::ZenohRtt(true) => "bridges over loopback tcp, round trip".into(),
            #[cfg(feature = "bridge")]
            Step::ZenohRtt(false) => "zenoh ping-pong over loopback tcp".into(),
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
        // The textbook ring right before shmring's, as for throughputs.
        steps.push(Step::TextbookRtt);
        // With every strategy, the default is read against each fixed one
        // in each placement (issue 17): separate cores, one core, a busy
        // machine.
        let all = [
            WaitArg::Spin,
            WaitArg::Default,
            WaitArg::Yield,
            WaitArg::Park,
        ];
        let each = if wait == WaitArg::All {
            &all[..]
        } else {
            &waits
        };
        steps.extend(each.iter().map(|&w| Step::SpscRtt(w)));
        // The async round trip right after the blocking ones (Park last).
        steps.extend([Step::AsyncRtt, Step::TokioUnixRtt]);
        if wait == WaitArg::All {
            steps.extend(all.map(Step::OneCoreRtt));
            steps.extend(all.map(Step::BusyRtt));
        }
    }
    if has(KindArg::Mpmc) {
        // One strategy is enough to compare the kinds' round trips.
        steps.push(Step::MpmcRtt(waits[0]));
    }
    if has(KindArg::Broadcast) {
        steps.push(Step::BroadcastRtt(waits[0]));
    }
    // Zenoh alone right before the bridges that add to it.
    #[cfg(feature = "bridge")]
    if has(KindArg::Bridge) {
        steps.extend([Step::ZenohRtt(false), Step::ZenohRtt(true)]);
    }
    steps.push(Step::FutexLimit);
    steps.extend(waits.iter().map(|&w| Step::IdleCpu(w)));
    steps.extend([Step::PipeRtt, Step::UnixRtt]);
    if has(KindArg::Spsc) {
        // Each shmring row next to its reference, so that a pair sees the
        // same machine state.
        steps.extend([
            Step::TextbookU64,
            Step::SpscU64,
            Step::Rtrb,
            Step::TextbookU64Batched,
            Step::SpscU64Batched,
        ]);
    }
    if has(KindArg::Frames) {
        steps.extend([
            Step::UnixThroughput,
            Step::TextbookRecords,
            Step::Frames,
            Step::Memcpy,
            Step::PipeThroughput,
        ]);
    }
    if has(KindArg::Mpmc) {
        steps.extend([
            Step::TextbookMpmc,
            Step::MpmcU64(1),
            Step::ArrayQueue,
            Step::MpmcU64(2),
        ]);
    }
    if has(KindArg::Broadcast) {
        for k in READERS {
            steps.extend([Step::Fanout(false, k), Step::Fanout(true, k)]);
        }
    }
    #[cfg(feature = "bridge")]
    if has(KindArg::Bridge) {
        steps.extend([Step::ZenohThroughput(false), Step::ZenohThroughput(true)]);
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
    if args.kind == KindArg::Bridge && !cfg!(feature = "bridge") {
        return Err(err(
            "--kind bridge: this shmring was built without the `bridge` feature",
        ));
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
        huge_pages: args.huge_pages.into(),
        populate: args.populate,
        lock_memory: args.lock_memory,
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
    let mut progress = progress::Progress::new(args.json, steps.len(), args.rounds);
    let spsc_ring = spsc::layout::<u64>(64)?;
    let mpmc_ring = mpmc::layout_with_roles::<u64>(64, 1, 1)?;
    let rounds = args.rounds;
    let dur = dur / rounds;
    let mut rtt: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut tps: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut memcpy = Vec::new();
    let mut fan: BTreeMap<String, Vec<FanRates>> = BTreeMap::new();
    for round in 0..rounds {
        for (phase, &step) in steps.iter().enumerate() {
            progress.phase(round, phase, &step.label());
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
                Step::OneCoreRtt(w) => {
                    // The fixed strategies are the references; the default
                    // is read against them.
                    let key = match w {
                        WaitArg::Default => "shmring_one_core_default".to_string(),
                        w => format!("one_core_{}", w.name()),
                    };
                    let p = ring_rtt_on::<Producer<u64>, Consumer<u64>>(
                        &n,
                        &key,
                        spsc_ring,
                        w.strategy(),
                        dur,
                        pinned.then_some(0),
                    )?;
                    pool(key, p);
                }
                Step::BusyRtt(w) => pool(busy_key(w), busy_rtt(&n, w, dur, cores)?),
                Step::AsyncRtt => pool(ASYNC_KEY.into(), async_rtt(&n, dur, pinned)?),
                Step::TokioUnixRtt => pool(TOKIO_UNIX_KEY.into(), tokio_unix_rtt(dur, pinned)?),
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
                Step::BroadcastRtt(w) => {
                    let p = broadcast_rtt(&n, w.strategy(), dur, pinned)?;
                    pool(format!("shmring_broadcast_{}", w.name()), p);
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
                Step::TextbookRtt => pool("textbook_spsc".into(), textbook_rtt(dur, pinned)?),
                Step::TextbookU64 => {
                    let v = textbook_throughput(dur, pinned, 1, cap)?;
                    put("textbook_spsc_u64".into(), v);
                }
                Step::TextbookU64Batched => {
                    let v = textbook_throughput(dur, pinned, 64, cap)?;
                    put("textbook_spsc_u64_batched".into(), v);
                }
                Step::TextbookRecords => {
                    let v = textbook_records_throughput(dur, pinned, size)?;
                    put(format!("textbook_{tag}"), v);
                }
                Step::TextbookMpmc => {
                    let v = textbook_mpmc_throughput(dur, pinned, cap)?;
                    put("textbook_mpmc_u64".into(), v);
                }
                Step::Fanout(broadcast, readers) => {
                    let run = FanRun {
                        n: &n,
                        broadcast,
                        readers,
                        cap,
                        dur,
                        cores,
                        pinned,
                    };
                    let rates = run.measure()?;
                    put(run.key(), rates.publisher);
                    fan.entry(run.key()).or_default().push(rates);
                }
                #[cfg(feature = "bridge")]
                Step::ZenohThroughput(bridged) => {
                    let key = if bridged { BRIDGED } else { DIRECT_ZENOH };
                    put(key.into(), zenoh_throughput(&n, dur, bridged)?);
                }
                #[cfg(feature = "bridge")]
                Step::ZenohRtt(bridged) => {
                    let key = if bridged { BRIDGED } else { DIRECT_ZENOH };
                    pool(key.into(), zenoh_rtt(&n, dur, bridged)?);
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
    r.fanout = fanout_report(fan, cores, pinned);
    r.memcpy_rounds = memcpy.clone();
    for (key, gb) in [
        (
            format!("shmring_frames_{tag}"),
            format!("frames_{tag}_gb_per_s"),
        ),
        (
            format!("textbook_{tag}"),
            format!("textbook_{tag}_gb_per_s"),
        ),
    ] {
        if let Some(rate) = r.throughput_msgs_per_s.get(&key) {
            r.frames_gb.insert(gb, rate * size as f64 / 1e9);
        }
    }
    if !memcpy.is_empty() {
        r.memcpy_gb_per_s = Some(median(memcpy));
    }
    progress.finish();
    r.placement = placement_rows(&r);
    r.async_round_trip = async_report(&r);
    r.targets = targets(&r, &tag);
    r.vs_textbook = vs_textbook(&r, &tag);
    r.bridge = bridge_summary(&r);
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
