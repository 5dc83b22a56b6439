//! Each viewer's bandwidth estimate choosing its spatial layer of an SVC stream (`--bwe on`),
//! in memory with virtual time: a publisher sends one VP9 stream of three spatial layers (600,
//! 800 and 3000 bytes a layer frame at 30 pictures a second: about 155 kbit/s for S0, 360 with
//! S1, 1.1 Mbit/s with S2, the rates the router gives the estimate being cumulative), two
//! receive-only viewers return TWCC feedback, one behind a 300 kbit/s link (a token bucket
//! with a 15 kB queue that drops when full). It ends on S0 without loss; the other keeps S2.
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

#[test]
fn a_viewer_behind_300_kbits_gets_the_lowest_spatial_layer_the_other_keeps_the_top() {
    let mut w = World::with_bwe();
    w.delay = Duration::from_millis(10);
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let weak_ep = w.create("WebRtcEndpoint", Some(&p));
    let strong_ep = w.create("WebRtcEndpoint", Some(&p));
    let publisher = w.add_browser("pub", false);
    let cand = w.browsers[publisher].candidate_json();
    w.invoke(&pub_ep, "addIceCandidate", json!({"candidate": cand}));
    let offer = w.browsers[publisher].offer_svc(Direction::SendOnly, &LAYERS);
    let answer = w.invoke(&pub_ep, "processOffer", json!({"offer": offer}));
    w.browsers[publisher].accept_answer(answer.as_str().unwrap());
    w.invoke(&pub_ep, "gatherCandidates", json!({}));
    let mut viewers = vec![];
    for (name, ep) in [("weak", &weak_ep), ("strong", &strong_ep)] {
        let b = w.add_browser_with(name, true, tap);
        w.negotiate_browser_offer(b, ep, Direction::RecvOnly);
        w.invoke(&pub_ep, "connect", json!({"sink": ep}));
        viewers.push(b);
    }
    let (weak, strong) = (viewers[0], viewers[1]);
    assert!(w.connect_all(Duration::from_secs(5)));
    w.links.insert(weak, Link::new(300_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(6));
    let dropped_before = w.links[&weak].dropped;
    let (weak_before, strong_before) = (video(&w, weak).len(), video(&w, strong).len());
    w.stream(&[publisher], Duration::from_secs(4));

    let weak_seen = video(&w, weak);
    let last = &weak_seen[weak_before..];
    let sids: Vec<u8> = last.iter().map(sid).collect();
    println!(
        "weak: {} packets over the last 4 s, dropped by its link {} before, {} after",
        last.len(),
        dropped_before,
        w.links[&weak].dropped - dropped_before
    );
    assert!(last.len() > 4 * 25, "video flows: {}", last.len());
    assert!(sids.iter().all(|s| *s == 0), "S0 only at the end: {sids:?}");
    assert_eq!(w.links[&weak].dropped, dropped_before, "no loss at the end");
    let out = outbound(&mut w, &weak_ep);
    assert_eq!(out["fluoLayer"]["layer"], 0, "{out}");
    assert_eq!(out["fluoLayer"]["reason"], "BANDWIDTH", "{out}");
    let est = out["fluoBandwidthEstimate"].as_u64().unwrap();
    println!("weak estimate {est} bit/s");
    assert!((60_000..450_000).contains(&est), "estimate {est}");

    let strong_last = &video(&w, strong)[strong_before..];
    for s in 0..3 {
        assert!(
            strong_last.iter().any(|r| sid(r) == s),
            "the strong gets S{s}"
        );
    }
    let out = outbound(&mut w, &strong_ep);
    assert_eq!(out["fluoLayer"]["layer"], 2, "{out}");
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
    let publisher = w.add_browser("pub", false);
    let cand = w.browsers[publisher].candidate_json();
    w.invoke(&pub_ep, "addIceCandidate", json!({"candidate": cand}));
    let offer = w.browsers[publisher].offer_svc(Direction::SendOnly, &LAYERS);
    let answer = w.invoke(&pub_ep, "processOffer", json!({"offer": offer}));
    w.browsers[publisher].accept_answer(answer.as_str().unwrap());
    w.invoke(&pub_ep, "gatherCandidates", json!({}));
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
