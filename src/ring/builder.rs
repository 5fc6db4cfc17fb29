//! One builder for every ring handle: how a ring is found or made, checked
//! against what the handle needs, and attached.
//!
//! Each handle type (`spsc::Producer<T>`, `frames::Consumer`, ...) names
//! its kind and message type through [`Endpoint`], so the builder cannot be
//! asked for a ring that disagrees with the handle: an existing ring of
//! another kind, message type, capacity or role count is a
//! [`Error::LayoutMismatch`] naming both sides.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::{Kind, Layout, Overflow};
use crate::message::TypeIdentity;
use crate::segment::{HugePages, RingSpec, Segment, SegmentOptions};
use crate::wait::WaitStrategy;

/// What the builder was asked for, handed to a kind to compute its shape.
#[derive(Clone, Copy, Debug, Default)]
#[doc(hidden)]
pub struct Request {
    /// Slots (typed kinds) or bytes (frames); `None`: the kind's default.
    pub(crate) capacity: Option<u64>,
    /// Producer roles (MPMC); `None`: the kind's default.
    pub(crate) producers: Option<u32>,
    /// Consumer roles (MPMC) or subscriber roles (broadcast); `None`: the
    /// kind's default.
    pub(crate) consumers: Option<u32>,
    /// Broadcast: the overflow policy; `None`: [`Overflow::default`].
    pub(crate) overflow: Option<Overflow>,
    /// Byte-message rings with fixed slots (broadcast): the largest message;
    /// `None`: the kind's default.
    pub(crate) slot_size: Option<u32>,
}

/// Where a broadcast subscriber starts reading when it joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Start {
    /// The oldest message still in the ring (on a `block` ring, the oldest
    /// one the publisher is keeping for its slowest subscriber). Default:
    /// a subscriber started before the publisher, or just after it,
    /// misses nothing.
    #[default]
    Oldest,
    /// The next message published after joining.
    Latest,
    /// The message with this sequence number (for a restarted subscriber
    /// that recorded how far it got). If it is no longer in the ring, the
    /// first pop says how many were missed and continues at the oldest.
    At(u64),
}

/// The shape a kind computes for a request: the layout, the message type
/// and how a new ring is initialized before it is published.
#[doc(hidden)]
pub struct Shape {
    pub(crate) layout: Layout,
    pub(crate) identity: TypeIdentity,
    pub(crate) init: fn(&Segment) -> Result<()>,
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shape")
            .field("layout", &self.layout)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Shape {
    /// What the segment needs to create the ring.
    pub(crate) fn spec(&self) -> RingSpec<'_> {
        RingSpec {
            layout: &self.layout,
            type_id: self.identity.id(),
            type_name: self.identity.name(),
            init: self.init,
        }
    }
}

/// Refuses role counts for kinds with one producer and one consumer.
pub(crate) fn one_role_each(request: &Request, kind: &str) -> Result<()> {
    if request.overflow.is_some() || request.slot_size.is_some() {
        return Err(Error::InvalidConfig {
            what: format!(
                "{kind} ring has no overflow policy or slot size setting; those are for broadcast rings"
            ),
        });
    }
    if request.producers.is_some() || request.consumers.is_some() {
        return Err(Error::InvalidConfig {
            what: format!(
                "{kind} ring has one producer and one consumer; role counts are for mpmc rings"
            ),
        });
    }
    Ok(())
}

/// How a handle behaves once attached.
#[derive(Clone, Copy, Debug, Default)]
#[doc(hidden)]
pub struct Settings {
    /// How blocking calls wait; `None`: [`WaitStrategy::default`].
    pub(crate) strategy: Option<WaitStrategy>,
    /// How long a dropped producer waits for its unread messages to be
    /// taken before the ring may go away with them.
    pub(crate) linger: Duration,
    /// Broadcast subscribers: where to start.
    pub(crate) start: Start,
}

/// The one-expression constructors every handle type has: `open_or_create`,
/// `create`, `open` and `builder`. `$role` names the role taken, `$units`
/// what the capacity counts.
macro_rules! entry_points {
    ($role:literal, $units:literal) => {
        #[doc = concat!(
            "Creates the ring `name` with room for `capacity` ", $units,
            ", or joins it if it exists (it must be a ring of the same kind and message type, \
             with that capacity: otherwise [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) \
             naming both), and takes ", $role, " role."
        )]
        pub fn open_or_create(name: &str, capacity: u64) -> $crate::Result<Self> {
            Self::builder(name).capacity(capacity).open_or_create()
        }

        #[doc = concat!(
            "Creates the ring `name` with room for `capacity` ", $units, " and takes ", $role,
            " role; [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the name is taken."
        )]
        pub fn create(name: &str, capacity: u64) -> $crate::Result<Self> {
            Self::builder(name).capacity(capacity).create()
        }

        #[doc = concat!(
            "Takes ", $role, " role of the existing ring `name`; \
             [`Error::NotFound`](crate::Error::NotFound) at once if there is none. \
             To wait for its creator: `builder(name).wait_for(timeout).open()`."
        )]
        pub fn open(name: &str) -> $crate::Result<Self> {
            Self::builder(name).open()
        }

        /// A builder for the other options: directory, persistence,
        /// permissions, waiting for the creator, the wait strategy,
        /// lingering, huge pages, role counts (MPMC).
        pub fn builder(name: impl Into<String>) -> $crate::ring::Builder<Self> {
            $crate::ring::Builder::new(name)
        }
    };
}
pub(crate) use entry_points;

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// A ring handle the [`Builder`] can make: the kind and the message type
/// come from the handle's type. Implemented by every producer and consumer
/// type of this crate, and by no other type.
pub trait Endpoint: Sized + Sealed {
    /// "producer", "consumer", ...: for messages.
    #[doc(hidden)]
    const ROLE: &'static str;
    /// The ring this handle needs, for a request.
    #[doc(hidden)]
    fn shape(request: &Request) -> Result<Shape>;
    /// Takes this handle's role on a ring whose shape was checked.
    #[doc(hidden)]
    fn attach(seg: Arc<Segment>, settings: &Settings) -> Result<Self>;
}

/// Opens or creates a ring and attaches one handle to it.
///
/// Made by each handle type's `builder(name)`; the common cases have
/// shortcuts (`open`, `create`, `open_or_create` on the handle type).
///
/// ```
/// # fn main() -> Result<(), shmring::Error> {
/// # let name = format!("doc-builder-{}", std::process::id());
/// use std::time::Duration;
/// use shmring::spsc::{Consumer, Producer};
///
/// let mut tx = Producer::<u64>::builder(&name).capacity(256).persistent(false).create()?;
/// let mut rx = Consumer::<u64>::builder(&name).wait_for(Duration::from_secs(1)).open()?;
/// tx.try_push(7)?;
/// assert_eq!(rx.try_pop()?, 7);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `open`, `create` or `open_or_create`"]
pub struct Builder<H> {
    name: String,
    request: Request,
    options: SegmentOptions,
    settings: Settings,
    wait_for: Option<Duration>,
    handle: PhantomData<fn() -> H>,
}

impl<H> Clone for Builder<H> {
    fn clone(&self) -> Self {
        Builder {
            name: self.name.clone(),
            request: self.request,
            options: self.options.clone(),
            settings: self.settings,
            wait_for: self.wait_for,
            handle: PhantomData,
        }
    }
}

impl<H> fmt::Debug for Builder<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("handle", &std::any::type_name::<H>())
            .field("name", &self.name)
            .field("request", &self.request)
            .field("options", &self.options)
            .field("settings", &self.settings)
            .field("wait_for", &self.wait_for)
            .finish()
    }
}

impl<H: Endpoint> Builder<H> {
    /// A builder for the ring called `name` (a file name in `/dev/shm`, or
    /// in the directory set with [`dir`](Self::dir)).
    pub fn new(name: impl Into<String>) -> Self {
        Builder {
            name: name.into(),
            request: Request::default(),
            options: SegmentOptions::new(),
            settings: Settings::default(),
            wait_for: None,
            handle: PhantomData,
        }
    }

    /// Capacity of a ring this creates: slots for typed rings, bytes for
    /// frame rings; a power of two. When opening an existing ring, a
    /// capacity set here must match the ring's (otherwise
    /// [`Error::LayoutMismatch`]).
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.request.capacity = Some(capacity);
        self
    }

    /// Producer roles of an MPMC ring this creates (default 64); checked
    /// against an existing ring when set.
    pub fn producers(mut self, n: u32) -> Self {
        self.request.producers = Some(n);
        self
    }

    /// Consumer roles of an MPMC ring this creates (default 64); checked
    /// against an existing ring when set.
    pub fn consumers(mut self, n: u32) -> Self {
        self.request.consumers = Some(n);
        self
    }

    /// Subscriber roles of a broadcast ring this creates (default 32, at
    /// most 1024); checked against an existing ring when set.
    pub fn subscribers(mut self, n: u32) -> Self {
        self.request.consumers = Some(n);
        self
    }

    /// What the publisher of a broadcast ring this creates does when the
    /// slowest subscriber is a whole ring behind (default
    /// [`Overflow::default`]); checked against an existing ring when set.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.request.overflow = Some(overflow);
        self
    }

    /// Largest message of a byte-message broadcast ring this creates, in
    /// bytes; checked against an existing ring when set.
    pub fn slot_size(mut self, bytes: u32) -> Self {
        self.request.slot_size = Some(bytes);
        self
    }

    /// Broadcast subscribers: where to start reading (default
    /// [`Start::Oldest`]).
    pub fn start(mut self, start: Start) -> Self {
        self.settings.start = start;
        self
    }

    /// Keep the ring (and its unread messages) when its last user detaches.
    /// Default `false`: the last user to detach removes it.
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.options = self.options.persistent(persistent);
        self
    }

    /// Permission bits of a ring this creates (default 0600).
    pub fn mode(mut self, mode: u32) -> Self {
        self.options = self.options.mode(mode);
        self
    }

    /// The directory holding the ring: `/dev/shm` (default), or another
    /// tmpfs or hugetlbfs mount.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options = self.options.dir(dir);
        self
    }

    /// Huge pages for a ring this creates (see [`HugePages`]).
    pub fn huge_pages(mut self, huge_pages: HugePages) -> Self {
        self.options = self.options.huge_pages(huge_pages);
        self
    }

    /// Prefault the ring's pages when mapping it.
    pub fn populate(mut self, populate: bool) -> Self {
        self.options = self.options.populate(populate);
        self
    }

    /// Lock the ring's pages in memory (`mlock`).
    pub fn lock_memory(mut self, lock_memory: bool) -> Self {
        self.options = self.options.lock_memory(lock_memory);
        self
    }

    /// `open`: wait up to `timeout` for the ring to be created (by default
    /// a missing ring is [`Error::NotFound`] at once). Also bounds the wait
    /// for a creator that is still initializing it.
    pub fn wait_for(mut self, timeout: Duration) -> Self {
        self.wait_for = Some(timeout);
        self.options = self.options.timeout(timeout);
        self
    }

    /// How the handle's blocking calls wait (default
    /// [`WaitStrategy::default`]).
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.settings.strategy = Some(strategy);
        self
    }

    /// Producers: when dropped with messages no consumer has taken, wait up
    /// to `linger` for a consumer to take them (default: no wait). What is
    /// still unread after that, on a ring about to be removed, is reported
    /// with `log::warn!`. See the producers' `flush` for an explicit wait.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.settings.linger = linger;
        self
    }

    /// Attaches to an existing ring; [`Error::NotFound`] if there is none
    /// (after waiting up to [`wait_for`](Self::wait_for), if set).
    pub fn open(self) -> Result<H> {
        let shape = H::shape(&self.request)?;
        let seg = self.open_segment()?;
        check_existing(&seg, &shape, &self.request)?;
        H::attach(Arc::new(seg), &self.settings)
    }

    /// Creates the ring; [`Error::AlreadyExists`] if the name is taken.
    pub fn create(self) -> Result<H> {
        let shape = H::shape(&self.request)?;
        let seg = self.options.create(&self.name, &shape.spec())?;
        H::attach(Arc::new(seg), &self.settings)
    }

    /// Attaches to the ring if it exists (checking that it is the ring
    /// asked for), creates it otherwise.
    pub fn open_or_create(self) -> Result<H> {
        let shape = H::shape(&self.request)?;
        let seg = self.options.open_or_create(&self.name, &shape.spec())?;
        check_existing(&seg, &shape, &self.request)?;
        H::attach(Arc::new(seg), &self.settings)
    }

    /// Receives an anonymous ring sent over a Unix socket by
    /// [`Segment::send`] and attaches to it.
    pub fn receive(self, socket: &std::os::unix::net::UnixStream) -> Result<H> {
        let shape = H::shape(&self.request)?;
        let seg = self.options.receive(socket)?;
        check_existing(&seg, &shape, &self.request)?;
        H::attach(Arc::new(seg), &self.settings)
    }

    fn open_segment(&self) -> Result<Segment> {
        let Some(timeout) = self.wait_for else {
            return self.options.open(&self.name);
        };
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(100);
        loop {
            match self.options.open(&self.name) {
                Err(Error::NotFound { path }) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::Timeout {
                            path,
                            what: format!("waiting for the ring to be created (as a {})", H::ROLE),
                            waited: timeout,
                        });
                    }
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }
}

/// Creates an anonymous ring (a sealed memfd) of `shape` and attaches both
/// halves to it in this process.
pub(crate) fn anonymous_pair<P: Endpoint, C: Endpoint>(request: &Request) -> Result<(P, C)> {
    let shape = P::shape(request)?;
    let label = match shape.identity.name() {
        "" => shape.layout.kind().name(),
        name => name,
    };
    let seg = SegmentOptions::new().create_anonymous(label, &shape.spec())?;
    let seg = Arc::new(seg);
    let settings = Settings::default();
    let producer = P::attach(seg.clone(), &settings)?;
    let consumer = C::attach(seg, &settings)?;
    Ok((producer, consumer))
}

/// Is `seg` a ring of `kind` carrying `identity`? The error names both
/// sides.
pub(crate) fn check_ring(seg: &Segment, kind: Kind, identity: &TypeIdentity) -> Result<()> {
    check_kind(seg, kind)?;
    let have = seg.layout();
    let mismatch = |what: String| {
        Err(Error::LayoutMismatch {
            path: seg.path().to_path_buf(),
            what,
        })
    };
    let desc = seg.descriptor();
    if desc.type_id != identity.id()
        || have.slot_size() != identity.size()
        || have.slot_align() != identity.align()
    {
        return mismatch(format!(
            "the ring carries {}, this handle carries {}",
            describe(
                desc.type_name().as_deref().unwrap_or(""),
                have.slot_size(),
                have.slot_align(),
                desc.type_id
            ),
            describe(
                identity.name(),
                identity.size(),
                identity.align(),
                identity.id()
            )
        ));
    }
    Ok(())
}

/// Is `seg` a ring of `kind` (of any message type)?
pub(crate) fn check_kind(seg: &Segment, kind: Kind) -> Result<()> {
    let have = seg.layout().kind();
    if have != kind {
        return Err(Error::LayoutMismatch {
            path: seg.path().to_path_buf(),
            what: format!("the ring is a {have} ring, this handle needs a {kind} ring"),
        });
    }
    Ok(())
}

/// Does `seg` record a message type (a typed ring), rather than byte
/// messages (type id 0, no name)?
pub(crate) fn carries_type(seg: &Segment) -> bool {
    let desc = seg.descriptor();
    desc.type_id != 0 || desc.type_name().is_some_and(|n| !n.is_empty())
}

/// A message type in words, as `check_ring` names both sides.
fn describe(name: &str, size: u32, align: u32, id: u64) -> String {
    if name.is_empty() && id == 0 {
        return format!("untyped bytes ({size}-byte slots)");
    }
    let name = if name.is_empty() {
        "an unnamed type".to_string()
    } else {
        format!("{name:?}")
    };
    format!("{name} ({size} bytes, align {align}, id {id:#018x})")
}

/// Is the ring `seg` the one `shape` describes? Compares the kind and the
/// message type always, the capacity and role counts when they were asked
/// for; the error names both sides.
fn check_existing(seg: &Segment, shape: &Shape, request: &Request) -> Result<()> {
    let have = seg.layout();
    // Byte rings whose slot size was not asked for take the ring's.
    let untyped = shape.identity.id() == 0 && shape.identity.name().is_empty();
    if untyped && request.slot_size.is_none() {
        let identity = TypeIdentity::bytes(have.slot_size()).with_align(have.slot_align());
        check_ring(seg, shape.layout.kind(), &identity)?;
    } else {
        check_ring(seg, shape.layout.kind(), &shape.identity)?;
    }
    let want = &shape.layout;
    let mismatch = |what: String| {
        Err(Error::LayoutMismatch {
            path: seg.path().to_path_buf(),
            what,
        })
    };
    if request.capacity.is_some() && have.capacity() != want.capacity() {
        return mismatch(format!(
            "the ring's capacity is {} {unit}, {} {unit} were asked for",
            have.capacity(),
            want.capacity(),
            unit = have.kind().capacity_unit(),
        ));
    }
    if request.producers.is_some() && have.max_producers() != want.max_producers() {
        return mismatch(format!(
            "the ring has {} producer roles, {} were asked for",
            have.max_producers(),
            want.max_producers()
        ));
    }
    if request.overflow.is_some() && have.overflow() != want.overflow() {
        return mismatch(format!(
            "the ring's overflow policy is {}, {} was asked for",
            have.overflow(),
            want.overflow()
        ));
    }
    if request.slot_size.is_some() && have.slot_size() != want.slot_size() {
        return mismatch(format!(
            "the ring's slots hold {} bytes, {} were asked for",
            have.slot_size(),
            want.slot_size()
        ));
    }
    if request.consumers.is_some() && have.max_consumers() != want.max_consumers() {
        return mismatch(format!(
            "the ring has {} {} roles, {} were asked for",
            have.max_consumers(),
            if have.kind() == Kind::Broadcast {
                "subscriber"
            } else {
                "consumer"
            },
            want.max_consumers()
        ));
    }
    Ok(())
}
