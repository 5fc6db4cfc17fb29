//! `shmring stat` and `ls` over arbitrary files: the input is written as an
//! object in a private directory, then inspected by name and listed. Both
//! must return `Ok` or an error, never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmring::segment::{inspect, list};

#[path = "scratch.rs"]
mod scratch;
use scratch::dir;

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
