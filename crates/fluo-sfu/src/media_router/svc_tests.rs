//! SVC in the router: one VP9 stream with three spatial and three temporal layers, a sink
//! capped to the lowest spatial layer and one that gets everything; each on a continuous line
//! with markers where its pictures end, the capped one moving up at a key picture once its cap
//! is lifted.

use super::*;
use crate::descriptor::vp9_layers;
use crate::negotiate::SinkCaps;
use crate::port::CodecName;
use crate::simulcast::{ForwardedLayer, LayerLimits, SwitchReason};
use std::sync::Mutex;

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
}

impl Node for Sink {
    fn caps(&self, _: MediaKind) -> SinkCaps {
        SinkCaps::anything()
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
}

impl World {
    fn new() -> World {
        World {
            r: MediaRouter::new(),
            log: Log::default(),
            t0: Instant::now(),
            seq: 65_500,
            picture: 0,
        }
    }

    fn node(&mut self, name: &'static str) -> NodeId {
        let log = self.log.clone();
        self.r.add_node(name, Box::new(Sink { name, log }))
    }

    /// One picture at `ms`: three spatial layers of two packets each, the structure with
    /// their sizes on a key picture's first packet, the marker on the last packet. A key
    /// picture when `key` or when a keyframe was asked since the last one.
    fn picture(&mut self, ms: u64, src: NodeId, key: bool) {
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
            ssrc: 0x5c,
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
    w.r.set_layer_bandwidth_cap(v, MediaKind::Video, Some(1));
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
    // Each layer sends as much as the others here: one, two and three layers' worth.
    let near = |a: u64, b: u64| a.abs_diff(b) * 10 < b;
    assert!(near(r[1], 2 * r[0]) && near(r[2], 3 * r[0]), "{r:?}");
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

#[test]
fn an_av1_stream_of_one_spatial_layer_goes_whole_and_a_layered_one_drops_what_it_cannot_read() {
    use crate::dependency_descriptor::tests::{key_descriptor, l1t3_key_descriptor, mandatory};
    let mut w = World::new();
    let cam = w.node("cam");
    let low = w.node("low");
    w.r.connect(w.t0, cam, MediaKind::Video, low).unwrap();
    let max0 = LayerLimits {
        max: Some(0),
        preferred: None,
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
