//! A WebRTC endpoint as a router node ([`WebRtcSink`]): what it takes is what its peer
//! accepted on each kind's m-line (asked when a route to it is decided, never per packet);
//! what the router pushes to it is written into its str0m session, with the payload type
//! negotiation chose and the sequence line the router keeps for it; keyframe requests for it
//! go to its peer as PLI.
//!
//! This is the one implementation the egress fast path replaces: everything else in the
//! media core sees the endpoint through the router.

use super::egress::{self, Carried, Egress};
use super::simulcast::layer_rids;
use super::{codec_of, flow, lock, Ep, EpRef, Raised, RtxCache, RTX_HISTORY_START, RTX_PACKETS};
use fluo_sfu::{
    CodecName, FlowDir, ForwardedLayer, Header, MediaKind, Node, Packet, SinkCaps, SinkCodec,
};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use str0m::media::{KeyframeRequestKind, Pt, Rid};
use str0m::rtp::{RtpWrite, SeqNo, Vp8Descriptor, Vp8Patch};

/// What the WebRTC nodes leave for the media core while the router runs them: endpoints
/// written to (str0m releases written media on its next tick, run once per endpoint after a
/// batch of input) and events raised on them; and the egress fast path's shared state (its
/// batch of datagrams, the sources' resend caches: see `egress`).
#[derive(Default)]
pub(crate) struct Outbox(Mutex<Pending>, Mutex<Egress>);

#[derive(Default)]
struct Pending {
    written: Vec<u64>,
    events: Vec<Raised>,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The egress's shared state. Taken after an endpoint's lock, never before.
    pub(crate) fn egress(&self) -> std::sync::MutexGuard<'_, Egress> {
        self.1.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Endpoint `key` has output to send.
    pub(crate) fn written(&self, key: u64) {
        self.lock().written.push(key);
    }

    fn raise(&self, ev: Raised) {
        self.lock().events.push(ev);
    }

    /// Takes what was left: the endpoints written to and the events, in their order.
    pub(crate) fn take(
        &self,
        written: &mut Vec<u64>,
        events: &mut std::collections::VecDeque<Raised>,
    ) {
        let mut p = self.lock();
        written.append(&mut p.written);
        events.extend(p.events.drain(..));
    }
}

/// The endpoint `key` as a router node.
pub(crate) struct WebRtcSink {
    pub(crate) key: u64,
    pub(crate) ep: EpRef,
    pub(crate) outbox: Arc<Outbox>,
}

impl WebRtcSink {
    /// A packet went to the endpoint: its latency and media flow.
    fn sent(&self, ep: &mut Ep, now: Instant, pkt: &Packet<'_>) {
        let kind = pkt.kind;
        if let Some(t) = pkt.entered {
            ep.stats.kinds[kind].latency.add(t.elapsed());
        }
        ep.last_out_at[kind] = Some(now);
        if !ep.flowing_out[kind] {
            ep.flowing_out[kind] = true;
            self.outbox
                .raise((ep.id.clone(), flow(FlowDir::Out, true, kind)));
        }
    }
}

/// A simulcast layer's VP8 / VP9 packet for str0m with the viewer's picture ids (see
/// `fluo_sfu::picture_id`): VP8 as a patch str0m applies as it writes the packet (and its
/// resends), VP9 copied and rewritten. Any other packet as it is.
fn picture_ids(ids: &mut fluo_sfu::PictureIds, pkt: &Packet<'_>) -> (Arc<[u8]>, Option<Vp8Patch>) {
    let codec = pkt.codec.name;
    if !fluo_sfu::picture_id::rewritten(pkt) {
        return (pkt.payload.clone(), None);
    }
    let out = ids.map(codec, pkt.payload);
    if codec == CodecName::Vp9 {
        let mut copy = pkt.payload.to_vec();
        fluo_sfu::picture_id::write(codec, &mut copy, out);
        return (copy.into(), None);
    }
    let Ok(d) = Vp8Descriptor::parse(pkt.payload) else {
        return (pkt.payload.clone(), None);
    };
    let mut patch = d.patch();
    if let Some(id) = out.picture_id {
        patch = patch.picture_id(id);
    }
    if let Some(t) = out.tl0picidx {
        patch = patch.tl0_pic_idx(t);
    }
    (pkt.payload.clone(), patch.build().ok())
}

impl WebRtcSink {
    /// A PLI to the peer for its stream of `kind` (its simulcast layer `rid`).
    fn pli(&self, kind: MediaKind, rid: Option<Rid>) {
        let mut ep = lock(&self.ep);
        let Some(mid) = ep.mid_of_kind(kind) else {
            return;
        };
        if let Some(rx) = ep.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
        if !std::mem::replace(&mut ep.written, true) {
            self.outbox.written(self.key);
        }
    }
}

impl Node for WebRtcSink {
    fn caps(&self, kind: MediaKind) -> SinkCaps {
        let ep = lock(&self.ep);
        let mid = ep.mid_of_kind(kind).filter(|_| ep.sdp.remote().is_some());
        let Some(mid) = mid else {
            // Not negotiated (yet), or no section of this kind: whatever comes is dropped
            // in `push`, and the route is decided again when the endpoint negotiates.
            return SinkCaps::anything();
        };
        let accepted = ep
            .rtc
            .media(mid)
            .map(|m| m.remote_pts())
            .unwrap_or_default();
        let params = ep.rtc.codec_config().params();
        let entries = params
            .iter()
            .filter(|p| accepted.contains(&p.pt()))
            .filter_map(|p| Some(SinkCodec::with_pt(codec_of(&p.spec())?, *p.pt())));
        SinkCaps::codecs(entries)
    }

    fn reads_dependency_descriptor(&self, kind: MediaKind) -> bool {
        let ep = lock(&self.ep);
        let mid = ep.mid_of_kind(kind).filter(|_| ep.sdp.remote().is_some());
        // Not negotiated yet: nothing is sent to it, and this is asked again when it is.
        let Some(mid) = mid else {
            return true;
        };
        let media = ep.rtc.media(mid);
        media.is_some_and(|m| m.remote_extmap().id_of(crate::dd::extension()).is_some())
    }

    fn push(&mut self, now: Instant, pkt: &Packet<'_>, header: Header) {
        let kind = pkt.kind;
        let mut ep = lock(&self.ep);
        if !ep.connected {
            return;
        }
        if let Some(sent) = egress::push(&mut ep, &self.outbox, now, pkt, header) {
            if sent {
                self.sent(&mut ep, now, pkt);
            }
            return;
        }
        let (Some(mid), Some(pt)) = (ep.mid_of_kind(kind), header.pt) else {
            return;
        };
        let out = ep.out[kind].get_or_insert_with(|| super::OutStream {
            ext: u64::from(header.seq),
            rtx: None,
            line: None,
            ids: fluo_sfu::PictureIds::default(),
        });
        out.ext = fluo_sfu::extend_seq(out.ext, header.seq);
        let out_seq = out.ext;
        if super::egress::line_restarted(&mut out.line, pkt, &header) {
            out.ids.resync();
        }
        let (payload, vp8_patch) = picture_ids(&mut out.ids, pkt);
        let size_rtx = kind == MediaKind::Video && out.rtx.is_none();
        let mut api = ep.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        if size_rtx {
            tx.set_rtx_cache(RTX_PACKETS, RTX_HISTORY_START, Some(0.15));
        }
        let mut write = RtpWrite::new(Pt::from(pt), SeqNo::from(out_seq), header.ts, now, payload)
            .marker(pkt.marker)
            .nackable(kind == MediaKind::Video);
        if let Some(patch) = vp8_patch {
            write = write.vp8_patch(patch);
        }
        if let Some(ext) = pkt
            .extensions
            .and_then(|e| e.downcast_ref::<Carried>())
            .and_then(|c| c.ext_vals.as_ref())
        {
            write = write.ext_vals(ext.clone());
        }
        tx.write_rtp(write);
        if size_rtx {
            if let Some(o) = ep.out[kind].as_mut() {
                o.rtx = Some(RtxCache::new());
            }
        }
        let c = &mut ep.stats.kinds[kind];
        c.out_packets += 1;
        c.out_first.get_or_insert(out_seq);
        c.out_bytes += pkt.payload.len() as u64;
        self.sent(&mut ep, now, pkt);
        if !std::mem::replace(&mut ep.written, true) {
            self.outbox.written(self.key);
        }
    }

    fn skipped(&mut self, pkt: &Packet<'_>, shifted: bool) {
        egress::skipped(&mut lock(&self.ep), pkt, shifted);
    }

    fn request_keyframe(&mut self, kind: MediaKind) {
        // A simulcast publisher: every layer (each is its own stream).
        let rids = layer_rids(&lock(&self.ep), kind);
        if rids.is_empty() {
            self.pli(kind, None);
        }
        for rid in rids {
            self.pli(kind, Some(rid));
        }
    }

    fn request_layer_keyframe(&mut self, kind: MediaKind, layer: u8) {
        let rid = layer_rids(&lock(&self.ep), kind)
            .get(usize::from(layer))
            .copied();
        if rid.is_some() {
            self.pli(kind, rid);
        }
    }

    fn layer_names(&self, kind: MediaKind) -> Vec<String> {
        let rids = layer_rids(&lock(&self.ep), kind);
        rids.iter().map(|r| r.to_string()).collect()
    }

    fn layer_changed(&mut self, kind: MediaKind, layer: Option<&ForwardedLayer>) {
        if kind == MediaKind::Video {
            lock(&self.ep).layer_out = layer.cloned();
        }
    }

    fn reports_flow(&self) -> bool {
        // Its media flows in from and out to the network: the media core reports both.
        false
    }
}
