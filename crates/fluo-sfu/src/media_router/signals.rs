//! What travels besides packets: keyframe requests (upstream, throttled), end of stream,
//! output settings and negotiated codecs that change, and the timers of deferred keyframe
//! requests and idle flows.

use super::entry::State;
use super::{MediaRouter, FLOW_IDLE};
use crate::event::{FlowDir, MediaEvent};
use crate::settings::OutputSettings;
use crate::simulcast::{LayerLimits, SwitchReason};
use crate::{MediaKind, NodeId};
use std::time::{Duration, Instant};

impl MediaRouter {
    /// [`KEYFRAME_INTERVAL`]; a request inside the interval goes when it ends.
    pub fn ask_keyframe(&mut self, now: Instant, node: NodeId, kind: MediaKind) {
        if kind != MediaKind::Video {
            return;
        }
        let Some(e) = self.nodes.get_mut(node) else {
            return;
        };
        if let Some(layers) = self.layers.get_mut(node).and_then(|s| s.source.as_mut()) {
            if layers.svc {
                // One SVC stream: one keyframe.
                if layers.ask(now, 0) {
                    layers.request(&mut *e.node, 0);
                }
                return;
            }
            // Simulcast: each layer that flows, throttled per layer.
            for id in 0..layers.layers.len() as u8 {
                if layers.layers[usize::from(id)].live && layers.ask(now, id) {
                    e.node.request_layer_keyframe(kind, id);
                }
            }
            return;
        }
        if e.keyframe.handle_request(now) {
            e.node.request_keyframe(kind);
        }
    }

    /// Sets the minimum spacing of the keyframe requests `node` is asked to send upstream
    /// (its own [`KeyframeThrottle`](crate::KeyframeThrottle); [`KEYFRAME_INTERVAL`] until
    /// then): a cascade relay's receiving end asks its edge at most once a second. A request
    /// inside the interval still goes when it ends.
    pub fn set_keyframe_interval(&mut self, node: NodeId, interval: Duration) {
        if let Some(e) = self.nodes.get_mut(node) {
            e.keyframe = crate::KeyframeThrottle::new(interval);
        }
    }

    /// The layer of `src`'s simulcast video that `sink` gets (or is about to get), if `src` is
    /// layered and feeds it.
    fn layer_of(&self, src: NodeId, sink: NodeId) -> Option<u8> {
        self.layers.get(src)?.source.as_ref()?;
        let l = self.layers.get(sink)?.sink.as_ref()?;
        (l.source == Some(src))
            .then_some(l.current.or(l.target))
            .flatten()
    }

    /// Sets what `sink` allows itself of simulcast `kind` (see [`crate::simulcast`]): it
    /// takes effect at the next packet of a layered source feeding it, whose keyframe of the
    /// newly chosen layer is asked at once. Sinks start without limits (the top layer).
    pub fn set_layer_limits(&mut self, sink: NodeId, kind: MediaKind, limits: LayerLimits) {
        if kind != MediaKind::Video {
            return;
        }
        if self.nodes.get(sink).is_some() {
            let s = self
                .layers
                .entry(sink)
                .sink
                .get_or_insert_with(Default::default);
            if s.selector.set_limits(limits) {
                s.changed = Some(SwitchReason::Limit);
                self.sources_resort(sink, kind);
            }
        }
    }

    /// Sets the highest point of simulcast `kind` that `sink`'s bandwidth allows (`None`: no
    /// estimate), a place in what [`MediaRouter::layer_rates`] gives (a layer, or of an SVC
    /// stream with temporal layers a spatial layer at a temporal layer): one more ceiling of
    /// its choice, as [`MediaRouter::set_layer_limits`].
    pub fn set_layer_bandwidth_cap(&mut self, sink: NodeId, kind: MediaKind, cap: Option<u8>) {
        if kind != MediaKind::Video {
            return;
        }
        let src = (self.layers.get(sink).and_then(|s| s.sink.as_ref())).and_then(|s| s.source);
        let layers = src.and_then(|s| self.layers.get(s)?.source.as_ref());
        let point = cap.map(|p| layers.map_or((p, None), |l| l.point(p)));
        if self.nodes.get(sink).is_some() {
            let s = self
                .layers
                .entry(sink)
                .sink
                .get_or_insert_with(Default::default);
            if s.selector.set_bandwidth_point(point) {
                s.changed = Some(SwitchReason::Bandwidth);
                self.sources_resort(sink, kind);
            }
        }
    }

    /// Whether `src` sends an SVC stream of more than one spatial layer (its video's packets
    /// carry layer indices, see [`crate::svc`]): its viewers each get the layers they can
    /// take, as a simulcast publisher's do, so its viewers' bandwidth does not bound it. One
    /// spatial layer (`L1T3`: temporal layers only, which no viewer is capped to yet) leaves
    /// its viewers nothing lower to take: they bound it, as a plain publisher's do.
    pub fn sends_svc(&self, src: NodeId) -> bool {
        let layers = self.layers.get(src).and_then(|s| s.source.as_ref());
        layers.is_some_and(|l| l.svc && l.layers.len() > 1)
    }

    /// Whether `sink` gets its video from a layered source: a simulcast source of two layers
    /// or more, or an SVC stream of two spatial layers or more (known once they flow or were
    /// announced). Only there does a viewer's bandwidth choose anything (its layer); a plain
    /// source's viewers bound it by their REMB instead (`--bwe auto`, docs/simulcast.md).
    pub fn gets_layered(&self, sink: NodeId) -> bool {
        let Some(k) = self.nodes.get(sink) else {
            return false;
        };
        k.sources[MediaKind::Video].iter().any(|src| {
            let layers = self.layers.get(*src).and_then(|s| s.source.as_ref());
            layers.is_some_and(|l| l.layers.len() > 1)
        })
    }

    /// A source that became layered since the last call (its second simulcast layer or SVC
    /// spatial layer was seen; see [`MediaRouter::gets_layered`]), or a layered one whose
    /// video a route started forwarding (a sink connected to it, or moved to it from another
    /// source: at the first packet the route is decided for), for its viewers' estimates to
    /// start at once (`--bwe auto`). Nothing is allocated while none did.
    pub fn take_newly_layered(&mut self) -> Option<NodeId> {
        self.newly_layered.pop()
    }

    /// Measures the bitrates of layered sources' layers from now on ([`MediaRouter::layer_rates`]):
    /// a viewer's bandwidth is estimated (`--bwe on`). Off until then: nothing is counted per
    /// packet.
    pub fn measure_layer_rates(&mut self) {
        self.measure_rates = true;
    }

    /// The bitrates of the layers of the simulcast source whose `kind` `sink` gets, by rank
    /// (lowest picture first; see `RATE_WINDOW`), of an SVC stream with temporal layers by
    /// (rank, temporal layer), cumulative (`SourceLayers::rates`: the points
    /// [`MediaRouter::set_layer_bandwidth_cap`] takes): `None` for a layer that does not flow or is
    /// not measured yet (none are unless [`MediaRouter::measure_layer_rates`] was called), and
    /// whether every layer that flows is measured (else a higher cap chosen now could change
    /// again as soon as the rest is; a lower one is safe). `None` altogether when `sink` gets
    /// no layered source or before its source's layers settled. Only the points up to the
    /// highest spatial layer `sink` can decode (an AV1 SVC viewer without the dependency
    /// descriptor: the lowest, `LayerSelector::set_decodable`): its estimate neither chooses
    /// nor probes for a layer it would not be sent.
    pub fn layer_rates(&self, sink: NodeId, kind: MediaKind) -> Option<(Vec<Option<u64>>, bool)> {
        if kind != MediaKind::Video {
            return None;
        }
        let s = self.layers.get(sink)?.sink.as_ref()?;
        let layers = self.layers.get(s.source?)?.source.as_ref()?;
        if !layers.settled {
            return None;
        }
        let mut rates = layers.rates();
        if let Some(top) = s.selector.decodable() {
            let points = (usize::from(top) + 1) * usize::from(layers.ladder());
            rates.truncate(points);
        }
        Some((rates, !layers.any_live_unmeasured()))
    }

    /// The sources of `sink`'s `kind` sort their sinks again (its limits changed).
    fn sources_resort(&mut self, sink: NodeId, kind: MediaKind) {
        for i in 0.. {
            let Some(src) = (self.nodes.get(sink)).and_then(|k| k.sources[kind].get(i).copied())
            else {
                return;
            };
            self.routes_changed(src);
        }
    }

    /// `sink` needs a keyframe of `kind` (its peer lost one, it just connected): whatever
    /// feeds it is asked, a transcoder's encoder when it is fed through one.
    pub fn request_keyframe(&mut self, now: Instant, sink: NodeId, kind: MediaKind) {
        // By index: a viewer's PLI allocates nothing.
        for i in 0.. {
            let Some(src) = self
                .nodes
                .get(sink)
                .and_then(|k| k.sources[kind].get(i).copied())
            else {
                return;
            };
            let via = self.nodes.get(src).and_then(|s| {
                let r = s.routes[kind].iter().find(|r| r.sink == sink)?;
                match r.state {
                    State::Via(t) => Some(t),
                    _ => None,
                }
            });
            match (via, self.layer_of(src, sink)) {
                (None, Some(id)) => {
                    let source = self.layers.get_mut(src).and_then(|s| s.source.as_mut());
                    if let Some(l) = source {
                        if let Some(e) = self.nodes.get_mut(src).filter(|_| l.ask(now, id)) {
                            l.request(&mut *e.node, id);
                        }
                    }
                }
                _ => self.ask_keyframe(now, via.unwrap_or(src), kind),
            }
        }
    }

    /// `src` ended its stream: every node it feeds, directly or through its transcoders, is
    /// told once.
    pub fn end_of_stream(&mut self, src: NodeId) {
        let Some(e) = self.nodes.get(src) else {
            return;
        };
        let mut sinks: Vec<NodeId> = vec![];
        for kind in MediaKind::ALL {
            for r in &e.routes[kind] {
                let transcoder = self
                    .nodes
                    .get(r.sink)
                    .is_some_and(|k| k.transcoder.is_some());
                if !transcoder && !sinks.contains(&r.sink) {
                    sinks.push(r.sink);
                }
            }
        }
        for s in sinks {
            if let Some(k) = self.nodes.get_mut(s) {
                k.node.end_of_stream();
            }
        }
    }

    /// The output settings of `node` (the element's forced formats and encoder bitrates).
    /// When they change, its transcoders go (to be made again with the new bitrates) and its
    /// routes are decided again.
    pub fn set_output_settings(&mut self, now: Instant, node: NodeId, settings: OutputSettings) {
        let Some(e) = self.nodes.get_mut(node) else {
            return;
        };
        if e.settings == Some(settings) {
            return;
        }
        if e.settings.replace(settings).is_none() {
            // The first settings of a node just added: nothing was made with others.
            for r in e.routes.iter_mut().flatten() {
                r.decided_for = None;
            }
            self.routes_changed(node);
            return;
        }
        let ours: Vec<NodeId> = (self.transcoders.iter())
            .filter(|((s, _, _), _)| *s == node)
            .map(|(_, t)| *t)
            .collect();
        for t in ours {
            self.drop_transcoder(t, true);
        }
        if let Some(e) = self.nodes.get_mut(node) {
            for r in e.routes.iter_mut().flatten() {
                r.decided_for = None;
            }
        }
        self.routes_changed(node);
        self.mismatch_cleared_downstream(node);
        self.ask_keyframe(now, node, MediaKind::Video);
    }

    /// The codecs `sink` takes changed (a WebRTC peer's answer, an RtpEndpoint's SDP): its
    /// routes are decided again at their sources' next packets.
    pub fn caps_changed(&mut self, sink: NodeId) {
        let Some(k) = self.nodes.get_mut(sink) else {
            return;
        };
        k.mismatch = [false; 2];
        for kind in MediaKind::ALL {
            let Some(k) = self.nodes.get(sink) else {
                return;
            };
            for src in k.sources[kind].clone() {
                let Some(r) = self.nodes.get_mut(src).and_then(|s| s.route_to(kind, sink)) else {
                    continue;
                };
                r.decided_for = None;
                self.routes_changed(src);
            }
        }
    }

    pub(super) fn mismatch_cleared_downstream(&mut self, src: NodeId) {
        let Some(e) = self.nodes.get(src) else {
            return;
        };
        let sinks: Vec<(MediaKind, NodeId)> = MediaKind::ALL
            .into_iter()
            .flat_map(|kind| e.routes[kind].iter().map(move |r| (kind, r.sink)))
            .collect();
        for (kind, s) in sinks {
            if let Some(k) = self.nodes.get_mut(s) {
                k.mismatch[kind] = false;
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (_, e) in self.nodes.iter() {
            let flows = e.flow.iter().flatten();
            let idle = flows
                .filter(|(_, flowing)| *flowing)
                .filter_map(|(last, _)| last.map(|t| t + FLOW_IDLE + Duration::from_millis(1)));
            for t in idle.chain(e.keyframe.poll_timeout()) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let layers = self
            .layers
            .iter()
            .filter_map(|s| s.source.as_ref()?.poll_timeout());
        layers.chain(next).min()
    }

    /// Deferred keyframe requests that are due go; flows idle for [`FLOW_IDLE`] are reported
    /// NOT_FLOWING.
    pub fn handle_timeout(&mut self, now: Instant) {
        let MediaRouter {
            nodes,
            events,
            layers,
            ..
        } = self;
        for (n, slot) in layers.iter_mut() {
            let Some(source) = slot.source.as_mut() else {
                continue;
            };
            for id in 0..source.layers.len() {
                if source.layers[id].keyframe.handle_timeout(now) {
                    if let Some(e) = nodes.get_mut(n) {
                        source.request(&mut *e.node, id as u8);
                    }
                }
            }
        }
        for (_, e) in nodes.iter_mut() {
            if e.keyframe.handle_timeout(now) {
                e.node.request_keyframe(MediaKind::Video);
            }
            for dir in FlowDir::ALL {
                for kind in MediaKind::ALL {
                    let f = &mut e.flow[dir.index()][kind];
                    let idle =
                        f.0.is_some_and(|t| now.saturating_duration_since(t) > FLOW_IDLE);
                    if f.1 && idle {
                        f.1 = false;
                        let ev = MediaEvent::Flow {
                            dir,
                            kind,
                            flowing: false,
                        };
                        events.push_back((e.id.clone(), ev));
                    }
                }
            }
        }
    }
}
