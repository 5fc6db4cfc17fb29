//! For tools (the CLI, fuzzers): the shared layout, and specs for creating
//! rings by hand with [`SegmentOptions`](crate::SegmentOptions). Not needed
//! to use rings (the handles' builders do all this), and may change with
//! the layout version.

pub use crate::layout::*;

use crate::message::{Message, TypeIdentity};
use crate::segment::{self, RingSpec};

/// The initializer a new ring of `kind` needs before it is published.
pub fn initializer(kind: Kind) -> fn(&segment::Segment) -> crate::Result<()> {
    match kind {
        Kind::Mpmc => crate::mpmc::initialize,
        Kind::Spsc | Kind::Frames | Kind::Broadcast => segment::zeroed,
    }
}

/// The spec of an untyped ring (byte frames, or MPMC byte slots, as
/// `shmring create` makes): no message name, type id 0.
pub fn bytes_spec(layout: &Layout) -> RingSpec<'_> {
    RingSpec {
        layout,
        type_id: 0,
        type_name: "",
        init: initializer(layout.kind()),
    }
}

/// The spec of a ring of `layout` carrying `T`.
pub fn typed_spec<T: Message>(layout: &Layout) -> RingSpec<'_> {
    let identity = TypeIdentity::of::<T>();
    RingSpec {
        layout,
        type_id: identity.id(),
        type_name: identity.name(),
        init: initializer(layout.kind()),
    }
}
