//! Unit tests of the SPSC ring.

use super::raw::RawRing;
use super::*;
use crate::SegmentOptions;
use crate::segment::TestDir;

/// A layout whose capacity * stride exceeds the data area cannot be
/// written by `create`, nor used by a ring view even if a handle were
/// given one (a regression: safe code could set `Layout::capacity`
/// and make `push` write past the mapping).
#[test]
fn a_forged_layout_is_refused() {
    let dir = TestDir::new("forged");
    let good = layout::<u64>(8).unwrap();
    let mut forged = good;
    forged.capacity = 1 << 20;
    let opts = SegmentOptions::new().dir(&dir.0);
    let spec = |layout| segment::RingSpec {
        layout,
        type_id: TypeIdentity::of::<u64>().id(),
        type_name: "u64",
        init: segment::zeroed,
    };
    assert!(matches!(
        opts.create("forged", &spec(&forged)),
        Err(Error::Corrupted { .. })
    ));
    let mut seg = opts.create("ok", &spec(&good)).unwrap();
    assert!(RawRing::new(&seg).is_ok());
    seg.forge_layout_for_test(forged);
    assert!(matches!(RawRing::new(&seg), Err(Error::Corrupted { .. })));
    let mut beyond = good;
    beyond.data_offset = good.total_size;
    seg.forge_layout_for_test(beyond);
    assert!(matches!(RawRing::new(&seg), Err(Error::Corrupted { .. })));
}
