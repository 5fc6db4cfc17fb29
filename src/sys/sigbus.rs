//! Surviving a truncated ring: a process-wide `SIGBUS` handler that turns
//! the loss of a named ring's pages into `Corrupted` instead of a crash.
//!
//! # The problem
//!
//! A named ring is a file that every attached process maps. Any process
//! that can write the file can `ftruncate` it; the kernel then removes the
//! pages past the new end from every mapping, and the next access to one of
//! them, in any attached process, raises `SIGBUS`, whose default action
//! kills the process. (Anonymous memfd rings are sealed against shrinking,
//! so they never need any of this.)
//!
//! # What this module does
//!
//! * [`MappingGuard::register`] records every named ring mapping, right
//!   after it is made and before anything touches it, in a fixed-size,
//!   lock-free registry of `static` atomics (start, length, state), and
//!   installs the handler the first time. [`MappingGuard::release`] removes
//!   the record right before the mapping is unmapped.
//! * The handler, for a fault the kernel raised (`BUS_ADRERR`) at an
//!   address inside a registered mapping, maps private zero pages over the
//!   **whole** mapping (`mmap(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)`),
//!   marks the record lost, and returns: the faulting instruction runs
//!   again, on zeros. Every ring operation checks the mark ([`Poison`]) and
//!   reports `Corrupted` from then on.
//! * Anything else (a fault elsewhere, a signal sent with `kill`, a memory
//!   error) goes to the disposition that was installed before ours, as the
//!   kernel would have delivered it: the previous handler is called, or,
//!   for `SIG_DFL` (and `SIG_IGN`, which the kernel overrides for a fault),
//!   the default is restored and the fault re-executes (or the signal is
//!   re-raised) so the process dies by `SIGBUS` exactly as without us.
//! * [`Poison::check_size`], called on idle polls, on error paths and at
//!   attach, catches a truncation that raised no fault here (`fstat` shows
//!   the file shorter than the mapping) and does the same replacement from
//!   normal context: a side that only waits may touch no lost page, and a
//!   truncation to a size inside a page leaves that page mapped, its tail
//!   reading as zeros (which fail a check, or look like zero messages).
//!
//! Why the whole mapping rather than the faulting page onward: afterwards
//! the handle's view is uniform and private (no mix of live shared header
//! pages and private zero data pages, no second fault if the file shrinks
//! further), and the mapping's own bounds are always valid split points,
//! also for hugetlbfs mappings, whose pages cannot be split at 4 KiB.
//!
//! # Safety argument (every `unsafe` block below relies on it)
//!
//! 1. **Async-signal safety.** The handler touches only `static` atomics
//!    (`AtomicUsize`/`AtomicU32`/`AtomicBool`, lock-free on every Linux
//!    target), makes raw system calls (`syscall(SYS_mmap)`), calls
//!    `sigaction` and `raise` (both on the POSIX async-signal-safe list),
//!    saves and restores `errno`, and calls the previous handler the way
//!    the kernel would have. It does not allocate, lock, format, panic
//!    (no indexing that can fail: `get`), or wait for another thread. It
//!    needs no alternate stack of its own: the faults it handles come from
//!    ring accesses in ordinary code, not from stack exhaustion, and its
//!    frame is small; `SA_ONSTACK` only keeps a previous handler that
//!    expects the thread's alternate stack (Rust's stack-overflow handler)
//!    on it.
//! 2. **It never maps over memory that is not a live ring mapping.** A
//!    registry record exists only from right after the `mmap` that made the
//!    mapping (in `Segment::map`) to right before its `munmap` (in
//!    `Segment`'s `Drop`). The handler reads a record as a seqlock: the
//!    sequence word is odd while its owner writes it, and a read counts only
//!    if the same even value is seen before and after the fields, so a start
//!    and a length always belong to one registration. The range it finds
//!    cannot be unmapped while it works on it: only code holding the
//!    `Segment` (handles and the chunks they lend, which borrow them)
//!    touches its addresses, and the unmapping happens only in the
//!    `Segment`'s `Drop`, which cannot run while an access through it is in
//!    progress. A record is released before `munmap`, and the kernel
//!    serializes `munmap` and any later `mmap` that reuses the addresses,
//!    so a stale record never covers someone else's new mapping.
//! 3. **Only one thread replaces a mapping.** The record's state goes from
//!    `HEALTHY` to `REPLACING` by compare-and-swap; the winner maps, then
//!    stores `REPLACED` (or `FAILED`). Another thread faulting meanwhile
//!    returns and faults again until the replacement is in place, a bounded
//!    wait on a system call in progress (the normal-context path blocks
//!    signals while it holds `REPLACING`, so no handler of its own thread
//!    can wait on it).
//! 4. **Re-executing the access is sound.** The replacement keeps the
//!    addresses readable and writable, so the instruction completes. To the
//!    program, the ring's shared memory has turned to zeros at once, which
//!    is what a peer writing zeros could already do: the crate reads and
//!    writes the mapping only through raw pointers, atomics and copies of
//!    `Pod` values (every bit pattern valid), and validates what it reads.
//! 5. **Registrations are visible to the handler.** A record is published
//!    with a release store before `Segment::map` returns; a thread that
//!    accesses the mapping got the `Segment` through synchronization (an
//!    `Arc`), so its handler's acquire loads see the record.
//! 6. **Only real faults act.** The handler acts only on `si_code ==
//!    BUS_ADRERR`, which only the kernel can send to another process
//!    (`rt_sigqueueinfo` refuses non-negative codes across processes), and
//!    even a forged one could only replace a live ring mapping of ours.
//! 7. **A [`Poison`] never outlives its registration.** Ring views copy it
//!    from their `Segment` and live inside handles that hold the `Segment`
//!    (an `Arc`), so a record is never read through a stale `Poison` after
//!    it was released and reused.
//!
//! # Limits (also in README's "Untrusted memory")
//!
//! * A handler installed later by the program (or another library) that
//!   does not chain to the previous one disables this. One installed before
//!   is chained to.
//! * A thread that blocks `SIGBUS` is killed by the kernel on a fault
//!   whatever the handler; a thread whose stack is exhausted cannot run
//!   any handler.
//! * If the kernel refuses the replacement (`ENOMEM`), the fault goes to
//!   the previous disposition (by default the process dies).
//! * Accesses made by the kernel on our behalf (`futex` on a lost page,
//!   `write(2)` from ring memory) fail with `EFAULT` instead of raising
//!   `SIGBUS`; callers treat that as an error or a spurious wake-up, and
//!   the next access from user space takes the path above.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering, fence};

/// Most named ring mappings one process can have at once. Anonymous
/// (sealed memfd) rings do not take a record.
pub(crate) const MAX_MAPPINGS: usize = 4096;

/// Record states.
const HEALTHY: u32 = 0;
/// One thread is mapping zero pages over the range.
const REPLACING: u32 = 1;
/// Zero pages are in place; the ring's memory is lost to this process.
const REPLACED: u32 = 2;
/// The replacement failed: faults in the range take the default path.
const FAILED: u32 = 3;

/// One registered mapping. `seq` is odd while the owner writes the record;
/// `len == 0` means free. `fd` and `expected` are read only by the owner
/// (through its [`Poison`]), never by the handler.
struct Record {
    seq: AtomicUsize,
    start: AtomicUsize,
    len: AtomicUsize,
    state: AtomicU32,
    /// The mapped file's descriptor, owned by the `Segment` that owns the
    /// registration and open for as long as it.
    fd: AtomicI32,
    /// The size the file must have for the mapping to be whole.
    expected: AtomicUsize,
}

impl Record {
    const fn new() -> Record {
        Record {
            seq: AtomicUsize::new(0),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            state: AtomicU32::new(HEALTHY),
            fd: AtomicI32::new(-1),
            expected: AtomicUsize::new(0),
        }
    }
}

static REGISTRY: [Record; MAX_MAPPINGS] = [const { Record::new() }; MAX_MAPPINGS];
/// One past the highest record ever used: the handler scans no further.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// Set once any mapping was lost: the hot path's first (and, while no ring
/// ever lost memory, only) load.
static ANY_LOST: AtomicBool = AtomicBool::new(false);
/// The record of mappings that need none (sealed memfds): never
/// registered, never lost.
static NEVER: Record = Record::new();

/// The `SIGBUS` disposition in place before ours (`sa_sigaction` and
/// `sa_flags`), for chaining.
static PREV_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREV_FLAGS: AtomicUsize = AtomicUsize::new(0);
/// The outcome of installing the handler (once per process): 0 or an errno.
static INSTALLED: OnceLock<i32> = OnceLock::new();

/// A mapping's lost-memory mark, as the ring views hold it. Copyable;
/// valid while the registration it came from stands (views live no longer
/// than their `Segment`, which releases the registration when dropped).
#[derive(Clone, Copy)]
pub(crate) struct Poison(&'static Record);

impl Poison {
    /// A mark that is never set (memory that cannot be truncated, loom
    /// models).
    pub(crate) fn never() -> Poison {
        Poison(&NEVER)
    }

    /// Was the memory lost? Two relaxed loads of process-local, read-mostly
    /// words (one while no ring in the process ever lost memory): cheap
    /// enough for every operation. Relaxed: the mark is set by this
    /// thread's own handler (program order) or by another thread's (then
    /// this one sees it at its next check); it orders no other access.
    #[inline(always)]
    pub(crate) fn is_set(self) -> bool {
        ANY_LOST.load(Ordering::Relaxed) && self.0.state.load(Ordering::Relaxed) != HEALTHY
    }

    /// Was the memory lost, or has the file shrunk below the mapping (one
    /// `fstat`)? In the second case the mapping is replaced now, as the
    /// handler would at the first access to a lost page. For idle polls and
    /// error paths: a truncation to a size inside a page leaves that page
    /// mapped (its tail reads as zeros) and raises no SIGBUS there, and a
    /// side that only waits may touch no lost page at all.
    pub(crate) fn check_size(self) -> bool {
        if self.is_set() {
            return true;
        }
        let rec = self.0;
        let (start, len) = (
            rec.start.load(Ordering::Relaxed),
            rec.len.load(Ordering::Relaxed),
        );
        if len == 0 {
            return false;
        }
        let expected = rec.expected.load(Ordering::Relaxed) as u64;
        match file_size(rec.fd.load(Ordering::Relaxed)) {
            Ok(size) if size < expected => {
                let _mask = BlockedSignals::new();
                replace(rec, start, len);
                true
            }
            _ => false,
        }
    }
}

impl std::fmt::Debug for Poison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_set() {
            "Poison(lost)"
        } else {
            "Poison(ok)"
        })
    }
}

/// Why a mapping could not be registered.
#[derive(Debug)]
pub(crate) enum RegisterError {
    /// `sigaction` failed.
    Install(io::Error),
    /// [`MAX_MAPPINGS`] named ring mappings are registered already.
    Full,
}

/// The registration of one mapping. [`release`](Self::release) (also run
/// on drop) must happen before the mapping is unmapped.
#[derive(Debug)]
pub(crate) struct MappingGuard {
    /// `false` once released (or for a sealed mapping, never registered).
    registered: bool,
    poison: Poison,
}

impl MappingGuard {
    /// Registers the mapping `[ptr, ptr + len)` of `file`, whose size must
    /// stay at least `expected`, installing the handler first if this is
    /// the process's first. `file` must stay open while the registration
    /// stands (the `Segment` owns both).
    pub(crate) fn register(
        ptr: *mut u8,
        len: usize,
        file: &File,
        expected: u64,
    ) -> Result<MappingGuard, RegisterError> {
        install().map_err(RegisterError::Install)?;
        let len = len.next_multiple_of(page_size());
        let expected = usize::try_from(expected).unwrap_or(usize::MAX);
        let rec = claim_record(ptr as usize, len, file.as_raw_fd(), expected)
            .ok_or(RegisterError::Full)?;
        Ok(MappingGuard {
            registered: true,
            poison: Poison(rec),
        })
    }

    /// A guard for a mapping that cannot lose its pages (a memfd sealed
    /// against shrinking): registers nothing, never poisoned.
    pub(crate) fn sealed() -> MappingGuard {
        MappingGuard {
            registered: false,
            poison: Poison::never(),
        }
    }

    /// The mark ring views copy and check.
    pub(crate) fn poison(&self) -> Poison {
        self.poison
    }

    /// Was the mapping's memory lost?
    pub(crate) fn is_lost(&self) -> bool {
        self.poison.is_set()
    }

    /// Removes the record. Call before unmapping; idempotent.
    pub(crate) fn release(&mut self) {
        if !std::mem::replace(&mut self.registered, false) {
            return;
        }
        let rec = self.poison.0;
        // Odd: a handler reading the record now discards what it reads.
        rec.seq.fetch_add(1, Ordering::Relaxed);
        // Release fence: the odd value is visible before the cleared fields
        // (the seqlock writer's order).
        fence(Ordering::Release);
        rec.len.store(0, Ordering::Relaxed);
        rec.start.store(0, Ordering::Relaxed);
        rec.fd.store(-1, Ordering::Relaxed);
        // Release: even again; a handler that sees this value sees the
        // cleared fields. The record is free for the next registration.
        rec.seq.fetch_add(1, Ordering::Release);
    }
}

impl Drop for MappingGuard {
    fn drop(&mut self) {
        self.release();
    }
}

/// Takes a free record for `[start, start + len)`; `None` when all are used.
fn claim_record(start: usize, len: usize, fd: RawFd, expected: usize) -> Option<&'static Record> {
    for (index, rec) in REGISTRY.iter().enumerate() {
        let seq = rec.seq.load(Ordering::Acquire);
        if seq & 1 == 1 || rec.len.load(Ordering::Relaxed) != 0 {
            continue;
        }
        // Odd: ours to write. Fails if anyone else claimed it meanwhile.
        if rec
            .seq
            .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        HIGH.fetch_max(index + 1, Ordering::Release);
        fence(Ordering::Release);
        rec.state.store(HEALTHY, Ordering::Relaxed);
        rec.start.store(start, Ordering::Relaxed);
        rec.len.store(len, Ordering::Relaxed);
        rec.fd.store(fd, Ordering::Relaxed);
        rec.expected.store(expected, Ordering::Relaxed);
        // Release: a handler that reads this even value (acquire) sees the
        // fields above.
        rec.seq.store(seq + 2, Ordering::Release);
        return Some(rec);
    }
    None
}

/// The record whose range holds `addr`, read consistently (see the module
/// docs, point 2).
fn find(addr: usize) -> Option<(&'static Record, usize, usize)> {
    let high = HIGH.load(Ordering::Acquire).min(MAX_MAPPINGS);
    for index in 0..high {
        let rec = REGISTRY.get(index)?;
        let seq = rec.seq.load(Ordering::Acquire);
        if seq & 1 == 1 {
            continue;
        }
        let start = rec.start.load(Ordering::Relaxed);
        let len = rec.len.load(Ordering::Relaxed);
        // Acquire fence: the field loads above happen before the re-check.
        fence(Ordering::Acquire);
        if rec.seq.load(Ordering::Relaxed) != seq {
            continue;
        }
        if len != 0 && addr.wrapping_sub(start) < len {
            return Some((rec, start, len));
        }
    }
    None
}

/// Maps zero pages over `rec`'s range `[start, start + len)` unless
/// another thread did or is doing it. Returns false only when the
/// replacement failed (now or before): the caller then takes the default
/// path.
fn replace(rec: &Record, start: usize, len: usize) -> bool {
    match rec
        .state
        .compare_exchange(HEALTHY, REPLACING, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {
            ANY_LOST.store(true, Ordering::Release);
            let ok = map_zero_pages(start, len);
            let state = if ok { REPLACED } else { FAILED };
            rec.state.store(state, Ordering::Release);
            ok
        }
        Err(FAILED) => false,
        // REPLACING: another thread is mapping; REPLACED: done. Either
        // way, running the access again is right.
        Err(_) => true,
    }
}

/// `mmap(start, len, RW, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS |
/// MAP_NORESERVE)` as a raw system call (no libc wrapper, which may take a
/// lock for `MAP_FIXED`).
fn map_zero_pages(start: usize, len: usize) -> bool {
    #[cfg(target_pointer_width = "64")]
    const MMAP: libc::c_long = libc::SYS_mmap;
    #[cfg(not(target_pointer_width = "64"))]
    const MMAP: libc::c_long = libc::SYS_mmap2;
    // Module docs, points 1, 2 and 4.
    // SAFETY: [start, start + len) is a live ring mapping nothing else unmaps
    // meanwhile; a raw system call with integer arguments is signal-safe.
    let rc = unsafe {
        libc::syscall(
            MMAP,
            start,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1 as libc::c_int,
            0 as libc::c_long,
        )
    };
    rc as usize == start
}

/// Installs the handler once per process; later calls report the outcome.
fn install() -> io::Result<()> {
    let errno = *INSTALLED.get_or_init(|| match install_now() {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(libc::EINVAL),
    });
    if errno == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(errno))
    }
}

fn install_now() -> io::Result<()> {
    // SAFETY: an all-zero `sigaction` is a valid value (SIG_DFL, empty
    // mask, no flags, no restorer).
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: queries the disposition into a local; no handler changes.
    if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Stored before ours is installed, so the handler never chains to an
    // unset value.
    remember(&old);
    // SAFETY: as above.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigbus;
    new.sa_sigaction = handler as usize;
    // SA_ONSTACK: runs on the thread's alternate stack if it has one (as
    // Rust's own handler, which we may chain to, expects); our handler
    // needs little stack. SA_RESTART: a sent SIGBUS does not make
    // interrupted system calls fail with EINTR.
    new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    // SAFETY: sigemptyset initializes the local mask.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    // SAFETY: as above.
    let mut replaced: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: installs `on_sigbus`, which is async-signal-safe (module
    // docs, point 1) and lives for the whole program.
    if unsafe { libc::sigaction(libc::SIGBUS, &new, &mut replaced) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Someone changed the disposition between our two calls: chain to
    // theirs.
    if replaced.sa_sigaction != old.sa_sigaction || replaced.sa_flags != old.sa_flags {
        remember(&replaced);
    }
    Ok(())
}

fn remember(action: &libc::sigaction) {
    PREV_FLAGS.store(action.sa_flags as usize, Ordering::Release);
    PREV_HANDLER.store(action.sa_sigaction, Ordering::Release);
}

/// The handler. See the module docs.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno slot; saving and
    // restoring it keeps the interrupted code's errno (point 1).
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t (checked
    // for null anyway); it is only read.
    let recovered = !info.is_null() && recover(unsafe { &*info });
    if !recovered {
        // SAFETY: forwards the kernel's own arguments to the previous
        // disposition (point 1).
        unsafe { chain(sig, info, ctx) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// A kernel-raised fault (`BUS_ADRERR`: no page behind the address) inside
/// a registered mapping: replace it. True if the access may run again.
fn recover(info: &libc::siginfo_t) -> bool {
    if info.si_code != libc::BUS_ADRERR {
        return false;
    }
    // SAFETY: for SIGBUS with a fault si_code the kernel fills si_addr.
    let addr = unsafe { info.si_addr() } as usize;
    match find(addr) {
        Some((rec, start, len)) => replace(rec, start, len),
        None => false,
    }
}

/// Hands the signal to the disposition that was in place before ours.
///
/// # Safety
/// Only from `on_sigbus`, with the kernel's arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let handler = PREV_HANDLER.load(Ordering::Acquire);
    let flags = PREV_FLAGS.load(Ordering::Acquire) as libc::c_int;
    // A fault the kernel raised recurs when the access runs again; a sent
    // signal (kill, tgkill, sigqueue) or an asynchronous memory error does
    // not.
    let code = if info.is_null() {
        0
    } else {
        // SAFETY: non-null siginfo from the kernel (see `on_sigbus`).
        unsafe { (*info).si_code }
    };
    let recurs = matches!(
        code,
        libc::BUS_ADRALN | libc::BUS_ADRERR | libc::BUS_OBJERR | libc::BUS_MCEERR_AR
    );
    if handler == libc::SIG_IGN && !recurs {
        return;
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // The kernel does not let a fault be ignored: both mean the
        // default action, which kills the process with SIGBUS.
        // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask.
        let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: sigaction is async-signal-safe; the argument is a local.
        unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
        if !recurs {
            // Pending until this handler returns, then the default action.
            // SAFETY: raise is async-signal-safe.
            unsafe { libc::raise(sig) };
        }
        return;
    }
    if flags & libc::SA_RESETHAND != 0 {
        // One-shot: the kernel would have reset it before calling it.
        PREV_HANDLER.store(libc::SIG_DFL, Ordering::Release);
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous disposition was installed with SA_SIGINFO,
        // so `handler` is a three-argument signal handler; we call it as
        // the kernel would have.
        let f = unsafe {
            std::mem::transmute::<
                usize,
                extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
            >(handler)
        };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO, `handler` is a one-argument handler.
        let f = unsafe { std::mem::transmute::<usize, extern "C" fn(libc::c_int)>(handler) };
        f(sig);
    }
}

/// All signals blocked for this thread while it lives (normal context only),
/// so that no handler of this thread runs while it holds `REPLACING`.
struct BlockedSignals {
    old: libc::sigset_t,
}

impl BlockedSignals {
    fn new() -> BlockedSignals {
        // SAFETY: sigset_t is plain data; sigfillset initializes `all`.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: initializes a local set.
        unsafe { libc::sigfillset(&mut all) };
        // SAFETY: changes only this thread's mask; `old` receives the
        // previous one, restored on drop.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old) };
        BlockedSignals { old }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// The size of the file behind `fd` (`fstat`).
fn file_size(fd: RawFd) -> io::Result<u64> {
    // SAFETY: stat is plain data, filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open (owned by the guard's Segment, see the field's
    // docs); fstat only writes the local.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_size as u64)
}

/// The system's page size.
fn page_size() -> usize {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_by_address_and_released() {
        // Addresses no user mapping can have (the top of the address
        // space), so a real fault elsewhere in the test process never
        // matches these records.
        let base = (usize::MAX - (1 << 20)) & !0xfff;
        let a = claim_record(base, 8192, -1, 8192).expect("a free record");
        let b = claim_record(base + 8192, 4096, -1, 4096).expect("a free record");
        let found = |addr| find(addr).map(|(rec, _, _)| rec as *const Record);
        assert_eq!(found(base + 100), Some(a as *const Record));
        assert_eq!(found(base + 8192), Some(b as *const Record));
        assert_eq!(found(base + 8192 + 4096), None);
        for rec in [a, b] {
            let mut guard = MappingGuard {
                registered: true,
                poison: Poison(rec),
            };
            assert!(!guard.is_lost());
            guard.release();
            guard.release();
        }
        assert_eq!(found(base + 100), None);
    }

    #[test]
    fn a_sealed_guard_is_never_lost() {
        let guard = MappingGuard::sealed();
        assert!(!guard.is_lost());
        assert!(!guard.poison().check_size());
    }
}
