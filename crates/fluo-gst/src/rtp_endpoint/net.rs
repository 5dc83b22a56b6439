//! The sockets of one RtpEndpoint and the threads that read them.

use super::port::{idx, lock, SharedRef};
use super::sdp::Section;
use fluo_api::{ErrorCode, KurentoError};
use fluo_sfu::rtcp::{RtcpCompound, RtcpPacket};
use fluo_sfu::{MediaKind, MediaPacket, PortOutput, RtpPacket};
use serde_json::{json, Map};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sockets of one media.
pub(super) struct Sockets {
    pub(super) rtp: Arc<UdpSocket>,
    pub(super) rtcp: Arc<UdpSocket>,
}

/// The address to put in our SDP: the local address that routes to `remote`, else the
/// first non-loopback IPv4 address, else 127.0.0.1.
pub(super) fn local_ip(remote: Option<IpAddr>) -> IpAddr {
    if let Some(r) = remote {
        if let Ok(s) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
            if s.connect((r, 9)).is_ok() {
                if let Ok(a) = s.local_addr() {
                    return a.ip();
                }
            }
        }
    }
    if let Ok(s) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        if s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).is_ok() {
            if let Ok(a) = s.local_addr() {
                return a.ip();
            }
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Binds an even RTP port and the RTCP port above it.
pub(super) fn bind_pair() -> Result<Sockets, KurentoError> {
    for _ in 0..64 {
        let Ok(rtp) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
            continue;
        };
        let Ok(a) = rtp.local_addr() else { continue };
        let port = a.port();
        let (rtp, port) = if port % 2 == 0 {
            (rtp, port)
        } else {
            let Some(even) = port.checked_add(1) else {
                continue;
            };
            match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, even)) {
                Ok(s) => (s, even),
                Err(_) => continue,
            }
        };
        let Some(rtcp_port) = port.checked_add(1) else {
            continue;
        };
        if let Ok(rtcp) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, rtcp_port)) {
            return Ok(Sockets {
                rtp: Arc::new(rtp),
                rtcp: Arc::new(rtcp),
            });
        }
    }
    Err(KurentoError::new(
        ErrorCode::NotEnoughResources,
        "No free UDP port pair for RTP",
    ))
}

/// Context for handling what one media's sockets receive.
#[derive(Clone)]
pub(super) struct Rx {
    pub(super) out: PortOutput,
    pub(super) shared: SharedRef,
    pub(super) section: Section,
    pub(super) id: String,
    pub(super) bus: Arc<dyn fluo_sfu::MediaBus>,
    pub(super) key: u64,
    pub(super) events: crate::EventSink,
}

impl Rx {
    /// An RTP packet (already decrypted) for the router.
    pub(super) fn rtp(&self, bytes: &[u8]) {
        let s = &self.section;
        if !s.recv {
            return;
        }
        let Ok(p) = RtpPacket::parse(bytes) else {
            return;
        };
        if p.payload_type() != s.pt {
            tracing::trace!(id = %self.id, pt = p.payload_type(), "RTP with a payload type that was not negotiated dropped");
            return;
        }
        {
            let mut sh = lock(&self.shared);
            let k = idx(s.kind);
            sh.remote_ssrc[k] = p.ssrc();
            let pkt = (p.ssrc(), p.sequence(), p.timestamp(), p.payload().len());
            sh.stats[k].received(Instant::now(), pkt, s.codec.clock_rate);
        }
        self.out.send(MediaPacket {
            kind: s.kind,
            codec: s.codec,
            seq: p.sequence(),
            timestamp: p.timestamp(),
            ssrc: p.ssrc(),
            marker: p.marker(),
            payload: p.payload().to_vec(),
        });
    }

    /// An RTCP packet (already decrypted): a PLI or FIR asks our sources for a keyframe; the
    /// peer's first report makes the media state CONNECTED, its goodbye DISCONNECTED.
    pub(super) fn rtcp(&self, bytes: &[u8]) {
        let wants_keyframe = RtcpCompound::new(bytes)
            .flatten()
            .any(|p| matches!(p, RtcpPacket::Pli { .. } | RtcpPacket::Fir(_)));
        if wants_keyframe && self.section.kind == MediaKind::Video {
            self.bus.request_keyframe(self.key);
        }
        let now = Instant::now();
        let changed = {
            let mut sh = lock(&self.shared);
            let k = idx(self.section.kind);
            let ssrc = sh.ssrc[k];
            let (report, bye) = sh.stats[k].peer_rtcp(now, ssrc, bytes);
            if report {
                sh.last_report = Some(now);
            }
            let up = (report && !bye).then_some(true).or(bye.then_some(false));
            up.filter(|up| std::mem::replace(&mut sh.media_connected, *up) != *up)
        };
        if let Some(up) = changed {
            self.media_state(up);
        }
    }

    fn media_state(&self, up: bool) {
        let (old, new) = if up {
            ("DISCONNECTED", "CONNECTED")
        } else {
            ("CONNECTED", "DISCONNECTED")
        };
        let mut f = Map::new();
        f.insert("oldState".into(), json!(old));
        f.insert("newState".into(), json!(new));
        (self.events)(&self.id, "MediaStateChanged", f);
    }

    /// Every wakeup of the RTCP thread: our report when it is due, and the media state back
    /// to DISCONNECTED when the peer's reports stopped.
    pub(super) fn tick(&self) {
        let now = Instant::now();
        let mut sh = lock(&self.shared);
        let k = idx(self.section.kind);
        let due = sh.stats[k]
            .reported_at
            .is_none_or(|t| now.saturating_duration_since(t) >= super::stats::REPORT_EVERY);
        if let (true, Some(to)) = (due, self.section.remote_rtcp) {
            let ssrc = sh.ssrc[k];
            if let Some(report) = sh.stats[k].report(now, ssrc, self.section.codec.clock_rate) {
                match (sh.enc[k].clone(), sh.rtcp_sockets[k].clone()) {
                    (Some(enc), _) => enc.push_rtcp(report),
                    (None, Some(sock)) if !sh.srtp => {
                        let _ = sock.send_to(&report, to);
                    }
                    _ => {}
                }
            }
        }
        let quiet = sh
            .last_report
            .is_some_and(|t| now.saturating_duration_since(t) > super::stats::REPORT_TIMEOUT);
        if sh.media_connected && quiet {
            sh.media_connected = false;
            drop(sh);
            self.media_state(false);
        }
    }
}

/// Reads a socket until `stop`; hands datagrams from `peer` (when known) to `f`, and runs
/// `tick` at every wakeup (a datagram, or the socket's read timeout).
pub(super) fn receive(
    sock: &UdpSocket,
    stop: &AtomicBool,
    peer: Option<IpAddr>,
    f: impl Fn(&[u8]),
    tick: impl Fn(),
) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        tick();
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if peer.is_none_or(|p| p == from.ip()) => f(&buf[..n]),
            Ok(_) => {}
            // Timeouts wake us to look at `stop`; other errors (ICMP port unreachable
            // reported on the socket) must not spin.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
