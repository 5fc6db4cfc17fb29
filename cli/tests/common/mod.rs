//! Helpers of the CLI tests: the library's shared test helpers
//! (tests/common/mod.rs at the repository root) plus the ones that run the
//! `shmring` binary, which only this package builds.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "../../../tests/common/mod.rs"]
mod shared;
pub use shared::*;

/// The `shmring` binary built for these tests.
pub fn shmring_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shmring"));
    c.stdin(Stdio::null());
    c
}

/// Runs `shmring --dir DIR args...` to completion (bounded) and returns
/// (exit code, stdout, stderr).
pub fn shmring(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let child = shmring_bin()
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmring");
    let out = ChildGuard(Some(child)).output_within(Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `shmring bench --duration 0.05` (unless `extra` gives a duration)
/// with `extra` arguments; checks it succeeded and left no ring behind;
/// returns its output.
pub fn bench(extra: &[&str]) -> std::process::Output {
    let mut args = vec!["bench"];
    if !extra.contains(&"--duration") {
        args.extend(["--duration", "0.05"]);
    }
    let child = shmring_bin()
        .args(args)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = ChildGuard(Some(child)).output_within(Duration::from_secs(180));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("shmring-bench-{pid}");
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "bench left {left:?}");
    out
}

pub mod bridge;
