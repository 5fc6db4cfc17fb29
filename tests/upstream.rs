//! The upstream record (layout 1.5): what a relay writes into the ring it
//! produces into, and how a successor settles a push its killed predecessor
//! left unfinished.

mod common;

use std::os::unix::fs::FileExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use shmring::segment::{Upstream, UpstreamBusy, UpstreamWriter};
use shmring::spsc::Producer;

fn counts(last_seq: u64, gaps: u64, delivered: u64) -> Upstream {
    Upstream {
        session: 7,
        last_seq,
        gaps,
        delivered,
    }
}

#[test]
fn upstream_child() {
    let Some(role) = child_role() else { return };
    let seg = open_ring(&env_str("C_DIR"), &env_str("C_NAME"));
    let mut tx = Producer::<u64>::attach(seg.clone()).expect("producer");
    let (mut up, resumed) = UpstreamWriter::take(seg).expect("take the record");
    assert_eq!(resumed, None);
    for seq in 1..=5 {
        up.pushing(&counts(seq, 0, seq));
        tx.try_push(seq).expect("room");
        up.landed();
    }
    up.pushing(&counts(6, 0, 6));
    if role == "pushed" {
        tx.try_push(6).expect("room");
    }
    // Killed here, before `landed` (or, for "hold", while holding it).
    println!("child-ready");
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts a child playing `role` and waits until it stands where the
/// parent kills it.
fn child_at(dir: &TestDir, name: &str, role: &str) -> ChildGuard {
    let mut child = ChildGuard(Some(
        spawn_self(
            "upstream_child",
            role,
            &[
                ("C_DIR", dir.path.display().to_string()),
                ("C_NAME", name.to_string()),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child"),
    ));
    let out = child.child().stdout.take().expect("stdout");
    read_line_starting(out, "child-ready");
    child
}

#[test]
fn a_record_is_written_read_and_shown_by_inspect() {
    let dir = TestDir::new("upstream-rw");
    let name = unique("up");
    let seg = Arc::new(create_u64_ring(&dir.path, &name, 16));
    assert_eq!(seg.upstream(), None, "a new ring has no record");
    let mut tx = Producer::<u64>::attach(seg.clone()).unwrap();
    let (mut up, resumed) = UpstreamWriter::take(seg.clone()).unwrap();
    assert_eq!(resumed, None);
    up.pushing(&counts(3, 2, 1));
    let pending = seg.upstream().unwrap();
    assert!(pending.pending);
    assert_eq!(pending.writer, std::process::id());
    tx.try_push(3).unwrap();
    up.landed();
    let record = seg.upstream().unwrap();
    assert!(!record.pending);
    assert_eq!(record.counts, counts(3, 2, 1));
    let info = shmring::segment::inspect(&dir.path, &name).unwrap();
    assert_eq!(info.upstream, Some(record));
    assert_eq!(info.upstream_writer_alive, Some(true));
    assert_eq!(info.version.as_deref(), Some("1.5"));
    // A second writer while this one holds it: refused (same process
    // would be allowed, so the check is from the record's pid).
    drop(up);
    let info = shmring::segment::inspect(&dir.path, &name).unwrap();
    assert_eq!(info.upstream.unwrap().writer, 0, "released on drop");
    assert_eq!(info.upstream_writer_alive, None);
    let (_up, resumed) = UpstreamWriter::take(seg.clone()).unwrap();
    let resumed = resumed.unwrap();
    assert_eq!(resumed.counts, counts(3, 2, 1));
    assert_eq!(resumed.previous_writer, 0);
    assert_eq!(resumed.interrupted_push, None);
    drop((_up, tx, seg));
    dir.finish();
}

#[test]
fn a_push_that_never_landed_is_counted_as_lost() {
    let dir = TestDir::new("upstream-lost");
    let name = unique("up");
    let seg = Arc::new(create_u64_ring(&dir.path, &name, 16));
    let mut child = child_at(&dir, &name, "stopped");
    let pid = child.pid() as u32;
    // Alive: the record is its.
    assert_eq!(
        UpstreamWriter::take(seg.clone()).unwrap_err(),
        UpstreamBusy { pid }
    );
    child.kill9();
    let (_up, resumed) = UpstreamWriter::take(seg.clone()).unwrap();
    let resumed = resumed.unwrap();
    assert_eq!(resumed.previous_writer, pid);
    assert_eq!(resumed.interrupted_push, Some(false));
    // Message 6 was counted as delivered in advance; it is a gap now.
    assert_eq!(resumed.counts, counts(6, 1, 5));
    assert_eq!(seg.upstream().unwrap().counts, counts(6, 1, 5));
    assert!(!seg.upstream().unwrap().pending, "settled in the ring");
    drop((_up, seg));
    dir.finish();
}

#[test]
fn a_push_that_landed_before_the_kill_is_counted_as_delivered() {
    let dir = TestDir::new("upstream-landed");
    let name = unique("up");
    let seg = Arc::new(create_u64_ring(&dir.path, &name, 16));
    let mut child = child_at(&dir, &name, "pushed");
    child.kill9();
    let (_up, resumed) = UpstreamWriter::take(seg.clone()).unwrap();
    let resumed = resumed.unwrap();
    assert_eq!(resumed.interrupted_push, Some(true));
    assert_eq!(resumed.counts, counts(6, 0, 6));
    // And the ring holds all six.
    let mut rx = shmring::spsc::Consumer::<u64>::attach(seg.clone()).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| rx.try_pop().ok()).collect();
    assert_eq!(got, (1..=6).collect::<Vec<_>>());
    drop((_up, rx, seg));
    dir.finish();
}

#[test]
fn a_scribbled_record_is_only_numbers() {
    let dir = TestDir::new("upstream-hostile");
    let name = unique("up");
    let seg = Arc::new(create_u64_ring(&dir.path, &name, 16));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file(&name))
        .unwrap();
    // An odd (mid-update) version forever, a writer pid no process can have,
    // a pending state and a mark far from the ring's position.
    let mut line = [0xffu8; 128];
    line[16..24].copy_from_slice(&2u64.to_le_bytes());
    file.write_all_at(&line, 384).unwrap();
    assert_eq!(seg.upstream(), None, "never a consistent copy");
    let info = shmring::segment::inspect(&dir.path, &name).unwrap();
    assert_eq!(info.upstream, None);
    // The "writer" cannot be running: taken over; the version is evened.
    let (mut up, _) = UpstreamWriter::take(seg.clone()).unwrap();
    up.pushing(&counts(1, 0, 1));
    up.landed();
    assert_eq!(seg.upstream().unwrap().counts, counts(1, 0, 1));
    drop((up, seg));
    dir.finish();
}
