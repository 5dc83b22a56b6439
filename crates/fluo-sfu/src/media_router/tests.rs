use super::*;
use crate::event::{FlowDir, MediaError};
use crate::negotiate::{SinkCaps, SinkCodec};
use crate::port::CodecName;
use crate::settings::{OutputSettings, VideoFormat};
use std::sync::Mutex;

/// What test nodes saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// (node name, codec, header) of every push.
    pushes: Vec<(&'static str, CodecName, Header)>,
    keyframes: Vec<&'static str>,
    eos: Vec<&'static str>,
    /// Every flush, by node name.
    flushes: Vec<&'static str>,
    caps_asked: usize,
    made: Vec<String>,
}

type Log = Arc<Mutex<Seen>>;

struct TestNode {
    name: &'static str,
    takes: Option<Vec<(u8, CodecName)>>,
    flow: bool,
    log: Log,
}

impl Node for TestNode {
    fn caps(&self, _: MediaKind) -> SinkCaps {
        self.log.lock().unwrap().caps_asked += 1;
        match &self.takes {
            None => SinkCaps::anything(),
            Some(list) => SinkCaps::codecs(
                list.iter()
                    .map(|(pt, c)| SinkCodec::with_pt(Codec::new(*c), *pt)),
            ),
        }
    }
    fn push(&mut self, _: Instant, pkt: &Packet<'_>, header: Header) {
        let mut l = self.log.lock().unwrap();
        l.pushes.push((self.name, pkt.codec.name, header));
    }
    fn request_keyframe(&mut self, _: MediaKind) {
        self.log.lock().unwrap().keyframes.push(self.name);
    }
    fn end_of_stream(&mut self) {
        self.log.lock().unwrap().eos.push(self.name);
    }
    fn flush(&mut self) {
        self.log.lock().unwrap().flushes.push(self.name);
    }
    fn reports_flow(&self) -> bool {
        self.flow
    }
}

/// Transcoders of any codec to any of the same kind, logged.
struct Maker(Log);

impl TranscoderMaker for Maker {
    fn can(&self, from: &Codec, to: &Codec) -> bool {
        from.name.kind() == to.name.kind()
    }
    fn make(
        &self,
        _: NodeId,
        _: MediaKind,
        from: &Codec,
        to: &Codec,
        source: &str,
    ) -> Result<Box<dyn Node>, String> {
        let line = format!(
            "{} -> {} for {source}",
            from.name.sdp_name(),
            to.name.sdp_name()
        );
        self.0.lock().unwrap().made.push(line);
        Ok(Box::new(TestNode {
            name: "transcoder",
            takes: None,
            flow: false,
            log: self.0.clone(),
        }))
    }
}

struct World {
    r: MediaRouter,
    log: Log,
    t0: Instant,
    payload: Arc<[u8]>,
}

impl World {
    fn new(transcoders: bool) -> World {
        let log = Log::default();
        let mut r = MediaRouter::new();
        if transcoders {
            r.set_transcoders(Arc::new(Maker(log.clone())));
        }
        World {
            r,
            log,
            t0: Instant::now(),
            payload: Arc::from(vec![0u8; 100]),
        }
    }

    fn node(&mut self, name: &'static str, takes: Option<&[(u8, CodecName)]>) -> NodeId {
        let node = TestNode {
            name,
            takes: takes.map(<[_]>::to_vec),
            flow: true,
            log: self.log.clone(),
        };
        self.r.add_node(name, Box::new(node))
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn send(&mut self, ms: u64, src: NodeId, codec: CodecName, ssrc: u32, seq: u16) -> usize {
        let payload = self.payload.clone();
        self.send_payload(ms, src, codec, ssrc, seq, &payload)
    }

    /// A VP8 packet that starts a key frame (`key`) or an inter frame.
    fn send_vp8(&mut self, ms: u64, src: NodeId, ssrc: u32, seq: u16, key: bool) -> usize {
        let payload: Arc<[u8]> = Arc::from(vec![0x10, u8::from(!key), 0x9d, 0x01, 0x2a]);
        self.send_payload(ms, src, CodecName::Vp8, ssrc, seq, &payload)
    }

    fn send_payload(
        &mut self,
        ms: u64,
        src: NodeId,
        codec: CodecName,
        ssrc: u32,
        seq: u16,
        payload: &Arc<[u8]>,
    ) -> usize {
        let pkt = Packet {
            kind: codec.kind(),
            codec: Codec::new(codec),
            seq,
            ts: u32::from(seq) * 3000,
            ssrc,
            marker: false,
            payload,
            entered: None,
            extensions: None,
            dd: None,
            layer: None,
        };
        self.r.forward(self.at(ms), src, &pkt)
    }

    fn pushes(&self) -> Vec<(&'static str, CodecName, Header)> {
        std::mem::take(&mut self.log.lock().unwrap().pushes)
    }

    fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.pushes().into_iter().map(|p| p.0).collect();
        v.sort_unstable();
        v
    }

    /// The nodes flushed since the last call, sorted.
    fn flushed(&self) -> Vec<&'static str> {
        let mut v = std::mem::take(&mut self.log.lock().unwrap().flushes);
        v.sort_unstable();
        v
    }

    fn events(&mut self) -> Vec<(String, MediaEvent)> {
        std::iter::from_fn(|| self.r.poll_event()).collect()
    }
}

const V: MediaKind = MediaKind::Video;
const A: MediaKind = MediaKind::Audio;

#[test]
fn sinks_get_one_continuous_line_each_with_their_payload_type() {
    let mut w = World::new(false);
    let cam = w.node("cam", Some(&[]));
    let a = w.node("a", Some(&[(96, CodecName::Vp8)]));
    let b = w.node("b", Some(&[(120, CodecName::Vp8)]));
    w.r.connect(w.at(0), cam, V, a).unwrap();
    w.r.connect(w.at(0), cam, V, b).unwrap();
    assert_eq!(w.send(0, cam, CodecName::Vp8, 7, 1000), 2);
    assert_eq!(w.send(33, cam, CodecName::Vp8, 7, 1001), 2);
    let p = w.pushes();
    let of = |n: &str| -> Vec<Header> { p.iter().filter(|x| x.0 == n).map(|x| x.2).collect() };
    let (ha, hb) = (of("a"), of("b"));
    assert_eq!(ha.len(), 2);
    assert_eq!(ha[0].pt, Some(96));
    assert_eq!(hb[0].pt, Some(120));
    assert_eq!(ha[1].seq, ha[0].seq.wrapping_add(1));
    assert_eq!(ha[1].ts.wrapping_sub(ha[0].ts), 3000);
    assert_ne!(ha[0].ssrc, hb[0].ssrc, "one SSRC per sink");

    // Another source takes over a's input: a's line goes on without a gap.
    let cam2 = w.node("cam2", Some(&[]));
    w.r.disconnect(cam, V, a).unwrap();
    w.r.connect(w.at(40), cam2, V, a).unwrap();
    assert_eq!(w.send_vp8(50, cam2, 9, 40_000, true), 1);
    let next = w.pushes()[0].2;
    assert_eq!(next.seq, ha[1].seq.wrapping_add(1));
    assert_eq!(next.ssrc, ha[0].ssrc);
    assert!(next.ts.wrapping_sub(ha[1].ts) > 0 && next.ts.wrapping_sub(ha[1].ts) < 90_000);
    // The old source no longer reaches it.
    assert_eq!(w.send(60, cam, CodecName::Vp8, 7, 1002), 1);
    assert_eq!(w.names(), ["b"]);
}

#[test]
fn routes_are_decided_once_per_change_not_per_packet() {
    let mut w = World::new(true);
    let cam = w.node("cam", Some(&[]));
    let a = w.node("a", Some(&[(96, CodecName::Vp8)]));
    w.r.connect(w.at(0), cam, V, a).unwrap();
    for seq in 0..1000 {
        w.send(u64::from(seq), cam, CodecName::Vp8, 7, seq);
    }
    assert_eq!(w.log.lock().unwrap().caps_asked, 1);
    // The source moves to VP9: decided again, once.
    for seq in 1000..1100 {
        w.send(u64::from(seq), cam, CodecName::Vp9, 7, seq);
    }
    assert_eq!(w.log.lock().unwrap().caps_asked, 2);
    // The sink's codecs changed: once more.
    w.r.caps_changed(a);
    for seq in 1100..1200 {
        w.send(u64::from(seq), cam, CodecName::Vp9, 7, seq);
    }
    assert_eq!(w.log.lock().unwrap().caps_asked, 3);
}

#[test]
fn transcoders_are_shared_per_target_and_go_with_their_last_sink() {
    let mut w = World::new(true);
    let cam = w.node("cam", Some(&[]));
    let h1 = w.node("h1", Some(&[(102, CodecName::H264)]));
    let h2 = w.node("h2", Some(&[(103, CodecName::H264)]));
    let v = w.node("v", Some(&[(96, CodecName::Vp8)]));
    for s in [h1, h2, v] {
        w.r.connect(w.at(0), cam, V, s).unwrap();
    }
    w.events();
    // VP8: v gets it as it is, h1 and h2 through one VP8 -> H264 transcoder.
    assert_eq!(w.send(0, cam, CodecName::Vp8, 7, 1), 2);
    assert_eq!(w.names(), ["transcoder", "v"]);
    assert_eq!(w.log.lock().unwrap().made, ["VP8 -> H264 for cam"]);
    assert_eq!(w.r.transcoder_count(), 1);
    let ev = w.events();
    assert!(
        ev.iter().any(|(id, e)| id == "cam"
            && matches!(e, MediaEvent::Transcoding { on: true, kind: MediaKind::Video, bin }
                if bin == "transcoder_video_VP8_H264")),
        "{ev:?}"
    );
    // What the transcoder makes reaches both H.264 sinks, each on its line and payload type.
    let t = {
        let t = w.r.transcoders.values().next().copied().unwrap();
        assert_eq!(w.r.element_id(t), Some("transcoder_video_VP8_H264"));
        t
    };
    assert_eq!(w.send(1, t, CodecName::H264, 99, 50), 2);
    let p = w.pushes();
    let pts: Vec<_> = p.iter().map(|x| (x.0, x.2.pt)).collect();
    assert!(pts.contains(&("h1", Some(102))) && pts.contains(&("h2", Some(103))));
    // The decoder and the encoder were asked for keyframes.
    let kf = w.log.lock().unwrap().keyframes.clone();
    assert!(kf.contains(&"cam") && kf.contains(&"transcoder"), "{kf:?}");

    w.events();
    w.r.disconnect(cam, V, h1).unwrap();
    assert_eq!(w.r.transcoder_count(), 1);
    assert!(w.events().is_empty());
    w.r.disconnect(cam, V, h2).unwrap();
    assert_eq!(w.r.transcoder_count(), 0);
    let ev = w.events();
    assert!(matches!(&ev[..], [(id, MediaEvent::Transcoding { on: false, .. })] if id == "cam"));
    assert_eq!(w.send(2, cam, CodecName::Vp8, 7, 2), 1);
    assert!(w.r.element_id(t).is_none(), "the transcoder node is gone");
}

#[test]
fn a_failed_transcoder_errs_on_its_sinks_and_a_reconnect_makes_a_new_one() {
    let mut w = World::new(true);
    let cam = w.node("cam", Some(&[]));
    let h1 = w.node("h1", Some(&[(102, CodecName::H264)]));
    let h2 = w.node("h2", Some(&[(103, CodecName::H264)]));
    let v = w.node("v", Some(&[(96, CodecName::Vp8)]));
    for s in [h1, h2, v] {
        w.r.connect(w.at(0), cam, V, s).unwrap();
    }
    assert_eq!(w.send(0, cam, CodecName::Vp8, 7, 1), 2);
    let t = w.r.transcoders.values().next().copied().unwrap();
    w.events();
    w.pushes();
    w.r.transcoder_failed(t, "its media worker ended");
    let ev = w.events();
    for sink in ["h1", "h2"] {
        assert!(
            ev.iter().any(|(id, e)| id == sink
                && matches!(e, MediaEvent::Error { error: MediaError::CodecMismatch, description }
                    if description.ends_with("cannot be transcoded: its media worker ended"))),
            "{sink}: {ev:?}"
        );
    }
    assert!(!ev.iter().any(|(id, _)| id == "v"), "{ev:?}");
    assert!(w.r.element_id(t).is_none(), "the transcoder node is gone");
    assert_eq!(w.r.transcoder_count(), 0);
    // The other route carries on; no transcoder is made again by itself.
    assert_eq!(w.send(10, cam, CodecName::Vp8, 7, 2), 1);
    assert_eq!(w.names(), ["v"]);
    assert_eq!(w.log.lock().unwrap().made.len(), 1);
    assert!(w.events().is_empty());
    // A re-connect makes a new one.
    w.r.disconnect(cam, V, h1).unwrap();
    w.r.connect(w.at(20), cam, V, h1).unwrap();
    assert_eq!(w.send(30, cam, CodecName::Vp8, 7, 3), 2);
    assert_eq!(w.names(), ["transcoder", "v"]);
    assert_eq!(w.log.lock().unwrap().made.len(), 2);
    assert_eq!(w.r.transcoder_count(), 1);
}

#[test]
fn a_source_changing_codec_under_a_transcoder_has_its_sinks_matched_again() {
    let mut w = World::new(true);
    let cam = w.node("cam", Some(&[]));
    let h = w.node("h", Some(&[(102, CodecName::H264)]));
    w.r.connect(w.at(0), cam, V, h).unwrap();
    w.send(0, cam, CodecName::Vp8, 7, 1);
    assert_eq!(w.r.transcoder_count(), 1);
    w.events();
    w.pushes();
    // Now the source sends H.264 itself: no transcoder, straight to the sink.
    assert_eq!(w.send(10, cam, CodecName::H264, 7, 2), 1);
    assert_eq!(w.names(), ["h"]);
    assert_eq!(w.r.transcoder_count(), 0);
    let ev = w.events();
    assert!(ev
        .iter()
        .any(|(_, e)| matches!(e, MediaEvent::Transcoding { on: false, .. })));
    // And back to VP8: a transcoder again.
    assert_eq!(w.send(20, cam, CodecName::Vp8, 7, 3), 1);
    assert_eq!(w.names(), ["transcoder"]);
    assert_eq!(w.r.transcoder_count(), 1);
}

#[test]
fn a_codec_that_cannot_be_had_raises_one_error_and_nothing_per_packet() {
    let mut w = World::new(false);
    let cam = w.node("cam", Some(&[]));
    let h = w.node("h", Some(&[(102, CodecName::H264)]));
    w.r.connect(w.at(0), cam, V, h).unwrap();
    for seq in 0..100 {
        assert_eq!(w.send(u64::from(seq), cam, CodecName::Vp8, 7, seq), 0);
    }
    let ev = w.events();
    let errors: Vec<_> = ev
        .iter()
        .filter(|(id, e)| {
            id == "h"
                && matches!(
                    e,
                    MediaEvent::Error {
                        error: MediaError::CodecMismatch,
                        ..
                    }
                )
        })
        .collect();
    assert_eq!(errors.len(), 1, "{ev:?}");
    assert_eq!(w.log.lock().unwrap().caps_asked, 1);
    // Reconnecting is a change: told again.
    w.r.disconnect(cam, V, h).unwrap();
    w.r.connect(w.at(200), cam, V, h).unwrap();
    w.send(200, cam, CodecName::Vp8, 7, 200);
    assert_eq!(
        w.events()
            .iter()
            .filter(|(_, e)| matches!(e, MediaEvent::Error { .. }))
            .count(),
        1
    );
}

#[test]
fn forced_formats_put_a_transcoder_in_and_a_change_remakes_it() {
    let mut w = World::new(true);
    let src = w.node("src", Some(&[]));
    let both = w.node(
        "both",
        Some(&[(96, CodecName::Vp8), (102, CodecName::H264)]),
    );
    let vp8 = w.node("vp8", Some(&[(96, CodecName::Vp8)]));
    w.r.connect(w.at(0), src, V, both).unwrap();
    w.r.connect(w.at(0), src, V, vp8).unwrap();
    w.send(0, src, CodecName::Vp8, 7, 1);
    assert_eq!(w.names(), ["both", "vp8"]);

    let mut s = OutputSettings::new(300_000);
    s.video = Some(VideoFormat {
        codec: CodecName::H264,
        framerate: None,
    });
    w.r.set_output_settings(w.at(10), src, s);
    w.send(10, src, CodecName::Vp8, 7, 2);
    assert_eq!(w.names(), ["transcoder", "vp8"]);
    assert_eq!(w.log.lock().unwrap().made, ["VP8 -> H264 for src"]);

    // VP8 at 15 fps: everyone gets VP8 re-encoded, through one transcoder.
    s.video = Some(VideoFormat {
        codec: CodecName::Vp8,
        framerate: Some((15, 1)),
    });
    w.r.set_output_settings(w.at(20), src, s);
    w.send(20, src, CodecName::Vp8, 7, 3);
    assert_eq!(w.names(), ["transcoder"]);
    assert_eq!(w.r.transcoder_count(), 1);
    assert_eq!(w.log.lock().unwrap().made.len(), 2);

    // Back to the defaults: as it is again, from the source's next keyframe (the sinks'
    // decoders had the transcoder's stream).
    w.r.set_output_settings(w.at(30), src, OutputSettings::new(300_000));
    w.send(30, src, CodecName::Vp8, 7, 4);
    assert_eq!(w.names(), Vec::<&str>::new());
    w.send_vp8(40, src, 7, 5, true);
    assert_eq!(w.names(), ["both", "vp8"]);
    assert_eq!(w.r.transcoder_count(), 0);
}

#[test]
fn keyframe_requests_go_upstream_throttled_and_into_transcoders() {
    let mut w = World::new(true);
    let cam = w.node("cam", Some(&[]));
    let viewers: Vec<NodeId> = (0..50)
        .map(|_| w.node("viewer", Some(&[(96, CodecName::Vp8)])))
        .collect();
    for v in &viewers {
        w.r.connect(w.at(0), cam, V, *v).unwrap();
    }
    // 50 joins and 50 PLIs within 10 ms: one request now, one deferred.
    for v in &viewers {
        w.r.request_keyframe(w.at(5), *v, V);
    }
    assert_eq!(w.log.lock().unwrap().keyframes, ["cam"]);
    let due = w.r.poll_timeout().unwrap();
    assert_eq!(due, w.at(0) + KEYFRAME_INTERVAL);
    w.r.handle_timeout(due);
    assert_eq!(w.log.lock().unwrap().keyframes, ["cam", "cam"]);
    // Audio has no keyframes.
    w.r.request_keyframe(w.at(1000), viewers[0], MediaKind::Audio);
    assert_eq!(w.log.lock().unwrap().keyframes.len(), 2);

    // A sink fed through a transcoder asks the transcoder's encoder.
    let h = w.node("h", Some(&[(102, CodecName::H264)]));
    w.r.connect(w.at(2000), cam, V, h).unwrap();
    w.send(2000, cam, CodecName::Vp8, 7, 1);
    w.log.lock().unwrap().keyframes.clear();
    w.r.request_keyframe(w.at(5000), h, V);
    assert_eq!(w.log.lock().unwrap().keyframes, ["transcoder"]);
}

#[test]
fn end_of_stream_reaches_every_sink_once_but_no_transcoder() {
    let mut w = World::new(true);
    let player = w.node("player", Some(&[]));
    let rec = w.node("rec", Some(&[(96, CodecName::Vp8), (111, CodecName::Opus)]));
    let h = w.node("h", Some(&[(102, CodecName::H264)]));
    w.r.connect(w.at(0), player, V, rec).unwrap();
    w.r.connect(w.at(0), player, MediaKind::Audio, rec).unwrap();
    w.r.connect(w.at(0), player, V, h).unwrap();
    w.send(0, player, CodecName::Vp8, 7, 1);
    assert_eq!(w.r.transcoder_count(), 1);
    w.r.end_of_stream(player);
    let mut eos = w.log.lock().unwrap().eos.clone();
    eos.sort_unstable();
    assert_eq!(eos, ["h", "rec"]);
}

#[test]
fn flows_are_reported_in_and_out_and_go_idle() {
    let mut w = World::new(false);
    let player = w.node("player", Some(&[]));
    let rec = w.node("rec", None);
    w.r.connect(w.at(0), player, V, rec).unwrap();
    w.send(0, player, CodecName::Vp8, 7, 1);
    w.send(10, player, CodecName::Vp8, 7, 2);
    let flow = |ev: &[(String, MediaEvent)]| -> Vec<(String, FlowDir, bool)> {
        ev.iter()
            .filter_map(|(id, e)| match e {
                MediaEvent::Flow { dir, flowing, .. } => Some((id.clone(), *dir, *flowing)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        flow(&w.events()),
        [
            ("player".to_string(), FlowDir::Out, true),
            ("rec".to_string(), FlowDir::In, true)
        ]
    );
    let due = w.r.poll_timeout().unwrap();
    assert!(due > w.at(10) + FLOW_IDLE);
    w.r.handle_timeout(due);
    let mut idle = flow(&w.events());
    idle.sort_by_key(|x| x.0.clone());
    assert_eq!(
        idle,
        [
            ("player".to_string(), FlowDir::Out, false),
            ("rec".to_string(), FlowDir::In, false)
        ]
    );
}

#[test]
fn removing_nodes_cleans_up_routes_and_transcoders() {
    let mut w = World::new(true);
    let cam = w.node("cam", Some(&[]));
    let h = w.node("h", Some(&[(102, CodecName::H264)]));
    let v = w.node("v", Some(&[(96, CodecName::Vp8)]));
    w.r.connect(w.at(0), cam, V, h).unwrap();
    w.r.connect(w.at(0), cam, V, v).unwrap();
    w.send(0, cam, CodecName::Vp8, 7, 1);
    assert_eq!(w.r.transcoder_count(), 1);
    assert!(w.r.remove_node(h).is_some());
    assert_eq!(w.r.transcoder_count(), 0);
    assert_eq!(w.r.connect(w.at(1), cam, V, h), Err(NodeError::UnknownNode));
    // A new node in h's slot is not h.
    let again = w.node("again", Some(&[(96, CodecName::Vp8)]));
    assert_eq!(again.index(), h.index());
    assert!(w.r.element_id(h).is_none());
    w.pushes();
    assert_eq!(w.send(2, cam, CodecName::Vp8, 7, 2), 1);
    // Removing the source leaves its sinks unfed and the router consistent.
    w.r.remove_node(cam);
    assert_eq!(w.send(3, cam, CodecName::Vp8, 7, 3), 0);
    assert!(w.r.element_id(v).is_some());
}

#[test]
fn a_node_may_feed_itself() {
    let mut w = World::new(false);
    let me = w.node("loopback", Some(&[(96, CodecName::Vp8)]));
    w.r.connect(w.at(0), me, V, me).unwrap();
    assert_eq!(w.send(0, me, CodecName::Vp8, 7, 1), 1);
    assert_eq!(w.names(), ["loopback"]);
}

#[test]
fn input_latencies_of_nodes_that_report_flow_reach_the_board_and_leave_with_the_node() {
    let mut w = World::new(false);
    let board = Arc::new(LatencyBoard::default());
    w.r.set_latency_board(board.clone());
    let cam = w.node("cam", Some(&[]));
    let rec = w.node("rec", None);
    w.r.connect(w.at(0), cam, V, rec).unwrap();
    let payload = w.payload.clone();
    let pkt = |entered| Packet {
        kind: V,
        codec: Codec::new(CodecName::Vp8),
        seq: 0,
        ts: 0,
        ssrc: 7,
        marker: false,
        payload: &payload,
        entered,
        extensions: None,
        dd: None,
        layer: None,
    };
    // An untimed packet measures nothing; a timed one is the node's input latency.
    w.r.forward(w.at(0), cam, &pkt(None));
    assert_eq!(board.get("rec"), [None, None]);
    let entered = Instant::now() - Duration::from_millis(5);
    w.r.forward(w.at(1), cam, &pkt(Some(entered)));
    let [audio, video] = board.get("rec");
    assert_eq!(audio, None);
    assert!(video.is_some_and(|ns| ns >= 5e6), "{video:?}");
    assert_eq!(board.get("rec"), w.r.input_latency(rec));
    w.r.remove_node(rec);
    assert_eq!(board.get("rec"), [None, None]);
}

#[test]
fn a_switched_sink_waits_for_the_new_sources_keyframe_and_its_line_goes_on() {
    let mut w = World::new(false);
    let cam = w.node("cam", Some(&[]));
    let cam2 = w.node("cam2", Some(&[]));
    let mic2 = w.node("mic2", Some(&[]));
    let a = w.node("a", Some(&[(96, CodecName::Vp8), (111, CodecName::Opus)]));
    w.r.connect(w.at(0), cam, V, a).unwrap();
    // The first source of a sink is not held back (nothing was shown yet).
    assert_eq!(w.send_vp8(0, cam, 7, 100, false), 1);
    assert_eq!(w.send_vp8(33, cam, 7, 101, false), 1);
    let last = w.pushes()[1].2;
    w.log.lock().unwrap().keyframes.clear();

    // Switch a to cam2: it is asked for a keyframe at once.
    w.r.disconnect(cam, V, a).unwrap();
    w.r.connect(w.at(40), cam2, V, a).unwrap();
    assert_eq!(w.log.lock().unwrap().keyframes, ["cam2"]);
    // Its inter frames do not reach a; it is asked again while a waits, at most every 300 ms.
    for (i, ms) in (50..=650).step_by(33).enumerate() {
        assert_eq!(w.send_vp8(ms, cam2, 9, 5000 + i as u16, false), 0);
    }
    assert!(w.pushes().is_empty(), "no broken frame reaches the sink");
    w.r.handle_timeout(w.at(700));
    let asked = w.log.lock().unwrap().keyframes.len();
    assert!((2..=4).contains(&asked), "asked {asked} times in 660 ms");
    // The keyframe goes, on the line that goes on: next sequence number, time moved by the
    // wall-clock gap (700 - 33 ms at 90 kHz), the same SSRC; then its inter frames follow.
    assert_eq!(w.send_vp8(700, cam2, 9, 5100, true), 1);
    assert_eq!(w.send_vp8(733, cam2, 9, 5101, false), 1);
    let p = w.pushes();
    assert_eq!(p[0].2.seq, last.seq.wrapping_add(1));
    assert_eq!(p[0].2.ssrc, last.ssrc);
    let gap = p[0].2.ts.wrapping_sub(last.ts);
    assert!(
        (667 * 90 - 90..=667 * 90 + 90).contains(&gap),
        "ts moved {gap}"
    );
    assert_eq!(p[1].2.seq, last.seq.wrapping_add(2));
    assert_eq!(p[1].2.ts.wrapping_sub(p[0].2.ts), 3000);

    // And back to cam: the same again, seq and ts continuing from cam2's last packet.
    w.r.disconnect(cam2, V, a).unwrap();
    w.r.connect(w.at(800), cam, V, a).unwrap();
    assert_eq!(w.send_vp8(810, cam, 7, 102, false), 0);
    assert_eq!(w.send_vp8(843, cam, 7, 103, true), 1);
    let back = w.pushes()[0].2;
    assert_eq!(back.seq, p[1].2.seq.wrapping_add(1));
    assert!(back.ts.wrapping_sub(p[1].2.ts) > 0 && back.ts.wrapping_sub(p[1].2.ts) < 90_000);

    // Audio is not held back: any Opus packet starts a decodable stream.
    w.r.connect(w.at(0), cam, MediaKind::Audio, a).unwrap();
    assert_eq!(w.send(900, cam, CodecName::Opus, 8, 1), 1);
    w.r.disconnect(cam, MediaKind::Audio, a).unwrap();
    w.r.connect(w.at(910), mic2, MediaKind::Audio, a).unwrap();
    assert_eq!(w.send(920, mic2, CodecName::Opus, 10, 77), 1);
}

#[test]
fn a_pass_ends_with_one_flush_of_each_node_pushed_to_in_it() {
    let mut w = World::new(true);
    let cam = w.node("cam", Some(&[]));
    let mic = w.node("mic", Some(&[]));
    let a = w.node("a", None);
    let b = w.node("b", None);
    let idle = w.node("idle", None);
    let h = w.node("h", Some(&[(102, CodecName::H264)]));
    w.r.connect(w.at(0), cam, V, a).unwrap();
    w.r.connect(w.at(0), mic, MediaKind::Audio, a).unwrap();
    w.r.connect(w.at(0), cam, V, b).unwrap();
    w.r.connect(w.at(0), cam, V, h).unwrap();
    // `idle` has a route, but no media of its kind comes: it is not flushed.
    w.r.connect(w.at(0), mic, V, idle).unwrap();
    // One pass: a frame of three packets, and audio, to `a`; the frame to `b` and, through a
    // transcoder, to `h`'s transcoder.
    for seq in 0..3 {
        w.send_vp8(0, cam, 7, seq, seq == 0);
    }
    w.send(0, mic, CodecName::Opus, 8, 0);
    assert_eq!(
        w.flushed(),
        Vec::<&str>::new(),
        "nothing before the pass ends"
    );
    w.r.flush();
    assert_eq!(w.flushed(), ["a", "b", "transcoder"]);
    // A pass that pushed nothing flushes nothing.
    w.r.flush();
    assert_eq!(w.flushed(), Vec::<&str>::new());
    // The next pass: audio alone, to `a` alone.
    w.send(20, mic, CodecName::Opus, 8, 1);
    w.r.flush();
    assert_eq!(w.flushed(), ["a"]);
    // A node that leaves the router with media of this pass gathered is flushed as it goes,
    // and not again at the pass's end.
    w.send(40, mic, CodecName::Opus, 8, 2);
    w.send_vp8(40, cam, 7, 3, false);
    w.r.remove_node(a).unwrap();
    assert_eq!(w.flushed(), ["a"]);
    w.r.flush();
    assert_eq!(w.flushed(), ["b", "transcoder"]);
    // So is a transcoder that goes with its last sink.
    w.send_vp8(60, cam, 7, 4, false);
    w.r.disconnect(cam, V, h).unwrap();
    assert_eq!(w.flushed(), ["transcoder"]);
    w.r.flush();
    assert_eq!(w.flushed(), ["b"]);
}

#[test]
fn the_view_says_how_each_asked_route_goes_and_counts_bytes_where_flow_is_kept() {
    let mut w = World::new(true);
    let cam = w.node("cam", Some(&[]));
    let h = w.node("h", Some(&[(102, CodecName::H264)]));
    let v = w.node("v", Some(&[(96, CodecName::Vp8)]));
    let none = w.node("none", Some(&[]));
    for s in [h, v, none] {
        w.r.connect(w.at(0), cam, V, s).unwrap();
    }
    let all = [(cam, v, V), (cam, h, V), (cam, none, V)];
    let before = w.r.view(&[cam], &all);
    assert_eq!(before.routes, [Some(RouteMode::Nothing); 3]);
    // Two VP8 packets of 100 bytes: v gets them as they are, h through a transcoder, none
    // nothing (it takes no codec).
    w.send(0, cam, CodecName::Vp8, 7, 1);
    w.send(1, cam, CodecName::Vp8, 7, 2);
    // Asked: three nodes; the routes to v and h, one twice, and routes that do not exist.
    let asked = [
        (cam, v, V),
        (cam, h, V),
        (cam, v, V),
        (cam, v, A),
        (v, cam, V),
    ];
    let view = w.r.view(&[cam, v, h], &asked);
    let vp8 = Codec::new(CodecName::Vp8);
    let forward = Some(RouteMode::Forward(Some(vp8)));
    let transcode = Some(RouteMode::Transcode {
        from: vp8,
        to: Codec::new(CodecName::H264),
    });
    assert_eq!(view.routes, [forward, transcode, forward, None, None]);
    let t = &view.transcoders[..];
    assert!(
        matches!(t, [x] if x.source == cam && x.sinks == [h] && x.kind == V && x.from == vp8),
        "{t:?}"
    );
    assert_eq!(
        w.r.transcoder_codecs(),
        [(V, vp8, Codec::new(CodecName::H264))]
    );
    // Bytes in and out, per kind, in the order asked: [in, out][audio, video].
    assert_eq!(
        view.bytes,
        [
            Some([[0, 0], [0, 200]]),
            Some([[0, 200], [0, 0]]),
            Some([[0, 0], [0, 0]])
        ]
    );
    // Not a source asked about: no transcoders, nothing walked.
    let other = w.r.view(&[v], &[]);
    assert!(other.transcoders.is_empty() && other.routes.is_empty());
}

#[test]
fn a_node_with_its_own_keyframe_interval_is_asked_at_most_that_often() {
    // A cascade relay's receiving end asks upstream once a second (a request inside the
    // second goes when it ends); other nodes keep the router's interval.
    let mut w = World::new(true);
    let (edge, cam) = (w.node("edge", Some(&[])), w.node("cam", Some(&[])));
    let v1 = w.node("v1", Some(&[(96, CodecName::Vp8)]));
    let v2 = w.node("v2", Some(&[(96, CodecName::Vp8)]));
    w.r.connect(w.at(0), edge, V, v1).unwrap();
    w.r.connect(w.at(0), cam, V, v2).unwrap();
    w.r.set_keyframe_interval(edge, Duration::from_secs(1));
    w.log.lock().unwrap().keyframes.clear();
    // (The connects asked both at 0.)
    for ms in [400, 700, 1000] {
        w.r.request_keyframe(w.at(ms), v1, V);
        w.r.request_keyframe(w.at(ms), v2, V);
    }
    assert_eq!(
        w.log.lock().unwrap().keyframes,
        ["edge", "cam", "cam", "cam"]
    );
    assert_eq!(w.r.poll_timeout(), Some(w.at(1400)));
    w.r.handle_timeout(w.at(1400));
    assert_eq!(w.log.lock().unwrap().keyframes.last(), Some(&"edge"));
    assert_eq!(w.log.lock().unwrap().keyframes.len(), 5);
}
