//! Broadcast rings across processes: every subscriber process gets every
//! message (`block`), a stopped subscriber is lapped and told exactly what it
//! missed (`overwrite`), a killed subscriber stops holding the publisher up,
//! and a hostile peer scribbling over the ring makes a victim fail cleanly.

mod common;

use std::io::{BufRead, Write};
use std::os::unix::fs::FileExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use shmring::broadcast::{
    BytesPublisher, BytesSubscriber, Overflow, PopError, Publisher, Subscriber, TryPopError,
};
use shmring::ring::TryPushError;
use shmring::wait::WaitStrategy;

/// How long a child waits for the ring its parent creates.
const OPEN_WAIT: Duration = Duration::from_secs(20);

#[test]
fn bcast_child() {
    let Some(role) = child_role() else { return };
    let dir = env_str("B_DIR");
    let name = env_str("B_NAME");
    match role.as_str() {
        // Reads until the publisher is gone, checking that message i is
        // (i, i); prints "received R missed M evicted E".
        "subscriber" => {
            let mut rx = Subscriber::<u64>::builder(&name)
                .dir(&dir)
                .wait_for(OPEN_WAIT)
                .open()
                .unwrap();
            println!("ready {}", rx.position());
            let (mut received, mut missed, mut evicted) = (0u64, 0u64, 0u64);
            let mut expect = rx.position();
            loop {
                match rx.pop_timeout(Some(Duration::from_secs(60))) {
                    Ok((seq, value)) => {
                        assert_eq!(seq, expect, "out of order or duplicated");
                        assert_eq!(value, seq, "torn or wrong message");
                        expect += 1;
                        received += 1;
                    }
                    Err(PopError::Lagged(n)) => {
                        missed += n;
                        expect += n;
                    }
                    Err(PopError::Evicted { missed: n }) => {
                        evicted += 1;
                        missed += n;
                        expect = rx.position();
                    }
                    Err(PopError::Disconnected) => break,
                    Err(e) => panic!("subscriber: {e}"),
                }
            }
            println!("received {received} missed {missed} evicted {evicted}");
        }
        // Subscribes from B_START and prints each sequence number it reads,
        // one line each, until the publisher is gone.
        "victim" => {
            let start: u64 = env_str("B_START").parse().unwrap();
            let mut rx = Subscriber::<u64>::builder(&name)
                .dir(&dir)
                .wait_for(OPEN_WAIT)
                .start(shmring::broadcast::Start::At(start))
                .open()
                .unwrap();
            println!("ready {}", rx.position());
            let mut out = std::io::stdout().lock();
            loop {
                match rx.pop_timeout(Some(Duration::from_secs(60))) {
                    Ok((seq, value)) => {
                        assert_eq!(value, seq);
                        writeln!(out, "{seq}").unwrap();
                        out.flush().unwrap();
                    }
                    Err(PopError::Disconnected) => break,
                    Err(e) => panic!("victim: {e}"),
                }
            }
        }
        // Attaches and never reads.
        "sleeper" => {
            let _rx = Subscriber::<u64>::builder(&name)
                .dir(&dir)
                .wait_for(OPEN_WAIT)
                .open()
                .unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Uses the ring for a second while a hostile parent scribbles over
        // it; prints how it ended.
        "victim-sub" | "victim-pub" => {
            let deadline = Instant::now() + Duration::from_secs(1);
            let wait = Some(Duration::from_millis(20));
            let mut buf = Vec::new();
            let verdict = if role == "victim-sub" {
                let mut rx = BytesSubscriber::builder(&name)
                    .dir(&dir)
                    .wait_for(OPEN_WAIT)
                    .open()
                    .unwrap();
                println!("ready");
                loop {
                    if Instant::now() >= deadline {
                        break "timeout".to_string();
                    }
                    match rx.pop_into_timeout(&mut buf, wait) {
                        Ok(_) => assert!(buf.len() <= rx.max_len()),
                        Err(PopError::Timeout | PopError::Lagged(_) | PopError::Evicted { .. }) => {
                        }
                        Err(PopError::Disconnected) => break "disconnected".into(),
                        Err(PopError::Corrupted(w)) => break format!("corrupted: {w}"),
                    }
                }
            } else {
                let mut tx = BytesPublisher::builder(&name)
                    .dir(&dir)
                    .wait_for(OPEN_WAIT)
                    .open()
                    .unwrap();
                println!("ready");
                let mut i = 0u64;
                loop {
                    if Instant::now() >= deadline {
                        break "timeout".to_string();
                    }
                    i += 1;
                    match tx.push_timeout(&i.to_le_bytes(), wait) {
                        Ok(_) | Err(shmring::ring::FramePushError::Timeout) => {}
                        Err(e) => break format!("{e}"),
                    }
                }
            };
            println!("verdict {verdict}");
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn spawn(role: &str, dir: &TestDir) -> ChildGuard {
    spawn_at(role, dir, 0)
}

/// [`spawn`], with `B_START` (where a victim starts).
fn spawn_at(role: &str, dir: &TestDir, start: u64) -> ChildGuard {
    let env = [
        ("B_DIR", dir.path.display().to_string()),
        ("B_NAME", "r".to_string()),
        ("B_START", start.to_string()),
    ];
    ChildGuard(Some(
        spawn_self("bcast_child", role, &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    ))
}

/// Reads the child's stdout until a line starting with `prefix`; keeps the
/// reader so later lines can be read too.
fn line_from(reader: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "child closed its pipe before printing {prefix:?}"
        );
        if line.starts_with(prefix) {
            return line.trim().to_string();
        }
    }
}

/// "received R missed M evicted E" as numbers.
fn tally(line: &str) -> (u64, u64, u64) {
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1], n[2])
}

#[test]
fn block_mode_four_subscriber_processes_each_get_a_million_messages_once_in_order() {
    if child_role().is_some() {
        return;
    }
    const COUNT: u64 = 1_000_000;
    let dir = TestDir::new("bcast-block");
    let mut tx = Publisher::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .subscribers(4)
        .overflow(Overflow::Block { evict_after: None })
        .create()
        .unwrap();
    // Four processes on two cores: never spin for long.
    tx.set_wait_strategy(WaitStrategy::Park {
        spin: Duration::from_micros(20),
    });
    let mut subs: Vec<_> = (0..4).map(|_| spawn("subscriber", &dir)).collect();
    let mut readers: Vec<_> = subs
        .iter_mut()
        .map(|c| std::io::BufReader::new(c.child().stdout.take().unwrap()))
        .collect();
    for r in &mut readers {
        assert_eq!(line_from(r, "ready"), "ready 0");
    }
    for i in 0..COUNT {
        tx.push(i).unwrap();
    }
    drop(tx);
    for (sub, r) in subs.iter_mut().zip(&mut readers) {
        let line = line_from(r, "received");
        assert_eq!(tally(&line), (COUNT, 0, 0), "{line}");
        assert!(sub.wait_within(Duration::from_secs(60)).success());
    }
    dir.finish();
}

/// Waits until process `pid` is stopped (state `T` in /proc/PID/stat).
fn wait_stopped(pid: i32) {
    let stopped = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    });
    assert!(stopped, "child {pid} did not stop");
}

#[test]
fn overwrite_mode_a_stopped_subscriber_is_lapped_and_told_exactly_what_it_missed() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("bcast-overwrite");
    let mut tx = Publisher::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .overflow(Overflow::Overwrite)
        .create()
        .unwrap();
    let mut sub = spawn("subscriber", &dir);
    let mut reader = std::io::BufReader::new(sub.child().stdout.take().unwrap());
    assert_eq!(line_from(&mut reader, "ready"), "ready 0");
    let mut published = 0u64;
    let mut publish = |n: u64, tx: &mut Publisher<u64>| {
        for _ in 0..n {
            // The publisher of an overwrite ring never waits.
            match tx.try_push(published) {
                Ok(seq) => assert_eq!(seq, published),
                Err(TryPushError::Full(_)) => panic!("an overwrite ring was full"),
                Err(e) => panic!("{e}"),
            }
            published += 1;
        }
    };
    publish(10_000, &mut tx);
    let pid = sub.pid();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    wait_stopped(pid);
    publish(100_000, &mut tx);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    publish(10_000, &mut tx);
    drop(tx);
    let line = line_from(&mut reader, "received");
    let (received, missed, evicted) = tally(&line);
    assert_eq!(received + missed, published, "{line}");
    assert!(
        missed > 0,
        "the stopped subscriber was never lapped: {line}"
    );
    assert_eq!(evicted, 0);
    assert!(sub.wait_within(Duration::from_secs(60)).success());
    dir.finish();
}

#[test]
fn block_mode_a_killed_subscriber_stops_holding_the_publisher_up() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("bcast-kill");
    let mut tx = Publisher::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(8)
        .overflow(Overflow::Block { evict_after: None })
        .create()
        .unwrap();
    let mut sleeper = spawn("sleeper", &dir);
    read_line_starting(sleeper.child().stdout.take().unwrap(), "ready");
    for i in 0..8 {
        tx.try_push(i).unwrap();
    }
    assert!(matches!(tx.try_push(8), Err(TryPushError::Full(8))));
    sleeper.kill9();
    // The dead subscriber's lock is gone: the publisher's next check sees it.
    for i in 8..100 {
        tx.push_timeout(i, Some(Duration::from_secs(10))).unwrap();
    }
    // Left behind, not evicted: it was dead.
    assert_eq!(tx.evictions(), 0);
    drop(tx);
    dir.finish();
}

/// Scribbles pseudo-random words over the ring's control lines and slots
/// (not the header: the victim already validated its copy of it) until the
/// victim prints its verdict.
fn scribble_until_verdict(dir: &TestDir, victim: &mut ChildGuard) -> String {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.file("r"))
        .unwrap();
    let len = file.metadata().unwrap().len();
    let mut out = std::io::BufReader::new(victim.child().stdout.take().unwrap());
    line_from(&mut out, "ready");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(line_from(&mut out, "verdict"));
    });
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let start = Instant::now();
    loop {
        if let Ok(v) = rx.try_recv() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "victim hung");
        for _ in 0..64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Words past the 4 KiB header page: roles, control, slots.
            let at = 4096 + (seed % (len - 4096)) / 8 * 8;
            let value = match seed >> 60 {
                0..=5 => seed.rotate_left(17),
                6..=9 => seed & 0xff,
                10..=12 => u64::MAX - (seed & 3),
                _ => 0,
            };
            let _ = file.write_all_at(&value.to_le_bytes(), at);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn a_hostile_peer_scribbling_over_the_ring_makes_victims_fail_cleanly() {
    if child_role().is_some() {
        return;
    }
    for victim_role in ["victim-sub", "victim-pub"] {
        let dir = TestDir::new("bcast-hostile");
        // The parent holds the other side so the victim has a peer.
        let layout_holder: Box<dyn std::any::Any> = if victim_role == "victim-sub" {
            Box::new(
                BytesPublisher::builder("r")
                    .dir(&dir.path)
                    .capacity(16)
                    .slot_size(24)
                    .create()
                    .unwrap(),
            )
        } else {
            Box::new(
                BytesSubscriber::builder("r")
                    .dir(&dir.path)
                    .capacity(16)
                    .slot_size(24)
                    .create()
                    .unwrap(),
            )
        };
        let mut victim = spawn(victim_role, &dir);
        let verdict = scribble_until_verdict(&dir, &mut victim);
        let status = victim.wait_within(Duration::from_secs(30));
        assert!(
            status.success(),
            "{victim_role} died: {status:?} after {verdict}"
        );
        drop(layout_holder);
        dir.finish();
    }
}

#[test]
fn typed_and_byte_handles_refuse_each_other_naming_both() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("bcast-types");
    let _tx = Publisher::<u64>::builder("r")
        .dir(&dir.path)
        .create()
        .unwrap();
    let err = BytesSubscriber::builder("r")
        .dir(&dir.path)
        .open()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("u64") && msg.contains("untyped bytes"),
        "{msg}"
    );
    let err = Subscriber::<u32>::builder("r")
        .dir(&dir.path)
        .open()
        .unwrap_err();
    assert!(err.to_string().contains("u32"), "{err}");
    let mut sub = Subscriber::<u64>::builder("r")
        .dir(&dir.path)
        .open()
        .unwrap();
    assert_eq!(sub.try_pop(), Err(TryPopError::Empty));
    let _ = std::io::stdout().flush();
}

/// Starts a victim subscriber at `start`; returns it and a thread that
/// collects the sequence numbers it prints (until its stdout closes).
fn start_victim(dir: &TestDir, start: u64) -> (ChildGuard, std::thread::JoinHandle<Vec<u64>>) {
    let mut victim = spawn_at("victim", dir, start);
    let mut out = std::io::BufReader::new(victim.child().stdout.take().unwrap());
    assert_eq!(line_from(&mut out, "ready"), format!("ready {start}"));
    let lines = std::thread::spawn(move || {
        out.lines()
            .map_while(Result::ok)
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    });
    (victim, lines)
}

#[test]
fn block_mode_subscribers_killed_30_times_stall_nobody_and_resume_from_their_sequence() {
    if child_role().is_some() {
        return;
    }
    const ROUNDS: u64 = 30;
    const BATCH: u64 = 200;
    let dir = TestDir::new("bcast-kill30");
    let mut tx = Publisher::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(4096)
        .subscribers(4)
        .overflow(Overflow::Block { evict_after: None })
        .create()
        .unwrap();
    let mut steady = spawn("subscriber", &dir);
    let mut steady_out = std::io::BufReader::new(steady.child().stdout.take().unwrap());
    assert_eq!(line_from(&mut steady_out, "ready"), "ready 0");
    let (mut victim, mut lines) = start_victim(&dir, 0);
    // Each incarnation's sequence numbers, with where it started.
    let mut incarnations: Vec<(u64, Vec<u64>)> = Vec::new();
    let mut start = 0;
    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ u64::from(std::process::id());
    let mut next = 0u64;
    for _ in 0..ROUNDS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_at = next + seed % BATCH;
        for _ in 0..BATCH {
            if next == kill_at {
                victim.kill9();
            }
            // The dead subscriber stops holding the publisher once its lock
            // is seen free; the steady one keeps reading.
            tx.push_timeout(next, Some(Duration::from_secs(30)))
                .unwrap();
            next += 1;
        }
        let got = lines.join().unwrap();
        // Resume after the last message it showed it had: the ones it took
        // but did not print are read again (at-least-once), none is lost.
        let resume = got.last().map_or(start, |&s| s + 1);
        incarnations.push((start, got));
        start = resume;
        (victim, lines) = start_victim(&dir, start);
    }
    for _ in 0..BATCH {
        tx.push_timeout(next, Some(Duration::from_secs(30)))
            .unwrap();
        next += 1;
    }
    drop(tx);
    assert!(victim.wait_within(Duration::from_secs(60)).success());
    incarnations.push((start, lines.join().unwrap()));
    // Every incarnation read from where it started, in order, no gap.
    let mut covered = 0u64;
    for (start, got) in &incarnations {
        assert!(*start <= covered, "resumed at {start} after only {covered}");
        for (i, &seq) in got.iter().enumerate() {
            assert_eq!(
                seq,
                start + i as u64,
                "gap or reorder after a restart at {start}"
            );
        }
        covered = covered.max(start + got.len() as u64);
    }
    assert_eq!(covered, next, "the victims together missed messages");
    // The steady subscriber got everything, once, in order.
    let line = line_from(&mut steady_out, "received");
    assert_eq!(tally(&line), (next, 0, 0), "{line}");
    assert!(steady.wait_within(Duration::from_secs(60)).success());
    dir.finish();
}

#[test]
fn block_mode_a_stuck_subscriber_process_is_evicted_and_the_others_go_on() {
    if child_role().is_some() {
        return;
    }
    const COUNT: u64 = 20_000;
    let dir = TestDir::new("bcast-stuck");
    let mut tx = Publisher::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .overflow(Overflow::Block {
            evict_after: Some(Duration::from_millis(100)),
        })
        .create()
        .unwrap();
    let mut stuck = spawn("sleeper", &dir);
    read_line_starting(stuck.child().stdout.take().unwrap(), "ready");
    let mut live = spawn("subscriber", &dir);
    let mut live_out = std::io::BufReader::new(live.child().stdout.take().unwrap());
    assert_eq!(line_from(&mut live_out, "ready"), "ready 0");
    // The stuck one (alive, never reading) holds the publisher for at most
    // the eviction delay, once; then the live one gets everything.
    for i in 0..COUNT {
        tx.push_timeout(i, Some(Duration::from_secs(30))).unwrap();
    }
    assert_eq!(tx.evictions(), 1);
    // Killed before the others leave, so the last of them removes the ring.
    stuck.kill9();
    drop(tx);
    let line = line_from(&mut live_out, "received");
    assert_eq!(tally(&line), (COUNT, 0, 0), "{line}");
    assert!(live.wait_within(Duration::from_secs(60)).success());
    dir.finish();
}
