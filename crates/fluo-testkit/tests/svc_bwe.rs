//! Each viewer's bandwidth estimate choosing its spatial layer of an SVC stream (`--bwe on`),
//! in memory with virtual time: a publisher sends one VP9 stream of three spatial layers (600,
//! 800 and 3000 bytes a layer frame at 30 pictures a second: about 155 kbit/s for S0, 360 with
//! S1, 1.1 Mbit/s with S2, the rates the router gives the estimate being cumulative) and three
//! temporal layers (T0 T2 T1 T2: T0 a quarter of the pictures, T1 a quarter, T2 half), two
//! receive-only viewers return TWCC feedback, one behind a limited link (a token bucket with a
//! 15 kB queue that drops when full). The estimate drops temporal layers of a spatial layer
//! before the spatial layer: behind 300 kbit/s the weak one ends below S1's full frame rate
//! (S1 at T1 is about 180 kbit/s), behind 900 kbit/s on S2 at a lower frame rate; without loss
//! at the end and on a continuous line. The other keeps everything.
use fluo_sfu::descriptor::vp9_layers;
use fluo_testkit::{Link, RtpSeen, World};
use serde_json::{json, Value};
use std::time::Duration;
use str0m::media::Direction;

/// S1's own rate (about 200 kbit/s) fits the weak viewer's estimate, S0 and S1 together
/// (about 360) do not: only cumulative rates keep it on S0.
const LAYERS: [((u16, u16), usize); 3] =
    [((320, 180), 600), ((640, 360), 800), ((1280, 720), 3000)];

fn tap(c: str0m::RtcConfig) -> str0m::RtcConfig {
    c.enable_raw_packets(true)
}

fn video(w: &World, b: usize) -> Vec<RtpSeen> {
    (w.browsers[b].rtp_in.iter())
        .filter(|r| r.video)
        .copied()
        .collect()
}

fn sid(r: &RtpSeen) -> u8 {
    vp9_layers(&r.head).expect("a VP9 payload descriptor").sid
}

fn outbound(w: &mut World, ep: &str) -> Value {
    let stats = w.invoke(ep, "getStats", json!({"mediaType": "VIDEO"}));
    let out = (stats.as_object().unwrap().values())
        .find(|v| v["type"] == "outboundrtp")
        .cloned();
    out.unwrap_or_else(|| panic!("an outbound entry: {stats}"))
}

/// A viewer's video packets from index `from`, in sequence order, each once.
fn video_from(w: &World, b: usize, from: usize) -> Vec<RtpSeen> {
    let mut v = video(w, b)[from..].to_vec();
    v.sort_by_key(|r| r.seq);
    v.dedup_by_key(|r| r.seq);
    v
}

fn tid(r: &RtpSeen) -> u8 {
    vp9_layers(&r.head).expect("a VP9 payload descriptor").tid
}

/// Every sequence number from the first to the last, the marker on each picture's last
/// packet and only there.
fn continuous_with_markers(seen: &[RtpSeen]) {
    for pair in seen.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "no gap: {pair:?}");
        let d = pair[1].ts.wrapping_sub(pair[0].ts);
        assert_eq!(
            pair[0].marker,
            d != 0,
            "the marker ends a picture: {pair:?}"
        );
    }
}

/// The SVC publisher ([`LAYERS`]) negotiated on endpoint `pub_ep`: its browser's index.
fn svc_publisher(w: &mut World, pub_ep: &str) -> usize {
    let publisher = w.add_browser("pub", false);
    let cand = w.browsers[publisher].candidate_json();
    w.invoke(pub_ep, "addIceCandidate", json!({"candidate": cand}));
    let offer = w.browsers[publisher].offer_svc(Direction::SendOnly, &LAYERS);
    let answer = w.invoke(pub_ep, "processOffer", json!({"offer": offer}));
    w.browsers[publisher].accept_answer(answer.as_str().unwrap());
    w.invoke(pub_ep, "gatherCandidates", json!({}));
    publisher
}

/// The publisher and the two viewers, the weak one behind `bps`, after 6 s and 4 s more.
struct Run {
    w: World,
    weak: usize,
    strong: usize,
    weak_ep: String,
    strong_ep: String,
    /// What the viewers had received, and the weak's link had dropped, after 6 s.
    before: (usize, usize, u64),
}

fn run(bps: u64) -> Run {
    run_in(fluo_rtc::BweMode::On, bps)
}

/// [`run`] with the server's `--bwe` mode `mode`.
fn run_in(mode: fluo_rtc::BweMode, bps: u64) -> Run {
    let mut w = World::with_bwe_mode(mode);
    w.delay = Duration::from_millis(10);
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let weak_ep = w.create("WebRtcEndpoint", Some(&p));
    let strong_ep = w.create("WebRtcEndpoint", Some(&p));
    let publisher = svc_publisher(&mut w, &pub_ep);
    let mut viewers = vec![];
    for (name, ep) in [("weak", &weak_ep), ("strong", &strong_ep)] {
        let b = w.add_browser_with(name, true, tap);
        w.negotiate_browser_offer(b, ep, Direction::RecvOnly);
        w.invoke(&pub_ep, "connect", json!({"sink": ep}));
        viewers.push(b);
    }
    let (weak, strong) = (viewers[0], viewers[1]);
    assert!(w.connect_all(Duration::from_secs(5)));
    w.links.insert(weak, Link::new(bps, 15_000));
    w.stream(&[publisher], Duration::from_secs(6));
    let dropped = w.links[&weak].dropped;
    let before = (video(&w, weak).len(), video(&w, strong).len(), dropped);
    w.stream(&[publisher], Duration::from_secs(4));
    Run {
        w,
        weak,
        strong,
        weak_ep,
        strong_ep,
        before,
    }
}

impl Run {
    /// The weak viewer's last 4 s: its packets, checked continuous and without loss.
    fn weak_last(&self) -> Vec<RtpSeen> {
        let last = video_from(&self.w, self.weak, self.before.0);
        let dropped = self.w.links[&self.weak].dropped;
        println!(
            "weak: {} packets over the last 4 s, dropped by its link {} before, {} after",
            last.len(),
            self.before.2,
            dropped - self.before.2
        );
        assert!(last.len() > 4 * 10, "video flows: {}", last.len());
        assert_eq!(dropped, self.before.2, "no loss at the end");
        continuous_with_markers(&last);
        last
    }

    /// The strong viewer got every spatial and temporal layer over the last 4 s.
    fn strong_has_all(&mut self) {
        let last = video_from(&self.w, self.strong, self.before.1);
        for s in 0..3 {
            assert!(last.iter().any(|r| sid(r) == s), "the strong gets S{s}");
        }
        assert!(last.iter().any(|r| tid(r) == 2), "and T2");
        let out = outbound(&mut self.w, &self.strong_ep.clone());
        assert_eq!(out["fluoLayer"]["layer"], 2, "{out}");
        assert!(out["fluoLayer"].get("temporalLayer").is_none(), "{out}");
    }

    /// The weak viewer's getStats entry, its layer moved by its estimate.
    fn weak_stats(&mut self) -> Value {
        let out = outbound(&mut self.w, &self.weak_ep.clone());
        assert_eq!(out["fluoLayer"]["reason"], "BANDWIDTH", "{out}");
        let est = out["fluoBandwidthEstimate"].as_u64().unwrap();
        println!("weak estimate {est} bit/s, {}", out["fluoLayer"]);
        out
    }
}

#[test]
fn a_viewer_behind_300_kbits_gets_less_than_the_second_spatial_layer_the_other_keeps_the_top() {
    behind_300_kbits(fluo_rtc::BweMode::On);
}

/// The same with `--bwe auto` (the default), whose estimator starts cold once the stream is
/// layered, while the top layer already fills the queue (R44-auto: 5 of 10 runs passed, ALR
/// probes of 30 ms reading 339-746 kbit/s over the 300 kbit/s link lifted the cap).
#[test]
fn in_auto_a_viewer_behind_300_kbits_gets_less_than_the_second_spatial_layer() {
    behind_300_kbits(fluo_rtc::BweMode::Auto);
}

fn behind_300_kbits(mode: fluo_rtc::BweMode) {
    let mut r = run_in(mode, 300_000);
    let last = r.weak_last();
    // S1 with every temporal layer is about 355 kbit/s: below that point (S1 at T1 or T0,
    // or S0).
    let points: Vec<(u8, u8)> = last.iter().map(|p| (sid(p), tid(p))).collect();
    assert!(
        points.iter().all(|(s, t)| *s == 0 || (*s == 1 && *t <= 1)),
        "{points:?}"
    );
    let out = r.weak_stats();
    let est = out["fluoBandwidthEstimate"].as_u64().unwrap();
    assert!((60_000..450_000).contains(&est), "estimate {est}");
    let layer = &out["fluoLayer"];
    assert!(
        layer["layer"] == 0 || matches!(layer["temporalLayer"].as_u64(), Some(0 | 1)),
        "{out}"
    );
    r.strong_has_all();
}

#[test]
fn a_viewer_behind_900_kbits_keeps_the_top_spatial_layer_at_a_lower_frame_rate() {
    let mut r = run(900_000);
    let last = r.weak_last();
    // Everything is about 1.1 Mbit/s, S2 at T1 about 550 and at T0 about 280: the top
    // spatial layer at a lower frame rate rather than a lower spatial layer.
    assert!(last.iter().any(|p| sid(p) == 2), "S2 kept");
    assert!(last.iter().all(|p| tid(p) <= 1), "T2 dropped");
    let ts: std::collections::BTreeSet<u32> = last.iter().map(|p| p.ts).collect();
    println!("weak: {} pictures over the last 4 s", ts.len());
    assert!(ts.len() <= 4 * 16, "{} pictures", ts.len());
    let out = r.weak_stats();
    let layer = &out["fluoLayer"];
    assert_eq!(layer["layer"], 2, "{out}");
    assert!(
        matches!(layer["temporalLayer"].as_u64(), Some(0 | 1)),
        "{out}"
    );
    r.strong_has_all();
}

/// With `--bwe auto` (the default) an SVC stream's viewer is estimated from the first packet
/// of its second spatial layer, not from its next timer up to a second later: 300 ms into
/// the stream its packets carry transport-wide sequence numbers, it returns TWCC feedback
/// and its estimator runs (getStats shows no estimate yet: it is cold for a second).
#[test]
fn in_auto_an_svc_streams_viewer_is_numbered_from_its_second_spatial_layer_on() {
    let mut w = World::with_bwe_mode(fluo_rtc::BweMode::Auto);
    w.delay = Duration::from_millis(10);
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let view_ep = w.create("WebRtcEndpoint", Some(&p));
    let publisher = svc_publisher(&mut w, &pub_ep);
    let v = w.add_browser_with("viewer", true, tap);
    w.negotiate_browser_offer(v, &view_ep, Direction::RecvOnly);
    w.invoke(&pub_ep, "connect", json!({"sink": view_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_millis(300));

    let seen = video(&w, v);
    let numbered = w.browsers[v].twcc_numbered_in;
    println!("{} video packets, {numbered} numbered", seen.len());
    assert!(seen.iter().any(|r| sid(r) == 1), "S1 flows");
    assert!(
        numbered * 2 > seen.len() as u64,
        "most of the first 300 ms numbered: {numbered} of {}",
        seen.len()
    );
    assert!(w.browsers[v].feedback_sent.twcc > 0, "TWCC feedback");
}

/// With `--bwe auto` a viewer connected to an SVC stream that is layered already is estimated
/// from the first packet its route forwards (the router announces the route as it announces a
/// source that becomes layered), not from its next timer: measured in virtual time from the
/// `connect` to its first packet carrying a transport-wide sequence number.
#[test]
fn in_auto_a_viewer_connected_to_a_layered_source_is_numbered_at_once() {
    let mut w = World::with_bwe_mode(fluo_rtc::BweMode::Auto);
    w.delay = Duration::from_millis(10);
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let first_ep = w.create("WebRtcEndpoint", Some(&p));
    let late_ep = w.create("WebRtcEndpoint", Some(&p));
    let publisher = svc_publisher(&mut w, &pub_ep);
    let first = w.add_browser_with("first", true, tap);
    w.negotiate_browser_offer(first, &first_ep, Direction::RecvOnly);
    let late = w.add_browser_with("late", true, tap);
    w.negotiate_browser_offer(late, &late_ep, Direction::RecvOnly);
    w.invoke(&pub_ep, "connect", json!({"sink": first_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    // The stream is layered (S1 flows to the first viewer) before the late one is connected.
    w.stream(&[publisher], Duration::from_secs(1));
    assert!(video(&w, first).iter().any(|r| sid(r) == 1), "S1 flows");
    assert!(video(&w, late).is_empty());

    w.invoke(&pub_ep, "connect", json!({"sink": late_ep}));
    let at = w.now.mono;
    let mut numbered_after = None;
    let mut plain_before = 0;
    for _ in 0..60 {
        // One picture per step (33 ms).
        w.stream(&[publisher], Duration::from_millis(33));
        if w.browsers[late].video_twcc == Some(true) {
            numbered_after = Some(w.now.mono.saturating_duration_since(at));
            break;
        }
        plain_before = video(&w, late).len();
    }
    println!(
        "late viewer: its first numbered video packet {numbered_after:?} after its connect, \
         {plain_before} video packets without a number before it"
    );
    let after = numbered_after.expect("numbered within 2 s");
    assert!(
        after <= Duration::from_millis(200) && plain_before == 0,
        "numbered from its first picture: {after:?}, {plain_before} packets before"
    );
}
