//! Per packet: a source's packet to the sinks its routes forward to, each on its line; for
//! simulcast video, to the sinks that get its layer (see `layers`).

use super::entry::{Route, State};
use super::layers::{Admit, SourceLayers};
use super::{Header, MediaRouter, Packet};
use crate::event::{FlowDir, MediaEvent};
use crate::rewrite::Rewriter;
use crate::simulcast::{ForwardedLayer, SwitchReason, MAX_LAYERS};
use crate::{MediaKind, NodeId};
use std::time::Instant;

/// A layered packet as each sink's choice sees it: the source's layers, the packet's layer,
/// whether it starts a keyframe (`None`: its codec cannot tell).
pub(super) struct Layered<'a> {
    layers: &'a mut SourceLayers,
    id: u8,
    key: Option<bool>,
}

impl MediaRouter {
    /// Forwards a packet produced by `src` to the sinks of its kind; returns how many got it.
    pub fn forward(&mut self, now: Instant, src: NodeId, pkt: &Packet<'_>) -> usize {
        let kind = pkt.kind;
        let Some(e) = self.nodes.get_mut(src) else {
            return 0;
        };
        if e.reports_flow && e.transcoder.is_none() {
            if let Some(ev) = e.flowed(FlowDir::Out, kind, now, pkt.payload.len()) {
                self.events.push_back((e.id.clone(), ev));
            }
        }
        if let Some(id) = pkt.layer.filter(|_| kind == MediaKind::Video) {
            return self.forward_layer(now, src, pkt, id);
        }
        let mut e = e;
        if kind == MediaKind::Video && super::svc::is_svc(pkt) {
            if let Some(n) = self.forward_svc(now, src, pkt) {
                return n;
            }
            // An AV1 stream of one spatial layer: the plain way.
            let Some(again) = self.nodes.get_mut(src) else {
                return 0;
            };
            e = again;
        }
        let undecided = |r: &Route| r.decided_for != Some(pkt.codec);
        if e.routes[kind].iter().any(undecided) {
            self.decide(now, src, kind, &pkt.codec);
        }
        let Some(e) = self.nodes.get_mut(src) else {
            return 0;
        };
        let routes = std::mem::take(&mut e.routes[kind]);
        let mut n = 0;
        for r in &routes {
            if let State::Forward { pt } = r.state {
                n += usize::from(self.deliver(now, src, r.sink, pkt, pt));
            }
        }
        if let Some(e) = self.nodes.get_mut(src) {
            e.routes[kind] = routes;
        }
        n
    }

    /// [`MediaRouter::forward`] for a packet of simulcast layer `id`: to the sinks that get
    /// that layer, or switch to it at this packet. Kept out of `forward`, whose plain loop
    /// stays as tight as without simulcast. The packet goes through the sinks sorted under its
    /// layer only (`SourceLayers::sinks`), sorted again when the routes, the layers or the
    /// codec changed, not per packet.
    #[inline(never)]
    fn forward_layer(&mut self, now: Instant, src: NodeId, pkt: &Packet<'_>, id: u8) -> usize {
        let kind = pkt.kind;
        if usize::from(id) >= MAX_LAYERS {
            // Beyond the layers told apart: never chosen.
            return 0;
        }
        let Some(e) = self.nodes.get_mut(src) else {
            return 0;
        };
        let key = crate::starts_keyframe(pkt.codec.name, pkt.payload);
        let measure = self.measure_rates;
        let layers = self
            .layers
            .entry(src)
            .source
            .get_or_insert_with(Default::default);
        if !layers.knows(id) && layers.add(id, e.node.layer_names(kind)) {
            self.newly_layered.push(src);
        }
        if !layers.accepts(now, &pkt.codec) {
            return 0;
        }
        layers.packet(now, id, pkt, key == Some(true), measure);
        // Whatever makes a route undecided (a route added, the sink's codecs or the source's
        // settings changed, a transcoder gone, the codec taken) marks the sinks to sort too:
        // the routes are looked at only then, not per packet.
        let due = layers.resort_at.is_some_and(|t| now >= t);
        let sort = due || layers.sorted != Some(layers.generation);
        // Routes decided while the layers are in their slot: a decision may ask keyframes of
        // them (a new transcoder's), or see whether the source is layered.
        let undecided = |r: &Route| r.decided_for != Some(pkt.codec);
        if sort && e.routes[kind].iter().any(undecided) {
            self.decide(now, src, kind, &pkt.codec);
        }
        // Out of its slot while its sinks choose (they are in the same table). Nothing below
        // changes routes or asks keyframes of the source as a whole.
        let Some(mut layers) = self.layers.get_mut(src).and_then(|s| s.source.take()) else {
            return 0;
        };
        if sort {
            self.sort_sinks(now, src, kind, &mut layers, (id, key));
        }
        let list = std::mem::take(&mut layers.sinks[usize::from(id)]);
        let mut n = 0;
        for &(sink, pt) in &list {
            let mut l = Layered {
                layers: &mut layers,
                id,
                key,
            };
            let Some(switched) = self.admit_layer(now, src, sink, kind, &mut l) else {
                continue;
            };
            if !self.deliver(now, src, sink, pkt, pt) {
                continue;
            }
            n += 1;
            if let Some(reason) = switched {
                self.tell_layer(sink, kind, layers.forwarded(id, reason));
            }
        }
        layers.sinks[usize::from(id)] = list;
        self.layers.entry(src).source = Some(layers);
        n
    }

    /// Sorts `src`'s sinks of layered `kind` (its routes decided) by the layer each gets or
    /// waits for, each sink's choice made again first (see `SinkLayer::refresh`); asks the
    /// keyframes new choices need, but not of layer `id` when the packet in hand (`key`) is its
    /// keyframe.
    fn sort_sinks(
        &mut self,
        now: Instant,
        src: NodeId,
        kind: MediaKind,
        layers: &mut SourceLayers,
        (id, key): (u8, Option<bool>),
    ) {
        for list in &mut layers.sinks {
            list.clear();
        }
        layers.resort_at = None;
        for i in 0.. {
            let Some(r) = self
                .nodes
                .get(src)
                .and_then(|e| e.routes[kind].get(i).copied())
            else {
                break;
            };
            let State::Forward { pt } = r.state else {
                continue;
            };
            if self.nodes.get(r.sink).is_none() {
                continue;
            }
            let s = self
                .layers
                .entry(r.sink)
                .sink
                .get_or_insert_with(Default::default);
            let ask = s.refresh(now, src, layers);
            // Its layer's size or rank changed without a switch: getStats is told.
            if let Some(layer) = s.retell(layers) {
                if let Some(k) = self.nodes.get_mut(r.sink) {
                    k.node.layer_changed(kind, Some(&layer));
                }
            }
            let (current, target) = (s.current, s.target.filter(|t| Some(*t) != s.current));
            for l in [current, target].into_iter().flatten() {
                if let Some(list) = layers.sinks.get_mut(usize::from(l)) {
                    list.push((r.sink, pt));
                }
            }
            // Waited too long for its target's keyframe: any layer's that flows will do.
            match s.fallback_at() {
                Some(t) if now >= t => {
                    let (live, n) = layers.live();
                    for rank in (0..n).filter(|r| live[*r]) {
                        let other = layers.id_at(rank as u8).filter(|l| target != Some(*l));
                        if let Some(list) = other.and_then(|l| layers.sinks.get_mut(usize::from(l)))
                        {
                            list.push((r.sink, pt));
                        }
                    }
                }
                Some(t) => layers.resort_at = Some(layers.resort_at.map_or(t, |x| x.min(t))),
                None => {}
            }
            if let Some(t) = ask.filter(|t| !(*t == id && key == Some(true))) {
                self.ask_layer_keyframe(now, src, layers, t);
            }
        }
        layers.sorted = Some(layers.generation);
    }

    /// Pushes `pkt` of `src` to `sink` on its line; whether it went. Inlined into each loop
    /// over the sinks (the per-sink cost of the plain path: a call each measured 3 ns more).
    #[inline(always)]
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        src: NodeId,
        sink: NodeId,
        pkt: &Packet<'_>,
        pt: Option<u8>,
    ) -> bool {
        let Some(e) = self.nodes.get_mut(sink) else {
            return false;
        };
        let kind = pkt.kind;
        if e.awaits_key[kind] && e.transcoder.is_none() {
            if crate::starts_keyframe(pkt.codec.name, pkt.payload) == Some(false) {
                self.ask_keyframe(now, src, kind);
                return false;
            }
            e.awaits_key[kind] = false;
        }
        // A transcoder gets its source's own numbers, but a layered source's change at each
        // switch: those go on its line.
        let header = if e.transcoder.is_some() && pkt.layer.is_none() {
            Header {
                seq: pkt.seq,
                ts: pkt.ts,
                ssrc: pkt.ssrc,
                pt,
            }
        } else {
            let line = e.line[kind].get_or_insert_with(|| {
                let ssrc = (sink.index() as u32) ^ 0x5f10_0000 ^ kind.index() as u32;
                Rewriter::new(pkt.codec.clock_rate, ssrc, pkt.seq & 0x3fff, pkt.ts)
            });
            let Some(rw) = line.rewrite(now, pkt.ssrc, pkt.seq, pkt.ts) else {
                return false;
            };
            Header {
                seq: rw.seq,
                ts: rw.ts,
                ssrc: rw.ssrc,
                pt,
            }
        };
        e.node.push(now, pkt, header);
        if !std::mem::replace(&mut e.pushed, true) {
            self.pushed.push(sink);
        }
        if e.reports_flow && e.transcoder.is_none() {
            if let Some(t) = pkt.entered {
                e.latency[kind].add(t.elapsed());
                if let Some(board) = &self.latency {
                    board.set(&e.id, e.latency);
                }
            }
            if let Some(ev) = e.flowed(FlowDir::In, kind, now, pkt.payload.len()) {
                self.events.push_back((e.id.clone(), ev));
            }
        }
        true
    }

    /// Whether a layered packet goes to `sink` (`Some`), and whether the sink switches layers
    /// with it (`Some(Some(reason))`); asks the keyframe a sink waiting for one needs.
    fn admit_layer(
        &mut self,
        now: Instant,
        src: NodeId,
        sink: NodeId,
        kind: MediaKind,
        l: &mut Layered<'_>,
    ) -> Option<Option<SwitchReason>> {
        let e = self.nodes.get_mut(sink)?;
        let s = self.layers.get_mut(sink)?.sink.as_mut()?;
        if s.source != Some(src) {
            return None;
        }
        let current = s.current.and_then(|c| l.layers.layers.get(usize::from(c)));
        let admit = s.admit(now, l.id, l.key, current.is_some_and(|c| c.live));
        let mut switched = None;
        if let Admit::Switch(reason) = admit {
            if let Some(line) = e.line[kind].as_mut() {
                line.resync();
            }
            e.awaits_key[kind] = false;
            switched = Some(reason);
            // It leaves the list of the layer it got.
            l.layers.sorted = None;
        }
        // Its layer, but it waits for a keyframe (switched from another source).
        let stale = admit == Admit::Deliver && e.awaits_key[kind] && l.key == Some(false);
        if admit == Admit::AwaitKey || stale {
            self.ask_layer_keyframe(now, src, l.layers, l.id);
        }
        let goes = matches!(admit, Admit::Deliver | Admit::Switch(_)) && !stale;
        goes.then_some(switched)
    }

    /// Asks `src` (whose layers are `layers`, out of its slot) for a keyframe of its layer
    /// `id`, throttled per layer.
    fn ask_layer_keyframe(&mut self, now: Instant, src: NodeId, layers: &mut SourceLayers, id: u8) {
        if layers.ask(now, id) {
            if let Some(e) = self.nodes.get_mut(src) {
                layers.request(&mut *e.node, id);
            }
        }
    }

    /// Ends a pass over the router's inputs: each node pushed to since the last pass is
    /// [flushed](super::Node::flush) once (a proxy of a media worker sends what it gathered, audio
    /// with video, in one datagram). The driver of the router calls it after each batch of
    /// input it handles.
    pub fn flush(&mut self) {
        let mut pushed = std::mem::take(&mut self.pushed);
        for n in pushed.drain(..) {
            if let Some(e) = self.nodes.get_mut(n) {
                e.pushed = false;
                e.node.flush();
            }
        }
        // Its room is kept: a pass allocates nothing.
        self.pushed = pushed;
    }
}

impl MediaRouter {
    /// Tells `sink` of the layer it gets now: its sink's record, its node and the
    /// `LayerChanged` event (simulcast and SVC alike).
    pub(super) fn tell_layer(&mut self, sink: NodeId, kind: MediaKind, layer: ForwardedLayer) {
        let Some(e) = self.nodes.get_mut(sink) else {
            return;
        };
        if let Some(s) = self.layers.get_mut(sink).and_then(|s| s.sink.as_mut()) {
            s.told = Some(layer.clone());
        }
        e.node.layer_changed(kind, Some(&layer));
        let ev = MediaEvent::LayerChanged { kind, layer };
        self.events.push_back((e.id.clone(), ev));
    }
}
