//! The request replay cache: a request id seen again within the TTL in the same session is
//! answered with the stored outcome instead of running twice.
//!
//! Entries are kept compact (one per request of every session, for the TTL): a result as
//! its JSON text, parsed again only when a retry asks for it (results with a fraction stay
//! values: serde_json's parser may be a unit in the last place off), and the key as one
//! shared string for the map and the expiry queue.

use fluo_api::KurentoError;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

type Outcome = Result<Value, KurentoError>;

/// An outcome as stored.
#[derive(Debug)]
enum Stored {
    /// A result without floating-point numbers, as JSON text.
    Text(Box<str>),
    /// A result with floating-point numbers.
    Value(Value),
    Error(KurentoError),
}

impl Stored {
    fn of(outcome: &Outcome) -> Stored {
        match outcome {
            Ok(v) if has_float(v) => Stored::Value(v.clone()),
            Ok(v) => Stored::Text(v.to_string().into_boxed_str()),
            Err(e) => Stored::Error(e.clone()),
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            // Written by serde_json from a `Value` without floats: it parses back to it.
            Stored::Text(text) => Ok(serde_json::from_str(text).unwrap_or(Value::Null)),
            Stored::Value(v) => Ok(v.clone()),
            Stored::Error(e) => Err(e.clone()),
        }
    }
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

/// How late expired answers may be dropped, to expire them in batches.
const EXPIRY_BATCH: std::time::Duration = std::time::Duration::from_secs(1);

/// Most answers kept at once (all sessions together).
const MAX_ENTRIES: usize = 50_000;

#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    entries: HashMap<Arc<str>, (Stored, Instant)>,
    /// Insertion order with expiry, for cheap expiry (entries all share one TTL).
    order: VecDeque<(Instant, Arc<str>)>,
}

/// One string for a (session, request id) pair; the session's length first, so that no two
/// pairs give the same key.
fn key(session: &str, id: &str) -> String {
    format!("{}:{session}{id}", session.len())
}

impl ReplayCache {
    pub fn get(&self, session: &str, id: &str) -> Option<Outcome> {
        let (stored, _) = self.entries.get(key(session, id).as_str())?;
        Some(stored.outcome())
    }

    pub fn put(&mut self, session: &str, id: &str, outcome: &Outcome, expires: Instant) {
        // Bounded: past MAX_ENTRIES the oldest answers are forgotten first.
        while self.order.len() >= MAX_ENTRIES {
            if let Some((t, key)) = self.order.pop_front() {
                if self.entries.get(&key).is_some_and(|(_, e)| *e == t) {
                    self.entries.remove(&key);
                }
            }
        }
        let stored = Stored::of(outcome);
        let key: Arc<str> = key(session, id).into();
        self.entries.insert(key.clone(), (stored, expires));
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

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_api::ErrorCode;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn a_stored_result_comes_back_equal() {
        let mut c = ReplayCache::default();
        let t = Instant::now() + Duration::from_secs(20);
        let v = json!({"value": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\"q\" \u{e9}", "sessionId": "s1",
            "n": 18446744073709551615u64, "f": 0.1, "neg": -3, "list": [true, null, {"b": 1, "a": 2}]});
        c.put("s1", "7", &Ok(v.clone()), t);
        c.put(
            "s1",
            "8",
            &Err(KurentoError::new(ErrorCode::NotEnoughResources, "full")),
            t,
        );
        assert_eq!(c.get("s1", "7").unwrap().unwrap(), v);
        let e = c.get("s1", "8").unwrap().unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::NotEnoughResources, "full")
        );
        assert!(c.get("s2", "7").is_none());
    }

    #[test]
    fn session_and_id_do_not_run_together() {
        let mut c = ReplayCache::default();
        let t = Instant::now() + Duration::from_secs(20);
        c.put("ab", "c", &Ok(json!(1)), t);
        assert!(c.get("a", "bc").is_none());
        assert_eq!(c.get("ab", "c").unwrap().unwrap(), json!(1));
    }

    #[test]
    fn entries_expire_and_a_later_put_survives_an_older_expiry() {
        let mut c = ReplayCache::default();
        let now = Instant::now();
        c.put("s", "1", &Ok(json!("old")), now + Duration::from_secs(1));
        c.put("s", "2", &Ok(json!("x")), now + Duration::from_secs(1));
        c.put("s", "1", &Ok(json!("new")), now + Duration::from_secs(5));
        c.expire(now + Duration::from_secs(2));
        assert!(c.get("s", "2").is_none());
        assert_eq!(c.get("s", "1").unwrap().unwrap(), json!("new"));
        c.expire(now + Duration::from_secs(6));
        assert!(c.get("s", "1").is_none());
        assert_eq!(c.next_expiry(), None);
    }
}
