//! Inspecting and removing objects without attaching to them: what
//! `shmring ls`, `stat`, `rm` and `gc` are built on.
//!
//! Nothing here maps an object: headers and ring counters are read with
//! `pread`, so a truncated or hostile file can at worst produce an error.
//! Attached processes are found in `/proc/locks` (their `LOCK_SH`), live
//! roles by their byte-range locks.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::abandoned::{self, GC_GRACE, Verdict};
use super::lifecycle::{check_regular, existing_object_path, file_kind};
use super::occupancy::{Occupancy, SNAPSHOT_ATTEMPTS, occupancy};
use super::{HeaderRead, read_header, sys};
use crate::error::{Error, Result};
use crate::layout::{self, Descriptor, FLAG_PERSISTENT, LINE, STATE_READY, WaitCounters};

/// What an object in the directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Status {
    /// Initialized and in use (or persistent and waiting for users). A
    /// ring read while messages flow may carry the detail "busy: ..." (its
    /// `len` is then a lower bound): still healthy.
    Ready,
    /// Its creator is still writing it (or, with no header yet and no lock
    /// held, may have died less than the grace period ago).
    Initializing,
    /// Nobody is attached and it is either not persistent or was never
    /// initialized (including what a killed creator leaves: see
    /// [`GC_GRACE`]): `gc` removes it.
    Stale,
    /// Has this crate's magic but fails validation.
    Corrupt,
    /// Not one of this crate's rings.
    Foreign,
}

/// A role and whether a live process holds it.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RoleInfo {
    /// "producer" or "consumer" (with an index on multi-role rings).
    pub role: String,
    /// Whether its byte-range lock is held right now.
    pub alive: bool,
    /// Pid recorded by its current or last holder (0: never held).
    pub pid: u32,
}

/// Everything `stat` shows about one object.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Inspection {
    /// The name.
    pub name: String,
    /// The full path.
    pub path: PathBuf,
    /// What it is.
    pub state: Status,
    /// Why it is corrupt, foreign, initializing or stale; "busy: ..." on a
    /// ready ring whose positions moved while they were read.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub detail: Option<String>,
    /// Ring kind ("spsc", "frames").
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub kind: Option<String>,
    /// Layout version "major.minor".
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub version: Option<String>,
    /// Slots (typed rings) or bytes (frame rings).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub capacity: Option<u64>,
    /// Bytes of one message (typed rings).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub slot_size: Option<u32>,
    /// The message type's name (`Message::NAME`), as recorded by rings
    /// of layout 1.2 and later; none for byte rings.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub message_name: Option<String>,
    /// The message type's 64-bit id (typed rings).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub message_id: Option<String>,
    /// Size of the object (`fstat`).
    pub size_bytes: u64,
    /// Kept when the last user detaches.
    pub persistent: bool,
    /// Messages published and not yet consumed.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub len: Option<u64>,
    /// Bytes in use (frame rings).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub bytes_used: Option<u64>,
    /// Number of attached processes (holders of the shared lock).
    pub attached: usize,
    /// Their pids, as `/proc/locks` reports them.
    pub attached_pids: Vec<i32>,
    /// The roles and who holds them.
    pub roles: Vec<RoleInfo>,
    /// Inode number of the object.
    pub inode: u64,
    /// Unique creation number from the header.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub generation: Option<u64>,
    /// Pid of the creator.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub creator_pid: Option<u32>,
    /// Creation time, ns since the Unix epoch.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub created_unix_ns: Option<u64>,
    /// Permission bits (octal string).
    pub mode: String,
    /// Owner uid.
    pub uid: u32,
    /// Wait counters of the data direction (consumers sleeping for data).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub wait_data: Option<WaitCounters>,
    /// Wait counters of the space direction (producers sleeping for room).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub wait_space: Option<WaitCounters>,
    /// MPMC: slots skipped because the producer that claimed them died
    /// before publishing.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub skipped: Option<u64>,
    /// MPMC: messages put back because the consumer that claimed them died
    /// before releasing them.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub redelivered: Option<u64>,
    /// Huge pages as asked for at creation: "off", "prefer" or "require".
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub huge_pages: Option<String>,
    /// Whether the ring was set up on huge pages (hugetlbfs, or advised
    /// transparent huge pages); see `mappings` for what the kernel did.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub huge_active: Option<bool>,
    /// Why preferred huge pages were not used.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub huge_fallback: Option<String>,
    /// Backing page size in KiB.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub page_size_kib: Option<u32>,
    /// Prefaulted on every attach.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub populate: Option<bool>,
    /// Locked in memory on every attach.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub lock_memory: Option<bool>,
    /// Broadcast rings: the overflow policy (`block`, `block (evict after
    /// ..)`, `overwrite`).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub overflow: Option<String>,
    /// Broadcast rings: messages published so far.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub published: Option<u64>,
    /// Broadcast rings: subscribers evicted so far.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub evictions: Option<u64>,
    /// Broadcast rings: every subscriber role ever held.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub subscribers: Option<Vec<super::SubscriberInfo>>,
    /// What a relay producing into the ring (a network bridge) recorded
    /// about its source: the gap count and the last sequence number (layout
    /// 1.5; `None` if no relay ever wrote one).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub upstream: Option<super::UpstreamRecord>,
    /// Whether the record's writer is running (`None` without a writer).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub upstream_writer_alive: Option<bool>,
    /// Each attached process's mapping as its `/proc/PID/smaps` tells
    /// (huge pages in fact, locked and resident amounts); processes whose
    /// smaps this user cannot read are left out.
    pub mappings: Vec<super::MappingFacts>,
}

impl Inspection {
    /// An inspection with nothing known yet but the name: `foreign` until
    /// the header says otherwise.
    fn bare(name: &str, path: PathBuf) -> Inspection {
        Inspection {
            name: name.to_string(),
            path,
            state: Status::Foreign,
            detail: None,
            kind: None,
            version: None,
            capacity: None,
            slot_size: None,
            message_name: None,
            message_id: None,
            size_bytes: 0,
            persistent: false,
            len: None,
            bytes_used: None,
            attached: 0,
            attached_pids: Vec::new(),
            roles: Vec::new(),
            inode: 0,
            generation: None,
            creator_pid: None,
            created_unix_ns: None,
            mode: String::new(),
            uid: 0,
            wait_data: None,
            wait_space: None,
            skipped: None,
            redelivered: None,
            huge_pages: None,
            huge_active: None,
            huge_fallback: None,
            page_size_kib: None,
            populate: None,
            lock_memory: None,
            overflow: None,
            published: None,
            evictions: None,
            subscribers: None,
            upstream: None,
            upstream_writer_alive: None,
            mappings: Vec::new(),
        }
    }
}

fn open_admin(path: &Path) -> Result<File> {
    // Never open a FIFO or a device: opening may block or act on it.
    check_regular(path)?;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound {
                path: path.to_path_buf(),
            },
            Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied {
                path: path.to_path_buf(),
                action: "inspect",
            },
            Some(libc::ELOOP) => match check_regular(path) {
                Err(not_a_file) => not_a_file,
                Ok(()) => Error::io(path, "open", e),
            },
            _ => Error::io(path, "open", e),
        })
}

fn read_u64(file: &File, offset: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, offset).ok()?;
    Some(u64::from_le_bytes(b))
}

fn read_u32(file: &File, offset: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    file.read_exact_at(&mut b, offset).ok()?;
    Some(u32::from_le_bytes(b))
}

/// Inspects the object `name` in `dir` without attaching to it. An object
/// without a header is judged with the default grace period
/// ([`GC_GRACE`]).
pub fn inspect(dir: &Path, name: &str) -> Result<Inspection> {
    inspect_with(dir, name, GC_GRACE)
}

/// [`inspect`], judging objects without a header with the grace period
/// `grace`. Names with control characters, which creation refuses, are
/// accepted here so that whatever is in the directory can be listed.
fn inspect_with(dir: &Path, name: &str, grace: Duration) -> Result<Inspection> {
    let path = existing_object_path(dir, name)?;
    let mut info = Inspection::bare(name, path.clone());
    if let Ok(m) = std::fs::symlink_metadata(&path)
        && !m.file_type().is_file()
    {
        info.size_bytes = m.len();
        info.inode = m.ino();
        info.mode = format!("{:04o}", m.mode() & 0o7777);
        info.uid = m.uid();
        info.detail = Some(format!("not a regular file: {}", file_kind(m.file_type())));
        return Ok(info);
    }
    let file = open_admin(&path)?;
    let meta = file.metadata().map_err(|e| Error::io(&path, "fstat", e))?;
    info.size_bytes = meta.len();
    info.inode = meta.ino();
    info.mode = format!("{:04o}", meta.mode() & 0o7777);
    info.uid = meta.uid();
    if !meta.file_type().is_file() {
        info.detail = Some(format!(
            "not a regular file: {}",
            file_kind(meta.file_type())
        ));
        return Ok(info);
    }
    let locks = sys::locks_on(meta.dev(), meta.ino());
    let mut pids: Vec<i32> = locks.iter().filter(|l| l.is_flock).map(|l| l.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    info.attached = locks.iter().filter(|l| l.is_flock).count();
    info.attached_pids = pids;

    let (desc, state): (Descriptor, u32) = match read_header(&file, &path, meta.len()) {
        Ok(HeaderRead::Header(d, s)) => (*d, s),
        Ok(HeaderRead::Empty) => {
            let (state, detail) = match abandoned::judge_empty(&file, &path, &meta, grace, false) {
                Verdict::Abandoned(why) => (Status::Stale, why),
                Verdict::Pending(why) => (Status::Initializing, why),
                Verdict::Held(_, why) => (Status::Initializing, why),
                Verdict::Foreign(why) => (Status::Foreign, why),
            };
            info.state = state;
            info.detail = Some(detail);
            return Ok(info);
        }
        Err(Error::NotARing { found, .. }) => {
            info.detail = Some(format!(
                "no shmring magic (its first 8 bytes are {found:#018x}): another program's file"
            ));
            return Ok(info);
        }
        Err(e) => {
            info.state = Status::Corrupt;
            info.detail = Some(e.to_string());
            return Ok(info);
        }
    };
    info.version = Some(format!("{}.{}", desc.version_major, desc.version_minor));
    info.persistent = desc.flags & FLAG_PERSISTENT != 0;
    info.generation = Some(desc.generation);
    info.creator_pid = Some(desc.creator_pid);
    info.created_unix_ns = Some(desc.created_unix_ns);
    info.huge_pages = Some(
        match desc.backing & layout::BACKING_HUGE_MASK {
            layout::BACKING_HUGE_PREFER => "prefer",
            layout::BACKING_HUGE_REQUIRE => "require",
            _ => "off",
        }
        .to_string(),
    );
    info.huge_active = Some(desc.backing & layout::BACKING_HUGE_ACTIVE != 0);
    info.huge_fallback =
        layout::HugeFallback::from_backing(desc.backing).map(|f| f.describe().to_string());
    info.page_size_kib = Some(desc.page_size_kib);
    info.populate = Some(desc.backing & layout::BACKING_POPULATE != 0);
    info.lock_memory = Some(desc.backing & layout::BACKING_LOCK != 0);
    info.mappings = info
        .attached_pids
        .iter()
        .filter_map(|&pid| sys::mapping_facts(pid, meta.ino()))
        .collect();
    if state != STATE_READY {
        info.state = if info.attached > 0 {
            Status::Initializing
        } else {
            info.detail = Some(abandoned::unready_reason(&desc));
            Status::Stale
        };
        return Ok(info);
    }
    let layout = match layout::validate(&desc, &path, meta.len()) {
        Ok(l) => l,
        Err(e) => {
            info.state = Status::Corrupt;
            info.detail = Some(e.to_string());
            return Ok(info);
        }
    };
    info.kind = Some(layout.kind.name().to_string());
    info.capacity = Some(layout.capacity);
    if layout.kind != layout::Kind::Frames {
        info.slot_size = Some(layout.slot_size);
    }
    info.message_name = desc.type_name();
    if desc.type_id != 0 {
        info.message_id = Some(format!("{:#018x}", desc.type_id));
    }
    if layout.kind == layout::Kind::Mpmc {
        let stats = layout.control_offset + (layout::MPMC_STATS_LINE * LINE) as u64;
        info.skipped = read_u64(&file, stats + layout::STATS_SKIPPED_WORD as u64);
        info.redelivered = read_u64(&file, stats + layout::STATS_REDELIVERED_WORD as u64);
    }
    let lock_alive = |index: u32| {
        let lock_at = layout.total_size + u64::from(index);
        locks.iter().any(|l| !l.is_flock && l.start == lock_at)
    };
    if layout.kind == layout::Kind::Broadcast {
        info.overflow = Some(layout.overflow().to_string());
        let published = super::subscribers::published(&file, &layout);
        info.published = published;
        // Messages still in the ring (readable by a subscriber starting
        // at the oldest).
        info.len = published.map(|t| t.min(layout.capacity));
        info.evictions = super::subscribers::evictions(&file, &layout);
        info.subscribers = Some(super::subscribers::subscribers(&file, &layout, &lock_alive));
    }
    let mut busy = None;
    let seen = if layout.kind == layout::Kind::Broadcast {
        Some(Occupancy::Healthy {
            msgs: info.len.unwrap_or(0),
            bytes: None,
            busy: false,
        })
    } else {
        occupancy(&file, &layout)
    };
    match seen {
        Some(Occupancy::Healthy {
            msgs,
            bytes,
            busy: moving,
        }) => {
            info.len = Some(msgs);
            info.bytes_used = bytes;
            if moving {
                busy = Some(format!(
                    "busy: messages moved during each of {SNAPSHOT_ATTEMPTS} readings, so len{} is a lower bound for that moment",
                    if bytes.is_some() {
                        " (and bytes_used)"
                    } else {
                        ""
                    }
                ));
            }
        }
        Some(Occupancy::Corrupt(why)) => {
            info.state = Status::Corrupt;
            info.detail = Some(why);
            return Ok(info);
        }
        None => {
            info.state = Status::Corrupt;
            info.detail = Some("the ring's positions cannot be read".into());
            return Ok(info);
        }
    }
    let wait_line = |n: u64| {
        let line = |i: usize| layout.control_offset + (i * LINE) as u64;
        let base = line(layout::WAIT_LINES) + n * LINE as u64;
        // Waiter counts live on the index lines (data: producer line,
        // space: consumer line).
        let index_line = [layout::PRODUCER_LINE, layout::CONSUMER_LINE][n as usize];
        // Broadcast: the space waiters are the first word of the space line.
        let word = if layout.kind == layout::Kind::Broadcast && n == 1 {
            0
        } else {
            layout::WAITERS_WORD
        };
        let waiters_at = line(index_line) + word as u64;
        Some(WaitCounters {
            waiters: read_u32(&file, waiters_at)?,
            wakeups: read_u64(&file, base + layout::WAIT_WAKEUPS_WORD as u64)?,
            sleeps: read_u64(&file, base + layout::WAIT_SLEEPS_WORD as u64)?,
            spurious: read_u64(&file, base + layout::WAIT_SPURIOUS_WORD as u64)?,
        })
    };
    info.upstream = super::upstream::read_record(&file);
    info.upstream_writer_alive = info
        .upstream
        .filter(|u| u.writer != 0)
        .map(|u| i32::try_from(u.writer).is_ok_and(sys::pid_alive));
    info.wait_data = wait_line(0);
    info.wait_space = wait_line(1);
    for index in 0..layout.roles() {
        let role = match (index < layout.max_producers, layout.kind) {
            (true, layout::Kind::Broadcast) => "publisher",
            (true, _) => "producer",
            (false, layout::Kind::Broadcast) => "subscriber",
            (false, _) => "consumer",
        };
        let alive = lock_alive(index);
        let pid = read_u32(&file, layout.role_record_offset(index)).unwrap_or(0);
        // Many-role rings list only the roles that were ever held.
        let many = matches!(layout.kind, layout::Kind::Mpmc | layout::Kind::Broadcast);
        if many && pid == 0 && !alive {
            continue;
        }
        info.roles.push(RoleInfo {
            role: role.to_string(),
            alive,
            pid,
        });
    }
    info.state = if info.attached == 0 && !info.persistent {
        info.detail = Some("nobody is attached and it is not persistent".into());
        Status::Stale
    } else {
        info.detail = busy;
        Status::Ready
    };
    Ok(info)
}

/// Inspects every object in `dir`, sorted by name. Objects that vanish while
/// listing are skipped; ones that cannot be read are shown as foreign.
pub fn list(dir: &Path) -> Result<Vec<Inspection>> {
    list_with(dir, GC_GRACE)
}

fn list_with(dir: &Path, grace: Duration) -> Result<Vec<Inspection>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "readdir", e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "readdir", e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        match inspect_with(dir, &name, grace) {
            Ok(info) => out.push(info),
            Err(Error::NotFound { .. }) => {}
            Err(e) => {
                let path = dir.join(&name);
                let mut info = Inspection::bare(&name, path);
                info.detail = Some(e.to_string());
                out.push(info);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Marks the object as removed in its live line (so attached handles'
/// `is_current()` turns false without a system call), then unlinks the name
/// if it still refers to `file`'s inode.
pub(super) fn unlink_if_same(path: &Path, file: &File, mark: bool) -> Result<bool> {
    let meta = file.metadata().map_err(|e| Error::io(path, "fstat", e))?;
    if meta.nlink() == 0 {
        return Ok(false);
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.dev() == meta.dev() && m.ino() == meta.ino() => {}
        _ => return Ok(false),
    }
    if mark && meta.len() >= layout::HEADER_SIZE as u64 {
        // Best effort: a read-write open may be refused by the mode.
        if let Ok(rw) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            let _ = rw.write_all_at(&1u32.to_le_bytes(), layout::LIVE_OFFSET as u64 + 4);
        }
    }
    std::fs::remove_file(path).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied {
            path: path.to_path_buf(),
            action: "remove",
        },
        _ => Error::io(path, "unlink", e),
    })?;
    Ok(true)
}

/// Removes the ring `name`.
///
/// Without `force`: it must be one of this crate's objects (it has the
/// magic number, whatever else its header says, so a damaged ring or one of
/// another layout version is removed too) that nobody is attached to
/// ([`Error::InUse`] names who is), or an object a killed creator left
/// without a header, under the rules `gc` follows (see [`GC_GRACE`];
/// [`Error::Unfinished`] while it may still be a live creation). Anything
/// else ([`Error::NotARing`], [`Error::NotAFile`]) is left alone.
///
/// With `force` the name is removed anyway, whatever it names (a symbolic
/// link is removed, not its target): attached processes keep using the old
/// object (their `is_current()` turns false) and it is freed when the last
/// detaches.
pub fn remove(dir: &Path, name: &str, force: bool) -> Result<()> {
    let path = existing_object_path(dir, name)?;
    if force
        && let Ok(m) = std::fs::symlink_metadata(&path)
        && !m.file_type().is_file()
    {
        return std::fs::remove_file(&path).map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR) => Error::NotAFile {
                path: path.clone(),
                kind: "a directory",
            },
            _ => Error::io(&path, "unlink", e),
        });
    }
    let file = open_admin(&path)?;
    let meta = file.metadata().map_err(|e| Error::io(&path, "fstat", e))?;
    if !meta.file_type().is_file() {
        return Err(Error::NotAFile {
            path,
            kind: file_kind(meta.file_type()),
        });
    }
    if !force {
        match read_header(&file, &path, meta.len()) {
            Ok(HeaderRead::Empty) => return remove_unfinished(&path, &file, &meta),
            // Ours (the magic matched), ready or not, valid or not.
            Ok(HeaderRead::Header(..)) | Err(Error::SizeMismatch { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let exclusive = super::try_exclusive(&file).map_err(|e| Error::io(&path, "flock", e))?;
    if !exclusive && !force {
        return Err(Error::InUse {
            pids: flock_holders(&meta),
            path,
        });
    }
    if !unlink_if_same(&path, &file, !exclusive)? {
        return Err(Error::NotFound { path });
    }
    Ok(())
}

/// Pids holding a `flock` on the object, as `/proc/locks` tells.
fn flock_holders(meta: &std::fs::Metadata) -> Vec<i32> {
    let mut pids: Vec<i32> = sys::locks_on(meta.dev(), meta.ino())
        .into_iter()
        .filter(|l| l.is_flock)
        .map(|l| l.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// `remove` without `force` of an object with no header: removed if a
/// killed creator left it (as `gc` would), else an error saying what it is
/// and what to do.
fn remove_unfinished(path: &Path, file: &File, meta: &std::fs::Metadata) -> Result<()> {
    let force = format!("`{} --force`", crate::error::rm_command(path));
    match abandoned::judge_empty(file, path, meta, GC_GRACE, false) {
        Verdict::Abandoned(_) => {}
        Verdict::Pending(why) => {
            return Err(Error::Unfinished {
                path: path.to_path_buf(),
                what: format!("{why}, and so does plain `shmring rm` then; {force} removes it now"),
            });
        }
        Verdict::Held(pids, why) => {
            return Err(Error::Unfinished {
                path: path.to_path_buf(),
                what: format!(
                    "{why} (pid {}); stop that process first, or remove the name anyway with {force}",
                    pids.iter()
                        .map(i32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Verdict::Foreign(_) => {
            return Err(Error::NotARing {
                path: path.to_path_buf(),
                found: 0,
            });
        }
    }
    let taken =
        sys::try_flock(file, sys::Flock::Exclusive).map_err(|e| Error::io(path, "flock", e))?;
    if !taken {
        return Err(Error::InUse {
            path: path.to_path_buf(),
            pids: flock_holders(meta),
        });
    }
    match abandoned::reclaim_locked(path, file, GC_GRACE, false)? {
        Some(_) => Ok(()),
        None => Err(Error::Unfinished {
            path: path.to_path_buf(),
            what: "it changed while being removed; look again with `shmring stat`".into(),
        }),
    }
}

/// Removes stale rings in `dir` (see [`gc_with_grace`]), judging objects
/// without a header with the default grace period, [`GC_GRACE`].
pub fn gc(dir: &Path, dry_run: bool) -> Result<Vec<Inspection>> {
    gc_with_grace(dir, dry_run, GC_GRACE)
}

/// Removes stale rings in `dir`: rings nobody is attached to that are not
/// persistent, and whatever a killed creator left unfinished: a header that
/// never became READY, and (once nothing has changed it for `grace`) an
/// object of 0 bytes or all zero (see [`GC_GRACE`] for the exact rules).
/// Nobody may hold a lock on any of them. Never removes an object that a
/// live creator holds, another program's file (other bytes where the magic
/// goes, or data after a zero header), or anything that is not a regular
/// file. Each is re-checked under its exclusive lock before removal.
/// Returns what was (or, with `dry_run`, would be) removed.
pub fn gc_with_grace(dir: &Path, dry_run: bool, grace: Duration) -> Result<Vec<Inspection>> {
    let mut removed = Vec::new();
    for mut info in list_with(dir, grace)? {
        if info.state != Status::Stale {
            continue;
        }
        let Ok(file) = open_admin(&info.path) else {
            continue;
        };
        // The exclusive lock proves nobody is attached, and keeps anyone from
        // attaching until the name is gone.
        if !sys::try_flock(&file, sys::Flock::Exclusive).unwrap_or(false) {
            continue;
        }
        // Re-inspect under the lock: the ring may have been initialized or
        // attached to since it was listed.
        let Ok(meta) = file.metadata() else { continue };
        match read_header(&file, &info.path, meta.len()) {
            Ok(HeaderRead::Header(desc, state))
                if state == STATE_READY && desc.flags & FLAG_PERSISTENT == 0 =>
            {
                if dry_run || unlink_if_same(&info.path, &file, false)? {
                    removed.push(info);
                }
            }
            _ => {
                if let Some(why) = abandoned::reclaim_locked(&info.path, &file, grace, dry_run)? {
                    info.detail = Some(why);
                    removed.push(info);
                }
            }
        }
    }
    Ok(removed)
}
