//! What `inspect` reads of a ring's contents: its positions, as a
//! snapshot that no traffic can make look corrupt.
//!
//! The positions are read with `pread` (nothing is mapped), so each word
//! is a copy taken at some instant; two words are never read at the same
//! instant. [`Positions::check`] says why the order of reading makes a
//! healthy ring always pass.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::layout::{self, LINE, Layout};

/// How many times `inspect` reads a moving ring's positions, looking for a
/// moment when the consumer's did not move.
pub(super) const SNAPSHOT_ATTEMPTS: usize = 16;

/// What the ring's control lines say about its contents.
pub(super) enum Occupancy {
    /// Messages and (frame rings) bytes in the ring. `busy`: the consumer
    /// moved during every reading, so they are a lower bound for the moment
    /// the producer's position was read.
    Healthy {
        msgs: u64,
        bytes: Option<u64>,
        busy: bool,
    },
    /// No healthy ring could show these positions.
    Corrupt(String),
}

/// One reading: the consumer's line, the producer's line, the consumer's
/// line again, each (index, count) word pair with one `pread`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Positions {
    head: u64,
    consumed: u64,
    tail: u64,
    produced: u64,
    head_after: u64,
    consumed_after: u64,
}

/// `later - earlier` if `earlier <= x <= later + limit` could hold for
/// positions that only grow (wrapping 64-bit counters), as
/// (`x - later` clamped at 0, whether nothing moved); `None` if not.
fn bracket(earlier: u64, x: u64, later: u64, limit: u64) -> Option<(u64, bool)> {
    let moved = later.wrapping_sub(earlier);
    if moved >= 1 << 63 {
        return None; // went backwards
    }
    let ahead = x.wrapping_sub(earlier);
    if ahead > moved.checked_add(limit)? {
        return None; // behind `earlier`, or more than `limit` past `later`
    }
    Some((ahead.saturating_sub(moved), moved == 0))
}

impl Positions {
    fn read(file: &File, layout: &Layout) -> Option<Positions> {
        // The producer/enqueue and consumer/dequeue lines (`SpscControl`,
        // `MpmcControl`): offsets asserted against the structs in `layout`.
        let producer = layout.control_offset + (layout::PRODUCER_LINE * LINE) as u64;
        let consumer = layout.control_offset + (layout::CONSUMER_LINE * LINE) as u64;
        const _: () = assert!(layout::COUNT_WORD == layout::INDEX_WORD + 8);
        let pair = |line: u64| {
            let mut b = [0u8; 16];
            file.read_exact_at(&mut b, line + layout::INDEX_WORD as u64)
                .ok()?;
            let (index, count) = b.split_at(8);
            Some((
                u64::from_le_bytes(index.try_into().ok()?),
                u64::from_le_bytes(count.try_into().ok()?),
            ))
        };
        let (head, consumed) = pair(consumer)?;
        let (tail, produced) = pair(producer)?;
        let (head_after, consumed_after) = pair(consumer)?;
        Some(Positions {
            head,
            consumed,
            tail,
            produced,
            head_after,
            consumed_after,
        })
    }

    /// (messages, bytes, exact), or why no healthy ring shows this.
    ///
    /// Positions only grow, and a healthy ring keeps
    /// `head <= tail <= head + limit` at every instant (a producer writes only into room the
    /// consumer released, a consumer takes only what was published). The
    /// consumer's position is read before and after the producer's, so at
    /// the instant the tail was read the head lay between the two readings:
    /// a healthy ring always passes `head <= tail <= head_after + limit`,
    /// however fast both sides move. (Reading each index once, in either
    /// order, cannot tell: the consumer may pass the tail read before it,
    /// or the producer run more than `limit` past the head read before it.)
    /// Frame rings count frames the same way (`produced` is stored before
    /// the tail, `consumed` before the head; a frame takes at least 8
    /// bytes).
    fn check(&self, layout: &Layout) -> std::result::Result<(u64, Option<u64>, bool), String> {
        let limit = match layout.kind {
            layout::Kind::Spsc | layout::Kind::Mpmc | layout::Kind::Broadcast => layout.capacity,
            layout::Kind::Frames => layout.data_size,
        };
        let Some((used, exact)) = bracket(self.head, self.tail, self.head_after, limit) else {
            return Err(format!(
                "ring positions are out of range: consumer at {} then {}, producer at {}, capacity {limit}",
                self.head, self.head_after, self.tail
            ));
        };
        if layout.kind != layout::Kind::Frames {
            return Ok((used, None, exact));
        }
        let Some((msgs, counted)) = bracket(
            self.consumed,
            self.produced,
            self.consumed_after,
            layout.data_size / 8,
        ) else {
            return Err(format!(
                "frame counts are out of range: {} consumed then {}, {} produced, room for {} frames",
                self.consumed,
                self.consumed_after,
                self.produced,
                layout.data_size / 8
            ));
        };
        Ok((msgs, Some(used), exact && counted))
    }
}

/// Occupancy from the ring's control lines, read with `pread` a bounded
/// number of times (see [`Positions::check`]); `None` if they cannot be
/// read. A healthy ring is never reported corrupt: the same impossible
/// positions must be read twice in a row (or every reading be impossible).
pub(super) fn occupancy(file: &File, layout: &Layout) -> Option<Occupancy> {
    let mut moving = None;
    let mut last_bad: Option<(Positions, String)> = None;
    for _ in 0..SNAPSHOT_ATTEMPTS {
        let seen = Positions::read(file, layout)?;
        match seen.check(layout) {
            Ok((msgs, bytes, true)) => {
                return Some(Occupancy::Healthy {
                    msgs,
                    bytes,
                    busy: false,
                });
            }
            Ok((msgs, bytes, false)) => moving = Some((msgs, bytes)),
            Err(why) => {
                if matches!(&last_bad, Some((before, _)) if *before == seen) {
                    return Some(Occupancy::Corrupt(why));
                }
                last_bad = Some((seen, why));
            }
        }
    }
    Some(match (moving, last_bad) {
        (Some((msgs, bytes)), _) => Occupancy::Healthy {
            msgs,
            bytes,
            busy: true,
        },
        (None, Some((_, why))) => Occupancy::Corrupt(why),
        (None, None) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::bracket;

    #[test]
    fn bracket_accepts_what_a_healthy_ring_can_show_and_nothing_else() {
        // Nothing moved: exact.
        assert_eq!(bracket(5, 7, 5, 4), Some((2, true)));
        assert_eq!(bracket(5, 9, 5, 4), Some((4, true)));
        // The consumer moved past the tail read before: empty, not negative.
        assert_eq!(bracket(5, 6, 8, 4), Some((0, false)));
        // The producer ran ahead of the first reading of the head.
        assert_eq!(bracket(5, 10, 6, 4), Some((4, false)));
        // Impossible: tail behind the head, more than full, head backwards.
        assert_eq!(bracket(5, 4, 5, 4), None);
        assert_eq!(bracket(5, 10, 5, 4), None);
        assert_eq!(bracket(6, 7, 5, 4), None);
        // Wrapping 64-bit positions.
        assert_eq!(bracket(u64::MAX - 1, 1, u64::MAX, 4), Some((2, false)));
        assert_eq!(bracket(0, u64::MAX, 0, 4), None);
    }

    /// A model of a healthy ring (capacity 4) whose two sides take random
    /// steps between the three readings: every reading passes, and the
    /// length reported lies between what the ring held when the tail was
    /// read and zero.
    #[test]
    fn any_interleaving_of_a_healthy_ring_passes() {
        let cap = 4u64;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut head, mut tail) = (0u64, 0u64);
        for _ in 0..100_000 {
            let mut step = |head: &mut u64, tail: &mut u64| {
                for _ in 0..next(4) {
                    if next(2) == 0 && *tail - *head < cap {
                        *tail += 1;
                    } else if *head < *tail {
                        *head += 1;
                    }
                }
            };
            step(&mut head, &mut tail);
            let h1 = head;
            step(&mut head, &mut tail);
            let t = tail;
            let at_t = t - head;
            step(&mut head, &mut tail);
            let h2 = head;
            let (len, exact) = bracket(h1, t, h2, cap).expect("a healthy ring passes");
            assert!(len <= at_t, "{len} > {at_t}");
            if exact {
                assert_eq!(len, at_t);
            }
        }
    }
}
