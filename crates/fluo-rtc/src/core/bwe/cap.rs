//! The highest simulcast layer a viewer's estimate allows ([`LayerCap`]; docs/simulcast.md,
//! "Layer choice").

use super::{HEADROOM_PERCENT, UP_AFTER};
use std::time::Instant;

/// The highest simulcast layer a viewer's estimate allows, with hysteresis (see the module).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerCap {
    /// The rank the router is told (`None`: no cap).
    pub(crate) cap: Option<u8>,
    /// Since when the estimate allows more than `cap`, and the least it allowed since.
    up: Option<(u8, Instant)>,
}

impl LayerCap {
    /// The cap for estimate `bps` given the layers' measured bitrates by rank (`None`: the
    /// layer does not flow or is not measured yet): the highest measured layer whose bitrate
    /// fits in 85 % of the estimate, else the lowest measured one; down at once, up only once
    /// the estimate allowed the higher layer for [`UP_AFTER`] and every layer that flows is
    /// measured (`complete`: else a higher cap could change again as soon as the rest is; a
    /// lower one is taken at any time, when a measured layer above it does not fit). With no layer measured the cap stays as it is (none
    /// at first). Returns the new cap when it changed.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        bps: u64,
        rates: &[Option<u64>],
        complete: bool,
    ) -> Option<Option<u8>> {
        let budget = bps.saturating_mul(HEADROOM_PERCENT) / 100;
        let measured = || {
            (rates.iter().enumerate())
                .filter_map(|(rank, r)| r.map(|bits| (rank.min(255) as u8, bits)))
        };
        let lowest = measured().next()?.0;
        let allowed = measured()
            .filter(|(_, bits)| *bits <= budget)
            .map(|(rank, _)| rank)
            .next_back()
            .unwrap_or(lowest);
        if !complete {
            return self.update_incomplete(now, allowed, budget, measured());
        }
        let next = match self.cap {
            Some(c) if allowed > c => {
                let (least, since) = self
                    .up
                    .map_or((allowed, now), |(least, since)| (least.min(allowed), since));
                if now.saturating_duration_since(since) >= UP_AFTER {
                    self.up = None;
                    least
                } else {
                    self.up = Some((least, since));
                    c
                }
            }
            _ => {
                self.up = None;
                allowed
            }
        };
        (self.cap != Some(next)).then(|| {
            self.cap = Some(next);
            self.cap
        })
    }

    /// Whether estimate `bps` leaves room (85 %) for the top measured layer, above the cap
    /// (none without a cap): ending congestion lifts the cap altogether, and the viewer gets
    /// the top layer its other limits allow.
    pub(crate) fn room_for_top(&self, bps: u64, rates: &[Option<u64>]) -> bool {
        let budget = bps.saturating_mul(HEADROOM_PERCENT) / 100;
        let Some(cap) = self.cap else {
            return false;
        };
        let top = rates
            .iter()
            .enumerate()
            .rev()
            .find_map(|(rank, r)| r.map(|b| (rank, b)));
        top.is_some_and(|(rank, bits)| rank > usize::from(cap) && bits <= budget)
    }

    /// [`LayerCap::update`] while a layer that flows is not measured yet: the cap goes down
    /// to `allowed` only when a measured layer above it does not fit in `budget` (what is
    /// measured fitting says nothing of the rest: no first cap then); up waits (the wait for
    /// room goes on).
    fn update_incomplete(
        &mut self,
        now: Instant,
        allowed: u8,
        budget: u64,
        mut measured: impl Iterator<Item = (u8, u64)>,
    ) -> Option<Option<u8>> {
        let too_big = measured.any(|(rank, bits)| rank > allowed && bits > budget);
        match self.cap {
            Some(c) if allowed > c => {
                self.up = Some(self.up.map_or((allowed, now), |(l, t)| (l.min(allowed), t)));
                None
            }
            Some(c) if allowed == c || !too_big => {
                self.up = None;
                None
            }
            None if !too_big => None,
            _ => {
                self.up = None;
                self.cap = Some(allowed);
                Some(self.cap)
            }
        }
    }
}
