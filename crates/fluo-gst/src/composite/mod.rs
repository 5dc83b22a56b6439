//! Composite's media: one GStreamer pipeline per Composite hub, shared by its HubPorts, in the
//! process that hosts them (a media worker's `gst.composite` jobs, or the server's process
//! with `--workers 0`).
//!
//! * Video: every port whose input carries video is decoded into a pad of one `compositor`,
//!   laid out as a grid (1, 2, 3-4, 5-6, 7-9 cells, then larger) that is redone as inputs come
//!   and go; each input keeps its aspect ratio inside its cell (`sizing-policy`), the rest is
//!   the black background. A black live source of the hub's size and frame rate runs under the
//!   grid, so the output has that size and rate whatever the inputs. The grid is encoded once
//!   per key (codec, frame rate, bitrate) some port's output settings ask for (`encode`; VP8
//!   at the hub's rate and bitrate for a port without settings): every port of that key sends
//!   the same packets (the router gives each its own line).
//! * Audio: each port's input is decoded once into a `tee`; each port has its own
//!   `audiomixer` fed by every other port's tee (mix-minus: nobody hears themselves), each
//!   input at 1/n of its level so that the sum of n inputs cannot clip, and its own encode
//!   from the mix's tee: Opus (at the port's setAudioFormat bitrate, 64 kbps by default), or
//!   PCMU / PCMA when its setAudioFormat asks (the encode is replaced when that changes).
//!
//! * A Mixer's core (`Layout::Mixer`, see `route`) has no grid: each port sends the video of
//!   the port its `connect(VIDEO)` chose (that input's decoded video encoded once per key
//!   some sink asks for) and the mix of the ports its `connect(AUDIO)` chose.
//!
//! Branches are made when a port's first packet of a kind comes (its codec is known then) and
//! removed with the port, off the router's thread.

use crate::codecs;

mod blend;
mod encode;
pub(crate) mod job;
mod port;
pub(crate) mod remote;
mod route;
pub(crate) use blend::Placement;
use encode::{Branch, Key};
use fluo_sfu::{Codec, CodecName, MediaKind, OutputSettings};
use fluo_worker::PacketRef;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
pub(crate) use port::{decodable, PortControl, PortHandle};
pub use route::Layout;
pub(crate) use route::{PortCmd, Route};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// How long the mixers wait for late inputs (on top of what their inputs report).
pub const MIX_LATENCY_NS: u64 = 200_000_000;
/// The latency of each input's jitterbuffer, in ms.
pub const JITTER_MS: u32 = 50;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A Composite's output: its constructor's width, height and frame rate (KMS's defaults:
/// 800x600 at 15 fps), and the grid's encoder bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// The grid's VP8 bitrate, in bps.
    pub bps: u32,
    /// The grid, AlphaBlending's blend or a Mixer's routes.
    pub layout: Layout,
}

/// The sizes and rates a Composite accepts (its constructor refuses others).
pub(crate) const WIDTHS: std::ops::RangeInclusive<u32> = 16..=4096;
/// Frame rates a Composite accepts.
pub(crate) const RATES: std::ops::RangeInclusive<u32> = 1..=120;

/// Whether `f` is a format a Composite accepts.
pub(crate) fn format_ok(f: &Format) -> bool {
    WIDTHS.contains(&f.width) && WIDTHS.contains(&f.height) && RATES.contains(&f.fps)
}

/// Where a port's output goes (the router, or the job's worker socket).
pub(crate) type Out = Arc<dyn Fn(&PacketRef<'_>) + Send + Sync>;
/// Asks a port's sources for a keyframe.
pub(crate) type Upstream = Arc<dyn Fn() + Send + Sync>;

/// A decoded input of one port.
struct Input {
    /// The branch's elements, upstream first (the appsrc first).
    elements: Vec<gst::Element>,
    /// Video: the compositor's pad it feeds. Audio: none (its tee is the last element).
    pad: Option<gst::Pad>,
}

/// An input's tee linked into another port's mixer.
struct Link {
    from: u64,
    tee_pad: gst::Pad,
    queue: gst::Element,
    mix_pad: gst::Pad,
}

struct Port {
    id: u64,
    /// The HubPort's id (a Mixer's routes name ports by it).
    name: String,
    /// Where the port's output goes.
    out: Out,
    /// The encode of the grid (a Mixer's: of its source) this port sends.
    key: Key,
    inputs: [Option<Input>; 2],
    /// The port's audio mix (silence, mixer, a tee), upstream first.
    audio_out: Vec<gst::Element>,
    /// Its encode (to `audio_codec`, into its appsink) and the mix's tee pad feeding it.
    audio_enc: (Vec<gst::Element>, Option<gst::Pad>),
    /// What its audio is encoded to: Opus, or PCMU / PCMA when its setAudioFormat asks.
    audio_codec: CodecName,
    mixer: gst::Element,
    /// The other ports' inputs mixed into this port's output.
    links: Vec<Link>,
}

#[derive(Default)]
struct State {
    ports: Vec<Port>,
    /// Ports with a video input, in the grid's order.
    grid: Vec<u64>,
    next: u64,
    /// AlphaBlending's placements.
    blend: blend::Blend,
    /// A Mixer's routes.
    routes: route::Routes,
}

/// One Composite's pipeline.
pub(crate) struct Core {
    key: String,
    format: Format,
    pipeline: gst::Pipeline,
    /// The grid, raw, for the encodes.
    tee: gst::Element,
    compositor: gst::Element,
    state: Mutex<State>,
    /// The encodes, one per key some port sends.
    branches: Mutex<Vec<Branch>>,
    /// This core (its inputs' probes hold it weakly).
    me: std::sync::OnceLock<Weak<Core>>,
}

/// The pipelines of this process, by hub id (a hub's ports find its pipeline here).
static CORES: Mutex<Vec<(String, Weak<Core>)>> = Mutex::new(Vec::new());

fn make(desc: &str) -> Result<gst::Element, String> {
    let d = desc.trim();
    let first = d.split_whitespace().next().unwrap_or_default();
    if first.contains('/') {
        let caps: gst::Caps = d.parse().map_err(|_| format!("bad caps {d}"))?;
        return gst::ElementFactory::make("capsfilter")
            .property("caps", caps)
            .build()
            .map_err(|e| format!("capsfilter: {e}"));
    }
    gst::parse::launch(d)
        .map_err(|e| format!("{d}: {e}"))
        .and_then(|e| match e.downcast::<gst::Bin>() {
            Ok(_) => Err(format!("{d}: not one element")),
            Err(e) => Ok(e),
        })
}

/// Makes the elements of a `a ! b ! c` description, adds them to `pipeline` and links them.
fn chain(pipeline: &gst::Pipeline, desc: &str) -> Result<Vec<gst::Element>, String> {
    // Element names of the shared encoder fragments (`name=venc`) would clash between
    // branches of one pipeline: GStreamer names them.
    let desc = desc.replace(" name=venc", "");
    let elements = (desc.split(" ! ").map(make)).collect::<Result<Vec<_>, _>>()?;
    elements.iter().for_each(crate::codecs::fit_encoder_threads);
    for e in &elements {
        pipeline.add(e).map_err(|e| e.to_string())?;
    }
    gst::Element::link_many(&elements).map_err(|e| format!("{desc}: {e}"))?;
    Ok(elements)
}

/// Unlinks `src` (a tee's pad) from what it feeds once no buffer goes through it, so that the
/// tee's streaming thread never pushes into an element being stopped: a FLUSHING answer would
/// pause the task upstream (a jitter buffer's, the compositor's) for good. Waits at most 1 s
/// (a probe on a pad that stays busy unlinks it later).
fn unlink_idle(src: &gst::Pad) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    src.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
        if let Some(peer) = pad.peer() {
            let _ = pad.unlink(&peer);
        }
        let _ = tx.send(());
        gst::PadProbeReturn::Remove
    });
    let _ = rx.recv_timeout(std::time::Duration::from_secs(1));
}

/// Stops and removes elements, upstream first (so that no streaming thread pushes into an
/// element that has gone).
fn remove(pipeline: &gst::Pipeline, elements: &[gst::Element]) {
    for e in elements {
        let _ = e.set_state(gst::State::Null);
    }
    for e in elements {
        let _ = pipeline.remove(e);
    }
}

fn start(elements: &[gst::Element]) {
    for e in elements.iter().rev() {
        let _ = e.sync_state_with_parent();
    }
}

/// The grid for `n` inputs: (columns, rows).
pub(crate) fn grid(n: usize) -> (usize, usize) {
    let cols = (1..=n.max(1)).find(|c| c * c >= n).unwrap_or(1);
    (cols, n.max(1).div_ceil(cols))
}

impl Core {
    /// The pipeline of hub `key`, made with `format` if it does not run yet.
    pub(crate) fn get(key: &str, format: Format) -> Result<Arc<Core>, String> {
        crate::init()?;
        let mut cores = lock(&CORES);
        cores.retain(|(_, w)| w.strong_count() > 0);
        if let Some(c) = cores
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(c);
        }
        let core = Arc::new(Core::new(key, format)?);
        let _ = core.me.set(Arc::downgrade(&core));
        cores.push((key.to_string(), Arc::downgrade(&core)));
        Ok(core)
    }

    fn new(key: &str, format: Format) -> Result<Core, String> {
        let Format {
            width: w,
            height: h,
            fps,
            ..
        } = format;
        let raw = format!(
            "video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1"
        );
        // A Mixer has no grid: a token one keeps the core's shape at no cost.
        let raw = match format.layout {
            Layout::Mixer => "video/x-raw,format=I420,width=16,height=16,framerate=1/1".into(),
            _ => raw,
        };
        let desc = format!(
            "videotestsrc is-live=true pattern=black ! capsfilter name=bgcaps caps=\"{raw}\" ! \
             compositor name=mix background=black latency={MIX_LATENCY_NS} ! \
             capsfilter name=outcaps caps=\"{raw}\" ! tee name=grid allow-not-linked=true"
        );
        let pipeline = crate::bridge::launch(&desc, key, "composite")?;
        let compositor = pipeline.by_name("mix").ok_or("no compositor")?;
        let tee = pipeline.by_name("grid").ok_or("no tee")?;
        watch(&pipeline, key.to_string());
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("the composite does not start: {e}"))?;
        tracing::debug!(hub = %key, w, h, fps, "composite pipeline playing");
        Ok(Core {
            key: key.to_string(),
            format,
            pipeline,
            tee,
            compositor,
            state: Mutex::default(),
            branches: Mutex::default(),
            me: std::sync::OnceLock::new(),
        })
    }

    /// Adds port `name`: it sends the grid and its own mix from now on (a Mixer's: what its
    /// routes give it).
    fn add_port(&self, name: &str, out: Out) -> Result<u64, String> {
        let mut st = lock(&self.state);
        st.next += 1;
        let id = st.next;
        let desc = format!(
            "audiotestsrc is-live=true wave=silence samplesperbuffer=960 ! \
             audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved ! \
             audiomixer latency={MIX_LATENCY_NS} ! audio/x-raw,format=S16LE,rate=48000,channels=2 ! \
             tee allow-not-linked=true"
        );
        let audio_out = chain(&self.pipeline, &desc)?;
        let mixer = audio_out[2].clone();
        let mut port = Port {
            id,
            name: name.to_string(),
            out: out.clone(),
            key: Key::hub(self.format.bps),
            inputs: [None, None],
            audio_out,
            audio_enc: (vec![], None),
            audio_codec: CodecName::Opus,
            mixer,
            links: vec![],
        };
        self.audio_encode(&mut port, CodecName::Opus, &OutputSettings::new(0))?;
        // Every other port's audio input into this port's mix.
        let tees: Vec<(u64, gst::Element)> = match self.format.layout {
            Layout::Mixer => vec![],
            _ => (st.ports.iter())
                .filter_map(|p| Some((p.id, tee_of(p)?)))
                .collect(),
        };
        for (from, tee) in tees {
            port.links.push(self.link(from, &tee, &port.mixer)?);
        }
        levels(&port);
        start(&port.audio_out);
        st.ports.push(port);
        if self.format.layout == Layout::Mixer {
            // Routes may name the port already (its job started after the call naming it).
            self.rewire(&mut st);
            return Ok(id);
        }
        drop(st);
        self.send_grid(id, Key::hub(self.format.bps), out)?;
        let _ = self.pipeline.recalculate_latency();
        Ok(id)
    }

    /// Port `port`'s audio is encoded to `codec` (Opus at `settings`' bitrate, PCMU, PCMA)
    /// from now on: its mix's tee feeds a new encode into a new appsink, after the one it had
    /// (if any) was unlinked and removed.
    fn audio_encode(
        &self,
        port: &mut Port,
        codec: CodecName,
        settings: &OutputSettings,
    ) -> Result<(), String> {
        let tee = port.audio_out.last().cloned().ok_or("no audio tee")?;
        let (old, pad) = std::mem::take(&mut port.audio_enc);
        if let Some(pad) = pad {
            unlink_idle(&pad);
            tee.release_request_pad(&pad);
        }
        remove(&self.pipeline, &old);
        let enc = codecs::encoder(&Codec::new(codec), settings).ok_or("no audio encoder")?;
        let elements = chain(
            &self.pipeline,
            &format!("{enc} ! appsink sync=false async=false max-buffers=200 drop=true"),
        )?;
        let own: Arc<Mutex<Vec<(u64, Out)>>> =
            Arc::new(Mutex::new(vec![(port.id, port.out.clone())]));
        encode::forward(
            &elements[elements.len() - 1],
            MediaKind::Audio,
            Codec::new(codec),
            own,
        );
        // Playing before the tee feeds it: a buffer pushed into a stopped element answers
        // FLUSHING, which would stop the port's mixer for good.
        start(&elements);
        let linked = tee
            .request_pad_simple("src_%u")
            .ok_or("no tee pad".to_string())
            .and_then(|pad| {
                let sink = elements[0].static_pad("sink");
                match sink.map(|sink| pad.link(&sink)) {
                    Some(Ok(_)) => Ok(pad),
                    e => {
                        tee.release_request_pad(&pad);
                        Err(format!("audio encode: {e:?}"))
                    }
                }
            });
        let pad = match linked {
            Ok(pad) => pad,
            Err(e) => {
                remove(&self.pipeline, &elements);
                return Err(e);
            }
        };
        port.audio_enc = (elements, Some(pad));
        port.audio_codec = codec;
        Ok(())
    }

    fn link(&self, from: u64, tee: &gst::Element, mixer: &gst::Element) -> Result<Link, String> {
        let queue = make(
            "queue max-size-buffers=0 max-size-bytes=0 max-size-time=200000000 leaky=downstream",
        )?;
        self.pipeline.add(&queue).map_err(|e| e.to_string())?;
        let tee_pad = tee.request_pad_simple("src_%u").ok_or("no tee pad")?;
        let mix_pad = mixer.request_pad_simple("sink_%u").ok_or("no mixer pad")?;
        let qsink = queue.static_pad("sink").ok_or("no queue pad")?;
        let qsrc = queue.static_pad("src").ok_or("no queue pad")?;
        qsrc.link(&mix_pad).map_err(|e| format!("mixer: {e:?}"))?;
        let _ = queue.sync_state_with_parent();
        tee_pad.link(&qsink).map_err(|e| format!("tee: {e:?}"))?;
        Ok(Link {
            from,
            tee_pad,
            queue,
            mix_pad,
        })
    }

    fn unlink(&self, l: Link, tee: Option<&gst::Element>, mixer: &gst::Element) {
        unlink_idle(&l.tee_pad);
        if let Some(t) = tee {
            t.release_request_pad(&l.tee_pad);
        }
        let _ = l.queue.set_state(gst::State::Null);
        let _ = self.pipeline.remove(&l.queue);
        mixer.release_request_pad(&l.mix_pad);
    }

    /// The appsrc of port `id`'s input of `codec`'s kind: made (with its decoding branch)
    /// if the port had none of that codec.
    fn input(&self, id: u64, codec: Codec) -> Result<gst_app::AppSrc, String> {
        let kind = codec.name.kind();
        let mut st = lock(&self.state);
        let old = {
            let port = st
                .ports
                .iter_mut()
                .find(|p| p.id == id)
                .ok_or("port gone")?;
            port.inputs[kind].take()
        };
        if let Some(old) = old {
            self.drop_input(&mut st, id, kind, old);
        }
        let depay = codecs::depay(&codec).ok_or("no depayloader")?;
        let dec = codecs::decoder(&codec).ok_or("no decoder")?;
        let src = crate::bridge::appsrc_desc("in", &codec).replace("appsrc name=in ", "appsrc ");
        let tail = input_tail(self.format.layout, kind);
        let desc =
            format!("{src} ! rtpjitterbuffer latency={JITTER_MS} ! {depay} ! {dec} ! {tail}");
        let elements = chain(&self.pipeline, &desc)?;
        let last = elements[elements.len() - 1].clone();
        let mut input = Input {
            elements,
            pad: None,
        };
        match kind {
            _ if self.format.layout == Layout::Mixer => {}
            MediaKind::Video => {
                let pad = self
                    .compositor
                    .request_pad_simple("sink_%u")
                    .ok_or("no compositor pad")?;
                pad.set_property("zorder", 1u32);
                let src = last.static_pad("src").ok_or("no pad")?;
                if self.format.layout == Layout::Blend {
                    // A blended input fills its rectangle, as KMS scales it there.
                    pad.set_property_from_str("sizing-policy", "none");
                    if let Some(me) = self.me.get() {
                        blend::watch_size(me.clone(), id, &src);
                    }
                } else {
                    pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
                }
                src.link(&pad).map_err(|e| format!("compositor: {e:?}"))?;
                input.pad = Some(pad);
                st.grid.push(id);
            }
            MediaKind::Audio => {
                let mixers: Vec<(usize, gst::Element)> = (st.ports.iter().enumerate())
                    .filter(|(_, p)| p.id != id)
                    .map(|(i, p)| (i, p.mixer.clone()))
                    .collect();
                for (i, m) in mixers {
                    let l = self.link(id, &last, &m)?;
                    st.ports[i].links.push(l);
                    levels(&st.ports[i]);
                }
            }
        }
        start(&input.elements);
        let src = input.elements[0]
            .clone()
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| "no appsrc")?;
        if let Some(p) = st.ports.iter_mut().find(|p| p.id == id) {
            p.inputs[kind] = Some(input);
        }
        self.layout(&mut st);
        drop(st);
        let _ = self.pipeline.recalculate_latency();
        Ok(src)
    }

    /// Removes port `id`'s input of `kind` (its links into the other ports' mixes, its cell).
    fn drop_input(&self, st: &mut State, id: u64, kind: MediaKind, input: Input) {
        match kind {
            MediaKind::Video => {
                st.grid.retain(|p| *p != id);
                // A Mixer's encodes of this input go first (their sinks' video stops).
                self.drop_encodes_of(id);
                remove(&self.pipeline, &input.elements);
                if let Some(pad) = input.pad {
                    self.compositor.release_request_pad(&pad);
                }
            }
            MediaKind::Audio => {
                let tee = input.elements.last().cloned();
                for p in st.ports.iter_mut() {
                    let (gone, kept): (Vec<Link>, Vec<Link>) =
                        p.links.drain(..).partition(|l| l.from == id);
                    p.links = kept;
                    for l in gone {
                        self.unlink(l, tee.as_ref(), &p.mixer);
                    }
                    levels(p);
                }
                remove(&self.pipeline, &input.elements);
            }
        }
    }

    /// Removes port `id`: its inputs, its output, its cell.
    fn remove_port(&self, id: u64) {
        self.leave_encodes(id);
        let mut st = lock(&self.state);
        let Some(i) = st.ports.iter().position(|p| p.id == id) else {
            return;
        };
        let mut port = st.ports.remove(i);
        for kind in [MediaKind::Audio, MediaKind::Video] {
            if let Some(input) = port.inputs[kind].take() {
                self.drop_input(&mut st, id, kind, input);
            }
        }
        remove(&self.pipeline, &port.audio_out[..1]);
        for l in port.links.drain(..) {
            let tee = st.ports.iter().find(|p| p.id == l.from).and_then(tee_of);
            self.unlink(l, tee.as_ref(), &port.mixer);
        }
        remove(&self.pipeline, &port.audio_out[1..]);
        remove(&self.pipeline, &port.audio_enc.0);
        st.blend.forget(id);
        st.routes.forget(&port.name);
        self.layout(&mut st);
    }

    /// Places each video input in its cell (a Mixer's: applies its routes).
    fn layout(&self, st: &mut State) {
        match self.format.layout {
            Layout::Blend => return self.blend_layout(st),
            Layout::Mixer => return self.rewire(st),
            Layout::Grid => {}
        }
        let (cols, rows) = grid(st.grid.len());
        let (cw, ch) = (
            self.format.width as usize / cols,
            self.format.height as usize / rows,
        );
        for (i, id) in st.grid.iter().enumerate() {
            let pad = st
                .ports
                .iter()
                .find(|p| p.id == *id)
                .and_then(|p| p.inputs[MediaKind::Video].as_ref())
                .and_then(|i| i.pad.as_ref());
            if let Some(pad) = pad {
                pad.set_property("xpos", ((i % cols) * cw) as i32);
                pad.set_property("ypos", ((i / cols) * ch) as i32);
                pad.set_property("width", cw as i32);
                pad.set_property("height", ch as i32);
            }
        }
        tracing::debug!(hub = %self.key, inputs = st.grid.len(), cols, rows, "composite grid");
    }

    /// The pipeline's DOT graph.
    pub(crate) fn dot(&self, details: &str) -> String {
        self.pipeline
            .debug_to_dot_data(crate::dot::details(details))
            .to_string()
    }
}

impl Core {
    /// Port `id`'s output follows `settings` from now on: its video goes to the encode of
    /// their key (VP8, VP9 or H.264, the frame rate, the bitrate), its audio is encoded to
    /// their codec (Opus at their bitrate, PCMU, PCMA).
    fn set_output(&self, id: u64, settings: &OutputSettings, out: Out) -> Result<(), String> {
        let key = Key::of(settings, self.format.bps);
        if !matches!(key.codec, CodecName::Vp8 | CodecName::Vp9 | CodecName::H264) {
            return Err(format!(
                "a Composite sends no {} video",
                key.codec.sdp_name()
            ));
        }
        let mut st = lock(&self.state);
        let port = st
            .ports
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or("port gone")?;
        let codec = encode::audio_codec(settings);
        if codec != port.audio_codec {
            tracing::debug!(hub = %self.key, port = id, codec = codec.sdp_name(), "composite port audio");
            self.audio_encode(port, codec, settings)?;
        }
        let opus = (port.audio_enc.0.iter())
            .find(|e| e.factory().is_some_and(|f| f.name().as_str() == "opusenc"));
        if let Some(enc) = opus {
            enc.set_property("bitrate", encode::opus_bps(settings) as i32);
        }
        if port.key == key {
            return Ok(());
        }
        port.key = key;
        tracing::debug!(hub = %self.key, port = id, codec = key.codec.sdp_name(), fps = ?key.fps, bps = key.bps, "composite port output");
        if self.format.layout == Layout::Mixer {
            self.rewire(&mut st);
            return Ok(());
        }
        drop(st);
        self.send_grid(id, key, out)
    }
}

/// The tee of a port's audio input, if it has one.
fn tee_of(p: &Port) -> Option<gst::Element> {
    p.inputs[MediaKind::Audio]
        .as_ref()
        .and_then(|i| i.elements.last().cloned())
}

/// What follows an input's decoder: a grid's or a blend's video goes to the compositor, a
/// Mixer's video and every audio input to a tee (for the encodes and mixes they are routed to).
fn input_tail(layout: Layout, kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video if layout == Layout::Mixer => {
            "videoconvert ! tee allow-not-linked=true"
        }
        MediaKind::Video => {
            "videoconvert ! queue max-size-buffers=3 max-size-time=0 max-size-bytes=0 leaky=downstream"
        }
        MediaKind::Audio => {
            "audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved ! tee allow-not-linked=true"
        }
    }
}

/// Each of a mix's n inputs at 1/n: their sum cannot clip.
fn levels(p: &Port) {
    let n = p.links.len().max(1) as f64;
    for l in &p.links {
        l.mix_pad.set_property("volume", 1.0 / n);
    }
}

/// Logs the pipeline's errors and warnings.
fn watch(p: &gst::Pipeline, hub: String) {
    if let Some(bus) = p.bus() {
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    tracing::warn!(%hub, "composite error: {} ({:?})", e.error(), e.debug())
                }
                gst::MessageView::Warning(w) => {
                    tracing::debug!(%hub, "composite warning: {}", w.error())
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        crate::bridge::stop_in_background(self.pipeline.clone(), fluo_core::Stopping::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_grow_as_kms_lays_them_out() {
        let seen: Vec<(usize, usize)> = (1..=10).map(grid).collect();
        assert_eq!(
            seen,
            vec![
                (1, 1),
                (2, 1),
                (2, 2),
                (2, 2),
                (3, 2),
                (3, 2),
                (3, 3),
                (3, 3),
                (3, 3),
                (4, 3)
            ]
        );
        assert_eq!(grid(0), (1, 1));
    }
}
