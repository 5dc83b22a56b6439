//! The limit on a module element's Error events (`Host::error`), the one place every path
//! goes through (a compiled-in module in the server's process or in a media worker, a
//! WebAssembly module's `error` import): a token bucket of [`BURST`] events, refilled at
//! [`PER_SECOND`] a second. Without it a module raising an error per call could send a
//! subscriber thousands of events a second (a WebAssembly guest may raise 64 per frame).
//! The events over the limit are dropped and counted; the count goes to the log at most once
//! every [`LOG_EVERY`], and what is left of it when the element goes.

use std::time::{Duration, Instant};

/// Events raised at once before the limit applies.
pub(crate) const BURST: u32 = 5;

/// Events a second after a burst.
pub(crate) const PER_SECOND: u32 = 2;

/// The most often the dropped events are logged.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// What to do with one Error event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Raise it.
    Raise,
    /// Drop it.
    Drop,
    /// Drop it, and log that this many were dropped since the last such line (this one
    /// included).
    DropAndLog(u64),
}

/// One element's bucket.
#[derive(Debug)]
pub(crate) struct ErrorLimit {
    /// The events that may be raised now (a fraction: on its way to the next one); at most
    /// `BURST`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
    /// Dropped since the last log line.
    dropped: u64,
    last_log: Option<Instant>,
}

impl ErrorLimit {
    pub(crate) fn new(now: Instant) -> ErrorLimit {
        ErrorLimit {
            tokens: f64::from(BURST),
            at: now,
            dropped: 0,
            last_log: None,
        }
    }

    /// An Error event at `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(PER_SECOND)).min(f64::from(BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Raise;
        }
        self.dropped += 1;
        if self
            .last_log
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY)
        {
            return Verdict::Drop;
        }
        self.last_log = Some(now);
        Verdict::DropAndLog(std::mem::take(&mut self.dropped))
    }

    /// Dropped and not logged yet (for the element's last line).
    pub(crate) fn unlogged(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_two_a_second_the_rest_counted_and_logged_every_10_s() {
        let t0 = Instant::now();
        let mut l = ErrorLimit::new(t0);
        let (mut raised, mut dropped, mut logged) = (0u64, 0u64, vec![]);
        // 1900 a second for 25 s (a guest raising 64 per frame at 30 fps).
        for i in 0..25 * 1900u64 {
            let now = t0 + Duration::from_micros(i * 1_000_000 / 1900);
            match l.check(now) {
                Verdict::Raise => raised += 1,
                Verdict::Drop => dropped += 1,
                Verdict::DropAndLog(n) => {
                    dropped += 1;
                    logged.push((now.duration_since(t0).as_secs(), n));
                }
            }
        }
        // 5 at once, then 2 a second for the 25 s.
        assert!((54..=56).contains(&raised), "{raised}");
        assert_eq!(raised + dropped, 25 * 1900);
        // The first drop at once, then every 10 s; the counts add up to what was dropped.
        let at: Vec<u64> = logged.iter().map(|&(s, _)| s).collect();
        assert_eq!(at, [0, 10, 20], "{logged:?}");
        assert_eq!(logged[0].1, 1);
        let counted: u64 = logged.iter().map(|&(_, n)| n).sum::<u64>() + l.unlogged();
        assert_eq!(counted, dropped);
    }

    #[test]
    fn a_quiet_element_gets_its_burst_back() {
        let t0 = Instant::now();
        let mut l = ErrorLimit::new(t0);
        let raised =
            |l: &mut ErrorLimit, now| (0..100).filter(|_| l.check(now) == Verdict::Raise).count();
        assert_eq!(raised(&mut l, t0), BURST as usize);
        assert_eq!(raised(&mut l, t0 + Duration::from_millis(500)), 1);
        // 2.5 s of quiet: the burst is back, no more.
        assert_eq!(raised(&mut l, t0 + Duration::from_secs(3)), BURST as usize);
        // One a second's worth: 2 errors a second raised, none dropped.
        let mut l = ErrorLimit::new(t0);
        for i in 0..100 {
            let now = t0 + Duration::from_millis(i * 500);
            assert_eq!(l.check(now), Verdict::Raise, "event {i}");
        }
    }
}
