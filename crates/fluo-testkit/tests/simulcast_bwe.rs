//! Each viewer's bandwidth estimate choosing its simulcast layer (`--bwe on`, issue 20 stage
//! 2), in memory with virtual time: a publisher sends three VP8 layers (q 160x120 at about
//! 80 kbit/s, h 320x240 at about 370, f 640x480 at about 750), two receive-only viewers keep
//! TWCC in their answers and return feedback; one of them is behind a 300 kbit/s link (a
//! token bucket with a 15 kB queue that drops when full, as `tbf`). It ends on q without
//! sustained loss, its video decodable (each switch at the new layer's key frame), while the
//! other keeps f from start to end (an estimate that has shown no congestion caps nothing);
//! with an f of about 2 Mbit/s an unconstrained viewer keeps it from start to end.
//! The layered tests run with `--bwe on` and with `auto` (the server's default). With `off` the
//! answers decline TWCC as before. With `on` a plain publisher's REMB follows its congested
//! viewer's estimate (a viewer with TWCC sends no REMB of its own), and is not pulled down by
//! an unconstrained one; with `auto` a plain publisher's viewer gets no transport-wide number
//! and sends REMB, and a viewer moved between a plain and a simulcast source changes its
//! feedback with it.
use fluo_rtc::BweMode;
use fluo_testkit::{Link, RtpSeen, World};
use serde_json::{json, Value};
use std::time::Duration;
use str0m::media::Direction;

const LAYERS: [(&str, (u16, u16), usize); 3] = [
    ("q", (160, 120), 300),
    ("h", (320, 240), 1500),
    ("f", (640, 480), 3000),
];

/// The same with a realistic top layer of about 2 Mbit/s, above the estimator's 1 Mbit/s start.
const LAYERS_2M: [(&str, (u16, u16), usize); 3] = [
    ("q", (160, 120), 300),
    ("h", (320, 240), 1500),
    ("f", (640, 480), 8000),
];

/// The payload sizes of each layer's packets (a 6-byte VP8 descriptor, frames cut in pieces
/// of at most 1000 bytes: f's frame is three, eight in `LAYERS_2M`).
const Q_LEN: usize = 306;
const H_LAST_LEN: usize = 506;
const F_LEN: usize = 1006;

fn tap(c: str0m::RtcConfig) -> str0m::RtcConfig {
    c.enable_raw_packets(true)
}

/// A simulcast publisher on `ep` sending `LAYERS`.
fn publisher(w: &mut World, ep: &str) -> usize {
    publisher_of(w, ep, &LAYERS)
}

/// A simulcast publisher on `ep` sending `layers`.
fn publisher_of(w: &mut World, ep: &str, layers: &[(&str, (u16, u16), usize)]) -> usize {
    let b = w.add_browser("pub", false);
    let cand = w.browsers[b].candidate_json();
    w.invoke(ep, "addIceCandidate", json!({"candidate": cand}));
    let offer = w.browsers[b].offer_simulcast(Direction::SendOnly, layers);
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

/// The viewer's bandwidth estimate in its outbound video entry (`out`).
fn estimate_of(out: &Value) -> u64 {
    (out["fluoBandwidthEstimate"].as_u64()).unwrap_or_else(|| panic!("{out}"))
}

/// A plain (non-simulcast) publisher on `pub_ep` and a receive-only viewer on `v_ep` that
/// agreed TWCC, connected: (publisher, viewer).
fn plain_call(w: &mut World, pub_ep: &str, v_ep: &str) -> (usize, usize) {
    let publisher = w.join("pub", false, pub_ep, Direction::SendOnly);
    let (v, twcc) = viewer(w, "v", v_ep);
    assert!(twcc);
    w.invoke(pub_ep, "connect", json!({"sink": v_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    (publisher, v)
}

/// A World with the estimate on and a 10 ms path, and a MediaPipeline in it.
fn bwe_pipeline() -> (World, String) {
    bwe_pipeline_in(BweMode::On)
}

/// The same with `--bwe` `mode`.
fn bwe_pipeline_in(mode: BweMode) -> (World, String) {
    let mut w = World::with_bwe_mode(mode);
    w.delay = Duration::from_millis(10);
    let p = w.create("MediaPipeline", None);
    (w, p)
}

fn outbound(w: &mut World, ep: &str) -> Value {
    let stats = w.invoke(ep, "getStats", json!({"mediaType": "VIDEO"}));
    let out = (stats.as_object().unwrap().values())
        .find(|v| v["type"] == "outboundrtp")
        .cloned();
    out.unwrap_or_else(|| panic!("an outbound entry: {stats}"))
}

/// The layer of each frame the viewer got (by timestamp, in sequence order): q's frames are
/// one packet of 306 bytes, h's two (1006 and 506), f's three (or eight) of 1006. A frame whose packets
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
/// A frame of the old layer cut by the switch (its first packet only: an h frame then looks
/// like f) just before the new layer's key frame is not a change.
fn switches_at_key_frames(seen: &[RtpSeen]) -> usize {
    let mut f = frames(seen);
    let key = |r: &RtpSeen| r.begins_frame && r.size.is_some();
    let cut = |i: usize, f: &[(u8, RtpSeen)]| {
        let next = f.get(i + 1).map(|n| n.1);
        let alone = |r: &RtpSeen| !seen.iter().any(|o| o.ts == r.ts && o.seq != r.seq);
        !key(&f[i].1) && alone(&f[i].1) && next.is_some_and(|n| key(&n) && n.seq == f[i].1.seq + 1)
    };
    let mut i = 0;
    while i < f.len() {
        if i > 0 && f[i].0 != f[i - 1].0 && cut(i, &f) {
            f.remove(i);
        } else {
            i += 1;
        }
    }
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

fn a_viewer_behind_300_kbits_gets_the_low_layer_without_sustained_loss_the_other_keeps_the_top(
    mode: BweMode,
) {
    let (mut w, p) = bwe_pipeline_in(mode);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let weak_ep = w.create("WebRtcEndpoint", Some(&p));
    let strong_ep = w.create("WebRtcEndpoint", Some(&p));
    w.subscribe(&weak_ep, "FluoLayerChanged");
    w.subscribe(&strong_ep, "FluoLayerChanged");
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
    w.stream(&[publisher], Duration::from_secs(6));
    let dropped_before = w.links[&weak].dropped;
    let (weak_before, strong_before) = (video(&w, weak).len(), video(&w, strong).len());
    w.stream(&[publisher], Duration::from_secs(4));

    // The weak viewer: q only over the last 4 s (before its congestion expires, 10 s after
    // its last sign), nothing dropped by its link, its estimate near its link.
    let weak_seen = video(&w, weak);
    let last = &weak_seen[weak_before..];
    assert!(last.len() > 4 * 25, "video flows: {}", last.len());
    let not_q: Vec<usize> = (last.iter().filter(|r| r.len != Q_LEN).map(|r| r.len)).collect();
    assert!(not_q.is_empty(), "only q at the end: {not_q:?}");
    let link = &w.links[&weak];
    assert_eq!(link.dropped, dropped_before, "no loss at the end: {link:?}");
    assert!(
        link.dropped > 0,
        "the top layer overflowed the link at first: {link:?}"
    );
    let out = outbound(&mut w, &weak_ep);
    let est = estimate_of(&out);
    assert!((60_000..450_000).contains(&est), "estimate {est}");
    assert_eq!(out["fluoLayer"]["rid"], "q", "{out}");
    assert_eq!(out["fluoLayer"]["reason"], "BANDWIDTH", "{out}");
    let ev: Vec<Value> = (w.events().into_iter())
        .filter(|(t, _)| t == "FluoLayerChanged")
        .map(|(_, d)| d)
        .collect();
    let of = |ep: &str| -> Vec<&Value> { ev.iter().filter(|e| e["source"] == ep).collect() };
    assert!(
        of(&weak_ep)
            .iter()
            .any(|e| e["reason"] == "BANDWIDTH" && e["rid"] == "q"),
        "{ev:?}"
    );
    assert!(
        (of(&strong_ep).iter()).all(|e| e["reason"] == "START" && e["rid"] == "f"),
        "the strong viewer's layer never changed: {ev:?}"
    );
    // Decodable throughout: each switch at a key frame of the new layer, no gap.
    assert!(switches_at_key_frames(&weak_seen) >= 1);
    assert!(w.browsers[weak].feedback_sent.twcc > 50);
    assert_eq!(w.browsers[weak].feedback_sent.remb, 0, "TWCC: no REMB");

    // The strong viewer keeps f from start to end.
    let strong_seen = video(&w, strong);
    assert!(
        strong_seen.iter().all(|r| r.len == F_LEN),
        "f only, throughout"
    );
    let last = &strong_seen[strong_before..];
    assert!(last.len() > 4 * 25 * 3, "{}", last.len());
    let out = outbound(&mut w, &strong_ep);
    assert_eq!(out["fluoLayer"]["rid"], "f", "{out}");
    let est = estimate_of(&out);
    assert!(est >= 900_000, "estimate {est}");
    // The weak viewer was probed (padding-only RTX packets, which its str0m took and
    // dropped); the strong one, whose estimate has room for f, need not be (see
    // `a_viewer_with_room_for_the_top_layer_is_not_probed_on`).
    let padding = [weak, strong].map(|b| w.browsers[b].padding_in);
    eprintln!("padding packets received: {padding:?}");
    assert!(padding[0] >= 5, "{padding:?}");
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
    w.stream(&[publisher], Duration::from_secs(7));
    assert_eq!(w.browsers[v].feedback_sent.twcc, 0);
    assert_eq!(w.browsers[v].padding_in, 0, "no probe padding");
    let out = outbound(&mut w, &v_ep);
    assert!(out.get("fluoBandwidthEstimate").is_none(), "{out}");
    assert_eq!(out["fluoLayer"]["rid"], "f", "{out}");
}

#[test]
fn a_plain_publishers_remb_follows_its_viewers_estimate() {
    let (mut w, p) = bwe_pipeline();
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    let (publisher, v) = plain_call(&mut w, &pub_ep, &v_ep);
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
    let est = estimate_of(&out);
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

/// A plain publisher's viewer congested once counts in its REMB for good: when its limit is
/// lifted and its congestion expires, the REMB climbs with its estimate (failed before: the
/// estimate left the REMB at expiry, no REMB was sent and the publisher kept the last low one).
#[test]
fn a_plain_publishers_remb_climbs_with_its_viewers_estimate_after_the_limit_is_lifted() {
    let (mut w, p) = bwe_pipeline();
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    let (publisher, v) = plain_call(&mut w, &pub_ep, &v_ep);
    w.links.insert(v, Link::new(300_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(8));
    let low = *w.browsers[publisher].remb_in.last().expect("REMB sent");
    assert!(low < 600_000, "held near the limit: {low}");
    w.links.remove(&v);
    w.stream(&[publisher], Duration::from_secs(25));
    let est = estimate_of(&outbound(&mut w, &v_ep));
    let remb = *w.browsers[publisher].remb_in.last().unwrap();
    eprintln!("REMB {low} at 8 s, {remb} at 33 s; estimate {est}");
    assert!(
        est > 2 * low,
        "the estimate climbed: {est}, REMB at 8 s {low}"
    );
    assert!(
        remb * 100 >= est * 85,
        "the REMB follows the estimate: REMB {remb}, estimate {est}"
    );
}

#[test]
fn an_unconstrained_viewer_does_not_pull_a_plain_publishers_remb_down() {
    let (mut w, p) = bwe_pipeline();
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    // The publisher's own bound (100 Gbit/s) makes Fluo send REMB each second.
    let most = json!({ "maxVideoRecvBandwidth": 100_000_000 });
    w.invoke(&pub_ep, "setMaxVideoRecvBandwidth", most);
    let (publisher, v) = plain_call(&mut w, &pub_ep, &v_ep);
    w.stream(&[publisher], Duration::from_secs(8));
    assert!(w.browsers[v].feedback_sent.twcc > 50, "feedback flows");
    let out = outbound(&mut w, &v_ep);
    let est = estimate_of(&out);
    assert!(est >= 900_000, "the estimate is shown: {est}");
    // The estimate (about 1-1.5 Mbit/s, climbing) has shown no congestion: it does not bound
    // the publisher, whose REMB (after the start value) is its own bound (before, the test
    // passed with no REMB at all: nothing bounds the publisher then, none is sent).
    let remb = &w.browsers[publisher].remb_in;
    assert!(remb.len() >= 5, "a REMB a second: {remb:?}");
    assert!(
        remb.iter().skip(1).all(|r| *r > 50_000_000_000),
        "REMB not pulled down to the estimate {est}: {remb:?}"
    );
}

#[test]
fn the_largest_bandwidth_settings_are_taken_without_overflow() {
    let (mut w, p) = bwe_pipeline();
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    // The model takes an int: i64::MAX is refused as such, without harm.
    let huge = json!({ "maxVideoSendBandwidth": i64::MAX });
    let refused = w.invoke_err(&v_ep, "setMaxVideoSendBandwidth", huge);
    assert_eq!(refused["code"], 40001, "{refused}");
    // The largest it takes, in kbit/s, goes through the estimator's maximum and the REMB
    // aggregation (times 1000, saturating).
    let most = json!(i32::MAX);
    w.invoke(
        &v_ep,
        "setMaxVideoSendBandwidth",
        json!({ "maxVideoSendBandwidth": most }),
    );
    w.invoke(
        &pub_ep,
        "setMaxVideoRecvBandwidth",
        json!({ "maxVideoRecvBandwidth": most }),
    );
    let (publisher, v) = plain_call(&mut w, &pub_ep, &v_ep);
    w.links.insert(v, Link::new(300_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(6));
    let out = outbound(&mut w, &v_ep);
    let est = estimate_of(&out);
    assert!(est < 500_000, "the estimate follows the link: {est}");
    assert!(!w.browsers[publisher].remb_in.is_empty(), "REMB still sent");
}

fn an_unconstrained_viewer_keeps_a_2_mbit_top_layer_from_start_to_end(mode: BweMode) {
    let (mut w, p) = bwe_pipeline_in(mode);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    w.subscribe(&v_ep, "FluoLayerChanged");
    let publisher = publisher_of(&mut w, &pub_ep, &LAYERS_2M);
    let (v, twcc) = viewer(&mut w, "v", &v_ep);
    assert!(twcc);
    w.invoke(&pub_ep, "connect", json!({"sink": v_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(14));
    // Its estimate starts at 1 Mbit/s and grows a few percent a second (at most 1.5 times
    // what is acknowledged): it never fell, so it caps nothing (before the fix: capped to h
    // at warm-up, and kept there).
    let seen = video(&w, v);
    assert!(seen.len() > 14 * 25 * 8, "{}", seen.len());
    let not_f: Vec<usize> = (seen.iter().filter(|r| r.len != F_LEN).map(|r| r.len)).collect();
    assert!(not_f.is_empty(), "f only, throughout: {not_f:?}");
    let out = outbound(&mut w, &v_ep);
    assert_eq!(out["fluoLayer"]["rid"], "f", "{out}");
    let est = estimate_of(&out);
    assert!(est >= 900_000, "the estimate is shown: {est}");
    let ev: Vec<Value> = (w.events().into_iter())
        .filter(|(t, _)| t == "FluoLayerChanged")
        .map(|(_, d)| d)
        .collect();
    assert!(
        ev.iter().all(|e| e["reason"] == "START" && e["rid"] == "f"),
        "{ev:?}"
    );
}

/// Two viewers of a `layers` publisher, connected, with TWCC: (publisher, viewers, their
/// endpoints); the first viewer's layer changes are subscribed to.
fn simulcast_call(
    w: &mut World,
    layers: &[(&str, (u16, u16), usize)],
) -> (usize, [usize; 2], [String; 2]) {
    w.delay = Duration::from_millis(10);
    let p = w.create("MediaPipeline", None);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let eps = [
        w.create("WebRtcEndpoint", Some(&p)),
        w.create("WebRtcEndpoint", Some(&p)),
    ];
    w.subscribe(&eps[0], "FluoLayerChanged");
    let publisher = publisher_of(w, &pub_ep, layers);
    let (a, a_twcc) = viewer(w, "a", &eps[0]);
    let (b, b_twcc) = viewer(w, "b", &eps[1]);
    assert!(a_twcc && b_twcc);
    for v in &eps {
        w.invoke(&pub_ep, "connect", json!({"sink": v}));
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    (publisher, [a, b], eps)
}

/// The layers of the frames `seen` holds from index `from` (see [`frames`]).
fn layers_from(seen: &[RtpSeen], from: usize) -> Vec<u8> {
    frames(&seen[from..]).into_iter().map(|(l, _)| l).collect()
}

fn a_2_mbit_top_layer_over_a_1_8_mbit_link_gives_the_middle_layer_without_sustained_loss(
    mode: BweMode,
) {
    let mut w = World::with_bwe_mode(mode);
    let (publisher, [weak, strong], eps) = simulcast_call(&mut w, &LAYERS_2M);
    w.links.insert(weak, Link::new(1_800_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(6));
    let dropped_before = w.links[&weak].dropped;
    let (weak_before, strong_before) = (video(&w, weak).len(), video(&w, strong).len());
    w.stream(&[publisher], Duration::from_secs(4));
    // Mild overload (f at about 2.1 Mbit/s on the wire). Here goog_cc's target fell by more
    // than 15 % before the loss sign too (keyframe bursts: loss above 10 %); paced, it
    // does not (`core::bwe::tests`, 2 Mbit/s over 1.8).
    let last = layers_from(&video(&w, weak), weak_before);
    assert!(last.len() > 4 * 25, "video flows: {}", last.len());
    assert!(last.iter().all(|l| *l == 1), "only h at the end: {last:?}");
    let link = &w.links[&weak];
    assert_eq!(link.dropped, dropped_before, "no loss at the end: {link:?}");
    assert!(link.dropped > 0, "f overflowed the link at first: {link:?}");
    let out = outbound(&mut w, &eps[0]);
    assert_eq!(out["fluoLayer"]["rid"], "h", "{out}");
    assert_eq!(out["fluoLayer"]["reason"], "BANDWIDTH", "{out}");
    // The unconstrained viewer keeps f.
    let strong_seen = video(&w, strong);
    assert!(strong_seen.iter().all(|r| r.len == F_LEN), "f only");
    assert!(strong_seen.len() - strong_before > 4 * 25 * 8);
    assert_eq!(outbound(&mut w, &eps[1])["fluoLayer"]["rid"], "f");
}

fn a_viewer_whose_300_kbit_limit_is_lifted_climbs_back_to_the_top_layer(mode: BweMode) {
    let mut w = World::with_bwe_mode(mode);
    let (publisher, [weak, _], eps) = simulcast_call(&mut w, &LAYERS);
    w.links.insert(weak, Link::new(300_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(8));
    let out = outbound(&mut w, &eps[0]);
    assert_eq!(out["fluoLayer"]["rid"], "q", "capped first: {out}");
    // The limit lifted: a probe shows the room (or congestion expires 10 s after its last
    // sign, the cap with it), and the viewer switches up at the next key frame (failed before:
    // capped to q for good).
    w.links.remove(&weak);
    let mut top_at = None;
    for half in 1..=30u64 {
        let before = video(&w, weak).len();
        w.stream(&[publisher], Duration::from_millis(500));
        if top_at.is_none() && layers_from(&video(&w, weak), before).contains(&2) {
            top_at = Some(half * 500);
        }
    }
    let top_at = top_at.expect("f within 15 s of the lift");
    eprintln!("f {top_at} ms after the limit was lifted");
    // Issue 20's bound. Here the probe that shows the room is goog_cc's next ALR probe, up
    // to 5 s after the one that failed behind the limit, its climb about 1 s, the room held
    // 1 s (`PROBE_CONFIRM`), then f's next key frame: about 8 s at worst (5.5-8 s seen).
    assert!(top_at <= 10_000, "f {top_at} ms after the lift");
    let out = outbound(&mut w, &eps[0]);
    assert_eq!(out["fluoLayer"]["rid"], "f", "{out}");
    assert!(switches_at_key_frames(&video(&w, weak)) >= 2);
}

/// The limit lifted long after the viewer's last sign of congestion, its hold 30 s after the
/// expiry's failed probe at about 14 s: goog_cc's probes (padding, every 5 s while the
/// viewer is sent much less than its estimate) show the room, and the viewer is back on f
/// within issue 20's 10 s of the lift, where the expiry would take about 25 s (failed before:
/// no f within 20 s).
fn a_viewer_whose_limit_is_lifted_long_after_its_last_sign_climbs_back_by_a_probe(mode: BweMode) {
    let mut w = World::with_bwe_mode(mode);
    let (publisher, [weak, _], eps) = simulcast_call(&mut w, &LAYERS);
    w.links.insert(weak, Link::new(300_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(20));
    let out = outbound(&mut w, &eps[0]);
    assert_eq!(out["fluoLayer"]["rid"], "q", "capped: {out}");
    w.links.remove(&weak);
    let padding = w.browsers[weak].padding_in;
    let mut top_at = None;
    for half in 1..=40u64 {
        let before = video(&w, weak).len();
        w.stream(&[publisher], Duration::from_millis(500));
        if top_at.is_none() && layers_from(&video(&w, weak), before).contains(&2) {
            top_at = Some(half * 500);
        }
    }
    let probes = w.browsers[weak].padding_in - padding;
    eprintln!("f {top_at:?} ms after the limit was lifted; {probes} padding packets since");
    let top_at = top_at.expect("f within 20 s of the lift");
    // Issue 20's 10 s (8 s before R44: 8.5 s in 4 of 19 runs, two or more tests at once). The
    // probe that shows the room comes up to 8 s after the last one failed behind the limit:
    // that one pulled the estimate down to about what q takes, out of goog_cc's ALR (sent
    // under 65 % of the estimate), and the next ALR probe waits for the estimate to climb
    // back into it and 5 s more; then about 1 s of climb and 1 s of held room.
    assert!(top_at <= 10_000, "f {top_at} ms after the lift");
    let out = outbound(&mut w, &eps[0]);
    assert_eq!(out["fluoLayer"]["rid"], "f", "{out}");
    assert!(probes > 0);
}

/// What a viewer held behind a limited link did, second by second (see [`held`]).
struct Held {
    /// The seconds (from 1) in which the estimate moved it up (a lift: its cap ended by a
    /// probe or the expiry).
    lifts: Vec<u64>,
    /// Per second: datagrams its link dropped and passed, the highest layer of the frames
    /// it got.
    dropped: Vec<u64>,
    passed: Vec<u64>,
    layer: Vec<Option<u8>>,
    /// Probe padding packets it received.
    padding: u64,
}

impl Held {
    /// Loss over seconds `from..to` (1-based, inclusive), in percent of datagrams.
    fn loss(&self, from: u64, to: u64) -> f64 {
        let r = (from as usize - 1)..(to as usize).min(self.dropped.len());
        let d: u64 = self.dropped[r.clone()].iter().sum();
        let p: u64 = self.passed[r].iter().sum();
        d as f64 * 100.0 / (d + p).max(1) as f64
    }

    /// The worst loss over any `w` seconds from second `from` on.
    fn worst(&self, from: u64, w: u64) -> f64 {
        let last = self.dropped.len() as u64;
        (from..=last.saturating_sub(w - 1))
            .map(|s| self.loss(s, s + w - 1))
            .fold(0.0, f64::max)
    }

    /// Seconds whose highest layer was each of q, h, f.
    fn seconds_on(&self) -> [usize; 3] {
        [0, 1, 2].map(|l| self.layer.iter().filter(|x| **x == Some(l)).count())
    }

    fn print(&self, what: &str) {
        let n = self.dropped.len() as u64;
        eprintln!(
            "{what}: lifts at {:?} s; loss {:.2} % overall, {:.2} % after 10 s, worst 2 s after 10 s {:.1} %; seconds on q/h/f {:?}; padding {}",
            self.lifts,
            self.loss(1, n),
            self.loss(11, n),
            self.worst(11, 2),
            self.seconds_on(),
            self.padding,
        );
    }
}

/// A viewer of `LAYERS` behind `link` for `secs` seconds, from its start (see [`Held`]).
fn held(link: Link, secs: u64) -> Held {
    let mut w = World::with_bwe();
    let (publisher, [weak, _], eps) = simulcast_call(&mut w, &LAYERS);
    w.links.insert(weak, link);
    let up = |w: &mut World| {
        (w.events().into_iter()).any(|(t, d)| {
            t == "FluoLayerChanged"
                && d["source"] == eps[0]
                && d["reason"] == "BANDWIDTH"
                && d["rid"] != "q"
        })
    };
    let mut h = Held {
        lifts: vec![],
        dropped: vec![],
        passed: vec![],
        layer: vec![],
        padding: 0,
    };
    for s in 1..=secs {
        up(&mut w);
        let (d0, p0) = (w.links[&weak].dropped, w.links[&weak].passed);
        let before = video(&w, weak).len();
        w.stream(&[publisher], Duration::from_secs(1));
        if up(&mut w) {
            h.lifts.push(s);
        }
        h.dropped.push(w.links[&weak].dropped - d0);
        h.passed.push(w.links[&weak].passed - p0);
        h.layer
            .push(layers_from(&video(&w, weak), before).into_iter().max());
    }
    h.padding = w.browsers[weak].padding_in;
    h
}

/// 120 s behind 300 kbit/s with a queue of `queue` bytes (no burst allowance: a truly
/// limited link): what a user relies on. Lifts (the expiry's or a probe's) fail and back off
/// (holds of 10, 30, then 90 s; a probe's room must hold a second, and after two failures
/// in a row only the hold's end lifts): at most 2 in 120 s, at least 30 s apart; loss after
/// the first 10 s under 2 %, none sustained (the worst 2 s under 25 %: a failed lift's
/// second of overflow); on q at the end. No lift at all is right too (goog_cc's probes can
/// keep showing the limit: each fall of the target a sign); the back-off itself is unit
/// tested (`core::bwe::tests`).
fn held_for_120_s(queue: usize) {
    held_for_120_s_behind(Link::new(300_000, queue));
}

/// [`held_for_120_s`]'s assertions behind `link`.
fn held_for_120_s_behind(link: Link) {
    let what = format!(
        "300 kbit/s, {} B burst, {} B queue, 120 s",
        link.burst_bytes, link.queue_bytes
    );
    let h = held(link, 120);
    h.print(&what);
    assert!(h.lifts.len() <= 2, "lifts at {:?}", h.lifts);
    assert!(
        h.lifts.windows(2).all(|p| p[1] - p[0] >= 30),
        "{:?}",
        h.lifts
    );
    assert!(
        h.loss(11, 120) < 2.0,
        "loss after 10 s: {:.2} %",
        h.loss(11, 120)
    );
    assert!(
        h.worst(11, 2) < 25.0,
        "worst 2 s after 10 s: {:.1} %",
        h.worst(11, 2)
    );
    assert_eq!(
        h.layer.last().copied().flatten(),
        Some(0),
        "on q at the end"
    );
}

#[test]
fn a_viewer_behind_300_kbits_and_15_kb_for_120_s_backs_off_its_lifts_without_sustained_loss() {
    held_for_120_s(15_000);
}

#[test]
fn a_viewer_behind_300_kbits_and_7_5_kb_for_120_s_backs_off_its_lifts_without_sustained_loss() {
    held_for_120_s(7_500);
}

/// The same behind e2e 89's tbf (`rate 300kbit burst 5000 limit 7500`: tc's latency 66.7 ms),
/// whose bucket lets a probe cluster of tens of milliseconds at twice the estimate through at
/// the rate it was sent (5 kB at 600 kbit/s last 133 ms): a probe that reads the cluster's
/// own rate must not lift the viewer while a failed lift bars probe lifts (main's CI run of
/// e2e 89: W on f again 4 s after the expiry's failed try).
#[test]
fn a_viewer_behind_300_kbits_with_a_5_kb_burst_for_120_s_is_not_lifted_by_probes_the_burst_fools() {
    held_for_120_s_behind(Link::tbf(300_000, 5_000, 7_500));
}

/// A plain publisher sending about 110 kbit/s and its viewer behind a 300 kbit/s tbf with a
/// short queue (a 5 kB burst, 1.5 kB waiting): the viewer's initial probe (2 Mbit/s for 200
/// ms) is mostly lost, so goog_cc's loss-based estimator falls to about 200 kbit/s while its
/// delay-based one, which saw no queue grow, stays at the 1 Mbit/s start. Application
/// limited, the viewer acknowledges about 110 kbit/s and no ALR probe comes (its estimate is
/// above what it can use). Its estimate, and the publisher's REMB it is part of, must stay
/// near what the link carries: goog_cc's loss-based estimator climbed back about 30 % a
/// step, on no evidence, to the 1 Mbit/s start once the start's loss left its window (7-9 s:
/// 217, 368, 622, 1004 kbit/s, then 1004 to the end; e2e 89's W did the same behind tc's
/// tbf, there capped to q). Its climb is bounded by twice the acknowledged rate
/// (`core::bwe::throughput`).
#[test]
fn an_application_limited_viewers_estimate_does_not_climb_back_to_the_start_after_its_initial_probes_loss(
) {
    let (mut w, p) = bwe_pipeline();
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    let (publisher, v) = plain_call(&mut w, &pub_ep, &v_ep);
    w.links.insert(v, Link::tbf(300_000, 5_000, 1_500));
    let mut estimates = vec![];
    for _ in 0..30 {
        let mut tick = 0u64;
        w.run(Duration::from_secs(1), Duration::from_millis(1), |w| {
            let now = w.now.mono;
            // 400-byte frames at 30 fps and the audio: about 110 kbit/s on the wire.
            if tick.is_multiple_of(33) {
                w.browsers[publisher].send_video_frame(now, 400);
            }
            if tick.is_multiple_of(20) {
                w.browsers[publisher].send_audio_frame(now);
            }
            tick += 1;
        });
        let out = outbound(&mut w, &v_ep);
        estimates.push(out["fluoBandwidthEstimate"].as_u64().unwrap_or(0) / 1000);
    }
    // The initial probe's loss made the viewer congested: its estimate is in the REMB.
    let remb = w.browsers[publisher].remb_in.last().copied().unwrap_or(0);
    eprintln!("estimates (kbit/s, each second) {estimates:?}; last REMB {remb}");
    assert!(
        w.links[&v].dropped > 0,
        "the initial probe overflowed the queue"
    );
    // The scenario: the start's loss showed the limit (with probe clusters of 30 ms, before
    // h45, the initial probe fit the bucket: no loss to speak of, no congestion, the estimate
    // stayed at the start and the viewer was not in the REMB).
    let shown = (estimates[1..=5].iter()).any(|e| *e > 0 && *e < 450);
    assert!(shown, "the start's loss showed the limit: {estimates:?}");
    assert!(estimates[2..].iter().all(|e| *e > 0), "{estimates:?}");
    assert!(
        estimates.iter().all(|e| *e < 450),
        "under 1.5 times the link once shown: {estimates:?}"
    );
    assert!(remb < 450_000, "the publisher's REMB: {remb}");
}

#[test]
fn a_viewer_congested_late_counts_in_the_remb_at_once_its_warm_up_from_its_first_estimate() {
    let (mut w, p) = bwe_pipeline();
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let a_ep = w.create("WebRtcEndpoint", Some(&p));
    let b_ep = w.create("WebRtcEndpoint", Some(&p));
    let (publisher, a) = plain_call(&mut w, &pub_ep, &a_ep);
    let (b, twcc) = viewer(&mut w, "b", &b_ep);
    assert!(twcc);
    w.invoke(&pub_ep, "connect", json!({"sink": b_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    // A is congested from the start (its estimate settles), B only from 8 s on.
    w.links.insert(a, Link::new(500_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(8));
    w.links.insert(b, Link::new(150_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(4));
    let est_a = estimate_of(&outbound(&mut w, &a_ep));
    let est_b = estimate_of(&outbound(&mut w, &b_ep));
    let remb = w.browsers[publisher].remb_in.clone();
    eprintln!("estimates A {est_a} B {est_b}, REMB {remb:?}");
    assert!(est_b < est_a, "B behind the narrower link: {est_b} {est_a}");
    // B's estimate has been there since its first second: its warm-up is over when it shows
    // congestion, so the REMB follows it within the next REMBs (failed before: 5 s more of
    // A's, B's warm-up counting from its congestion).
    let last = *remb.last().unwrap();
    assert!(
        last < est_a && last <= est_b + est_b / 2,
        "REMB {last} follows B's {est_b}, not A's {est_a}"
    );
}

/// Whether a datagram is a padding-only RTP packet's (the P bit; not RTCP): probe padding.
fn is_padding(data: &[u8]) -> bool {
    data.len() > 12 && data[0] & 0xe0 == 0xa0 && !(192..=223).contains(&data[1])
}

/// R43-final 4: a viewer whose peer is lost (nothing gets through either way until ICE
/// gives up) has no probe padding sent to it (its estimator is paused; in this World none
/// was sent before either: the pause's own effects are unit tested in `core::bwe::tests`).
/// Its return is not tested here: the in-memory peer's ICE does not come back.
#[test]
fn a_lost_viewer_is_not_probed() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut w = World::with_bwe();
    let (publisher, [v, _], eps) = simulcast_call(&mut w, &LAYERS);
    w.subscribe(&eps[0], "ConnectionStateChanged");
    // Held low: probed every 5 s while there.
    w.links.insert(v, Link::new(300_000, 15_000));
    w.stream(&[publisher], Duration::from_secs(8));
    assert!(w.browsers[v].padding_in > 0, "probed while there");
    let padding = Rc::new(Cell::new(0u64));
    let counted = padding.clone();
    w.drop_to = Some(Box::new(move |i, data| {
        if i == v && is_padding(data) {
            counted.set(counted.get() + 1);
        }
        i == v
    }));
    w.drop_from = Some(Box::new(move |i, _| i == v));
    let state = |w: &mut World, what: &str| {
        (w.events().into_iter()).any(|(t, d)| {
            t == "ConnectionStateChanged" && d["source"] == eps[0] && d["newState"] == what
        })
    };
    let mut lost_at = None;
    for s in 1..=60u64 {
        w.stream(&[publisher], Duration::from_secs(1));
        if state(&mut w, "DISCONNECTED") {
            lost_at = Some(s);
            break;
        }
    }
    let lost_at = lost_at.expect("the viewer's loss reported within 60 s");
    let until_lost = padding.get();
    w.stream(&[publisher], Duration::from_secs(30));
    let after = padding.get() - until_lost;
    eprintln!("lost after {lost_at} s: {until_lost} padding packets until then, {after} in the 30 s after");
    assert_eq!(after, 0, "no probe padding to a lost peer");
}

/// R43-probe 2: a viewer with room for the top layer is not probed on beyond what it could
/// use: goog_cc is told the top layer's rate (with the cap's headroom) as the most the viewer
/// takes, so once its estimate is above that its probes stop (before, ALR probes every 5 s
/// climbed towards 5 Mbit/s, about 30 kbit/s of padding per viewer).
#[test]
fn a_viewer_with_room_for_the_top_layer_is_not_probed_on() {
    let mut w = World::with_bwe();
    let (publisher, [a, b], eps) = simulcast_call(&mut w, &LAYERS);
    w.stream(&[publisher], Duration::from_secs(20));
    let at_20 = [a, b].map(|v| w.browsers[v].padding_in);
    w.stream(&[publisher], Duration::from_secs(20));
    let later = [a, b].map(|v| w.browsers[v].padding_in);
    let est = estimate_of(&outbound(&mut w, &eps[0]));
    eprintln!(
        "padding packets by 20 s {at_20:?}, over 20-40 s {:?}; estimate at 40 s {est}",
        [later[0] - at_20[0], later[1] - at_20[1]]
    );
    assert_eq!(outbound(&mut w, &eps[0])["fluoLayer"]["rid"], "f");
    // f at about 750 kbit/s: 880 kbit/s of estimate take it.
    assert!(est >= 880_000, "the estimate has room for f: {est}");
    assert!(
        later.iter().zip(at_20).all(|(l, e)| l - e == 0),
        "no probes over 20-40 s: {at_20:?} {later:?}"
    );
}

/// R44-probe2: a plain (not simulcast) source's unlimited viewer is not probed on beyond what
/// it could use either: it has no layers, so goog_cc is told what the viewer is sent (about
/// 720 kbit/s here, with the cap's headroom) as the most it takes (before, its ALR probes
/// climbed towards 5 Mbit/s every 5 s: padding in every 20 s, an estimate of several Mbit/s).
#[test]
fn a_plain_sources_viewer_is_not_probed_beyond_what_it_is_sent() {
    let (mut w, p) = bwe_pipeline();
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    let (publisher, v) = plain_call(&mut w, &pub_ep, &v_ep);
    w.stream(&[publisher], Duration::from_secs(20));
    let at_20 = w.browsers[v].padding_in;
    w.stream(&[publisher], Duration::from_secs(20));
    let later = w.browsers[v].padding_in - at_20;
    let est = estimate_of(&outbound(&mut w, &v_ep));
    eprintln!("padding packets by 20 s {at_20}, over 20-40 s {later}; estimate at 40 s {est}");
    assert!(
        est >= 800_000,
        "the estimate has room for the stream: {est}"
    );
    assert_eq!(later, 0, "no probes over 20-40 s (estimate {est})");
}

/// `--bwe auto`, a plain publisher: the viewer's answer keeps TWCC, but what it is sent carries
/// no transport-wide sequence number, so it returns no TWCC feedback and nothing is estimated
/// or probed; it sends REMB (as Chromium does for such video), which bounds the publisher as
/// with `--bwe off` (with `on` it would get numbers and send no REMB).
#[test]
fn in_auto_a_plain_sources_viewer_gets_no_twcc_numbers_and_the_publisher_follows_its_remb() {
    let (mut w, p) = bwe_pipeline_in(BweMode::Auto);
    let pub_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    let (publisher, v) = plain_call(&mut w, &pub_ep, &v_ep);
    w.stream(&[publisher], Duration::from_secs(3));
    let b = &w.browsers[v];
    assert!(video(&w, v).len() > 3 * 25, "video flows");
    assert_eq!(b.twcc_numbered_in, 0, "no transport-wide sequence number");
    assert_eq!(b.feedback_sent.twcc, 0, "so no TWCC feedback");
    assert_eq!(b.padding_in, 0, "no probe");
    assert!(b.sends_remb());
    assert!(w.browsers[v].ask_for_bitrate(300_000));
    w.stream(&[publisher], Duration::from_secs(2));
    assert!(w.browsers[v].feedback_sent.remb >= 1);
    let remb = w.browsers[publisher].remb_in.last().copied();
    assert_eq!(
        remb,
        Some(300_000),
        "the publisher follows its viewer's REMB"
    );
    let out = outbound(&mut w, &v_ep);
    assert!(out.get("fluoBandwidthEstimate").is_none(), "{out}");
}

/// `--bwe auto`, a viewer moved from a plain publisher to a simulcast one and back: while it
/// gets the simulcast one, transport-wide numbers, TWCC feedback, an estimate (started afresh)
/// and the low layer behind its 300 kbit/s link; back on the plain one, none of them, and its
/// REMB bounds that publisher again.
#[test]
fn in_auto_a_viewer_moved_between_a_plain_and_a_simulcast_source_changes_its_feedback() {
    let (mut w, p) = bwe_pipeline_in(BweMode::Auto);
    let plain_ep = w.create("WebRtcEndpoint", Some(&p));
    let sim_ep = w.create("WebRtcEndpoint", Some(&p));
    let v_ep = w.create("WebRtcEndpoint", Some(&p));
    let plain = w.join("plain", false, &plain_ep, Direction::SendOnly);
    let sim = publisher(&mut w, &sim_ep);
    let (v, twcc) = viewer(&mut w, "v", &v_ep);
    assert!(twcc, "TWCC kept in the answer");
    w.invoke(&plain_ep, "connect", json!({"sink": v_ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    let both = [plain, sim];
    w.stream(&both, Duration::from_secs(3));
    assert!(video(&w, v).len() > 3 * 25, "the plain video flows");
    assert_eq!(w.browsers[v].twcc_numbered_in, 0);
    assert!(w.browsers[v].sends_remb());

    // To the simulcast publisher, behind 300 kbit/s.
    w.invoke(&plain_ep, "disconnect", json!({"sink": v_ep}));
    w.invoke(&sim_ep, "connect", json!({"sink": v_ep}));
    w.links.insert(v, Link::new(300_000, 15_000));
    w.stream(&both, Duration::from_secs(10));
    let b = &w.browsers[v];
    assert!(b.twcc_numbered_in > 100, "{}", b.twcc_numbered_in);
    assert!(b.feedback_sent.twcc > 50, "{:?}", b.feedback_sent);
    assert!(!b.sends_remb());
    let out = outbound(&mut w, &v_ep);
    let est = estimate_of(&out);
    assert!((60_000..450_000).contains(&est), "estimate {est}");
    assert_eq!(out["fluoLayer"]["rid"], "q", "{out}");

    // Back to the plain publisher, the link unlimited.
    w.links.remove(&v);
    w.invoke(&sim_ep, "disconnect", json!({"sink": v_ep}));
    w.invoke(&plain_ep, "connect", json!({"sink": v_ep}));
    w.stream(&both, Duration::from_secs(1));
    let (numbered, fb) = (
        w.browsers[v].twcc_numbered_in,
        w.browsers[v].feedback_sent.twcc,
    );
    let seen = video(&w, v).len();
    w.stream(&both, Duration::from_secs(2));
    assert!(video(&w, v).len() > seen + 2 * 25, "the plain video flows");
    assert_eq!(w.browsers[v].twcc_numbered_in, numbered, "no more numbers");
    assert_eq!(w.browsers[v].feedback_sent.twcc, fb, "no more feedback");
    assert!(w.browsers[v].sends_remb());
    let out = outbound(&mut w, &v_ep);
    assert!(out.get("fluoBandwidthEstimate").is_none(), "{out}");
    assert!(w.browsers[v].ask_for_bitrate(250_000));
    w.stream(&both, Duration::from_secs(2));
    let remb = w.browsers[plain].remb_in.last().copied();
    assert_eq!(remb, Some(250_000), "its REMB bounds the plain publisher");
}

/// The layered tests above in both modes that estimate a simulcast source's viewers: `on`, and
/// `auto` (the server's default), where they are estimated as with `on`.
macro_rules! on_and_auto {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn on() {
                super::$name(super::BweMode::On)
            }

            #[test]
            fn auto() {
                super::$name(super::BweMode::Auto)
            }
        }
    )*};
}

on_and_auto!(
    a_viewer_behind_300_kbits_gets_the_low_layer_without_sustained_loss_the_other_keeps_the_top,
    an_unconstrained_viewer_keeps_a_2_mbit_top_layer_from_start_to_end,
    a_2_mbit_top_layer_over_a_1_8_mbit_link_gives_the_middle_layer_without_sustained_loss,
    a_viewer_whose_300_kbit_limit_is_lifted_climbs_back_to_the_top_layer,
    a_viewer_whose_limit_is_lifted_long_after_its_last_sign_climbs_back_by_a_probe,
);
