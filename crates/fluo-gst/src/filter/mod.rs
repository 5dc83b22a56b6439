//! GStreamerFilter: a client-given GStreamer bin description applied to decoded media.
//!
//! The port ([`FilterPort`], shared with the other filters that work on decoded media: a
//! ZBarFilter's port runs `zbar` in the same place, `crate::zbar`) decodes the routed media
//! of the filtered kind, runs it through its [`Stage`] (here the command's bin) and encodes it
//! again to the codec it came in (or the one the filter's setVideoFormat /
//! setAudioFormat force, at its encoder bitrate), so the sinks that took the source take
//! the filter's output too. The other kind passes through untouched (as KMS does with
//! filterType VIDEO or AUDIO). The pipeline is built when the first packet arrives, since
//! only then is the codec known, and again if the source changes codec.
//!
//! The command is checked against the [`FilterPolicy`] as text, before any element exists,
//! built into a bin element by element and linked to Fluo's own elements by pads, never
//! spliced into a pipeline string: a command can add elements only inside its bin.

pub(crate) mod guard;
pub(crate) mod job;
pub(crate) mod policy;
pub(crate) mod remote;

use crate::bridge;
use crate::codecs;
use crate::filter::policy::{set_property, Checked, FilterPolicy};
use crate::{gst_error, Media};
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{
    Edge, Element, ElementCx, EventSink, Factory, FactoryCx, MediaError, MediaEvent, Stopping,
};
use fluo_sfu::{
    Codec, CodecName, Header, MediaKind, MediaPacket, Node, Packet, PortOutput, SettingsTable,
    SinkCaps, SinkCodec, Takes,
};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex, MutexGuard};

fn illegal(msg: String) -> KurentoError {
    KurentoError::new(ErrorCode::MediaObjectIllegalParamError, msg)
}

/// Checks `command` against `policy` as text: no element is made (the server's part of
/// create; building the command is the probe's, in a media worker when there are some).
pub(crate) fn check_command(command: &str, policy: &FilterPolicy) -> Result<Checked, KurentoError> {
    policy
        .check(command)
        .map_err(|e| illegal(format!("GStreamerFilter: {e}")))
}

/// Builds a checked command's bin, with one sink and one source pad.
fn build_command(checked: &Checked) -> Result<gst::Bin, KurentoError> {
    checked
        .build()
        .map_err(|e| illegal(format!("GStreamerFilter: {}", fluo_api::text::foreign(&e))))
}

/// Checks `command` against `policy` (before any element exists) and builds its bin once,
/// with one sink and one source pad.
pub(crate) fn parse_command(
    command: &str,
    policy: &FilterPolicy,
) -> Result<(Checked, gst::Bin), KurentoError> {
    let checked = check_command(command, policy)?;
    let bin = build_command(&checked)?;
    Ok((checked, bin))
}

/// The probe of create: builds the checked command's bin once (its elements are made, so a
/// plugin that crashes in a constructor crashes the process that runs this) and says the
/// kind it filters.
pub(crate) fn probe_command(
    checked: &Checked,
    filter_type: &str,
) -> Result<MediaKind, KurentoError> {
    filter_kind(&build_command(checked)?, filter_type)
}

/// The kind of media a command filters: from filterType, or from the caps of its sink pad.
pub(crate) fn filter_kind(bin: &gst::Bin, filter_type: &str) -> Result<MediaKind, KurentoError> {
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
        let checked = Arc::new(check_command(&command, &self.media.filters)?);
        // Building the command makes its elements: in a media worker when there are some
        // (a constructor that crashes ends that worker, not the server).
        let kind = match &self.media.workers {
            Some(workers) => {
                crate::remote::probe_filter(workers, &self.media, cx, &command, filter_type)?
            }
            None => probe_command(&checked, filter_type)?,
        };
        let shown: String = command.chars().take(200).collect();
        let more = if shown.len() < command.len() {
            "..."
        } else {
            ""
        };
        tracing::info!(id = %cx.id, command = %format_args!("{shown}{more}"), ?kind, "GStreamerFilter created");
        if let Some(workers) = &self.media.workers {
            return Ok(crate::remote::create_filter(
                workers,
                &self.media,
                cx,
                (command, checked),
                kind,
            ));
        }
        let shared = new_shared();
        let stage = Arc::new(Command {
            checked: checked.clone(),
            policy: self.media.filters.clone(),
            shared: shared.clone(),
        });
        let key = add_port(
            &self.media,
            cx.id,
            kind,
            stage,
            lock(&shared).stopping.clone(),
        );
        Ok(Box::new(Filter {
            id: cx.id.to_string(),
            key,
            command,
            checked,
            shared,
            media: self.media.clone(),
        }))
    }
}

/// Adds the port of filter `id` of `kind` media running `stage` to the router (a filter in
/// this process); its pipelines hold `stopping` while they stop.
pub(crate) fn add_port(
    media: &Media,
    id: &str,
    kind: MediaKind,
    stage: Arc<dyn Stage>,
    stopping: Stopping,
) -> u64 {
    let (who, settings) = (
        (id.to_string(), media.events.clone()),
        media.settings.clone(),
    );
    media.bus.add_port(
        id,
        Box::new(move |out| {
            Box::new(FilterPort::new(kind, stage, out, who, settings, stopping)) as Box<dyn Node>
        }),
    )
}

/// A filter whose port runs in this process (`--workers 0`), seen from its element: what
/// every such filter does on connect, disconnect, release and stop.
pub(crate) struct LocalPort {
    pub(crate) id: String,
    pub(crate) key: u64,
    pub(crate) media: Media,
    pub(crate) stopping: Stopping,
}

impl LocalPort {
    pub(crate) fn connected(&self, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, true);
        if edge.sink == self.id {
            // The decoder starts at a keyframe.
            self.media.bus.request_keyframe(self.key);
        }
    }

    pub(crate) fn disconnected(&self, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, false);
    }

    pub(crate) fn released(&self) {
        self.media.bus.remove_port(self.key);
    }
}

/// What a filter port runs between its decoder and its encoder, in each pipeline it builds:
/// a GStreamerFilter's command ([`Command`]), a ZBarFilter's `zbar`.
pub(crate) trait Stage: Send + Sync + 'static {
    /// The Kurento class, as logs, Error events and the pipelines' names say it.
    fn class(&self) -> &'static str;

    /// The type of the element's Error events.
    fn error(&self) -> MediaError;

    /// A new pipeline's stage: an element (or a bin) with one sink and one source pad.
    fn make(&self) -> Result<gst::Element, String>;

    /// The stage of the running pipeline, once it plays (`None`: no pipeline runs).
    fn running(&self, _stage: Option<&gst::Element>) {}

    /// A message of the running pipeline other than an error (called on a streaming
    /// thread): the event it raises, if any.
    fn message(&self, _msg: &gst::Message) -> Option<MediaEvent> {
        None
    }
}

/// A GStreamerFilter's stage: its checked command, built again for each pipeline with the
/// properties setElementProperty set.
pub(crate) struct Command {
    pub(crate) checked: Arc<Checked>,
    pub(crate) policy: Arc<FilterPolicy>,
    pub(crate) shared: Arc<Mutex<Shared>>,
}

impl Stage for Command {
    fn class(&self) -> &'static str {
        "GStreamerFilter"
    }

    fn error(&self) -> MediaError {
        MediaError::Filter
    }

    fn make(&self) -> Result<gst::Element, String> {
        // The command was checked at create; built again for this pipeline.
        let bin = self.checked.build()?;
        for (name, value) in &lock(&self.shared).props {
            let _ = set_property(&bin, &self.policy, name, value, true);
        }
        Ok(bin.upcast())
    }

    fn running(&self, stage: Option<&gst::Element>) {
        lock(&self.shared).bin = stage.and_then(|e| e.clone().downcast::<gst::Bin>().ok());
    }
}

/// What the element (engine thread) and its port (router thread) share.
pub(crate) struct Shared {
    /// The command's bin in the running pipeline.
    bin: Option<gst::Bin>,
    /// Properties set with setElementProperty, applied again to each new pipeline.
    props: Vec<(String, String)>,
    /// Held while a pipeline of this filter is stopping (see [`fluo_core::Stopping`]).
    stopping: Stopping,
}

/// A new filter's shared state: no pipeline, no property set.
pub(crate) fn new_shared() -> Arc<Mutex<Shared>> {
    Arc::new(Mutex::new(Shared {
        bin: None,
        props: vec![],
        stopping: Stopping::new(),
    }))
}

pub(crate) fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

struct Filter {
    id: String,
    key: u64,
    command: String,
    checked: Arc<Checked>,
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
        let (checked, command) = (&*self.checked, self.command.as_str());
        set_element_property(
            (checked, command),
            &self.media.filters,
            &self.shared,
            name,
            value,
        )?;
        tracing::debug!(id = %self.id, %name, %value, "GStreamerFilter property set");
        Ok(Value::Null)
    }
}

/// setElementProperty: checked now against the command's factories (no element is made), so
/// that a wrong name or value fails now; kept for the pipelines built later and set on the
/// running one.
pub(crate) fn set_element_property(
    (checked, command): (&Checked, &str),
    policy: &FilterPolicy,
    shared: &Mutex<Shared>,
    name: &str,
    value: &str,
) -> Result<(), KurentoError> {
    check_element_property((checked, command), policy, name, value)?;
    let mut s = lock(shared);
    s.props.retain(|(n, _)| n != name);
    s.props.push((name.to_string(), value.to_string()));
    if let Some(bin) = &s.bin {
        let _ = set_property(bin, policy, name, value, true);
    }
    Ok(())
}

/// setElementProperty's check, without any element: some element of the command takes
/// `name` = `value` under `policy`.
pub(crate) fn check_element_property(
    (checked, command): (&Checked, &str),
    policy: &FilterPolicy,
    name: &str,
    value: &str,
) -> Result<(), KurentoError> {
    match checked.property_targets(policy, name, value) {
        Ok(0) => {
            return Err(illegal(format!(
                "GStreamerFilter: no element of \"{}\" has a property {name}",
                command
            )))
        }
        Ok(_) => {}
        Err(e) => {
            return Err(illegal(format!(
                "GStreamerFilter: {}",
                fluo_api::text::foreign(&e)
            )))
        }
    }
    Ok(())
}

impl Element for Filter {
    fn stats(&mut self, q: &fluo_core::StatsQuery<'_>) -> Option<Map<String, Value>> {
        self.media.element_stats(q)
    }

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

    fn stopping(&self) -> Option<Stopping> {
        Some(lock(&self.shared).stopping.clone())
    }
}

/// What a filter of `filtered` media takes of `kind`: the filtered kind in any codec it can
/// decode (an H.264 of any profile), transcoded to VP8 or Opus otherwise; the other kind as
/// it comes.
pub(crate) fn sink_caps(filtered: MediaKind, kind: MediaKind) -> SinkCaps {
    if kind != filtered {
        return SinkCaps::anything();
    }
    let decodable = CodecName::ALL
        .into_iter()
        .filter(|n| n.kind() == kind)
        .map(|n| Codec {
            profile_level_id: None,
            packetization_mode: None,
            ..Codec::new(n)
        })
        .filter(codecs::available)
        .map(SinkCodec::new)
        .collect();
    let target = match kind {
        MediaKind::Video => CodecName::Vp8,
        MediaKind::Audio => CodecName::Opus,
    };
    SinkCaps {
        takes: Takes::Codecs(decodable),
        targets: vec![Codec::new(target)],
        transcoder: false,
    }
}

/// The running decode -> command -> encode pipeline for one input codec.
struct Branch {
    codec: Codec,
    pipeline: gst::Pipeline,
    input: gst_app::AppSrc,
    sink: gst::Element,
    stopping: Stopping,
}

impl Drop for Branch {
    fn drop(&mut self) {
        bridge::stop_in_background(self.pipeline.clone(), self.stopping.clone());
    }
}

/// The filter as the router sees it (and the filter job, in a worker, as it gets packets).
pub(crate) struct FilterPort {
    kind: MediaKind,
    stage: Arc<dyn Stage>,
    /// Held by each pipeline while it stops (the element's token).
    stopping: Stopping,
    out: PortOutput,
    branch: Option<Branch>,
    /// The codec whose pipeline failed to build (not retried for every packet).
    failed: Option<Codec>,
    /// When the pipeline was last (re)built: a source flapping between codecs rebuilds it
    /// at most once a second.
    built_at: Option<std::time::Instant>,
    id: String,
    events: EventSink,
    /// Elements' output settings: the filter encodes with its own.
    settings: Arc<SettingsTable>,
}

impl FilterPort {
    /// A filter of `kind` media running `stage`, sending into `out`; `who` is its id and
    /// where its events go; its pipelines hold `stopping` while they stop.
    pub(crate) fn new(
        kind: MediaKind,
        stage: Arc<dyn Stage>,
        out: PortOutput,
        who: (String, EventSink),
        settings: Arc<SettingsTable>,
        stopping: Stopping,
    ) -> FilterPort {
        FilterPort {
            kind,
            stage,
            stopping,
            out,
            branch: None,
            failed: None,
            built_at: None,
            id: who.0,
            events: who.1,
            settings,
        }
    }

    fn build(&self, codec: &Codec) -> Result<Branch, String> {
        let depay = codecs::depay(codec).ok_or("no depayloader")?;
        let dec = codecs::decoder(codec).ok_or("no decoder")?;
        let settings = self.settings.get(&self.id);
        // The codec it came in, unless the filter's output format forces another.
        let forced = match self.kind {
            MediaKind::Video => settings.video.map(|v| v.codec),
            MediaKind::Audio => settings.audio.map(|a| a.codec),
        };
        let out_codec = match forced {
            Some(n) if n != codec.name => Codec::new(n),
            _ => *codec,
        };
        let enc = codecs::encoder(&out_codec, &settings).ok_or("no encoder")?;
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
        let class = self.stage.class();
        let pipeline = bridge::launch(&desc, &self.id, &format!("{class} {codec}"))?;
        let stage = self.stage.make()?;
        pipeline
            .add(&stage)
            .map_err(|e| format!("cannot add the {class}'s stage: {e}"))?;
        let by_name = |n: &str| pipeline.by_name(n).ok_or_else(|| format!("no element {n}"));
        let (pre, post) = (by_name("pre")?, by_name("post")?);
        pre.link(&stage)
            .map_err(|e| format!("the command does not take {:?} media: {e}", self.kind))?;
        stage
            .link(&post)
            .map_err(|e| format!("the command's output does not link: {e}"))?;
        let input = bridge::appsrc(&pipeline, "in")?;
        let sink = bridge::appsink(&pipeline, "out")?;
        bridge::forward_appsink(&sink, self.kind, out_codec, self.out.clone());
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(self.bus_handler());
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("the filter pipeline does not start: {e}"))?;
        self.stage.running(Some(&stage));
        tracing::debug!(id = %self.id, %codec, "{class} pipeline playing");
        Ok(Branch {
            codec: *codec,
            pipeline,
            input,
            sink: sink.upcast(),
            stopping: self.stopping.clone(),
        })
    }

    /// What the pipeline's bus says, as the element's events: errors, and what its stage
    /// makes of the other messages.
    fn bus_handler(
        &self,
    ) -> impl Fn(&gst::Bus, &gst::Message) -> gst::BusSyncReply + Send + Sync + 'static {
        let (id, events, stage) = (self.id.clone(), self.events.clone(), self.stage.clone());
        move |_, msg| {
            if let gst::MessageView::Error(e) = msg.view() {
                let class = stage.class();
                tracing::warn!(%id, "{class} error: {} ({:?})", e.error(), e.debug());
                events(&id, gst_error(e, stage.error()));
            } else if let Some(ev) = stage.message(msg) {
                events(&id, ev);
            }
            gst::BusSyncReply::Drop
        }
    }
}

impl Node for FilterPort {
    fn caps(&self, kind: MediaKind) -> SinkCaps {
        sink_caps(self.kind, kind)
    }

    fn push(&mut self, _now: std::time::Instant, pkt: &Packet<'_>, header: Header) {
        self.take(&MediaPacket::routed(pkt, header));
    }

    fn request_keyframe(&mut self, _kind: MediaKind) {
        self.keyframe();
    }

    fn applies_format(&self, kind: MediaKind) -> bool {
        kind == self.kind
    }
}

impl FilterPort {
    /// A packet: the other kind passes, the filtered kind goes through the pipeline of its
    /// codec (built now if there is none for it).
    pub(crate) fn take(&mut self, pkt: &MediaPacket) {
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
            self.stage.running(None);
            match self.build(&pkt.codec) {
                Ok(b) => self.branch = Some(b),
                Err(e) => {
                    let class = self.stage.class();
                    tracing::warn!(id = %self.id, "{class}: {e}");
                    let description = format!("{class}: {}", fluo_api::text::foreign(&e));
                    let ev = crate::error_event(self.stage.error(), description);
                    (self.events)(&self.id, ev);
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

    /// Asks the filter's encoder for a keyframe.
    pub(crate) fn keyframe(&mut self) {
        if let Some(b) = &self.branch {
            bridge::force_keyframe(&b.sink);
        }
    }
}
