//! `shmring recv` killed with SIGKILL at random moments on a persistent
//! ring, then restarted, appending to the same output file: the output is
//! exactly the input (frame ring), or each line exactly once in order per
//! producer (MPMC ring with two producers). A regular file as output lets
//! each `recv` finish what its killed predecessor was writing (README,
//! "The command-line tool").

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Kills per test, as issue 14 asks.
const KILLS: usize = 30;

/// Creates the persistent ring `r` with `args` (after `create r`).
fn create(dir: &TestDir, args: &[&str]) {
    let mut all = vec!["create", "r"];
    all.extend_from_slice(args);
    let (code, _, err) = shmring(&dir.path, &all);
    assert_eq!(code, 0, "{err}");
}

/// Starts `shmring send r` and a thread feeding it `prefix1` ..
/// `prefix{n}`, one per line, then closing its stdin.
fn sender(
    dir: &TestDir,
    prefix: &'static str,
    n: u64,
) -> (ChildGuard, std::thread::JoinHandle<()>) {
    let mut child = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["send", "r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut stdin);
        for i in 1..=n {
            if writeln!(w, "{prefix}{i}").is_err() {
                return;
            }
        }
    });
    (ChildGuard(Some(child)), feeder)
}

/// Starts `shmring recv r extra...` appending its stdout to `out`.
fn receiver(dir: &TestDir, out: &Path, extra: &[&str]) -> ChildGuard {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
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
}

fn file_len(path: &Path) -> usize {
    std::fs::metadata(path)
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

/// Runs `KILLS` receivers, each killed after a random 0-20 ms, then one
/// that drains the rest once the senders have finished. Returns the
/// output of each run (a slice of the output file).
fn kill_and_restart(
    dir: &TestDir,
    out: &Path,
    senders: Vec<(ChildGuard, std::thread::JoinHandle<()>)>,
) -> Vec<Vec<u8>> {
    let mut ends = vec![0];
    for _ in 0..KILLS {
        let mut rx = receiver(dir, out, &[]);
        std::thread::sleep(Duration::from_micros(rand::random_range(0..20_000)));
        rx.kill9();
        ends.push(file_len(out));
    }
    // The last receiver drains the rest. It exits 0 once it has seen a
    // producer leave with the ring drained; if every sender finished
    // before it looked, it waits for a producer until its idle timeout
    // (exit 3). Either way it has taken everything by then.
    let last = receiver(dir, out, &["--timeout", "20000"]);
    for (mut tx, feeder) in senders {
        feeder.join().unwrap();
        let status = tx.wait_within(Duration::from_secs(120));
        assert!(status.success(), "send: {status:?}");
    }
    let done = last.output_within(Duration::from_secs(120));
    assert!(
        matches!(done.status.code(), Some(0 | 3)),
        "last recv: {:?} {}",
        done.status,
        String::from_utf8_lossy(&done.stderr)
    );
    ends.push(file_len(out));
    let all = std::fs::read(out).unwrap();
    ends.windows(2).map(|w| all[w[0]..w[1]].to_vec()).collect()
}

/// Splits one run's output into its complete lines and what follows the
/// last newline (part of a line whose write a kill cut; the next run
/// finishes it).
fn split_run(run: &[u8]) -> (Vec<&str>, &[u8]) {
    let cut = run.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&run[..cut]).expect("complete lines are UTF-8");
    (text.lines().collect(), &run[cut..])
}

#[test]
fn recv_killed_30_times_on_a_persistent_frame_ring_loses_nothing() {
    const N: u64 = 300_000;
    let dir = TestDir::new("recvkill-frames");
    // 64 slots of 64 B: a 4 KiB ring, so the sender stays ahead and every
    // kill lands mid-stream.
    create(&dir, &["--capacity", "64"]);
    let out = dir.file("out.txt");
    let tx = sender(&dir, "", N);
    let runs = kill_and_restart(&dir, &out, vec![tx]);
    // Exactly the input: each run finishes what a killed one was writing
    // (its receipt in the ring says where), so nothing is lost and nothing
    // repeats, even a line cut in the middle.
    let all = std::fs::read(&out).unwrap();
    let expected: Vec<u8> = (1..=N)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    if all != expected {
        let at = all.iter().zip(&expected).position(|(a, b)| a != b);
        let around = |v: &[u8]| {
            let i = at.unwrap_or(v.len().min(expected.len()));
            String::from_utf8_lossy(&v[i.saturating_sub(40)..(i + 40).min(v.len())]).into_owned()
        };
        panic!(
            "output differs from the input at byte {at:?} ({} bytes, expected {}): {:?} instead of {:?}; run lengths: {:?}",
            all.len(),
            expected.len(),
            around(&all),
            around(&expected),
            runs.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "{KILLS} kills, {} run(s) cut mid-line, output exact",
        runs[..KILLS]
            .iter()
            .filter(|r| !r.is_empty() && r.last() != Some(&b'\n'))
            .count()
    );
    std::fs::remove_file(&out).unwrap();
    assert_eq!(shmring(&dir.path, &["rm", "r"]).0, 0);
    dir.finish();
}

/// What the MPMC runs show, per producer prefix.
#[derive(Default, Debug)]
struct MpmcTally {
    /// Lines missing from the output.
    missing: usize,
    /// Lines that arrived after a later line of their producer.
    late: usize,
}

/// Checks that no line came twice (the runs split at kills, a cut line
/// finished by the next run) and counts lines missing or out of order.
fn check_mpmc(runs: &[Vec<u8>], prefixes: &[&str], n: u64) -> MpmcTally {
    let mut seen: HashMap<&str, Vec<bool>> = prefixes
        .iter()
        .map(|p| (*p, vec![false; n as usize + 1]))
        .collect();
    let mut highest: HashMap<&str, u64> = HashMap::new();
    let mut tally = MpmcTally::default();
    for (k, run) in runs.iter().enumerate() {
        let (lines, partial) = split_run(run);
        assert!(
            partial.is_empty() || k + 1 < runs.len(),
            "the last run ends mid-line"
        );
        for line in lines {
            let p = prefixes
                .iter()
                .find(|p| line.starts_with(**p))
                .unwrap_or_else(|| panic!("run {k}: unexpected line {line:?}"));
            let v: u64 = line[p.len()..]
                .parse()
                .unwrap_or_else(|_| panic!("run {k}: line {line:?}"));
            assert!((1..=n).contains(&v), "run {k}: line {line:?}");
            let flags = seen.get_mut(p).unwrap();
            assert!(!flags[v as usize], "run {k}: {line:?} written twice");
            flags[v as usize] = true;
            let top = highest.entry(p).or_insert(0);
            if v < *top {
                tally.late += 1;
            } else {
                *top = v;
            }
        }
    }
    tally.missing = seen
        .values()
        .map(|f| f[1..].iter().filter(|s| !**s).count())
        .sum();
    tally
}

#[test]
fn recv_killed_30_times_on_a_persistent_mpmc_ring_delivers_each_line_once_in_order() {
    const N: u64 = 100_000;
    let dir = TestDir::new("recvkill-mpmc");
    create(
        &dir,
        &[
            "--kind",
            "mpmc",
            "--capacity",
            "64",
            "--slot-size",
            "32",
            "--producers",
            "2",
            "--consumers",
            "2",
        ],
    );
    let out = dir.file("out.txt");
    let senders = vec![sender(&dir, "a", N), sender(&dir, "b", N)];
    kill_and_restart(&dir, &out, senders);
    // A cut line is finished by the next run: judge the whole output.
    let all = std::fs::read(&out).unwrap();
    let tally = check_mpmc(&[all], &["a", "b"], N);
    eprintln!("{KILLS} kills: {tally:?}");
    assert_eq!(
        (tally.missing, tally.late),
        (0, 0),
        "exactly once each, in order per producer: {tally:?}"
    );
    std::fs::remove_file(&out).unwrap();
    assert_eq!(shmring(&dir.path, &["rm", "r"]).0, 0);
    dir.finish();
}
