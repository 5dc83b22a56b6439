//! What the router keeps per node: its routes as a source, its line as a sink, throttles,
//! flows and latencies.

use super::{Node, KEYFRAME_INTERVAL};
use crate::event::{FlowDir, MediaEvent};
use crate::keyframe::KeyframeThrottle;
use crate::latency::LatencyAvg;
use crate::port::Codec;
use crate::rewrite::Rewriter;
use crate::settings::OutputSettings;
use crate::{MediaKind, NodeId};
use std::time::Instant;

/// What a route does, as last decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Push the source's packets, with this payload type.
    Forward { pt: Option<u8> },
    /// The sink is fed by this transcoder of the source.
    Via(NodeId),
    /// Nothing reaches the sink.
    Impossible,
}

/// One route of a source: to `sink`, doing `state` for packets in `decided_for`. A route not
/// decided for the codec of a packet is decided again before that packet goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Route {
    pub(super) sink: NodeId,
    pub(super) decided_for: Option<Codec>,
    pub(super) state: State,
}

pub(super) struct Entry {
    /// The element's id (events, logs).
    pub(super) id: String,
    pub(super) node: Box<dyn Node>,
    pub(super) reports_flow: bool,
    /// For a transcoder: its source, kind, input and target codecs.
    pub(super) transcoder: Option<(NodeId, MediaKind, Codec, Codec)>,
    /// Its routes as a source, per kind.
    pub(super) routes: [Vec<Route>; 2],
    /// The sources whose routes reach it, per kind (`connect` edges, not transcoders).
    pub(super) sources: [Vec<NodeId>; 2],
    /// Its line as a sink, per kind (created by the first packet).
    pub(super) line: [Option<Rewriter>; 2],
    /// Per kind: its line was switched to another source (or transcoder) and waits for a
    /// keyframe from it before anything goes on (a decoder fed the new source's inter frames
    /// shows broken pictures).
    pub(super) awaits_key: [bool; 2],
    pub(super) keyframe: KeyframeThrottle,
    pub(super) settings: Option<OutputSettings>,
    /// Per direction and kind: when media last passed, and whether FLOWING was reported.
    pub(super) flow: [[(Option<Instant>, bool); 2]; 2],
    /// Per direction and kind: the payload bytes that passed (the pipeline view's bitrates),
    /// counted where `flow` is kept.
    pub(super) bytes: [[u64; 2]; 2],
    pub(super) latency: [LatencyAvg; 2],
    /// Per kind: a CODEC_MISMATCH was raised on it and nothing changed since.
    pub(super) mismatch: [bool; 2],
    /// It was pushed to in this pass (it is in the router's `pushed`).
    pub(super) pushed: bool,
}

impl Entry {
    pub(super) fn new(id: String, node: Box<dyn Node>) -> Entry {
        Entry {
            id,
            reports_flow: node.reports_flow(),
            node,
            transcoder: None,
            routes: Default::default(),
            sources: Default::default(),
            line: [None, None],
            awaits_key: [false; 2],
            keyframe: KeyframeThrottle::new(KEYFRAME_INTERVAL),
            settings: None,
            flow: Default::default(),
            bytes: Default::default(),
            latency: Default::default(),
            mismatch: [false; 2],
            pushed: false,
        }
    }

    pub(super) fn route_to(&mut self, kind: MediaKind, sink: NodeId) -> Option<&mut Route> {
        self.routes[kind].iter_mut().find(|r| r.sink == sink)
    }

    /// Media of `kind` (a payload of `len` bytes) passed in direction `dir`: FLOWING when it
    /// starts.
    pub(super) fn flowed(
        &mut self,
        dir: FlowDir,
        kind: MediaKind,
        now: Instant,
        len: usize,
    ) -> Option<MediaEvent> {
        self.bytes[dir.index()][kind] += len as u64;
        let f = &mut self.flow[dir.index()][kind];
        f.0 = Some(now);
        (!std::mem::replace(&mut f.1, true)).then_some(MediaEvent::Flow {
            dir,
            kind,
            flowing: true,
        })
    }
}
