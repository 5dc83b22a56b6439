//! Per packet of an SVC stream (a VP9 stream with layer indices, see [`crate::svc`]): its
//! spatial layers are the source's layers (`layers::SourceLayers`, by SID, ranked by the sizes
//! its scalability structure gives), each sink chooses among them as for simulcast, and gets
//! the packets of the layers up to its own, its line skipping the others.

use super::entry::{Route, State};
use super::layers::SourceLayers;
use super::{MediaRouter, Packet};
use crate::descriptor::{self, Vp9Layers};
use crate::simulcast::{SwitchReason, MAX_LAYERS};
use crate::svc::{Verdict, ALL_TEMPORAL};
use crate::NodeId;
use std::time::Instant;

/// Whether a video packet goes through the SVC path: VP9 with layer indices (L), of a source
/// that does not send simulcast layers.
#[inline(always)]
pub(super) fn is_svc(pkt: &Packet<'_>) -> bool {
    pkt.codec.name == crate::CodecName::Vp9
        && pkt.layer.is_none()
        && pkt.payload.first().is_some_and(|b| b & 0x20 != 0)
}

/// A packet of an SVC stream, as each of its sinks looks at it.
#[derive(Clone, Copy)]
struct SvcPacket<'a, 'b> {
    src: NodeId,
    pkt: &'a Packet<'b>,
    l: Vp9Layers,
}

impl MediaRouter {
    /// [`MediaRouter::forward`] for a packet of an SVC stream: to every sink its routes
    /// forward to, each getting it or skipping it by its layers. Returns how many got it.
    #[inline(never)]
    pub(super) fn forward_svc(&mut self, now: Instant, src: NodeId, pkt: &Packet<'_>) -> usize {
        let kind = pkt.kind;
        let Some(l) = descriptor::vp9_layers(pkt.payload) else {
            return 0;
        };
        if usize::from(l.sid) >= MAX_LAYERS {
            return 0;
        }
        let Some(e) = self.nodes.get_mut(src) else {
            return 0;
        };
        let measure = self.measure_rates;
        let layers = self
            .layers
            .entry(src)
            .source
            .get_or_insert_with(Default::default);
        layers.svc = true;
        if !layers.accepts(now, &pkt.codec) {
            return 0;
        }
        // Layered once it has two spatial layers: seen, or announced by its scalability
        // structure (`set_sizes`).
        let was_layered = layers.layers.len() > 1;
        if !layers.knows(l.sid) {
            layers.add(l.sid, Vec::new());
        }
        layers.packet(now, l.sid, pkt, l.begins_key_picture(), measure);
        if let Some((sizes, n)) = descriptor::vp9_layer_sizes(pkt.payload) {
            layers.set_sizes(&sizes, n);
        }
        if !was_layered && layers.layers.len() > 1 {
            self.newly_layered.push(src);
        }
        let undecided = |r: &Route| r.decided_for != Some(pkt.codec);
        if e.routes[kind].iter().any(undecided) {
            self.decide(now, src, kind, &pkt.codec);
        }
        let Some(mut layers) = self.layers.get_mut(src).and_then(|s| s.source.take()) else {
            return 0;
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
        n
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
        if wants && (asked || (l.begins_picture() && l.inter_picture)) {
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
