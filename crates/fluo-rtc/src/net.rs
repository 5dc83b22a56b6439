//! Local addresses and the media sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

/// Network settings of the WebRTC endpoints (KMS: WebRtcEndpoint.conf.ini and
/// BaseRtpEndpoint.conf.ini; env KMS_NETWORK_INTERFACES, KMS_MIN_PORT, KMS_MAX_PORT).
#[derive(Debug, Clone)]
pub struct NetSettings {
    /// Interface names to gather host candidates on (`None`: every non-loopback interface,
    /// or loopback when there is nothing else).
    pub network_interfaces: Option<Vec<String>>,
    /// Lowest UDP port.
    pub min_port: u16,
    /// Highest UDP port.
    pub max_port: u16,
    /// KMS's externalIPv4 (KMS_EXTERNAL_IPV4): every local IPv4 candidate is announced with
    /// this address (same port), for a server behind a 1:1 NAT with a known public address.
    pub external_ipv4: Option<Ipv4Addr>,
    /// KMS's externalIPv6 (KMS_EXTERNAL_IPV6), the same for IPv6 candidates.
    pub external_ipv6: Option<Ipv6Addr>,
    /// STUN server (KMS_STUN_IP / KMS_STUN_PORT) asked at start for each media socket's
    /// public address, announced as an extra candidate.
    pub stun_server: Option<SocketAddr>,
    /// KMS's iceTcp (KMS_ICE_TCP, default on): also offer passive ICE-TCP host candidates
    /// (RFC 6544, RFC 4571 framing), for browsers whose UDP is blocked.
    pub ice_tcp: bool,
    /// KMS's turnURL (KMS_TURN_URL): a TURN server to allocate relayed addresses on at start,
    /// announced as extra candidates.
    pub turn: Option<crate::turn::TurnUrl>,
    /// Fluo's `--bwe`: whether receive-only viewers keep TWCC and when each one's bandwidth
    /// is estimated to choose its simulcast or SVC layer (docs/simulcast.md).
    pub bwe: BweMode,
}

/// When a receive-only viewer's bandwidth is estimated from its transport-wide feedback
/// (`--bwe`, docs/simulcast.md "Bandwidth estimate").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BweMode {
    /// Never: its answer declines TWCC, it sends REMB.
    Off,
    /// Always: its answer keeps TWCC, every packet it is sent carries a transport-wide
    /// sequence number and its estimate runs for as long as it is connected.
    On,
    /// Only while it gets a layered source's video (simulcast, or SVC with two spatial
    /// layers or more), the only case where an estimate decides anything: its answer keeps
    /// TWCC, but its packets carry transport-wide sequence numbers (and it returns TWCC
    /// feedback) only then; otherwise it returns REMB, as with `Off`.
    #[default]
    Auto,
}

impl BweMode {
    /// Whether receive-only answers keep TWCC. `Auto` keeps it only where the egress fast
    /// path sends (`FLUO_EGRESS`, on by default): str0m, which sends without it, writes the
    /// number on every packet where TWCC was agreed, so `Auto` is `Off` there.
    pub fn keeps_twcc(self) -> bool {
        match self {
            BweMode::Off => false,
            BweMode::On => true,
            BweMode::Auto => crate::core::egress_enabled(),
        }
    }
}

impl Default for NetSettings {
    fn default() -> Self {
        Self {
            network_interfaces: None,
            min_port: 1024,
            max_port: 65535,
            external_ipv4: None,
            external_ipv6: None,
            stun_server: None,
            ice_tcp: true,
            turn: None,
            bwe: BweMode::Auto,
        }
    }
}

impl NetSettings {
    /// The addresses media binds on: the IPv4 and IPv6 (not link-local) addresses of the
    /// configured interfaces (every non-loopback one by default, else loopback).
    pub fn local_addresses(&self) -> std::io::Result<Vec<IpAddr>> {
        local_ips(self)
    }
}

/// Whether `ip` can be a host candidate: IPv4, or IPv6 that is not link-local (those need a
/// scope id that SDP candidates cannot carry portably).
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80 && !v6.is_multicast(),
    }
}

/// The IPv4 and IPv6 addresses to offer as host candidates.
pub(crate) fn local_ips(settings: &NetSettings) -> std::io::Result<Vec<IpAddr>> {
    let ifaces = if_addrs::get_if_addrs()?;
    let mut ips: Vec<IpAddr> = ifaces
        .iter()
        .filter(|i| usable(i.ip()))
        .filter(|i| match &settings.network_interfaces {
            Some(names) => names.iter().any(|n| n == &i.name),
            None => !i.is_loopback(),
        })
        .map(|i| i.ip())
        .collect();
    if !ips.iter().any(IpAddr::is_ipv4) && settings.network_interfaces.is_none() {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "no address on the configured networkInterfaces {:?}",
                settings.network_interfaces
            ),
        ));
    }
    Ok(ips)
}

/// The interface name of each local address (an address no interface has any more is
/// left out).
pub(crate) fn interfaces_of(locals: &[SocketAddr]) -> Vec<(SocketAddr, String)> {
    let ifaces = if_addrs::get_if_addrs().unwrap_or_default();
    locals
        .iter()
        .filter_map(|a| {
            let i = ifaces.iter().find(|i| i.ip() == a.ip())?;
            Some((*a, i.name.clone()))
        })
        .collect()
}

/// One non-blocking UDP socket per local address, on a port within the configured range. An
/// IPv6 address that cannot be bound (IPv6 disabled, a tentative address) is skipped with a
/// warning; an IPv4 one is an error.
pub(crate) fn bind(settings: &NetSettings) -> std::io::Result<Vec<UdpSocket>> {
    let mut out = vec![];
    for ip in local_ips(settings)? {
        let sock = match bind_in_range(ip, settings.min_port, settings.max_port) {
            Ok(s) => s,
            Err(e) if ip.is_ipv6() => {
                tracing::warn!(%ip, "no IPv6 candidate on this address: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        sock.set_nonblocking(true)?;
        size_buffers(&sock);
        out.push(sock);
    }
    if out.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            "no media socket could be bound",
        ));
    }
    Ok(out)
}

/// Bytes of kernel buffer asked for each media socket, each way.
const SOCKET_BUFFER: usize = 4 << 20;

/// Every endpoint shares the media socket of its address: its receive buffer takes the
/// peers' feedback (RTCP, ICE) and the publishers' media while the media thread is busy
/// forwarding a frame to hundreds of viewers. The kernel's default (about 208 KiB) overflows
/// at a few hundred viewers; ask for 4 MiB, which the kernel caps at `net.core.rmem_max` /
/// `wmem_max`.
fn size_buffers(sock: &UdpSocket) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let s = socket2::SockRef::from(sock);
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    // Linux reports twice the size set (the other half is its bookkeeping).
    let rcv = s.recv_buffer_size().unwrap_or(0) / 2;
    let snd = s.send_buffer_size().unwrap_or(0) / 2;
    if rcv < SOCKET_BUFFER || snd < SOCKET_BUFFER {
        WARNED.call_once(|| {
            tracing::warn!(
                "media socket buffers are {} KiB in, {} KiB out (net.core.rmem_max and \
                 wmem_max cap them); with hundreds of viewers raise them: sysctl -w \
                 net.core.rmem_max={SOCKET_BUFFER} net.core.wmem_max={SOCKET_BUFFER}",
                rcv / 1024,
                snd / 1024
            );
        });
    }
}

/// One non-blocking TCP listener per address of `udp` (the media sockets), on a port within
/// the configured range, for passive ICE-TCP candidates. An address that cannot listen is
/// skipped with a warning: ICE-TCP is an extra path, UDP stays.
pub(crate) fn bind_tcp(settings: &NetSettings, udp: &[UdpSocket]) -> Vec<TcpListener> {
    if !settings.ice_tcp {
        return vec![];
    }
    let mut out = vec![];
    for ip in udp
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .map(|a| a.ip())
    {
        let bound = bind_port_in_range(ip, settings.min_port, settings.max_port, |a| {
            TcpListener::bind(a)
        })
        .and_then(|l| l.set_nonblocking(true).map(|()| l));
        match bound {
            Ok(l) => out.push(l),
            Err(e) => tracing::warn!(%ip, "no ICE-TCP candidate on this address: {e}"),
        }
    }
    out
}

/// Sends one datagram with its IPv4 TOS / IPv6 traffic class set to `tos` (an `IP_TOS` or
/// `IPV6_TCLASS` control message on `sendmsg`): every endpoint shares the socket, so the
/// socket's own TOS cannot carry one endpoint's DSCP. Errors drop the datagram, as a full
/// send buffer does.
pub(crate) fn send_marked(
    sock: &socket2::SockRef<'_>,
    contents: &[u8],
    to: &socket2::SockAddr,
    tos: u8,
) {
    let (level, kind) = if to.is_ipv6() {
        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
    } else {
        (libc::IPPROTO_IP, libc::IP_TOS)
    };
    let control = tos_control(level, kind, i32::from(tos));
    let bufs = [std::io::IoSlice::new(contents)];
    let msg = socket2::MsgHdr::new()
        .with_addr(to)
        .with_buffers(&bufs)
        .with_control(&control);
    if let Err(e) = sock.sendmsg(&msg, 0) {
        tracing::trace!("marked datagram not sent: {e}");
    }
}

/// One control message holding an `int` (Linux's `struct cmsghdr`: a `size_t` length, two
/// `int`s, then the data, each padded to the alignment of `size_t`), as `CMSG_SPACE` sizes
/// it.
fn tos_control(level: i32, kind: i32, value: i32) -> Vec<u8> {
    const ALIGN: usize = std::mem::size_of::<usize>();
    let header = std::mem::size_of::<libc::cmsghdr>().div_ceil(ALIGN) * ALIGN;
    let data = std::mem::size_of::<i32>();
    let mut buf = vec![0u8; header + data.div_ceil(ALIGN) * ALIGN];
    buf[..ALIGN].copy_from_slice(&(header + data).to_ne_bytes());
    buf[ALIGN..ALIGN + 4].copy_from_slice(&level.to_ne_bytes());
    buf[ALIGN + 4..ALIGN + 8].copy_from_slice(&kind.to_ne_bytes());
    buf[header..header + data].copy_from_slice(&value.to_ne_bytes());
    buf
}

/// Where an endpoint gets sockets of its own: an endpoint that runs full ICE against an
/// ICE-lite peer (another server: Fluo, mediasoup, Janus in lite mode) must not share its
/// transport address with other sessions to that same peer address, or their DTLS and media
/// could not be told apart (see `element::negotiate`).
#[derive(Debug, Clone)]
pub(crate) enum OwnPorts {
    /// Bound within the configured port range.
    Bind { min: u16, max: u16 },
    /// In memory (tests): addresses only, ports counted up from the one given.
    Virtual(std::sync::Arc<std::sync::atomic::AtomicU16>),
}

impl OwnPorts {
    /// One socket for each IP address of `locals` (the shared media sockets): the socket (none
    /// in memory) and its address. An address that cannot be bound is skipped with a warning.
    pub fn bind(&self, locals: &[SocketAddr]) -> Vec<(Option<UdpSocket>, SocketAddr)> {
        let mut ips: Vec<IpAddr> = locals.iter().map(SocketAddr::ip).collect();
        ips.sort();
        ips.dedup();
        let mut out = vec![];
        for ip in ips {
            match self {
                OwnPorts::Bind { min, max } => {
                    let bound = bind_in_range(ip, *min, *max)
                        .and_then(|s| s.set_nonblocking(true).map(|()| s))
                        .and_then(|s| s.local_addr().map(|a| (s, a)));
                    match bound {
                        Ok((s, a)) => out.push((Some(s), a)),
                        Err(e) => tracing::warn!(%ip, "no socket of its own for an endpoint: {e}"),
                    }
                }
                OwnPorts::Virtual(next) => {
                    let port = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    out.push((None, SocketAddr::new(ip, port)));
                }
            }
        }
        out
    }
}

fn bind_in_range(ip: IpAddr, min: u16, max: u16) -> std::io::Result<UdpSocket> {
    bind_port_in_range(ip, min, max, UdpSocket::bind)
}

fn bind_port_in_range<S>(
    ip: IpAddr,
    min: u16,
    max: u16,
    bind: impl Fn(SocketAddr) -> std::io::Result<S>,
) -> std::io::Result<S> {
    if min <= 1024 && max == 65535 {
        return bind(SocketAddr::new(ip, 0));
    }
    let (min, max) = (min.min(max), max.max(min));
    let span = u32::from(max - min) + 1;
    let start = std::process::id() % span;
    for i in 0..span {
        let port = min + ((start + i) % span) as u16;
        if let Ok(s) = bind(SocketAddr::new(ip, port)) {
            return Ok(s);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port on {ip} in {min}-{max}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn tos_control_message_has_linux_cmsg_layout() {
        let c = tos_control(libc::IPPROTO_IP, libc::IP_TOS, 0xb8);
        // CMSG_SPACE(sizeof(int)) = 24, CMSG_LEN(sizeof(int)) = 20 on 64-bit Linux.
        assert_eq!(c.len(), 24);
        assert_eq!(&c[..8], &20usize.to_ne_bytes());
        assert_eq!(&c[8..12], &libc::IPPROTO_IP.to_ne_bytes());
        assert_eq!(&c[12..16], &libc::IP_TOS.to_ne_bytes());
        assert_eq!(&c[16..20], &0xb8i32.to_ne_bytes());
    }

    #[test]
    fn link_local_and_multicast_ipv6_are_not_candidates() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(usable(ip("127.0.0.1")));
        assert!(usable(ip("::1")));
        assert!(usable(ip("fd00::2")));
        assert!(usable(ip("2001:db8::1")));
        assert!(!usable(ip("fe80::fc:ff:fe00:1")));
        assert!(!usable(ip("ff02::1")));
    }
}
