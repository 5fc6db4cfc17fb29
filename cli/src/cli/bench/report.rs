//! The bench's report: its figures (printed as JSON with `--json`), issue
//! 7's performance targets judged from them, each shmring row against its
//! textbook ring (issue 15), and what the bridges add to Zenoh (issue 18).
//! `table` prints them for a person.

use super::*;

/// The key of the bridge rows (under `rtt_ns` and `throughput_msgs_per_s`).
pub(super) const BRIDGED: &str = "shmring_bridges_tcp";
/// The key of the direct Zenoh rows they are read against.
pub(super) const DIRECT_ZENOH: &str = "zenoh_pubsub_tcp";
/// Bytes per message of those rows.
pub(super) const BRIDGE_MSG: usize = 16;

/// The bridge rows against direct Zenoh over the same transport.
#[derive(Serialize, Clone, Debug)]
pub(super) struct BridgeSummary {
    /// Bytes per message.
    pub(super) message_bytes: usize,
    /// `tcp 127.0.0.1`: both sessions in one process, joined over
    /// loopback.
    pub(super) transport: &'static str,
    /// Bridged msgs/s / direct msgs/s, the median over rounds of each
    /// round's pair (below 1: the bridges are slower).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) throughput_ratio: Option<f64>,
    /// Round-trip p50 through two bridge pairs minus the Zenoh
    /// ping-pong's: what four bridges (two each way) add.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rtt_added_p50_ns: Option<f64>,
    /// The same at p99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rtt_added_p99_ns: Option<f64>,
}

/// One performance target of issue 7, checked against this run.
#[derive(Serialize, Clone, Debug)]
pub(super) struct Target {
    pub(super) what: &'static str,
    /// The measured ratio.
    pub(super) ratio: f64,
    /// The bound it must meet.
    pub(super) goal: &'static str,
    pub(super) met: bool,
}

/// A shmring row next to the textbook ring it is read against (issue 15).
#[derive(Serialize, Clone, Debug)]
pub(super) struct VsTextbook {
    pub(super) what: &'static str,
    /// The keys of the two rows (under `rtt_ns` or `throughput_msgs_per_s`).
    pub(super) textbook: String,
    pub(super) shmring: String,
    /// `ns` (round-trip p50) or `msgs/s`.
    pub(super) unit: &'static str,
    pub(super) textbook_value: f64,
    pub(super) shmring_value: f64,
    /// shmring / textbook: of the p50s for round trips (above 1: slower);
    /// for throughputs the median over rounds of each round's pair (below
    /// 1: slower).
    pub(super) ratio: f64,
}

#[derive(Serialize, Debug, Default)]
pub(super) struct Report {
    pub(super) rtt_ns: BTreeMap<String, Percentiles>,
    pub(super) throughput_msgs_per_s: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) memcpy_gb_per_s: Option<f64>,
    /// `frames_<size>_gb_per_s`, e.g. `frames_4k_gb_per_s`.
    #[serde(flatten)]
    pub(super) frames_gb: BTreeMap<String, f64>,
    pub(super) frame_size: usize,
    pub(super) cpu: String,
    pub(super) cores: usize,
    pub(super) pinned: bool,
    pub(super) idle_cpu_percent: BTreeMap<String, f64>,
    /// The fan-out rows (`spsc_fanout_u64_<n>`, `shmring_broadcast_u64_<n>sub`):
    /// how they waited, and each reader's rate next to the publisher's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) fanout: BTreeMap<String, Fanout>,
    /// The SPSC round trip by wait strategy in each placement (issue 17).
    #[serde(
        rename = "strategies_by_placement",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(super) placement: Vec<PlacementRow>,
    /// The async round trip against the blocking `Park` one and tokio's
    /// `UnixStream` (issue 17).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) async_round_trip: Option<AsyncRtt>,
    pub(super) targets: Vec<Target>,
    /// Each shmring row against its textbook ring, for the rows this run
    /// measured.
    pub(super) vs_textbook: Vec<VsTextbook>,
    /// The bridge rows against direct Zenoh, when they ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) bridge: Option<BridgeSummary>,
    /// The rings' directory and backing options.
    pub(super) backing: String,
    /// Seconds per measurement, over all rounds.
    pub(super) duration_s: f64,
    /// Interleaved rounds each measurement was split into.
    pub(super) rounds: u32,
    /// Each throughput's value in every round (targets compare rounds
    /// pairwise: neighbours in time see the same machine state).
    #[serde(skip)]
    pub(super) throughput_rounds: BTreeMap<String, Vec<f64>>,
    #[serde(skip)]
    pub(super) memcpy_rounds: Vec<f64>,
}

/// The median over rounds of `a * scale / b`, each pair measured in one
/// round.
pub(super) fn per_round(a: &[f64], b: &[f64], scale: f64) -> Option<f64> {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, b)| **b > 0.0)
        .map(|(a, b)| a * scale / b)
        .collect();
    (!ratios.is_empty()).then(|| median(ratios))
}

/// The paired ratio of two throughput rows, as `per_round`.
pub(super) fn tp_ratio(r: &Report, a: &str, b: &str) -> Option<f64> {
    let rounds = |k: &str| r.throughput_rounds.get(k).filter(|v| !v.is_empty());
    per_round(rounds(a)?, rounds(b)?, 1.0)
}

/// Each shmring row this run measured against its textbook ring.
pub(super) fn vs_textbook(r: &Report, tag: &str) -> Vec<VsTextbook> {
    let mut out = Vec::new();
    for (what, textbook, shmring) in [
        ("round trip p50, spsc spin", "textbook_spsc", "shmring_spin"),
        (
            "round trip p50, spsc default strategy",
            "textbook_spsc",
            "shmring_default",
        ),
    ] {
        let p50 = |k: &str| r.rtt_ns.get(k).map(|p| p.p50).filter(|v| *v > 0.0);
        if let (Some(t), Some(s)) = (p50(textbook), p50(shmring)) {
            out.push(VsTextbook {
                what,
                textbook: textbook.into(),
                shmring: shmring.into(),
                unit: "ns",
                textbook_value: t,
                shmring_value: s,
                ratio: s / t,
            });
        }
    }
    for (what, textbook, shmring) in [
        (
            "spsc u64 one by one, 2 processes",
            "textbook_spsc_u64".to_string(),
            "shmring_spsc_u64".to_string(),
        ),
        (
            "spsc u64 batches of 64, 2 processes",
            "textbook_spsc_u64_batched".into(),
            "shmring_spsc_u64_batched".into(),
        ),
        (
            "mpmc u64 1p1c, 2 processes (textbook: Vyukov)",
            "textbook_mpmc_u64".into(),
            "shmring_mpmc_u64".into(),
        ),
        (
            "records / frames, 2 processes (cross-core copy)",
            format!("textbook_{tag}"),
            format!("shmring_frames_{tag}"),
        ),
    ] {
        let tp = |k: &str| r.throughput_msgs_per_s.get(k).copied();
        if let (Some(t), Some(s), Some(ratio)) = (
            tp(&textbook),
            tp(&shmring),
            tp_ratio(r, &shmring, &textbook),
        ) {
            out.push(VsTextbook {
                what,
                textbook,
                shmring,
                unit: "msgs/s",
                textbook_value: t,
                shmring_value: s,
                ratio,
            });
        }
    }
    out
}

/// What the bridges add to Zenoh, if their rows ran.
pub(super) fn bridge_summary(r: &Report) -> Option<BridgeSummary> {
    let rtt = |k: &str| r.rtt_ns.get(k).filter(|p| p.samples > 0);
    let added = rtt(BRIDGED).zip(rtt(DIRECT_ZENOH));
    let throughput_ratio = tp_ratio(r, BRIDGED, DIRECT_ZENOH);
    if added.is_none() && throughput_ratio.is_none() {
        return None;
    }
    Some(BridgeSummary {
        message_bytes: BRIDGE_MSG,
        transport: "tcp 127.0.0.1",
        throughput_ratio,
        rtt_added_p50_ns: added.map(|(b, d)| b.p50 - d.p50),
        rtt_added_p99_ns: added.map(|(b, d)| b.p99 - d.p99),
    })
}

/// Issue 7's performance targets, for the rows this run measured.
pub(super) fn targets(r: &Report, tag: &str) -> Vec<Target> {
    let rtt = |k: &str| r.rtt_ns.get(k).map(|p| p.p50).filter(|v| *v > 0.0);
    let rounds = |k: &str| r.throughput_rounds.get(k).filter(|v| !v.is_empty());
    let tp_ratio = |a: &str, b: &str| tp_ratio(r, a, b);
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
    for row in &r.placement {
        let what = match row.placement {
            "pinned" => "pinned to separate cores: default p50 / best fixed p50 (issue 17)",
            "one core" => "both on one core: default p50 / best fixed p50 (issue 17)",
            _ => "busy machine: default p50 / best fixed p50 (issue 17)",
        };
        at_most(what, "<= 2", 2.0, Some(row.p50.default_over_best_fixed));
    }
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

pub(super) fn size_tag(size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{}k", size / 1024)
    } else {
        format!("{size}b")
    }
}
