//! Header validation over arbitrary bytes of arbitrary length: the input is
//! a whole segment file; its first 256 bytes (zero-padded) are the
//! descriptor, its length the file size. `validate` must return `Ok` or an
//! error, never panic (arithmetic overflow included: fuzz builds keep
//! debug assertions), and an accepted layout must fit the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmring::raw::{Descriptor, validate};

fuzz_target!(|data: &[u8]| {
    let mut raw = [0u8; std::mem::size_of::<Descriptor>()];
    let n = data.len().min(raw.len());
    raw[..n].copy_from_slice(&data[..n]);
    let desc: Descriptor = bytemuck::pod_read_unaligned(&raw);
    // Also try sizes the descriptor itself claims, where the interesting
    // boundaries are.
    let claimed = desc.total_size;
    for size in [
        data.len() as u64,
        claimed,
        claimed.wrapping_sub(1),
        u64::MAX,
    ] {
        if let Ok(layout) = validate(&desc, std::path::Path::new("fuzz"), size) {
            assert!(
                layout.total_size() <= size,
                "accepted a layout larger than the file"
            );
            assert!(
                layout
                    .data_offset()
                    .checked_add(layout.data_size())
                    .is_some_and(|e| e <= layout.total_size())
            );
        }
    }
});
