//! `shmring stat` and `ls` over arbitrary files: the input is written as an
//! object in a private directory, then inspected by name and listed. Both
//! must return `Ok` or an error, never panic, whatever the bytes.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shmring::segment::{inspect, list};

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::var_os("SHMRING_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/dev/shm".into())
            .join(format!("shmring-fuzz-inspect-{}", std::process::id()));
        let _ = std::fs::create_dir(&d);
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let path = dir().join("f");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(info) = inspect(dir(), "f") {
        // Rendering is part of `stat`.
        let _ = format!("{info:?}");
    }
    let _ = list(dir());
    let _ = std::fs::remove_file(&path);
});
