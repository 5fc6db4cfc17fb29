//! Objects a killed creator leaves behind, and how `gc`, `rm` and
//! `open_or_create` recognise them without ever touching a live creation
//! or another program's file.
//!
//! A creator (see `lifecycle`) makes its object with `open(O_CREAT|O_EXCL)`,
//! takes `flock(LOCK_EX)`, `fallocate`s the full size, maps it, writes the
//! header's magic number, then the rest of the header, initializes the ring
//! and publishes READY. Killed on the way, it leaves one of:
//!
//! 1. an empty object (0 bytes): killed before `fallocate`;
//! 2. a full-size object, all zero: killed before the magic was written;
//! 3. a header with the magic but not READY: killed while writing the
//!    header or initializing the ring.
//!
//! The kernel releases a dead creator's lock, so "nobody holds a lock" is
//! the first condition for all three. For 3 it is also enough: a header is
//! only ever written under the exclusive lock, so a header whose lock is
//! free was abandoned. For 1 and 2 it is not: between its `O_EXCL` open and
//! its `flock`, a live creator holds no lock either, and another program's
//! empty file looks the same. So an object without a header counts as
//! abandoned only when
//!
//! - it is a regular file of 0 bytes, or of a multiple of the page size
//!   and all zero (a single other byte makes it another program's file);
//! - nobody holds any lock on it (`flock` or byte-range lock);
//! - nothing has changed it for the grace period ([`GC_GRACE`] by
//!   default: the newer of its mtime and ctime is at least that old);
//! - no process has it open or mapped, as far as `/proc` tells (other
//!   users' processes may be invisible: the lock and age rules stand alone).
//!
//! Even a creator that stalls for longer than the grace period between its
//! open and its lock is safe: it finds the name gone (`st_nlink == 0`) once
//! it holds the lock, and starts over.
//!
//! In a directory shared with other programs (`/dev/shm`), an empty or
//! all-zero file that nobody has open, mapped or locked is taken for an
//! abandoned ring as well: nothing in it tells otherwise.

use std::fs::{File, Metadata};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{HeaderRead, read_header};
use crate::error::Result;
use crate::layout::{Descriptor, PAGE, STATE_READY};
use crate::sys;

/// How long an object without a header (0 bytes, or all zero) must have
/// gone unchanged, with nobody holding a lock on it, before `gc`, `rm` and
/// `open_or_create` take it for a creation whose creator died: 2 s. A live
/// creator holds no lock only between its `O_EXCL` open and its `flock`, two
/// system calls apart. Objects with a header need no grace period: a header
/// is written only under the exclusive lock. `segment::gc_with_grace` takes
/// another value.
pub const GC_GRACE: Duration = Duration::from_secs(2);

/// What an object without a header is.
pub(crate) enum Verdict {
    /// A dead creator's: may be removed, under the exclusive lock. Why.
    Abandoned(String),
    /// Perhaps a creation that has just begun: leave it for now. Why.
    Pending(String),
    /// Locked (`flock`), open or mapped by these processes. How.
    Held(Vec<i32>, String),
    /// Another program's file. Why.
    Foreign(String),
}

/// "0 bytes" or "N bytes, all zero so far".
fn describe(size: u64) -> String {
    if size == 0 {
        "empty (0 bytes)".to_string()
    } else {
        format!("{size} bytes of zeros with no header")
    }
}

/// How long ago the object last changed (the newer of mtime and ctime);
/// zero if that is in the future.
pub(crate) fn unchanged_for(meta: &Metadata) -> Duration {
    let at = |secs: i64, nsecs: i64| {
        UNIX_EPOCH
            + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
            + Duration::from_nanos(u64::try_from(nsecs).unwrap_or(0))
    };
    let changed = at(meta.mtime(), meta.mtime_nsec()).max(at(meta.ctime(), meta.ctime_nsec()));
    SystemTime::now()
        .duration_since(changed)
        .unwrap_or(Duration::ZERO)
}

/// Judges an object whose first bytes hold no header
/// ([`HeaderRead::Empty`]). `we_lock`: the caller holds its exclusive
/// `flock` (so `flock` entries in `/proc/locks` are the caller's own).
pub(crate) fn judge_empty(
    file: &File,
    path: &Path,
    meta: &Metadata,
    grace: Duration,
    we_lock: bool,
) -> Verdict {
    let size = meta.len();
    let locks = sys::locks_on(meta.dev(), meta.ino());
    if !we_lock {
        let mut pids: Vec<i32> = locks.iter().filter(|l| l.is_flock).map(|l| l.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        if !pids.is_empty() {
            return Verdict::Held(
                pids,
                format!(
                    "{} and locked: a creation in progress (its creator holds the lock until the ring is ready)",
                    describe(size)
                ),
            );
        }
    }
    if let Some(l) = locks.iter().find(|l| !l.is_flock) {
        return Verdict::Foreign(format!(
            "{}, with a byte-range lock held by pid {}: shmring takes those only on finished rings, so this is another program's file",
            describe(size),
            l.pid
        ));
    }
    if size != 0 && !size.is_multiple_of(PAGE as u64) {
        return Verdict::Foreign(format!(
            "no header and {size} bytes, which is no ring's size (rings are whole pages): another program's file"
        ));
    }
    let age = unchanged_for(meta);
    if age < grace {
        return Verdict::Pending(format!(
            "{} and unlocked, last changed {:.1} s ago: a creation that has just begun, or one whose creator died; `shmring gc` removes it once nothing has changed it for {} s",
            describe(size),
            age.as_secs_f64(),
            grace.as_secs_f64()
        ));
    }
    match all_zero(file, size) {
        Ok(true) => {}
        Ok(false) => {
            return Verdict::Foreign(
                "no header, but non-zero data further on: another program's file".into(),
            );
        }
        Err(e) => return Verdict::Pending(format!("could not read it: {e}")),
    }
    let users = users_of(path, meta, file.as_raw_fd());
    if !users.is_empty() {
        return Verdict::Held(
            users,
            format!(
                "{} and unlocked, but open or mapped: another program's file, or a creator that stalled",
                describe(size)
            ),
        );
    }
    Verdict::Abandoned(format!(
        "abandoned creation: {}, nobody holds it and nothing has changed it for {:.0} s (its creator died before writing the header)",
        describe(size),
        age.as_secs_f64()
    ))
}

/// Why a header that never became READY, with no lock held on it, was
/// abandoned.
pub(crate) fn unready_reason(desc: &Descriptor) -> String {
    let creator = if sys::pid_alive(desc.creator_pid as i32) {
        format!(
            "created by pid {}, which no longer holds it",
            desc.creator_pid
        )
    } else {
        format!("created by pid {}, which is not running", desc.creator_pid)
    };
    format!("never finished initializing ({creator}) and nobody holds it")
}

/// Is every byte of the file zero? Reads it all (only objects that are
/// candidates for removal get here).
fn all_zero(file: &File, size: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 64 << 10];
    let mut at = 0u64;
    while at < size {
        let want = usize::try_from((size - at).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = match file.read_at(&mut buf[..want], at) {
            Ok(0) => return Ok(true), // shrank meanwhile: what is left was zero
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Processes that have the object open (an fd whose link names its path)
/// or mapped (a `/proc/PID/maps` line with its device and inode), skipping
/// our own descriptor `ours`. Processes whose `/proc` entries this user may
/// not read are not seen.
fn users_of(path: &Path, meta: &Metadata, ours: RawFd) -> Vec<i32> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dev = format!(
        "{:02x}:{:02x}",
        libc::major(meta.dev()),
        libc::minor(meta.dev())
    );
    let ino = meta.ino().to_string();
    let me = std::process::id() as i32;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut users = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let base = entry.path();
        let has_fd = std::fs::read_dir(base.join("fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                let is_ours = pid == me && fd.file_name().to_str() == Some(&ours.to_string());
                !is_ours && std::fs::read_link(fd.path()).is_ok_and(|l| l == target)
            })
        });
        let maps_it = || {
            std::fs::read_to_string(base.join("maps")).is_ok_and(|maps| {
                maps.lines().any(|line| {
                    let mut f = line.split_ascii_whitespace().skip(3);
                    f.next() == Some(dev.as_str()) && f.next() == Some(ino.as_str())
                })
            })
        };
        if has_fd || maps_it() {
            users.push(pid);
        }
    }
    users
}

/// With the exclusive lock held on `file` (so nobody is attached and no
/// creator holds it), removes the object if a killed creator left it
/// (an unfinished header, or no header and [`Verdict::Abandoned`]).
/// Returns why, when it was removed (or, with `dry_run`, would be).
pub(crate) fn reclaim_locked(
    path: &Path,
    file: &File,
    grace: Duration,
    dry_run: bool,
) -> Result<Option<String>> {
    let Ok(meta) = file.metadata() else {
        return Ok(None);
    };
    if !meta.file_type().is_file() || meta.nlink() == 0 {
        return Ok(None);
    }
    let reason = match read_header(file, path, meta.len()) {
        Ok(HeaderRead::Header(desc, state)) if state != STATE_READY => unready_reason(&desc),
        Ok(HeaderRead::Empty) => match judge_empty(file, path, &meta, grace, true) {
            Verdict::Abandoned(why) => why,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    if dry_run || super::admin::unlink_if_same(path, file, false)? {
        Ok(Some(reason))
    } else {
        Ok(None)
    }
}
