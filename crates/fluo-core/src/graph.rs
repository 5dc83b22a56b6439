//! The pipeline graph: which element's output feeds which element's input, per media type.
//!
//! As in Kurento, an input (sink element, media type, sink description) has at most one
//! source: connecting a new source to it replaces the old connection.

use crate::engine::{Engine, Mode};
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// One connection: `source`'s output of `media_type` feeds `sink`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Edge {
    /// Source element id.
    pub source: String,
    /// Sink element id.
    pub sink: String,
    /// `AUDIO`, `VIDEO` or `DATA`.
    pub media_type: String,
    /// Source pad description (`default` unless given).
    pub source_description: String,
    /// Sink pad description (`default` unless given).
    pub sink_description: String,
}

impl Edge {
    /// The media kind the edge carries; `None` for `DATA` (data channels).
    pub fn media_kind(&self) -> Option<fluo_sfu::MediaKind> {
        fluo_sfu::MediaKind::from_wire(&self.media_type)
    }

    fn to_json(&self) -> Value {
        json!({
            "__module__": "kurento",
            "__type__": "ElementConnectionData",
            "source": self.source,
            "sink": self.sink,
            "type": self.media_type,
            "sourceDescription": self.source_description,
            "sinkDescription": self.sink_description,
        })
    }
}

/// All connections of all pipelines.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) edges: Vec<Edge>,
}

const MEDIA_TYPES: [&str; 3] = ["AUDIO", "VIDEO", "DATA"];

fn str_param<'a>(p: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    p.get(name).and_then(Value::as_str)
}

impl Engine {
    /// Every connection of every pipeline.
    pub fn edges(&self) -> &[Edge] {
        &self.graph.edges
    }

    /// `MediaElement.connect`.
    pub(crate) fn connect(
        &mut self,
        session: &str,
        source: &str,
        p: &Map<String, Value>,
        mode: Mode,
    ) -> Result<(), KurentoError> {
        let (sink, types, sd, kd) = self.edge_params(source, p, mode)?;
        self.reference(session, &sink)?;
        let (mut added, mut removed) = (vec![], vec![]);
        for t in types {
            let new = Edge {
                source: source.to_string(),
                sink: sink.clone(),
                media_type: t.to_string(),
                source_description: sd.clone(),
                sink_description: kd.clone(),
            };
            if self.graph.edges.contains(&new) {
                continue;
            }
            // The sink's input of this type has one source: replace the old one.
            let old: Vec<Edge> = self
                .graph
                .edges
                .iter()
                .filter(|e| {
                    e.sink == new.sink
                        && e.media_type == new.media_type
                        && e.sink_description == new.sink_description
                })
                .cloned()
                .collect();
            for e in old {
                self.remove_edge_quietly(&e);
                removed.push(e);
            }
            self.graph.edges.push(new.clone());
            added.push(new.clone());
            self.with_element(&new.source, |el, cx| el.connected(cx, &new));
            if new.sink != new.source {
                self.with_element(&new.sink, |el, cx| el.connected(cx, &new));
            }
            self.push_event(&new.source, "ElementConnected", edge_fields(&new));
        }
        self.update_media_edges_after(&added, &removed);
        Ok(())
    }

    /// `MediaElement.disconnect`.
    pub(crate) fn disconnect(
        &mut self,
        source: &str,
        p: &Map<String, Value>,
        mode: Mode,
    ) -> Result<(), KurentoError> {
        let (sink, types, sd, kd) = self.edge_params(source, p, mode)?;
        let gone: Vec<Edge> = self
            .graph
            .edges
            .iter()
            .filter(|e| {
                e.source == source
                    && e.sink == sink
                    && types.contains(&e.media_type.as_str())
                    && e.source_description == sd
                    && e.sink_description == kd
            })
            .cloned()
            .collect();
        for e in &gone {
            self.remove_edge_quietly(e);
        }
        self.update_media_edges_after(&[], &gone);
        Ok(())
    }

    fn edge_params(
        &self,
        source: &str,
        p: &Map<String, Value>,
        mode: Mode,
    ) -> Result<(String, Vec<&'static str>, String, String), KurentoError> {
        let sink = str_param(p, "sink").unwrap_or_default().to_string();
        let sink_obj = self.lookup(&sink, mode)?;
        if !self.model.is_a(&sink_obj.class, "MediaElement") {
            return Err(KurentoError::marshall(
                "'sink' parameter should be a MediaElement",
            ));
        }
        let src_pipeline = self.registry.get(source).and_then(|o| o.pipeline.clone());
        if sink_obj.pipeline != src_pipeline {
            return Err(KurentoError::new(
                ErrorCode::ConnectError,
                "Cannot connect elements of different media pipelines",
            ));
        }
        let types: Vec<&'static str> = match str_param(p, "mediaType") {
            Some(t) => MEDIA_TYPES.iter().copied().filter(|m| *m == t).collect(),
            None => MEDIA_TYPES.to_vec(),
        };
        let desc = |k: &str| str_param(p, k).unwrap_or("default").to_string();
        Ok((
            sink,
            types,
            desc("sourceMediaDescription"),
            desc("sinkMediaDescription"),
        ))
    }

    /// Removes one connection and tells its ends; the caller updates the media edges once
    /// after all its removals.
    fn remove_edge_quietly(&mut self, e: &Edge) {
        let before = self.graph.edges.len();
        self.graph.edges.retain(|x| x != e);
        if self.graph.edges.len() == before {
            return;
        }
        self.with_element(&e.source, |el, cx| el.disconnected(cx, e));
        if e.sink != e.source {
            self.with_element(&e.sink, |el, cx| el.disconnected(cx, e));
        }
        if self.registry.get(&e.source).is_some() {
            self.push_event(&e.source, "ElementDisconnected", edge_fields(e));
        }
    }

    /// Media connections as media sees them: PassThrough-like elements are looked through,
    /// so a source feeding a PassThrough that feeds a sink is connected to that sink.
    pub fn media_edges(&self) -> &[Edge] {
        &self.media_edges
    }

    pub(crate) fn is_transparent(&self, id: &str) -> bool {
        self.registry
            .get(id)
            .is_some_and(|o| o.behavior.is_transparent())
    }

    /// Brings the media connections up to date after graph edges were `added` and `removed`.
    /// An edge between two elements that are not transparent is a media connection of its
    /// own and lies on no other one's path (paths only continue through transparent
    /// elements), so such changes apply directly; anything else recomputes them all. A join
    /// of a viewer to a publisher is the first kind: it costs the same with a thousand
    /// viewers as with one.
    fn update_media_edges_after(&mut self, added: &[Edge], removed: &[Edge]) {
        let simple = |e: &Edge| !self.is_transparent(&e.source) && !self.is_transparent(&e.sink);
        if !(added.iter().all(simple) && removed.iter().all(simple)) {
            self.update_media_edges();
            return;
        }
        let gone: Vec<Edge> = removed
            .iter()
            .filter(|e| !self.graph.edges.contains(e) && self.media_edges.contains(e))
            .cloned()
            .collect();
        if !gone.is_empty() {
            self.media_edges.retain(|m| !gone.contains(m));
        }
        let mut new: Vec<Edge> = vec![];
        for e in added {
            if self.graph.edges.contains(e) && !self.media_edges.contains(e) && !new.contains(e) {
                new.push(e.clone());
            }
        }
        self.media_edges.extend(new.iter().cloned());
        self.notify_media_edges(&gone, &new);
    }

    /// Recomputes the media connections and tells the elements at both ends what changed.
    /// The connections each one goes along are kept too ([`Engine::media_paths`]).
    pub(crate) fn update_media_edges(&mut self) {
        let mut next: Vec<Edge> = vec![];
        let mut next_set: std::collections::HashSet<Edge> = std::collections::HashSet::new();
        let mut ports = crate::hub::PortPaths::default();
        // The connections walked: (the one before, index in the graph), shared prefixes.
        let mut trail: Vec<(Option<usize>, usize)> = vec![];
        let mut paths: HashMap<Edge, Vec<Edge>> = HashMap::new();
        let edges = &self.graph.edges;
        for (i, e) in edges.iter().enumerate() {
            if self.is_transparent(&e.source) {
                continue;
            }
            // Walk through transparent elements, same media type, no loops. What reaches a hub
            // port goes on from the ports its hub gives that input to.
            trail.push((None, i));
            let start = (e.sink.clone(), e.sink_description.clone(), ports.root());
            let mut stack = vec![(start, trail.len() - 1)];
            let mut seen = std::collections::HashSet::new();
            while let Some(((node, desc, path), step)) = stack.pop() {
                if !seen.insert(node.clone()) {
                    continue;
                }
                if !self.is_transparent(&node) {
                    let m = Edge {
                        source: e.source.clone(),
                        sink: node,
                        media_type: e.media_type.clone(),
                        source_description: e.source_description.clone(),
                        sink_description: desc,
                    };
                    ports.reaches(path, &m);
                    if trail[step].0.is_some() {
                        let along = paths.entry(m.clone()).or_default();
                        let walked = std::iter::successors(Some(step), |s| trail[*s].0);
                        for s in walked {
                            let g = &edges[trail[s].1];
                            if !along.contains(g) {
                                along.insert(0, g.clone());
                            }
                        }
                    }
                    if next_set.insert(m.clone()) {
                        next.push(m);
                    }
                    continue;
                }
                let hub = self.is_hub_port(&node);
                let from = if hub {
                    self.hub_outputs(&node, &e.media_type)
                } else {
                    vec![node.clone()]
                };
                for (j, f) in edges.iter().enumerate() {
                    if from.contains(&f.source) && f.media_type == e.media_type {
                        let path = match hub {
                            true => ports.through(path, &node, &f.source),
                            false => path,
                        };
                        trail.push((Some(step), j));
                        let next_node = (f.sink.clone(), f.sink_description.clone(), path);
                        stack.push((next_node, trail.len() - 1));
                    }
                }
            }
        }
        let old: std::collections::HashSet<&Edge> = self.media_edges.iter().collect();
        let gone: Vec<Edge> = self
            .media_edges
            .iter()
            .filter(|e| !next_set.contains(*e))
            .cloned()
            .collect();
        let added: Vec<Edge> = next.iter().filter(|e| !old.contains(e)).cloned().collect();
        drop(old);
        self.media_edges = next;
        self.media_paths = paths;
        self.hubs.paths = ports;
        self.notify_media_edges(&gone, &added);
        self.hub_flows();
    }

    /// Tells the elements at both ends of media connections that went or came.
    fn notify_media_edges(&mut self, gone: &[Edge], added: &[Edge]) {
        for e in gone {
            self.with_element(&e.source, |el, cx| el.media_disconnected(cx, e));
            if e.sink != e.source {
                self.with_element(&e.sink, |el, cx| el.media_disconnected(cx, e));
            }
        }
        for e in added {
            self.with_element(&e.source, |el, cx| el.media_connected(cx, e));
            if e.sink != e.source {
                self.with_element(&e.sink, |el, cx| el.media_connected(cx, e));
            }
        }
    }

    /// Removes every connection to or from an element that is going away.
    pub(crate) fn disconnect_all(&mut self, id: &str) {
        let gone: Vec<Edge> = self
            .graph
            .edges
            .iter()
            .filter(|e| e.source == id || e.sink == id)
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        for e in &gone {
            self.remove_edge_quietly(e);
        }
        self.update_media_edges_after(&[], &gone);
    }

    /// `getSourceConnections` / `getSinkConnections`.
    pub(crate) fn connections(&self, id: &str, as_sink: bool, p: &Map<String, Value>) -> Value {
        let t = str_param(p, "mediaType");
        let d = str_param(p, "description");
        Value::Array(
            self.graph
                .edges
                .iter()
                .filter(|e| {
                    if as_sink {
                        e.sink == id
                    } else {
                        e.source == id
                    }
                })
                .filter(|e| t.is_none_or(|t| e.media_type == t))
                .filter(|e| {
                    d.is_none_or(|d| {
                        let mine = if as_sink {
                            &e.sink_description
                        } else {
                            &e.source_description
                        };
                        mine == d
                    })
                })
                .map(Edge::to_json)
                .collect(),
        )
    }

    /// A Graphviz DOT rendering of a pipeline (or of one element's neighbourhood).
    pub(crate) fn dot(&self, pipeline: &str, only: Option<&str>) -> String {
        let mut out = String::from("digraph pipeline {\n  rankdir=LR;\n");
        let label = |id: &str| {
            let o = self.registry.get(id);
            let class = o.map(|o| o.class.as_str()).unwrap_or("?");
            let name = o.and_then(|o| o.name.clone()).unwrap_or_default();
            format!("{class} {}{name}", short(id))
        };
        out.push_str(&format!(
            "  label=\"{}\";\n",
            escape(&format!("MediaPipeline {}", short(pipeline)))
        ));
        // The pipeline's elements and hubs, and the hubs' ports.
        let mut members: Vec<String> = self
            .registry
            .get(pipeline)
            .map(|p| p.children.clone())
            .unwrap_or_default();
        let ports: Vec<String> = (members.iter())
            .filter_map(|m| self.registry.get(m))
            .flat_map(|o| o.children.iter().cloned())
            .collect();
        members.extend(ports);
        let parent = |m: &str| self.registry.get(m).and_then(|o| o.parent.clone());
        for m in &members {
            let in_hub =
                |o: &str| parent(m).as_deref() == Some(o) || parent(o).as_deref() == Some(m);
            if only.is_some_and(|o| o != m && !self.adjacent(o, m) && !in_hub(o)) {
                continue;
            }
            out.push_str(&format!(
                "  \"{}\" [shape=box,label=\"{}\"];\n",
                escape(m),
                escape(&label(m))
            ));
        }
        for e in &self.graph.edges {
            if !members.contains(&e.source) {
                continue;
            }
            if only.is_some_and(|o| e.source != o && e.sink != o) {
                continue;
            }
            out.push_str(&format!(
                "  \"{}\" -> \"{}\" [label=\"{} {}->{}\"];\n",
                escape(&e.source),
                escape(&e.sink),
                e.media_type,
                escape(&e.source_description),
                escape(&e.sink_description)
            ));
        }
        out.push_str("}\n");
        out
    }

    fn adjacent(&self, a: &str, b: &str) -> bool {
        self.graph
            .edges
            .iter()
            .any(|e| (e.source == a && e.sink == b) || (e.source == b && e.sink == a))
    }
}

fn edge_fields(e: &Edge) -> Map<String, Value> {
    Map::from_iter([
        ("sink".to_string(), Value::from(e.sink.clone())),
        ("mediaType".to_string(), Value::from(e.media_type.clone())),
        (
            "sourceMediaDescription".to_string(),
            Value::from(e.source_description.clone()),
        ),
        (
            "sinkMediaDescription".to_string(),
            Value::from(e.sink_description.clone()),
        ),
    ])
}

fn short(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
