//! Argument parsing and the admin commands. Exit codes: 0 done, 1 error (one
//! line `shmring: error: ...` on stderr), 2 usage, 3 timeout, 128 + N for a
//! `send` or `recv` stopped by signal N (see `signals`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use shmring::segment;
use shmring::{Error, Kind, Layout, SegmentOptions};

mod bench;
#[cfg(feature = "bridge")]
mod bridge;
mod broadcast;
mod io;
mod show;
mod signals;

use show::{created_capacity, json_with_units, print_json, print_stat, print_table};

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
    /// One publisher, many subscribers: every `recv` gets every line `send`
    /// publishes (lines of up to slot-size bytes).
    Broadcast,
}

/// `--wait`: how blocking sends and receives wait.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum WaitArg {
    /// Busy-spin: lowest latency, burns a core.
    Spin,
    /// Spin, then yield the core between polls.
    Yield,
    /// The default (adaptive): spin while spinning pays, then yield, then
    /// sleep on the ring's futex (no CPU while idle).
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
    /// Broadcast rings: subscriber roles (`recv` processes at once) [default: 32].
    #[arg(long, value_name = "N")]
    subscribers: Option<u32>,
    /// Broadcast rings: what the publisher does when the slowest subscriber
    /// is a whole ring behind [default: block].
    #[arg(long, value_enum)]
    overflow: Option<broadcast::OverflowArg>,
    /// Broadcast rings with --overflow block: evict a live subscriber that
    /// keeps the publisher waiting this long, such as 250ms or 2s (it is
    /// told how many lines it missed and goes on); `never`: wait for it
    /// forever [default: 1s].
    #[arg(long, value_name = "DURATION|never", value_parser = broadcast::parse_evict_after)]
    evict_after: Option<broadcast::EvictAfter>,
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
        let stray = broadcast::flags_given(&self);
        if !matches!(kind, KindArg::Broadcast) && !stray.is_empty() {
            return Err(invalid(format!(
                "{} {} for --kind broadcast rings, not {} rings",
                stray.join(", "),
                if stray.len() == 1 { "is" } else { "are" },
                kind.name()
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
            KindArg::Broadcast => broadcast::layout(&self, capacity),
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
            KindArg::Broadcast => "broadcast",
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
    /// (waits while the ring is full), or publish it to every subscriber
    /// of a broadcast ring.
    ///
    /// On a broadcast ring a line reaches the subscribers attached when it
    /// is published, and later ones that start at `--from oldest` while it
    /// is still in the ring; on a `block` ring `send` waits for the slowest
    /// live subscriber, on an `overwrite` ring never.
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
    /// Print each received message as one line (frame or MPMC ring: each
    /// message goes to one `recv`; broadcast ring: every line to every
    /// `recv`).
    ///
    /// On a broadcast ring each `recv` is a subscriber with its own
    /// position (`stat` shows it): it takes nothing out of the ring, so
    /// there are no receipts and nothing is delivered again. A `recv`
    /// killed loses only the lines it had read and not yet written, and
    /// `recv --from SEQ` takes up again while they are in the ring (a
    /// `recv` stopped by a signal names SEQ). Lines a subscriber missed
    /// (lapped on an overwrite ring, evicted on a block ring) are counted
    /// in a warning on stderr, and it goes on. It ends once the publisher
    /// is gone and everything is read.
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
        /// Broadcast rings: where to start: the oldest line still in the
        /// ring, the next one published, or a sequence number [default:
        /// oldest].
        #[arg(long, value_name = "oldest|latest|SEQ", value_parser = broadcast::parse_from)]
        from: Option<shmring::ring::Start>,
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
            if broadcast::is_broadcast(&dir, &name, layout.as_ref()) {
                let strategy = wait.strategy();
                return broadcast::send(&dir, &name, &shape, layout.as_ref(), timeout, strategy);
            }
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
            from,
        } => {
            let layout = create.then(|| shape.layout(kind)).transpose()?;
            if broadcast::is_broadcast(&dir, &name, layout.as_ref()) {
                signals::install(true)?;
                let (from, strategy) = (from.unwrap_or_default(), wait.strategy());
                return broadcast::recv(
                    &dir,
                    &name,
                    &shape,
                    layout.as_ref(),
                    from,
                    count,
                    timeout,
                    strategy,
                );
            }
            if from.is_some() {
                return Err(invalid(format!(
                    "--from is for broadcast rings, and {name} is not one"
                )));
            }
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
                let roles = match kind {
                    KindArg::Broadcast => broadcast::describe(&layout),
                    _ => String::new(),
                };
                println!(
                    "created {} ({} ring, {}{roles}; {} bytes in all)",
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
