//! Simulcast in the router: each sink gets one layer, switches only at a keyframe of the layer
//! it moves to (asked of that layer), on one continuous line, and falls to another layer when
//! its own stops.

use super::*;
use crate::negotiate::{SinkCaps, SinkCodec};
use crate::port::CodecName;
use crate::simulcast::{ForwardedLayer, LayerLimits, SwitchReason};
use std::sync::Mutex;

mod odd_publishers;

#[derive(Default)]
struct Seen {
    /// (node, layer of the packet, header, keyframe) of every push.
    pushes: Vec<(&'static str, Option<u8>, Header, bool)>,
    /// (node, layer) of every keyframe request; `None`: of the whole source. Taken by
    /// `World::frame` (a publisher answers them).
    keyframes: Vec<(&'static str, Option<u8>)>,
    /// Every keyframe request, never taken.
    asked: Vec<(&'static str, Option<u8>)>,
    changes: Vec<(&'static str, ForwardedLayer)>,
    /// Sinks told they get no layer any more.
    left: Vec<&'static str>,
    /// Transcoders made.
    made: usize,
    /// Nodes whose codecs changed to this one since they were made.
    takes: Vec<(&'static str, CodecName)>,
}

type Log = Arc<Mutex<Seen>>;

/// Makes transcoders (nodes named "transcoder"), counting them.
struct Maker(Log);

impl TranscoderMaker for Maker {
    fn can(&self, from: &Codec, to: &Codec) -> bool {
        from.name.kind() == to.name.kind()
    }
    fn make(
        &self,
        _: NodeId,
        _: MediaKind,
        _: &Codec,
        _: &Codec,
        _: &str,
    ) -> Result<Box<dyn Node>, String> {
        self.0.lock().unwrap().made += 1;
        Ok(Box::new(Cam {
            name: "transcoder",
            rids: &[],
            log: self.0.clone(),
            takes: None,
        }))
    }
}

struct Cam {
    name: &'static str,
    rids: &'static [&'static str],
    log: Log,
    /// The one codec it takes (else anything).
    takes: Option<CodecName>,
}

impl Node for Cam {
    fn caps(&self, _: MediaKind) -> SinkCaps {
        let log = self.log.lock().unwrap();
        let now = log.takes.iter().rev().find(|t| t.0 == self.name);
        match now.map(|t| t.1).or(self.takes) {
            Some(c) => SinkCaps::codecs([SinkCodec::with_pt(Codec::new(c), 96)]),
            None => SinkCaps::anything(),
        }
    }
    fn push(&mut self, _: Instant, pkt: &Packet<'_>, header: Header) {
        let key = crate::starts_keyframe(pkt.codec.name, pkt.payload) == Some(true);
        let mut l = self.log.lock().unwrap();
        l.pushes.push((self.name, pkt.layer, header, key));
    }
    fn request_keyframe(&mut self, _: MediaKind) {
        let mut l = self.log.lock().unwrap();
        l.keyframes.push((self.name, None));
        l.asked.push((self.name, None));
    }
    fn request_layer_keyframe(&mut self, _: MediaKind, layer: u8) {
        let mut l = self.log.lock().unwrap();
        l.keyframes.push((self.name, Some(layer)));
        l.asked.push((self.name, Some(layer)));
    }
    fn layer_names(&self, _: MediaKind) -> Vec<String> {
        self.rids.iter().map(|r| r.to_string()).collect()
    }
    fn layer_changed(&mut self, _: MediaKind, layer: Option<&ForwardedLayer>) {
        let mut l = self.log.lock().unwrap();
        match layer {
            Some(layer) => l.changes.push((self.name, layer.clone())),
            None => l.left.push(self.name),
        }
    }
}

/// The publisher's three layers: (id, SSRC, width, height). Ids in the publisher's order,
/// which here lists the largest first.
const LAYERS: [(u8, u32, u16, u16); 3] =
    [(0, 0xf, 640, 480), (1, 0xb, 320, 240), (2, 0x9, 160, 120)];

struct World {
    r: MediaRouter,
    log: Log,
    t0: Instant,
    seq: [u16; 3],
}

impl World {
    fn new() -> World {
        World {
            r: MediaRouter::new(),
            log: Log::default(),
            t0: Instant::now(),
            seq: [100, 5000, 60_000],
        }
    }

    fn node(&mut self, name: &'static str) -> NodeId {
        self.node_taking(name, None)
    }

    /// A node that takes only `takes` (else anything).
    fn node_taking(&mut self, name: &'static str, takes: Option<CodecName>) -> NodeId {
        let log = self.log.clone();
        let rids = &["f", "h", "q"];
        let cam = Cam {
            name,
            rids,
            log,
            takes,
        };
        self.r.add_node(name, Box::new(cam))
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// One packet of layer `id` at `ms`: a VP8 key frame announcing the layer's size, or an
    /// inter frame. How many sinks got it.
    fn send(&mut self, ms: u64, src: NodeId, id: u8, key: bool) -> usize {
        let (_, _, w, h) = LAYERS[usize::from(id)];
        let mut p = vec![0x10, u8::from(!key), 0x2d, 0x01, 0x9d, 0x01, 0x2a];
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&h.to_le_bytes());
        self.send_as(ms, src, id, CodecName::Vp8, p)
    }

    /// One packet of layer `id` at `ms` in `codec`, with this payload.
    fn send_as(&mut self, ms: u64, src: NodeId, id: u8, codec: CodecName, p: Vec<u8>) -> usize {
        let (_, ssrc, _, _) = LAYERS[usize::from(id)];
        let payload: Arc<[u8]> = Arc::from(p);
        let seq = self.seq[usize::from(id)];
        self.seq[usize::from(id)] = seq.wrapping_add(1);
        let pkt = Packet {
            kind: MediaKind::Video,
            codec: Codec::new(codec),
            seq,
            ts: u32::from(seq)
                .wrapping_mul(3000)
                .wrapping_add(u32::from(id) << 28),
            ssrc,
            marker: true,
            payload: &payload,
            entered: None,
            extensions: None,
            dd: None,
            layer: Some(id),
        };
        self.r.forward(self.at(ms), src, &pkt)
    }

    /// A frame on each layer in `ids` at `ms`, as a publisher sends it: a keyframe on each
    /// layer whose keyframe was asked since the last frame, or on all of them (`key`).
    fn frame(&mut self, ms: u64, src: NodeId, ids: &[u8], key: bool) {
        let asked = self.keyframes();
        for id in ids {
            let ask = asked.iter().any(|(_, l)| l.is_none_or(|l| l == *id));
            self.send(ms, src, *id, key || ask);
        }
        // Requests of layers not sent stay asked.
        let rest = asked
            .into_iter()
            .filter(|(_, l)| l.is_some_and(|l| !ids.contains(&l)));
        self.log.lock().unwrap().keyframes.extend(rest);
    }

    /// Frames every 33 ms from `from` until `to`.
    fn stream(&mut self, from: u64, to: u64, src: NodeId, ids: &[u8]) {
        for ms in (from..to).step_by(33) {
            self.frame(ms, src, ids, false);
        }
    }

    /// The same `payload` in `codec` on layers `ids` every 33 ms from `from` until `to`.
    fn stream_as(&mut self, from: u64, to: u64, src: NodeId, ids: &[u8], payload: &[u8]) {
        for ms in (from..to).step_by(33) {
            for id in ids {
                self.send_as(ms, src, *id, CodecName::H263, payload.to_vec());
            }
        }
    }

    fn pushes(&self, name: &str) -> Vec<(Option<u8>, Header, bool)> {
        let mut l = self.log.lock().unwrap();
        let (mine, rest) = l.pushes.drain(..).partition(|p| p.0 == name);
        l.pushes = rest;
        mine.into_iter().map(|p| (p.1, p.2, p.3)).collect()
    }

    fn keyframes(&self) -> Vec<(&'static str, Option<u8>)> {
        std::mem::take(&mut self.log.lock().unwrap().keyframes)
    }

    /// Every keyframe request since the last call (those `frame` answered too).
    fn asked(&self) -> Vec<(&'static str, Option<u8>)> {
        std::mem::take(&mut self.log.lock().unwrap().asked)
    }

    fn changes(&self, name: &str) -> Vec<ForwardedLayer> {
        let l = self.log.lock().unwrap();
        l.changes
            .iter()
            .filter(|c| c.0 == name)
            .map(|c| c.1.clone())
            .collect()
    }
}

/// Sequence numbers go up by one, timestamps never go back.
fn continuous(h: &[(Option<u8>, Header, bool)]) {
    for w in h.windows(2) {
        assert_eq!(w[1].1.seq, w[0].1.seq.wrapping_add(1), "{w:?}");
        assert_eq!(w[1].1.ssrc, w[0].1.ssrc);
        let step = w[1].1.ts.wrapping_sub(w[0].1.ts);
        assert!(step > 0 && step < 90_000, "timestamps move forward: {w:?}");
    }
}

#[test]
fn each_sink_gets_one_layer_ordered_by_size_and_switches_on_its_keyframe() {
    let mut w = World::new();
    let cam = w.node("cam");
    let (low, top) = (w.node("low"), w.node("top"));
    w.r.connect(w.at(0), cam, MediaKind::Video, low).unwrap();
    w.r.connect(w.at(0), cam, MediaKind::Video, top).unwrap();
    let max = |max| LayerLimits {
        max: Some(max),
        preferred: None,
        max_temporal: None,
    };
    w.r.set_layer_limits(low, MediaKind::Video, max(0));
    // Key frames on every layer (the layers' sizes: ordered smallest first), then a second of
    // video.
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 1000, cam, &[0, 1, 2]);
    let (l, t) = (w.pushes("low"), w.pushes("top"));
    assert!(
        l.iter().all(|p| p.0 == Some(2)),
        "the 160x120 layer only: {l:?}"
    );
    assert!(
        t.iter().all(|p| p.0 == Some(0)),
        "the 640x480 layer only: {t:?}"
    );
    assert!(l.len() >= 29 && t.len() >= 28, "{} {}", l.len(), t.len());
    assert!(l[0].2 && t[0].2, "each starts at a keyframe");
    continuous(&l);
    continuous(&t);
    let start = w.changes("low");
    assert_eq!(start.len(), 1, "one layer from the start: {start:?}");
    assert_eq!(
        (
            start[0].rank,
            start[0].rid.as_deref(),
            start[0].size,
            start[0].reason
        ),
        (0, Some("q"), Some((160, 120)), SwitchReason::Start)
    );
    let top_start = w.changes("top");
    assert_eq!((top_start.len(), top_start[0].rank), (1, 2));
    assert_eq!(top_start[0].rid.as_deref(), Some("f"));

    // Lifting the limit: the top layer's keyframe is asked; until it comes the sink keeps its
    // layer, then moves there at that keyframe with no gap.
    w.r.set_layer_limits(low, MediaKind::Video, LayerLimits::default());
    w.send(1000, cam, 2, false);
    assert_eq!(w.keyframes(), vec![("cam", Some(0))]);
    w.send(1000, cam, 0, false);
    w.send(1033, cam, 2, false);
    w.send(1033, cam, 0, true);
    w.send(1066, cam, 2, false);
    w.send(1066, cam, 0, false);
    let l2 = w.pushes("low");
    let layers: Vec<_> = l2.iter().map(|p| p.0).collect();
    assert_eq!(layers, [Some(2), Some(2), Some(0), Some(0)]);
    assert!(l2[2].2, "the first packet of the new layer is its keyframe");
    continuous(
        &[*l.last().unwrap()]
            .into_iter()
            .chain(l2)
            .collect::<Vec<_>>(),
    );
    let last = w.changes("low").pop().unwrap();
    assert_eq!(
        (last.rank, last.size, last.reason),
        (2, Some((640, 480)), SwitchReason::Limit)
    );
    let ev: Vec<_> = std::iter::from_fn(|| w.r.poll_event()).collect();
    let changed = |id: &str, rank: u8| {
        ev.iter().any(|(e, ev)| {
            e == id && matches!(ev, MediaEvent::LayerChanged { kind: MediaKind::Video, layer } if layer.rank == rank)
        })
    };
    assert!(
        changed("low", 0) && changed("low", 2) && changed("top", 2),
        "{ev:?}"
    );
}

#[test]
fn the_bandwidth_ceiling_moves_a_sink_as_a_limit_does() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 500, cam, &[0, 1, 2]);
    assert_eq!(w.pushes("viewer").last().unwrap().0, Some(0));
    // Stage 2's input: the highest layer the viewer's bandwidth allows.
    w.r.set_layer_bandwidth_cap(v, MediaKind::Video, Some(1));
    w.stream(500, 800, cam, &[0, 1, 2]);
    let got = w.pushes("viewer");
    assert_eq!(got.last().unwrap().0, Some(1), "{got:?}");
    let c = w.changes("viewer").pop().unwrap();
    assert_eq!((c.rank, c.reason), (1, SwitchReason::Bandwidth));
    w.r.set_layer_bandwidth_cap(v, MediaKind::Video, None);
    w.stream(800, 1100, cam, &[0, 1, 2]);
    assert_eq!(w.pushes("viewer").last().unwrap().0, Some(0));
}

#[test]
fn layer_rates_are_measured_over_two_seconds_by_rank_while_each_layer_flows() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.measure_layer_rates();
    assert_eq!(w.r.layer_rates(v, MediaKind::Video), None, "no source");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 1990, cam, &[0, 1, 2]);
    assert_eq!(rates_now(&w, v), vec![None; 3], "no whole window yet");
    assert_eq!(w.r.layer_rates(v, MediaKind::Audio), None);
    // The packet at 2013 ms closes the first window: 61 packets of 11 bytes, 40 counted for
    // each one's header and tag, over 2.013 s.
    w.stream(2013, 2100, cam, &[0, 1, 2]);
    let expected = 61 * (11 + 40) * 8 * 1000 / 2013;
    assert_eq!(rates_now(&w, v), vec![Some(expected); 3]);
    // The largest layer (id 0, rank 2) stops: not measured once it counts as stopped.
    w.stream(2112, 3000, cam, &[1, 2]);
    let rates = rates_now(&w, v);
    assert_eq!(rates[2], None, "{rates:?}");
    assert!(rates[0].is_some() && rates[1].is_some(), "{rates:?}");
}

#[test]
fn rates_incomplete_while_a_layer_that_flows_is_not_measured_yet() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.measure_layer_rates();
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    w.frame(0, cam, &[1, 2], true);
    w.stream(33, 400, cam, &[1, 2]);
    // The largest layer (id 0) starts 429 ms later: its window closes after the others'.
    w.frame(429, cam, &[0, 1, 2], true);
    w.stream(462, 2100, cam, &[0, 1, 2]);
    let (rates, complete) = w.r.layer_rates(v, MediaKind::Video).unwrap();
    assert!(
        !complete && rates[..2].iter().all(Option::is_some) && rates[2].is_none(),
        "two layers measured, the third flows unmeasured: {rates:?} {complete}"
    );
    w.stream(2133, 2600, cam, &[0, 1, 2]);
    let (rates, complete) = w.r.layer_rates(v, MediaKind::Video).unwrap();
    assert!(complete && rates.iter().all(Option::is_some), "{rates:?}");
}

#[test]
fn layers_are_not_measured_unless_asked() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 2500, cam, &[0, 1, 2]);
    assert_eq!(rates_now(&w, v), vec![None; 3], "BWE off: nothing counted");
}

fn rates_now(w: &World, v: NodeId) -> Vec<Option<u64>> {
    w.r.layer_rates(v, MediaKind::Video)
        .expect("a layered source")
        .0
}

#[test]
fn a_layer_that_stops_makes_its_sinks_fall_to_the_next_within_a_second() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 500, cam, &[0, 1, 2]);
    assert!(w.pushes("viewer").iter().all(|p| p.0 == Some(0)));
    // The 640x480 layer stops (its last packet went at 495 ms); the others go on.
    let mut fell = None;
    for ms in (528..2000).step_by(33) {
        w.frame(ms, cam, &[1, 2], false);
        if fell.is_none() && w.pushes("viewer").iter().any(|p| p.0 == Some(1)) {
            fell = Some(ms);
        }
    }
    let fell = fell.expect("the viewer fell to the 320x240 layer");
    assert!(
        fell - 495 <= 1000,
        "within a second of the last packet: {fell} ms"
    );
    let c = w.changes("viewer").pop().unwrap();
    assert_eq!(
        (c.rank, c.rid.as_deref(), c.reason),
        (1, Some("h"), SwitchReason::LayerStopped)
    );
    assert!(w.pushes("viewer").iter().all(|p| p.0 == Some(1)));
    // The layer comes back: the viewer returns to it at its keyframe (asked when it came).
    w.stream(2000, 2200, cam, &[0, 1, 2]);
    let back = w.pushes("viewer");
    assert_eq!(back.last().unwrap().0, Some(0), "{back:?}");
    assert_eq!(
        w.changes("viewer").pop().unwrap().reason,
        SwitchReason::LayerAvailable
    );
}

#[test]
fn a_sinks_keyframe_request_goes_to_its_own_layer_and_plain_sources_are_untouched() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    // Connecting asks the source, which has no layers yet.
    assert_eq!(w.keyframes(), vec![("cam", None)]);
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 400, cam, &[0, 1, 2]);
    w.keyframes();
    w.r.request_keyframe(w.at(500), v, MediaKind::Video);
    assert_eq!(w.keyframes(), vec![("cam", Some(0))]);
    // A second one inside the throttle's window is deferred, then sent.
    w.r.request_keyframe(w.at(600), v, MediaKind::Video);
    assert!(w.keyframes().is_empty());
    let due = w.r.poll_timeout().unwrap();
    assert_eq!(due, w.at(800));
    w.r.handle_timeout(due);
    assert_eq!(w.keyframes(), vec![("cam", Some(0))]);
    // A request of the whole source asks each layer that flows.
    w.r.ask_keyframe(w.at(2000), cam, MediaKind::Video);
    let mut asked = w.keyframes();
    asked.sort_unstable();
    assert_eq!(
        asked,
        vec![("cam", Some(0)), ("cam", Some(1)), ("cam", Some(2))]
    );
    // A source without layers goes on as before.
    let plain = w.node("plain");
    let p = w.node("plain viewer");
    w.r.connect(w.at(2000), plain, MediaKind::Video, p).unwrap();
    let payload: Arc<[u8]> = Arc::from(vec![0x10, 0x01]);
    for seq in 0..3 {
        let pkt = Packet {
            kind: MediaKind::Video,
            codec: Codec::new(CodecName::Vp8),
            seq,
            ts: 0,
            ssrc: 1,
            marker: false,
            payload: &payload,
            entered: None,
            extensions: None,
            dd: None,
            layer: None,
        };
        assert_eq!(w.r.forward(w.at(2100), plain, &pkt), 1);
    }
    assert_eq!(w.pushes("plain viewer").len(), 3);
    assert!(w.changes("plain viewer").is_empty());
    // A layer beyond those told apart goes nowhere.
    let pkt = Packet {
        kind: MediaKind::Video,
        codec: Codec::new(CodecName::Vp8),
        seq: 1,
        ts: 0,
        ssrc: 99,
        marker: false,
        payload: &payload,
        entered: None,
        extensions: None,
        dd: None,
        layer: Some(crate::simulcast::MAX_LAYERS as u8),
    };
    assert_eq!(w.r.forward(w.at(2200), cam, &pkt), 0);
}

#[test]
fn sinks_wait_until_every_announced_layer_sent_or_the_settling_time_passed() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    // Only two of the three announced layers ever send.
    w.frame(0, cam, &[1, 2], true);
    w.stream(33, 450, cam, &[1, 2]);
    assert!(
        w.pushes("viewer").is_empty(),
        "no choice before the layers are known"
    );
    w.stream(500, 1000, cam, &[1, 2]);
    let got = w.pushes("viewer");
    assert!(
        !got.is_empty() && got.iter().all(|p| p.0 == Some(1)),
        "{got:?}"
    );
    let c = w.changes("viewer");
    // The one that never sent is last: the two that send are ranks 0 and 1.
    assert_eq!((c.len(), c[0].rank, c[0].rid.as_deref()), (1, 1, Some("h")));
    // Disconnected, the sink is told it gets no layer any more.
    w.r.disconnect(cam, MediaKind::Video, v).unwrap();
    assert_eq!(w.log.lock().unwrap().left, ["viewer"]);
    assert_eq!(w.send(1100, cam, 1, true), 0);
}

#[test]
fn a_join_asks_its_own_layer_once_and_the_keyframe_answers_what_is_pending() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 1000, cam, &[0, 1, 2]);
    w.asked();
    // A sink limited to the 160x120 layer (id 2) joins: connecting asks nothing of the
    // layered source as a whole; its first choice asks its layer, once.
    let late = w.node("late");
    let max0 = LayerLimits {
        max: Some(0),
        preferred: None,
        max_temporal: None,
    };
    w.r.set_layer_limits(late, MediaKind::Video, max0);
    w.r.connect(w.at(1000), cam, MediaKind::Video, late)
        .unwrap();
    assert_eq!(w.asked(), [], "nothing asked of every layer");
    for ms in (1000..2000).step_by(33) {
        w.frame(ms, cam, &[0, 1, 2], false);
        w.r.handle_timeout(w.at(ms));
    }
    assert_eq!(
        w.asked(),
        [("cam", Some(2))],
        "one request, of its layer; the keyframe answered the one its inter frames deferred"
    );
    let got = w.pushes("late");
    assert!(got[0].2 && got.iter().all(|p| p.0 == Some(2)), "{got:?}");
    // A switch (the limit lifted): one request, of the 640x480 layer (id 0).
    w.r.set_layer_limits(late, MediaKind::Video, LayerLimits::default());
    for ms in (2000..3000).step_by(33) {
        w.frame(ms, cam, &[0, 1, 2], false);
        w.r.handle_timeout(w.at(ms));
    }
    assert_eq!(w.asked(), [("cam", Some(0))]);
    assert_eq!(w.pushes("late").last().unwrap().0, Some(0));
}

#[test]
fn a_packet_goes_through_the_sinks_of_its_layer_and_those_waiting_for_it() {
    let mut w = World::new();
    let cam = w.node("cam");
    let sinks: Vec<NodeId> = ["a", "b", "c", "d"].map(|n| w.node(n)).to_vec();
    for (i, s) in sinks.iter().enumerate() {
        w.r.connect(w.at(0), cam, MediaKind::Video, *s).unwrap();
        // a and b the 160x120 layer (id 2), c 320x240 (id 1), d 640x480 (id 0).
        let max = [0, 0, 1, 2][i];
        let limits = LayerLimits {
            max: Some(max),
            preferred: None,
            max_temporal: None,
        };
        w.r.set_layer_limits(*s, MediaKind::Video, limits);
    }
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 700, cam, &[0, 1, 2]);
    let (a, b, c, d) = (sinks[0], sinks[1], sinks[2], sinks[3]);
    assert_eq!(w.r.sinks_of_layer(cam, 2), [a, b]);
    assert_eq!(w.r.sinks_of_layer(cam, 1), [c]);
    assert_eq!(w.r.sinks_of_layer(cam, 0), [d]);
    // b waits for the 640x480 layer's keyframe: in both lists until it switches.
    let top = LayerLimits::default();
    w.r.set_layer_limits(b, MediaKind::Video, top);
    w.send(700, cam, 1, false);
    assert_eq!(w.r.sinks_of_layer(cam, 0), [b, d]);
    assert_eq!(w.r.sinks_of_layer(cam, 2), [a, b]);
    w.send(733, cam, 0, true);
    w.send(766, cam, 2, false);
    assert_eq!(w.r.sinks_of_layer(cam, 0), [b, d]);
    assert_eq!(w.r.sinks_of_layer(cam, 2), [a]);
    // A sink that goes leaves the lists.
    w.r.disconnect(cam, MediaKind::Video, a).unwrap();
    w.send(800, cam, 2, false);
    assert_eq!(w.r.sinks_of_layer(cam, 2), []);
}

#[test]
fn av1_switches_at_a_new_coded_sequence_and_a_codec_without_keyframes_keeps_its_layer() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    let max = |m| LayerLimits {
        max: Some(m),
        preferred: None,
        max_temporal: None,
    };
    w.r.set_layer_limits(v, MediaKind::Video, max(0));
    // AV1 tells no sizes: its layers keep the publisher's order (rank 0 is id 0).
    let av1 = |key: bool| vec![if key { 0x18 } else { 0x10 }, 0x32, 0x00];
    for ms in (0..600).step_by(33) {
        for id in 0..3 {
            w.send_as(ms, cam, id, CodecName::Av1, av1(ms == 0));
        }
    }
    assert!(w.pushes("viewer").iter().all(|p| p.0 == Some(0)));
    // Up to id 2: not at its inter frames, at its aggregation header's N bit.
    w.r.set_layer_limits(v, MediaKind::Video, max(2));
    for ms in (600..800).step_by(33) {
        for id in 0..3 {
            w.send_as(ms, cam, id, CodecName::Av1, av1(false));
        }
    }
    assert!(w.pushes("viewer").iter().all(|p| p.0 == Some(0)), "not yet");
    w.send_as(800, cam, 2, CodecName::Av1, av1(true));
    let got = w.pushes("viewer");
    assert_eq!(got.last().map(|p| p.0), Some(Some(2)));

    // H.263 tells no keyframes: the sink takes its first layer at any packet and keeps it
    // while it flows, whatever its limits say ...
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    w.r.set_layer_limits(v, MediaKind::Video, max(0));
    let h263 = vec![0x00, 0x00, 0x80];
    w.stream_as(0, 600, cam, &[0, 1, 2], &h263);
    assert!(w.pushes("viewer").iter().all(|p| p.0 == Some(0)));
    w.r.set_layer_limits(v, MediaKind::Video, max(2));
    w.stream_as(600, 900, cam, &[0, 1, 2], &h263);
    let got = w.pushes("viewer");
    assert!(
        !got.is_empty() && got.iter().all(|p| p.0 == Some(0)),
        "kept"
    );
    // ... and moves when it stops.
    let mut moved = false;
    for ms in (900..2500).step_by(33) {
        w.stream_as(ms, ms + 1, cam, &[1, 2], &h263);
        moved |= w.pushes("viewer").iter().any(|p| p.0 == Some(2));
    }
    assert!(moved, "to id 2 once id 0 stopped");
}

#[test]
fn a_transcoder_gets_its_lines_numbers_continuous_across_a_switch() {
    let mut w = World::new();
    w.r.set_transcoders(Arc::new(Maker(w.log.clone())));
    let cam = w.node("cam");
    let h264 = w.node_taking("h264", Some(CodecName::H264));
    w.r.connect(w.at(0), cam, MediaKind::Video, h264).unwrap();
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 500, cam, &[0, 1, 2]);
    let mut got = w.pushes("transcoder");
    assert!(
        !got.is_empty() && got.iter().all(|p| p.0 == Some(0)),
        "{got:?}"
    );
    // The top layer stops: the transcoder (a sink that gets the top layer) falls to the
    // 320x240 one, whose sequence numbers and timestamps are its own at the source.
    w.stream(528, 2000, cam, &[1, 2]);
    got.extend(w.pushes("transcoder"));
    assert_eq!(got.last().unwrap().0, Some(1), "{got:?}");
    continuous(&got);
}
