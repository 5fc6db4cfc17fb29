//! The private directory a fuzz target makes its files in (shared by the
//! targets with `#[path]`): under `$SHMRING_FUZZ_DIR` (set and removed by
//! `scripts/fuzz.sh`), else /dev/shm, one per process.

use std::path::PathBuf;
use std::sync::OnceLock;

pub fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::var_os("SHMRING_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/dev/shm".into())
            .join(format!("shmring-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir(&d);
        d
    })
}
