//! Anonymous rings: created in a sealed memfd, passed to another process
//! over a Unix socket (`SCM_RIGHTS`) and received there with the same
//! validation as an open.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Segment;
use super::lifecycle::{HeaderRead, read_header};
use super::options::{HugePages, RingSpec, SegmentOptions, THP_SIZE};
use crate::error::{Error, Result};
use crate::layout::{self, Layout, STATE_READY};
use crate::sys;

impl SegmentOptions {
    /// Creates an anonymous ring in a sealed memfd (`memfd_create`): it has
    /// no name in any directory, is passed to other processes with
    /// [`Segment::send`] over a Unix socket, and is freed by the kernel
    /// with its last descriptor or mapping, so it can never leak. It is
    /// sealed against shrinking and growing (no truncate-to-SIGBUS attack).
    /// `name` only labels it (in `/proc/PID/maps`). With huge pages asked
    /// for it uses `MFD_HUGETLB` (2 MiB pages from the `vm.nr_hugepages`
    /// pool).
    pub fn create_anonymous(&self, name: &str, spec: &RingSpec<'_>) -> Result<Segment> {
        let layout = spec.layout;
        let path = PathBuf::from(format!("memfd:shmring:{name}"));
        let mut bits = self.huge_pages.bits() | self.attach_bits() | layout::BACKING_MEMFD;
        let mut page = layout::PAGE as u64;
        if self.huge_pages != HugePages::Off {
            let need = layout.total_size.div_ceil(THP_SIZE);
            let free = sys::huge_pages_free(THP_SIZE).unwrap_or(0);
            if free >= need {
                page = THP_SIZE;
                bits |= layout::BACKING_HUGE_ACTIVE;
            } else if self.huge_pages == HugePages::Require {
                return Err(Error::HugePagesUnavailable {
                    path,
                    reason: format!(
                        "{need} huge pages of 2048 KiB needed, HugePages_Free is {free}"
                    ),
                });
            } else {
                let fallback = layout::HugeFallback::NoFreePages;
                log::warn!("{}: {}", path.display(), fallback.describe());
                bits |= fallback.code() << 8;
            }
        }
        let layout = Layout {
            total_size: layout.total_size.next_multiple_of(page),
            ..*layout
        };
        let file = sys::memfd_create(&format!("shmring:{name}"), page != layout::PAGE as u64)
            .map_err(|e| Error::io(&path, "memfd_create", e))?;
        sys::fallocate(&file, layout.total_size).map_err(|e| Error::io(&path, "fallocate", e))?;
        let meta = file.metadata().map_err(|e| Error::io(&path, "fstat", e))?;
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let pid = std::process::id();
        let mut desc =
            layout::descriptor_for(&layout, spec.type_id, spec.type_name, 0, 0o600, pid, now_ns);
        desc.backing = bits;
        desc.page_size_kib = (page / 1024) as u32;
        // The descriptor we are about to write gets exactly the check an
        // opener makes, and the mapping is built from what it accepts.
        let layout = layout::validate(&desc, &path, layout.total_size)?;
        let seg = Segment::map(name, &path, file, desc, layout, &meta, 0)?;
        seg.write_descriptor();
        (spec.init)(&seg)?;
        seg.live()
            .state
            .store(STATE_READY, std::sync::atomic::Ordering::Release);
        sys::seal(&seg.file).map_err(|e| Error::io(&path, "fcntl(F_ADD_SEALS)", e))?;
        Ok(seg)
    }

    /// Receives an anonymous ring sent with [`Segment::send`] and attaches
    /// to it with the same validation as [`SegmentOptions::open`]. A
    /// descriptor that is not a memfd sealed against shrinking and growing,
    /// or whose size is not what its header records, is refused.
    pub fn receive(&self, socket: &std::os::unix::net::UnixStream) -> Result<Segment> {
        use std::os::fd::AsRawFd;
        let path = PathBuf::from("memfd:received");
        let received = sys::recv_fd(socket).map_err(|e| Error::io(&path, "recvmsg", e))?;
        let needed = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        match sys::seals(&received) {
            Ok(seals) if seals & needed == needed => {}
            other => {
                return Err(Error::corrupted(
                    &path,
                    format!(
                        "refused: the received descriptor is not a memfd sealed against shrinking and growing ({})",
                        match other {
                            Ok(seals) => format!("seals {seals:#x}"),
                            Err(e) => format!("F_GET_SEALS: {e}"),
                        }
                    ),
                ));
            }
        }
        // Our own open file description of the same object: role locks are
        // per description, and the received one is shared with the sender.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(format!("/proc/self/fd/{}", received.as_raw_fd()))
            .map_err(|e| Error::io(&path, "open(/proc/self/fd)", e))?;
        drop(received);
        let meta = file.metadata().map_err(|e| Error::io(&path, "fstat", e))?;
        let (desc, state) = match read_header(&file, &path, meta.len())? {
            HeaderRead::Header(desc, state) => (*desc, state),
            HeaderRead::Empty => {
                return Err(Error::NotARing { path, found: 0 });
            }
        };
        if state != STATE_READY {
            return Err(Error::corrupted(
                &path,
                "received a ring that is not initialized",
            ));
        }
        let layout = layout::validate(&desc, &path, meta.len())?;
        if desc.backing & layout::BACKING_MEMFD == 0 {
            return Err(Error::corrupted(
                &path,
                "received a ring that is not marked anonymous",
            ));
        }
        let seg = Segment::map(
            "received",
            &path,
            file,
            desc,
            layout,
            &meta,
            self.attach_bits(),
        )?;
        if seg.live().state.load(std::sync::atomic::Ordering::Acquire) != STATE_READY {
            return Err(Error::corrupted(
                &path,
                "the ring changed state while attaching",
            ));
        }
        Ok(seg)
    }
}

impl Segment {
    /// Sends this anonymous ring's descriptor over a Unix socket
    /// (`SCM_RIGHTS`); the receiver attaches with
    /// [`SegmentOptions::receive`]. Only for rings made by
    /// [`SegmentOptions::create_anonymous`].
    pub fn send(&self, socket: &std::os::unix::net::UnixStream) -> Result<()> {
        if !self.anonymous {
            return Err(Error::InvalidConfig {
                what: "only anonymous (memfd) rings are passed over sockets; named rings are opened by name".into(),
            });
        }
        sys::send_fd(socket, &self.file).map_err(|e| Error::io(&self.path, "sendmsg", e))
    }
}
