//! A hub's video encodes: one per distinct [`Key`] (codec, frame rate, bitrate) of what a
//! source carries (the grid, or a Mixer's input), shared by every port whose output settings
//! ask for that key. A port that changes its settings moves to the encode of its new key
//! (made if none has it), from a keyframe; an encode no port sends is removed.

use super::{chain, lock, remove, start, unlink_idle, Core, Out};
use crate::codecs;
use fluo_sfu::{Codec, CodecName, MediaKind, OutputSettings, RtpPacket, VideoFormat};
use fluo_worker::PacketRef;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::{Arc, Mutex};

/// What a port's video output is encoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    /// VP8 unless the port's setVideoFormat forces VP9 or H.264.
    pub codec: CodecName,
    /// The frame rate its setVideoFormat forces (None: the source's, the hub's for a grid).
    pub fps: Option<(u32, u32)>,
    /// The encoder's bitrate, bps.
    pub bps: u32,
}

impl Key {
    /// What a port with no settings of its own sends: the hub's VP8 at the hub's rate and
    /// bitrate (`hub_bps`).
    pub(crate) fn hub(hub_bps: u32) -> Key {
        Key {
            codec: CodecName::Vp8,
            fps: None,
            bps: hub_bps,
        }
    }

    /// What a port whose output settings are `s` sends: its forced codec and frame rate, its
    /// encoderBitrate (the hub's if it kept the default) within its min and max.
    pub(crate) fn of(s: &OutputSettings, hub_bps: u32) -> Key {
        let target = match s.target_bps {
            fluo_core::DEFAULT_ENCODER_BITRATE => hub_bps,
            t => t,
        };
        Key {
            codec: s.video.map_or(CodecName::Vp8, |v| v.codec),
            fps: s.video.and_then(|v| v.framerate).filter(|(n, _)| *n > 0),
            bps: s.clamp(u64::from(target)),
        }
    }

    /// The encoder (and payloader) description for this key.
    fn encoder(&self) -> Option<String> {
        let mut s = OutputSettings::new(self.bps);
        s.video = Some(VideoFormat {
            codec: self.codec,
            framerate: self.fps,
        });
        codecs::encoder(&Codec::new(self.codec), &s)
    }
}

/// The audio codec of a port whose output settings are `s`: PCMU or PCMA when its
/// setAudioFormat asks for them, Opus otherwise.
pub(crate) fn audio_codec(s: &OutputSettings) -> CodecName {
    match s.audio.map(|a| a.codec) {
        Some(c @ (CodecName::Pcmu | CodecName::Pcma)) => c,
        _ => CodecName::Opus,
    }
}

/// The Opus bitrate of a port whose output settings are `s` (64 kbps unless its
/// setAudioFormat asks for another).
pub(crate) fn opus_bps(s: &OutputSettings) -> u32 {
    s.audio
        .filter(|a| a.codec == CodecName::Opus && a.bitrate != 0)
        .map_or(64_000, |a| a.bitrate)
}

/// One encode of a source, shared by the ports that send its key.
pub(super) struct Branch {
    pub(super) key: Key,
    /// The port whose video it encodes (a Mixer's), 0 for the grid.
    pub(super) source: u64,
    /// queue, encoder..., appsink (keyframe requests go upstream from it).
    elements: Vec<gst::Element>,
    tee_pad: gst::Pad,
    /// The ports that send it.
    pub(super) outs: Arc<Mutex<Vec<(u64, Out)>>>,
}

impl Branch {
    fn sink(&self) -> Option<&gst::Element> {
        self.elements.last()
    }

    /// Whether port `id` sends this encode.
    pub(super) fn has(&self, id: u64) -> bool {
        lock(&self.outs).iter().any(|(p, _)| *p == id)
    }
}

impl Core {
    /// Makes port `id` send the grid encoded as `key` (its encode made if no port sends that
    /// key, the encode it leaves removed if it was the last port there), from a keyframe.
    pub(super) fn send_grid(&self, id: u64, key: Key, out: Out) -> Result<(), String> {
        let mut branches = lock(&self.branches);
        for b in branches.iter() {
            lock(&b.outs).retain(|(p, _)| *p != id);
        }
        let tee = self.tee.clone();
        let joined = self.join(&mut branches, id, key, 0, &tee, &out);
        self.prune(&mut branches);
        joined
    }

    /// Port `id` sends `source`'s video (what `tee` carries) encoded as `key`, from a
    /// keyframe (it must have left its previous encode).
    pub(super) fn join(
        &self,
        branches: &mut Vec<Branch>,
        id: u64,
        key: Key,
        source: u64,
        tee: &gst::Element,
        out: &Out,
    ) -> Result<(), String> {
        let i = match (branches.iter()).position(|b| b.key == key && b.source == source) {
            Some(i) => i,
            None => {
                branches.push(self.branch(key, tee, source)?);
                branches.len() - 1
            }
        };
        lock(&branches[i].outs).push((id, out.clone()));
        if let Some(s) = branches[i].sink() {
            crate::bridge::force_keyframe(s);
        }
        Ok(())
    }

    /// An encode as `key` of what `tee` carries (the grid, or port `source`'s video), running.
    fn branch(&self, key: Key, tee: &gst::Element, source: u64) -> Result<Branch, String> {
        let enc = key.encoder().ok_or("no encoder")?;
        let desc = format!(
            "queue max-size-buffers=2 max-size-time=0 max-size-bytes=0 leaky=downstream ! {enc} \
             ! appsink sync=false async=false max-buffers=200 drop=true"
        );
        let elements = chain(&self.pipeline, &desc)?;
        let outs: Arc<Mutex<Vec<(u64, Out)>>> = Arc::default();
        let sink = &elements[elements.len() - 1];
        forward(sink, MediaKind::Video, Codec::new(key.codec), outs.clone());
        start(&elements);
        let tee_pad = tee.request_pad_simple("src_%u").ok_or("no tee pad")?;
        let qsink = elements[0].static_pad("sink").ok_or("no queue pad")?;
        tee_pad
            .link(&qsink)
            .map_err(|e| format!("video encode: {e:?}"))?;
        tracing::debug!(hub = %self.key, codec = key.codec.sdp_name(), fps = ?key.fps, bps = key.bps, source, "composite encode");
        Ok(Branch {
            key,
            source,
            elements,
            tee_pad,
            outs,
        })
    }

    /// Removes the encodes no port sends.
    pub(super) fn prune(&self, branches: &mut Vec<Branch>) {
        branches.retain(|b| {
            let used = !lock(&b.outs).is_empty();
            if !used {
                drop_branch(&self.pipeline, b);
            }
            used
        });
    }

    /// Removes the encodes of port `source`'s video (its input has gone).
    pub(super) fn drop_encodes_of(&self, source: u64) {
        lock(&self.branches).retain(|b| {
            let keep = b.source != source;
            if !keep {
                drop_branch(&self.pipeline, b);
            }
            keep
        });
    }

    /// Port `id` sends no encode any more (those it was the last to send are removed).
    pub(super) fn leave_encodes(&self, id: u64) {
        let mut branches = lock(&self.branches);
        for b in branches.iter() {
            lock(&b.outs).retain(|(p, _)| *p != id);
        }
        self.prune(&mut branches);
    }

    /// Asks the encode that port `id` sends for a keyframe.
    pub(super) fn keyframe(&self, id: u64) {
        let branches = lock(&self.branches);
        if let Some(s) = branches.iter().find(|b| b.has(id)).and_then(Branch::sink) {
            crate::bridge::force_keyframe(s);
        }
    }

    /// The number of encodes running, by key (for tests).
    #[cfg(test)]
    pub(super) fn encodes(&self) -> Vec<(Key, usize)> {
        let branches = lock(&self.branches);
        branches
            .iter()
            .map(|b| (b.key, lock(&b.outs).len()))
            .collect()
    }
}

/// Stops an encode: unlinked from its tee, removed.
fn drop_branch(pipeline: &gst::Pipeline, b: &Branch) {
    unlink_idle(&b.tee_pad);
    if let Some(tee) = b.tee_pad.parent_element() {
        tee.release_request_pad(&b.tee_pad);
    }
    remove(pipeline, &b.elements);
}

/// Sends every RTP packet `sink` gets to `outs`.
pub(super) fn forward(
    sink: &gst::Element,
    kind: MediaKind,
    codec: Codec,
    outs: Arc<Mutex<Vec<(u64, Out)>>>,
) {
    let Ok(sink) = sink.clone().downcast::<gst_app::AppSink>() else {
        return;
    };
    let mut sent = 0u64;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buf) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Ok(map) = buf.map_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                if let Ok(p) = RtpPacket::parse(map.as_slice()) {
                    let pkt = PacketRef {
                        kind,
                        codec,
                        seq: p.sequence(),
                        timestamp: p.timestamp(),
                        ssrc: p.ssrc(),
                        marker: p.marker(),
                        payload: p.payload(),
                    };
                    let outs: Vec<Out> = lock(&outs).iter().map(|(_, o)| o.clone()).collect();
                    sent += 1;
                    if sent == 1 || sent.is_multiple_of(100) {
                        tracing::debug!(codec = %codec, sent, ports = outs.len(), "composite output");
                    }
                    for o in outs {
                        o(&pkt);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_without_settings_sends_the_hubs_encode() {
        let hub = 500_000;
        let none = OutputSettings::new(fluo_core::DEFAULT_ENCODER_BITRATE);
        assert_eq!(Key::of(&none, hub), Key::hub(hub));
        assert_eq!(opus_bps(&none), 64_000);
        let mut s = none;
        s.max_bps = 100_000;
        assert_eq!(
            Key::of(&s, hub).bps,
            100_000,
            "the hub's bitrate within its max"
        );
        s.min_bps = 800_000;
        s.max_bps = 0;
        assert_eq!(Key::of(&s, hub).bps, 800_000, "within its min");
        s.min_bps = 0;
        s.target_bps = 120_000;
        s.video = Some(VideoFormat {
            codec: CodecName::H264,
            framerate: Some((3, 1)),
        });
        s.audio = Some(fluo_sfu::AudioFormat {
            codec: CodecName::Opus,
            bitrate: 8_000,
        });
        let k = Key::of(&s, hub);
        assert_eq!(
            (k.codec, k.fps, k.bps),
            (CodecName::H264, Some((3, 1)), 120_000)
        );
        assert_eq!(opus_bps(&s), 8_000);
        s.video = Some(VideoFormat {
            codec: CodecName::Vp8,
            framerate: Some((0, 1)),
        });
        assert_eq!(Key::of(&s, hub).fps, None, "0/1 keeps the source's rate");
    }

    fn opus_of(core: &Core, id: u64) -> i32 {
        let st = lock(&core.state);
        let p = st.ports.iter().find(|p| p.id == id).expect("the port");
        let enc = (p.audio_enc.0.iter())
            .find(|e| e.factory().is_some_and(|f| f.name() == "opusenc"))
            .expect("its Opus encoder");
        enc.property::<i32>("bitrate")
    }

    #[test]
    fn ports_share_one_encode_per_key_and_move_between_them() {
        let format = super::super::Format {
            width: 64,
            height: 48,
            fps: 10,
            bps: 300_000,
            layout: super::super::Layout::Grid,
        };
        let core = Core::get("test-encode-sharing", format).expect("the core");
        let out: Out = Arc::new(|_: &PacketRef<'_>| {});
        let ports: Vec<u64> = (["a", "b", "c"].iter())
            .map(|n| core.add_port(n, out.clone()).expect("a port"))
            .collect();
        let encodes = || {
            let mut e = core.encodes();
            e.sort_by_key(|(k, _)| k.bps);
            e
        };
        let hub = Key::hub(300_000);
        assert_eq!(encodes(), vec![(hub, 3)]);
        let none = OutputSettings::new(fluo_core::DEFAULT_ENCODER_BITRATE);
        let mut slow = none;
        slow.max_bps = 60_000;
        slow.video = Some(VideoFormat {
            codec: CodecName::Vp8,
            framerate: Some((3, 1)),
        });
        slow.audio = Some(fluo_sfu::AudioFormat {
            codec: CodecName::Opus,
            bitrate: 8_000,
        });
        let key = Key::of(&slow, 300_000);
        for id in &ports[1..] {
            core.set_output(*id, &slow, out.clone()).expect("set");
        }
        assert_eq!(encodes(), vec![(key, 2), (hub, 1)], "b and c share one");
        assert_eq!(
            (opus_of(&core, ports[0]), opus_of(&core, ports[1])),
            (64_000, 8_000)
        );
        core.set_output(ports[1], &none, out.clone()).expect("set");
        assert_eq!(encodes(), vec![(key, 1), (hub, 2)], "b is back");
        assert_eq!(opus_of(&core, ports[1]), 64_000);
        core.remove_port(ports[2]);
        assert_eq!(encodes(), vec![(hub, 2)], "the encode nobody sends is gone");
        let mut bad = none;
        bad.video = Some(VideoFormat {
            codec: CodecName::Pcmu,
            framerate: None,
        });
        assert!(core.set_output(ports[0], &bad, out.clone()).is_err());
    }

    /// A port's setAudioFormat codec is what it sends (its own encode of its mix: PCMU,
    /// PCMA, and Opus again), from a moment after it is set.
    #[test]
    fn a_ports_audio_is_encoded_to_the_codec_its_settings_ask() {
        let format = super::super::Format {
            width: 64,
            height: 48,
            fps: 10,
            bps: 300_000,
            layout: super::super::Layout::Grid,
        };
        let core = Core::get("test-audio-codec", format).expect("the core");
        let seen: Arc<Mutex<Vec<CodecName>>> = Arc::default();
        let out: Out = {
            let seen = seen.clone();
            Arc::new(move |p: &PacketRef<'_>| {
                if p.kind == MediaKind::Audio {
                    lock(&seen).push(p.codec.name);
                }
            })
        };
        let id = core.add_port("a", out.clone()).expect("a port");
        // What the port sends over half a second, once the first packet of `want` came
        // (within 10 s: a loaded machine can take a while to start an encode).
        let sent = |want: CodecName| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while lock(&seen).last() != Some(&want) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            lock(&seen).clear();
            std::thread::sleep(std::time::Duration::from_millis(500));
            let mut v = lock(&seen).clone();
            v.dedup();
            v
        };
        assert_eq!(sent(CodecName::Opus), vec![CodecName::Opus]);
        let none = OutputSettings::new(fluo_core::DEFAULT_ENCODER_BITRATE);
        for codec in [CodecName::Pcmu, CodecName::Pcma, CodecName::Opus] {
            let mut s = none;
            s.audio = Some(fluo_sfu::AudioFormat { codec, bitrate: 0 });
            core.set_output(id, &s, out.clone()).expect("set");
            assert_eq!(sent(codec), vec![codec], "set to {codec:?}");
            let st = lock(&core.state);
            let p = st.ports.iter().find(|p| p.id == id).expect("the port");
            let sinks = (p.audio_enc.0.iter())
                .filter(|e| e.factory().is_some_and(|f| f.name() == "appsink"))
                .count();
            assert_eq!(sinks, 1, "one audio encode at a time");
        }
        core.remove_port(id);
    }
}
