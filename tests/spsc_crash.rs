//! kill -9 of SPSC producers and consumers at random points.

mod common;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use shmring::spsc::{Consumer, Producer, TryPopError, TryPushError};

/// A 64-byte message whose every word derives from its sequence number, so
/// a torn (half-written) message cannot pass `check`. (Arrays are not
/// messages: a named wrapper is.)
#[derive(Clone, Copy, Debug, PartialEq, shmring::Message)]
#[repr(transparent)]
#[message(name = "shmring-test/crash-msg/v1")]
struct Msg([u64; 8]);

fn msg(seq: u64) -> Msg {
    let mut m = [0u64; 8];
    for (i, w) in m.iter_mut().enumerate() {
        *w = seq
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(i as u32 * 7)
            ^ i as u64;
    }
    m[0] = seq;
    Msg(m)
}

fn check(m: &Msg, expect: u64) {
    assert_eq!(m.0[0], expect, "out of order or lost");
    assert_eq!(*m, msg(expect), "torn message {expect}");
}

#[test]
fn crash_child() {
    let Some(role) = child_role() else { return };
    let dir = env_str("C_DIR");
    let name = env_str("C_NAME");
    // The parent creates the ring; a child waits for it.
    let wait = Duration::from_secs(20);
    match role.as_str() {
        // Pushes START, START+1, ... forever.
        "endless-producer" => {
            let mut seq: u64 = env_str("C_START").parse().unwrap();
            let mut tx = Producer::<Msg>::builder(&name)
                .dir(&dir)
                .wait_for(wait)
                .open()
                .unwrap();
            println!("ready");
            loop {
                match tx.try_push(msg(seq)) {
                    Ok(()) => seq += 1,
                    Err(TryPushError::Full(_)) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        // Appends each value to the output file before releasing it (at
        // least once), skipping what the file already has (so exactly once).
        "logging-consumer" => {
            let out_path = env_str("C_OUT");
            let total: u64 = env_str("C_TOTAL").parse().unwrap();
            let done = std::fs::read(&out_path).unwrap_or_default();
            let mut next = (done.len() / 8) as u64;
            let mut out = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&out_path)
                .unwrap();
            let mut rx = Consumer::<u64>::builder(&name)
                .dir(&dir)
                .wait_for(wait)
                .open()
                .unwrap();
            println!("ready");
            while next < total {
                match rx.read_chunk(1) {
                    Ok(chunk) => {
                        let v = chunk.as_slice()[0];
                        if v >= next {
                            assert_eq!(v, next, "lost message");
                            out.write_all(&v.to_le_bytes()).unwrap();
                            next += 1;
                        }
                        chunk.release(1);
                    }
                    Err(TryPopError::Empty) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn spawn(role: &str, dir: &TestDir, name: &str, extra: &[(&str, String)]) -> ChildGuard {
    let mut env = vec![
        ("C_DIR", dir.path.display().to_string()),
        ("C_NAME", name.to_string()),
    ];
    env.extend(extra.iter().cloned());
    let mut child = ChildGuard(Some(
        spawn_self("crash_child", role, &env)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    read_line_starting(child.child().stdout.take().unwrap(), "ready");
    child
}

#[test]
fn producer_killed_50_times_loses_nothing_committed_and_tears_nothing() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("prodkill");
    let mut rx = Consumer::<Msg>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .create()
        .unwrap();
    let mut expect = 0u64;
    for round in 0..50 {
        // Each new producer continues where the killed one's last commit
        // left off (the shared tail), which is where we are after draining.
        let mut child = spawn(
            "endless-producer",
            &dir,
            "r",
            &[("C_START", expect.to_string())],
        );
        let run_for = Duration::from_micros(rand::random_range(0..20_000));
        let until = Instant::now() + run_for;
        while Instant::now() < until {
            match rx.try_pop() {
                Ok(m) => {
                    check(&m, expect);
                    expect += 1;
                }
                Err(TryPopError::Empty) => std::thread::yield_now(),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        child.kill9();
        // Drain everything it committed, then Disconnected.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.try_pop() {
                Ok(m) => {
                    check(&m, expect);
                    expect += 1;
                }
                Err(TryPopError::Empty) => {
                    assert!(Instant::now() < deadline, "round {round}: no Disconnected");
                    std::thread::yield_now();
                }
                Err(TryPopError::Disconnected) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(rx.len(), 0);
    }
    assert!(expect > 50, "producers made no progress: {expect}");
    eprintln!("50 producer kills: {expect} messages, none torn or lost");
    drop(rx);
    dir.finish();
}

#[test]
fn consumer_of_a_persistent_ring_killed_and_restarted_loses_and_repeats_nothing() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("conskill");
    let files = TestDir::new("conskill-out");
    let out_path = files.file("out");
    let total = 300_000u64;
    let mut tx = Producer::<u64>::builder("r")
        .dir(&dir.path)
        .persistent(true)
        .capacity(64)
        .create()
        .unwrap();
    let env = [
        ("C_OUT", out_path.display().to_string()),
        ("C_TOTAL", total.to_string()),
    ];
    let mut child = spawn("logging-consumer", &dir, "r", &env);
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(rand::random_range(5..40));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut v = 0u64;
    while v < total {
        assert!(Instant::now() < deadline, "stalled at {v}");
        match tx.try_push(v) {
            Ok(()) => v += 1,
            Err(TryPushError::Full(_)) => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
        if kills < 8 && Instant::now() >= next_kill {
            child.kill9();
            kills += 1;
            child = spawn("logging-consumer", &dir, "r", &env);
            next_kill = Instant::now() + Duration::from_millis(rand::random_range(5..40));
        }
    }
    assert!(child.wait_within(Duration::from_secs(60)).success());
    let bytes = std::fs::read(&out_path).unwrap();
    assert_eq!(bytes.len() as u64, total * 8, "lost or repeated messages");
    for (i, w) in bytes.chunks_exact(8).enumerate() {
        assert_eq!(u64::from_le_bytes(w.try_into().unwrap()), i as u64);
    }
    eprintln!("{kills} consumer kills over {total} messages: none lost or repeated");
    drop(tx);
    shmring::segment::remove(&dir.path, "r", false).unwrap();
    dir.finish();
    std::fs::remove_file(&out_path).unwrap();
    files.finish();
}
