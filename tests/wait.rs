//! Blocking calls across processes: no lost wake-ups, idle cost, no system
//! calls without sleepers, timeouts, dead peers.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use shmring::spsc::{Consumer, PopError, Producer, PushError};
use shmring::wait::{PEER_CHECK_INTERVAL, WaitStrategy};

/// The producer of a new ring of `cap` u64 slots.
fn create_producer(dir: &TestDir, name: &str, cap: u64, strategy: WaitStrategy) -> Producer<u64> {
    Producer::<u64>::builder(name)
        .dir(&dir.path)
        .capacity(cap)
        .wait_strategy(strategy)
        .create()
        .unwrap()
}

/// The consumer of a new ring of `cap` u64 slots.
fn create_consumer(dir: &TestDir, name: &str, cap: u64, strategy: WaitStrategy) -> Consumer<u64> {
    Consumer::<u64>::builder(name)
        .dir(&dir.path)
        .capacity(cap)
        .wait_strategy(strategy)
        .create()
        .unwrap()
}

/// A child's side: the producer of a ring its parent creates.
fn open_producer(dir: &str, name: &str, strategy: WaitStrategy) -> Producer<u64> {
    Producer::<u64>::builder(name)
        .dir(Path::new(dir))
        .wait_for(Duration::from_secs(20))
        .wait_strategy(strategy)
        .open()
        .unwrap()
}

/// A child's side: the consumer of a ring its parent creates.
fn open_consumer(dir: &str, name: &str, strategy: WaitStrategy) -> Consumer<u64> {
    Consumer::<u64>::builder(name)
        .dir(Path::new(dir))
        .wait_for(Duration::from_secs(20))
        .wait_strategy(strategy)
        .open()
        .unwrap()
}

fn park_now() -> WaitStrategy {
    WaitStrategy::Park {
        spin: Duration::ZERO,
    }
}

/// Sleeps 0..max_us microseconds, sometimes.
fn random_pause(max_us: u64) {
    if rand::random_range(0..4) == 0 {
        std::thread::sleep(Duration::from_micros(rand::random_range(0..max_us)));
    }
}

#[test]
fn wait_child() {
    let Some(role) = child_role() else { return };
    let dir = env_str("W_DIR");
    match role.as_str() {
        // Echoes ping -> pong until ping's producer goes.
        "echo" => {
            let strategy = match env_str("W_STRATEGY").as_str() {
                "spin" => WaitStrategy::Spin,
                "default" => WaitStrategy::default(),
                _ => park_now(),
            };
            let mut rx = open_consumer(&dir, "ping", strategy);
            let mut tx = open_producer(&dir, "pong", strategy);
            let pauses = env_str("W_PAUSES") == "1";
            println!("ready");
            loop {
                match rx.pop_timeout(Some(Duration::from_secs(10))) {
                    Ok(v) => {
                        if pauses {
                            random_pause(300);
                        }
                        tx.push_timeout(v, Some(Duration::from_secs(10))).unwrap();
                    }
                    Err(PopError::Disconnected) => break,
                    Err(e) => panic!("echo stalled: {e}"),
                }
            }
        }
        // Parks on an empty ring until killed.
        "idle-consumer" => {
            let mut rx = open_consumer(&dir, "idle", WaitStrategy::default());
            println!("ready");
            let r = rx.pop();
            println!("popped {r:?}");
        }
        // Produces then waits to be killed.
        "hold-producer" => {
            let _tx = open_producer(&dir, "held", WaitStrategy::default());
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Sends (ring, seq) pairs to three rings at random, with pauses.
        "multi-producer" => {
            let mut txs: Vec<Producer<u64>> = (0..3)
                .map(|i| open_producer(&dir, &format!("m{i}"), WaitStrategy::default()))
                .collect();
            println!("ready");
            let mut seqs = [0u64; 3];
            for k in 0..3000u64 {
                let i = rand::random_range(0..3usize);
                txs[i]
                    .push_timeout((i as u64) << 32 | seqs[i], Some(Duration::from_secs(10)))
                    .unwrap();
                seqs[i] += 1;
                if k % 10 == 0 {
                    std::thread::sleep(Duration::from_micros(rand::random_range(0..2000)));
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn spawn(role: &str, dir: &TestDir, env: &[(&str, &str)]) -> ChildGuard {
    let mut all = vec![("W_DIR", dir.path.display().to_string())];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    let mut child = ChildGuard(Some(
        spawn_self("wait_child", role, &all)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    read_line_starting(child.child().stdout.take().unwrap(), "ready");
    child
}

#[test]
fn park_ping_pong_with_random_pauses_never_loses_a_wakeup() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("pingpong");
    let mut tx = create_producer(&dir, "ping", 2, park_now());
    let mut rx = create_consumer(&dir, "pong", 2, park_now());
    let mut echo = spawn("echo", &dir, &[("W_STRATEGY", "park"), ("W_PAUSES", "1")]);
    let end = Instant::now() + Duration::from_secs(10);
    let mut n = 0u64;
    while Instant::now() < end {
        // The watchdog: a lost wake-up would leave one side asleep; the
        // peer-check wake-ups would not save it (the peer is alive), so the
        // 10 s timeout fails the test.
        tx.push_timeout(n, Some(Duration::from_secs(10))).unwrap();
        if n.is_multiple_of(2) {
            random_pause(300);
        }
        let v = rx
            .pop_timeout(Some(Duration::from_secs(10)))
            .expect("stalled: lost wake-up");
        assert_eq!(v, n);
        n += 1;
    }
    let (data, space) = rx.wait_counters();
    eprintln!("park ping-pong: {n} round trips in 10 s; pong ring: {data:?} {space:?}");
    assert!(n > 1000, "only {n} round trips");
    assert!(
        data.sleeps > 0,
        "the parent never slept: not a test of wake-ups"
    );
    drop(tx);
    assert!(echo.wait_within(Duration::from_secs(30)).success());
    drop(rx);
    dir.finish();
}

#[test]
fn a_producer_blocked_on_a_full_ring_is_woken() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("fullblock");
    let mut tx = create_producer(&dir, "ping", 2, park_now());
    let mut rx = create_consumer(&dir, "pong", 2, park_now());
    // The echo child consumes ping (and must push to pong, which we drain
    // in bursts, so both sides block on full and on empty).
    let mut echo = spawn("echo", &dir, &[("W_STRATEGY", "park"), ("W_PAUSES", "1")]);
    let n = 20_000u64;
    let mut sent = 0;
    let mut got = 0;
    while got < n {
        // Push a burst larger than both rings together: we block on full.
        while sent < n && sent < got + 5 {
            tx.push_timeout(sent, Some(Duration::from_secs(10)))
                .expect("stalled");
            sent += 1;
        }
        let v = rx
            .pop_timeout(Some(Duration::from_secs(10)))
            .expect("stalled");
        assert_eq!(v, got);
        got += 1;
    }
    let (_, space) = tx.wait_counters();
    assert!(
        space.sleeps > 0,
        "the producer never blocked on a full ring"
    );
    drop(tx);
    assert!(echo.wait_within(Duration::from_secs(30)).success());
    drop(rx);
    dir.finish();
}
/// Pins the calling thread (and the children it spawns from now on) to
/// `cpu`; returns the affinity it had.
fn pin_thread(cpu: usize) -> libc::cpu_set_t {
    // SAFETY (test): cpu_set_t is plain data; the calls get valid pointers
    // and sizes, and pid 0 means the calling thread.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&old), &mut old),
            0
        );
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
        old
    }
}

#[test]
fn the_default_strategy_completes_a_ping_pong_with_both_processes_on_one_core() {
    if child_role().is_some() {
        return;
    }
    const ROUNDS: u64 = 100_000;
    let dir = TestDir::new("onecore");
    // Both processes on the CPU this thread runs on now: a spinning waiter
    // would starve its peer for a whole time slice per message (seconds
    // for the lot); the default must notice and give the core up.
    // SAFETY (test): sched_getcpu has no memory effects.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(0);
    let old = pin_thread(cpu);
    let mut tx = create_producer(&dir, "ping", 64, WaitStrategy::default());
    let mut rx = create_consumer(&dir, "pong", 64, WaitStrategy::default());
    let mut echo = spawn(
        "echo",
        &dir,
        &[("W_STRATEGY", "default"), ("W_PAUSES", "0")],
    );
    let start = Instant::now();
    for n in 0..ROUNDS {
        tx.push_timeout(n, Some(Duration::from_secs(10))).unwrap();
        let v = rx
            .pop_timeout(Some(Duration::from_secs(10)))
            .expect("stalled on one core");
        assert_eq!(v, n);
    }
    eprintln!(
        "default strategy, both on cpu {cpu}: {ROUNDS} round trips in {:.2?}",
        start.elapsed()
    );
    drop(tx);
    assert!(echo.wait_within(Duration::from_secs(30)).success());
    drop(rx);
    // SAFETY (test): restores the affinity read above.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&old), &old) };
    dir.finish();
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" of the command name: state is field 3, utime 14.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY (test): sysconf has no memory effects.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn a_parked_idle_consumer_uses_under_2_percent_of_a_core() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("idle");
    let tx = create_producer(&dir, "idle", 64, WaitStrategy::default());
    let mut child = spawn("idle-consumer", &dir, &[]);
    // Let it finish starting up and spinning, then measure 2 s.
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_seconds(child.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(child.pid()) - before;
    eprintln!(
        "idle parked consumer: {:.1} ms of CPU in 2 s",
        used * 1000.0
    );
    assert!(used < 0.04, "idle consumer used {used} s of CPU in 2 s");
    let (data, _) = tx.wait_counters();
    assert!(data.waiters >= 1, "the consumer is not parked");
    child.kill9();
    drop(tx);
    dir.finish();
}

#[test]
fn no_system_calls_when_nobody_sleeps() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("nosyscall");
    let mut tx = create_producer(&dir, "ping", 64, WaitStrategy::Spin);
    let mut rx = create_consumer(&dir, "pong", 64, WaitStrategy::Spin);
    let mut echo = spawn("echo", &dir, &[("W_STRATEGY", "spin"), ("W_PAUSES", "0")]);
    // A million messages, pipelined 32 deep.
    let n = 1_000_000u64;
    let mut got = 0;
    for v in 0..n {
        tx.push_timeout(v, Some(Duration::from_secs(30))).unwrap();
        if v >= 32 {
            assert_eq!(rx.pop_timeout(Some(Duration::from_secs(30))).unwrap(), got);
            got += 1;
        }
    }
    while got < n {
        assert_eq!(rx.pop_timeout(Some(Duration::from_secs(30))).unwrap(), got);
        got += 1;
    }
    let (pd, ps) = tx.wait_counters();
    let (qd, qs) = rx.wait_counters();
    for c in [pd, ps, qd, qs] {
        assert_eq!(
            (c.wakeups, c.sleeps),
            (0, 0),
            "system calls with nobody asleep: {c:?}"
        );
    }
    drop(tx);
    assert!(echo.wait_within(Duration::from_secs(30)).success());
    drop(rx);
    dir.finish();
}

#[test]
fn timeouts_fire_within_50_ms_of_the_deadline() {
    let dir = TestDir::new("timeouts");
    let mut tx = create_producer(&dir, "t", 2, WaitStrategy::default());
    let mut rx = Consumer::<u64>::builder("t").dir(&dir.path).open().unwrap();
    let timeout = Duration::from_millis(150);
    // Best of three: the claim is about the mechanism, not a noisy machine.
    let best = |f: &mut dyn FnMut() -> Duration| (0..3).map(|_| f()).min().unwrap();
    let pop = best(&mut || {
        let t = Instant::now();
        assert_eq!(rx.pop_timeout(Some(timeout)), Err(PopError::Timeout));
        t.elapsed()
    });
    tx.try_push(1).unwrap();
    tx.try_push(2).unwrap();
    let push = best(&mut || {
        let t = Instant::now();
        assert_eq!(
            tx.push_timeout(9, Some(timeout)),
            Err(PushError::Timeout(9))
        );
        t.elapsed()
    });
    for (what, took) in [("pop", pop), ("push", push)] {
        assert!(took >= timeout, "{what} returned early: {took:?}");
        assert!(
            took < timeout + Duration::from_millis(50),
            "{what} late: {took:?}"
        );
    }
    drop((tx, rx));
    dir.finish();
}

#[test]
fn a_parked_consumer_notices_a_killed_producer_within_the_bound_and_a_detach_at_once() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("deadpeer");
    let mut rx = create_consumer(&dir, "held", 4, park_now());
    let mut child = spawn("hold-producer", &dir, &[]);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        child.kill9();
        Instant::now()
    });
    assert_eq!(
        rx.pop_timeout(Some(Duration::from_secs(10))),
        Err(PopError::Disconnected)
    );
    let noticed = killer.join().unwrap().elapsed();
    eprintln!("killed producer noticed after {noticed:?} (bound {PEER_CHECK_INTERVAL:?})");
    assert!(
        noticed < PEER_CHECK_INTERVAL + Duration::from_millis(400),
        "{noticed:?}"
    );

    // A clean detach wakes the sleeper at once (no periodic check needed).
    // (The ring outlives the killed producer: this consumer holds it.)
    let tx = Producer::<u64>::builder("held")
        .dir(&dir.path)
        .open()
        .unwrap();
    let dropper = std::thread::spawn(move || {
        // Detach while the consumer sleeps (registered as a waiter): on a
        // loaded machine it may otherwise be between two of its periodic
        // peer checks, awake, and then needs no wake-up to see the detach.
        let started = Instant::now();
        while tx.wait_counters().0.waiters == 0 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(5));
        while tx.wait_counters().0.waiters == 0 && started.elapsed() < Duration::from_secs(10) {
            std::thread::yield_now();
        }
        drop(tx);
        Instant::now()
    });
    assert_eq!(
        rx.pop_timeout(Some(Duration::from_secs(10))),
        Err(PopError::Disconnected)
    );
    let noticed = dropper.join().unwrap().elapsed();
    let (data, _) = rx.wait_counters();
    assert!(
        data.wakeups >= 1,
        "detach did not wake the sleeper: {data:?}"
    );
    eprintln!("detach noticed after {noticed:?}");
    drop(rx);
    dir.finish();
}

#[test]
fn select_waits_on_several_rings_at_once() {
    if child_role().is_some() {
        return;
    }
    use shmring::wait::{Selectable, select};
    let dir = TestDir::new("select");
    let mut rxs: Vec<Consumer<u64>> = (0..3)
        .map(|i| create_consumer(&dir, &format!("m{i}"), 4, WaitStrategy::default()))
        .collect();
    let mut child = spawn("multi-producer", &dir, &[]);
    let mut next = [0u64; 3];
    let mut done = [false; 3];
    let mut total = 0;
    while !done.iter().all(|&d| d) {
        // A finished ring stays ready (its pop says Disconnected), so the
        // set holds only the rings still running.
        let live: Vec<usize> = (0..3).filter(|&i| !done[i]).collect();
        let i = {
            let mut set: Vec<&mut dyn Selectable> = rxs
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| !done[*i])
                .map(|(_, r)| r as &mut dyn Selectable)
                .collect();
            let k = select(&mut set, Some(Duration::from_secs(10)))
                .expect("select timed out: lost wake-up");
            live[k]
        };
        match rxs[i].try_pop() {
            Ok(v) => {
                assert_eq!(v >> 32, i as u64, "message in the wrong ring");
                assert_eq!(v & 0xffff_ffff, next[i], "ring {i} out of order");
                next[i] += 1;
                total += 1;
            }
            Err(shmring::spsc::TryPopError::Disconnected) => done[i] = true,
            Err(shmring::spsc::TryPopError::Empty) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(total, 3000);
    let sleeps: u64 = rxs.iter().map(|r| r.wait_counters().0.sleeps).sum();
    eprintln!("select: 3000 messages from 3 rings, {sleeps} sleeps");
    assert!(sleeps > 0, "select never slept: not a test of waking");
    assert!(child.wait_within(Duration::from_secs(30)).success());
    drop(rxs);
    dir.finish();
}
