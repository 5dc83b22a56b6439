//! Per packet of an SVC stream (a VP9 stream with layer indices, or an AV1 stream whose
//! dependency descriptors name more than one spatial layer; see [`crate::svc`]): its spatial
//! layers are the source's layers (`layers::SourceLayers`, by spatial id, ranked by the sizes
//! its scalability structure or template dependency structure gives), each sink chooses among
//! them as for simulcast, and gets the packets of the layers up to its own, its line skipping
//! the others.

use super::entry::{Route, State};
use super::layers::{SinkLayer, SourceLayers};
use super::{MediaRouter, Packet};
use crate::descriptor;
use crate::simulcast::{ForwardedLayer, SwitchReason, MAX_LAYERS};
use crate::svc::{LayerPacket, Order, Verdict, ALL_TEMPORAL};
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
    /// The packets missing just before it, when their layers can be told.
    hole: Option<Hole>,
    /// It is older than one already seen (reordered, or resent after a NACK).
    late: bool,
}

/// Packets of an SVC stream missing before the one that came (lost on the way in, or late)
/// whose layers their neighbours tell: they lie within one picture, between the packet
/// before them and the one after, so their TID is the picture's and their SID at least the
/// one before's (above it when that one ended its layer frame) and at most the one after's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hole {
    /// The first missing sequence number, and how many.
    first: u16,
    count: u16,
    /// The lowest spatial layer they can be of, and their temporal layer.
    sid: u8,
    tid: u8,
}

/// Most packets missing in a row that a hole is told of (a picture's upper layers).
const HOLE_MOST: u16 = 64;

/// The hole before packet `l`, given the newest packet before it (`last`), if its layers
/// can be told (see [`Hole`]).
fn hole(last: Option<LayerPacket>, l: &LayerPacket) -> Option<Hole> {
    let prev = last?;
    let missing = l.seq.wrapping_sub(prev.seq).wrapping_sub(1);
    let begins_picture = l.begins && l.spatial == 0;
    let same_picture = prev.picture == l.picture && prev.temporal == l.temporal && !begins_picture;
    if !(1..=HOLE_MOST).contains(&missing) || !same_picture {
        return None;
    }
    let lowest = prev.spatial + u8::from(prev.ends);
    let highest = if l.begins {
        l.spatial.checked_sub(1)?
    } else {
        l.spatial
    };
    (lowest <= highest).then_some(Hole {
        first: prev.seq.wrapping_add(1),
        count: missing,
        sid: lowest,
        tid: l.temporal,
    })
}

/// At the end of a picture it got (`end`), what sink `s` is to be told: the spatial layer it
/// got the picture at when it moved (a key picture may take it up several layers within
/// itself), or its layer again when its temporal layer changed; and the temporal layer it is
/// held at (`None`: every one of the `n` the source sends).
fn news(s: &mut SinkLayer, end: bool, n: u8) -> (Option<u8>, Option<u8>) {
    let spatial = s.svc.spatial();
    let temporal = Some(s.svc.temporal()).filter(|t| t.saturating_add(1) < n);
    let told = s.current;
    let moved = (spatial != told && end).then_some(spatial).flatten();
    let told_t = s.told.as_ref().map(|t| t.temporal);
    let retold =
        (told.filter(|_| end && moved.is_none())).filter(|_| told_t.is_some_and(|t| t != temporal));
    if moved.is_some() {
        s.current = moved;
        s.waiting = None;
    }
    (moved.or(retold), temporal)
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
            return Ok((LayerPacket::vp9(&l, (pkt.ssrc, pkt.seq), pkt.ts), sizes));
        }
        let slot = self.layers.entry(src);
        let was_svc = slot.source.as_ref().is_some_and(|l| l.svc);
        let dd = slot.dd.get_or_insert_with(Default::default);
        let Some((l, new)) = pkt.dd.and_then(|b| dd.read(b, (pkt.ssrc, pkt.seq), pkt.ts)) else {
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
        // Layered once it has two spatial layers: seen, or announced by its scalability
        // structure (`set_sizes`).
        let was_layered = layers.layers.len() > 1;
        if !layers.knows(l.spatial) {
            layers.add(l.spatial, Vec::new());
        }
        // Newer than the newest so far, or a restart (a new SSRC, or after a run of late ones):
        // only a late packet leaves the sinks' layers as they are, and a hole is told only
        // within one run of the numbering.
        let order = layers.svc_newest.see(pkt.ssrc, pkt.seq);
        let late = order == Order::Late;
        let hole = hole(layers.svc_last, &l).filter(|_| order == Order::Newer);
        if !late {
            layers.svc_last = Some(l);
        }
        let key = l.begins && l.spatial == 0 && !l.inter_picture;
        layers.packet(now, l.spatial, pkt, key, measure);
        layers.temporal_packet(now, (l.spatial, l.temporal), pkt.payload.len(), measure);
        if let Some((sizes, n)) = sizes {
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
            return Some(0);
        };
        let routes = self
            .nodes
            .get_mut(src)
            .map(|e| std::mem::take(&mut e.routes[kind]))
            .unwrap_or_default();
        let mut n = 0;
        let svc = SvcPacket {
            src,
            pkt,
            l,
            hole,
            late,
        };
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
        let SvcPacket {
            src,
            pkt,
            l,
            hole,
            late,
        } = *svc;
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
        // A hole of packets it would have skipped: its line skips them too (finding 2 of the
        // SVC review: before, each left a number the viewer took for a loss).
        let fill = hole.filter(|h| s.svc.would_skip(h.sid, h.tid));
        if let Some(layer) = s.retell(layers) {
            if let Some(k) = self.nodes.get_mut(sink) {
                k.node.layer_changed(kind, Some(&layer));
            }
        }
        let target = s.target.map(|t| {
            let rank = layers.rank_of(t).unwrap_or(t);
            (t, s.selector.temporal_ceiling(rank).unwrap_or(ALL_TEMPORAL))
        });
        // A late packet changes none of its layers (the filter tells it by the same rule,
        // `svc::Newest`).
        let verdict = target.map(|t| s.svc.admit(l, pkt.marker, t));
        let wants = !late && target.is_some_and(|t| s.svc.wants_key(t.0));
        let (news, temporal) = news(s, pkt.marker && !late, layers.temporal_layers);
        let reason = s.reason.unwrap_or(SwitchReason::Start);
        if wants && (asked || (l.begins && l.spatial == 0 && l.inter_picture)) {
            self.ask_svc_keyframe(now, src, layers);
        }
        if let Some(h) = fill {
            self.skip_hole(sink, pkt, h);
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
        if let Some(id) = news {
            let layer = layers.forwarded(id, reason);
            self.tell_layer(sink, kind, ForwardedLayer { temporal, ..layer });
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

    /// The packets of hole `h` before `pkt` are not for `sink`: its line skips them, as if
    /// they had come.
    fn skip_hole(&mut self, sink: NodeId, pkt: &Packet<'_>, h: Hole) {
        for i in 0..h.count {
            let missing = Packet {
                seq: h.first.wrapping_add(i),
                ..*pkt
            };
            self.skip(sink, &missing);
        }
    }

    /// `sink`'s route of `kind` was decided for AV1: whether it gets the dependency
    /// descriptor is noted, for its choice of spatial layer of an AV1 SVC stream (without it,
    /// the lowest: [`SwitchReason::NoDependencyDescriptor`]).
    pub(super) fn note_descriptor(&mut self, sink: NodeId, kind: crate::MediaKind) {
        let Some(k) = self.nodes.get(sink).filter(|k| k.transcoder.is_none()) else {
            return;
        };
        let without = !k.node.reads_dependency_descriptor(kind);
        let slot = self.layers.get_mut(sink).and_then(|s| s.sink.as_mut());
        match slot {
            Some(s) => s.no_descriptor = without,
            None if without => {
                let s = self
                    .layers
                    .entry(sink)
                    .sink
                    .get_or_insert_with(Default::default);
                s.no_descriptor = true;
            }
            None => {}
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
