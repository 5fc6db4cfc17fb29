//! Messages of issue 14, item 6, that the CLI produces: each says what is
//! true, in the user's terms, and what to do.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use shmring::{Kind, Layout};

/// The largest power of two `ok` accepts.
fn largest(ok: impl Fn(u64) -> bool) -> u64 {
    (0..64).rev().map(|e| 1u64 << e).find(|&c| ok(c)).unwrap()
}

#[test]
fn a_too_large_frame_capacity_names_the_users_number_and_the_real_limit() {
    let dir = TestDir::new("msg-cap-frames");
    let (code, _, err) = shmring(&dir.path, &["create", "r", "--capacity", "2199023255552"]);
    assert_eq!(code, 1, "{err}");
    // The limit, as the library computes it: bytes of frames, and slots of
    // the default 64 B.
    let bytes = largest(|b| shmring::frames::layout(b).is_ok());
    let slots = bytes / 64;
    assert!(err.contains("--capacity 2199023255552"), "{err}");
    assert!(
        err.contains(&format!("{}", 2199023255552u128 * 64)),
        "says what it would be in bytes: {err}"
    );
    assert!(
        err.contains(&bytes.to_string()),
        "names the byte limit: {err}"
    );
    assert!(
        err.contains(&format!("--capacity {slots}")),
        "names the largest --capacity: {err}"
    );
    assert!(!err.contains("power of two"), "it is one: {err}");
    dir.finish();
}

#[test]
fn a_too_large_slot_capacity_names_the_users_number_and_the_real_limit() {
    let dir = TestDir::new("msg-cap-spsc");
    let (code, _, err) = shmring(
        &dir.path,
        &[
            "create",
            "r",
            "--kind",
            "spsc",
            "--capacity",
            "2199023255552",
        ],
    );
    assert_eq!(code, 1, "{err}");
    let slots = largest(|c| Layout::new(Kind::Spsc, c, 64, 8).is_ok());
    assert!(err.contains("--capacity 2199023255552"), "{err}");
    assert!(err.contains(&format!("--capacity {slots}")), "{err}");
    assert!(!err.contains("power of two"), "it is one: {err}");
    dir.finish();
}

#[test]
fn a_capacity_that_is_not_a_power_of_two_names_the_flag_and_neighbours() {
    let dir = TestDir::new("msg-pow2");
    let (code, _, err) = shmring(&dir.path, &["create", "r", "--capacity", "1000"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--capacity 1000 must be a power of two")
            && err.contains("512")
            && err.contains("1024"),
        "{err}"
    );
    // Frame rings: the slot size must be one too (the byte area is the
    // product); the message says which flag and why.
    let (code, _, err) = shmring(&dir.path, &["create", "r", "--slot-size", "48"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--slot-size 48") && err.contains("power of two") && err.contains("1024 x 48"),
        "{err}"
    );
    dir.finish();
}

#[test]
fn a_frame_rings_capacity_is_reported_in_slots_and_in_bytes() {
    let dir = TestDir::new("msg-units");
    let (code, out, err) = shmring(
        &dir.path,
        &["create", "f", "--capacity", "1024", "--slot-size", "64"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("capacity 1024 slots of 64 B") && out.contains("65536 bytes of frames"),
        "{out}"
    );
    let (code, out, err) = shmring(&dir.path, &["create", "s", "--kind", "spsc", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["capacity"], 1024);
    assert_eq!(v["capacity_unit"], "slots");
    assert_eq!(v["requested_capacity"], 1024);

    // stat: the byte area, with its unit; the JSON key keeps its meaning
    // (bytes for frame rings) and `capacity_unit` says so.
    let (code, out, err) = shmring(&dir.path, &["stat", "f"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("capacity")).unwrap();
    assert!(line.ends_with("65536 bytes of frames"), "{line}");
    let (code, out, err) = shmring(&dir.path, &["stat", "s"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("capacity")).unwrap();
    assert!(line.ends_with("1024 slots"), "{line}");
    let (code, out, err) = shmring(&dir.path, &["stat", "f", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["capacity"], 65536);
    assert_eq!(v["capacity_unit"], "bytes");

    // ls: the same, in the table and in JSON.
    let (code, out, err) = shmring(&dir.path, &["ls"]);
    assert_eq!(code, 0, "{err}");
    let row = out.lines().find(|l| l.starts_with("f ")).unwrap();
    assert!(row.contains("65536 B"), "{row}");
    let (code, out, err) = shmring(&dir.path, &["ls", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let units: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["capacity_unit"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        units,
        [
            ("f".to_string(), "bytes".to_string()),
            ("s".to_string(), "slots".to_string())
        ]
    );
    for name in ["f", "s"] {
        assert_eq!(shmring(&dir.path, &["rm", name]).0, 0);
    }
    dir.finish();
}

/// Starts `shmring create r` paused in initialization for `ms` (the
/// library's test hook) and waits until it is.
fn paused_creator(dir: &TestDir, ms: u64) -> ChildGuard {
    let mut creator = ChildGuard(Some(
        shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args(["create", "r"])
            .env(shmring::segment::TEST_PAUSE_ENV, ms.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    read_line_starting(creator.child().stderr.take().unwrap(), "test pause");
    creator
}

#[test]
fn timeout_bounds_the_wait_for_a_creator_below_the_default() {
    let dir = TestDir::new("msg-attach-short");
    let mut creator = paused_creator(&dir, 60_000);
    let (code, _, err) = shmring(&dir.path, &["recv", "r", "--timeout", "300"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("timed out") && err.contains("creator") && err.contains("300ms"),
        "{err}"
    );
    creator.kill9();
    // What the killed creator left (gc's business, tested elsewhere).
    std::fs::remove_file(dir.file("r")).unwrap();
    dir.finish();
}

#[test]
fn timeout_bounds_the_wait_for_a_creator_beyond_the_default() {
    let dir = TestDir::new("msg-attach-long");
    // Initializing for 3 s: longer than the default 2 s wait, which made
    // `recv` give up although --timeout allowed 60 s.
    let mut creator = paused_creator(&dir, 3_000);
    let rx = ChildGuard(Some(
        shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args(["recv", "r", "--count", "1", "--timeout", "60000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut tx = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["send", "r", "--timeout", "60000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut tx.stdin.take().unwrap(), b"hello\n").unwrap();
    let mut tx = ChildGuard(Some(tx));
    let out = rx.output_within(Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello\n");
    assert!(tx.wait_within(Duration::from_secs(60)).success());
    assert!(creator.wait_within(Duration::from_secs(60)).success());
    assert_eq!(shmring(&dir.path, &["rm", "r"]).0, 0);
    dir.finish();
}
