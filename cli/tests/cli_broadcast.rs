//! Broadcast rings through the `shmring` binary (issue 16, item 7):
//! `create --kind broadcast`, several `recv` processes each getting every
//! line one `send` publishes, `stat` showing every subscriber, what a
//! lapped or evicted `recv` says, and the flags' errors.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Starts `shmring recv NAME args...` with stdout and stderr piped.
fn recv(dir: &TestDir, name: &str, args: &[&str]) -> ChildGuard {
    ChildGuard(Some(
        shmring_bin()
            .arg("--dir")
            .arg(&dir.path)
            .args(["recv", name])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn recv"),
    ))
}

/// Runs `shmring send NAME args...` fed `1..=lines` on stdin, to the end.
fn send(dir: &TestDir, name: &str, args: &[&str], lines: u64) {
    let mut child = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["send", name])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn send");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::new(&mut stdin);
        for i in 1..=lines {
            writeln!(w, "{i}").expect("feed send");
        }
    });
    let out = ChildGuard(Some(child)).output_within(Duration::from_secs(120));
    feeder.join().expect("feeder");
    assert!(
        out.status.success(),
        "send: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `stat NAME --json`.
fn stat(dir: &TestDir, name: &str) -> serde_json::Value {
    let (code, out, err) = shmring(&dir.path, &["stat", name, "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("stat JSON")
}

/// The subscribers `stat --json` lists that a live process holds (none
/// while the ring is being created).
fn alive(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["subscribers"]
        .as_array()
        .map_or(&[][..], |a| a.as_slice())
        .iter()
        .filter(|s| s["alive"] == true)
        .cloned()
        .collect()
}

/// Waits (bounded) until `n` subscribers of `name` are alive and have
/// joined: each has been seen asleep waiting for a line (a `recv` takes
/// its role, then joins, then waits; it sleeps most of the time while no
/// publisher is there).
fn wait_for_subscribers(dir: &TestDir, name: &str, n: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut waiting = std::collections::BTreeSet::new();
    loop {
        // A `recv --create` may not have created the ring yet.
        let (code, out, err) = shmring(&dir.path, &["stat", name, "--json"]);
        if code != 0 {
            assert!(err.contains("no such ring"), "{err}");
            assert!(Instant::now() < deadline, "the ring never appeared");
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&out).expect("stat JSON");
        let subs = alive(&v);
        if v["wait_data"]["waiters"].as_u64() == Some(subs.len() as u64) {
            waiting.extend(subs.iter().map(|s| s["role"].as_u64()));
        }
        if subs.len() == n && waiting.len() == n {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{n} subscribers never attached: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create(dir: &TestDir, name: &str, args: &[&str]) -> String {
    let mut all = vec!["create", name, "--kind", "broadcast"];
    all.extend(args);
    let (code, out, err) = shmring(&dir.path, &all);
    assert_eq!(code, 0, "{err}");
    out
}

fn remove(dir: &TestDir, name: &str) {
    let (code, _, err) = shmring(&dir.path, &["rm", name]);
    assert_eq!(code, 0, "{err}");
}

/// The expected output of `n` lines `1..=n`.
fn lines(n: u64) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

/// `k` receivers and one sender of `n` lines on one `block` ring (no
/// eviction, so none can miss a line however slow a loaded machine makes
/// it); every output must equal the input. Returns the receivers' pids
/// and the ring's `stat --json` afterwards.
fn fan_out(dir: &TestDir, k: usize, n: u64, ring_args: &[&str]) -> (Vec<u32>, serde_json::Value) {
    let out = create(dir, "r", ring_args);
    assert!(out.contains("broadcast ring") && out.contains("subscriber roles"));
    let rx: Vec<ChildGuard> = (0..k).map(|_| recv(dir, "r", &[])).collect();
    let pids: Vec<u32> = rx.iter().map(|c| c.pid() as u32).collect();
    let v = wait_for_subscribers(dir, "r", k);
    for s in alive(&v) {
        assert_eq!(s["position"], 0, "{s}");
        assert!(pids.contains(&(s["pid"].as_u64().unwrap() as u32)), "{s}");
    }
    // Their output is drained while the lines flow (a full pipe would
    // stop a `recv`, and the publisher with it); each `recv` ends once the
    // publisher is gone and it has read all.
    let readers: Vec<_> = rx
        .into_iter()
        .map(|r| std::thread::spawn(move || r.output_within(Duration::from_secs(120))))
        .collect();
    send(dir, "r", &[], n);
    let want = lines(n);
    for (i, r) in readers.into_iter().enumerate() {
        let out = r.join().expect("reader");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "recv {i}: {err}");
        assert!(err.is_empty(), "recv {i} warned: {err}");
        assert!(
            out.stdout == want.as_bytes(),
            "recv {i}: {} bytes, {} lines, not the {n} lines sent",
            out.stdout.len(),
            out.stdout.iter().filter(|&&b| b == b'\n').count()
        );
    }
    (pids, stat(dir, "r"))
}

#[test]
fn two_receivers_each_get_all_10000_lines_and_stat_shows_both() {
    let dir = TestDir::new("bc-two");
    let n = 10_000;
    let (pids, v) = fan_out(
        &dir,
        2,
        n,
        &[
            "--capacity",
            "64",
            "--subscribers",
            "4",
            "--evict-after",
            "never",
        ],
    );
    assert_eq!(v["kind"], "broadcast");
    assert_eq!(v["overflow"], "block");
    assert_eq!(v["published"], n);
    assert_eq!(v["evictions"], 0);
    let subs = v["subscribers"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{v}");
    for s in subs {
        assert_eq!(s["position"], n, "{s}");
        assert_eq!(s["lag"], 0, "{s}");
        assert_eq!(s["missed"], 0, "{s}");
        assert_eq!(s["evicted"], false, "{s}");
        assert_eq!(s["alive"], false, "{s}");
        assert!(pids.contains(&(s["pid"].as_u64().unwrap() as u32)), "{s}");
    }
    // The table says the same, one line per subscriber, and `ls` the kind.
    let (code, text, err) = shmring(&dir.path, &["stat", "r"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("overflow       block\n"), "{text}");
    assert!(text.contains(&format!("published      {n}\n")), "{text}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("subscriber "))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for l in lines {
        assert!(l.contains(&format!("position {n}, lag 0, missed 0")), "{l}");
    }
    let (code, text, err) = shmring(&dir.path, &["ls"]);
    assert_eq!(code, 0, "{err}");
    let row = text.lines().find(|l| l.starts_with("r ")).unwrap();
    assert!(row.contains(" broadcast "), "{row}");
    remove(&dir, "r");
    dir.finish();
}

#[test]
fn three_receivers_each_get_all_100k_lines() {
    let dir = TestDir::new("bc-three");
    let (_, v) = fan_out(
        &dir,
        3,
        100_000,
        &["--capacity", "256", "--evict-after", "never"],
    );
    assert_eq!(v["subscribers"].as_array().unwrap().len(), 3, "{v}");
    remove(&dir, "r");
    dir.finish();
}

/// The count in "missed N line(s)" of a `recv`'s stderr.
fn missed(err: &str) -> u64 {
    let at = err
        .find("missed ")
        .unwrap_or_else(|| panic!("no count: {err}"));
    err[at + 7..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {err}"))
}

/// Stops a subscriber with SIGSTOP while `n` lines go through a 16-slot
/// ring created with `ring_args`, then resumes it. Its stderr must say
/// `says` and how many lines it missed, and what it got must be the rest:
/// the newest lines, in order, none twice. Returns the missed count and
/// the ring's `stat --json`.
fn stopped_subscriber(
    dir: &TestDir,
    ring_args: &[&str],
    n: u64,
    says: &str,
) -> (u64, serde_json::Value) {
    let mut args = vec!["--capacity", "16"];
    args.extend(ring_args);
    create(dir, "r", &args);
    let rx = recv(dir, "r", &[]);
    wait_for_subscribers(dir, "r", 1);
    let pid = nix::unistd::Pid::from_raw(rx.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    send(dir, "r", &[], n);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let out = rx.output_within(Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains(says), "{err}");
    let got: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let missed = missed(&err);
    assert_eq!(missed + got.len() as u64, n, "{err}");
    assert_eq!(got, (missed + 1..=n).collect::<Vec<_>>());
    let v = stat(dir, "r");
    remove(dir, "r");
    (missed, v)
}

#[test]
fn a_lapped_receiver_says_how_many_lines_it_missed_and_goes_on() {
    let dir = TestDir::new("bc-lapped");
    // The publisher never waits: it laps the stopped subscriber.
    let (missed, v) = stopped_subscriber(
        &dir,
        &["--overflow", "overwrite"],
        1000,
        "lapped by the publisher",
    );
    assert_eq!(v["overflow"], "overwrite");
    assert_eq!(v["subscribers"][0]["missed"], missed, "{v}");
    dir.finish();
}

#[test]
fn an_evicted_receiver_says_how_many_lines_it_missed_and_goes_on() {
    let dir = TestDir::new("bc-evicted");
    // The publisher waits 50 ms for the stopped subscriber, then evicts it.
    let (missed, v) = stopped_subscriber(&dir, &["--evict-after", "50ms"], 1000, "evicted");
    assert_eq!(v["overflow"], "block (evict after 50ms)");
    assert_eq!(v["evictions"], 1, "{v}");
    let s = &v["subscribers"][0];
    assert_eq!((&s["evictions"], &s["missed"]), (&1.into(), &missed.into()));
    dir.finish();
}

#[test]
fn recv_from_a_sequence_number_or_the_latest_line() {
    let dir = TestDir::new("bc-from");
    create(&dir, "r", &["--capacity", "64"]);
    send(&dir, "r", &[], 50);
    // Sequence numbers start at 0: line 41 is sequence 40. The publisher
    // is gone, so `recv` ends when it has read the rest.
    let (code, out, err) = shmring(&dir.path, &["recv", "r", "--from", "40"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, (41..=50).map(|i| format!("{i}\n")).collect::<String>());
    // `latest`: nothing new comes, and no publisher: exit 3.
    let (code, out, err) = shmring(
        &dir.path,
        &["recv", "r", "--from", "latest", "--timeout", "200"],
    );
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert!(err.contains("waiting for a publisher"), "{err}");
    remove(&dir, "r");
    dir.finish();
}

#[test]
fn send_and_recv_can_create_a_broadcast_ring() {
    let dir = TestDir::new("bc-create");
    let shape = [
        "--create",
        "--kind",
        "broadcast",
        "--capacity",
        "32",
        "--evict-after",
        "never",
    ];
    let rx = recv(&dir, "r", &shape);
    wait_for_subscribers(&dir, "r", 1);
    send(&dir, "r", &shape, 500);
    let out = rx.output_within(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, lines(500).as_bytes());
    // Not persistent: gone with its last user.
    dir.finish();
}

#[test]
fn bad_broadcast_options_are_refused_clearly() {
    let dir = TestDir::new("bc-bad");
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--overflow", "sometimes"],
            2,
            "[possible values: block, overwrite]",
        ),
        (&["--evict-after", "5"], 2, "has no unit"),
        (&["--evict-after", "5parsecs"], 2, "unknown unit"),
        (&["--evict-after", "0s"], 2, "out of range"),
        (
            &["--subscribers", "0"],
            1,
            "--subscribers 0: a broadcast ring has 1 to 1024",
        ),
        (&["--subscribers", "lots"], 2, "invalid digit"),
        (
            &["--overflow", "overwrite", "--evict-after", "1s"],
            1,
            "--evict-after is for --overflow block",
        ),
        (
            &["--capacity", "100"],
            1,
            "--capacity 100 must be a power of two",
        ),
        (&["--slot-size", "0"], 1, "--slot-size 0"),
    ];
    for (args, code, says) in cases {
        let mut all = vec!["create", "r", "--kind", "broadcast"];
        all.extend(*args);
        let (got, _, err) = shmring(&dir.path, &all);
        assert_eq!(got, *code, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // The broadcast flags on another kind.
    let (code, _, err) = shmring(
        &dir.path,
        &["create", "r", "--kind", "spsc", "--subscribers", "4"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--subscribers is for --kind broadcast rings, not spsc rings"),
        "{err}"
    );
    // `--from` on a ring that is not a broadcast ring, and a bad `--from`.
    let (code, _, err) = shmring(&dir.path, &["create", "f"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = shmring(&dir.path, &["recv", "f", "--from", "latest"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--from is for broadcast rings"), "{err}");
    let (code, _, err) = shmring(&dir.path, &["recv", "f", "--from", "banana"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not oldest, latest or a sequence number"),
        "{err}"
    );
    remove(&dir, "f");
    // A line longer than the slots.
    create(&dir, "r", &["--slot-size", "8"]);
    let mut child = shmring_bin()
        .arg("--dir")
        .arg(&dir.path)
        .args(["send", "r"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"0123456789\n")
        .unwrap();
    let out = ChildGuard(Some(child)).output_within(Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("a 10-byte line does not fit this ring's slots (at most 8 bytes each)"),
        "{err}"
    );
    remove(&dir, "r");
    dir.finish();
}

/// Runs `shmring bench --kind broadcast` briefly with `extra` arguments
/// (checking that it succeeded and left no ring); returns its stdout.
fn bench_broadcast(extra: &[&str]) -> String {
    let mut args = vec!["--kind", "broadcast", "--wait", "spin", "--rounds", "1"];
    args.extend(extra);
    String::from_utf8(bench(&args).stdout).unwrap()
}

#[test]
fn bench_measures_each_subscriber_next_to_spsc_rings_fed_copy_by_copy() {
    let v: serde_json::Value = serde_json::from_str(&bench_broadcast(&["--json"])).unwrap();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        keys(&v["rtt_ns"]),
        [
            "atomic_limit",
            "futex_limit",
            "pipe",
            "shmring_broadcast_spin",
            "unix_socket"
        ]
    );
    assert!(
        v["rtt_ns"]["shmring_broadcast_spin"]["p50"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let mut rows = Vec::new();
    for k in [1u64, 2, 4] {
        rows.push(format!("shmring_broadcast_u64_{k}sub"));
        rows.push(format!("spsc_fanout_u64_{k}"));
        for row in &rows[rows.len() - 2..] {
            let rate = v["throughput_msgs_per_s"][row].as_f64().unwrap();
            assert!(rate > 0.0, "{row}");
            let f = &v["fanout"][row];
            assert_eq!(f["publisher"].as_f64(), Some(rate), "{row}: {f}");
            assert_eq!(f["processes"], k + 1, "{row}: {f}");
            assert!(f["wait"] == "spin" || f["wait"] == "yield", "{row}: {f}");
            let readers = f["readers"].as_array().unwrap();
            assert_eq!(readers.len() as u64, k, "{row}: {f}");
            assert!(readers.iter().all(|r| r.as_f64().unwrap() > 0.0), "{f}");
        }
    }
    rows.sort();
    assert_eq!(keys(&v["throughput_msgs_per_s"]), rows);
    assert_eq!(keys(&v["fanout"]), rows);

    // The table: each broadcast row under as many SPSC rings, each with
    // its readers' rates.
    let text = bench_broadcast(&[]);
    let lines: Vec<&str> = text.lines().collect();
    for (k, s) in [(1, ""), (2, "s"), (4, "s")] {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("shmring SPSC, u64 copied into {k} ring{s}")))
            .unwrap_or_else(|| panic!("no {k}-ring row in\n{text}"));
        assert!(lines[at + 1].starts_with("    each consumer: "), "{text}");
        let row = lines[at + 2];
        assert!(
            row.starts_with(&format!("  shmring broadcast, u64, {k} subscriber{s}")),
            "{text}"
        );
        assert!(row.ends_with(" faster") || row.ends_with(" slower") || row.ends_with(" same"));
        let each = lines[at + 3];
        assert!(each.starts_with("      each subscriber: "), "{text}");
        assert_eq!(each.matches(" msg/s").count(), k, "{each}");
        assert!(
            each.contains(&format!("({} processes on ", k + 1)),
            "{each}"
        );
    }
}
