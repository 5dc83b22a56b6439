//! Each viewer's send-side bandwidth estimate (`--bwe on`, experimental; docs/simulcast.md,
//! "Bandwidth estimate"), and the simulcast layer it allows.
//!
//! The egress records what it sends by transport-wide sequence number and reads the viewer's
//! TWCC feedback against it (`fluo_egress::SentLog`); here that record and the feedback feed a
//! `goog_cc` controller (libwebrtc's GoogCcNetworkController, ported; pinned `=0.1.4`) in its
//! feedback-only mode (round trip and loss measured from the feedback; it ignores receiver
//! reports' round trips then, so none are handed to it), with a process tick every
//! [`PROCESS_EVERY`]. Its target rate becomes the viewer's estimate (getStats'
//! `fluoBandwidthEstimate`, and the viewer's part of its publisher's REMB) and, through
//! [`LayerCap`], the highest simulcast layer the router may send it
//! (`MediaRouter::set_layer_bandwidth_cap`).
//!
//! The controllers live in the media core, on the media thread that owns the viewers: the
//! crate's controller is not `Send` (a boxed trait object without `Send`), the endpoint's
//! shared state must be, so they are kept beside it, by endpoint key, and never cross threads.
//!
//! The port asserts and unwraps in places (feedback with nothing received among its packets,
//! a zero round trip): Fluo does not hand it those, and every call into it runs inside
//! `fluo_core::panics::contain`, so that a panic left in it (the server's hook aborts the
//! process on any other) ends that viewer's estimate only: its controller is dropped, it has no
//! estimate, and its layer is no longer capped at all (the application's limits alone choose).

use super::{lock, MediaCore};
use fluo_egress::{Sent, SentLog};
use fluo_sfu::MediaKind;
use goog_cc::network_control::{NetworkControllerConfig, NetworkControllerInterface};
use goog_cc::transport::{
    NetworkAvailability, NetworkControlUpdate, PacketResult, ProbeClusterConfig, ProcessInterval,
    SentPacket, TargetRateConstraints, TransportPacketsFeedback,
};
use goog_cc::units::{DataRate, DataSize, Timestamp};
use goog_cc::{GoogCcConfig, GoogCcNetworkController};
use std::time::{Duration, Instant};

mod mode;
mod probe;
mod tick;
use probe::Prober;
pub(super) use tick::Tick;

/// Where a viewer's estimate starts: about what a weak link takes (a higher start would send
/// a weak viewer the top layer and fill its queue before the first feedback says so).
pub(crate) const START_BPS: i64 = 1_000_000;

/// The least estimate.
pub(crate) const MIN_BPS: i64 = 30_000;

/// The most: a `maxVideoSendBandwidth` above is taken as this (the port asserts on rates
/// near `i64::MAX`).
pub(crate) const MAX_BPS: u64 = 100_000_000_000;

/// How often the controller's process step runs (libwebrtc's is 25 ms).
pub(crate) const PROCESS_EVERY: Duration = Duration::from_millis(25);

/// How long the controller must have had feedback before its estimate counts: no estimate,
/// and no cap, before.
pub(crate) const WARM_UP: Duration = Duration::from_secs(1);

/// How long a target is remembered as the recent highest (see [`ViewerBwe::congested`]).
const PEAK_FOR: Duration = Duration::from_secs(3);

/// The share of its recent highest target the target must fall below for the estimator to
/// have shown congestion (goog_cc lowers its target only on overuse or loss).
const CONGESTED_PERCENT: u64 = 85;

/// The window over which the feedback's loss and the rate delivered are counted.
const DELIVERY_WINDOW: Duration = Duration::from_secs(1);

/// Loss above this share of what the feedback reported over [`DELIVERY_WINDOW`] (and at
/// least [`LOSS_LEAST`] packets) is congestion: a link that drops what it cannot carry.
const LOSS_PERMILLE: u64 = 20;

/// The least packets lost over [`DELIVERY_WINDOW`] that count (one lost of a low layer's 30
/// a second is 3 %).
const LOSS_LEAST: u64 = 3;

/// Loss counts only with a queue behind it: the longest one-way delay over
/// [`DELIVERY_WINDOW`] at least this much above the least of the last [`BASE_DELAY_FOR`] (a
/// full queue drops what it cannot take and delays what it took; a randomly lossy link with
/// room, radio say, delays nothing, and goog_cc's loss-based side already answers loss over
/// 10 %).
const LOSS_QUEUE: Duration = Duration::from_millis(20);

/// How long the least one-way delay (the path without a queue) is remembered: between one
/// and two of these (clocks drift, routes change).
const BASE_DELAY_FOR: Duration = Duration::from_secs(15);

/// A fall of the target in one step to below this share of its previous value and of the
/// rate delivered over [`DELIVERY_WINDOW`] is congestion too: goog_cc's delay-based decrease
/// (to 85 % of what is acknowledged), small when the target was near that already.
const FALL_PERCENT: u64 = 95;
const BELOW_DELIVERED_PERCENT: u64 = 90;

/// How long congestion lasts after its last sign (a fall, loss) at first: then the cap is
/// lifted (a crude probe: the viewer may switch up at the next keyframe, and if its link is
/// really limited it shows congestion again and goes back down).
pub(crate) const HOLD: Duration = Duration::from_secs(10);

/// Congestion seen again within this time after it expired: the probe failed, and the next
/// hold is three times as long (up to [`HOLD_MOST`]); a probe that lasts it resets the hold.
const PROBE_FAILS_WITHIN: Duration = Duration::from_secs(5);
const HOLD_MOST: Duration = Duration::from_secs(90);

/// How long after feedback on probe packets the estimate counts as a probe's result (for
/// [`ViewerBwe::lift_by_probe`]).
const PROBE_RESULT_FOR: Duration = Duration::from_secs(1);

/// The share of the estimate a layer's measured bitrate must fit in.
const HEADROOM_PERCENT: u64 = 85;

/// How long the estimate must have allowed a higher layer before the cap moves up to it
/// (down is at once).
pub(crate) const UP_AFTER: Duration = Duration::from_secs(2);

/// One viewer's estimator.
pub(crate) struct ViewerBwe {
    /// `None` once a panic in it was contained: no estimate any more.
    cc: Option<GoogCcNetworkController>,
    next_process: Instant,
    first_feedback: Option<Instant>,
    target: Option<u64>,
    /// The highest target lately, and when it was reached.
    peak: Option<(u64, Instant)>,
    /// What the feedback reported over the last [`DELIVERY_WINDOW`] (see [`Delivery`]).
    delivery: Delivery,
    /// The last sign of congestion (see [`ViewerBwe::congested`]).
    last_sign: Option<Instant>,
    /// How long congestion lasts after its last sign ([`HOLD`], longer after failed probes).
    hold: Duration,
    /// When congestion last expired (a probe), until it held for [`PROBE_FAILS_WITHIN`].
    expired_at: Option<Instant>,
    congested: bool,
    /// Whether it ever was: its estimate counts in a plain publisher's REMB from then on
    /// (an expiry lifts the layer cap only; without the REMB the publisher would keep the
    /// last low one).
    was_congested: bool,
    pub(crate) cap: LayerCap,
    /// The probe clusters goog_cc asked for, sent as padding (`probe.rs`).
    pub(crate) prober: Prober,
    /// When the prober's next step is due.
    next_probe: Option<Instant>,
    /// When feedback last reported probe packets received (goog_cc's probe estimate may
    /// show in its target then or at a later step).
    probe_fed: Option<Instant>,
    /// The last end of congestion was a probe's ([`ViewerBwe::lift_by_probe`]).
    lifted_by_probe: bool,
    /// No congestion ended by a probe before this (one so ended failed), unless the estimate
    /// reaches twice what it was at that failed end.
    probe_lift_barred_until: Option<(Instant, u64)>,
    /// The estimate when congestion was last ended by a probe.
    lifted_at_bps: u64,
}

/// What one feedback message handed to the controller reported: bytes and packets
/// received, packets lost, and the least and the longest one-way delay of those received
/// (arrival on the viewer's clock less sending on ours: an offset, the same for each).
#[derive(Debug, Clone, Copy)]
struct Fed {
    bytes: u64,
    received: u64,
    lost: u64,
    delay_us: (i64, i64),
    /// Whether probe packets were among those received.
    probes: bool,
}

/// The feedback of the last [`DELIVERY_WINDOW`], by when it was handed, and the least
/// one-way delay lately (the current and the previous [`BASE_DELAY_FOR`]).
#[derive(Default)]
struct Delivery {
    recent: std::collections::VecDeque<(Instant, Fed)>,
    base: Option<(Instant, i64)>,
    base_before: Option<i64>,
}

impl Delivery {
    fn add(&mut self, now: Instant, fed: Fed) {
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
    fn queued(&self, now: Instant) -> Duration {
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
    fn lossy(&self, now: Instant) -> bool {
        let (_, received, lost) = self.totals(now);
        lost >= LOSS_LEAST
            && lost * 1000 > LOSS_PERMILLE * (lost + received)
            && self.queued(now) >= LOSS_QUEUE
    }

    /// The rate delivered over the window, in bit/s.
    fn delivered_bps(&self, now: Instant) -> u64 {
        let (bytes, _, _) = self.totals(now);
        bytes.saturating_mul(8_000_000) / DELIVERY_WINDOW.as_micros() as u64
    }
}

/// What a viewer's estimator made of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Estimate {
    /// Not warm yet: no estimate, no cap.
    Cold,
    /// The target rate, in bit/s.
    Bps(u64),
    /// A panic in the controller was contained, now or before: it is gone.
    Failed,
}

fn ts(us: i64) -> Timestamp {
    Timestamp::from_micros(us)
}

fn sent_packet(s: Sent, prober: &Prober) -> SentPacket {
    SentPacket {
        send_time: ts(s.at_us),
        size: DataSize::from_bytes(i64::from(s.size)),
        sequence_number: s.seq,
        pacing_info: prober.info(s.probe),
        ..SentPacket::default()
    }
}

impl ViewerBwe {
    /// A controller starting at [`START_BPS`], at least [`MIN_BPS`], at most `max_bps` when the
    /// viewer has one (its `maxVideoSendBandwidth`).
    pub(crate) fn new(now: Instant, now_us: i64, max_bps: Option<u64>) -> ViewerBwe {
        let max = max_bps.map(|m| {
            let m = m.clamp(MIN_BPS as u64, MAX_BPS);
            DataRate::from_bits_per_sec(i64::try_from(m).unwrap_or(MIN_BPS))
        });
        let constraints = TargetRateConstraints {
            at_time: ts(now_us),
            min_data_rate: Some(DataRate::from_bits_per_sec(MIN_BPS)),
            max_data_rate: max,
            starting_rate: Some(DataRate::from_bits_per_sec(
                max.map_or(START_BPS, |m| m.bps().min(START_BPS)),
            )),
        };
        let mut config = NetworkControllerConfig {
            constraints,
            ..NetworkControllerConfig::default()
        };
        probe::configure(&mut config);
        let made = fluo_core::panics::contain(|| {
            // Feedback only: the round trip and the loss come from the TWCC feedback itself
            // (with `feedback_only` off, 0.1.4 counts no loss from feedback at all and waits
            // for RTCP loss reports). In this mode it ignores round trips handed to it, so
            // Fluo hands it none (the receiver reports' round trip would have no effect).
            let mut cc = GoogCcNetworkController::new(
                config,
                GoogCcConfig {
                    feedback_only: true,
                },
            );
            // The viewer is there (its media flows): the probe controller's first process
            // step starts its initial probe, and it probes from then on (`probe.rs`).
            cc.on_network_availability(NetworkAvailability {
                at_time: ts(now_us),
                network_available: true,
            });
            cc
        });
        ViewerBwe {
            cc: made.ok(),
            next_process: now,
            first_feedback: None,
            target: None,
            peak: None,
            delivery: Delivery::default(),
            last_sign: None,
            hold: HOLD,
            expired_at: None,
            congested: false,
            was_congested: false,
            cap: LayerCap::default(),
            prober: Prober::default(),
            next_probe: None,
            probe_fed: None,
            lifted_by_probe: false,
            probe_lift_barred_until: None,
            lifted_at_bps: 0,
        }
    }

    /// Feeds the controller what `log` recorded and received since the last call, and its
    /// process step when due; the estimate at `now`.
    pub(crate) fn run(&mut self, now: Instant, log: &mut SentLog) -> Estimate {
        // Borrowed, not moved into the closure and back: the controller is a few KiB, and
        // two copies per call were a twentieth of the estimate's cost (callgrind).
        let Some(cc) = self.cc.as_mut() else {
            // What the feedback matched is for no one now.
            log.clear_acked();
            return Estimate::Failed;
        };
        let now_us = log.micros(now);
        let mut target = None;
        let mut clusters: Vec<ProbeClusterConfig> = vec![];
        let mut take = |u: NetworkControlUpdate| {
            if let Some(t) = u.target_rate {
                target = Some(t.target_rate.bps().max(0) as u64);
            }
            clusters.extend(u.probe_cluster_configs);
        };
        let mut fed = None;
        let process = now >= self.next_process;
        let prober = &self.prober;
        let ran = fluo_core::panics::contain(|| {
            log.take_sent(now, |s| take(cc.on_sent_packet(sent_packet(s, prober))));
            fed = feed_acked(cc, log, prober, now, now_us, &mut take);
            if process {
                take(cc.on_process_interval(ProcessInterval {
                    at_time: ts(now_us),
                    pacer_queue: None,
                }));
            }
        });
        match ran {
            Ok(()) => {}
            Err(panic) => {
                // Whatever state the panic left the controller in, it is dropped.
                self.cc = None;
                let why = panic_text(panic.as_ref());
                tracing::warn!("the bandwidth estimator panicked ({why}): this viewer has no estimate and its layer no cap from now on");
                self.target = None;
                log.clear_acked();
                return Estimate::Failed;
            }
        }
        if process {
            self.next_process = now + PROCESS_EVERY;
        }
        self.prober.ask(&clusters);
        if let Some(fed) = fed {
            if fed.probes {
                self.probe_fed = Some(now);
            }
            self.first_feedback.get_or_insert(now);
            self.delivery.add(now, fed);
            if self.delivery.lossy(now) {
                self.sign(now);
            }
        }
        if let Some(t) = target {
            let before = self.target.replace(t);
            self.note_target(now, t, before);
        }
        self.expire(now);
        let warm = self
            .first_feedback
            .is_some_and(|t| now.saturating_duration_since(t) >= WARM_UP);
        match self.target {
            Some(t) if warm => Estimate::Bps(t),
            _ => Estimate::Cold,
        }
    }

    /// Keeps the recent highest target; a sign of congestion when `t` fell below
    /// [`CONGESTED_PERCENT`] of it, or from `before` in one step below [`FALL_PERCENT`] of it
    /// and [`BELOW_DELIVERED_PERCENT`] of the rate delivered.
    fn note_target(&mut self, now: Instant, t: u64, before: Option<u64>) {
        let peak = match self.peak {
            Some((p, at)) if p >= t && now.saturating_duration_since(at) < PEAK_FOR => p,
            _ => {
                self.peak = Some((t, now));
                t
            }
        };
        let below = |share: u64, of: u64| t.saturating_mul(100) < of.saturating_mul(share);
        let fell = before.is_some_and(|b| below(FALL_PERCENT, b))
            && below(BELOW_DELIVERED_PERCENT, self.delivery.delivered_bps(now));
        if below(CONGESTED_PERCENT, peak) || fell {
            self.sign(now);
        }
    }

    /// A sign of congestion at `now`; seen soon after congestion expired, the probe failed.
    fn sign(&mut self, now: Instant) {
        if !self.congested
            && (self.expired_at)
                .is_some_and(|t| now.saturating_duration_since(t) < PROBE_FAILS_WITHIN)
        {
            self.hold = (self.hold * 3).min(HOLD_MOST);
            if self.lifted_by_probe {
                // A probe's room that was not there: no more of those for the next hold.
                self.probe_lift_barred_until = Some((now + self.hold, self.lifted_at_bps));
            }
        }
        self.congested = true;
        self.was_congested = true;
        self.last_sign = Some(now);
    }

    /// Congestion expires [`ViewerBwe::hold`] after its last sign; a probe that held resets it.
    fn expire(&mut self, now: Instant) {
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        if self.congested && since(self.last_sign).is_some_and(|d| d >= self.hold) {
            self.congested = false;
            self.expired_at = Some(now);
        }
        if !self.congested && since(self.expired_at).is_some_and(|d| d >= PROBE_FAILS_WITHIN) {
            self.expired_at = None;
            self.hold = HOLD;
            self.lifted_by_probe = false;
        }
    }

    /// Whether feedback reported probe packets received within [`PROBE_RESULT_FOR`]: the
    /// estimate then includes what a probe measured.
    pub(crate) fn probed_lately(&self, now: Instant) -> bool {
        (self.probe_fed).is_some_and(|t| now.saturating_duration_since(t) < PROBE_RESULT_FOR)
    }

    /// A probe showed room for a layer above the cap with estimate `bps`: congestion ends
    /// now, as at its expiry (congestion seen again within [`PROBE_FAILS_WITHIN`] makes the
    /// next hold longer, and bars such ends for that hold unless the estimate reaches twice
    /// what it was at the failed end: a queue's burst allowance fools a probe by a little, a
    /// link that recovered lets goog_cc probe on to several times its last estimate). False,
    /// nothing changed, while barred or not congested.
    pub(crate) fn lift_by_probe(&mut self, now: Instant, bps: u64) -> bool {
        let barred = (self.probe_lift_barred_until)
            .is_some_and(|(t, at)| now < t && bps < at.saturating_mul(2));
        if !self.congested || barred {
            return false;
        }
        self.lifted_at_bps = bps;
        self.congested = false;
        self.expired_at = Some(now);
        self.lifted_by_probe = true;
        true
    }

    /// Whether the estimator shows congestion: a sign (its target fell below
    /// [`CONGESTED_PERCENT`] of its recent highest or, in one step, below what was delivered;
    /// the feedback reported loss over [`LOSS_PERMILLE`]) within the hold ([`HOLD`], longer
    /// after probes that failed). Otherwise its estimate does not cap the viewer's layer: it
    /// starts at [`START_BPS`] and grows a few percent a second, at most 1.5 times what is
    /// acknowledged, so on a good link it would hold a viewer below a top layer above it
    /// (only probing would lift it; docs/simulcast.md).
    pub(crate) fn congested(&self) -> bool {
        self.congested
    }

    /// Whether it has shown congestion at all: only then does its estimate count in its
    /// publisher's REMB (before, it only climbs from its start), and from then on, expired
    /// or not (the REMB must follow it back up).
    pub(crate) fn has_been_congested(&self) -> bool {
        self.was_congested
    }

    /// When the process step (or the prober's next step) is due next.
    pub(crate) fn next_process(&self) -> Option<Instant> {
        let next = self
            .next_probe
            .map_or(self.next_process, |p| p.min(self.next_process));
        self.cc.as_ref().map(|_| next)
    }

    /// When the prober's next step is due, while a probe cluster is being sent: the viewer's
    /// own timer carries it (the process step is the estimators' tick, [`Tick`]).
    pub(crate) fn next_probe(&self) -> Option<Instant> {
        self.cc.as_ref().and(self.next_probe)
    }

    /// Sends the probe padding due at `now` through `viewer` into `batch` (see `probe.rs`),
    /// and notes when the next is due. Nothing once the controller is gone.
    pub(crate) fn send_probes(
        &mut self,
        now: Instant,
        viewer: &mut fluo_egress::Viewer,
        batch: &mut fluo_egress::Batch,
    ) -> probe::Sent {
        if self.cc.is_none() {
            self.next_probe = None;
            return probe::Sent::default();
        }
        let sent = self.prober.step(now, viewer, batch);
        self.next_probe = self.prober.next(now);
        sent
    }

    /// For tests: feedback handed as it is (with nothing received in it, the port unwraps
    /// the latest arrival of none).
    #[cfg(test)]
    fn feed_unchecked(&mut self, now_us: i64, report: TransportPacketsFeedback) -> bool {
        let Some(mut cc) = self.cc.take() else {
            return false;
        };
        let ran = fluo_core::panics::contain(|| {
            cc.on_transport_packets_feedback(TransportPacketsFeedback {
                feedback_time: ts(now_us),
                ..report
            });
            cc
        });
        self.cc = ran.ok();
        self.cc.is_some()
    }
}

/// Hands the controller the feedback `log` matched since it was last taken: only with a
/// received packet among it (the port unwraps the latest arrival), else kept for the next
/// message (at most one ring's worth). When handed, what it reported.
fn feed_acked(
    cc: &mut GoogCcNetworkController,
    log: &mut SentLog,
    prober: &Prober,
    now: Instant,
    now_us: i64,
    take: &mut impl FnMut(NetworkControlUpdate),
) -> Option<Fed> {
    // A received time of i64::MAX is +infinity to the port: not received.
    let received = |us: Option<i64>| us.filter(|t| *t < i64::MAX);
    let acked = log.acked();
    if !acked.iter().any(|a| received(a.received_us).is_some()) {
        if acked.len() > fluo_egress::sent::SLOTS {
            log.clear_acked();
        }
        return None;
    }
    let mut fed = Fed {
        bytes: 0,
        received: 0,
        lost: 0,
        delay_us: (i64::MAX, i64::MIN),
        probes: false,
    };
    for a in acked {
        // Probe padding counts for the queue's delay only: a probe is sent above the
        // estimate to find the link's limit, so its loss is no sign of congestion and its
        // bytes are no media delivered (the controller sees every packet all the same).
        let probe = a.sent.probe.is_some();
        if let Some(at) = received(a.received_us) {
            if !probe {
                fed.bytes += u64::from(a.sent.size);
                fed.received += 1;
            }
            let d = at.saturating_sub(a.sent.at_us);
            fed.delay_us = (fed.delay_us.0.min(d), fed.delay_us.1.max(d));
            fed.probes |= probe;
        } else if !probe {
            fed.lost += 1;
        }
    }
    let packet_feedbacks = acked
        .iter()
        .map(|a| PacketResult {
            sent_packet: sent_packet(a.sent, prober),
            receive_time: received(a.received_us).map_or(Timestamp::plus_infinity(), ts),
            ..PacketResult::default()
        })
        .collect();
    let report = TransportPacketsFeedback {
        feedback_time: ts(now_us),
        data_in_flight: DataSize::from_bytes(log.in_flight(now) as i64),
        packet_feedbacks,
        sendless_arrival_times: vec![],
    };
    log.clear_acked();
    take(cc.on_transport_packets_feedback(report));
    Some(fed)
}

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

    /// Whether estimate `bps` leaves room (85 %) for a measured layer above the cap (none
    /// without a cap).
    pub(crate) fn room_above(&self, bps: u64, rates: &[Option<u64>]) -> bool {
        let budget = bps.saturating_mul(HEADROOM_PERCENT) / 100;
        let Some(cap) = self.cap else {
            return false;
        };
        (rates.iter().enumerate())
            .any(|(rank, r)| rank > usize::from(cap) && r.is_some_and(|bits| bits <= budget))
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

impl MediaCore {
    /// Runs endpoint `key`'s estimator (see the module) if its bandwidth is estimated: its
    /// sent packets and feedback fed, its estimate and layer cap updated. Its next process
    /// step, if it has an estimator.
    pub(super) fn bwe_update(&mut self, key: u64) -> Option<Instant> {
        let now = self.now;
        let ep_ref = self.eps.get(&key)?.ep.clone();
        let mut ep = lock(&ep_ref);
        if !self.bwe_follows_source(key, &mut ep) {
            return None;
        }
        let max = ep.settings.bandwidth.max_video_send.saturating_mul(1000);
        let v = ep.egress.as_mut()?;
        let log = v.sent_log()?;
        let est = self.bwe.entry(key).or_insert_with(|| {
            let max = (max > 0).then_some(max);
            ViewerBwe::new(now, log.micros(now), max)
        });
        self.bwe_tick.at.get_or_insert(now + PROCESS_EVERY);
        let estimate = est.run(now, log);
        if estimate != Estimate::Failed {
            let mut eg = self.outbox.egress();
            est.send_probes(now, v, &mut eg.batch);
        }
        let next = est.next_process();
        let probe_rise = est.probed_lately(now);
        let mut congested = est.congested();
        let counts = est.has_been_congested();
        let raw = match estimate {
            Estimate::Bps(bps) => Some(bps),
            Estimate::Cold | Estimate::Failed => None,
        };
        let bps = raw;
        if estimate == Estimate::Failed {
            // Nothing reads what it records any more.
            v.stop_logging_sent();
        }
        ep.bwe_estimate = bps;
        ep.bwe_congested = counts;
        if bps.is_some() {
            // The REMB warm-up counts from the first estimate (timers.rs).
            ep.warm_up_since(now);
        }
        drop(ep);
        let node = self.nodes.get(&key).copied()?;
        let est = self.bwe.get_mut(&key)?;
        if let (true, true, Some(bps)) = (congested, probe_rise, raw) {
            // A probe raised the estimate: room for a layer above the cap ends congestion
            // now, without waiting for its expiry (docs/simulcast.md, "Probing").
            let rates = self.router.layer_rates(node, MediaKind::Video);
            let room = rates.is_some_and(|(r, _)| est.cap.room_above(bps, &r));
            if room && est.lift_by_probe(now, bps) {
                tracing::debug!(key, bps, "a probe showed room above the layer cap: lifted");
                congested = false;
            }
        }
        let changed = match bps {
            // The estimate caps only while it shows congestion (see `congested`).
            Some(bps) if congested => {
                let rates = self.router.layer_rates(node, MediaKind::Video);
                rates.and_then(|(r, complete)| est.cap.update(now, bps, &r, complete))
            }
            // None shown (yet, or it expired), no estimate for good: no cap (neither the top
            // layer forced nor the lowest).
            _ => (std::mem::take(&mut est.cap).cap.is_some()).then_some(None),
        };
        if let Some(cap) = changed {
            self.router
                .set_layer_bandwidth_cap(node, MediaKind::Video, cap);
        }
        next
    }
}

/// A contained panic's message, short.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let text = (p.downcast_ref::<&str>().map(|s| s.to_string()))
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests;
