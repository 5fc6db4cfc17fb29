//! The bench's printed table: every reference (the hardware limits, the
//! textbook rings, the in-process queues, pipes and sockets) followed by the
//! shmring rows read against it, each with how much faster or slower it is;
//! then idle CPU and issue 7's targets. `--json` prints the same figures
//! under stable keys instead.

use super::units::{bytes_per_s, msgs_per_s, nanos, versus};
use super::*;

/// Width of the row names.
const NAME: usize = 50;

/// A row's name as a person reads it; unknown keys print as they are.
fn label(key: &str, tag: &str) -> String {
    let named = match key {
        "atomic_limit" => "atomic ping-pong (the hardware limit)",
        "futex_limit" => "futex ping-pong (the limit when sleeping)",
        "one_core_yield" => "both on one core: shmring SPSC, Yield",
        "one_core_park" => "both on one core: shmring SPSC, Park (no spin)",
        "shmring_one_core_default" => "both on one core: shmring SPSC, default",
        "one_core_spin" => "both on one core: shmring SPSC, Spin",
        "busy_spin" => "busy machine: shmring SPSC, Spin",
        "busy_yield" => "busy machine: shmring SPSC, Yield",
        "busy_park" => "busy machine: shmring SPSC, Park (no spin)",
        "shmring_busy_default" => "busy machine: shmring SPSC, default",
        "shmring_async" => "shmring SPSC, async (tokio, both processes)",
        "tokio_unix_socket" => "tokio UnixStream (current-thread, both)",
        "textbook_spsc" => "textbook Lamport SPSC ring",
        "pipe" => "pipe",
        "unix_socket" => "unix socket",
        "textbook_spsc_u64" => "textbook Lamport ring, u64 one by one",
        "shmring_spsc_u64" => "shmring SPSC, u64 one by one",
        "rtrb_u64_in_process" => "rtrb, u64 one by one, in-process",
        "textbook_spsc_u64_batched" => "textbook Lamport ring, u64 batches of 64",
        "shmring_spsc_u64_batched" => "shmring SPSC, u64 batches of 64",
        "textbook_mpmc_u64" => "textbook Vyukov MPMC queue, u64, 1 producer",
        "crossbeam_array_queue_u64_in_process" => "crossbeam ArrayQueue, u64, in-process",
        "shmring_mpmc_u64" => "shmring MPMC, u64, 1 producer",
        _ => "",
    };
    if !named.is_empty() {
        return named.into();
    }
    if key == DIRECT_ZENOH {
        format!("Zenoh pub/sub, loopback TCP, {BRIDGE_MSG} bytes")
    } else if key == BRIDGED {
        format!("shmring bridges, ring to ring, {BRIDGE_MSG} bytes")
    } else if key == format!("textbook_{tag}") {
        format!("textbook {tag} records ring (cross-core copy limit)")
    } else if key == format!("shmring_frames_{tag}") {
        format!("shmring frames of {tag}")
    } else if key == format!("unix_socket_{tag}") {
        format!("unix socket, {tag} writes")
    } else if key == format!("pipe_{tag}") {
        format!("pipe, {tag} writes")
    } else if let Some(k) = key
        .strip_prefix("shmring_broadcast_u64_")
        .and_then(|k| k.strip_suffix("sub"))
    {
        let s = if k == "1" { "" } else { "s" };
        format!("shmring broadcast, u64, {k} subscriber{s}")
    } else if let Some(k) = key.strip_prefix("spsc_fanout_u64_") {
        let s = if k == "1" { "" } else { "s" };
        format!("shmring SPSC, u64 copied into {k} ring{s}")
    } else if let Some(w) = key.strip_prefix("shmring_broadcast_") {
        format!("shmring broadcast, {w}")
    } else if let Some(p) = key
        .strip_prefix("shmring_mpmc_u64_")
        .and_then(|p| p.strip_suffix('p'))
    {
        format!("shmring MPMC, u64, {p} producers")
    } else if let Some(w) = key.strip_prefix("shmring_mpmc_") {
        format!("shmring MPMC, {w}")
    } else if let Some(w) = key.strip_prefix("shmring_") {
        format!("shmring SPSC, {w}")
    } else {
        key.into()
    }
}

/// References in the order printed, each with the shmring rows read
/// against it; `rows` are the keys this run measured. A shmring row may sit
/// under several references; one that no rule places goes under the first
/// reference, and a reference no rule names comes last, alone.
fn groups(rows: &[&String], rules: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    let has = |k: &str| rows.iter().any(|r| *r == k);
    let mut out: Vec<(String, Vec<String>)> = rules
        .iter()
        .filter(|(reference, _)| has(reference))
        .map(|(reference, under)| {
            let under = under.iter().filter(|k| has(k)).cloned().collect();
            (reference.clone(), under)
        })
        .collect();
    let placed = |out: &[(String, Vec<String>)], k: &str| {
        out.iter()
            .any(|(r, under)| r == k || under.iter().any(|u| u == k))
    };
    for k in rows {
        if placed(&out, k) {
            continue;
        }
        if k.starts_with("shmring_") && !out.is_empty() {
            out[0].1.push((*k).clone());
        } else {
            out.push(((*k).clone(), Vec::new()));
        }
    }
    out
}

fn owned(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// The round-trip rows, grouped under their references.
fn print_round_trips(r: &Report) {
    let keys: Vec<&String> = r.rtt_ns.keys().collect();
    // The bridges are read against Zenoh alone, not against memory.
    let shm: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("shmring_") && k.as_str() != BRIDGED)
        .map(|k| k.to_string())
        .collect();
    let p50 = |k: &str| r.rtt_ns.get(k).map_or(f64::INFINITY, |p| p.p50);
    // Pipes and sockets against shmring's fastest: Spin if it ran.
    let fastest: Vec<String> = if shm.iter().any(|k| k == "shmring_spin") {
        owned(&["shmring_spin"])
    } else {
        shm.iter()
            .min_by(|a, b| p50(a).total_cmp(&p50(b)))
            .cloned()
            .into_iter()
            .collect()
    };
    // The spinning rows against the hardware's limit, the sleeping ones
    // against the futex's.
    let park: Vec<String> = shm
        .iter()
        .filter(|k| k.ends_with("_park"))
        .cloned()
        .collect();
    let mut at_limit = owned(&["shmring_spin"]);
    at_limit.extend(
        shm.iter()
            .filter(|k| {
                (k.starts_with("shmring_mpmc_") || k.starts_with("shmring_broadcast_"))
                    && !park.contains(k)
            })
            .cloned(),
    );
    let rules = [
        ("atomic_limit".to_string(), at_limit),
        (
            "textbook_spsc".into(),
            owned(&["shmring_spin", "shmring_default", "shmring_yield"]),
        ),
        ("futex_limit".into(), park),
        (
            "one_core_yield".into(),
            owned(&["shmring_one_core_default"]),
        ),
        ("one_core_park".into(), owned(&["shmring_one_core_default"])),
        ("one_core_spin".into(), owned(&["shmring_one_core_default"])),
        ("busy_yield".into(), owned(&["shmring_busy_default"])),
        ("busy_park".into(), owned(&["shmring_busy_default"])),
        ("busy_spin".into(), owned(&["shmring_busy_default"])),
        // The async round trip against the blocking one and tokio's.
        ("shmring_park".into(), owned(&["shmring_async"])),
        ("tokio_unix_socket".into(), owned(&["shmring_async"])),
        ("pipe".into(), fastest.clone()),
        ("unix_socket".into(), fastest),
        (DIRECT_ZENOH.into(), owned(&[BRIDGED])),
    ];
    println!(
        "{:<NAME$} {:>9} {:>9} {:>9}  shmring's p50 against it",
        "round trip, 8 bytes there and back", "p50", "p99", "p99.9"
    );
    let line = |name: String, k: &str, vs: String| {
        if let Some(p) = r.rtt_ns.get(k) {
            let text = format!(
                "{name:<NAME$} {:>9} {:>9} {:>9}  {vs}",
                nanos(p.p50),
                nanos(p.p99),
                nanos(p.p999)
            );
            println!("{}", text.trim_end());
        }
    };
    for (reference, under) in groups(&keys, &rules) {
        line(label(&reference, ""), &reference, String::new());
        for k in under {
            line(
                format!("  {}", label(&k, "")),
                &k,
                versus(p50(&reference) / p50(&k)),
            );
        }
    }
}

/// The throughput rows, grouped under their references; rows of `tag`
/// sized records also in GB/s.
fn print_throughputs(r: &Report, tag: &str) {
    let keys: Vec<&String> = r.throughput_msgs_per_s.keys().collect();
    let frames = format!("shmring_frames_{tag}");
    let mut mpmc = owned(&["shmring_mpmc_u64"]);
    mpmc.extend(
        keys.iter()
            .filter(|k| k.starts_with("shmring_mpmc_u64_"))
            .map(|k| k.to_string()),
    );
    // Each broadcast row under as many SPSC rings fed copy by copy.
    let fanout = READERS.map(|k| {
        (
            format!("spsc_fanout_u64_{k}"),
            vec![format!("shmring_broadcast_u64_{k}sub")],
        )
    });
    let rules = [
        (
            "textbook_spsc_u64".to_string(),
            owned(&["shmring_spsc_u64"]),
        ),
        ("rtrb_u64_in_process".into(), owned(&["shmring_spsc_u64"])),
        (
            "textbook_spsc_u64_batched".into(),
            owned(&["shmring_spsc_u64_batched"]),
        ),
        ("textbook_mpmc_u64".into(), mpmc),
        (
            "crossbeam_array_queue_u64_in_process".into(),
            owned(&["shmring_mpmc_u64"]),
        ),
        (format!("textbook_{tag}"), vec![frames.clone()]),
        (format!("unix_socket_{tag}"), vec![frames.clone()]),
        (format!("pipe_{tag}"), vec![frames.clone()]),
        (DIRECT_ZENOH.into(), owned(&[BRIDGED])),
    ]
    .into_iter()
    .chain(fanout);
    println!(
        "{:<NAME$} {:>14} {:>10}  shmring against it",
        format!(
            "throughput, median of {} round{}",
            r.rounds,
            if r.rounds == 1 { "" } else { "s" }
        ),
        "messages",
        "bytes"
    );
    let sized = |k: &str| k.ends_with(&format!("_{tag}"));
    let line = |name: String, k: &str, vs: String| {
        if let Some(v) = r.throughput_msgs_per_s.get(k) {
            let bytes = if sized(k) {
                bytes_per_s(v * r.frame_size as f64)
            } else {
                String::new()
            };
            let text = format!("{name:<NAME$} {:>14} {bytes:>10}  {vs}", msgs_per_s(*v));
            println!("{}", text.trim_end());
        }
    };
    let rules: Vec<_> = rules.collect();
    for (reference, under) in groups(&keys, &rules) {
        line(fan_label(r, &reference, tag), &reference, String::new());
        print_readers(r, &reference, "  ");
        for k in under {
            let ratio = tp_ratio(r, &k, &reference).unwrap_or(f64::NAN);
            line(format!("  {}", fan_label(r, &k, tag)), &k, versus(ratio));
            print_readers(r, &k, "    ");
        }
    }
    if let Some(m) = r.memcpy_gb_per_s {
        println!(
            "{:<NAME$} {:>14} {:>10}",
            format!("hot memcpy of {} bytes on one core (L1)", r.frame_size),
            "",
            bytes_per_s(m * 1e9)
        );
        if let Some(gb) = r.frames_gb.get(&format!("frames_{tag}_gb_per_s")) {
            let ratio = r
                .throughput_rounds
                .get(&frames)
                .and_then(|f| per_round(f, &r.memcpy_rounds, r.frame_size as f64 / 1e9))
                .unwrap_or(f64::NAN);
            println!(
                "{:<NAME$} {:>14} {:>10}  {}",
                format!("  {}", label(&frames, tag)),
                "",
                bytes_per_s(gb * 1e9),
                versus(ratio)
            );
        }
        println!("  (a copy within one core's L1 is not the limit of one that crosses cores)");
    }
    println!(
        "(2 processes unless in-process, fan-outs 1 + N; the ratio is the median over rounds of each round's pair)"
    );
}

/// A row's label, with how a fan-out row waited when it did not spin.
fn fan_label(r: &Report, key: &str, tag: &str) -> String {
    match r.fanout.get(key) {
        Some(f) if f.wait != "spin" => format!("{}, {}", label(key, tag), f.wait),
        _ => label(key, tag),
    }
}

/// Under a fan-out row: each reader's rate, and the processes and cores
/// that explain how it waited.
fn print_readers(r: &Report, key: &str, indent: &str) {
    let Some(f) = r.fanout.get(key) else {
        return;
    };
    let each: Vec<String> = f.readers.iter().map(|&v| msgs_per_s(v)).collect();
    let reader = if key.starts_with("shmring_broadcast_") {
        "subscriber"
    } else {
        "consumer"
    };
    println!(
        "{indent}  each {reader}: {} ({} processes on {} cores, {})",
        each.join(", "),
        f.processes,
        r.cores,
        f.wait
    );
}

/// A difference of durations: `41.2 µs`, `-3.10 µs`.
fn signed(ns: f64) -> String {
    if ns < 0.0 {
        format!("-{}", nanos(-ns))
    } else {
        nanos(ns)
    }
}

/// What the bridges add to Zenoh alone.
fn print_bridge(b: &BridgeSummary) {
    println!(
        "bridges over {} ({}-byte messages; both sessions in one process, not pinned):",
        b.transport, b.message_bytes
    );
    if let Some(ratio) = b.throughput_ratio {
        println!(
            "  ring to ring through 2 bridges: {ratio:.2}x the direct Zenoh messages/s (median of rounds)"
        );
    }
    if let (Some(p50), Some(p99)) = (b.rtt_added_p50_ns, b.rtt_added_p99_ns) {
        println!(
            "  round trip through 2 bridge pairs adds {} at p50, {} at p99 to Zenoh's",
            signed(p50),
            signed(p99)
        );
    }
}

pub(super) fn print_report(r: &Report, tag: &str) {
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
    if !r.rtt_ns.is_empty() {
        print_round_trips(r);
        println!();
    }
    if !r.throughput_msgs_per_s.is_empty() || r.memcpy_gb_per_s.is_some() {
        print_throughputs(r, tag);
        println!();
    }
    if !r.placement.is_empty() {
        print_placement(r);
        println!();
    }
    let idle: Vec<String> = r
        .idle_cpu_percent
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}%"))
        .collect();
    if let Some(b) = &r.bridge {
        print_bridge(b);
        println!();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reference_is_followed_by_its_shmring_rows() {
        let keys = owned(&[
            "atomic_limit",
            "pipe",
            "shmring_mpmc_spin",
            "shmring_spin",
            "shmring_yield",
            "textbook_new",
            "textbook_spsc",
        ]);
        let rows: Vec<&String> = keys.iter().collect();
        let rules = [
            ("atomic_limit".to_string(), owned(&["shmring_spin"])),
            (
                "textbook_spsc".into(),
                owned(&["shmring_spin", "shmring_park"]),
            ),
            ("futex_limit".into(), owned(&["shmring_park"])),
            ("pipe".into(), owned(&["shmring_spin"])),
        ];
        assert_eq!(
            groups(&rows, &rules),
            [
                (
                    "atomic_limit".to_string(),
                    owned(&["shmring_spin", "shmring_mpmc_spin", "shmring_yield"])
                ),
                ("textbook_spsc".into(), owned(&["shmring_spin"])),
                ("pipe".into(), owned(&["shmring_spin"])),
                ("textbook_new".into(), vec![]),
            ]
        );
    }

    #[test]
    fn rows_have_readable_names() {
        assert_eq!(
            label("shmring_mpmc_u64_2p", "4k"),
            "shmring MPMC, u64, 2 producers"
        );
        assert_eq!(label("shmring_frames_4k", "4k"), "shmring frames of 4k");
        assert_eq!(label("shmring_default", "4k"), "shmring SPSC, default");
        assert_eq!(label("shmring_mpmc_park", "4k"), "shmring MPMC, park");
        assert_eq!(label("something_new", "4k"), "something_new");
        assert_eq!(
            label("shmring_broadcast_u64_4sub", "4k"),
            "shmring broadcast, u64, 4 subscribers"
        );
        assert_eq!(
            label("spsc_fanout_u64_1", "4k"),
            "shmring SPSC, u64 copied into 1 ring"
        );
        assert_eq!(
            label("shmring_broadcast_spin", "4k"),
            "shmring broadcast, spin"
        );
        assert_eq!(
            label(BRIDGED, "4k"),
            "shmring bridges, ring to ring, 16 bytes"
        );
        assert_eq!(
            label(DIRECT_ZENOH, "4k"),
            "Zenoh pub/sub, loopback TCP, 16 bytes"
        );
        assert_eq!(signed(-3100.0), "-3.10 µs");
    }
}
