//! The one error type for setting up, attaching to and administering rings.
//!
//! Queue operations have their own small errors (`TryPushError`, `PopError`,
//! ...) that give the unsent value back and cost nothing to build on a hot
//! path; each converts into this type with `?` (the value is dropped). Every
//! message names the object (its full path, where one is known) and says
//! what to do about it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while creating, attaching to, validating or
/// removing a ring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object of that name exists in the directory.
    #[error(
        "{path}: no such ring; create it first (`shmring create`, or `create`/`open_or_create` on a ring handle), wait for its creator (`.wait_for(..)` on the handle's builder), or check the name and directory"
    )]
    NotFound {
        /// Full path of the object that was looked for.
        path: PathBuf,
    },

    /// `create` found an object of that name already.
    #[error(
        "{path}: already exists; attach to it with `open`, or remove it first (`shmring rm`) if it is stale"
    )]
    AlreadyExists {
        /// Full path of the existing object.
        path: PathBuf,
    },

    /// The process may not open or create the object.
    #[error(
        "{path}: permission denied while trying to {action}; rings are created with mode 0600 by default: run as the creating user or create it with a wider mode"
    )]
    PermissionDenied {
        /// Full path of the object.
        path: PathBuf,
        /// What was attempted ("open", "create", ...).
        action: &'static str,
    },

    /// The file system holding the ring has too little free space.
    #[error(
        "{path}: not enough space on {mount}: {needed} bytes needed, {free} bytes free; remove stale rings (`shmring gc`), give a container more (`--shm-size`), or remount with a larger size (`mount -o remount,size=... {mount}`)"
    )]
    NoSpace {
        /// Full path of the object that was being created.
        path: PathBuf,
        /// The mount point (directory) that is full.
        mount: PathBuf,
        /// Bytes the object needs.
        needed: u64,
        /// Bytes free on the mount when the error was seen.
        free: u64,
    },

    /// The file system holding the ring cannot hold another file: it is out
    /// of inodes (`open(O_CREAT)` failed with `ENOSPC`; tmpfs limits the
    /// number of files with `nr_inodes`), whatever its free bytes.
    #[error(
        "{path}: cannot create another file on {mount}: it is out of inodes (the number of files it may hold is used up{}); remove stale rings (`shmring gc`) and other files there that nobody needs, or remount it with more inodes (`mount -o remount,nr_inodes=N {mount}`; 0 means no limit)",
        match free { Some(f) => format!(", although {f} bytes are free"), None => String::new() }
    )]
    NoInodes {
        /// Full path of the object that was being created.
        path: PathBuf,
        /// The mount point (directory) that is out of inodes.
        mount: PathBuf,
        /// Bytes free on the mount when the error was seen, if known.
        free: Option<u64>,
    },

    /// The object does not start with this crate's magic number.
    #[error(
        "{path}: not a shmring ring ({}); it belongs to another program or is damaged; leave it alone, or remove it with `{} --force` if you know it is garbage",
        describe_magic(*found), rm_command(path)
    )]
    NotARing {
        /// Full path of the object.
        path: PathBuf,
        /// The first eight bytes that were found.
        found: u64,
    },

    /// The name refers to something that is not a regular file (a symbolic
    /// link, a FIFO, a directory, a socket or a device): never a ring.
    #[error(
        "{path}: not a regular file but {kind}, so not a shmring ring (rings are regular files and shmring does not follow links); check the name and the directory{}",
        not_a_file_advice(path, kind)
    )]
    NotAFile {
        /// Full path of the object.
        path: PathBuf,
        /// What it is: "a symbolic link", "a FIFO", "a directory", ...
        kind: &'static str,
    },

    /// A ring whose creation has not finished: its creator is still writing
    /// it, or died too recently to tell (see `segment::GC_GRACE`), or holds
    /// it still.
    #[error("{path}: not a finished ring: {what}")]
    Unfinished {
        /// Full path of the object.
        path: PathBuf,
        /// What was found, and what to do about it.
        what: String,
    },

    /// The object was written by an incompatible version of the layout.
    #[error(
        "{path}: layout version {}.{} is not supported (this build supports {}.{}); use a shmring build that supports {}.{}, or remove the ring with `{}` (it refuses while processes are attached; add --force to remove the name anyway) and create it again",
        found.0, found.1, supported.0, supported.1, found.0, found.1, rm_command(path)
    )]
    VersionMismatch {
        /// Full path of the object.
        path: PathBuf,
        /// Version (major, minor) found in the header.
        found: (u16, u16),
        /// Version (major, minor) this build writes and reads.
        supported: (u16, u16),
    },

    /// The ring exists but was made for another kind, message type or shape.
    #[error(
        "{path}: layout mismatch: {what}; attach with the same kind and message type it was created with, or recreate it"
    )]
    LayoutMismatch {
        /// Full path of the object.
        path: PathBuf,
        /// What differs, naming both sides.
        what: String,
    },

    /// The object's size disagrees with the size recorded in its header.
    #[error(
        "{path}: size mismatch: the header records {recorded} bytes but the object has {actual}; it was truncated or damaged: remove it with `{}` (it refuses while processes are attached; add --force to remove the name anyway) and create it again",
        rm_command(path)
    )]
    SizeMismatch {
        /// Full path of the object.
        path: PathBuf,
        /// Size recorded in the header at creation.
        recorded: u64,
        /// Size of the object now (`fstat`).
        actual: u64,
    },

    /// Another live handle already holds this role (for example a second
    /// producer on a single-producer ring).
    #[error(
        "{path}: the {role} role is already taken{}; a ring has one {role} at a time: stop the other one first",
        match pid { Some(p) => format!(" by pid {p}"), None => String::new() }
    )]
    RoleTaken {
        /// Full path of the object.
        path: PathBuf,
        /// Which role ("producer", "consumer", ...).
        role: String,
        /// The holder's pid, when the kernel reports it.
        pid: Option<i32>,
    },

    /// A value read from shared memory is out of range: a buggy or hostile
    /// peer wrote it, or the object is damaged.
    #[error(
        "{}corrupted shared state: {what}; a peer process wrote an invalid value: {}",
        at(path),
        corrupted_advice(path)
    )]
    Corrupted {
        /// Full path of the object.
        path: PathBuf,
        /// What was found to be invalid.
        what: String,
    },

    /// The peer is gone and nothing more will arrive (or be taken).
    #[error("{}disconnected: the other side has detached or died", at(path))]
    Disconnected {
        /// Full path of the object.
        path: PathBuf,
    },

    /// A bounded wait ran out.
    #[error("{}timed out{} while {what}", at(path), after(waited))]
    Timeout {
        /// Full path of the object.
        path: PathBuf,
        /// What was being waited for, and what to do about it.
        what: String,
        /// How long was waited.
        waited: Duration,
    },

    /// The name cannot name a ring.
    #[error("invalid ring name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: String,
    },

    /// A non-blocking push found the ring full (a `TryPushError::Full`
    /// turned into an `Error` by `?`).
    #[error("the ring is full; try again later, or push with a timeout")]
    Full,

    /// A non-blocking pop found the ring empty (a `TryPopError::Empty`
    /// turned into an `Error` by `?`).
    #[error("the ring is empty; try again later, or pop with a timeout")]
    Empty,

    /// A broadcast subscriber was lapped by the publisher of an `overwrite`
    /// ring (a `broadcast::TryPopError::Lagged` turned into an `Error` by
    /// `?`); the next pop continues at the oldest message still intact.
    #[error(
        "this subscriber missed {missed} messages: the publisher overwrote them before they were read; the next pop continues at the oldest message still intact"
    )]
    Lagged {
        /// Messages lost to this subscriber.
        missed: u64,
    },

    /// A broadcast subscriber was evicted by the publisher of a `block`
    /// ring for keeping it waiting too long (a
    /// `broadcast::TryPopError::Evicted` turned into an `Error` by `?`);
    /// it has rejoined at the newest message.
    #[error(
        "this subscriber was evicted for keeping the publisher waiting and missed {missed} messages; it continues at the newest message (create the ring with a longer eviction delay, or none, to wait longer)"
    )]
    Evicted {
        /// Messages lost to this subscriber.
        missed: u64,
    },

    /// A creation parameter is out of range.
    #[error("invalid configuration: {what}")]
    InvalidConfig {
        /// What is wrong and what is allowed.
        what: String,
    },

    /// A removal was refused because processes are still attached.
    #[error(
        "{path}: still attached by {}; stop them first, or use --force to remove the name anyway (attached processes keep the old object until they detach)",
        describe_pids(pids)
    )]
    InUse {
        /// Full path of the object.
        path: PathBuf,
        /// Pids holding it, as far as /proc/locks tells.
        pids: Vec<i32>,
    },

    /// Huge pages were required but cannot be had.
    #[error(
        "{path}: huge pages required but unavailable: {reason}. Reserve more with `sysctl vm.nr_hugepages=N` (or write N to /proc/sys/vm/nr_hugepages), or ask for HugePages::Prefer to fall back to normal pages"
    )]
    HugePagesUnavailable {
        /// The object (or directory) that needed them.
        path: PathBuf,
        /// What is missing, with the figures (HugePages_Free, page size, or
        /// the shmem THP setting).
        reason: String,
    },

    /// `mlock` of the ring was refused by the locked-memory limit.
    #[error(
        "{path}: cannot lock {wanted} bytes in memory: RLIMIT_MEMLOCK is {limit} bytes (of which other mappings may already use some). Raise it with `ulimit -l` (KiB), LimitMEMLOCK= in a systemd unit or /etc/security/limits.conf, or grant CAP_IPC_LOCK"
    )]
    MemoryLockLimit {
        /// The object.
        path: PathBuf,
        /// Bytes to lock.
        wanted: u64,
        /// The soft limit in bytes (`u64::MAX`: unlimited).
        limit: u64,
    },

    /// A system call failed in a way none of the variants above describes.
    #[error("{path}: {call} failed: {source}")]
    Io {
        /// The object (or directory) the call was about.
        path: PathBuf,
        /// The failing call, e.g. `"fallocate"`.
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// `"{path}: "`, or nothing for errors converted from queue operations,
/// which carry no path.
fn at(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", path.display())
    }
}

/// `" after {waited:?}"`, or nothing when the wait's length is not known
/// (a converted queue error).
fn after(waited: &Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(" after {waited:?}")
    }
}

/// The command that removes the object at `path` when nobody is attached
/// to it: `shmring rm NAME`, with `--dir DIR` unless it is in the default
/// directory, quoted for a POSIX shell where needed.
pub(crate) fn rm_command(path: &Path) -> String {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return "shmring rm NAME".to_string();
    };
    let name = shell_quote(&name.to_string_lossy());
    if dir == Path::new(crate::segment::DEFAULT_DIR) {
        format!("shmring rm {name}")
    } else {
        format!(
            "shmring --dir {} rm {name}",
            shell_quote(&dir.to_string_lossy())
        )
    }
}

/// `s` as one word for a POSIX shell: as is when it is made of safe
/// characters only, else in single quotes.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_.,:/+=@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What to do about a corrupted ring: remove it (named rings) or drop every
/// handle (anonymous ones, which the kernel frees with their last user).
fn corrupted_advice(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        "stop all its users, then remove the ring (`shmring rm NAME`) and create it again".into()
    } else if path.to_string_lossy().starts_with("memfd:") {
        "drop every handle to it (an anonymous ring is freed with its last user) and create a new one".into()
    } else {
        let rm = rm_command(path);
        format!(
            "stop all its users, then remove it with `{rm}` (or `{rm} --force` to remove the name while they run) and create it again"
        )
    }
}

/// What to do about something that is not a regular file.
fn not_a_file_advice(path: &Path, kind: &str) -> String {
    if kind == "a directory" {
        String::new()
    } else {
        format!(
            "; if the name is yours to reuse, `{} --force` removes it{}",
            rm_command(path),
            if kind == "a symbolic link" {
                " (the link only, not its target)"
            } else {
                ""
            }
        )
    }
}

fn describe_magic(found: u64) -> String {
    if found == 0 {
        "no magic number: its first 8 bytes are zero".into()
    } else {
        format!("bad magic {found:#018x}")
    }
}

fn describe_pids(pids: &[i32]) -> String {
    if pids.is_empty() {
        return "another process".to_string();
    }
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    format!("pid {}", list.join(", "))
}

impl Error {
    /// Builds an [`Error::Io`] for `call` on `path`.
    pub fn io(path: impl Into<PathBuf>, call: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            call,
            source,
        }
    }

    /// Builds an [`Error::Corrupted`].
    pub(crate) fn corrupted(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Corrupted {
            path: path.into(),
            what: what.into(),
        }
    }

    /// True for [`Error::Timeout`]; the CLI maps it to exit code 3.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}
