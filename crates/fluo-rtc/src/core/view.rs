//! The media thread's side of the pipeline view (the operations listener's
//! `/admin/pipelines`): the router's routes, transcoders and byte counts, each WebRTC
//! endpoint's byte counters (what getStats counts) and states, and one endpoint's getStats.
//! Answered between two of the media thread's steps, which locks the endpoints anyway: no
//! other thread contends for their locks.

use super::{lock, MediaCore};
use crate::metrics::Figure;
use fluo_core::StatsQuery;
use fluo_sfu::{MediaKind, RouterView};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// A WebRTC endpoint as the view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    /// The element's id.
    pub id: String,
    /// RTP bytes received (`[0]`) and sent (`[1]`) per kind (`[audio, video]`), as getStats
    /// counts them.
    pub bytes: [[u64; 2]; 2],
    /// Its ICE component state (Kurento's IceComponentState name).
    pub ice: &'static str,
    /// `new` (never connected), `connected`, `lost` (connected once, not now).
    pub dtls: &'static str,
}

/// What the media thread tells the view about the elements it was asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewReading {
    /// Routes, transcoders and the byte counts of the router's nodes.
    pub router: RouterView,
    /// The WebRTC endpoints among them.
    pub endpoints: Vec<EndpointView>,
}

/// What the view asks one endpoint's getStats with.
#[derive(Debug, Clone)]
pub(crate) struct StatsAsk {
    pub id: String,
    pub wall_ms: u64,
    pub latency: bool,
}

impl MediaCore {
    /// The view of the elements in `wanted`.
    pub(crate) fn view_reading(&self, wanted: &HashSet<String>) -> ViewReading {
        let router = self.router.view(|id| wanted.contains(id));
        let mut endpoints = Vec::new();
        for id in wanted {
            let Some(entry) = self.by_id.get(id).and_then(|k| self.eps.get(k)) else {
                continue;
            };
            let ep = lock(&entry.ep);
            let f = crate::stats::figures(&ep);
            let at = |k: MediaKind, fig: Figure| f[k.index()][fig as usize];
            let bytes = [
                MediaKind::ALL.map(|k| at(k, Figure::BytesIn)),
                MediaKind::ALL.map(|k| at(k, Figure::BytesOut)),
            ];
            let dtls = match (ep.connected, ep.was_connected) {
                (true, _) => "connected",
                (false, true) => "lost",
                (false, false) => "new",
            };
            endpoints.push(EndpointView {
                id: id.clone(),
                bytes,
                ice: ep.ice_state,
                dtls,
            });
        }
        ViewReading { router, endpoints }
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
