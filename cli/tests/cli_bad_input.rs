//! Bad objects and bad names: each gives its own error, never a SIGBUS, a
//! panic or a hang, from the library and from the CLI (the library-only
//! case is in the library's tests/bad_input.rs).

mod common;

use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use shmring::raw::{VERSION_MAJOR, VERSION_MINOR};
use shmring::segment::{self, Status};
use shmring::{Error, Kind, Layout, SegmentOptions};

fn opts(dir: &TestDir) -> SegmentOptions {
    SegmentOptions::new()
        .dir(&dir.path)
        .timeout(Duration::from_millis(200))
}

/// A valid persistent ring, to be damaged by the test.
fn make_ring(dir: &TestDir, name: &str) -> Layout {
    let layout = Layout::new(Kind::Spsc, 1024, 8, 8).unwrap();
    drop(
        opts(dir)
            .persistent(true)
            .create(name, &shmring::raw::bytes_spec(&layout))
            .unwrap(),
    );
    layout
}

fn poke(dir: &TestDir, name: &str, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file(name))
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// `stat` and `ls` must cope with whatever is there, exiting 0.
fn cli_copes(dir: &TestDir, name: &str, expect: &str) {
    let (code, out, err) = shmring(&dir.path, &["stat", name, "--json"]);
    assert_eq!(code, 0, "stat failed on {name}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], expect, "{out}");
    let (code, _, err) = shmring(&dir.path, &["ls"]);
    assert_eq!(code, 0, "ls failed: {err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn random_bytes_are_not_a_ring() {
    let dir = TestDir::new("random");
    let bytes: Vec<u8> = (0..8192).map(|_| rand::random::<u8>() | 1).collect();
    std::fs::write(dir.file("x"), &bytes).unwrap();
    assert!(matches!(opts(&dir).open("x"), Err(Error::NotARing { .. })));
    cli_copes(&dir, "x", "foreign");
    // rm refuses a foreign file unless forced.
    let (code, _, err) = shmring(&dir.path, &["rm", "x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("shmring: error:"), "{err}");
    let (code, _, _) = shmring(&dir.path, &["rm", "x", "--force"]);
    assert_eq!(code, 0);
    dir.finish();
}

#[test]
fn wrong_magic() {
    let dir = TestDir::new("magic");
    make_ring(&dir, "x");
    poke(&dir, "x", 0, b"NOTARING");
    assert!(matches!(opts(&dir).open("x"), Err(Error::NotARing { .. })));
    cli_copes(&dir, "x", "foreign");
    std::fs::remove_file(dir.file("x")).unwrap();
    dir.finish();
}

#[test]
fn newer_major_version_is_refused_naming_both() {
    let dir = TestDir::new("version");
    make_ring(&dir, "x");
    poke(&dir, "x", 8, &(VERSION_MAJOR + 1).to_le_bytes());
    match opts(&dir).open("x") {
        Err(e @ Error::VersionMismatch { .. }) => {
            let text = e.to_string();
            let found = format!("{}.{VERSION_MINOR}", VERSION_MAJOR + 1);
            let ours = format!("{VERSION_MAJOR}.{VERSION_MINOR}");
            assert!(text.contains(&found) && text.contains(&ours), "{text}");
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    cli_copes(&dir, "x", "corrupt");
    std::fs::remove_file(dir.file("x")).unwrap();
    dir.finish();
}

#[test]
fn file_shorter_than_the_header() {
    let dir = TestDir::new("short");
    make_ring(&dir, "x");
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file("x"))
        .unwrap()
        .set_len(100)
        .unwrap();
    assert!(matches!(
        opts(&dir).open("x"),
        Err(Error::SizeMismatch { actual: 100, .. })
    ));
    cli_copes(&dir, "x", "corrupt");
    std::fs::remove_file(dir.file("x")).unwrap();
    dir.finish();
}

#[test]
fn file_shorter_than_its_recorded_size() {
    let dir = TestDir::new("trunc");
    let layout = make_ring(&dir, "x");
    assert!(layout.total_size() > 8192);
    let short = layout.total_size() - 4096;
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file("x"))
        .unwrap()
        .set_len(short)
        .unwrap();
    match opts(&dir).open("x") {
        Err(Error::SizeMismatch {
            recorded, actual, ..
        }) => {
            assert_eq!((recorded, actual), (layout.total_size(), short));
        }
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    cli_copes(&dir, "x", "corrupt");
    std::fs::remove_file(dir.file("x")).unwrap();
    dir.finish();
}

#[test]
fn inconsistent_layout_is_corrupted() {
    let dir = TestDir::new("layout");
    make_ring(&dir, "x");
    // capacity (offset 32) no longer a power of two
    poke(&dir, "x", 32, &63u64.to_le_bytes());
    assert!(matches!(opts(&dir).open("x"), Err(Error::Corrupted { .. })));
    cli_copes(&dir, "x", "corrupt");
    std::fs::remove_file(dir.file("x")).unwrap();
    dir.finish();
}

#[test]
fn empty_file_times_out_with_a_clear_message() {
    let dir = TestDir::new("empty");
    std::fs::write(dir.file("x"), b"").unwrap();
    match opts(&dir).open("x") {
        Err(e @ Error::Timeout { .. }) => assert!(e.to_string().contains("empty"), "{e}"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // An empty, unlocked object is a creation that has just begun or one
    // whose creator died: "initializing" within the grace period
    // (`segment::GC_GRACE`), "stale" after it (cli/tests/cli_gc.rs).
    let (code, out, err) = shmring(&dir.path, &["stat", "x", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["state"] == "initializing" || v["state"] == "stale",
        "{out}"
    );
    std::fs::remove_file(dir.file("x")).unwrap();
    dir.finish();
}

#[test]
fn bad_names() {
    let dir = TestDir::new("names");
    let layout = Layout::new(Kind::Spsc, 64, 8, 8).unwrap();
    for name in ["", "a/b", "..", &"n".repeat(300)] {
        assert!(
            matches!(
                opts(&dir).create(name, &shmring::raw::bytes_spec(&layout)),
                Err(Error::InvalidName { .. })
            ),
            "{name:?}"
        );
    }
    let (code, _, err) = shmring(&dir.path, &["create", "a/b"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid ring name"), "{err}");
    let (code, _, _) = shmring(&dir.path, &["create"]);
    assert_eq!(code, 2, "usage errors exit 2");
    let (code, _, err) = shmring(&dir.path, &["create", "x", "--capacity", "3"]);
    assert_eq!(code, 1);
    assert!(err.contains("power of two"), "{err}");
    dir.finish();
}

#[test]
fn cli_create_twice_is_exit_1() {
    let dir = TestDir::new("twice");
    let (code, _, err) = shmring(&dir.path, &["create", "x"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = shmring(&dir.path, &["create", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        segment::inspect(&dir.path, "x").unwrap().state,
        Status::Ready
    );
    let (code, _, _) = shmring(&dir.path, &["rm", "x"]);
    assert_eq!(code, 0);
    dir.finish();
}

/// Mounts a small tmpfs for the test and unmounts it on drop.
struct SmallTmpfs {
    dir: TestDir,
    mounted: bool,
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir.path).status();
        }
    }
}

#[test]
fn full_tmpfs_is_no_space_not_sigbus() {
    if !is_root() {
        eprintln!("SKIPPED full_tmpfs_is_no_space_not_sigbus: mounting a tmpfs needs root");
        return;
    }
    let dir = TestDir::new("fulltmpfs");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "shmring-test"])
        .arg(&dir.path)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("SKIPPED full_tmpfs_is_no_space_not_sigbus: mount -t tmpfs failed ({status:?})");
        return;
    }
    let fs = SmallTmpfs { dir, mounted: true };
    let o = SegmentOptions::new().dir(&fs.dir.path);
    // Larger than the whole mount: refused by the free-space check.
    let big = Layout::new(Kind::Frames, 4 << 20, 1, 1).unwrap();
    match o.create("big", &shmring::raw::bytes_spec(&big)) {
        Err(e @ Error::NoSpace { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("--shm-size") && text.contains("size="),
                "{text}"
            );
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    // Two that each fit but not together: the second fails at once.
    let half = Layout::new(Kind::Frames, 512 << 10, 1, 1).unwrap();
    let first = o.create("a", &shmring::raw::bytes_spec(&half)).unwrap();
    assert!(matches!(
        o.create("b", &shmring::raw::bytes_spec(&half)),
        Err(Error::NoSpace { .. })
    ));
    let (code, _, err) = shmring(
        &fs.dir.path,
        &["create", "c", "--kind", "frames", "--capacity", "524288"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("not enough space"), "{err}");
    drop(first);
    assert!(fs.dir.leftovers().is_empty(), "{:?}", fs.dir.leftovers());
}
