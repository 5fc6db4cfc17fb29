//! Nothing lost silently: `flush` waits until the consumer has taken
//! everything, a producer built with `linger` waits on drop for a consumer
//! to take what it left, and one that leaves unread messages on a ring about
//! to be removed says so in the log.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{ChildGuard, TestDir, child_role, env_str, read_line_starting, spawn_self};
use shmring::spsc::{Consumer, PopError, Producer};

/// A logger for the child processes: every record to stderr.
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let _ = writeln!(std::io::stderr(), "{}: {}", record.level(), record.args());
    }
    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Child: creates the ring, pushes `COUNT` values, then flushes, lingers or
/// just drops its producer, as `MODE` says.
#[test]
fn child_producer() {
    let Some(role) = child_role() else { return };
    assert_eq!(role, "producer");
    log::set_logger(&LOGGER).expect("logger");
    log::set_max_level(log::LevelFilter::Warn);
    let count: u64 = env_str("COUNT").parse().unwrap();
    let mode = env_str("MODE");
    let mut b = Producer::<u64>::builder(env_str("RING"))
        .dir(env_str("DIR"))
        .capacity(64);
    if mode == "linger" {
        b = b.linger(Duration::from_secs(60));
    }
    let mut tx = b.create().expect("create");
    for v in 1..=count {
        tx.try_push(v).expect("room");
    }
    println!("pushed");
    let _ = std::io::stdout().flush();
    if mode == "flush" {
        tx.flush(Duration::from_secs(60)).expect("flush");
        // Flush returned: the consumer has taken every message.
        println!("flushed unread={}", tx.len());
    }
    drop(tx);
    println!("dropped");
}

fn spawn_producer(dir: &TestDir, name: &str, mode: &str, count: u64) -> ChildGuard {
    ChildGuard(Some(
        spawn_self(
            "child_producer",
            "producer",
            &[
                ("DIR", dir.path.display().to_string()),
                ("RING", name.to_string()),
                ("MODE", mode.to_string()),
                ("COUNT", count.to_string()),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn"),
    ))
}

fn drain(rx: &mut Consumer<u64>, slowly: bool) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match rx.pop_timeout(Some(Duration::from_secs(60))) {
            Ok(v) => {
                got.push(v);
                if slowly && got.len() % 8 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Err(PopError::Disconnected) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn flush_returns_once_the_consumer_took_everything() {
    let dir = TestDir::new("flush");
    let mut child = spawn_producer(&dir, "r", "flush", 50);
    let out = child.child().stdout.take().unwrap();
    let mut out = std::io::BufReader::new(out);
    read_line_starting(&mut out, "pushed");
    let mut rx = Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .wait_for(Duration::from_secs(60))
        .open()
        .unwrap();
    // The producer is blocked in flush while we take them slowly.
    let got = drain(&mut rx, true);
    assert_eq!(got, (1..=50).collect::<Vec<_>>());
    let line = read_line_starting(&mut out, "flushed");
    assert!(line.contains("unread=0"), "{line}");
    assert!(child.wait_within(Duration::from_secs(60)).success());
    drop(rx);
    dir.finish();
}

#[test]
fn flush_times_out_while_nobody_consumes() {
    let (mut tx, rx) = shmring::spsc::anonymous::<u64>(8).unwrap();
    tx.try_push(1).unwrap();
    let err = tx.flush(Duration::from_millis(50)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(tx.len(), 1);
    drop(rx);
    // With the consumer gone nothing will ever take it: Disconnected.
    let err = tx.flush(Duration::from_secs(10)).unwrap_err();
    assert!(matches!(err, shmring::Error::Disconnected { .. }), "{err}");
}

#[test]
fn a_lingering_producer_waits_on_drop_until_its_messages_are_taken() {
    let dir = TestDir::new("linger");
    let mut child = spawn_producer(&dir, "r", "linger", 40);
    let out = child.child().stdout.take().unwrap();
    let mut out = std::io::BufReader::new(out);
    read_line_starting(&mut out, "pushed");
    // The producer has dropped its handle (or is about to) and exits only
    // once we took everything: the ring is still there for us.
    std::thread::sleep(Duration::from_millis(100));
    let mut rx = Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .wait_for(Duration::from_secs(60))
        .open()
        .expect("the lingering producer kept the ring");
    let got = drain(&mut rx, false);
    assert_eq!(got, (1..=40).collect::<Vec<_>>());
    let output = child.output_within(Duration::from_secs(60));
    assert!(output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!err.contains("unread"), "nothing was lost: {err}");
    drop(rx);
    dir.finish();
}

#[test]
fn dropping_unread_messages_is_logged_not_silent() {
    let dir = TestDir::new("nolinger");
    let child = spawn_producer(&dir, "r", "drop", 7);
    let output = child.output_within(Duration::from_secs(60));
    assert!(output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("WARN") && err.contains("7 unread messages"),
        "stderr: {err}"
    );
    // The non-persistent ring is gone with its last user.
    dir.finish();
}
