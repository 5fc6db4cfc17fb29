//! The shared-memory object: naming, creation, attachment, the lifecycle locks
//! and the role locks.
//!
//! # The lifecycle protocol (DESIGN.md, "Lifecycle")
//!
//! * Every attached [`Segment`] holds `flock(LOCK_SH)` on its own open file
//!   description of the object. The kernel drops it when the process exits or
//!   dies, so a crash never leaves a lock behind.
//! * **Create**: `open(O_CREAT|O_EXCL)`, `flock(LOCK_EX)`, re-check
//!   `st_nlink`, `fallocate` the full size, map, write the magic number, then
//!   the rest of the descriptor, publish `state = READY` (release), convert
//!   to `LOCK_SH` and re-check `st_nlink` (the conversion drops the lock for
//!   a moment). What a creator killed on the way leaves, and who removes it:
//!   module `abandoned`.
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

mod abandoned;
mod admin;
mod anonymous;
mod lifecycle;
mod occupancy;
mod options;
mod roles;
mod subscribers;
mod upstream;

pub use crate::sys::MappingFacts;
pub use abandoned::GC_GRACE;
pub use admin::{Inspection, RoleInfo, Status, gc, gc_with_grace, inspect, list, remove};
#[cfg(feature = "test-hooks")]
pub use lifecycle::TEST_PAUSE_ENV;
pub use lifecycle::object_path;
pub(crate) use lifecycle::{HeaderRead, read_header, try_exclusive};
pub use options::{
    DEFAULT_DIR, DEFAULT_TIMEOUT, HugePages, RingSpec, SegmentOptions, hugetlbfs_mount, zeroed,
};
pub use subscribers::SubscriberInfo;
pub use upstream::{Resumed, Upstream, UpstreamBusy, UpstreamRecord, UpstreamWriter};

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::layout::{self, Descriptor, FLAG_PERSISTENT, LIVE_OFFSET, Layout, Live};
use crate::sys;
use lifecycle::same_inode;

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
    /// The mapping's registration with the SIGBUS handler (see
    /// [`sys::sigbus`]): released in `Drop` before the unmapping.
    guard: sys::sigbus::MappingGuard,
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
        // Registered before anything touches the mapping, so that a peer
        // truncating the file from now on costs this process the ring (it
        // reports `Corrupted`), not its life. A memfd the kernel has sealed
        // against shrinking cannot lose pages (the header's backing bits
        // are not trusted for this: the seals are asked of the kernel).
        let sealed = sys::seals(&file).is_ok_and(|s| s & libc::F_SEAL_SHRINK != 0);
        let guard = if sealed {
            sys::sigbus::MappingGuard::sealed()
        } else {
            sys::sigbus::MappingGuard::register(map.as_mut_ptr(), len, &file, layout.total_size)
                .map_err(|e| match e {
                    sys::sigbus::RegisterError::Install(e) => {
                        Error::io(path, "sigaction(SIGBUS)", e)
                    }
                    sys::sigbus::RegisterError::Full => Error::InvalidConfig {
                        what: format!(
                            "{}: more than {} named rings are mapped at once in this process; drop some handles (anonymous memfd rings do not count)",
                            path.display(),
                            sys::sigbus::MAX_MAPPINGS
                        ),
                    },
                })?
        };
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
            guard,
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

    /// Has this process lost the ring's memory? True once a peer truncated
    /// the ring's file under this mapping (or its huge pages could not be
    /// provided) and an access hit a lost page, or an idle poll saw the file
    /// shrunk: the mapping then holds private zero pages, every operation
    /// on the ring reports `Corrupted`, and nothing more is exchanged with
    /// other processes through it. Never true for anonymous (memfd) rings,
    /// which are sealed against shrinking.
    pub fn is_poisoned(&self) -> bool {
        self.guard.is_lost()
    }

    /// The mapping's registration with the SIGBUS handler (its poison mark
    /// and the file size check).
    pub(crate) fn guard(&self) -> &sys::sigbus::MappingGuard {
        &self.guard
    }

    /// The header's live line.
    pub(crate) fn live(&self) -> &Live {
        // LIVE_OFFSET + size_of::<Live>() <= HEADER_SIZE <= total_size by the
        // compile-time asserts in `header` and `Layout::new`.
        // SAFETY: in bounds; 128-byte aligned (page-aligned map); `Live` is
        // atomics only, so sharing it with writers in other processes is sound.
        unsafe { &*self.map.as_ptr().add(LIVE_OFFSET).cast::<Live>() }
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
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Before the unmapping: the SIGBUS handler must never act on a
        // range that is no longer ours (see `sys::sigbus`).
        self.guard.release();
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
