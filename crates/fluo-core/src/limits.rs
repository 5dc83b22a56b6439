//! Resource limits: who created what, and the checks that refuse a `create` or a new session
//! with 40009 NOT_ENOUGH_RESOURCES before anything is built.
//!
//! Kurento sessions are ids that the client chooses, so a limit per session alone is walked
//! around by sending a new id with each request. Every object and every session therefore
//! also counts against the WebSocket connection and the remote address its request came
//! from, and against server-wide totals. Counts follow objects and sessions until they are
//! destroyed or forgotten, whichever connection speaks for them meanwhile (a client that
//! reconnects with its old session keeps its objects, and they still count for the address
//! that created them); a released object whose media is still stopping (see
//! [`crate::Stopping`]) counts for its address until it has stopped. A refused request
//! changes nothing: objects already made stay.

use crate::element::Stopping;
use crate::engine::{ConnId, Engine};
use fluo_api::{ErrorCode, KurentoError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Weak;

/// Most subscriptions one session may hold on one object.
const MAX_SUBSCRIPTIONS_PER_OBJECT_AND_SESSION: usize = 1000;

/// Most subscriptions on one object, of all sessions (an event is delivered by going through
/// them, and a subscription is checked against them).
const MAX_SUBSCRIPTIONS_PER_OBJECT: usize = 10_000;

/// The address a limit is kept for: an IPv4 address, or the /64 prefix of an IPv6 address
/// (one host usually holds a whole /64 and can pick any address in it). IPv4-mapped IPv6
/// addresses count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl AddrKey {
    /// The key `ip` counts under.
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4.octets()),
                None => {
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&v6.octets()[..8]);
                    AddrKey::V6Prefix(p)
                }
            },
        }
    }
}

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddrKey::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            AddrKey::V6Prefix(p) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(p);
                write!(f, "{}/64", std::net::Ipv6Addr::from(full))
            }
        }
    }
}

/// Where a request came from: its connection (with a serial, as a shell may reuse ids) and
/// the connection's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub conn: ConnId,
    pub serial: u64,
    pub addr: AddrKey,
}

#[derive(Debug)]
struct ConnUsage {
    serial: u64,
    addr: AddrKey,
    objects: usize,
}

/// Live objects by connection and by address (sessions by address are counted by the
/// session table), and released objects whose media is still stopping, by address.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    conns: HashMap<ConnId, ConnUsage>,
    objects_by_addr: HashMap<AddrKey, usize>,
    stopping: Vec<(AddrKey, Weak<()>)>,
    next_serial: u64,
}

impl Usage {
    pub fn open(&mut self, conn: ConnId, ip: IpAddr) -> Origin {
        self.close(conn);
        let addr = AddrKey::of(ip);
        self.next_serial += 1;
        let serial = self.next_serial;
        self.conns.insert(
            conn,
            ConnUsage {
                serial,
                addr,
                objects: 0,
            },
        );
        Origin { conn, serial, addr }
    }

    pub fn close(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    pub fn origin(&self, conn: ConnId) -> Option<Origin> {
        self.conns.get(&conn).map(|c| Origin {
            conn,
            serial: c.serial,
            addr: c.addr,
        })
    }

    fn conn_objects(&self, o: &Origin) -> usize {
        self.conns
            .get(&o.conn)
            .filter(|c| c.serial == o.serial)
            .map_or(0, |c| c.objects)
    }

    /// The objects of address `a`: live ones and released ones still stopping.
    fn addr_objects(&self, a: AddrKey) -> usize {
        let stopping = self
            .stopping
            .iter()
            .filter(|(k, w)| *k == a && w.strong_count() > 0)
            .count();
        self.objects_by_addr.get(&a).copied().unwrap_or(0) + stopping
    }

    /// A released object of `o`'s address whose media may still be stopping: it counts for
    /// the address while a clone of `token` lives (the element's own goes with it).
    pub fn object_stopping(&mut self, o: &Origin, token: &Stopping) {
        self.stopping.retain(|(_, w)| w.strong_count() > 0);
        self.stopping.push((o.addr, token.watch()));
    }

    pub fn object_created(&mut self, o: &Origin) {
        if let Some(c) = self.conns.get_mut(&o.conn).filter(|c| c.serial == o.serial) {
            c.objects += 1;
        }
        *self.objects_by_addr.entry(o.addr).or_default() += 1;
    }

    pub fn object_destroyed(&mut self, o: &Origin) {
        if let Some(c) = self.conns.get_mut(&o.conn).filter(|c| c.serial == o.serial) {
            c.objects = c.objects.saturating_sub(1);
        }
        if let Some(n) = self.objects_by_addr.get_mut(&o.addr) {
            *n -= 1;
            if *n == 0 {
                self.objects_by_addr.remove(&o.addr);
            }
        }
    }
}

fn limit(n: usize, what: &str) -> KurentoError {
    KurentoError::new(
        ErrorCode::NotEnoughResources,
        format!("Limit reached: at most {n} {what}"),
    )
}

impl Engine {
    /// Checks every object limit for one more object of `class` in `pipeline`, created by
    /// `session` on behalf of the current request's origin.
    pub(crate) fn check_object_limits(
        &self,
        session: &str,
        class: &str,
        pipeline: Option<&str>,
    ) -> Result<(), KurentoError> {
        self.check_draining(class)?;
        let c = &self.config;
        if self.sessions.ref_count(session) >= c.max_objects_per_session {
            return Err(limit(c.max_objects_per_session, "objects per session"));
        }
        if let Some(o) = &self.origin {
            if self.usage.conn_objects(o) >= c.max_objects_per_connection {
                return Err(limit(
                    c.max_objects_per_connection,
                    "objects per connection",
                ));
            }
            let n = self.usage.addr_objects(o.addr);
            if n >= c.max_objects_per_address {
                tracing::warn!(addr = %o.addr, n, "object limit of an address reached");
                return Err(limit(
                    c.max_objects_per_address,
                    "objects per client address",
                ));
            }
        }
        // The ServerManager is not counted.
        if self.registry.len().saturating_sub(1) >= c.max_objects {
            tracing::warn!(n = c.max_objects, "server-wide object limit reached");
            return Err(limit(c.max_objects, "media objects on this server"));
        }
        if class == "MediaPipeline" && self.registry.pipeline_count() >= c.max_pipelines {
            return Err(limit(c.max_pipelines, "media pipelines"));
        }
        if let Some(p) = pipeline {
            let n = self.registry.get(p).map_or(0, |o| o.children.len());
            if n >= c.max_elements_per_pipeline {
                return Err(limit(c.max_elements_per_pipeline, "elements per pipeline"));
            }
        }
        Ok(())
    }

    /// Checks the subscription limits for one more subscription by `session` on object `id`.
    pub(crate) fn check_subscription_limits(
        &self,
        session: &str,
        id: &str,
    ) -> Result<(), KurentoError> {
        let c = &self.config;
        let subs = self
            .registry
            .get(id)
            .map_or(&[][..], |o| &o.subscriptions[..]);
        if subs.len() >= MAX_SUBSCRIPTIONS_PER_OBJECT {
            return Err(limit(
                MAX_SUBSCRIPTIONS_PER_OBJECT,
                "event subscriptions per object",
            ));
        }
        if subs.iter().filter(|s| s.session == session).count()
            >= MAX_SUBSCRIPTIONS_PER_OBJECT_AND_SESSION
        {
            return Err(limit(
                MAX_SUBSCRIPTIONS_PER_OBJECT_AND_SESSION,
                "subscriptions per object and session",
            ));
        }
        if let Some(a) = self.sessions.addr_of(session) {
            if self.sessions.subs_for(a) >= c.max_subscriptions_per_address {
                tracing::warn!(addr = %a, "subscription limit of an address reached");
                return Err(limit(
                    c.max_subscriptions_per_address,
                    "event subscriptions per client address",
                ));
            }
        }
        if self.sessions.subs_total() >= c.max_subscriptions {
            tracing::warn!(
                n = c.max_subscriptions,
                "server-wide subscription limit reached"
            );
            return Err(limit(
                c.max_subscriptions,
                "event subscriptions on this server",
            ));
        }
        Ok(())
    }

    /// Makes sure `session` exists, creating it for the current request's origin when the
    /// session limits allow.
    pub(crate) fn admit_session(&mut self, session: &str) -> Result<(), KurentoError> {
        if self.sessions.exists(session) {
            return Ok(());
        }
        let c = &self.config;
        if self.sessions.len() >= c.max_sessions {
            tracing::warn!(n = c.max_sessions, "session limit reached");
            return Err(limit(c.max_sessions, "sessions on this server"));
        }
        let addr = self.origin.map(|o| o.addr);
        if let Some(a) = addr {
            let n = self.sessions.count_for(a);
            if n >= c.max_sessions_per_address {
                tracing::warn!(addr = %a, n, "session limit of an address reached");
                return Err(limit(
                    c.max_sessions_per_address,
                    "sessions per client address",
                ));
            }
        }
        self.sessions.ensure(session, addr);
        Ok(())
    }
}
