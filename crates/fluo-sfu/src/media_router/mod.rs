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

mod decide;
mod entry;
mod forward;
#[cfg(test)]
mod layer_tests;
mod layers;
mod node;
mod signals;
mod svc;
#[cfg(test)]
mod svc_tests;
#[cfg(test)]
mod tests;
mod view;

pub use layers::{LAYER_IDLE, LAYER_SETTLE, LAYER_START_FALLBACK};
pub use node::{Header, Node, Packet, TranscoderMaker};
pub use view::{RouteMode, RouterView, TranscoderView};

use entry::{Entry, Route, State};

use crate::event::MediaEvent;
use crate::ids::Slab;
use crate::latency::LatencyBoard;
use crate::port::Codec;
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
    /// The nodes pushed to in this pass, to [flush](Node::flush) at its end.
    pushed: Vec<NodeId>,
    /// Simulcast: layered sources' layers, and the layer each of their sinks gets.
    layers: layers::LayerTable,
    /// Whether layered sources' layers are measured per packet ([`MediaRouter::layer_rates`]):
    /// only once a viewer's bandwidth is estimated (`--bwe on`), the one reader.
    measure_rates: bool,
    /// Sources that became layered (a second simulcast or spatial layer seen), or whose video
    /// a route started forwarding while they are layered (a sink connected to them), since
    /// the media plane last asked ([`MediaRouter::take_newly_layered`]).
    newly_layered: Vec<NodeId>,
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
            pushed: Vec::new(),
            layers: layers::LayerTable::default(),
            measure_rates: false,
            newly_layered: Vec::new(),
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

    /// The transcoders running: each one's media kind, input and output codecs.
    pub fn transcoder_codecs(&self) -> Vec<(MediaKind, Codec, Codec)> {
        (self.transcoders_running())
            .map(|(_, kind, from, to, _)| (kind, from, to))
            .collect()
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
        let e = self.take(node)?;
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
        self.routes_changed(src);
        self.switched(now, src, kind, sink);
        Ok(())
    }

    /// `src`'s routes appeared, went or are to be decided again, or the layer limits of one
    /// of its sinks changed: if it is layered, it sorts its sinks again
    /// (`forward::sort_sinks`) at its next packet. Only `src`: a change elsewhere in the
    /// router costs the other layered sources nothing.
    pub(super) fn routes_changed(&mut self, src: NodeId) {
        if let Some(l) = self.layers.get_mut(src).and_then(|s| s.source.as_mut()) {
            l.sorted = None;
        }
    }

    /// `sink`'s media of `kind` comes from `src` now: its line resynchronises and, if it
    /// carried media before, waits for a keyframe, which `src` is asked for. A simulcast
    /// source is not asked here: the sink's first choice of layer asks that layer alone.
    fn switched(&mut self, now: Instant, src: NodeId, kind: MediaKind, sink: NodeId) {
        if let Some(k) = self.nodes.get_mut(sink) {
            if let Some(line) = k.line[kind].as_mut() {
                line.resync();
                k.awaits_key[kind] = true;
            }
        }
        self.leaves_layers(sink, kind, |from| from != src);
        let layered = self.layers.get(src).is_some_and(|s| s.source.is_some());
        if !(layered && kind == MediaKind::Video) {
            self.ask_keyframe(now, src, kind);
        }
    }

    /// `sink` no longer gets the layers of the simulcast source it got them from, if `gone`
    /// says so of that source: it is told (its next layered source starts afresh).
    fn leaves_layers(&mut self, sink: NodeId, kind: MediaKind, gone: impl Fn(NodeId) -> bool) {
        let Some(l) = self.layers.get_mut(sink).and_then(|s| s.sink.as_mut()) else {
            return;
        };
        if kind == MediaKind::Video && l.current.is_some() && l.source.is_some_and(gone) {
            l.source = None;
            l.current = None;
            if let Some(k) = self.nodes.get_mut(sink) {
                k.node.layer_changed(kind, None);
            }
        }
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
        self.routes_changed(src);
        if let Some(k) = self.nodes.get_mut(sink) {
            k.sources[kind].retain(|x| *x != src);
            k.mismatch[kind] = false;
        }
        if let State::Via(t) = route.state {
            self.unroute_via(t, kind, sink);
        }
        self.leaves_layers(sink, kind, |from| from == src);
        Ok(())
    }

    /// Takes node `n`'s entry out of the router, what it gathered in this pass flushed first.
    fn take(&mut self, n: NodeId) -> Option<Entry> {
        let mut e = self.nodes.remove(n)?;
        self.layers.remove(n);
        if e.pushed {
            e.node.flush();
        }
        Some(e)
    }

    /// The next event to raise: the element's id and the event.
    pub fn poll_event(&mut self) -> Option<(String, MediaEvent)> {
        self.events.pop_front()
    }
}
