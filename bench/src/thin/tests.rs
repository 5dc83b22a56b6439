use super::*;
use crate::keys::ExportedKeys;
use str0m::crypto::dtls::SrtpProfile;

const SDP: &str = "v=0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";

#[test]
fn payload_types_come_from_the_m_lines() {
    let m = PtMap::parse(SDP);
    assert_eq!(
        m.get(111),
        Some(PtInfo {
            kind: 0,
            clock: 48_000,
            rtx: false
        })
    );
    assert_eq!(m.get(96).map(|i| (i.kind, i.rtx)), Some((1, false)));
    assert_eq!(
        m.get(97).map(|i| (i.kind, i.clock, i.rtx)),
        Some((1, 90_000, true))
    );
    assert_eq!(m.get(100), None);
    assert_eq!(m.get(200), None);
}

#[test]
fn seen_tells_duplicates_over_its_window() {
    let mut s = Seen::new();
    assert!(s.insert(10));
    assert!(!s.insert(10));
    assert!(s.insert(12));
    assert!(s.insert(11), "late but new");
    assert!(!s.insert(11));
    assert!(s.insert(10 + SEEN_BITS + 5), "a jump clears the window");
    assert!(!s.insert(12), "too old to tell: not counted");
    assert!(s.insert(10 + SEEN_BITS + 4));
}

/// The packet index follows RFC 3711 §3.3.1 over a wrap of the sequence numbers, and a
/// late packet from before the wrap keeps the old ROC.
#[test]
fn index_guesses_the_rollover_counter() {
    let info = PtInfo {
        kind: 1,
        clock: 90_000,
        rtx: false,
    };
    let mut s = Stream::new(1, info);
    assert_eq!(s.index(65_530), 65_530);
    s.authenticated(65_530);
    assert_eq!(s.index(3), 0x1_0003);
    s.authenticated(0x1_0003);
    assert_eq!(s.index(65_534), 65_534, "late, from before the wrap");
    assert_eq!(s.index(9), 0x1_0009);
    assert_eq!(extend_near(0x1_0003, 65_534), 65_534);
    assert_eq!(extend_near(65_534, 2), 0x1_0002);
    assert_eq!(extend_near(5, 65_535), 65_535, "never below zero");
}

fn material(profile: Profile) -> (Vec<u8>, SrtpProfile) {
    let (len, p) = match profile {
        Profile::AeadAes128Gcm => (56, SrtpProfile::AEAD_AES_128_GCM),
        Profile::AeadAes256Gcm => (88, SrtpProfile::AEAD_AES_256_GCM),
        Profile::Aes128CmSha1_80 => (60, SrtpProfile::AES128_CM_SHA1_80),
        // SDES-only suites: DTLS never negotiates them.
        other => panic!("{other:?} is not a DTLS-SRTP profile"),
    };
    ((0..len as u8).collect(), p)
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x90, pt | if marker { 0x80 } else { 0 }];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    // A one-word header extension, which the payload must not include.
    v.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
    v.extend_from_slice(payload);
    v
}

/// A thin viewer of keys exported as DTLS client, and the server's context.
fn pair(profile: Profile, drop_every: u32) -> (Thin, SrtpContext, SrtpContext) {
    let (m, p) = material(profile);
    let slot = KeySlot::default();
    *slot.lock().expect("slot") = Some(ExportedKeys {
        profile: p,
        material: m.clone(),
        client: true,
    });
    let mut t = Thin::new(slot, drop_every);
    t.set_payload_types(PtMap::parse(SDP));
    t.remote = Some("127.0.0.1:9".parse().expect("addr"));
    let server_tx = SrtpContext::from_dtls(profile, &m, false).expect("server tx");
    // What the server reads the viewer's RTCP with.
    let server_rx = SrtpContext::from_dtls(profile, &m, true).expect("server rx");
    (t, server_tx, server_rx)
}

/// Decrypted in place with the server's half of the keys, for every profile: the payload
/// without header extension, the kind and the extended number; tampered packets and other
/// payload types are counted, not delivered.
#[test]
fn media_is_decrypted_and_delivered_once() {
    for profile in [
        Profile::Aes128CmSha1_80,
        Profile::AeadAes128Gcm,
        Profile::AeadAes256Gcm,
    ] {
        let (mut t, tx, _) = pair(profile, 0);
        let now = Instant::now();
        assert!(t.keys(now));
        let mut p = rtp(96, 100, 9000, 0xabc, true, b"frame-end");
        tx.protect_rtp(&mut p, 20, 100).expect("protect");
        let mut dup = p.clone();
        let d = t.on_datagram(now, 1, &mut p).expect("delivered");
        assert_eq!(
            (d.kind, d.ext, d.marker, d.payload, d.repair),
            (1, 100, true, &b"frame-end"[..], false),
            "{profile:?}"
        );
        assert!(t.on_datagram(now, 2, &mut dup).is_none());
        assert_eq!(t.stats.duplicates, 1);
        let mut bad = rtp(96, 101, 9000, 0xabc, false, b"x");
        tx.protect_rtp(&mut bad, 20, 101).expect("protect");
        bad[22] ^= 1;
        assert!(t.on_datagram(now, 3, &mut bad).is_none());
        assert_eq!(t.stats.decrypt_failures, 1);
        let mut other = rtp(100, 1, 0, 0xdef, false, b"x");
        tx.protect_rtp(&mut other, 20, 1).expect("protect");
        assert!(t.on_datagram(now, 4, &mut other).is_none());
        assert_eq!(t.stats.unknown, 1);
    }
}

/// The compound packets the viewer sends now.
fn poll(t: &mut Thin, now: Instant) -> Vec<Vec<u8>> {
    let mut sent = vec![];
    t.poll_rtcp(now, |p| sent.push(p.to_vec()));
    sent
}

/// The one compound packet the viewer sends now.
fn poll_one(t: &mut Thin, now: Instant) -> Vec<u8> {
    let mut sent = poll(t, now);
    assert_eq!(sent.len(), 1, "one compound packet");
    sent.remove(0)
}

/// Parses the viewer's compound RTCP as the server would: (PT, FMT, bytes) of each packet.
fn read_compound(server_rx: &SrtpContext, sent: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
    let mut plain = vec![];
    server_rx
        .unprotect_rtcp(sent, &mut plain)
        .expect("the server reads the viewer's SRTCP");
    let mut out = vec![];
    let mut at = 0;
    while at + 4 <= plain.len() {
        let len = (usize::from(u16::from_be_bytes([plain[at + 2], plain[at + 3]])) + 1) * 4;
        out.push((
            plain[at + 1],
            plain[at] & 0x1f,
            plain[at..at + len].to_vec(),
        ));
        at += len;
    }
    assert_eq!(at, plain.len(), "whole packets");
    out
}

/// A gap in the video is NACKed at once and again until a retransmission (RTX) fills it;
/// the repaired packet is delivered once, as a repair, with its original number and
/// payload; the first video packet brings a PLI. Every compound starts with a receiver
/// report whose block is the video's (Janus files the feedback under the medium of that
/// block) and carries the CNAME.
#[test]
fn gaps_are_nacked_until_repaired_and_video_start_asks_for_a_keyframe() {
    let (mut t, tx, server_rx) = pair(Profile::AeadAes128Gcm, 0);
    let t0 = Instant::now();
    assert!(t.keys(t0));
    t.next_rr = Some(t0 + Duration::from_secs(60));
    let send = |t: &mut Thin, seq: u16, now: Instant| {
        let mut p = rtp(
            96,
            seq,
            u32::from(seq) * 3000,
            0xabc,
            false,
            &[seq as u8; 50],
        );
        tx.protect_rtp(&mut p, 20, u64::from(seq)).expect("protect");
        t.on_datagram(now, 0, &mut p).map(|d| (d.ext, d.repair))
    };
    assert_eq!(send(&mut t, 10, t0), Some((10, false)));
    let c = read_compound(&server_rx, &poll_one(&mut t, t0));
    let kinds: Vec<(u8, u8)> = c.iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(kinds, vec![(201, 1), (202, 1), (206, 1)], "RR, SDES, PLI");
    assert_eq!(&c[0].2[8..12], &0xabcu32.to_be_bytes(), "the video's block");
    assert_eq!(
        &c[2].2[8..12],
        &0xabcu32.to_be_bytes(),
        "PLI names the video"
    );
    assert_eq!(send(&mut t, 13, t0), Some((13, false)));
    let c = read_compound(&server_rx, &poll_one(&mut t, t0));
    assert_eq!(&c[0].2[8..12], &0xabcu32.to_be_bytes(), "the video's block");
    let nack = &c.iter().find(|p| (p.0, p.1) == (205, 1)).expect("NACK").2;
    assert_eq!(&nack[8..12], &0xabcu32.to_be_bytes());
    assert_eq!(&nack[12..16], &[0, 11, 0, 1], "11 and 12");
    assert!(
        poll(&mut t, t0).is_empty(),
        "not again before the retry time"
    );
    let later = t0 + NACK_RETRY;
    assert_eq!(poll(&mut t, later).len(), 1, "asked again");
    // 11 comes back as RTX (pt 97, its own SSRC and numbers, the original one first).
    let mut r = rtp(97, 500, 33_000, 0xdef, false, &[0, 11, 11, 11]);
    tx.protect_rtp(&mut r, 20, 500).expect("protect");
    let d = t.on_datagram(later, 0, &mut r).expect("repair delivered");
    assert_eq!(
        (d.kind, d.ext, d.repair, d.payload),
        (1, 11, true, &[11u8, 11][..])
    );
    let mut again = rtp(97, 501, 33_000, 0xdef, false, &[0, 11, 11, 11]);
    tx.protect_rtp(&mut again, 20, 501).expect("protect");
    assert!(t.on_datagram(later, 0, &mut again).is_none(), "once");
    let c = read_compound(&server_rx, &poll_one(&mut t, later + NACK_RETRY));
    let nack = &c.iter().find(|p| p.0 == 205).expect("NACK").2;
    assert_eq!(&nack[12..16], &[0, 12, 0, 0], "only 12 left");
    // 12 comes back on the stream itself (a server without RTX): a repair too.
    let mut p = rtp(96, 12, 36_000, 0xabc, false, &[12; 50]);
    tx.protect_rtp(&mut p, 20, 12).expect("protect");
    let d = t.on_datagram(later, 0, &mut p).expect("repair delivered");
    assert_eq!((d.ext, d.repair), (12, true));
    assert_eq!(t.stats.repaired, 2);
    assert_eq!(t.stats.plis, 1);
    assert!(t.nack_at.is_none() || poll(&mut t, later + NACK_RETRY * 3).is_empty());
    assert!(t.nack_at.is_none(), "nothing left to ask for");
}

/// A packet never repaired is given up after its tries: no more NACKs, the loss stays.
#[test]
fn nacks_stop_after_their_tries() {
    let (mut t, tx, _) = pair(Profile::AeadAes128Gcm, 0);
    let t0 = Instant::now();
    assert!(t.keys(t0));
    t.next_rr = Some(t0 + Duration::from_secs(60));
    for seq in [1u16, 3] {
        let mut p = rtp(96, seq, 0, 0xabc, false, b"v");
        tx.protect_rtp(&mut p, 20, u64::from(seq)).expect("protect");
        assert!(t.on_datagram(t0, 0, &mut p).is_some());
    }
    let mut at = t0;
    let mut nacks = 0;
    for _ in 0..3 * NACK_TRIES {
        nacks += poll(&mut t, at).len();
        at += NACK_RETRY;
    }
    assert_eq!(
        nacks,
        usize::from(NACK_TRIES),
        "one per try (the first with the PLI)"
    );
    assert_eq!(t.stats.nacked, u64::from(NACK_TRIES));
    assert!(t.nack_at.is_none());
}

/// The receiver report once a second, one compound per media stream (RTX has none), each
/// led by that stream's block: the loss and highest number, LSR from the server's last
/// sender report and the delay since.
#[test]
fn receiver_reports_carry_blocks_and_lsr() {
    let (mut t, mut tx, server_rx) = pair(Profile::Aes128CmSha1_80, 0);
    let t0 = Instant::now();
    assert!(t.keys(t0));
    t.next_rr = Some(t0 + RR_INTERVAL);
    for (pt, seq, ssrc) in [(111u8, 7u16, 0x111u32), (111, 9, 0x111), (96, 1, 0x222)] {
        let mut p = rtp(pt, seq, 0, ssrc, false, b"abc");
        tx.protect_rtp(&mut p, 20, u64::from(seq)).expect("protect");
        assert!(t.on_datagram(t0, 0, &mut p).is_some());
    }
    let _ = poll_one(&mut t, t0); // the PLI
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0x111u32.to_be_bytes());
    sr.extend_from_slice(&[0, 0, 0xab, 0xcd, 0x12, 0x34, 0, 0]);
    sr.extend_from_slice(&[0; 12]);
    tx.protect_rtcp(&mut sr).expect("protect");
    t.on_datagram(t0, 0, &mut sr);
    assert_eq!(t.stats.sender_reports, 1);
    let at = t0 + RR_INTERVAL + RR_INTERVAL;
    let sent = poll(&mut t, at);
    assert_eq!(sent.len(), 2, "audio and video");
    let c = read_compound(&server_rx, &sent[0]);
    assert_eq!((c[0].0, c[0].1), (201, 1));
    let audio = &c[0].2[8..32];
    assert_eq!(&audio[..4], &0x111u32.to_be_bytes());
    assert_eq!(
        &audio[4..8],
        &[85, 0, 0, 1],
        "1 of 3 lost: 85/256, cumulative 1"
    );
    assert_eq!(&audio[8..12], &9u32.to_be_bytes());
    assert_eq!(&audio[16..20], &0xabcd_1234u32.to_be_bytes(), "LSR");
    let dlsr = u32::from_be_bytes([audio[20], audio[21], audio[22], audio[23]]);
    assert!(
        (131_000..=131_100).contains(&dlsr),
        "2 s in 1/65536 s: {dlsr}"
    );
    let c = read_compound(&server_rx, &sent[1]);
    let video = &c[0].2[8..32];
    assert_eq!(&video[..4], &0x222u32.to_be_bytes());
    assert_eq!(
        &video[16..20],
        &[0; 4],
        "no sender report from the video SSRC"
    );
    assert!(poll(&mut t, at).is_empty(), "next in a second");
}

/// `--drop-every`: one video packet in K is dropped before counting (so that a NACK must
/// repair it); audio is never dropped.
#[test]
fn drop_every_drops_video_only() {
    let (mut t, tx, _) = pair(Profile::AeadAes256Gcm, 4);
    let now = Instant::now();
    assert!(t.keys(now));
    let mut got = vec![];
    for seq in 1..=8u16 {
        for (pt, ssrc) in [(96u8, 1u32), (111, 2)] {
            let mut p = rtp(pt, seq, 0, ssrc, false, b"p");
            tx.protect_rtp(&mut p, 20, u64::from(seq)).expect("protect");
            if let Some(d) = t.on_datagram(now, 0, &mut p) {
                got.push((d.kind, d.ext));
            }
        }
    }
    let video: Vec<u64> = got.iter().filter(|g| g.0 == 1).map(|g| g.1).collect();
    assert_eq!(video, vec![1, 3, 4, 5, 7, 8]);
    assert_eq!(got.iter().filter(|g| g.0 == 0).count(), 8);
    assert_eq!(t.stats.dropped, 2);
    assert!(t.nack_at.is_some(), "the gaps are to be NACKed");
}

/// A gap too large for the NACK list (a saturated server dropping runs of packets) is not
/// NACKed packet by packet: the viewer asks for a keyframe, at most once a second.
#[test]
fn an_overflowing_gap_asks_for_a_keyframe_instead() {
    let (mut t, tx, server_rx) = pair(Profile::AeadAes128Gcm, 0);
    let t0 = Instant::now();
    assert!(t.keys(t0));
    t.next_rr = Some(t0 + Duration::from_secs(60));
    let send = |t: &mut Thin, seq: u16, now: Instant| {
        let mut p = rtp(96, seq, 0, 0xabc, false, b"v");
        tx.protect_rtp(&mut p, 20, u64::from(seq)).expect("protect");
        assert!(t.on_datagram(now, 0, &mut p).is_some());
    };
    send(&mut t, 1, t0);
    let _ = poll_one(&mut t, t0); // the PLI of the start
    send(&mut t, 1 + MAX_MISSING as u16 + 2, t0 + PLI_INTERVAL);
    let c = read_compound(&server_rx, &poll_one(&mut t, t0 + PLI_INTERVAL));
    let kinds: Vec<u8> = c.iter().map(|p| p.0).collect();
    assert_eq!(kinds, vec![201, 202, 206], "a PLI, no NACK");
    assert!(t.nack_at.is_none());
    send(&mut t, 200, t0 + PLI_INTERVAL);
    assert!(poll(&mut t, t0 + PLI_INTERVAL).is_empty(), "one a second");
    // A small gap is NACKed as before.
    send(&mut t, 203, t0 + PLI_INTERVAL);
    let c = read_compound(&server_rx, &poll_one(&mut t, t0 + PLI_INTERVAL));
    let nack = &c.iter().find(|p| p.0 == 205).expect("NACK").2;
    assert_eq!(&nack[12..16], &[0, 201, 0, 1], "201 and 202");
    assert_eq!(t.stats.plis, 2);
}

/// A video packet whose header carries transport-wide number `tseq` under extension id 3.
fn rtp_twcc(seq: u16, tseq: u16) -> Vec<u8> {
    let mut v = vec![0x90, 96];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    v.extend_from_slice(&0xabcu32.to_be_bytes());
    let t = tseq.to_be_bytes();
    v.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x31, t[0], t[1], 0]);
    v.extend_from_slice(&[7; 40]);
    v
}

/// A transport-wide feedback message (an RTCP packet's bytes, padding included) as str0m
/// reads it: its media SSRC and each sequence number with its arrival, if received.
fn twcc_statuses(bytes: &[u8]) -> (u32, Vec<(u64, Option<Instant>)>) {
    let len = if bytes[0] & 0x20 != 0 {
        bytes.len() - usize::from(bytes[bytes.len() - 1])
    } else {
        bytes.len()
    };
    let Ok(str0m::rtp::rtcp::Rtcp::Twcc(fb)) = str0m::rtp::rtcp::Rtcp::try_from(&bytes[..len])
    else {
        panic!("str0m does not read {bytes:?}");
    };
    let ssrc = *fb.ssrc;
    let statuses = fb
        .into_iter(Instant::now(), 0u64.into())
        .map(|(s, _, at)| (*s, at))
        .collect();
    (ssrc, statuses)
}

/// With TWCC negotiated the viewer reports each packet's transport-wide number and arrival
/// (`TWCC_INTERVAL` after the first), a missing one as not received, in an SRTCP packet of
/// its own that str0m reads back; without TWCC it sends none, as before.
#[test]
fn transport_wide_feedback_when_negotiated() {
    for negotiated in [true, false] {
        let (mut t, tx, server_rx) = pair(Profile::AeadAes128Gcm, 0);
        t.set_twcc(negotiated.then_some(3));
        let t0 = Instant::now();
        assert!(t.keys(t0));
        t.next_rr = Some(t0 + Duration::from_secs(60));
        let wall = crate::sys::wall_ns() - 1_000_000_000;
        for (i, (seq, tseq)) in [(1u16, 500u16), (2, 501), (3, 503)].into_iter().enumerate() {
            let mut p = rtp_twcc(seq, tseq);
            tx.protect_rtp(&mut p, 20, u64::from(seq)).expect("protect");
            let at = wall + i as u64 * 2_000_000;
            assert!(t.on_datagram(t0, at, &mut p).is_some());
        }
        // The PLI of the video's start goes first.
        let first = poll(&mut t, t0);
        assert!(first.iter().all(|p| read_compound(&server_rx, p)
            .iter()
            .all(|(pt, fmt, _)| !(*pt == 205 && *fmt == 15))));
        let sent = poll(&mut t, t0 + TWCC_INTERVAL);
        if !negotiated {
            assert!(sent.is_empty() && t.next_timer().is_none_or(|x| x > t0 + TWCC_INTERVAL));
            assert_eq!(t.stats.twcc_feedback, 0);
            continue;
        }
        assert_eq!(sent.len(), 1);
        let packets = read_compound(&server_rx, &sent[0]);
        assert_eq!(packets.len(), 1, "feedback alone, as Chromium sends it");
        let (pt, fmt, bytes) = &packets[0];
        assert_eq!((*pt, *fmt), (205, 15));
        let (ssrc, statuses) = twcc_statuses(bytes);
        assert_eq!(ssrc, 0xabc);
        let seqs: Vec<(u64, bool)> = statuses.iter().map(|s| (s.0, s.1.is_some())).collect();
        assert_eq!(
            seqs,
            vec![(500, true), (501, true), (502, false), (503, true)]
        );
        let gap = statuses[3].1.expect("received") - statuses[1].1.expect("received");
        assert_eq!(gap, Duration::from_millis(2));
        assert_eq!((t.stats.twcc_feedback, t.stats.twcc_reported), (1, 3));
        assert!(
            poll(&mut t, t0 + 3 * TWCC_INTERVAL).is_empty(),
            "nothing new"
        );
    }
}

/// A padding-only RTX packet (a server's bandwidth probe: no original sequence number, no
/// payload) is received for the transport-wide feedback, as Chromium and str0m count it, and
/// delivers nothing (before, it was dropped first and reported lost).
#[test]
fn probe_padding_is_reported_received() {
    let (mut t, tx, server_rx) = pair(Profile::AeadAes128Gcm, 0);
    t.set_twcc(Some(3));
    let t0 = Instant::now();
    assert!(t.keys(t0));
    t.next_rr = Some(t0 + Duration::from_secs(60));
    let wall = crate::sys::wall_ns() - 1_000_000_000;
    let mut padding = vec![0xb0, 97, 0, 7, 0, 0, 0, 1, 0, 0, 0x0d, 0xef];
    padding.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x31, 0x01, 0xf6, 0]); // tseq 502
    padding.extend_from_slice(&[0; 199]);
    padding.push(200);
    for (i, (seq, tseq)) in [(1u16, 500u16), (2, 501), (0, 502), (3, 503)]
        .into_iter()
        .enumerate()
    {
        let at = wall + i as u64 * 2_000_000;
        if seq == 0 {
            let mut p = padding.clone();
            tx.protect_rtp(&mut p, 20, 7).expect("protect");
            assert!(
                t.on_datagram(t0, at, &mut p).is_none(),
                "padding delivers nothing"
            );
            continue;
        }
        let mut p = rtp_twcc(seq, tseq);
        tx.protect_rtp(&mut p, 20, u64::from(seq)).expect("protect");
        assert!(t.on_datagram(t0, at, &mut p).is_some());
    }
    assert_eq!((t.stats.padding, t.stats.unknown), (1, 0));
    poll(&mut t, t0);
    let sent = poll(&mut t, t0 + TWCC_INTERVAL);
    assert_eq!(sent.len(), 1);
    let packets = read_compound(&server_rx, &sent[0]);
    let (_, _, bytes) = &packets[0];
    let seqs: Vec<(u64, bool)> = twcc_statuses(bytes)
        .1
        .iter()
        .map(|(s, at)| (*s, at.is_some()))
        .collect();
    assert_eq!(
        seqs,
        vec![(500, true), (501, true), (502, true), (503, true)]
    );
}
