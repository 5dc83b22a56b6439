//! Sessions: which connection speaks for a session, which objects it references, and when a
//! session whose connection went away expires.

use crate::engine::ConnId;
use crate::limits::AddrKey;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Default)]
struct Session {
    /// Object ids this session references (shared with the other sessions referencing them).
    refs: HashSet<Arc<str>>,
    /// The connection events for this session go to.
    conn: Option<ConnId>,
    /// When the session is dropped unless a connection binds it again.
    expires: Option<Instant>,
    /// The session has referenced at least one object (so `connect` may resume it).
    known: bool,
    /// The address of the connection whose request created the session (it counts there).
    addr: Option<AddrKey>,
    /// Event subscriptions the session holds, on any object.
    subs: usize,
    /// Bound on an internal connection (Fluo's own, e.g. a cascade relay's): it never holds
    /// anything (see [`Sessions::is_internal`]).
    internal: bool,
}

/// All sessions and the connection bindings.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    sessions: HashMap<String, Session>,
    conns: HashMap<ConnId, Option<String>>,
    deadlines: BTreeSet<(Instant, String)>,
    /// Sessions by the address that created them.
    by_addr: HashMap<AddrKey, usize>,
    /// Subscriptions by the address that created their session, and in all.
    subs_by_addr: HashMap<AddrKey, usize>,
    subs: usize,
    /// Connections Fluo itself opened (never a client's): their sessions are internal.
    internal_conns: HashSet<ConnId>,
}

impl Sessions {
    pub fn open_conn(&mut self, conn: ConnId) {
        self.conns.insert(conn, None);
    }

    /// Marks `conn` as one of Fluo's own connections (see [`Sessions::is_internal`]).
    pub fn set_internal_conn(&mut self, conn: ConnId) {
        self.internal_conns.insert(conn);
    }

    pub fn is_internal_conn(&self, conn: ConnId) -> bool {
        self.internal_conns.contains(&conn)
    }

    /// Marks an existing session as internal: it spoke on an internal connection.
    pub fn set_internal(&mut self, session: &str) {
        if let Some(s) = self.sessions.get_mut(session) {
            s.internal = true;
        }
    }

    /// An internal session is never a holder of objects: what it creates, invokes or
    /// connects is held by the sessions of its users (the pipeline's) and dies with them.
    pub fn is_internal(&self, session: &str) -> bool {
        self.sessions.get(session).is_some_and(|s| s.internal)
    }

    pub fn close_conn(&mut self, conn: ConnId, deadline: Instant) {
        self.internal_conns.remove(&conn);
        if let Some(Some(s)) = self.conns.remove(&conn) {
            self.release_conn_of(&s, conn, deadline);
        }
    }

    pub fn unbind_conn(&mut self, conn: ConnId) {
        if let Some(slot) = self.conns.get_mut(&conn) {
            *slot = None;
        }
    }

    fn release_conn_of(&mut self, session: &str, conn: ConnId, deadline: Instant) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if s.conn == Some(conn) {
            s.conn = None;
            if !s.known && s.refs.is_empty() {
                // A session that never held anything has nothing to keep for a returning
                // client: forget it now (random session ids cannot pile up).
                self.forget(session);
            } else {
                self.set_expiry(session, Some(deadline));
            }
        }
    }

    pub fn session_of_conn(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn)?.as_deref()
    }

    /// Binds a connection to a session (the session of its latest request), creating the
    /// session for `addr` if it is new.
    pub fn bind(
        &mut self,
        conn: ConnId,
        session: &str,
        deadline_for_previous: Instant,
        addr: Option<AddrKey>,
    ) {
        let prev = self.conns.insert(conn, Some(session.to_string())).flatten();
        if let Some(p) = prev.filter(|p| p != session) {
            self.release_conn_of(&p, conn, deadline_for_previous);
        }
        self.ensure(session, addr);
        if let Some(s) = self.sessions.get_mut(session) {
            s.conn = Some(conn);
        }
        self.set_expiry(session, None);
    }

    fn set_expiry(&mut self, session: &str, at: Option<Instant>) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if let Some(old) = s.expires.take() {
            self.deadlines.remove(&(old, session.to_string()));
        }
        s.expires = at;
        if let Some(t) = at {
            self.deadlines.insert((t, session.to_string()));
        }
    }

    /// Creates the session if it does not exist, counting it for `addr`.
    pub fn ensure(&mut self, session: &str, addr: Option<AddrKey>) {
        if self.sessions.contains_key(session) {
            return;
        }
        if let Some(a) = addr {
            *self.by_addr.entry(a).or_default() += 1;
        }
        self.sessions.insert(
            session.to_string(),
            Session {
                addr,
                ..Session::default()
            },
        );
    }

    pub fn exists(&self, session: &str) -> bool {
        self.sessions.contains_key(session)
    }

    /// The address whose request created the session.
    pub fn addr_of(&self, session: &str) -> Option<AddrKey> {
        self.sessions.get(session)?.addr
    }

    /// Live sessions created from `addr`.
    pub fn count_for(&self, addr: AddrKey) -> usize {
        self.by_addr.get(&addr).copied().unwrap_or(0)
    }

    /// Drops a session from the table (no deadline or connection bookkeeping).
    fn forget(&mut self, session: &str) -> Option<Session> {
        self.subs_removed(session, usize::MAX);
        let s = self.sessions.remove(session)?;
        if let Some(a) = s.addr {
            take(&mut self.by_addr, a, 1);
        }
        Some(s)
    }

    /// Subscriptions held by sessions that `addr` created.
    pub fn subs_for(&self, addr: AddrKey) -> usize {
        self.subs_by_addr.get(&addr).copied().unwrap_or(0)
    }

    /// Subscriptions held by all sessions.
    pub fn subs_total(&self) -> usize {
        self.subs
    }

    pub fn subs_added(&mut self, session: &str) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        s.subs += 1;
        self.subs += 1;
        if let Some(a) = s.addr {
            *self.subs_by_addr.entry(a).or_default() += 1;
        }
    }

    /// `n` of the session's subscriptions are gone (`usize::MAX`: all of them).
    pub fn subs_removed(&mut self, session: &str, n: usize) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let n = n.min(s.subs);
        s.subs -= n;
        self.subs -= n;
        if let Some(a) = s.addr {
            take(&mut self.subs_by_addr, a, n);
        }
    }

    pub fn is_known(&self, session: &str) -> bool {
        self.sessions.get(session).is_some_and(|s| s.known)
    }

    pub fn remove(&mut self, session: &str) {
        self.set_expiry(session, None);
        if let Some(s) = self.forget(session) {
            if let Some(c) = s.conn {
                if let Some(slot) = self.conns.get_mut(&c) {
                    if slot.as_deref() == Some(session) {
                        *slot = None;
                    }
                }
            }
        }
    }

    /// The connection events of this session go to.
    pub fn conn_of(&self, session: &str) -> Option<ConnId> {
        self.sessions.get(session)?.conn
    }

    pub fn add_ref(&mut self, session: &str, id: &Arc<str>) {
        self.ensure(session, None);
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        s.known = true;
        // An id already there keeps its string (the set does not replace it).
        s.refs.insert(id.clone());
    }

    /// The string `session` keeps for the object `id` it references.
    #[cfg(test)]
    pub(crate) fn ref_string(&self, session: &str, id: &str) -> Option<&Arc<str>> {
        self.sessions.get(session)?.refs.get(id)
    }

    pub fn remove_ref(&mut self, session: &str, id: &str) {
        if let Some(s) = self.sessions.get_mut(session) {
            s.refs.remove(id);
        }
    }

    pub fn ref_count(&self, session: &str) -> usize {
        self.sessions.get(session).map_or(0, |s| s.refs.len())
    }

    pub fn refs(&self, session: &str) -> Vec<String> {
        self.sessions
            .get(session)
            .map(|s| s.refs.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default()
    }

    /// Sessions that hold at least one reference.
    pub fn holding(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.refs.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Sessions whose deadline passed; they are taken off the deadline list.
    pub fn expired(&mut self, now: Instant) -> Vec<String> {
        let mut out = vec![];
        while let Some((t, s)) = self.deadlines.first().cloned() {
            if t > now {
                break;
            }
            self.deadlines.remove(&(t, s.clone()));
            if let Some(sess) = self.sessions.get_mut(&s) {
                sess.expires = None;
            }
            out.push(s);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }
}

/// Lowers a count kept by address, dropping the entry at zero.
fn take(m: &mut HashMap<AddrKey, usize>, a: AddrKey, n: usize) {
    if let Some(c) = m.get_mut(&a) {
        *c = c.saturating_sub(n);
        if *c == 0 {
            m.remove(&a);
        }
    }
}
