//! Draining an endpoint's str0m session: datagrams to send, WebRTC events (ICE, DTLS, data
//! channels, stats, keyframe requests) raised as media events, received RTP handed to the
//! router, and the flush that sends what the router wrote to endpoints.

use super::{
    codec_of, ice, kind_of, lock, rtx_history, Datagram, Ep, Forward, MediaCore, Raised,
    LOST_PEER_TICK, RTX_PACKETS,
};
use fluo_sfu::{FlowDir, MediaEvent, MediaKind};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use str0m::{Event, IceConnectionState, Input, Output};

impl MediaCore {
    /// Sends what was written to endpoints: str0m releases written RTP on its next tick, run
    /// here at once, so that a packet leaves while its input is handled rather than after a
    /// round trip through the shell's timer (a millisecond of resolution).
    pub(super) fn flush(&mut self) {
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

    /// Handles several datagrams (those waiting on a socket) with one flush at the end.
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
        let mut forwards: Vec<Forward> = vec![];
        let mut keyframe_asks: Vec<MediaKind> = vec![];
        let mut messages: Vec<DataMessage> = vec![];
        let (was_connected, deadline, lost, connected);
        {
            let mut ep = lock(&ep_ref);
            was_connected = ep.connected;
            loop {
                if !ep.rtc.is_alive() {
                    deadline = self.now + Duration::from_secs(3600);
                    break;
                }
                match ep.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        deadline = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        // A peer that went away (ICE lost after DTLS had completed) gets no
                        // more RTP or RTCP (str0m keeps writing sender reports): only ICE and
                        // DTLS, which is how it can come back.
                        let lost = ep.was_connected && !ep.connected;
                        if lost && matches!(t.contents.first(), Some(128..=191)) {
                            continue;
                        }
                        // Back from the announced address to the local socket: the one the
                        // peer's packets arrive on when several share the announced address.
                        let path_local = ep.path.filter(|(_, r)| *r == t.destination).map(|p| p.0);
                        let mut locals = ep.nat.iter().filter(|(_, public)| *public == t.source);
                        let source = match path_local {
                            Some(l) if ep.nat.iter().any(|(x, p)| *x == l && *p == t.source) => l,
                            _ => locals.next().map_or(t.source, |(local, _)| *local),
                        };
                        let contents: Vec<u8> = t.contents.into();
                        if ice::is_binding_request(&contents) {
                            self.note_check(key, source, t.destination);
                        }
                        self.transmits.push_back(Datagram {
                            proto: t.proto,
                            source,
                            destination: t.destination,
                            contents,
                            tos: ep.tos,
                        });
                    }
                    Ok(Output::Event(ev)) => Self::event(
                        &mut self.events,
                        &mut ep,
                        ev,
                        &mut forwards,
                        &mut keyframe_asks,
                        &mut messages,
                    ),
                    Err(e) => {
                        tracing::warn!(id = %ep.id, "endpoint failed: {e}");
                        ep.rtc.disconnect();
                        if std::mem::take(&mut ep.connected) {
                            for ev in state_change(&mut ep, false) {
                                self.events.push_back((ep.id.clone(), ev));
                            }
                        }
                    }
                }
            }
            // A lost peer costs a timer every few seconds, not every few milliseconds; a
            // datagram from it drives the endpoint at once.
            lost = ep.was_connected && !ep.connected && ep.rtc.is_alive();
            connected = ep.connected;
        }

        let deadline = if lost {
            deadline.max(self.now + LOST_PEER_TICK)
        } else {
            deadline
        };
        self.set_deadline(key, deadline);
        if !was_connected && connected {
            // Media can flow to this endpoint now: whatever feeds its video must start with a
            // keyframe (a request made when the route was added may predate the connection).
            keyframe_asks.push(MediaKind::Video);
        }
        let node = self.node_of(key);
        for kind in keyframe_asks {
            // A viewer asked for a keyframe: ask whoever feeds it.
            if let Some(n) = node {
                self.router.request_keyframe(self.now, n, kind);
            }
        }
        if !messages.is_empty() {
            let sinks = self.data_routes.get(&key).cloned().unwrap_or_default();
            for sink in sinks {
                self.relay(sink, &messages);
            }
        }
        if let Some(n) = node {
            for f in forwards {
                self.dispatch(n, &f);
            }
        }
    }

    fn event(
        events: &mut VecDeque<Raised>,
        ep: &mut Ep,
        ev: Event,
        forwards: &mut Vec<Forward>,
        keyframe_asks: &mut Vec<MediaKind>,
        messages: &mut Vec<DataMessage>,
    ) {
        let id = ep.id.clone();
        let mut emit = |ev: MediaEvent| events.push_back((id.clone(), ev));
        match ev {
            Event::IceConnectionStateChange(s) => {
                let state = match s {
                    IceConnectionState::New => "GATHERING",
                    IceConnectionState::Checking => "CONNECTING",
                    IceConnectionState::Connected => "CONNECTED",
                    IceConnectionState::Completed => "READY",
                    IceConnectionState::Disconnected => "DISCONNECTED",
                };
                ep.ice_state = state;
                emit(MediaEvent::IceComponentState { state });
                let up = matches!(
                    s,
                    IceConnectionState::Connected | IceConnectionState::Completed
                );
                if up && !ep.connected && ep.rtc.is_connected() && ep.was_connected {
                    // ICE came back after a drop: media flows again.
                    ep.connected = true;
                    state_change(ep, true).into_iter().for_each(&mut emit);
                }
                if s == IceConnectionState::Disconnected && ep.connected {
                    ep.connected = false;
                    state_change(ep, false).into_iter().for_each(&mut emit);
                }
            }
            Event::Connected => {
                ep.connected = true;
                ep.was_connected = true;
                emit(MediaEvent::DtlsConnected);
                if let Some((local, remote)) = crate::pair::selected(ep) {
                    emit(MediaEvent::CandidatePairSelected { local, remote });
                }
                state_change(ep, true).into_iter().for_each(&mut emit);
            }
            Event::RtpPacket(pkt) => {
                let ssrc = pkt.header.ssrc;
                let kind = ep
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| s.mid())
                    .and_then(|mid| ep.rtc.media(mid).map(|m| kind_of(m.kind())));
                let Some(kind) = kind else {
                    return;
                };
                let clock = pkt.time.frequency().get();
                let c = &mut ep.stats.kinds[kind];
                c.received(*ssrc, *pkt.seq_no, pkt.payload.len(), clock);
                if !ep.flowing_in[kind] {
                    ep.flowing_in[kind] = true;
                    emit(flow(FlowDir::In, true, kind));
                }
                let pt = pkt.header.payload_type;
                let codec = ep
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|p| p.pt() == pt)
                    .map(|p| p.spec());
                let Some(codec) = codec.as_ref().and_then(codec_of) else {
                    tracing::trace!(id = %ep.id, %pt, "RTP with an unknown payload type dropped");
                    return;
                };
                forwards.push(Forward {
                    kind,
                    codec,
                    entered: fluo_sfu::latency::sampled(*pkt.seq_no as u16).then(Instant::now),
                    seq: *pkt.seq_no as u16,
                    ts: pkt.header.timestamp,
                    ssrc: *pkt.header.ssrc,
                    marker: pkt.header.marker,
                    payload: pkt.payload,
                    ext_vals: Some(pkt.header.ext_vals),
                });
            }
            Event::StreamPaused(p) => {
                if let Some(kind) = ep.rtc.media(p.mid).map(|m| kind_of(m.kind())) {
                    if p.paused && ep.flowing_in[kind] {
                        ep.flowing_in[kind] = false;
                        emit(flow(FlowDir::In, false, kind));
                    }
                }
            }
            Event::MediaIngressStats(st) => crate::stats::ingress(ep, &st),
            Event::PeerStats(st) => crate::stats::peer(ep, &st),
            Event::MediaEgressStats(st) => {
                crate::stats::egress(ep, &st);
                // A round-trip estimate from the viewer's receiver reports on the video this
                // endpoint forwards: its resend cache follows it.
                let forwarded = ep.mid_of_kind(MediaKind::Video) == Some(st.mid);
                let cache = ep.out[MediaKind::Video]
                    .as_mut()
                    .and_then(|o| o.rtx.as_mut());
                if let (true, Some(rtt), Some(cache)) = (forwarded, st.rtt, cache) {
                    if let Some(len) = cache.report(rtx_history(rtt)) {
                        if let Some(tx) = ep.rtc.direct_api().stream_tx_by_mid(st.mid, None) {
                            tx.set_rtx_cache(RTX_PACKETS, len, Some(0.15));
                            tracing::debug!(id = %ep.id, ?rtt, ?len, "video resend history");
                        }
                    }
                }
            }
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Remb { estimate, .. }) => {
                tracing::trace!(id = %ep.id, bps = estimate.as_u64(), "REMB from the peer");
                ep.receive_estimate = Some(estimate.as_u64());
            }
            Event::KeyframeRequest(r) => {
                if let Some(kind) = ep.rtc.media(r.mid).map(|m| kind_of(m.kind())) {
                    keyframe_asks.push(kind);
                }
            }
            // A peer that opens a channel the answer declined (useDataChannels unset) is ignored.
            Event::ChannelOpen(cid, label) if ep.data_channels => {
                let sid = ep
                    .rtc
                    .direct_api()
                    .sctp_stream_id_by_channel_id(cid)
                    .unwrap_or_default();
                ep.channels.insert(cid, (label, sid));
                ep.channels_opened += 1;
                emit(MediaEvent::DataChannelOpened { channel: sid });
            }
            Event::ChannelClose(cid) => {
                if let Some((_, sid)) = ep.channels.remove(&cid) {
                    ep.channels_closed += 1;
                    emit(MediaEvent::DataChannelClosed { channel: sid });
                }
            }
            Event::ChannelData(d) => {
                if let Some((label, _)) = ep.channels.get(&d.id) {
                    messages.push(DataMessage {
                        label: label.clone(),
                        binary: d.binary,
                        data: d.data,
                    });
                }
            }
            Event::Closed => {
                tracing::debug!(id = %ep.id, "peer closed the connection");
            }
            _ => {}
        }
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

/// A data-channel message to relay along DATA connections.
struct DataMessage {
    label: String,
    binary: bool,
    data: Vec<u8>,
}

/// ConnectionStateChanged for a session that came up or went down, and MediaStateChanged if
/// media was connected (media comes up later, with the peer's RTCP: see `stats`).
fn state_change(ep: &mut Ep, up: bool) -> Vec<MediaEvent> {
    let mut out = vec![MediaEvent::ConnectionState { connected: up }];
    if !up && std::mem::take(&mut ep.stats.media_connected) {
        out.push(MediaEvent::MediaState { connected: false });
    }
    out
}

pub(crate) fn flow(dir: FlowDir, flowing: bool, kind: MediaKind) -> MediaEvent {
    MediaEvent::Flow { dir, kind, flowing }
}
