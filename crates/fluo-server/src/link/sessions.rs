//! The entry's memory of which owners each client session lives on (learnt from the
//! owners' answers, or read from the store on a reconnect), so that a reconnect binds it
//! again there (with what the store records, docs/cluster.md "Reconnecting"); and which
//! sessions the store did not know lately. Bounded: past its limit the least recently used
//! session is forgotten, one at a time (what is written to the store comes from the links,
//! not from here: [`super::resume`]).

use fluo_cluster::Owner;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The most sessions remembered.
pub(crate) const SESSIONS: usize = 100_000;

/// Session id -> its owners, with the order of last use.
pub(crate) struct Sessions {
    limit: usize,
    /// Session id -> (its owners, one per node; its last use).
    map: HashMap<String, (Vec<Owner>, u64)>,
    /// Last use -> session id (the oldest first).
    order: BTreeMap<u64, String>,
    clock: u64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::with_limit(SESSIONS)
    }
}

impl Sessions {
    pub(crate) fn with_limit(limit: usize) -> Sessions {
        Sessions {
            limit: limit.max(1),
            map: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
        }
    }

    /// Session `s` has objects on (or was answered by) `o`. A node that restarted replaces
    /// its earlier boot.
    pub(crate) fn on(&mut self, s: &str, o: &Owner) {
        self.clock += 1;
        let now = self.clock;
        if let Some((owners, last)) = self.map.get_mut(s) {
            self.order.remove(last);
            *last = now;
            self.order.insert(now, s.to_string());
            match owners.iter_mut().find(|x| x.node == o.node) {
                Some(x) => x.boot = o.boot,
                None => owners.push(o.clone()),
            }
            return;
        }
        while self.map.len() >= self.limit {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
        self.map.insert(s.to_string(), (vec![o.clone()], now));
        self.order.insert(now, s.to_string());
    }

    /// The owners of session `s`.
    pub(crate) fn owners(&self, s: &str) -> Vec<Owner> {
        self.map.get(s).map(|e| e.0.clone()).unwrap_or_default()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// How long a session the store did not know is not asked about again.
pub(crate) const MISS_KEPT: Duration = Duration::from_secs(2);

/// The most sessions the store did not know that are remembered (then the memory starts
/// again).
const MISSES: usize = 10_000;

/// The sessions the store did not know lately (a client that names an unknown session
/// again and again asks the store at most once per [`MISS_KEPT`]).
#[derive(Default)]
pub(crate) struct Misses(HashMap<String, Instant>);

impl Misses {
    /// The store did not know `s`.
    pub(crate) fn missed(&mut self, s: &str) {
        if self.0.len() >= MISSES {
            self.0.retain(|_, at| at.elapsed() < MISS_KEPT);
            if self.0.len() >= MISSES {
                self.0.clear();
            }
        }
        self.0.insert(s.to_string(), Instant::now());
    }

    /// Whether the store did not know `s` within [`MISS_KEPT`].
    pub(crate) fn recent(&self, s: &str) -> bool {
        self.0.get(s).is_some_and(|at| at.elapsed() < MISS_KEPT)
    }
}

/// Owner `node` in `boot`, for the tests of this module and of [`super::resume`].
#[cfg(test)]
pub(super) fn owner(node: &str, boot: u64) -> Owner {
    Owner {
        node: fluo_cluster::NodeId::new(node).unwrap(),
        boot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_only_the_least_recently_used_session_is_forgotten() {
        let mut s = Sessions::with_limit(3);
        let b = owner("node-b", 1);
        for id in ["s1", "s2", "s3"] {
            s.on(id, &b);
        }
        // s1 used again: s2 is now the oldest.
        s.on("s1", &owner("node-c", 1));
        s.on("s4", &b);
        assert_eq!(s.len(), 3);
        assert!(s.owners("s2").is_empty(), "the oldest is forgotten");
        assert_eq!(s.owners("s1"), vec![b.clone(), owner("node-c", 1)]);
        assert_eq!(s.owners("s3"), vec![b.clone()]);
        assert_eq!(s.owners("s4"), vec![b.clone()]);
        // Many more sessions never exceed the limit, and the newest stay.
        for n in 0..1000 {
            s.on(&format!("x{n}"), &b);
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.owners("x999"), vec![b]);
    }

    #[test]
    fn misses_are_remembered_for_a_while_and_bounded() {
        let mut m = Misses::default();
        assert!(!m.recent("s"));
        m.missed("s");
        assert!(m.recent("s") && !m.recent("t"));
        for n in 0..MISSES + 5 {
            m.missed(&format!("x{n}"));
        }
        assert!(m.0.len() <= MISSES);
        assert!(m.recent(&format!("x{}", MISSES + 4)));
    }

    #[test]
    fn a_restarted_owner_replaces_its_earlier_boot() {
        let mut s = Sessions::with_limit(10);
        s.on("s", &owner("node-b", 1));
        s.on("s", &owner("node-b", 2));
        s.on("s", &owner("node-b", 2));
        assert_eq!(s.owners("s"), vec![owner("node-b", 2)]);
    }
}
