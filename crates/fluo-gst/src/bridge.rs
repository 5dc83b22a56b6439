//! The appsrc/appsink bridge between the router's packets and GStreamer buffers.

use crate::codecs::PT;
use fluo_sfu::rtp::write_rtp;
use fluo_sfu::{Codec, MediaKind, MediaPacket, PortOutput, RtpPacket};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Builds a pipeline from a description, run for element `owner` and named `name` (as the
/// DOT graphs show it).
pub(crate) fn launch(desc: &str, owner: &str, name: &str) -> Result<gst::Pipeline, String> {
    let e = gst::parse::launch(desc).map_err(|e| format!("{e} (pipeline: {desc})"))?;
    let p = e
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    p.set_property("name", name);
    crate::codecs::fit_encoder_threads(p.upcast_ref());
    crate::live::track(&p, owner);
    Ok(p)
}

/// The appsrc named `name` in `bin`.
pub(crate) fn appsrc(bin: &gst::Pipeline, name: &str) -> Result<gst_app::AppSrc, String> {
    bin.by_name(name)
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| format!("no appsrc {name}"))
}

/// The appsink named `name` in `bin`.
pub(crate) fn appsink(bin: &gst::Pipeline, name: &str) -> Result<gst_app::AppSink, String> {
    bin.by_name(name)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| format!("no appsink {name}"))
}

/// An appsrc fragment taking RTP of `codec`: live, timestamped on arrival, never blocking
/// the router (a full queue drops the oldest data).
pub(crate) fn appsrc_desc(name: &str, codec: &Codec) -> String {
    format!(
        "appsrc name={name} format=time is-live=true do-timestamp=true block=false \
         max-bytes=4000000 leaky-type=downstream caps=\"{}\"",
        crate::codecs::rtp_caps(codec)
    )
}

/// Pushes a routed packet into an appsrc as one RTP packet.
pub(crate) fn push(src: &gst_app::AppSrc, pkt: &MediaPacket) {
    let mut bytes = Vec::with_capacity(12 + pkt.payload.len());
    write_rtp(
        &mut bytes,
        PT,
        pkt.marker,
        pkt.seq,
        pkt.timestamp,
        pkt.ssrc,
        &pkt.payload,
    );
    // A full or flushing appsrc drops the packet, as a network would.
    let _ = src.push_buffer(gst::Buffer::from_mut_slice(bytes));
}

/// Sends every RTP packet the appsink gets into the router as `codec` media.
///
/// When the timestamps jump back (a player seeking backwards) the packets go on under a new
/// SSRC, so that the router treats them as a new source and keeps what each sink receives
/// continuous; a receiver would drop media whose timestamps go back in time.
pub(crate) fn forward_appsink(
    sink: &gst_app::AppSink,
    kind: MediaKind,
    codec: Codec,
    out: PortOutput,
) {
    let mut last_ts: Option<u32> = None;
    let mut generation: u32 = 0;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(buf) = sample.buffer() {
                    if let Ok(map) = buf.map_readable() {
                        if let Ok(p) = RtpPacket::parse(map.as_slice()) {
                            let ts = p.timestamp();
                            // More than half a second back: a seek, not B-frame reordering.
                            let back = -((codec.clock_rate / 2) as i32);
                            if last_ts.is_some_and(|l| (ts.wrapping_sub(l) as i32) < back) {
                                generation = generation.wrapping_add(1);
                            }
                            last_ts = Some(ts);
                            out.send(MediaPacket {
                                kind,
                                codec,
                                seq: p.sequence(),
                                timestamp: ts,
                                ssrc: p.ssrc() ^ generation.wrapping_mul(0x9e37_79b9),
                                marker: p.marker(),
                                payload: p.payload().to_vec(),
                            });
                        }
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// Asks the encoders upstream of `sink` for a keyframe.
pub(crate) fn force_keyframe(sink: &gst::Element) {
    let s = gst::Structure::builder("GstForceKeyUnit")
        .field("all-headers", true)
        .build();
    sink.send_event(gst::event::CustomUpstream::new(s));
}

/// Stops a pipeline without blocking the caller: the state change to NULL joins the
/// pipeline's streaming threads. `hold` (the owning element's token) lives until it has
/// stopped, so the element counts against its client's limits until then.
pub(crate) fn stop_in_background(p: gst::Pipeline, hold: fluo_core::Stopping) {
    let spawned = std::thread::Builder::new()
        .name("fluo-gst-stop".into())
        .spawn({
            let p = p.clone();
            move || {
                let _ = p.set_state(gst::State::Null);
                drop(hold);
            }
        });
    if spawned.is_err() {
        let _ = p.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// The element's token lives until the pipeline's streaming threads have stopped: a
    /// streaming thread held in a probe keeps the stop (and the token) waiting.
    #[test]
    fn a_stopping_pipeline_holds_its_elements_token_until_it_has_stopped() {
        crate::init().expect("GStreamer");
        let p = gst::parse::launch("videotestsrc ! identity name=i ! fakesink")
            .expect("pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let (entered_tx, entered) = mpsc::sync_channel::<()>(1);
        let (go, go_rx) = mpsc::channel::<()>();
        let go_rx = std::sync::Mutex::new(Some(go_rx));
        let pad = p
            .by_name("i")
            .and_then(|i| i.static_pad("src"))
            .expect("pad");
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Some(rx) = go_rx.lock().unwrap().take() {
                let _ = entered_tx.send(());
                let _ = rx.recv_timeout(Duration::from_secs(10));
            }
            gst::PadProbeReturn::Ok
        });
        p.set_state(gst::State::Playing).expect("playing");
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("a buffer reached the probe");
        let token = fluo_core::Stopping::new();
        stop_in_background(p.clone(), token.clone());
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            token.holders(),
            2,
            "held while the streaming thread is busy"
        );
        go.send(()).expect("release the probe");
        let t0 = Instant::now();
        while token.holders() > 1 && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(token.holders(), 1, "let go once stopped");
        assert_eq!(p.current_state(), gst::State::Null);
    }
}
