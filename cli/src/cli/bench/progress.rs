//! What the bench is measuring while it runs, on stderr: on a terminal one
//! line rewritten in place, otherwise one line per phase (none with
//! `--json`, whose readers are programs).

use std::io::IsTerminal;
use std::time::Instant;

/// Reports each phase of the run as it starts.
pub(super) struct Progress {
    /// Rewrite one line (a terminal) rather than print one per phase.
    live: bool,
    /// Print anything at all.
    on: bool,
    phases: usize,
    rounds: u32,
    started: usize,
    start: Instant,
}

impl Progress {
    /// A run of `rounds` rounds of `phases` phases each.
    pub(super) fn new(json: bool, phases: usize, rounds: u32) -> Self {
        let live = std::io::stderr().is_terminal();
        Progress {
            live,
            on: live || !json,
            phases,
            rounds,
            started: 0,
            start: Instant::now(),
        }
    }

    /// Phase `phase` (from 0) of round `round` (from 0) starts.
    pub(super) fn phase(&mut self, round: u32, phase: usize, what: &str) {
        self.started += 1;
        if !self.on {
            return;
        }
        let text = format!(
            "round {}/{}, phase {}/{}: {what}{}",
            round + 1,
            self.rounds,
            phase + 1,
            self.phases,
            self.left()
        );
        if self.live {
            // Back to the line's start and clear it.
            eprint!("\r\x1b[K{text}");
        } else {
            eprintln!("{text}");
        }
    }

    /// `, about 41 s left`, from the pace so far (nothing before the
    /// first phase ends).
    fn left(&self) -> String {
        let done = self.started.saturating_sub(1);
        let total = self.phases * self.rounds as usize;
        if done == 0 {
            return String::new();
        }
        let per = self.start.elapsed().as_secs_f64() / done as f64;
        let left = per * total.saturating_sub(done) as f64;
        format!(" (about {left:.0} s left)")
    }

    /// The measurements are over.
    pub(super) fn finish(&self) {
        if !self.on {
            return;
        }
        if self.live {
            eprint!("\r\x1b[K");
        }
        eprintln!(
            "measured {} phases in {:.0} s",
            self.started,
            self.start.elapsed().as_secs_f64()
        );
    }
}
