//! A hostile peer truncates a named ring's file under attached processes.
//! Without protection, their next access to a lost page is a SIGBUS that
//! kills them. The victims (child processes) must instead end with
//! `Corrupted` naming the truncation, from non-blocking and blocking
//! calls, streaming or idle, and exit normally; a SIGBUS outside any ring
//! mapping must still kill the process (or reach the handler installed
//! before shmring's).

mod common;

use std::io::{BufRead, Write};
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::*;
use shmring::ring::{FramePushError, PopError, PushError, TryPopError, TryPushError};
use shmring::{Layout, SegmentOptions, frames, mpmc, spsc};

/// How long a victim waits for the ring its parent creates.
const OPEN_WAIT: Duration = Duration::from_secs(20);
/// A victim's own bound: it reports "timeout" if no verdict came by then.
const VICTIM_LIMIT: Duration = Duration::from_secs(15);
/// The parent's bound on each step it waits for (a child's line or exit).
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// What the message of a `Corrupted` caused by a truncation must name.
const NAMES_TRUNCATION: &str = "truncated the ring's file";

/// Capacities: large enough that a truncation to a few KiB loses most of
/// the data area.
const SLOTS: u64 = 4096;
const FRAME_BYTES: u64 = 1 << 16;

fn layout_of(kind: &str) -> Layout {
    match kind {
        "spsc" => spsc::layout::<u64>(SLOTS).unwrap(),
        "mpmc" => mpmc::layout::<u64>(SLOTS).unwrap(),
        _ => frames::layout(FRAME_BYTES).unwrap(),
    }
}

// ---------------------------------------------------------------------------
// The victims (child processes)
// ---------------------------------------------------------------------------

/// How a victim's run ended.
enum End {
    Corrupted(String),
    Disconnected,
    Timeout,
}

/// One operation's outcome, across kinds and directions.
enum Step {
    Progress,
    Idle,
    End(End),
}

fn pop_step<T>(r: Result<T, TryPopError>) -> Step {
    match r {
        Ok(_) => Step::Progress,
        Err(TryPopError::Empty) => Step::Idle,
        Err(TryPopError::Disconnected) => Step::End(End::Disconnected),
        Err(TryPopError::Corrupted(w)) => Step::End(End::Corrupted(w)),
    }
}

fn blocking_pop_step<T>(r: Result<T, PopError>) -> Step {
    match r {
        Ok(_) => Step::Progress,
        Err(PopError::Timeout) => Step::Idle,
        Err(PopError::Disconnected) => Step::End(End::Disconnected),
        Err(PopError::Corrupted(w)) => Step::End(End::Corrupted(w)),
    }
}

fn push_step<T, V>(r: Result<T, TryPushError<V>>) -> Step {
    match r {
        Ok(_) => Step::Progress,
        Err(TryPushError::Full(_)) => Step::Idle,
        Err(TryPushError::Disconnected(_)) => Step::End(End::Disconnected),
        Err(TryPushError::Corrupted(_, w)) => Step::End(End::Corrupted(w)),
    }
}

fn blocking_push_step<T, V>(r: Result<T, PushError<V>>) -> Step {
    match r {
        Ok(_) => Step::Progress,
        Err(PushError::Timeout(_)) => Step::Idle,
        Err(PushError::Disconnected(_)) => Step::End(End::Disconnected),
        Err(PushError::Corrupted(_, w)) => Step::End(End::Corrupted(w)),
    }
}

fn frame_push_step(r: Result<(), FramePushError>) -> Step {
    match r {
        Ok(()) => Step::Progress,
        Err(FramePushError::Full | FramePushError::Timeout) => Step::Idle,
        Err(FramePushError::Disconnected) => Step::End(End::Disconnected),
        Err(FramePushError::Corrupted(w)) => Step::End(End::Corrupted(w)),
        Err(e) => panic!("{e}"),
    }
}

/// A victim's handle, whatever its kind and side.
enum Handle {
    SpscRx(spsc::Consumer<u64>),
    SpscTx(spsc::Producer<u64>),
    FramesRx(frames::Consumer),
    FramesTx(frames::Producer),
    MpmcRx(mpmc::Consumer<u64>),
    MpmcTx(mpmc::Producer<u64>),
}

impl Handle {
    fn open(kind: &str, side: &str, dir: &str, name: &str) -> Handle {
        macro_rules! open {
            ($t:ty) => {
                <$t>::builder(name)
                    .dir(dir)
                    .wait_for(OPEN_WAIT)
                    .open()
                    .unwrap()
            };
        }
        match (kind, side) {
            ("spsc", "consumer") => Handle::SpscRx(open!(spsc::Consumer<u64>)),
            ("spsc", "producer") => Handle::SpscTx(open!(spsc::Producer<u64>)),
            ("frames", "consumer") => Handle::FramesRx(open!(frames::Consumer)),
            ("frames", "producer") => Handle::FramesTx(open!(frames::Producer)),
            ("mpmc", "consumer") => Handle::MpmcRx(open!(mpmc::Consumer<u64>)),
            ("mpmc", "producer") => Handle::MpmcTx(open!(mpmc::Producer<u64>)),
            other => panic!("unknown victim {other:?}"),
        }
    }

    /// One non-blocking operation; `op` rotates through the kind's calls.
    fn try_op(&mut self, op: u64, buf: &mut Vec<u8>) -> Step {
        let mut out = [0u64; 7];
        match self {
            Handle::SpscRx(rx) => match op % 3 {
                0 => pop_step(rx.try_pop()),
                1 => pop_step(rx.pop_into(&mut out)),
                _ => pop_step(rx.read_chunk(5).map(|c| c.as_slice().iter().sum::<u64>())),
            },
            Handle::SpscTx(tx) => match op % 3 {
                0 => push_step(tx.try_push(op)),
                1 => push_step(tx.push_slice(&[op, op + 1, op + 2])),
                _ => push_step(tx.write_chunk(4).map(|mut c| {
                    c.as_mut_slice().fill(op);
                    let n = c.len();
                    c.commit(n);
                })),
            },
            Handle::FramesRx(rx) => match op % 2 {
                0 => pop_step(rx.try_pop(buf)),
                _ => pop_step(rx.read_chunk().map(|f| f.len())),
            },
            Handle::FramesTx(tx) => match op % 2 {
                0 => frame_push_step(tx.try_push(&[7u8; 300])),
                _ => frame_push_step(tx.write_chunk(100).map(|mut c| {
                    c.fill(9);
                    c.commit();
                })),
            },
            Handle::MpmcRx(rx) => match op % 3 {
                0 => pop_step(rx.try_pop()),
                1 => pop_step(rx.pop_into(&mut out)),
                _ => pop_step(rx.read_chunk().map(|c| *c.get())),
            },
            Handle::MpmcTx(tx) => match op % 3 {
                0 => push_step(tx.try_push(op)),
                1 => push_step(tx.push_slice(&[op, op + 1, op + 2])),
                _ => push_step(tx.write_chunk().map(|mut c| {
                    *c.value_mut() = op;
                    c.commit();
                })),
            },
        }
    }

    /// One blocking operation without a timeout: only a verdict or
    /// progress ends it.
    fn blocking_op(&mut self, op: u64, buf: &mut Vec<u8>) -> Step {
        match self {
            Handle::SpscRx(rx) => blocking_pop_step(rx.pop()),
            Handle::SpscTx(tx) => blocking_push_step(tx.push(op)),
            Handle::FramesRx(rx) => blocking_pop_step(rx.pop(buf)),
            Handle::FramesTx(tx) => frame_push_step(tx.push(&[5u8; 200])),
            Handle::MpmcRx(rx) => blocking_pop_step(rx.pop()),
            Handle::MpmcTx(tx) => blocking_push_step(tx.push(op)),
        }
    }

    fn is_poisoned(&self) -> bool {
        match self {
            Handle::SpscRx(h) => h.segment().is_poisoned(),
            Handle::SpscTx(h) => h.segment().is_poisoned(),
            Handle::FramesRx(h) => h.segment().is_poisoned(),
            Handle::FramesTx(h) => h.segment().is_poisoned(),
            Handle::MpmcRx(h) => h.segment().is_poisoned(),
            Handle::MpmcTx(h) => h.segment().is_poisoned(),
        }
    }
}

/// A victim: `T_ROLE` is `kind-side-mode`, mode `try` (non-blocking calls),
/// `block` (blocking calls without a timeout) or `fill` (a producer that
/// fills the ring with non-blocking pushes, then blocks in `push`).
/// Prints "ready" once attached (and, for `fill`, once full), then
/// "verdict ..." when its run ends, then waits for its stdin to close
/// before it detaches, so a peer never sees it leave before the truncation
/// reached it.
fn victim(role: &str) {
    let dir = env_str("T_DIR");
    let name = env_str("T_NAME");
    let mut parts = role.split('-');
    let (Some(kind), Some(side), Some(mode)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("bad role {role}");
    };
    let mut handle = Handle::open(kind, side, &dir, &name);
    let mut buf = Vec::new();
    let mut op = 0u64;
    if mode == "fill" {
        let deadline = Instant::now() + VICTIM_LIMIT;
        while !matches!(handle.try_op(0, &mut buf), Step::Idle) {
            assert!(Instant::now() < deadline, "never filled the ring");
        }
    }
    println!("ready");
    let deadline = Instant::now() + VICTIM_LIMIT;
    let mut progress = 0u64;
    let end = loop {
        if Instant::now() >= deadline {
            break End::Timeout;
        }
        op += 1;
        let step = match mode {
            "try" => handle.try_op(op, &mut buf),
            _ => handle.blocking_op(op, &mut buf),
        };
        match step {
            Step::Progress => progress += 1,
            Step::Idle => std::thread::yield_now(),
            Step::End(end) => break end,
        }
    };
    let verdict = match end {
        End::Corrupted(w) => format!("corrupted: {w}"),
        End::Disconnected => "disconnected".to_string(),
        End::Timeout => "timeout".to_string(),
    };
    println!(
        "verdict {verdict} (after {progress} operations; poisoned {})",
        handle.is_poisoned()
    );
    std::io::stdout().flush().unwrap();
    // Every later call reports the loss too.
    if handle.is_poisoned() {
        for op in 0..10 {
            assert!(
                matches!(handle.try_op(op, &mut buf), Step::End(End::Corrupted(_))),
                "a call after the verdict did not report Corrupted"
            );
        }
    }
    let _ = std::io::stdin().lines().count();
    drop(handle);
    std::process::exit(0);
}

// ---------------------------------------------------------------------------
// The hostile parent
// ---------------------------------------------------------------------------

/// A running victim: its stdin (closed to release it) and its stdout lines.
struct Victim {
    name: String,
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Victim {
    fn spawn(role: &str, dir: &TestDir, ring: &str) -> Victim {
        let mut child = ChildGuard(Some(
            spawn_self(
                "truncate_child",
                role,
                &[
                    ("T_DIR", dir.path.display().to_string()),
                    ("T_NAME", ring.to_string()),
                ],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        ));
        let stdin = child.child().stdin.take();
        let stdout = child.child().stdout.take().unwrap();
        let stderr = child.child().stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx2.send(format!("stderr: {line}")).is_err() {
                    break;
                }
            }
        });
        Victim {
            name: role.to_string(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line starting with `prefix`.
    fn expect_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: no {prefix:?} line within {STEP_LIMIT:?}: {:?}",
                        self.name, self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait_within(STEP_LIMIT);
                    panic!(
                        "{}: exited ({status:?}) before printing {prefix:?}: {:?}",
                        self.name, self.seen
                    )
                }
            }
        }
    }

    /// The rest of the output, up to the end of both pipes (the child has
    /// exited).
    fn drain(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(STEP_LIMIT) {
            rest.push(line);
        }
        rest
    }

    /// Releases the victim and checks that it exits normally.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait_within(STEP_LIMIT);
        let rest = self.drain();
        assert!(
            status.success(),
            "{} did not exit normally ({status:?}): {:?} {rest:?}",
            self.name,
            self.seen
        );
    }
}

/// The parent's side: creates the ring, starts `roles` as victims, lets
/// them run, truncates the file to `size` bytes, and checks that every
/// victim reports `Corrupted` naming the truncation and exits normally.
fn truncate_under(kind: &str, roles: &[&str], size: u64) {
    let dir = TestDir::new("trunc");
    let layout = layout_of(kind);
    let spec = match kind {
        "frames" => shmring::raw::bytes_spec(&layout),
        _ => shmring::raw::typed_spec::<u64>(&layout),
    };
    let seg = SegmentOptions::new()
        .dir(&dir.path)
        .create("r", &spec)
        .unwrap();
    let mut victims: Vec<Victim> = roles
        .iter()
        .map(|role| Victim::spawn(role, &dir, "r"))
        .collect();
    for v in &mut victims {
        v.expect_line("ready");
    }
    // Let traffic flow (or the idle ones settle into their waits).
    std::thread::sleep(Duration::from_millis(100));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file("r"))
        .unwrap();
    file.set_len(size).unwrap();
    let truncated_at = Instant::now();
    for v in &mut victims {
        let verdict = v.expect_line("verdict");
        assert!(
            verdict.contains("corrupted") && verdict.contains(NAMES_TRUNCATION),
            "{} after truncation to {size} bytes: {verdict}",
            v.name
        );
        assert!(verdict.contains("poisoned true"), "{}: {verdict}", v.name);
    }
    let took = truncated_at.elapsed();
    for v in victims {
        v.finish();
    }
    eprintln!("{kind} {roles:?} truncated to {size}: all Corrupted within {took:?}");
    drop(file);
    drop(seg);
    dir.finish();
}

/// A few KiB: the header, the control lines and the first data page stay,
/// the rest of the data area is lost (the subtle case: a side may keep
/// working on surviving pages for a while).
fn a_few_kib(kind: &str) -> u64 {
    layout_of(kind).data_offset() + 4096
}

fn streaming(kind: &str) {
    // To nothing, to a few KiB in the middle of a page, and to a page
    // boundary.
    for size in [0, a_few_kib(kind), 8192] {
        for mode in ["try", "block"] {
            let consumer = format!("{kind}-consumer-{mode}");
            let producer = format!("{kind}-producer-{mode}");
            truncate_under(kind, &[&consumer, &producer], size);
        }
    }
}

fn idle(kind: &str) {
    // A consumer waiting on an empty ring, blocking or polling, with no
    // producer; a producer blocked on a full ring with no consumer.
    truncate_under(kind, &[&format!("{kind}-consumer-block")], 0);
    truncate_under(kind, &[&format!("{kind}-consumer-try")], 0);
    truncate_under(kind, &[&format!("{kind}-producer-fill")], 0);
    // Truncated to a few KiB, an idle side may touch no lost page at all:
    // its idle checks of the file's size catch it.
    for role in ["consumer-block", "consumer-try", "producer-fill"] {
        truncate_under(kind, &[&format!("{kind}-{role}")], a_few_kib(kind));
    }
}

#[test]
fn truncate_child() {
    let Some(role) = child_role() else { return };
    if let Some(how) = role.strip_prefix("foreign-") {
        foreign_fault(how);
    } else {
        victim(&role);
    }
}

#[test]
fn spsc_sides_report_a_truncation_while_streaming() {
    if child_role().is_some() {
        return;
    }
    streaming("spsc");
}

#[test]
fn frame_sides_report_a_truncation_while_streaming() {
    if child_role().is_some() {
        return;
    }
    streaming("frames");
}

#[test]
fn mpmc_sides_report_a_truncation_while_streaming() {
    if child_role().is_some() {
        return;
    }
    streaming("mpmc");
}

#[test]
fn idle_sides_report_a_truncation() {
    if child_role().is_some() {
        return;
    }
    for kind in ["spsc", "frames", "mpmc"] {
        idle(kind);
    }
}

// ---------------------------------------------------------------------------
// A SIGBUS that is not ours
// ---------------------------------------------------------------------------

/// Exit status of the handler installed before shmring's in the `custom`
/// case.
const CUSTOM_EXIT: i32 = 42;

extern "C" fn custom_handler(_sig: libc::c_int) {
    // SAFETY (test): _exit is async-signal-safe.
    unsafe { libc::_exit(CUSTOM_EXIT) };
}

/// A child that first survives a truncation of its own ring, then touches
/// a truncated mapping that is not a ring. `how` says what was installed
/// before shmring's handler: `std` (Rust's own, as in every Rust program),
/// `dfl` (the default) or `custom` (a handler that exits with
/// [`CUSTOM_EXIT`]).
fn foreign_fault(how: &str) {
    let dir = env_str("T_DIR");
    // No core file from the expected crash.
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0).unwrap();
    // SAFETY (test): zeroed sigaction is SIG_DFL with an empty mask.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    match how {
        "std" => {}
        "dfl" => {
            action.sa_sigaction = libc::SIG_DFL;
            // SAFETY (test): installs the default disposition.
            assert_eq!(
                unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) },
                0
            );
        }
        "custom" => {
            let handler: extern "C" fn(libc::c_int) = custom_handler;
            action.sa_sigaction = handler as usize;
            // SAFETY (test): installs an async-signal-safe handler.
            assert_eq!(
                unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) },
                0
            );
        }
        other => panic!("unknown case {other}"),
    }
    // Our own ring, truncated under our consumer: survived.
    let mut rx = spsc::Consumer::<u64>::builder("ring")
        .dir(&dir)
        .capacity(SLOTS)
        .create()
        .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("{dir}/ring"))
        .unwrap()
        .set_len(0)
        .unwrap();
    match rx.try_pop() {
        Err(TryPopError::Corrupted(w)) => assert!(w.contains(NAMES_TRUNCATION), "{w}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert!(rx.segment().is_poisoned());
    println!("survived");
    std::io::stdout().flush().unwrap();
    // A mapping that is not a ring, truncated: the fault is not ours.
    let path = format!("{dir}/plain");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    file.set_len(8192).unwrap();
    // SAFETY (test): a private file of 8192 bytes; the access below faults
    // on purpose after the truncation.
    let map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
    file.set_len(0).unwrap();
    // SAFETY (test): in bounds of the mapping; the page behind it is gone,
    // so this raises SIGBUS.
    let byte = unsafe { std::ptr::read_volatile(map.as_ptr().add(4096)) };
    println!("not killed: read {byte}");
    std::process::exit(0);
}

/// Runs a `foreign_fault` child; returns its status and its remaining
/// output (stdout, and stderr lines prefixed "stderr: ").
fn run_foreign(how: &str) -> (std::process::ExitStatus, Vec<String>) {
    let dir = TestDir::new("foreign");
    let mut victim = Victim::spawn(&format!("foreign-{how}"), &dir, "ring");
    victim.expect_line("survived");
    drop(victim.stdin.take());
    let status = victim.child.wait_within(STEP_LIMIT);
    let rest = victim.drain();
    assert!(
        !rest.iter().any(|l| l.starts_with("not killed")),
        "{how}: the foreign fault was swallowed: {rest:?}"
    );
    // The child died without cleaning up: its ring and file are left for
    // `TestDir`'s drop.
    drop(dir);
    (status, rest)
}

#[test]
fn a_sigbus_outside_any_ring_still_kills() {
    use std::os::unix::process::ExitStatusExt;
    if child_role().is_some() {
        return;
    }
    // With the default disposition before ours: death by SIGBUS.
    let (status, rest) = run_foreign("dfl");
    assert_eq!(
        status.signal(),
        Some(libc::SIGBUS),
        "dfl: expected death by SIGBUS, got {status:?}: {rest:?}"
    );
    // With whatever the process had from startup: Rust's handler, which
    // restores the default, so death by SIGBUS; under AddressSanitizer
    // (scripts/asan.sh) its handler, which reports the fault and exits.
    let (status, rest) = run_foreign("std");
    let asan_report = rest.iter().any(|l| l.contains("AddressSanitizer"));
    assert!(
        status.signal() == Some(libc::SIGBUS) || (asan_report && !status.success()),
        "std: expected death by SIGBUS, got {status:?}: {rest:?}"
    );
}

#[test]
fn a_sigbus_outside_any_ring_reaches_the_previous_handler() {
    if child_role().is_some() {
        return;
    }
    let (status, rest) = run_foreign("custom");
    assert_eq!(status.code(), Some(CUSTOM_EXIT), "got {status:?}: {rest:?}");
}
