//! The media thread's side of the pipeline view (the operations listener's
//! `/admin/pipelines`): the router's routes, transcoders and byte counts, each WebRTC
//! endpoint's byte counters (what getStats counts) and states, and one endpoint's getStats.
//! Answered between two of the media thread's steps; the work is bounded by the question
//! (the elements and media connections shown), and no element id is copied.

use super::{lock, MediaCore};
use crate::metrics::Figure;
use fluo_core::StatsQuery;
use fluo_sfu::{Codec, MediaKind, RouteMode};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Byte counts per direction (`[in, out]`) and kind (`[audio, video]`).
pub type Bytes = [[u64; 2]; 2];

/// What the pipeline view asks the media thread about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewAsk {
    /// Elements: their byte counts, a WebRTC endpoint's states, their outputs' transcoders.
    pub elements: Vec<String>,
    /// Media connections (source and sink as positions in `elements`, the kind): what the
    /// route of each does.
    pub routes: Vec<(usize, usize, MediaKind)>,
}

/// A WebRTC endpoint's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointView {
    /// Its ICE component state (Kurento's IceComponentState name).
    pub ice: &'static str,
    /// `new` (never connected), `connected`, `lost` (connected once, not now).
    pub dtls: &'static str,
}

/// A transcoder of an element's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscoderReading {
    /// The element whose output it transcodes (a position in the question's elements).
    pub source: usize,
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec it decodes.
    pub from: Codec,
    /// The codec it encodes.
    pub to: Codec,
    /// The elements of the question it feeds.
    pub sinks: Vec<usize>,
}

/// What the media thread tells the view, in the order of the question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewReading {
    /// Per element: a WebRTC endpoint's RTP bytes received and sent (as getStats counts
    /// them), another element's payload bytes counted by the router; `None` for an element
    /// with no counts (a PassThrough, a hub, an element the media thread does not have).
    pub bytes: Vec<Option<Bytes>>,
    /// Per element: a WebRTC endpoint's states.
    pub endpoints: Vec<Option<EndpointView>>,
    /// Per media connection: what its route does (`None`: there is no such route).
    pub routes: Vec<Option<RouteMode>>,
    /// The transcoders of the elements' outputs.
    pub transcoders: Vec<TranscoderReading>,
}

/// What the view asks one endpoint's getStats with.
#[derive(Debug, Clone)]
pub(crate) struct StatsAsk {
    pub id: String,
    pub wall_ms: u64,
    pub latency: bool,
}

impl MediaCore {
    /// The pipeline view's reading of what `ask` asks about (public for the benchmark of
    /// what it costs the media thread: `cargo bench -p fluo-rtc --bench view`).
    pub fn view_reading(&self, ask: &ViewAsk) -> ViewReading {
        let keys: Vec<Option<u64>> = (ask.elements.iter())
            .map(|id| self.by_id.get(id.as_str()).copied())
            .collect();
        let node = |i: usize| keys.get(i).copied().flatten().and_then(|k| self.node_of(k));
        // The router's nodes among the elements, and where each is in the question.
        let (mut nodes, mut at) = (Vec::new(), HashMap::new());
        for i in 0..keys.len() {
            if let Some(n) = node(i) {
                at.insert(n, i);
                nodes.push(n);
            }
        }
        let mut routes = Vec::new();
        let mut asked = Vec::new();
        for (j, (s, k, kind)) in ask.routes.iter().enumerate() {
            if let (Some(s), Some(k)) = (node(*s), node(*k)) {
                routes.push((s, k, *kind));
                asked.push(j);
            }
        }
        let router = self.router.view(&nodes, &routes);
        let mut out = ViewReading {
            bytes: vec![None; keys.len()],
            endpoints: vec![None; keys.len()],
            routes: vec![None; ask.routes.len()],
            transcoders: Vec::new(),
        };
        for (n, b) in nodes.iter().zip(router.bytes) {
            out.bytes[at[n]] = b;
        }
        for (j, mode) in asked.into_iter().zip(router.routes) {
            out.routes[j] = mode;
        }
        for t in router.transcoders {
            out.transcoders.push(TranscoderReading {
                source: at[&t.source],
                kind: t.kind,
                from: t.from,
                to: t.to,
                sinks: t.sinks.iter().filter_map(|s| at.get(s).copied()).collect(),
            });
        }
        for (i, key) in keys.iter().enumerate() {
            let Some(entry) = key.and_then(|k| self.eps.get(&k)) else {
                continue;
            };
            let ep = lock(&entry.ep);
            let f = crate::stats::figures(&ep);
            let fig = |k: MediaKind, fig: Figure| f[k.index()][fig as usize];
            out.bytes[i] = Some([
                MediaKind::ALL.map(|k| fig(k, Figure::BytesIn)),
                MediaKind::ALL.map(|k| fig(k, Figure::BytesOut)),
            ]);
            let dtls = match (ep.connected, ep.was_connected) {
                (true, _) => "connected",
                (false, true) => "lost",
                (false, false) => "new",
            };
            out.endpoints[i] = Some(EndpointView {
                ice: ep.ice_state,
                dtls,
            });
        }
        out
    }

    /// The getStats report of the WebRTC endpoint `ask.id`; `None` when it is not one.
    pub(crate) fn endpoint_stats(&self, ask: &StatsAsk) -> Option<Map<String, Value>> {
        let entry = self.by_id.get(&ask.id).and_then(|k| self.eps.get(k))?;
        let q = StatsQuery {
            id: &ask.id,
            wall_ms: ask.wall_ms,
            media: None,
            latency: ask.latency,
        };
        Some(crate::stats::report(&mut lock(&entry.ep), &q))
    }
}
