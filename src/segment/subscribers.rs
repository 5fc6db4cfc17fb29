//! What `stat` shows about a broadcast ring's subscribers, read with
//! `pread` from the subscriber lines (untrusted: figures only, never used
//! to address memory).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::layout::{self, LINE, Layout};

/// One subscriber role of a broadcast ring, as `stat` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SubscriberInfo {
    /// Role index (1 is the first subscriber role).
    pub role: u32,
    /// Sequence number of the next message it reads.
    pub position: u64,
    /// Messages published that it has not read.
    pub lag: u64,
    /// Messages its holders missed (lapped or evicted).
    pub missed: u64,
    /// Evicted from its current join (`block` rings).
    pub evicted: bool,
    /// Times its holders were evicted.
    pub evictions: u64,
    /// Its lock is held (a live process holds the role).
    pub alive: bool,
    /// Pid of its current or last holder.
    pub pid: u32,
}

fn read_u64(file: &File, offset: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, offset).ok()?;
    Some(u64::from_le_bytes(b))
}

/// The publisher's count of messages (its `tail`).
pub(super) fn published(file: &File, layout: &Layout) -> Option<u64> {
    read_u64(
        file,
        layout.control_offset + (layout::PRODUCER_LINE * LINE + layout::INDEX_WORD) as u64,
    )
}

/// Subscribers evicted so far (the space line's count).
pub(super) fn evictions(file: &File, layout: &Layout) -> Option<u64> {
    read_u64(
        file,
        layout.control_offset + (layout::CONSUMER_LINE * LINE + 8) as u64,
    )
}

/// The subscriber roles that were ever held, or are held now. `alive`
/// tells whether role `i`'s lock is held.
pub(super) fn subscribers(
    file: &File,
    layout: &Layout,
    alive: &dyn Fn(u32) -> bool,
) -> Vec<SubscriberInfo> {
    let tail = published(file, layout).unwrap_or(0);
    let lines = layout.control_offset + layout::BROADCAST_CONTROL_SIZE as u64;
    let mut out = Vec::new();
    for role in 1..layout.roles() {
        let mut pid = [0u8; 4];
        let pid = file
            .read_exact_at(&mut pid, layout.role_record_offset(role))
            .ok()
            .map_or(0, |()| u32::from_le_bytes(pid));
        let held = alive(role);
        if pid == 0 && !held {
            continue;
        }
        let line = lines + u64::from(role) * LINE as u64;
        let word = |w: usize| read_u64(file, line + w as u64).unwrap_or(0);
        let position = word(layout::SUB_POS_WORD);
        let epoch = word(layout::SUB_EPOCH_WORD);
        let evicted = word(layout::SUB_EVICTED_WORD);
        out.push(SubscriberInfo {
            role,
            position,
            lag: tail.saturating_sub(position),
            missed: word(layout::SUB_MISSED_WORD),
            evicted: evicted != 0 && evicted == epoch,
            evictions: word(layout::SUB_EVICTIONS_WORD),
            alive: held,
            pid,
        });
    }
    out
}
