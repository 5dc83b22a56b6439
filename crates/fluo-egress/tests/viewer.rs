//! The egress fast path against an in-memory str0m viewer (fluo-testkit's `Browser`): the
//! server side is a str0m `Rtc` configured as Fluo's pool builds them (RTP mode, ICE lite),
//! whose crypto provider hands its DTLS-SRTP keys to the egress. Media never goes through the
//! server's str0m: the egress rewrites, protects and sends it; str0m keeps ICE, DTLS and RTCP.

#[path = "support/harness.rs"]
mod harness;

use fluo_egress::{Profile, SrtpError};
use fluo_sfu::rtcp::{RtcpCompound, RtcpPacket};
use fluo_sfu::MediaKind;
use harness::{stream_ssrc, Pair, AUDIO, VIDEO};
use std::time::Duration;
use str0m::media::KeyframeRequestKind;

#[test]
fn captured_keys_protect_media_the_viewer_decodes_on_the_negotiated_mids() {
    let mut p = Pair::new();
    p.connect();
    let keys = p.slot.lock().unwrap().clone().unwrap();
    // What str0m's DTLS server picks with a str0m client (Chromium offers the same three).
    assert_eq!(
        Profile::from_dtls(keys.profile),
        Some(Profile::AeadAes256Gcm)
    );
    assert!(
        !keys.client,
        "ICE-lite Fluo answers, so it is the DTLS server"
    );
    for i in 0..60 {
        p.send(VIDEO);
        if i % 2 == 0 {
            p.send(AUDIO);
        }
        p.run(Duration::from_millis(10));
    }
    let seen = &p.browser.rtp_in;
    let video: Vec<_> = seen.iter().filter(|r| r.video).collect();
    let audio: Vec<_> = seen.iter().filter(|r| !r.video).collect();
    assert_eq!(
        video.len(),
        60,
        "every video packet decrypted and mapped to the video mid"
    );
    assert_eq!(audio.len(), 30);
    assert!(video.iter().all(|r| r.ssrc == stream_ssrc(&p, VIDEO)));
    assert!(audio.iter().all(|r| r.ssrc == stream_ssrc(&p, AUDIO)));
    // One continuous sequence per stream, 3000 ticks apart on video.
    for w in video.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
        assert_eq!(w[1].ts.wrapping_sub(w[0].ts), 3000);
    }
    assert_eq!(p.str0m_rtp, 0, "no RTP went through str0m");
}

#[test]
fn a_lost_packet_is_nacked_by_the_viewer_and_resent_from_the_shared_cache_as_rtx() {
    let mut p = Pair::new();
    p.connect();
    let video_ssrc = stream_ssrc(&p, VIDEO);
    assert!(
        p.egress
            .as_ref()
            .unwrap()
            .stream(MediaKind::Video)
            .unwrap()
            .rtx
            .is_some(),
        "the viewer negotiated RTX"
    );
    // The network drops the 20th video packet once.
    let mut n = 0;
    p.drop_egress = Box::new(move |d| {
        if d.len() < 1000 || u32::from_be_bytes(d[8..12].try_into().unwrap()) != video_ssrc {
            return false;
        }
        n += 1;
        n == 20
    });
    for _ in 0..40 {
        p.send(VIDEO);
        p.run(Duration::from_millis(10));
    }
    for _ in 0..50 {
        p.run(Duration::from_millis(10));
    }
    let video: Vec<u64> = p
        .browser
        .rtp_in
        .iter()
        .filter(|r| r.video)
        .map(|r| r.seq)
        .collect();
    let first = *video.iter().min().unwrap();
    let mut sorted = video.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted,
        (first..first + 40).collect::<Vec<_>>(),
        "every packet arrived"
    );
    let s = p
        .egress
        .as_ref()
        .unwrap()
        .stream(MediaKind::Video)
        .unwrap()
        .stats();
    assert!(s.nacks >= 1 && s.nacked_packets >= 1, "the viewer NACKed");
    assert_eq!(s.packets_resent, 1, "one RTX answered it");
    // The resent one arrived after its successors.
    let pos = video.iter().position(|&q| q == first + 19).unwrap();
    assert!(pos > 20, "the 20th packet came back later, at {pos}");
}

#[test]
fn a_keyframe_request_from_the_viewer_reaches_str0m_although_it_sent_nothing() {
    let mut p = Pair::new();
    p.connect();
    for _ in 0..10 {
        p.send(VIDEO);
        p.run(Duration::from_millis(10));
    }
    let mid = p.mids[VIDEO];
    p.browser
        .rtc
        .direct_api()
        .stream_rx_by_mid(mid, None)
        .expect("the viewer's video stream")
        .request_keyframe(KeyframeRequestKind::Pli);
    for _ in 0..5 {
        p.run(Duration::from_millis(10));
    }
    assert_eq!(p.keyframe_requests, vec![(mid, KeyframeRequestKind::Pli)]);
}

#[test]
fn sender_reports_carry_what_the_egress_sent_and_reach_the_viewers_stats() {
    let mut p = Pair::new();
    p.connect();
    for i in 0..300 {
        p.send(VIDEO);
        if i % 2 == 0 {
            p.send(AUDIO);
        }
        p.run(Duration::from_millis(10));
    }
    let video_ssrc = stream_ssrc(&p, VIDEO);
    // str0m's own reports on Fluo's streams say nothing was sent.
    let str0m_video: Vec<_> = p.str0m_srs.iter().filter(|s| s.0 == video_ssrc).collect();
    assert!(str0m_video.len() >= 2, "str0m scheduled sender reports");
    assert!(
        str0m_video.iter().all(|s| s.1 == 0 && s.2 == 0),
        "{str0m_video:?}"
    );
    // What the viewer received instead: Fluo's counts, on Fluo's RTP clock.
    let srs: Vec<_> = p
        .browser
        .sender_reports
        .iter()
        .filter(|s| *s.ssrc == video_ssrc)
        .collect();
    assert_eq!(
        srs.len(),
        str0m_video.len(),
        "every report reached the viewer"
    );
    let last = srs.last().unwrap();
    assert!(last.sender_packet_count > 150, "{last:?}");
    assert_eq!(last.sender_octet_count, last.sender_packet_count * 1100);
    // RTP time of the report against the packets around it: 3000 ticks per 10 ms.
    let video: Vec<_> = p.browser.rtp_in.iter().filter(|r| r.video).collect();
    let at = video[last.sender_packet_count as usize - 1].ts;
    let rtp = last.rtp_time.numer() as u32;
    let diff = rtp.wrapping_sub(at) as i32;
    assert!(
        (0..=3000).contains(&diff),
        "SR RTP time {rtp} vs last packet {at}"
    );
    // The viewer's statistics show the remote (sender-side) counts from those reports.
    let stats = p
        .browser
        .ingress_stats
        .iter()
        .rev()
        .find(|s| s.mid == p.mids[VIDEO])
        .expect("receive statistics");
    let remote = stats
        .remote
        .as_ref()
        .expect("remote-outbound stats from sender reports");
    assert!(remote.packets > 150);
    // Round trip from the viewer's receiver reports on Fluo's reports.
    let rtt = p.egress.as_ref().unwrap().rtt().expect("a round trip");
    assert!(rtt < Duration::from_millis(50), "{rtt:?}");
    // One SRTCP index sequence: as many as str0m wrote, all accepted.
    assert_eq!(
        p.egress.as_ref().unwrap().srtcp_index(),
        Some(p.str0m_rtcp as u32)
    );
}

/// The report blocks a plain compound RTCP packet carries: (SSRC of each block).
fn report_ssrcs(plain: &[u8]) -> Vec<u32> {
    RtcpCompound::new(plain)
        .map_while(Result::ok)
        .flat_map(|p| match p {
            RtcpPacket::ReceiverReport(rr) => rr.reports().map(|b| b.ssrc).collect(),
            RtcpPacket::SenderReport(sr) => sr.reports().map(|b| b.ssrc).collect(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn the_viewers_reports_on_fluos_streams_feed_fluos_stats_and_never_reach_str0m() {
    let mut p = Pair::new();
    p.connect();
    // Six seconds: str0m's receiver reports on audio every five.
    for i in 0..600 {
        p.send(VIDEO);
        if i % 2 == 0 {
            p.send(AUDIO);
        }
        p.run(Duration::from_millis(10));
    }
    let mid = p.mids[VIDEO];
    p.browser
        .rtc
        .direct_api()
        .stream_rx_by_mid(mid, None)
        .expect("the viewer's video stream")
        .request_keyframe(KeyframeRequestKind::Pli);
    for _ in 0..5 {
        p.run(Duration::from_millis(10));
    }
    let v = p.egress.as_ref().unwrap();
    let video = v.stream(MediaKind::Video).unwrap().stats();
    let audio = v.stream(MediaKind::Audio).unwrap().stats();
    // What getStats needs, from the viewer's own reports.
    let report = video.report.expect("the viewer's report on the video");
    assert_eq!(report.packets_lost, 0);
    let sent = v.stream(MediaKind::Video).unwrap().ext_seq().unwrap();
    assert!(
        report.highest_seq <= sent && sent - report.highest_seq < 30,
        "{report:?} {sent}"
    );
    assert!(audio.report.is_some());
    assert!(
        video.rtt.is_some_and(|r| r < Duration::from_millis(50)),
        "{video:?}"
    );
    assert_eq!((video.plis, video.firs), (1, 0));
    assert_eq!((video.packets, video.bytes), (600, 600 * 1100));
    assert_eq!(audio.packets, 300);
    let stats = v.stats();
    assert!(stats.rtcp_read >= 3 && stats.rtcp_refused == 0, "{stats:?}");
    assert!(stats.datagrams >= 900, "{stats:?}");
    // str0m read every datagram, without a block on Fluo's SSRCs (its per-report loss list
    // would grow for ever on streams it never sent).
    let rx = {
        let k = p.slot.lock().unwrap().clone().unwrap();
        k.contexts().unwrap().1
    };
    assert_eq!(p.viewer_rtcp.len(), p.viewer_rtcp_to_str0m.len());
    let mut blocks_seen = 0;
    let mut plain = vec![];
    for (raw, given) in p.viewer_rtcp.iter().zip(&p.viewer_rtcp_to_str0m) {
        let index = rx
            .unprotect_rtcp(given, &mut plain)
            .expect("str0m can read it");
        let mut original = vec![];
        assert_eq!(rx.unprotect_rtcp(raw, &mut original), Ok(index));
        blocks_seen += report_ssrcs(&original).len();
        let ours = [stream_ssrc(&p, AUDIO), stream_ssrc(&p, VIDEO)];
        assert!(
            report_ssrcs(&plain).iter().all(|s| !ours.contains(s)),
            "a block on Fluo's stream reached str0m"
        );
    }
    assert!(blocks_seen >= 3, "the viewer reported on Fluo's streams");
    // And str0m still raised the keyframe request.
    assert_eq!(p.keyframe_requests, vec![(mid, KeyframeRequestKind::Pli)]);
}

#[test]
fn a_replayed_nack_is_refused_and_resends_nothing() {
    let mut p = Pair::new();
    p.connect();
    let video_ssrc = stream_ssrc(&p, VIDEO);
    let mut n = 0;
    p.drop_egress = Box::new(move |d| {
        if d.len() < 1000 || u32::from_be_bytes(d[8..12].try_into().unwrap()) != video_ssrc {
            return false;
        }
        n += 1;
        n == 10
    });
    for _ in 0..30 {
        p.send(VIDEO);
        p.run(Duration::from_millis(10));
    }
    for _ in 0..50 {
        p.run(Duration::from_millis(10));
    }
    let resent = |p: &Pair| {
        p.egress
            .as_ref()
            .unwrap()
            .stream(MediaKind::Video)
            .unwrap()
            .stats()
            .packets_resent
    };
    assert_eq!(resent(&p), 1);
    // Every datagram the viewer sent, again: each is refused as a replay.
    let before = p.egress.as_ref().unwrap().stats();
    let now = p.now;
    let v = p.egress.as_mut().unwrap();
    for d in p.viewer_rtcp.clone() {
        let mut out = vec![];
        let r = v.read_viewer_rtcp(now, &d, Some(&mut p.source), &mut p.batch, &mut out);
        assert_eq!(r, Err(SrtpError::Replayed));
    }
    assert_eq!(resent(&p), 1, "no second RTX");
    let after = p.egress.as_ref().unwrap().stats();
    assert_eq!(
        after.rtcp_refused - before.rtcp_refused,
        p.viewer_rtcp.len() as u64
    );
    assert!(p.batch.is_empty());
}
