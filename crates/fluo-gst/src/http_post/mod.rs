//! HttpPostEndpoint: media uploaded by an HTTP POST to the element's URL on Fluo's HTTP
//! listener (fluo-server's `http`), demuxed and decoded as it arrives (an appsrc fed with the
//! body's bytes into decodebin) and encoded once for every sink as a PlayerEndpoint's media
//! is (the player's branches: VP8 and Opus, or the formats the element's settings force),
//! or with useEncodedMedia payloaded without decoding. The body's end is the stream's end
//! (EndOfStream).
//!
//! * [`PostCore`]: the pipeline, the same in the server's process (`--workers 0`) and in a
//!   media worker's `gst.http_post` job (`job.rs`).
//! * `session.rs`: the element's URL and its uploads as the HTTP listener sees them (one at a
//!   time, the session events and the disconnection timeout), over either.
//! * `remote.rs`: the element as a proxy of its job.

pub(crate) mod job;
pub(crate) mod remote;
mod session;

use crate::player::{self, lock, SharedRef};
use crate::{bridge, Media};
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::http::UploadState;
use fluo_core::Stopping;
use fluo_core::{Edge, Element, ElementCx, EventSink, Factory, FactoryCx, MediaError, MediaEvent};
use fluo_sfu::{Node, OutputSettings};
use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::{json, Map, Value};
use session::{Endpoint, Feed, Step, StepReply};
use std::sync::{Arc, Mutex};

/// The path prefix of the elements' URLs on the HTTP listener.
pub(crate) const FEATURE: &str = "post";

/// Bytes an appsrc holds before it says it has enough (the listener stops reading the body
/// well before: `UploadState::queued`).
const APPSRC_MAX_BYTES: u64 = 4 << 20;

/// Where an upload's pipeline stands, after a step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostStatus {
    /// Bytes waiting in the appsrc.
    pub queued: u64,
    /// The pipeline reached its end of stream.
    pub ended: bool,
    /// Why the current pipeline failed (the first error of the run).
    pub failed: Option<String>,
}

impl PostStatus {
    /// The listener's view: a failure is a 415 (the body is not media this server plays).
    pub(crate) fn state(self) -> Result<UploadState, fluo_core::http::HttpRefusal> {
        match self.failed {
            Some(text) => Err(fluo_core::http::HttpRefusal::new(415, text)),
            None => Ok(UploadState {
                queued: self.queued,
                ended: self.ended,
            }),
        }
    }
}

/// What one pipeline's run came to (written by its bus handler).
#[derive(Default)]
struct Run {
    ended: bool,
    failed: Option<String>,
}

/// An upload's pipeline: appsrc ! decodebin, then the player's branches.
pub(crate) struct PostCore {
    pub(crate) id: String,
    pub(crate) key: u64,
    pub(crate) use_encoded: bool,
    pub(crate) shared: SharedRef,
    pub(crate) events: EventSink,
    pub(crate) on_eos: Arc<dyn Fn() + Send + Sync>,
    src: Option<gstreamer_app::AppSrc>,
    run: Arc<Mutex<Run>>,
}

impl PostCore {
    /// A core whose pipeline's branches send to `shared`'s output.
    pub(crate) fn new(
        id: String,
        key: u64,
        use_encoded: bool,
        shared: SharedRef,
        events: EventSink,
        on_eos: Arc<dyn Fn() + Send + Sync>,
    ) -> PostCore {
        PostCore {
            id,
            key,
            use_encoded,
            shared,
            events,
            on_eos,
            src: None,
            run: Arc::default(),
        }
    }

    fn hold(&self) -> Stopping {
        lock(&self.shared).stopping.clone()
    }

    /// A POST begins: the pipeline goes on when it still runs (a client coming back after
    /// its connection was lost), else a new one is built, encoding with `settings`.
    pub(crate) fn begin(&mut self, settings: OutputSettings) -> Result<PostStatus, KurentoError> {
        let running = {
            let r = self.run.lock().unwrap_or_else(|p| p.into_inner());
            self.src.is_some() && !r.ended && r.failed.is_none()
        };
        if running {
            return Ok(self.status());
        }
        self.stop();
        self.run = Arc::default();
        let (pipeline, src) = self.build()?;
        {
            let mut s = lock(&self.shared);
            s.sinks.clear();
            s.encoded = [false; 2];
            s.settings = Some(settings);
            s.pipeline = Some(pipeline.clone());
            s.state = "START";
            s.failed = false;
        }
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            self.stop();
            return Err(KurentoError::foreign(
                ErrorCode::UnexpectedError,
                "The upload's pipeline does not start",
                e,
            ));
        }
        self.src = Some(src);
        Ok(self.status())
    }

    fn build(&self) -> Result<(gst::Pipeline, gstreamer_app::AppSrc), KurentoError> {
        let fail = |e: &dyn std::fmt::Display| {
            KurentoError::new(
                ErrorCode::UnexpectedError,
                format!("Cannot build the upload's pipeline: {e}"),
            )
        };
        let pipeline = gst::Pipeline::with_name(&format!("http-post-{}", self.key));
        crate::live::track(&pipeline, &self.id);
        let src = gstreamer_app::AppSrc::builder()
            .name("body")
            .format(gst::Format::Bytes)
            .is_live(false)
            .block(false)
            .max_bytes(APPSRC_MAX_BYTES)
            .stream_type(gstreamer_app::AppStreamType::Stream)
            .build();
        let dec = gst::ElementFactory::make("decodebin")
            .build()
            .map_err(|e| fail(&e))?;
        if self.use_encoded {
            let caps: gst::Caps =
                "video/x-raw;audio/x-raw;video/x-vp8;video/x-vp9;video/x-h264;audio/x-opus"
                    .parse()
                    .map_err(|_| fail(&"caps"))?;
            dec.set_property("caps", &caps);
        }
        player::skip_alpha_decoders(&dec);
        pipeline
            .add_many([src.upcast_ref::<gst::Element>(), &dec])
            .map_err(|e| fail(&e))?;
        src.link(&dec).map_err(|e| fail(&e))?;
        let weak = pipeline.downgrade();
        let (shared, id) = (self.shared.clone(), self.id.clone());
        dec.connect_pad_added(move |_, pad| {
            if let Some(pipeline) = weak.upgrade() {
                if let Err(e) = player::add_branch(&pipeline, pad, &shared) {
                    tracing::warn!(%id, "upload: {e}");
                }
            }
        });
        self.watch(&pipeline);
        Ok((pipeline, src))
    }

    /// The bus: the end of stream is EndOfStream (and the router's end of stream); the run's
    /// first error is its Error event and what the listener answers.
    fn watch(&self, pipeline: &gst::Pipeline) {
        let (id, events, on_eos) = (self.id.clone(), self.events.clone(), self.on_eos.clone());
        let (run, shared) = (self.run.clone(), self.shared.clone());
        let Some(bus) = pipeline.bus() else {
            return;
        };
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Eos(_) => {
                    tracing::info!(%id, "upload: end of stream");
                    run.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
                    lock(&shared).state = "STOP";
                    events(&id, MediaEvent::EndOfStream);
                    on_eos();
                }
                gst::MessageView::Error(e) => {
                    tracing::warn!(%id, "upload error: {} ({:?})", e.error(), e.debug());
                    let ev = crate::gst_error(e, MediaError::HttpPost);
                    let first = {
                        let mut r = run.lock().unwrap_or_else(|p| p.into_inner());
                        let first = r.failed.is_none();
                        if let MediaEvent::Error { description, .. } = &ev {
                            r.failed.get_or_insert_with(|| description.clone());
                        }
                        first
                    };
                    if first {
                        player::first_failure(&shared);
                        events(&id, ev);
                    }
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    }

    /// Hands the body's next bytes to the demuxer.
    pub(crate) fn push(&mut self, bytes: Vec<u8>) -> PostStatus {
        if let Some(src) = &self.src {
            if !bytes.is_empty() {
                let _ = src.push_buffer(gst::Buffer::from_mut_slice(bytes));
            }
        }
        self.status()
    }

    /// The body ended: the stream ends once what was received has gone through.
    pub(crate) fn end(&mut self) -> PostStatus {
        if let Some(src) = &self.src {
            let _ = src.end_of_stream();
        }
        self.status()
    }

    /// The upload is refused (too big, the client stopped sending): the pipeline stops, and
    /// the element raises an Error event saying `why`.
    pub(crate) fn abort(&mut self, why: &str) {
        self.stop();
        (self.events)(
            &self.id,
            crate::error_event(MediaError::HttpPost, why.to_string()),
        );
    }

    /// Where the current run stands.
    pub(crate) fn status(&self) -> PostStatus {
        let r = self.run.lock().unwrap_or_else(|p| p.into_inner());
        PostStatus {
            queued: self.src.as_ref().map_or(0, |s| s.current_level_bytes()),
            ended: r.ended,
            failed: r.failed.clone(),
        }
    }

    /// Stops the pipeline (in the background).
    pub(crate) fn stop(&mut self) {
        self.src = None;
        let p = {
            let mut s = lock(&self.shared);
            s.state = "STOP";
            s.sinks.clear();
            s.pipeline.take()
        };
        if let Some(p) = p {
            bridge::stop_in_background(p, self.hold());
        }
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

    /// Does one step of an upload.
    pub(crate) fn step(
        &mut self,
        step: Step,
        settings: OutputSettings,
    ) -> Result<PostStatus, KurentoError> {
        Ok(match step {
            Step::Begin => return self.begin(settings),
            Step::Data(b) => self.push(b),
            Step::End => self.end(),
            Step::Abort(why) => {
                self.abort(&why);
                self.status()
            }
        })
    }
}

pub(crate) struct HttpPostFactory {
    pub media: Media,
}

impl Factory for HttpPostFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        crate::init().map_err(|e| KurentoError::new(ErrorCode::UnexpectedError, e))?;
        let base = self.media.http.base().ok_or_else(|| {
            KurentoError::new(
                ErrorCode::HttpEndPointRegistrationError,
                "HttpPostEndpoint: this server has no HTTP listener (it could not bind its HTTP port: see --http-port)",
            )
        })?;
        let base = base.to_string();
        let use_encoded = cx
            .params
            .get("useEncodedMedia")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let timeout = cx
            .params
            .get("disconnectionTimeout")
            .and_then(Value::as_i64)
            .unwrap_or(2)
            .clamp(0, 24 * 3600) as u64;
        let timeout = std::time::Duration::from_secs(timeout);
        if let Some(workers) = &self.media.workers {
            return Ok(remote::create(
                workers,
                &self.media,
                cx,
                use_encoded,
                (base, timeout),
            ));
        }
        Ok(Box::new(local(&self.media, cx, use_encoded, base, timeout)))
    }
}

/// The element in the server's process.
struct HttpPost {
    key: u64,
    id: String,
    core: Arc<Mutex<PostCore>>,
    endpoint: Arc<Endpoint>,
    media: Media,
}

fn local(
    media: &Media,
    cx: &FactoryCx<'_>,
    use_encoded: bool,
    base: String,
    timeout: std::time::Duration,
) -> HttpPost {
    let shared = player::new_shared(None);
    let port = player::SourcePort {
        shared: shared.clone(),
    };
    let for_port = shared.clone();
    let key = media.bus.add_port(
        cx.id,
        Box::new(move |out| {
            lock(&for_port).out = Some(out);
            Box::new(port) as Box<dyn Node>
        }),
    );
    let router = media.bus.clone();
    let core = Arc::new(Mutex::new(PostCore::new(
        cx.id.to_string(),
        key,
        use_encoded,
        shared,
        media.events.clone(),
        Arc::new(move || router.end_of_stream(key)),
    )));
    let feed = LocalFeed {
        core: core.clone(),
        id: cx.id.to_string(),
        settings: media.settings.clone(),
    };
    let endpoint = Endpoint::register(media, cx.id, Arc::new(feed), base, timeout);
    HttpPost {
        key,
        id: cx.id.to_string(),
        core,
        endpoint,
        media: media.clone(),
    }
}

/// The in-process pipeline as the listener's uploads drive it.
struct LocalFeed {
    core: Arc<Mutex<PostCore>>,
    id: String,
    settings: Arc<fluo_sfu::SettingsTable>,
}

impl Feed for LocalFeed {
    fn step(&self, step: Step, done: StepReply) {
        let settings = self.settings.get(&self.id);
        let r = self
            .core
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .step(step, settings);
        done(r);
    }
}

impl Element for HttpPost {
    fn invoke(
        &mut self,
        _cx: &mut ElementCx<'_>,
        method: &str,
        _params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        match method {
            "getUrl" => Some(Ok(json!(self.endpoint.url()))),
            _ => None,
        }
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        match name {
            "elementGstreamerDot" => Some(json!(self
                .core
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .dot_with("SHOW_ALL"))),
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
        self.endpoint.release();
        self.core.lock().unwrap_or_else(|p| p.into_inner()).stop();
        self.media.bus.remove_port(self.key);
    }

    fn stopping(&self) -> Option<Stopping> {
        Some(self.core.lock().unwrap_or_else(|p| p.into_inner()).hold())
    }
}
