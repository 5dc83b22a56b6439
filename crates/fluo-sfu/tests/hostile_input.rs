//! Arbitrary bytes fed to every parser, and arbitrary packets to the router, never panic.

use std::time::{Duration, Instant};

use fluo_sfu::rtcp::{RtcpCompound, RtcpPacket};
use fluo_sfu::rtp::{RtpHeaderMut, RtpPacket};
use fluo_sfu::{
    Codec, CodecName, Header, MediaKind, MediaRouter, Node, NodeId, Packet, Rewriter, SinkCaps,
    SinkCodec, TranscoderMaker,
};
use proptest::prelude::*;

/// A node that takes the codecs it is given (none: a source only).
struct Takes(Vec<CodecName>);

impl Node for Takes {
    fn caps(&self, _: MediaKind) -> SinkCaps {
        SinkCaps::codecs(self.0.iter().map(|c| SinkCodec::new(Codec::new(*c))))
    }
    fn push(&mut self, _: Instant, pkt: &Packet<'_>, _: Header) {
        assert!(self.0.is_empty() || self.0.iter().any(|c| c.kind() == pkt.kind));
    }
}

/// Transcoders between any two codecs of a kind.
struct AnyTranscoder;

impl TranscoderMaker for AnyTranscoder {
    fn can(&self, from: &Codec, to: &Codec) -> bool {
        from.name.kind() == to.name.kind()
    }
    fn make(
        &self,
        _: NodeId,
        _: MediaKind,
        from: &Codec,
        _: &Codec,
        _: &str,
    ) -> Result<Box<dyn Node>, String> {
        Ok(Box::new(Takes(vec![from.name])))
    }
}

/// Touches every accessor of every RTCP packet kind.
fn walk_rtcp(buf: &[u8]) -> usize {
    let mut n = 0;
    for p in RtcpCompound::new(buf) {
        let Ok(p) = p else { break };
        n += match p {
            RtcpPacket::SenderReport(sr) => {
                let _ = (
                    sr.ssrc(),
                    sr.ntp_time(),
                    sr.rtp_time(),
                    sr.packet_count(),
                    sr.octet_count(),
                );
                sr.reports().count()
            }
            RtcpPacket::ReceiverReport(rr) => rr.reports().count() + rr.ssrc() as usize % 2,
            RtcpPacket::Sdes(s) => s.items().count() + s.chunk_count(),
            RtcpPacket::Bye(b) => b.ssrcs().count() + b.reason().map_or(0, <[u8]>::len),
            RtcpPacket::Nack(n) => n.lost().count(),
            RtcpPacket::Fir(f) => f.entries().count(),
            RtcpPacket::Remb(r) => r.ssrcs().count() + (r.bitrate_bps % 2) as usize,
            RtcpPacket::Pli { .. } => 1,
            RtcpPacket::TransportCc { fci, .. } => fci.len(),
            _ => 0,
        };
    }
    n
}

/// Arbitrary bytes, biased to start like RTP/RTCP so parsing gets past the first checks.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (0u8..64, proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(b0, mut v)| {
            v.insert(0, 0x80 | b0);
            v
        }),
        (
            0u8..32,
            200u8..=207,
            0u8..8,
            proptest::collection::vec(any::<u8>(), 0..120)
        )
            .prop_map(|(b0, pt, len, rest)| {
                let mut v = vec![0x80 | b0, pt, 0, len];
                v.extend(rest);
                v
            }),
    ]
}

/// Payload headers as a hostile publisher could make them: an H.264 SPS or STAP-A, a VP8 or
/// VP9 payload descriptor, an AV1 aggregation header, then bytes biased to long runs of
/// zero bits (exp-Golomb values near 2^32) and emulation-prevention bytes.
fn codec_payload() -> impl Strategy<Value = (CodecName, Vec<u8>)> {
    let body = proptest::collection::vec(
        prop_oneof![4 => Just(0u8), 1 => Just(3u8), 1 => Just(0xffu8), 4 => any::<u8>()],
        0..96,
    );
    let first = prop_oneof![
        Just((CodecName::H264, 0x67u8)),
        Just((CodecName::H264, 0x78u8)),
        Just((CodecName::H264, 0x7cu8)),
        any::<u8>().prop_map(|b| (CodecName::Vp8, b | 0x10)),
        any::<u8>().prop_map(|b| (CodecName::Vp9, b | 0x0a)),
        any::<u8>().prop_map(|b| (CodecName::Av1, b)),
    ];
    (first, body).prop_map(|((codec, b0), mut body)| {
        body.insert(0, b0);
        (codec, body)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn payload_headers_never_panic((codec, payload) in codec_payload()) {
        let _ = fluo_sfu::frame_size::keyframe_size(codec, &payload);
        let _ = fluo_sfu::starts_keyframe(codec, &payload);
    }

    #[test]
    fn rtp_parser_never_panics(buf in bytes()) {
        if let Ok(p) = RtpPacket::parse(&buf) {
            let _ = (p.marker(), p.payload_type(), p.sequence(), p.timestamp(), p.ssrc());
            let _ = (p.extension(), p.padding_len(), p.csrc(0), p.csrc(15));
            prop_assert!(p.payload_range().end <= buf.len());
            prop_assert_eq!(p.payload().len(), p.payload_range().len());
        }
        let mut copy = buf.clone();
        if let Ok(mut h) = RtpHeaderMut::new(&mut copy) {
            h.set_sequence(1);
            h.set_timestamp(2);
            h.set_ssrc(3);
            h.set_payload_type(200);
            h.set_marker(true);
        }
    }

    #[test]
    fn rtcp_walker_never_panics(buf in bytes()) {
        walk_rtcp(&buf);
    }

    #[test]
    fn router_never_panics(pkts in proptest::collection::vec(
        (any::<u16>(), any::<u32>(), any::<u32>(), 0usize..11, any::<bool>(), 0usize..1500, any::<Option<u8>>(), bytes()), 1..40,
    )) {
        // Packets as a hostile peer could make them (any numbers, codecs changing under the
        // route, empty payloads), to sinks that take some codecs and to transcoders.
        let t = Instant::now();
        let mut r = MediaRouter::new();
        r.set_transcoders(std::sync::Arc::new(AnyTranscoder));
        let src = r.add_node("src", Box::new(Takes(vec![])));
        let vp8 = r.add_node("vp8", Box::new(Takes(vec![CodecName::Vp8])));
        let opus = r.add_node("opus", Box::new(Takes(vec![CodecName::Opus])));
        for (kind, sink) in [(MediaKind::Video, vp8), (MediaKind::Audio, opus), (MediaKind::Video, src)] {
            r.connect(t, src, kind, sink).unwrap();
        }
        // Simulcast limits on one sink (layers come with any id, any payload).
        r.set_layer_limits(vp8, MediaKind::Video, fluo_sfu::LayerLimits { max: Some(1), preferred: Some(0), max_temporal: None });
        for (i, (seq, ts, ssrc, codec, marker, len, layer, head)) in pkts.into_iter().enumerate() {
            let now = t + Duration::from_millis(i as u64 * 50);
            let name = CodecName::ALL[codec];
            let mut bytes = head;
            bytes.resize(len.max(bytes.len()), 0);
            let payload: std::sync::Arc<[u8]> = bytes.into();
            // Every other packet with its payload as its dependency descriptor too.
            let dd = (i % 2 == 1).then_some(&payload[..]);
            let pkt = Packet {
                kind: name.kind(), codec: Codec::new(name), seq, ts, ssrc, marker,
                payload: &payload, entered: Some(now), extensions: None, dd, layer,
            };
            r.forward(now, src, &pkt);
            r.request_keyframe(now, vp8, MediaKind::Video);
            r.handle_timeout(now);
            while r.poll_event().is_some() {}
        }
    }

    #[test]
    fn vp9_layer_readers_never_panic((_, payload) in codec_payload(), l in any::<bool>()) {
        // With or without L (layer indices).
        let mut p = payload;
        if l {
            p[0] |= 0x20;
        }
        let _ = fluo_sfu::descriptor::vp9_layers(&p);
        let _ = fluo_sfu::descriptor::vp9_layer_sizes(&p);
    }

    #[test]
    fn a_line_skipping_packets_stays_continuous_and_maps_nacks_to_what_it_sent(
        first in any::<u16>(), start in any::<u16>(),
        ops in proptest::collection::vec(any::<bool>(), 1..400),
    ) {
        // Any run of packets sent and skipped (an SVC sink's), in order: the line goes on by
        // one, and each number sent maps back to its packet, none beyond.
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 5, first, 0);
        r.rewrite(t, 9, start, 0).unwrap();
        let mut sent = vec![(first, start)];
        for (i, skip) in ops.iter().enumerate() {
            let seq = start.wrapping_add(1 + i as u16);
            if *skip {
                prop_assert!(r.skip(9, seq));
            } else {
                let out = r.rewrite(t, 9, seq, 0).unwrap();
                prop_assert_eq!(out.seq, first.wrapping_add(sent.len() as u16));
                sent.push((out.seq, seq));
            }
        }
        for (out, input) in &sent {
            prop_assert_eq!(r.original_seq(*out), Some(*input));
        }
        prop_assert_eq!(r.original_seq(first.wrapping_add(sent.len() as u16)), None);
    }

    #[test]
    fn rewriter_output_is_continuous_for_in_order_input(
        start in any::<u16>(), ts0 in any::<u32>(), first in any::<u16>(), n in 1usize..300,
    ) {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 5, first, 0);
        for i in 0..n {
            let out = r.rewrite(t, 9, start.wrapping_add(i as u16), ts0.wrapping_add(3000 * i as u32)).unwrap();
            prop_assert_eq!(out.seq, first.wrapping_add(i as u16));
            prop_assert_eq!(out.ts, 3000u32.wrapping_mul(i as u32));
        }
    }
}
