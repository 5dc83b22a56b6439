//! The media router: every element's media face is a [`Node`] with a typed generational
//! [`NodeId`]; `connect()` edges are routes from a source node to sink nodes, per media kind.
//!
//! Per packet ([`MediaRouter::forward`]) the router walks the source's routes of the packet's
//! kind and pushes the packet, borrowed, to each sink whose route forwards, with the header of
//! that sink's line (one SSRC, continuous sequence numbers and timestamps per sink and kind,
//! across source switches and seeks) and the payload type negotiation chose. No string ids,
//! no hashing, no allocation, no decision.
//!
//! What a route does is decided by [`crate::negotiate`] once per change: when the route
//! appears, when the source's codec changes (the first packet in another codec), when the
//! source's output settings change ([`MediaRouter::set_output_settings`]) or the sink's
//! negotiated codecs change ([`MediaRouter::caps_changed`]). A route decided for a transcoder
//! feeds the sink through a transcoder node, shared per (source, kind, target codec) and
//! removed with its last sink; a route that cannot be served raises one CODEC_MISMATCH error
//! on the sink and stays quiet until something changes.
//!
//! Keyframe requests go upstream, throttled per source ([`KEYFRAME_INTERVAL`]); a sink fed
//! through a transcoder asks the transcoder's encoder. Media-flow events and input latencies
//! are kept for the nodes that [report flow](Node::reports_flow). Nothing here reads the clock
//! or does IO: time is passed in, events are drained with [`MediaRouter::poll_event`].

mod entry;
mod node;
#[cfg(test)]
mod tests;

pub use node::{Header, Node, Packet, TranscoderMaker};

use entry::{Entry, Route, State};

use crate::event::{FlowDir, MediaError, MediaEvent};
use crate::ids::Slab;
use crate::latency::LatencyBoard;
use crate::negotiate::{self, Decision, Forced, Impossible, SinkCaps};
use crate::port::Codec;
use crate::rewrite::Rewriter;
use crate::settings::OutputSettings;
use crate::{MediaKind, NodeId};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Minimum spacing of keyframe requests to one source.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

/// How long without packets before a flow is reported NOT_FLOWING.
pub const FLOW_IDLE: Duration = Duration::from_secs(2);

/// Errors of router operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeError {
    /// The node id is unknown or was removed.
    UnknownNode,
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unknown router node")
    }
}

impl std::error::Error for NodeError {}

/// The router. See the [module docs](self).
pub struct MediaRouter {
    nodes: Slab<NodeId, Entry>,
    /// Transcoders in use, by (source, kind, target codec).
    transcoders: HashMap<(NodeId, MediaKind, Codec), NodeId>,
    maker: Option<Arc<dyn TranscoderMaker>>,
    events: VecDeque<(String, MediaEvent)>,
    /// Where the input latencies of the nodes that report flow are published (getStats).
    latency: Option<Arc<LatencyBoard>>,
}

impl Default for MediaRouter {
    fn default() -> Self {
        Self::new()
    }
}

impl MediaRouter {
    /// An empty router, without transcoders.
    pub fn new() -> MediaRouter {
        MediaRouter {
            nodes: Slab::new(),
            transcoders: HashMap::new(),
            maker: None,
            events: VecDeque::new(),
            latency: None,
        }
    }

    /// Publishes the input latencies of the nodes that [report flow](Node::reports_flow) on
    /// `board`, by element id, as they are measured (one sampled packet in
    /// [`latency::SAMPLE_EVERY`](crate::latency::SAMPLE_EVERY)).
    pub fn set_latency_board(&mut self, board: Arc<LatencyBoard>) {
        self.latency = Some(board);
    }

    /// Makes transcoders available: a sink that cannot take its source's codec (or must get
    /// a format forced on the source) is fed through one. Takes effect for routes decided
    /// from now on.
    pub fn set_transcoders(&mut self, maker: Arc<dyn TranscoderMaker>) {
        self.maker = Some(maker);
    }

    /// Adds the element `id`'s node.
    pub fn add_node(&mut self, id: &str, node: Box<dyn Node>) -> NodeId {
        self.nodes.insert(Entry::new(id.to_string(), node))
    }

    /// Adds the element `id`'s node, made knowing its node id (what it produces enters the
    /// router with it).
    pub fn add_node_with(
        &mut self,
        id: &str,
        make: impl FnOnce(NodeId) -> Box<dyn Node>,
    ) -> NodeId {
        let node = make(self.nodes.next_key());
        self.add_node(id, node)
    }

    /// The element id of a node.
    pub fn element_id(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(node).map(|e| e.id.as_str())
    }

    /// The node itself.
    pub fn node_mut(&mut self, node: NodeId) -> Option<&mut (dyn Node + 'static)> {
        self.nodes.get_mut(node).map(|e| &mut *e.node)
    }

    /// Number of transcoders running.
    pub fn transcoder_count(&self) -> usize {
        self.transcoders.len()
    }

    /// The sinks `src`'s media of `kind` goes to as it is (not through a transcoder), as last
    /// decided.
    pub fn forwarding_to(&self, src: NodeId, kind: MediaKind) -> impl Iterator<Item = NodeId> + '_ {
        let routes = self.nodes.get(src).map_or(&[][..], |e| &e.routes[kind][..]);
        routes
            .iter()
            .filter(|r| matches!(r.state, State::Forward { .. }))
            .map(|r| r.sink)
    }

    /// The node's average input latency per kind (`[audio, video]`), in nanoseconds: the
    /// time timed packets took from entering the router to being pushed to it.
    pub fn input_latency(&self, node: NodeId) -> [Option<f64>; 2] {
        self.nodes
            .get(node)
            .map_or([None, None], |e| e.latency.map(|l| l.get()))
    }

    /// Removes a node with its routes both ways (and the transcoders only it needed).
    pub fn remove_node(&mut self, node: NodeId) -> Option<Box<dyn Node>> {
        let e = self.nodes.get(node)?;
        if e.transcoder.is_some() {
            return self.drop_transcoder(node, false);
        }
        let ours: Vec<NodeId> = (self.transcoders.iter())
            .filter(|((s, _, _), _)| *s == node)
            .map(|(_, t)| *t)
            .collect();
        for t in ours {
            self.drop_transcoder(t, false);
        }
        for kind in MediaKind::ALL {
            let e = self.nodes.get(node)?;
            let sources = e.sources[kind].clone();
            let sinks: Vec<NodeId> = e.routes[kind].iter().map(|r| r.sink).collect();
            for src in sources {
                let _ = self.disconnect(src, kind, node);
            }
            for sink in sinks {
                let _ = self.disconnect(node, kind, sink);
            }
        }
        let e = self.nodes.remove(node)?;
        if let Some(board) = &self.latency {
            board.forget(&e.id);
        }
        Some(e.node)
    }

    /// Starts `src`'s media of `kind` to `sink` (a `connect()` edge; a node may feed itself).
    /// The sink's line goes on from where it was; the source is asked for a keyframe. A sink
    /// that already had media of `kind` (a switch) gets nothing of the new source until a
    /// packet that starts a keyframe (for the codecs [`crate::starts_keyframe`] can tell),
    /// and the source is asked again, throttled, while it waits.
    pub fn connect(
        &mut self,
        now: Instant,
        src: NodeId,
        kind: MediaKind,
        sink: NodeId,
    ) -> Result<(), NodeError> {
        self.nodes.get(sink).ok_or(NodeError::UnknownNode)?;
        let s = self.nodes.get_mut(src).ok_or(NodeError::UnknownNode)?;
        if s.route_to(kind, sink).is_some() {
            return Ok(());
        }
        s.routes[kind].push(Route {
            sink,
            decided_for: None,
            state: State::Impossible,
        });
        let k = self.nodes.get_mut(sink).ok_or(NodeError::UnknownNode)?;
        k.sources[kind].push(src);
        k.mismatch[kind] = false;
        self.switched(now, src, kind, sink);
        Ok(())
    }

    /// `sink`'s media of `kind` comes from `src` now: its line resynchronises and, if it
    /// carried media before, waits for a keyframe, which `src` is asked for.
    fn switched(&mut self, now: Instant, src: NodeId, kind: MediaKind, sink: NodeId) {
        if let Some(k) = self.nodes.get_mut(sink) {
            if let Some(line) = k.line[kind].as_mut() {
                line.resync();
                k.awaits_key[kind] = true;
            }
        }
        self.ask_keyframe(now, src, kind);
    }

    /// Stops `src`'s media of `kind` to `sink`.
    pub fn disconnect(
        &mut self,
        src: NodeId,
        kind: MediaKind,
        sink: NodeId,
    ) -> Result<(), NodeError> {
        let s = self.nodes.get_mut(src).ok_or(NodeError::UnknownNode)?;
        let Some(i) = s.routes[kind].iter().position(|r| r.sink == sink) else {
            return Ok(());
        };
        let route = s.routes[kind].remove(i);
        if let Some(k) = self.nodes.get_mut(sink) {
            k.sources[kind].retain(|x| *x != src);
            k.mismatch[kind] = false;
        }
        if let State::Via(t) = route.state {
            self.unroute_via(t, kind, sink);
        }
        Ok(())
    }

    /// Forwards a packet produced by `src` to the sinks of its kind; returns how many got it.
    pub fn forward(&mut self, now: Instant, src: NodeId, pkt: &Packet<'_>) -> usize {
        let kind = pkt.kind;
        let Some(e) = self.nodes.get_mut(src) else {
            return 0;
        };
        if e.reports_flow && e.transcoder.is_none() {
            if let Some(ev) = e.flowed(FlowDir::Out, kind, now) {
                self.events.push_back((e.id.clone(), ev));
            }
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

    /// Pushes `pkt` of `src` to `sink` on its line; whether it went.
    fn deliver(
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
        let header = if e.transcoder.is_some() {
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
        if e.reports_flow && e.transcoder.is_none() {
            if let Some(t) = pkt.entered {
                e.latency[kind].add(t.elapsed());
                if let Some(board) = &self.latency {
                    board.set(&e.id, e.latency);
                }
            }
            if let Some(ev) = e.flowed(FlowDir::In, kind, now) {
                self.events.push_back((e.id.clone(), ev));
            }
        }
        true
    }

    /// Decides, one at a time, the routes of `src` of `kind` not decided for `codec`.
    fn decide(&mut self, now: Instant, src: NodeId, kind: MediaKind, codec: &Codec) {
        loop {
            let Some(e) = self.nodes.get(src) else {
                return;
            };
            let Some(route) = e.routes[kind]
                .iter()
                .find(|r| r.decided_for != Some(*codec))
            else {
                return;
            };
            let route = *route;
            let decision = self.negotiate(src, kind, route.sink, codec);
            let state = self.apply(now, src, kind, route, codec, decision);
            if let Some(r) = self
                .nodes
                .get_mut(src)
                .and_then(|e| e.route_to(kind, route.sink))
            {
                r.decided_for = Some(*codec);
                r.state = state;
            }
        }
    }

    /// What negotiation says for `src`'s media of `kind` in `codec` to `sink`.
    fn negotiate(&self, src: NodeId, kind: MediaKind, sink: NodeId, codec: &Codec) -> Decision {
        let Some(k) = self.nodes.get(sink) else {
            return Decision::Impossible(Impossible::NoCodec);
        };
        let caps = match k.transcoder {
            Some((_, _, input, _)) => SinkCaps::transcoder(input),
            None => k.node.caps(kind),
        };
        let forced = self.nodes.get(src).and_then(|s| {
            let settings = s.settings.as_ref()?;
            Forced::of(settings, kind, s.node.applies_format(kind))
        });
        let maker = self.maker.as_deref();
        negotiate::decide(codec, &caps, forced, |from, to| {
            maker.is_some_and(|m| m.can(from, to))
        })
    }

    /// Carries out a decision for `route`; the route's new state.
    fn apply(
        &mut self,
        now: Instant,
        src: NodeId,
        kind: MediaKind,
        route: Route,
        codec: &Codec,
        decision: Decision,
    ) -> State {
        let via = match route.state {
            State::Via(t) => Some(t),
            _ => None,
        };
        let keep = |t: NodeId, to: &Codec| {
            self.nodes
                .get(t)
                .and_then(|e| e.transcoder)
                .is_some_and(|(_, _, input, target)| input == *codec && target == *to)
        };
        if let (Decision::Transcode { to }, Some(t)) = (decision, via) {
            if keep(t, &to) {
                return State::Via(t);
            }
        }
        if let Some(t) = via {
            self.unroute_via(t, kind, route.sink);
        }
        match decision {
            Decision::Forward { pt } if via.is_some() => {
                // From the transcoder's encoder back to the source's: another stream.
                self.switched(now, src, kind, route.sink);
                State::Forward { pt }
            }
            Decision::Forward { pt } => State::Forward { pt },
            Decision::Transcode { to } => match self.transcoder(now, src, kind, codec, &to) {
                Ok(t) => {
                    self.feed_via(now, src, kind, route.sink, t);
                    State::Via(t)
                }
                Err(why) => {
                    self.mismatch(route.sink, kind, codec, &format!(": {why}"));
                    State::Impossible
                }
            },
            Decision::Impossible(Impossible::NoCodec) => {
                self.mismatch(route.sink, kind, codec, "");
                State::Impossible
            }
            Decision::Impossible(Impossible::TranscoderInput) => {
                // The source changed codec under this transcoder: it goes, and its sinks are
                // decided again (by the caller's loop) for the new codec.
                self.drop_transcoder(route.sink, true);
                State::Impossible
            }
        }
    }

    /// The transcoder of `src`'s `kind` from `from` to `to`: the running one, or a new one.
    fn transcoder(
        &mut self,
        now: Instant,
        src: NodeId,
        kind: MediaKind,
        from: &Codec,
        to: &Codec,
    ) -> Result<NodeId, String> {
        if let Some(&t) = self.transcoders.get(&(src, kind, *to)) {
            let input = self.nodes.get(t).and_then(|e| e.transcoder).map(|x| x.2);
            if input == Some(*from) {
                return Ok(t);
            }
            self.drop_transcoder(t, true);
        }
        let maker = self.maker.clone().ok_or("no transcoders")?;
        let src_id = self
            .nodes
            .get(src)
            .map(|e| e.id.clone())
            .unwrap_or_default();
        let id = self.nodes.next_key();
        let node = maker.make(id, kind, from, to, &src_id)?;
        let name = format!(
            "transcoder_{}_{}_{}",
            kind.wire_name().to_lowercase(),
            from.name.sdp_name(),
            to.name.sdp_name()
        );
        let mut entry = Entry::new(name.clone(), node);
        entry.reports_flow = false;
        entry.transcoder = Some((src, kind, *from, *to));
        entry.sources[kind].push(src);
        let t = self.nodes.insert(entry);
        self.transcoders.insert((src, kind, *to), t);
        if let Some(s) = self.nodes.get_mut(src) {
            s.routes[kind].push(Route {
                sink: t,
                decided_for: Some(*from),
                state: State::Forward { pt: None },
            });
        }
        let ev = MediaEvent::Transcoding {
            kind,
            on: true,
            bin: name,
        };
        self.events.push_back((src_id, ev));
        // The decoder starts at a keyframe.
        self.ask_keyframe(now, src, kind);
        Ok(t)
    }

    /// Makes transcoder `t` (of `src`) feed `sink`.
    fn feed_via(&mut self, now: Instant, src: NodeId, kind: MediaKind, sink: NodeId, t: NodeId) {
        let Some(e) = self.nodes.get_mut(t) else {
            return;
        };
        if e.route_to(kind, sink).is_none() {
            e.routes[kind].push(Route {
                sink,
                decided_for: None,
                state: State::Impossible,
            });
        }
        self.switched(now, src, kind, sink);
        self.ask_keyframe(now, t, kind);
    }

    /// `sink` no longer gets its media through transcoder `t`, which goes with its last sink.
    fn unroute_via(&mut self, t: NodeId, kind: MediaKind, sink: NodeId) {
        let Some(e) = self.nodes.get_mut(t) else {
            return;
        };
        e.routes[kind].retain(|r| r.sink != sink);
        if e.routes[kind].is_empty() {
            self.drop_transcoder(t, true);
        }
    }

    /// Removes transcoder `t`: the routes it served are decided again at the source's next
    /// packet; `tell`: its source learns NOT_TRANSCODING.
    fn drop_transcoder(&mut self, t: NodeId, tell: bool) -> Option<Box<dyn Node>> {
        let e = self.nodes.remove(t)?;
        self.transcoders.retain(|_, x| *x != t);
        let Some((src, kind, _, _)) = e.transcoder else {
            return Some(e.node);
        };
        if let Some(s) = self.nodes.get_mut(src) {
            s.routes[kind].retain(|r| r.sink != t);
            for r in &mut s.routes[kind] {
                if r.state == State::Via(t) {
                    r.decided_for = None;
                    r.state = State::Impossible;
                }
            }
            if tell {
                let ev = MediaEvent::Transcoding {
                    kind,
                    on: false,
                    bin: e.id.clone(),
                };
                self.events.push_back((s.id.clone(), ev));
            }
        }
        Some(e.node)
    }

    /// Transcoder `t` failed for good (its media worker died): each sink it fed gets the
    /// CODEC_MISMATCH error of a transcoder that cannot be made, saying `why`; it goes, and
    /// those routes stay without media until something changes (a re-connect makes a new
    /// transcoder; a stream that crashed one is not fed to another by itself).
    pub fn transcoder_failed(&mut self, t: NodeId, why: &str) {
        let Some(e) = self.nodes.get(t) else {
            return;
        };
        let Some((src, kind, from, _)) = e.transcoder else {
            return;
        };
        let sinks: Vec<NodeId> = e.routes[kind].iter().map(|r| r.sink).collect();
        self.drop_transcoder(t, true);
        if let Some(s) = self.nodes.get_mut(src) {
            for r in s.routes[kind]
                .iter_mut()
                .filter(|r| sinks.contains(&r.sink))
            {
                r.decided_for = Some(from);
                r.state = State::Impossible;
            }
        }
        for sink in sinks {
            if let Some(k) = self.nodes.get_mut(sink) {
                k.mismatch[kind] = false;
            }
            self.mismatch(sink, kind, &from, &format!(": {why}"));
        }
    }

    /// Tells `sink`, once until something changes, that `codec` cannot reach it.
    fn mismatch(&mut self, sink: NodeId, kind: MediaKind, codec: &Codec, why: &str) {
        let Some(k) = self.nodes.get_mut(sink) else {
            return;
        };
        if std::mem::replace(&mut k.mismatch[kind], true) {
            return;
        }
        let description = format!(
            "The {kind} codec {codec} of the source was not negotiated by this element and cannot be transcoded{why}"
        );
        let ev = MediaEvent::Error {
            error: MediaError::CodecMismatch,
            description,
        };
        self.events.push_back((k.id.clone(), ev));
    }

    /// Asks `node`, as a source, for a keyframe of `kind`, at most once per
    /// [`KEYFRAME_INTERVAL`]; a request inside the interval goes when it ends.
    pub fn ask_keyframe(&mut self, now: Instant, node: NodeId, kind: MediaKind) {
        if kind != MediaKind::Video {
            return;
        }
        if let Some(e) = self.nodes.get_mut(node) {
            if e.keyframe.handle_request(now) {
                e.node.request_keyframe(kind);
            }
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
            self.ask_keyframe(now, via.unwrap_or(src), kind);
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
            }
        }
    }

    fn mismatch_cleared_downstream(&mut self, src: NodeId) {
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

    /// The next event to raise: the element's id and the event.
    pub fn poll_event(&mut self) -> Option<(String, MediaEvent)> {
        self.events.pop_front()
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
        next
    }

    /// Deferred keyframe requests that are due go; flows idle for [`FLOW_IDLE`] are reported
    /// NOT_FLOWING.
    pub fn handle_timeout(&mut self, now: Instant) {
        let MediaRouter { nodes, events, .. } = self;
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
