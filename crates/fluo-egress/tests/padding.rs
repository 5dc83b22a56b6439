//! Probe padding (`Viewer::pad`, docs/simulcast.md "Probing"): padding-only packets on the
//! viewer's RTX SSRC with a transport-wide sequence number, decrypting to an RTP packet with
//! no payload and valid padding, recorded in the sent-packet log with their cluster; none
//! without RTX or without transport-wide sequence numbers.

use fluo_egress::{
    Batch, Clock, ExtPlan, Path, Profile, Rtx, SocketId, SourcePacket, SrtpContext, StreamOut,
    Viewer, MAX_PADDING,
};
use fluo_sfu::rtp::RtpPacket;
use fluo_sfu::MediaKind;
use std::time::{Duration, Instant};

const P: Profile = Profile::AeadAes128Gcm;

fn material() -> Vec<u8> {
    (0..P.material_len() as u8).collect()
}

fn viewer(rtx: bool, twcc: bool) -> Viewer {
    let m = material();
    let path = Path {
        socket: SocketId(1),
        to: "127.0.0.1:9".parse().unwrap(),
        tos: 0,
    };
    let mut v = Viewer::new(
        SrtpContext::from_dtls(P, &m, false).unwrap(),
        SrtpContext::from_dtls(P, &m, true).unwrap(),
        path,
        Clock::new(),
    );
    let plan = ExtPlan {
        mid: Some((4, b"1".to_vec())),
        abs_send_time: Some(3),
        transport_cc: twcc.then_some(6),
        ..ExtPlan::default()
    };
    let rtx = rtx.then(|| Rtx::new(0x900, 97));
    let stream = StreamOut::new(0x100, 96, 90_000, rtx, plan);
    v.set_stream(MediaKind::Video, Some(stream));
    v
}

/// The transport-wide sequence number (extension id 6, one-byte form) of `pkt`.
fn twcc_of(pkt: &RtpPacket<'_>) -> Option<u16> {
    let (profile, data) = pkt.extension()?;
    assert_eq!(profile, 0xBEDE);
    let mut at = 0;
    while at < data.len() {
        if data[at] == 0 {
            at += 1;
            continue;
        }
        let (id, len) = (data[at] >> 4, usize::from(data[at] & 0xf) + 1);
        if id == 6 {
            return Some(u16::from_be_bytes([data[at + 1], data[at + 2]]));
        }
        at += 1 + len;
    }
    None
}

#[test]
fn padding_goes_on_the_rtx_ssrc_with_a_transport_wide_number_and_is_marked_in_the_log() {
    let t0 = Instant::now();
    let mut v = viewer(true, true);
    v.log_sent(t0);
    assert!(v.can_pad());
    let mut batch = Batch::new();
    // Media first: its number 1, then three padding packets of cluster 7, then media.
    let mut pkt = vec![];
    fluo_sfu::rtp::write_rtp(&mut pkt, 96, false, 100, 900, 7, &[1; 500]);
    assert!(v.forward(
        t0,
        MediaKind::Video,
        &SourcePacket::parse(&pkt).unwrap(),
        &mut batch
    ));
    let mut sizes = vec![];
    for i in 0..3u64 {
        let now = t0 + Duration::from_millis(2 * i + 2);
        sizes.push(v.pad(now, 1000, Some(7), &mut batch).expect("sent"));
    }
    fluo_sfu::rtp::write_rtp(&mut pkt, 96, false, 101, 900, 7, &[1; 500]);
    let now = t0 + Duration::from_millis(10);
    assert!(v.forward(
        now,
        MediaKind::Video,
        &SourcePacket::parse(&pkt).unwrap(),
        &mut batch
    ));
    let datagrams: Vec<Vec<u8>> = batch.iter().map(|(_, d)| d.to_vec()).collect();
    assert_eq!(datagrams.len(), 5);
    let rx = SrtpContext::from_dtls(P, &material(), false).unwrap();
    for (i, d) in datagrams[1..4].iter().enumerate() {
        assert_eq!(d.len(), sizes[i]);
        let mut plain = d.clone();
        let hlen = fluo_egress::srtp::rtp_header_len(&plain).unwrap();
        rx.unprotect_rtp(&mut plain, hlen, i as u64 + 1)
            .expect("decrypts");
        let p = RtpPacket::parse(&plain).unwrap();
        assert_eq!(p.ssrc(), 0x900, "the RTX SSRC");
        assert_eq!(p.payload_type(), 97);
        assert_eq!(p.sequence(), i as u16 + 1, "the RTX stream's own numbers");
        assert_eq!(plain[0] & 0x20, 0x20, "the padding bit");
        assert_eq!(
            twcc_of(&p),
            Some(i as u16 + 2),
            "numbers between the media's"
        );
        assert!(p.payload().is_empty());
        // All of the payload is padding, its count at the end, MAX_PADDING at most.
        let padding = usize::from(*plain.last().unwrap());
        assert_eq!(padding, MAX_PADDING);
        assert_eq!(
            plain.len() - hlen,
            padding,
            "no payload: {} bytes",
            plain.len() - hlen
        );
    }
    let log = v.sent_log().unwrap();
    let mut seen = vec![];
    log.take_sent(t0 + Duration::from_millis(20), |s| seen.push(s));
    let probes: Vec<_> = seen.iter().map(|s| (s.seq, s.probe)).collect();
    assert_eq!(
        probes,
        [
            (1, None),
            (2, Some(7)),
            (3, Some(7)),
            (4, Some(7)),
            (5, None)
        ]
    );
    assert_eq!(
        seen[1].size as usize, sizes[0],
        "recorded with its size on the wire"
    );
    assert_eq!(seen[3].at_us, 6_000);
}

#[test]
fn small_padding_is_raised_to_the_least_and_no_cluster_means_not_a_probe() {
    let t0 = Instant::now();
    let mut v = viewer(true, true);
    v.log_sent(t0);
    let mut batch = Batch::new();
    let small = v.pad(t0, 1, None, &mut batch).unwrap();
    let big = v.pad(t0, MAX_PADDING, None, &mut batch).unwrap();
    assert_eq!(big - small, MAX_PADDING - fluo_egress::MIN_PADDING);
    let mut seen = vec![];
    v.sent_log().unwrap().take_sent(t0, |s| seen.push(s));
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.probe.is_none()));
}

#[test]
fn no_padding_without_rtx_or_transport_wide_numbers() {
    let t0 = Instant::now();
    for (rtx, twcc) in [(false, true), (true, false), (false, false)] {
        let mut v = viewer(rtx, twcc);
        v.log_sent(t0);
        let mut batch = Batch::new();
        assert!(!v.can_pad());
        assert_eq!(v.pad(t0, 200, Some(1), &mut batch), None);
        assert!(batch.is_empty());
    }
    // Without a video stream at all.
    let mut v = viewer(true, true);
    v.set_stream(MediaKind::Video, None);
    let mut batch = Batch::new();
    assert!(!v.can_pad());
    assert_eq!(v.pad(t0, 200, Some(1), &mut batch), None);
}
