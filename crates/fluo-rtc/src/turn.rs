//! TURN relay candidates (KMS's turnURL): one UDP allocation per media socket of the TURN
//! server's address family, through the sans-IO client of `turn-client-proto`.
//!
//! The endpoints run ICE-lite, which announces host candidates only, so the relayed address
//! is announced as a host candidate, as the STUN-learnt one is. What the TURN server relays
//! from a peer reaches the media core as a datagram received on the relayed address; what
//! the core sends from the relayed address goes to the TURN server (a Send indication, then
//! a ChannelData once the channel is bound). A peer's packets pass the TURN server only with
//! a permission for its IP: the endpoints ask for one for every remote candidate they learn.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};
use turn_client_proto::api::{TurnClientApi, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::tcp::TurnClientTcp;
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

turn_client_proto::impl_client!(Client, (Udp, TurnClientUdp), (Tcp, TurnClientTcp));

/// A parsed turnURL: `user:password@host:port[?transport=udp|tcp]`.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnUrl {
    /// Long-term credential user name.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The TURN server.
    pub server: SocketAddr,
    /// The transport to the TURN server (`?transport=tcp`); the relayed side is UDP.
    pub tcp: bool,
}

impl std::fmt::Debug for TurnUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials in logs: hidden as everywhere else (fluo_api::secrets).
        let tcp = if self.tcp { "?transport=tcp" } else { "" };
        // As a URI has them (a password with a space in it is still one URI).
        let enc = |s: &str| s.replace(char::is_whitespace, "%20");
        let (user, password) = (enc(&self.user), enc(&self.password));
        let url = format!("{user}:{password}@{}{tcp}", self.server);
        f.write_str(&fluo_api::secrets::uri_without_secrets(&url))
    }
}

impl TurnUrl {
    /// Parses KMS's turnURL format; the host may be a name (resolved now, which may block on
    /// DNS: server configuration only).
    pub fn parse(s: &str) -> Result<TurnUrl, String> {
        Self::parse_with(s, true)
    }

    /// [`Self::parse`] for an IP address only (never a DNS query), as KMS wants it in the
    /// per-endpoint property.
    pub fn parse_ip(s: &str) -> Result<TurnUrl, String> {
        Self::parse_with(s, false)
    }

    fn parse_with(s: &str, resolve: bool) -> Result<TurnUrl, String> {
        let s = s.trim();
        let s = s
            .strip_prefix("turn:")
            .or_else(|| s.strip_prefix("turn://"))
            .unwrap_or(s);
        let (rest, query) = match s.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (s, None),
        };
        let (creds, hostport) = rest
            .rsplit_once('@')
            .ok_or("turnURL must be user:password@host:port")?;
        let (user, password) = creds
            .split_once(':')
            .ok_or("turnURL must be user:password@host:port")?;
        if user.is_empty() {
            return Err("turnURL has an empty user name".into());
        }
        let tcp = match query {
            None => false,
            Some(q) => match q.strip_prefix("transport=") {
                Some(t) if t.eq_ignore_ascii_case("udp") => false,
                Some(t) if t.eq_ignore_ascii_case("tcp") => true,
                _ => return Err(format!("turnURL: unknown query '{q}' (transport=udp|tcp)")),
            },
        };
        if !hostport.contains(':') || hostport.ends_with(':') {
            return Err("turnURL needs a port: user:password@host:port".into());
        }
        if !resolve && hostport.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "turnURL: '{hostport}' is not an IP address and port"
            ));
        }
        let server = hostport
            .to_socket_addrs()
            .map_err(|e| format!("turnURL: cannot resolve {hostport}: {e}"))?
            .next()
            .ok_or_else(|| format!("turnURL: {hostport} has no address"))?;
        Ok(TurnUrl {
            user: user.to_string(),
            password: password.to_string(),
            server,
            tcp,
        })
    }
}

/// How an allocation talks to its TURN server.
#[derive(Debug)]
pub(crate) enum Io {
    /// Through the media socket with this index.
    Udp(usize),
    /// Over its own TCP connection (taken by the media thread when it starts).
    Tcp(Option<std::net::TcpStream>),
}

/// An allocation on the TURN server, made for the media socket `socket`.
#[derive(Debug)]
pub(crate) struct Relay {
    /// Index of the media socket it belongs to (its address family).
    pub socket: usize,
    /// The TURN server.
    pub server: SocketAddr,
    /// The relayed address (announced as a candidate).
    pub relayed: SocketAddr,
    /// The transport to the TURN server.
    pub io: Io,
    /// The client's address towards the TURN server.
    local: SocketAddr,
    client: Client,
    /// Peers a channel was asked for.
    channels: HashSet<SocketAddr>,
    /// The allocation is gone (closed by the server, or its TCP connection ended).
    pub dead: bool,
    /// The endpoint turnUrl it was made for (`None`: the server-wide one).
    pub owner: Option<String>,
}

/// Converts between the std clock and the client's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }
    fn to(self, t: Instant) -> turn_client_proto::stun::Instant {
        let n = t.saturating_duration_since(self.0).as_nanos();
        turn_client_proto::stun::Instant::from_nanos(i64::try_from(n).unwrap_or(i64::MAX))
    }
    fn from(self, t: turn_client_proto::stun::Instant) -> Instant {
        self.0 + Duration::from_nanos(u64::try_from(t.as_nanos()).unwrap_or(0))
    }
}

/// One allocation being made: the client, its I/O, and bytes read but not yet given.
struct Pending {
    socket: usize,
    client: Client,
    io: Io,
    local: SocketAddr,
}

impl Pending {
    fn send(&mut self, sockets: &[UdpSocket], to: SocketAddr, data: &[u8]) {
        match &mut self.io {
            Io::Udp(i) => {
                let _ = sockets[*i].send_to(data, to);
            }
            Io::Tcp(Some(s)) => {
                use std::io::Write;
                let _ = s.set_nonblocking(false);
                let _ = s.write_all(data);
                let _ = s.set_nonblocking(true);
            }
            Io::Tcp(None) => {}
        }
    }

    /// What arrived from the TURN server.
    fn read(&mut self, sockets: &[UdpSocket], server: SocketAddr, buf: &mut [u8]) -> Vec<Vec<u8>> {
        let mut out = vec![];
        match &mut self.io {
            Io::Udp(i) => {
                while let Ok((n, from)) = sockets[*i].recv_from(buf) {
                    if from == server {
                        out.push(buf[..n].to_vec());
                    }
                }
            }
            Io::Tcp(Some(s)) => {
                use std::io::Read;
                while let Ok(n) = s.read(buf) {
                    if n == 0 {
                        break;
                    }
                    out.push(buf[..n].to_vec());
                }
            }
            Io::Tcp(None) => {}
        }
        out
    }
}

impl Pending {
    /// One round of the allocation: timers, what the client sends, what the server sent; the
    /// relayed address once allocated, or why it failed.
    fn step(
        &mut self,
        sockets: &[UdpSocket],
        url: &TurnUrl,
        clock: Clock,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<Result<SocketAddr, String>> {
        let transport = if url.tcp {
            TransportType::Tcp
        } else {
            TransportType::Udp
        };
        let _ = self.client.poll(clock.to(now));
        while let Some(t) = self.client.poll_transmit(clock.to(now)) {
            let data = t.data.as_ref().to_vec();
            self.send(sockets, t.to, &data);
        }
        for data in self.read(sockets, url.server, buf) {
            let t = Transmit {
                data: data.as_slice(),
                transport,
                from: url.server,
                to: self.local,
            };
            let _ = self.client.recv(t, clock.to(now));
        }
        let mut outcome = None;
        while let Some(ev) = self.client.poll_event() {
            match ev {
                TurnEvent::AllocationCreated(TransportType::Udp, addr) => outcome = Some(Ok(addr)),
                TurnEvent::AllocationCreateFailed(f) => {
                    outcome = Some(Err(format!("allocation failed ({f:?})")))
                }
                _ => {}
            }
        }
        outcome
    }

    /// The relay this allocation made on `server`.
    fn into_relay(self, server: SocketAddr, relayed: SocketAddr) -> Relay {
        Relay {
            socket: self.socket,
            server,
            relayed,
            io: self.io,
            local: self.local,
            client: self.client,
            channels: HashSet::new(),
            dead: false,
            owner: None,
        }
    }
}

/// The allocations to make on `url`'s server: one per socket of its address family, over the
/// socket itself (UDP) or a TCP connection of its own made before `deadline`.
fn start_allocations(sockets: &[UdpSocket], url: &TurnUrl, deadline: Instant) -> Vec<Pending> {
    let mut pending: Vec<Pending> = vec![];
    for (i, s) in sockets.iter().enumerate() {
        let Ok(local) = s.local_addr() else { continue };
        if local.is_ipv4() != url.server.is_ipv4() {
            continue;
        }
        let config = TurnConfig::new(TurnCredentials::new(&url.user, &url.password));
        if !url.tcp {
            pending.push(Pending {
                socket: i,
                client: Client::Udp(TurnClientUdp::allocate(local, url.server, config)),
                io: Io::Udp(i),
                local,
            });
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = match std::net::TcpStream::connect_timeout(&url.server, left) {
            Ok(st) => st,
            Err(e) => {
                tracing::warn!(turn = ?url, "TURN server unreachable over TCP: {e}: no relay candidate");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_nonblocking(true);
        let Ok(tcp_local) = stream.local_addr() else {
            continue;
        };
        pending.push(Pending {
            socket: i,
            client: Client::Tcp(TurnClientTcp::allocate(tcp_local, url.server, config)),
            io: Io::Tcp(Some(stream)),
            local: tcp_local,
        });
    }
    pending
}

/// Allocates a relay on `url`'s server for each socket of its address family (from the
/// socket itself over UDP, or over a TCP connection of its own), waiting at most `wait` in
/// all; sockets whose allocation fails (unreachable server, wrong credentials) get none,
/// with a warning.
pub(crate) fn allocate(
    sockets: &[UdpSocket],
    url: &TurnUrl,
    wait: Duration,
    clock: Clock,
) -> Vec<Relay> {
    let deadline = Instant::now() + wait;
    let mut pending = start_allocations(sockets, url, deadline);
    let mut done = vec![];
    let mut buf = [0u8; 4096];
    while !pending.is_empty() && Instant::now() < deadline {
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            match pending[i].step(sockets, url, clock, now, &mut buf) {
                Some(Ok(relayed)) => {
                    let p = pending.swap_remove(i);
                    tracing::info!(turn = ?url, %relayed, "TURN relay allocated");
                    done.push(p.into_relay(url.server, relayed));
                }
                Some(Err(e)) => {
                    pending.swap_remove(i);
                    tracing::warn!(turn = ?url, "TURN: {e} (wrong credentials?): no relay candidate");
                }
                None => i += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !pending.is_empty() {
        tracing::warn!(turn = ?url, "no TURN allocation within {wait:?} (server unreachable, or credentials refused): no relay candidate");
    }
    done
}

impl Relay {
    /// A datagram from the TURN server: a peer's data (`Some((peer, data))`) or the
    /// client's own business.
    pub fn receive(
        &mut self,
        clock: Clock,
        now: Instant,
        data: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let t = Transmit {
            data,
            transport: self.client.transport(),
            from: self.server,
            to: self.local,
        };
        let mut out = vec![];
        match self.client.recv(t, clock.to(now)) {
            TurnRecvRet::PeerData(d) => out.push((d.peer, d.data().to_vec())),
            TurnRecvRet::Handled | TurnRecvRet::Ignored(_) | TurnRecvRet::PeerIcmp { .. } => {}
        }
        while let Some(d) = self.client.poll_recv(clock.to(now)) {
            out.push((d.peer, d.data().to_vec()));
        }
        out
    }

    /// Wraps `data` for `peer`: the datagram to send to the TURN server, if any.
    pub fn send(
        &mut self,
        clock: Clock,
        now: Instant,
        peer: SocketAddr,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let t = clock.to(now);
        if self.dead {
            return None;
        }
        if !self.client.have_permission(TransportType::Udp, peer.ip()) {
            self.permit(clock, now, peer.ip());
            return None;
        }
        let built = match self.client.send_to(TransportType::Udp, peer, data, t) {
            Ok(Some(b)) => Some(b.build().data),
            Ok(None) => None,
            Err(e) => {
                tracing::trace!(%peer, "TURN send: {e}");
                None
            }
        };
        // A channel costs 4 bytes per packet instead of a 36-byte Send indication. Not over TCP:
        // turn-client-proto 0.7.3 drops the ChannelData it receives on a TCP connection (seen
        // with coturn 4.6: media stopped once the channel was bound), so TCP keeps indications.
        let udp = matches!(self.io, Io::Udp(_));
        if udp && self.channels.len() < 4000 && self.channels.insert(peer) {
            let _ = self.client.bind_channel(TransportType::Udp, peer, t);
        }
        built
    }

    /// Lets `ip` send to us through the relay.
    pub fn permit(&mut self, clock: Clock, now: Instant, ip: IpAddr) {
        if self.dead
            || ip.is_ipv4() != self.relayed.is_ipv4()
            || self.client.have_permission(TransportType::Udp, ip)
        {
            return;
        }
        if let Err(e) = self
            .client
            .create_permission(TransportType::Udp, ip, clock.to(now))
        {
            tracing::debug!(%ip, "TURN permission: {e}");
        }
    }

    /// Refreshes, retransmissions: datagrams for the TURN server, and when to come back.
    pub fn poll(&mut self, clock: Clock, now: Instant) -> (Vec<Vec<u8>>, Option<Instant>) {
        let t = clock.to(now);
        if self.dead {
            return (vec![], None);
        }
        // WaitUntil is the normal answer; a few others (TCP allocation business, which a UDP
        // allocation never has) ask to be polled again; Closed means the allocation is gone
        // (expired, refused on refresh, server restarted): the relay stays dead.
        let mut next = None;
        for _ in 0..16 {
            match self.client.poll(t) {
                TurnPollRet::WaitUntil(w) => {
                    next = Some(clock.from(w));
                    break;
                }
                TurnPollRet::Closed => {
                    tracing::warn!(relayed = %self.relayed, server = %self.server, "TURN allocation closed: this relay is gone");
                    self.dead = true;
                    return (vec![], None);
                }
                _ => {}
            }
        }
        let mut out = vec![];
        while let Some(tr) = self.client.poll_transmit(t) {
            out.push(tr.data.as_ref().to_vec());
        }
        while let Some(ev) = self.client.poll_event() {
            match ev {
                TurnEvent::PermissionCreateFailed(_, ip) => {
                    tracing::warn!(%ip, relayed = %self.relayed, "TURN permission refused")
                }
                TurnEvent::AllocationCreateFailed(_) => {
                    tracing::warn!(relayed = %self.relayed, "TURN allocation lost")
                }
                other => tracing::debug!(relayed = %self.relayed, "TURN: {other:?}"),
            }
        }
        (out, next)
    }
}

/// Relayed addresses allocated for endpoints' own turnURL, per URL (at most 16).
pub(crate) type RelayCache = crate::learnt::Learnt<String>;

/// How long an endpoint waits for an allocation it asked for.
pub(crate) const ENDPOINT_WAIT: Duration = Duration::from_millis(3500);

/// Allocates on `url` for an endpoint, off the engine's thread: a new UDP socket on each of
/// `ips` of the server's family (so the relayed traffic has a socket of its own), or a TCP
/// connection. Returns the relays with their new sockets (index 0 of `sockets` for each).
pub(crate) fn allocate_extra(
    url: &TurnUrl,
    ips: &[IpAddr],
    clock: Clock,
) -> Vec<(Option<UdpSocket>, Relay)> {
    let mut out = vec![];
    for ip in ips.iter().filter(|ip| ip.is_ipv4() == url.server.is_ipv4()) {
        let Ok(sock) = UdpSocket::bind(SocketAddr::new(*ip, 0)) else {
            continue;
        };
        let _ = sock.set_nonblocking(true);
        let socks = [sock];
        let relays = allocate(&socks, url, Duration::from_secs(3), clock);
        let [sock] = socks;
        for r in relays {
            let s = matches!(r.io, Io::Udp(_))
                .then(|| sock.try_clone().ok())
                .flatten();
            out.push((s, r));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_urls_parse_as_kms_writes_them() {
        let u = TurnUrl::parse("fluo:s3cr:et@127.0.0.1:3478").unwrap();
        assert_eq!(u.user, "fluo");
        assert_eq!(u.password, "s3cr:et");
        assert_eq!(u.server, "127.0.0.1:3478".parse().unwrap());
        assert!(!u.tcp);
        assert_eq!(
            format!("{u:?}"),
            "***@127.0.0.1:3478",
            "no credentials in logs"
        );
        let u = TurnUrl::parse("fl uo:s3 c@r:et@127.0.0.1:3478?transport=tcp").unwrap();
        assert_eq!(u.password, "s3 c@r:et");
        assert_eq!(format!("{u:?}"), "***@127.0.0.1:3478?transport=tcp");
        let u = TurnUrl::parse("a:b@10.0.0.1:3479?transport=tcp").unwrap();
        assert!(u.tcp);
        assert!(TurnUrl::parse("a:b@10.0.0.1:3479?transport=UDP").is_ok());
        assert!(TurnUrl::parse_ip("a:b@10.0.0.1:3479").is_ok());
        assert!(TurnUrl::parse_ip("a:b@[::1]:3479").is_ok());
        assert!(TurnUrl::parse_ip("a:b@localhost:3479").is_err(), "no DNS");
        for bad in [
            "",
            "10.0.0.1:3478",
            "user@10.0.0.1:3478",
            ":pw@10.0.0.1:3478",
            "a:b@10.0.0.1",
            "a:b@10.0.0.1:",
            "a:b@10.0.0.1:99999",
            "a:b@10.0.0.1:3478?transport=sctp",
        ] {
            assert!(TurnUrl::parse(bad).is_err(), "{bad:?}");
        }
    }
}
