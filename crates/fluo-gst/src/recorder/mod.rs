//! RecorderEndpoint: RTP from the router, depayloaded and muxed to a file without decoding
//! (a transcoder is inserted by the router when the source's codec does not fit the
//! profile).
//!
//! Files stay playable if the server dies: Matroska/WebM clusters are at most one second
//! long and MP4 is fragmented every second, and the file sink does not buffer in user space,
//! so a kill -9 loses at most the last second.

pub(crate) mod job;
pub(crate) mod remote;

use crate::bridge;
use crate::uri::{self, MediaUri};
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, EventSink, Factory, FactoryCx, MediaEvent, Stopping};
use fluo_sfu::{
    Codec, CodecName, Header, MediaKind, MediaPacket, Node, Packet, SinkCaps, SinkCodec, Takes,
};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the recorder waits for the second kind of media before it starts the file
/// with what it has.
const WAIT_FOR_ALL: Duration = Duration::from_millis(1500);

/// Packets kept while the file's tracks are being decided.
const MAX_PENDING: usize = 3000;

/// A media profile: container and codecs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Profile {
    mux: &'static str,
    mime: &'static str,
    audio: &'static [CodecName],
    video: &'static [CodecName],
}

fn profile(name: &str) -> Option<Profile> {
    const WEBM_V: &[CodecName] = &[CodecName::Vp8, CodecName::Vp9];
    const MKV_V: &[CodecName] = &[CodecName::Vp8, CodecName::Vp9, CodecName::H264];
    const MP4_V: &[CodecName] = &[CodecName::H264];
    const OPUS: &[CodecName] = &[CodecName::Opus];
    const NONE: &[CodecName] = &[];
    let webm = "webmmux max-cluster-duration=1000000000";
    let mkv = "matroskamux max-cluster-duration=1000000000";
    let mp4 = "mp4mux fragment-duration=1000";
    let (w, k, m) = ("video/webm", "video/x-matroska", "video/mp4");
    let (mux, mime, audio, video) = match name {
        "WEBM" => (webm, w, OPUS, WEBM_V),
        "WEBM_AUDIO_ONLY" => (webm, w, OPUS, NONE),
        "WEBM_VIDEO_ONLY" => (webm, w, NONE, WEBM_V),
        "MKV" => (mkv, k, OPUS, MKV_V),
        "MKV_AUDIO_ONLY" => (mkv, k, OPUS, NONE),
        "MKV_VIDEO_ONLY" => (mkv, k, NONE, MKV_V),
        "MP4" => (mp4, m, OPUS, MP4_V),
        "MP4_AUDIO_ONLY" => (mp4, m, OPUS, NONE),
        "MP4_VIDEO_ONLY" => (mp4, m, NONE, MP4_V),
        _ => return None,
    };
    Some(Profile {
        mux,
        mime,
        audio,
        video,
    })
}

impl Profile {
    pub(crate) fn codecs(&self, kind: MediaKind) -> &'static [CodecName] {
        match kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video,
        }
    }

    fn kinds(&self) -> usize {
        usize::from(!self.audio.is_empty()) + usize::from(!self.video.is_empty())
    }
}

/// Kurento's UriEndpointState.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecState {
    Stop,
    Start,
    Pause,
}

impl RecState {
    fn name(self) -> &'static str {
        match self {
            RecState::Stop => "STOP",
            RecState::Start => "START",
            RecState::Pause => "PAUSE",
        }
    }
}

/// What the element (engine thread) and the port (router thread) share.
pub(crate) struct Shared {
    state: RecState,
    pipeline: Option<gst::Pipeline>,
    srcs: [Option<gst_app::AppSrc>; 2],
    codecs: [Option<Codec>; 2],
    pending: Vec<MediaPacket>,
    first_at: Option<Instant>,
    /// Pipelines whose file is being finalised.
    finishing: Vec<gst::Pipeline>,
    /// Held while a pipeline of this recorder is stopping or finalising its file (the
    /// finishing thread holds this whole struct; see [`fluo_core::Stopping`]).
    stopping: Stopping,
}

pub(crate) type SharedRef = Arc<Mutex<Shared>>;

fn lock(s: &SharedRef) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct RecorderFactory {
    pub media: Media,
}

impl Factory for RecorderFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        crate::init().map_err(|e| KurentoError::new(ErrorCode::UnexpectedError, e))?;
        let uri_s = cx
            .params
            .get("uri")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = uri::parse(uri_s, &["http", "https"])?;
        self.media.uris.check(&path)?;
        let pname = cx
            .params
            .get("mediaProfile")
            .and_then(Value::as_str)
            .unwrap_or("WEBM");
        let profile = profile_named(pname)?;
        let shared = new_shared();
        let stop_on_eos = cx
            .params
            .get("stopOnEndOfStream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if let Some(workers) = &self.media.workers {
            let params = crate::jobs::RecorderParams {
                uri: uri_s.to_string(),
                profile: pname.to_string(),
                stop_on_eos,
            };
            return Ok(crate::remote::create_recorder(
                workers,
                &self.media,
                cx,
                profile,
                params,
            ));
        }
        let port = RecorderPort {
            stop_on_eos,
            shared: shared.clone(),
            profile,
            path: path.clone(),
            id: cx.id.to_string(),
            events: self.media.events.clone(),
        };
        let key = self
            .media
            .bus
            .add_port(cx.id, Box::new(move |_out| Box::new(port) as Box<dyn Node>));
        Ok(Box::new(Recorder {
            id: cx.id.to_string(),
            key,
            shared,
            media: self.media.clone(),
            path,
        }))
    }
}

/// The media profile named `name`, or Kurento's error for one Fluo does not record.
pub(crate) fn profile_named(name: &str) -> Result<Profile, KurentoError> {
    profile(name).ok_or_else(|| {
        KurentoError::new(
            ErrorCode::NotImplemented,
            format!("The media profile {name} is not supported by Fluo (supported: WEBM, MKV, MP4 and their _AUDIO_ONLY / _VIDEO_ONLY variants)"),
        )
    })
}

/// A new recorder's shared state: stopped, no pipeline.
pub(crate) fn new_shared() -> SharedRef {
    Arc::new(Mutex::new(Shared {
        state: RecState::Stop,
        pipeline: None,
        srcs: [None, None],
        codecs: [None, None],
        pending: vec![],
        first_at: None,
        finishing: vec![],
        stopping: Stopping::new(),
    }))
}

struct Recorder {
    id: String,
    key: u64,
    shared: SharedRef,
    media: Media,
    path: MediaUri,
}

fn state_event(state: RecState) -> MediaEvent {
    MediaEvent::UriEndpointState {
        state: state.name(),
    }
}

impl Recorder {
    fn record(&mut self, cx: &mut ElementCx<'_>) -> Result<Value, KurentoError> {
        if start_recording(&self.shared, &self.path, &self.id, &mut |e| cx.raise(e))? {
            self.media.bus.request_keyframe(self.key);
        }
        Ok(Value::Null)
    }

    fn pause(&mut self, cx: &mut ElementCx<'_>) -> Result<Value, KurentoError> {
        pause_recording(&self.shared, &mut |e| cx.raise(e));
        Ok(Value::Null)
    }

    /// Ends the file. With `wait`, answers once it is finalised (at most 5 s): later, from a
    /// thread, so that the engine serves other requests meanwhile; inline where the request
    /// cannot be answered later (inside a transaction).
    fn stop(&mut self, cx: &mut ElementCx<'_>, wait: bool) -> Result<Value, KurentoError> {
        let Some(done) = stop_recording(&self.shared, &self.id, &self.media.events) else {
            return Ok(Value::Null);
        };
        if !wait {
            return Ok(Value::Null);
        }
        let Some(reply) = cx.defer() else {
            let _ = done.recv_timeout(Duration::from_secs(5));
            return Ok(Value::Null);
        };
        let spawned = std::thread::Builder::new()
            .name("fluo-stop-wait".into())
            .spawn(move || {
                let _ = done.recv_timeout(Duration::from_secs(5));
                reply.complete(Ok(Value::Null));
            });
        if let Err(e) = spawned {
            // The Completer went with the closure and answered with an error when dropped.
            tracing::warn!("stopAndWait: no thread to wait on: {e}");
        }
        Ok(Value::Null)
    }
}

/// Starts (or resumes) recording into `path`: the file is created now so that a bad path
/// fails the request, not a streaming thread later. Raises UriEndpointStateChanged(START) and
/// Recording through `raise`; whether it started (the caller asks its sources for a
/// keyframe then).
pub(crate) fn start_recording(
    shared: &SharedRef,
    path: &MediaUri,
    id: &str,
    raise: &mut dyn FnMut(MediaEvent),
) -> Result<bool, KurentoError> {
    let (state, finishing) = {
        let s = lock(shared);
        (s.state, !s.finishing.is_empty())
    };
    if state == RecState::Start {
        return Ok(false);
    }
    if let (RecState::Stop, MediaUri::File(path)) = (state, path) {
        if finishing {
            // The previous recording of this file is still being finalised.
            return Err(KurentoError::new(
                ErrorCode::MediaObjectOperationNotSupported,
                "The previous recording is still being finalised: wait for Stopped (or use stopAndWait) before recording again",
            ));
        }
        create_file(path)?;
    }
    lock(shared).state = RecState::Start;
    raise(state_event(RecState::Start));
    raise(MediaEvent::Recording);
    tracing::info!(%id, uri = %path.gst_uri(), "recording");
    Ok(true)
}

/// Creates (or truncates) the file to record into, and its folder.
fn create_file(path: &std::path::Path) -> Result<(), KurentoError> {
    // File-system work without the lock the media thread takes for every packet.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            KurentoError::new(
                ErrorCode::UriPathFileNotFound,
                format!(
                    "Cannot create {}: {}",
                    dir.display(),
                    fluo_api::text::foreign(&e)
                ),
            )
        })?;
    }
    // Fail now, not later on a streaming thread.
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            KurentoError::new(
                ErrorCode::UriPathFileNotFound,
                format!(
                    "Cannot write {}: {}",
                    path.display(),
                    fluo_api::text::foreign(&e)
                ),
            )
        })?;
    Ok(())
}

/// Pauses a recording; raises UriEndpointStateChanged(PAUSE) and Paused through `raise`.
pub(crate) fn pause_recording(shared: &SharedRef, raise: &mut dyn FnMut(MediaEvent)) {
    let mut s = lock(shared);
    if s.state != RecState::Start {
        return;
    }
    s.state = RecState::Pause;
    drop(s);
    raise(state_event(RecState::Pause));
    raise(MediaEvent::Paused);
}

/// The recorder goes away: a recording in progress is still finalised; the receiver fires
/// when it is.
pub(crate) fn release_recording(
    shared: &SharedRef,
    id: &str,
    events: &EventSink,
) -> Option<std::sync::mpsc::Receiver<()>> {
    let mut s = lock(shared);
    s.state = RecState::Stop;
    let pipeline = s.pipeline.take();
    let srcs = std::mem::take(&mut s.srcs);
    drop(s);
    // Released while recording: the file is still finalised.
    pipeline.map(|p| finish(p, srcs, shared.clone(), id.to_string(), events.clone()))
}

/// The recording pipeline as a DOT graph drawn with Kurento's GstreamerDotDetails `details`
/// (empty when not recording).
pub(crate) fn dot(shared: &SharedRef, details: &str) -> String {
    lock(shared)
        .pipeline
        .as_ref()
        .map(|p| {
            p.debug_to_dot_data(crate::dot::details(details))
                .to_string()
        })
        .unwrap_or_default()
}

/// The recorder's UriEndpointState.
pub(crate) fn state_name(shared: &SharedRef) -> &'static str {
    lock(shared).state.name()
}

/// Stops recording: raises UriEndpointStateChanged(STOP) now and `Stopped` once the file is
/// finalised; the receiver fires then. `None` when it was not recording.
pub(crate) fn stop_recording(
    shared: &SharedRef,
    id: &str,
    events: &EventSink,
) -> Option<std::sync::mpsc::Receiver<()>> {
    let mut s = lock(shared);
    if s.state == RecState::Stop {
        return None;
    }
    s.state = RecState::Stop;
    let pipeline = s.pipeline.take();
    let srcs = std::mem::take(&mut s.srcs);
    s.codecs = [None, None];
    s.pending.clear();
    s.first_at = None;
    if let Some(p) = &pipeline {
        s.finishing.push(p.clone());
    }
    drop(s);
    events(id, state_event(RecState::Stop));
    let Some(p) = pipeline else {
        events(id, MediaEvent::Stopped);
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = tx.send(());
        return Some(rx);
    };
    Some(finish(
        p,
        srcs,
        shared.clone(),
        id.to_string(),
        events.clone(),
    ))
}

/// Sends EOS through a recording pipeline so the muxer writes its index, then stops it, on
/// a thread of its own; raises `Stopped` when done. The receiver fires then.
fn finish(
    p: gst::Pipeline,
    srcs: [Option<gst_app::AppSrc>; 2],
    shared: SharedRef,
    id: String,
    events: EventSink,
) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let guard = crate::FinishGuard::new();
    let run = move || {
        let _guard = guard;
        for s in srcs.iter().flatten() {
            let _ = s.end_of_stream();
        }
        if let Some(bus) = p.bus() {
            let deadline = gst::ClockTime::from_seconds(5);
            let msg =
                bus.timed_pop_filtered(deadline, &[gst::MessageType::Eos, gst::MessageType::Error]);
            if let Some(gst::MessageView::Error(e)) = msg.as_ref().map(|m| m.view()) {
                tracing::warn!(%id, "finishing the recording: {}", e.error());
            }
        }
        let _ = p.set_state(gst::State::Null);
        lock(&shared).finishing.retain(|x| x != &p);
        tracing::info!(%id, "recording finalised");
        events(&id, MediaEvent::Stopped);
        let _ = tx.send(());
    };
    if let Err(e) = std::thread::Builder::new()
        .name("fluo-rec-stop".into())
        .spawn(run)
    {
        tracing::warn!("cannot start the finishing thread: {e}");
    }
    rx
}

impl Element for Recorder {
    fn has_output(&self) -> bool {
        // A recorder only takes media: no format of its output to force.
        false
    }

    fn stats(&mut self, q: &fluo_core::StatsQuery<'_>) -> Option<Map<String, Value>> {
        self.media.element_stats(q)
    }

    fn invoke(
        &mut self,
        cx: &mut ElementCx<'_>,
        method: &str,
        _params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        Some(match method {
            "record" => self.record(cx),
            "pause" => self.pause(cx),
            "stop" => self.stop(cx, false),
            "stopAndWait" => self.stop(cx, true),
            _ => return None,
        })
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        match name {
            "state" => Some(json!(state_name(&self.shared))),
            _ => None,
        }
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, true);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, false);
    }

    fn released(&mut self) {
        let _ = release_recording(&self.shared, &self.id, &self.media.events);
        self.media.bus.remove_port(self.key);
    }

    fn stopping(&self) -> Option<Stopping> {
        Some(lock(&self.shared).stopping.clone())
    }
}

/// The recorder as the router sees it (and the recorder job, in a worker, as it gets
/// packets).
pub(crate) struct RecorderPort {
    pub(crate) stop_on_eos: bool,
    pub(crate) shared: SharedRef,
    pub(crate) profile: Profile,
    pub(crate) path: MediaUri,
    pub(crate) id: String,
    pub(crate) events: EventSink,
}

impl RecorderPort {
    /// Builds the pipeline for the codecs seen so far.
    fn build(&self, s: &mut Shared) {
        let p = match bridge::launch(&self.description(s), &self.id, "recorder") {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(id = %self.id, "recorder pipeline: {e}");
                return self.fail(s, &e);
            }
        };
        let location = match &self.path {
            MediaUri::File(path) => path.to_string_lossy().into_owned(),
            MediaUri::Remote(uri) => uri.clone(),
        };
        match p.by_name("out") {
            Some(out) => out.set_property("location", location),
            None => return self.fail(s, "no sink in the recording pipeline"),
        }
        let srcs = [bridge::appsrc(&p, "a").ok(), bridge::appsrc(&p, "v").ok()];
        // A muxer fails on a buffer without a timestamp (a depayloader can emit one when
        // packets were lost under load); such a buffer is dropped instead.
        for q in ["qa", "qv"] {
            if let Some(pad) = p.by_name(q).and_then(|q| q.static_pad("src")) {
                pad.add_probe(gst::PadProbeType::BUFFER, |_, info| match info.buffer() {
                    Some(b) if b.pts().is_none() => gst::PadProbeReturn::Drop,
                    _ => gst::PadProbeReturn::Ok,
                });
            }
        }
        self.watch_bus(&p);
        if let Err(e) = p.set_state(gst::State::Playing) {
            bridge::stop_in_background(p, s.stopping.clone());
            return self.fail(s, &e.to_string());
        }
        tracing::debug!(id = %self.id, codecs = ?s.codecs, "recording pipeline playing");
        s.pipeline = Some(p);
        s.srcs = srcs;
        for pkt in std::mem::take(&mut s.pending) {
            if let Some(src) = &s.srcs[pkt.kind] {
                bridge::push(src, &pkt);
            }
        }
    }

    /// The recording pipeline's description for the codecs seen so far: an appsrc, jitter
    /// buffer and depayloader per track into the profile's muxer, into a file or an upload.
    /// The location is set as a property after parsing, never written into the description
    /// (whose parser would interpret quotes and escapes in it).
    fn description(&self, s: &Shared) -> String {
        let mut desc = match &self.path {
            MediaUri::File(_) => format!(
                "{} name=mux ! filesink name=out buffer-mode=unbuffered",
                self.profile.mux
            ),
            // An upload: one chunked POST that lasts the recording (the muxer cannot seek
            // back, so it writes a streamable file).
            MediaUri::Remote(_) => format!(
                "{} name=mux streamable=true ! curlhttpsink name=out content-type={}",
                self.profile.mux, self.profile.mime
            ),
        };
        for k in [MediaKind::Audio, MediaKind::Video] {
            let Some(c) = s.codecs[k] else { continue };
            let depay = crate::codecs::depay(&c).unwrap_or("identity");
            let parse = match c.name {
                CodecName::Opus => " ! opusparse",
                _ => "",
            };
            let name = if k == MediaKind::Audio { "a" } else { "v" };
            desc.push_str(&format!(
                " {} ! rtpjitterbuffer latency=200 mode=none ! {depay}{parse} ! queue name=q{name} max-size-time=3000000000 ! mux.",
                bridge::appsrc_desc(name, &c)
            ));
        }
        desc
    }

    /// The pipeline's errors as the recorder's Error events; its end of stream and errors
    /// stay on the bus for `finish`.
    fn watch_bus(&self, p: &gst::Pipeline) {
        let Some(bus) = p.bus() else {
            return;
        };
        let id = self.id.clone();
        let events = self.events.clone();
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Error(e) = msg.view() {
                tracing::warn!(%id, "recorder error: {} ({:?})", e.error(), e.debug());
                events(&id, crate::gst_error(e, fluo_core::MediaError::Recorder));
            }
            // Only what `finish` waits for stays on the bus (nobody reads the rest).
            match msg.view() {
                gst::MessageView::Eos(_) | gst::MessageView::Error(_) => gst::BusSyncReply::Pass,
                _ => gst::BusSyncReply::Drop,
            }
        });
    }

    fn fail(&self, s: &mut Shared, why: &str) {
        s.state = RecState::Stop;
        s.pending.clear();
        let description = format!("Recording failed: {}", fluo_api::text::foreign(why));
        (self.events)(
            &self.id,
            crate::error_event(fluo_core::MediaError::Recorder, description),
        );
    }
}

impl Node for RecorderPort {
    /// The profile's codecs of `kind` (any H.264 profile), or, once its track started, the
    /// codec it started in; a kind the profile does not record is taken and dropped.
    fn caps(&self, kind: MediaKind) -> SinkCaps {
        let started = lock(&self.shared).codecs[kind];
        sink_caps(&self.profile, kind, started)
    }

    fn end_of_stream(&mut self) {
        self.source_ended();
    }

    fn push(&mut self, _now: Instant, pkt: &Packet<'_>, header: Header) {
        self.take(&MediaPacket::routed(pkt, header));
    }
}

/// What a recorder of `profile` takes of `kind`: the profile's codecs (any H.264 profile), or
/// `started`, the codec its track started in; a kind the profile does not record is taken and
/// dropped.
pub(crate) fn sink_caps(profile: &Profile, kind: MediaKind, started: Option<Codec>) -> SinkCaps {
    let names = profile.codecs(kind);
    if names.is_empty() {
        return SinkCaps::anything();
    }
    if let Some(c) = started {
        return SinkCaps::codecs([SinkCodec::new(c)]);
    }
    let any_profile = |n: &CodecName| Codec {
        profile_level_id: None,
        packetization_mode: None,
        ..Codec::new(*n)
    };
    SinkCaps {
        takes: Takes::Codecs(names.iter().map(any_profile).map(SinkCodec::new).collect()),
        targets: names.iter().map(|n| Codec::new(*n)).collect(),
        transcoder: false,
    }
}

impl RecorderPort {
    /// The source ended: with stopOnEndOfStream, the recording stops.
    pub(crate) fn source_ended(&mut self) {
        if self.stop_on_eos {
            tracing::info!(id = %self.id, "the source ended: stopping the recording");
            let _ = stop_recording(&self.shared, &self.id, &self.events);
        }
    }

    /// A packet to record: the pipeline is built once the tracks are known (every kind of the
    /// profile seen, or [`WAIT_FOR_ALL`] after the first packet).
    pub(crate) fn take(&mut self, pkt: &MediaPacket) {
        let mut s = lock(&self.shared);
        if s.state != RecState::Start {
            return;
        }
        let k = pkt.kind;
        if s.pipeline.is_some() {
            let src = s.srcs[k].clone();
            drop(s);
            // No lock across the push.
            if let Some(src) = src {
                bridge::push(&src, pkt);
            }
            return;
        }
        if self.profile.codecs(pkt.kind).is_empty() {
            return;
        }
        if s.codecs[k].is_none() {
            s.codecs[k] = Some(pkt.codec);
        }
        let first = *s.first_at.get_or_insert_with(Instant::now);
        if s.pending.len() < MAX_PENDING {
            s.pending.push(pkt.clone());
        }
        let have = s.codecs.iter().flatten().count();
        if have >= self.profile.kinds() || first.elapsed() >= WAIT_FOR_ALL {
            self.build(&mut s);
        }
    }
}
