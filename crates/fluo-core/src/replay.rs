//! The request replay cache: a request id seen again within the TTL in the same session is
//! answered with the stored outcome instead of running twice.

use fluo_api::KurentoError;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

type Outcome = Result<Value, KurentoError>;

/// How late expired answers may be dropped, to expire them in batches.
const EXPIRY_BATCH: std::time::Duration = std::time::Duration::from_secs(1);

/// Most answers kept at once (all sessions together).
const MAX_ENTRIES: usize = 50_000;

#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    entries: HashMap<(String, String), (Outcome, Instant)>,
    /// Insertion order with expiry, for cheap expiry (entries all share one TTL).
    order: VecDeque<(Instant, (String, String))>,
}

impl ReplayCache {
    pub fn get(&self, session: &str, id: &str) -> Option<Outcome> {
        self.entries
            .get(&(session.to_string(), id.to_string()))
            .map(|(o, _)| o.clone())
    }

    pub fn put(&mut self, session: &str, id: &str, outcome: Outcome, expires: Instant) {
        // Bounded: past MAX_ENTRIES the oldest answers are forgotten first.
        while self.order.len() >= MAX_ENTRIES {
            if let Some((t, key)) = self.order.pop_front() {
                if self.entries.get(&key).is_some_and(|(_, e)| *e == t) {
                    self.entries.remove(&key);
                }
            }
        }
        let key = (session.to_string(), id.to_string());
        self.entries.insert(key.clone(), (outcome, expires));
        self.order.push_back((expires, key));
    }

    /// When to call [`Self::expire`] next: one second after the oldest answer's expiry, so
    /// that a busy past is forgotten in one pass per second instead of one wake-up per answer
    /// (answers live up to a second longer than the TTL).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(t, _)| *t + EXPIRY_BATCH)
    }

    pub fn expire(&mut self, now: Instant) {
        while let Some((t, key)) = self.order.front() {
            if *t > now {
                break;
            }
            // Only drop the entry if it was not stored again later.
            if self.entries.get(key).is_some_and(|(_, e)| e <= &now) {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }
}
