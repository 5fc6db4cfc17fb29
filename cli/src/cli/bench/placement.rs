//! The wait strategies by placement (issue 17): the SPSC round trip with
//! each strategy (the adaptive default, `Spin`, `Yield`, `Park`) with the
//! two processes pinned to separate cores (the `SpscRtt` rows), both pinned
//! to one core (the `OneCoreRtt` rows), and on a busy machine: unpinned,
//! with one CPU-hog process per core (the `BusyRtt` rows, measured here).
//! The default must stay within 2x of the best fixed strategy in every
//! placement.

use super::*;

/// A placement: the `rtt_ns` keys of its default row and of its fixed
/// rows by strategy name.
struct Placement {
    name: &'static str,
    default: &'static str,
    fixed: [(&'static str, &'static str); 3],
}

const PLACEMENTS: [Placement; 3] = [
    Placement {
        name: "pinned",
        default: "shmring_default",
        fixed: [
            ("spin", "shmring_spin"),
            ("yield", "shmring_yield"),
            ("park", "shmring_park"),
        ],
    },
    Placement {
        name: "one core",
        default: "shmring_one_core_default",
        fixed: [
            ("spin", "one_core_spin"),
            ("yield", "one_core_yield"),
            ("park", "one_core_park"),
        ],
    },
    Placement {
        name: "busy",
        default: "shmring_busy_default",
        fixed: [
            ("spin", "busy_spin"),
            ("yield", "busy_yield"),
            ("park", "busy_park"),
        ],
    },
];

/// The `rtt_ns` key of a busy-machine row.
pub(super) fn busy_key(w: WaitArg) -> String {
    match w {
        WaitArg::Default => "shmring_busy_default".into(),
        w => format!("busy_{}", w.name()),
    }
}

/// One CPU-hog process per core, and this process unpinned, while it
/// lives: the hogs are killed and reaped, and this process's cores
/// restored, when it drops (also when a measurement fails or panics).
struct Busy {
    hogs: Vec<Child>,
    affinity: Option<nix::sched::CpuSet>,
}

impl Busy {
    fn start(cores: usize, dur: Duration) -> Result<Busy, Error> {
        let me = nix::unistd::Pid::from_raw(0);
        let affinity = nix::sched::sched_getaffinity(me).ok();
        let mut all = nix::sched::CpuSet::new();
        for cpu in 0..nix::sched::CpuSet::count() {
            // Only CPUs past the set's size fail; the kernel keeps the
            // allowed ones of the rest.
            let _ = all.set(cpu);
        }
        // Unpinned, so that our children are too; the guard exists first,
        // so that the affinity comes back even if a fork fails.
        let mut busy = Busy {
            hogs: Vec::new(),
            affinity,
        };
        let _ = nix::sched::sched_setaffinity(me, &all);
        // A hog lives at most this long should its kill never come (the
        // kernel also kills it with the bench: see `fork_on`).
        let life = dur + Duration::from_secs(60);
        for _ in 0..cores {
            busy.hogs.push(fork_on(None, move || {
                let end = Instant::now() + life;
                while Instant::now() < end {
                    for _ in 0..1 << 16 {
                        std::hint::spin_loop();
                    }
                }
            })?);
        }
        Ok(busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // Each `Child` kills and reaps its hog.
        self.hogs.clear();
        if let Some(set) = self.affinity {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        }
    }
}

/// The SPSC round trip on a busy machine: both processes unpinned, one
/// CPU hog per core running meanwhile.
pub(super) fn busy_rtt(
    n: &Names,
    w: WaitArg,
    dur: Duration,
    cores: usize,
) -> Result<Vec<u64>, Error> {
    let busy = Busy::start(cores, dur)?;
    let layout = spsc::layout::<u64>(64)?;
    let p = ring_rtt_on::<Producer<u64>, Consumer<u64>>(
        n,
        &busy_key(w),
        layout,
        w.strategy(),
        dur,
        None,
    );
    drop(busy);
    p
}

/// One placement's row: the round-trip p50 of each strategy, and the
/// default against the best fixed strategy.
#[derive(Serialize, Clone, Debug)]
pub(super) struct PlacementRow {
    /// `pinned` (separate cores), `one core` or `busy`.
    pub(super) placement: &'static str,
    /// Round-trip p50 in nanoseconds by strategy: `default`, `spin`,
    /// `yield`, `park`.
    pub(super) p50_ns: BTreeMap<&'static str, f64>,
    /// The fixed strategy with the lowest p50.
    pub(super) best_fixed: &'static str,
    /// default p50 / best fixed p50 (issue 17: at most 2).
    pub(super) default_over_best_fixed: f64,
}

/// The placements whose default and fixed rows all ran.
pub(super) fn placement_rows(r: &Report) -> Vec<PlacementRow> {
    let p50 = |k: &str| r.rtt_ns.get(k).map(|p| p.p50).filter(|v| *v > 0.0);
    PLACEMENTS
        .iter()
        .filter_map(|pl| {
            let d = p50(pl.default)?;
            let mut p50_ns = BTreeMap::from([("default", d)]);
            let mut best: Option<(&'static str, f64)> = None;
            for (name, key) in pl.fixed {
                let v = p50(key)?;
                p50_ns.insert(name, v);
                if best.is_none_or(|(_, b)| v < b) {
                    best = Some((name, v));
                }
            }
            let (best_fixed, b) = best?;
            Some(PlacementRow {
                placement: pl.name,
                p50_ns,
                best_fixed,
                default_over_best_fixed: d / b,
            })
        })
        .collect()
}

/// The "strategies by placement" table.
pub(super) fn print_placement(r: &Report) {
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9}  default / best fixed",
        "strategies by placement, p50", "default", "Spin", "Yield", "Park"
    );
    let hogs = if r.cores == 1 { "hog" } else { "hogs" };
    for row in &r.placement {
        let name = match row.placement {
            "pinned" if r.pinned => "pinned (separate cores)".to_string(),
            "pinned" => "not pinned".to_string(),
            "one core" if r.pinned => "one core (both pinned to it)".into(),
            "one core" => "one core: not pinned".into(),
            _ => format!("busy (unpinned, {} CPU {hogs})", r.cores),
        };
        let at = |s: &str| row.p50_ns.get(s).map_or("-".into(), |v| units::nanos(*v));
        println!(
            "{name:<34} {:>9} {:>9} {:>9} {:>9}  {:.2}x ({})",
            at("default"),
            at("spin"),
            at("yield"),
            at("park"),
            row.default_over_best_fixed,
            row.best_fixed
        );
    }
    println!("(issue 17: the default within 2x of the best fixed strategy in every row)");
}
