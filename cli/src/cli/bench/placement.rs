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

/// One measure of a placement's round trips by strategy.
#[derive(Serialize, Clone, Debug)]
pub(super) struct Figures {
    /// Nanoseconds by strategy: `default`, `spin`, `yield`, `park`.
    pub(super) ns: BTreeMap<&'static str, f64>,
    /// The fixed strategy with the lowest figure.
    pub(super) best_fixed: &'static str,
    /// default / best fixed (issue 17: at most 2, of the p50s).
    pub(super) default_over_best_fixed: f64,
}

impl Figures {
    /// From `of(key)` for the placement's rows, when all ran.
    fn of(pl: &Placement, of: impl Fn(&str) -> Option<f64>) -> Option<Figures> {
        let d = of(pl.default)?;
        let mut ns = BTreeMap::from([("default", d)]);
        let mut best: Option<(&'static str, f64)> = None;
        for (name, key) in pl.fixed {
            let v = of(key)?;
            ns.insert(name, v);
            if best.is_none_or(|(_, b)| v < b) {
                best = Some((name, v));
            }
        }
        let (best_fixed, b) = best?;
        Some(Figures {
            ns,
            best_fixed,
            default_over_best_fixed: d / b,
        })
    }
}

/// One placement's row: the round trip of each strategy, and the default
/// against the best fixed strategy.
#[derive(Serialize, Clone, Debug)]
pub(super) struct PlacementRow {
    /// `pinned` (separate cores), `one core` or `busy`.
    pub(super) placement: &'static str,
    /// The p50s: issue 17's measure.
    pub(super) p50: Figures,
    /// The means: the time per round trip over the window. On a busy
    /// machine the p50 counts the many quick round trips made while both
    /// processes run; the mean also counts the time slices waited out.
    pub(super) mean: Figures,
}

/// The placements whose default and fixed rows all ran.
pub(super) fn placement_rows(r: &Report) -> Vec<PlacementRow> {
    let get = |k: &str, f: fn(&Percentiles) -> f64| r.rtt_ns.get(k).map(f).filter(|v| *v > 0.0);
    PLACEMENTS
        .iter()
        .filter_map(|pl| {
            Some(PlacementRow {
                placement: pl.name,
                p50: Figures::of(pl, |k| get(k, |p| p.p50))?,
                mean: Figures::of(pl, |k| get(k, |p| p.mean))?,
            })
        })
        .collect()
}

/// The "strategies by placement" table: the p50s (issue 17's measure),
/// then the means.
pub(super) fn print_placement(r: &Report) {
    let hogs = if r.cores == 1 { "hog" } else { "hogs" };
    let name = |placement: &str| match placement {
        "pinned" if r.pinned => "pinned (separate cores)".to_string(),
        "pinned" => "not pinned".to_string(),
        "one core" if r.pinned => "one core (both pinned to it)".into(),
        "one core" => "one core: not pinned".into(),
        _ => format!("busy (unpinned, {} CPU {hogs})", r.cores),
    };
    for (measure, of) in [
        ("p50", (|row| &row.p50) as fn(&PlacementRow) -> &Figures),
        ("mean", |row| &row.mean),
    ] {
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>9}  default / best fixed",
            format!("strategies by placement, {measure}"),
            "default",
            "Spin",
            "Yield",
            "Park"
        );
        for row in &r.placement {
            let f = of(row);
            let at = |s: &str| f.ns.get(s).map_or("-".into(), |v| super::units::nanos(*v));
            println!(
                "{:<34} {:>9} {:>9} {:>9} {:>9}  {:.2}x ({})",
                name(row.placement),
                at("default"),
                at("spin"),
                at("yield"),
                at("park"),
                f.default_over_best_fixed,
                f.best_fixed
            );
        }
    }
    println!(
        "(issue 17: the default's p50 within 2x of the best fixed strategy's in every row; the mean is the time per round trip, time slices waited out included)"
    );
}
