//! Simulcast in memory (virtual time): a publisher sends three VP8 layers (rids q, h, f:
//! 160x120, 320x240, 640x480, key frames only at the start and when asked), Fluo forwards one
//! layer to each viewer: the highest its `fluoMaxVideoLayer` allows, moving at a key frame of
//! the new layer with continuous sequence numbers, to the next layer down within a second when
//! the publisher drops one; lost packets are repaired from the layer's own resend cache. Each
//! layer numbers its VP8 pictures on its own (as Chromium's do): a viewer's picture ids and
//! TL0PICIDX go on by one across its switches.
use fluo_testkit::layers::{layer_events, stats_layer};
use fluo_testkit::{RtpSeen, World};
use serde_json::{json, Value};
use std::time::Duration;
use str0m::media::Direction;

/// The world each case runs in: Fluo as configured by default (the egress fast path on).
/// tests/simulcast_str0m.rs runs these cases again in its own (`crate::world`, `crate::EGRESS`).
#[allow(dead_code)]
fn world() -> World {
    World::new()
}

/// Whether the cases' WebRTC endpoints send through the egress fast path.
#[allow(dead_code)]
const EGRESS: bool = true;

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

/// The payload bytes of each layer's packets: its frame (f's in three pieces of 1000) after a
/// 6-byte VP8 payload descriptor.
const Q_LEN: usize = 306;
const H_LEN: usize = 906;
const F_LEN: usize = 1006;

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

/// VP8 picture ids and TL0PICIDX as a decoder needs them: the same on every packet of a
/// frame, one more on each frame's first packet (every frame is in temporal layer 0), across
/// the viewer's layer switches. The whole stream in sequence order (nothing missing).
fn picture_ids_continuous(seen: &[RtpSeen]) {
    let mut by_seq = seen.to_vec();
    by_seq.sort_by_key(|r| r.seq);
    by_seq.dedup_by_key(|r| r.seq);
    for pair in by_seq.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let ids = a
            .picture_id
            .zip(a.tl0picidx)
            .zip(b.picture_id.zip(b.tl0picidx));
        let Some(((pa, ta), (pb, tb))) = ids else {
            panic!("every packet has a picture id and TL0PICIDX: {pair:?}");
        };
        if b.begins_frame {
            assert_eq!(pb, (pa + 1) & 0x7fff, "picture ids go on by one: {pair:?}");
            assert_eq!(tb, ta.wrapping_add(1), "TL0PICIDX goes on by one: {pair:?}");
        } else {
            assert_eq!((pb, tb), (pa, ta), "one picture id per frame: {pair:?}");
        }
    }
}

/// The keyframe requests (PLI) that named each of the publisher's layers so far.
fn plis(w: &World, publisher: usize) -> Vec<u64> {
    w.browsers[publisher]
        .send_layers()
        .iter()
        .map(|l| l.plis)
        .collect()
}

#[test]
fn each_viewer_gets_the_layer_its_limit_allows_and_moves_up_at_a_key_frame_without_a_gap() {
    let mut w = crate::world();
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
    assert!(l.iter().all(|r| r.len == Q_LEN), "only q's packets");
    assert!(t.iter().all(|r| r.len == F_LEN), "only f's packets");
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
    assert!(
        l2[..at].iter().all(|r| r.len == Q_LEN),
        "q until the switch"
    );
    assert!(
        l2[at..].iter().all(|r| r.len == F_LEN),
        "f from its key frame on"
    );
    assert!(key_sizes(&l2[at..]).iter().all(|s| *s == (640, 480)));
    continuous(&l2);
    picture_ids_continuous(&l2);
    picture_ids_continuous(&video(&w, top));
    let ev = layer_events(&mut w);
    assert_eq!(
        (&ev[0]["rid"], &ev[0]["layer"], &ev[0]["reason"]),
        (&json!("f"), &json!(2), &json!("LIMIT"))
    );
    assert_eq!(stats_layer(&mut w, &low_ep)["height"], 480);

    // Back down to q with the tag, then removeTag lifts the limit: f again.
    w.invoke(
        &low_ep,
        "addTag",
        json!({"key": "fluoMaxVideoLayer", "value": "0"}),
    );
    w.stream(&[publisher], Duration::from_secs(1));
    assert_eq!(stats_layer(&mut w, &low_ep)["rid"], "q");
    w.invoke(&low_ep, "removeTag", json!({"key": "fluoMaxVideoLayer"}));
    w.stream(&[publisher], Duration::from_secs(1));
    let ev = layer_events(&mut w);
    let moves: Vec<_> = ev.iter().map(|e| (&e["rid"], &e["reason"])).collect();
    assert_eq!(
        moves,
        [
            (&json!("q"), &json!("LIMIT")),
            (&json!("f"), &json!("LIMIT"))
        ],
        "{ev:?}"
    );
    assert_eq!(stats_layer(&mut w, &low_ep)["rid"], "f");
    let l3 = video(&w, low);
    assert!(l3.last().is_some_and(|r| r.len == F_LEN), "f's packets");
    continuous(&l3);
    picture_ids_continuous(&l3);
}

#[test]
fn a_layer_the_publisher_drops_moves_its_viewers_down_within_a_second_and_back_when_it_returns() {
    let mut w = crate::world();
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
    // Its first packet of h is the first packet of an h key frame.
    let seen = video(&w, v);
    let first_h = seen.iter().find(|r| r.len == H_LEN).expect("h's packets");
    assert!(
        first_h.begins_frame && first_h.size == Some((320, 240)),
        "the first h packet after the switch is h's key frame: {first_h:?}"
    );
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
    picture_ids_continuous(&seen);
    let ev = layer_events(&mut w);
    assert_eq!(
        (&ev[0]["rid"], &ev[0]["reason"]),
        (&json!("f"), &json!("LAYER_AVAILABLE"))
    );
}

#[test]
fn lost_packets_are_repaired_from_the_forwarded_layers_own_cache() {
    let mut w = crate::world();
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
        picture_ids_continuous(&seen);
    }
    assert!(key_sizes(&video(&w, low)).iter().all(|s| *s == (320, 240)));
    // The path it took: the egress (its streams' RTP none of str0m's), or str0m's.
    let (egress, str0m_rtp) = w.core.egress_of(&low_ep).unwrap();
    assert_eq!(egress, crate::EGRESS);
    if egress {
        assert_eq!(str0m_rtp, 0);
    }
}

#[test]
fn layer_limits_are_checked_where_they_are_given() {
    let mut w = crate::world();
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

#[test]
fn packets_the_publisher_loses_are_repaired_and_reach_viewers_as_their_layers_packets() {
    let mut w = crate::world();
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
    // Every 13th media datagram from the publisher is lost (on every layer): Fluo NACKs it
    // on its layer's stream, the publisher resends it as RTX with that layer's repaired rid
    // (one in 7 lost had the in-memory publisher's str0m drop resends past its 15 % cap).
    let mut count = 0u64;
    w.drop_from = Some(Box::new(move |i, data| {
        let media = data.len() > 200 && (128..192).contains(&data[0]);
        if i != publisher || !media || (192..224).contains(&data[1]) {
            return false;
        }
        count += 1;
        count.is_multiple_of(13)
    }));
    w.stream(&[publisher], Duration::from_secs(2));
    w.drop_from = None;
    w.stream(&[publisher], ms(500));
    assert!(w.dropped > 15, "{}", w.dropped);
    for (b, len, size) in [(low, H_LEN, (320, 240)), (top, F_LEN, (640, 480))] {
        let seen = video(&w, b);
        assert!(seen.len() > 60, "{}", seen.len());
        // Every packet of its layer, the repaired ones included, and nothing of another.
        continuous(&seen);
        picture_ids_continuous(&seen);
        assert!(
            seen.iter().all(|r| r.len == len),
            "one layer's packets only"
        );
        assert!(key_sizes(&seen).iter().all(|s| *s == size));
    }
    let stats = w.invoke(&pub_ep, "getStats", json!({"mediaType": "VIDEO"}));
    let inbound = stats
        .as_object()
        .unwrap()
        .values()
        .find(|v| v["type"] == "inboundrtp")
        .unwrap();
    assert_eq!(inbound["packetsLost"], 0, "all repaired: {inbound}");
    assert!(inbound["nackCount"].as_u64().unwrap() > 0, "{inbound}");
}

#[test]
fn a_join_and_a_switch_each_ask_one_keyframe_of_one_layer() {
    let mut w = crate::world();
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let top_ep = w.create("WebRtcEndpoint", Some(&p));
    let late_ep = endpoint(&mut w, &p, json!({"fluoMaxVideoLayer": 0}));
    let publisher = publisher(&mut w, &pub_ep);
    let top = w.join("top", true, &top_ep, Direction::RecvOnly);
    let late = w.join("late", true, &late_ep, Direction::RecvOnly);
    w.invoke(&pub_ep, "connect", json!({"sink": top_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(2));
    assert!(!video(&w, top).is_empty());
    // A connected viewer joins: its first layer (q) is asked for one key frame, no other
    // layer is, and no second request follows the key frame.
    let before = plis(&w, publisher);
    w.invoke(&pub_ep, "connect", json!({"sink": late_ep}));
    w.stream(&[publisher], Duration::from_secs(1));
    let after = plis(&w, publisher);
    let asked: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(asked, [1, 0, 0], "PLIs per layer (q, h, f) for a join");
    let seen = video(&w, late);
    assert_eq!(seen.first().and_then(|r| r.size), Some((160, 120)));
    // A switch (its limit lifted): one request, of f.
    w.invoke(
        &late_ep,
        "addTag",
        json!({"key": "fluoMaxVideoLayer", "value": "2"}),
    );
    w.stream(&[publisher], Duration::from_secs(1));
    let asked: Vec<u64> = plis(&w, publisher)
        .iter()
        .zip(&after)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(asked, [0, 0, 1], "PLIs per layer (q, h, f) for a switch");
    assert_eq!(key_sizes(&video(&w, late)).last(), Some(&(640, 480)));
    picture_ids_continuous(&video(&w, late));
}

#[test]
fn a_simulcast_publisher_gets_only_its_own_remb_bounds_on_a_layer_that_sends() {
    let mut w = crate::world();
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    w.invoke(
        &pub_ep,
        "setMaxVideoRecvBandwidth",
        json!({"maxVideoRecvBandwidth": 500}),
    );
    let publisher = publisher(&mut w, &pub_ep);
    // Its first layer never sends (as Chromium's lowest does when the application
    // deactivates it).
    w.browsers[publisher].set_layer_active("q", false);
    // A viewer that may take 100 kbps: a plain publisher would be asked for that, a simulcast
    // one only for its own bounds (the viewer gets a layer it can take instead).
    w.invoke(
        &v_ep,
        "setMaxVideoSendBandwidth",
        json!({"maxVideoSendBandwidth": 100}),
    );
    w.join("viewer", true, &v_ep, Direction::RecvOnly);
    w.invoke(&pub_ep, "connect", json!({"sink": v_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(3));
    let remb = &w.browsers[publisher].remb_in;
    assert!(remb.len() >= 2, "REMB on h or f, once a second: {remb:?}");
    assert!(
        remb.iter().all(|r| *r == 500_000),
        "its own maxVideoRecvBandwidth only, not the viewer's 100 kbps: {remb:?}"
    );
}

#[test]
fn an_offer_of_more_than_eight_layers_is_answered_with_the_first_eight() {
    let mut w = crate::world();
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    let b = w.add_browser("pub", false);
    let cand = w.browsers[b].candidate_json();
    w.invoke(&pub_ep, "addIceCandidate", json!({"candidate": cand}));
    let rids: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let layers: Vec<(&str, (u16, u16), usize)> = rids
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), (32 * (i as u16 + 1), 24 * (i as u16 + 1)), 100))
        .collect();
    let offer = w.browsers[b].offer_simulcast(Direction::SendOnly, &layers);
    assert!(offer.contains("a=rid:r9 send"), "{offer}");
    let answer = w.invoke(&pub_ep, "processOffer", json!({"offer": offer}));
    let answer = answer.as_str().unwrap().to_string();
    for r in &rids[..8] {
        assert!(answer.contains(&format!("a=rid:{r} recv")), "{answer}");
    }
    for r in &rids[8..] {
        assert!(!answer.contains(&format!("a=rid:{r} ")), "{answer}");
    }
    assert!(
        answer.contains("a=simulcast:recv r0;r1;r2;r3;r4;r5;r6;r7\r\n"),
        "{answer}"
    );
    w.browsers[b].accept_answer(&answer);
    w.invoke(&pub_ep, "gatherCandidates", json!({}));
    let v = w.join("viewer", true, &v_ep, Direction::RecvOnly);
    w.invoke(&pub_ep, "connect", json!({"sink": v_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[b], Duration::from_secs(2));
    // The viewer gets the largest of the eight.
    let keys = key_sizes(&video(&w, v));
    assert!(
        !keys.is_empty() && keys.iter().all(|s| *s == (256, 192)),
        "{keys:?}"
    );
    continuous(&video(&w, v));
}
