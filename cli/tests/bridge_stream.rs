//! Two `shmring bridge` processes over TCP on 127.0.0.1 (peer mode,
//! explicit endpoints): `send` -> ring A -> bridge out -> bridge in ->
//! ring B -> `recv`, every line in order; and a bridge in killed with -9
//! mid-stream and restarted.
#![cfg(feature = "bridge")]

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::bridge::*;
use common::*;
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(120);

fn endpoint(port: u16) -> String {
    format!("tcp/127.0.0.1:{port}")
}

/// `shmring create NAME --capacity C --slot-size 64` (a persistent frame ring).
fn create(dir: &TestDir, name: &str, capacity: &str) {
    let (code, _, err) = shmring(
        &dir.path,
        &["create", name, "--capacity", capacity, "--slot-size", "64"],
    );
    assert_eq!(code, 0, "{err}");
}

fn remove(dir: &TestDir, name: &str) {
    let (code, _, err) = shmring(&dir.path, &["rm", name]);
    assert_eq!(code, 0, "{err}");
}

/// Starts `send NAME` fed with `input` by a thread.
fn send(dir: &TestDir, name: &str, input: Vec<u8>) -> (ChildGuard, std::thread::JoinHandle<()>) {
    send_with(dir, name, move |stdin| stdin.write_all(&input))
}

/// Starts `send NAME` fed by `feed` on a thread.
fn send_with(
    dir: &TestDir,
    name: &str,
    feed: impl FnOnce(&mut std::process::ChildStdin) -> std::io::Result<()> + Send + 'static,
) -> (ChildGuard, std::thread::JoinHandle<()>) {
    let mut child = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["send", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        feed(&mut stdin).unwrap();
    });
    (ChildGuard(Some(child)), feeder)
}

/// Starts the two bridges: out of `a` listening on a free port, into `b`
/// connected to it; returns them once the publisher sees the subscriber.
fn bridges(dir: &TestDir, a: &str, b: &str, key: &str) -> (Bridge, Bridge, String) {
    let listen = endpoint(free_port());
    let out = Bridge::start(&dir.path, &["out", a, "--key", key, "--listen", &listen]);
    out.wait_for("waiting for a subscriber", LONG);
    let inb = start_in(dir, b, key, &listen);
    out.wait_for("a subscriber matches", LONG);
    (out, inb, listen)
}

fn start_in(dir: &TestDir, b: &str, key: &str, connect: &str) -> Bridge {
    let inb = Bridge::start(
        &dir.path,
        &[
            "in",
            key,
            "--into",
            b,
            "--connect",
            connect,
            "--report-every",
            "1",
        ],
    );
    inb.wait_for("subscribed", LONG);
    inb
}

#[test]
fn hundred_thousand_lines_cross_two_bridges_in_order() {
    const N: u64 = 100_000;
    let dir = TestDir::new("bridge-stream");
    let key = format!("shmring/test/{}", unique("stream"));
    create(&dir, "a", "1024");
    create(&dir, "b", "1024");
    let (out, inb, _) = bridges(&dir, "a", "b", &key);
    let (mut tx, feeder) = send(&dir, "a", numbered_lines(N));

    // Nobody reads B for 6 s: A, the bridges' queues and B fill up and the
    // bridge out blocks, longer than the 5 s after which Zenoh would close
    // a session by default.
    std::thread::sleep(Duration::from_secs(6));
    let rx = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["recv", "b", "--count", &N.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = ChildGuard(Some(rx));
    // `recv`'s output is read as it comes (on a thread), so it never
    // blocks on a full pipe.
    let got = std::thread::spawn(move || rx.output_within(LONG));
    feeder.join().unwrap();
    assert!(tx.wait_within(LONG).success());
    let got = got.join().unwrap();
    assert!(got.status.success(), "{got:?}");
    let nums = numbers(&got.stdout);
    assert_eq!(
        nums.len() as u64,
        N,
        "recv: {}; bridge in: {:#?}; bridge out: {:#?}",
        String::from_utf8_lossy(&got.stderr),
        inb.lines(),
        out.lines()
    );
    assert!(
        nums.iter().zip(1..).all(|(&a, b)| a == b),
        "out of order or changed"
    );

    let (code, log) = inb.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143), "{log:#?}");
    let end = log.iter().find(|l| l.contains("bridge in: end:")).unwrap();
    assert_eq!(counter(end, "delivered"), N, "{end}");
    assert_eq!(counter(end, "last_seq"), N, "{end}");
    assert_eq!(counter(end, "gaps"), 0, "{end}");
    let (code, log) = out.stop(Signal::SIGINT);
    assert_eq!(code, Some(130), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains(&format!("published {N}"))),
        "{log:#?}"
    );
    remove(&dir, "a");
    remove(&dir, "b");
    dir.finish();
}

#[test]
fn a_receiving_bridge_killed_and_restarted_reports_exactly_what_was_lost() {
    const N: u64 = 30_000;
    let dir = TestDir::new("bridge-kill");
    let key = format!("shmring/test/{}", unique("kill"));
    create(&dir, "a", "256");
    // B holds the whole stream: no `recv` runs until the end.
    create(&dir, "b", "16384");
    let (out, in1, listen) = bridges(&dir, "a", "b", &key);
    // Lines 1..=HALF trickle in (500 every 5 ms) while the first bridge in
    // is killed; the rest only once the second one is up, so that it
    // surely gets some.
    const HALF: u64 = N / 2;
    let all = numbered_lines(N);
    let split = numbered_lines(HALF).len();
    let (go, gate) = std::sync::mpsc::channel::<()>();
    let (mut tx, feeder) = send_with(&dir, "a", move |stdin| {
        for chunk in all[..split]
            .split_inclusive(|&b| b == b'\n')
            .collect::<Vec<_>>()
            .chunks(500)
        {
            for line in chunk {
                stdin.write_all(line)?;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = gate.recv();
        stdin.write_all(&all[split..])
    });

    // Mid-stream: some lines are in B, more are coming.
    assert!(wait_until(LONG, || {
        shmring::segment::inspect(&dir.path, "b").is_ok_and(|i| i.len.unwrap_or(0) >= 2_000)
    }));
    in1.kill9();
    let in2 = start_in(&dir, "b", &key, &listen);
    go.send(()).unwrap();
    feeder.join().unwrap();
    assert!(tx.wait_within(LONG).success());
    in2.wait_for(&format!("last_seq {N} "), LONG);
    let (code, log) = in2.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143), "{log:#?}");
    // The second bridge continued the first one's record in B instead of
    // joining afresh.
    assert!(
        log.iter().any(|l| l.contains("resumed the ring's record")),
        "{log:#?}"
    );
    let end = log.iter().find(|l| l.contains("bridge in: end:")).unwrap();
    assert_eq!(counter(end, "last_seq"), N, "{end}");
    let (code, _) = out.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143));

    // `stat` on B: the count over both bridges.
    let (code, out, err) = shmring(&dir.path, &["stat", "b", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let record = &v["upstream"]["counts"];
    let gaps = record["gaps"].as_u64().unwrap_or_else(|| panic!("{v:#}"));
    let delivered = record["delivered"].as_u64().unwrap();
    assert_eq!(record["last_seq"].as_u64(), Some(N), "{v:#}");
    assert_eq!(v["upstream"]["pending"].as_bool(), Some(false), "{v:#}");
    let (code, human, _) = shmring(&dir.path, &["stat", "b"]);
    assert_eq!(code, 0);
    assert!(
        human.contains(&format!("upstream gaps  {gaps} ")),
        "{human}"
    );

    // Everything B got, in order and without repeats; what is missing is
    // exactly the gap count.
    let (code, stdout, err) = shmring(&dir.path, &["recv", "b", "--timeout", "2000"]);
    assert!(code == 0 || code == 3, "{code}: {err}");
    let nums = numbers(stdout.as_bytes());
    assert!(
        nums.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated"
    );
    assert!(nums.first() >= Some(&1) && nums.last() == Some(&N));
    let lost = N - nums.len() as u64;
    assert_eq!(gaps, lost, "stat counts {gaps} lost, {lost} are missing");
    assert_eq!(delivered, nums.len() as u64);
    eprintln!(
        "killed mid-stream: {lost} lines lost and counted, {} delivered",
        nums.len()
    );
    remove(&dir, "a");
    remove(&dir, "b");
    dir.finish();
}

#[test]
fn mpmc_byte_rings_on_both_ends_carry_every_line_in_order() {
    const N: u64 = 10_000;
    let dir = TestDir::new("bridge-mpmc");
    let key = format!("shmring/test/{}", unique("mpmc"));
    for name in ["a", "b"] {
        let (code, _, err) = shmring(
            &dir.path,
            &["create", name, "--kind", "mpmc", "--capacity", "256"],
        );
        assert_eq!(code, 0, "{err}");
    }
    let (out, inb, _) = bridges(&dir, "a", "b", &key);
    let rx = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["recv", "b", "--count", &N.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let got = std::thread::spawn(move || ChildGuard(Some(rx)).output_within(LONG));
    let (mut tx, feeder) = send(&dir, "a", numbered_lines(N));
    feeder.join().unwrap();
    assert!(tx.wait_within(LONG).success());
    let got = got.join().unwrap();
    assert!(got.status.success(), "{got:?}");
    let nums = numbers(&got.stdout);
    assert!(nums.iter().copied().eq(1..=N), "not 1..={N} in order");
    let (code, log) = inb.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143), "{log:#?}");
    let end = log.iter().find(|l| l.contains("bridge in: end:")).unwrap();
    assert_eq!(counter(end, "gaps"), 0, "{end}");
    let (code, _) = out.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143));
    remove(&dir, "a");
    remove(&dir, "b");
    dir.finish();
}

#[test]
fn best_effort_drops_are_counted_exactly_as_gaps() {
    const N: u64 = 50_000;
    let dir = TestDir::new("bridge-best-effort");
    let key = format!("shmring/test/{}", unique("besteffort"));
    create(&dir, "a", "16384");
    create(&dir, "b", "64");
    let listen = endpoint(free_port());
    let out = Bridge::start(
        &dir.path,
        &[
            "out",
            "a",
            "--key",
            &key,
            "--listen",
            &listen,
            "--best-effort",
            "--report-every",
            "1",
        ],
    );
    out.wait_for("waiting for a subscriber", LONG);
    let inb = start_in(&dir, "b", &key, &listen);
    out.wait_for("a subscriber matches", LONG);

    // Nobody reads B (4 KiB): the bridge in stalls, and the bridge out
    // drops instead of waiting (once Zenoh's queues and the socket
    // buffers, a few MB, are full: hence long lines).
    let (mut tx, feeder) = send(&dir, "a", padded_lines(1..=N));
    feeder.join().unwrap();
    assert!(tx.wait_within(LONG).success());
    out.wait_for(&format!("published {N}"), LONG);
    let rx = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["recv", "b"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let got = std::thread::spawn(move || ChildGuard(Some(rx)).output_within(LONG));
    // Then one more line at a time until one arrives (the first ones may
    // still meet a full queue): its sequence number shows the gap at the
    // end of the stream, if there is one.
    let mut sent = N;
    let arrived = (0..20).any(|_| {
        sent += 1;
        let (mut tx, feeder) = send(&dir, "a", padded_lines(sent..=sent));
        feeder.join().unwrap();
        assert!(tx.wait_within(LONG).success());
        inb.try_wait_for(&format!("last_seq {sent} "), Duration::from_secs(5))
            .is_some()
    });
    assert!(arrived, "no line got through after the backlog");
    let (code, log) = inb.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143), "{log:#?}");
    let got = got.join().unwrap();
    let nums: Vec<u64> = String::from_utf8_lossy(&got.stdout)
        .lines()
        .map(|l| {
            let (n, pad) = l.split_once(':').unwrap_or_else(|| panic!("{l:?}"));
            assert_eq!(pad, PAD, "line {n} changed");
            n.parse().unwrap()
        })
        .collect();
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(nums.last(), Some(&sent));
    let end = log.iter().find(|l| l.contains("bridge in: end:")).unwrap();
    let lost = sent - nums.len() as u64;
    assert_eq!(counter(end, "gaps"), lost, "{end}");
    assert_eq!(counter(end, "delivered"), nums.len() as u64, "{end}");
    eprintln!("best effort: {lost} of {sent} dropped, all counted");
    let (code, _) = out.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143));
    remove(&dir, "a");
    remove(&dir, "b");
    dir.finish();
}

/// 196 bytes after each number of [`padded_lines`].
const PAD: &str = concat!(
    "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz",
    "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz",
    "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdef"
);

/// `i:PAD` for each `i` of `range`, one per line.
fn padded_lines(range: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    range
        .flat_map(|i| format!("{i}:{PAD}\n").into_bytes())
        .collect()
}

#[test]
fn a_broadcast_ring_feeds_a_local_subscriber_and_a_bridged_remote_one_alike() {
    const N: u64 = 20_000;
    let dir = TestDir::new("bridge-broadcast");
    let key = format!("shmring/test/{}", unique("broadcast"));
    // Lossless: the publisher waits for both subscribers (the local `recv`
    // and the bridge out), however slow.
    let (code, _, err) = shmring(
        &dir.path,
        &[
            "create",
            "a",
            "--kind",
            "broadcast",
            "--capacity",
            "1024",
            "--evict-after",
            "never",
        ],
    );
    assert_eq!(code, 0, "{err}");
    create(&dir, "b", "1024");
    let (out, inb, _) = bridges(&dir, "a", "b", &key);
    let recv = |ring: &str| {
        let rx = shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args(["recv", ring, "--count", &N.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::spawn(move || ChildGuard(Some(rx)).output_within(LONG))
    };
    let remote = recv("b");
    let local = recv("a");
    // Both subscribers hold their roles before anything is published.
    assert!(wait_until(LONG, || {
        let (_, out, _) = shmring(&dir.path, &["stat", "a", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v["subscribers"]
            .as_array()
            .is_some_and(|s| s.iter().filter(|s| s["alive"] == true).count() == 2)
    }));
    let (mut tx, feeder) = send(&dir, "a", numbered_lines(N));
    feeder.join().unwrap();
    assert!(tx.wait_within(LONG).success());
    for (what, got) in [("local", local), ("remote", remote)] {
        let got = got.join().unwrap();
        assert!(got.status.success(), "{what}: {got:?}");
        let nums = numbers(&got.stdout);
        assert!(
            nums.iter().copied().eq(1..=N),
            "{what}: {} lines, not 1..={N} in order",
            nums.len()
        );
    }
    let (code, log) = inb.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143), "{log:#?}");
    let end = log.iter().find(|l| l.contains("bridge in: end:")).unwrap();
    assert_eq!(counter(end, "gaps"), 0, "{end}");
    let (code, _) = out.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143));
    remove(&dir, "a");
    remove(&dir, "b");
    dir.finish();
}
