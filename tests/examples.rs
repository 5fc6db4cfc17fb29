//! The examples in examples/ run as their own programs (each starts a
//! second process of itself) and succeed. `cargo test` builds them next to
//! the test binaries.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: cargo test builds the examples",
        path.display()
    );
    path
}

/// Runs an example with `args` to completion (killed after 120 s) and
/// returns its stdout.
fn run(name: &str, args: &[&str]) -> String {
    let mut child = Command::new(example(name))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn example");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id();
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The examples name their rings after their pid: nothing of theirs may
    // be left in /dev/shm.
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("example-") && n.split('-').nth(2) == Some(&pid.to_string()))
        .collect();
    assert!(left.is_empty(), "example {name} left behind: {left:?}");
    stdout
}

#[test]
fn pipeline_moves_a_struct_between_two_processes() {
    let out = run("pipeline", &["20000"]);
    assert!(
        out.contains("consumer: received 20000 ticks in order"),
        "{out}"
    );
    assert!(out.contains("producer: sent 20000 ticks"), "{out}");
}

#[test]
fn request_reply_prints_the_round_trip_median() {
    let out = run("request_reply", &["2000"]);
    assert!(out.contains("client: 2000 round trips, p50 "), "{out}");
    assert!(out.contains("server: answered 2000 requests"), "{out}");
}

#[test]
fn frames_carries_serialized_records_of_varying_size() {
    let out = run("frames", &["3000"]);
    assert!(
        out.contains("consumer: 3000 records, every byte checked"),
        "{out}"
    );
    assert!(out.contains("producer: 3000 records"), "{out}");
}

#[test]
fn broadcast_gives_every_subscriber_process_every_message() {
    let out = run("broadcast", &["20000"]);
    for who in ["logger", "planner", "monitor"] {
        assert!(
            out.contains(&format!("{who}: received 20000 readings in order")),
            "{out}"
        );
    }
    assert!(
        out.contains("publisher: sent 20000 readings to 3 subscribers"),
        "{out}"
    );
}

#[test]
fn async_consumer_receives_everything_while_the_ticker_ticks() {
    let out = run("async_consumer", &["200000"]);
    assert!(
        out.contains("consumer: received 200000 u64 in order"),
        "{out}"
    );
    assert!(out.contains("round trip p50: async (tokio) "), "{out}");
}
