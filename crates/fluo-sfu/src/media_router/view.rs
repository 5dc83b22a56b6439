//! What the router tells the pipeline view (the operations listener's `/admin/pipelines`):
//! per element, the payload bytes that went in and out; per route, whether it forwards, goes
//! through a transcoder (with the codec pair) or carries nothing; the transcoders of each
//! source. Read when the view asks, never per packet.

use super::entry::State;
use super::MediaRouter;
use crate::port::Codec;
use crate::MediaKind;

/// What one route of a source does, as last decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMode {
    /// The source's packets go as they are, in this codec (`None`: no packet decided it yet).
    Forward(Option<Codec>),
    /// Through a transcoder from `from` to `to`.
    Transcode {
        /// The source's codec.
        from: Codec,
        /// The codec the sink gets.
        to: Codec,
    },
    /// Nothing reaches the sink (no codec it takes, a transcoder that failed).
    Nothing,
}

/// A route from one element to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteView {
    /// The source element's id.
    pub source: String,
    /// The sink element's id.
    pub sink: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// What it does.
    pub mode: RouteMode,
}

/// A transcoder the router runs for a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscoderView {
    /// The element whose output it transcodes.
    pub source: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec it decodes.
    pub from: Codec,
    /// The codec it encodes.
    pub to: Codec,
    /// The elements it feeds.
    pub sinks: Vec<String>,
}

/// An element's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The element's id.
    pub id: String,
    /// Payload bytes per direction (`[in, out]`) and kind (`[audio, video]`), counted by the
    /// router for the nodes that [report flow](super::Node::reports_flow) (not a WebRTC
    /// endpoint's: it counts its own for getStats).
    pub bytes: Option<[[u64; 2]; 2]>,
}

/// The router's side of the pipeline view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterView {
    /// The elements' nodes (transcoders are in `transcoders`).
    pub nodes: Vec<NodeView>,
    /// Their routes.
    pub routes: Vec<RouteView>,
    /// The transcoders of their outputs.
    pub transcoders: Vec<TranscoderView>,
}

impl MediaRouter {
    /// The view of the elements `wanted` says yes to (routes and transcoders of which they
    /// are the source): what the view shows is bounded by what it asks for.
    pub fn view(&self, wanted: impl Fn(&str) -> bool) -> RouterView {
        let mut v = RouterView::default();
        let id_of = |n| self.nodes.get(n).map(|e| e.id.clone());
        for (_, e) in self.nodes.iter() {
            if e.transcoder.is_some() || !wanted(&e.id) {
                continue;
            }
            v.nodes.push(NodeView {
                id: e.id.clone(),
                bytes: e.reports_flow.then_some(e.bytes),
            });
            for kind in MediaKind::ALL {
                for r in &e.routes[kind] {
                    // A source's route to its own transcoder is the transcoder's business.
                    let Some(k) = self.nodes.get(r.sink).filter(|k| k.transcoder.is_none()) else {
                        continue;
                    };
                    let sink = k.id.clone();
                    let mode = match r.state {
                        State::Forward { .. } => RouteMode::Forward(r.decided_for),
                        State::Via(t) => match self.nodes.get(t).and_then(|t| t.transcoder) {
                            Some((_, _, from, to)) => RouteMode::Transcode { from, to },
                            None => RouteMode::Nothing,
                        },
                        State::Impossible => RouteMode::Nothing,
                    };
                    v.routes.push(RouteView {
                        source: e.id.clone(),
                        sink,
                        kind,
                        mode,
                    });
                }
            }
        }
        for t in self.transcoders.values() {
            let Some(te) = self.nodes.get(*t) else {
                continue;
            };
            let Some((src, kind, from, to)) = te.transcoder else {
                continue;
            };
            let Some(source) = id_of(src).filter(|s| wanted(s)) else {
                continue;
            };
            let sinks = te.routes[kind].iter().filter_map(|r| id_of(r.sink));
            v.transcoders.push(TranscoderView {
                source,
                kind,
                from,
                to,
                sinks: sinks.collect(),
            });
        }
        v
    }
}
