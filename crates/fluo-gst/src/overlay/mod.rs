//! ImageOverlayFilter and FaceOverlayFilter: images blended into decoded video.
//!
//! Both run in GStreamerFilter's decode -> stage -> encode port ([`crate::filter::FilterPort`]);
//! their stage ([`OverlayStage`]) converts the video to packed RGB, (FaceOverlayFilter) runs
//! GStreamer's OpenCV `facedetect` on it, whose faces come with each buffer as region-of-
//! interest metas, and blends the images in a probe before converting back. Images are
//! loaded on the element's own loader thread ([`Overlays`]), so that a slow server or a
//! large file never holds the media, the router or the engine; until an image is loaded it
//! is not drawn. The methods answer as KMS's do once their arguments are checked (a bad or
//! refused URI, a value out of range: 40107); an image that then cannot be read, fetched or
//! decoded raises an Error event (KMS only logs it) and the video goes on without it.

pub(crate) mod blend;
pub(crate) mod job;
pub(crate) mod load;
pub(crate) mod remote;

use crate::filter::{self, Stage};
use crate::uri::{self, UriPolicy};
use crate::Media;
use blend::{Patch, Rect, Rgba};
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, EventSink, Factory, FactoryCx, Stopping};
use fluo_sfu::MediaKind;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use serde_json::{Map, Value};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

/// The cascade FaceOverlayFilter's `facedetect` uses (Debian's opencv-data).
pub const FACE_CASCADE: &str =
    "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";
/// The most images one ImageOverlayFilter draws.
pub(crate) const MAX_IMAGES: usize = 32;
/// The most decoded pixels one filter's images hold in all (64 MiB of RGBA): an image that
/// would take the filter over it is not drawn and raises an Error event.
pub(crate) const MAX_PIXELS: u64 = 16 << 20;
/// The range of offsets, and of sizes, a client may give (fractions of the frame or face).
pub(crate) const OFFSETS: std::ops::RangeInclusive<f32> = -10.0..=10.0;
pub(crate) const SIZES: std::ops::RangeInclusive<f32> = 0.0..=10.0;

/// Which of the two filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Image,
    Face,
}

impl Which {
    /// The Kurento type.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Which::Image => "ImageOverlayFilter",
            Which::Face => "FaceOverlayFilter",
        }
    }
}

/// A change of a filter's images (what its methods do, in the server or in a worker's job).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// Draw the image at `uri` (checked) as `id` (replacing one of that id).
    Add {
        id: String,
        uri: String,
        /// The server has a URI allow-list: http redirects are not followed.
        guarded: bool,
        /// Offset x, y, width, height (fractions).
        place: [f32; 4],
        keep_aspect: bool,
        center: bool,
    },
    /// Stop drawing `id` (nothing if there is none, as in KMS).
    Remove(String),
}

fn illegal(which: Which, msg: String) -> KurentoError {
    KurentoError::new(
        ErrorCode::MediaObjectIllegalParamError,
        format!("{}: {msg}", which.label()),
    )
}

/// An image's URI, parsed (file://, http:// or https://) and checked against the allow-list:
/// as GStreamer takes it.
fn checked_uri(which: Which, u: &str, uris: &UriPolicy) -> Result<String, KurentoError> {
    let parsed = uri::parse(u, &["http", "https"]).map_err(|e| illegal(which, e.message))?;
    uris.check(&parsed).map_err(|e| illegal(which, e.message))?;
    Ok(parsed.gst_uri())
}

/// The id FaceOverlayFilter's one image has.
const FACE_ID: &str = "face";

/// A method call of `which` as the [`Op`] it makes, its arguments checked; `None` for a
/// method these filters do not have.
pub(crate) fn parse_op(
    which: Which,
    method: &str,
    params: &Map<String, Value>,
    uris: &UriPolicy,
) -> Option<Result<Op, KurentoError>> {
    let text = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| illegal(which, format!("{method}: {k} must be a string")))
    };
    let number = |k: &str, range: &std::ops::RangeInclusive<f32>| {
        let v = params.get(k).and_then(Value::as_f64).map(|v| v as f32);
        match v {
            Some(v) if v.is_finite() && range.contains(&v) => Ok(v),
            _ => Err(illegal(
                which,
                format!(
                    "{method}: {k} must be a number from {} to {} (got {})",
                    range.start(),
                    range.end(),
                    params.get(k).map(Value::to_string).unwrap_or_default()
                ),
            )),
        }
    };
    let flag = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_bool)
            .ok_or_else(|| illegal(which, format!("{method}: {k} must be a boolean")))
    };
    let place = || -> Result<[f32; 4], KurentoError> {
        Ok([
            number("offsetXPercent", &OFFSETS)?,
            number("offsetYPercent", &OFFSETS)?,
            number("widthPercent", &SIZES)?,
            number("heightPercent", &SIZES)?,
        ])
    };
    let checked_uri = |u: &str| checked_uri(which, u, uris);
    let guarded = !uris.is_open();
    let op = match (which, method) {
        (Which::Image, "addImage") => (|| -> Result<Op, KurentoError> {
            let id = text("id")?;
            if id.is_empty() || id.len() > 256 {
                return Err(illegal(
                    which,
                    "addImage: id must have 1 to 256 bytes".into(),
                ));
            }
            Ok(Op::Add {
                id: id.to_string(),
                uri: checked_uri(text("uri")?)?,
                guarded,
                place: place()?,
                keep_aspect: flag("keepAspectRatio")?,
                center: flag("center")?,
            })
        })(),
        (Which::Image, "removeImage") => text("id").map(|id| Op::Remove(id.to_string())),
        (Which::Face, "setOverlayedImage") => (|| -> Result<Op, KurentoError> {
            Ok(Op::Add {
                id: FACE_ID.to_string(),
                uri: checked_uri(text("uri")?)?,
                guarded,
                place: place()?,
                keep_aspect: false,
                center: false,
            })
        })(),
        (Which::Face, "unsetOverlayedImage") => Ok(Op::Remove(FACE_ID.to_string())),
        _ => return None,
    };
    Some(op)
}

/// One image to draw.
struct Entry {
    id: String,
    place: [f32; 4],
    keep_aspect: bool,
    center: bool,
    /// Which load of `id` this is: a load that finishes after a newer one began is dropped.
    generation: u64,
    /// The decoded image, once loaded.
    image: Option<Arc<Rgba>>,
    /// The last patch drawn: its rectangle, the frame's size, the scaled pixels.
    cache: Option<(Rect, (u32, u32), Patch)>,
}

impl Entry {
    /// Draws the image at rectangle `r` of a `size` frame (scaled again only when the
    /// rectangle or the frame's size changed).
    fn draw_at(&mut self, r: Option<Rect>, frame: &mut [u8], stride: usize, size: (u32, u32)) {
        let (Some(r), Some(img)) = (r, self.image.as_ref()) else {
            return;
        };
        let fresh = matches!(&self.cache, Some((cr, cs, _)) if *cr == r && *cs == size);
        if !fresh {
            self.cache = blend::patch(img, r, size).map(|p| (r, size, p));
        }
        if let Some((_, _, p)) = &self.cache {
            blend::draw(frame, stride, p);
        }
    }
}

/// The images of one filter, shared by its methods, its loader thread and its pipelines.
#[derive(Default)]
pub(crate) struct State {
    entries: Vec<Entry>,
    generation: u64,
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// Draws every loaded image into a packed RGB frame: at its place in the frame, or (with
    /// `faces`) at its place relative to each face.
    fn draw(&mut self, frame: &mut [u8], stride: usize, size: (u32, u32), faces: Option<&[Rect]>) {
        for e in &mut self.entries {
            match faces {
                None => {
                    let Some((iw, ih)) = e.image.as_ref().map(|i| (i.width, i.height)) else {
                        continue;
                    };
                    let r = blend::image_rect(size, e.place, e.keep_aspect, e.center, (iw, ih));
                    e.draw_at(r, frame, stride, size);
                }
                Some(faces) => {
                    for face in faces {
                        e.draw_at(blend::face_rect(*face, e.place), frame, stride, size);
                    }
                }
            }
        }
    }
}

/// A load for the loader thread: entry id, its generation, the URI and whether redirects
/// are refused.
type Load = (String, u64, String, bool);

/// A filter's images and its loader thread (started with the first image, ended when the
/// filter goes).
pub(crate) struct Overlays {
    which: Which,
    state: Arc<Mutex<State>>,
    loads: Option<mpsc::Sender<Load>>,
    /// The element's id and where its Error events go.
    id: String,
    events: EventSink,
}

impl Overlays {
    pub(crate) fn new(which: Which, id: String, events: EventSink) -> Overlays {
        Overlays {
            which,
            state: Arc::new(Mutex::new(State::default())),
            loads: None,
            id,
            events,
        }
    }

    /// The pipelines' stage that draws these images.
    pub(crate) fn stage(&self) -> Arc<dyn Stage> {
        Arc::new(OverlayStage {
            which: self.which,
            state: self.state.clone(),
        })
    }

    /// Applies a method's change: an added image is drawn once its loader has it.
    pub(crate) fn apply(&mut self, op: Op) -> Result<(), KurentoError> {
        let mut st = lock(&self.state);
        match op {
            Op::Remove(id) => {
                let before = st.entries.len();
                st.entries.retain(|e| e.id != id);
                if st.entries.len() == before {
                    tracing::debug!(id = %self.id, image = %id, "no such overlay image to remove");
                }
                Ok(())
            }
            Op::Add {
                id,
                uri,
                guarded,
                place,
                keep_aspect,
                center,
            } => {
                let known = st.entries.iter().any(|e| e.id == id);
                if !known && st.entries.len() >= MAX_IMAGES {
                    return Err(illegal(
                        self.which,
                        format!("at most {MAX_IMAGES} images are drawn at once"),
                    ));
                }
                st.generation += 1;
                let generation = st.generation;
                st.entries.retain(|e| e.id != id);
                st.entries.push(Entry {
                    id: id.clone(),
                    place,
                    keep_aspect,
                    center,
                    generation,
                    image: None,
                    cache: None,
                });
                drop(st);
                let load = (id, generation, uri, guarded);
                let sent = self.loader().send(load);
                if sent.is_err() {
                    return Err(KurentoError::new(
                        ErrorCode::UnexpectedError,
                        format!("{}: the image loader stopped", self.which.label()),
                    ));
                }
                Ok(())
            }
        }
    }

    fn loader(&mut self) -> &mpsc::Sender<Load> {
        if self.loads.is_none() {
            let (tx, rx) = mpsc::channel::<Load>();
            let (which, state) = (self.which, Arc::downgrade(&self.state));
            let (id, events) = (self.id.clone(), self.events.clone());
            let spawned = std::thread::Builder::new()
                .name("fluo-overlay-load".into())
                .spawn(move || {
                    for load in rx {
                        loaded(which, &state, &id, &events, load);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(id = %self.id, "no overlay loader thread: {e}");
            }
            self.loads = Some(tx);
        }
        self.loads.as_ref().expect("set above")
    }
}

/// Loads one image and gives it to its entry, or raises the element's Error event.
fn loaded(
    which: Which,
    state: &std::sync::Weak<Mutex<State>>,
    id: &str,
    events: &EventSink,
    (image_id, generation, uri, guarded): Load,
) {
    let current =
        |st: &State| (st.entries.iter()).any(|e| e.id == image_id && e.generation == generation);
    // Removed or replaced while it waited, or the filter is gone: not fetched at all.
    if !state.upgrade().is_some_and(|s| current(&lock(&s))) {
        return;
    }
    let mut result = uri::parse(&uri, &["http", "https"])
        .map_err(|e| e.message)
        .and_then(|u| load::load(&u, guarded));
    let Some(state) = state.upgrade() else {
        return;
    };
    let mut st = lock(&state);
    if let Ok(img) = &result {
        let others: u64 = (st.entries.iter())
            .filter(|e| !(e.id == image_id && e.generation == generation))
            .filter_map(|e| e.image.as_ref())
            .map(|i| u64::from(i.width) * u64::from(i.height))
            .sum();
        if others + u64::from(img.width) * u64::from(img.height) > MAX_PIXELS {
            result = Err(format!(
                "the filter's images would hold more than {MAX_PIXELS} pixels in all"
            ));
        }
    }
    let Some(entry) = st
        .entries
        .iter_mut()
        .find(|e| e.id == image_id && e.generation == generation)
    else {
        return; // removed or replaced meanwhile
    };
    match result {
        Ok(img) => {
            tracing::info!(%id, image = %image_id, %uri, width = img.width, height = img.height, "overlay image loaded");
            entry.image = Some(Arc::new(img));
            entry.cache = None;
        }
        Err(e) => {
            drop(st);
            let label = which.label();
            tracing::warn!(%id, image = %image_id, %uri, "{label}: image not loaded: {e}");
            let description = format!("{label}: the image {uri} cannot be drawn: {e}");
            events(
                id,
                crate::error_event(fluo_core::MediaError::Filter, description),
            );
        }
    }
}

/// The stage of an overlay filter's pipelines.
struct OverlayStage {
    which: Which,
    state: Arc<Mutex<State>>,
}

impl Stage for OverlayStage {
    fn class(&self) -> &'static str {
        self.which.label()
    }

    fn error(&self) -> fluo_core::MediaError {
        fluo_core::MediaError::Filter
    }

    fn make(&self) -> Result<gst::Element, String> {
        self.build().map(|bin| bin.upcast())
    }
}

impl OverlayStage {
    /// The stage's bin: to packed RGB, (faces) `facedetect`, the images drawn, back.
    fn build(&self) -> Result<gst::Bin, String> {
        let make = |f: &str| {
            gst::ElementFactory::make(f)
                .build()
                .map_err(|_| format!("the GStreamer element {f} is not installed"))
        };
        let bin = gst::Bin::new();
        let rgb = gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .build();
        let to_rgb = make("videoconvert")?;
        let caps = gst::ElementFactory::make("capsfilter")
            .property("caps", &rgb)
            .build()
            .map_err(|_| "no capsfilter".to_string())?;
        let back = make("videoconvert")?;
        let mut chain = vec![to_rgb, caps];
        if self.which == Which::Face {
            // Made, it has already tried its nose, mouth and eye-pair cascades (files Debian
            // does not ship), each failure an OpenCV ERROR line on standard error unless
            // OPENCV_LOG_LEVEL says otherwise (the server sets it: fluo-server's
            // init_logging). They cannot be turned off: an empty profile makes OpenCV throw,
            // which aborts the process; they are used only when they loaded.
            let detect = make("facedetect")?;
            detect.set_property("display", false);
            // FACE_CASCADE is facedetect's default profile: setting it would parse the
            // cascade a second time.
            if detect.property::<Option<String>>("profile").as_deref() != Some(FACE_CASCADE) {
                detect.set_property("profile", FACE_CASCADE);
            }
            detect.set_property_from_str("updates", "none");
            scale_min_face(&detect);
            chain.push(detect);
        }
        chain.push(back.clone());
        bin.add_many(&chain).map_err(|e| e.to_string())?;
        gst::Element::link_many(&chain).map_err(|e| e.to_string())?;
        let ghost = |el: &gst::Element, pad: &str| -> Result<(), String> {
            let target = el.static_pad(pad).ok_or("no pad")?;
            let g = gst::GhostPad::builder_with_target(&target)
                .map_err(|e| e.to_string())?
                .name(pad)
                .build();
            bin.add_pad(&g).map_err(|e| e.to_string())
        };
        ghost(&chain[0], "sink")?;
        ghost(&back, "src")?;
        let pad = back.static_pad("sink").ok_or("no pad")?;
        let (state, faces) = (self.state.clone(), self.which == Which::Face);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                draw_buffer(pad, buffer, &state, faces);
            }
            gst::PadProbeReturn::Ok
        });
        Ok(bin)
    }
}

/// The smallest face (width and height, pixels) FaceOverlayFilter's `facedetect` looks for in
/// a frame `width` wide: 30 pixels in a frame up to 320 wide, the same share of wider frames
/// (a face under 3/32 of the width is not looked for; the scan of the smallest windows is the
/// detection's most costly part).
pub fn min_face(width: i32) -> i32 {
    (width.max(0) * 30 / 320).max(30)
}

/// Sets `detect`'s smallest face from the width of the frames it gets ([`min_face`]).
fn scale_min_face(detect: &gst::Element) {
    let Some(pad) = detect.static_pad("sink") else {
        return;
    };
    let weak = detect.downgrade();
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(ev)) = &info.data {
            if let gst::EventView::Caps(c) = ev.view() {
                let width = c
                    .caps()
                    .structure(0)
                    .and_then(|s| s.get::<i32>("width").ok());
                if let (Some(w), Some(d)) = (width, weak.upgrade()) {
                    let min = min_face(w);
                    d.set_property("min-size-width", min);
                    d.set_property("min-size-height", min);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Draws the images into one RGB buffer passing `pad`.
fn draw_buffer(pad: &gst::Pad, buffer: &mut gst::Buffer, state: &Mutex<State>, faces: bool) {
    let Some(info) = pad
        .current_caps()
        .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
    else {
        return;
    };
    let found: Option<Vec<Rect>> = faces.then(|| {
        buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .filter(|m| m.roi_type() == "face")
            .map(|m| {
                let (x, y, w, h) = m.rect();
                Rect {
                    x: i64::from(x),
                    y: i64::from(y),
                    w: i64::from(w),
                    h: i64::from(h),
                }
            })
            .collect()
    });
    let mut st = lock(state);
    if st.entries.iter().all(|e| e.image.is_none()) {
        return;
    }
    let buf = buffer.make_mut();
    let Ok(mut frame) = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info) else {
        return;
    };
    let size = (frame.width(), frame.height());
    let stride = frame.plane_stride()[0].max(0) as usize;
    if let Ok(data) = frame.plane_data_mut(0) {
        st.draw(data, stride, size, found.as_deref());
    }
}

/// The factory of both filters.
pub(crate) struct OverlayFactory {
    pub media: Media,
    pub which: Which,
}

impl Factory for OverlayFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        crate::init().map_err(|e| KurentoError::new(ErrorCode::UnexpectedError, e))?;
        let label = self.which.label();
        if self.which == Which::Face
            && (gst::ElementFactory::find("facedetect").is_none()
                || !std::path::Path::new(FACE_CASCADE).exists())
        {
            return Err(KurentoError::new(
                ErrorCode::MediaObjectNotAvailable,
                format!("{label}: face detection is not installed (gstreamer1.0-opencv's facedetect and opencv-data's {FACE_CASCADE})"),
            ));
        }
        tracing::info!(id = %cx.id, "{label} created");
        if let Some(workers) = &self.media.workers {
            return Ok(remote::create(workers, &self.media, cx, self.which));
        }
        let overlays = Overlays::new(self.which, cx.id.to_string(), self.media.events.clone());
        let stopping = Stopping::new();
        let key = filter::add_port(
            &self.media,
            cx.id,
            MediaKind::Video,
            overlays.stage(),
            stopping.clone(),
        );
        Ok(Box::new(Overlay {
            port: filter::LocalPort {
                id: cx.id.to_string(),
                key,
                media: self.media.clone(),
                stopping,
            },
            overlays,
        }))
    }
}

/// An overlay filter whose pipeline runs in the server's process (`--workers 0`).
struct Overlay {
    port: filter::LocalPort,
    overlays: Overlays,
}

impl Element for Overlay {
    fn stats(&mut self, q: &fluo_core::StatsQuery<'_>) -> Option<Map<String, Value>> {
        self.port.media.element_stats(q)
    }

    fn invoke(
        &mut self,
        _cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        let op = parse_op(self.overlays.which, method, params, &self.port.media.uris)?;
        Some(
            op.and_then(|op| self.overlays.apply(op))
                .map(|()| Value::Null),
        )
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.port.connected(edge);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.port.disconnected(edge);
    }

    fn released(&mut self) {
        self.port.released();
    }

    fn stopping(&self) -> Option<Stopping> {
        Some(self.port.stopping.clone())
    }
}

#[cfg(test)]
mod tests;
