//! What the feedback handed to a viewer's controller reported, over the last second
//! ([`Delivery`]): the loss, the queue's delay and the rate delivered that Fluo's own signs of
//! congestion read (docs/simulcast.md, "The congestion rule").

use super::{BASE_DELAY_FOR, DELIVERY_WINDOW, LOSS_LEAST, LOSS_PERMILLE, LOSS_QUEUE};
use std::time::{Duration, Instant};

/// What one feedback message handed to the controller reported: bytes and packets
/// received, packets lost, and the least and the longest one-way delay of those received
/// (arrival on the viewer's clock less sending on ours: an offset, the same for each).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fed {
    pub(super) bytes: u64,
    pub(super) received: u64,
    pub(super) lost: u64,
    pub(super) delay_us: (i64, i64),
    /// Whether probe packets were among those received.
    pub(super) probes: bool,
}

/// The feedback of the last [`DELIVERY_WINDOW`], by when it was handed, and the least
/// one-way delay lately (the current and the previous [`BASE_DELAY_FOR`]).
#[derive(Default)]
pub(super) struct Delivery {
    recent: std::collections::VecDeque<(Instant, Fed)>,
    base: Option<(Instant, i64)>,
    base_before: Option<i64>,
}

impl Delivery {
    pub(super) fn add(&mut self, now: Instant, fed: Fed) {
        while (self.recent.front())
            .is_some_and(|e| now.saturating_duration_since(e.0) >= DELIVERY_WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.push_back((now, fed));
        let least = fed.delay_us.0;
        self.base = match self.base {
            Some((since, b)) if now.saturating_duration_since(since) < BASE_DELAY_FOR => {
                Some((since, b.min(least)))
            }
            old => {
                self.base_before = old.map(|(_, b)| b);
                Some((now, least))
            }
        };
    }

    /// How far the longest one-way delay over the window is above the least lately.
    pub(super) fn queued(&self, now: Instant) -> Duration {
        let base = (self.base.map(|b| b.1).into_iter())
            .chain(self.base_before)
            .min();
        let longest = (self.recent.iter())
            .filter(|e| now.saturating_duration_since(e.0) < DELIVERY_WINDOW)
            .map(|e| e.1.delay_us.1)
            .max();
        match (base, longest) {
            (Some(b), Some(l)) => Duration::from_micros(l.saturating_sub(b).max(0) as u64),
            _ => Duration::ZERO,
        }
    }

    /// Bytes and packets received, packets lost, over the window at `now`.
    fn totals(&self, now: Instant) -> (u64, u64, u64) {
        let recent = (self.recent.iter())
            .filter(|e| now.saturating_duration_since(e.0) < DELIVERY_WINDOW)
            .map(|e| e.1);
        recent.fold((0, 0, 0), |(b, r, l), e| {
            (b + e.bytes, r + e.received, l + e.lost)
        })
    }

    /// Whether the feedback reported more than [`LOSS_PERMILLE`] lost over the window, with
    /// a queue of at least [`LOSS_QUEUE`] behind it: a full queue's loss.
    pub(super) fn lossy(&self, now: Instant) -> bool {
        let (_, received, lost) = self.totals(now);
        lost >= LOSS_LEAST
            && lost * 1000 > LOSS_PERMILLE * (lost + received)
            && self.queued(now) >= LOSS_QUEUE
    }

    /// The rate delivered over the window, in bit/s.
    pub(super) fn delivered_bps(&self, now: Instant) -> u64 {
        let (bytes, _, _) = self.totals(now);
        bytes.saturating_mul(8_000_000) / DELIVERY_WINDOW.as_micros() as u64
    }
}
