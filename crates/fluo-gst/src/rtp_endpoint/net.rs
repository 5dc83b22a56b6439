//! The sockets of one RtpEndpoint and the task that serves them on tokio.

use super::port::{lock, SharedRef};
use super::sdp::Section;
use fluo_api::{ErrorCode, KurentoError};
use fluo_egress::{SdesReceiver, SrtpError};
use fluo_sfu::rtcp::{RtcpCompound, RtcpPacket};
use fluo_sfu::{MediaKind, MediaPacket, PortOutput, RtpPacket};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Sockets of one media, bound and not yet served.
pub(super) struct Sockets {
    pub(super) rtp: UdpSocket,
    pub(super) rtcp: UdpSocket,
}

/// How often the serving task looks whether an RTCP report is due and whether the peer's
/// reports stopped.
const RTCP_TIMER: Duration = Duration::from_millis(250);

/// The runtime RtpEndpoints' sockets are served on: one thread, started with the first
/// RtpEndpoint, for every RtpEndpoint of the process (as the WebRTC sockets have their media
/// thread). Not the server's runtime, where the engine may block on a GStreamer pipeline build
/// or a worker's reply: packets would wait in the socket meanwhile.
pub(super) fn runtime() -> Option<tokio::runtime::Handle> {
    static SHARED: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    let rt = SHARED.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fluo-rtp-net")
            .enable_all()
            .build()
            .inspect_err(|e| tracing::error!("RtpEndpoint runtime: {e}"))
            .ok()
    });
    rt.as_ref().map(|rt| rt.handle().clone())
}

/// Bytes of kernel buffer asked for each RtpEndpoint socket, each way.
const SOCKET_BUFFER: usize = 1 << 20;

/// Makes a bound socket a tokio one (registered with `rt`'s reactor).
pub(super) fn to_tokio(
    rt: &tokio::runtime::Handle,
    s: UdpSocket,
) -> std::io::Result<tokio::net::UdpSocket> {
    s.set_nonblocking(true)?;
    // Sends never wait (a datagram the socket cannot take is dropped) and the task may be
    // scheduled late under load: room for a few keyframes' bursts each way rather than the
    // kernel's default of about 208 KiB (capped by net.core.rmem_max / wmem_max).
    let sr = socket2::SockRef::from(&s);
    let _ = sr.set_send_buffer_size(SOCKET_BUFFER);
    let _ = sr.set_recv_buffer_size(SOCKET_BUFFER);
    let _g = rt.enter();
    tokio::net::UdpSocket::from_std(s)
}

/// Where RtpEndpoints bind and what their SDP announces: KMS's BaseRtpEndpoint network
/// settings, server-wide (the RtpEndpoint's kmd has no per-endpoint ones).
#[derive(Debug, Clone)]
pub struct RtpNet {
    /// The addresses sockets are bound on: those of the configured interfaces
    /// (`--network-interfaces` / `KMS_NETWORK_INTERFACES`), IPv4 and IPv6.
    pub addresses: Vec<IpAddr>,
    /// Lowest UDP port (`KMS_MIN_PORT`).
    pub min_port: u16,
    /// Highest UDP port (`KMS_MAX_PORT`).
    pub max_port: u16,
    /// Announced instead of a local IPv4 address (`KMS_EXTERNAL_IPV4`).
    pub external_ipv4: Option<Ipv4Addr>,
    /// Announced instead of a local IPv6 address (`KMS_EXTERNAL_IPV6`).
    pub external_ipv6: Option<Ipv6Addr>,
}

impl RtpNet {
    /// The local address of the family asked (`v6`) for media with `remote`: the configured
    /// address the system would send from to reach it, else the first of that family.
    pub(super) fn local_for(&self, v6: bool, remote: Option<IpAddr>) -> Option<IpAddr> {
        let ours: Vec<IpAddr> = self
            .addresses
            .iter()
            .copied()
            .filter(|a| a.is_ipv6() == v6)
            .collect();
        let routed = remote.filter(|r| r.is_ipv6() == v6).and_then(|r| {
            let any: IpAddr = if v6 {
                Ipv6Addr::UNSPECIFIED.into()
            } else {
                Ipv4Addr::UNSPECIFIED.into()
            };
            let s = UdpSocket::bind((any, 0)).ok()?;
            s.connect((r, 9)).ok()?;
            Some(s.local_addr().ok()?.ip())
        });
        routed
            .filter(|a| ours.contains(a))
            .or_else(|| ours.first().copied())
    }

    /// What the SDP says for local address `ip`: the external address of its family, if one
    /// is configured.
    pub(super) fn announced(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => self.external_ipv4.map_or(ip, IpAddr::V4),
            IpAddr::V6(_) => self.external_ipv6.map_or(ip, IpAddr::V6),
        }
    }

    /// Binds an even RTP port and the RTCP port above it on `ip`, both within the
    /// configured range.
    pub(super) fn bind_pair(&self, ip: IpAddr) -> Result<Sockets, KurentoError> {
        let (lo, hi) = (
            self.min_port.min(self.max_port),
            self.max_port.max(self.min_port),
        );
        // Out of descriptors is not out of ports: remember it to say so.
        let no_fds = std::cell::Cell::new(false);
        let bind = |a: SocketAddr| {
            UdpSocket::bind(a)
                .inspect_err(|e| {
                    if matches!(e.raw_os_error(), Some(23 | 24)) {
                        no_fds.set(true);
                    }
                })
                .ok()
        };
        let pair = |p: u16| -> Option<Sockets> {
            let rtp = bind(SocketAddr::new(ip, p))?;
            let rtcp = bind(SocketAddr::new(ip, p.checked_add(1)?))?;
            Some(Sockets { rtp, rtcp })
        };
        let found = if lo <= 1024 && hi == 65535 {
            // The whole range: let the system pick, then pair it up.
            (0..64).find_map(|_| {
                let probe = bind(SocketAddr::new(ip, 0))?;
                let p = probe.local_addr().ok()?.port();
                drop(probe);
                pair(p & !1).or_else(|| pair((p | 1).checked_add(1)?))
            })
        } else {
            let first = lo.saturating_add(lo % 2);
            let pairs = if first < hi {
                u32::from(hi - first).div_ceil(2)
            } else {
                0
            };
            // Start somewhere new each time: endpoints made together do not all try the
            // same ports first.
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let start = NEXT.fetch_add(1, Ordering::Relaxed) ^ std::process::id();
            (0..pairs).find_map(|i| {
                let k = (start.wrapping_add(i)) % pairs;
                pair(first + 2 * k as u16)
            })
        };
        found.ok_or_else(|| {
            let why = if no_fds.get() {
                "the server has as many files and sockets open as its limit allows".to_string()
            } else {
                format!("no free UDP port pair for RTP on {ip} in {lo}-{hi}")
            };
            KurentoError::new(
                ErrorCode::NotEnoughResources,
                format!("Cannot bind RTP ports: {why}"),
            )
        })
    }
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
    pub(super) events: fluo_core::EventSink,
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
            let k = s.kind;
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
            let k = self.section.kind;
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
        let ev = fluo_core::MediaEvent::MediaState { connected: up };
        (self.events)(&self.id, ev);
    }

    /// Every tick of the serving task's timer: our report when it is due, and the media
    /// state back to DISCONNECTED when the peer's reports stopped.
    pub(super) fn tick(&self) {
        let now = Instant::now();
        let mut sh = lock(&self.shared);
        let k = self.section.kind;
        let due = sh.stats[k]
            .reported_at
            .is_none_or(|t| now.saturating_duration_since(t) >= super::stats::REPORT_EVERY);
        if let (true, Some(to)) = (due, self.section.remote_rtcp) {
            let ssrc = sh.ssrc[k];
            if let Some(report) = sh.stats[k].report(now, ssrc, self.section.codec.clock_rate) {
                sh.send(k, true, report, to);
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

/// The peer's SRTP (SDES): its checker, and whether `OnKeySoftLimit` was raised.
pub(super) struct Unprotect {
    pub(super) rx: SdesReceiver,
    soft_limit_raised: bool,
}

impl Unprotect {
    pub(super) fn new(rx: SdesReceiver) -> Unprotect {
        Unprotect {
            rx,
            soft_limit_raised: false,
        }
    }
}

impl Rx {
    /// A datagram from the peer, RTP (`rtcp` false) or RTCP, checked and decrypted first
    /// with SDES: what fails authentication or replays is dropped and counted.
    fn datagram(
        &self,
        dec: &mut Option<Unprotect>,
        rtcp: bool,
        bytes: &[u8],
        scratch: &mut Vec<u8>,
    ) {
        let Some(d) = dec.as_mut() else {
            if rtcp {
                self.rtcp(bytes)
            } else {
                self.rtp(bytes)
            }
            return;
        };
        let checked = if rtcp {
            d.rx.unprotect_rtcp(bytes, scratch)
        } else {
            scratch.clear();
            scratch.extend_from_slice(bytes);
            d.rx.unprotect_rtp(scratch)
        };
        if let Err(e) = checked {
            let mut sh = lock(&self.shared);
            let st = &mut sh.stats[self.section.kind];
            if e == SrtpError::Replayed {
                st.srtp_replays += 1;
            } else {
                st.srtp_auth_failures += 1;
            }
            tracing::trace!(id = %self.id, ?e, rtcp, "SRTP: a packet from the peer was dropped");
            return;
        }
        if rtcp {
            self.rtcp(scratch)
        } else {
            self.rtp(scratch)
        }
        if d.rx.near_key_limit() && !d.soft_limit_raised {
            d.soft_limit_raised = true;
            let kind = self.section.kind;
            (self.events)(&self.id, fluo_core::MediaEvent::KeySoftLimit { kind });
        }
    }
}

/// Serves one media's RTP and RTCP sockets until `stop` turns true (or its sender is
/// dropped): datagrams from `peer` (when known; any port, NATs change it) go to `rx`
/// (through `dec` with SDES), and a timer sends our RTCP reports. `hold` (the endpoint's
/// stopping token) is dropped when the task ends.
pub(super) async fn serve(
    rx: Rx,
    (rtp, rtcp): (Arc<tokio::net::UdpSocket>, Arc<tokio::net::UdpSocket>),
    peer: Option<IpAddr>,
    mut dec: Option<Unprotect>,
    mut stop: watch::Receiver<bool>,
    hold: fluo_core::Stopping,
) {
    let (mut a, mut b) = ([0u8; 2048], [0u8; 2048]);
    let mut scratch = Vec::with_capacity(2048);
    let mut timer = tokio::time::interval(RTCP_TIMER);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let from_peer = |from: SocketAddr| peer.is_none_or(|p| p == from.ip());
    while !*stop.borrow() {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            got = rtp.recv_from(&mut a) => match got {
                Ok((n, from)) if from_peer(from) => rx.datagram(&mut dec, false, &a[..n], &mut scratch),
                Ok(_) => {}
                // An error the socket reported (an ICMP message): the next receive waits
                // for a datagram again.
                Err(e) => tracing::trace!(id = %rx.id, "RTP socket: {e}"),
            },
            got = rtcp.recv_from(&mut b) => match got {
                Ok((n, from)) if from_peer(from) => rx.datagram(&mut dec, true, &b[..n], &mut scratch),
                Ok(_) => {}
                Err(e) => tracing::trace!(id = %rx.id, "RTCP socket: {e}"),
            },
            _ = timer.tick() => rx.tick(),
        }
    }
    drop(hold);
}

#[cfg(test)]
mod tests {
    use super::RtpNet;
    use std::net::{IpAddr, Ipv4Addr};

    /// Run out of descriptors (in a child of this test run under `prlimit --nofile`): the
    /// error says so instead of blaming the port range.
    #[test]
    fn out_of_descriptors_is_not_called_out_of_ports() {
        let net = RtpNet {
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            min_port: 1024,
            max_port: 65535,
            external_ipv4: None,
            external_ipv6: None,
        };
        if std::env::var_os("FLUO_TEST_FEW_FDS").is_some() {
            let mut held = vec![];
            let e = loop {
                match net.bind_pair(IpAddr::V4(Ipv4Addr::LOCALHOST)) {
                    Ok(s) => held.push(s),
                    Err(e) => break e,
                }
                assert!(held.len() < 100, "a limit of 64 descriptors never ran out");
            };
            let text = e.to_string();
            assert!(
                text.contains("as many files and sockets open as its limit allows"),
                "{text}"
            );
            assert!(!text.contains("1024-65535"), "{text}");
            return;
        }
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new("prlimit")
            .arg("--nofile=64")
            .arg(exe)
            .args([
                "--exact",
                "rtp_endpoint::net::tests::out_of_descriptors_is_not_called_out_of_ports",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FLUO_TEST_FEW_FDS", "1")
            .output()
            .expect("prlimit (util-linux) runs");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{all}");
        assert!(all.contains("1 passed"), "{all}");
    }
}
