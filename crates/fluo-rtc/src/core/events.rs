//! An endpoint's WebRTC events (str0m's `Event`): ICE and DTLS state as media events, received
//! RTP collected for the router, statistics, keyframe requests from its peer, data channels.

use super::{codec_of, kind_of, rtx_history, Ep, Forward, Raised, RTX_PACKETS};
use fluo_sfu::{FlowDir, MediaEvent, MediaKind};
use std::collections::VecDeque;
use std::time::Instant;
use str0m::rtp::RtpPacket;
use str0m::{Event, IceConnectionState};

/// What draining an endpoint collected for after its lock is released.
#[derive(Default)]
pub(super) struct Drained {
    /// Received RTP, for the router.
    pub(super) forwards: Vec<Forward>,
    /// Kinds its peer asked a keyframe of.
    pub(super) keyframe_asks: Vec<MediaKind>,
    /// Data-channel messages to relay.
    pub(super) messages: Vec<DataMessage>,
}

/// A data-channel message to relay along DATA connections.
pub(super) struct DataMessage {
    pub(super) label: String,
    pub(super) binary: bool,
    pub(super) data: Vec<u8>,
}

/// Handles one event of `ep`'s session: raised into `events` or collected into `out`.
pub(super) fn on_event(events: &mut VecDeque<Raised>, ep: &mut Ep, ev: Event, out: &mut Drained) {
    let id = ep.id.clone();
    let mut emit = |ev: MediaEvent| events.push_back((id.clone(), ev));
    match ev {
        Event::IceConnectionStateChange(s) => ice_changed(ep, s, &mut emit),
        Event::Connected => {
            ep.connected = true;
            ep.was_connected = true;
            ep.ice_restarted = false;
            emit(MediaEvent::DtlsConnected);
            if let Some((local, remote)) = crate::pair::selected(ep) {
                emit(MediaEvent::CandidatePairSelected { local, remote });
            }
            state_change(ep, true).into_iter().for_each(&mut emit);
        }
        Event::RtpPacket(pkt) => {
            if let Some(f) = received(ep, pkt, &mut emit) {
                out.forwards.push(f);
            }
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
        Event::MediaEgressStats(st) => egress_stats(ep, &st),
        Event::EgressBitrateEstimate(str0m::bwe::BweKind::Remb { estimate, .. }) => {
            tracing::trace!(id = %ep.id, bps = estimate.as_u64(), "REMB from the peer");
            ep.receive_estimate = Some(estimate.as_u64());
        }
        Event::KeyframeRequest(r) => {
            if let Some(kind) = ep.rtc.media(r.mid).map(|m| kind_of(m.kind())) {
                out.keyframe_asks.push(kind);
            }
        }
        Event::ChannelOpen(..) | Event::ChannelClose(_) | Event::ChannelData(_) => {
            channel_event(ep, ev, out, &mut emit)
        }
        Event::Closed => {
            tracing::debug!(id = %ep.id, "peer closed the connection");
        }
        _ => {}
    }
}

/// ICE's state as Kurento's IceComponentState; media goes down with ICE and comes back with it
/// once DTLS completed.
fn ice_changed(ep: &mut Ep, s: IceConnectionState, emit: &mut impl FnMut(MediaEvent)) {
    let state = match s {
        IceConnectionState::New => "GATHERING",
        IceConnectionState::Checking => "CONNECTING",
        IceConnectionState::Connected => "CONNECTED",
        IceConnectionState::Completed => "READY",
        IceConnectionState::Disconnected => "DISCONNECTED",
    };
    // str0m's ICE-lite agent goes from checking straight to completed; libnice, and so KMS,
    // passes through CONNECTED first, and applications wait for it.
    if state == "READY" && !matches!(ep.ice_state, "CONNECTED" | "READY") {
        emit(MediaEvent::IceComponentState { state: "CONNECTED" });
    }
    ep.ice_state = state;
    emit(MediaEvent::IceComponentState { state });
    let up = matches!(
        s,
        IceConnectionState::Connected | IceConnectionState::Completed
    );
    if up && std::mem::take(&mut ep.ice_restarted) && ep.was_connected {
        // ICE restarted (its DTLS goes on): what the egress sends goes to the pair it came
        // back on from now (str0m sends there already, and the egress would follow only
        // with str0m's next RTCP, up to a second later); that pair is reported.
        if let Some(p) = ep.nominated.take() {
            ep.send_path = Some(p);
            ep.repath = true;
        }
        if let Some((local, remote)) = crate::pair::selected(ep) {
            emit(MediaEvent::CandidatePairSelected { local, remote });
        }
    }
    if up && !ep.connected && ep.rtc.is_connected() && ep.was_connected {
        // ICE came back after a drop: media flows again.
        ep.connected = true;
        state_change(ep, true).into_iter().for_each(&mut *emit);
    }
    if s == IceConnectionState::Disconnected && ep.connected {
        ep.connected = false;
        state_change(ep, false).into_iter().for_each(emit);
    }
}

/// A packet from the peer: counted, and returned for the router with the codec its payload
/// type means (`None`: not of a routed kind or codec).
fn received(ep: &mut Ep, pkt: RtpPacket, emit: &mut impl FnMut(MediaEvent)) -> Option<Forward> {
    let ssrc = pkt.header.ssrc;
    let (mid, rid) = {
        let mut api = ep.rtc.direct_api();
        let s = api.stream_rx(&ssrc)?;
        (s.mid(), s.rid())
    };
    let kind = ep.rtc.media(mid).map(|m| kind_of(m.kind()))?;
    // A simulcast layer (its rid's place in the offer), for the router and the statistics.
    let layer = rid.and_then(|r| super::layer_of(ep, mid, r));
    let clock = pkt.time.frequency().get();
    let c = &mut ep.stats.kinds[kind];
    c.received(layer, *ssrc, *pkt.seq_no, pkt.payload.len(), clock);
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
        return None;
    };
    Some(Forward {
        kind,
        codec,
        entered: fluo_sfu::latency::sampled(*pkt.seq_no as u16).then(Instant::now),
        seq: *pkt.seq_no as u16,
        ts: pkt.header.timestamp,
        ssrc: *pkt.header.ssrc,
        marker: pkt.header.marker,
        payload: pkt.payload,
        ext_vals: Some(pkt.header.ext_vals),
        layer,
    })
}

/// The peer's receiver reports on what this endpoint sends: getStats, and the video resend
/// cache follows the round trip.
fn egress_stats(ep: &mut Ep, st: &str0m::stats::MediaEgressStats) {
    crate::stats::egress(ep, st);
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

/// Data channels opening, closing, and their messages (collected for relaying).
fn channel_event(ep: &mut Ep, ev: Event, out: &mut Drained, emit: &mut impl FnMut(MediaEvent)) {
    match ev {
        // A peer that opens a channel the answer declined (useDataChannels unset) is ignored.
        Event::ChannelOpen(cid, label) if ep.settings.data_channels => {
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
                out.messages.push(DataMessage {
                    label: label.clone(),
                    binary: d.binary,
                    data: d.data,
                });
            }
        }
        _ => {}
    }
}

/// ConnectionStateChanged for a session that came up or went down, and MediaStateChanged if
/// media was connected (media comes up later, with the peer's RTCP: see `stats`).
pub(super) fn state_change(ep: &mut Ep, up: bool) -> Vec<MediaEvent> {
    let mut out = vec![MediaEvent::ConnectionState { connected: up }];
    if !up && std::mem::take(&mut ep.stats.media_connected) {
        out.push(MediaEvent::MediaState { connected: false });
    }
    out
}

pub(crate) fn flow(dir: FlowDir, flowing: bool, kind: MediaKind) -> MediaEvent {
    MediaEvent::Flow { dir, kind, flowing }
}
