//! What the engine tells the pipeline view (the operations listener's `/admin/pipelines`):
//! every pipeline's elements with their names, tags, flow states and media worker, its
//! connections with the media connections each one carries, and one element's stored
//! properties and getStats. Taken when the view asks (the core task answers between two
//! requests), bounded by the limits it is given; nothing is kept for it.

use crate::engine::Engine;
use crate::graph::Edge;
use crate::registry::Object;
use fluo_sfu::MediaKind;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// How much one view holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewLimits {
    /// Pipelines (the first created first).
    pub pipelines: usize,
    /// Elements, hubs and hub ports, over all the pipelines shown.
    pub elements: usize,
    /// Connections, over all the pipelines shown.
    pub connections: usize,
    /// Tags per element (the first added first).
    pub tags: usize,
    /// Characters of a name, a tag's key or value (a longer one is cut, ending in `…`).
    pub text: usize,
}

/// `s` cut to `max` characters, the last of them `…`, when it is longer.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) => {
            let keep = s
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(0, |(i, _)| i);
            format!("{}…", &s[..keep])
        }
    }
}

/// The pipelines as the view shows them.
#[derive(Debug, Clone, Default)]
pub struct EngineView {
    /// Pipelines on the server.
    pub pipelines_total: usize,
    /// Elements (hubs and ports included) on the server.
    pub elements_total: usize,
    /// Something was left out to stay within the limits.
    pub truncated: bool,
    /// The pipelines shown.
    pub pipelines: Vec<PipelineView>,
}

/// One pipeline.
#[derive(Debug, Clone, Default)]
pub struct PipelineView {
    /// Its id.
    pub id: String,
    /// Its name, when one was set.
    pub name: Option<String>,
    /// Seconds since the UNIX epoch.
    pub creation_time: u64,
    /// Its elements, hubs and hub ports.
    pub element_count: usize,
    /// Elements or connections of it were left out.
    pub truncated: bool,
    /// The elements shown (a hub's ports right after it), in the order they were created.
    pub elements: Vec<ElementView>,
    /// The connections between the elements shown.
    pub connections: Vec<ConnectionView>,
}

/// One element.
#[derive(Debug, Clone, Default)]
pub struct ElementView {
    /// Its id.
    pub id: String,
    /// Its class.
    pub class: String,
    /// Its name, when one was set.
    pub name: Option<String>,
    /// Its tags (in the pipeline view: at most [`ViewLimits::tags`], their texts cut).
    pub tags: Vec<(String, String)>,
    /// How many tags it has.
    pub tag_count: usize,
    /// A hub port's hub (`None` for an element of the pipeline itself).
    pub hub: Option<String>,
    /// Seconds since the UNIX epoch.
    pub creation_time: u64,
    /// The media worker hosting it (see [`crate::Element::worker`]).
    pub worker: Option<usize>,
    /// Per kind (`[audio, video]`): media flows in, as its last MediaFlowInStateChanged said.
    pub flowing_in: [bool; 2],
    /// Per kind: media flows out (MediaFlowOutStateChanged).
    pub flowing_out: [bool; 2],
    /// Per kind: its input is transcoded (MediaTranscodingStateChanged).
    pub transcoding: [bool; 2],
}

/// One connection, as `connect` made it.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    /// The connection.
    pub edge: Edge,
    /// The media connections it carries (source, sink): itself between two elements that
    /// are not transparent; across a PassThrough or a hub, from the element that produces the
    /// media to the one that takes it.
    pub carries: Vec<(String, String)>,
}

/// One element with what it was given and what it measured.
#[derive(Debug, Clone, Default)]
pub struct ElementDetail {
    /// As in the pipeline view.
    pub element: ElementView,
    /// Its pipeline.
    pub pipeline: Option<String>,
    /// The values the engine holds for its properties: what was set or given at its
    /// creation, its name, tags, parent, children and creation time, the model's default for
    /// the others that have one. Properties the element computes (a player's position, an
    /// endpoint's candidate pairs) are not read: that could wait on a media worker.
    pub properties: Map<String, Value>,
    /// Its pipeline's `latencyStats`.
    pub latency_stats: bool,
    /// Its getStats report, unless its class was one the caller measures elsewhere.
    pub stats: Option<Map<String, Value>>,
}

const FLOW_IN: &str = "MediaFlowInStateChanged";
const FLOW_OUT: &str = "MediaFlowOutStateChanged";
const TRANSCODING: &str = "MediaTranscodingStateChanged";

impl Engine {
    /// The pipelines (`only`: that one), within `limits`.
    pub fn view(&self, limits: ViewLimits, only: Option<&str>) -> EngineView {
        let mut ids: Vec<(u64, String)> = self
            .registry
            .pipeline_ids()
            .into_iter()
            .filter(|id| only.is_none_or(|o| o == id))
            .filter_map(|id| Some((self.registry.get(&id)?.seq, id)))
            .collect();
        ids.sort();
        let mut v = EngineView {
            pipelines_total: self.registry.pipeline_count(),
            // Everything but the ServerManager and the pipelines.
            elements_total: (self.registry.len().saturating_sub(1))
                .saturating_sub(self.registry.pipeline_count()),
            ..EngineView::default()
        };
        let mut budget = limits.elements;
        // Each element shown, with the index of its pipeline in `v.pipelines`.
        let mut shown: HashMap<&str, usize> = HashMap::new();
        for (_, id) in ids.iter() {
            if v.pipelines.len() == limits.pipelines || budget == 0 {
                v.truncated = true;
                break;
            }
            let Some(p) = self.registry.get(id) else {
                continue;
            };
            let members = self.members(p);
            let mut pv = PipelineView {
                id: id.clone(),
                name: p.name.as_deref().map(|n| cut(n, limits.text)),
                creation_time: p.creation_time,
                element_count: members.len(),
                ..PipelineView::default()
            };
            for m in members {
                if budget == 0 {
                    pv.truncated = true;
                    v.truncated = true;
                    break;
                }
                budget -= 1;
                shown.insert(m.id.as_str(), v.pipelines.len());
                let mut ev = self.element_view(m);
                // What the client gave is bounded too: names and tags can be long, and many.
                ev.name = ev.name.map(|n| cut(&n, limits.text));
                ev.tags.truncate(limits.tags);
                for (k, val) in &mut ev.tags {
                    (*k, *val) = (cut(k, limits.text), cut(val, limits.text));
                }
                pv.elements.push(ev);
            }
            v.pipelines.push(pv);
        }
        let mut left = limits.connections;
        let carried = self.carried(|id| shown.contains_key(id));
        for e in &self.graph.edges {
            let (Some(&p), Some(_)) = (shown.get(e.source.as_str()), shown.get(e.sink.as_str()))
            else {
                continue;
            };
            let pv = &mut v.pipelines[p];
            if left == 0 {
                pv.truncated = true;
                v.truncated = true;
                continue;
            }
            left -= 1;
            // Between two elements that are not transparent, a connection is a media
            // connection itself.
            let own = !self.is_transparent(&e.source) && !self.is_transparent(&e.sink);
            let mut carries = carried.get(e).cloned().unwrap_or_default();
            if own {
                carries.push((e.source.clone(), e.sink.clone()));
            }
            pv.connections.push(ConnectionView {
                edge: e.clone(),
                carries,
            });
        }
        v
    }

    /// A pipeline's elements and hubs, each hub's ports right after it, in creation order.
    fn members<'a>(&'a self, p: &'a Object) -> Vec<&'a Object> {
        let mut out = Vec::new();
        for c in &p.children {
            let Some(o) = self.registry.get(c) else {
                continue;
            };
            out.push(o);
            out.extend(o.children.iter().filter_map(|c| self.registry.get(c)));
        }
        out
    }

    fn element_view(&self, o: &Object) -> ElementView {
        let state = |event: &str| {
            MediaKind::ALL.map(|k| {
                let key = format!("{event}/{}", k.wire_name());
                o.media_states.get(&key).copied().unwrap_or(false)
            })
        };
        ElementView {
            id: o.id.clone(),
            class: o.class.clone(),
            name: o.name.clone(),
            tags: o.tags.clone(),
            tag_count: o.tags.len(),
            hub: o.parent.clone().filter(|p| o.pipeline.as_ref() != Some(p)),
            creation_time: o.creation_time,
            worker: o.behavior.worker(),
            flowing_in: state(FLOW_IN),
            flowing_out: state(FLOW_OUT),
            transcoding: state(TRANSCODING),
        }
    }

    /// For each connection shown (`shown` says yes to both ends), the media connections it
    /// carries other than itself: those whose way ([`Engine::media_paths`], found when the
    /// media connections were) goes along it.
    fn carried(&self, shown: impl Fn(&str) -> bool) -> HashMap<&Edge, Vec<(String, String)>> {
        let mut out: HashMap<&Edge, Vec<(String, String)>> = HashMap::new();
        for (m, along) in &self.media_paths {
            if !shown(&m.source) {
                continue;
            }
            for g in along.iter().filter(|g| shown(&g.source) && shown(&g.sink)) {
                let pair = (m.source.clone(), m.sink.clone());
                let c = out.entry(g).or_default();
                if !c.contains(&pair) {
                    c.push(pair);
                }
            }
        }
        out
    }

    /// One element of a pipeline (not a pipeline, nor the ServerManager): its view, its
    /// stored properties and, unless its class is in `stats_elsewhere`, its getStats at
    /// `wall_ms`.
    pub fn element_detail(
        &mut self,
        id: &str,
        wall_ms: u64,
        stats_elsewhere: &[&str],
    ) -> Option<ElementDetail> {
        let o = self.registry.get(id).filter(|o| o.pipeline.is_some())?;
        let element = self.element_view(o);
        let pipeline = o.pipeline.clone();
        let properties = self.stored_properties(o);
        let latency_stats = self.latency_stats_of(id);
        let stats = (!stats_elsewhere.contains(&element.class.as_str()))
            .then(|| self.stats_report(id, wall_ms, None));
        Some(ElementDetail {
            element,
            pipeline,
            properties,
            latency_stats,
            stats,
        })
    }

    /// What the engine holds for an object's properties (see [`ElementDetail::properties`]).
    fn stored_properties(&self, o: &Object) -> Map<String, Value> {
        let mut out = Map::new();
        let tags: Vec<Value> = (o.tags.iter())
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        out.insert(
            "name".into(),
            json!(o.name.clone().unwrap_or_else(|| o.id.clone())),
        );
        out.insert("tags".into(), Value::Array(tags));
        out.insert("parent".into(), json!(o.parent));
        out.insert("children".into(), json!(o.children));
        out.insert("creationTime".into(), json!(o.creation_time));
        out.insert("sendTagsInEvents".into(), json!(o.send_tags_in_events));
        for (k, v) in &o.props {
            out.insert(k.clone(), v.clone());
        }
        if let Some(class) = self.model.class(&o.class) {
            for p in self.model.all_properties(class) {
                if let (false, Some(d)) = (out.contains_key(&p.name), &p.default) {
                    out.insert(p.name.clone(), d.clone());
                }
            }
        }
        out
    }
}
