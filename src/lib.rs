//! # shmring
//!
//! Lock-free ring buffers in POSIX shared memory, for moving messages between
//! processes on one Linux host at close to the speed of the hardware.
//!
//! A ring lives in a shared-memory object (`/dev/shm/NAME` by default) that
//! starts with a versioned, validated header (see [`raw`]). Processes
//! attach to it by name through a [`Segment`]; the lifecycle protocol in
//! [`segment`] guarantees that one name never refers to two live objects and
//! that a ring is removed when its last user detaches (unless it is
//! persistent).
//!
//! ```no_run
//! use shmring::{Kind, Layout, SegmentOptions};
//!
//! // 64 KiB of byte frames, kept when the last user detaches.
//! let layout = Layout::new(Kind::Frames, 1 << 16, 1, 1)?;
//! let seg = SegmentOptions::new()
//!     .persistent(true)
//!     .open_or_create("telemetry", &layout, 0)?;
//! println!("attached to {} (inode {})", seg.path().display(), seg.inode());
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! Everything read from shared memory is treated as untrusted: a buggy or
//! hostile peer can make this crate return [`Error::Corrupted`], never crash
//! or hang it.
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod error;
pub mod frames;
mod layout;
pub mod message;
pub mod mpmc;
pub mod ring;
pub mod segment;
pub mod spsc;
mod sync;
mod sys;
pub mod wait;

pub mod raw;

pub use bytemuck::{Pod, Zeroable};
pub use error::{Error, Result};
pub use layout::{Kind, Layout};
pub use message::{Message, TypeIdentity};
pub use segment::{Segment, SegmentOptions};
/// `#[derive(Message)]`: see [`message`].
#[cfg(feature = "derive")]
pub use shmring_derive::Message;

/// Not public API: paths used by the code `#[derive(Message)]` generates.
#[doc(hidden)]
pub mod __private {
    pub use bytemuck;
}
