//! Creating and opening a named object, following the lifecycle protocol
//! (see the module docs of [`segment`](super)): the create and open
//! attempts and their retries, the lifecycle locks, reading the header
//! before mapping, name checks, and the errors of `open(2)`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Segment;
use super::abandoned::GC_GRACE;
use super::options::{RingSpec, SegmentOptions};
use crate::error::{Error, Result};
use crate::layout::{
    self, DESCRIPTOR_SIZE, Descriptor, FLAG_PERSISTENT, HEADER_SIZE, LIVE_OFFSET, Layout, MAGIC,
    STATE_READY,
};
use crate::sys;

/// Environment variable read by `create` only, and only when the crate is
/// built with the `test-hooks` feature (off by default; the crate's own
/// tests turn it on): pause this many milliseconds after the descriptor is
/// written and before the ring is published, so tests can kill a creator
/// mid-initialization. Not for production use.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub const TEST_PAUSE_ENV: &str = "SHMRING_TEST_PAUSE_IN_INIT_MS";

impl SegmentOptions {
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
    /// is none. An object whose creator died before finishing it makes this
    /// wait out the timeout and say so ([`Error::Timeout`]); `open` never
    /// removes anything.
    pub fn open(&self, name: &str) -> Result<Segment> {
        let path = object_path(&self.dir, name)?;
        let deadline = Instant::now() + self.timeout;
        self.open_until(name, &path, deadline, false)
    }

    /// Attaches to the object if it exists, creates it otherwise. Whoever
    /// comes first creates; the layout of an existing object is whatever its
    /// creator chose (the ring types check it against what they need).
    ///
    /// An object that a killed creator left unfinished is replaced, under
    /// the rules `gc` follows (module `abandoned`): this takes its exclusive
    /// lock, then removes it if it has a header that never became READY, or
    /// has no header, is all zero and has been left unchanged and unlocked
    /// for [`GC_GRACE`](super::GC_GRACE) (until then it waits, up to the
    /// timeout); then creates the ring anew.
    pub fn open_or_create(&self, name: &str, spec: &RingSpec<'_>) -> Result<Segment> {
        let path = object_path(&self.dir, name)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.open_until(name, &path, deadline, true) {
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
        // The magic number first, on its own: a creator killed while the rest
        // of the header is copied then leaves an object that has the magic
        // (which `gc` knows for an abandoned creation), never zeros where
        // the magic goes with data after them (another program's file, to
        // `gc`).
        let magic_at = seg
            .region(0, 8)
            .ok_or_else(|| Error::corrupted(path, "a ring mapping shorter than its header"))?;
        // SAFETY: `region` checked that the 8 bytes are inside the mapping;
        // the mapping is page-aligned, so they are aligned for an AtomicU64;
        // we hold the exclusive lock, so no other process writes them.
        unsafe { AtomicU64::from_ptr(magic_at.cast::<u64>()) }.store(MAGIC, Ordering::Relaxed);
        // Orders the magic before every store of the header below.
        fence(Ordering::Release);
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

    /// Attaches, retrying until `deadline` while the object is not ready.
    /// `reclaim`: remove an object a killed creator left unfinished (see
    /// `open_or_create`), after which the name is gone and this returns
    /// [`Error::NotFound`].
    fn open_until(
        &self,
        name: &str,
        path: &Path,
        deadline: Instant,
        reclaim: bool,
    ) -> Result<Segment> {
        let mut pause = Duration::from_micros(20);
        loop {
            match self.open_once(name, path, deadline, reclaim)? {
                Attempt::Attached(seg) => return Ok(*seg),
                Attempt::Reclaimed => {}
                Attempt::Retry(why) => {
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

    /// One attempt at attaching.
    fn open_once(
        &self,
        name: &str,
        path: &Path,
        deadline: Instant,
        reclaim: bool,
    ) -> Result<Attempt> {
        // Never open a FIFO or a device (opening may block or act on it).
        check_regular(path)?;
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
            return Ok(Attempt::Retry(
                "waiting for the creator to finish initializing (it holds the exclusive lock)"
                    .into(),
            ));
        }
        let meta = file.metadata().map_err(|e| Error::io(path, "fstat", e))?;
        if !meta.file_type().is_file() {
            return Err(Error::NotAFile {
                path: path.to_path_buf(),
                kind: file_kind(meta.file_type()),
            });
        }
        if meta.nlink() == 0 {
            return Ok(Attempt::Retry(
                "the object was removed while we waited".into(),
            ));
        }
        let rm = crate::error::rm_command(path);
        let (desc, state) = match read_header(&file, path, meta.len())? {
            HeaderRead::Empty => {
                // Without a header, only an object left alone for the grace
                // period may be a dead creator's (module `abandoned`).
                if reclaim
                    && super::abandoned::unchanged_for(&meta) >= GC_GRACE
                    && reclaim_abandoned(&file, path)?
                {
                    return Ok(Attempt::Reclaimed);
                }
                return Ok(Attempt::Retry(format!(
                    "the object is empty: its creator is still starting, or died before writing the header; once nobody holds it and nothing has changed it for {} s, `shmring gc` or `{rm}` removes it, and opening with create (`open_or_create`, `--create`) replaces it",
                    GC_GRACE.as_secs_f64()
                )));
            }
            HeaderRead::Header(desc, state) => (*desc, state),
        };
        if state != STATE_READY {
            // We hold the shared lock, so the creator no longer holds its
            // exclusive one: it died before publishing.
            if reclaim && reclaim_abandoned(&file, path)? {
                return Ok(Attempt::Reclaimed);
            }
            let alive = if sys::pid_alive(desc.creator_pid as i32) {
                "running"
            } else {
                "not running"
            };
            return Ok(Attempt::Retry(format!(
                "waiting for the creator (pid {}, {alive}) to finish initializing; if it died, `shmring gc` or `{rm}` removes the half-made object, and opening with create (`open_or_create`, `--create`) replaces it",
                desc.creator_pid
            )));
        }
        let layout = layout::validate(&desc, path, meta.len())?;
        let seg = Segment::map(name, path, file, desc, layout, &meta, self.attach_bits())?;
        // Acquire pairs with the creator's release store of READY: every ring
        // word it initialized is visible from here on.
        if seg.live().state.load(std::sync::atomic::Ordering::Acquire) != STATE_READY {
            return Ok(Attempt::Retry(
                "the object changed state while attaching".into(),
            ));
        }
        Ok(Attempt::Attached(Box::new(seg)))
    }
}

/// The outcome of one attempt at attaching.
enum Attempt {
    Attached(Box<Segment>),
    /// A killed creator's unfinished object was removed: try again at once.
    Reclaimed,
    /// Not ready yet; why.
    Retry(String),
}

/// For `open_or_create`, holding `LOCK_SH` on an unfinished object: trades
/// it for the exclusive lock and removes the object if a killed creator
/// left it (the rules of `gc`, with the default grace period). `false`:
/// it stays (another process holds it, or it may be a live creation).
fn reclaim_abandoned(file: &File, path: &Path) -> Result<bool> {
    // flock converts by dropping our shared lock first; if the exclusive
    // one is refused we hold none, which is fine: the caller lets go.
    if !sys::try_flock(file, sys::Flock::Exclusive).map_err(|e| Error::io(path, "flock", e))? {
        return Ok(false);
    }
    match super::abandoned::reclaim_locked(path, file, GC_GRACE, false)? {
        Some(why) => {
            log::warn!("{}: removed {why}; creating it again", path.display());
            Ok(true)
        }
        None => Ok(false),
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
pub(super) fn same_inode(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Checks a ring name and joins it to the directory: what creating and
/// opening accept. A name is not empty, `.` or `..`, has no `/` or NUL and
/// at most 255 bytes, and contains no control characters (a newline would
/// break `shmring ls` and every line-oriented tool, an escape sequence the
/// terminal). Inspecting and removing accept control characters, to reach
/// whatever is in the directory.
pub fn object_path(dir: &Path, name: &str) -> Result<PathBuf> {
    if let Some((at, c)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Error::InvalidName {
            name: name.to_string(),
            reason: format!(
                "a name may not contain control characters ({c:?} at byte {at}): they break `shmring ls` and other line-oriented tools; use letters, digits, '-', '_' or '.'"
            ),
        });
    }
    existing_object_path(dir, name)
}

/// Checks a name and joins it to the directory, for the administration
/// functions (`inspect`, `remove`): these must be able to reach any object
/// that is there, so they accept control characters, which only creation
/// and opening refuse.
pub(crate) fn existing_object_path(dir: &Path, name: &str) -> Result<PathBuf> {
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

/// What a file that is not a regular file is, for [`Error::NotAFile`].
pub(crate) fn file_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// [`Error::NotAFile`] if `path` names something other than a regular file
/// (without following a symbolic link); `Ok` if it is one or is missing
/// (the caller's open reports that).
pub(crate) fn check_regular(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(Error::NotAFile {
            path: path.to_path_buf(),
            kind: file_kind(m.file_type()),
        }),
        _ => Ok(()),
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
        // O_NOFOLLOW: the name is a symbolic link (or the directory's path
        // has a loop of them).
        Some(libc::ELOOP) => match check_regular(path) {
            Err(not_a_file) => not_a_file,
            Ok(()) => Error::io(path, "open", e),
        },
        Some(libc::EISDIR) => Error::NotAFile {
            path: path.to_path_buf(),
            kind: "a directory",
        },
        Some(libc::ENAMETOOLONG) => Error::InvalidName {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            reason: "too long for the file system".into(),
        },
        // `open` allocates no data, only an inode (and a directory entry):
        // ENOSPC here means the file system is out of inodes, whatever its
        // free bytes (tmpfs: `nr_inodes`).
        Some(libc::ENOSPC) => Error::NoInodes {
            path: path.to_path_buf(),
            mount: dir.to_path_buf(),
            free: sys::fs_info(dir).ok().and_then(|f| f.free),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let d = Path::new("/dev/shm");
        for bad in [
            "",
            "a/b",
            "/x",
            ".",
            "..",
            "a\0b",
            "a\nb",
            "tab\there",
            "esc\x1b[2J",
            "del\x7f",
            "c1\u{85}",
        ] {
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
