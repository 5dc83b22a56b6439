//! Server-reflexive address discovery: a STUN Binding request (RFC 5389) from each media
//! socket to the configured STUN server, at start, with retries and a bounded wait.
//!
//! The endpoints run ICE-lite, so the discovered public address is announced like an
//! external address (see `Ep::nat`): a candidate on the mapped address and port, besides the
//! host candidate, with the media core translating between the two.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// A Binding request with transaction id `tid`.
pub(crate) fn binding_request(tid: [u8; 12]) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00];
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&tid);
    m
}

/// The mapped address in a Binding success response for `tid` (XOR-MAPPED-ADDRESS, else
/// MAPPED-ADDRESS); `None` for anything else, malformed input included.
pub(crate) fn mapped_address(d: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if d.len() < 20 || d[0..2] != [0x01, 0x01] || d[4..8] != MAGIC || d[8..20] != tid[..] {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    let body = d.get(20..20 + len)?;
    let mut plain = None;
    let mut i = 0;
    while i + 4 <= body.len() {
        let ty = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let v = body.get(i + 4..i + 4 + alen)?;
        if ty == 0x0020 || ty == 0x0001 {
            let xor = ty == 0x0020;
            let addr = parse_addr(v, xor, tid);
            if xor && addr.is_some() {
                return addr;
            }
            plain = plain.or(addr);
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    plain
}

fn parse_addr(v: &[u8], xor: bool, tid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let mut port = u16::from_be_bytes([v[2], v[3]]);
    if xor {
        port ^= 0x2112;
    }
    let mut key = MAGIC.to_vec();
    key.extend_from_slice(tid);
    match v[1] {
        0x01 => {
            let mut a: [u8; 4] = v.get(4..8)?.try_into().ok()?;
            if xor {
                for (b, k) in a.iter_mut().zip(&key) {
                    *b ^= k;
                }
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port))
        }
        0x02 => {
            let mut a: [u8; 16] = v.get(4..20)?.try_into().ok()?;
            if xor {
                for (b, k) in a.iter_mut().zip(&key) {
                    *b ^= k;
                }
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
        }
        _ => None,
    }
}

/// Asks `server` for the mapped address of each socket (same IP family only): up to
/// `tries` requests `every` apart per socket. Returns (local, mapped) pairs found.
pub(crate) fn discover(
    sockets: &[UdpSocket],
    server: SocketAddr,
    tries: u32,
    every: Duration,
) -> Vec<(SocketAddr, SocketAddr)> {
    let mut out = vec![];
    for s in sockets {
        let Ok(local) = s.local_addr() else { continue };
        if local.is_ipv4() != server.is_ipv4() {
            continue;
        }
        let mut tid = [0u8; 12];
        let seed = Instant::now().elapsed().as_nanos() ^ u128::from(local.port());
        for (i, b) in tid.iter_mut().enumerate() {
            *b = (seed >> (i * 7)) as u8 ^ (i as u8).wrapping_mul(151) ^ std::process::id() as u8;
        }
        let was_nonblocking = s.set_nonblocking(false).is_ok();
        let _ = s.set_read_timeout(Some(every));
        let mut found = None;
        'tries: for attempt in 0..tries {
            if s.send_to(&binding_request(tid), server).is_err() {
                tracing::warn!(%server, "cannot send to the STUN server");
                break;
            }
            let deadline = Instant::now() + every;
            let mut buf = [0u8; 1500];
            while Instant::now() < deadline {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) if from == server => {
                        if let Some(m) = mapped_address(&buf[..n], &tid) {
                            found = Some(m);
                            break 'tries;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            tracing::debug!(%server, attempt, "no STUN answer yet");
        }
        let _ = s.set_read_timeout(None);
        if was_nonblocking {
            let _ = s.set_nonblocking(true);
        }
        match found {
            Some(m) => {
                tracing::info!(%local, mapped = %m, "server-reflexive address from STUN {server}");
                out.push((local, m));
            }
            None => {
                tracing::warn!(%local, %server, "no answer from the STUN server: host candidates only")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(tid: [u8; 12], mapped: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(v4) = mapped else { panic!() };
        let mut attr = vec![0x00, 0x20, 0x00, 0x08, 0x00, 0x01];
        attr.extend_from_slice(&(v4.port() ^ 0x2112).to_be_bytes());
        for (b, k) in v4.ip().octets().iter().zip(MAGIC) {
            attr.push(b ^ k);
        }
        let mut m = vec![0x01, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&tid);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn parses_mapped_addresses_and_survives_garbage() {
        let tid = [7u8; 12];
        let a: SocketAddr = "203.0.113.9:61000".parse().unwrap();
        let r = response(tid, a);
        assert_eq!(mapped_address(&r, &tid), Some(a));
        assert_eq!(mapped_address(&r, &[8u8; 12]), None, "another transaction");
        for cut in 0..r.len() {
            assert_eq!(mapped_address(&r[..cut], &tid), None);
        }
        let mut lying = r.clone();
        lying[23] = 0xff;
        let _ = mapped_address(&lying, &tid);
        assert_eq!(binding_request(tid).len(), 20);
    }

    #[test]
    fn discovers_through_a_stun_server_and_gives_up_on_silence() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let saddr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            // Ignore the first request (a lost packet), answer the second.
            let _ = server.recv_from(&mut buf);
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let tid: [u8; 12] = buf[8..20].try_into().unwrap();
            assert_eq!(n, 20);
            let mapped: SocketAddr = "203.0.113.9:61000".parse().unwrap();
            server.send_to(&response(tid, mapped), from).unwrap();
        });
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        let got = discover(
            std::slice::from_ref(&s),
            saddr,
            3,
            Duration::from_millis(200),
        );
        assert_eq!(
            got,
            vec![(
                s.local_addr().unwrap(),
                "203.0.113.9:61000".parse().unwrap()
            )]
        );
        // A silent server: bounded wait, nothing found.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = Instant::now();
        let got = discover(
            std::slice::from_ref(&s),
            silent.local_addr().unwrap(),
            2,
            Duration::from_millis(100),
        );
        assert!(got.is_empty());
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}

/// How long an endpoint waits for a discovery it asked for (its own stunServerAddress).
pub(crate) const ENDPOINT_WAIT: Duration = Duration::from_secs(2);

/// Public addresses learnt from endpoints' own STUN servers, per server (at most 64).
pub(crate) type StunCache = crate::learnt::Learnt<SocketAddr>;

/// One Binding request in flight from a media socket of the media thread.
struct Ask {
    server: SocketAddr,
    socket: usize,
    local: SocketAddr,
    tid: [u8; 12],
    sent: u32,
    next: Instant,
    found: Option<SocketAddr>,
}

/// Discoveries run by the media thread on its own sockets: 3 requests 500 ms apart per
/// socket, answers picked out of the socket's traffic by transaction id.
#[derive(Default)]
pub(crate) struct Discoveries {
    asks: Vec<Ask>,
}

impl Discoveries {
    /// Starts asking `server` from every socket of its family; false if there is none.
    pub fn start(&mut self, server: SocketAddr, locals: &[SocketAddr], now: Instant) -> bool {
        let before = self.asks.len();
        for (socket, local) in locals.iter().enumerate() {
            // Not from a closed slot of the shell (an endpoint's own socket that went).
            if local.is_ipv4() != server.is_ipv4() || local.ip().is_unspecified() {
                continue;
            }
            // Unpredictable transaction ids (SipHash keyed from the OS's randomness), so that
            // an answer cannot be forged without seeing the request.
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(socket);
            let a = h.finish();
            h.write_u64(a);
            let b = h.finish();
            let mut tid = [0u8; 12];
            tid[..8].copy_from_slice(&a.to_le_bytes());
            tid[8..].copy_from_slice(&b.to_le_bytes()[..4]);
            self.asks.push(Ask {
                server,
                socket,
                local: *local,
                tid,
                sent: 0,
                next: now,
                found: None,
            });
        }
        self.asks.len() > before
    }

    /// A datagram from `from` on socket `socket`: true if it answered one of our requests
    /// (and is not for the endpoints).
    pub fn receive(&mut self, socket: usize, from: SocketAddr, data: &[u8]) -> bool {
        for a in &mut self.asks {
            if a.socket == socket && a.server == from && a.found.is_none() {
                if let Some(m) = mapped_address(data, &a.tid) {
                    a.found = Some(m);
                    return true;
                }
            }
        }
        false
    }

    /// Requests due now (socket, server, bytes); finished servers go to `cache`. Returns
    /// when to come back.
    pub fn poll(
        &mut self,
        now: Instant,
        cache: &StunCache,
        send: &mut dyn FnMut(usize, SocketAddr, &[u8]),
    ) -> Option<Instant> {
        for a in &mut self.asks {
            if a.found.is_none() && a.sent < 3 && a.next <= now {
                send(a.socket, a.server, &binding_request(a.tid));
                a.sent += 1;
                a.next = now + Duration::from_millis(500);
            }
        }
        let finished = |a: &Ask| a.found.is_some() || (a.sent >= 3 && a.next <= now);
        let servers: Vec<SocketAddr> = self.asks.iter().map(|a| a.server).collect();
        for server in servers {
            let mine = || self.asks.iter().filter(|a| a.server == server);
            if mine().all(finished) {
                let found: Vec<_> = mine().filter_map(|a| Some((a.local, a.found?))).collect();
                for (l, m) in &found {
                    tracing::info!(local = %l, mapped = %m, "server-reflexive address from an endpoint's STUN server {server}");
                }
                if found.is_empty() {
                    tracing::warn!(%server, "no answer from an endpoint's STUN server");
                }
                cache.finish(&server, found);
                self.asks.retain(|a| a.server != server);
            }
        }
        self.asks
            .iter()
            .filter(|a| a.found.is_none())
            .map(|a| a.next)
            .min()
    }
}
