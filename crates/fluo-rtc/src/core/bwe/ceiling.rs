//! The most a viewer can use, told its controller so that its probes stop there (R43-probe 2;
//! docs/simulcast.md, "Probing"): a simulcast or SVC viewer's top measured layer, a plain
//! source's viewer what it is sent, each with the layer cap's headroom.

use super::{ts, ViewerBwe, MAX_BPS};
use goog_cc::network_control::NetworkControllerInterface;
use goog_cc::transport::StreamsConfig;
use goog_cc::units::DataRate;
use std::time::{Duration, Instant};

/// How often the most a viewer can use is looked at ([`ViewerBwe::set_ceiling`]).
pub(super) const CEILING_EVERY: Duration = Duration::from_secs(1);

/// How far (in percent of the last told) the most a viewer can use must move before the
/// controller is told again (each telling may start a probe).
const CEILING_CHANGE_PERCENT: u64 = 20;

impl ViewerBwe {
    /// Whether the most the viewer can use should be looked at again (once a
    /// [`CEILING_EVERY`]; never once the controller is gone).
    pub(crate) fn ceiling_due(&self, now: Instant) -> bool {
        self.cc.is_some()
            && (self.ceiling_at).is_none_or(|t| now.saturating_duration_since(t) >= CEILING_EVERY)
    }

    /// The media (not probe padding) the viewer was sent since the ceiling was last looked at,
    /// in bit/s: a plain source's rate as this viewer gets it, audio included. `None` at the
    /// first look (and the first after a pause): no whole period yet. Starts the next period.
    pub(crate) fn sent_bps(&mut self, now: Instant) -> Option<u64> {
        let bytes = std::mem::take(&mut self.media_sent);
        let period = now.saturating_duration_since(self.ceiling_at?);
        let us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        (us >= 500_000).then(|| bytes.saturating_mul(8_000_000) / us)
    }

    /// Forgets what was sent and when the ceiling was looked at (a pause: the period
    /// started before it would read low).
    pub(super) fn restart_ceiling_period(&mut self) {
        self.media_sent = 0;
        self.ceiling_at = None;
    }

    /// The most the viewer can use, `bps` (its top layer's measured rate, or for a plain
    /// source what it is sent, with the cap's headroom; `None`: not known, the last told
    /// stays), told the controller as its `max_total_allocated_bitrate` when it moved by more
    /// than [`CEILING_CHANGE_PERCENT`]: goog_cc then probes at most twice that, probes no
    /// further once its estimate is above twice that, and not at all while its estimate is
    /// above it (`probe::configure`), so a viewer that gets all it could use is not probed on
    /// (its `maxVideoSendBandwidth` bounds the probes too, as the controller's maximum).
    pub(crate) fn set_ceiling(&mut self, now: Instant, bps: Option<u64>) {
        self.ceiling_at = Some(now);
        let Some(bps) = bps.filter(|b| *b > 0).map(|b| b.min(MAX_BPS)) else {
            return;
        };
        let near = (self.ceiling)
            .is_some_and(|c| c.abs_diff(bps).saturating_mul(100) <= c * CEILING_CHANGE_PERCENT);
        let Some(cc) = self.cc.as_mut().filter(|_| !near) else {
            return;
        };
        let config = StreamsConfig {
            at_time: ts(self.at_us),
            max_total_allocated_bitrate: Some(DataRate::from_bits_per_sec(bps as i64)),
            ..StreamsConfig::default()
        };
        match fluo_core::panics::contain(|| cc.on_streams_config(config)) {
            Ok(update) => {
                self.ceiling = Some(bps);
                self.prober.ask(&update.probe_cluster_configs);
            }
            Err(panic) => self.fail(panic.as_ref()),
        }
    }
}
