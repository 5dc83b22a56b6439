//! AV1 SVC in memory (virtual time): tests/svc.rs's publisher sending its three spatial and
//! three temporal layers in AV1, the layers told by the dependency descriptor header extension
//! (Chromium's `L3T3_KEY` structure; see `fluo_testkit::svc`). Fluo negotiates the extension,
//! reads the stream's layers from it, and each viewer gets the layers up to its own as with
//! VP9: the viewer whose `fluoMaxVideoLayer` is 0 only spatial layer 0 on a continuous line
//! with markers where its pictures end, the other everything; the cap lifted, the first goes
//! up at the next key picture, which Fluo asks for.
use fluo_sfu::dependency_descriptor::URI;
use fluo_testkit::layers::{continuous_with_markers, layer_events, stats_layer};
use fluo_testkit::{dd_extension, RtpSeen, World};
use serde_json::{json, Value};
use std::time::Duration;
use str0m::media::Direction;

/// The world each case runs in: Fluo as configured by default (the egress fast path on).
/// tests/svc_av1_str0m.rs runs these cases again in its own (`crate::world`).
#[allow(dead_code)]
fn world() -> World {
    World::new()
}

const LAYERS: [((u16, u16), usize); 3] =
    [((320, 180), 300), ((640, 360), 900), ((1280, 720), 2500)];

fn endpoint(w: &mut World, pipeline: &str, properties: Value) -> String {
    let p = json!({"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": pipeline},
                   "properties": properties});
    w.ok("create", p)["value"].as_str().unwrap().to_string()
}

/// An AV1 SVC publisher on `ep`; Fluo's answer takes AV1 and the dependency descriptor.
fn publisher(w: &mut World, ep: &str) -> usize {
    let b = w.add_browser_with("pub", false, |c| c.set_extension(12, dd_extension()));
    let cand = w.browsers[b].candidate_json();
    w.invoke(ep, "addIceCandidate", json!({"candidate": cand}));
    let offer = w.browsers[b].offer_svc_av1(Direction::SendOnly, &LAYERS);
    assert!(offer.contains(URI), "{offer}");
    let answer = w.invoke(ep, "processOffer", json!({"offer": offer}));
    let answer = answer.as_str().unwrap();
    assert!(answer.contains("AV1/90000"), "{answer}");
    assert!(
        answer.contains(&format!("a=extmap:12 {URI}")),
        "the answer takes the descriptor: {answer}"
    );
    w.browsers[b].accept_answer(answer);
    w.invoke(ep, "gatherCandidates", json!({}));
    b
}

/// A viewer's video packets, in sequence order, each once.
fn video(w: &World, b: usize) -> Vec<RtpSeen> {
    let mut v: Vec<RtpSeen> = (w.browsers[b].rtp_in.iter())
        .filter(|r| r.video)
        .copied()
        .collect();
    v.sort_by_key(|r| r.seq);
    v.dedup_by_key(|r| r.seq);
    v
}

/// The spatial layer of an AV1 packet of the publisher: its OBU extension header's on a
/// layer frame's first packet (Z clear), the filler byte's on the others.
fn sid(r: &RtpSeen) -> u8 {
    if r.head[0] & 0x80 == 0 {
        assert_eq!(r.head[1], 0x34, "a frame OBU with its extension header");
        (r.head[2] >> 3) & 3
    } else {
        r.head[1] & 0x0f
    }
}

/// The two viewers `[(browser, endpoint); 2]` connected to the publisher, 2 s of its stream:
/// what each received, asserted: the first only S0, the second every spatial layer, both
/// continuous with markers.
fn s0_and_every_layer(
    w: &mut World,
    (publisher, pub_ep): (usize, &str),
    viewers: [(usize, &String); 2],
) -> (Vec<RtpSeen>, Vec<RtpSeen>) {
    for (_, ep) in viewers {
        w.invoke(pub_ep, "connect", json!({"sink": ep}));
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(2));
    let (l, t) = (video(w, viewers[0].0), video(w, viewers[1].0));
    println!(
        "in 2 s: the S0 viewer got {} packets, the other {}",
        l.len(),
        t.len()
    );
    assert!(l.len() > 40 && t.len() > 5 * 40, "{} {}", l.len(), t.len());
    assert!(l.iter().all(|r| sid(r) == 0), "only spatial layer 0");
    for s in 0..3 {
        assert!(t.iter().any(|r| sid(r) == s), "the other gets S{s} too");
    }
    continuous_with_markers(&l);
    continuous_with_markers(&t);
    (l, t)
}

#[test]
fn a_capped_viewer_gets_only_the_lowest_spatial_layer_of_an_av1_stream() {
    let mut w = crate::world();
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let low_ep = endpoint(&mut w, &p, json!({"fluoMaxVideoLayer": 0}));
    let top_ep = endpoint(&mut w, &p, json!({}));
    w.subscribe(&low_ep, "FluoLayerChanged");
    let publisher = publisher(&mut w, &pub_ep);
    // Both viewers negotiate the descriptor (as a Chromium viewer must to decode several
    // spatial layers of AV1).
    let with_dd = |c: str0m::RtcConfig| c.set_extension(12, dd_extension());
    let low = w.add_browser_with("low", true, with_dd);
    w.negotiate_browser_offer(low, &low_ep, Direction::RecvOnly);
    let top = w.add_browser_with("top", true, with_dd);
    w.negotiate_browser_offer(top, &top_ep, Direction::RecvOnly);
    let (l, t) = s0_and_every_layer(
        &mut w,
        (publisher, &pub_ep),
        [(low, &low_ep), (top, &top_ep)],
    );
    // Each packet with the publisher's descriptor; the key pictures' first with the structure.
    for v in [&l, &t] {
        assert!(
            v.iter().all(|r| r.dd_len >= 3),
            "a descriptor on every packet"
        );
        assert!(
            v.iter().any(|r| r.dd_len > 16),
            "the structure (two-byte form)"
        );
    }
    let ev = layer_events(&mut w);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (
            &ev[0]["rid"],
            &ev[0]["layer"],
            &ev[0]["width"],
            &ev[0]["reason"]
        ),
        (&json!(""), &json!(0), &json!(320), &json!("START"))
    );
    assert_eq!(
        stats_layer(&mut w, &low_ep),
        json!({"rid": "", "layer": 0, "width": 320, "height": 180, "reason": "START"})
    );

    // The cap lifted: the whole stream from the next key picture on, which Fluo asks for.
    let keys = w.browsers[publisher].svc_send().unwrap().keyframes;
    w.invoke(
        &low_ep,
        "addTag",
        json!({"key": "fluoMaxVideoLayer", "value": "2"}),
    );
    w.stream(&[publisher], Duration::from_secs(1));
    assert!(w.browsers[publisher].svc_send().unwrap().keyframes > keys);
    let l2 = video(&w, low);
    let at = l2.iter().position(|r| sid(r) == 2).expect("S2 reached it");
    assert!(at > l.len(), "after the change");
    assert!(l2[..at]
        .iter()
        .all(|r| sid(r) == 0 || r.seq > l2[at].seq - 3));
    continuous_with_markers(&l2);
    let ev = layer_events(&mut w);
    assert_eq!(
        (&ev[0]["layer"], &ev[0]["width"], &ev[0]["reason"]),
        (&json!(2), &json!(1280), &json!("LIMIT"))
    );
    assert_eq!(stats_layer(&mut w, &low_ep)["height"], 720);
}

#[test]
fn a_viewer_without_the_descriptor_gets_the_lowest_spatial_layer_alone() {
    let mut w = crate::world();
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let plain_ep = endpoint(&mut w, &p, json!({}));
    let dd_ep = endpoint(&mut w, &p, json!({}));
    w.subscribe(&plain_ep, "FluoLayerChanged");
    let publisher = publisher(&mut w, &pub_ep);
    // One viewer does not negotiate the descriptor (a Chromium viewer's default offer), the
    // other does.
    let plain = w.add_browser("plain", true);
    w.negotiate_browser_offer(plain, &plain_ep, Direction::RecvOnly);
    let with_dd = |c: str0m::RtcConfig| c.set_extension(12, dd_extension());
    let dd = w.add_browser_with("dd", true, with_dd);
    w.negotiate_browser_offer(dd, &dd_ep, Direction::RecvOnly);
    let (l, _) = s0_and_every_layer(
        &mut w,
        (publisher, &pub_ep),
        [(plain, &plain_ep), (dd, &dd_ep)],
    );
    let ev = layer_events(&mut w);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (
            &ev[0]["rid"],
            &ev[0]["layer"],
            &ev[0]["width"],
            &ev[0]["reason"]
        ),
        (
            &json!(""),
            &json!(0),
            &json!(320),
            &json!("NO_DEPENDENCY_DESCRIPTOR")
        )
    );
    assert_eq!(
        stats_layer(&mut w, &plain_ep),
        json!({"rid": "", "layer": 0, "width": 320, "height": 180,
               "reason": "NO_DEPENDENCY_DESCRIPTOR"})
    );

    // The application's limit above the cap changes nothing: no key picture asked for it,
    // S0 alone, nothing told.
    let keys = w.browsers[publisher].svc_send().unwrap().keyframes;
    w.invoke(
        &plain_ep,
        "addTag",
        json!({"key": "fluoMaxVideoLayer", "value": "2"}),
    );
    w.stream(&[publisher], Duration::from_secs(1));
    assert_eq!(w.browsers[publisher].svc_send().unwrap().keyframes, keys);
    let l2 = video(&w, plain);
    assert!(l2.len() > l.len() + 15, "{} {}", l2.len(), l.len());
    assert!(l2.iter().all(|r| sid(r) == 0), "still S0 only");
    continuous_with_markers(&l2);
    assert_eq!(layer_events(&mut w), Vec::<Value>::new());
}
