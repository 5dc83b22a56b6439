//! WebRtcEndpoint end to end in memory: negotiation either way, forwarding, source switches,
//! keyframe throttling, NACK repair, bad input, vanishing peers. Virtual time throughout.
use fluo_testkit::World;
use serde_json::json;
use std::time::Duration;
use str0m::media::Direction;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pipeline_with_endpoints(w: &mut World, n: usize) -> (String, Vec<String>) {
    let p = w.create("MediaPipeline", None);
    let eps = (0..n)
        .map(|_| w.create("WebRtcEndpoint", Some(&p)))
        .collect();
    (p, eps)
}

#[test]
fn loopback_with_the_browser_offering_and_candidates_first() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 1);
    let ep = &eps[0];
    for ev in [
        "IceCandidateFound",
        "IceGatheringDone",
        "ConnectionStateChanged",
        "MediaFlowInStateChanged",
        "MediaFlowOutStateChanged",
        "NewCandidatePairSelected",
        "DtlsConnectionStateChange",
        "IceComponentStateChanged",
        "MediaStateChanged",
    ] {
        w.subscribe(ep, ev);
    }
    w.invoke(ep, "connect", json!({"sink": ep}));
    let b = w.join("alice", false, ep, Direction::SendRecv);
    assert!(
        w.connect_all(Duration::from_secs(5)),
        "ICE + DTLS within 5 s"
    );
    w.stream(&[b], Duration::from_secs(2));
    let [audio, video] = w.browsers[b].frames_in;
    assert!(video >= 50, "video frames looped back: {video}");
    assert!(audio >= 80, "audio frames looped back: {audio}");
    let evs = w.events();
    let names: Vec<&str> = evs.iter().map(|(t, _)| t.as_str()).collect();
    for want in [
        "IceCandidateFound",
        "IceGatheringDone",
        "ConnectionStateChanged",
    ] {
        assert!(names.contains(&want), "{want} missing in {names:?}");
    }
    let cand = &evs
        .iter()
        .find(|(t, _)| t == "IceCandidateFound")
        .unwrap()
        .1;
    assert!(cand["candidate"]["candidate"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1 40000 typ host"));
    let flowing = |t: &str, m: &str| {
        evs.iter()
            .any(|(n, d)| n == t && d["mediaType"] == m && d["state"] == "FLOWING")
    };
    assert!(flowing("MediaFlowInStateChanged", "VIDEO"));
    assert!(flowing("MediaFlowInStateChanged", "AUDIO"));
    assert!(flowing("MediaFlowOutStateChanged", "VIDEO"));
    assert_eq!(w.invoke(ep, "getConnectionState", json!({})), "CONNECTED");
    assert_eq!(
        w.invoke(ep, "isMediaFlowingIn", json!({"mediaType": "VIDEO"})),
        true
    );
    let local = w.invoke(ep, "getLocalSessionDescriptor", json!({}));
    // One MediaStream for audio and video, as KMS sends.
    let msids: std::collections::BTreeSet<&str> = local
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("a=msid:"))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(msids.len(), 1, "{local}");
    let pair = &evs
        .iter()
        .find(|(t, _)| t == "NewCandidatePairSelected")
        .expect("pair event")
        .1;
    assert!(pair["candidatePair"]["localCandidate"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1 40000"));
    assert!(pair["candidatePair"]["remoteCandidate"]
        .as_str()
        .unwrap()
        .contains("127.0.0.2 5000"));
    assert_eq!(
        w.invoke(ep, "getICECandidatePairs", json!({}))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let ice = w.invoke(ep, "getIceConnectionState", json!({}));
    assert!(
        ["CONNECTED", "READY"].contains(&ice[0]["state"].as_str().unwrap()),
        "{ice}"
    );
    let dtls = w.invoke(ep, "getDtlsConnectionState", json!({}));
    assert_eq!(dtls[0]["state"], "CONNECTED");
    let stats = w.invoke(ep, "getStats", json!({"mediaType": "VIDEO"}));
    let of = |ty: &str| {
        stats
            .as_object()
            .unwrap()
            .values()
            .find(|v| v["type"] == ty)
            .cloned()
    };
    let inbound = of("inboundrtp").expect("inbound video stats");
    assert_eq!(inbound["__type__"], "RTCInboundRTPStreamStats");
    assert!(inbound["packetsReceived"].as_u64().unwrap() > 100);
    let outbound = of("outboundrtp").expect("outbound video stats");
    assert!(outbound["packetsSent"].as_u64().unwrap() > 100);
    // As with KMS, the endpoint's latency entry only while the pipeline's latencyStats is on.
    assert!(of("endpoint").is_none());
    assert!(stats
        .as_object()
        .unwrap()
        .values()
        .all(|v| v["mediaTrackId"] != "audio"));
    // The browser stops sending: the output is reported NOT_FLOWING.
    w.run(Duration::from_secs(4), ms(10), |_| {});
    let evs = w.events();
    assert!(
        evs.iter()
            .any(|(t, d)| t == "MediaFlowOutStateChanged" && d["state"] == "NOT_FLOWING"),
        "{evs:?}"
    );
}

/// Whether a datagram is RTP (not RTCP, STUN or DTLS).
fn is_rtp(d: &[u8]) -> bool {
    d.len() > 12 && (128..192).contains(&d[0]) && !(192..224).contains(&d[1])
}

/// The SSRCs of the first `m=video` section of an SDP.
fn video_ssrcs(sdp: &str) -> Vec<u32> {
    let video = sdp
        .split("m=")
        .find(|m| m.starts_with("video"))
        .unwrap_or("");
    video
        .lines()
        .filter_map(|l| l.strip_prefix("a=ssrc:"))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

/// The first entry of a getStats report with this `type`.
fn entry(stats: &serde_json::Value, ty: &str, track: &str) -> serde_json::Value {
    stats
        .as_object()
        .unwrap()
        .values()
        .find(|v| v["type"] == ty && (track.is_empty() || v["mediaTrackId"] == track))
        .cloned()
        .unwrap_or_else(|| panic!("no {ty} {track} entry in {stats:#}"))
}

#[test]
fn get_stats_reports_loss_feedback_round_trip_and_the_ssrc_really_sent() {
    let mut w = World::new();
    // 20 ms each way: a 40 ms round trip.
    w.delay = ms(20);
    let (p, eps) = pipeline_with_endpoints(&mut w, 2);
    let (publisher, viewer) = (eps[0].clone(), eps[1].clone());
    w.invoke(&publisher, "connect", json!({"sink": viewer}));
    w.invoke(
        &publisher,
        "setMaxVideoRecvBandwidth",
        json!({"maxVideoRecvBandwidth": 500}),
    );
    let a = w.join("pub", false, &publisher, Direction::SendOnly);
    let b = w.join("viewer", true, &viewer, Direction::RecvOnly);
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[a], ms(500));
    // Every 10th RTP packet is lost, both from the publisher and to the viewer.
    let (mut up, mut down) = (0u64, 0u64);
    w.drop_from = Some(Box::new(move |_, d| {
        up += u64::from(is_rtp(d));
        is_rtp(d) && up.is_multiple_of(10)
    }));
    w.drop_to = Some(Box::new(move |_, d| {
        down += u64::from(is_rtp(d));
        is_rtp(d) && down.is_multiple_of(10)
    }));
    w.stream(&[a], Duration::from_secs(3));
    w.browsers[b].request_keyframe();
    // Receiver reports on audio come every few seconds: time for two of them.
    w.stream(&[a], Duration::from_secs(9));
    assert!(w.dropped > 100, "the network dropped {}", w.dropped);

    let stats = w.invoke(&publisher, "getStats", json!({}));
    let audio_in = entry(&stats, "inboundrtp", "audio");
    let video_in = entry(&stats, "inboundrtp", "video");
    println!("publisher's endpoint: {audio_in:#} {video_in:#}");
    // Audio is not retransmitted: a tenth of the publisher's packets lost.
    let received = audio_in["packetsReceived"].as_i64().unwrap();
    let lost = audio_in["packetsLost"].as_i64().unwrap();
    let ratio = lost as f64 / (received + lost) as f64;
    assert!(
        (0.05..0.15).contains(&ratio),
        "audio lost {lost} of {}",
        received + lost
    );
    // RTCP's 8-bit fraction, as KMS reports it: about 26 for 10 %.
    let fraction = audio_in["fractionLost"].as_f64().unwrap();
    assert!(
        (10.0..45.0).contains(&fraction),
        "audio fractionLost {fraction}"
    );
    // Video losses are asked again (NACK); keyframes were asked for the viewer (PLI); the
    // publisher was told its maxVideoRecvBandwidth (REMB).
    assert!(video_in["nackCount"].as_u64().unwrap() > 0, "{video_in}");
    assert!(video_in["pliCount"].as_u64().unwrap() >= 1, "{video_in}");
    assert_eq!(video_in["remb"], 500_000, "{video_in}");
    assert!(video_in["jitter"].as_f64().unwrap() >= 0.0);

    let stats = w.invoke(&viewer, "getStats", json!({}));
    let audio_out = entry(&stats, "outboundrtp", "audio");
    let video_out = entry(&stats, "outboundrtp", "video");
    println!("viewer's endpoint: {audio_out:#} {video_out:#}");
    // What the viewer's receiver reports say.
    assert!(
        audio_out["packetsLost"].as_i64().unwrap() > 10,
        "{audio_out}"
    );
    assert!(
        audio_out["fractionLost"].as_f64().unwrap() > 5.0,
        "{audio_out}"
    );
    assert!(video_out["nackCount"].as_u64().unwrap() > 0, "{video_out}");
    assert!(video_out["pliCount"].as_u64().unwrap() >= 1, "{video_out}");
    let rtt = video_out["roundTripTime"].as_f64().unwrap();
    assert!(
        (0.035..0.08).contains(&rtt),
        "round trip {rtt} s for 2 x 20 ms"
    );
    assert!(
        video_out["targetBitrate"].as_f64().unwrap() > 10_000.0,
        "{video_out}"
    );
    // The SSRC reported is the one the answer announced and the viewer receives.
    let ssrc: u32 = video_out["ssrc"].as_str().unwrap().parse().unwrap();
    let local = w.invoke(&viewer, "getLocalSessionDescriptor", json!({}));
    let announced = video_ssrcs(local.as_str().unwrap());
    assert_eq!(announced.first(), Some(&ssrc), "{local}");
    let seen = w.browsers[b].rtp_in.iter().rev().find(|r| r.video).unwrap();
    assert_eq!(seen.ssrc, ssrc);
    let transport = entry(&stats, "transport", "");
    assert!(
        transport["bytesSent"].as_u64().unwrap() > 100_000,
        "{transport}"
    );

    // mediaType filters as with KMS; latencies only with the pipeline's latencyStats.
    let audio_only = w.invoke(&viewer, "getStats", json!({"mediaType": "AUDIO"}));
    assert!(audio_only
        .as_object()
        .unwrap()
        .values()
        .all(|v| v["mediaTrackId"] != "video" && v["type"] != "session"));
    w.invoke(&p, "setLatencyStats", json!({"latencyStats": true}));
    w.stream(&[a], ms(500));
    let stats = w.invoke(&viewer, "getStats", json!({"mediaType": "VIDEO"}));
    let e = &stats[viewer.as_str()];
    assert_eq!(e["__type__"], "EndpointStats", "{stats:#}");
    let e2e = &e["E2ELatency"][0];
    assert_eq!(
        (&e2e["type"], &e2e["name"]),
        (&json!("VIDEO"), &json!("sink_video_default"))
    );
    let avg = e2e["avg"].as_f64().unwrap();
    assert!(
        avg > 0.0 && avg < 1e8,
        "nanoseconds through the router: {avg}"
    );
    assert_eq!(e["inputLatency"].as_array().unwrap().len(), 1, "video only");
}

#[test]
fn media_state_changes_when_the_peers_rtcp_arrives_after_a_late_subscription() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 1);
    let ep = &eps[0];
    w.invoke(ep, "connect", json!({"sink": ep}));
    let b = w.add_browser("alice", false);
    // What an application subscribes to before negotiating.
    for ev in [
        "IceCandidateFound",
        "IceGatheringDone",
        "IceComponentStateChanged",
        "NewCandidatePairSelected",
        "ConnectionStateChanged",
        "MediaFlowInStateChanged",
        "MediaFlowOutStateChanged",
    ] {
        w.subscribe(ep, ev);
    }
    w.negotiate_browser_offer(b, ep, Direction::SendRecv);
    assert!(w.connect_all(Duration::from_secs(5)));
    // Connected: no RTCP yet, so no media yet; the application subscribes only now.
    assert_eq!(w.invoke(ep, "getMediaState", json!({})), "DISCONNECTED");
    w.subscribe(ep, "MediaStateChanged");
    w.stream(&[b], Duration::from_secs(3));
    assert_eq!(w.invoke(ep, "getMediaState", json!({})), "CONNECTED");
    let evs = w.events();
    let names: Vec<String> = evs
        .iter()
        .map(|(t, d)| match d.get("state").or(d.get("newState")) {
            Some(s) => format!("{t}:{}", s.as_str().unwrap_or_default()),
            None => t.clone(),
        })
        .collect();
    println!("events: {names:#?}");
    let at = |name: &str| {
        names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} missing: {names:?}"))
    };
    let last = |name: &str| names.iter().rposition(|n| n == name).unwrap();
    let media = at("MediaStateChanged:CONNECTED");
    assert_eq!(
        names.iter().filter(|n| n.starts_with("MediaState")).count(),
        1
    );
    // The order KMS gives: candidates, gathering done, ICE checks, the pair, the DTLS
    // connection, media flowing, and the media state when the peer's RTCP arrives.
    assert!(last("IceCandidateFound") < at("IceGatheringDone"));
    assert!(at("IceGatheringDone") < at("IceComponentStateChanged:CONNECTING"));
    // ICE passes through CONNECTED on its way up, as libnice's states do in KMS (applications
    // wait for it), and READY, when it comes, after it.
    let ice_up = at("IceComponentStateChanged:CONNECTED");
    assert!(at("IceComponentStateChanged:CONNECTING") < ice_up);
    if let Some(ready) = names
        .iter()
        .position(|n| n == "IceComponentStateChanged:READY")
    {
        assert!(ice_up < ready, "{names:?}");
    }
    assert!(
        names[..ice_up]
            .iter()
            .all(|n| !n.ends_with(":CONNECTED") && !n.ends_with(":READY")),
        "{names:?}"
    );
    assert!(ice_up < at("NewCandidatePairSelected"));
    assert!(at("NewCandidatePairSelected") < at("ConnectionStateChanged:CONNECTED"));
    assert!(at("ConnectionStateChanged:CONNECTED") < at("MediaFlowInStateChanged:FLOWING"));
    assert!(at("MediaFlowInStateChanged:FLOWING") < media);
    assert!(at("MediaFlowOutStateChanged:FLOWING") < media);
    // The browser goes away: the connection and the media go down.
    w.browsers[b].deaf = true;
    w.run(Duration::from_secs(40), ms(50), |_| {});
    let evs = w.events();
    assert!(
        evs.iter()
            .any(|(t, d)| t == "MediaStateChanged" && d["newState"] == "DISCONNECTED"),
        "{evs:?}"
    );
    assert_eq!(w.invoke(ep, "getMediaState", json!({})), "DISCONNECTED");
}

#[test]
fn fluo_offers_and_the_viewer_answers() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 2);
    let publisher = w.add_browser("pub", false);
    let viewer = w.add_browser("viewer", false);
    w.negotiate_browser_offer(publisher, &eps[0], Direction::SendOnly);
    w.negotiate_server_offer(viewer, &eps[1]);
    w.invoke(&eps[0], "connect", json!({"sink": eps[1]}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(2));
    assert!(
        w.browsers[viewer].frames_in[1] >= 50,
        "{:?}",
        w.browsers[viewer].frames_in
    );
    assert!(w.browsers[viewer].frames_in[0] >= 80);
    assert_eq!(
        w.browsers[publisher].frames_in,
        [0, 0],
        "nothing flows back"
    );
}

#[test]
fn fan_out_to_many_viewers_with_throttled_keyframe_requests() {
    let mut w = World::new();
    let n = 30;
    let (_, eps) = pipeline_with_endpoints(&mut w, n + 1);
    let publisher = w.join("pub", false, &eps[0], Direction::SendOnly);
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], ms(500));
    let before = w.browsers[publisher].keyframe_requests;
    let mut viewers = vec![];
    for (i, ep) in eps.iter().enumerate().skip(1) {
        let v = w.join(&format!("v{i}"), true, ep, Direction::RecvOnly);
        w.invoke(&eps[0], "connect", json!({"sink": ep}));
        viewers.push(v);
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(1));
    for &v in &viewers {
        let video = w.browsers[v].rtp_in.iter().filter(|r| r.video).count();
        assert!(video > 20, "viewer {v} got {video} video packets");
    }
    let asked = w.browsers[publisher].keyframe_requests - before;
    println!("{n} viewers joined: the publisher got {asked} keyframe requests");
    // 30 viewers joined and connected within a few hundred ms: the publisher is asked a
    // handful of times (one per 300 ms window), not 30 or 60 times.
    assert!(asked >= 1, "a keyframe was requested for the new viewers");
    assert!(asked <= 8, "keyframe requests to the publisher: {asked}");
}

#[test]
fn a_forwarded_packet_leaves_while_its_input_is_handled() {
    // No wait for a timer between a publisher's packet and the viewers' copies: the shell's
    // timer resolution (a millisecond) would add to every packet's latency.
    let mut w = World::new();
    let n = 5;
    let (_, eps) = pipeline_with_endpoints(&mut w, n + 1);
    let publisher = w.join("pub", false, &eps[0], Direction::SendOnly);
    for (i, ep) in eps.iter().enumerate().skip(1) {
        w.join(&format!("v{i}"), true, ep, Direction::RecvOnly);
        w.invoke(&eps[0], "connect", json!({"sink": ep}));
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], ms(500));
    while w.core.poll_transmit().is_some() {}
    let now = w.now.mono;
    assert!(w.browsers[publisher].send_video_frame(now, 1000));
    let server = w.server;
    let mut out = 0;
    for (src, dst, data) in w.browsers[publisher].take_outbox(now) {
        if dst == server {
            w.core.handle_receive(now, dst, src, &data);
            // What the core sends right away, without handle_timeout.
            while let Some(d) = w.core.poll_transmit() {
                out += usize::from(d.contents.len() > 900);
            }
        }
    }
    assert_eq!(
        out, n,
        "one SRTP copy per viewer, sent while the input was handled"
    );
}

#[test]
fn a_viewer_switched_between_sources_sees_one_continuous_stream() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 3);
    let a = w.join("a", false, &eps[0], Direction::SendOnly);
    let b = w.join("b", false, &eps[1], Direction::SendOnly);
    let v = w.join("viewer", true, &eps[2], Direction::RecvOnly);
    w.invoke(&eps[0], "connect", json!({"sink": eps[2]}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[a, b], Duration::from_secs(1));
    let switch_at = w.browsers[v].rtp_in.len();
    // Connecting B to the viewer replaces A as its source.
    w.invoke(&eps[1], "connect", json!({"sink": eps[2]}));
    w.stream(&[a, b], Duration::from_secs(1));
    let video: Vec<_> = w.browsers[v]
        .rtp_in
        .iter()
        .filter(|r| r.video)
        .copied()
        .collect();
    assert!(video.len() > 40 && switch_at > 10);
    let ssrcs: std::collections::BTreeSet<u32> = video.iter().map(|r| r.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC for the viewer's video");
    let mut seqs: Vec<u64> = video.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    for pair in seqs.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "no gap or jump in sequence numbers: {pair:?}"
        );
    }
    let mut by_seq = video.clone();
    by_seq.sort_by_key(|r| r.seq);
    for pair in by_seq.windows(2) {
        let d = pair[1].ts.wrapping_sub(pair[0].ts);
        assert!(
            d < 90_000 * 2,
            "timestamps move forward across the switch: {pair:?}"
        );
    }
}

#[test]
fn lost_packets_are_repaired_by_retransmission() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 2);
    let publisher = w.join("pub", false, &eps[0], Direction::SendOnly);
    let v = w.join("viewer", true, &eps[1], Direction::RecvOnly);
    w.invoke(&eps[0], "connect", json!({"sink": eps[1]}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], ms(500));
    // Drop every 10th large datagram to the viewer (media, not ICE/DTLS).
    let mut count = 0u64;
    w.drop_to = Some(Box::new(move |i, data| {
        if i != 1 || data.len() < 500 {
            return false;
        }
        count += 1;
        count.is_multiple_of(10)
    }));
    w.stream(&[publisher], Duration::from_secs(2));
    w.drop_to = None;
    w.stream(&[publisher], ms(500));
    assert!(w.dropped > 10, "the network dropped {}", w.dropped);
    let mut seqs: Vec<u64> = w.browsers[v]
        .rtp_in
        .iter()
        .filter(|r| r.video)
        .map(|r| r.seq)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let (first, last) = (seqs[0], *seqs.last().unwrap());
    let missing = (last - first + 1) as usize - seqs.len();
    assert_eq!(
        missing, 0,
        "{missing} video packets never arrived after {} drops",
        w.dropped
    );
    // Repaired by the egress fast path from the source's resend cache: str0m, which keeps
    // ICE, DTLS and RTCP, wrote no RTP for the viewer.
    assert_eq!(w.core.egress_of(&eps[1]), Some((true, 0)));
}

#[test]
fn bad_sdp_and_candidates_get_kurento_errors() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 1);
    let ep = &eps[0];
    let e = w.invoke_err(ep, "getLocalSessionDescriptor", json!({}));
    assert_eq!(e["code"], 40202);
    let e = w.invoke_err(ep, "getRemoteSessionDescriptor", json!({}));
    assert_eq!(e["code"], 40203);
    let e = w.invoke_err(ep, "processOffer", json!({"offer": "hello"}));
    assert_eq!(e["code"], 40201);
    let e = w.invoke_err(ep, "processAnswer", json!({"answer": "v=0\r\n"}));
    assert!(e["code"] == 40201 || e["code"] == 40209, "{e}");
    let b = w.add_browser("x", false);
    let offer = w.browsers[b].offer(Direction::SendRecv);
    let no_bundle: String = offer
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("a=group:BUNDLE"))
        .collect();
    let e = w.invoke_err(ep, "processOffer", json!({"offer": no_bundle}));
    assert_eq!(e["code"], 40205, "{e}");
    let e = w.invoke_err(
        ep,
        "addIceCandidate",
        json!({"candidate": {"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0}}),
    );
    assert_eq!(e["code"], 40401);
    let e = w.invoke_err(ep, "processAnswer", json!({"answer": offer}));
    assert_eq!(e["code"], 40209, "processAnswer without generateOffer: {e}");
    let answer = w.invoke(ep, "processOffer", json!({"offer": offer}));
    assert!(answer.as_str().unwrap().starts_with("v=0"));
    let e = w.invoke_err(ep, "processOffer", json!({"offer": offer}));
    assert_eq!(e["code"], 40208);
    // The session has no data-channel section: a clear error, not a crash.
    let e = w.invoke_err(ep, "createDataChannel", json!({}));
    assert_eq!(e["code"], 40111);
    let e = w.invoke_err(ep, "closeDataChannel", json!({"channelId": 7}));
    assert_eq!(e["code"], 40107);
}

#[test]
fn hostile_datagrams_do_not_disturb_media() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 1);
    w.invoke(&eps[0], "connect", json!({"sink": eps[0]}));
    let b = w.join("b", false, &eps[0], Direction::SendRecv);
    assert!(w.connect_all(Duration::from_secs(5)));
    let server = w.server;
    let now = w.now.mono;
    let from_browser = w.browsers[b].addr;
    let stranger: std::net::SocketAddr = "127.0.0.99:1".parse().unwrap();
    let mut seed = 0x1234_5678u32;
    for i in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let len = (seed % 1400) as usize;
        let mut data: Vec<u8> = (0..len).map(|k| (seed >> (k % 24)) as u8).collect();
        if i % 3 == 0 && data.len() > 12 {
            data[0] = 0x80; // looks like RTP
        }
        let src = if i % 2 == 0 { from_browser } else { stranger };
        w.core.handle_receive(now, server, src, &data);
    }
    w.stream(&[b], Duration::from_secs(1));
    assert!(
        w.browsers[b].frames_in[1] >= 20,
        "{:?}",
        w.browsers[b].frames_in
    );
}

#[test]
fn a_vanished_peer_is_reported_and_released_endpoints_leave_the_media_core() {
    let mut w = World::new();
    let (p, eps) = pipeline_with_endpoints(&mut w, 1);
    w.subscribe(&eps[0], "ConnectionStateChanged");
    let b = w.join("b", false, &eps[0], Direction::SendRecv);
    assert!(w.connect_all(Duration::from_secs(5)));
    let _ = w.events();
    // The browser disappears without closing anything.
    w.browsers[b].deaf = true;
    w.browsers.pop();
    w.run(Duration::from_secs(40), ms(50), |_| {});
    let evs = w.events();
    assert!(
        evs.iter()
            .any(|(t, d)| t == "ConnectionStateChanged" && d["newState"] == "DISCONNECTED"),
        "{evs:?}"
    );
    // Once the peer is known gone, the endpoint stops sending to it and stops waking up.
    let sent_before = w.to_nobody;
    w.run(Duration::from_secs(60), ms(50), |_| {});
    let next = w
        .core
        .poll_timeout()
        .map(|t| t.saturating_duration_since(w.now.mono));
    println!(
        "to the vanished peer: {sent_before} datagrams until DISCONNECTED, {} in the next 60 s; next timer in {next:?}",
        w.to_nobody - sent_before,
    );
    assert_eq!(
        w.to_nobody, sent_before,
        "nothing more is sent to a peer that is gone"
    );
    assert!(
        next.is_some_and(|d| d >= Duration::from_secs(1)),
        "its timer is slow: {next:?}"
    );
    assert_eq!(w.core.endpoint_count(), 1);
    w.ok("release", json!({"object": p}));
    w.settle();
    assert_eq!(w.core.endpoint_count(), 0);
}

#[test]
fn data_channel_messages_are_relayed_between_connected_endpoints() {
    let mut w = World::new();
    let p = w.create("MediaPipeline", None);
    // Data channels are negotiated only by endpoints created with useDataChannels (as KMS).
    let eps: Vec<String> = (0..2)
        .map(|_| {
            w.create_with(
                "WebRtcEndpoint",
                json!({"mediaPipeline": p, "useDataChannels": true}),
            )
        })
        .collect();
    for ep in &eps {
        w.subscribe(ep, "DataChannelOpened");
    }
    let a = w.add_browser("a", false);
    let b = w.add_browser("b", false);
    for (i, ep) in [(a, &eps[0]), (b, &eps[1])] {
        let cand = w.browsers[i].candidate_json();
        w.invoke(ep, "addIceCandidate", json!({"candidate": cand}));
        let offer = w.browsers[i].offer_with_channel(Direction::SendRecv, Some("chat"));
        let answer = w.invoke(ep, "processOffer", json!({"offer": offer}));
        w.browsers[i].accept_answer(answer.as_str().unwrap());
    }
    // connect() without a media type connects AUDIO, VIDEO and DATA, both ways.
    w.invoke(&eps[0], "connect", json!({"sink": eps[1]}));
    w.invoke(&eps[1], "connect", json!({"sink": eps[0]}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.run(ms(500), ms(1), |_| {});
    assert!(w.browsers[a].channel.is_some() && w.browsers[b].channel.is_some());
    let opened = w
        .events()
        .iter()
        .filter(|(t, _)| t == "DataChannelOpened")
        .count();
    assert_eq!(opened, 2);
    assert!(w.browsers[a].send_text("hello from a"));
    assert!(w.browsers[b].send_text("hello from b"));
    w.run(ms(200), ms(1), |_| {});
    assert_eq!(w.browsers[b].channel_in, vec![b"hello from a".to_vec()]);
    assert_eq!(w.browsers[a].channel_in, vec![b"hello from b".to_vec()]);
    // Fluo can open a channel of its own on a session that has the data section.
    w.invoke(&eps[0], "createDataChannel", json!({"label": "server"}));
    w.run(ms(200), ms(1), |_| {});
    let more = w
        .events()
        .iter()
        .filter(|(t, _)| t == "DataChannelOpened")
        .count();
    assert_eq!(more, 1);
}

/// A viewer's str0m configured as a peer without transport-wide congestion control (no TWCC
/// header extension).
fn without_twcc(c: str0m::RtcConfig) -> str0m::RtcConfig {
    let mut exts = str0m::rtp::ExtensionMap::empty();
    for (id, e) in str0m::rtp::ExtensionMap::standard().iter() {
        if *e != str0m::rtp::Extension::TransportSequenceNumber {
            exts.set(id, e.clone());
        }
    }
    c.set_extension_map(exts)
}

#[test]
fn the_publisher_is_asked_for_the_least_its_settings_and_its_receive_only_viewers_allow() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 4);
    let publisher = w.join("pub", false, &eps[0], Direction::SendOnly);
    let v1 = w.join("v1", false, &eps[1], Direction::RecvOnly);
    w.join("v2", false, &eps[2], Direction::RecvOnly);
    // A viewer that also sends (one-to-one): TWCC agreed.
    let v3 = w.join("v3", false, &eps[3], Direction::SendRecv);
    for v in &eps[1..] {
        w.invoke(&eps[0], "connect", json!({"sink": v}));
    }
    w.invoke(
        &eps[0],
        "setMaxVideoRecvBandwidth",
        json!({"maxVideoRecvBandwidth": 800}),
    );
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(2));
    let last = *w.browsers[publisher]
        .remb_in
        .last()
        .expect("REMB sent to the publisher");
    assert_eq!(
        last, 800_000,
        "capped by the publisher's maxVideoRecvBandwidth"
    );
    // A receive-only viewer gets no TWCC, so (like Chromium) it sends REMB: when it can only
    // take 300 kbps, the publisher is asked for that.
    assert!(w.browsers[v1].sends_remb());
    assert!(w.browsers[v1].ask_for_bitrate(300_000));
    w.stream(&[publisher], Duration::from_secs(2));
    let last = *w.browsers[publisher].remb_in.last().unwrap();
    assert_eq!(last, 300_000, "folded from the slowest viewer");
    // A viewer with TWCC agreed sends no REMB (Chromium estimates from TWCC feedback then):
    // its estimate never reaches the publisher.
    assert!(!w.browsers[v3].sends_remb());
    assert!(!w.browsers[v3].ask_for_bitrate(50_000));
    w.stream(&[publisher], Duration::from_secs(2));
    assert_eq!(*w.browsers[publisher].remb_in.last().unwrap(), 300_000);
    // A viewer's maxVideoSendBandwidth also caps what the publisher is asked for.
    w.invoke(
        &eps[2],
        "setMaxVideoSendBandwidth",
        json!({"maxVideoSendBandwidth": 150}),
    );
    w.stream(&[publisher], Duration::from_secs(2));
    assert_eq!(*w.browsers[publisher].remb_in.last().unwrap(), 150_000);
    // ... but never below the publisher's minVideoRecvBandwidth.
    w.invoke(
        &eps[0],
        "setMinVideoRecvBandwidth",
        json!({"minVideoRecvBandwidth": 200}),
    );
    w.stream(&[publisher], Duration::from_secs(2));
    assert_eq!(*w.browsers[publisher].remb_in.last().unwrap(), 200_000);
    let e = w.invoke_err(
        &eps[0],
        "setMaxVideoRecvBandwidth",
        json!({"maxVideoRecvBandwidth": -5}),
    );
    assert_eq!(e["code"], 40107);
}

/// A new viewer's estimate lowers its publisher's REMB only after a warm-up of 5 s while
/// another viewer's estimate has settled (KMS semantics plus a warm-up: one viewer joining on a
/// slow start does not drag everybody down at once); the first viewer's counts at once.
#[test]
fn a_new_viewers_estimate_lowers_the_publishers_remb_only_after_its_warm_up() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 3);
    let publisher = w.join("pub", false, &eps[0], Direction::SendOnly);
    let v1 = w.join("v1", false, &eps[1], Direction::RecvOnly);
    w.invoke(&eps[0], "connect", json!({"sink": eps[1]}));
    w.invoke(&eps[0], "connect", json!({"sink": eps[2]}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(1));
    assert!(w.browsers[v1].ask_for_bitrate(900_000));
    w.stream(&[publisher], Duration::from_secs(2));
    let last = |w: &World| *w.browsers[publisher].remb_in.last().expect("REMB sent");
    assert_eq!(
        last(&w),
        900_000,
        "the only viewer's estimate counts at once"
    );
    w.stream(&[publisher], Duration::from_secs(5));
    assert_eq!(last(&w), 900_000);
    // A second viewer joins and can take only 200 kbit/s.
    let v2 = w.join("v2", false, &eps[2], Direction::RecvOnly);
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(1));
    assert!(w.browsers[v2].ask_for_bitrate(200_000));
    w.stream(&[publisher], Duration::from_secs(3));
    assert_eq!(last(&w), 900_000, "v2 is still warming up");
    w.stream(&[publisher], Duration::from_secs(4));
    assert_eq!(last(&w), 200_000, "v2's estimate counts after its warm-up");
    // The settled slow viewer's estimate rises: the publisher follows it at once.
    assert!(w.browsers[v2].ask_for_bitrate(600_000));
    w.stream(&[publisher], Duration::from_secs(2));
    assert_eq!(last(&w), 600_000);
    // v2 disconnected and connected again to the same publisher: its REMB still counts at
    // once (no warm-up again; failed before: 900 k, v2 warming up again).
    w.invoke(&eps[0], "disconnect", json!({"sink": eps[2]}));
    w.invoke(&eps[0], "connect", json!({"sink": eps[2]}));
    w.stream(&[publisher], Duration::from_secs(2));
    assert_eq!(last(&w), 600_000, "no new warm-up on connecting again");
}

#[test]
fn the_in_memory_browser_sends_remb_only_without_twcc_and_twcc_feedback_only_where_agreed() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 4);
    let tap = |c: str0m::RtcConfig| c.enable_raw_packets(true);
    let publisher = w.join("pub", false, &eps[0], Direction::SendOnly);
    // A receive-only viewer: Fluo's answer declines TWCC on its sections.
    let recvonly = w.add_browser_with("recvonly", false, tap);
    w.negotiate_browser_offer(recvonly, &eps[1], Direction::RecvOnly);
    // Send-receive: TWCC agreed.
    let both = w.add_browser_with("sendrecv", false, tap);
    w.negotiate_browser_offer(both, &eps[2], Direction::SendRecv);
    // Send-receive from a peer without TWCC.
    let no_twcc = w.add_browser_with("no-twcc", false, |c| tap(without_twcc(c)));
    w.negotiate_browser_offer(no_twcc, &eps[3], Direction::SendRecv);
    for v in &eps[1..] {
        w.invoke(&eps[0], "connect", json!({"sink": v}));
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(1));
    let asked: Vec<bool> = [recvonly, both, no_twcc]
        .iter()
        .map(|b| w.browsers[*b].ask_for_bitrate(500_000))
        .collect();
    assert_eq!(asked, [true, false, true]);
    w.stream(&[publisher], Duration::from_secs(2));
    let sent = |w: &World, b: usize| w.browsers[b].feedback_sent;
    for b in [recvonly, both, no_twcc] {
        let f = w.browsers[b].frames_in;
        assert!(f[1] >= 50, "{}: {f:?}", w.browsers[b].name);
    }
    assert!(sent(&w, recvonly).remb >= 1, "{:?}", sent(&w, recvonly));
    assert_eq!(
        sent(&w, recvonly).twcc,
        0,
        "TWCC declined: no TWCC feedback"
    );
    assert_eq!(sent(&w, both).remb, 0, "TWCC agreed: no REMB");
    assert!(sent(&w, both).twcc > 10, "{:?}", sent(&w, both));
    assert!(sent(&w, no_twcc).remb >= 1, "{:?}", sent(&w, no_twcc));
    assert_eq!(sent(&w, no_twcc).twcc, 0);
}

#[test]
fn a_viewer_without_the_publishers_codec_gets_an_error_event_not_garbage() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 2);
    w.subscribe(&eps[1], "Error");
    let publisher = w.add_browser("pub", false);
    // This viewer only speaks H.264 (and Opus); the publisher sends VP8.
    let v = w.add_browser_with("h264-only", true, |c| {
        c.clear_codecs().enable_h264(true).enable_opus(true, false)
    });
    w.negotiate_browser_offer(publisher, &eps[0], Direction::SendOnly);
    w.negotiate_browser_offer(v, &eps[1], Direction::RecvOnly);
    w.invoke(&eps[0], "connect", json!({"sink": eps[1]}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(1));
    let video = w.browsers[v].rtp_in.iter().filter(|r| r.video).count();
    let audio = w.browsers[v].rtp_in.iter().filter(|r| !r.video).count();
    assert_eq!(video, 0, "VP8 must not reach an H.264-only viewer");
    assert!(
        audio > 20,
        "audio (Opus on both sides) still flows: {audio}"
    );
    let errors: Vec<_> = w
        .events()
        .into_iter()
        .filter(|(t, _)| t == "Error")
        .collect();
    assert_eq!(errors.len(), 1, "reported once: {errors:?}");
    assert_eq!(errors[0].1["type"], "CODEC_MISMATCH");
    assert!(errors[0].1["description"].as_str().unwrap().contains("VP8"));
}

#[test]
fn disconnect_stops_media_and_reconnect_resumes_it_continuously() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 2);
    let publisher = w.join("pub", false, &eps[0], Direction::SendOnly);
    let v = w.join("viewer", true, &eps[1], Direction::RecvOnly);
    w.invoke(&eps[0], "connect", json!({"sink": eps[1]}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(1));
    let count = |w: &World| w.browsers[v].rtp_in.iter().filter(|r| r.video).count();
    let before = count(&w);
    assert!(before > 20);
    w.invoke(&eps[0], "disconnect", json!({"sink": eps[1]}));
    w.stream(&[publisher], Duration::from_secs(1));
    let during = count(&w);
    assert!(
        during - before <= 2,
        "media stopped after disconnect: {} more",
        during - before
    );
    w.invoke(
        &eps[0],
        "connect",
        json!({"sink": eps[1], "mediaType": "VIDEO"}),
    );
    w.stream(&[publisher], Duration::from_secs(1));
    let after = count(&w);
    assert!(after - during > 20, "media resumed after reconnect");
    let mut seqs: Vec<u64> = w.browsers[v]
        .rtp_in
        .iter()
        .filter(|r| r.video)
        .map(|r| r.seq)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    for pair in seqs.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "the viewer sees no gap across the pause: {pair:?}"
        );
    }
}

#[test]
fn releasing_an_endpoint_closes_the_browsers_session_at_once() {
    let mut w = World::new();
    let (p, eps) = pipeline_with_endpoints(&mut w, 1);
    let b = w.join("b", false, &eps[0], Direction::SendRecv);
    assert!(w.connect_all(Duration::from_secs(5)));
    assert!(!w.browsers[b].closed);
    w.ok("release", json!({"object": p}));
    w.run(ms(50), ms(1), |_| {});
    assert!(
        w.browsers[b].closed,
        "DTLS close_notify reached the browser within 50 ms"
    );
    assert_eq!(w.core.endpoint_count(), 0);
}

#[test]
fn media_flows_through_a_pass_through() {
    let mut w = World::new();
    let (p, eps) = pipeline_with_endpoints(&mut w, 2);
    let pt = w.create("PassThrough", Some(&p));
    let publisher = w.join("pub", false, &eps[0], Direction::SendOnly);
    let v = w.join("viewer", false, &eps[1], Direction::RecvOnly);
    w.invoke(&eps[0], "connect", json!({"sink": pt}));
    w.invoke(&pt, "connect", json!({"sink": eps[1]}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(1));
    let [audio, video] = w.browsers[v].frames_in;
    assert!(
        video >= 20 && audio >= 30,
        "{audio} audio, {video} video frames"
    );
}

#[test]
fn external_ipv4_replaces_the_host_address_and_media_crosses_a_one_to_one_nat() {
    let mut w = World::new();
    let public: std::net::SocketAddr = "198.51.100.7:40000".parse().unwrap();
    w.public_addr = Some(public);
    let (_, eps) = pipeline_with_endpoints(&mut w, 2);
    for ep in &eps {
        w.invoke(
            ep,
            "setExternalIPv4",
            json!({"externalIPv4": "198.51.100.7"}),
        );
        w.subscribe(ep, "IceCandidateFound");
    }
    assert_eq!(
        w.invoke(&eps[0], "getExternalIPv4", json!({})),
        "198.51.100.7"
    );
    let bad = w.call(
        "invoke",
        json!({"object": eps[0], "operation": "setExternalIPv4", "operationParams": {"externalIPv4": "not-an-ip"}}),
    );
    assert_eq!(bad["error"]["code"], 40107, "{bad}");
    let probe = w.add_browser("probe", false);
    let offer = w.browsers[probe].offer(Direction::SendRecv);
    let answer = w.invoke(&eps[0], "processOffer", json!({"offer": offer}));
    let answer = answer.as_str().unwrap().to_string();
    w.browsers[probe].accept_answer(&answer);
    let cands: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=candidate"))
        .collect();
    assert!(!cands.is_empty(), "{answer}");
    for c in &cands {
        assert!(
            c.contains("198.51.100.7 40000"),
            "every candidate carries the external address: {c}"
        );
        assert!(!c.contains("127.0.0.1 40000 typ host"), "{c}");
    }
    w.invoke(&eps[0], "gatherCandidates", json!({}));
    let found = w.events();
    let found: Vec<String> = found
        .iter()
        .filter(|(t, _)| t == "IceCandidateFound")
        .map(|(_, d)| {
            d["candidate"]["candidate"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        !found.is_empty() && found.iter().all(|c| c.contains("198.51.100.7")),
        "{found:?}"
    );
    // Media crosses the NAT: browsers only know the public address.
    w.invoke(&eps[1], "connect", json!({"sink": eps[1]}));
    let b = w.join("alice", false, &eps[1], Direction::SendRecv);
    assert!(
        w.connect_all(Duration::from_secs(5)),
        "ICE + DTLS through the NAT"
    );
    w.stream(&[b], Duration::from_secs(2));
    let [audio, video] = w.browsers[b].frames_in;
    assert!(
        video >= 50 && audio >= 80,
        "looped back through the NAT: {video} video, {audio} audio frames"
    );
}

#[test]
fn an_offer_giving_one_payload_type_two_codecs_is_refused_not_a_crash() {
    // Found by `fuzz/` (target sdp): str0m 0.25 panics on it, which would end the server.
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:102 H264/90000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
a=setup:actpass\r\na=mid:1\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 1);
    let r = w.call(
        "invoke",
        json!({"object": eps[0], "operation": "processOffer", "operationParams": {"offer": offer}}),
    );
    assert_eq!(r["error"]["code"], 40201, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("payload type 102"),
        "{r}"
    );
    // The endpoint still negotiates a proper offer afterwards.
    let b = w.join("after", false, &eps[0], Direction::SendRecv);
    assert!(w.connect_all(Duration::from_secs(5)), "still works");
    let _ = b;
}

/// The offer of a plain RTP client (no ICE, no DTLS), as seen in the field.
const PLAIN_RTP_OFFER: &str = "v=0\r\no=- 1400 1400 IN IP4 192.0.2.10\r\ns=-\r\n\
    c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=video 52126 RTP/AVP 96 97 98\r\nb=AS:384\r\n\
    a=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
    a=rtpmap:97 MP4V-ES/90000\r\na=rtpmap:98 H263-1998/90000\r\na=recvonly\r\n";

fn m_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("m=")).collect()
}

#[test]
fn an_offer_of_plain_rtp_is_answered_with_its_m_line_rejected_as_kms_does() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 2);
    let ep = &eps[0];
    w.subscribe(ep, "IceCandidateFound");
    w.subscribe(ep, "IceGatheringDone");
    let answer = w.invoke(ep, "processOffer", json!({ "offer": PLAIN_RTP_OFFER }));
    let answer = answer.as_str().expect("an SDP answer").to_string();
    assert_eq!(m_lines(&answer), ["m=video 0 RTP/AVP 96 97 98"], "{answer}");
    assert!(answer.starts_with("v=0\r\no=- "), "{answer}");
    assert_eq!(
        w.invoke(ep, "getRemoteSessionDescriptor", json!({})),
        PLAIN_RTP_OFFER
    );
    assert_eq!(
        w.invoke(ep, "getLocalSessionDescriptor", json!({})),
        answer.as_str()
    );
    // Negotiated: later offers are refused, as KMS refuses a second one.
    for (op, params) in [
        ("processOffer", json!({ "offer": PLAIN_RTP_OFFER })),
        ("generateOffer", json!({})),
    ] {
        let e = w.invoke_err(ep, op, params);
        assert_eq!(e["code"], 40208, "{op}: {e}");
    }
    // Nothing to gather for, nothing stuck: a source connected to it, time passing, release.
    w.invoke(ep, "gatherCandidates", json!({}));
    let evs = w.events();
    assert!(evs.iter().all(|(t, _)| t != "IceCandidateFound"), "{evs:?}");
    assert_eq!(
        evs.iter().filter(|(t, _)| t == "IceGatheringDone").count(),
        1
    );
    let publisher = w.join("pub", false, &eps[1], Direction::SendOnly);
    w.invoke(&eps[1], "connect", json!({"sink": ep}));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(1));
    assert_eq!(
        w.invoke(ep, "isMediaFlowingOut", json!({"mediaType": "VIDEO"})),
        false
    );
    assert_eq!(w.core.endpoint_count(), 2);
    w.ok("release", json!({ "object": ep }));
    w.settle();
    assert_eq!(w.core.endpoint_count(), 1);
}

#[test]
fn a_plain_rtp_section_among_webrtc_ones_is_rejected_in_its_place_and_the_rest_works() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 1);
    let ep = &eps[0];
    w.invoke(ep, "connect", json!({"sink": ep}));
    let b = w.add_browser("alice", false);
    let cand = w.browsers[b].candidate_json();
    w.invoke(ep, "addIceCandidate", json!({ "candidate": cand }));
    let offer = w.browsers[b].offer(Direction::SendRecv);
    // A plain RTP section between the browser's audio and video.
    let video_at = offer.find("m=video").expect("a video section");
    let plain = "m=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=mid:plain\r\n";
    let mixed = format!("{}{plain}{}", &offer[..video_at], &offer[video_at..]);
    let answer = w.invoke(ep, "processOffer", json!({ "offer": mixed }));
    let answer = answer.as_str().unwrap().to_string();
    let m = m_lines(&answer);
    assert_eq!(m.len(), 3, "{answer}");
    assert!(m[0].starts_with("m=audio 9 UDP/TLS/RTP/SAVPF "), "{m:?}");
    assert_eq!(m[1], "m=video 0 RTP/AVP 96");
    assert!(m[2].starts_with("m=video 9 UDP/TLS/RTP/SAVPF "), "{m:?}");
    let mids: Vec<&str> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=mid:"))
        .collect();
    assert_eq!(mids[1], "plain", "{mids:?}");
    // The browser never offered that section: it takes the answer without it.
    let plain_answer = "m=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=mid:plain\r\n";
    assert!(answer.contains(plain_answer), "{answer}");
    w.browsers[b].accept_answer(&answer.replace(plain_answer, ""));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[b], Duration::from_secs(2));
    assert!(
        w.browsers[b].frames_in[1] >= 50,
        "{:?}",
        w.browsers[b].frames_in
    );
    assert!(
        w.browsers[b].frames_in[0] >= 80,
        "{:?}",
        w.browsers[b].frames_in
    );
}

/// Candidate lines of a description.
fn candidate_lines(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate"))
        .collect()
}

#[test]
fn two_endpoints_negotiate_back_to_back_across_pipelines_and_media_flows() {
    let mut w = World::new();
    // Pipeline 1: a browser publishes into `input`, which feeds `a`.
    let (_, p1) = pipeline_with_endpoints(&mut w, 2);
    let (input, a) = (&p1[0], &p1[1]);
    // Pipeline 2: `b` feeds `output`, which a browser watches.
    let (_, p2) = pipeline_with_endpoints(&mut w, 2);
    let (b, output) = (&p2[0], &p2[1]);
    for ep in [a, b] {
        for ev in [
            "IceComponentStateChanged",
            "NewCandidatePairSelected",
            "MediaFlowInStateChanged",
            "IceCandidateFound",
        ] {
            w.subscribe(ep, ev);
        }
    }
    let publisher = w.join("pub", false, input, Direction::SendOnly);
    let viewer = w.join("viewer", false, output, Direction::RecvOnly);
    w.invoke(input, "connect", json!({ "sink": a }));
    w.invoke(b, "connect", json!({ "sink": output }));
    // A offers (ICE-lite, as every endpoint starts); B answers as the full, controlling
    // agent from a socket of its own; A takes the answer.
    let offer = w.invoke(a, "generateOffer", json!({}));
    let offer = offer.as_str().unwrap().to_string();
    assert!(offer.contains("a=ice-lite\r\n"), "{offer}");
    let answer = w.invoke(b, "processOffer", json!({ "offer": offer }));
    let answer = answer.as_str().unwrap().to_string();
    assert!(!answer.contains("a=ice-lite"), "{answer}");
    let shared = w.server.to_string().replace(':', " ");
    let cands = candidate_lines(&answer);
    assert!(!cands.is_empty(), "{answer}");
    assert!(
        cands.iter().all(|c| !c.contains(&shared)),
        "B announces its own socket, not the shared one: {cands:?}"
    );
    w.settle();
    assert_eq!(w.core.own_socket_count(), 1);
    w.invoke(a, "processAnswer", json!({ "answer": answer }));
    // Trickled candidates, as applications pass them, change nothing.
    w.invoke(a, "gatherCandidates", json!({}));
    w.invoke(b, "gatherCandidates", json!({}));
    let found: Vec<(String, serde_json::Value)> = w
        .events()
        .into_iter()
        .filter(|(t, _)| t == "IceCandidateFound")
        .map(|(_, d)| {
            (
                d["source"].as_str().unwrap().to_string(),
                d["candidate"].clone(),
            )
        })
        .collect();
    assert!(found.iter().any(|(s, _)| s == a) && found.iter().any(|(s, _)| s == b));
    for (source, cand) in found {
        let to = if &source == a { b } else { a };
        w.invoke(to, "addIceCandidate", json!({ "candidate": cand }));
    }
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[publisher], Duration::from_secs(3));
    assert!(
        w.browsers[viewer].frames_in[1] >= 60,
        "video across the back-to-back link: {:?}",
        w.browsers[viewer].frames_in
    );
    assert!(
        w.browsers[viewer].frames_in[0] >= 100,
        "{:?}",
        w.browsers[viewer].frames_in
    );
    // The link outlives ICE's timeouts: B's consent checks keep A's (lite) side alive.
    w.run(Duration::from_secs(40), ms(10), |_| {});
    let before = w.browsers[viewer].frames_in[1];
    w.stream(&[publisher], Duration::from_secs(1));
    assert!(
        w.browsers[viewer].frames_in[1] >= before + 20,
        "after 40 s: {before} -> {}",
        w.browsers[viewer].frames_in[1]
    );
    let evs = w.events();
    for ep in [a, b] {
        let of = |t: &str| {
            evs.iter()
                .any(|(e, d)| e == t && d["source"] == ep.as_str())
        };
        assert!(of("NewCandidatePairSelected"), "{ep}: {evs:?}");
        assert!(
            evs.iter().any(|(e, d)| e == "IceComponentStateChanged"
                && d["source"] == ep.as_str()
                && d["state"] == "READY"),
            "{ep}: {evs:?}"
        );
    }
    assert!(evs.iter().any(|(e, d)| e == "MediaFlowInStateChanged"
        && d["source"] == b.as_str()
        && d["state"] == "FLOWING"));
    // B's own socket closes with it.
    w.ok("release", json!({ "object": b }));
    w.settle();
    assert_eq!(w.core.own_socket_count(), 0);
}

#[test]
fn fluo_and_an_ice_lite_peer_connect_whichever_offers() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 2);
    for ep in &eps {
        w.invoke(ep, "connect", json!({ "sink": ep }));
    }
    let lite = |c: str0m::RtcConfig| c.set_ice_lite(true);
    // The lite peer offers (as mediasoup or Janus in lite mode would): Fluo answers as the
    // full, controlling agent, without a=ice-lite.
    let offering = w.add_browser_with("lite-offers", false, lite);
    let cand = w.browsers[offering].candidate_json();
    w.invoke(&eps[0], "addIceCandidate", json!({ "candidate": cand }));
    let offer = w.browsers[offering].offer(Direction::SendRecv);
    assert!(offer.contains("a=ice-lite"));
    let answer = w.invoke(&eps[0], "processOffer", json!({ "offer": offer }));
    let answer = answer.as_str().unwrap().to_string();
    assert!(!answer.contains("a=ice-lite"), "{answer}");
    w.browsers[offering].accept_answer(&answer);
    // Fluo offers (lite) and the lite peer answers: Fluo, the offerer, turns full and
    // controlling. (str0m refuses a lite offer when it is lite itself; RFC 8445 allows it, so
    // the peer is given the offer without the attribute, as a lite peer that takes it would.)
    let answering = w.add_browser_with("lite-answers", false, lite);
    let offer = w.invoke(&eps[1], "generateOffer", json!({}));
    let offer = offer.as_str().unwrap().replace("a=ice-lite\r\n", "");
    let answer = w.browsers[answering].answer(&offer);
    assert!(answer.contains("a=ice-lite"));
    w.invoke(&eps[1], "processAnswer", json!({ "answer": answer }));
    let cand = w.browsers[answering].candidate_json();
    w.invoke(&eps[1], "addIceCandidate", json!({ "candidate": cand }));
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[offering, answering], Duration::from_secs(2));
    for b in [offering, answering] {
        assert!(
            w.browsers[b].frames_in[1] >= 50,
            "{}: {:?}",
            w.browsers[b].name,
            w.browsers[b].frames_in
        );
    }
}

#[test]
fn an_address_a_full_ice_endpoint_checks_stays_the_peer_s_that_proves_it_owns_it() {
    let mut w = World::new();
    let (_, eps) = pipeline_with_endpoints(&mut w, 2);
    let (a, v) = (&eps[0], &eps[1]);
    w.invoke(v, "connect", json!({ "sink": v }));
    // A's peer is ICE-lite (A turns full on its answer) and hands A another client's address
    // as a candidate: A's checks go there from the shared socket before that client connects.
    let lite = w.add_browser_with("lite", false, |c| c.set_ice_lite(true));
    let victim = w.add_browser("victim", false);
    let offer = w.invoke(a, "generateOffer", json!({}));
    let offer = offer.as_str().unwrap().replace("a=ice-lite\r\n", "");
    let answer = w.browsers[lite].answer(&offer);
    for b in [victim, lite] {
        let cand = w.browsers[b].candidate_json();
        w.invoke(a, "addIceCandidate", json!({ "candidate": cand }));
    }
    w.invoke(a, "processAnswer", json!({ "answer": answer }));
    w.run(ms(500), ms(1), |_| {});
    assert!(w.browsers[lite].connected);
    // The client then connects to its own endpoint, V: its checks prove whose it is.
    w.negotiate_browser_offer(victim, v, Direction::SendRecv);
    assert!(w.connect_all(Duration::from_secs(5)));
    w.stream(&[victim], Duration::from_secs(2));
    assert!(
        w.browsers[victim].frames_in[1] >= 50,
        "{:?}",
        w.browsers[victim].frames_in
    );
}

#[test]
fn a_set_up_that_took_real_seconds_connects_within_the_usual_simulated_time() {
    // The server builds its sessions at the real clock, the World's clock starts at
    // `World::new`: a set-up that took 2.5 s (a loaded machine) leaves it that far behind.
    let mut w = World::new();
    std::thread::sleep(ms(2500));
    let (_, eps) = pipeline_with_endpoints(&mut w, 1);
    w.join("pub", false, &eps[0], Direction::SendOnly);
    assert!(
        w.connect_all(ms(2000)),
        "connected within 2 s of simulated time"
    );
}
