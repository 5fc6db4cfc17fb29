//! Counting what did not arrive, from the source's sequence numbers.

use std::sync::atomic::{AtomicU64, Ordering};

/// What one message's sequence number says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The first message this bridge sees from a source session.
    First {
        /// Its sequence number: `seq - 1` earlier messages of that session
        /// were sent before this bridge joined (or while it was down).
        seq: u64,
        /// The source restarted (a new session after another one).
        restarted: bool,
    },
    /// The next one in order.
    Next,
    /// `missing` messages were lost just before this one.
    Gap {
        /// How many.
        missing: u64,
    },
    /// A sequence number at or below the last one: a repeat, not
    /// delivered again.
    Repeat,
}

/// The counters of a bridge in, readable from any thread while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages produced into the local ring.
    pub delivered: AtomicU64,
    /// Messages the sequence numbers say were lost (within each source
    /// session this bridge saw).
    pub gaps: AtomicU64,
    /// Sequence number of the last message delivered (0: none yet).
    pub last_seq: AtomicU64,
    /// Repeated sequence numbers dropped.
    pub repeats: AtomicU64,
    /// Source sessions seen (a source restart starts a new one).
    pub sessions: AtomicU64,
}

impl Counters {
    /// A copy of the counters, for a log line.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            delivered: self.delivered.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            last_seq: self.last_seq.load(Ordering::Relaxed),
            repeats: self.repeats.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
        }
    }
}

/// [`Counters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Counters::delivered`].
    pub delivered: u64,
    /// See [`Counters::gaps`].
    pub gaps: u64,
    /// See [`Counters::last_seq`].
    pub last_seq: u64,
    /// See [`Counters::repeats`].
    pub repeats: u64,
    /// See [`Counters::sessions`].
    pub sessions: u64,
}

/// The receiving side's view of one stream of sequence numbers.
#[derive(Debug, Default)]
pub struct Tracker {
    session: Option<u64>,
    last: u64,
}

impl Tracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// A tracker that continues a predecessor's stream: message `last` of
    /// source `session` was the last one it accounted for (delivered or
    /// counted as lost), so `last + 1` is next.
    pub fn resume(session: u64, last: u64) -> Tracker {
        Tracker {
            session: Some(session),
            last,
        }
    }

    /// Classifies message `seq` of source `session` and counts it in
    /// `counters` (all but [`Seen::Repeat`] are to be delivered; the
    /// caller adds `delivered` and `last_seq` once the message is in the
    /// ring).
    pub fn observe(&mut self, session: u64, seq: u64, counters: &Counters) -> Seen {
        if self.session != Some(session) {
            let restarted = self.session.is_some();
            self.session = Some(session);
            self.last = seq;
            counters.sessions.fetch_add(1, Ordering::Relaxed);
            return Seen::First { seq, restarted };
        }
        if seq <= self.last {
            counters.repeats.fetch_add(1, Ordering::Relaxed);
            return Seen::Repeat;
        }
        let missing = seq - self.last - 1;
        self.last = seq;
        if missing == 0 {
            Seen::Next
        } else {
            counters.gaps.fetch_add(missing, Ordering::Relaxed);
            Seen::Gap { missing }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_exactly() {
        let c = Counters::default();
        let mut t = Tracker::new();
        assert_eq!(
            t.observe(7, 5, &c),
            Seen::First {
                seq: 5,
                restarted: false
            }
        );
        assert_eq!(t.observe(7, 6, &c), Seen::Next);
        assert_eq!(t.observe(7, 10, &c), Seen::Gap { missing: 3 });
        assert_eq!(t.observe(7, 10, &c), Seen::Repeat);
        assert_eq!(t.observe(7, 2, &c), Seen::Repeat);
        assert_eq!(t.observe(7, 12, &c), Seen::Gap { missing: 1 });
        assert_eq!(
            t.observe(8, 1, &c),
            Seen::First {
                seq: 1,
                restarted: true
            }
        );
        assert_eq!(t.observe(8, 2, &c), Seen::Next);
        let s = c.snapshot();
        assert_eq!((s.gaps, s.repeats, s.sessions), (4, 2, 2));
    }

    #[test]
    fn a_resumed_tracker_continues_the_count() {
        let c = Counters::default();
        let mut t = Tracker::resume(7, 10);
        assert_eq!(t.observe(7, 9, &c), Seen::Repeat);
        assert_eq!(t.observe(7, 11, &c), Seen::Next);
        assert_eq!(t.observe(7, 14, &c), Seen::Gap { missing: 2 });
        assert_eq!(
            t.observe(8, 1, &c),
            Seen::First {
                seq: 1,
                restarted: true
            }
        );
        assert_eq!(c.snapshot().gaps, 2);
    }
}
