//! The readiness fd armed on producers, across processes: a full ring's
//! fd stays quiet while nobody pops and becomes readable once a consumer
//! in another process pops (every producer kind); once it fired, the
//! consumer's further pops make no wake-ups; an event loop driven by the
//! fd alone (poll(2), `clear`, `try_push` until `Full`, arm) moves 100,000
//! messages in order to a consumer process; and an armed, idle producer
//! fd costs next to no CPU.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use shmring::asynch::Readiness;
use shmring::broadcast::{self, Overflow};
use shmring::ring::{FramePushError, PopError, TryPushError};
use shmring::{frames, mpmc, spsc};

/// How long a child waits for the ring the parent creates.
const WAIT: Duration = Duration::from_secs(20);
/// A hang guard, far above anything expected (not a timing assertion).
const GUARD: Duration = Duration::from_secs(60);
/// How long a fd that must stay quiet is watched.
const QUIET: Duration = Duration::from_millis(200);
/// Messages the event-loop test moves.
const COUNT: u64 = 100_000;

/// The producer kinds with async support (every one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Spsc,
    Frames,
    Mpmc,
    MpmcBytes,
    Broadcast,
    BroadcastBytes,
}

impl Kind {
    fn from_name(name: &str) -> Kind {
        match name {
            "spsc" => Kind::Spsc,
            "frames" => Kind::Frames,
            "mpmc" => Kind::Mpmc,
            "mpmc-bytes" => Kind::MpmcBytes,
            "broadcast" => Kind::Broadcast,
            "broadcast-bytes" => Kind::BroadcastBytes,
            other => panic!("unknown kind {other}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Spsc => "spsc",
            Kind::Frames => "frames",
            Kind::Mpmc => "mpmc",
            Kind::MpmcBytes => "mpmc-bytes",
            Kind::Broadcast => "broadcast",
            Kind::BroadcastBytes => "broadcast-bytes",
        }
    }
}

/// A producer of any kind, pushing u64s (their bytes on byte rings).
enum Tx {
    Spsc(spsc::Producer<u64>),
    Frames(frames::Producer),
    Mpmc(mpmc::Producer<u64>),
    MpmcBytes(mpmc::BytesProducer),
    Broadcast(broadcast::Publisher<u64>),
    BroadcastBytes(broadcast::BytesPublisher),
}

impl Tx {
    /// Creates the ring `r` of `kind` in `dir` and takes its producer role.
    fn create(kind: Kind, dir: &TestDir) -> Tx {
        let block = Overflow::Block { evict_after: None };
        match kind {
            Kind::Spsc => Tx::Spsc(
                spsc::Producer::builder("r")
                    .dir(&dir.path)
                    .capacity(16)
                    .create()
                    .unwrap(),
            ),
            // 256 bytes: 16 frames of 8 bytes (16 with their headers).
            Kind::Frames => Tx::Frames(
                frames::Producer::builder("r")
                    .dir(&dir.path)
                    .capacity(256)
                    .create()
                    .unwrap(),
            ),
            Kind::Mpmc => Tx::Mpmc(
                mpmc::Producer::builder("r")
                    .dir(&dir.path)
                    .capacity(16)
                    .producers(2)
                    .consumers(2)
                    .create()
                    .unwrap(),
            ),
            Kind::MpmcBytes => {
                let layout = mpmc::layout_with_roles::<[u8; 16]>(16, 2, 2).unwrap();
                let seg = shmring::SegmentOptions::new()
                    .dir(&dir.path)
                    .create("r", &shmring::raw::bytes_spec(&layout))
                    .unwrap();
                Tx::MpmcBytes(mpmc::BytesProducer::attach(Arc::new(seg)).unwrap())
            }
            Kind::Broadcast => Tx::Broadcast(
                broadcast::Publisher::builder("r")
                    .dir(&dir.path)
                    .capacity(16)
                    .overflow(block)
                    .create()
                    .unwrap(),
            ),
            Kind::BroadcastBytes => Tx::BroadcastBytes(
                broadcast::BytesPublisher::builder("r")
                    .dir(&dir.path)
                    .capacity(16)
                    .slot_size(16)
                    .overflow(block)
                    .create()
                    .unwrap(),
            ),
        }
    }

    /// Pushes `v` without waiting: `true` if sent, `false` if full.
    fn try_push(&mut self, v: u64) -> bool {
        let bytes = v.to_le_bytes();
        let typed = |r: Result<(), TryPushError<u64>>| match r {
            Ok(()) => true,
            Err(TryPushError::Full(_)) => false,
            Err(e) => panic!("push: {e}"),
        };
        let framed = |r: Result<(), FramePushError>| match r {
            Ok(()) => true,
            Err(FramePushError::Full | FramePushError::Timeout) => false,
            Err(e) => panic!("push: {e}"),
        };
        match self {
            Tx::Spsc(tx) => typed(tx.try_push(v)),
            Tx::Frames(tx) => framed(tx.try_push(&bytes)),
            Tx::Mpmc(tx) => typed(tx.try_push(v)),
            Tx::MpmcBytes(tx) => framed(tx.push_timeout(&bytes, Some(Duration::ZERO))),
            Tx::Broadcast(tx) => typed(tx.try_push(v).map(drop)),
            Tx::BroadcastBytes(tx) => framed(tx.try_push(&bytes).map(drop)),
        }
    }

    fn arm(&mut self, ready: &Readiness) {
        match self {
            Tx::Spsc(tx) => ready.arm_producer(tx),
            Tx::Frames(tx) => ready.arm_producer(tx),
            Tx::Mpmc(tx) => ready.arm_producer(tx),
            Tx::MpmcBytes(tx) => ready.arm_producer(tx),
            Tx::Broadcast(tx) => ready.arm_producer(tx),
            Tx::BroadcastBytes(tx) => ready.arm_producer(tx),
        }
    }

    /// The space line's (wake-ups, waiters), where the kind shows them.
    fn space_counters(&self) -> Option<(u64, u32)> {
        let c = match self {
            Tx::Spsc(tx) => tx.wait_counters().1,
            Tx::Broadcast(tx) => tx.wait_counters().1,
            _ => return None,
        };
        Some((c.wakeups, c.waiters))
    }

    /// Pushes 0, 1, ... until the ring is full; returns how many.
    fn fill(&mut self) -> u64 {
        let mut n = 0;
        while self.try_push(n) {
            n += 1;
            assert!(n < 10_000, "the ring never filled");
        }
        assert!(n > 0, "nothing fitted");
        n
    }
}

/// A consumer of any kind, taking u64s.
enum Rx {
    Spsc(spsc::Consumer<u64>),
    Frames(frames::Consumer),
    Mpmc(mpmc::Consumer<u64>),
    MpmcBytes(mpmc::BytesConsumer),
    Broadcast(broadcast::Subscriber<u64>),
    BroadcastBytes(broadcast::BytesSubscriber),
}

impl Rx {
    /// Takes the consumer role of the ring `name` of `kind` in `dir`.
    fn open(kind: Kind, dir: &str, name: &str) -> Rx {
        match kind {
            Kind::Spsc => Rx::Spsc(
                spsc::Consumer::builder(name)
                    .dir(dir)
                    .wait_for(WAIT)
                    .open()
                    .unwrap(),
            ),
            Kind::Frames => Rx::Frames(
                frames::Consumer::builder(name)
                    .dir(dir)
                    .wait_for(WAIT)
                    .open()
                    .unwrap(),
            ),
            Kind::Mpmc => Rx::Mpmc(mpmc::Consumer::attach(open_ring(dir, name)).unwrap()),
            Kind::MpmcBytes => {
                Rx::MpmcBytes(mpmc::BytesConsumer::attach(open_ring(dir, name)).unwrap())
            }
            Kind::Broadcast => Rx::Broadcast(
                broadcast::Subscriber::builder(name)
                    .dir(dir)
                    .wait_for(WAIT)
                    .open()
                    .unwrap(),
            ),
            Kind::BroadcastBytes => Rx::BroadcastBytes(
                broadcast::BytesSubscriber::builder(name)
                    .dir(dir)
                    .wait_for(WAIT)
                    .open()
                    .unwrap(),
            ),
        }
    }

    /// Takes the next message, waiting at most `timeout`; `None` if none
    /// came.
    fn pop(&mut self, timeout: Duration) -> Option<u64> {
        let t = Some(timeout);
        let mut buf = Vec::new();
        let word = |buf: &[u8]| u64::from_le_bytes(buf.try_into().expect("an 8-byte message"));
        let r = match self {
            Rx::Spsc(rx) => rx.pop_timeout(t),
            Rx::Frames(rx) => rx.pop_timeout(&mut buf, t).map(|()| word(&buf)),
            Rx::Mpmc(rx) => rx.pop_timeout(t),
            Rx::MpmcBytes(rx) => rx.pop_timeout(&mut buf, t).map(|()| word(&buf)),
            Rx::Broadcast(rx) => match rx.pop_timeout(t) {
                Ok((_, v)) => Ok(v),
                Err(broadcast::PopError::Timeout) => Err(PopError::Timeout),
                Err(e) => panic!("pop: {e}"),
            },
            Rx::BroadcastBytes(rx) => match rx.pop_into_timeout(&mut buf, t) {
                Ok(_) => Ok(word(&buf)),
                Err(broadcast::PopError::Timeout) => Err(PopError::Timeout),
                Err(e) => panic!("pop: {e}"),
            },
        };
        match r {
            Ok(v) => Some(v),
            Err(PopError::Timeout) => None,
            Err(e) => panic!("pop: {e}"),
        }
    }
}

#[test]
fn readiness_producer_child() {
    let Some(role) = child_role() else { return };
    let dir = env_str("C_DIR");
    let name = env_str("C_NAME");
    let kind = Kind::from_name(&env_str("C_KIND"));
    let mut rx = Rx::open(kind, &dir, &name);
    println!("ready");
    match role.as_str() {
        // Pops on command: "pop" takes one message (printing it), "drain"
        // takes every message there is (printing how many); leaves at the
        // end of its input.
        "popper" => {
            let mut next = 0u64;
            for line in std::io::stdin().lines() {
                match line.unwrap().trim() {
                    "pop" => {
                        let v = rx.pop(WAIT).expect("a message to pop");
                        assert_eq!(v, next, "out of order");
                        next += 1;
                        println!("popped {v}");
                    }
                    "drain" => {
                        let mut n = 0;
                        while let Some(v) = rx.pop(Duration::ZERO) {
                            assert_eq!(v, next, "out of order");
                            next += 1;
                            n += 1;
                        }
                        println!("drained {n}");
                    }
                    other => panic!("unknown command {other}"),
                }
            }
        }
        // Takes C_COUNT messages with blocking pops, checking that they
        // are 0, 1, ... in order.
        "verifier" => {
            let count: u64 = env_str("C_COUNT").parse().unwrap();
            for i in 0..count {
                let v = rx.pop(GUARD).expect("the producer stalled");
                assert_eq!(v, i, "lost, repeated or out of order");
            }
            println!("verified {count}");
        }
        // Never pops: keeps the ring full for an idle producer.
        "idle" => {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        }
        other => panic!("unknown role {other}"),
    }
    drop(rx);
    std::process::exit(0);
}

/// A child consumer, with its stdin (commands) and stdout (reports).
struct Child {
    guard: ChildGuard,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Child {
    /// Spawns `role` on the ring `r` of `kind` in `dir`; returns once it
    /// is attached.
    fn spawn(role: &str, kind: Kind, dir: &TestDir, extra: &[(&str, String)]) -> Child {
        let mut env = vec![
            ("C_DIR", dir.path.display().to_string()),
            ("C_NAME", "r".to_string()),
            ("C_KIND", kind.name().to_string()),
        ];
        env.extend(extra.iter().cloned());
        let mut guard = ChildGuard(Some(
            spawn_self("readiness_producer_child", role, &env)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        ));
        let stdin = guard.child().stdin.take();
        let stdout = BufReader::new(guard.child().stdout.take().unwrap());
        let mut child = Child {
            guard,
            stdin,
            stdout,
        };
        child.line("ready");
        child
    }

    /// The child's next line that starts with `prefix`.
    fn line(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("read child stdout");
            assert!(n > 0, "the child ended before printing {prefix:?}");
            if line.starts_with(prefix) {
                return line.trim_end().to_string();
            }
        }
    }

    fn command(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("child stdin");
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes its input and waits for it to exit successfully.
    fn finish(mut self) {
        drop(self.stdin.take());
        assert!(self.guard.wait_within(GUARD).success(), "child failed");
    }
}

/// Waits at most `timeout` for `ready` to be readable (poll(2)).
fn readable(ready: &Readiness, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: ready.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up: a timeout never ends before the deadline.
        let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd on our stack, count 1; the fd is open
        // (owned by `ready`, borrowed for the call).
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        match rc {
            0 if Instant::now() >= deadline => return false,
            0 => {}
            n if n > 0 => return pfd.revents & libc::POLLIN != 0,
            _ => {
                let e = std::io::Error::last_os_error();
                assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
            }
        }
    }
}

/// A full ring's producer fd: quiet while the consumer process idles,
/// readable once it pops; and once it fired, the consumer's further pops
/// make no wake-up (nobody waits any more).
fn quiet_until_a_consumer_process_pops(kind: Kind) {
    let dir = TestDir::new(&format!("rp-quiet-{}", kind.name()));
    let mut tx = Tx::create(kind, &dir);
    // The consumer attaches first (a broadcast publisher with no
    // subscriber never fills).
    let mut child = Child::spawn("popper", kind, &dir, &[]);
    let filled = tx.fill();
    let ready = Readiness::new().unwrap();
    tx.arm(&ready);
    assert!(
        !readable(&ready, QUIET),
        "{kind:?}: signalled while the ring is full and nobody pops"
    );
    assert!(!ready.clear().unwrap());
    if let Some((wakeups, waiters)) = tx.space_counters() {
        assert_eq!(waiters, 1, "{kind:?}: armed: one registered waiter");
        assert_eq!(wakeups, 0, "{kind:?}: nobody popped, nobody woke");
    }
    child.command("pop");
    assert!(
        readable(&ready, GUARD),
        "{kind:?}: not readable after a pop in another process"
    );
    assert_eq!(child.line("popped"), "popped 0");
    assert!(ready.clear().unwrap());
    // Room for one more; then full again.
    assert!(tx.try_push(filled), "{kind:?}: no room after the signal");
    let before = tx.space_counters();
    if let Some((_, waiters)) = before {
        assert_eq!(waiters, 0, "{kind:?}: fired: registration undone");
    }
    // Not armed: popping everything wakes nobody and signals nothing.
    child.command("drain");
    assert_eq!(child.line("drained"), format!("drained {filled}"));
    if let (Some((w0, _)), Some((w1, _))) = (before, tx.space_counters()) {
        assert_eq!(w0, w1, "{kind:?}: pops woke a producer that was not armed");
    }
    assert!(
        !ready.clear().unwrap(),
        "{kind:?}: signalled while not armed"
    );
    // Armed on a ring with room: signalled at once.
    tx.arm(&ready);
    assert!(
        ready.clear().unwrap(),
        "{kind:?}: armed with room, not signalled"
    );
    child.finish();
    drop(tx);
    dir.finish();
}

/// One test per kind, each calling [`quiet_until_a_consumer_process_pops`].
macro_rules! quiet_tests {
    ($($test:ident: $kind:ident,)*) => {$(
        #[test]
        fn $test() {
            if child_role().is_none() {
                quiet_until_a_consumer_process_pops(Kind::$kind);
            }
        }
    )*};
}

quiet_tests! {
    spsc_producer_fd_is_quiet_until_a_consumer_process_pops: Spsc,
    frames_producer_fd_is_quiet_until_a_consumer_process_pops: Frames,
    mpmc_producer_fd_is_quiet_until_a_consumer_process_pops: Mpmc,
    mpmc_bytes_producer_fd_is_quiet_until_a_consumer_process_pops: MpmcBytes,
    broadcast_publisher_fd_is_quiet_until_a_subscriber_process_pops: Broadcast,
    broadcast_bytes_publisher_fd_is_quiet_until_a_subscriber_process_pops: BroadcastBytes,
}

#[test]
fn an_event_loop_pushes_100k_messages_in_order_to_a_consumer_process() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("rp-loop");
    let mut tx = spsc::Producer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(64)
        .create()
        .unwrap();
    let child = Child::spawn(
        "verifier",
        Kind::Spsc,
        &dir,
        &[("C_COUNT", COUNT.to_string())],
    );
    let ready = Readiness::new().unwrap();
    let (mut next, mut waits) = (0u64, 0u64);
    let t0 = Instant::now();
    loop {
        // Push until full (or done).
        while next < COUNT {
            match tx.try_push(next) {
                Ok(()) => next += 1,
                Err(TryPushError::Full(_)) => break,
                Err(e) => panic!("push: {e}"),
            }
        }
        if next == COUNT {
            break;
        }
        // Full: arm, wait on the fd, clear it.
        ready.arm_producer(&mut tx);
        assert!(readable(&ready, GUARD), "the fd hung at {next}");
        ready.clear().unwrap();
        waits += 1;
    }
    let pushed = t0.elapsed();
    let Child {
        mut guard,
        stdin,
        mut stdout,
    } = child;
    drop(stdin);
    let mut report = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut report).unwrap();
    assert!(guard.wait_within(GUARD).success(), "verifier failed");
    assert!(
        report.contains(&format!("verified {COUNT}")),
        "verifier said: {report}"
    );
    let done = t0.elapsed();
    let space = tx.wait_counters().1;
    eprintln!(
        "event loop: pushed {COUNT} in {pushed:?} (verified after {done:?}); \
         {waits} waits on the fd; {} wake-ups by the consumer",
        space.wakeups
    );
    // A consumer wakes the producer only while it is armed, and it can
    // take at most a ring's worth of messages before the producer's fd
    // fires: far fewer wake-ups than messages unless each wait moved one.
    assert!(space.wakeups <= waits * 64, "{} wake-ups", space.wakeups);
    assert_eq!(space.waiters, 0, "a registration outlived the loop");
    drop(tx);
    dir.finish();
}

#[test]
fn an_idle_armed_producer_fd_costs_under_one_percent_of_a_core() {
    if let Some(role) = child_role() {
        if role == "idle-producer" {
            idle_producer();
        }
        return;
    }
    let dir = TestDir::new("rp-idle");
    // The consumer stays attached and never pops.
    let rx = spsc::Consumer::<u64>::builder("r")
        .dir(&dir.path)
        .capacity(16)
        .create()
        .unwrap();
    let env = [("C_DIR", dir.path.display().to_string())];
    let child = ChildGuard(Some(
        spawn_self(
            "an_idle_armed_producer_fd_costs_under_one_percent_of_a_core",
            "idle-producer",
            &env,
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap(),
    ));
    let report = Report::find(&child.output_within(GUARD), "idle: ");
    let field = |key: &str| report.field(key);
    report.assert_idle(Duration::from_secs(2), "an idle armed producer");
    assert_eq!(field("readable="), "false", "the idle producer's fd fired");
    assert_eq!(
        field("waiters="),
        "1",
        "the armed ring lost its registration"
    );
    // Nobody popped, so nobody woke anybody.
    assert_eq!(rx.wait_counters().1.wakeups, 0);
    drop(rx);
    dir.finish();
}

/// The child's side: fills the ring, arms a fd on it, and watches the fd
/// with poll(2) for 2 s; reports its CPU time and whether the fd fired.
fn idle_producer() {
    let dir = env_str("C_DIR");
    let mut tx = spsc::Producer::<u64>::builder("r")
        .dir(&dir)
        .wait_for(WAIT)
        .open()
        .unwrap();
    let mut i = 0;
    while tx.try_push(i).is_ok() {
        i += 1;
    }
    let ready = Readiness::new().unwrap();
    // Warm up: the waker thread exists before the measured window.
    ready.arm_producer(&mut tx);
    assert!(
        !readable(&ready, Duration::from_millis(50)),
        "fired at once"
    );
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let fired = readable(&ready, Duration::from_secs(2));
    let (cpu, wall) = (process_cpu() - cpu0, t0.elapsed());
    let waiters = tx.wait_counters().1.waiters;
    println!(
        "idle: cpu_ns={} wall_ns={} readable={fired} waiters={waiters}",
        cpu.as_nanos(),
        wall.as_nanos()
    );
    // Withdraw the registration first: the producer's detach wakes the
    // space line's sleepers, and there would still be one.
    drop(ready);
    drop(tx);
    std::process::exit(0);
}

#[test]
fn a_frame_producer_holding_a_large_frame_is_not_signalled_while_it_does_not_fit() {
    if child_role().is_some() {
        return;
    }
    // 256 bytes: sixteen 8-byte frames (16 bytes each with the header).
    let (mut tx, mut rx) = frames::anonymous(256).unwrap();
    let mut pushed = 0u64;
    while tx.try_push(&pushed.to_le_bytes()).is_ok() {
        pushed += 1;
    }
    let large = [7u8; 100];
    let ready = Readiness::new().unwrap();
    let mut buf = Vec::new();
    rx.try_pop(&mut buf).unwrap();
    for popped in 1..=3 {
        // Each pop frees 16 bytes: never enough for the 100-byte frame.
        assert_eq!(tx.try_push(&large), Err(FramePushError::Full));
        // Armed after Full: not signalled (a loop would spin), but the
        // consumer's next pop signals it.
        ready.arm_producer(&mut tx);
        assert!(!ready.clear().unwrap(), "signalled after pop {popped}");
        rx.try_pop(&mut buf).unwrap();
        assert!(readable(&ready, GUARD), "a pop did not signal the armed fd");
        assert!(ready.clear().unwrap());
    }
    // Once the consumer has taken everything, the largest frame fits and
    // arming signals at once.
    while rx.try_pop(&mut buf).is_ok() {}
    ready.arm_producer(&mut tx);
    assert!(ready.clear().unwrap(), "an empty ring did not signal");
    assert_eq!(tx.try_push(&large), Ok(()));
}
