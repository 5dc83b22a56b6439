//! What GStreamer elements carry each codec: RTP caps, depayloader, decoder, encoder and
//! payloader, as pipeline-description fragments.

use fluo_sfu::{Codec, CodecName, MediaKind, OutputSettings};
use gstreamer as gst;
use gstreamer::prelude::*;

/// The payload type Fluo uses inside its own pipelines (never seen by peers: the router maps
/// payload types by codec).
pub(crate) const PT: u8 = 96;

/// RTP caps for appsrc.
pub(crate) fn rtp_caps(c: &Codec) -> String {
    let media = match c.name.kind() {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    let name = match c.name {
        CodecName::Opus => "OPUS",
        CodecName::Vp8 => "VP8",
        CodecName::Vp9 => "VP9",
        CodecName::Speex => "SPEEX",
        other => other.sdp_name(),
    };
    let mut caps = format!(
        "application/x-rtp,media={media},encoding-name={name},clock-rate={},payload={PT}",
        c.clock_rate
    );
    if c.name == CodecName::Amr {
        caps.push_str(",encoding-params=(string)1,octet-align=(string)1");
    }
    if c.name == CodecName::H264 {
        caps.push_str(&format!(
            ",packetization-mode=(string){}",
            c.packetization_mode.unwrap_or(1)
        ));
    }
    caps
}

/// Depayloader (RTP -> encoded).
pub(crate) fn depay(c: &Codec) -> Option<&'static str> {
    Some(match c.name {
        CodecName::Vp8 => "rtpvp8depay",
        CodecName::Vp9 => "rtpvp9depay",
        CodecName::H264 => "rtph264depay ! h264parse",
        CodecName::Opus => "rtpopusdepay",
        CodecName::Pcmu => "rtppcmudepay",
        CodecName::Pcma => "rtppcmadepay",
        CodecName::G722 => "rtpg722depay",
        CodecName::H263 => "rtph263pdepay",
        CodecName::Amr => "rtpamrdepay",
        CodecName::Speex => "rtpspeexdepay",
        _ => return None,
    })
}

/// Decoder (encoded -> raw).
pub(crate) fn decoder(c: &Codec) -> Option<&'static str> {
    Some(match c.name {
        CodecName::Vp8 => "vp8dec",
        CodecName::Vp9 => "vp9dec",
        CodecName::H264 => "avdec_h264",
        CodecName::Opus => "opusdec plc=true",
        CodecName::Pcmu => "mulawdec",
        CodecName::Pcma => "alawdec",
        CodecName::G722 => "avdec_g722",
        CodecName::H263 => "avdec_h263",
        CodecName::Amr => "amrnbdec",
        CodecName::Speex => "speexdec",
        _ => return None,
    })
}

/// Largest picture (in pixels) that the VP8 encoder encodes on one thread: 1280x720.
const VP8_ONE_THREAD_MAX_PIXELS: i64 = 1280 * 720;

/// Gives each VP8 encoder in `e` (an element or a bin, searched recursively) the thread count
/// its picture size needs, once its input caps are known: one thread up to 1280x720, two
/// above. libvpx's second VP8 thread waits for the first by spinning: at 640x360 it costs
/// more CPU than it saves (a player in a media worker: 292 against 144 ms of CPU per second,
/// docs/perf.md), and one thread encodes 1280x720 noise in 17.5 ms a frame here, within a
/// 30 fps frame's 33 ms; 1920x1080 noise takes 35 ms on one thread and 25 ms on two.
pub(crate) fn fit_encoder_threads(e: &gst::Element) {
    let encoders: Vec<gst::Element> = match e.downcast_ref::<gst::Bin>() {
        Some(bin) => bin
            .iterate_recurse()
            .into_iter()
            .filter_map(Result::ok)
            .collect(),
        None => vec![e.clone()],
    };
    for enc in encoders
        .iter()
        .filter(|e| e.factory().is_some_and(|f| f.name() == "vp8enc"))
    {
        let Some(pad) = enc.static_pad("sink") else {
            continue;
        };
        let weak = enc.downgrade();
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(ev)) = &info.data {
                if let gst::EventView::Caps(c) = ev.view() {
                    if let (Some(s), Some(enc)) = (c.caps().structure(0), weak.upgrade()) {
                        let pixels = i64::from(s.get::<i32>("width").unwrap_or(0))
                            * i64::from(s.get::<i32>("height").unwrap_or(0));
                        let threads = if pixels > VP8_ONE_THREAD_MAX_PIXELS {
                            2
                        } else {
                            1
                        };
                        enc.set_property("threads", threads);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
}

/// Encoder and payloader (raw -> RTP), with the conversion in front, tuned for real time,
/// following the output settings `out` of the element whose media it encodes: video starts
/// at its target bitrate within its bounds, at the forced frame rate if there is one; Opus
/// at the forced audio bitrate if there is one.
pub(crate) fn encoder(c: &Codec, out: &OutputSettings) -> Option<String> {
    let bps = out.video_bps().max(1000);
    let kbps = bps / 1000;
    let rate = match out.video.and_then(|v| v.framerate) {
        Some((n, d)) if c.name.kind() == MediaKind::Video => {
            format!("videorate ! video/x-raw,framerate={n}/{d} ! ")
        }
        _ => String::new(),
    };
    let opus_bps = out
        .audio
        .filter(|a| a.codec == CodecName::Opus && a.bitrate != 0)
        .map_or(64_000, |a| a.bitrate);
    Some(match c.name {
        CodecName::Vp8 => format!(
            "{rate}videoconvert ! vp8enc name=venc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bps} \
             keyframe-max-dist=60 lag-in-frames=0 threads=1 error-resilient=partitions \
             ! rtpvp8pay pt={PT} mtu=1200 picture-id-mode=15-bit"
        ),
        CodecName::Vp9 => format!(
            "{rate}videoconvert ! vp9enc name=venc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bps} \
             keyframe-max-dist=60 lag-in-frames=0 threads=2 row-mt=true \
             ! rtpvp9pay pt={PT} mtu=1200 picture-id-mode=15-bit"
        ),
        CodecName::H264 => {
            // profile_idc 0x42 = (constrained) baseline, 0x4d = main, 0x64 = high.
            let profile = match c.profile_level_id.map(|p| p >> 16) {
                Some(0x4d) => "main",
                Some(0x64) => "high",
                _ => "constrained-baseline",
            };
            format!(
                "{rate}videoconvert ! video/x-raw,format=I420 ! x264enc name=venc tune=zerolatency speed-preset=ultrafast \
                 bitrate={kbps} key-int-max=60 threads=2 ! video/x-h264,profile={profile} \
                 ! h264parse ! rtph264pay pt={PT} mtu=1200 config-interval=-1 aggregate-mode=zero-latency"
            )
        }
        CodecName::Opus => format!(
            "audioconvert ! audioresample ! opusenc bitrate={opus_bps} frame-size=20 ! rtpopuspay pt={PT}"
        ),
        CodecName::Pcmu => format!(
            "audioconvert ! audioresample ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay pt={PT}"
        ),
        CodecName::Pcma => format!(
            "audioconvert ! audioresample ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay pt={PT}"
        ),
        CodecName::G722 => format!(
            "audioconvert ! audioresample ! audio/x-raw,rate=16000,channels=1 ! avenc_g722 ! rtpg722pay pt={PT}"
        ),
        // H.263 takes only its standard picture sizes: CIF here.
        CodecName::H263 => format!(
            "{rate}videoconvert ! videoscale ! video/x-raw,width=352,height=288 ! avenc_h263p name=venc bitrate={bps} gop-size=60 \
             ! rtph263ppay pt={PT} mtu=1200"
        ),
        CodecName::Amr => format!(
            "audioconvert ! audioresample ! audio/x-raw,rate=8000,channels=1 ! amrnbenc ! rtpamrpay pt={PT}"
        ),
        CodecName::Speex => format!(
            "audioconvert ! audioresample ! audio/x-raw,rate={},channels=1 ! speexenc ! rtpspeexpay pt={PT}",
            c.clock_rate
        ),
        _ => return None,
    })
}

/// Payloader for already-encoded media (PlayerEndpoint with useEncodedMedia).
pub(crate) fn payloader(c: &Codec) -> Option<String> {
    Some(match c.name {
        CodecName::Vp8 => format!("rtpvp8pay pt={PT} mtu=1200 picture-id-mode=15-bit"),
        CodecName::Vp9 => format!("rtpvp9pay pt={PT} mtu=1200 picture-id-mode=15-bit"),
        CodecName::H264 => format!(
            "h264parse ! rtph264pay pt={PT} mtu=1200 config-interval=-1 aggregate-mode=zero-latency"
        ),
        CodecName::Opus => format!("rtpopuspay pt={PT}"),
        _ => return None,
    })
}

/// Whether this GStreamer build has every element a codec needs.
pub(crate) fn available(c: &Codec) -> bool {
    let names: Vec<String> = [
        depay(c).map(str::to_string),
        decoder(c).map(str::to_string),
        encoder(c, &OutputSettings::new(500_000)),
    ]
    .into_iter()
    .flatten()
    .flat_map(|frag| {
        frag.split('!')
            .filter_map(|e| e.split_whitespace().next().map(str::to_string))
            .filter(|e| !e.contains('/'))
            .collect::<Vec<_>>()
    })
    .collect();
    names.len() >= 3
        && names
            .iter()
            .all(|n| gstreamer::ElementFactory::find(n).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread count a VP8 encoder is given once `width`x`height` video reaches it.
    fn threads_at(width: i32, height: i32) -> i32 {
        gst::init().unwrap();
        let desc = format!(
            "videotestsrc num-buffers=2 ! video/x-raw,width={width},height={height} ! {}",
            encoder(&Codec::new(CodecName::Vp8), &OutputSettings::new(500_000)).unwrap()
        );
        let p = gst::parse::launch(&format!("{desc} ! fakesink"))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        fit_encoder_threads(p.upcast_ref());
        let enc = p.by_name("venc").unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let bus = p.bus().unwrap();
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        assert!(
            matches!(
                msg.as_ref().map(|m| m.view()),
                Some(gst::MessageView::Eos(_))
            ),
            "the encode did not finish: {msg:?}"
        );
        p.set_state(gst::State::Null).unwrap();
        enc.property::<i32>("threads")
    }

    #[test]
    fn vp8_encodes_on_one_thread_up_to_720p_and_two_above() {
        assert_eq!(threads_at(640, 360), 1);
        assert_eq!(threads_at(1280, 720), 1);
        assert_eq!(threads_at(1920, 1080), 2);
    }
}
