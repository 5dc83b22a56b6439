//! The endpoint as the router sees it, and the state it shares with the element.

use super::sdp::Section;
use fluo_egress::SdesSender;
use fluo_sfu::rtcp::write_pli;
use fluo_sfu::rtp::write_rtp;
use fluo_sfu::{Header, MediaKind, MediaPacket, Node, Packet, Rewriter, SinkCaps, SinkCodec};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::UdpSocket;

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
    /// SRTP protection of what we send, per media (SDES, our key).
    pub(super) enc: [Option<SdesSender>; 2],
    /// SDES was asked for: nothing goes out or comes in unprotected.
    pub(super) srtp: bool,
    /// Counters and RTCP of each media (see `stats`).
    pub(super) stats: [super::stats::MediaStats; 2],
    /// Kurento's MediaState: a report from the peer arrived (and when the last did).
    pub(super) media_connected: bool,
    pub(super) last_report: Option<Instant>,
}

pub(super) type SharedRef = Arc<Mutex<Shared>>;

impl Shared {
    /// Sends RTP (`rtcp` false) or RTCP of media `k` to `to`, SRTP-protected with SDES;
    /// never in the clear when SDES was asked for. Sockets are non-blocking: a datagram the
    /// system cannot take now is dropped, as UDP may drop it anyway.
    pub(super) fn send(&mut self, k: MediaKind, rtcp: bool, mut bytes: Vec<u8>, to: SocketAddr) {
        if self.srtp {
            let Some(enc) = self.enc[k].as_mut() else {
                return;
            };
            let protected = if rtcp {
                enc.protect_rtcp(&mut bytes)
            } else {
                enc.protect_rtp(&mut bytes)
            };
            if let Err(e) = protected {
                tracing::debug!(?e, "SRTP: a packet could not be protected and was not sent");
                return;
            }
        }
        let sock = if rtcp {
            &self.rtcp_sockets[k]
        } else {
            &self.sockets[k]
        };
        if let Some(sock) = sock {
            // The send call itself, not tokio's `try_send_to`: that one refuses without
            // trying while its reactor has not yet seen the socket writable.
            let _ = socket2::SockRef::from(sock.as_ref()).send_to(&bytes, &to.into());
        }
    }
}

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
        sh.stats[k].sent(Instant::now(), r.ts, pkt.payload.len());
        let mut bytes = Vec::with_capacity(12 + pkt.payload.len() + 10);
        write_rtp(
            &mut bytes,
            s.pt,
            pkt.marker,
            r.seq,
            r.ts,
            ssrc,
            &pkt.payload,
        );
        sh.send(k, false, bytes, remote);
    }

    fn request_keyframe(&mut self, _kind: MediaKind) {
        let mut sh = lock(&self.shared);
        let k = MediaKind::Video;
        let Some(s) = sh.sections.iter().find(|s| s.kind == MediaKind::Video) else {
            return;
        };
        let Some(to) = s.remote_rtcp else {
            return;
        };
        let mut pli = vec![];
        write_pli(&mut pli, sh.ssrc[k], sh.remote_ssrc[k]);
        sh.stats[k].plis_sent += 1;
        sh.send(k, true, pli, to);
    }
}
