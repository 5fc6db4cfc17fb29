//! Unit tests of the shape computation and descriptor validation.

use std::path::Path;

use super::*;
use crate::error::Error;

fn good() -> (Layout, Descriptor) {
    let layout = Layout::new(Kind::Spsc, 64, 8, 8).unwrap();
    let desc = descriptor_for(&layout, 7, "t/v1", 0, 0o600, 1, 2);
    (layout, desc)
}

#[test]
fn round_trip_validates() {
    let (layout, desc) = good();
    assert_eq!(
        validate(&desc, Path::new("x"), layout.total_size).unwrap(),
        layout
    );
    assert_eq!(layout.total_size % PAGE as u64, 0);
    assert_eq!(layout.slot_stride, 8);
    assert!(layout.data_offset % LINE as u64 == 0);
}

#[test]
fn each_failure_has_its_own_error() {
    let (layout, desc) = good();
    let p = Path::new("x");
    let mut d = desc;
    d.magic = 1;
    assert!(matches!(
        validate(&d, p, layout.total_size),
        Err(Error::NotARing { .. })
    ));
    let mut d = desc;
    d.version_major = 2;
    assert!(matches!(
        validate(&d, p, layout.total_size),
        Err(Error::VersionMismatch {
            found: (2, VERSION_MINOR),
            supported: (VERSION_MAJOR, VERSION_MINOR),
            ..
        })
    ));
    assert!(matches!(
        validate(&desc, p, layout.total_size + 4096),
        Err(Error::SizeMismatch { .. })
    ));
    let mut d = desc;
    d.capacity = 63;
    assert!(matches!(
        validate(&d, p, layout.total_size),
        Err(Error::Corrupted { .. })
    ));
    let mut d = desc;
    d.data_offset += 8;
    assert!(matches!(
        validate(&d, p, layout.total_size),
        Err(Error::Corrupted { .. })
    ));
    let mut d = desc;
    d.kind = 99;
    assert!(matches!(
        validate(&d, p, layout.total_size),
        Err(Error::Corrupted { .. })
    ));
}

#[test]
fn arbitrary_descriptors_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..100_000 {
        let mut words = [0u64; DESCRIPTOR_SIZE / 8];
        for w in &mut words {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *w = x;
        }
        words[0] = MAGIC;
        let mut d: Descriptor = bytemuck::cast(words);
        d.version_major = VERSION_MAJOR;
        d.header_size = HEADER_SIZE as u32;
        d.kind = (x % 4) as u32;
        d.flags = 0;
        let _ = validate(&d, Path::new("x"), d.total_size);
    }
}

#[test]
fn huge_parameters_are_refused_not_overflowed() {
    assert!(Layout::new(Kind::Spsc, 1 << 40, MAX_SLOT_SIZE, 8).is_err());
    assert!(Layout::new(Kind::Spsc, 3, 8, 8).is_err());
    assert!(Layout::new(Kind::Spsc, 4, 8, 3).is_err());
    assert!(Layout::new(Kind::Frames, 32, 1, 1).is_err());
    assert!(Layout::with_roles(Kind::Mpmc, 4, 8, 8, 0, 1).is_err());
    assert!(Layout::with_roles(Kind::Mpmc, 4, 8, 8, 1, MAX_ROLES + 1).is_err());
    assert!(Layout::with_roles(Kind::Spsc, 4, 8, 8, 2, 1).is_err());
}

#[test]
fn mpmc_layout_has_claim_lines_and_aligned_slots() {
    let l = Layout::with_roles(Kind::Mpmc, 8, 24, 8, 3, 2).unwrap();
    assert_eq!(l.slot_stride, 32);
    assert_eq!(
        l.data_offset - l.control_offset,
        ((MPMC_CLAIMS_LINE + 5) * LINE) as u64
    );
    let l = Layout::with_roles(Kind::Mpmc, 8, 8, 64, 1, 1).unwrap();
    assert_eq!(mpmc_payload_offset(64), 64);
    assert_eq!(l.slot_stride, 128);
    let desc = descriptor_for(&l, 1, "", 0, 0o600, 1, 2);
    assert_eq!(validate(&desc, Path::new("x"), l.total_size).unwrap(), l);
}
