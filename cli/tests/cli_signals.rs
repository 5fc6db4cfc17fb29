//! SIGINT, SIGTERM and SIGHUP to `send` and `recv` (and a closed stdout
//! under `recv`): they detach cleanly, so a non-persistent ring whose last
//! user they were is removed, and exit with 128 + the signal's number.

mod common;

use std::io::Write;
use std::process::{ChildStdin, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shmring::segment;

/// Starts `shmring --dir DIR args...` with piped stdin, stdout and stderr.
fn start(dir: &TestDir, args: &[&str]) -> (ChildGuard, ChildStdin) {
    let mut child = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (ChildGuard(Some(child)), stdin)
}

/// Waits until `role` ("producer" or "consumer") of ring `r` is held by
/// `pid` (so its signal handlers are installed: they come before attaching).
fn wait_for_role(dir: &TestDir, role: &str, pid: i32) {
    assert!(
        wait_until(Duration::from_secs(30), || {
            segment::inspect(&dir.path, "r").is_ok_and(|i| {
                i.roles
                    .iter()
                    .any(|r| r.role == role && r.alive && r.pid == pid as u32)
            })
        }),
        "{role} {pid} did not attach"
    );
}

fn signal(child: &ChildGuard, s: Signal) {
    kill(Pid::from_raw(child.pid()), s).unwrap();
}

/// Runs `recv r --create` as the only user, sends it `s`, and checks the
/// exit status and that the ring is gone.
fn recv_alone(s: Signal, status: i32) {
    let dir = TestDir::new(&format!("sig-recv-{}", s.as_str()));
    let (rx, _stdin) = start(&dir, &["recv", "r", "--create"]);
    wait_for_role(&dir, "consumer", rx.pid());
    signal(&rx, s);
    let out = rx.output_within(Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(status),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    dir.finish();
}

#[test]
fn sigint_to_recv_create_alone_exits_130_and_removes_the_ring() {
    recv_alone(Signal::SIGINT, 130);
}

#[test]
fn sigterm_to_recv_create_alone_exits_143_and_removes_the_ring() {
    recv_alone(Signal::SIGTERM, 143);
}

#[test]
fn sighup_to_recv_create_alone_exits_129_and_removes_the_ring() {
    recv_alone(Signal::SIGHUP, 129);
}

/// Runs `send r --create` as the only user, fed three lines from a pipe
/// that stays open (so it blocks reading more), sends it `s`, and checks
/// the exit status, the warning about the unread lines and that the ring
/// is gone.
fn send_alone(s: Signal, status: i32) {
    let dir = TestDir::new(&format!("sig-send-{}", s.as_str()));
    let (tx, mut stdin) = start(&dir, &["send", "r", "--create"]);
    stdin.write_all(b"one\ntwo\nthree\n").unwrap();
    stdin.flush().unwrap();
    wait_for_role(&dir, "producer", tx.pid());
    assert!(
        wait_until(Duration::from_secs(30), || {
            segment::inspect(&dir.path, "r").is_ok_and(|i| i.len == Some(3))
        }),
        "the three lines should be in the ring"
    );
    signal(&tx, s);
    let out = tx.output_within(Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{:?}: {err}", out.status);
    // Nothing lost silently: it says the unread lines went with the ring.
    assert!(
        err.contains(s.as_str()) && err.contains("unread") && err.contains("no consumer"),
        "{err}"
    );
    drop(stdin);
    dir.finish();
}

#[test]
fn sigint_to_send_create_alone_exits_130_and_removes_the_ring() {
    send_alone(Signal::SIGINT, 130);
}

#[test]
fn sigterm_to_send_create_alone_exits_143_and_removes_the_ring() {
    send_alone(Signal::SIGTERM, 143);
}

#[test]
fn sigint_to_send_leaves_its_lines_to_the_attached_receiver() {
    let dir = TestDir::new("sig-send-rx");
    let rx = {
        let (rx, _stdin) = start(&dir, &["recv", "r", "--create", "--count", "100"]);
        rx
    };
    wait_for_role(&dir, "consumer", rx.pid());
    let (tx, mut stdin) = start(&dir, &["send", "r", "--create"]);
    let lines: String = (1..=100).map(|i| format!("{i}\n")).collect();
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The receiver takes every line; the sender keeps waiting for more.
    let out = rx.output_within(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), lines);
    signal(&tx, Signal::SIGINT);
    let out = tx.output_within(Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!err.contains("lost"), "nothing was lost: {err}");
    drop(stdin);
    dir.finish();
}

#[test]
fn a_closed_stdout_ends_recv_with_141_and_keeps_the_line_it_could_not_write() {
    let dir = TestDir::new("sig-pipe");
    let (code, _, err) = shmring(&dir.path, &["create", "r"]);
    assert_eq!(code, 0, "{err}");
    let (tx, mut stdin) = start(&dir, &["send", "r"]);
    stdin.write_all(b"first\nsecond\n").unwrap();
    drop(stdin);
    let out = tx.output_within(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A reader that is already gone: the first write gets EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let rx = ChildGuard(Some(
        shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args(["recv", "r"])
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let out = rx.output_within(Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(141),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Neither line was taken from the ring.
    let (code, out, err) = shmring(&dir.path, &["recv", "r", "--count", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "first\nsecond\n");
    assert_eq!(shmring(&dir.path, &["rm", "r"]).0, 0);
    dir.finish();
}

#[test]
fn sigterm_to_send_blocked_on_a_full_ring_exits_143_and_removes_the_ring() {
    let dir = TestDir::new("sig-send-full");
    // A 64-byte ring: two or three lines fill it.
    let (tx, mut stdin) = start(
        &dir,
        &[
            "send",
            "r",
            "--create",
            "--capacity",
            "1",
            "--slot-size",
            "64",
        ],
    );
    let lines: String = (1..=100).map(|i| format!("{i}\n")).collect();
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_for_role(&dir, "producer", tx.pid());
    assert!(
        wait_until(Duration::from_secs(30), || {
            segment::inspect(&dir.path, "r").is_ok_and(|i| i.len.is_some_and(|n| n > 0))
        }),
        "lines should reach the ring"
    );
    signal(&tx, Signal::SIGTERM);
    let out = tx.output_within(Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("SIGTERM") && err.contains("unread"), "{err}");
    drop(stdin);
    dir.finish();
}

/// Where a process sleeps in the kernel ("pipe_write", ...), if /proc says.
fn wchan(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

#[test]
fn sigterm_to_recv_blocked_on_a_full_stdout_pipe_loses_and_repeats_nothing() {
    const N: usize = 8000;
    let dir = TestDir::new("sig-recv-pipe");
    // 4096 x 64 B = 256 KiB of frames: all N lines fit, the pipe (64 KiB)
    // does not hold them.
    let (code, _, err) = shmring(&dir.path, &["create", "r", "--capacity", "4096"]);
    assert_eq!(code, 0, "{err}");
    let input: String = (1..=N).map(|i| format!("line-{i:05}\n")).collect();
    let (tx, mut stdin) = start(&dir, &["send", "r"]);
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let out = tx.output_within(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // stdout is a pipe nobody reads (yet): recv blocks in write(2).
    let (mut reader, writer) = std::io::pipe().unwrap();
    let rx = ChildGuard(Some(
        shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args(["recv", "r"])
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // Best effort: wait until it sleeps in pipe_write (the test holds
    // whichever way the signal lands).
    wait_until(Duration::from_secs(10), || {
        wchan(rx.pid()).contains("pipe_write")
    });
    signal(&rx, Signal::SIGTERM);
    let drained = std::thread::spawn(move || {
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
        got
    });
    let out = rx.output_within(Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(143),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let first = String::from_utf8(drained.join().unwrap()).unwrap();
    assert!(first.ends_with('\n') || first.is_empty(), "a cut line");
    let written = first.lines().count();
    // The rest is still in the ring, starting with the line whose write
    // the signal interrupted.
    let (code, rest, err) = shmring(
        &dir.path,
        &["recv", "r", "--count", &(N - written).to_string()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(first + &rest, input, "lost or repeated lines");
    let info = segment::inspect(&dir.path, "r").unwrap();
    assert_eq!(info.len, Some(0));
    assert_eq!(shmring(&dir.path, &["rm", "r"]).0, 0);
    dir.finish();
}

#[test]
fn sigint_to_recv_mid_stream_10_times_loses_and_repeats_nothing() {
    const N: u64 = 200_000;
    let dir = TestDir::new("sig-recv-stream");
    let (code, _, err) = shmring(&dir.path, &["create", "r", "--capacity", "64"]);
    assert_eq!(code, 0, "{err}");
    let (mut tx, mut stdin) = start(&dir, &["send", "r"]);
    // The sender stays (stdin open) until the signals are done: a `recv`
    // that drained everything must not finish before its signal.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let feeder = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut stdin);
        for i in 1..=N {
            if writeln!(w, "{i}").is_err() {
                return;
            }
        }
        if w.flush().is_ok() {
            let _ = done_rx.recv();
        }
    });
    let out_path = dir.file("out.txt");
    let recv = |extra: &[&str]| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .unwrap();
        ChildGuard(Some(
            shmring_bin()
                .arg("--dir")
                .arg(&dir.path)
                .args(["recv", "r"])
                .args(extra)
                .stdout(file)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ))
    };
    for _ in 0..10 {
        let rx = recv(&[]);
        // Attached, so its handlers are installed; then a random moment.
        wait_for_role(&dir, "consumer", rx.pid());
        std::thread::sleep(Duration::from_micros(rand::random_range(0..10_000)));
        signal(&rx, Signal::SIGINT);
        let out = rx.output_within(Duration::from_secs(30));
        assert_eq!(
            out.status.code(),
            Some(130),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The rest (see cli_recv_crash.rs for why 0 or 3).
    drop(done_tx);
    let last = recv(&["--timeout", "20000"]);
    feeder.join().unwrap();
    assert!(tx.wait_within(Duration::from_secs(120)).success());
    let out = last.output_within(Duration::from_secs(120));
    assert!(matches!(out.status.code(), Some(0 | 3)), "{:?}", out.status);
    let text = std::fs::read_to_string(&out_path).unwrap();
    let mut expect = 1u64;
    for line in text.lines() {
        assert_eq!(line, expect.to_string(), "lost or repeated");
        expect += 1;
    }
    assert_eq!(expect, N + 1, "lines after {} are missing", expect - 1);
    std::fs::remove_file(&out_path).unwrap();
    assert_eq!(shmring(&dir.path, &["rm", "r"]).0, 0);
    dir.finish();
}
