//! The narrow set of OS calls the segment layer makes (besides what `std`
//! and memmap2 wrap): `flock`, OFD byte-range locks, `fallocate`, `statvfs`.
//! Everything returns `io::Result` so the caller can attach the object's path.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::fcntl::{FallocateFlags, FcntlArg, fallocate as nix_fallocate, fcntl};

/// `flock` operations.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Flock {
    Shared,
    Exclusive,
}

/// `flock(fd, op | LOCK_NB)`. `Ok(false)` when the lock is held by another
/// open file description.
pub(crate) fn try_flock(file: &File, op: Flock) -> io::Result<bool> {
    let op = match op {
        Flock::Shared => libc::LOCK_SH,
        Flock::Exclusive => libc::LOCK_EX,
    } | libc::LOCK_NB;
    loop {
        // SAFETY: flock takes a file descriptor and an integer; the fd is
        // valid because `file` is borrowed for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

fn ofd_lock_struct(kind: libc::c_int, offset: u64) -> io::Result<libc::flock> {
    let start = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "lock offset too large"))?;
    Ok(libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: 1,
        // OFD locks require l_pid == 0 on input.
        l_pid: 0,
    })
}

/// Takes an open-file-description write lock on the single byte at `offset`.
/// `Ok(false)` when another open file description holds it.
pub(crate) fn try_ofd_lock(file: &File, offset: u64) -> io::Result<bool> {
    let lock = ofd_lock_struct(libc::F_WRLCK, offset)?;
    match fcntl(file.as_fd(), FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Releases the OFD lock on the byte at `offset`.
pub(crate) fn ofd_unlock(file: &File, offset: u64) -> io::Result<()> {
    let lock = ofd_lock_struct(libc::F_UNLCK, offset)?;
    fcntl(file.as_fd(), FcntlArg::F_OFD_SETLK(&lock))?;
    Ok(())
}

/// True when another open file description holds a lock on the byte at
/// `offset` (locks held through `file` itself are not reported).
pub(crate) fn ofd_locked_by_other(file: &File, offset: u64) -> io::Result<bool> {
    let mut lock = ofd_lock_struct(libc::F_WRLCK, offset)?;
    fcntl(file.as_fd(), FcntlArg::F_OFD_GETLK(&mut lock))?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Allocates `len` bytes of backing store now, so that a full file system
/// fails here with ENOSPC instead of with SIGBUS on first touch.
pub(crate) fn fallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large"))?;
    loop {
        match nix_fallocate(file.as_fd(), FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Free bytes for unprivileged users and the longest file name on the file
/// system holding `dir`. `free` is `None` for a file system without a size
/// limit (a tmpfs with `size=0`).
pub(crate) struct FsInfo {
    pub(crate) free: Option<u64>,
    pub(crate) name_max: u64,
}

pub(crate) fn fs_info(dir: &Path) -> io::Result<FsInfo> {
    let st = nix::sys::statvfs::statvfs(dir)?;
    let blocks = st.blocks() as u64;
    let free = if blocks == 0 {
        None
    } else {
        Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
    };
    Ok(FsInfo {
        free,
        name_max: st.name_max() as u64,
    })
}

/// Is a process with this pid running (or a zombie)?
pub(crate) fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// One lock from `/proc/locks` on a given inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LockEntry {
    /// `FLOCK` (true) or an `OFDLCK`/`POSIX` byte-range lock (false).
    pub(crate) is_flock: bool,
    /// Holder pid as the kernel reports it (-1 for some OFD locks).
    pub(crate) pid: i32,
    /// First byte (0 for flock).
    pub(crate) start: u64,
}

/// Reads `/proc/locks` and returns the granted locks on (dev, ino).
pub(crate) fn locks_on(dev: u64, ino: u64) -> Vec<LockEntry> {
    let Ok(text) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    parse_locks(&text, libc::major(dev) as u64, libc::minor(dev) as u64, ino)
}

fn parse_locks(text: &str, major: u64, minor: u64, ino: u64) -> Vec<LockEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let _id = fields.next();
        let Some(class) = fields.next() else { continue };
        if class == "->" {
            // A waiter, not a holder.
            continue;
        }
        let (Some(_adv), Some(_mode), Some(pid), Some(id), Some(start)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let mut parts = id.split(':');
        let (Some(ma), Some(mi), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let matches = u64::from_str_radix(ma, 16).ok() == Some(major)
            && u64::from_str_radix(mi, 16).ok() == Some(minor)
            && i.parse::<u64>().ok() == Some(ino);
        if !matches {
            continue;
        }
        out.push(LockEntry {
            is_flock: class == "FLOCK",
            pid: pid.parse().unwrap_or(-1),
            start: start.parse().unwrap_or(0),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_locks() {
        let text = "\
1: FLOCK  ADVISORY  READ  4242 00:1a:77 0 EOF
2: OFDLCK ADVISORY  WRITE -1 00:1a:77 8192 8192
2: -> FLOCK  ADVISORY  WRITE 4343 00:1a:77 0 EOF
3: FLOCK  ADVISORY  READ  5 00:1b:77 0 EOF
garbage
";
        let got = parse_locks(text, 0, 0x1a, 77);
        assert_eq!(
            got,
            vec![
                LockEntry {
                    is_flock: true,
                    pid: 4242,
                    start: 0
                },
                LockEntry {
                    is_flock: false,
                    pid: -1,
                    start: 8192
                },
            ]
        );
    }
}
