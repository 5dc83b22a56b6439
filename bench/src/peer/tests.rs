use super::*;

/// What a str0m sender (the library Fluo's WebRtcEndpoints are built on) saw of one viewer.
#[derive(Debug, Default)]
struct ServerView {
    plis: u64,
    nacks: u64,
    rtt: Option<Duration>,
    keyframe_requests: u64,
    sent: [u64; 2],
    /// The egress loss str0m computes from the viewer's TWCC feedback (its last figure).
    twcc_loss: Option<f32>,
}

fn on_event(view: &mut ServerView, e: Event) {
    match e {
        Event::MediaEgressStats(s) => {
            view.plis = view.plis.max(s.plis);
            view.nacks = view.nacks.max(s.nacks);
            view.rtt = s.rtt.or(view.rtt);
        }
        Event::KeyframeRequest(_) => view.keyframe_requests += 1,
        Event::PeerStats(s) => view.twcc_loss = s.egress_loss_fraction.or(view.twcc_loss),
        _ => {}
    }
}

/// A str0m session in RTP mode answering `offer`, with egress statistics.
fn sender(offer: &str) -> (Session, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let addr = sock.local_addr().expect("addr");
    let now = Instant::now();
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .set_stats_interval(Some(Duration::from_millis(200)))
        .build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut s = Session {
        rtc,
        sock,
        addr,
        deadline: now,
        pending: None,
        connected_at: None,
        mids: vec![],
        connected: false,
        pts: PtMap::default(),
        block_media_out: false,
    };
    let answer = s.answer(offer).expect("answer");
    (s, answer)
}

/// One viewer of `mode` in a group against a str0m sender: 100 video packets/s (every third
/// ends a frame) and 50 audio packets/s for `secs`, then what both sides counted.
fn watch(mode: Mode, drop_every: u32, secs: u64) -> (ViewerSnap, Vec<f32>, ServerView) {
    watch_with(mode, drop_every, secs, false)
}

/// [`watch`], the viewer offering TWCC when `twcc` (which the sender keeps).
fn watch_with(
    mode: Mode,
    drop_every: u32,
    secs: u64,
    twcc: bool,
) -> (ViewerSnap, Vec<f32>, ServerView) {
    let log = Arc::new(SendLog::default());
    let group = Group::start("test-viewers".into(), log.clone());
    let spec = ViewerSpec {
        mode,
        twcc,
        cohort: 0,
        drop_every,
        limit: None,
    };
    let mut v = Viewer::new(Instant::now(), 0, spec).expect("viewer");
    let offer = v.session.offer(Direction::RecvOnly).expect("offer");
    let mids = v.session.mids.clone();
    let (mut server, answer) = sender(&offer);
    v.accept_answer(&answer).expect("answer applied");
    group.adder().add(v);

    let mut view = ServerView::default();
    let mut buf = vec![0u8; 2048];
    let mut tracks = None;
    let mut seq = [1u64; 2];
    let (mut next_video, mut next_audio) = (Instant::now(), Instant::now());
    let t0 = Instant::now();
    let mut end = None;
    loop {
        let now = Instant::now();
        if now - t0 > Duration::from_secs(secs + 10) {
            panic!("the viewer did not connect");
        }
        if end.is_some_and(|e| now >= e) {
            break;
        }
        while let Ok((n, src)) = server.sock.recv_from(&mut buf) {
            server.receive(now, src, &buf[..n]);
            server.drain(|_, e| on_event(&mut view, e));
        }
        if now >= server.deadline {
            let _ = server.rtc.handle_input(Input::Timeout(now));
        }
        server.drain(|_, e| on_event(&mut view, e));
        if tracks.is_none() && server.connected {
            let a = (
                mids[0],
                pt_of(&server.rtc, mids[0], Codec::Opus).expect("opus"),
            );
            let v = (
                mids[1],
                pt_of(&server.rtc, mids[1], Codec::Vp8).expect("vp8"),
            );
            tracks = Some([a, v]);
            end = Some(now + Duration::from_secs(secs));
        }
        if let Some(tr) =
            tracks.filter(|_| end.is_some_and(|e| now + Duration::from_millis(300) < e))
        {
            for (k, next, every) in [(1usize, &mut next_video, 10u64), (0, &mut next_audio, 20)] {
                if now < *next {
                    continue;
                }
                *next += Duration::from_millis(every);
                let (mid, pt) = tr[k];
                let marker = k == 0 || seq[k] % 3 == 0;
                let mut payload = vec![k as u8; 300];
                payload[292..].copy_from_slice(&seq[k].to_be_bytes());
                if k == 1 && marker {
                    log.put(payload_key(&payload), sys::wall_ns(), (0, 1));
                }
                let w = RtpWrite::new(pt, SeqNo::from(seq[k]), seq[k] as u32 * 900, now, payload)
                    .marker(marker)
                    .nackable(k == 1);
                let mut api = server.rtc.direct_api();
                let tx = api
                    .stream_tx_by_mid(mid, None)
                    .expect("a send stream for the m-line");
                tx.write_rtp(w);
                seq[k] += 1;
                view.sent[k] += 1;
            }
            server.drain(|_, e| on_event(&mut view, e));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (snaps, lat) = group.snapshot();
    (snaps[0], lat.concat(), view)
}

/// A thin viewer against str0m: ICE and DTLS through str0m, then every packet decrypted
/// and counted by the thin path, none lost although one video packet in 10 was dropped on
/// purpose (its NACKs repaired them: the sender counted them), a PLI at the start (the
/// sender asked for a keyframe), and receiver reports the sender computes a round trip
/// from (LSR / DLSR right). Latency samples come from frame ends.
#[test]
fn thin_viewer_is_a_conforming_receiver() {
    let (snap, lat, server) = watch(Mode::Thin, 10, 4);
    let t = snap.thin.expect("thin statistics");
    assert!(snap.first_rtp.is_some());
    assert_eq!(
        snap.counts.packets, server.sent,
        "{snap:?} {t:?} {server:?}"
    );
    assert!(t.dropped >= 10, "{t:?}");
    assert_eq!(
        t.repaired, t.dropped,
        "every dropped packet repaired: {t:?}"
    );
    assert!(server.nacks >= 1, "{server:?}");
    assert_eq!(t.decrypt_failures + t.unknown, 0, "{t:?}");
    assert!(
        server.plis >= 1 && server.keyframe_requests >= 1,
        "{server:?}"
    );
    assert!(t.sender_reports >= 1 && t.receiver_reports >= 2, "{t:?}");
    assert!(server.rtt.is_some(), "{server:?}");
    assert!(server.rtt < Some(Duration::from_millis(100)), "{server:?}");
    assert!(lat.len() >= 30, "{} samples", lat.len());
    assert!(lat.iter().all(|l| (0.0..200.0).contains(l)), "{lat:?}");
    assert_eq!(snap.counts.frames, server.sent[1] / 3);
}

/// The full viewer (str0m receiving by itself) under the same load: the same counts, its
/// NACKs repair the same drops.
#[test]
fn full_viewer_counts_the_same() {
    let (snap, lat, server) = watch(Mode::Full, 10, 3);
    assert!(snap.thin.is_none());
    assert!(snap.counts.dropped >= 10, "{snap:?}");
    assert_eq!(snap.counts.packets, server.sent, "{snap:?} {server:?}");
    assert!(server.nacks >= 1, "{server:?}");
    assert!(lat.len() >= 30, "{} samples", lat.len());
}

/// With TWCC negotiated, str0m's sender reads the thin viewer's transport-wide feedback: its
/// egress loss is the share of packets the viewer dropped on purpose (one video packet in
/// 10: 10 of about 160 packets a second, RTX repairs included, which arrive); without
/// TWCC it has none to read, as before.
#[test]
fn str0m_reads_the_thin_viewers_twcc_feedback() {
    let (snap, _, server) = watch_with(Mode::Thin, 10, 3, true);
    let t = snap.thin.expect("thin statistics");
    assert!(t.twcc_feedback >= 20, "{t:?}");
    let loss = server
        .twcc_loss
        .expect("str0m computed a loss from the feedback");
    eprintln!("str0m's egress loss from the feedback: {loss}");
    assert!((0.03..0.10).contains(&loss), "{loss} {t:?}");
    let (snap, _, server) = watch_with(Mode::Thin, 10, 2, false);
    assert_eq!(snap.thin.expect("thin statistics").twcc_feedback, 0);
    assert_eq!(server.twcc_loss, None, "{server:?}");
}

/// The publisher's paced replay: audio at its time, a frame's video packets one drain apart
/// (`--pacing`), numbered and stamped as unpaced, and the timestamps continued on the next
/// lap; unpaced, every packet at its feed time.
#[test]
fn paced_replay_spreads_a_frames_video_and_leaves_audio_alone() {
    let pkt = |video: bool, ts: u32, len: usize| crate::feed::FeedPacket {
        at: Duration::ZERO,
        video,
        marker: false,
        ts,
        payload: vec![1u8; len].into(),
    };
    let feed = Feed {
        packets: vec![
            pkt(true, 0, 1200),
            pkt(false, 0, 100),
            pkt(true, 0, 1200),
            pkt(true, 0, 1200),
        ],
        period: Duration::from_secs(1),
        layers: vec![],
    };
    let start = Instant::now();
    // 3600 bytes/s of video at a factor of 8: 1200 bytes every 41.7 ms.
    let mut pacer = crate::pacing::Pacing::parse("8")
        .unwrap()
        .pacer(feed.video_bitrate());
    let mut r = replays_of(&feed).remove(0);
    let due = take_due(0, &mut r, start, start, Some(&mut pacer));
    let at: Vec<u128> = due.iter().map(|p| (p.at - start).as_micros()).collect();
    assert_eq!(
        &at[..2],
        &[0u128, 0],
        "the first video packet and the audio at once"
    );
    assert!(
        at[2].abs_diff(41_667) < 5 && at[3].abs_diff(83_333) < 5,
        "{at:?}"
    );
    let seq: Vec<u64> = due.iter().map(|p| p.seq).collect();
    assert_eq!(seq, [1, 1, 2, 3], "video and audio numbered apart");
    // The next lap: timestamps one period on, numbering continued; unpaced, at once.
    let next = take_due(0, &mut r, start, start + Duration::from_secs(1), None);
    assert_eq!(next.len(), 4);
    assert!(next.iter().all(|p| p.at == start + Duration::from_secs(1)));
    assert_eq!((next[0].ts, next[0].seq), (90_000, 4));
    assert_eq!((next[1].ts, next[1].seq), (48_000, 2));
    assert_eq!(r.places, [(0, 3), (0, 0), (1, 3), (2, 3)]);
}
