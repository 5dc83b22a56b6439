//! SVC in the router: one VP9 stream with three spatial and three temporal layers, a sink
//! capped to the lowest spatial layer and one that gets everything; each on a continuous line
//! with markers where its pictures end, the capped one moving up at a key picture once its cap
//! is lifted.

use super::*;
use crate::descriptor::vp9_layers;
use crate::negotiate::SinkCaps;
use crate::port::CodecName;
use crate::simulcast::{ForwardedLayer, LayerLimits, SwitchReason};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

mod no_descriptor;

#[derive(Default)]
struct Seen {
    /// (node, header, marker, SID, TID) of every push.
    pushes: Vec<(&'static str, Header, bool, u8, u8)>,
    /// Keyframe requests of the whole stream (taken by the next picture, and never), and of
    /// one layer (none expected).
    keyframes: usize,
    asked: usize,
    layer_keyframes: usize,
    changes: Vec<(&'static str, ForwardedLayer)>,
    /// (node, shifted) of every packet skipped for it.
    skipped: Vec<(&'static str, bool)>,
}

type Log = Arc<Mutex<Seen>>;

struct Sink {
    name: &'static str,
    log: Log,
    /// It does not get the dependency descriptor while this is set (a sink named `no_dd*`:
    /// the world's flag, which a test clears to renegotiate with the descriptor).
    no_dd: Option<Arc<AtomicBool>>,
}

impl Node for Sink {
    fn caps(&self, _: MediaKind) -> SinkCaps {
        SinkCaps::anything()
    }
    fn reads_dependency_descriptor(&self, _: MediaKind) -> bool {
        !(self.no_dd.as_ref()).is_some_and(|f| f.load(Ordering::Relaxed))
    }
    fn push(&mut self, _: Instant, pkt: &Packet<'_>, header: Header) {
        // (An AV1 packet's payload reads as layer 0.)
        let l = vp9_layers(pkt.payload).unwrap_or_default();
        let push = (self.name, header, pkt.marker, l.sid, l.tid);
        self.log.lock().unwrap().pushes.push(push);
    }
    fn request_keyframe(&mut self, _: MediaKind) {
        let mut l = self.log.lock().unwrap();
        l.keyframes += 1;
        l.asked += 1;
    }
    fn request_layer_keyframe(&mut self, _: MediaKind, _: u8) {
        self.log.lock().unwrap().layer_keyframes += 1;
    }
    fn layer_changed(&mut self, _: MediaKind, layer: Option<&ForwardedLayer>) {
        if let Some(layer) = layer {
            let change = (self.name, layer.clone());
            self.log.lock().unwrap().changes.push(change);
        }
    }
    fn skipped(&mut self, _: &Packet<'_>, shifted: bool) {
        self.log.lock().unwrap().skipped.push((self.name, shifted));
    }
}

/// What a sink was told of its layer: rank, rid, size, reason.
type Told = (u8, Option<String>, Option<(u16, u16)>, SwitchReason);

const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];

/// The L1T3 pattern of temporal layers, with U set on T1 and T2 pictures.
const TIDS: [u8; 4] = [0, 2, 1, 2];

struct World {
    r: MediaRouter,
    log: Log,
    t0: Instant,
    seq: u16,
    picture: u16,
    /// The last packet lost on the way in: its sequence number, payload and picture.
    lost: Option<(u16, Vec<u8>, u16)>,
    ssrc: u32,
    /// Whether the `no_dd*` sinks lack the dependency descriptor.
    no_dd: Arc<AtomicBool>,
}

impl World {
    fn new() -> World {
        World {
            r: MediaRouter::new(),
            log: Log::default(),
            t0: Instant::now(),
            seq: 65_500,
            picture: 0,
            lost: None,
            ssrc: 0x5c,
            no_dd: Arc::new(AtomicBool::new(true)),
        }
    }

    fn node(&mut self, name: &'static str) -> NodeId {
        let log = self.log.clone();
        let no_dd = name.starts_with("no_dd").then(|| self.no_dd.clone());
        self.r.add_node(name, Box::new(Sink { name, log, no_dd }))
    }

    /// One picture at `ms`: three spatial layers of two packets each, the structure with
    /// their sizes on a key picture's first packet, the marker on the last packet. A key
    /// picture when `key` or when a keyframe was asked since the last one.
    fn picture(&mut self, ms: u64, src: NodeId, key: bool) {
        self.picture_losing(ms, src, key, None);
    }

    /// [`World::picture`] with its packet number `lost` (0 to 5) lost on the way in: its
    /// sequence number is used, the packet not sent.
    fn picture_losing(&mut self, ms: u64, src: NodeId, key: bool, lost: Option<usize>) {
        let key = key || std::mem::take(&mut self.log.lock().unwrap().keyframes) > 0;
        let n = self.picture;
        self.picture = n.wrapping_add(1);
        let tid = if key { 0 } else { TIDS[usize::from(n % 4)] };
        for sid in 0..3u8 {
            for part in 0..2 {
                let (begins, ends) = (part == 0, part == 1);
                let b0 = 0xa0
                    | if key { 0 } else { 0x40 }
                    | if begins { 0x08 } else { 0 }
                    | if ends { 0x04 } else { 0 };
                let ss = key && sid == 0 && begins;
                let l = tid << 5 | u8::from(tid > 0) << 4 | sid << 1 | u8::from(sid > 0);
                let mut p = vec![b0 | if ss { 0x02 } else { 0 }, 0x80, n as u8, l, 0x00];
                if ss {
                    p.push(0x50);
                    for (w, h) in SIZES {
                        p.extend_from_slice(&w.to_be_bytes());
                        p.extend_from_slice(&h.to_be_bytes());
                    }
                }
                p.extend_from_slice(&[0x11; 20]);
                if lost == Some(usize::from(sid) * 2 + part) {
                    self.lost = Some((self.seq, p, n));
                    self.seq = self.seq.wrapping_add(1);
                    continue;
                }
                self.send(ms, src, p, sid == 2 && ends, n);
            }
        }
    }

    fn send(&mut self, ms: u64, src: NodeId, p: Vec<u8>, marker: bool, n: u16) {
        let payload: Arc<[u8]> = Arc::from(p);
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        let pkt = Packet {
            kind: MediaKind::Video,
            codec: Codec::new(CodecName::Vp9),
            seq,
            ts: u32::from(n) * 3000,
            ssrc: self.ssrc,
            marker,
            payload: &payload,
            entered: None,
            extensions: None,
            dd: None,
            layer: None,
        };
        self.r
            .forward(self.t0 + Duration::from_millis(ms), src, &pkt);
    }

    /// An AV1 packet at `ms` of picture `n` with the dependency descriptor `dd`.
    fn send_av1(&mut self, ms: u64, src: NodeId, dd: &[u8], marker: bool, n: u32) {
        let payload: Arc<[u8]> = Arc::from(vec![0x10, 0x32, 0x00, 0x11]);
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        let pkt = Packet {
            kind: MediaKind::Video,
            codec: Codec::new(CodecName::Av1),
            seq,
            ts: n * 3000,
            ssrc: 0xa1,
            marker,
            payload: &payload,
            entered: None,
            extensions: None,
            dd: Some(dd),
            layer: None,
        };
        self.r
            .forward(self.t0 + Duration::from_millis(ms), src, &pkt);
    }

    /// The packet lost last comes at `ms` (resent after a NACK), under its own number.
    fn resend(&mut self, ms: u64, src: NodeId) {
        let (seq, p, n) = self.lost.take().expect("a packet was lost");
        let next = std::mem::replace(&mut self.seq, seq);
        self.send(ms, src, p, false, n);
        self.seq = next;
    }

    /// Pictures every 33 ms from `from` until `to`.
    fn stream(&mut self, from: u64, to: u64, src: NodeId) {
        for ms in (from..to).step_by(33) {
            self.picture(ms, src, false);
        }
    }

    fn pushes(&self, name: &str) -> Vec<(Header, bool, u8, u8)> {
        let mut l = self.log.lock().unwrap();
        let (mine, rest) = l.pushes.drain(..).partition(|p| p.0 == name);
        l.pushes = rest;
        mine.into_iter().map(|p| (p.1, p.2, p.3, p.4)).collect()
    }

    fn changes(&self, name: &str) -> Vec<Told> {
        let l = self.log.lock().unwrap();
        (l.changes.iter().filter(|c| c.0 == name))
            .map(|(_, c)| (c.rank, c.rid.clone(), c.size, c.reason))
            .collect()
    }
}

/// Sequence numbers go up by one; the marker is on the last packet of each picture and only
/// there (the packet before one of a new timestamp, and the last).
fn continuous_with_markers(h: &[(Header, bool, u8, u8)]) {
    for w in h.windows(2) {
        assert_eq!(w[1].0.seq, w[0].0.seq.wrapping_add(1), "{w:?}");
        let ends = w[1].0.ts != w[0].0.ts;
        assert_eq!(
            w[0].1, ends,
            "the marker ends a picture and only that: {w:?}"
        );
    }
    assert!(h.last().is_some_and(|p| p.1));
}

#[test]
fn each_sink_gets_the_layers_up_to_its_own_on_a_continuous_line() {
    let mut w = World::new();
    let cam = w.node("cam");
    let (low, top) = (w.node("low"), w.node("top"));
    w.r.connect(w.t0, cam, MediaKind::Video, low).unwrap();
    w.r.connect(w.t0, cam, MediaKind::Video, top).unwrap();
    let max0 = LayerLimits {
        max: Some(0),
        preferred: None,
        max_temporal: None,
    };
    w.r.set_layer_limits(low, MediaKind::Video, max0);
    w.picture(0, cam, true);
    w.stream(33, 1000, cam);
    let l = w.pushes("low");
    let t = w.pushes("top");
    assert!(l.len() > 40 && t.len() > 120, "{} {}", l.len(), t.len());
    assert!(l.iter().all(|p| p.2 == 0), "only SID 0: {l:?}");
    assert_eq!(t.iter().filter(|p| p.2 == 2).count() * 3, t.len());
    continuous_with_markers(&l);
    continuous_with_markers(&t);
    // Every temporal layer of the pictures it got (they begin at a key picture).
    assert!(t.iter().any(|p| p.3 == 2) && l.iter().any(|p| p.3 == 2));
    // Both told their layer: the rank is the spatial layer, no rid, the structure's size.
    let start = SwitchReason::Start;
    assert_eq!(w.changes("low"), [(0, None, Some(SIZES[0]), start)]);
    assert_eq!(w.changes("top"), [(2, None, Some(SIZES[2]), start)]);
    // The line of the capped sink went lower at each skipped run.
    let skipped = w.log.lock().unwrap().skipped.clone();
    assert!(skipped.contains(&("low", true)));
    assert!(skipped.iter().all(|s| s.0 == "low" || !s.1));
    assert_eq!(
        w.log.lock().unwrap().layer_keyframes,
        0,
        "one stream: no layer's own"
    );

    // The cap lifted: the top layer from the next key picture on, asked at once.
    w.r.set_layer_limits(low, MediaKind::Video, LayerLimits::default());
    let last = l.last().unwrap().0.seq;
    w.stream(1000, 1100, cam);
    let l2 = w.pushes("low");
    assert_eq!(l2[0].0.seq, last.wrapping_add(1));
    continuous_with_markers(&l2);
    assert!(l2.iter().any(|p| p.2 == 2), "up at the key picture");
    let firsts: Vec<u8> = l2.iter().map(|p| p.2).take(6).collect();
    assert!(firsts.contains(&0));
    let limit = SwitchReason::Limit;
    assert_eq!(w.changes("low")[1], (2, None, Some(SIZES[2]), limit));
    // Once up, it gets what the top sink gets.
    let t2 = w.pushes("top");
    let n = l2.iter().filter(|p| p.2 == 2).count();
    assert!(n * 3 <= t2.len() && n > 0);
}

#[test]
fn a_sink_capped_by_bandwidth_goes_down_at_the_next_picture_without_a_keyframe() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("v");
    w.r.connect(w.t0, cam, MediaKind::Video, v).unwrap();
    w.picture(0, cam, true);
    w.stream(33, 500, cam);
    assert!(w.pushes("v").iter().any(|p| p.2 == 2));
    let asked = w.log.lock().unwrap().asked;
    // Point 5 of the nine (three spatial layers with three temporal layers each): S1 with
    // every temporal layer.
    w.r.set_layer_bandwidth_cap(v, MediaKind::Video, Some(5));
    w.stream(500, 700, cam);
    let p = w.pushes("v");
    assert!(p.iter().all(|p| p.2 <= 1) && p.iter().any(|p| p.2 == 1));
    continuous_with_markers(&p);
    assert_eq!(w.log.lock().unwrap().asked, asked, "no keyframe to go down");
    let bw = SwitchReason::Bandwidth;
    assert_eq!(
        w.changes("v").last().unwrap(),
        &(1, None, Some(SIZES[1]), bw)
    );
}

#[test]
fn the_rate_of_a_spatial_layer_counts_the_layers_below_it() {
    let mut w = World::new();
    w.r.measure_layer_rates();
    let cam = w.node("cam");
    let v = w.node("v");
    w.r.connect(w.t0, cam, MediaKind::Video, v).unwrap();
    w.picture(0, cam, true);
    w.stream(33, 2600, cam);
    let (rates, complete) = w.r.layer_rates(v, MediaKind::Video).unwrap();
    assert!(complete);
    let r: Vec<u64> = rates.iter().map(|r| r.unwrap()).collect();
    // By spatial layer, each with its three temporal layers: T0 is a quarter of the
    // pictures, T1 another quarter, T2 half.
    assert_eq!(r.len(), 9, "{r:?}");
    let all = |s: usize| r[s * 3 + 2];
    // Each layer sends as much as the others here: one, two and three layers' worth.
    let near = |a: u64, b: u64| a.abs_diff(b) * 10 < b;
    assert!(
        near(all(1), 2 * all(0)) && near(all(2), 3 * all(0)),
        "{r:?}"
    );
    for s in 0..3 {
        assert!(near(4 * r[s * 3], all(s)), "T0 of S{s}: {r:?}");
        assert!(near(2 * r[s * 3 + 1], all(s)), "T0 and T1 of S{s}: {r:?}");
    }
}

/// The temporal layer `name` was told it is held at, at each change.
fn temporals(w: &World, name: &str) -> Vec<(u8, Option<u8>, SwitchReason)> {
    let l = w.log.lock().unwrap();
    (l.changes.iter().filter(|c| c.0 == name))
        .map(|(_, c)| (c.rank, c.temporal, c.reason))
        .collect()
}

#[test]
fn a_sink_capped_to_a_temporal_layer_gets_its_pictures_only_and_is_told_so() {
    let mut w = World::new();
    let cam = w.node("cam");
    let (low, top) = (w.node("low"), w.node("top"));
    w.r.connect(w.t0, cam, MediaKind::Video, low).unwrap();
    w.r.connect(w.t0, cam, MediaKind::Video, top).unwrap();
    let t = |max_temporal| LayerLimits {
        max_temporal,
        ..LayerLimits::default()
    };
    w.r.set_layer_limits(low, MediaKind::Video, t(Some(0)));
    w.picture(0, cam, true);
    w.stream(33, 1000, cam);
    let (l, all) = (w.pushes("low"), w.pushes("top"));
    // Every spatial layer, a quarter of the pictures: those of T0.
    assert!(
        l.iter().all(|p| p.3 == 0) && l.iter().any(|p| p.2 == 2),
        "{l:?}"
    );
    let pictures = |h: &[(Header, bool, u8, u8)]| h.iter().filter(|p| p.1).count();
    let (lp, ap) = (pictures(&l), pictures(&all));
    assert!(
        lp >= 7 && lp * 3 < ap,
        "the key picture and T0's: {lp} of {ap}"
    );
    continuous_with_markers(&l);
    continuous_with_markers(&all);
    let (start, limit) = (SwitchReason::Start, SwitchReason::Limit);
    // At the key picture its stream has one temporal layer as far as anyone knows; held
    // at T0 once the others came.
    assert_eq!(
        temporals(&w, "low"),
        [(2, None, start), (2, Some(0), start)]
    );
    assert_eq!(temporals(&w, "top"), [(2, None, start)], "not held");

    // Up to T1: at the next T1 picture (U set), no keyframe asked.
    let asked = w.log.lock().unwrap().asked;
    w.r.set_layer_limits(low, MediaKind::Video, t(Some(1)));
    w.stream(1000, 1500, cam);
    let l = w.pushes("low");
    assert!(
        l.iter().all(|p| p.3 <= 1) && l.iter().any(|p| p.3 == 1),
        "{l:?}"
    );
    continuous_with_markers(&l);
    assert_eq!(
        w.log.lock().unwrap().asked,
        asked,
        "no keyframe for a temporal move"
    );
    assert_eq!(temporals(&w, "low")[2..], [(2, Some(1), limit)]);
    // Lifted: every temporal layer (told without one), then down to T0 at the next picture.
    w.r.set_layer_limits(low, MediaKind::Video, t(None));
    w.stream(1500, 2000, cam);
    let l = w.pushes("low");
    assert!(l.iter().any(|p| p.3 == 2));
    assert_eq!(temporals(&w, "low")[3..], [(2, None, limit)]);
    w.r.set_layer_limits(low, MediaKind::Video, t(Some(0)));
    w.stream(2000, 2200, cam);
    let l2 = w.pushes("low");
    assert!(l2.iter().all(|p| p.3 == 0), "{l2:?}");
    let mut both = l;
    both.extend(l2);
    continuous_with_markers(&both);
}

#[test]
fn the_bandwidth_drops_temporal_layers_of_a_spatial_layer_before_the_spatial_layer() {
    let mut w = World::new();
    w.r.measure_layer_rates();
    let cam = w.node("cam");
    let v = w.node("v");
    w.r.connect(w.t0, cam, MediaKind::Video, v).unwrap();
    w.picture(0, cam, true);
    w.stream(33, 2600, cam);
    w.pushes("v");
    // Point 7 of the nine: S2 at T1.
    w.r.set_layer_bandwidth_cap(v, MediaKind::Video, Some(7));
    w.stream(2600, 3200, cam);
    let p = w.pushes("v");
    assert!(p.iter().all(|p| p.3 <= 1) && p.iter().any(|p| p.2 == 2 && p.3 == 1));
    continuous_with_markers(&p);
    let bw = SwitchReason::Bandwidth;
    assert_eq!(temporals(&w, "v").last().unwrap(), &(2, Some(1), bw));
    // Point 5: S1 with every temporal layer.
    w.r.set_layer_bandwidth_cap(v, MediaKind::Video, Some(5));
    w.stream(3200, 3800, cam);
    let p = w.pushes("v");
    assert!(p.iter().all(|p| p.2 <= 1) && p.iter().any(|p| p.2 == 1 && p.3 == 2));
    assert_eq!(temporals(&w, "v").last().unwrap(), &(1, None, bw));
    // Point 0: S0 at T0.
    w.r.set_layer_bandwidth_cap(v, MediaKind::Video, Some(0));
    w.stream(3800, 4400, cam);
    let p = w.pushes("v");
    assert!(p.iter().all(|p| p.2 == 0 && p.3 == 0) && !p.is_empty());
    assert_eq!(temporals(&w, "v").last().unwrap(), &(0, Some(0), bw));
}

#[test]
fn a_stream_of_one_spatial_layer_does_not_make_a_layered_publisher() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("v");
    w.r.connect(w.t0, cam, MediaKind::Video, v).unwrap();
    // L1T3: the layer byte with temporal layers, SID 0 only, the structure (one layer,
    // 320x180) on key pictures; a key picture at the start and when asked.
    for n in 0..30u16 {
        let asked = std::mem::take(&mut w.log.lock().unwrap().keyframes) > 0;
        let key = n == 0 || asked;
        let b0 = 0xac | if key { 0x02 } else { 0x40 };
        let tid = if key { 0 } else { TIDS[usize::from(n % 4)] };
        let l = tid << 5 | u8::from(tid > 0) << 4;
        let mut p = vec![b0, 0x80, n as u8, l, 0x00];
        if key {
            p.extend_from_slice(&[0x10, 0x01, 0x40, 0x00, 0xb4]);
        }
        p.extend_from_slice(&[0x11, 0x11]);
        w.send(u64::from(n) * 33, cam, p, true, n);
    }
    let got = w.pushes("v");
    assert!(got.len() >= 25 && got.iter().all(|p| p.2 == 0), "{got:?}");
    // Its viewers have no lower spatial layer to take: their REMB bounds it.
    assert!(!w.r.sends_svc(cam));
    // Three spatial layers: each viewer gets those it can take instead.
    w.picture(1000, cam, true);
    assert!(w.r.sends_svc(cam));
}

/// Gaps in a line's sequence numbers.
fn gaps(h: &[(Header, bool, u8, u8)]) -> usize {
    h.windows(2)
        .filter(|w| w[1].0.seq != w[0].0.seq.wrapping_add(1))
        .count()
}

#[test]
fn an_upper_layer_packet_lost_on_the_way_in_leaves_no_gap_on_a_line_below_it() {
    let mut w = World::new();
    let cam = w.node("cam");
    let (low, top) = (w.node("low"), w.node("top"));
    w.r.connect(w.t0, cam, MediaKind::Video, low).unwrap();
    w.r.connect(w.t0, cam, MediaKind::Video, top).unwrap();
    let max0 = LayerLimits {
        max: Some(0),
        ..LayerLimits::default()
    };
    w.r.set_layer_limits(low, MediaKind::Video, max0);
    w.picture(0, cam, true);
    w.stream(33, 300, cam);
    // S2's first packet lost (between S1's end and S2's end: S2), then S1's last (between
    // S1's first and S2's first: S1), each in a T0 and a T2 picture.
    w.picture_losing(300, cam, false, Some(4));
    w.picture_losing(333, cam, false, Some(4));
    w.picture_losing(366, cam, false, Some(3));
    w.picture_losing(400, cam, false, Some(3));
    w.stream(433, 600, cam);
    let (l, t) = (w.pushes("low"), w.pushes("top"));
    assert!(l.iter().all(|p| p.2 == 0));
    continuous_with_markers(&l);
    // The sink that gets those layers waits for them (a NACK, the publisher's resend).
    assert_eq!(gaps(&t), 4);
    // A packet of S0 lost: a gap for both.
    w.picture_losing(600, cam, false, Some(1));
    w.stream(633, 700, cam);
    let (l, t) = (w.pushes("low"), w.pushes("top"));
    assert_eq!((gaps(&l), gaps(&t)), (1, 1));
    // Lost across pictures (S2's last and the next picture's first): not told, a gap for
    // both.
    let n = w.seq;
    w.picture_losing(700, cam, false, Some(5));
    w.picture_losing(733, cam, false, Some(0));
    w.stream(766, 800, cam);
    assert_eq!(w.seq.wrapping_sub(n), 24, "four pictures of six packets");
    let (l, t) = (w.pushes("low"), w.pushes("top"));
    assert_eq!((gaps(&l), gaps(&t)), (1, 1));
}

#[test]
fn a_packet_resent_late_neither_takes_a_sink_up_nor_gets_a_number_twice() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("v");
    w.r.connect(w.t0, cam, MediaKind::Video, v).unwrap();
    let max0 = LayerLimits {
        max: Some(0),
        ..LayerLimits::default()
    };
    w.r.set_layer_limits(v, MediaKind::Video, max0);
    w.picture(0, cam, true);
    w.stream(33, 300, cam);
    // The cap lifted: the key picture it asks for comes without the first packet of its S1.
    // The sink, which would have gone up to S2 within it, stays at S0 (the rest of S1 and S2
    // skipped, the hole with them) and asks for another.
    w.r.set_layer_limits(v, MediaKind::Video, LayerLimits::default());
    w.picture(300, cam, false);
    w.picture_losing(333, cam, false, Some(2));
    // The publisher is slow to send it: inter pictures meanwhile, and the lost packet comes
    // again (a NACK's resend) between two of them.
    for ms in [366, 400, 433] {
        w.log.lock().unwrap().keyframes = 0;
        w.picture(ms, cam, false);
        if ms == 366 {
            w.resend(380, cam);
        }
    }
    let p = w.pushes("v");
    // One number each, none twice (not checked: the marker, which the key picture's S0
    // went without, the sink being on its way up to S2 within it).
    assert!(
        p.windows(2)
            .all(|x| x[1].0.seq == x[0].0.seq.wrapping_add(1)),
        "{p:?}"
    );
    // S1 of an inter picture is of no use without S1 of the key picture: the sink stays at
    // S0 and is told of S0 only.
    assert!(p.iter().all(|x| x.2 == 0), "{p:?}");
    assert_eq!(
        w.changes("v"),
        [(0, None, Some(SIZES[0]), SwitchReason::Start)]
    );
    // The next key picture takes it up, on the same line.
    let last = p.last().unwrap().0.seq;
    w.picture(466, cam, true);
    let p = w.pushes("v");
    assert_eq!(p[0].0.seq, last.wrapping_add(1));
    assert_eq!(p.len(), 6, "the whole key picture");
    continuous_with_markers(&p);
}

#[test]
fn a_stream_restarted_under_lower_numbers_is_not_taken_for_late_packets() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("v");
    w.r.connect(w.t0, cam, MediaKind::Video, v).unwrap();
    w.picture(0, cam, true);
    w.stream(33, 300, cam);
    assert!(!w.pushes("v").is_empty());
    // A new SSRC numbered below the old one: its packets are not late, a sink that comes
    // now starts at its key picture.
    (w.ssrc, w.seq) = (0x77, w.seq.wrapping_sub(1000));
    let max0 = LayerLimits {
        max: Some(0),
        ..LayerLimits::default()
    };
    w.r.set_layer_limits(v, MediaKind::Video, max0);
    let late = w.node("late");
    w.r.connect(
        w.t0 + Duration::from_millis(300),
        cam,
        MediaKind::Video,
        late,
    )
    .unwrap();
    w.stream(300, 500, cam);
    let p = w.pushes("late");
    assert!(p.iter().any(|x| x.2 == 2), "{p:?}");
    continuous_with_markers(&p);
    // The sink that was there before, capped to S0 as the new SSRC begins, goes down at
    // once: its filter tells late packets by the same rule (before, it took every packet of
    // the new SSRC for a late one, which changes no layer: it stayed at S2).
    let p = w.pushes("v");
    assert!(p.len() >= 12 && p.iter().all(|x| x.2 == 0), "{p:?}");
    continuous_with_markers(&p);
    // Under the same SSRC, a jump back (a publisher that restarted its numbering): once
    // more packets than a few pictures' came below the newest, it goes on from them, and a
    // sink that comes then starts too.
    w.seq = w.seq.wrapping_sub(1000);
    w.r.set_layer_limits(v, MediaKind::Video, LayerLimits::default());
    let later = w.node("later");
    w.r.connect(
        w.t0 + Duration::from_millis(500),
        cam,
        MediaKind::Video,
        later,
    )
    .unwrap();
    w.stream(500, 1000, cam);
    let p = w.pushes("later");
    assert!(p.iter().any(|x| x.2 == 2), "{p:?}");
    continuous_with_markers(&p);
    // And the sink that was there before, its cap lifted as the numbering jumped back, is
    // back at S2 once the run of packets below the newest made the restart (before, it
    // stayed at S0 until the numbering passed the old newest, 1000 packets on).
    let p = w.pushes("v");
    assert_eq!(p.last().map(|x| x.2), Some(2), "{p:?}");
    continuous_with_markers(&p);
}

#[test]
fn an_av1_stream_of_one_spatial_layer_goes_whole_and_a_layered_one_drops_what_it_cannot_read() {
    use crate::dependency_descriptor::tests::{key_descriptor, l1t3_key_descriptor, mandatory};
    let mut w = World::new();
    let cam = w.node("cam");
    let low = w.node("low");
    w.r.connect(w.t0, cam, MediaKind::Video, low).unwrap();
    let max0 = LayerLimits {
        max: Some(0),
        ..LayerLimits::default()
    };
    w.r.set_layer_limits(low, MediaKind::Video, max0);
    // L1T3: no spatial layer to choose, every packet goes (the plain path).
    w.send_av1(0, cam, &l1t3_key_descriptor(), true, 0);
    for (i, t) in [3u8, 2, 3, 1].into_iter().enumerate() {
        let dd = mandatory(true, true, t, 2 + i as u16);
        w.send_av1(33 * (i as u64 + 1), cam, &dd, true, 1 + i as u32);
    }
    assert_eq!(w.pushes("low").len(), 5);
    assert!(
        !w.r.sends_svc(cam),
        "one spatial layer: not a layered publisher"
    );
    // A descriptor that cannot be read while the stream is not layered: it goes whole.
    w.send_av1(200, cam, &[0x80], true, 6);
    assert_eq!(w.pushes("low").len(), 1);
    // L3T3_KEY key pictures: layered from then on, the capped sink gets S0 only.
    for (k, ms) in [(7u32, 233u64), (8, 266)] {
        let mut key = key_descriptor(0);
        key[0] |= 0x40;
        w.send_av1(ms, cam, &key, false, k);
        w.send_av1(ms, cam, &mandatory(true, true, 4, 1001), false, k);
        w.send_av1(ms, cam, &mandatory(true, true, 8, 1002), true, k);
    }
    let got = w.pushes("low");
    assert!(w.r.sends_svc(cam));
    assert_eq!(got.len(), 1, "S0 of the second key picture: {got:?}");
    assert!(got[0].1, "its end, marked");
    // Now a descriptor that cannot be read (a template of no known structure) is dropped.
    w.send_av1(300, cam, &mandatory(true, true, 40, 1003), true, 9);
    w.send_av1(300, cam, &[0x80], true, 9);
    assert_eq!(w.pushes("low").len(), 0);
}
