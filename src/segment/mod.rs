//! The shared-memory object: naming, creation, attachment, the lifecycle locks
//! and the role locks.
//!
//! # The lifecycle protocol (DESIGN.md, "Lifecycle")
//!
//! * Every attached [`Segment`] holds `flock(LOCK_SH)` on its own open file
//!   description of the object. The kernel drops it when the process exits or
//!   dies, so a crash never leaves a lock behind.
//! * **Create**: `open(O_CREAT|O_EXCL)`, `flock(LOCK_EX)`, re-check
//!   `st_nlink`, `fallocate` the full size, write the descriptor, map, publish
//!   `state = READY` (release), convert to `LOCK_SH` and re-check `st_nlink`
//!   (the conversion drops the lock for a moment).
//! * **Open**: `open`, `flock(LOCK_SH)` (which waits out a creator still
//!   holding `LOCK_EX`, up to the timeout), `fstat`: if `st_nlink == 0` the
//!   object was removed while we waited, so start over; if it is not READY
//!   yet, drop the lock and retry; then validate the header *before* mapping.
//! * **Detach**: unmap, then `flock(LOCK_EX|LOCK_NB)`. Success means nobody
//!   else is attached; a non-persistent ring is then unlinked, but only if
//!   the name still refers to this inode.
//!
//! A name is unlinked only by a process holding the exclusive lock on the
//! object it names, so no live user remains, and anyone who opened the old
//! object is blocked on the lock until then and sees `st_nlink == 0`
//! afterwards. Hence there is never more than one live object per name.
//!
//! # Safety story
//!
//! The mapping is shared with processes this one does not trust. A `Segment`
//! never hands out references into it: it gives the ring modules raw pointers
//! to offsets that were range-checked against the validated [`Layout`], and
//! the rings access shared words only through atomics or byte copies. The
//! descriptor is validated from a private copy before anything is mapped,
//! and the object's size must equal the recorded size, so no access can fall
//! past the end of the file (which would be SIGBUS).

mod admin;

pub use admin::{Inspection, RoleInfo, Status, gc, inspect, list, remove};

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::ManuallyDrop;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::layout::{
    self, DESCRIPTOR_SIZE, Descriptor, FLAG_PERSISTENT, HEADER_SIZE, LIVE_OFFSET, Layout, Live,
    MAGIC, RoleRecord, STATE_READY,
};
use crate::sys;

/// The default directory: the POSIX shared-memory file system.
pub const DEFAULT_DIR: &str = "/dev/shm";
/// How long `open` waits for a creator to finish, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Environment variable read by `create` only, and only when the crate is
/// built with the `test-hooks` feature (off by default; the crate's own
/// tests turn it on): pause this many milliseconds after the descriptor is
/// written and before the ring is published, so tests can kill a creator
/// mid-initialization. Not for production use.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub const TEST_PAUSE_ENV: &str = "SHMRING_TEST_PAUSE_IN_INIT_MS";

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
    dir: PathBuf,
    mode: u32,
    persistent: bool,
    timeout: Duration,
    huge_pages: HugePages,
    populate: bool,
    lock_memory: bool,
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
    fn bits(self) -> u32 {
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

pub use sys::MappingFacts;

/// Size of a transparent huge page (PMD) on x86-64 and arm64 with 4 KiB
/// pages.
const THP_SIZE: u64 = 2 << 20;

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
    fn attach_bits(&self) -> u32 {
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
    fn plan_backing(&self, path: &Path, layout: &Layout) -> Result<(u32, u64, u64)> {
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

    /// Creates an anonymous ring in a sealed memfd (`memfd_create`): it has
    /// no name in any directory, is passed to other processes with
    /// [`Segment::send`] over a Unix socket, and is freed by the kernel
    /// with its last descriptor or mapping, so it can never leak. It is
    /// sealed against shrinking and growing (no truncate-to-SIGBUS attack).
    /// `name` only labels it (in `/proc/PID/maps`). With huge pages asked
    /// for it uses `MFD_HUGETLB` (2 MiB pages from the `vm.nr_hugepages`
    /// pool).
    pub fn create_anonymous(&self, name: &str, spec: &RingSpec<'_>) -> Result<Segment> {
        let layout = spec.layout;
        let path = PathBuf::from(format!("memfd:shmring:{name}"));
        let mut bits = self.huge_pages.bits() | self.attach_bits() | layout::BACKING_MEMFD;
        let mut page = layout::PAGE as u64;
        if self.huge_pages != HugePages::Off {
            let need = layout.total_size.div_ceil(THP_SIZE);
            let free = sys::huge_pages_free(THP_SIZE).unwrap_or(0);
            if free >= need {
                page = THP_SIZE;
                bits |= layout::BACKING_HUGE_ACTIVE;
            } else if self.huge_pages == HugePages::Require {
                return Err(Error::HugePagesUnavailable {
                    path,
                    reason: format!(
                        "{need} huge pages of 2048 KiB needed, HugePages_Free is {free}"
                    ),
                });
            } else {
                let fallback = layout::HugeFallback::NoFreePages;
                log::warn!("{}: {}", path.display(), fallback.describe());
                bits |= fallback.code() << 8;
            }
        }
        let layout = Layout {
            total_size: layout.total_size.next_multiple_of(page),
            ..*layout
        };
        let file = sys::memfd_create(&format!("shmring:{name}"), page != layout::PAGE as u64)
            .map_err(|e| Error::io(&path, "memfd_create", e))?;
        sys::fallocate(&file, layout.total_size).map_err(|e| Error::io(&path, "fallocate", e))?;
        let meta = file.metadata().map_err(|e| Error::io(&path, "fstat", e))?;
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let pid = std::process::id();
        let mut desc =
            layout::descriptor_for(&layout, spec.type_id, spec.type_name, 0, 0o600, pid, now_ns);
        desc.backing = bits;
        desc.page_size_kib = (page / 1024) as u32;
        // The descriptor we are about to write gets exactly the check an
        // opener makes, and the mapping is built from what it accepts.
        let layout = layout::validate(&desc, &path, layout.total_size)?;
        let seg = Segment::map(name, &path, file, desc, layout, &meta, 0)?;
        seg.write_descriptor();
        (spec.init)(&seg)?;
        seg.live()
            .state
            .store(STATE_READY, std::sync::atomic::Ordering::Release);
        sys::seal(&seg.file).map_err(|e| Error::io(&path, "fcntl(F_ADD_SEALS)", e))?;
        Ok(seg)
    }

    /// Receives an anonymous ring sent with [`Segment::send`] and attaches
    /// to it with the same validation as [`SegmentOptions::open`]. A
    /// descriptor that is not a memfd sealed against shrinking and growing,
    /// or whose size is not what its header records, is refused.
    pub fn receive(&self, socket: &std::os::unix::net::UnixStream) -> Result<Segment> {
        use std::os::fd::AsRawFd;
        let path = PathBuf::from("memfd:received");
        let received = sys::recv_fd(socket).map_err(|e| Error::io(&path, "recvmsg", e))?;
        let needed = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        match sys::seals(&received) {
            Ok(seals) if seals & needed == needed => {}
            other => {
                return Err(Error::corrupted(
                    &path,
                    format!(
                        "refused: the received descriptor is not a memfd sealed against shrinking and growing ({})",
                        match other {
                            Ok(seals) => format!("seals {seals:#x}"),
                            Err(e) => format!("F_GET_SEALS: {e}"),
                        }
                    ),
                ));
            }
        }
        // Our own open file description of the same object: role locks are
        // per description, and the received one is shared with the sender.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(format!("/proc/self/fd/{}", received.as_raw_fd()))
            .map_err(|e| Error::io(&path, "open(/proc/self/fd)", e))?;
        drop(received);
        let meta = file.metadata().map_err(|e| Error::io(&path, "fstat", e))?;
        let (desc, state) = match read_header(&file, &path, meta.len())? {
            HeaderRead::Header(desc, state) => (*desc, state),
            HeaderRead::Empty => {
                return Err(Error::NotARing { path, found: 0 });
            }
        };
        if state != STATE_READY {
            return Err(Error::corrupted(
                &path,
                "received a ring that is not initialized",
            ));
        }
        let layout = layout::validate(&desc, &path, meta.len())?;
        if desc.backing & layout::BACKING_MEMFD == 0 {
            return Err(Error::corrupted(
                &path,
                "received a ring that is not marked anonymous",
            ));
        }
        let seg = Segment::map(
            "received",
            &path,
            file,
            desc,
            layout,
            &meta,
            self.attach_bits(),
        )?;
        if seg.live().state.load(std::sync::atomic::Ordering::Acquire) != STATE_READY {
            return Err(Error::corrupted(
                &path,
                "the ring changed state while attaching",
            ));
        }
        Ok(seg)
    }

    /// The configured directory.
    pub fn directory(&self) -> &Path {
        &self.dir
    }

    /// Creates a new object; fails with [`Error::AlreadyExists`] if the name
    /// is taken.
    pub fn create(&self, name: &str, spec: &RingSpec<'_>) -> Result<Segment> {
        let path = object_path(&self.dir, name)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(seg) = self.create_once(name, &path, spec, deadline)? {
                return Ok(seg);
            }
        }
    }

    /// Attaches to an existing object; fails with [`Error::NotFound`] if there
    /// is none.
    pub fn open(&self, name: &str) -> Result<Segment> {
        let path = object_path(&self.dir, name)?;
        let deadline = Instant::now() + self.timeout;
        self.open_until(name, &path, deadline)
    }

    /// Attaches to the object if it exists, creates it otherwise. Whoever
    /// comes first creates; the layout of an existing object is whatever its
    /// creator chose (the ring types check it against what they need).
    pub fn open_or_create(&self, name: &str, spec: &RingSpec<'_>) -> Result<Segment> {
        let path = object_path(&self.dir, name)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.open_until(name, &path, deadline) {
                Err(Error::NotFound { .. }) => {}
                other => return other,
            }
            match self.create_once(name, &path, spec, deadline) {
                Ok(Some(seg)) => return Ok(seg),
                Ok(None) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    path,
                    what: "opening or creating: the name kept appearing and disappearing".into(),
                    waited: self.timeout,
                });
            }
        }
    }

    /// One attempt at creation. `Ok(None)`: the new object was removed under
    /// us (by `gc` while it was fresh); try again.
    fn create_once(
        &self,
        name: &str,
        path: &Path,
        spec: &RingSpec<'_>,
        deadline: Instant,
    ) -> Result<Option<Segment>> {
        let layout = spec.layout;
        let fs = sys::fs_info(&self.dir).map_err(|e| Error::io(&self.dir, "statvfs", e))?;
        if name.len() as u64 > fs.name_max {
            return Err(Error::InvalidName {
                name: name.to_string(),
                reason: format!(
                    "{} bytes is longer than the {} bytes {} allows",
                    name.len(),
                    fs.name_max,
                    self.dir.display()
                ),
            });
        }
        let (backing, page, total) = self.plan_backing(path, layout)?;
        let layout = &Layout {
            total_size: total,
            ..*layout
        };
        if let Some(free) = fs.free
            && free < layout.total_size
        {
            return Err(Error::NoSpace {
                path: path.to_path_buf(),
                mount: self.dir.clone(),
                needed: layout.total_size,
                free,
            });
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(self.mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => return Err(open_error(&self.dir, path, "create", e)),
        };
        // From here until READY, a failure must remove what we made. We hold
        // (or are about to hold) the exclusive lock, so removing is safe.
        let created = file.metadata().map_err(|e| Error::io(path, "fstat", e))?;
        let mut guard = CreateGuard {
            path,
            dev: created.dev(),
            ino: created.ino(),
            armed: true,
        };
        // The umask may have narrowed the mode; set exactly what was asked.
        file.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(|e| Error::io(path, "fchmod", e))?;
        // An opener that raced in may hold LOCK_SH for a moment (it will see
        // a short or non-READY object and let go), so wait for the lock.
        if !lock_until(&file, sys::Flock::Exclusive, deadline, path)? {
            guard.armed = false; // not ours to remove without the lock
            return Err(Error::Timeout {
                path: path.to_path_buf(),
                what: "taking the exclusive lock on a newly created object".into(),
                waited: self.timeout,
            });
        }
        let meta = file.metadata().map_err(|e| Error::io(path, "fstat", e))?;
        if meta.nlink() == 0 {
            // `gc` removed the empty object between our open and our lock.
            guard.armed = false;
            return Ok(None);
        }
        if let Err(e) = sys::fallocate(&file, layout.total_size) {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                let free = sys::fs_info(&self.dir)
                    .ok()
                    .and_then(|f| f.free)
                    .unwrap_or(0);
                return Err(Error::NoSpace {
                    path: path.to_path_buf(),
                    mount: self.dir.clone(),
                    needed: layout.total_size,
                    free,
                });
            }
            return Err(Error::io(path, "fallocate", e));
        }
        let pid = std::process::id();
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let flags = if self.persistent { FLAG_PERSISTENT } else { 0 };
        let mut desc = layout::descriptor_for(
            layout,
            spec.type_id,
            spec.type_name,
            flags,
            self.mode,
            pid,
            now_ns,
        );
        desc.backing = backing;
        desc.page_size_kib = (page / 1024) as u32;
        // The descriptor we are about to write gets exactly the check an
        // opener makes (a failure here removes the object: `guard`), and the
        // mapping is built from what it accepts.
        let layout = &layout::validate(&desc, path, layout.total_size)?;
        let seg = Segment::map(name, path, file, desc, *layout, &meta, 0)?;
        // Through the mapping, not pwrite: hugetlbfs has no write().
        seg.write_descriptor();
        test_pause();
        // Every ring starts zeroed (fallocate); the kind writes whatever
        // else its empty state needs.
        (spec.init)(&seg)?;
        // Publish: the release store orders every byte written above
        // before READY for a reader that loads READY with acquire.
        seg.live()
            .state
            .store(STATE_READY, std::sync::atomic::Ordering::Release);
        guard.armed = false;
        drop(guard);
        // Convert to the shared lock. flock drops the exclusive lock first, so
        // the object may be removed in between (by a racing opener's detach
        // or by gc): re-check, and start over if so.
        if !lock_until(&seg.file, sys::Flock::Shared, deadline, path)? {
            return Err(Error::Timeout {
                path: path.to_path_buf(),
                what: "taking the shared lock after initialization".into(),
                waited: self.timeout,
            });
        }
        let nlink = seg
            .file
            .metadata()
            .map_err(|e| Error::io(path, "fstat", e))?
            .nlink();
        if nlink == 0 {
            return Ok(None);
        }
        Ok(Some(seg))
    }

    fn open_until(&self, name: &str, path: &Path, deadline: Instant) -> Result<Segment> {
        let mut pause = Duration::from_micros(20);
        loop {
            match self.open_once(name, path, deadline)? {
                Ok(seg) => return Ok(seg),
                Err(why) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout {
                            path: path.to_path_buf(),
                            what: why,
                            waited: self.timeout,
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
            }
        }
    }

    /// One attempt at attaching. The inner `Err` says why it must be retried.
    fn open_once(
        &self,
        name: &str,
        path: &Path,
        deadline: Instant,
    ) -> Result<std::result::Result<Segment, String>> {
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => return Err(open_error(&self.dir, path, "open", e)),
        };
        if !lock_until(&file, sys::Flock::Shared, deadline, path)? {
            return Ok(Err(
                "waiting for the creator to finish initializing (it holds the exclusive lock)"
                    .into(),
            ));
        }
        let meta = file.metadata().map_err(|e| Error::io(path, "fstat", e))?;
        if !meta.file_type().is_file() {
            return Err(Error::NotARing {
                path: path.to_path_buf(),
                found: 0,
            });
        }
        if meta.nlink() == 0 {
            return Ok(Err("the object was removed while we waited".into()));
        }
        let (desc, state) = match read_header(&file, path, meta.len())? {
            HeaderRead::Empty => {
                return Ok(Err(
                    "the object is empty: its creator is still starting or died before writing the header (`shmring gc` removes it if it is abandoned)"
                        .into(),
                ));
            }
            HeaderRead::Header(desc, state) => (*desc, state),
        };
        if state != STATE_READY {
            let alive = if sys::pid_alive(desc.creator_pid as i32) {
                "running"
            } else {
                "not running"
            };
            return Ok(Err(format!(
                "waiting for the creator (pid {}, {alive}) to finish initializing; if it died, `shmring gc` removes the half-made object",
                desc.creator_pid
            )));
        }
        let layout = layout::validate(&desc, path, meta.len())?;
        let seg = Segment::map(name, path, file, desc, layout, &meta, self.attach_bits())?;
        // Acquire pairs with the creator's release store of READY: every ring
        // word it initialized is visible from here on.
        if seg.live().state.load(std::sync::atomic::Ordering::Acquire) != STATE_READY {
            return Ok(Err("the object changed state while attaching".into()));
        }
        Ok(Ok(seg))
    }
}

/// Pauses creation for tests (see `TEST_PAUSE_ENV`, feature `test-hooks`).
#[cfg(feature = "test-hooks")]
fn test_pause() {
    if let Some(ms) = std::env::var_os(TEST_PAUSE_ENV)
        .and_then(|v| v.to_str().and_then(|s| s.parse::<u64>().ok()))
    {
        eprintln!("shmring: test pause in initialization for {ms} ms");
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Without the `test-hooks` feature, creation never pauses and reads no
/// environment variable.
#[cfg(not(feature = "test-hooks"))]
fn test_pause() {}

/// Removes a half-made object if creation fails before READY.
struct CreateGuard<'a> {
    path: &'a Path,
    dev: u64,
    ino: u64,
    armed: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(m) = std::fs::symlink_metadata(self.path)
            && m.dev() == self.dev
            && m.ino() == self.ino
        {
            let _ = std::fs::remove_file(self.path);
        }
    }
}

/// What the first bytes of an object hold.
pub(crate) enum HeaderRead {
    /// Shorter than the header and all zero, or exactly zero bytes: a
    /// creation in progress (or abandoned).
    Empty,
    /// A header with our magic (not yet validated) and the `state` word.
    Header(Box<Descriptor>, u32),
}

/// Reads (with `pread`, no mapping) the header of an object of `size` bytes.
pub(crate) fn read_header(file: &File, path: &Path, size: u64) -> Result<HeaderRead> {
    let mut buf = [0u8; HEADER_SIZE];
    let want = (size.min(HEADER_SIZE as u64)) as usize;
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..want], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, "pread", e)),
        }
    }
    if buf[..got].iter().all(|&b| b == 0) {
        return Ok(HeaderRead::Empty);
    }
    let magic_len = got.min(8);
    if buf[..magic_len] != MAGIC.to_le_bytes()[..magic_len] || got < 8 {
        let mut m = [0u8; 8];
        m[..magic_len].copy_from_slice(&buf[..magic_len]);
        return Err(Error::NotARing {
            path: path.to_path_buf(),
            found: u64::from_le_bytes(m),
        });
    }
    let desc: Descriptor = bytemuck::pod_read_unaligned(&buf[..DESCRIPTOR_SIZE]);
    if got < HEADER_SIZE {
        let recorded = if got >= 32 {
            desc.total_size
        } else {
            HEADER_SIZE as u64
        };
        return Err(Error::SizeMismatch {
            path: path.to_path_buf(),
            recorded,
            actual: size,
        });
    }
    let state = u32::from_le_bytes(
        buf[LIVE_OFFSET..LIVE_OFFSET + 4]
            .try_into()
            .expect("4-byte slice"),
    );
    Ok(HeaderRead::Header(Box::new(desc), state))
}

/// Polls `flock(op | LOCK_NB)` until it succeeds or `deadline` passes.
fn lock_until(file: &File, op: sys::Flock, deadline: Instant, path: &Path) -> Result<bool> {
    let mut pause = Duration::from_micros(10);
    loop {
        if sys::try_flock(file, op).map_err(|e| Error::io(path, "flock", e))? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// `flock(LOCK_EX|LOCK_NB)`, tolerating the fork window: a thread of this
/// process that forks (to spawn a program) briefly shares our open file
/// descriptions until its child execs, and with them our locks, which
/// `/proc/locks` then reports under our own pid. When every holder is this
/// process, retry for up to about 2 ms; holders in other processes make it
/// give up at once.
pub(crate) fn try_exclusive(file: &File) -> io::Result<bool> {
    let me = std::process::id() as i32;
    for _ in 0..20 {
        if sys::try_flock(file, sys::Flock::Exclusive)? {
            return Ok(true);
        }
        let meta = file.metadata()?;
        let locks = sys::locks_on(meta.dev(), meta.ino());
        if locks.iter().any(|l| l.is_flock && l.pid != me) {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(false)
}

/// Does `path` name the object open as `file`?
fn same_inode(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Checks a ring name and joins it to the directory.
pub fn object_path(dir: &Path, name: &str) -> Result<PathBuf> {
    let reason = if name.is_empty() {
        Some("the name is empty".to_string())
    } else if name.contains('/') {
        Some("a name may not contain '/' (use the directory option for another location)".into())
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not names".into())
    } else if name.contains('\0') {
        Some("a name may not contain a NUL byte".into())
    } else if name.len() > 255 {
        Some(format!(
            "{} bytes is longer than the 255 bytes a file name may have",
            name.len()
        ))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(dir.join(name)),
    }
}

fn open_error(dir: &Path, path: &Path, action: &'static str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) if !dir.is_dir() => Error::io(
            dir,
            "open (the directory does not exist)",
            io::Error::from_raw_os_error(libc::ENOENT),
        ),
        Some(libc::ENOENT) => Error::NotFound {
            path: path.to_path_buf(),
        },
        Some(libc::EEXIST) => Error::AlreadyExists {
            path: path.to_path_buf(),
        },
        Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied {
            path: path.to_path_buf(),
            action,
        },
        Some(libc::ELOOP) => Error::NotARing {
            path: path.to_path_buf(),
            found: 0,
        },
        Some(libc::ENAMETOOLONG) => Error::InvalidName {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            reason: "too long for the file system".into(),
        },
        Some(libc::ENOSPC) => Error::NoSpace {
            path: path.to_path_buf(),
            mount: dir.to_path_buf(),
            needed: 0,
            free: 0,
        },
        _ => Error::io(
            path,
            if action == "create" {
                "open(O_CREAT|O_EXCL)"
            } else {
                "open"
            },
            e,
        ),
    }
}

/// An attached shared-memory object: the mapping, the shared lifecycle lock
/// and the validated layout. Dropping it detaches (see the module docs).
///
/// Rings hold it in an `Arc`; it is `Send + Sync` because it hands out only
/// raw pointers and atomics.
pub struct Segment {
    name: String,
    path: PathBuf,
    /// The open file description holding our `LOCK_SH` and role locks.
    file: File,
    /// Unmapped explicitly in `Drop`, before the exclusive-lock probe.
    map: ManuallyDrop<MmapRaw>,
    /// The validated private copy of the descriptor.
    desc: Descriptor,
    layout: Layout,
    dev: u64,
    ino: u64,
    /// Roles this handle holds (OFD locks are per open file description, so
    /// two halves through one handle would not exclude each other).
    held_roles: Mutex<Vec<u32>>,
    /// An anonymous memfd ring: no name to check or remove.
    anonymous: bool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("inode", &self.ino)
            .finish()
    }
}

impl Segment {
    /// Maps a validated object and applies its backing options (those the
    /// header records, plus `extra` bits asked for by this attach).
    #[allow(clippy::too_many_arguments)]
    fn map(
        name: &str,
        path: &Path,
        file: File,
        desc: Descriptor,
        layout: Layout,
        meta: &std::fs::Metadata,
        extra: u32,
    ) -> Result<Segment> {
        let len = usize::try_from(layout.total_size).map_err(|_| Error::InvalidConfig {
            what: "ring larger than the address space".into(),
        })?;
        let bits = desc.backing | extra;
        // `layout.total_size` equals the file's size (checked by `validate`
        // for openers, set by `fallocate` for creators), so no access through
        // this mapping can fall past the end of the file.
        let mut options = MmapOptions::new();
        options.len(len);
        if bits & layout::BACKING_POPULATE != 0 {
            options.populate();
        }
        let map = options
            .map_raw(&file)
            .map_err(|e| Error::io(path, "mmap", e))?;
        if bits & layout::BACKING_HUGE_ACTIVE != 0 {
            // Transparent huge pages on shmem need the advice; hugetlbfs
            // mappings are huge anyway (and may refuse it): best effort.
            let _ = sys::advise_huge(map.as_mut_ptr(), len);
        }
        if bits & layout::BACKING_LOCK != 0 {
            sys::mlock(map.as_ptr(), len).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOMEM | libc::EPERM | libc::EAGAIN) => Error::MemoryLockLimit {
                    path: path.to_path_buf(),
                    wanted: len as u64,
                    limit: sys::memlock_limit(),
                },
                _ => Error::io(path, "mlock", e),
            })?;
        }
        Ok(Segment {
            name: name.to_string(),
            path: path.to_path_buf(),
            file,
            map: ManuallyDrop::new(map),
            desc,
            layout,
            dev: meta.dev(),
            ino: meta.ino(),
            held_roles: Mutex::new(Vec::new()),
            anonymous: desc.backing & layout::BACKING_MEMFD != 0,
        })
    }

    /// Writes the private descriptor into the mapping (creators, before
    /// publishing READY).
    fn write_descriptor(&self) {
        let bytes = bytemuck::bytes_of(&self.desc);
        // SAFETY: the mapping is at least one page (>= DESCRIPTOR_SIZE bytes)
        // long; the creator holds the exclusive lock (or, for a memfd, the
        // only descriptor), so nobody reads the header until READY.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.as_mut_ptr(), bytes.len())
        };
    }

    /// Replaces the layout this handle computes addresses from, bypassing
    /// every check: only for tests that show the ring views refuse a
    /// forged layout.
    #[cfg(test)]
    pub(crate) fn forge_layout_for_test(&mut self, layout: Layout) {
        self.layout = layout;
    }

    /// What `/proc/self/smaps` says about this process's mapping of the
    /// ring: page size, huge and locked amounts.
    pub fn mapping_facts(&self) -> Option<MappingFacts> {
        sys::mapping_facts(std::process::id() as i32, self.ino)
    }

    /// Sends this anonymous ring's descriptor over a Unix socket
    /// (`SCM_RIGHTS`); the receiver attaches with
    /// [`SegmentOptions::receive`]. Only for rings made by
    /// [`SegmentOptions::create_anonymous`].
    pub fn send(&self, socket: &std::os::unix::net::UnixStream) -> Result<()> {
        if !self.anonymous {
            return Err(Error::InvalidConfig {
                what: "only anonymous (memfd) rings are passed over sockets; named rings are opened by name".into(),
            });
        }
        sys::send_fd(socket, &self.file).map_err(|e| Error::io(&self.path, "sendmsg", e))
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object's full path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The validated descriptor (a private copy made when attaching).
    pub fn descriptor(&self) -> &Descriptor {
        &self.desc
    }

    /// Whether the ring outlives its last user.
    pub fn is_persistent(&self) -> bool {
        self.desc.flags & FLAG_PERSISTENT != 0
    }

    /// The object's inode number.
    pub fn inode(&self) -> u64 {
        self.ino
    }

    /// The object's unique creation number (see [`Descriptor::generation`]).
    pub fn generation(&self) -> u64 {
        self.desc.generation
    }

    /// Does the name still refer to this object?
    ///
    /// `false` once someone removed the name with `shmring rm --force` (one
    /// atomic load tells) or the name was removed or replaced behind this
    /// crate's back (one `stat` tells). A handle that is no longer current
    /// still works, but talks only to processes attached to the old object.
    pub fn is_current(&self) -> bool {
        if self.anonymous {
            return true;
        }
        if self
            .live()
            .removed
            .load(std::sync::atomic::Ordering::Acquire)
            != 0
        {
            return false;
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) => m.dev() == self.dev && m.ino() == self.ino,
            Err(_) => false,
        }
    }

    /// The header's live line.
    pub(crate) fn live(&self) -> &Live {
        // LIVE_OFFSET + size_of::<Live>() <= HEADER_SIZE <= total_size by the
        // compile-time asserts in `header` and `Layout::new`.
        // SAFETY: in bounds; 128-byte aligned (page-aligned map); `Live` is
        // atomics only, so sharing it with writers in other processes is sound.
        unsafe { &*self.map.as_ptr().add(LIVE_OFFSET).cast::<Live>() }
    }

    /// The record of role `index`.
    pub(crate) fn role_record(&self, index: u32) -> Option<&RoleRecord> {
        if index >= self.layout.roles() {
            return None;
        }
        let offset = self.layout.role_record_offset(index) as usize;
        // SAFETY: index < roles(), and `Layout::new` places roles() records
        // of ROLE_RECORD_SIZE bytes at roles_offset (64-byte aligned), before
        // control_offset < total_size; `RoleRecord` is atomics only.
        Some(unsafe { &*self.map.as_ptr().add(offset).cast::<RoleRecord>() })
    }

    /// A raw pointer to `len` bytes at `offset`, or `None` if the range is
    /// not inside the mapping. Rings call it once per region at attach time.
    pub(crate) fn region(&self, offset: u64, len: u64) -> Option<*mut u8> {
        let end = offset.checked_add(len)?;
        if end > self.layout.total_size {
            return None;
        }
        // SAFETY: offset + len <= total_size == the mapping's length.
        Some(unsafe { self.map.as_mut_ptr().add(offset as usize) })
    }

    fn role_lock_offset(&self, index: u32) -> u64 {
        // One byte per role, past the end of the data: byte-range locks need
        // no backing bytes, and nothing else locks there.
        self.layout.total_size + u64::from(index)
    }

    /// Takes role `index` (its OFD byte-range lock) for this handle.
    pub(crate) fn lock_role(&self, index: u32, role: &str) -> Result<()> {
        let taken = || Error::RoleTaken {
            path: self.path.clone(),
            role: role.to_string(),
            pid: self
                .role_record(index)
                .map(|r| r.pid.load(std::sync::atomic::Ordering::Relaxed) as i32)
                .filter(|&p| p > 0),
        };
        let mut held = self.held_roles.lock().unwrap_or_else(|p| p.into_inner());
        if held.contains(&index) {
            return Err(taken());
        }
        if !sys::try_ofd_lock(&self.file, self.role_lock_offset(index))
            .map_err(|e| Error::io(&self.path, "fcntl(F_OFD_SETLK)", e))?
        {
            return Err(taken());
        }
        held.push(index);
        Ok(())
    }

    /// Releases role `index`.
    pub(crate) fn unlock_role(&self, index: u32) {
        let mut held = self.held_roles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = held.iter().position(|&r| r == index) {
            held.swap_remove(i);
            let _ = sys::ofd_unlock(&self.file, self.role_lock_offset(index));
        }
    }

    /// Is role `index` held by a live handle (this one or another process's)?
    /// One `fcntl` call unless this handle holds it.
    pub(crate) fn role_alive(&self, index: u32) -> bool {
        {
            let held = self.held_roles.lock().unwrap_or_else(|p| p.into_inner());
            if held.contains(&index) {
                return true;
            }
        }
        // On error, say alive: a wrong "alive" costs a wait, a wrong "dead"
        // would lose data.
        sys::ofd_locked_by_other(&self.file, self.role_lock_offset(index)).unwrap_or(true)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `map` is not used after this point: this is `drop`, and no
        // ring can outlive the segment (rings hold an `Arc<Segment>`).
        unsafe { ManuallyDrop::drop(&mut self.map) };
        // An anonymous ring has no name; the kernel frees it with its last
        // descriptor or mapping.
        if self.is_persistent() || self.anonymous {
            return;
        }
        // Exclusive means nobody else is attached. The name is removed only
        // if it still refers to this object: a newer object under the same
        // name belongs to others.
        if let Ok(true) = try_exclusive(&self.file)
            && same_inode(&self.path, &self.file)
        {
            let _ = std::fs::remove_file(&self.path);
        }
        // Closing `file` releases every lock this handle held.
    }
}

/// A private directory under /dev/shm for one unit test, removed on drop
/// (also when the test fails).
#[cfg(all(test, not(loom)))]
pub(crate) struct TestDir(pub(crate) PathBuf);

#[cfg(all(test, not(loom)))]
impl TestDir {
    pub(crate) fn new(tag: &str) -> TestDir {
        let dir = PathBuf::from(format!(
            "/dev/shm/shmring-unit-{tag}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create a unit test directory in /dev/shm");
        TestDir(dir)
    }
}

#[cfg(all(test, not(loom)))]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let d = Path::new("/dev/shm");
        for bad in ["", "a/b", "/x", ".", "..", "a\0b"] {
            assert!(
                matches!(object_path(d, bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        let long = "x".repeat(256);
        assert!(matches!(
            object_path(d, &long),
            Err(Error::InvalidName { .. })
        ));
        assert_eq!(object_path(d, "ok.1").unwrap(), Path::new("/dev/shm/ok.1"));
    }
}
