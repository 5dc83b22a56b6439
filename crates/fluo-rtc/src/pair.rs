//! The candidate pair in use, as Kurento's IceCandidatePair (NewCandidatePairSelected,
//! ICECandidatePairs): our candidate as we announced it (host, or relay for a TURN-relayed
//! address), and the peer's as the peer sent it (type, foundation, priority, related
//! address...), as KMS reports them.

use crate::core::Ep;
use serde_json::Value;
use std::net::SocketAddr;
use str0m::net::{Protocol, TcpType};
use str0m::Candidate;

/// Most candidate lines of the peer kept per endpoint.
const MAX_KEPT: usize = 128;

/// An endpoint's candidates as SDP lines (without `a=`).
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// Ours, as announced.
    local: Vec<String>,
    /// The peer's, as it sent them.
    remote: Vec<String>,
}

/// Keeps the peer's candidate lines (SDP `a=candidate:` lines or addIceCandidate values).
pub(crate) fn remember<'a>(ep: &mut Ep, lines: impl Iterator<Item = &'a str>) {
    for l in lines {
        let l = l.trim();
        let l = l.strip_prefix("a=").unwrap_or(l);
        if l.starts_with("candidate:") && ep.candidates.remote.len() < MAX_KEPT {
            ep.candidates.remote.push(l.to_string());
        }
    }
}

/// The peer restarted ICE: the candidates it sent were those of the old ICE session.
pub(crate) fn forget_remote(ep: &mut Ep) {
    ep.candidates.remote.clear();
}

/// Keeps our candidates as announced.
pub(crate) fn announced(ep: &mut Ep, ours: &[Candidate]) {
    ep.candidates.local = ours.iter().map(line).collect();
}

fn line(c: &Candidate) -> String {
    let s = c.to_sdp_string();
    s.strip_prefix("a=").unwrap_or(&s).to_string()
}

/// The candidate pair in use, as Kurento's IceCandidatePair.
pub(crate) fn candidate_pair(ep: &Ep) -> Option<Value> {
    let (local, remote) = selected(ep)?;
    Some(fluo_core::candidate_pair_json(&local, &remote))
}

/// The candidate pair in use: our candidate line as announced, the peer's as it sent it.
pub(crate) fn selected(ep: &Ep) -> Option<(String, String)> {
    let (local, remote) = ep.path?;
    let tcp = ep.path_proto != Protocol::Udp;
    // Our side as announced (externalIPv4/6 replace the socket's address).
    let announced = ep
        .settings
        .nat
        .iter()
        .find(|(l, _)| *l == local)
        .map_or(local, |(_, public)| *public);
    // Ours as announced: host, or relay for a TURN-relayed address (what the shell reports as
    // the local address of what came through a relay); a host line if none matches.
    let ours = find(&ep.candidates.local, announced, tcp, false).unwrap_or_else(|| {
        let c = if tcp {
            Candidate::builder()
                .tcp()
                .host(announced)
                .tcptype(TcpType::Passive)
                .build()
        } else {
            Candidate::host(announced, "udp")
        };
        c.map(|c| line(&c)).unwrap_or_default()
    });
    Some((ours, theirs(&ep.candidates.remote, remote, tcp)))
}

/// The line among `lines` for `addr` (for TCP, when `any_port`, by address only: an active
/// TCP candidate announces port 9, its connections come from any port).
fn find(lines: &[String], addr: SocketAddr, tcp: bool, any_port: bool) -> Option<String> {
    lines
        .iter()
        .find(|l| {
            Candidate::from_sdp_string(l).is_ok_and(|c| {
                (c.proto() != Protocol::Udp) == tcp
                    && c.addr().ip() == addr.ip()
                    && ((tcp && any_port) || c.addr().port() == addr.port())
            })
        })
        .cloned()
}

/// The peer's candidate for `remote` as the peer sent it; an address it never announced
/// (its checks came from elsewhere: a NAT, an mDNS-hidden host) is peer-reflexive.
fn theirs(sent: &[String], remote: SocketAddr, tcp: bool) -> String {
    if let Some(l) = find(sent, remote, tcp, true) {
        return l;
    }
    // RFC 8445 5.1.2.1: type preference 110 for peer-reflexive, full local preference.
    let priority: u32 = (110 << 24) | (65535 << 8) | 255;
    let foundation = match remote.ip() {
        std::net::IpAddr::V4(ip) => u32::from(ip),
        std::net::IpAddr::V6(ip) => ip
            .segments()
            .iter()
            .fold(0u32, |h, s| h.wrapping_mul(31).wrapping_add(u32::from(*s))),
    };
    let (proto, tcptype) = if tcp {
        ("tcp", " tcptype active")
    } else {
        ("udp", "")
    };
    format!(
        "candidate:{foundation} 1 {proto} {priority} {} {} typ prflx{tcptype}",
        remote.ip(),
        remote.port()
    )
}

#[cfg(test)]
mod tests {
    use super::theirs;

    #[test]
    fn the_peers_candidate_is_reported_as_sent_else_peer_reflexive() {
        let relay = "candidate:3 1 udp 41885439 10.9.2.1 50017 typ relay raddr 10.9.2.2 rport 40000 generation 0 ufrag x";
        let host = "candidate:1 1 udp 2122260223 192.168.1.5 50000 typ host";
        let tcp = "candidate:2 1 tcp 1518280447 192.168.1.5 9 typ host tcptype active";
        let sent: Vec<String> = [host, relay, tcp].map(String::from).to_vec();
        let at = |a: &str| a.parse().unwrap();
        assert_eq!(theirs(&sent, at("10.9.2.1:50017"), false), relay);
        assert_eq!(theirs(&sent, at("192.168.1.5:50000"), false), host);
        assert_eq!(theirs(&sent, at("192.168.1.5:41234"), true), tcp);
        let prflx = theirs(&sent, at("203.0.113.7:6000"), false);
        assert!(
            prflx.ends_with(" 1 udp 1862270975 203.0.113.7 6000 typ prflx"),
            "{prflx}"
        );
        assert!(str0m::Candidate::from_sdp_string(&prflx).is_ok(), "{prflx}");
    }
}
