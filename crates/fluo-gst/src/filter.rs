//! GStreamerFilter: a client-given GStreamer bin description applied to decoded media.
//!
//! The port decodes the routed media of the filtered kind, runs it through the command's bin
//! and encodes it again to the codec it came in, so the sinks that took the source take the
//! filter's output too. The other kind passes through untouched (as KMS does with
//! filterType VIDEO or AUDIO). The pipeline is built when the first packet arrives, since
//! only then is the codec known, and again if the source changes codec.
//!
//! The command is parsed on its own into a bin, checked against the [`FilterPolicy`] and
//! linked to Fluo's own elements by pads, never spliced into a pipeline string: a command can
//! add elements only inside its bin.

use crate::bridge;
use crate::codecs;
use crate::{error_fields, EventSink, Media};
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, Factory, FactoryCx};
use fluo_sfu::{Codec, CodecName, MediaKind, MediaPacket, Port, PortOutput};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex, MutexGuard};

/// Video bitrate of the filter's encoder, in kbps.
const VIDEO_KBPS: u32 = 1500;

/// Which elements a GStreamerFilter command may use.
///
/// By default every element except sources and sinks (their factory class says `Source` or
/// `Sink`: files, sockets, devices), so that a client cannot read or write files or reach
/// the network through a command. An allow-list replaces that rule: only the listed factory
/// names (plus `capsfilter` and `bin`, which caps strings and parentheses create) are
/// allowed; `*` allows everything, as KMS does.
#[derive(Debug, Clone, Default)]
pub struct FilterPolicy {
    allow: Option<Vec<String>>,
}

impl FilterPolicy {
    /// A policy from an allow-list (`None`: the default rule).
    pub fn new(allow: Option<Vec<String>>) -> FilterPolicy {
        FilterPolicy {
            allow: allow.map(|v| {
                v.into_iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
        }
    }

    /// Why the element `e` is refused, if it is.
    ///
    /// The default rule refuses what can reach files, devices or the network, or load more
    /// elements later (which this check would not see): sources, sinks, muxers, demuxers,
    /// decoders, players and network elements by their class; bins other than plain `bin`
    /// (uridecodebin, splitmuxsink, playbin... build their children at run time); URI
    /// handlers; and anything with a file, URI or device property.
    fn refuses(&self, e: &gst::Element) -> Option<String> {
        let Some(factory) = e.factory() else {
            return Some(format!("the element {} has no factory", e.name()));
        };
        let name = factory.name();
        if let Some(list) = &self.allow {
            let listed = list.iter().any(|a| a == "*" || a == name.as_str())
                || matches!(name.as_str(), "capsfilter" | "bin");
            return (!listed).then(|| format!("the element {name} is not in the GStreamerFilter allow-list (fluo.gstFilterAllowList)"));
        }
        let klass = factory.metadata("klass").unwrap_or_default();
        const CLASSES: [&str; 8] = [
            "Source", "Sink", "Muxer", "Demuxer", "Decoder", "Player", "Network", "Bin",
        ];
        let class = klass
            .split('/')
            .find(|k| CLASSES.contains(k))
            .filter(|_| name.as_str() != "bin");
        let why = if let Some(k) = class {
            Some(format!(
                "the element {name} ({klass}) is a {}",
                k.to_lowercase()
            ))
        } else if e.is::<gst::URIHandler>() {
            Some(format!("the element {name} opens URIs"))
        } else {
            e.list_properties()
                .iter()
                .map(|p| p.name())
                .find(|p| IO_PROPERTIES.contains(p))
                .map(|p| {
                    format!("the element {name} has a '{p}' property (files, URIs or devices)")
                })
        };
        why.map(|w| format!("{w}; GStreamerFilter commands may only transform media (allow it with fluo.gstFilterAllowList)"))
    }

    /// Whether setElementProperty may set `property` (the default rule keeps file, URI and
    /// device properties out of reach; an allow-list trusts the elements it names).
    fn refuses_property(&self, property: &str) -> bool {
        self.allow.is_none() && IO_PROPERTIES.contains(&property)
    }
}

/// Property names that point at files, URIs, devices or hosts.
const IO_PROPERTIES: [&str; 9] = [
    "location", "uri", "device", "file", "filename", "path", "host", "address", "socket",
];

fn illegal(msg: String) -> KurentoError {
    KurentoError::new(ErrorCode::MediaObjectIllegalParamError, msg)
}

/// Parses `command` into a bin with one sink and one source pad, checked against `policy`.
fn parse_command(command: &str, policy: &FilterPolicy) -> Result<gst::Bin, KurentoError> {
    if command.trim().is_empty() {
        return Err(illegal("GStreamerFilter: the command is empty".into()));
    }
    let bin = gst::parse::bin_from_description(command, true)
        .map_err(|e| illegal(format!("GStreamerFilter: the command does not parse: {e}")))?;
    let mut refused = vec![];
    for e in bin.iterate_recurse().into_iter().flatten() {
        refused.extend(policy.refuses(&e));
    }
    if let Some(why) = refused.into_iter().next() {
        return Err(illegal(format!("GStreamerFilter: {why}")));
    }
    if bin.static_pad("sink").is_none() || bin.static_pad("src").is_none() {
        return Err(illegal(
            "GStreamerFilter: the command must leave exactly one sink pad and one source pad unlinked"
                .into(),
        ));
    }
    Ok(bin)
}

/// The kind of media a command filters: from filterType, or from the caps of its sink pad.
fn filter_kind(bin: &gst::Bin, filter_type: &str) -> Result<MediaKind, KurentoError> {
    match filter_type {
        "VIDEO" => return Ok(MediaKind::Video),
        "AUDIO" => return Ok(MediaKind::Audio),
        "AUTODETECT" => {}
        other => {
            return Err(illegal(format!(
                "GStreamerFilter: unknown filterType {other}"
            )))
        }
    }
    let caps = bin
        .static_pad("sink")
        .map(|p| p.query_caps(None))
        .unwrap_or_else(gst::Caps::new_any);
    let has = |prefix: &str| !caps.is_any() && caps.iter().any(|s| s.name().starts_with(prefix));
    Ok(if has("audio/") && !has("video/") {
        MediaKind::Audio
    } else {
        MediaKind::Video
    })
}

pub(crate) struct FilterFactory {
    pub media: Media,
}

impl Factory for FilterFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        crate::init().map_err(|e| KurentoError::new(ErrorCode::UnexpectedError, e))?;
        let command = cx
            .params
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let filter_type = cx
            .params
            .get("filterType")
            .and_then(Value::as_str)
            .unwrap_or("AUTODETECT");
        let bin = parse_command(&command, &self.media.filters)?;
        let kind = filter_kind(&bin, filter_type)?;
        tracing::info!(id = %cx.id, %command, ?kind, "GStreamerFilter created");
        let shared = Arc::new(Mutex::new(Shared {
            bin: None,
            props: vec![],
        }));
        let port_shared = shared.clone();
        let (id, events, cmd) = (
            cx.id.to_string(),
            self.media.events.clone(),
            command.clone(),
        );
        let key = self.media.bus.add_port(
            cx.id,
            Box::new(move |out| {
                Box::new(FilterPort {
                    kind,
                    command: cmd,
                    shared: port_shared,
                    out,
                    branch: None,
                    failed: None,
                    built_at: None,
                    id,
                    events,
                }) as Box<dyn Port>
            }),
        );
        Ok(Box::new(Filter {
            id: cx.id.to_string(),
            key,
            command,
            shared,
            media: self.media.clone(),
        }))
    }
}

/// What the element (engine thread) and its port (router thread) share.
struct Shared {
    /// The command's bin in the running pipeline.
    bin: Option<gst::Bin>,
    /// Properties set with setElementProperty, applied again to each new pipeline.
    props: Vec<(String, String)>,
}

fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// `value` as the property `name` of `e`, if `e` has such a writable property and the text
/// is a valid value of it (GStreamer's own syntax: numbers, enum nicks, caps...).
fn property_value(e: &gst::Element, name: &str, value: &str) -> Result<glib::Value, String> {
    let pspec = e
        .find_property(name)
        .ok_or_else(|| format!("{} has no property {name}", e.name()))?;
    let f = pspec.flags();
    if !f.contains(glib::ParamFlags::WRITABLE) || f.contains(glib::ParamFlags::CONSTRUCT_ONLY) {
        return Err(format!("the property {name} of {} cannot be set", e.name()));
    }
    let v = glib::Value::deserialize_with_pspec(value, &pspec).map_err(|_| {
        format!(
            "{value:?} is not a value of {name} ({})",
            pspec.value_type()
        )
    })?;
    if !v.type_().is_a(pspec.value_type()) || !pspec.value_is_valid(&v) {
        return Err(format!("{value:?} is out of range for {name}"));
    }
    Ok(v)
}

/// Sets `name` to `value` on every element of `bin` that has such a property; how many
/// elements took it. Refuses (setting nothing) if one of them cannot take it.
fn set_property(bin: &gst::Bin, name: &str, value: &str) -> Result<usize, String> {
    let mut set = vec![];
    for e in bin.iterate_recurse().into_iter().flatten() {
        if e.find_property(name).is_some() {
            let v = property_value(&e, name, value)?;
            set.push((e, v));
        }
    }
    for (e, v) in &set {
        e.set_property_from_value(name, v);
    }
    Ok(set.len())
}

struct Filter {
    id: String,
    key: u64,
    command: String,
    shared: Arc<Mutex<Shared>>,
    media: Media,
}

impl Filter {
    fn set_element_property(&mut self, params: &Map<String, Value>) -> Result<Value, KurentoError> {
        let name = params
            .get("propertyName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = params
            .get("propertyValue")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if self.media.filters.refuses_property(name) {
            return Err(illegal(format!(
                "GStreamerFilter: the property {name} (files, URIs or devices) cannot be set (allow the element with fluo.gstFilterAllowList)"
            )));
        }
        // Checked on a fresh parse of the command, so that a wrong name or value fails now.
        let probe = parse_command(&self.command, &self.media.filters)?;
        match set_property(&probe, name, value) {
            Ok(0) => {
                return Err(illegal(format!(
                    "GStreamerFilter: no element of \"{}\" has a property {name}",
                    self.command
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(illegal(format!("GStreamerFilter: {e}"))),
        }
        let mut s = lock(&self.shared);
        s.props.retain(|(n, _)| n != name);
        s.props.push((name.to_string(), value.to_string()));
        if let Some(bin) = &s.bin {
            let _ = set_property(bin, name, value);
        }
        tracing::debug!(id = %self.id, %name, %value, "GStreamerFilter property set");
        Ok(Value::Null)
    }
}

impl Element for Filter {
    fn invoke(
        &mut self,
        _cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        match method {
            "setElementProperty" => Some(self.set_element_property(params)),
            _ => None,
        }
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        (name == "command").then(|| Value::from(self.command.clone()))
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, true);
        if edge.sink == self.id {
            // The decoder starts at a keyframe.
            self.media.bus.request_keyframe(self.key);
        }
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, false);
    }

    fn released(&mut self) {
        self.media.bus.remove_port(self.key);
    }
}

/// The running decode -> command -> encode pipeline for one input codec.
struct Branch {
    codec: Codec,
    pipeline: gst::Pipeline,
    input: gst_app::AppSrc,
    sink: gst::Element,
}

impl Drop for Branch {
    fn drop(&mut self) {
        bridge::stop_in_background(self.pipeline.clone());
    }
}

struct FilterPort {
    kind: MediaKind,
    command: String,
    shared: Arc<Mutex<Shared>>,
    out: PortOutput,
    branch: Option<Branch>,
    /// The codec whose pipeline failed to build (not retried for every packet).
    failed: Option<Codec>,
    /// When the pipeline was last (re)built: a source flapping between codecs rebuilds it
    /// at most once a second.
    built_at: Option<std::time::Instant>,
    id: String,
    events: EventSink,
}

impl FilterPort {
    fn build(&self, codec: &Codec) -> Result<Branch, String> {
        let depay = codecs::depay(codec).ok_or("no depayloader")?;
        let dec = codecs::decoder(codec).ok_or("no decoder")?;
        let enc = codecs::encoder(codec, VIDEO_KBPS).ok_or("no encoder")?;
        let convert = match self.kind {
            MediaKind::Video => "videoconvert",
            MediaKind::Audio => "audioconvert ! audioresample",
        };
        let desc = format!(
            "{} ! rtpjitterbuffer latency=20 ! {depay} ! {dec} ! {convert} ! identity name=pre \
             identity name=post ! queue max-size-buffers=30 max-size-time=0 max-size-bytes=0 leaky=downstream \
             ! {enc} ! appsink name=out sync=false max-buffers=200 drop=true",
            bridge::appsrc_desc("in", codec)
        );
        let pipeline = bridge::launch(&desc)?;
        // The command was accepted at create; parse it again for this pipeline.
        let bin = gst::parse::bin_from_description(&self.command, true)
            .map_err(|e| format!("the command does not parse: {e}"))?;
        for (name, value) in &lock(&self.shared).props {
            let _ = set_property(&bin, name, value);
        }
        pipeline
            .add(&bin)
            .map_err(|e| format!("cannot add the command's bin: {e}"))?;
        let by_name = |n: &str| pipeline.by_name(n).ok_or_else(|| format!("no element {n}"));
        let (pre, post) = (by_name("pre")?, by_name("post")?);
        pre.link(&bin)
            .map_err(|e| format!("the command does not take {:?} media: {e}", self.kind))?;
        bin.link(&post)
            .map_err(|e| format!("the command's output does not link: {e}"))?;
        let input = bridge::appsrc(&pipeline, "in")?;
        let sink = bridge::appsink(&pipeline, "out")?;
        bridge::forward_appsink(&sink, self.kind, *codec, self.out.clone());
        if let Some(bus) = pipeline.bus() {
            let (id, events) = (self.id.clone(), self.events.clone());
            bus.set_sync_handler(move |_, msg| {
                if let gst::MessageView::Error(e) = msg.view() {
                    tracing::warn!(%id, "GStreamerFilter error: {} ({:?})", e.error(), e.debug());
                    events(&id, "Error", error_fields(e, "GSTREAMER_FILTER_ERROR"));
                }
                gst::BusSyncReply::Drop
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("the filter pipeline does not start: {e}"))?;
        lock(&self.shared).bin = Some(bin);
        tracing::debug!(id = %self.id, %codec, "GStreamerFilter pipeline playing");
        Ok(Branch {
            codec: *codec,
            pipeline,
            input,
            sink: sink.upcast(),
        })
    }
}

impl Port for FilterPort {
    fn accepts(&self, kind: MediaKind, codec: &Codec) -> bool {
        kind != self.kind || codecs::available(codec)
    }

    fn wants(&self, kind: MediaKind) -> Vec<Codec> {
        let name = match kind {
            MediaKind::Video => CodecName::Vp8,
            MediaKind::Audio => CodecName::Opus,
        };
        vec![Codec::new(name)]
    }

    fn push(&mut self, pkt: &MediaPacket) {
        if pkt.kind != self.kind {
            self.out.send(pkt.clone());
            return;
        }
        if self.failed.is_some_and(|c| c.compatible(&pkt.codec)) {
            return;
        }
        if !self
            .branch
            .as_ref()
            .is_some_and(|b| b.codec.compatible(&pkt.codec))
        {
            let recent = self
                .built_at
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1));
            if self.branch.is_some() && recent {
                return;
            }
            self.built_at = Some(std::time::Instant::now());
            self.branch = None;
            self.failed = None;
            lock(&self.shared).bin = None;
            match self.build(&pkt.codec) {
                Ok(b) => self.branch = Some(b),
                Err(e) => {
                    tracing::warn!(id = %self.id, "GStreamerFilter: {e}");
                    let mut m = Map::new();
                    m.insert(
                        "description".into(),
                        Value::from(format!("GStreamerFilter: {e}")),
                    );
                    m.insert("errorCode".into(), Value::from(40003));
                    m.insert("type".into(), Value::from("GSTREAMER_FILTER_ERROR"));
                    (self.events)(&self.id, "Error", m);
                    // Not again for every packet: wait for another codec.
                    self.failed = Some(pkt.codec);
                    return;
                }
            }
        }
        if let Some(b) = &self.branch {
            bridge::push(&b.input, pkt);
        }
    }

    fn request_keyframe(&mut self) {
        if let Some(b) = &self.branch {
            bridge::force_keyframe(&b.sink);
        }
    }
}
