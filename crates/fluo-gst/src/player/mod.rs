//! PlayerEndpoint: a file or stream decoded by GStreamer and encoded once (VP8 and Opus, or
//! the codecs its setVideoFormat / setAudioFormat force, at its encoder bitrate) for every
//! sink, or, with useEncodedMedia, payloaded without decoding when the source is already
//! VP8, VP9, H.264 or Opus.

mod guard;
pub(crate) mod job;
pub(crate) mod remote;

use crate::bridge;
use crate::codecs;
use crate::uri::{self, MediaUri};
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, EventSink, Factory, FactoryCx, MediaEvent, Stopping};
use fluo_sfu::{
    Codec, CodecName, Header, MediaKind, Node, OutputSettings, Packet, PortOutput, SinkCaps,
};
use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) struct PlayerFactory {
    pub media: Media,
}

/// What the element and its pipeline's threads share.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) state: &'static str,
    pub(crate) pipeline: Option<gst::Pipeline>,
    /// The appsinks, to ask their encoders for keyframes.
    pub(crate) sinks: Vec<gst::Element>,
    pub(crate) out: Option<PortOutput>,
    /// An Error event was raised for the current run (later errors are only logged).
    pub(crate) failed: bool,
    /// Per kind (audio, video): the player encodes that stream itself, with its output
    /// settings applied.
    pub(crate) encoded: [bool; 2],
    /// The output settings the branches encode with (read when the pipeline is built).
    pub(crate) settings: Option<OutputSettings>,
    /// Held while a pipeline of this player is stopping (see [`fluo_core::Stopping`]).
    pub(crate) stopping: Stopping,
}

pub(crate) type SharedRef = Arc<Mutex<Shared>>;

pub(crate) fn lock(s: &SharedRef) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl Factory for PlayerFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        crate::init().map_err(|e| KurentoError::new(ErrorCode::UnexpectedError, e))?;
        let uri_s = cx
            .params
            .get("uri")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uri = uri::parse(uri_s, &["http", "https", "rtsp", "rtsps"])?;
        self.media.uris.check(&uri)?;
        let use_encoded = cx
            .params
            .get("useEncodedMedia")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let network_cache = cx
            .params
            .get("networkCache")
            .and_then(Value::as_i64)
            .unwrap_or(2000)
            .clamp(0, 60_000) as u32;
        if let Some(workers) = &self.media.workers {
            let params = crate::jobs::PlayerParams {
                uri: uri_s.to_string(),
                use_encoded,
                network_cache,
                guarded: !self.media.uris.is_open(),
            };
            return Ok(crate::remote::create_player(
                workers,
                &self.media,
                cx,
                uri,
                params,
            ));
        }
        let shared = new_shared(None);
        let port = SourcePort {
            shared: shared.clone(),
        };
        let for_port = shared.clone();
        let key = self.media.bus.add_port(
            cx.id,
            Box::new(move |out| {
                lock(&for_port).out = Some(out);
                Box::new(port) as Box<dyn Node>
            }),
        );
        let router = self.media.bus.clone();
        Ok(Box::new(Player {
            core: PlayerCore {
                id: cx.id.to_string(),
                key,
                uri,
                use_encoded,
                network_cache,
                guarded: !self.media.uris.is_open(),
                shared,
                events: self.media.events.clone(),
                on_eos: Arc::new(move || router.end_of_stream(key)),
            },
            media: self.media.clone(),
        }))
    }
}

/// The PlayerEndpoint element: its pipeline, and its place in the router.
struct Player {
    core: PlayerCore,
    media: Media,
}

/// A player's pipeline and what drives it, shared by the PlayerEndpoint element (in the
/// server's process) and the player job (in a media worker, `jobs::player`).
pub(crate) struct PlayerCore {
    pub(crate) id: String,
    /// Names the pipeline.
    pub(crate) key: u64,
    pub(crate) uri: MediaUri,
    pub(crate) use_encoded: bool,
    pub(crate) network_cache: u32,
    /// With a URI allow-list, only the checked URI is opened: HTTP redirects are not
    /// followed (the bus handler names the target in an Error event) and streams whose
    /// demuxer would fetch URIs of its own (HLS, DASH and Smooth Streaming playlists, SDP
    /// files) are not played.
    pub(crate) guarded: bool,
    pub(crate) shared: SharedRef,
    /// Where the pipeline's events go (from its threads).
    pub(crate) events: EventSink,
    /// Called when the file or stream ends.
    pub(crate) on_eos: Arc<dyn Fn() + Send + Sync>,
}

/// A new player's shared state; `out` is where its appsinks send RTP (the router's port
/// output, or a job's way back to the server).
pub(crate) fn new_shared(out: Option<PortOutput>) -> SharedRef {
    Arc::new(Mutex::new(Shared {
        state: "STOP",
        out,
        ..Default::default()
    }))
}

fn state_event(state: &'static str) -> MediaEvent {
    MediaEvent::UriEndpointState { state }
}

impl PlayerCore {
    /// A clone of the token the player's stopping pipelines hold.
    fn hold(&self) -> Stopping {
        lock(&self.shared).stopping.clone()
    }

    /// A new pipeline for the URI: its decoder, whose pads get their branches as they come,
    /// and its bus watched.
    fn build(&self) -> Result<gst::Pipeline, KurentoError> {
        if let MediaUri::File(p) = &self.uri {
            if !p.is_file() {
                return Err(KurentoError::new(
                    ErrorCode::UriPathFileNotFound,
                    format!("The file {} does not exist", p.display()),
                ));
            }
        }
        let pipeline = gst::Pipeline::with_name(&format!("player-{}", self.key));
        crate::live::track(&pipeline, &self.id);
        let dec = self.decoder()?;
        pipeline.add(&dec).map_err(|e| {
            KurentoError::foreign(ErrorCode::UnexpectedError, "Cannot build the player", e)
        })?;
        let weak = pipeline.downgrade();
        let shared = self.shared.clone();
        let id = self.id.clone();
        dec.connect_pad_added(move |_, pad| {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            if let Err(e) = add_branch(&pipeline, pad, &shared) {
                tracing::warn!(%id, "player: {e}");
            }
        });
        self.watch_bus(&pipeline);
        Ok(pipeline)
    }

    /// The URI's uridecodebin: encoded output with useEncodedMedia, the network cache as its
    /// source's latency, and, with a URI allow-list, no redirect followed and no demuxer that
    /// fetches URIs of its own.
    fn decoder(&self) -> Result<gst::Element, KurentoError> {
        let dec = gst::ElementFactory::make("uridecodebin")
            .property("uri", self.uri.gst_uri())
            .build()
            .map_err(|e| {
                KurentoError::foreign(ErrorCode::UnexpectedError, "Cannot build the player", e)
            })?;
        if self.use_encoded {
            let caps: gst::Caps =
                "video/x-raw;audio/x-raw;video/x-vp8;video/x-vp9;video/x-h264;audio/x-opus"
                    .parse()
                    .map_err(|_| KurentoError::new(ErrorCode::UnexpectedError, "caps"))?;
            dec.set_property("caps", &caps);
        }
        let cache = self.network_cache;
        let guarded = self.guarded;
        let checked = self.uri.gst_uri();
        dec.connect("source-setup", false, move |args| {
            if let Some(src) = args.get(1).and_then(|v| v.get::<gst::Element>().ok()) {
                if src.has_property("latency")
                    && src.property_type("latency") == Some(u32::static_type())
                {
                    src.set_property("latency", cache);
                }
                if guarded && src.has_property("automatic-redirect") {
                    src.set_property("automatic-redirect", false);
                }
                if guarded && src.factory().is_some_and(|f| f.name() == "rtspsrc") {
                    guard::refuse_rtsp_redirects(&src, checked.clone());
                }
            }
            None
        });
        if guarded {
            refuse_fetching_demuxers(&dec, self.uri.gst_uri());
        }
        skip_alpha_decoders(&dec);
        Ok(dec)
    }

    /// The pipeline's bus as the player's events: end of stream (STOP), its first error, and
    /// with a URI allow-list a redirect it did not follow.
    fn watch_bus(&self, pipeline: &gst::Pipeline) {
        let Some(bus) = pipeline.bus() else {
            return;
        };
        let id = self.id.clone();
        let events = self.events.clone();
        let shared = self.shared.clone();
        let on_eos = self.on_eos.clone();
        let guarded = self.guarded;
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Eos(_) => {
                    tracing::info!(%id, "end of stream");
                    lock(&shared).state = "STOP";
                    events(&id, MediaEvent::EndOfStream);
                    events(&id, state_event("STOP"));
                    on_eos();
                }
                gst::MessageView::Error(e) => {
                    tracing::warn!(%id, "player error: {} ({:?})", e.error(), e.debug());
                    if first_failure(&shared) {
                        events(&id, crate::gst_error(e, fluo_core::MediaError::Player));
                    }
                }
                gst::MessageView::Element(m) if guarded => {
                    if let Some(text) = m.structure().and_then(redirect) {
                        tracing::warn!(%id, "player: {text}");
                        if first_failure(&shared) {
                            events(&id, crate::error_event(fluo_core::MediaError::Player, text));
                        }
                    }
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    }

    /// Plays (building a new pipeline when there is none, or it ended), encoding with
    /// `settings`; raises UriEndpointStateChanged through `raise`.
    pub(crate) fn play(
        &mut self,
        settings: OutputSettings,
        raise: &mut dyn FnMut(MediaEvent),
    ) -> Result<(), KurentoError> {
        let existing = lock(&self.shared).pipeline.clone();
        let eos_restart = existing.is_some() && lock(&self.shared).state == "STOP";
        let p = match existing {
            Some(p) if !eos_restart => p,
            other => {
                if let Some(old) = other {
                    bridge::stop_in_background(old, self.hold());
                }
                let p = self.build()?;
                let mut s = lock(&self.shared);
                s.sinks.clear();
                s.encoded = [false; 2];
                s.settings = Some(settings);
                s.pipeline = Some(p.clone());
                p
            }
        };
        if let Err(e) = p.set_state(gst::State::Playing) {
            {
                let mut s = lock(&self.shared);
                s.state = "STOP";
                s.pipeline = None;
            }
            bridge::stop_in_background(p, self.hold());
            return Err(KurentoError::foreign(
                ErrorCode::UnexpectedError,
                "The player does not start",
                e,
            ));
        }
        {
            let mut s = lock(&self.shared);
            s.state = "START";
            s.failed = false;
        }
        raise(state_event("START"));
        Ok(())
    }

    pub(crate) fn pause(&mut self, raise: &mut dyn FnMut(MediaEvent)) {
        let p = lock(&self.shared).pipeline.clone();
        if let Some(p) = p {
            let _ = p.set_state(gst::State::Paused);
            lock(&self.shared).state = "PAUSE";
            raise(state_event("PAUSE"));
        }
    }

    pub(crate) fn stop(&mut self, raise: &mut dyn FnMut(MediaEvent)) {
        let p = {
            let mut s = lock(&self.shared);
            s.state = "STOP";
            s.sinks.clear();
            s.pipeline.take()
        };
        if let Some(p) = p {
            bridge::stop_in_background(p, self.hold());
            raise(state_event("STOP"));
        }
    }

    /// Seeks to `ms` milliseconds.
    pub(crate) fn seek(&mut self, ms: u64) -> Result<(), KurentoError> {
        let p = lock(&self.shared).pipeline.clone().ok_or_else(|| {
            KurentoError::new(ErrorCode::PlayerSeekFail, "The player is not playing")
        })?;
        p.seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::ClockTime::from_mseconds(ms),
        )
        .map_err(|e| KurentoError::foreign(ErrorCode::PlayerSeekFail, "Seek failed", e))?;
        Ok(())
    }

    pub(crate) fn video_info(&self) -> Value {
        let p = lock(&self.shared).pipeline.clone();
        let (mut seekable, mut start, mut end, mut duration) = (false, 0i64, 0i64, 0i64);
        if let Some(p) = p {
            if let Some(d) = p.query_duration::<gst::ClockTime>() {
                duration = d.mseconds() as i64;
            }
            let mut q = gst::query::Seeking::new(gst::Format::Time);
            if p.query(&mut q) {
                let (s, a, b) = q.result();
                seekable = s;
                start = a.value().max(0) / 1_000_000;
                end = b.value().max(0) / 1_000_000;
            }
        }
        json!({
            "__module__": "kurento",
            "__type__": "VideoInfo",
            "isSeekable": seekable,
            "seekableInit": start,
            "seekableEnd": end,
            "duration": duration,
        })
    }
}

/// Marks the current run failed (the next play() builds a new pipeline); whether it is the
/// run's first failure, the one an Error event reports.
pub(crate) fn first_failure(shared: &SharedRef) -> bool {
    let mut s = lock(shared);
    s.state = "STOP";
    !std::mem::replace(&mut s.failed, true)
}

/// The text of an Error event for an HTTP source's response headers that redirect.
fn redirect(s: &gst::StructureRef) -> Option<String> {
    if s.name() != "http-headers" {
        return None;
    }
    let status = s.get::<u32>("http-status-code").ok()?;
    if !(300..400).contains(&status) {
        return None;
    }
    let from = s.get::<String>("uri").unwrap_or_default();
    let to = s
        .get::<gst::Structure>("response-headers")
        .ok()
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                .and_then(|(_, v)| v.get::<String>().ok())
        })
        .unwrap_or_default();
    Some(format!(
        "{from} redirects ({status}) to {to}: redirects are not followed while this server has a URI allow-list (ask for the target URI itself if the list allows it)"
    ))
}

/// A demuxer that decodebin could plug for `caps` and that opens URIs or sockets of its own
/// (its class says Adaptive or Network: hlsdemux, dashdemux, sdpdemux...), and the caps'
/// media type.
fn fetching_demuxer(caps: &gst::Caps) -> Option<(String, String)> {
    let media_type = caps.structure(0)?.name().to_string();
    gst::ElementFactory::factories_with_type(gst::ElementFactoryType::DEMUXER, gst::Rank::NONE)
        .iter()
        .find(|f| {
            let klass = f.metadata("klass").unwrap_or_default();
            klass.split('/').any(|k| k == "Adaptive" || k == "Network") && f.can_sink_any_caps(caps)
        })
        .map(|f| (f.name().to_string(), media_type))
}

/// Links a new decoded (or, with useEncodedMedia, encoded) stream to an encoder, payloader
/// and appsink that sends its RTP into the router. Decoded streams are encoded to the codec
/// the player's output settings force (VP8 and Opus when none), at their frame rate and
/// bitrates.
/// Keeps a decodebin (or uridecodebin) from plugging the VP8 / VP9 alpha decoders:
/// Chromium's MediaRecorder marks its VP8 track as one that may carry alpha, the alpha decoder then fails on its
/// first frame ("Cannot handle streams without an initial alpha buffer"), and the alpha is
/// dropped by the encode after anyway; the plain decoder takes the stream.
pub(crate) fn skip_alpha_decoders(dec: &gst::Element) {
    let Some(ty) = glib::Type::from_name("GstAutoplugSelectResult") else {
        return;
    };
    let value = move |nick: &str| glib::EnumClass::with_type(ty)?.to_value_by_nick(nick);
    if value("try").is_none() || value("skip").is_none() {
        return;
    }
    dec.connect("autoplug-select", false, move |args| {
        let factory = args
            .get(3)
            .and_then(|v| v.get::<gst::ElementFactory>().ok());
        let alpha = factory.is_some_and(|f| f.name().ends_with("alphadecodebin"));
        value(if alpha { "skip" } else { "try" })
    });
}

/// Stops `dec` (with an error on its bus) before it plugs a demuxer that opens URIs of its
/// own (an HLS or DASH manifest's segments), which a URI allow-list cannot check.
fn refuse_fetching_demuxers(dec: &gst::Element, uri: String) {
    dec.connect("autoplug-continue", false, move |args| {
        let dec = args.first().and_then(|v| v.get::<gst::Element>().ok());
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        let Some((factory, media_type)) = caps.as_ref().and_then(fetching_demuxer) else {
            return Some(true.to_value());
        };
        let text = format!(
            "{uri} is a stream of type {media_type}, whose demuxer ({factory}) opens URIs of its own that this server's URI allow-list cannot check: it is not played while an allow-list is set"
        );
        tracing::warn!("player: {text}");
        if let Some(dec) = dec {
            let msg = gst::message::Error::builder(gst::ResourceError::NotAuthorized, &text)
                .src(&dec)
                .build();
            let _ = dec.post_message(msg);
        }
        Some(false.to_value())
    });
}

pub(crate) fn add_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    shared: &SharedRef,
) -> Result<(), String> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let name = caps
        .structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let settings = lock(shared)
        .settings
        .ok_or("the player has no output settings")?;
    let (kind, codec, chain) = match name.as_str() {
        "video/x-raw" => {
            let c = Codec::new(settings.video.map_or(CodecName::Vp8, |v| v.codec));
            let enc = codecs::encoder(&c, &settings).ok_or("no video encoder")?;
            (MediaKind::Video, c, format!("queue max-size-time=1000000000 ! videoconvert !  videoscale ! videorate max-rate=30 ! {enc}"))
        }
        "audio/x-raw" => {
            let c = Codec::new(settings.audio.map_or(CodecName::Opus, |a| a.codec));
            (
                MediaKind::Audio,
                c,
                format!(
                    "queue max-size-time=1000000000 ! {}",
                    codecs::encoder(&c, &settings).ok_or("no audio encoder")?
                ),
            )
        }
        other => {
            let n = match other {
                "video/x-vp8" => CodecName::Vp8,
                "video/x-vp9" => CodecName::Vp9,
                "video/x-h264" => CodecName::H264,
                "audio/x-opus" => CodecName::Opus,
                _ => return Err(format!("the stream {other} cannot be played")),
            };
            let c = Codec::new(n);
            (
                n.kind(),
                c,
                format!(
                    "queue max-size-time=1000000000 ! {}",
                    codecs::payloader(&c).ok_or("no payloader")?
                ),
            )
        }
    };
    let encodes = name.ends_with("/x-raw");
    let desc = format!("{chain} ! appsink name=out sync=true max-buffers=500 drop=false");
    let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| e.to_string())?;
    codecs::fit_encoder_threads(bin.upcast_ref());
    let sink = bin
        .by_name("out")
        .and_then(|e| e.downcast::<gstreamer_app::AppSink>().ok())
        .ok_or("no appsink")?;
    let out = lock(shared)
        .out
        .clone()
        .ok_or("the player is not in the router")?;
    bridge::forward_appsink(&sink, kind, codec, out);
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    let sinkpad = bin.static_pad("sink").ok_or("no sink pad")?;
    pad.link(&sinkpad).map_err(|e| e.to_string())?;
    {
        let mut s = lock(shared);
        s.sinks.push(sink.upcast());
        s.encoded[kind] = encodes;
    }
    tracing::debug!(stream = %name, codec = %codec, video_bps = settings.video_bps(), "player stream linked");
    Ok(())
}

/// The `position` of setPosition and of the property, in milliseconds.
pub(crate) fn position_param(v: Option<&Value>) -> Result<u64, KurentoError> {
    v.and_then(Value::as_i64)
        .filter(|v| (0..=i64::from(u32::MAX) * 1000).contains(v))
        .map(|v| v as u64)
        .ok_or_else(|| {
            KurentoError::illegal_param("'position' must be a non-negative number of milliseconds")
        })
}

impl Element for Player {
    fn invoke(
        &mut self,
        cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        let core = &mut self.core;
        let mut raise = |e| cx.raise(e);
        Some(match method {
            "play" => {
                let settings = self.media.settings.get(&core.id);
                core.play(settings, &mut raise).map(|()| Value::Null)
            }
            "pause" => {
                core.pause(&mut raise);
                Ok(Value::Null)
            }
            "stop" => {
                core.stop(&mut raise);
                Ok(Value::Null)
            }
            "setPosition" => position_param(params.get("position"))
                .and_then(|ms| core.seek(ms))
                .map(|()| Value::Null),
            "getPosition" => Ok(core.position()),
            "getVideoInfo" => Ok(core.video_info()),
            "getState" => Ok(json!(core.state())),
            _ => return None,
        })
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        let core = &self.core;
        match name {
            "state" => Some(json!(core.state())),
            "position" => Some(core.position()),
            "videoInfo" => Some(core.video_info()),
            "elementGstreamerDot" => Some(json!(core.dot())),
            "uri" => Some(json!(match &core.uri {
                MediaUri::File(_) => core.uri.gst_uri(),
                MediaUri::Remote(u) => u.clone(),
            })),
            _ => None,
        }
    }

    fn property_set(
        &mut self,
        _cx: &mut ElementCx<'_>,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        if name == "position" {
            self.core.seek(position_param(Some(value))?)?;
        }
        Ok(())
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.core.key, &self.core.id, edge, true);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.core.key, &self.core.id, edge, false);
    }

    fn released(&mut self) {
        self.core.release();
        self.media.bus.remove_port(self.core.key);
    }

    fn stopping(&self) -> Option<Stopping> {
        Some(self.core.hold())
    }
}

impl PlayerCore {
    pub(crate) fn position(&self) -> Value {
        let p = lock(&self.shared).pipeline.clone();
        let ms = p
            .and_then(|p| p.query_position::<gst::ClockTime>())
            .map_or(0, |t| t.mseconds());
        json!(ms)
    }

    /// Kurento's UriEndpointState.
    pub(crate) fn state(&self) -> &'static str {
        lock(&self.shared).state
    }

    /// The pipeline as a DOT graph (empty when there is none).
    pub(crate) fn dot(&self) -> String {
        self.dot_with("SHOW_ALL")
    }

    /// The pipeline as a DOT graph drawn with Kurento's GstreamerDotDetails `details`.
    pub(crate) fn dot_with(&self, details: &str) -> String {
        lock(&self.shared)
            .pipeline
            .as_ref()
            .map(|p| {
                p.debug_to_dot_data(crate::dot::details(details))
                    .to_string()
            })
            .unwrap_or_default()
    }

    /// Asks the encoders for a keyframe.
    pub(crate) fn request_keyframe(&self) {
        let sinks = lock(&self.shared).sinks.clone();
        for s in sinks {
            bridge::force_keyframe(&s);
        }
    }

    /// Waits (at most `max`) until the pipelines this player is stopping have stopped.
    pub(crate) fn wait_stopped(&self, max: std::time::Duration) {
        let token = lock(&self.shared).stopping.clone();
        let deadline = std::time::Instant::now() + max;
        // The shared state's token and this clone; stopping pipelines hold the others.
        while token.holders() > 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Stops the pipeline (in the background) for good.
    pub(crate) fn release(&mut self) {
        let p = lock(&self.shared).pipeline.take();
        if let Some(p) = p {
            bridge::stop_in_background(p, self.hold());
        }
    }
}

/// A player (or an upload, which shares its pipeline's state) as the router sees it: a
/// source only.
pub(crate) struct SourcePort {
    pub(crate) shared: SharedRef,
}

impl Node for SourcePort {
    fn caps(&self, _kind: MediaKind) -> SinkCaps {
        // A source only: it takes nothing.
        SinkCaps::codecs([])
    }

    fn push(&mut self, _now: std::time::Instant, _pkt: &Packet<'_>, _header: Header) {}

    fn request_keyframe(&mut self, _kind: MediaKind) {
        let sinks = lock(&self.shared).sinks.clone();
        for s in sinks {
            bridge::force_keyframe(&s);
        }
    }

    fn applies_format(&self, kind: MediaKind) -> bool {
        lock(&self.shared).encoded[kind]
    }
}
