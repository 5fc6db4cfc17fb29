//! Argument parsing and the admin commands. Exit codes: 0 done, 1 error (one
//! line `shmring: error: ...` on stderr), 2 usage, 3 timeout.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use shmring::segment::{self, Inspection};
use shmring::{Error, Kind, Layout, SegmentOptions};

mod bench;
mod io;

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

    fn layout(self, kind: KindArg) -> Result<Layout, Error> {
        match kind {
            KindArg::Spsc => Layout::new(Kind::Spsc, self.capacity, self.slot_size, 8),
            KindArg::Mpmc => Layout::with_roles(
                Kind::Mpmc,
                self.capacity,
                self.slot_size,
                8,
                self.producers,
                self.consumers,
            ),
            KindArg::Frames => {
                let bytes = self
                    .capacity
                    .checked_mul(u64::from(self.slot_size))
                    .filter(|b| b.is_power_of_two())
                    .ok_or_else(|| Error::InvalidConfig {
                        what: format!(
                            "capacity x slot-size = {} x {} must be a power of two",
                            self.capacity, self.slot_size
                        ),
                    })?;
                shmring::frames::layout(bytes.max(64))
            }
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
        /// Give up after this many milliseconds without progress (exit 3).
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
        /// Exit 3 when no message arrived for this many milliseconds.
        #[arg(long, value_name = "MS")]
        timeout: Option<u64>,
        /// How to wait while the ring is empty.
        #[arg(long, value_enum, default_value = "park")]
        wait: WaitArg,
    },
    /// Measure round trips and throughput against the hardware limit, pipes
    /// and Unix sockets, in one run.
    Bench(bench::BenchArgs),
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
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shmring: error: {e}");
            if e.is_timeout() { EXIT_TIMEOUT } else { 1 }
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

fn dispatch(cli: Cli) -> Result<(), Error> {
    let dir = cli.dir;
    match cli.command {
        Command::Bench(args) => bench::run(args, &dir),
        Command::Send {
            name,
            create,
            kind,
            shape,
            timeout,
            wait,
        } => io::send(
            &shape.options(&dir),
            &name,
            create.then_some(shape.layout(kind)?),
            timeout,
            wait.strategy(),
        ),
        Command::Recv {
            name,
            create,
            kind,
            shape,
            count,
            timeout,
            wait,
        } => io::recv(
            &shape.options(&dir),
            &name,
            create.then_some(shape.layout(kind)?),
            count,
            timeout,
            wait.strategy(),
        ),
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
                print_json(&info)?;
            } else {
                println!(
                    "created {} ({} ring, capacity {}, {} bytes)",
                    info.path.display(),
                    layout.kind(),
                    layout.capacity(),
                    layout.total_size()
                );
            }
            Ok(())
        }
        Command::Ls { json } => {
            let all = segment::list(&dir)?;
            if json {
                print_json(&all)
            } else {
                print_table(&all);
                Ok(())
            }
        }
        Command::Stat { name, json } => {
            let info = segment::inspect(&dir, &name)?;
            if json {
                print_json(&info)
            } else {
                print_stat(&info);
                Ok(())
            }
        }
        Command::Rm { name, force, json } => {
            segment::remove(&dir, &name, force)?;
            if json {
                print_json(&serde_json::json!({ "removed": name, "path": dir.join(&name) }))
            } else {
                println!("removed {}", dir.join(&name).display());
                Ok(())
            }
        }
        Command::Gc { dry_run, json } => {
            let removed = segment::gc(&dir, dry_run)?;
            if json {
                return print_json(&removed);
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
            Ok(())
        }
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
            opt(i.capacity),
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
    line("capacity", opt(i.capacity));
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
