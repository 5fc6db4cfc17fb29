//! How to create or attach to a segment: [`SegmentOptions`], the
//! [`RingSpec`] a ring kind hands over, huge pages, and the planning of a
//! new ring's backing (page size, object size, backing bits).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Segment;
use crate::error::{Error, Result};
use crate::layout::{self, Layout};
use crate::sys;

/// The default directory: the POSIX shared-memory file system.
pub const DEFAULT_DIR: &str = "/dev/shm";
/// How long `open` waits for a creator to finish, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a ring kind hands the segment to create a ring: its shape, its
/// message type, and how its memory is initialized before it is published.
/// The segment knows no ring kind; each kind's `spec` functions build one.
#[derive(Clone, Copy)]
pub struct RingSpec<'a> {
    /// The shape (from the kind's checked constructors).
    pub layout: &'a Layout,
    /// The message type's id (`TypeIdentity::id`; 0 for byte rings).
    pub type_id: u64,
    /// The message type's name, recorded in the header for `stat`
    /// (empty for byte rings).
    pub type_name: &'a str,
    /// Writes the ring's initial state after the header and before the
    /// ring is published as ready. The object starts zeroed, which is the
    /// empty state of SPSC and frame rings; MPMC writes its slots'
    /// sequence numbers.
    pub init: fn(&Segment) -> Result<()>,
}

impl std::fmt::Debug for RingSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSpec")
            .field("layout", self.layout)
            .field("type_id", &format_args!("{:#x}", self.type_id))
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

/// The initializer of kinds whose empty state is all zero.
pub fn zeroed(_: &Segment) -> Result<()> {
    Ok(())
}

/// How to create or attach to a ring's shared-memory object: the segment
/// level, below the ring handles (whose builders use it). Tools make rings
/// of a given [`Layout`] with a [`RingSpec`] from [`crate::raw`]:
///
/// ```
/// # fn main() -> Result<(), shmring::Error> {
/// # let name = &format!("doc-segment-{}", std::process::id());
/// use shmring::{Kind, Layout, SegmentOptions};
/// let layout = Layout::new(Kind::Frames, 1 << 16, 1, 1)?;
/// let seg = SegmentOptions::new().open_or_create(name, &shmring::raw::bytes_spec(&layout))?;
/// assert!(seg.is_current());
/// let rx = shmring::frames::Consumer::attach(std::sync::Arc::new(seg))?;
/// # drop(rx);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    pub(super) dir: PathBuf,
    pub(super) mode: u32,
    pub(super) persistent: bool,
    pub(super) timeout: Duration,
    pub(super) huge_pages: HugePages,
    pub(super) populate: bool,
    pub(super) lock_memory: bool,
}

/// Whether a new ring should live on huge pages (fewer TLB misses).
///
/// In a hugetlbfs directory (see [`hugetlbfs_mount`]) every ring is on huge
/// pages and its size is rounded up to the huge page size; there must be
/// enough free ones (`HugePages_Free`) whatever this says. In a tmpfs such
/// as `/dev/shm`, `Prefer` and `Require` ask for transparent huge pages
/// with `madvise(MADV_HUGEPAGE)` (the size is rounded up to 2 MiB), which
/// the kernel's `shmem_enabled` setting must allow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HugePages {
    /// Normal pages (unless the directory is a hugetlbfs).
    #[default]
    Off,
    /// Huge pages if available; otherwise normal pages, with the reason
    /// logged once (the `log` crate) and shown by `stat`.
    Prefer,
    /// Huge pages or [`Error::HugePagesUnavailable`].
    Require,
}

impl HugePages {
    pub(super) fn bits(self) -> u32 {
        match self {
            HugePages::Off => layout::BACKING_HUGE_OFF,
            HugePages::Prefer => layout::BACKING_HUGE_PREFER,
            HugePages::Require => layout::BACKING_HUGE_REQUIRE,
        }
    }
}

/// The first hugetlbfs mount listed in `/proc/mounts`, to pass to
/// [`SegmentOptions::dir`] for rings on huge pages.
pub fn hugetlbfs_mount() -> Option<PathBuf> {
    sys::hugetlbfs_mount()
}

/// Size of a transparent huge page (PMD) on x86-64 and arm64 with 4 KiB
/// pages.
pub(super) const THP_SIZE: u64 = 2 << 20;

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            dir: PathBuf::from(DEFAULT_DIR),
            mode: 0o600,
            persistent: false,
            timeout: DEFAULT_TIMEOUT,
            huge_pages: HugePages::Off,
            populate: false,
            lock_memory: false,
        }
    }
}

impl SegmentOptions {
    /// Defaults: `/dev/shm`, mode 0600, removed on last detach, 2 s timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The directory holding the object: `/dev/shm` (the default) or any
    /// tmpfs or hugetlbfs mount.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// Permission bits for a created object (default 0600: only the
    /// creating user may attach). Applied exactly, regardless of the umask.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Keep the object (and its messages) when the last user detaches.
    /// Default `false`: the last user to detach removes it.
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// How long `open` may wait for a creator that is still initializing,
    /// and `create` for its exclusive lock.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Huge pages for a ring this creates (see [`HugePages`]); recorded in
    /// the header and shown by `stat`.
    pub fn huge_pages(mut self, huge_pages: HugePages) -> Self {
        self.huge_pages = huge_pages;
        self
    }

    /// Prefault every page when mapping (`MAP_POPULATE`), so the first
    /// messages do not page-fault. A ring created with it is prefaulted on
    /// every attach, by every process.
    pub fn populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// Lock the ring's pages in memory (`mlock`) on attach, so they are
    /// never swapped or reclaimed. A ring created with it is locked on every
    /// attach, by every process; beyond `RLIMIT_MEMLOCK` attaching fails
    /// with [`Error::MemoryLockLimit`].
    pub fn lock_memory(mut self, lock_memory: bool) -> Self {
        self.lock_memory = lock_memory;
        self
    }

    /// Backing bits an attach applies on top of what the header records.
    pub(super) fn attach_bits(&self) -> u32 {
        let mut bits = 0;
        if self.populate {
            bits |= layout::BACKING_POPULATE;
        }
        if self.lock_memory {
            bits |= layout::BACKING_LOCK;
        }
        bits
    }

    /// Decides the backing of a new ring in `self.dir`: (backing bits, page
    /// size, size of the object).
    pub(super) fn plan_backing(&self, path: &Path, layout: &Layout) -> Result<(u32, u64, u64)> {
        let mut bits = self.huge_pages.bits() | self.attach_bits();
        let unavailable = |reason: String| Error::HugePagesUnavailable {
            path: path.to_path_buf(),
            reason,
        };
        let round = |page: u64| {
            layout
                .total_size
                .checked_next_multiple_of(page)
                .ok_or_else(|| Error::InvalidConfig {
                    what: "ring too large".into(),
                })
        };
        if let Some(page) =
            sys::hugetlbfs_page_size(&self.dir).map_err(|e| Error::io(&self.dir, "statfs", e))?
        {
            let total = round(page)?;
            let need = total / page;
            let free = sys::huge_pages_free(page).unwrap_or(0);
            if free < need {
                return Err(unavailable(format!(
                    "{need} huge pages of {} KiB needed in {}, HugePages_Free is {free} (a hugetlbfs directory holds only huge pages; use /dev/shm to fall back to normal pages)",
                    page / 1024,
                    self.dir.display()
                )));
            }
            return Ok((bits | layout::BACKING_HUGE_ACTIVE, page, total));
        }
        if self.huge_pages == HugePages::Off {
            return Ok((bits, layout::PAGE as u64, layout.total_size));
        }
        let (setting, usable) = sys::shmem_thp();
        if usable {
            return Ok((
                bits | layout::BACKING_HUGE_ACTIVE,
                THP_SIZE,
                round(THP_SIZE)?,
            ));
        }
        if self.huge_pages == HugePages::Require {
            return Err(unavailable(format!(
                "transparent huge pages for shared memory are [{setting}] in /sys/kernel/mm/transparent_hugepage/shmem_enabled (needs advise, within_size or always), and {} is not a hugetlbfs mount{}",
                self.dir.display(),
                hugetlbfs_mount()
                    .map(|m| format!(" (one is mounted at {})", m.display()))
                    .unwrap_or_default()
            )));
        }
        let fallback = layout::HugeFallback::ShmemThpDisabled;
        log::warn!("{}: {}", path.display(), fallback.describe());
        bits |= fallback.code() << 8;
        Ok((bits, layout::PAGE as u64, layout.total_size))
    }

    /// The configured directory.
    pub fn directory(&self) -> &Path {
        &self.dir
    }
}
