//! Draining an endpoint's str0m session: datagrams to send, its events (see `events`), received
//! RTP handed to the router, data-channel messages relayed, and the flush that sends what the
//! router wrote to endpoints.

use super::events::{self, DataMessage, Drained};
use super::{egress, ice, lock, Datagram, Ep, MediaCore, LOST_PEER_TICK};
use fluo_sfu::MediaKind;
use std::time::{Duration, Instant};
use str0m::{Input, Output};

/// A lost peer (DTLS had completed, the connection is down) costs a timer every few seconds,
/// not every few milliseconds; a datagram from it drives the endpoint at once. Not while the
/// checks of an ICE restart run (they are not held back); a peer str0m merely put back into
/// checking, or whose restart ended disconnected, is still lost.
pub(super) fn is_lost(ep: &Ep) -> bool {
    let restarting = ep.ice_restarted && ep.ice_state == "CONNECTING";
    ep.was_connected && !ep.connected && ep.rtc.is_alive() && !restarting
}

impl MediaCore {
    /// Ends a pass over the core's input: the router's nodes pushed to in it send what they
    /// gathered (a media worker's job gets one datagram, audio with video), and what was
    /// written to endpoints is sent: str0m releases written RTP on its next tick, run here at
    /// once, so that a packet leaves while its input is handled rather than after a round trip
    /// through the shell's timer (a millisecond of resolution).
    pub(super) fn flush(&mut self) {
        self.router.flush();
        self.take_outbox();
        while let Some(key) = self.dirty.pop() {
            let Some(e) = self.eps.get(&key) else {
                continue;
            };
            let ep_ref = e.ep.clone();
            {
                let mut ep = lock(&ep_ref);
                ep.written = false;
                if ep.rtc.is_alive() {
                    if let Err(err) = ep.rtc.handle_input(Input::Timeout(self.now)) {
                        tracing::debug!(id = %ep.id, "timeout rejected: {err}");
                    }
                }
            }
            self.drive(key);
            self.take_outbox();
        }
    }

    /// Handles several inputs (the datagrams waiting on a socket, the commands waiting on the
    /// control channel) as one pass, with one flush at its end.
    pub fn receive_batch(&mut self, f: impl FnOnce(&mut MediaCore)) {
        self.batching = true;
        f(self);
        self.batching = false;
        self.flush();
    }

    /// Drains an endpoint's outputs: sends datagrams, raises events, forwards media.
    pub(super) fn drive(&mut self, key: u64) {
        let Some(entry) = self.eps.get(&key) else {
            return;
        };
        let ep_ref = entry.ep.clone();
        let mut out = Drained::default();
        let (was_connected, deadline, lost, connected);
        {
            let mut ep = lock(&ep_ref);
            was_connected = ep.connected;
            deadline = self.drain(key, &mut ep, &mut out);
            lost = is_lost(&ep);
            connected = ep.connected;
        }
        // Its bandwidth estimator's process step, when it has one, is the estimators' tick
        // (`bwe`); its prober's next step, while a probe cluster is sent, is its own timer's.
        let deadline = if lost {
            deadline.max(self.now + LOST_PEER_TICK)
        } else {
            let probe = self.bwe.get(&key).and_then(|b| b.next_probe());
            probe.map_or(deadline, |t| deadline.min(t))
        };
        self.set_deadline(key, deadline);
        if !was_connected && connected {
            // Media can flow to this endpoint now: whatever feeds its video must start with a
            // keyframe (a request made when the route was added may predate the connection).
            out.keyframe_asks.push(MediaKind::Video);
        }
        let node = self.node_of(key);
        for kind in out.keyframe_asks {
            // A viewer asked for a keyframe: ask whoever feeds it.
            if let Some(n) = node {
                self.router.request_keyframe(self.now, n, kind);
            }
        }
        if !out.messages.is_empty() {
            let sinks = self.data_routes.get(&key).cloned().unwrap_or_default();
            for sink in sinks {
                self.relay(sink, &out.messages);
            }
        }
        if let Some(n) = node {
            for f in out.forwards {
                self.dispatch(n, f);
            }
        }
    }

    /// Polls endpoint `key`'s session until it wants time: datagrams are queued, events
    /// raised or collected in `out`. Returns its next deadline.
    fn drain(&mut self, key: u64, ep: &mut Ep, out: &mut Drained) -> Instant {
        loop {
            if !ep.rtc.is_alive() {
                return self.now + Duration::from_secs(3600);
            }
            match ep.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    if ep.receive_estimate.is_some() {
                        // A REMB's warm-up counts from the first one seen (timers.rs).
                        ep.warm_up_since(self.now);
                    }
                    return t;
                }
                Ok(Output::Transmit(t)) => self.transmit(key, ep, t),
                Ok(Output::Event(ev)) => events::on_event(&mut self.events, ep, ev, out),
                Err(e) => {
                    tracing::warn!(id = %ep.id, "endpoint failed: {e}");
                    ep.rtc.disconnect();
                    if std::mem::take(&mut ep.connected) {
                        for ev in events::state_change(ep, false) {
                            self.events.push_back((ep.id.clone(), ev));
                        }
                    }
                }
            }
        }
    }

    /// Queues a datagram endpoint `key`'s session sent.
    fn transmit(&mut self, key: u64, ep: &mut Ep, t: str0m::net::Transmit) {
        // A peer that went away (ICE lost after DTLS had completed) gets no more RTP or RTCP
        // (str0m keeps writing sender reports): only ICE and DTLS, which is how it can come
        // back.
        let lost = ep.was_connected && !ep.connected;
        if lost && matches!(t.contents.first(), Some(128..=191)) {
            return;
        }
        // Back from the announced address to the local socket: the one the peer's packets
        // arrive on when several share the announced address.
        let path_local = ep.path.filter(|(_, r)| *r == t.destination).map(|p| p.0);
        let mut locals = ep
            .settings
            .nat
            .iter()
            .filter(|(_, public)| *public == t.source);
        let source = match path_local {
            Some(l)
                if ep
                    .settings
                    .nat
                    .iter()
                    .any(|(x, p)| *x == l && *p == t.source) =>
            {
                l
            }
            _ => locals.next().map_or(t.source, |(local, _)| *local),
        };
        let outbox = self.outbox.clone();
        let mut eg = outbox.egress();
        if egress::on_transmit(ep, &mut eg, t.proto, source, t.destination, &t.contents) {
            // SRTCP: the egress sends it, re-indexed.
            return;
        }
        drop(eg);
        let contents: Vec<u8> = t.contents.into();
        if ice::is_binding_request(&contents) {
            self.note_check(key, source, t.destination);
            if ep.ice_restarted && ice::is_nomination(&contents) {
                // Controlling, the endpoint nominates this pair (see `Ep::nominated`).
                ep.nominated = Some((t.proto, source, t.destination));
            }
        }
        self.transmits.push_back(Datagram {
            proto: t.proto,
            source,
            destination: t.destination,
            contents,
            tos: ep.settings.tos,
        });
    }

    /// Relays data-channel messages to a sink: on its open channel of the same label, else on
    /// its first open channel.
    fn relay(&mut self, sink: u64, messages: &[DataMessage]) {
        let Some(e) = self.eps.get(&sink) else {
            return;
        };
        {
            let mut ep = lock(&e.ep);
            for m in messages {
                let target = ep
                    .channels
                    .iter()
                    .find(|(_, (l, _))| *l == m.label)
                    .or_else(|| ep.channels.iter().min_by_key(|(_, (_, sid))| *sid))
                    .map(|(c, _)| *c);
                let Some(cid) = target else {
                    tracing::debug!(id = %ep.id, "no open data channel to relay to");
                    continue;
                };
                if let Some(mut ch) = ep.rtc.channel(cid) {
                    if !matches!(ch.write(m.binary, &m.data), Ok(true)) {
                        tracing::debug!(id = %ep.id, "data channel full; message dropped");
                    }
                }
            }
        }
        self.drive(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::{is_lost, Ep};

    #[test]
    fn a_lost_peer_is_throttled_unless_its_ice_restarts() {
        let mut ep = Ep::new("ep".into(), str0m::Rtc::new(std::time::Instant::now()));
        assert!(!is_lost(&ep), "never connected");
        ep.was_connected = true;
        ep.ice_state = "CONNECTING";
        assert!(is_lost(&ep), "checking again without a restart: still lost");
        ep.ice_restarted = true;
        assert!(!is_lost(&ep), "an ICE restart under way");
        ep.ice_state = "DISCONNECTED";
        assert!(is_lost(&ep), "a restart that ended disconnected");
        ep.ice_restarted = false;
        ep.connected = true;
        assert!(!is_lost(&ep));
    }
}
