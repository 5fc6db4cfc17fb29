//! Header validation over arbitrary bytes: never a panic, only errors.
//! Run: `cargo +nightly fuzz run header -- -max_total_time=60` (from the
//! repository root, with cargo-fuzz installed from crates.io).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmring::header::{DESCRIPTOR_SIZE, Descriptor, validate};

fuzz_target!(|data: &[u8]| {
    if data.len() < DESCRIPTOR_SIZE + 8 {
        return;
    }
    let desc: Descriptor = bytemuck::pod_read_unaligned(&data[..DESCRIPTOR_SIZE]);
    let size = u64::from_le_bytes(data[DESCRIPTOR_SIZE..DESCRIPTOR_SIZE + 8].try_into().unwrap());
    let _ = validate(&desc, std::path::Path::new("fuzz"), size);
    // And the honest case: the recorded size is the file size.
    let _ = validate(&desc, std::path::Path::new("fuzz"), desc.total_size);
});
