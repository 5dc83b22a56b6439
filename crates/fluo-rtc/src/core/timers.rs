//! The endpoints' timers (a heap of deadlines), what runs when they fire (str0m's tick, the
//! media-flow and media-state timeouts) and the REMB a publisher is told once a second.

use super::{flow, lock, MediaCore, FLOW_IDLE, REMB_EVERY, REMB_LOOK_EVERY};
use fluo_sfu::{FlowDir, MediaEvent, MediaKind};
use std::cmp::Reverse;
use std::time::{Duration, Instant};
use str0m::Input;

/// How long a viewer's bandwidth estimate (its REMB) must have been known before it lowers
/// its publisher's REMB while other viewers' estimates have settled (docs/compatibility.md,
/// "REMB to publishers").
pub(super) const ESTIMATE_WARM_UP: Duration = Duration::from_secs(5);

impl MediaCore {
    /// Drives timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        // Deferred keyframe requests, ports' media flows gone idle.
        self.router.handle_timeout(now);
        // The bandwidth estimators' process step, all at once (`bwe`).
        if self.bwe_tick.at.is_some_and(|t| t <= now) {
            self.bwe_tick(now);
        }
        let mut due: Vec<u64> = vec![];
        while let Some(Reverse((t, key))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.eps.get_mut(&key) else {
                continue;
            };
            if e.queued == Some(t) {
                e.queued = None;
            }
            if e.deadline <= now {
                due.push(key);
            } else if e.queued.is_none() {
                e.queued = Some(e.deadline);
                self.timers.push(Reverse((e.deadline, key)));
            }
        }
        due.sort_unstable();
        due.dedup();
        for k in due {
            if let Some(e) = self.eps.get(&k) {
                let mut ep = lock(&e.ep);
                if ep.rtc.is_alive() {
                    let _ = ep.rtc.handle_input(Input::Timeout(now));
                }
                if crate::stats::media_lost(&mut ep, now) {
                    let ev = MediaEvent::MediaState { connected: false };
                    self.events.push_back((ep.id.clone(), ev));
                }
                for kind in MediaKind::ALL {
                    let idle = ep.last_out_at[kind]
                        .is_some_and(|t| now.saturating_duration_since(t) > FLOW_IDLE);
                    if ep.flowing_out[kind] && idle {
                        ep.flowing_out[kind] = false;
                        self.events
                            .push_back((ep.id.clone(), flow(FlowDir::Out, false, kind)));
                    }
                }
            }
            self.update_remb(k);
            let probe_due = (self.bwe.get(&k))
                .and_then(|b| b.next_probe())
                .is_some_and(|t| t <= now);
            if self.bwe_on && (!self.bwe.contains_key(&k) || probe_due) {
                // Its estimator is made here or at its first feedback; then it runs at
                // feedback and at the estimators' tick (`bwe`), and at its own timer only
                // for its prober's steps while a probe cluster is sent.
                self.bwe_update(k);
            }
            self.drive(k);
        }
        self.flush();
    }

    /// Tells a publisher how much video to send (REMB), once per second: the least of its
    /// own `maxVideoRecvBandwidth` and what each of its viewers can take (their REMB, or with
    /// `--bwe on` their send-side estimate, capped by their `maxVideoSendBandwidth`), never
    /// below `minVideoRecvBandwidth`. A simulcast or SVC
    /// publisher's viewers each get the layer they can take instead: only its own bounds
    /// apply to it.
    pub(super) fn update_remb(&mut self, key: u64) {
        let now = self.now;
        let Some(node) = self.nodes.get(&key) else {
            return;
        };
        // Once a second after a REMB went, while its video flows: nothing else (its viewers)
        // is looked at before. While none goes (nothing bounds it), every 100 ms, not at each
        // of its timer fires (NACK, TWCC feedback: ~40 a second), each of which went through
        // all its viewers.
        let rids = match self.eps.get(&key) {
            Some(e) => {
                let mut ep = lock(&e.ep);
                let within = |d: Duration| move |t: Instant| now.duration_since(t) < d;
                if !ep.flowing_in[MediaKind::Video]
                    || ep.last_remb_at.is_some_and(within(REMB_EVERY))
                    || ep.remb_looked_at.is_some_and(within(REMB_LOOK_EVERY))
                {
                    return;
                }
                ep.remb_looked_at = Some(now);
                super::simulcast::layer_rids(&ep, MediaKind::Video)
            }
            None => return,
        };
        let layered = !rids.is_empty() || self.router.sends_svc(*node);
        let sinks: Vec<u64> = (self.router.forwarding_to(*node, MediaKind::Video))
            .filter(|_| !layered)
            .filter_map(|n| self.keys.get(&n).copied())
            .collect();
        let mut limits = self.viewer_limits(now, sinks);
        let Some(e) = self.eps.get(&key) else {
            return;
        };
        let mut ep = lock(&e.ep);
        let own = ep.settings.bandwidth.max_video_recv.saturating_mul(1000);
        if own > 0 {
            limits.push(own);
        }
        let first = ep.last_remb_at.is_none();
        let lowest = limits.into_iter().min();
        let on_connect = ep.settings.remb_on_connect;
        let Some(mut target) = ep.remb_start.target(on_connect, lowest, first) else {
            return;
        };
        target = target.max(ep.settings.bandwidth.min_video_recv.saturating_mul(1000));
        let Some(mid) = ep.mid_of_kind(MediaKind::Video) else {
            return;
        };
        ep.last_remb_at = Some(now);
        ep.stats.kinds[MediaKind::Video].remb_sent = target;
        // REMB bounds the sender as a whole: with simulcast it goes on the first layer that
        // has a stream (one that never sent has none).
        let mut api = ep.rtc.direct_api();
        let rid = (rids.iter().copied()).find(|r| api.stream_rx_by_mid(mid, Some(*r)).is_some());
        if rids.is_empty() || rid.is_some() {
            if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
                rx.request_remb(str0m::bwe::Bitrate::bps(target));
            }
        }
    }

    /// What the viewers `sinks` of a plain publisher allow it (see `update_remb`): each one's
    /// `maxVideoSendBandwidth`, and its estimate through the warm-up.
    fn viewer_limits(&self, now: Instant, sinks: Vec<u64>) -> Vec<u64> {
        let mut limits: Vec<u64> = vec![];
        // Estimates of viewers still in their warm-up, and whether any viewer's has settled.
        let mut warming: Vec<u64> = vec![];
        let mut settled_any = false;
        for s in sinks {
            if let Some(e) = self.eps.get(&s) {
                let mut ep = lock(&e.ep);
                let cap = ep.settings.bandwidth.max_video_send.saturating_mul(1000);
                if cap > 0 {
                    limits.push(cap);
                }
                // A viewer with TWCC sends no REMB: its own estimate stands for it (`bwe`),
                // once it has shown congestion (before, it only climbs from its start).
                let own = ep.bwe_estimate.filter(|_| ep.bwe_congested);
                let estimate = match (ep.receive_estimate, own) {
                    (Some(remb), Some(own)) => Some(remb.min(own)),
                    (remb, own) => remb.or(own),
                };
                let Some(est) = estimate else {
                    continue;
                };
                // The warm-up counts from the first estimate seen (`bwe`, events.rs).
                let since = ep.warm_up_since(now);
                if now.duration_since(since) >= ESTIMATE_WARM_UP {
                    settled_any = true;
                    limits.push(est);
                } else {
                    warming.push(est);
                }
            }
        }
        // A viewer's first estimates count only while no other viewer's has settled: a new
        // viewer does not drag the publisher (and every other viewer) down at once.
        if !settled_any {
            limits.append(&mut warming);
        }
        limits
    }

    /// When endpoint `key`'s timer must fire next.
    pub(super) fn set_deadline(&mut self, key: u64, deadline: Instant) {
        // Entries of removed endpoints, and entries left behind by deadlines that moved
        // later, stay until they come up; some never would (a dead session's timer is far
        // away). When they outnumber the live endpoints, rebuild the heap from each
        // endpoint's earliest queued time, which is all it needs (amortised O(1) per call).
        if self.timers.len() > 2 * self.eps.len() + 64 {
            self.timers = self
                .eps
                .iter()
                .filter_map(|(k, e)| e.queued.map(|q| Reverse((q, *k))))
                .collect();
        }
        let Some(e) = self.eps.get_mut(&key) else {
            return;
        };
        e.deadline = deadline;
        if e.queued.is_none_or(|q| deadline < q) {
            e.queued = Some(deadline);
            self.timers.push(Reverse((deadline, key)));
        }
    }
}
