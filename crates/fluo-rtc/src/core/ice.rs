//! ICE around str0m: which endpoint a datagram from a new address belongs to, the addresses
//! an endpoint running full ICE sends its checks to (their answers carry no USERNAME naming the
//! endpoint), and the UDP sockets bound for one endpoint alone.
//!
//! An address that sent a check naming an endpoint (`by_remote`, proven by the endpoint's ICE
//! password) is that endpoint's. An address an endpoint merely sends checks to (`checked`) is
//! only a fallback, for what comes from it without such a check: a peer cannot make Fluo claim
//! another client's address by announcing it as a candidate.

use super::*;

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// A change to the shell's sockets.
pub(crate) enum SocketChange {
    /// A socket bound for one endpoint: receive on it too.
    Open(std::net::UdpSocket),
    /// That endpoint is gone: close the socket of this local address.
    Close(SocketAddr),
}

/// Whether a datagram is a STUN Binding request (an ICE check).
pub(super) fn is_binding_request(d: &[u8]) -> bool {
    d.len() >= 20 && d[0..2] == [0x00, 0x01] && d[4..8] == MAGIC
}

/// The value of attribute `ty` of a STUN message, if the datagram is a well-formed STUN message
/// that has one.
fn stun_attr(d: &[u8], want: u16) -> Option<&[u8]> {
    if d.len() < 20 || d[0] & 0xc0 != 0 || d[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    let body = d.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let ty = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let value = body.get(i + 4..i + 4 + alen)?;
        if ty == want {
            return Some(value);
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// The local ufrag named by a STUN message's USERNAME (`<our ufrag>:<their ufrag>`), if the
/// datagram is a well-formed STUN message that has one.
pub(super) fn stun_local_ufrag(d: &[u8]) -> Option<&str> {
    let user = std::str::from_utf8(stun_attr(d, 0x0006)?).ok()?;
    user.split(':').next()
}

/// Whether a datagram is an ICE check that nominates its pair (USE-CANDIDATE, RFC 8445
/// 7.1.2; its integrity is for str0m to check).
pub(super) fn is_nomination(d: &[u8]) -> bool {
    is_binding_request(d) && stun_attr(d, 0x0025).is_some()
}

impl MediaCore {
    /// Endpoint `key` sends an ICE check from `local` to `remote` (it runs full ICE). The
    /// answer comes back from `remote` with nothing naming the endpoint, and so does what
    /// follows when that peer sends no checks itself (an ICE-lite peer): what comes from that
    /// address goes to the endpoint, unless a check from it named another (or another live
    /// endpoint checks it already).
    pub(super) fn note_check(&mut self, key: u64, local: SocketAddr, remote: SocketAddr) {
        let other = self.checked.get(&(local, remote)).copied();
        let taken = other.is_some_and(|k| k != key && self.eps.contains_key(&k));
        if !taken {
            self.checked.insert((local, remote), key);
        }
    }

    /// Endpoint `key` restarted ICE: checks name it by its new `ufrag` from now on, not by
    /// the `old` one.
    pub(super) fn ice_restarted(&mut self, key: u64, old: &str, ufrag: String) {
        if self.eps.contains_key(&key) {
            if self.by_ufrag.get(old) == Some(&key) {
                self.by_ufrag.remove(old);
            }
            self.by_ufrag.insert(ufrag, key);
        }
        self.drive(key);
    }

    /// The live endpoint that checks `remote` from `local`, if any.
    pub(super) fn checked_by(&self, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
        self.checked
            .get(&(local, remote))
            .copied()
            .filter(|k| self.eps.contains_key(k))
    }

    /// Sockets bound for endpoint `key` alone (in memory: their addresses only): the shell
    /// receives on them until the endpoint goes.
    pub(super) fn add_own_sockets(
        &mut self,
        key: u64,
        sockets: Vec<(Option<std::net::UdpSocket>, SocketAddr)>,
    ) {
        if !self.eps.contains_key(&key) {
            // The endpoint is gone already: the sockets close here.
            return;
        }
        for (sock, addr) in sockets {
            self.own_sockets.entry(key).or_default().push(addr);
            if let Some(s) = sock {
                self.socket_changes.push_back(SocketChange::Open(s));
            }
        }
    }

    /// Endpoint `key` is gone: its own sockets close.
    pub(super) fn close_own_sockets(&mut self, key: u64) {
        for addr in self.own_sockets.remove(&key).unwrap_or_default() {
            self.socket_changes.push_back(SocketChange::Close(addr));
        }
    }

    /// The next change to the shell's sockets.
    pub(crate) fn poll_socket_change(&mut self) -> Option<SocketChange> {
        self.socket_changes.pop_front()
    }

    /// Local addresses of the sockets bound for endpoints alone.
    pub fn own_socket_count(&self) -> usize {
        self.own_sockets.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::{is_binding_request, is_nomination, stun_local_ufrag};
    use crate::core::{Control, Ctl, Ep, MediaCore};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    #[test]
    fn a_restart_moves_the_endpoints_ufrag_and_no_other() {
        let now = Instant::now();
        let mut core = MediaCore::new(now);
        let mut ufrags = vec![];
        for (key, id) in [(1, "a"), (2, "b")] {
            let mut rtc = str0m::Rtc::new(now);
            ufrags.push(rtc.direct_api().local_ice_credentials().ufrag);
            let ep = Arc::new(Mutex::new(Ep::new(id.into(), rtc)));
            core.control(now, Control(Ctl::Add { key, ep }));
        }
        let owner = |core: &MediaCore, u: &str| core.by_ufrag.get(u).copied();
        assert_eq!(owner(&core, &ufrags[0]), Some(1));
        let old = ufrags[0].clone();
        let ufrag = "n3w1".to_string();
        core.control(now, Control(Ctl::IceRestarted { key: 1, old, ufrag }));
        assert_eq!(owner(&core, &ufrags[0]), None, "the old ufrag names nobody");
        assert_eq!(owner(&core, "n3w1"), Some(1));
        assert_eq!(owner(&core, &ufrags[1]), Some(2));
        assert_eq!(core.by_ufrag.len(), 2);
    }

    fn stun(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![];
        for (ty, v) in attrs {
            body.extend_from_slice(&ty.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut d = vec![0x00, 0x01];
        d.extend_from_slice(&(body.len() as u16).to_be_bytes());
        d.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        d.extend_from_slice(&[7; 12]);
        d.extend_from_slice(&body);
        d
    }

    #[test]
    fn finds_the_local_ufrag_and_survives_garbage() {
        let d = stun(&[(0x8022, b"x"), (0x0006, b"ours:theirs")]);
        assert_eq!(stun_local_ufrag(&d), Some("ours"));
        assert_eq!(stun_local_ufrag(&stun(&[(0x8022, b"abc")])), None);
        // truncated, wrong cookie, lying lengths, RTP-looking data
        for cut in 0..d.len() {
            let _ = stun_local_ufrag(&d[..cut]);
        }
        let mut bad = d.clone();
        bad[4] = 0;
        assert_eq!(stun_local_ufrag(&bad), None);
        let mut lying = d.clone();
        lying[22] = 0xff;
        lying[23] = 0xff;
        assert_eq!(stun_local_ufrag(&lying), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
    }

    #[test]
    fn binding_requests_are_told_from_answers_and_media() {
        let req = stun(&[(0x0006, b"a:b")]);
        assert!(is_binding_request(&req));
        let mut answer = req.clone();
        answer[0] = 0x01;
        answer[1] = 0x01;
        assert!(!is_binding_request(&answer));
        assert!(!is_binding_request(&req[..19]));
        assert!(!is_binding_request(&[0x80; 40]));
        assert!(!is_nomination(&req));
        let nominating = stun(&[(0x0006, b"a:b"), (0x0025, b"")]);
        assert!(is_nomination(&nominating));
        let mut answered = nominating.clone();
        answered[0] = 0x01;
        answered[1] = 0x01;
        assert!(!is_nomination(&answered), "an answer nominates nothing");
    }
}
