//! Answers the media plane learns on demand for endpoints (the public addresses from an
//! endpoint's own STUN server, the relayed addresses from its own turnURL), shared by every
//! endpoint: asked once per server, waited for a bounded time, forgotten when nothing came so
//! that a later endpoint asks again.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Per key: the (local, learnt) address pairs, `None` while the answer is awaited.
type Answers<K> = HashMap<K, Option<Vec<(SocketAddr, SocketAddr)>>>;

/// Answers learnt on demand, shared by every endpoint.
pub(crate) struct Learnt<K> {
    map: Mutex<Answers<K>>,
    done: Condvar,
    /// Most keys remembered at once.
    cap: usize,
}

impl<K: Eq + Hash + Clone> Learnt<K> {
    pub fn new(cap: usize) -> Self {
        Learnt {
            map: Mutex::new(HashMap::new()),
            done: Condvar::new(),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Answers<K>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `key` as asked; true if nobody had asked yet (the caller starts asking).
    pub fn request(&self, key: &K) -> bool {
        let mut m = self.lock();
        if m.contains_key(key) || m.len() >= self.cap {
            return false;
        }
        m.insert(key.clone(), None);
        true
    }

    /// The pairs learnt for `key`, waiting at most `max` for an answer in progress.
    pub fn wait(&self, key: &K, max: Duration) -> Vec<(SocketAddr, SocketAddr)> {
        let deadline = Instant::now() + max;
        let mut m = self.lock();
        loop {
            match m.get(key) {
                Some(Some(v)) => return v.clone(),
                None => return vec![],
                Some(None) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return vec![];
            }
            m = self
                .done
                .wait_timeout(m, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Records the answer for `key`; nothing found forgets the key, so that a later endpoint
    /// asks again (the server may have been down a moment).
    pub fn finish(&self, key: &K, found: Vec<(SocketAddr, SocketAddr)>) {
        let mut m = self.lock();
        if found.is_empty() {
            m.remove(key);
        } else {
            m.insert(key.clone(), Some(found));
        }
        drop(m);
        self.done.notify_all();
    }
}
