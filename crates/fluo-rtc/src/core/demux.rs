//! Where a datagram goes: the ICE ufrag of a check or the remote address of a known path
//! names the endpoint whose str0m session takes it.

use super::{ice, lock, Ep, MediaCore};
use fluo_sfu::MediaEvent;
use std::net::SocketAddr;
use std::time::Instant;
use str0m::net::{Protocol, Receive};
use str0m::Input;

impl MediaCore {
    /// A UDP datagram arrived on local address `destination` from `source`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        source: SocketAddr,
        data: &[u8],
    ) {
        self.handle_receive_on(now, Protocol::Udp, destination, source, data);
    }

    /// A datagram (UDP) or a frame of an ICE-TCP connection (TCP) arrived on local address
    /// `destination` from `source`.
    pub fn handle_receive_on(
        &mut self,
        now: Instant,
        proto: Protocol,
        destination: SocketAddr,
        source: SocketAddr,
        data: &[u8],
    ) {
        self.now = now;
        let Some(key) = self.endpoint_for(now, proto, destination, source, data) else {
            tracing::trace!(%source, "no endpoint accepts this datagram");
            return;
        };
        let mut feedback = false;
        if let Some(e) = self.eps.get(&key) {
            let mut ep = lock(&e.ep);
            ep.path = Some((destination, source));
            ep.path_proto = proto;
            let dest = seen_as(&ep, destination);
            // The viewer's SRTCP goes through the egress first (NACKs, reports).
            let outbox = self.outbox.clone();
            let mut eg = outbox.egress();
            let for_str0m = super::egress::on_receive(&mut ep, &mut eg, now, data).unwrap_or(data);
            // Transport-wide feedback read (only with `--bwe on`): its estimator takes it.
            feedback = (ep.egress.as_mut())
                .and_then(|v| v.sent_log())
                .is_some_and(|l| !l.acked().is_empty());
            if let Some(input) = input(now, proto, source, dest, for_str0m) {
                if ep.ice_restarted && ice::is_nomination(data) && ep.rtc.accepts(&input) {
                    // The peer nominates this pair of the restarted ICE (see `Ep::nominated`).
                    ep.nominated = Some((proto, destination, source));
                }
                if let Err(err) = ep.rtc.handle_input(input) {
                    tracing::debug!(id = %ep.id, "input rejected: {err}");
                } else if crate::stats::is_report(data) && crate::stats::rtcp_arrived(&mut ep, now)
                {
                    let ev = MediaEvent::MediaState { connected: true };
                    self.events.push_back((ep.id.clone(), ev));
                }
            }
        }
        if feedback {
            self.bwe_update(key);
        }
        self.drive(key);
        if !self.batching {
            self.flush();
        }
    }

    /// The endpoint a datagram from `source` to `destination` is for, if any.
    fn endpoint_for(
        &mut self,
        now: Instant,
        proto: Protocol,
        destination: SocketAddr,
        source: SocketAddr,
        data: &[u8],
    ) -> Option<u64> {
        let known = self
            .by_remote
            .get(&(destination, source))
            .copied()
            .filter(|k| self.eps.contains_key(k));
        if let Some(k) = known.filter(|_| !ice::is_binding_request(data)) {
            // This address already passed an ICE check for that endpoint: its DTLS may arrive
            // before the endpoint's own checks made the pair viable (str0m's `accepts` would
            // say no and the handshake would wait for a retransmission), so hand it over. A
            // check itself names its endpoint (below).
            return Some(k);
        }
        // A new remote address must introduce itself with an ICE check, whose USERNAME names
        // our endpoint (and whose integrity its password proves): one lookup, no scan over
        // all endpoints.
        let found = ice::stun_local_ufrag(data)
            .and_then(|u| self.by_ufrag.get(u).copied())
            .filter(|k| {
                self.eps.get(k).is_some_and(|e| {
                    let ep = lock(&e.ep);
                    let dest = seen_as(&ep, destination);
                    input(now, proto, source, dest, data).is_some_and(|i| ep.rtc.accepts(&i))
                })
            });
        if let Some(k) = found {
            self.by_remote.insert((destination, source), k);
            return Some(k);
        }
        // Else the endpoint that checks this address (full ICE): the answers to its checks,
        // and what follows, carry nothing that names it.
        known.or_else(|| self.checked_by(destination, source))
    }
}

/// The endpoint's view of the local address `local` (its announced external address, if any).
fn seen_as(ep: &Ep, local: SocketAddr) -> SocketAddr {
    ep.settings
        .nat
        .iter()
        .find(|(l, _)| *l == local)
        .map_or(local, |(_, public)| *public)
}

/// str0m's input for a datagram.
fn input(
    now: Instant,
    proto: Protocol,
    source: SocketAddr,
    destination: SocketAddr,
    data: &[u8],
) -> Option<Input<'_>> {
    let contents = data.try_into().ok()?;
    Some(Input::Receive(
        now,
        Receive {
            proto,
            source,
            destination,
            contents,
        },
    ))
}
