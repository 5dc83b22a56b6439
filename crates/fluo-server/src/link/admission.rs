//! Admission to the link's port: how many connections may be authenticating at once, in all
//! and from one source. This bounds what unauthenticated peers can hold (memory, tasks); it
//! is not authentication, and whoever can reach `--peer-port` can still take the slots for
//! the handshake's deadline ([`super::HANDSHAKE`]) each: the port must be reachable by the
//! cluster's nodes only (docs/cluster.md).

use crate::lock;
use fluo_core::AddrKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections to the link's port that have not authenticated yet, at most (more are
/// closed at once): each may hold a few KiB until it proves it knows the secret.
pub(super) const HANDSHAKES: usize = 64;

/// The same, from one source (an IPv4 address, or an IPv6 /64: one host commonly has a
/// whole /64 to pick addresses from).
pub(super) const HANDSHAKES_PER_SOURCE: usize = 8;

/// The connections authenticating now: in all, and by source.
type Counts = Arc<Mutex<(usize, HashMap<AddrKey, usize>)>>;

/// The connections authenticating now, in all and by source.
#[derive(Default, Clone)]
pub(super) struct Admission {
    open: Counts,
}

/// One connection counted by [`Admission`] until it is dropped.
pub(super) struct Ticket {
    open: Counts,
    source: AddrKey,
}

impl Admission {
    /// A ticket for a connection from `ip`, or `None` when the limits are reached.
    pub(super) fn admit(&self, ip: IpAddr) -> Option<Ticket> {
        // An IPv4 address (also IPv4-mapped), or an IPv6 /64: the WebSocket listener's rule.
        let source = AddrKey::of(ip);
        let mut open = lock(&self.open);
        let here = open.1.get(&source).copied().unwrap_or(0);
        if open.0 >= HANDSHAKES || here >= HANDSHAKES_PER_SOURCE {
            return None;
        }
        open.0 += 1;
        open.1.insert(source, here + 1);
        Some(Ticket {
            open: self.open.clone(),
            source,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.1.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Tickets for `ip` until refused; how many were given (the tickets kept in `held`).
    fn fill(a: &Admission, ip: IpAddr, held: &mut Vec<Ticket>) -> usize {
        let before = held.len();
        while let Some(t) = a.admit(ip) {
            held.push(t);
            assert!(held.len() <= HANDSHAKES, "admitted past the limit");
        }
        held.len() - before
    }

    #[test]
    fn eight_per_address_and_a_slot_back_when_its_ticket_drops() {
        let a = Admission::default();
        let mut held = vec![];
        assert_eq!(fill(&a, ip("10.0.0.1"), &mut held), 8);
        // Another address has slots of its own.
        assert_eq!(fill(&a, ip("10.0.0.2"), &mut held), 8);
        assert!(a.admit(ip("10.0.0.1")).is_none());
        // A ticket dropped (its handshake done or timed out): one slot back for its address.
        held.swap_remove(0);
        let t = a.admit(ip("10.0.0.1")).expect("the freed slot");
        assert!(a.admit(ip("10.0.0.1")).is_none());
        drop(t);
        drop(held);
        assert_eq!(fill(&a, ip("10.0.0.1"), &mut vec![]), 8);
        assert_eq!(lock(&a.open).0, 0, "every slot back");
        assert!(lock(&a.open).1.is_empty(), "no address left counted");
    }

    #[test]
    fn sixty_four_in_all() {
        let a = Admission::default();
        let mut held = vec![];
        for i in 0..8 {
            assert_eq!(fill(&a, ip(&format!("10.0.1.{i}")), &mut held), 8);
        }
        assert_eq!(held.len(), 64);
        // A new address gets nothing while 64 are authenticating...
        assert!(a.admit(ip("10.0.2.1")).is_none());
        assert!(a.admit(ip("2001:db8::1")).is_none());
        // ...and one slot once one of them is done.
        held.pop();
        let _t = a.admit(ip("10.0.2.1")).expect("the slot freed");
        assert!(a.admit(ip("10.0.2.2")).is_none());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a = Admission::default();
        let mut held = vec![];
        // Two addresses of one /64 share its eight slots.
        assert_eq!(fill(&a, ip("2001:db8:1:2::1"), &mut held), 8);
        assert!(a.admit(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")).is_none());
        // Another /64 (the next one, or another one of the same /48) has its own.
        assert_eq!(fill(&a, ip("2001:db8:1:3::1"), &mut held), 8);
        assert_eq!(fill(&a, ip("2001:db8:1:ff::1"), &mut held), 8);
        // ::ffff:1.2.3.4 is 1.2.3.4, either way round.
        assert_eq!(fill(&a, ip("::ffff:1.2.3.4"), &mut held), 8);
        assert!(a.admit(ip("1.2.3.4")).is_none());
        assert_eq!(fill(&a, ip("1.2.3.5"), &mut held), 8);
        assert!(a.admit(ip("::ffff:1.2.3.5")).is_none());
        // Not one /64 for all IPv4-mapped addresses: another IPv4 address has its own.
        assert_eq!(fill(&a, ip("::ffff:1.2.3.6"), &mut held), 8);
    }
}
