//! Bandwidth probes (`--bwe on`; docs/simulcast.md, "Probing"): the probe clusters goog_cc's
//! probe controller asks for (a rate, a duration, a least count of packets and of bytes, an
//! id), sent to the viewer as padding through its egress ([`fluo_egress::Viewer::pad`]:
//! padding-only RTX packets, each with a transport-wide sequence number and marked in the
//! sent-packet log with the cluster's id), paced at the cluster's rate in steps of the
//! media core's timers, so that goog_cc's probe estimator measures the link from the
//! feedback on them (each packet handed with its [`PacedPacketInfo`]).
//!
//! One cluster at a time, in the order asked; a cluster is done once it has sent its bytes
//! and packets, and given up when its time is long past (the timers came late) or the viewer
//! cannot take padding (no RTX, no transport-wide sequence numbers: nothing is probed then).
//! What a cluster may cost is bounded by the controller's configuration
//! ([`super::probe_config`]): rates at most [`MAX_PROBE_BPS`] (goog_cc's own bound without a
//! maximum), durations of [`MIN_PROBE_DURATION_MS`] or more.

use fluo_egress::{Batch, Viewer};
use goog_cc::network_control::NetworkControllerConfig;
use goog_cc::transport::{PacedPacketInfo, ProbeClusterConfig};
use goog_cc::units::{DataRate, TimeDelta};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The most a probe's rate may be (goog_cc's `DEFAULT_MAX_PROBING_BITRATE` when the viewer
/// has no maximum).
pub(crate) const MAX_PROBE_BPS: i64 = 5_000_000;

/// The least step between two sends of a cluster.
pub(crate) const STEP: Duration = Duration::from_millis(2);

/// A cluster still unsent this long after it should have ended is given up.
const GIVE_UP_AFTER: Duration = Duration::from_millis(500);

/// Clusters waiting, at most (the controller asks for one or two at a time).
const QUEUED_MOST: usize = 4;

/// Clusters whose pacing information is kept for the packets' feedback.
const KEPT: usize = 8;

/// How long a probe cluster lasts at least (goog_cc's default is 15 ms). A queue's burst
/// allowance (a token bucket: tc's tbf, a policer, a cellular or cable scheduler) lets the
/// first few kilobytes of a burst through at the rate they were sent: a cluster that fits in
/// it measures its own rate, not the link's. At 30 ms, twice an estimate of 240 kbit/s was
/// 1.8 kB, inside e2e 89's 5 kB bucket: every ALR probe read twice the estimate, probed on to
/// four and eight times, and lifted the viewer's cap over its 300 kbit/s link every few
/// seconds. At 200 ms (12 kB at 480 kbit/s) the bucket is a fraction of the cluster, and the
/// probe reads near the link's rate. The cost: a cluster's excess over a truly limited link
/// queues for longer (docs/simulcast.md, "Probing", has the figures).
const MIN_PROBE_DURATION_MS: i64 = 200;

/// Sets goog_cc's probe controller (see the module and docs/simulcast.md, "Probing"):
/// - **initial probe**: one cluster at twice the start rate once the controller starts
///   (libwebrtc's defaults are three and six times its lower start), probing further (twice
///   what it measured) while each result reaches 70 % of what was sent;
/// - **ALR probes**: while the viewer is application-limited (it is sent less than about
///   65 % of its estimate, as a viewer capped to a low layer is), one cluster at twice the
///   estimate every [`ALR_PROBE_EVERY`], probing further the same way;
/// - no periodic probes beyond those (goog_cc's network-state probes need an estimator of the
///   link's capacity 0.1.4 does not have);
/// - **bounded by what the viewer can use** once it is told (`max_total_allocated_bitrate`,
///   [`super::ViewerBwe::set_ceiling`]: the top layer's rate with the cap's headroom):
///   no probe while the estimate is above it, none above twice it, and no probing further
///   once a result is above twice it (without it, the viewer's maximum or
///   [`MAX_PROBE_BPS`]).
pub(crate) fn configure(config: &mut NetworkControllerConfig) {
    let p = &mut config.field_trials.probing_configuration;
    p.p1 = 2.0;
    p.p2 = 0.0;
    p.abort_further = true;
    p.skip_if_est_larger_than_fraction_of_max = 1.0;
    p.skip_max_allocated_scale = 1.0;
    p.alr_interval = TimeDelta::from_millis(ALR_PROBE_EVERY.as_millis() as i64);
    p.min_probe_duration = TimeDelta::from_millis(MIN_PROBE_DURATION_MS);
    config.stream_based_config.requests_alr_probing = Some(true);
}

/// How often a viewer in an application-limited region is probed (libwebrtc's 5 s).
pub(crate) const ALR_PROBE_EVERY: Duration = Duration::from_secs(5);

/// One cluster as it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cluster {
    pub(crate) id: i32,
    pub(crate) bps: i64,
    pub(crate) min_bytes: i64,
    pub(crate) min_packets: i64,
    pub(crate) duration: Duration,
}

impl Cluster {
    /// The cluster for goog_cc's `config` (its bytes: the rate over the duration).
    pub(crate) fn of(config: &ProbeClusterConfig) -> Option<Cluster> {
        let bps = config.target_data_rate.bps().clamp(0, MAX_PROBE_BPS);
        let duration = Duration::from_micros(config.target_duration.us().max(0) as u64);
        let min_bytes = (bps as i128 * duration.as_micros() as i128 / 8_000_000) as i64;
        let min_packets = i64::from(config.target_probe_count.max(2));
        (bps > 0 && config.id >= 0).then_some(Cluster {
            id: config.id,
            bps,
            min_bytes: min_bytes.max(1),
            min_packets,
            duration,
        })
    }

    fn info(&self) -> PacedPacketInfo {
        PacedPacketInfo {
            send_bitrate: DataRate::from_bits_per_sec(self.bps),
            ..PacedPacketInfo::new(self.id, self.min_packets, self.min_bytes)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Active {
    cluster: Cluster,
    start: Instant,
    bytes: i64,
    packets: i64,
}

impl Active {
    fn done(&self) -> bool {
        self.bytes >= self.cluster.min_bytes && self.packets >= self.cluster.min_packets
    }

    /// When the bytes sent so far are due at the cluster's rate.
    fn next_at(&self) -> Instant {
        let us = self.bytes as i128 * 8_000_000 / i128::from(self.cluster.bps.max(1));
        self.start + Duration::from_micros(us.clamp(0, u64::MAX as i128) as u64)
    }
}

/// What a prober did in one step (for tests and the log).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) packets: u32,
    pub(crate) bytes: u64,
}

/// One viewer's probes (see the module).
#[derive(Debug, Default)]
pub(crate) struct Prober {
    queue: VecDeque<Cluster>,
    active: Option<Active>,
    /// The last clusters started, for their packets' [`PacedPacketInfo`].
    kept: [Option<Cluster>; KEPT],
    kept_at: usize,
    /// Clusters sent whole, and given up.
    pub(crate) done: u64,
    pub(crate) given_up: u64,
}

impl Prober {
    /// Queues the clusters goog_cc asked for (the oldest waiting dropped beyond
    /// [`QUEUED_MOST`]).
    pub(crate) fn ask(&mut self, configs: &[ProbeClusterConfig]) {
        for c in configs.iter().filter_map(Cluster::of) {
            if self.queue.len() == QUEUED_MOST {
                self.queue.pop_front();
                self.given_up += 1;
            }
            self.queue.push_back(c);
        }
    }

    /// Gives up every cluster waiting or being sent (the viewer cannot take padding, or its
    /// peer is lost).
    pub(crate) fn clear(&mut self) {
        self.given_up += self.queue.len() as u64 + u64::from(self.active.is_some());
        self.queue.clear();
        self.active = None;
    }

    /// The pacing information of a packet of cluster `id` (goog_cc's probe estimator reads
    /// it); "not a probe" for `None` or a cluster no longer kept.
    pub(crate) fn info(&self, id: Option<i32>) -> PacedPacketInfo {
        let kept = id.and_then(|id| self.kept.iter().flatten().find(|c| c.id == id));
        kept.map_or_else(PacedPacketInfo::default, Cluster::info)
    }

    /// When the next step is due, if a cluster is waiting or being sent.
    pub(crate) fn next(&self, now: Instant) -> Option<Instant> {
        match self.active {
            Some(a) => Some(a.next_at().max(now + STEP)),
            None => (!self.queue.is_empty()).then_some(now),
        }
    }

    /// Sends what is due at `now` into `batch` through `viewer`: the active cluster's bytes
    /// up to its rate over the time since it started (at least one packet at its start),
    /// the next cluster once one is done. Gives everything up when the viewer cannot take
    /// padding.
    pub(crate) fn step(&mut self, now: Instant, viewer: &mut Viewer, batch: &mut Batch) -> Sent {
        let mut sent = Sent::default();
        if (self.active.is_some() || !self.queue.is_empty()) && !viewer.can_pad() {
            self.clear();
            return sent;
        }
        loop {
            let mut a = match self.active.take() {
                Some(a) => a,
                None => {
                    let Some(cluster) = self.queue.pop_front() else {
                        return sent;
                    };
                    self.kept[self.kept_at % KEPT] = Some(cluster);
                    self.kept_at = self.kept_at.wrapping_add(1);
                    Active {
                        cluster,
                        start: now,
                        bytes: 0,
                        packets: 0,
                    }
                }
            };
            let late = a.start + a.cluster.duration + GIVE_UP_AFTER;
            if now > late {
                self.given_up += 1;
                continue;
            }
            while !a.done() && a.next_at() <= now {
                // What is left, at least an even share of the cluster's bytes per packet.
                let left = (a.cluster.min_bytes - a.bytes).max(0) as usize;
                let share = (a.cluster.min_bytes / a.cluster.min_packets.max(1)) as usize;
                let padding = left
                    .max(share)
                    .clamp(fluo_egress::MIN_PADDING, fluo_egress::MAX_PADDING);
                let Some(bytes) = viewer.pad(now, padding, Some(a.cluster.id), batch) else {
                    break;
                };
                a.bytes += bytes as i64;
                a.packets += 1;
                sent.packets += 1;
                sent.bytes += bytes as u64;
            }
            if !a.done() {
                self.active = Some(a);
                return sent;
            }
            self.done += 1;
        }
    }
}

#[cfg(test)]
mod tests;
