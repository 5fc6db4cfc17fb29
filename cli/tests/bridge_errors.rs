//! `shmring bridge`: what it refuses, and how. A message type that is not
//! the destination ring's, bad key
//! expressions and endpoints, an endpoint nobody answers: exit 1 with one
//! line that says what to fix, as the other commands do; and a bridge
//! stopped by a signal detaches cleanly.
#![cfg(feature = "bridge")]

mod common;

use std::io::Write;
use std::time::Duration;

use common::bridge::*;
use common::*;
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(60);

fn endpoint(port: u16) -> String {
    format!("tcp/127.0.0.1:{port}")
}

/// Runs `shmring bridge args...` to its end: (exit code, stderr).
fn bridge(dir: &TestDir, args: &[&str]) -> (i32, String) {
    let mut all = vec!["bridge"];
    all.extend_from_slice(args);
    let (code, _, err) = shmring(&dir.path, &all);
    (code, err)
}

#[test]
fn a_type_mismatch_is_refused_naming_both_types() {
    let dir = TestDir::new("bridge-type");
    let key = format!("shmring/test/{}", unique("type"));
    let (code, _, err) = shmring(&dir.path, &["create", "a"]);
    assert_eq!(code, 0, "{err}");
    // B carries u64 messages; A's are byte frames.
    let b = create_u64_ring(&dir.path, "b", 64);
    let listen = endpoint(free_port());
    let out = Bridge::start(&dir.path, &["out", "a", "--key", &key, "--listen", &listen]);
    out.wait_for("waiting for a subscriber", LONG);
    let inb = Bridge::start(
        &dir.path,
        &["in", &key, "--into", "b", "--connect", &listen],
    );
    inb.wait_for("subscribed", LONG);
    out.wait_for("a subscriber matches", LONG);
    let mut tx = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["send", "a"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tx.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    assert!(ChildGuard(Some(tx)).wait_within(LONG).success());
    let (code, log) = inb.finish(LONG);
    assert_eq!(code, Some(1), "{log:#?}");
    let error = log
        .iter()
        .find(|l| l.starts_with("shmring: error:"))
        .unwrap_or_else(|| panic!("no error line: {log:#?}"));
    assert!(error.contains("type mismatch"), "{error}");
    assert!(error.contains("byte messages"), "{error}");
    assert!(error.contains("\"u64\" (8 bytes, align 8"), "{error}");
    let (code, _) = out.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143));
    drop(b);
    let (code, _, err) = shmring(&dir.path, &["rm", "a"]);
    assert_eq!(code, 0, "{err}");
    dir.finish();
}

#[test]
fn bad_key_expressions_are_refused() {
    let dir = TestDir::new("bridge-key");
    for key in ["a//b", "/a", "a/", ""] {
        let (code, err) = bridge(&dir, &["out", "r", "--key", key]);
        assert_eq!(code, 1, "{key:?}: {err}");
        assert!(err.contains("not a valid key expression"), "{key:?}: {err}");
        assert!(!err.contains(".rs:"), "a source location in {err:?}");
        let (code, err) = bridge(&dir, &["in", key, "--into", "r", "--create"]);
        assert_eq!(code, 1, "{key:?}: {err}");
        assert!(err.contains("not a valid key expression"), "{key:?}: {err}");
    }
    // A missing key is a usage error, as for every command.
    let (code, err) = bridge(&dir, &["out", "r"]);
    assert_eq!(code, 2, "{err}");
    dir.finish();
}

#[test]
fn bad_endpoints_are_refused() {
    let dir = TestDir::new("bridge-endpoint");
    for (flag, e, says) in [
        ("--connect", "127.0.0.1:7447", "not a Zenoh endpoint"),
        ("--listen", "tcp/", "not a Zenoh endpoint"),
        ("--connect", "udp/127.0.0.1:7447", "tcp only"),
        ("--listen", "quic/127.0.0.1:7447", "tcp only"),
    ] {
        let (code, err) = bridge(&dir, &["in", "k/e", "--into", "r", "--create", flag, e]);
        assert_eq!(code, 1, "{e}: {err}");
        assert!(err.contains(says), "{e}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (code, err) = bridge(
        &dir,
        &["in", "k/e", "--into", "r", "--create", "--mode", "client"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("needs a router"), "{err}");
    dir.finish();
}

#[test]
fn an_endpoint_nobody_answers_is_an_error_and_the_ring_goes() {
    let dir = TestDir::new("bridge-unreachable");
    let nobody = endpoint(free_port());
    let (code, err) = bridge(
        &dir,
        &[
            "in",
            "k/u",
            "--into",
            "r",
            "--create",
            "--connect",
            &nobody,
            "--connect-timeout",
            "500",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("cannot reach {nobody} within 500 ms: ")),
        "{err}"
    );
    assert!(!err.contains(".rs:"), "a source location in {err:?}");
    // The ring `--create` made went with its last user.
    dir.finish();
}

#[test]
fn sigint_detaches_a_bridge_in_and_its_ring_goes() {
    let dir = TestDir::new("bridge-sigint");
    let listen = endpoint(free_port());
    let inb = Bridge::start(
        &dir.path,
        &["in", "k/s", "--into", "r", "--create", "--listen", &listen],
    );
    inb.wait_for("subscribed", LONG);
    assert!(dir.file("r").exists());
    let (code, log) = inb.stop(Signal::SIGINT);
    assert_eq!(code, Some(130), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("bridge in: end:")),
        "{log:#?}"
    );
    dir.finish();
}
