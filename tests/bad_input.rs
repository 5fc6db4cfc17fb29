//! Bad objects: each gives its own error, never a SIGBUS, a panic or a
//! hang. The cases that also check the CLI are in
//! cli/tests/cli_bad_input.rs.

mod common;

use std::time::Duration;

use common::*;
use shmring::raw::{HEADER_SIZE, typed_spec};
use shmring::{Error, Kind, Layout, SegmentOptions};

fn opts(dir: &TestDir) -> SegmentOptions {
    SegmentOptions::new()
        .dir(&dir.path)
        .timeout(Duration::from_millis(200))
}

/// A valid persistent ring, to be damaged by the test.
fn make_ring(dir: &TestDir, name: &str) -> Layout {
    let layout = Layout::new(Kind::Spsc, 1024, 8, 8).unwrap();
    drop(
        opts(dir)
            .persistent(true)
            .create(name, &typed_spec::<u64>(&layout))
            .unwrap(),
    );
    layout
}

#[test]
fn header_only_file_with_ready_state_but_truncated_data() {
    // A header claiming a size the file does not have must be refused before
    // anything is mapped (mapping past the end would be SIGBUS).
    let dir = TestDir::new("hdronly");
    make_ring(&dir, "x");
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file("x"))
        .unwrap()
        .set_len(HEADER_SIZE as u64)
        .unwrap();
    assert!(matches!(
        opts(&dir).open("x"),
        Err(Error::SizeMismatch { .. })
    ));
    std::fs::remove_file(dir.file("x")).unwrap();
    dir.finish();
}
