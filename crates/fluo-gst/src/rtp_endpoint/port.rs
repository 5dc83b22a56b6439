//! The endpoint as the router sees it, and the state it shares with the element.

use super::sdp::Section;
use crate::srtp::Transform;
use fluo_sfu::rtcp::write_pli;
use fluo_sfu::rtp::write_rtp;
use fluo_sfu::{Header, MediaKind, MediaPacket, Node, Packet, Rewriter, SinkCaps, SinkCodec};
use std::net::UdpSocket;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

#[derive(Default)]
pub(super) struct Shared {
    pub(super) sections: Vec<Section>,
    /// Per media: rewriter and the SSRC we send with.
    pub(super) out: [Option<Rewriter>; 2],
    pub(super) ssrc: [u32; 2],
    /// The remote's SSRC per media (for PLI).
    pub(super) remote_ssrc: [u32; 2],
    pub(super) sockets: [Option<Arc<UdpSocket>>; 2],
    pub(super) rtcp_sockets: [Option<Arc<UdpSocket>>; 2],
    /// SRTP protection of what we send, per media.
    pub(super) enc: [Option<Arc<Transform>>; 2],
    /// SDES was asked for: nothing goes out or comes in unprotected.
    pub(super) srtp: bool,
    /// Counters and RTCP of each media (see `stats`).
    pub(super) stats: [super::stats::MediaStats; 2],
    /// Kurento's MediaState: a report from the peer arrived (and when the last did).
    pub(super) media_connected: bool,
    pub(super) last_report: Option<Instant>,
}

pub(super) type SharedRef = Arc<Mutex<Shared>>;

pub(super) fn lock(s: &SharedRef) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The endpoint as the router sees it.
pub(super) struct RtpPort {
    pub(super) shared: SharedRef,
}

impl Node for RtpPort {
    /// The negotiated codec of its section of `kind` when it sends that kind; anything
    /// otherwise (not negotiated yet, or not sending: nothing goes out).
    fn caps(&self, kind: MediaKind) -> SinkCaps {
        let sh = lock(&self.shared);
        match sh.sections.iter().find(|s| s.kind == kind) {
            Some(s) if s.send => SinkCaps::codecs([SinkCodec::new(s.codec)]),
            _ => SinkCaps::anything(),
        }
    }

    fn push(&mut self, _now: Instant, pkt: &Packet<'_>, header: Header) {
        let pkt = &MediaPacket::routed(pkt, header);
        let k = pkt.kind;
        let mut sh = lock(&self.shared);
        let Some(s) = sh.sections.iter().find(|s| s.kind == pkt.kind).cloned() else {
            return;
        };
        let (Some(remote), true) = (s.remote, s.send) else {
            return;
        };
        if !s.codec.compatible(&pkt.codec) {
            return;
        }
        let ssrc = sh.ssrc[k];
        let rw = sh.out[k]
            .get_or_insert_with(|| Rewriter::new(s.codec.clock_rate, ssrc, pkt.seq, pkt.timestamp));
        let Some(r) = rw.rewrite(Instant::now(), pkt.ssrc, pkt.seq, pkt.timestamp) else {
            return;
        };
        let sock = sh.sockets[k].clone();
        let enc = sh.enc[k].clone();
        let srtp = sh.srtp;
        sh.stats[k].sent(Instant::now(), r.ts, pkt.payload.len());
        drop(sh);
        let mut bytes = Vec::with_capacity(12 + pkt.payload.len());
        write_rtp(
            &mut bytes,
            s.pt,
            pkt.marker,
            r.seq,
            r.ts,
            ssrc,
            &pkt.payload,
        );
        match (enc, sock) {
            (Some(enc), _) => enc.push_rtp(bytes),
            (None, Some(sock)) if !srtp => {
                let _ = sock.send_to(&bytes, remote);
            }
            _ => {}
        }
    }

    fn request_keyframe(&mut self, _kind: MediaKind) {
        let mut sh = lock(&self.shared);
        let k = MediaKind::Video;
        let Some(s) = sh.sections.iter().find(|s| s.kind == MediaKind::Video) else {
            return;
        };
        let (Some(to), Some(sock)) = (s.remote_rtcp, sh.rtcp_sockets[k].clone()) else {
            return;
        };
        let mut pli = vec![];
        write_pli(&mut pli, sh.ssrc[k], sh.remote_ssrc[k]);
        sh.stats[k].plis_sent += 1;
        let enc = sh.enc[k].clone();
        drop(sh);
        match enc {
            Some(enc) => enc.push_rtcp(pli),
            None => {
                let _ = sock.send_to(&pli, to);
            }
        }
    }
}
