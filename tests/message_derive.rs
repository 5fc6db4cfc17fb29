//! `#[derive(Message)]` and `TypeIdentity`: the derived impls are usable as
//! `Pod`, and the id depends on the chosen name, size and alignment only.

use shmring::{Message, Pod, TypeIdentity, Zeroable};

#[derive(Clone, Copy, Debug, PartialEq, Message)]
#[repr(C)]
#[message(name = "quote/v1")]
struct Quote {
    bid: f64,
    ask: f64,
    size: u32,
    venue: u32,
}

mod a {
    #[derive(Clone, Copy, shmring::Message)]
    #[repr(C)]
    #[message(name = "tick/v1")]
    pub struct Tick {
        pub price: f64,
        pub seq: u64,
    }
}

mod b {
    #[derive(Clone, Copy, shmring::Message)]
    #[repr(C)]
    #[message(name = "tick/v1")]
    pub struct Tick {
        pub price: f64,
        pub seq: u64,
    }

    /// Same name as `a::Tick`, one more field: a different layout that
    /// forgot to bump its version.
    #[derive(Clone, Copy, shmring::Message)]
    #[repr(C)]
    #[message(name = "tick/v1")]
    pub struct TickWithVenue {
        pub price: f64,
        pub seq: u64,
        pub venue: u64,
    }
}

#[derive(Clone, Copy, Message)]
#[repr(transparent)]
#[message(name = "bytes64/v1")]
struct Bytes64([u8; 64]);

#[derive(Clone, Copy, Message)]
#[repr(C, align(16))]
#[message(name = "aligned/v1")]
struct Aligned {
    lo: u64,
    hi: u64,
}

/// FNV-1a 64 as documented in `shmring::message`, written independently.
fn reference_id(name: &str, size: u64, align: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = name
        .bytes()
        .chain(size.to_le_bytes())
        .chain(align.to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn assert_pod<T: Pod + Zeroable>() {}

#[test]
fn derived_quote_is_pod() {
    assert_pod::<Quote>();
    let quote = Quote {
        bid: 99.5,
        ask: 100.5,
        size: 7,
        venue: 3,
    };
    let bytes = shmring::__private::bytemuck::bytes_of(&quote);
    assert_eq!(bytes.len(), 24);
    assert_eq!(&bytes[0..8], &99.5_f64.to_ne_bytes());
    assert_eq!(&bytes[16..20], &7_u32.to_ne_bytes());
    let back: Quote = shmring::__private::bytemuck::pod_read_unaligned(bytes);
    assert_eq!(back, quote);
    let zero: Quote = Zeroable::zeroed();
    assert_eq!(zero.size, 0);
}

#[test]
fn quote_identity_is_documented_id() {
    assert_eq!(Quote::NAME, "quote/v1");
    let identity = TypeIdentity::of::<Quote>();
    assert_eq!(identity.name(), "quote/v1");
    assert_eq!(identity.size(), 24);
    assert_eq!(identity.align(), 8);
    assert_eq!(identity.id(), reference_id("quote/v1", 24, 8));
    assert_eq!(identity.id(), 0xda4f_f4dc_34e8_2d41);
}

#[test]
fn identity_ignores_the_rust_path() {
    assert_ne!(
        std::any::type_name::<a::Tick>(),
        std::any::type_name::<b::Tick>()
    );
    assert_eq!(TypeIdentity::of::<a::Tick>(), TypeIdentity::of::<b::Tick>());
    assert_eq!(
        TypeIdentity::of::<a::Tick>().id(),
        reference_id("tick/v1", 16, 8)
    );
}

#[test]
fn same_name_other_shape_has_other_id() {
    let narrow = TypeIdentity::of::<a::Tick>();
    let wide = TypeIdentity::of::<b::TickWithVenue>();
    assert_eq!(narrow.name(), wide.name());
    assert_eq!(wide.size(), 24);
    assert_ne!(narrow.id(), wide.id());
    assert_eq!(wide.id(), reference_id("tick/v1", 24, 8));
}

#[test]
fn transparent_byte_array() {
    assert_pod::<Bytes64>();
    let identity = TypeIdentity::of::<Bytes64>();
    assert_eq!((identity.size(), identity.align()), (64, 1));
    assert_eq!(identity.id(), reference_id("bytes64/v1", 64, 1));
    let value = Bytes64([0xab; 64]);
    assert_eq!(shmring::__private::bytemuck::bytes_of(&value), &[0xab; 64]);
}

#[test]
fn explicit_alignment() {
    let identity = TypeIdentity::of::<Aligned>();
    assert_eq!((identity.size(), identity.align()), (16, 16));
    assert_eq!(identity.id(), reference_id("aligned/v1", 16, 16));
    let value = Aligned { lo: 1, hi: 2 };
    assert_eq!(value.lo + value.hi, 3);
}

#[test]
fn identity_is_usable_in_const() {
    const ID: u64 = TypeIdentity::of::<Quote>().id();
    assert_eq!(ID, reference_id("quote/v1", 24, 8));
}
