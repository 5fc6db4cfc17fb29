//! The process-wide waker thread: one thread that sleeps in `futex_waitv`
//! on the eventcount words of every ring with a pending async waiter, and
//! wakes the waiter (a task's [`Waker`], or a readiness fd) whose word
//! moved.
//!
//! A waiter registers in the ring's eventcount exactly as a blocking sleeper
//! does ([`Event::register`]: key, waiter count, barrier, then the caller's
//! re-check), so publishers pay nothing new: they already look at the
//! waiter count and bump the word only when it is non-zero. The thread owns
//! the registration from then on: whoever removes an entry from the table
//! (the thread when it fires, or the waiter when it cancels) undoes the
//! waiter count, under the table's lock, so it is undone exactly once.
//!
//! An entry holds an `Arc<Segment>`: the mapping that holds its words lives
//! while the entry does, even if its future is leaked. The thread reads
//! those words only under the lock. The kernel gets their addresses; a word
//! unmapped after its entry was removed makes `futex_waitv` fail with
//! `EFAULT` (the thread goes round again), never a fault here.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::layout::WaitLine;
use crate::segment::Segment;
use crate::sys;
use crate::wait::Event;

/// Most futex words one `futex_waitv` call takes (the kernel's limit).
const WAITV_MAX: usize = 128;

/// With more rings than one `futex_waitv` call takes, or without
/// `futex_waitv`, the thread looks at every word at least this often.
const POLL_FALLBACK: Duration = Duration::from_millis(1);

/// How long the thread sleeps with nothing to watch (a change of the table
/// wakes it sooner).
const IDLE: Duration = Duration::from_secs(3600);

/// One direction's eventcount words, kept valid by the segment they live in.
pub(crate) struct Watch {
    /// Keeps the mapping alive (never read: held for its lifetime).
    _seg: Arc<Segment>,
    line: *const WaitLine,
    waiters: *const AtomicU32,
}

// SAFETY: the pointers refer to atomics in the mapping that `seg` keeps
// alive; atomics may be used from any thread.
unsafe impl Send for Watch {}

impl Watch {
    /// The words of `event`, which lives in `seg`'s mapping.
    pub(crate) fn new(event: Event<'_>, seg: &Arc<Segment>) -> Watch {
        Watch {
            _seg: seg.clone(),
            line: event.line,
            waiters: event.waiters,
        }
    }

    /// The eventcount, borrowed from the mapping `self._seg` keeps alive.
    pub(crate) fn event(&self) -> Event<'_> {
        // SAFETY: both pointers came from an `Event` over `self._seg`'s
        // mapping (see `new`); the `Arc` keeps it mapped while `self` lives.
        unsafe {
            Event {
                line: &*self.line,
                waiters: &*self.waiters,
            }
        }
    }

    /// The futex word's address (for the kernel only).
    fn word(&self) -> *const AtomicU32 {
        &self.event().line.seq
    }
}

/// What to wake when an entry fires.
pub(crate) enum Target {
    /// A task.
    Task(Waker),
    /// A readiness fd (signalled through the closure's owner).
    Fd(Arc<super::readiness::Shared>),
}

impl Target {
    fn fire(self) {
        match self {
            Target::Task(w) => w.wake(),
            Target::Fd(fd) => fd.signal(),
        }
    }
}

struct Entry {
    id: u64,
    watch: Watch,
    key: u32,
    /// When to fire even if the word did not move: the waiter's next
    /// check of its peer's liveness (a dead peer cannot wake anyone).
    deadline: Option<Instant>,
    target: Target,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    next_id: u64,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    entries: Vec::new(),
    next_id: 1,
});

/// Bumped (and woken) whenever an entry is added: the thread also waits on
/// it, so it picks up new entries at once.
static CONTROL: AtomicU32 = AtomicU32::new(0);

/// Whether the thread runs (`false`: it could not be started).
static STARTED: OnceLock<bool> = OnceLock::new();

fn table() -> MutexGuard<'static, Table> {
    // A panic while holding the lock cannot leave the table inconsistent
    // (every update is one push or one removal), so a poisoned lock is used
    // as it is.
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

fn ensure_thread() -> bool {
    *STARTED.get_or_init(|| {
        match std::thread::Builder::new()
            .name("shmring-waker".into())
            .spawn(run)
        {
            Ok(_) => true,
            Err(e) => {
                log::error!(
                    "shmring: cannot start the async waker thread ({e}); async waits poll instead"
                );
                false
            }
        }
    })
}

/// A registered entry, as its waiter knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// Hands a registered waiter (its key taken with [`Event::register`], its
/// condition re-checked) to the thread. `Err(watch)` if the thread could
/// not be started: the caller unregisters and polls.
pub(crate) fn add(
    watch: Watch,
    key: u32,
    deadline: Option<Instant>,
    target: Target,
) -> Result<Ticket, Watch> {
    if !ensure_thread() {
        return Err(watch);
    }
    let id = {
        let mut t = table();
        let id = t.next_id;
        t.next_id += 1;
        t.entries.push(Entry {
            id,
            watch,
            key,
            deadline,
            target,
        });
        id
    };
    // Release: the thread that sees the new value (acquire) sees the entry
    // (the lock orders it anyway).
    CONTROL.fetch_add(1, Ordering::Release);
    if let Err(e) = sys::futex_wake(&CONTROL) {
        log::debug!("futex wake failed: {e}");
    }
    Ok(Ticket(id))
}

/// Replaces a still-pending entry's waker; `false` if it already fired
/// (the caller registers again).
pub(crate) fn refresh(ticket: Ticket, waker: &Waker) -> bool {
    let mut t = table();
    match t.entries.iter_mut().find(|e| e.id == ticket.0) {
        Some(e) => {
            if let Target::Task(w) = &mut e.target
                && !w.will_wake(waker)
            {
                *w = waker.clone();
            }
            true
        }
        None => false,
    }
}

/// Is the entry still waiting (not fired, not removed)?
pub(crate) fn pending(ticket: Ticket) -> bool {
    table().entries.iter().any(|e| e.id == ticket.0)
}

/// Withdraws an entry (its waiter was dropped or got what it waited for).
/// Undoes its registration if the thread had not fired it yet.
pub(crate) fn remove(ticket: Ticket) {
    let mut t = table();
    if let Some(i) = t.entries.iter().position(|e| e.id == ticket.0) {
        let e = t.entries.swap_remove(i);
        e.watch.event().unregister();
    }
}

/// The thread: fire what moved or is due, then sleep on everything else.
fn run() {
    let mut fired: Vec<Target> = Vec::new();
    let mut words: Vec<(*const AtomicU32, u32)> = Vec::with_capacity(WAITV_MAX);
    let mut waitv = true;
    loop {
        // Acquire: pairs with `add`'s release bump. Read before the table:
        // an entry added after this read changes the word, so the wait
        // below returns at once.
        let control = CONTROL.load(Ordering::Acquire);
        let timeout = {
            let mut t = table();
            let now = Instant::now();
            let mut next = now + IDLE;
            let mut kept = Vec::with_capacity(t.entries.len());
            for e in t.entries.drain(..) {
                // Acquire: pairs with the publisher's release bump.
                let moved = e.watch.event().line.seq.load(Ordering::Acquire) != e.key;
                if moved || e.deadline.is_some_and(|d| d <= now) {
                    e.watch.event().unregister();
                    fired.push(e.target);
                    // `e.watch` (its Arc) is dropped here, under the lock:
                    // a waiter that cancels after we fired waits for this.
                } else {
                    if let Some(d) = e.deadline {
                        next = next.min(d);
                    }
                    kept.push(e);
                }
            }
            t.entries = kept;
            words.clear();
            words.push((&CONTROL as *const AtomicU32, control));
            for e in t.entries.iter().take(WAITV_MAX - 1) {
                words.push((e.watch.word(), e.key));
            }
            if t.entries.len() > WAITV_MAX - 1 || (!waitv && !t.entries.is_empty()) {
                next = next.min(now + POLL_FALLBACK);
            }
            next.saturating_duration_since(now)
        };
        for target in fired.drain(..) {
            target.fire();
        }
        if waitv {
            match sys::futex_waitv_addrs(&words, timeout.max(Duration::from_micros(1))) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => waitv = false,
                // EFAULT: a word unmapped after its entry went; look again.
                Err(e) => log::debug!("futex_waitv failed: {e}"),
            }
        } else {
            // No futex_waitv (Linux before 5.16): sleep on the control word
            // only, for at most POLL_FALLBACK while anything is watched.
            if let Err(e) =
                sys::futex_wait(&CONTROL, control, timeout.max(Duration::from_micros(1)))
            {
                log::debug!("futex wait failed: {e}");
            }
        }
    }
}
