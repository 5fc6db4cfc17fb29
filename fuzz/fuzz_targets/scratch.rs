//! The private directory a fuzz target makes its files in (shared by the
//! targets with `#[path]`): under `$SHMRING_FUZZ_DIR` (set and removed by
//! `scripts/fuzz.sh`), else /dev/shm, one per process.
//!
//! The directory is removed when the fuzzer exits (libFuzzer ends with
//! `exit()`, which runs `atexit` handlers), and directories of fuzzer
//! processes that died without exiting (a crash, kill -9) are removed by
//! the next run, so nothing accumulates in /dev/shm.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PREFIX: &str = "shmring-fuzz-";

static DIR: OnceLock<PathBuf> = OnceLock::new();

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> i32;
}

extern "C" fn remove_dir() {
    if let Some(d) = DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Removes `shmring-fuzz-PID` directories in `parent` whose process is gone.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub fn dir() -> &'static PathBuf {
    DIR.get_or_init(|| {
        let parent = std::env::var_os("SHMRING_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/dev/shm".into());
        sweep(&parent);
        let d = parent.join(format!("{PREFIX}{}", std::process::id()));
        let _ = std::fs::create_dir(&d);
        // SAFETY: `atexit` is the C library's; `remove_dir` is a plain
        // `extern "C" fn` that only reads the already-initialized `DIR`
        // (set before this call returns) and removes files.
        unsafe { atexit(remove_dir) };
        d
    })
}
