//! Transcoders: RTP of one codec in, RTP of another out, inserted by the router only while a
//! sink needs them.

pub(crate) mod job;
pub(crate) mod remote;

use crate::bridge;
use crate::codecs;
use fluo_sfu::{
    Codec, Header, MediaKind, MediaPacket, Node, Packet, PortOutput, SettingsTable, SinkCaps,
    SinkCodec, TranscoderFactory,
};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Builds GStreamer transcoders for the router: in this process, or as jobs of media
/// workers ([`Transcoders::in_workers`]).
pub struct Transcoders {
    /// Transcoders alive now (for tests and stats).
    live: Arc<AtomicUsize>,
    /// Elements' output settings: a transcoder encodes with its source's.
    settings: Arc<SettingsTable>,
    /// The media workers that run the transcoders, and the router that hears of their
    /// deaths; `None`: they run in this process.
    workers: Option<(fluo_worker::Supervisor, Arc<dyn fluo_sfu::MediaBus>)>,
}

impl std::fmt::Debug for Transcoders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoders")
            .field("live", &self.live())
            .field("in_workers", &self.workers.is_some())
            .finish()
    }
}

impl Transcoders {
    /// A factory whose transcoders encode as the output settings of their source in
    /// `settings` say.
    pub fn new(settings: Arc<SettingsTable>) -> Transcoders {
        Transcoders {
            live: Arc::new(AtomicUsize::new(0)),
            settings,
            workers: None,
        }
    }

    /// The same factory making its transcoders as `gst.transcoder` jobs on `workers` (the
    /// worker hosting the source's pipeline); a worker's death is told to `bus` (the router),
    /// which raises it on the transcoder's sinks.
    pub fn in_workers(
        mut self,
        workers: fluo_worker::Supervisor,
        bus: Arc<dyn fluo_sfu::MediaBus>,
    ) -> Transcoders {
        self.workers = Some((workers, bus));
        self
    }

    /// How many transcoders run now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// A handle on the live count.
    pub fn live_counter(&self) -> Arc<AtomicUsize> {
        self.live.clone()
    }
}

impl TranscoderFactory for Transcoders {
    fn can(&self, from: &Codec, to: &Codec) -> bool {
        crate::init().is_ok()
            && from.name.kind() == to.name.kind()
            && codecs::available(from)
            && codecs::available(to)
    }

    fn create(
        &self,
        kind: MediaKind,
        from: &Codec,
        to: &Codec,
        source: &str,
        out: PortOutput,
    ) -> Result<Box<dyn Node>, String> {
        crate::init()?;
        if let Some((workers, bus)) = &self.workers {
            let settings = self.settings.get(source);
            return Ok(crate::remote::create_transcoder(
                workers,
                bus,
                &self.live,
                kind,
                (from, to),
                source,
                &settings,
                out,
            ));
        }
        let depay = codecs::depay(from).ok_or("no depayloader")?;
        let dec = codecs::decoder(from).ok_or("no decoder")?;
        let settings = self.settings.get(source);
        let enc = codecs::encoder(to, &settings).ok_or("no encoder")?;
        // The jitter buffer times packets by their RTP timestamps only (mode=none): in its
        // default mode it follows their arrival times, so a transcoder starved of CPU for a
        // moment stretched its output's timeline (a 2 s clip recorded as 2.1-2.3 s).
        let desc = format!(
            "{} ! rtpjitterbuffer latency=20 mode=none ! {depay} ! {dec} ! queue max-size-buffers=30 max-size-time=0 max-size-bytes=0 leaky=downstream ! {enc} ! appsink name=out sync=false max-buffers=200 drop=true",
            bridge::appsrc_desc("in", from)
        );
        let label = format!(
            "transcoder {} -> {}",
            from.name.sdp_name(),
            to.name.sdp_name()
        );
        let pipeline = bridge::launch(&desc, source, &label)?;
        let input = bridge::appsrc(&pipeline, "in")?;
        let sink = bridge::appsink(&pipeline, "out")?;
        bridge::forward_appsink(&sink, kind, *to, out);
        let name = format!("{from} -> {to}");
        watch_errors(&pipeline, name.clone());
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("the transcoder {name} does not start: {e}"))?;
        self.live.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%name, %source, video_bps = settings.video_bps(), "transcoder pipeline playing");
        Ok(Box::new(Transcoder {
            pipeline,
            input,
            sink: sink.upcast(),
            from: *from,
            live: self.live.clone(),
        }))
    }
}

/// Logs a pipeline's errors and warnings.
fn watch_errors(p: &gst::Pipeline, name: String) {
    if let Some(bus) = p.bus() {
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    tracing::warn!(%name, "transcoder error: {} ({:?})", e.error(), e.debug())
                }
                gst::MessageView::Warning(w) => {
                    tracing::debug!(%name, "transcoder warning: {}", w.error())
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    }
}

struct Transcoder {
    pipeline: gst::Pipeline,
    input: gst_app::AppSrc,
    sink: gst::Element,
    from: Codec,
    live: Arc<AtomicUsize>,
}

impl Node for Transcoder {
    fn caps(&self, _kind: MediaKind) -> SinkCaps {
        SinkCaps::codecs([SinkCodec::new(self.from)])
    }

    fn push(&mut self, _now: Instant, pkt: &Packet<'_>, header: Header) {
        bridge::push(&self.input, &MediaPacket::routed(pkt, header));
    }

    fn request_keyframe(&mut self, _kind: MediaKind) {
        bridge::force_keyframe(&self.sink);
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        // The router's: counted for no client (see fluo_core::Stopping).
        bridge::stop_in_background(self.pipeline.clone(), fluo_core::Stopping::new());
    }
}
