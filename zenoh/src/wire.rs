//! What travels beside each message: the attachment that carries the
//! source's session and sequence number and the ring's type identity.
//!
//! Layout (little-endian, 40 bytes plus the type name):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `b"shrz"` |
//! | 4 | format version ([`FORMAT`]) |
//! | 5 | length of the type name (at most 64) |
//! | 6..8 | reserved, zero |
//! | 8..16 | source session: a random number drawn when a bridge out starts |
//! | 16..24 | sequence number, 1 for the session's first message |
//! | 24..32 | type id (0 for byte messages) |
//! | 32..36 | message size (0 for byte messages) |
//! | 36..40 | message alignment (0 for byte messages) |
//! | 40.. | type name, UTF-8 |
//!
//! The far side treats it as untrusted input: a short, foreign or
//! malformed attachment is an error that names the key, never a panic.

use std::fmt;

/// First bytes of every attachment.
pub const MAGIC: [u8; 4] = *b"shrz";
/// The attachment format this crate writes and reads.
pub const FORMAT: u8 = 1;
/// Bytes before the type name.
const FIXED: usize = 40;
/// Longest type name (the ring header's limit).
pub const MAX_NAME: usize = 64;

/// A message type as rings record it: name, size, alignment and id.
/// Byte rings (frames, byte-slot MPMC) carry [`Identity::bytes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The type's name (`Message::NAME`); empty for byte messages.
    pub name: String,
    /// `size_of` the type; 0 for byte messages.
    pub size: u32,
    /// `align_of` the type; 0 for byte messages.
    pub align: u32,
    /// The 64-bit type id; 0 for byte messages.
    pub id: u64,
}

impl Identity {
    /// Variable-length byte messages (frame rings, byte-slot MPMC and
    /// broadcast rings).
    pub fn bytes() -> Identity {
        Identity {
            name: String::new(),
            size: 0,
            align: 0,
            id: 0,
        }
    }

    /// True for [`Identity::bytes`].
    pub fn is_bytes(&self) -> bool {
        self.id == 0 && self.size == 0 && self.name.is_empty()
    }

    /// The identity of the messages `seg` carries.
    pub fn of_ring(seg: &shmring::Segment) -> Identity {
        let layout = seg.layout();
        let desc = seg.descriptor();
        let name = desc.type_name().unwrap_or_default();
        let untyped = desc.type_id == 0 && name.is_empty();
        if untyped
            && matches!(
                layout.kind(),
                shmring::Kind::Frames | shmring::Kind::Mpmc | shmring::Kind::Broadcast
            )
        {
            return Identity::bytes();
        }
        Identity {
            name,
            size: layout.slot_size(),
            align: layout.slot_align(),
            id: desc.type_id,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_bytes() {
            return f.write_str("byte messages (no type)");
        }
        if self.name.is_empty() {
            f.write_str("an unnamed type")?;
        } else {
            write!(f, "{:?}", self.name)?;
        }
        write!(
            f,
            " ({} bytes, align {}, id {:#018x})",
            self.size, self.align, self.id
        )
    }
}

/// One message's attachment, decoded (borrowing from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The bridge-out run that sent it.
    pub session: u64,
    /// Its sequence number in that run (from 1).
    pub seq: u64,
    /// The type part: bytes 24.. of the attachment, equal for equal types
    /// (compare with [`identity_part`] of the expected type's attachment).
    identity: &'a [u8],
}

impl Header<'_> {
    /// True when the message's type is the one whose [`encode`]d
    /// attachment is `expected` (no allocation: compares bytes).
    pub fn is_type(&self, expected: &[u8]) -> bool {
        identity_part(expected) == self.identity
    }

    /// The type the source ring carries.
    pub fn identity(&self) -> Identity {
        let b = self.identity;
        Identity {
            // `decode` checked that the name is UTF-8.
            name: String::from_utf8_lossy(&b[FIXED - 24..]).into_owned(),
            size: u32_at(b, 8),
            align: u32_at(b, 12),
            id: u64_at(b, 0),
        }
    }
}

/// The type part of an attachment made by [`encode`].
pub fn identity_part(attachment: &[u8]) -> &[u8] {
    attachment.get(24..).unwrap_or_default()
}

/// The bytes of an attachment without its sequence number: written once
/// per bridge, then [`stamp`]ed per message.
pub fn encode(session: u64, identity: &Identity) -> Vec<u8> {
    let name = identity.name.as_bytes();
    let name = &name[..name.len().min(MAX_NAME)];
    let mut out = Vec::with_capacity(FIXED + name.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT);
    // `name` was cut to MAX_NAME (64) bytes above, so it fits a u8.
    out.push(name.len() as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&session.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&identity.id.to_le_bytes());
    out.extend_from_slice(&identity.size.to_le_bytes());
    out.extend_from_slice(&identity.align.to_le_bytes());
    out.extend_from_slice(name);
    out
}

/// Writes `seq` into an attachment made by [`encode`].
pub fn stamp(attachment: &mut [u8], seq: u64) {
    if let Some(field) = attachment.get_mut(16..24) {
        field.copy_from_slice(&seq.to_le_bytes());
    }
}

/// Why an attachment was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// No attachment at all: not sent by a shmring bridge.
    Missing,
    /// Not a shmring attachment, or a format this version does not read.
    Foreign(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Missing => {
                f.write_str("a message without an attachment (not sent by `shmring bridge out`)")
            }
            DecodeError::Foreign(what) => write!(f, "a message with {what}"),
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Decodes an attachment (any bytes: checked before use).
pub fn decode(attachment: Option<&[u8]>) -> Result<Header<'_>, DecodeError> {
    let b = attachment.ok_or(DecodeError::Missing)?;
    if b.len() < FIXED || b[0..4] != MAGIC {
        return Err(DecodeError::Foreign(format!(
            "a {}-byte attachment that is not a shmring bridge's",
            b.len()
        )));
    }
    if b[4] != FORMAT {
        return Err(DecodeError::Foreign(format!(
            "attachment format {} (this bridge reads format {FORMAT}: upgrade the older side)",
            b[4]
        )));
    }
    let name_len = usize::from(b[5]);
    if name_len > MAX_NAME || b.len() != FIXED + name_len {
        return Err(DecodeError::Foreign(format!(
            "a {}-byte attachment whose type name claims {name_len} bytes",
            b.len()
        )));
    }
    std::str::from_utf8(&b[FIXED..])
        .map_err(|_| DecodeError::Foreign("a type name that is not UTF-8".into()))?;
    Ok(Header {
        session: u64_at(b, 8),
        seq: u64_at(b, 16),
        identity: &b[24..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_stamp() {
        let id = Identity {
            name: "quote/v1".into(),
            size: 16,
            align: 8,
            id: 0xdead_beef,
        };
        let mut a = encode(42, &id);
        stamp(&mut a, 7);
        let h = decode(Some(&a)).unwrap();
        assert_eq!(h.session, 42);
        assert_eq!(h.seq, 7);
        assert_eq!(h.identity(), id);
        assert!(h.is_type(&encode(9, &id)));
        assert!(!h.is_type(&encode(9, &Identity::bytes())));
        assert_eq!(
            h.identity().to_string(),
            "\"quote/v1\" (16 bytes, align 8, id 0x00000000deadbeef)"
        );
        let bytes = encode(1, &Identity::bytes());
        assert!(decode(Some(&bytes)).unwrap().identity().is_bytes());
    }

    #[test]
    fn bad_attachments_are_errors() {
        assert_eq!(decode(None), Err(DecodeError::Missing));
        assert!(decode(Some(b"short")).is_err());
        let mut a = encode(1, &Identity::bytes());
        a[4] = 9;
        assert!(matches!(decode(Some(&a)), Err(DecodeError::Foreign(w)) if w.contains("format 9")));
        let mut a = encode(1, &Identity::bytes());
        a[5] = 3; // claims a name that is not there
        assert!(decode(Some(&a)).is_err());
        let mut a = encode(1, &Identity::bytes());
        a[5] = 200;
        a.resize(FIXED + 200, b'x');
        assert!(decode(Some(&a)).is_err());
    }
}
