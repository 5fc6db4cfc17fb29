//! Creating and opening a named object, following the lifecycle protocol
//! (see the module docs of [`segment`](super)): the create and open
//! attempts and their retries, the lifecycle locks, reading the header
//! before mapping, name checks, and the errors of `open(2)`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Segment;
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
pub(super) fn same_inode(path: &Path, file: &File) -> bool {
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
