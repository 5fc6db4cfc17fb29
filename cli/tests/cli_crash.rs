//! kill -9 of attached processes and of a creator mid-initialization.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use shmring::segment::{self, Status};
use shmring::{Error, Kind, Layout, SegmentOptions};

/// `shmring::segment::TEST_PAUSE_ENV`, spelled out: the library is to gate
/// that test hook behind a `test-hooks` feature (see cli/Cargo.toml,
/// TODO(test-hooks)).
const TEST_PAUSE_ENV: &str = "SHMRING_TEST_PAUSE_IN_INIT_MS";

fn layout() -> Layout {
    Layout::new(Kind::Spsc, 64, 8, 8).unwrap()
}

#[test]
fn crash_child() {
    let Some(role) = child_role() else { return };
    assert_eq!(role, "attach-and-hang");
    let dir = env_str("CRASH_DIR");
    let seg = SegmentOptions::new()
        .dir(&dir)
        .open_or_create("r", &shmring::raw::bytes_spec(&layout()))
        .unwrap();
    println!("attached {}", seg.inode());
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn killed_user_leaves_no_lock_and_gc_removes_its_ring() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("kill9");
    let mut child = ChildGuard(Some(
        spawn_self(
            "crash_child",
            "attach-and-hang",
            &[("CRASH_DIR", dir.path.display().to_string())],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap(),
    ));
    read_line_starting(child.child().stdout.take().unwrap(), "attached");
    let info = segment::inspect(&dir.path, "r").unwrap();
    assert_eq!(info.attached, 1);
    assert_eq!(info.attached_pids, vec![child.pid()]);
    assert_eq!(info.state, Status::Ready);
    // gc must not touch a ring in use.
    assert!(segment::gc(&dir.path, false).unwrap().is_empty());
    assert!(dir.file("r").exists());

    child.kill9();

    let info = segment::inspect(&dir.path, "r").unwrap();
    assert_eq!(info.attached, 0, "a lock survived the kill");
    assert_eq!(info.state, Status::Stale);
    // A dry run names it and leaves it.
    let (code, out, _) = shmring(&dir.path, &["gc", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("would remove"), "{out}");
    assert!(dir.file("r").exists());
    let (code, out, err) = shmring(&dir.path, &["gc", "--json"]);
    assert_eq!(code, 0, "{err}");
    let removed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(removed[0]["name"], "r");
    dir.finish();
}

#[test]
fn creator_killed_mid_initialization() {
    let dir = TestDir::new("midinit");
    let mut creator = ChildGuard(Some(
        shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args(["create", "r"])
            .env(TEST_PAUSE_ENV, "60000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    read_line_starting(creator.child().stderr.take().unwrap(), "test pause");

    // While the creator lives and holds the exclusive lock, an opener waits
    // and then times out, saying what it waited for.
    let opts = SegmentOptions::new()
        .dir(&dir.path)
        .timeout(Duration::from_millis(300));
    match opts.open("r") {
        Err(e @ Error::Timeout { .. }) => {
            assert!(e.to_string().contains("creator"), "{e}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        segment::inspect(&dir.path, "r").unwrap().state,
        Status::Initializing
    );

    creator.kill9();

    // The creator is dead: the opener gets the shared lock but the ring
    // never becomes ready, so it times out and points at gc.
    match opts.open("r") {
        Err(e @ Error::Timeout { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("not running") && text.contains("gc"),
                "{text}"
            )
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The CLI maps it: a stale half-made object, removed by gc.
    assert_eq!(
        segment::inspect(&dir.path, "r").unwrap().state,
        Status::Stale
    );
    let (code, out, err) = shmring(&dir.path, &["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed"), "{out}");
    dir.finish();
}

#[test]
fn a_waiting_opener_gets_the_ring_once_the_creator_finishes() {
    let dir = TestDir::new("waitinit");
    let mut creator = ChildGuard(Some(
        shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args(["create", "r"])
            .env(TEST_PAUSE_ENV, "300")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    read_line_starting(creator.child().stderr.take().unwrap(), "test pause");
    let seg = SegmentOptions::new()
        .dir(&dir.path)
        .timeout(Duration::from_secs(20))
        .open("r")
        .expect("opener should wait out the creator");
    assert_eq!(
        seg.layout().capacity(),
        1024 * 64,
        "default: 1024 slots of 64 bytes"
    );
    assert!(creator.wait_within(Duration::from_secs(20)).success());
    drop(seg);
    // `shmring create` makes persistent rings.
    segment::remove(&dir.path, "r", false).unwrap();
    dir.finish();
}
