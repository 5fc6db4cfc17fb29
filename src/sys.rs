//! Every system call the crate makes (besides what `std` and memmap2
//! wrap): `flock`, OFD byte-range locks, `fallocate`, `statvfs`, `/proc`
//! reads, `madvise`, `mlock`, memfd and fd passing, and for the wait layer
//! `futex` (wait/wake), `futex_waitv` and `membarrier`. Return codes are
//! checked; everything returns `io::Result` (or a typed outcome) so the
//! caller can attach the object's path. Only this module calls `libc`'s
//! system-call wrappers. [`sigbus`] holds the `SIGBUS` handler that lets a
//! process survive a peer truncating a named ring.
// Loom models emulate the futex and barrier calls (see `wait`), so those
// go unused in `cfg(loom)` builds.
#![cfg_attr(loom, allow(dead_code))]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{FallocateFlags, FcntlArg, fallocate as nix_fallocate, fcntl};

pub(crate) mod sigbus;

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
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    // /proc/locks is a seq_file, read about a page at a time: a lock taken
    // or released elsewhere between two of those reads shifts the list, and
    // the next page can skip an entry that was there all along (seen with
    // many tests locking in parallel). Two whole reads, and the one that
    // found more: a lock held throughout is missed only if both reads were
    // cut at that entry.
    let mut best = Vec::new();
    for _ in 0..2 {
        let Ok(text) = std::fs::read_to_string("/proc/locks") else {
            break;
        };
        let found = parse_locks(&text, major, minor, ino);
        if found.len() > best.len() {
            best = found;
        }
    }
    best
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

/// The huge page size of `dir` if it is a hugetlbfs mount.
pub(crate) fn hugetlbfs_page_size(dir: &Path) -> io::Result<Option<u64>> {
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    let st = nix::sys::statfs::statfs(dir)?;
    Ok((st.filesystem_type().0 as i64 == HUGETLBFS_MAGIC).then(|| st.block_size() as u64))
}

/// The first hugetlbfs mount in /proc/mounts whose page size is the
/// system's default, if any.
pub(crate) fn hugetlbfs_mount() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "hugetlbfs").then(|| std::path::PathBuf::from(dir.replace("\\040", " ")))
    })
}

/// The shmem transparent-huge-page setting, and whether `MADV_HUGEPAGE`
/// on a shmem mapping can give huge pages under it.
pub(crate) fn shmem_thp() -> (String, bool) {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .unwrap_or_default();
    let selected = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .unwrap_or("unsupported")
        .to_string();
    let usable = matches!(
        selected.as_str(),
        "always" | "within_size" | "advise" | "force"
    );
    (selected, usable)
}

/// Free huge pages of `page_size` bytes (`HugePages_Free` for the default
/// size), or `None` if the kernel has no pool of that size.
pub(crate) fn huge_pages_free(page_size: u64) -> Option<u64> {
    let path = format!(
        "/sys/kernel/mm/hugepages/hugepages-{}kB/free_hugepages",
        page_size / 1024
    );
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `madvise(MADV_HUGEPAGE)`.
pub(crate) fn advise_huge(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: madvise with MADV_HUGEPAGE changes only the kernel's paging
    // policy for the range, never its contents; the caller passes a range of
    // its own live mapping.
    let rc = unsafe { libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `mlock` of a range of our own mapping.
pub(crate) fn mlock(ptr: *const u8, len: usize) -> io::Result<()> {
    // The system call itself, not libc's wrapper: AddressSanitizer
    // replaces `mlock` with a no-op, and the ASan test run checks locking.
    // SAFETY: mlock only pins pages of the range (which the caller maps); it
    // does not read or write them.
    let rc = unsafe { libc::syscall(libc::SYS_mlock, ptr, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The soft `RLIMIT_MEMLOCK` in bytes (`u64::MAX`: unlimited).
pub(crate) fn memlock_limit() -> u64 {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _)) if soft == libc::RLIM_INFINITY => u64::MAX,
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// What `/proc/PID/smaps` says about a process's mapping of an inode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MappingFacts {
    /// The pid whose mapping this is.
    pub pid: i32,
    /// Page size the kernel uses for the mapping (KiB): 2048 on hugetlbfs.
    pub kernel_page_kib: u64,
    /// KiB of the mapping backed by PMD-mapped (transparent) huge pages.
    pub pmd_mapped_kib: u64,
    /// KiB of the mapping resident in memory.
    pub rss_kib: u64,
    /// KiB of the mapping locked in memory.
    pub locked_kib: u64,
    /// KiB of the mapping in size.
    pub size_kib: u64,
}

impl MappingFacts {
    /// Are the pages huge (hugetlbfs or PMD-mapped THP)?
    pub fn huge(&self) -> bool {
        self.kernel_page_kib > 4 || self.pmd_mapped_kib > 0
    }
}

/// Reads `/proc/PID/smaps` for the first mapping of inode `ino`.
pub(crate) fn mapping_facts(pid: i32, ino: u64) -> Option<MappingFacts> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut facts: Option<MappingFacts> = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header line: range perms offset dev inode [path].
            if facts.is_some() {
                break;
            }
            let inode = words.nth(3).and_then(|w| w.parse::<u64>().ok());
            if inode == Some(ino) {
                facts = Some(MappingFacts {
                    pid,
                    ..MappingFacts::default()
                });
            }
            continue;
        }
        let Some(f) = facts.as_mut() else { continue };
        let value: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        match first {
            "Size:" => f.size_kib = value,
            "Rss:" => f.rss_kib = value,
            "KernelPageSize:" => f.kernel_page_kib = value,
            "ShmemPmdMapped:" | "FilePmdMapped:" => f.pmd_mapped_kib += value,
            "Locked:" => f.locked_kib = value,
            _ => {}
        }
    }
    facts
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING [| MFD_HUGETLB])`.
pub(crate) fn memfd_create(name: &str, huge: bool) -> io::Result<File> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))?;
    let mut flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    if huge {
        flags |= libc::MFD_HUGETLB;
    }
    // SAFETY: cname is a valid NUL-terminated string for the call's
    // duration; on success the returned fd is new and owned by us alone.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The seals the kernel requires of an anonymous ring: no shrinking (so no
/// SIGBUS), no growing, and no changing the seals.
pub(crate) const RING_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Adds [`RING_SEALS`].
pub(crate) fn seal(file: &File) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own; F_ADD_SEALS takes an int.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, RING_SEALS) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The seals on `file` (`EINVAL` for files that cannot be sealed).
pub(crate) fn seals(file: &File) -> io::Result<i32> {
    // SAFETY: fcntl on an fd we own; F_GET_SEALS takes no argument.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if rc >= 0 {
        Ok(rc)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `file`'s descriptor (and one byte) over a Unix socket.
pub(crate) fn send_fd(sock: &std::os::unix::net::UnixStream, file: &File) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [file.as_raw_fd()];
    let iov = [io::IoSlice::new(b"R")];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receives one descriptor sent by [`send_fd`].
pub(crate) fn recv_fd(sock: &std::os::unix::net::UnixStream) -> io::Result<File> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            received.extend(fds);
        }
    }
    // Wrapping every received fd in a File closes the extras.
    let mut files: Vec<File> = received
        .into_iter()
        // SAFETY: each fd came to us in SCM_RIGHTS, so it is new and ours.
        .map(|fd| unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        .collect();
    if files.len() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected one descriptor, got {}", files.len()),
        ));
    }
    Ok(files.remove(0))
}

// ---------------------------------------------------------------------------
// futex, futex_waitv, membarrier (the wait layer's system calls)
// ---------------------------------------------------------------------------

/// How a futex wait ended. Every outcome is normal: the caller re-checks
/// its condition in a loop whatever happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken by `FUTEX_WAKE` (or spuriously: the kernel does not say).
    Woken,
    /// `EAGAIN`: the word no longer held the expected value when the
    /// kernel checked it, so there was nothing to wait for.
    Changed,
    /// `ETIMEDOUT`: the timeout ran out.
    TimedOut,
    /// `EINTR`: a signal interrupted the wait.
    Interrupted,
}

fn relative_timespec(timeout: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    }
}

/// Maps a futex wait's return code: `EAGAIN`, `ETIMEDOUT` and `EINTR` are
/// outcomes, any other error (`EFAULT`, `EINVAL`, `ENOSYS`, ...) an error.
fn futex_wait_outcome(rc: libc::c_long) -> io::Result<FutexWait> {
    if rc >= 0 {
        return Ok(FutexWait::Woken);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Ok(FutexWait::Changed),
        Some(libc::ETIMEDOUT) => Ok(FutexWait::TimedOut),
        Some(libc::EINTR) => Ok(FutexWait::Interrupted),
        _ => Err(e),
    }
}

/// `FUTEX_WAIT` (shared, not private: the sleepers are in other processes)
/// on `word` while it equals `expected`, at most `timeout` (relative,
/// CLOCK_MONOTONIC).
pub(crate) fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Duration,
) -> io::Result<FutexWait> {
    let ts = relative_timespec(timeout);
    // SAFETY: `word` is a valid, aligned 32-bit atomic for the duration of
    // the call (borrowed; its mapping is kept alive by the caller); the
    // timespec is a local the kernel only reads.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    futex_wait_outcome(rc)
}

/// `FUTEX_WAKE` (shared): wakes every sleeper on `word`; returns how many
/// were woken.
pub(crate) fn futex_wake(word: &std::sync::atomic::AtomicU32) -> io::Result<usize> {
    // SAFETY: as for `futex_wait`; FUTEX_WAKE only uses the address as a
    // key.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// `futex_waitv` (Linux 5.16+) over shared 32-bit futex words, each with
/// the value to wait while it holds, at most `timeout`. `Err` with
/// `ENOSYS` on older kernels (the caller falls back).
pub(crate) fn futex_waitv(
    words: &[(&std::sync::atomic::AtomicU32, u32)],
    timeout: Duration,
) -> io::Result<FutexWait> {
    let addrs: Vec<(*const std::sync::atomic::AtomicU32, u32)> = words
        .iter()
        .map(|&(w, k)| (w as *const std::sync::atomic::AtomicU32, k))
        .collect();
    futex_waitv_addrs(&addrs, timeout)
}

/// [`futex_waitv`] over raw addresses, for a waiter whose words may be
/// unmapped by another thread while it waits (the async layer's waker
/// thread). Only the kernel reads the addresses: an unmapped one makes the
/// call fail with `EFAULT`, never a fault in this process.
pub(crate) fn futex_waitv_addrs(
    words: &[(*const std::sync::atomic::AtomicU32, u32)],
    timeout: Duration,
) -> io::Result<FutexWait> {
    #[repr(C)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }
    const FUTEX2_SIZE_U32: u32 = 0x02;
    let list: Vec<FutexWaitv> = words
        .iter()
        .map(|&(w, k)| FutexWaitv {
            val: u64::from(k),
            uaddr: w as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        })
        .collect();
    // futex_waitv takes an absolute CLOCK_MONOTONIC deadline.
    let now =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_err(io::Error::from)?;
    let total = Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32) + timeout;
    let abs = relative_timespec(total);
    // SAFETY: `list` holds addresses of 32-bit futex words that the kernel
    // only reads (an unmapped one is `EFAULT`, not a fault here); the
    // timespec is a local. Shared (no FUTEX2_PRIVATE) futexes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            list.as_ptr(),
            list.len() as libc::c_uint,
            0 as libc::c_uint,
            &abs as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    futex_wait_outcome(rc)
}

/// `membarrier(cmd, 0)`; returns the call's non-negative result.
pub(crate) fn membarrier(cmd: libc::c_int) -> io::Result<libc::c_long> {
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_uint) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

// ---------------------------------------------------------------------------
// eventfd (the async layer's readiness fd)
// ---------------------------------------------------------------------------

/// A non-blocking, close-on-exec eventfd with counter 0.
#[cfg(all(feature = "async", not(loom)))]
pub(crate) fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: eventfd takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor we just opened and own alone.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd's counter (makes it readable). A full counter
/// (`EAGAIN`) is already readable: not an error.
#[cfg(all(feature = "async", not(loom)))]
pub(crate) fn eventfd_signal(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a local buffer to a descriptor we borrow.
    let rc = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Ok(())
}

/// Reads and resets an eventfd's counter; 0 when it was not signalled.
#[cfg(all(feature = "async", not(loom)))]
pub(crate) fn eventfd_drain(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a local buffer from a descriptor
    // we borrow.
    let rc = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EAGAIN) {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(u64::from_ne_bytes(buf))
}
