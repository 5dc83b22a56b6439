//! What the router tells the pipeline view (the operations listener's `/admin/pipelines`):
//! for the nodes it is asked about, the payload bytes that went in and out and the
//! transcoders of their outputs; for the routes it is asked about, whether each forwards,
//! goes through a transcoder (with the codec pair) or carries nothing. Read when the view
//! asks, never per packet; the work is bounded by what is asked (each route of an asked
//! source is looked at once), and nothing is allocated per route beyond the answer.

use super::entry::{Entry, State};
use super::MediaRouter;
use crate::port::Codec;
use crate::{MediaKind, NodeId};
use std::collections::{HashMap, HashSet};

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

/// A transcoder the router runs for a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscoderView {
    /// The node whose output it transcodes.
    pub source: NodeId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec it decodes.
    pub from: Codec,
    /// The codec it encodes.
    pub to: Codec,
    /// The nodes it feeds.
    pub sinks: Vec<NodeId>,
}

/// The router's side of the pipeline view, in the order of the question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterView {
    /// Per node asked: payload bytes per direction (`[in, out]`) and kind (`[audio,
    /// video]`), counted by the router for the nodes that [report flow](super::Node::reports_flow)
    /// (not a WebRTC endpoint's: it counts its own for getStats); `None` for the others.
    pub bytes: Vec<Option<[[u64; 2]; 2]>>,
    /// Per route asked: what it does; `None` when there is no such route.
    pub routes: Vec<Option<RouteMode>>,
    /// The transcoders of the outputs of the nodes asked.
    pub transcoders: Vec<TranscoderView>,
}

impl MediaRouter {
    /// The transcoders running: each one's source, kind, input and output codecs, and entry.
    pub(super) fn transcoders_running(
        &self,
    ) -> impl Iterator<Item = (NodeId, MediaKind, Codec, Codec, &Entry)> + '_ {
        (self.transcoders.values()).filter_map(|t| {
            let e = self.nodes.get(*t)?;
            let (src, kind, from, to) = e.transcoder?;
            Some((src, kind, from, to, e))
        })
    }

    /// The view of the `nodes` and `routes` (source, sink, kind) asked about.
    pub fn view(&self, nodes: &[NodeId], routes: &[(NodeId, NodeId, MediaKind)]) -> RouterView {
        let bytes = (nodes.iter())
            .map(|n| {
                let e = self.nodes.get(*n)?;
                (e.reports_flow && e.transcoder.is_none()).then_some(e.bytes)
            })
            .collect();
        // Each asked source's routes of each asked kind are looked at once.
        let mut asked: HashMap<(NodeId, MediaKind, NodeId), Vec<usize>> = HashMap::new();
        for (i, (src, sink, kind)) in routes.iter().enumerate() {
            asked.entry((*src, *kind, *sink)).or_default().push(i);
        }
        let walked: HashSet<(NodeId, MediaKind)> = (routes.iter()).map(|r| (r.0, r.2)).collect();
        let mut modes = vec![None; routes.len()];
        for (src, kind) in walked {
            let Some(e) = self.nodes.get(src) else {
                continue;
            };
            for r in &e.routes[kind] {
                let Some(at) = asked.get(&(src, kind, r.sink)) else {
                    continue;
                };
                let mode = match r.state {
                    State::Forward { .. } => RouteMode::Forward(r.decided_for),
                    State::Via(t) => match self.nodes.get(t).and_then(|t| t.transcoder) {
                        Some((_, _, from, to)) => RouteMode::Transcode { from, to },
                        None => RouteMode::Nothing,
                    },
                    State::Impossible => RouteMode::Nothing,
                };
                for i in at {
                    modes[*i] = Some(mode);
                }
            }
        }
        let sources: HashSet<NodeId> = nodes.iter().copied().collect();
        let transcoders = (self.transcoders_running())
            .filter(|(src, ..)| sources.contains(src))
            .map(|(source, kind, from, to, e)| TranscoderView {
                source,
                kind,
                from,
                to,
                sinks: e.routes[kind].iter().map(|r| r.sink).collect(),
            })
            .collect();
        RouterView {
            bytes,
            routes: modes,
            transcoders,
        }
    }
}
