//! Argument parsing and the admin commands. Exit codes: 0 done, 1 error (one
//! line `shmring: error: ...` on stderr), 2 usage, 3 timeout, 128 + N for a
//! `send` or `recv` stopped by signal N (see `signals`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use shmring::segment::{self, Inspection};
use shmring::{Error, Kind, Layout, SegmentOptions};

mod bench;
#[cfg(feature = "bridge")]
mod bridge;
mod io;
mod signals;

/// Exit code for a bounded wait that ran out.
pub const EXIT_TIMEOUT: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "shmring",
    version,
    about = "Lock-free shared-memory rings: create, inspect, remove, send, receive, benchmark"
)]
struct Cli {
    /// Directory holding the rings (any tmpfs or hugetlbfs mount).
    #[arg(long, global = true, default_value = segment::DEFAULT_DIR, value_name = "PATH")]
    dir: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    /// Variable-length byte frames, one producer, one consumer (what
    /// `send`/`recv` carry); byte area = capacity x slot-size.
    Frames,
    /// Fixed-size slots of slot-size bytes, one producer, one consumer.
    Spsc,
    /// Fixed-size slots of slot-size bytes, many producers and consumers
    /// (`send`/`recv` carry lines of up to slot-size - 4 bytes).
    Mpmc,
}

/// `--wait`: how blocking sends and receives wait.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum WaitArg {
    /// Busy-spin: lowest latency, burns a core.
    Spin,
    /// Spin, then yield the core between polls.
    Yield,
    /// Spin 50 us, then sleep on the ring's futex (no CPU while idle).
    Park,
}

impl WaitArg {
    fn strategy(self) -> shmring::wait::WaitStrategy {
        use shmring::wait::WaitStrategy;
        match self {
            WaitArg::Spin => WaitStrategy::Spin,
            WaitArg::Yield => WaitStrategy::Yield,
            WaitArg::Park => WaitStrategy::default(),
        }
    }
}

/// Ring shape options shared by `create`, `send --create`, `recv --create`.
#[derive(clap::Args, Debug, Clone, Copy)]
struct Shape {
    /// Slots; for frame rings the byte area is capacity x slot-size. A power of two.
    #[arg(long, default_value_t = 1024)]
    capacity: u64,
    /// Bytes per slot.
    #[arg(long, default_value_t = 64)]
    slot_size: u32,
    /// MPMC rings: producer roles (processes that may send at once).
    #[arg(long, default_value_t = shmring::raw::DEFAULT_MPMC_ROLES)]
    producers: u32,
    /// MPMC rings: consumer roles.
    #[arg(long, default_value_t = shmring::raw::DEFAULT_MPMC_ROLES)]
    consumers: u32,
    /// Huge pages for a ring this creates (in a tmpfs: transparent huge
    /// pages; use --dir on a hugetlbfs mount for reserved ones).
    #[arg(long, value_enum, default_value = "off")]
    huge_pages: HugeArg,
    /// Prefault the ring's pages (MAP_POPULATE) on every attach.
    #[arg(long)]
    populate: bool,
    /// Lock the ring's pages in memory (mlock) on every attach.
    #[arg(long)]
    lock_memory: bool,
}

/// `--huge-pages`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum HugeArg {
    /// Normal pages.
    Off,
    /// Huge pages if available, else normal pages (stat says why).
    Prefer,
    /// Huge pages or an error.
    Require,
}

impl From<HugeArg> for shmring::segment::HugePages {
    fn from(h: HugeArg) -> Self {
        match h {
            HugeArg::Off => Self::Off,
            HugeArg::Prefer => Self::Prefer,
            HugeArg::Require => Self::Require,
        }
    }
}

impl Shape {
    /// Segment options for `dir` with this shape's backing flags.
    fn options(self, dir: &std::path::Path) -> SegmentOptions {
        SegmentOptions::new()
            .dir(dir)
            .huge_pages(self.huge_pages.into())
            .populate(self.populate)
            .lock_memory(self.lock_memory)
    }

    /// [`Self::options`] for `send` and `recv`: `--timeout` (when given)
    /// also bounds the wait for a creator still initializing the ring
    /// (otherwise the library's default, 2 s).
    fn io_options(self, dir: &std::path::Path, timeout_ms: Option<u64>) -> SegmentOptions {
        let opts = self.options(dir);
        match timeout_ms {
            Some(ms) => opts.timeout(Duration::from_millis(ms)),
            None => opts,
        }
    }

    /// The layout of a ring of `kind` with this shape. Messages name the
    /// flags as the user gave them (for frame rings, `--capacity` counts
    /// slots of `--slot-size` bytes) and the real limits.
    fn layout(self, kind: KindArg) -> Result<Layout, Error> {
        let cap = self.capacity;
        if !cap.is_power_of_two() {
            let hint = match cap.checked_next_power_of_two() {
                Some(up) if cap > 1 => format!(" (such as {} or {up})", up / 2),
                _ => String::new(),
            };
            return Err(invalid(format!(
                "--capacity {cap} must be a power of two{hint}"
            )));
        }
        if matches!(kind, KindArg::Frames) && !self.slot_size.is_power_of_two() {
            return Err(invalid(format!(
                "--slot-size {} must be a power of two for a frame ring: its byte area, --capacity x --slot-size = {cap} x {}, must be one",
                self.slot_size, self.slot_size
            )));
        }
        match self.layout_of(kind, cap) {
            Ok(layout) => Ok(layout),
            // A power of two the library refuses: too large, unless even
            // the smallest ring of this shape is refused (then the slot
            // size or the role counts are what is wrong, and the library's
            // message says which).
            Err(e) => match self.largest_capacity(kind) {
                Some(max) if max < cap => Err(invalid(self.too_large(kind, max))),
                _ => Err(e),
            },
        }
    }

    /// The layout for `capacity` slots (frame rings: of `slot_size` bytes
    /// each), checked by the library only.
    fn layout_of(self, kind: KindArg, capacity: u64) -> Result<Layout, Error> {
        match kind {
            KindArg::Spsc => Layout::new(Kind::Spsc, capacity, self.slot_size, 8),
            KindArg::Mpmc => Layout::with_roles(
                Kind::Mpmc,
                capacity,
                self.slot_size,
                8,
                self.producers,
                self.consumers,
            ),
            KindArg::Frames => {
                let bytes = capacity
                    .checked_mul(u64::from(self.slot_size))
                    .ok_or_else(|| {
                        invalid(format!(
                            "--capacity {capacity} x --slot-size {} overflows",
                            self.slot_size
                        ))
                    })?;
                shmring::frames::layout(bytes.max(MIN_FRAME_BYTES))
            }
        }
    }

    /// The largest power-of-two `--capacity` the library accepts with this
    /// slot size and these role counts (`None`: not even 1).
    fn largest_capacity(self, kind: KindArg) -> Option<u64> {
        (0..64)
            .rev()
            .map(|e| 1u64 << e)
            .find(|&c| self.layout_of(kind, c).is_ok())
    }

    /// "Too large", in the user's unit, with the real limit.
    fn too_large(self, kind: KindArg, max: u64) -> String {
        let (cap, slot) = (self.capacity, self.slot_size);
        match kind {
            KindArg::Frames => {
                let wanted = u128::from(cap) * u128::from(slot);
                format!(
                    "--capacity {cap} slots of {slot} B would be {wanted} bytes of frames; the largest frame ring holds {} bytes: --capacity {max} with --slot-size {slot}",
                    u128::from(max) * u128::from(slot)
                )
            }
            _ => format!(
                "--capacity {cap} slots of {slot} B is more than a ring can hold: the largest {} ring with --slot-size {slot} has --capacity {max}",
                kind.name()
            ),
        }
    }
}

/// The smallest byte area of a frame ring (a smaller capacity x slot-size
/// is rounded up to it).
const MIN_FRAME_BYTES: u64 = 64;

fn invalid(what: String) -> Error {
    Error::InvalidConfig { what }
}

impl KindArg {
    fn name(self) -> &'static str {
        match self {
            KindArg::Frames => "frames",
            KindArg::Spsc => "spsc",
            KindArg::Mpmc => "mpmc",
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a persistent ring (exit 1 if the name exists).
    Create {
        /// Ring name (a file name in --dir).
        name: String,
        /// What the ring holds.
        #[arg(long, value_enum, default_value = "frames")]
        kind: KindArg,
        #[command(flatten)]
        shape: Shape,
        /// Permission bits, octal.
        #[arg(long, default_value = "600", value_parser = parse_octal)]
        mode: u32,
        /// Print the created ring as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List every object in the directory.
    Ls {
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one ring's header, occupancy and users.
    Stat {
        /// Ring name.
        name: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a ring nobody is attached to.
    Rm {
        /// Ring name.
        name: String,
        /// Remove it even if processes are attached or it is corrupt.
        #[arg(long)]
        force: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send each line of stdin as one message of a frame or MPMC ring
    /// (waits while the ring is full).
    Send {
        /// Ring name.
        name: String,
        /// Create the ring if it does not exist (either side may come first).
        #[arg(long)]
        create: bool,
        /// With --create: what kind of ring to create.
        #[arg(long, value_enum, default_value = "frames")]
        kind: KindArg,
        #[command(flatten)]
        shape: Shape,
        /// Give up after this many milliseconds without progress (exit 3);
        /// also bounds the wait for a creator still initializing the ring.
        #[arg(long, value_name = "MS")]
        timeout: Option<u64>,
        /// How to wait while the ring is full.
        #[arg(long, value_enum, default_value = "park")]
        wait: WaitArg,
    },
    /// Print each received message (frame or MPMC slot) as one line.
    Recv {
        /// Ring name.
        name: String,
        /// Create the ring if it does not exist (either side may come first).
        #[arg(long)]
        create: bool,
        /// With --create: what kind of ring to create.
        #[arg(long, value_enum, default_value = "frames")]
        kind: KindArg,
        #[command(flatten)]
        shape: Shape,
        /// Exit 0 after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Exit 3 when no message arrived for this many milliseconds; also
        /// bounds the wait for a creator still initializing the ring.
        #[arg(long, value_name = "MS")]
        timeout: Option<u64>,
        /// How to wait while the ring is empty.
        #[arg(long, value_enum, default_value = "park")]
        wait: WaitArg,
    },
    /// Measure round trips and throughput against the hardware limit, pipes
    /// and Unix sockets, in one run.
    Bench(bench::BenchArgs),
    /// Carry a ring's messages to other hosts over Zenoh, or from them.
    #[cfg(feature = "bridge")]
    #[command(subcommand)]
    Bridge(bridge::BridgeCommand),
    /// Remove stale rings (nobody attached; never initialized or not persistent).
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// One JSON array of what was removed.
        #[arg(long)]
        json: bool,
    },
}

fn parse_octal(s: &str) -> Result<u32, String> {
    let v = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode such as 600 or 660"))?;
    if v > 0o777 {
        return Err(format!("{s:?}: mode bits go up to 777"));
    }
    Ok(v)
}

/// Parses arguments, runs the command and returns the exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match dispatch(cli) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("shmring: error: {e}");
            // `send`/`recv`: a signal came while the error happened; the
            // signal is why the process ends.
            if let Some(signal) = signals::received() {
                signals::exit_status(signal)
            } else if e.is_timeout() {
                EXIT_TIMEOUT
            } else {
                1
            }
        }
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::InvalidConfig {
        what: format!("cannot encode JSON: {e}"),
    })?;
    println!("{text}");
    Ok(())
}

/// Runs the command; `Ok` holds the exit status (0, or 128 + signal for a
/// `send` or `recv` that a signal stopped).
fn dispatch(cli: Cli) -> Result<i32, Error> {
    let dir = cli.dir;
    match cli.command {
        Command::Bench(args) => bench::run(args, &dir).map(|()| 0),
        #[cfg(feature = "bridge")]
        Command::Bridge(cmd) => bridge::run(cmd, &dir),
        Command::Send {
            name,
            create,
            kind,
            shape,
            timeout,
            wait,
        } => {
            let layout = create.then(|| shape.layout(kind)).transpose()?;
            signals::install(false)?;
            io::send(
                &shape.io_options(&dir, timeout),
                &name,
                layout,
                timeout,
                wait.strategy(),
            )
        }
        Command::Recv {
            name,
            create,
            kind,
            shape,
            count,
            timeout,
            wait,
        } => {
            let layout = create.then(|| shape.layout(kind)).transpose()?;
            signals::install(true)?;
            io::recv(
                &shape.io_options(&dir, timeout),
                &name,
                layout,
                count,
                timeout,
                wait.strategy(),
            )
        }
        Command::Create {
            name,
            kind,
            shape,
            mode,
            json,
        } => {
            let layout = shape.layout(kind)?;
            let seg = shape
                .options(&dir)
                .mode(mode)
                .persistent(true)
                .create(&name, &shmring::raw::bytes_spec(&layout))?;
            let info = segment::inspect(&dir, &name)?;
            drop(seg);
            if json {
                let mut v = json_with_units(&info)?;
                if let Some(obj) = v.as_object_mut() {
                    // The flags as given (for frame rings `capacity` is
                    // the byte area; these say how it was asked for).
                    obj.insert("requested_capacity".into(), shape.capacity.into());
                    obj.insert("requested_slot_size".into(), shape.slot_size.into());
                }
                print_json(&v)?;
            } else {
                println!(
                    "created {} ({} ring, {}; {} bytes in all)",
                    info.path.display(),
                    layout.kind(),
                    created_capacity(kind, &shape, &layout),
                    layout.total_size()
                );
            }
            Ok(0)
        }
        Command::Ls { json } => {
            let all = segment::list(&dir)?;
            if json {
                let all = all
                    .iter()
                    .map(json_with_units)
                    .collect::<Result<Vec<_>, _>>()?;
                print_json(&all)?;
            } else {
                print_table(&all);
            }
            Ok(0)
        }
        Command::Stat { name, json } => {
            let info = segment::inspect(&dir, &name)?;
            if json {
                print_json(&json_with_units(&info)?)?;
            } else {
                print_stat(&info);
            }
            Ok(0)
        }
        Command::Rm { name, force, json } => {
            segment::remove(&dir, &name, force)?;
            if json {
                print_json(&serde_json::json!({ "removed": name, "path": dir.join(&name) }))?;
            } else {
                println!("removed {}", dir.join(&name).display());
            }
            Ok(0)
        }
        Command::Gc { dry_run, json } => {
            let removed = segment::gc(&dir, dry_run)?;
            if json {
                print_json(&removed)?;
                return Ok(0);
            }
            let verb = if dry_run { "would remove" } else { "removed" };
            for info in &removed {
                println!(
                    "{verb} {} ({})",
                    info.path.display(),
                    info.detail.as_deref().unwrap_or("stale")
                );
            }
            if removed.is_empty() {
                println!("nothing stale in {}", dir.display());
            }
            Ok(0)
        }
    }
}

/// What `create` says about the capacity: in the unit of `--capacity`
/// (slots), and for frame rings the byte area it makes.
fn created_capacity(kind: KindArg, shape: &Shape, layout: &Layout) -> String {
    let (cap, slot) = (shape.capacity, shape.slot_size);
    let slots = if cap == 1 { "slot" } else { "slots" };
    match kind {
        KindArg::Frames => format!(
            "capacity {cap} {slots} of {slot} B = {} bytes of frames",
            layout.capacity()
        ),
        _ => format!("capacity {cap} {slots} of {slot} B"),
    }
}

/// The unit of an inspected ring's `capacity`: frame rings record their
/// byte area, the others their slots.
fn capacity_unit(info: &Inspection) -> Option<&'static str> {
    info.capacity?;
    Some(if info.kind.as_deref() == Some("frames") {
        "bytes"
    } else {
        "slots"
    })
}

/// The inspection as JSON, plus `capacity_unit` ("slots" or "bytes") when
/// it has a capacity. (The other keys keep their documented meaning.)
fn json_with_units(info: &Inspection) -> Result<serde_json::Value, Error> {
    let mut v = serde_json::to_value(info).map_err(|e| Error::InvalidConfig {
        what: format!("cannot encode JSON: {e}"),
    })?;
    if let (Some(unit), Some(obj)) = (capacity_unit(info), v.as_object_mut()) {
        obj.insert("capacity_unit".into(), unit.into());
    }
    Ok(v)
}

/// A capacity with its unit, for `stat` and `ls`.
fn capacity_text(info: &Inspection, long: bool) -> String {
    match (info.capacity, capacity_unit(info)) {
        (Some(c), Some("bytes")) if long => format!("{c} bytes of frames"),
        (Some(c), Some("bytes")) => format!("{c} B"),
        (Some(c), Some(_)) if long => format!("{c} slots"),
        (c, _) => opt(c),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn state_name(info: &Inspection) -> String {
    serde_json::to_value(info.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn print_table(all: &[Inspection]) {
    println!(
        "{:<24} {:<7} {:>10} {:>6} {:>12} {:>8} {:>8} {:<12}",
        "NAME", "KIND", "CAPACITY", "SLOT", "BYTES", "LEN", "ATTACHED", "STATE"
    );
    for i in all {
        println!(
            "{:<24} {:<7} {:>10} {:>6} {:>12} {:>8} {:>8} {:<12}",
            i.name,
            i.kind.as_deref().unwrap_or("-"),
            capacity_text(i, false),
            opt(i.slot_size),
            i.size_bytes,
            opt(i.len),
            i.attached,
            state_name(i)
        );
    }
}

fn print_stat(i: &Inspection) {
    let line = |k: &str, v: String| println!("{k:<14} {v}");
    line("name", i.name.clone());
    line("path", i.path.display().to_string());
    line("state", state_name(i));
    if let Some(d) = &i.detail {
        line("detail", d.clone());
    }
    line("kind", opt(i.kind.clone()));
    line("version", opt(i.version.clone()));
    line("capacity", capacity_text(i, true));
    line("slot_size", opt(i.slot_size));
    if let Some(name) = &i.message_name {
        line("message", name.clone());
    }
    if let Some(id) = &i.message_id {
        line("message_id", id.clone());
    }
    line("size_bytes", i.size_bytes.to_string());
    line("persistent", i.persistent.to_string());
    line("len", opt(i.len));
    if let Some(n) = i.skipped {
        line(
            "skipped",
            format!("{n} (slots whose producer died mid-write)"),
        );
    }
    if let Some(n) = i.redelivered {
        line(
            "redelivered",
            format!("{n} (messages whose consumer died holding them)"),
        );
    }
    if let Some(b) = i.bytes_used {
        line("bytes_used", b.to_string());
    }
    if let Some(h) = &i.huge_pages {
        let active = if i.huge_active == Some(true) {
            "in use"
        } else {
            "not in use"
        };
        line(
            "huge_pages",
            format!("{h} ({active}; {} KiB pages)", opt(i.page_size_kib)),
        );
    }
    if let Some(f) = &i.huge_fallback {
        line("huge_fallback", f.clone());
    }
    if i.populate == Some(true) || i.lock_memory == Some(true) {
        line(
            "on attach",
            format!(
                "{}{}",
                if i.populate == Some(true) {
                    "populate "
                } else {
                    ""
                },
                if i.lock_memory == Some(true) {
                    "mlock"
                } else {
                    ""
                }
            ),
        );
    }
    for m in &i.mappings {
        line(
            &format!("pid {}", m.pid),
            format!(
                "{} KiB mapped, {} KiB resident, {} KiB locked, {} KiB pages, {} KiB PMD-mapped{}",
                m.size_kib,
                m.rss_kib,
                m.locked_kib,
                m.kernel_page_kib,
                m.pmd_mapped_kib,
                if m.huge() { " (huge)" } else { "" }
            ),
        );
    }
    line("mode", format!("{} (uid {})", i.mode, i.uid));
    line("inode", i.inode.to_string());
    line(
        "generation",
        opt(i.generation.map(|g| format!("{g:#018x}"))),
    );
    line("creator_pid", opt(i.creator_pid));
    let pids: Vec<String> = i.attached_pids.iter().map(|p| p.to_string()).collect();
    line("attached", format!("{} [{}]", i.attached, pids.join(", ")));
    for (label, w) in [("wait data", &i.wait_data), ("wait space", &i.wait_space)] {
        if let Some(w) = w {
            line(
                label,
                format!(
                    "{} wakeups, {} sleeps, {} spurious, {} waiting now",
                    w.wakeups, w.sleeps, w.spurious, w.waiters
                ),
            );
        }
    }
    for r in &i.roles {
        line(
            &r.role,
            format!(
                "{} (pid {})",
                if r.alive { "alive" } else { "not held" },
                r.pid
            ),
        );
    }
}
