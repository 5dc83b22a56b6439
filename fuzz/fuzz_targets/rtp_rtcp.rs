//! Datagrams from a peer: RTP, RTCP, STUN, DTLS or anything else.
//!
//! The input is a list of records `[flags] [len: u16 BE] [len bytes]` (the last record takes
//! what is left). Each datagram goes through fluo-sfu's parsers (`RtpPacket::parse`, every
//! packet of an `RtcpCompound`, transport-wide feedback through `twcc::parse`, `RtpHeaderMut`) and then into the media core's
//! `handle_receive`, where a WebRtcEndpoint is connected (ICE and DTLS done) to an in-memory
//! browser: from the browser's address (`flags & 1`, so it reaches that endpoint's str0m
//! session: DTLS, SRTP/SRTCP, STUN) or from a new address (it must be a STUN binding request
//! naming an endpoint: the media core reads its USERNAME). `flags & 2` lets virtual time
//! move on 20 ms before the datagram, firing timers.
//!
//! The world is built once and kept (a DTLS handshake per input would be most of the time),
//! and rebuilt every 20 000 inputs or when the session has gone, so a crash can depend on
//! earlier inputs: reproduce with the same corpus order, or it shows on its own input.
#![no_main]

use fluo_sfu::rtcp::RtcpPacket;
use fluo_sfu::{RtcpCompound, RtpHeaderMut, RtpPacket};
use fluo_testkit::World;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;
use str0m::media::Direction;

struct State {
    w: World,
    b: usize,
    runs: u32,
}

fn build() -> State {
    let mut w = World::new();
    let p = w.create("MediaPipeline", None);
    let ep = w.create("WebRtcEndpoint", Some(&p));
    // Loopback: what the browser sends comes back to it through the router.
    w.invoke(&ep, "connect", json!({"sink": ep}));
    let b = w.join("b", false, &ep, Direction::SendRecv);
    assert!(
        w.connect_all(Duration::from_secs(5)),
        "the browser connects"
    );
    w.stream(&[b], Duration::from_millis(100));
    State { w, b, runs: 0 }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn parse(d: &[u8]) {
    if let Ok(p) = RtpPacket::parse(d) {
        let _ = (
            p.marker(),
            p.payload_type(),
            p.sequence(),
            p.timestamp(),
            p.ssrc(),
        );
        for i in 0..p.csrc_count() + 1 {
            let _ = p.csrc(i);
        }
        let _ = (
            p.extension(),
            p.header_len(),
            p.padding_len(),
            p.payload_range(),
        );
        assert!(p.header_len() + p.payload().len() + p.padding_len() <= d.len());
        let mut copy = d.to_vec();
        if let Ok(mut h) = RtpHeaderMut::new(&mut copy) {
            h.set_sequence(p.sequence().wrapping_add(1));
            h.set_timestamp(p.timestamp() ^ 1);
            h.set_ssrc(!p.ssrc());
            // The payload type and marker stay: another one could make it look like RTCP.
            h.set_payload_type(p.payload_type());
            h.set_marker(p.marker());
        }
        let q = RtpPacket::parse(&copy).expect("a rewritten header still parses");
        assert_eq!(q.payload(), p.payload());
    }
    for pkt in RtcpCompound::new(d).take(64) {
        let Ok(pkt) = pkt else { break };
        match pkt {
            RtcpPacket::SenderReport(sr) => {
                let _ = (sr.ssrc(), sr.ntp_time(), sr.rtp_time(), sr.packet_count());
                let _ = (sr.octet_count(), sr.reports().count());
            }
            RtcpPacket::ReceiverReport(rr) => {
                let _ = (rr.ssrc(), rr.reports().count());
            }
            RtcpPacket::Sdes(s) => {
                let _ = (s.chunk_count(), s.items().count());
            }
            RtcpPacket::Bye(b) => {
                let _ = (b.ssrcs().count(), b.reason());
            }
            RtcpPacket::Nack(n) => {
                let _ = n.lost().count();
            }
            RtcpPacket::Fir(f) => {
                let _ = f.entries().count();
            }
            RtcpPacket::Remb(r) => {
                let _ = r.ssrcs().count();
            }
            RtcpPacket::TransportCc { fci, .. } => {
                // The transport-wide feedback parser: its work is bounded by the bytes.
                if let Ok(fb) = fluo_sfu::twcc::parse(fci) {
                    let mut n = 0usize;
                    fb.for_each(|_| n += 1);
                    assert!(n <= usize::from(fb.status_count));
                }
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let stale = s
            .as_ref()
            .is_none_or(|st| st.runs >= 20_000 || !st.w.browsers[st.b].connected);
        if stale {
            *s = Some(build());
        }
        let st = s.as_mut().expect("built");
        st.runs += 1;
        let w = &mut st.w;
        let browser = w.browsers[st.b].addr;
        let stranger: SocketAddr = "127.0.0.200:7000".parse().expect("address");
        let mut rest = data;
        while let Some((&flags, r)) = rest.split_first() {
            let (d, r) = match r {
                [hi, lo, body @ ..] => {
                    let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(body.len());
                    body.split_at(n)
                }
                _ => (r, &[][..]),
            };
            rest = r;
            parse(d);
            if flags & 2 != 0 {
                w.run(Duration::from_millis(20), Duration::from_millis(20), |_| {});
            }
            let src = if flags & 1 != 0 { browser } else { stranger };
            let (server, now) = (w.server, w.now.mono);
            w.core.handle_receive(now, server, src, d);
            w.settle();
        }
        w.events();
    });
});
