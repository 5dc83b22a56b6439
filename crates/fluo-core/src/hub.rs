//! Hubs that route without processing media: Dispatcher and DispatcherOneToMany, and their
//! HubPorts.
//!
//! A HubPort is an element with two faces: what is connected to it is the hub's input from
//! that port, and what it is connected to gets the hub's output for that port. A Dispatcher
//! gives a sink port the input of the source port it was told (`connect(source, sink)`, both
//! media kinds; one source per sink, a new one replaces the old); a DispatcherOneToMany gives
//! every port the source's input, the source's own port included as in KMS (`setSource` /
//! `removeSource`), ports that join later too. Media is forwarded as it comes, as in KMS.
//!
//! The hub itself has no media face: the engine's media connections look through its ports
//! (as through a PassThrough) from the element feeding the source port to the elements the
//! sink ports feed, so the router routes, switches (keyframe first, one continuous line per
//! sink) and transcodes exactly as for a direct `connect()`.

use crate::element::{Element, FactoryCx, NoMedia};
use crate::engine::{Engine, Mode};
use fluo_api::{ErrorCode, KurentoError};
use fluo_sfu::{FlowDir, MediaEvent};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The routing state of every hub.
#[derive(Debug, Default)]
pub(crate) struct Hubs {
    /// Dispatcher links: (hub, source port, sink port).
    links: Vec<(String, String, String)>,
    /// DispatcherOneToMany sources, by hub.
    sources: HashMap<String, String>,
    /// Mixer routes: (hub, media type, source port, sink port); one VIDEO source per sink.
    mixes: Vec<(String, String, String, String)>,
    /// The hub ports each media connection crosses.
    pub(crate) paths: PortPaths,
    /// Hub ports that reported some media flowing.
    flowing: std::collections::BTreeSet<String>,
}

/// The hub ports that media connections cross, found while the engine walks them: per
/// connection the ports its media enters (input faces) and leaves (output faces). Paths are
/// shared prefixes (a node per port crossed), so a walk that crosses no hub allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct PortPaths {
    /// (parent, port whose input is used, port whose output is used).
    nodes: Vec<(Option<usize>, String, String)>,
    /// Connections that cross at least one port, with the last node of their path.
    reached: Vec<(crate::graph::Edge, usize)>,
}

impl PortPaths {
    /// The empty path.
    pub(crate) fn root(&self) -> Option<usize> {
        None
    }

    /// `path` going on through the hub: into port `input`, out of port `output`.
    pub(crate) fn through(
        &mut self,
        path: Option<usize>,
        input: &str,
        output: &str,
    ) -> Option<usize> {
        self.nodes
            .push((path, input.to_string(), output.to_string()));
        Some(self.nodes.len() - 1)
    }

    /// Connection `edge` was reached along `path`.
    pub(crate) fn reaches(&mut self, path: Option<usize>, edge: &crate::graph::Edge) {
        if let Some(n) = path {
            self.reached.push((edge.clone(), n));
        }
    }

    /// Each connection crossing a port, with the ports (input face, output face) it crosses.
    fn crossings(&self) -> impl Iterator<Item = (&crate::graph::Edge, &str, &str)> {
        self.reached.iter().flat_map(move |(e, last)| {
            std::iter::successors(Some(*last), |n| self.nodes[*n].0)
                .map(move |n| (e, self.nodes[n].1.as_str(), self.nodes[n].2.as_str()))
        })
    }
}

/// HubPort of a hub that routes without mixing (Dispatcher, DispatcherOneToMany):
/// transparent to the engine's media connections, but across its hub, not from its own input
/// to its own output. (A Composite's ports are media elements of their own: fluo-gst's.)
#[derive(Debug, Default, Clone, Copy)]
pub struct HubPort;

impl Element for HubPort {
    fn is_transparent(&self) -> bool {
        true
    }
}

const HUB_CLASSES: [&str; 2] = ["Dispatcher", "DispatcherOneToMany"];

impl Engine {
    pub(crate) fn register_hub_factories(&mut self) {
        for class in HUB_CLASSES {
            self.register_factory(
                class,
                Box::new(|_: &FactoryCx<'_>| Ok(Box::new(NoMedia) as Box<dyn Element>)),
            );
        }
        self.register_factory(
            "HubPort",
            Box::new(|_: &FactoryCx<'_>| Ok(Box::new(HubPort) as Box<dyn Element>)),
        );
    }

    /// The hub methods (Dispatcher.connect, DispatcherOneToMany.setSource / removeSource) on
    /// object `id`; `None` for any other method or class.
    pub(crate) fn hub_method(
        &mut self,
        id: &str,
        method: &str,
        p: &Map<String, Value>,
        mode: Mode,
    ) -> Option<Result<Value, KurentoError>> {
        let class = self.registry.get(id)?.class.as_str();
        let r = match (class, method) {
            ("Dispatcher", "connect") => self.dispatcher_connect(id, p, mode),
            ("DispatcherOneToMany", "setSource") => self.set_source(id, p, mode),
            ("AlphaBlending", "setMaster" | "setPortProperties") => {
                // Checked here; the hub's element (in the media plane) places the port.
                return self.blend_check(id, method, p, mode).err().map(Err);
            }
            ("Mixer", "connect" | "disconnect") => {
                // Checked and recorded here; the hub's element (in the media plane) routes.
                return self.mixer_route(id, method, p, mode).err().map(Err);
            }
            ("DispatcherOneToMany", "removeSource") => {
                if self.hubs.sources.remove(id).is_some() {
                    self.update_media_edges();
                }
                Ok(())
            }
            _ => return None,
        };
        Some(r.map(|()| Value::Null))
    }

    fn dispatcher_connect(
        &mut self,
        hub: &str,
        p: &Map<String, Value>,
        mode: Mode,
    ) -> Result<(), KurentoError> {
        let source = self.hub_port(hub, p, "source", mode)?;
        let sink = self.hub_port(hub, p, "sink", mode)?;
        if source == sink {
            return Err(KurentoError::new(
                ErrorCode::ConnectError,
                "Can not connect ports: a HubPort cannot be its own source",
            ));
        }
        let links = &mut self.hubs.links;
        if links
            .iter()
            .any(|l| l.0 == hub && l.1 == source && l.2 == sink)
        {
            return Ok(());
        }
        links.retain(|l| !(l.0 == hub && l.2 == sink));
        links.push((hub.to_string(), source, sink));
        self.update_media_edges();
        Ok(())
    }

    fn set_source(
        &mut self,
        hub: &str,
        p: &Map<String, Value>,
        mode: Mode,
    ) -> Result<(), KurentoError> {
        let source = self.hub_port(hub, p, "source", mode)?;
        if self.hubs.sources.get(hub) == Some(&source) {
            return Ok(());
        }
        self.hubs.sources.insert(hub.to_string(), source);
        self.update_media_edges();
        Ok(())
    }

    /// Mixer's connect and disconnect, as KMS answers them: AUDIO and VIDEO connect (VIDEO:
    /// the sink's one source, replaced), only AUDIO disconnects (VIDEO: 40005, as KMS), DATA
    /// is no media a Mixer routes (40005); ports of the hub (40004 otherwise, and for a port
    /// routed to itself); disconnecting a route that is not there is 40004.
    fn mixer_route(
        &mut self,
        hub: &str,
        method: &str,
        p: &Map<String, Value>,
        mode: Mode,
    ) -> Result<(), KurentoError> {
        let source = self.hub_port(hub, p, "source", mode)?;
        let sink = self.hub_port(hub, p, "sink", mode)?;
        let media = p.get("media").and_then(Value::as_str).unwrap_or_default();
        let unsupported =
            |text: &str| Err(KurentoError::new(ErrorCode::UnsupportedMediaType, text));
        match (method, media) {
            (_, "AUDIO") | ("connect", "VIDEO") => {}
            ("disconnect", "VIDEO") => return unsupported(
                "A Mixer's video routes are not disconnected: connect the sink to another source",
            ),
            _ => return unsupported(&format!("A Mixer routes AUDIO and VIDEO, not {media}")),
        }
        if source == sink {
            return Err(KurentoError::new(
                ErrorCode::ConnectError,
                "Can not connect ports: a HubPort cannot be its own source",
            ));
        }
        let mixes = &mut self.hubs.mixes;
        let route = (hub.to_string(), media.to_string(), source, sink);
        let known = mixes.contains(&route);
        if method == "disconnect" {
            if !known {
                return Err(KurentoError::new(
                    ErrorCode::ConnectError,
                    "Can not disconnect ports: the source's AUDIO is not connected to the sink",
                ));
            }
            mixes.retain(|r| *r != route);
            return Ok(());
        }
        if media == "VIDEO" {
            mixes.retain(|r| !(r.0 == route.0 && r.1 == route.1 && r.3 == route.3));
        }
        if !known {
            mixes.push(route);
        }
        Ok(())
    }

    /// AlphaBlending's checks: the port is one of the hub's, the relative values within 0..1
    /// (the kmd's range).
    fn blend_check(
        &self,
        hub: &str,
        method: &str,
        p: &Map<String, Value>,
        mode: Mode,
    ) -> Result<(), KurentoError> {
        if method == "setMaster" {
            return self.hub_port(hub, p, "source", mode).map(drop);
        }
        self.hub_port(hub, p, "port", mode)?;
        for name in ["relativeX", "relativeY", "relativeWidth", "relativeHeight"] {
            let v = p.get(name).and_then(Value::as_f64).unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&v) {
                return Err(KurentoError::new(
                    ErrorCode::MediaObjectIllegalParamError,
                    format!("AlphaBlending '{name}' must be within 0..1 (got {v})"),
                ));
            }
        }
        Ok(())
    }

    /// The HubPort of `hub` named by parameter `name`, or the error KMS-style clients expect:
    /// a released or unknown object (40101), an object that is no HubPort (40001), a port of
    /// another hub or pipeline (40004).
    fn hub_port(
        &self,
        hub: &str,
        p: &Map<String, Value>,
        name: &str,
        mode: Mode,
    ) -> Result<String, KurentoError> {
        let id = p.get(name).and_then(Value::as_str).unwrap_or_default();
        let o = self.lookup(id, mode)?;
        if !self.model.is_a(&o.class, "HubPort") {
            return Err(KurentoError::marshall(format!(
                "'{name}' parameter should be a HubPort (got a {})",
                o.class
            )));
        }
        if o.parent.as_deref() != Some(hub) {
            return Err(KurentoError::new(
                ErrorCode::ConnectError,
                format!("Can not connect ports: '{name}' is a HubPort of another hub"),
            ));
        }
        Ok(o.id.clone())
    }

    /// Whether `id` is a HubPort of a routing hub: media reaching it goes to the ports its hub
    /// routes it to. (A Composite's port is not transparent: media ends and starts there.)
    pub(crate) fn is_hub_port(&self, id: &str) -> bool {
        self.registry
            .get(id)
            .is_some_and(|o| o.class == "HubPort" && o.behavior.is_transparent())
    }

    /// The ports whose output is the input of hub port `port` (of `media_type`: hubs carry
    /// audio and video).
    pub(crate) fn hub_outputs(&self, port: &str, media_type: &str) -> Vec<String> {
        if !matches!(media_type, "AUDIO" | "VIDEO") {
            return vec![];
        }
        let Some(hub) = self.registry.get(port).and_then(|o| o.parent.as_deref()) else {
            return vec![];
        };
        let mut out: Vec<String> = (self.hubs.links.iter())
            .filter(|l| l.0 == hub && l.1 == port)
            .map(|l| l.2.clone())
            .collect();
        if self.hubs.sources.get(hub).is_some_and(|s| s == port) {
            // Every port, the source's own included: KMS links the source to all its ports.
            let ports = self.registry.get(hub).map(|h| h.children.as_slice());
            out.extend(ports.unwrap_or_default().iter().cloned());
        }
        out
    }

    /// Media-flow events of hub ports, from the elements around them: a port's input flows
    /// while an element connected to it sends, its output while an element its hub's output
    /// reaches (through it) receives. Raised when that changes (a media-flow event of an
    /// element, a connection, a switch).
    pub(crate) fn hub_flows(&mut self) {
        let into_ports = (self.edges())
            .iter()
            .filter(|e| self.is_hub_port(&e.sink) && !self.is_hub_port(&e.source));
        if self.hubs.paths.reached.is_empty()
            && self.hubs.flowing.is_empty()
            && into_ports.clone().next().is_none()
        {
            return;
        }
        let state = |id: &str, ev: &str, media: &str| {
            self.registry
                .get(id)
                .and_then(|o| o.media_states.get(&format!("{ev}/{media}")).copied())
        };
        // (port, direction, media type) -> flowing: every face any connection crosses.
        let mut want: std::collections::BTreeMap<(String, bool, String), bool> = Default::default();
        for e in into_ports {
            let on = state(&e.source, "MediaFlowOutStateChanged", &e.media_type) == Some(true);
            *want
                .entry((e.sink.clone(), true, e.media_type.clone()))
                .or_default() |= on;
        }
        for (e, _, output) in self.hubs.paths.crossings() {
            let on = state(&e.sink, "MediaFlowInStateChanged", &e.media_type) == Some(true);
            *want
                .entry((output.to_string(), false, e.media_type.clone()))
                .or_default() |= on;
        }
        // Ports that were flowing and no connection crosses any more stop.
        let was = self
            .hubs
            .flowing
            .iter()
            .filter_map(|id| self.registry.get(id));
        for o in was {
            let id = &o.id;
            for (key, on) in &o.media_states {
                let Some((ev, media)) = key.split_once('/') else {
                    continue;
                };
                let inbound = match ev {
                    "MediaFlowInStateChanged" => true,
                    "MediaFlowOutStateChanged" => false,
                    _ => continue,
                };
                if *on {
                    want.entry((id.clone(), inbound, media.to_string()))
                        .or_insert(false);
                }
            }
        }
        let mut raise = vec![];
        for ((port, inbound, media), on) in want {
            let (ev, dir) = match inbound {
                true => ("MediaFlowInStateChanged", FlowDir::In),
                false => ("MediaFlowOutStateChanged", FlowDir::Out),
            };
            let Some(kind) = fluo_sfu::MediaKind::from_wire(&media) else {
                continue;
            };
            if state(&port, ev, &media).unwrap_or(false) != on {
                raise.push((
                    port,
                    MediaEvent::Flow {
                        dir,
                        kind,
                        flowing: on,
                    },
                ));
            }
        }
        for (port, event) in raise {
            // Recorded now, so that the walk above sees it at once.
            if let Some(o) = self.registry.get_mut(&port) {
                let key = format!("{}/{}", crate::event_name(&event), media_of(&event));
                o.media_states
                    .insert(key, matches!(event, MediaEvent::Flow { flowing: true, .. }));
                if o.media_states.values().any(|on| *on) {
                    self.hubs.flowing.insert(port.clone());
                } else {
                    self.hubs.flowing.remove(&port);
                }
            }
            self.push_event(
                &port,
                crate::event_name(&event),
                crate::event_fields(&event),
            );
        }
    }

    /// An object is being destroyed: the hub links it was part of go (a released source port
    /// feeds nobody any more; the hub's later setSource or connect work as before).
    pub(crate) fn hub_object_gone(&mut self, id: &str) {
        self.hubs.flowing.remove(id);
        (self.hubs.mixes).retain(|r| r.0 != id && r.2 != id && r.3 != id);
        let before = self.hubs.links.len();
        self.hubs
            .links
            .retain(|l| l.0 != id && l.1 != id && l.2 != id);
        let mut changed = before != self.hubs.links.len();
        self.hubs.sources.retain(|hub, src| {
            let keep = hub != id && src != id;
            changed |= !keep;
            keep
        });
        if changed {
            self.update_media_edges();
        }
    }
}

fn media_of(ev: &MediaEvent) -> &'static str {
    match ev {
        MediaEvent::Flow { kind, .. } => kind.wire_name(),
        _ => "",
    }
}
