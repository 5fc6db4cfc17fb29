//! # shmring-zenoh
//!
//! Bridges between [`shmring`] rings and [Zenoh](https://zenoh.io) key
//! expressions, so that a ring's messages reach other hosts without the
//! producer or the consumer changing:
//!
//! ```text
//! host A: producer -> ring A -> bridge out --zenoh/tcp--> bridge in -> ring B -> consumer :host B
//! ```
//!
//! - [`out::run`] consumes a ring of any kind (frames, SPSC, MPMC, or as
//!   one subscriber of a broadcast ring; byte or typed: a typed ring's
//!   messages go as the bytes of each value) and publishes each message,
//!   bytes unchanged, to a key expression. Each
//!   message carries an attachment ([`wire`]): the bridge's session (a
//!   random number per run), the message's sequence number (1, 2, ...) and
//!   the ring's type identity (name, size, alignment, id).
//! - [`inbound::run`] subscribes to a key expression, refuses messages of
//!   another type than its ring's (the error names both), counts gaps
//!   exactly from the sequence numbers ([`gaps`]) and produces into a
//!   local ring.
//!
//! Delivery is reliable by default: Zenoh's reliable channel (TCP) with
//! congestion control *block*, so a full destination ring slows the
//! bridge in, which stops reading the network, which blocks the bridge
//! out, which stops taking from its ring, which makes the producer wait
//! (or not, as its ring's policy says). A bridge out takes nothing from
//! its ring while no subscriber matches its key: messages wait in the
//! ring, not in the void. Best effort ([`net::NetOptions::best_effort`],
//! congestion control *drop*) drops instead of blocking; what is dropped
//! shows as gaps.
//!
//! What is lost when a bridge in is killed is what was on the wire or in
//! its queue at that moment. A bridge in keeps the destination ring's
//! upstream record ([`shmring::segment::UpstreamWriter`]: last sequence
//! number, delivered and gap counts, written before and after each push),
//! so the restarted bridge continues its predecessor's count and counts
//! exactly those messages as a gap ([`inbound::Event::Resumed`]); `shmring
//! stat` shows the record.
#![deny(unsafe_code, missing_docs, missing_debug_implementations)]

pub mod gaps;
pub mod inbound;
pub mod net;
pub mod out;
pub mod wire;

/// The Zenoh crate the bridges are built on (this build's features: TCP
/// only), for callers that use a session next to a bridge, such as
/// `shmring bench --kind bridge`'s direct publisher/subscriber baseline.
pub use zenoh;

use std::time::Duration;

/// How long a bridge waits at a time before it looks at its stop
/// condition again.
pub const SLICE: Duration = Duration::from_millis(250);

/// What went wrong in a bridge.
#[derive(Debug)]
pub enum BridgeError {
    /// An option is wrong (an endpoint, a key expression): what to fix.
    Config(String),
    /// The network could not be reached, or Zenoh failed.
    Network(String),
    /// The message type of the source is not the destination ring's.
    TypeMismatch(Box<Mismatch>),
    /// A message that did not come from a shmring bridge, or in a format
    /// this version does not read.
    Foreign {
        /// The key expression it came on.
        key: String,
        /// What was wrong with it.
        what: String,
    },
    /// A ring this bridge does not carry (yet), or a message that does
    /// not fit the destination ring.
    Unsupported(String),
    /// The ring failed.
    Ring(shmring::Error),
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BridgeError::Config(w) | BridgeError::Network(w) | BridgeError::Unsupported(w) => {
                f.write_str(w)
            }
            BridgeError::TypeMismatch(m) => write!(
                f,
                "type mismatch on {:?}: the source ring sends {}, but {} carries {}; bridge into a ring of the same message type",
                m.key,
                m.source,
                m.ring.display(),
                m.expected
            ),
            BridgeError::Foreign { key, what } => {
                write!(f, "refused on {key:?}: {what}")
            }
            BridgeError::Ring(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BridgeError {}

/// The two sides of a [`BridgeError::TypeMismatch`].
#[derive(Debug)]
pub struct Mismatch {
    /// The key expression.
    pub key: String,
    /// What the source sends.
    pub source: wire::Identity,
    /// The destination ring.
    pub ring: std::path::PathBuf,
    /// What it carries.
    pub expected: wire::Identity,
}

impl From<shmring::Error> for BridgeError {
    fn from(e: shmring::Error) -> Self {
        BridgeError::Ring(e)
    }
}

/// Zenoh's error text without the source location it appends
/// (" at /path/to/file.rs:123.").
pub(crate) fn reason(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    if let Some(at) = text.rfind(" at ") {
        let place = text[at + 4..].trim_end_matches('.');
        let located = place
            .rsplit_once(".rs:")
            .is_some_and(|(_, line)| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()));
        if located {
            return text[..at].to_string();
        }
    }
    text
}

/// A random 64-bit number for a bridge-out session (not cryptographic:
/// it only has to differ between runs).
pub(crate) fn session_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn reason_drops_the_source_location() {
        let e = "Timeout! at /root/.cargo/registry/src/x/zenoh-1.10.2/src/net/runtime/orchestrator.rs:388.";
        assert_eq!(super::reason(&e), "Timeout!");
        assert_eq!(super::reason(&"meet at noon"), "meet at noon");
    }
}
