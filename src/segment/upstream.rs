//! The upstream record: what a relay that produces into a ring (a network
//! bridge) keeps in the ring about its source, so that `stat` shows the gap
//! count and the last sequence number, and a restarted relay continues its
//! predecessor's count exactly (layout 1.5, [`UpstreamLine`]).
//!
//! # Counting exactly across a crash
//!
//! Before each push the writer records the message's sequence number, the
//! counts *as if it landed*, the state "pending" and the ring's producer
//! position (the mark); after the push it records "landed". A relay killed
//! in between leaves "pending". Its successor, taking the record, compares
//! the ring's position with the mark: moved means the push completed (the
//! position is the producer's release point, stored after the message was
//! written), unmoved means the message never reached the ring, so it is
//! counted as lost. Exact for rings with one producer (SPSC, frames,
//! broadcast, and MPMC rings the relay alone produces into); with other
//! producers on an MPMC ring, their pushes also move the position, so an
//! interrupted push may be counted as landed (at most one message per
//! crash).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::layout::{
    self, INDEX_WORD, LINE, PRODUCER_LINE, UPSTREAM_LANDED, UPSTREAM_NEVER, UPSTREAM_OFFSET,
    UPSTREAM_PENDING, UpstreamLine,
};
use crate::segment::Segment;
use crate::sys;

/// Attempts at a consistent copy of a record its writer keeps changing.
const READ_ATTEMPTS: usize = 64;

/// A copy of a ring's upstream record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Upstream {
    /// The source's session number of the last message.
    pub session: u64,
    /// The source's sequence number of the last message.
    pub last_seq: u64,
    /// Messages lost before reaching this ring, over every relay run.
    pub gaps: u64,
    /// Messages relayed into this ring.
    pub delivered: u64,
}

/// A record as read: its counts, its writer and whether a push was under
/// way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct UpstreamRecord {
    /// The counts, as if the pending push (if any) landed.
    pub counts: Upstream,
    /// Pid of the process that holds the record (0: nobody).
    pub writer: u32,
    /// A push was under way when the copy was taken.
    pub pending: bool,
    /// The ring's producer position just before that push.
    pub mark: u64,
}

/// What [`UpstreamWriter::take`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// The predecessor's counts, its last push settled.
    pub counts: Upstream,
    /// The predecessor's pid (0 if it released the record cleanly).
    pub previous_writer: u32,
    /// The predecessor was killed while pushing: `Some(true)` if that
    /// message reached the ring, `Some(false)` if not (then counted in
    /// `counts.gaps`); `None` if no push was under way.
    pub interrupted_push: Option<bool>,
}

/// The upstream record is held by another running process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamBusy {
    /// Its pid.
    pub pid: u32,
}

impl std::fmt::Display for UpstreamBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the ring's upstream record is held by process {} (another relay produces into this ring)",
            self.pid
        )
    }
}

impl std::error::Error for UpstreamBusy {}

impl Segment {
    /// The upstream line of the header.
    fn upstream_line(&self) -> &UpstreamLine {
        // UPSTREAM_OFFSET + LINE == HEADER_SIZE <= total_size: asserted at
        // compile time in `layout::header` and checked by `Layout::new` /
        // `layout::validate` before any segment is mapped.
        // The map is page aligned and UPSTREAM_OFFSET a multiple of LINE;
        // `UpstreamLine` is atomics only, so any bytes other processes store
        // are a valid value.
        // SAFETY: in bounds and 128-byte aligned (above); atomics only.
        unsafe {
            &*self
                .map
                .as_ptr()
                .add(UPSTREAM_OFFSET)
                .cast::<UpstreamLine>()
        }
    }

    /// The ring's producer position: the index every kind publishes its
    /// messages with (the tail of SPSC, frame and MPMC rings, the next
    /// sequence number of a broadcast ring). Only compared, never used as an
    /// index.
    fn producer_position(&self) -> u64 {
        let offset = self.layout.control_offset + (PRODUCER_LINE * LINE + INDEX_WORD) as u64;
        // `region` checks the 8 bytes are in bounds; control_offset is a
        // multiple of LINE (`Layout::new`); every kind keeps an atomic u64
        // there (`ProducerLine::tail`, `EnqueueLine::tail`,
        // `PublisherLine::tail`, offsets asserted in `layout::control`).
        match self.region(offset, 8) {
            // SAFETY: in bounds, 8-byte aligned, an AtomicU64 (above).
            Some(ptr) => unsafe { &*ptr.cast::<AtomicU64>() }.load(Ordering::Acquire),
            None => 0,
        }
    }

    /// A consistent copy of the upstream record, or `None` if no relay ever
    /// wrote one (or its writer kept changing it while we read).
    pub fn upstream(&self) -> Option<UpstreamRecord> {
        let line = self.upstream_line();
        for _ in 0..READ_ATTEMPTS {
            // Acquire: pairs with the writer's release of the closing
            // version, so the words below are at least that new.
            let before = line.version.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let copy = read_words(line);
            // Acquire fence: orders the loads above before the reload of
            // the version (the sequence-lock reader's closing check).
            fence(Ordering::Acquire);
            if line.version.load(Ordering::Relaxed) == before {
                return copy;
            }
        }
        None
    }
}

/// The record's words, `None` if it was never written.
fn read_words(line: &UpstreamLine) -> Option<UpstreamRecord> {
    let state = line.state.load(Ordering::Relaxed);
    if state == UPSTREAM_NEVER {
        return None;
    }
    Some(UpstreamRecord {
        counts: Upstream {
            session: line.session.load(Ordering::Relaxed),
            last_seq: line.last_seq.load(Ordering::Relaxed),
            gaps: line.gaps.load(Ordering::Relaxed),
            delivered: line.delivered.load(Ordering::Relaxed),
        },
        writer: line.writer.load(Ordering::Relaxed),
        pending: state == UPSTREAM_PENDING,
        mark: line.mark.load(Ordering::Relaxed),
    })
}

/// The one process that writes a ring's upstream record. Dropping it
/// releases the record (the counts stay for `stat` and the next writer).
#[derive(Debug)]
pub struct UpstreamWriter {
    seg: Arc<Segment>,
    pid: u32,
}

impl UpstreamWriter {
    /// Takes the record of `seg`, settling a predecessor's interrupted push
    /// (see the module docs). Fails if another running process holds it.
    pub fn take(seg: Arc<Segment>) -> Result<(UpstreamWriter, Option<Resumed>), UpstreamBusy> {
        let pid = std::process::id();
        let line = seg.upstream_line();
        let mut holder = line.writer.load(Ordering::Acquire);
        loop {
            if holder != 0 && holder != pid {
                let alive = i32::try_from(holder).is_ok_and(sys::pid_alive);
                if alive {
                    return Err(UpstreamBusy { pid: holder });
                }
            }
            // AcqRel on success: acquire the dead or clean predecessor's
            // last record, release our claim; Acquire on failure: the new
            // holder is judged again.
            match line
                .writer
                .compare_exchange(holder, pid, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => holder = now,
            }
        }
        let writer = UpstreamWriter { seg, pid };
        let resumed = writer
            .seg
            .upstream()
            .map(|record| writer.settle(record, holder));
        if let Some(r) = &resumed {
            writer.write(&r.counts, UPSTREAM_LANDED, 0);
        }
        Ok((writer, resumed))
    }

    /// A predecessor's record with its interrupted push decided.
    fn settle(&self, record: UpstreamRecord, holder: u32) -> Resumed {
        let mut counts = record.counts;
        let interrupted_push = record.pending.then(|| {
            let landed = self.seg.producer_position() != record.mark;
            if !landed {
                // Counted as delivered in advance; it never arrived.
                counts.delivered = counts.delivered.saturating_sub(1);
                counts.gaps = counts.gaps.saturating_add(1);
            }
            landed
        });
        Resumed {
            counts,
            previous_writer: holder,
            interrupted_push,
        }
    }

    /// Records that a message with these counts (its own included) is
    /// about to be pushed.
    pub fn pushing(&mut self, counts: &Upstream) {
        let mark = self.seg.producer_position();
        self.write(counts, UPSTREAM_PENDING, mark);
    }

    /// Records that the message of the last [`pushing`](Self::pushing) is
    /// in the ring.
    pub fn landed(&mut self) {
        let line = self.seg.upstream_line();
        let v = self.open();
        line.state.store(UPSTREAM_LANDED, Ordering::Relaxed);
        self.close(v);
    }

    /// Starts an update: makes the version odd. Returns it.
    fn open(&self) -> u64 {
        let line = self.seg.upstream_line();
        // Relaxed load: only this process writes the version while it holds
        // the record. A peer may have scribbled an odd value: even it up.
        let v = (line.version.load(Ordering::Relaxed) & !1).wrapping_add(1);
        line.version.store(v, Ordering::Relaxed);
        // Release fence: the odd version is visible before any word stored
        // after it (a reader that sees a new word sees an odd or a newer
        // version on its closing check).
        fence(Ordering::Release);
        v
    }

    /// Ends an update started by [`open`](Self::open).
    fn close(&self, v: u64) {
        // Release: every word stored since `open` is visible to a reader
        // that acquires this even version.
        self.seg
            .upstream_line()
            .version
            .store(v.wrapping_add(1), Ordering::Release);
    }

    fn write(&self, counts: &Upstream, state: u64, mark: u64) {
        let line = self.seg.upstream_line();
        let v = self.open();
        line.session.store(counts.session, Ordering::Relaxed);
        line.last_seq.store(counts.last_seq, Ordering::Relaxed);
        line.gaps.store(counts.gaps, Ordering::Relaxed);
        line.delivered.store(counts.delivered, Ordering::Relaxed);
        line.mark.store(mark, Ordering::Relaxed);
        line.state.store(state, Ordering::Relaxed);
        self.close(v);
    }
}

impl Drop for UpstreamWriter {
    fn drop(&mut self) {
        // Release: our last record is visible to whoever takes it next. A
        // failed exchange means a peer overwrote the pid: leave theirs.
        let _ = self.seg.upstream_line().writer.compare_exchange(
            self.pid,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// Reads the upstream record of an object with `pread` (nothing mapped),
/// for `inspect`. `None` if it was never written or kept changing.
pub(crate) fn read_record(file: &std::fs::File) -> Option<UpstreamRecord> {
    use std::os::unix::fs::FileExt;
    let word = |b: &[u8; LINE], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(w)
    };
    for _ in 0..READ_ATTEMPTS {
        let mut first = [0u8; 8];
        file.read_exact_at(&mut first, UPSTREAM_OFFSET as u64)
            .ok()?;
        let before = u64::from_le_bytes(first);
        let mut b = [0u8; LINE];
        file.read_exact_at(&mut b, UPSTREAM_OFFSET as u64).ok()?;
        // The sequence lock's closing check: the version unchanged after
        // the whole line was copied.
        file.read_exact_at(&mut first, UPSTREAM_OFFSET as u64)
            .ok()?;
        let after = u64::from_le_bytes(first);
        if before % 2 == 1 || word(&b, 0) != before || after != before {
            continue;
        }
        let state = word(&b, 16);
        if state == UPSTREAM_NEVER {
            return None;
        }
        return Some(UpstreamRecord {
            counts: Upstream {
                session: word(&b, 24),
                last_seq: word(&b, 32),
                gaps: word(&b, 40),
                delivered: word(&b, 48),
            },
            writer: word(&b, 8) as u32,
            pending: state == UPSTREAM_PENDING,
            mark: word(&b, 56),
        });
    }
    None
}

const _: () = {
    use std::mem::offset_of;
    // The byte offsets `read_record` uses.
    assert!(offset_of!(layout::UpstreamLine, version) == 0);
    assert!(offset_of!(layout::UpstreamLine, writer) == 8);
    assert!(offset_of!(layout::UpstreamLine, state) == 16);
    assert!(offset_of!(layout::UpstreamLine, session) == 24);
    assert!(offset_of!(layout::UpstreamLine, last_seq) == 32);
    assert!(offset_of!(layout::UpstreamLine, gaps) == 40);
    assert!(offset_of!(layout::UpstreamLine, delivered) == 48);
    assert!(offset_of!(layout::UpstreamLine, mark) == 56);
};
