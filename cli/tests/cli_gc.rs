//! What a creator killed at each step of creation leaves, and who removes
//! it (issue 14, item 2): `gc` after the grace period, plain `rm`, and
//! `recv --create` itself; never a live creation or another program's file.
//!
//! The states are made as a killed creator leaves them: a 0-byte file
//! (killed before `fallocate`), a full-size all-zero file (killed before
//! the header), a full-size file with only the magic number (killed while
//! copying the header), and a real `shmring create` killed mid-
//! initialization (header written, not READY; the `test-hooks` pause).
//! None holds a lock: the kernel dropped the dead creator's.

mod common;

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::*;
use shmring::segment::{self, GC_GRACE, Status};
use shmring::{Error, Kind, Layout, SegmentOptions};

/// `shmring::segment::TEST_PAUSE_ENV` (feature `test-hooks`).
const TEST_PAUSE_ENV: &str = "SHMRING_TEST_PAUSE_IN_INIT_MS";
/// Children stop by themselves after this, should the parent die.
const CHILD_LIFETIME: Duration = Duration::from_secs(300);

/// What `shmring create` and `--create` make by default.
fn default_layout() -> Layout {
    Layout::new(Kind::Frames, 1024 * 64, 1, 1).unwrap()
}

fn new_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap()
}

/// Killed after its `O_EXCL` open, before `fallocate`.
fn leave_empty(dir: &TestDir, name: &str) {
    new_file(&dir.file(name));
}

/// Killed after `fallocate`, before the header's first byte.
fn leave_zeros(dir: &TestDir, name: &str) {
    new_file(&dir.file(name))
        .set_len(default_layout().total_size())
        .unwrap();
}

/// Killed right after the magic number, the first thing written.
fn leave_magic_only(dir: &TestDir, name: &str) {
    let f = new_file(&dir.file(name));
    f.set_len(default_layout().total_size()).unwrap();
    f.write_all_at(&shmring::raw::MAGIC.to_le_bytes(), 0)
        .unwrap();
}

/// A real creator killed mid-initialization: header written, not READY.
fn kill_creator_mid_init(dir: &TestDir, name: &str) {
    let mut creator = start_paused_creator(dir, name);
    creator.kill9();
}

/// `shmring create NAME` paused mid-initialization, holding its exclusive
/// lock.
fn start_paused_creator(dir: &TestDir, name: &str) -> ChildGuard {
    let mut creator = ChildGuard(Some(
        shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args(["create", name])
            .env(TEST_PAUSE_ENV, "120000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    read_line_starting(creator.child().stderr.take().unwrap(), "test pause");
    creator
}

/// Makes the object look just changed, whatever the clock does meanwhile:
/// an mtime in the future is as young as it gets.
fn keep_young(dir: &TestDir, name: &str) {
    std::fs::File::options()
        .write(true)
        .open(dir.file(name))
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
}

/// Waits until objects made before this call are past the grace period.
fn wait_out_the_grace_period() {
    std::thread::sleep(GC_GRACE + Duration::from_millis(300));
}

fn exists(dir: &TestDir, name: &str) -> bool {
    std::fs::symlink_metadata(dir.file(name)).is_ok()
}

/// `recv --create` and `send --create` on `name` carry one line.
fn send_and_receive(dir: &TestDir, name: &str) {
    let recv = ChildGuard(Some(
        shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args([
                "recv",
                name,
                "--create",
                "--count",
                "1",
                "--timeout",
                "60000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut send = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["send", name, "--create", "--timeout", "60000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = send.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
    }
    let sent = ChildGuard(Some(send)).output_within(Duration::from_secs(60));
    assert!(
        sent.status.success(),
        "send --create {name}: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let got = recv.output_within(Duration::from_secs(60));
    assert!(
        got.status.success(),
        "recv --create {name}: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout), "hello\n", "{name}");
}

fn names(removed: &[segment::Inspection]) -> Vec<String> {
    let mut v: Vec<String> = removed.iter().map(|i| i.name.clone()).collect();
    v.sort();
    v
}

#[test]
fn gc_removes_what_killed_creators_leave_after_the_grace_period() {
    let dir = TestDir::new("gc-abandoned");
    leave_empty(&dir, "empty");
    leave_zeros(&dir, "zeros");
    leave_magic_only(&dir, "magic");
    kill_creator_mid_init(&dir, "header");

    // Within the grace period (an hour here) the objects without a header
    // stay: a live creator may not have locked them yet. Those with a
    // header go at once: it is written only under the creator's lock.
    let removed = segment::gc_with_grace(&dir.path, false, Duration::from_secs(3600)).unwrap();
    assert_eq!(names(&removed), ["header", "magic"]);
    for info in &removed {
        let why = info.detail.as_deref().unwrap_or_default();
        assert!(why.contains("never finished initializing"), "{why}");
    }
    assert!(exists(&dir, "empty") && exists(&dir, "zeros"));

    wait_out_the_grace_period();
    for name in ["empty", "zeros"] {
        let info = segment::inspect(&dir.path, name).unwrap();
        assert_eq!(info.state, Status::Stale, "{name}: {:?}", info.detail);
        assert!(
            info.detail
                .as_deref()
                .unwrap()
                .contains("abandoned creation"),
            "{:?}",
            info.detail
        );
    }
    let (code, out, err) = shmring(&dir.path, &["gc", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("would remove").count(), 2, "{out}");
    let (code, out, err) = shmring(&dir.path, &["gc"]);
    assert_eq!(code, 0, "{err}");
    for name in ["empty", "zeros"] {
        assert!(
            out.lines()
                .any(|l| l.contains("removed") && l.contains(name) && l.contains("abandoned")),
            "{out}"
        );
    }
    assert!(dir.leftovers().is_empty(), "{:?}", dir.leftovers());

    // The names work again.
    for name in ["empty", "zeros", "magic", "header"] {
        send_and_receive(&dir, name);
    }
    dir.finish();
}

#[test]
fn recv_create_replaces_an_abandoned_object_itself() {
    let dir = TestDir::new("gc-reclaim");
    // A header that never became READY is replaced at once.
    kill_creator_mid_init(&dir, "header");
    send_and_receive(&dir, "header");

    // One without a header is left alone while it may be a live creation:
    // opening with create waits (here 300 ms) and says what it is.
    leave_empty(&dir, "young");
    keep_young(&dir, "young");
    let opts = SegmentOptions::new()
        .dir(&dir.path)
        .timeout(Duration::from_millis(300));
    match opts.open_or_create("young", &shmring::raw::bytes_spec(&default_layout())) {
        Err(e @ Error::Timeout { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("empty") && text.contains("shmring gc") && text.contains("replaces"),
                "{text}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(exists(&dir, "young"));
    std::fs::remove_file(dir.file("young")).unwrap();

    // Past the grace period it is replaced, as gc would remove it.
    leave_empty(&dir, "empty");
    leave_zeros(&dir, "zeros");
    wait_out_the_grace_period();
    send_and_receive(&dir, "empty");
    send_and_receive(&dir, "zeros");
    dir.finish();
}

#[test]
fn plain_rm_removes_an_abandoned_object_or_says_what_to_do() {
    let dir = TestDir::new("gc-rm");
    kill_creator_mid_init(&dir, "header");
    let (code, _, err) = shmring(&dir.path, &["rm", "header"]);
    assert_eq!(code, 0, "{err}");

    leave_empty(&dir, "young");
    keep_young(&dir, "young");
    let (code, _, err) = shmring(&dir.path, &["rm", "young"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not a finished ring")
            && err.contains("shmring gc")
            && err.contains("rm young --force")
            && !err.contains("another program"),
        "{err}"
    );
    let (code, _, err) = shmring(&dir.path, &["rm", "young", "--force"]);
    assert_eq!(code, 0, "{err}");

    leave_empty(&dir, "empty");
    leave_zeros(&dir, "zeros");
    wait_out_the_grace_period();
    for name in ["empty", "zeros"] {
        let (code, _, err) = shmring(&dir.path, &["rm", name]);
        assert_eq!(code, 0, "rm {name}: {err}");
    }
    dir.finish();
}

/// The child processes: hold the files named in `GC_PATHS` (separated by
/// newlines) locked with `LOCK_EX` or just open, until killed.
#[test]
fn holder_child() {
    let Some(role) = child_role() else { return };
    let files: Vec<std::fs::File> = env_str("GC_PATHS")
        .lines()
        .map(|p| std::fs::File::open(p).unwrap())
        .collect();
    if role == "lock" {
        for f in &files {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this process owns and keeps
            // open; no memory is passed.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        }
    }
    println!("holding");
    std::thread::sleep(CHILD_LIFETIME);
}

fn hold(dir: &TestDir, how: &str, names: &[&str]) -> ChildGuard {
    let paths: Vec<String> = names
        .iter()
        .map(|n| dir.file(n).display().to_string())
        .collect();
    let mut child = ChildGuard(Some(
        spawn_self("holder_child", how, &[("GC_PATHS", paths.join("\n"))])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    read_line_starting(child.child().stdout.take().unwrap(), "holding");
    child
}

#[test]
fn gc_never_removes_a_live_creation_or_a_foreign_file() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("gc-keep");
    let elsewhere = TestDir::new("gc-keep-target");
    // Live creations: headerless objects whose creator holds the exclusive
    // lock, a creator paused mid-initialization, and an empty object some
    // process has open without a lock.
    leave_empty(&dir, "locked-empty");
    leave_zeros(&dir, "locked-zeros");
    let mut locker = hold(&dir, "lock", &["locked-empty", "locked-zeros"]);
    let mut creator = start_paused_creator(&dir, "creating");
    leave_empty(&dir, "open-empty");
    let mut opener = hold(&dir, "open", &["open-empty"]);
    // Other programs' files, and things that are not regular files.
    let random: Vec<u8> = (0..8192).map(|_| rand::random::<u8>() | 1).collect();
    std::fs::write(dir.file("random"), &random).unwrap();
    leave_zeros(&dir, "zero-magic");
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file("zero-magic"))
        .unwrap()
        .write_all_at(b"data", 5000)
        .unwrap();
    std::fs::write(dir.file("odd-size"), [0u8; 100]).unwrap();
    std::fs::write(elsewhere.file("target"), b"").unwrap();
    std::os::unix::fs::symlink(elsewhere.file("target"), dir.file("link")).unwrap();
    let fifo =
        std::ffi::CString::new(dir.file("fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo reads it and keeps nothing.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(dir.file("subdir")).unwrap();
    let (code, _, err) = shmring(&dir.path, &["create", "persistent"]);
    assert_eq!(code, 0, "{err}");

    wait_out_the_grace_period();
    let kept = [
        ("locked-empty", Status::Initializing),
        ("locked-zeros", Status::Initializing),
        ("creating", Status::Initializing),
        ("open-empty", Status::Initializing),
        ("random", Status::Foreign),
        ("zero-magic", Status::Foreign),
        ("odd-size", Status::Foreign),
        ("link", Status::Foreign),
        ("fifo", Status::Foreign),
        ("subdir", Status::Foreign),
        ("persistent", Status::Ready),
    ];
    for (name, state) in kept {
        let info = segment::inspect(&dir.path, name).unwrap();
        assert_eq!(info.state, state, "{name}: {:?}", info.detail);
    }
    assert!(
        segment::gc_with_grace(&dir.path, false, Duration::ZERO)
            .unwrap()
            .is_empty()
    );
    let (code, out, err) = shmring(&dir.path, &["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing stale"), "{out}");
    for (name, _) in kept {
        assert!(exists(&dir, name), "gc removed {name}");
    }
    assert!(elsewhere.file("target").exists());
    // Plain rm refuses them too (except the finished ring).
    for (name, _) in &kept[..kept.len() - 1] {
        let (code, _, err) = shmring(&dir.path, &["rm", name]);
        assert_eq!(code, 1, "rm {name}: {err}");
        assert!(exists(&dir, name), "rm removed {name}");
    }

    // Once their holders are gone, the abandoned ones are gc's.
    locker.kill9();
    creator.kill9();
    opener.kill9();
    let removed = segment::gc_with_grace(&dir.path, false, Duration::ZERO).unwrap();
    assert_eq!(
        names(&removed),
        ["creating", "locked-empty", "locked-zeros", "open-empty"]
    );
    let (code, _, err) = shmring(&dir.path, &["rm", "persistent"]);
    assert_eq!(code, 0, "{err}");
    for name in ["random", "zero-magic", "odd-size", "link", "fifo"] {
        std::fs::remove_file(dir.file(name)).unwrap();
    }
    std::fs::remove_dir(dir.file("subdir")).unwrap();
    std::fs::remove_file(elsewhere.file("target")).unwrap();
    elsewhere.finish();
    dir.finish();
}
