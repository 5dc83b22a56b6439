//! The relay service's own connection: requests routed as a client's, answers matched by
//! id; the objects of creates answered after their wait are kept to be released.

use super::super::entry::{ClientHandle, Link, Pending};
use super::super::route::{Ask, Router};
use super::janitor::Leftovers;
use crate::core_loop::{Core, CoreMsg, OUTBOX};
use crate::lock;
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long one of the relay's requests may wait for its answer.
pub(super) const CALL_WAIT: Duration = Duration::from_secs(10);

/// How long the id of a `create` that got no answer in time is remembered (its late answer
/// then names an object to release).
const LATE_KEPT: Duration = Duration::from_secs(120);

/// A request of the connection: its id, text and session, and where its answer comes.
type Request = (
    u64,
    String,
    Option<String>,
    oneshot::Receiver<Result<Value, Value>>,
);

/// A request of this connection that failed here (`40004`, with `m`).
fn fail(m: String) -> Value {
    KurentoError::new(ErrorCode::ConnectError, m).to_json()
}

/// The address the entry's own connection is counted under.
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What the connection's reader shares with its requests.
#[derive(Default)]
pub(super) struct Inbox {
    /// The session the connection was last answered with.
    session: Mutex<Option<String>>,
    /// Answers awaited, by request id.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>,
    /// `create`s that got no answer in time, by request id (since when).
    late: Mutex<HashMap<u64, Instant>>,
    /// Where the objects of late creates go (released by the janitor).
    pub(super) leftovers: Mutex<Leftovers>,
}

impl Inbox {
    /// Request `id`, a `create` when `create`, got no answer in time.
    fn gave_up(&self, id: u64, create: bool) {
        lock(&self.waiting).remove(&id);
        if create {
            let now = Instant::now();
            let mut late = lock(&self.late);
            late.retain(|_, t| now.duration_since(*t) < LATE_KEPT);
            late.insert(id, now);
        }
    }

    /// An answer (or event) for the connection.
    pub(super) fn deliver(&self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let Some(id) = v.get("id").and_then(Value::as_u64) else {
            return;
        };
        if let Some(s) = v.pointer("/result/sessionId").and_then(Value::as_str) {
            *lock(&self.session) = Some(s.to_string());
        }
        if let Some(tx) = lock(&self.waiting).remove(&id) {
            let r = match v.get("error") {
                Some(e) => Err(e.clone()),
                None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            };
            let _ = tx.send(r);
            return;
        }
        // A create answered after its wait: nothing holds what it made but its pipeline.
        if lock(&self.late).remove(&id).is_some() {
            if let Some(made) = v.pointer("/result/value").and_then(Value::as_str) {
                tracing::info!(object = made, "relay: a late create's object to release");
                lock(&self.leftovers).add(made.to_string(), Instant::now());
            }
        }
    }
}

/// The entry's own connection: requests routed as a client's, answers matched by id.
pub(in crate::link) struct Rpc {
    conn: u64,
    handle: ClientHandle,
    core: Core,
    pub(super) inbox: Arc<Inbox>,
    next: AtomicU64,
}

impl Rpc {
    /// Opens the connection on this node's engine (`None` when the engine is gone).
    pub(in crate::link) async fn open(core: Core) -> Option<Rpc> {
        let conn = crate::ws::NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        let (out, mut rx) = mpsc::channel::<String>(OUTBOX);
        let (kill, _) = oneshot::channel();
        let opened = CoreMsg::Opened {
            conn,
            peer: LOCAL,
            outbox: out.clone(),
            kill,
            internal: true,
        };
        core.tx.send(opened).await.ok()?;
        super::super::set_internal(conn);
        let inbox: Arc<Inbox> = Arc::default();
        let reader = inbox.clone();
        tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                reader.deliver(&text);
            }
        });
        Some(Rpc {
            conn,
            handle: ClientHandle::new(out),
            core,
            inbox,
            next: AtomicU64::new(1),
        })
    }

    /// A new request `method(params)` of this connection (with its session): its id, its
    /// text, the session, and where its answer will come.
    fn request(&self, method: &str, mut params: Value) -> Request {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let session = lock(&self.inbox.session).clone();
        if let (Some(s), Some(p)) = (&session, params.as_object_mut()) {
            p.insert("sessionId".into(), Value::from(s.clone()));
        }
        let text = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (tx, rx) = oneshot::channel();
        lock(&self.inbox.waiting).insert(id, tx);
        (id, text.to_string(), session, rx)
    }

    /// This connection's request `text` in `session`, as the router and the links take it.
    fn ask<'a>(&'a self, session: Option<String>, text: &'a str) -> Ask<'a> {
        Ask {
            conn: self.conn,
            peer: LOCAL,
            client: &self.handle,
            session,
            text,
        }
    }

    /// Sends `method(params)` straight to the node at the other end of `link` (not routed:
    /// the request is about that node, e.g. its ServerManager); its result or its error, an
    /// error when no answer came within `wait`.
    pub(in crate::link) async fn call_on(
        &self,
        link: &Link,
        method: &str,
        params: Value,
        wait: Duration,
    ) -> Result<Value, Value> {
        let (id, text, session, rx) = self.request(method, params);
        let ask = self.ask(session, &text);
        if let Err(e) = link.send(&ask, Some(&Value::from(id)), Pending::Plain, text.clone()) {
            lock(&self.inbox.waiting).remove(&id);
            return Err(fail(e));
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r,
            _ => {
                lock(&self.inbox.waiting).remove(&id);
                Err(fail(format!("{method}: no answer within {wait:?}")))
            }
        }
    }

    /// Sends `method(params)` as this connection's request; its result or its error.
    pub(in crate::link) async fn call(
        &self,
        router: &Router,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let (id, text, session, rx) = self.request(method, params);
        let ask = self.ask(session, &text);
        if let Some(local) = Box::pin(router.route(ask)).await {
            let msg = CoreMsg::Text {
                conn: self.conn,
                text: local,
            };
            if self.core.tx.send(msg).await.is_err() {
                lock(&self.inbox.waiting).remove(&id);
                return Err(fail("the engine is stopping".into()));
            }
        }
        match tokio::time::timeout(CALL_WAIT, rx).await {
            Ok(Ok(r)) => r,
            _ => {
                self.inbox.gave_up(id, method == "create");
                let why = format!(
                    "relay: {method}: no answer within {} s",
                    CALL_WAIT.as_secs()
                );
                Err(fail(why))
            }
        }
    }

    /// Registers a request `id` as awaited (tests: answers delivered by hand).
    #[cfg(test)]
    pub(super) fn awaited(inbox: &Inbox, id: u64) -> oneshot::Receiver<Result<Value, Value>> {
        let (tx, rx) = oneshot::channel();
        lock(&inbox.waiting).insert(id, tx);
        rx
    }

    /// Request `id` (a `create` when `create`) timed out (tests).
    #[cfg(test)]
    pub(super) fn timed_out(inbox: &Inbox, id: u64, create: bool) {
        inbox.gave_up(id, create);
    }

    /// The session the connection was last answered with (tests).
    #[cfg(test)]
    pub(super) fn session(inbox: &Inbox) -> Option<String> {
        lock(&inbox.session).clone()
    }
}
