//! Sessions: which connection speaks for a session, which objects it references, and when a
//! session whose connection went away expires.

use crate::engine::ConnId;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

#[derive(Debug, Default)]
struct Session {
    /// Object ids this session references.
    refs: HashSet<String>,
    /// The connection events for this session go to.
    conn: Option<ConnId>,
    /// When the session is dropped unless a connection binds it again.
    expires: Option<Instant>,
    /// The session has referenced at least one object (so `connect` may resume it).
    known: bool,
}

/// All sessions and the connection bindings.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    sessions: HashMap<String, Session>,
    conns: HashMap<ConnId, Option<String>>,
    deadlines: BTreeSet<(Instant, String)>,
}

impl Sessions {
    pub fn open_conn(&mut self, conn: ConnId) {
        self.conns.insert(conn, None);
    }

    pub fn close_conn(&mut self, conn: ConnId, deadline: Instant) {
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
                self.sessions.remove(session);
            } else {
                self.set_expiry(session, Some(deadline));
            }
        }
    }

    pub fn session_of_conn(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn)?.as_deref()
    }

    /// Binds a connection to a session (the session of its latest request).
    pub fn bind(&mut self, conn: ConnId, session: &str, deadline_for_previous: Instant) {
        let prev = self.conns.insert(conn, Some(session.to_string())).flatten();
        if let Some(p) = prev.filter(|p| p != session) {
            self.release_conn_of(&p, conn, deadline_for_previous);
        }
        self.ensure(session);
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

    pub fn ensure(&mut self, session: &str) {
        self.sessions.entry(session.to_string()).or_default();
    }

    pub fn is_known(&self, session: &str) -> bool {
        self.sessions.get(session).is_some_and(|s| s.known)
    }

    pub fn remove(&mut self, session: &str) {
        self.set_expiry(session, None);
        if let Some(s) = self.sessions.remove(session) {
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

    pub fn add_ref(&mut self, session: &str, id: &str) {
        let s = self.sessions.entry(session.to_string()).or_default();
        s.known = true;
        s.refs.insert(id.to_string());
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
            .map(|s| s.refs.iter().cloned().collect())
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
