//! Simulcast in memory (virtual time): a publisher sends three VP8 layers (rids q, h, f:
//! 160x120, 320x240, 640x480, key frames only at the start and when asked), Fluo forwards one
//! layer to each viewer: the highest its `fluoMaxVideoLayer` allows, moving at a key frame of
//! the new layer with continuous sequence numbers, to the next layer down within a second when
//! the publisher drops one; lost packets are repaired from the layer's own resend cache.
use fluo_testkit::{RtpSeen, World};
use serde_json::{json, Value};
use std::time::Duration;
use str0m::media::Direction;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The publisher's layers, lowest first as Chromium lists `sendEncodings` with
/// `scaleResolutionDownBy` 4, 2, 1.
const LAYERS: [(&str, (u16, u16), usize); 3] = [
    ("q", (160, 120), 300),
    ("h", (320, 240), 900),
    ("f", (640, 480), 3000),
];

/// A WebRtcEndpoint created with these Fluo properties.
fn endpoint(w: &mut World, pipeline: &str, properties: Value) -> String {
    let p = json!({"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": pipeline},
                   "properties": properties});
    w.ok("create", p)["value"].as_str().unwrap().to_string()
}

/// A simulcast publisher on `ep`: the browser offers, Fluo answers taking the layers.
fn publisher(w: &mut World, ep: &str) -> usize {
    let b = w.add_browser("pub", false);
    let cand = w.browsers[b].candidate_json();
    w.invoke(ep, "addIceCandidate", json!({"candidate": cand}));
    let offer = w.browsers[b].offer_simulcast(Direction::SendOnly, &LAYERS);
    assert!(offer.contains("a=simulcast:send q;h;f"), "{offer}");
    let answer = w.invoke(ep, "processOffer", json!({"offer": offer}));
    let answer = answer.as_str().unwrap();
    for l in [
        "a=rid:q recv",
        "a=rid:h recv",
        "a=rid:f recv",
        "a=simulcast:recv q;h;f",
    ] {
        assert!(
            answer.contains(l),
            "the answer takes the layers ({l}): {answer}"
        );
    }
    for ext in [
        "sdes:rtp-stream-id",
        "sdes:repaired-rtp-stream-id",
        "sdes:mid",
    ] {
        assert!(answer.contains(ext), "{ext} agreed: {answer}");
    }
    w.browsers[b].accept_answer(answer);
    w.invoke(ep, "gatherCandidates", json!({}));
    b
}

fn video(w: &World, b: usize) -> Vec<RtpSeen> {
    w.browsers[b]
        .rtp_in
        .iter()
        .filter(|r| r.video)
        .copied()
        .collect()
}

/// The picture sizes of the key frames a viewer got, in order of arrival.
fn key_sizes(seen: &[RtpSeen]) -> Vec<(u16, u16)> {
    seen.iter().filter_map(|r| r.size).collect()
}

/// One SSRC, every sequence number from the first to the last, timestamps never back.
fn continuous(seen: &[RtpSeen]) {
    let ssrcs: std::collections::BTreeSet<u32> = seen.iter().map(|r| r.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC for the viewer's video");
    let mut by_seq = seen.to_vec();
    by_seq.sort_by_key(|r| r.seq);
    by_seq.dedup_by_key(|r| r.seq);
    for pair in by_seq.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "no gap in sequence numbers: {pair:?}"
        );
        let d = pair[1].ts.wrapping_sub(pair[0].ts);
        assert!(d < 90_000, "timestamps move forward: {pair:?}");
    }
}

/// The viewer's layer as getStats reports it (its outbound video entry's `fluoLayer`).
fn stats_layer(w: &mut World, ep: &str) -> Value {
    let stats = w.invoke(ep, "getStats", json!({"mediaType": "VIDEO"}));
    let out = stats
        .as_object()
        .unwrap()
        .values()
        .find(|v| v["type"] == "outboundrtp")
        .unwrap_or_else(|| panic!("an outbound entry: {stats}"));
    out["fluoLayer"].clone()
}

fn layer_events(w: &mut World) -> Vec<Value> {
    let evs = w.events();
    evs.into_iter()
        .filter(|(t, _)| t == "FluoLayerChanged")
        .map(|(_, d)| d)
        .collect()
}

#[test]
fn each_viewer_gets_the_layer_its_limit_allows_and_moves_up_at_a_key_frame_without_a_gap() {
    let mut w = World::new();
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let low_ep = endpoint(&mut w, &p, json!({"fluoMaxVideoLayer": 0}));
    let top_ep = endpoint(&mut w, &p, json!({}));
    assert_eq!(
        w.invoke(&low_ep, "getTag", json!({"key": "fluoMaxVideoLayer"})),
        "0"
    );
    w.subscribe(&low_ep, "FluoLayerChanged");
    let publisher = publisher(&mut w, &pub_ep);
    let low = w.join("low", true, &low_ep, Direction::RecvOnly);
    let top = w.join("top", true, &top_ep, Direction::RecvOnly);
    for v in [&low_ep, &top_ep] {
        w.invoke(&pub_ep, "connect", json!({"sink": v}));
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(2));

    let (l, t) = (video(&w, low), video(&w, top));
    assert!(l.len() > 40 && t.len() > 100, "{} {}", l.len(), t.len());
    assert!(
        l[0].size == Some((160, 120)),
        "the low viewer starts at a q key frame: {:?}",
        l[0]
    );
    assert!(
        t[0].size == Some((640, 480)),
        "the other at an f key frame: {:?}",
        t[0]
    );
    assert!(key_sizes(&l).iter().all(|s| *s == (160, 120)));
    assert!(key_sizes(&t).iter().all(|s| *s == (640, 480)));
    assert!(l.iter().all(|r| r.len < 400), "only q's packets");
    assert!(t.iter().any(|r| r.len > 1000), "f's packets");
    continuous(&l);
    continuous(&t);
    let ev = layer_events(&mut w);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (
            &ev[0]["rid"],
            &ev[0]["layer"],
            &ev[0]["width"],
            &ev[0]["reason"],
            &ev[0]["mediaType"]
        ),
        (
            &json!("q"),
            &json!(0),
            &json!(160),
            &json!("START"),
            &json!("VIDEO")
        )
    );
    assert_eq!(
        stats_layer(&mut w, &low_ep),
        json!({"rid": "q", "layer": 0, "width": 160, "height": 120, "reason": "START"})
    );
    assert_eq!(stats_layer(&mut w, &top_ep)["rid"], "f");
    // Three SSRCs, counted apart: the publisher's inbound video loses nothing.
    let stats = w.invoke(&pub_ep, "getStats", json!({"mediaType": "VIDEO"}));
    let inbound = stats
        .as_object()
        .unwrap()
        .values()
        .find(|v| v["type"] == "inboundrtp")
        .unwrap();
    assert_eq!(inbound["packetsLost"], 0, "{inbound}");
    assert!(inbound["packetsReceived"].as_u64().unwrap() as usize > l.len() + t.len());

    // The limit lifted at run time (a tag, as any Kurento client can set): the viewer moves
    // to f at f's next key frame, which Fluo asks for.
    let keys_before = w.browsers[publisher].send_layers()[2].keyframes;
    w.invoke(
        &low_ep,
        "addTag",
        json!({"key": "fluoMaxVideoLayer", "value": "2"}),
    );
    w.stream(&[publisher], Duration::from_secs(1));
    assert!(
        w.browsers[publisher].send_layers()[2].keyframes > keys_before,
        "f was asked"
    );
    let l2 = video(&w, low);
    let at = l2
        .iter()
        .position(|r| r.size == Some((640, 480)))
        .expect("an f key frame reached the low viewer");
    assert!(at > l.len(), "after the change");
    assert!(l2[..at].iter().all(|r| r.len < 400), "q until the switch");
    assert!(l2[at..].iter().any(|r| r.len > 1000), "f after it");
    assert!(key_sizes(&l2[at..]).iter().all(|s| *s == (640, 480)));
    continuous(&l2);
    let ev = layer_events(&mut w);
    assert_eq!(
        (&ev[0]["rid"], &ev[0]["layer"], &ev[0]["reason"]),
        (&json!("f"), &json!(2), &json!("LIMIT"))
    );
    assert_eq!(stats_layer(&mut w, &low_ep)["height"], 480);
}

#[test]
fn a_layer_the_publisher_drops_moves_its_viewers_down_within_a_second_and_back_when_it_returns() {
    let mut w = World::new();
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    w.subscribe(&v_ep, "FluoLayerChanged");
    let publisher = publisher(&mut w, &pub_ep);
    let v = w.join("viewer", true, &v_ep, Direction::RecvOnly);
    w.invoke(&pub_ep, "connect", json!({"sink": v_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(1));
    let keys = key_sizes(&video(&w, v));
    assert!(
        !keys.is_empty() && keys.iter().all(|s| *s == (640, 480)),
        "{keys:?}"
    );
    layer_events(&mut w);

    // f stops; the viewer gets h within a second, beginning at an h key frame.
    w.browsers[publisher].set_layer_active("f", false);
    let stopped = w.now.mono;
    let mut fell = None;
    for _ in 0..60 {
        w.stream(&[publisher], ms(33));
        if key_sizes(&video(&w, v)).contains(&(320, 240)) {
            fell = Some(w.now.mono - stopped);
            break;
        }
    }
    let fell = fell.expect("the viewer moved to h");
    assert!(fell <= Duration::from_secs(1), "within a second: {fell:?}");
    let ev = layer_events(&mut w);
    assert_eq!(
        (&ev[0]["rid"], &ev[0]["reason"]),
        (&json!("h"), &json!("LAYER_STOPPED"))
    );
    // f comes back: the viewer returns to it.
    w.browsers[publisher].set_layer_active("f", true);
    w.stream(&[publisher], Duration::from_secs(1));
    let seen = video(&w, v);
    assert_eq!(key_sizes(&seen).last(), Some(&(640, 480)));
    continuous(&seen);
    let ev = layer_events(&mut w);
    assert_eq!(
        (&ev[0]["rid"], &ev[0]["reason"]),
        (&json!("f"), &json!("LAYER_AVAILABLE"))
    );
}

#[test]
fn lost_packets_are_repaired_from_the_forwarded_layers_own_cache() {
    let mut w = World::new();
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let low_ep = endpoint(&mut w, &p, json!({"fluoMaxVideoLayer": 1}));
    let top_ep = w.create("WebRtcEndpoint", Some(&p));
    let publisher = publisher(&mut w, &pub_ep);
    let low = w.join("low", true, &low_ep, Direction::RecvOnly);
    let top = w.join("top", true, &top_ep, Direction::RecvOnly);
    for v in [&low_ep, &top_ep] {
        w.invoke(&pub_ep, "connect", json!({"sink": v}));
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], ms(500));
    // Every 7th media datagram to each viewer is lost.
    let mut count = [0u64; 8];
    w.drop_to = Some(Box::new(move |i, data| {
        if data.len() < 200 || !(128..192).contains(&data[0]) || (192..224).contains(&data[1]) {
            return false;
        }
        count[i] += 1;
        count[i].is_multiple_of(7)
    }));
    w.stream(&[publisher], Duration::from_secs(2));
    w.drop_to = None;
    w.stream(&[publisher], ms(500));
    assert!(w.dropped > 20, "{}", w.dropped);
    for b in [low, top] {
        let seen = video(&w, b);
        continuous(&seen);
    }
    assert!(key_sizes(&video(&w, low)).iter().all(|s| *s == (320, 240)));
    assert_eq!(w.core.egress_of(&low_ep), Some((true, 0)));
}

#[test]
fn layer_limits_are_checked_where_they_are_given() {
    let mut w = World::new();
    let p = w.create("MediaPipeline", None);
    for bad in [
        json!({"fluoMaxVideoLayer": -1}),
        json!({"fluoMaxVideoLayer": "1"}),
        json!({"fluoPreferredVideoLayer": 1.5}),
    ] {
        let r = w.call("create", json!({"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": p}, "properties": bad}));
        assert_eq!(r["error"]["code"], 40107, "{bad}: {r}");
    }
    let ep = endpoint(&mut w, &p, json!({"fluoPreferredVideoLayer": 1}));
    assert_eq!(
        w.invoke(&ep, "getTag", json!({"key": "fluoPreferredVideoLayer"})),
        "1"
    );
    let e = w.invoke_err(
        &ep,
        "addTag",
        json!({"key": "fluoMaxVideoLayer", "value": "top"}),
    );
    assert_eq!(e["code"], 40107, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("fluoMaxVideoLayer"),
        "{e}"
    );
    // The refused value was not kept; a good one is, and removing it lifts the limit.
    assert_eq!(
        w.invoke_err(&ep, "getTag", json!({"key": "fluoMaxVideoLayer"}))["code"],
        40110
    );
    w.invoke(
        &ep,
        "addTag",
        json!({"key": "fluoMaxVideoLayer", "value": "0"}),
    );
    assert_eq!(
        w.invoke(&ep, "getTag", json!({"key": "fluoMaxVideoLayer"})),
        "0"
    );
    w.invoke(&ep, "removeTag", json!({"key": "fluoMaxVideoLayer"}));
    // Other elements keep such tags as tags.
    let pass = w.create("PassThrough", Some(&p));
    w.invoke(
        &pass,
        "addTag",
        json!({"key": "fluoMaxVideoLayer", "value": "anything"}),
    );
}
