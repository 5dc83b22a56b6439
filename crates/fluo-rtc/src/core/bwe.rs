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

mod cap;
mod ceiling;
mod delivery;
mod mode;
mod probe;
mod throughput;
mod tick;
pub(crate) use cap::LayerCap;
use delivery::{Delivery, Fed};
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

/// How long a probe's room for the top layer must hold before it ends congestion (see
/// [`ViewerBwe::room_held`]).
const PROBE_CONFIRM: Duration = Duration::from_secs(1);

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
    /// Lifts (ends of congestion, by its expiry or a probe) that failed in a row: congestion
    /// was seen again within [`PROBE_FAILS_WITHIN`].
    failed_lifts: u32,
    /// No congestion ended by a probe before this (a lift failed), unless the estimate
    /// reaches twice what it was at that failed lift and it was the first to fail in a row.
    probe_lift_barred_until: Option<(Instant, u64)>,
    /// The estimate when congestion last ended.
    lifted_at_bps: u64,
    /// Since when a probe's estimate has had room for the top layer (see
    /// [`ViewerBwe::room_held`]).
    room_since: Option<Instant>,
    /// The viewer's peer is lost: nothing runs or is probed ([`ViewerBwe::pause`]).
    paused: bool,
    /// The controller's clock at its last run, in µs.
    at_us: i64,
    /// The most the viewer can use, as last told the controller, and when it was last
    /// looked at ([`ViewerBwe::set_ceiling`]).
    ceiling: Option<u64>,
    ceiling_at: Option<Instant>,
    /// Media bytes (not probe padding) handed to the controller since the ceiling was last
    /// looked at: what a viewer of a plain source is sent ([`ViewerBwe::sent_bps`]).
    media_sent: u64,
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
        throughput::configure(&mut config);
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
            failed_lifts: 0,
            probe_lift_barred_until: None,
            lifted_at_bps: 0,
            room_since: None,
            paused: false,
            at_us: now_us,
            ceiling: None,
            ceiling_at: None,
            media_sent: 0,
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
        self.at_us = now_us;
        // Back from a lost peer (`pause`): the controller is told its network is there again.
        let resumed = std::mem::take(&mut self.paused);
        let mut target = None;
        let mut clusters: Vec<ProbeClusterConfig> = vec![];
        let mut take = |u: NetworkControlUpdate| {
            if let Some(t) = u.target_rate {
                target = Some(t.target_rate.bps().max(0) as u64);
            }
            clusters.extend(u.probe_cluster_configs);
        };
        let mut fed = None;
        let mut media = 0u64;
        let process = now >= self.next_process;
        let prober = &self.prober;
        let ran = fluo_core::panics::contain(|| {
            if resumed {
                take(cc.on_network_availability(NetworkAvailability {
                    at_time: ts(now_us),
                    network_available: true,
                }));
            }
            log.take_sent(now, |s| {
                media += u64::from(s.size) * u64::from(s.probe.is_none());
                take(cc.on_sent_packet(sent_packet(s, prober)));
            });
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
                self.fail(panic.as_ref());
                log.clear_acked();
                return Estimate::Failed;
            }
        }
        if process {
            self.next_process = now + PROCESS_EVERY;
        }
        self.media_sent = self.media_sent.saturating_add(media);
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

    /// A sign of congestion at `now`; seen soon after congestion ended (its expiry or a
    /// probe's lift), the lift failed: the next hold is three times as long, and no probe ends
    /// congestion during it (see [`ViewerBwe::lift_by_probe`]).
    fn sign(&mut self, now: Instant) {
        if !self.congested
            && (self.expired_at)
                .is_some_and(|t| now.saturating_duration_since(t) < PROBE_FAILS_WITHIN)
        {
            self.hold = (self.hold * 3).min(HOLD_MOST);
            self.failed_lifts = self.failed_lifts.saturating_add(1);
            self.probe_lift_barred_until = Some((now + self.hold, self.lifted_at_bps));
        }
        self.room_since = None;
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
            self.lifted_at_bps = self.target.unwrap_or(0);
        }
        if !self.congested && since(self.expired_at).is_some_and(|d| d >= PROBE_FAILS_WITHIN) {
            self.expired_at = None;
            self.hold = HOLD;
            self.failed_lifts = 0;
        }
    }

    /// Whether feedback reported probe packets received within [`PROBE_RESULT_FOR`]: the
    /// estimate then includes what a probe measured.
    pub(crate) fn probed_lately(&self, now: Instant) -> bool {
        (self.probe_fed).is_some_and(|t| now.saturating_duration_since(t) < PROBE_RESULT_FOR)
    }

    /// Whether a probe's room for the top layer (`room`, at `now`) has held for
    /// [`PROBE_CONFIRM`]: it starts with a probe's result ([`ViewerBwe::probed_lately`]), and
    /// a moment without room or a sign of congestion starts it again (a target that a probe
    /// lifted and overuse brings back down at once is no room).
    pub(crate) fn room_held(&mut self, now: Instant, room: bool) -> bool {
        if !room {
            self.room_since = None;
            return false;
        }
        if self.room_since.is_none() && self.probed_lately(now) {
            self.room_since = Some(now);
        }
        (self.room_since).is_some_and(|t| now.saturating_duration_since(t) >= PROBE_CONFIRM)
    }

    /// Whether a probe's room is being confirmed ([`ViewerBwe::room_held`]).
    pub(crate) fn confirming_room(&self) -> bool {
        self.room_since.is_some()
    }

    /// A probe showed room for the top layer with estimate `bps`, held for [`PROBE_CONFIRM`]:
    /// congestion ends now, as at its expiry. A lift that fails (congestion seen again within
    /// [`PROBE_FAILS_WITHIN`], whichever ended it) makes the next hold three times as long and
    /// bars such ends for that hold, unless the estimate reaches twice what it was at the
    /// failed lift and that was the first lift in a row to fail (a link that recovered lets
    /// goog_cc probe on to several times its last estimate; a queue's burst allowance fools a
    /// probe by less, though it can be twice: after a second failure only the hold's end
    /// lifts, 30 then 90 s on). False, nothing changed, while barred or not congested.
    pub(crate) fn lift_by_probe(&mut self, now: Instant, bps: u64) -> bool {
        let doubled = self.failed_lifts <= 1;
        let barred = (self.probe_lift_barred_until)
            .is_some_and(|(t, at)| now < t && !(doubled && bps >= at.saturating_mul(2)));
        if !self.congested || barred {
            return false;
        }
        self.lifted_at_bps = bps;
        self.congested = false;
        self.expired_at = Some(now);
        self.room_since = None;
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

    /// A panic in the controller was contained: whatever state it left the controller in, it
    /// is dropped (no estimate, no cap from now on; see the module).
    fn fail(&mut self, panic: &(dyn std::any::Any + Send)) {
        self.cc = None;
        self.target = None;
        self.next_probe = None;
        let why = panic_text(panic);
        tracing::warn!("the bandwidth estimator panicked ({why}): this viewer has no estimate and its layer no cap from now on");
    }

    /// The viewer's peer is lost (ICE or consent gone after DTLS; the endpoint's own timer is
    /// throttled then): its controller is told its network is unavailable (goog_cc's probe
    /// controller stops waiting for a probe's result), what was sent or reported meanwhile
    /// is dropped, and nothing is probed (the prober's clusters are given up, so no timer is
    /// armed for them) until [`ViewerBwe::run`] runs again with the peer back.
    pub(crate) fn pause(&mut self, now: Instant, log: &mut SentLog) {
        log.take_sent(now, |_| {});
        log.clear_acked();
        self.prober.clear();
        self.next_probe = None;
        // A probe's room being confirmed is confirmed afresh once the peer is back: the
        // estimate it read is from before the loss.
        self.room_since = None;
        self.restart_ceiling_period();
        if std::mem::replace(&mut self.paused, true) {
            return;
        }
        let Some(cc) = self.cc.as_mut() else {
            return;
        };
        let at_time = ts(log.micros(now));
        let ran = fluo_core::panics::contain(|| {
            let _ = cc.on_network_availability(NetworkAvailability {
                at_time,
                network_available: false,
            });
        });
        if let Err(panic) = ran {
            self.fail(panic.as_ref());
        }
    }

    /// Whether it is paused (its peer lost: [`ViewerBwe::pause`]).
    pub(crate) fn paused(&self) -> bool {
        self.paused
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

impl MediaCore {
    /// Runs endpoint `key`'s estimator (see the module) if its bandwidth is estimated: its
    /// sent packets and feedback fed, its estimate and layer cap updated. While its peer is
    /// lost (ICE or consent gone after DTLS) its estimator is paused: nothing is run or
    /// probed until the peer is back ([`ViewerBwe::pause`]).
    pub(super) fn bwe_update(&mut self, key: u64) {
        let now = self.now;
        let Some(e) = self.eps.get(&key) else {
            return;
        };
        let ep_ref = e.ep.clone();
        let mut ep = lock(&ep_ref);
        if !self.bwe_follows_source(key, &mut ep) {
            return;
        }
        let lost = super::drive::is_lost(&ep);
        let max = ep.settings.bandwidth.max_video_send.saturating_mul(1000);
        let Some(v) = ep.egress.as_mut() else {
            return;
        };
        let Some(log) = v.sent_log() else {
            return;
        };
        if lost {
            if let Some(est) = self.bwe.get_mut(&key) {
                est.pause(now, log);
            }
            return;
        }
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
        let counts = est.has_been_congested();
        let bps = match estimate {
            Estimate::Bps(bps) => Some(bps),
            Estimate::Cold | Estimate::Failed => None,
        };
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
        self.bwe_layers(key, bps);
    }

    /// Endpoint `key`'s layer cap for its estimate `bps` (see "The congestion rule" in
    /// docs/simulcast.md), a probe's room ending congestion, and the most its estimator is
    /// told the viewer can use ([`ViewerBwe::ceiling_due`]).
    fn bwe_layers(&mut self, key: u64, bps: Option<u64>) {
        let now = self.now;
        let Some(node) = self.nodes.get(&key).copied() else {
            return;
        };
        let Some(est) = self.bwe.get_mut(&key) else {
            return;
        };
        let mut congested = est.congested();
        let probed = est.probed_lately(now) || est.confirming_room();
        if let (true, true, Some(bps)) = (congested, probed, bps) {
            // A probe raised the estimate: room for the top layer, held a moment, ends
            // congestion without waiting for its expiry (docs/simulcast.md, "Probing"); room
            // for a lower one lets the cap up (`LayerCap::update`).
            let rates = self.router.layer_rates(node, MediaKind::Video);
            let room = rates.is_some_and(|(r, _)| est.cap.room_for_top(bps, &r));
            if est.room_held(now, room) && est.lift_by_probe(now, bps) {
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
        if est.ceiling_due(now) {
            // A layered source's top measured layer; a plain one's rate as sent.
            let need = if self.router.gets_layered(node) {
                let rates = self.router.layer_rates(node, MediaKind::Video);
                rates.and_then(|(r, _)| r.into_iter().flatten().max())
            } else {
                est.sent_bps(now)
            };
            est.set_ceiling(now, need.map(|t| t.saturating_mul(100) / HEADROOM_PERCENT));
        }
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
