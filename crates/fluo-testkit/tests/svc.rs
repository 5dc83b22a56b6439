//! SVC in memory (virtual time): a publisher sends one VP9 stream with three spatial layers
//! (320x180, 640x360, 1280x720) and three temporal layers, as Chromium does with
//! `scalabilityMode: 'L3T3_KEY'` (key pictures only at the start and when asked). A viewer
//! whose `fluoMaxVideoLayer` is 0 gets only the packets of spatial layer 0, on a line with
//! continuous sequence numbers and the marker bit where its pictures end; the other gets the
//! whole stream. Lifting the cap takes the first up at the next key picture, which Fluo asks
//! for. Lost packets are repaired with the packets the capped viewer was sent.
use fluo_sfu::descriptor::vp9_layers;
use fluo_testkit::layers::{continuous_with_markers, layer_events, stats_layer};
use fluo_testkit::{RtpSeen, World};
use serde_json::{json, Value};
use std::time::Duration;
use str0m::media::Direction;

/// The publisher's spatial layers: picture size, bytes per layer frame (the top one in three
/// packets).
const LAYERS: [((u16, u16), usize); 3] =
    [((320, 180), 300), ((640, 360), 900), ((1280, 720), 2500)];

/// The world each case runs in: Fluo as configured by default (the egress fast path on).
/// tests/svc_str0m.rs runs these cases again in its own (`crate::world`).
#[allow(dead_code)]
fn world() -> World {
    World::new()
}

fn endpoint(w: &mut World, pipeline: &str, properties: Value) -> String {
    let p = json!({"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": pipeline},
                   "properties": properties});
    w.ok("create", p)["value"].as_str().unwrap().to_string()
}

/// An SVC publisher on `ep`.
fn publisher(w: &mut World, ep: &str) -> usize {
    let b = w.add_browser("pub", false);
    let cand = w.browsers[b].candidate_json();
    w.invoke(ep, "addIceCandidate", json!({"candidate": cand}));
    let offer = w.browsers[b].offer_svc(Direction::SendOnly, &LAYERS);
    let answer = w.invoke(ep, "processOffer", json!({"offer": offer}));
    let answer = answer.as_str().unwrap();
    assert!(answer.contains("VP9/90000"), "{answer}");
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

fn sid(r: &RtpSeen) -> u8 {
    vp9_layers(&r.head).expect("a VP9 payload descriptor").sid
}

/// The publisher, a viewer capped to spatial layer 0 and one without a cap, connected.
fn setup(w: &mut World) -> (usize, usize, usize, String) {
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let low_ep = endpoint(w, &p, json!({"fluoMaxVideoLayer": 0}));
    let top_ep = endpoint(w, &p, json!({}));
    w.subscribe(&low_ep, "FluoLayerChanged");
    let publisher = publisher(w, &pub_ep);
    let low = w.join("low", true, &low_ep, Direction::RecvOnly);
    let top = w.join("top", true, &top_ep, Direction::RecvOnly);
    for v in [&low_ep, &top_ep] {
        w.invoke(&pub_ep, "connect", json!({"sink": v}));
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    (publisher, low, top, low_ep)
}

#[test]
fn a_capped_viewer_gets_only_the_lowest_spatial_layer_on_a_continuous_line() {
    let mut w = crate::world();
    let (publisher, low, top, low_ep) = setup(&mut w);
    w.stream(&[publisher], Duration::from_secs(2));

    let (l, t) = (video(&w, low), video(&w, top));
    println!(
        "in 2 s: the capped viewer got {} packets, the other {}",
        l.len(),
        t.len()
    );
    // One packet of S0 per picture for the capped viewer, five (1 + 1 + 3) for the other.
    assert!(l.len() > 40 && t.len() > 5 * 40, "{} {}", l.len(), t.len());
    assert!(l.iter().all(|r| sid(r) == 0), "only spatial layer 0");
    for s in 0..3 {
        assert!(t.iter().any(|r| sid(r) == s), "the other gets S{s} too");
    }
    continuous_with_markers(&l);
    continuous_with_markers(&t);
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
fn lost_packets_of_a_capped_viewer_are_repaired_with_its_own() {
    let mut w = crate::world();
    let (publisher, low, top, _) = setup(&mut w);
    w.stream(&[publisher], Duration::from_millis(500));
    // Every 7th media datagram to each viewer is lost.
    let mut count = [0u64; 8];
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let lost_low = lost.clone();
    w.drop_to = Some(Box::new(move |i, data| {
        if data.len() < 200 || !(128..192).contains(&data[0]) || (192..224).contains(&data[1]) {
            return false;
        }
        count[i] += 1;
        let drop = count[i].is_multiple_of(7);
        if drop && i == low {
            lost_low.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        drop
    }));
    w.stream(&[publisher], Duration::from_secs(2));
    w.drop_to = None;
    w.stream(&[publisher], Duration::from_millis(500));
    assert!(w.dropped > 20, "{}", w.dropped);
    let l = video(&w, low);
    let lost = lost.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{} datagrams lost, {lost} of the capped viewer's, which has all of its {} packets",
        w.dropped,
        l.len()
    );
    assert!(lost > 5, "{lost}");
    assert!(
        l.iter().all(|r| sid(r) == 0),
        "a resend is of the packet the line sent"
    );
    continuous_with_markers(&l);
    continuous_with_markers(&video(&w, top));
}
