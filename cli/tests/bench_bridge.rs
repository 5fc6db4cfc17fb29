//! `shmring bench --kind bridge`: ring to ring through bridges over
//! loopback TCP next to a direct Zenoh publisher and subscriber, for
//! throughput and round trips, in the JSON report.
#![cfg(feature = "bridge")]

mod common;

use common::*;

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[test]
fn bench_kind_bridge_reports_bridges_next_to_direct_zenoh() {
    let out = bench(&[
        "--duration",
        "0.2",
        "--kind",
        "bridge",
        "--rounds",
        "1",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    let (bridged, direct) = ("shmring_bridges_tcp", "zenoh_pubsub_tcp");
    for k in [bridged, direct] {
        let rate = v["throughput_msgs_per_s"][k].as_f64();
        assert!(rate.is_some_and(|r| r > 0.0), "{k}: {rate:?} in {v}");
        for q in ["p50", "p99"] {
            let ns = v["rtt_ns"][k][q].as_f64();
            assert!(ns.is_some_and(|ns| ns > 0.0), "{k}.{q}: {ns:?}");
        }
        assert!(v["rtt_ns"][k]["samples"].as_u64().unwrap() > 0, "{k}");
    }
    // Only the bridge rows, and the baselines every kind runs.
    assert_eq!(
        keys(&v["rtt_ns"]),
        [
            "atomic_limit",
            "futex_limit",
            "pipe",
            bridged,
            "unix_socket",
            direct
        ]
    );
    assert_eq!(keys(&v["throughput_msgs_per_s"]), [bridged, direct]);
    // The two read together.
    let b = &v["bridge"];
    assert_eq!(b["message_bytes"].as_u64(), Some(16), "{b}");
    let ratio = b["throughput_ratio"].as_f64().unwrap();
    assert!(ratio > 0.0, "{b}");
    let rate = |k: &str| v["throughput_msgs_per_s"][k].as_f64().unwrap();
    assert!(
        (ratio - rate(bridged) / rate(direct)).abs() < 1e-9 * ratio,
        "{b}"
    );
    let p50 = |k: &str| v["rtt_ns"][k]["p50"].as_f64().unwrap();
    let added = b["rtt_added_p50_ns"].as_f64().unwrap();
    assert_eq!(added, p50(bridged) - p50(direct), "{b}");
    assert!(b["rtt_added_p99_ns"].as_f64().is_some(), "{b}");
}
