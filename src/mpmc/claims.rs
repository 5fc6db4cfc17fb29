//! Claiming slots, and recovering those whose claimant died: a dead
//! producer's slot is skipped, a dead consumer's message redelivered (see
//! the module docs of `mpmc`).

use super::raw::{Claim, FastRead, RawMpmc, Stuck};
use super::{MAX_RETRIES, POS, SKIP};
use crate::sync::atomic::{Ordering, fence};
use crate::sync::spin_hint;

impl RawMpmc {
    /// The fast path of [`claim_for_write`](Self::claim_for_write) for one
    /// position: the common case only (the slot at `tail` is free for it,
    /// and our CAS wins), with the same record-then-CAS protocol. `None`
    /// for anything else (full, a race lost, a skip or any value the
    /// general path must classify); the caller then runs the general path,
    /// which reloads everything, so nothing is decided here but "claimed".
    ///
    /// Checks kept: the position read from the segment is range-checked
    /// before it is used (it only selects a slot by masking, so a lie can
    /// only make us claim a wrong-but-in-bounds slot, as in the general
    /// path), and the slot must hold exactly `t` (bit 63 clear). It touches
    /// the lines the textbook queue touches (tail, the slot) plus our own
    /// claim line; nothing the consumers write except the slot.
    #[inline]
    pub(crate) fn claim_one_for_write(&self, me: u32) -> Option<u64> {
        // Relaxed: only a guess at the position; the slot's sequence number
        // (acquire, below) orders the payload, the CAS validates the guess.
        let t = self.tail().load(Ordering::Relaxed);
        // As `check_position` (without building its message): a position
        // this high is reported by the general path.
        if t > POS - 2 * self.capacity {
            return None;
        }
        // Acquire: pairs with the consumer's release that freed the slot,
        // so its reads of the payload happen-before our writes.
        if self.seq(t).load(Ordering::Acquire) != t {
            return None;
        }
        // Record before the CAS, exactly as the general path does: a live
        // producer's claimed slot must be covered by its record from the
        // moment the tail passes it, or a consumer stuck on it could skip
        // it under us.
        self.record(me, t, 1);
        // SeqCst on success, as in the general path (releases the record,
        // single order of claims); Relaxed on failure: we clear and let the
        // general path reload. A strong CAS: a spurious failure would send
        // us down the slow path for nothing.
        if self
            .tail()
            .compare_exchange(t, t + 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            return Some(t);
        }
        // Lost the race: the record must not outlive the attempt (a stale
        // record naming a position another producer claimed would keep a
        // consumer from skipping that slot if its real claimant died).
        self.clear(me);
        None
    }

    /// The fast path of [`claim_for_read`](Self::claim_for_read) for one
    /// position: the slot at `head` is published (not skipped) and our CAS
    /// wins. [`FastRead::Unpublished`] when the slot at `head` still waits
    /// for its producer (the general path would find the same and do only
    /// its stuck-slot bookkeeping); [`FastRead::Other`] for anything else:
    /// the caller runs the general path, which classifies every value.
    #[inline]
    pub(crate) fn claim_one_for_read(&self, me: u32) -> FastRead {
        // Relaxed: a guess, validated by the slot and the CAS.
        let h = self.head().load(Ordering::Relaxed);
        // As `check_position`: keeps `h + 1` from overflowing.
        if h > POS - 2 * self.capacity {
            return FastRead::Other;
        }
        // Acquire: pairs with the producer's release publish, so its
        // payload writes are visible to our read. Exactly `h + 1`: bit 63
        // (a skip) goes to the general path.
        let s = self.seq(h).load(Ordering::Acquire);
        if s != h + 1 {
            // Exactly `h`: free for the producer of `h` (claimed or not),
            // the general path's "not published" case with a legal value.
            return if s == h {
                FastRead::Unpublished(h)
            } else {
                FastRead::Other
            };
        }
        // Record before the CAS, as the general path: a producer must find
        // a live consumer's claim covering the slot a lap later, or it
        // could redeliver a message that is being read.
        self.record(me, h, 1);
        // SeqCst on success, as for producers; Relaxed on failure (cleared
        // below, the general path reloads).
        if self
            .head()
            .compare_exchange(h, h + 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            return FastRead::Got(h);
        }
        // Lost the race to another consumer: drop the record (see
        // `claim_one_for_write`).
        self.clear(me);
        FastRead::Other
    }

    /// Tries to claim up to `want` free slots for producer role `me`.
    /// `scan_now`: check a stuck slot's consumer now, not after
    /// [`STUCK_POLLS`].
    pub(crate) fn claim_for_write(
        &self,
        me: u32,
        want: u64,
        stuck: &mut Stuck,
        scan_now: bool,
        alive: &dyn Fn(u32) -> bool,
    ) -> Claim {
        let cap = self.capacity;
        let want = want.clamp(1, cap);
        let mut recorded = false;
        let outcome = 'retry: {
            for _ in 0..MAX_RETRIES {
                let t = self.tail().load(Ordering::Relaxed);
                if let Err(w) = self.check_position(t, "enqueue") {
                    break 'retry Claim::Corrupted(w);
                }
                // Acquire: pairs with the release that freed the slot, so
                // the previous consumer's reads happen-before our writes.
                let s = self.seq(t).load(Ordering::Acquire);
                let diff = (s & POS).wrapping_sub(t) as i64;
                if diff == 0 {
                    let mut n = 1;
                    while n < want && self.seq(t + n).load(Ordering::Acquire) & POS == t + n {
                        n += 1;
                    }
                    self.record(me, t, n);
                    recorded = true;
                    // SeqCst on success: releases our record and orders the
                    // claim in the single order of all claims; on failure
                    // Relaxed (we reload everything).
                    if self
                        .tail()
                        .compare_exchange_weak(t, t + n, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Claim::Got(t, n);
                    }
                    spin_hint();
                    continue;
                }
                if diff > 0 {
                    // The slot is ahead of `t`: someone claimed `t` since we
                    // read the tail. If the tail did not move, the slot lies.
                    if self.tail().load(Ordering::SeqCst) == t {
                        break 'retry Claim::Corrupted(format!(
                            "slot sequence {s:#x} is ahead of the enqueue position {t}"
                        ));
                    }
                    spin_hint();
                    continue;
                }
                // The slot still holds position t - cap's message: full,
                // unless the consumer that took it died before releasing.
                // Look at the consumers' line only once it stayed so for a
                // while: polling a full ring then touches no line the
                // consumers write.
                if !stuck.due(t, scan_now) {
                    break 'retry Claim::Nothing;
                }
                let h = self.head().load(Ordering::Acquire);
                let used = t.wrapping_sub(h);
                if used > cap {
                    if self.tail().load(Ordering::SeqCst) != t {
                        spin_hint();
                        continue;
                    }
                    break 'retry Claim::Corrupted(format!(
                        "enqueue position {t} and dequeue position {h} are {used} apart, more than the capacity {cap}"
                    ));
                }
                let prev = t.wrapping_sub(cap);
                if used == cap || s & POS != prev.wrapping_add(1) || !stuck.grace_over(t) {
                    break 'retry Claim::Nothing;
                }
                // Announce the redelivery before looking for a live
                // claimant: a consumer adopting the dead role's claim
                // takes the role's lock, then looks for records like this
                // one (see `Core::adopt`). SeqCst fence on both sides (the
                // lock's system calls on theirs): either we see the role
                // alive, or they see our record and wait for us.
                self.record(me, t, 1);
                recorded = true;
                fence(Ordering::SeqCst);
                if self.claimed_by_live(
                    self.producers..self.producers + self.consumers,
                    prev,
                    alive,
                ) {
                    break 'retry Claim::Nothing;
                }
                // Nobody alive holds position `prev`: put its message back,
                // at position t.
                if self
                    .tail()
                    .compare_exchange(t, t + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
                {
                    spin_hint();
                    continue;
                }
                // AcqRel: acquire the old contents, release them as the
                // message of position t.
                match self.seq(t).compare_exchange(
                    s,
                    (t + 1) | (s & SKIP),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        if s & SKIP == 0 {
                            self.stats().redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        self.clear(me);
                        recorded = false;
                        self.data_wait().notify();
                    }
                    // Released after all (a slow consumer): position t is
                    // ours and free.
                    Err(now) if now == t => return Claim::Got(t, 1),
                    Err(now) => {
                        break 'retry Claim::Corrupted(format!(
                            "slot sequence {now:#x} changed under a claimed position {t}"
                        ));
                    }
                }
            }
            Claim::Nothing
        };
        if recorded {
            self.clear(me);
        }
        outcome
    }

    /// Publishes positions `pos .. pos + n` claimed by producer `me` (empty,
    /// to be skipped, if `skip`), then clears its claim.
    #[inline]
    pub(crate) fn publish(&self, me: u32, pos: u64, n: u64, skip: bool) {
        let flag = if skip { SKIP } else { 0 };
        for p in pos..pos + n {
            // Release: our payload writes happen-before the consumer's
            // acquire load that sees the slot published.
            self.seq(p).store((p + 1) | flag, Ordering::Release);
        }
        if skip {
            self.stats().skipped.fetch_add(n, Ordering::Relaxed);
        }
        self.clear(me);
        self.data_wait().notify();
    }

    /// Tries to claim up to `want` published slots for consumer role `me`.
    /// `scan_now`: check a stuck slot's producer now, not after
    /// [`STUCK_POLLS`].
    pub(crate) fn claim_for_read(
        &self,
        me: u32,
        want: u64,
        stuck: &mut Stuck,
        scan_now: bool,
        alive: &dyn Fn(u32) -> bool,
    ) -> Claim {
        let cap = self.capacity;
        let want = want.clamp(1, cap);
        let mut recorded = false;
        let outcome = 'retry: {
            for _ in 0..MAX_RETRIES {
                let h = self.head().load(Ordering::Relaxed);
                if let Err(w) = self.check_position(h, "dequeue") {
                    break 'retry Claim::Corrupted(w);
                }
                // Acquire: pairs with the producer's release publish.
                let s = self.seq(h).load(Ordering::Acquire);
                let diff = (s & POS).wrapping_sub(h + 1) as i64;
                if diff == 0 {
                    let mut n = 1;
                    while n < want && self.seq(h + n).load(Ordering::Acquire) & POS == h + n + 1 {
                        n += 1;
                    }
                    self.record(me, h, n);
                    recorded = true;
                    // SeqCst on success, as for producers; Relaxed on
                    // failure (we reload everything).
                    if self
                        .head()
                        .compare_exchange_weak(h, h + n, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Claim::Got(h, n);
                    }
                    spin_hint();
                    continue;
                }
                if diff > 0 {
                    if self.head().load(Ordering::SeqCst) == h {
                        break 'retry Claim::Corrupted(format!(
                            "slot sequence {s:#x} is ahead of the dequeue position {h}"
                        ));
                    }
                    spin_hint();
                    continue;
                }
                // Not published: empty, unless a producer claimed it and
                // died. Look at the producers' line only once it stayed so
                // for a while: polling an empty ring then touches no line
                // the producers write.
                if !stuck.due(h, scan_now) {
                    break 'retry Claim::Nothing;
                }
                // Acquire: if a producer's claim moved the tail past h, its
                // claim record is visible to us now.
                let t = self.tail().load(Ordering::Acquire);
                let used = t.wrapping_sub(h);
                if used > cap {
                    if self.head().load(Ordering::SeqCst) != h {
                        spin_hint();
                        continue;
                    }
                    break 'retry Claim::Corrupted(format!(
                        "enqueue position {t} and dequeue position {h} are {used} apart, more than the capacity {cap}"
                    ));
                }
                if used == 0 {
                    break 'retry Claim::Nothing;
                }
                if self.claimed_by_live(0..self.producers, h, alive) {
                    break 'retry Claim::Nothing;
                }
                // Claimed, unpublished, and no live producer claims it: its
                // producer died mid-write. Mark it published-empty; the CAS
                // fails if it was published meanwhile.
                if self
                    .seq(h)
                    .compare_exchange(s, (h + 1) | SKIP, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.stats().skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Claim::Nothing
        };
        if recorded {
            self.clear(me);
        }
        outcome
    }
}
