//! Stable message identity: a name you choose, plus size and alignment.
//!
//! A typed ring records, in its header, a 64-bit id of the message type it
//! carries, and every process that attaches checks it. That id must not
//! depend on the Rust path of the type (`a::Quote` and `b::Quote` in two
//! binaries are the same message) nor on the compiler version, and a C or
//! Python peer must be able to compute it. So the identity of a message is:
//!
//! * a **name** chosen by you, such as `"quote/v1"`;
//! * its **size** and **alignment** in bytes.
//!
//! # Defining a message
//!
//! Define a `#[repr(C)]` struct of plain-data fields, derive `Clone`, `Copy`
//! and [`Message`](derive@crate::Message), and name it:
//!
//! ```
//! use shmring::{Message, TypeIdentity};
//!
//! #[derive(Clone, Copy, Debug, Message)]
//! #[repr(C)]
//! #[message(name = "quote/v1")]
//! pub struct Quote {
//!     pub bid: f64,
//!     pub ask: f64,
//!     pub size: u32,
//!     pub venue: u32,
//! }
//!
//! let identity = TypeIdentity::of::<Quote>();
//! assert_eq!(identity.name(), "quote/v1");
//! assert_eq!((identity.size(), identity.align()), (24, 8));
//! assert_eq!(identity.id(), 0xda4f_f4dc_34e8_2d41);
//! ```
//!
//! The derive implements [`Zeroable`](crate::Zeroable), [`Pod`](crate::Pod)
//! and [`Message`] after checking, at compile time, that doing so is sound:
//!
//! * the type is a struct (not an enum or union) without generic parameters;
//! * it is `#[repr(C)]` or `#[repr(transparent)]` (`align(N)` may be added;
//!   `packed` is refused);
//! * every field is [`Pod`](crate::Pod);
//! * there is no padding: the size of the struct is the sum of the sizes of
//!   its fields. Order fields from the largest alignment to the smallest, or
//!   add explicit `_pad: [u8; N]` fields;
//! * it has at least one field and is not zero-sized;
//! * it derives `Clone` and `Copy` (required by `Pod`).
//!
//! Types that already implement `bytemuck::Pod` (for example through
//! `bytemuck`'s own derive) implement [`Message`] by hand instead — it is a
//! safe trait, `Pod` carries the unsafe guarantee:
//!
//! ```
//! #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
//! #[repr(C)]
//! struct Tick { price: f64, seq: u64 }
//!
//! impl shmring::Message for Tick {
//!     const NAME: &'static str = "tick/v1";
//! }
//! ```
//!
//! The primitive integer and float types are messages named after
//! themselves: `"u8"`, `"u16"`, `"u32"`, `"u64"`, `"u128"`, `"i8"`, …,
//! `"i128"`, `"f32"`, `"f64"`. Byte arrays are not (a name cannot be
//! computed from `N` at compile time); wrap one in a named struct:
//!
//! ```
//! #[derive(Clone, Copy, shmring::Message)]
//! #[repr(transparent)]
//! #[message(name = "frame64/v1")]
//! struct Frame64([u8; 64]);
//! ```
//!
//! # Choosing a name
//!
//! A name is 1 to [`MAX_NAME_LEN`] (64) bytes of printable ASCII without
//! spaces: every byte in `0x21..=0x7e` (see [`validate_name`]). Pick a name
//! that says what the message is, not where it is defined, and **put a
//! version in it**. Size and alignment are part of the id, so most layout
//! changes are caught anyway, but reordering fields, changing a field's type
//! to another of the same size (`u32` to `f32`) or changing units is not:
//! whenever the meaning of the bytes changes, change the name (`"quote/v1"`
//! becomes `"quote/v2"`), and old and new processes will refuse each other
//! instead of misreading each other.
//!
//! # The id, for other languages
//!
//! The id is **64-bit FNV-1a** over these bytes, in order:
//!
//! 1. the name's bytes (ASCII, no terminator, no length prefix);
//! 2. the size in bytes, as a 64-bit unsigned integer, little-endian
//!    (8 bytes);
//! 3. the alignment in bytes, as a 64-bit unsigned integer, little-endian
//!    (8 bytes).
//!
//! FNV-1a starts from the offset basis `0xcbf29ce484222325`; for each byte
//! `b`, `hash = (hash XOR b) * 0x100000001b3 mod 2^64`. For example `u64`
//! (name `"u64"`, size 8, alignment 8) hashes the 19 bytes
//! `75 36 34 08 00 00 00 00 00 00 00 08 00 00 00 00 00 00 00` to
//! **`0xaf4c548bcc964472`**, and the `Quote` above (`"quote/v1"`, 24, 8) to
//! `0xda4ff4dc34e82d41`. In Python:
//!
//! ```python
//! def message_id(name: str, size: int, align: int) -> int:
//!     h = 0xCBF29CE484222325
//!     data = name.encode("ascii") + size.to_bytes(8, "little") + align.to_bytes(8, "little")
//!     for b in data:
//!         h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
//!     return h
//!
//! assert message_id("u64", 8, 8) == 0xAF4C548BCC964472
//! assert message_id("quote/v1", 24, 8) == 0xDA4FF4DC34E82D41
//! ```
//!
//! and in C:
//!
//! ```c
//! uint64_t message_id(const char *name, uint64_t size, uint64_t align) {
//!     uint64_t h = 0xcbf29ce484222325u;
//!     for (const unsigned char *p = (const unsigned char *)name; *p; p++)
//!         h = (h ^ *p) * 0x100000001b3u;
//!     for (int i = 0; i < 8; i++) h = (h ^ ((size >> (8 * i)) & 0xff)) * 0x100000001b3u;
//!     for (int i = 0; i < 8; i++) h = (h ^ ((align >> (8 * i)) & 0xff)) * 0x100000001b3u;
//!     return h;
//! }
//! ```
//!
//! The size and alignment are those of the C layout of the struct
//! (`sizeof`, `_Alignof`; `struct.calcsize` / `ctypes.alignment` in
//! Python). The id is stored in the `type_id` field of the ring's
//! [`Descriptor`](crate::raw::Descriptor) (a `u64` at byte offset 48, in
//! host byte order), and the name in its `type_name` field (64 bytes at
//! offset 128, zero-padded; layout 1.2 and later). A ring records both when
//! it is created, and every handle checks them when it attaches:
//!
//! ```
//! # fn main() -> Result<(), shmring::Error> {
//! # #[derive(Clone, Copy, shmring::Message)]
//! # #[repr(C)]
//! # #[message(name = "quote/v1")]
//! # struct Quote { bid: f64, ask: f64, size: u32, venue: u32 }
//! use shmring::TypeIdentity;
//!
//! let (tx, _rx) = shmring::spsc::anonymous::<Quote>(16)?;
//! let desc = tx.segment().descriptor();
//! assert_eq!(desc.type_id, TypeIdentity::of::<Quote>().id());
//! assert_eq!(desc.type_name().as_deref(), Some("quote/v1"));
//! # Ok(()) }
//! ```
//!
//! # What the derive refuses
//!
//! Each of these fails to compile, with the message quoted.
//!
//! Without `#[repr(C)]` — "#\[derive(Message)\] needs #\[repr(C)\] or
//! #\[repr(transparent)\] on `Quote`: the default Rust layout may reorder
//! fields and differ between compilations":
//!
//! ```compile_fail
//! #[derive(Clone, Copy, shmring::Message)]
//! #[message(name = "quote/v1")]
//! struct Quote { bid: f64, ask: f64 }
//! ```
//!
//! With padding — "`Padded` has padding (its size is larger than the sum of
//! its fields' sizes): …":
//!
//! ```compile_fail,E0080
//! #[derive(Clone, Copy, shmring::Message)]
//! #[repr(C)]
//! #[message(name = "padded/v1")]
//! struct Padded { small: u8, big: u64 }
//! ```
//!
//! A field that is not `Pod` — "the trait bound `bool: Pod` is not
//! satisfied" (not every byte is a valid `bool`):
//!
//! ```compile_fail,E0277
//! #[derive(Clone, Copy, shmring::Message)]
//! #[repr(C)]
//! #[message(name = "flag/v1")]
//! struct Flag { set: bool, _pad: [u8; 7], seq: u64 }
//! ```
//!
//! Without `Copy` — "the trait bound `Quote: Copy` is not satisfied":
//!
//! ```compile_fail,E0277
//! #[derive(Clone, shmring::Message)]
//! #[repr(C)]
//! #[message(name = "quote/v1")]
//! struct Quote { bid: f64, ask: f64 }
//! ```
//!
//! An enum — "#\[derive(Message)\] supports only structs: an enum has
//! invalid bit patterns …":
//!
//! ```compile_fail
//! #[derive(Clone, Copy, shmring::Message)]
//! #[repr(u8)]
//! #[message(name = "side/v1")]
//! enum Side { Bid, Ask }
//! ```
//!
//! `#[repr(packed)]` — "#\[derive(Message)\] does not support
//! #\[repr(packed)\]: …":
//!
//! ```compile_fail
//! #[derive(Clone, Copy, shmring::Message)]
//! #[repr(C, packed)]
//! #[message(name = "packed/v1")]
//! struct Packed { small: u8, big: u64 }
//! ```
//!
//! Generic parameters — "#\[derive(Message)\] does not support generic
//! parameters: …":
//!
//! ```compile_fail
//! #[derive(Clone, Copy, shmring::Message)]
//! #[repr(transparent)]
//! #[message(name = "wrapper/v1")]
//! struct Wrapper<T: Copy>(T);
//! ```
//!
//! A bad name — "byte 5 of the message name is 0x20: a message name is
//! printable ASCII without spaces (0x21..=0x7e), e.g. \"quote/v1\"":
//!
//! ```compile_fail
//! #[derive(Clone, Copy, shmring::Message)]
//! #[repr(C)]
//! #[message(name = "quote v1")]
//! struct Quote { bid: f64, ask: f64 }
//! ```
//!
//! No name — "#\[derive(Message)\] needs a name: add #\[message(name =
//! \"...\")\] to `Quote`, e.g. #\[message(name = \"quote/v1\")\]; …":
//!
//! ```compile_fail
//! #[derive(Clone, Copy, shmring::Message)]
//! #[repr(C)]
//! struct Quote { bid: f64, ask: f64 }
//! ```
//!
//! A hand-written [`Message`] with an invalid name is refused when its
//! identity is computed ("invalid Message::NAME: …"):
//!
//! ```compile_fail,E0080
//! #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
//! #[repr(C)]
//! struct Tick { price: f64 }
//! impl shmring::Message for Tick { const NAME: &'static str = ""; }
//! let _ = shmring::TypeIdentity::of::<Tick>();
//! ```

use std::fmt;

/// The longest message name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A message type that can cross a process boundary through a ring.
///
/// `Pod` guarantees that any bytes a peer writes are a valid value; `NAME`
/// says which layout those bytes have, independently of Rust paths and
/// compiler versions. Derive it (`#[derive(Message)]` with
/// `#[message(name = "...")]`) or implement it by hand for a type that is
/// already `Pod`. See the [module documentation](self).
pub trait Message: bytemuck::Pod {
    /// The name of the layout: 1 to [`MAX_NAME_LEN`] bytes of printable
    /// ASCII without spaces (see [`validate_name`]), with a version, such
    /// as `"quote/v1"`.
    const NAME: &'static str;
}

macro_rules! primitive_messages {
    ($($ty:ty),* $(,)?) => {
        $(
            impl Message for $ty {
                const NAME: &'static str = stringify!($ty);
            }
        )*
    };
}

primitive_messages!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

/// Why a string is not a valid message name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A byte outside printable ASCII without space (`0x21..=0x7e`).
    InvalidByte {
        /// Offset of the first such byte.
        index: usize,
        /// The byte.
        byte: u8,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NameError::Empty => write!(f, "a message name must not be empty"),
            NameError::TooLong { len } => write!(
                f,
                "a message name is at most {MAX_NAME_LEN} bytes; this one is {len}"
            ),
            NameError::InvalidByte { index, byte } => write!(
                f,
                "byte {index} of the message name is {byte:#04x}: a message name is printable \
                 ASCII without spaces (0x21..=0x7e), e.g. \"quote/v1\""
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks that `name` is a valid message name: 1 to [`MAX_NAME_LEN`] bytes,
/// each in `0x21..=0x7e` (printable ASCII, no space), so that it is the same
/// bytes in every language and fits any fixed-size field.
///
/// ```
/// use shmring::message::{NameError, validate_name};
///
/// assert_eq!(validate_name("quote/v1"), Ok(()));
/// assert_eq!(validate_name(""), Err(NameError::Empty));
/// assert_eq!(validate_name("quote v1"), Err(NameError::InvalidByte { index: 5, byte: b' ' }));
/// ```
pub const fn validate_name(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: bytes.len() });
    }
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte < 0x21 || byte > 0x7e {
            return Err(NameError::InvalidByte { index, byte });
        }
        index += 1;
    }
    Ok(())
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

/// The id of a message with this name, size and alignment: 64-bit FNV-1a
/// over the name's bytes, the size as a little-endian `u64`, then the
/// alignment as a little-endian `u64` (see the [module
/// documentation](self#the-id-for-other-languages)). Does not validate the
/// name.
///
/// ```
/// assert_eq!(shmring::message::message_id("u64", 8, 8), 0xaf4c_548b_cc96_4472);
/// ```
pub const fn message_id(name: &str, size: u64, align: u64) -> u64 {
    let hash = fnv1a(FNV_OFFSET_BASIS, name.as_bytes());
    let hash = fnv1a(hash, &size.to_le_bytes());
    fnv1a(hash, &align.to_le_bytes())
}

/// The identity of a message type: its name, size, alignment and the id
/// computed from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TypeIdentity {
    name: &'static str,
    size: u32,
    align: u32,
    id: u64,
}

impl TypeIdentity {
    /// The same identity with another alignment (byte slots of MPMC rings
    /// made by tools).
    pub(crate) const fn with_align(self, align: u32) -> Self {
        TypeIdentity { align, ..self }
    }

    /// Untyped bytes in slots of `slot_size` (frame rings, MPMC byte
    /// slots): no name, id 0.
    pub(crate) const fn bytes(slot_size: u32) -> Self {
        TypeIdentity {
            name: "",
            size: slot_size,
            align: 1,
            id: 0,
        }
    }

    /// The identity of `T`.
    ///
    /// A `T` whose [`Message::NAME`] is invalid, or whose size does not fit
    /// in a `u32`, is refused at compile time wherever `of::<T>()` is
    /// instantiated (a post-monomorphization error: code the compiler never
    /// instantiates, such as an unused function, is not checked).
    pub const fn of<T: Message>() -> Self {
        const {
            assert!(
                validate_name(T::NAME).is_ok(),
                "invalid Message::NAME: a message name is 1 to 64 bytes of printable ASCII \
                 without spaces (0x21..=0x7e)"
            );
            assert!(
                size_of::<T>() <= u32::MAX as usize,
                "a message must be smaller than 4 GiB"
            );
        }
        let size = size_of::<T>() as u32;
        let align = align_of::<T>() as u32;
        TypeIdentity {
            name: T::NAME,
            size,
            align,
            id: message_id(T::NAME, size as u64, align as u64),
        }
    }

    /// The message name, such as `"quote/v1"`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Size of one message in bytes.
    pub const fn size(&self) -> u32 {
        self.size
    }

    /// Alignment of one message in bytes.
    pub const fn align(&self) -> u32 {
        self.align
    }

    /// The 64-bit id recorded in a ring's header.
    pub const fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Display for TypeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\" ({} bytes, align {}, id {:#018x})",
            self.name, self.size, self.align, self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a written out from the documentation, independently of
    /// [`message_id`].
    fn reference(name: &str, size: u64, align: u64) -> u64 {
        let mut data = name.as_bytes().to_vec();
        data.extend_from_slice(&size.to_le_bytes());
        data.extend_from_slice(&align.to_le_bytes());
        data.iter().fold(0xcbf29ce484222325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        })
    }

    #[test]
    fn documented_example() {
        let id = TypeIdentity::of::<u64>();
        assert_eq!((id.name(), id.size(), id.align()), ("u64", 8, 8));
        assert_eq!(id.id(), reference("u64", 8, 8));
        assert_eq!(id.id(), 0xaf4c_548b_cc96_4472);
        assert_eq!(message_id("quote/v1", 24, 8), 0xda4f_f4dc_34e8_2d41);
        assert_eq!(
            id.to_string(),
            "\"u64\" (8 bytes, align 8, id 0xaf4c548bcc964472)"
        );
    }

    #[test]
    fn primitives() {
        fn check<T: Message>(name: &str) {
            let id = TypeIdentity::of::<T>();
            assert_eq!(id.name(), name);
            assert_eq!(id.size() as usize, size_of::<T>());
            assert_eq!(id.align() as usize, align_of::<T>());
            assert_eq!(
                id.id(),
                reference(name, size_of::<T>() as u64, align_of::<T>() as u64)
            );
        }
        check::<u8>("u8");
        check::<u16>("u16");
        check::<u32>("u32");
        check::<u64>("u64");
        check::<u128>("u128");
        check::<i8>("i8");
        check::<i16>("i16");
        check::<i32>("i32");
        check::<i64>("i64");
        check::<i128>("i128");
        check::<f32>("f32");
        check::<f64>("f64");
    }

    #[test]
    fn names() {
        assert_eq!(validate_name("quote/v1"), Ok(()));
        assert_eq!(validate_name("!~"), Ok(()));
        assert_eq!(validate_name(&"x".repeat(MAX_NAME_LEN)), Ok(()));
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_name(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { len: 65 })
        );
        assert_eq!(
            validate_name("a\u{7f}"),
            Err(NameError::InvalidByte {
                index: 1,
                byte: 0x7f
            })
        );
        assert_eq!(
            validate_name("é"),
            Err(NameError::InvalidByte {
                index: 0,
                byte: 0xc3
            })
        );
        assert_eq!(
            NameError::InvalidByte {
                index: 5,
                byte: b' '
            }
            .to_string(),
            "byte 5 of the message name is 0x20: a message name is printable ASCII without \
             spaces (0x21..=0x7e), e.g. \"quote/v1\""
        );
    }
}
