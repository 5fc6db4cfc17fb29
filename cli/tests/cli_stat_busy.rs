//! `stat`/`ls` on rings streaming at full speed between two processes:
//! every sample is a healthy state, never "corrupt" (issue 14, item 3).
//! The library's `inspect` is polled 10,000 times per ring kind (what
//! `shmring stat` runs), and the `shmring stat --json` binary a few dozen
//! times.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use shmring::segment::{self, Status};
use shmring::{Layout, Segment, SegmentOptions};

const SAMPLES: usize = 10_000;
const CLI_SAMPLES: usize = 25;
/// Children stop by themselves after this, should the parent die without
/// killing them.
const CHILD_LIFETIME: Duration = Duration::from_secs(600);

fn layout(kind: &str) -> Layout {
    match kind {
        "spsc" => shmring::spsc::layout::<u64>(64).unwrap(),
        "frames" => shmring::frames::layout(4096).unwrap(),
        "mpmc" => shmring::mpmc::layout::<u64>(64).unwrap(),
        other => panic!("unknown kind {other}"),
    }
}

fn create(dir: &TestDir, kind: &str) -> Segment {
    let layout = layout(kind);
    let spec = match kind {
        "frames" => shmring::raw::bytes_spec(&layout),
        _ => shmring::raw::typed_spec::<u64>(&layout),
    };
    SegmentOptions::new()
        .dir(&dir.path)
        .create(kind, &spec)
        .unwrap()
}

/// The child processes: one side of a ring, as fast as it goes, until
/// killed (or `CHILD_LIFETIME`).
#[test]
fn stream_child() {
    let Some(role) = child_role() else { return };
    let dir = env_str("BUSY_DIR");
    let kind = env_str("BUSY_KIND");
    let seg = open_ring(&dir, &kind);
    let end = Instant::now() + CHILD_LIFETIME;
    let mut buf = Vec::new();
    let mut n = 0u64;
    match (kind.as_str(), role.as_str()) {
        ("spsc", "produce") => {
            let mut tx = shmring::spsc::Producer::<u64>::attach(seg).unwrap();
            println!("streaming");
            while Instant::now() < end {
                for _ in 0..4096 {
                    if tx.try_push(n).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        ("spsc", "consume") => {
            let mut rx = shmring::spsc::Consumer::<u64>::attach(seg).unwrap();
            println!("streaming");
            while Instant::now() < end {
                for _ in 0..4096 {
                    if let Ok(v) = rx.try_pop() {
                        assert_eq!(v, n);
                        n += 1;
                    }
                }
            }
        }
        ("frames", "produce") => {
            let mut tx = shmring::frames::Producer::attach(seg).unwrap();
            let payload = [7u8; 300];
            println!("streaming");
            while Instant::now() < end {
                for _ in 0..4096 {
                    // Lengths 0..300: frames of many sizes, so the ring
                    // wraps at every offset (wrap markers included).
                    let len = (n * 37 % 301) as usize;
                    if tx.try_push(&payload[..len]).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        ("frames", "consume") => {
            let mut rx = shmring::frames::Consumer::attach(seg).unwrap();
            println!("streaming");
            while Instant::now() < end {
                for _ in 0..4096 {
                    let _ = rx.try_pop(&mut buf);
                }
            }
        }
        ("mpmc", "produce") => {
            let mut tx = shmring::mpmc::Producer::<u64>::attach(seg).unwrap();
            println!("streaming");
            while Instant::now() < end {
                for _ in 0..4096 {
                    if tx.try_push(n).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        ("mpmc", "consume") => {
            let mut rx = shmring::mpmc::Consumer::<u64>::attach(seg).unwrap();
            println!("streaming");
            while Instant::now() < end {
                for _ in 0..4096 {
                    let _ = rx.try_pop();
                }
            }
        }
        other => panic!("unknown child {other:?}"),
    }
}

fn spawn_side(dir: &TestDir, kind: &str, role: &str) -> ChildGuard {
    let mut child = ChildGuard(Some(
        spawn_self(
            "stream_child",
            role,
            &[
                ("BUSY_DIR", dir.path.display().to_string()),
                ("BUSY_KIND", kind.to_string()),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap(),
    ));
    read_line_starting(child.child().stdout.take().unwrap(), "streaming");
    child
}

/// A sample is healthy if it says "ready", with no detail or a "busy"
/// one, and its occupancy fits the ring.
fn check_sample(kind: &str, capacity: u64, info: &segment::Inspection, i: usize) {
    assert_eq!(
        info.state,
        Status::Ready,
        "{kind}, sample {i}: {:?}",
        info.detail
    );
    if let Some(d) = &info.detail {
        assert!(d.starts_with("busy:"), "{kind}, sample {i}: {d}");
    }
    let len = info.len.expect("a ready ring has a length");
    assert!(len <= capacity, "{kind}, sample {i}: len {len}");
    if let Some(bytes) = info.bytes_used {
        assert!(bytes <= capacity, "{kind}, sample {i}: {bytes} bytes");
    }
}

fn poll_a_busy_ring(kind: &str) {
    let dir = TestDir::new(&format!("busy-{kind}"));
    let seg = create(&dir, kind);
    let capacity = seg.layout().capacity();
    let seg = Arc::new(seg);
    let mut consumer = spawn_side(&dir, kind, "consume");
    let mut producer = spawn_side(&dir, kind, "produce");
    // The ring is theirs now; it goes when the last of them is killed.
    drop(seg);

    let mut busy = 0;
    let mut moved = false;
    let mut last_len = None;
    for i in 0..SAMPLES {
        let info = segment::inspect(&dir.path, kind).unwrap();
        check_sample(kind, capacity, &info, i);
        busy += usize::from(info.detail.is_some());
        moved |= last_len.is_some_and(|l| Some(l) != info.len);
        last_len = info.len;
    }
    for i in 0..CLI_SAMPLES {
        let (code, out, err) = shmring(&dir.path, &["stat", kind, "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["state"], "ready", "{kind}, CLI sample {i}: {out}");
        if let Some(d) = v["detail"].as_str() {
            assert!(d.starts_with("busy:"), "{kind}, CLI sample {i}: {d}");
        }
        let (code, out, err) = shmring(&dir.path, &["ls", "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["state"], "ready", "{kind}, CLI ls sample {i}: {out}");
    }
    // Both sides were alive all along (a dead one would have made the
    // samples meaningless) and traffic did flow.
    assert!(producer.child().try_wait().unwrap().is_none());
    assert!(consumer.child().try_wait().unwrap().is_none());
    assert!(moved, "{kind}: the ring's length never changed");
    eprintln!("{kind}: {SAMPLES} samples, {busy} read while busy");
    producer.kill9();
    consumer.kill9();
    // Non-persistent and abandoned by killed users: stale, gc removes it.
    assert_eq!(segment::gc(&dir.path, false).unwrap().len(), 1);
    dir.finish();
}

#[test]
fn stat_of_a_busy_spsc_ring_is_always_healthy() {
    if child_role().is_some() {
        return;
    }
    poll_a_busy_ring("spsc");
}

#[test]
fn stat_of_a_busy_frames_ring_is_always_healthy() {
    if child_role().is_some() {
        return;
    }
    poll_a_busy_ring("frames");
}

#[test]
fn stat_of_a_busy_mpmc_ring_is_always_healthy() {
    if child_role().is_some() {
        return;
    }
    poll_a_busy_ring("mpmc");
}
