//! Per packet of an SVC stream (a VP9 stream with layer indices, or an AV1 stream whose
//! dependency descriptors name more than one spatial layer; see [`crate::svc`]): its spatial
//! layers are the source's layers (`layers::SourceLayers`, by spatial id, ranked by the sizes
//! its scalability structure or template dependency structure gives), each sink chooses among
//! them as for simulcast, and gets the packets of the layers up to its own, its line skipping
//! the others.

use super::entry::{Route, State};
use super::layers::SourceLayers;
use super::{MediaRouter, Packet};
use crate::descriptor;
use crate::simulcast::{SwitchReason, MAX_LAYERS};
use crate::svc::{LayerPacket, Verdict, ALL_TEMPORAL};
use crate::{CodecName, NodeId};
use std::time::Instant;

/// Whether a video packet may go through the SVC path: VP9 with layer indices (L), or AV1
/// with a dependency descriptor, of a source that does not send simulcast layers.
#[inline(always)]
pub(super) fn is_svc(pkt: &Packet<'_>) -> bool {
    pkt.layer.is_none()
        && match pkt.codec.name {
            CodecName::Vp9 => pkt.payload.first().is_some_and(|b| b & 0x20 != 0),
            CodecName::Av1 => pkt.dd.is_some(),
            _ => false,
        }
}

/// A packet of an SVC stream, as each of its sinks looks at it.
#[derive(Clone, Copy)]
struct SvcPacket<'a, 'b> {
    src: NodeId,
    pkt: &'a Packet<'b>,
    l: LayerPacket,
}

/// The picture size of each spatial layer of a stream, lowest first, and how many there are.
type Sizes = ([(u16, u16); 8], usize);

impl MediaRouter {
    /// The layers of a packet [`is_svc`] let through: `Err(n)` when it does not go through
    /// the SVC path (`None`: it goes the plain way, an AV1 stream of one spatial layer or
    /// whose descriptors are not known yet; `Some(0)`: dropped, its descriptor refused).
    fn svc_layers(
        &mut self,
        src: NodeId,
        pkt: &Packet<'_>,
    ) -> Result<(LayerPacket, Option<Sizes>), Option<usize>> {
        if pkt.codec.name == CodecName::Vp9 {
            let l = descriptor::vp9_layers(pkt.payload).ok_or(Some(0))?;
            let sizes = descriptor::vp9_layer_sizes(pkt.payload);
            return Ok((LayerPacket::vp9(&l, pkt.seq, pkt.ts), sizes));
        }
        let slot = self.layers.entry(src);
        let was_svc = slot.source.as_ref().is_some_and(|l| l.svc);
        let dd = slot.dd.get_or_insert_with(Default::default);
        let Some((l, new)) = pkt.dd.and_then(|b| dd.read(b, pkt.seq, pkt.ts)) else {
            // Refused while the stream is layered: not sent whole to sinks that skip layers.
            return Err(was_svc.then_some(0));
        };
        let Some(s) = dd.structure().filter(|s| s.spatial_layers > 1) else {
            return Err(None);
        };
        let n = usize::from(s.spatial_layers);
        let sizes = new.then(|| (s.resolutions.unwrap_or_default(), n));
        Ok((l, sizes))
    }

    /// [`MediaRouter::forward`] for a packet [`is_svc`] let through: to every sink its routes
    /// forward to, each getting it or skipping it by its layers. Returns how many got it, or
    /// `None` if it is not of an SVC stream after all (it goes the plain way).
    #[inline(never)]
    pub(super) fn forward_svc(
        &mut self,
        now: Instant,
        src: NodeId,
        pkt: &Packet<'_>,
    ) -> Option<usize> {
        let kind = pkt.kind;
        let (l, sizes) = match self.svc_layers(src, pkt) {
            Ok(read) => read,
            Err(n) => return n,
        };
        if usize::from(l.spatial) >= MAX_LAYERS {
            return Some(0);
        }
        let e = self.nodes.get_mut(src)?;
        let measure = self.measure_rates;
        let layers = self
            .layers
            .entry(src)
            .source
            .get_or_insert_with(Default::default);
        layers.svc = true;
        if !layers.accepts(now, &pkt.codec) {
            return Some(0);
        }
        if !layers.knows(l.spatial) {
            layers.add(l.spatial, Vec::new());
        }
        let key = l.begins && l.spatial == 0 && !l.inter_picture;
        layers.packet(now, l.spatial, pkt, key, measure);
        if let Some((sizes, n)) = sizes {
            layers.set_sizes(&sizes, n);
        }
        let undecided = |r: &Route| r.decided_for != Some(pkt.codec);
        if e.routes[kind].iter().any(undecided) {
            self.decide(now, src, kind, &pkt.codec);
        }
        let Some(mut layers) = self.layers.get_mut(src).and_then(|s| s.source.take()) else {
            return Some(0);
        };
        let routes = self
            .nodes
            .get_mut(src)
            .map(|e| std::mem::take(&mut e.routes[kind]))
            .unwrap_or_default();
        let mut n = 0;
        let svc = SvcPacket { src, pkt, l };
        for r in &routes {
            if let State::Forward { pt } = r.state {
                n += usize::from(self.svc_sink(now, &svc, (r.sink, pt), &mut layers));
            }
        }
        if let Some(e) = self.nodes.get_mut(src) {
            e.routes[kind] = routes;
        }
        self.layers.entry(src).source = Some(layers);
        Some(n)
    }

    /// One sink of an SVC stream: its choice of layer made again if something changed, the
    /// packet on its line or skipped, the keyframe it waits for asked; whether it got it.
    fn svc_sink(
        &mut self,
        now: Instant,
        svc: &SvcPacket<'_, '_>,
        (sink, pt): (NodeId, Option<u8>),
        layers: &mut SourceLayers,
    ) -> bool {
        let SvcPacket { src, pkt, l } = *svc;
        let l = &l;
        let kind = pkt.kind;
        if self.nodes.get(sink).is_none() {
            return false;
        }
        let s = self
            .layers
            .entry(sink)
            .sink
            .get_or_insert_with(Default::default);
        let asked = s.refresh(now, src, layers).is_some();
        if let Some(layer) = s.retell(layers) {
            if let Some(k) = self.nodes.get_mut(sink) {
                k.node.layer_changed(kind, Some(&layer));
            }
        }
        let target = s.target.map(|t| (t, ALL_TEMPORAL));
        let verdict = target.map(|t| s.svc.admit(l, pkt.marker, t));
        let wants = target.is_some_and(|t| s.svc.wants_key(t.0));
        let spatial = s.svc.spatial();
        // At a picture's end the sink is told of the layer it got it at (a key picture may
        // take it up several layers within itself).
        let told = s.current;
        let moved = (spatial != told && pkt.marker).then_some(spatial).flatten();
        if moved.is_some() {
            s.current = moved;
            s.waiting = None;
        }
        let reason = s.reason.unwrap_or(SwitchReason::Start);
        if wants && (asked || (l.begins && l.spatial == 0 && l.inter_picture)) {
            self.ask_svc_keyframe(now, src, layers);
        }
        let sent = match verdict {
            Some(Verdict::Forward { marker }) => {
                let mut p = *pkt;
                p.marker = marker;
                self.deliver(now, src, sink, &p, pt)
            }
            _ => {
                self.skip(sink, pkt);
                false
            }
        };
        if let Some(id) = moved {
            self.tell_layer(sink, kind, layers.forwarded(id, reason));
        }
        sent
    }

    /// `pkt` is not for `sink`: its line skips it, and the sink is told.
    fn skip(&mut self, sink: NodeId, pkt: &Packet<'_>) {
        if let Some(e) = self.nodes.get_mut(sink) {
            let line = e.line[pkt.kind].as_mut();
            let shifted = line.is_some_and(|l| l.skip(pkt.ssrc, pkt.seq));
            e.node.skipped(pkt, shifted);
        }
    }

    /// Asks `src` (whose layers are `layers`, out of its slot) for a keyframe of its SVC
    /// stream, throttled.
    fn ask_svc_keyframe(&mut self, now: Instant, src: NodeId, layers: &mut SourceLayers) {
        if layers.ask(now, 0) {
            if let Some(e) = self.nodes.get_mut(src) {
                layers.request(&mut *e.node, 0);
            }
        }
    }
}
