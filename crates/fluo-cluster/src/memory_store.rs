//! The store in this process: a single node's (the server without `--cluster`), or several
//! nodes' in tests. The same rules as on Redis, records expiring by this process's clock.

use crate::{Error, NodeId, NodeRecord, Owner, Ownership, NODE_TTL};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The most session records kept: past it, a new session is recorded only once expired
/// ones are dropped (those recorded already are still written again).
const SESSIONS_KEPT: usize = 100_000;

/// An in-process store; clones share it.
#[derive(Clone, Default)]
pub struct InProcess(Arc<Mutex<Mem>>);

#[derive(Default)]
struct Mem {
    /// The last boot of each node id.
    boots: HashMap<NodeId, u64>,
    /// Node records and when they were written.
    nodes: HashMap<NodeId, (NodeRecord, Instant)>,
    /// Pipeline owners.
    pipelines: HashMap<String, Owner>,
    /// Client sessions: their owners, and when the record expires.
    sessions: HashMap<String, (Vec<Owner>, Instant)>,
}

impl Mem {
    /// Whether `owner`'s node is live in that boot.
    fn is_live(&self, owner: &Owner) -> bool {
        self.nodes
            .get(&owner.node)
            .is_some_and(|(r, at)| at.elapsed() < NODE_TTL && r.boot == owner.boot)
    }
}

impl InProcess {
    fn lock(&self) -> MutexGuard<'_, Mem> {
        // Nothing here panics while holding the lock; a poisoned one is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_boot(&self, id: &NodeId) -> u64 {
        let mut m = self.lock();
        let b = m.boots.entry(id.clone()).or_insert(0);
        *b += 1;
        *b
    }

    pub(crate) fn heartbeat(&self, record: NodeRecord) -> Result<(), Error> {
        let mut m = self.lock();
        let current = m.boots.get(&record.info.id).copied().unwrap_or(0);
        if current > record.boot {
            return Err(Error::Superseded {
                node: record.info.id,
                mine: record.boot,
                current,
            });
        }
        m.nodes
            .insert(record.info.id.clone(), (record, Instant::now()));
        Ok(())
    }

    pub(crate) fn leave(&self, id: &NodeId, boot: u64) {
        let mut m = self.lock();
        if m.nodes.get(id).is_some_and(|(r, _)| r.boot == boot) {
            m.nodes.remove(id);
        }
    }

    pub(crate) fn nodes(&self) -> Vec<NodeRecord> {
        let mut m = self.lock();
        m.nodes.retain(|_, (_, at)| at.elapsed() < NODE_TTL);
        m.nodes.values().map(|(r, _)| r.clone()).collect()
    }

    pub(crate) fn claim(&self, pipeline: &str, me: Owner) -> Result<(), Error> {
        let mut m = self.lock();
        if let Some(cur) = m.pipelines.get(pipeline) {
            if *cur != me && m.is_live(cur) {
                return Err(Error::Claimed {
                    pipeline: pipeline.to_string(),
                    owner: cur.clone(),
                });
            }
        }
        m.pipelines.insert(pipeline.to_string(), me);
        Ok(())
    }

    pub(crate) fn owner(&self, pipeline: &str) -> Ownership {
        let m = self.lock();
        match m.pipelines.get(pipeline) {
            None => Ownership::Unowned,
            Some(o) if m.is_live(o) => Ownership::Live(o.clone()),
            Some(o) => Ownership::Gone(o.clone()),
        }
    }

    pub(crate) fn release(&self, pipeline: &str, me: &Owner) -> Result<(), Error> {
        let mut m = self.lock();
        match m.pipelines.get(pipeline) {
            None => Ok(()),
            Some(cur) if cur == me => {
                m.pipelines.remove(pipeline);
                Ok(())
            }
            Some(cur) => Err(Error::NotOwner {
                pipeline: pipeline.to_string(),
                owner: cur.clone(),
            }),
        }
    }
}

impl InProcess {
    pub(crate) fn write_sessions(&self, sessions: &[&crate::SessionOwners], ttl: Duration) {
        let mut m = self.lock();
        let until = Instant::now() + ttl;
        for (s, owners) in sessions {
            if !m.sessions.contains_key(s) && m.sessions.len() >= SESSIONS_KEPT {
                let now = Instant::now();
                m.sessions.retain(|_, (_, at)| *at > now);
                if m.sessions.len() >= SESSIONS_KEPT {
                    continue;
                }
            }
            let e = m
                .sessions
                .entry(s.clone())
                .or_insert_with(|| (vec![], until));
            e.1 = until;
            for o in owners {
                if !e.0.contains(o) {
                    e.0.push(o.clone());
                }
            }
        }
    }

    pub(crate) fn session_owners(&self, session: &str) -> Vec<Owner> {
        let mut m = self.lock();
        match m.sessions.get(session) {
            Some((o, at)) if *at > Instant::now() => o.clone(),
            Some(_) => {
                m.sessions.remove(session);
                vec![]
            }
            None => vec![],
        }
    }
}
