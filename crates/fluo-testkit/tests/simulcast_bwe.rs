//! Each viewer's bandwidth estimate choosing its simulcast layer (`--bwe on`, issue 20 stage
//! 2), in memory with virtual time: a publisher sends three VP8 layers (q 160x120 at about
//! 80 kbit/s, h 320x240 at about 370, f 640x480 at about 750), two receive-only viewers keep
//! TWCC in their answers and return feedback; one of them is behind a 300 kbit/s link (a
//! token bucket with a 15 kB queue that drops when full, as `tbf`). It ends on q without
//! sustained loss, its video decodable (each switch at the new layer's key frame), while the
//! other keeps f. Without `--bwe` the answers decline TWCC as before. A plain publisher's
//! REMB follows its viewer's estimate (a viewer with TWCC sends no REMB of its own).
use fluo_testkit::{Link, RtpSeen, World};
use serde_json::{json, Value};
use std::time::Duration;
use str0m::media::Direction;

const LAYERS: [(&str, (u16, u16), usize); 3] = [
    ("q", (160, 120), 300),
    ("h", (320, 240), 1500),
    ("f", (640, 480), 3000),
];

/// The payload sizes of each layer's packets (a 6-byte VP8 descriptor, frames cut in pieces
/// of at most 1000 bytes).
const Q_LEN: usize = 306;
const H_LAST_LEN: usize = 506;
const F_LEN: usize = 1006;

fn tap(c: str0m::RtcConfig) -> str0m::RtcConfig {
    c.enable_raw_packets(true)
}

/// A simulcast publisher on `ep`.
fn publisher(w: &mut World, ep: &str) -> usize {
    let b = w.add_browser("pub", false);
    let cand = w.browsers[b].candidate_json();
    w.invoke(ep, "addIceCandidate", json!({"candidate": cand}));
    let offer = w.browsers[b].offer_simulcast(Direction::SendOnly, &LAYERS);
    let answer = w.invoke(ep, "processOffer", json!({"offer": offer}));
    w.browsers[b].accept_answer(answer.as_str().unwrap());
    w.invoke(ep, "gatherCandidates", json!({}));
    b
}

/// A receive-only viewer of `ep` recording its RTP; whether Fluo's answer agreed TWCC.
fn viewer(w: &mut World, name: &str, ep: &str) -> (usize, bool) {
    let b = w.add_browser_with(name, true, tap);
    w.negotiate_browser_offer(b, ep, Direction::RecvOnly);
    let answer = w.invoke(ep, "getLocalSessionDescriptor", json!({}));
    let answer = answer.as_str().unwrap();
    let twcc = answer.contains("transport-wide-cc") && answer.contains(" transport-cc");
    (b, twcc)
}

fn video(w: &World, b: usize) -> Vec<RtpSeen> {
    (w.browsers[b].rtp_in.iter())
        .filter(|r| r.video)
        .copied()
        .collect()
}

fn outbound(w: &mut World, ep: &str) -> Value {
    let stats = w.invoke(ep, "getStats", json!({"mediaType": "VIDEO"}));
    let out = (stats.as_object().unwrap().values())
        .find(|v| v["type"] == "outboundrtp")
        .cloned();
    out.unwrap_or_else(|| panic!("an outbound entry: {stats}"))
}

/// The layer of each frame the viewer got (by timestamp, in sequence order): q's frames are
/// one packet of 306 bytes, h's two (1006 and 506), f's three of 1006. A frame whose packets
/// were lost on the way may look like f.
fn frames(seen: &[RtpSeen]) -> Vec<(u8, RtpSeen)> {
    let mut by_seq = seen.to_vec();
    by_seq.sort_by_key(|r| r.seq);
    by_seq.dedup_by_key(|r| r.seq);
    let mut out: Vec<(u8, RtpSeen)> = vec![];
    for r in by_seq {
        let layer = match r.len {
            Q_LEN => 0,
            H_LAST_LEN => 1,
            _ => 2,
        };
        match out.last_mut() {
            Some((l, first)) if first.ts == r.ts => *l = (*l).min(layer),
            _ => out.push((layer, r)),
        }
    }
    out
}

/// Each change of layer in the viewer's stream begins with a key frame of the new layer (its
/// first packet, which carries the picture size): how many changes.
fn switches_at_key_frames(seen: &[RtpSeen]) -> usize {
    let f = frames(seen);
    let mut switches = 0;
    for pair in f.windows(2) {
        let ((a, _), (b, first)) = (pair[0], pair[1]);
        if a != b {
            assert!(
                first.begins_frame && first.size.is_some(),
                "the first packet of a new layer is its key frame: {first:?} after layer {a}"
            );
            switches += 1;
        }
    }
    switches
}

#[test]
fn a_viewer_behind_300_kbits_gets_the_low_layer_without_sustained_loss_the_other_keeps_the_top() {
    let mut w = World::with_bwe();
    w.delay = Duration::from_millis(10);
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let weak_ep = w.create("WebRtcEndpoint", Some(&p));
    let strong_ep = w.create("WebRtcEndpoint", Some(&p));
    w.subscribe(&weak_ep, "FluoLayerChanged");
    let publisher = publisher(&mut w, &pub_ep);
    let (weak, weak_twcc) = viewer(&mut w, "weak", &weak_ep);
    let (strong, strong_twcc) = viewer(&mut w, "strong", &strong_ep);
    assert!(
        weak_twcc && strong_twcc,
        "TWCC kept in the viewers' answers"
    );
    for v in [&weak_ep, &strong_ep] {
        w.invoke(&pub_ep, "connect", json!({"sink": v}));
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    w.links.insert(weak, Link::new(300_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(10));
    let dropped_before = w.links[&weak].dropped;
    let (weak_before, strong_before) = (video(&w, weak).len(), video(&w, strong).len());
    w.stream(&[publisher], Duration::from_secs(4));

    // The weak viewer: q only over the last 4 s, nothing dropped by its link, its estimate
    // near its link.
    let weak_seen = video(&w, weak);
    let last = &weak_seen[weak_before..];
    assert!(last.len() > 4 * 25, "video flows: {}", last.len());
    assert!(last.iter().all(|r| r.len == Q_LEN), "only q at the end");
    let link = &w.links[&weak];
    assert_eq!(link.dropped, dropped_before, "no loss at the end: {link:?}");
    assert!(
        link.dropped > 0,
        "the top layer overflowed the link at first: {link:?}"
    );
    let out = outbound(&mut w, &weak_ep);
    let est = out["fluoBandwidthEstimate"]
        .as_u64()
        .unwrap_or_else(|| panic!("{out}"));
    assert!((60_000..450_000).contains(&est), "estimate {est}");
    assert_eq!(out["fluoLayer"]["rid"], "q", "{out}");
    assert_eq!(out["fluoLayer"]["reason"], "BANDWIDTH", "{out}");
    let ev: Vec<Value> = (w.events().into_iter())
        .filter(|(t, _)| t == "FluoLayerChanged")
        .map(|(_, d)| d)
        .collect();
    assert!(
        ev.iter()
            .any(|e| e["reason"] == "BANDWIDTH" && e["rid"] == "q"),
        "{ev:?}"
    );
    // Decodable throughout: each switch at a key frame of the new layer, no gap.
    assert!(switches_at_key_frames(&weak_seen) >= 1);
    assert!(w.browsers[weak].feedback_sent.twcc > 50);
    assert_eq!(w.browsers[weak].feedback_sent.remb, 0, "TWCC: no REMB");

    // The strong viewer keeps f.
    let strong_seen = video(&w, strong);
    let last = &strong_seen[strong_before..];
    assert!(last.iter().all(|r| r.len == F_LEN), "f only at the end");
    assert!(last.len() > 4 * 25 * 3, "{}", last.len());
    let out = outbound(&mut w, &strong_ep);
    assert_eq!(out["fluoLayer"]["rid"], "f", "{out}");
    let est = out["fluoBandwidthEstimate"]
        .as_u64()
        .unwrap_or_else(|| panic!("{out}"));
    assert!(est >= 900_000, "estimate {est}");
}

#[test]
fn without_bwe_receive_only_answers_decline_twcc_and_nothing_is_estimated() {
    let mut w = World::new();
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    let publisher = publisher(&mut w, &pub_ep);
    let (v, twcc) = viewer(&mut w, "v", &v_ep);
    assert!(!twcc, "TWCC declined as before");
    w.invoke(&pub_ep, "connect", json!({"sink": v_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(3));
    assert_eq!(w.browsers[v].feedback_sent.twcc, 0);
    let out = outbound(&mut w, &v_ep);
    assert!(out.get("fluoBandwidthEstimate").is_none(), "{out}");
    assert_eq!(out["fluoLayer"]["rid"], "f", "{out}");
}

#[test]
fn a_plain_publishers_remb_follows_its_viewers_estimate() {
    let mut w = World::with_bwe();
    w.delay = Duration::from_millis(10);
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    let publisher = w.join("pub", false, &pub_ep, Direction::SendOnly);
    let (v, twcc) = viewer(&mut w, "v", &v_ep);
    assert!(twcc);
    w.invoke(&pub_ep, "connect", json!({"sink": v_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.links.insert(v, Link::new(300_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(8));
    assert_eq!(
        w.browsers[v].feedback_sent.remb, 0,
        "TWCC: the viewer sends no REMB"
    );
    let remb = *w.browsers[publisher]
        .remb_in
        .last()
        .expect("REMB reached the publisher");
    let out = outbound(&mut w, &v_ep);
    let est = out["fluoBandwidthEstimate"]
        .as_u64()
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        est < 500_000,
        "the viewer's estimate follows its link: {est}"
    );
    // Without the viewer's estimate in it, nothing would bound the publisher (no REMB from
    // the viewer, no bandwidth setting): it sends 720 kbit/s.
    assert!(
        remb < 600_000,
        "the publisher is held near its viewer's estimate: REMB {remb}, estimate {est}"
    );
}
