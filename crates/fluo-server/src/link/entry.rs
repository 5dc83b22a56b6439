//! The entry's side of the link: one authenticated connection per owner node, made on
//! demand and made again once broken (a failed attempt is remembered for [`RETRY_AFTER`]);
//! the answers and events that come back go to the client connections they are for. A link
//! that breaks (or stays silent for [`SILENCE`]) answers the requests still in flight there
//! with `40004 CONNECT_ERROR` and sends an `Error` event (`NODE_DOWN`) to each `Error`
//! subscription made there through it ([`super::lost`]); the client connections stay open
//! (their pipelines on other nodes go on). A client with nothing in flight and no `Error`
//! subscription there gets nothing. The sessions that held something there are kept
//! ([`lost::Kept`]): the owner closed their mirrors (starting their grace periods) and the
//! clients, still connected, will not reconnect, so the entry binds each again (a `ping`
//! naming it, on its connection's new mirror) as soon as a link to the same owner in the
//! same boot is made again: by a request, or by a retry every [`RETRY_AFTER`] until the owner
//! is gone for good.

use super::auth::{self, Challenge, Hello, Proof, Welcome};
use super::lost::{self, Kept, Key, Who};
use super::manager::{Answer, Answers, Asked, Outcome};
use super::route::{gone_for_good, object_of, rebind_id, Ask};
use super::sessions::{Misses, Sessions};
use super::{read_json, write_json, Frame, CONNECT, LINK_QUEUE, PATH, RETRY_AFTER};
use crate::cluster::View;
use crate::config::ClusterSecret;
use crate::lock;
use fluo_api::jsonrpc::Response as RpcResponse;
use fluo_api::{ErrorCode, KurentoError};
use fluo_cluster::{NodeId, NodeRecord, Owner};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;

/// What an answer in flight is for (what its arrival tells the entry).
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    /// Nothing beyond the answer itself.
    Plain,
    /// A `create MediaPipeline` placed on the owner: the new pipeline is the owner's.
    Pipeline,
    /// A `release` of this pipeline: once done, it is no one's.
    Release(String),
    /// A `create`, `subscribe` or `transaction` in this pipeline: once done, the client's
    /// session holds something there.
    Hold(String),
    /// A `subscribe` to the `Error` event of `object`, in pipeline `pipeline`: once done,
    /// the session holds something there, and the subscription is recorded (its client gets
    /// an `Error` event if the link breaks).
    Subscribe { pipeline: String, object: String },
    /// An `unsubscribe` of this subscription: once done, it is forgotten.
    Unsubscribe(String),
    /// A `release` of this object (not a pipeline): once done, its subscriptions are gone.
    Released(String),
    /// A request of the entry's own (a session bound again): the client never sees it.
    Swallow,
    /// A client session's subscription to a ServerManager event copied to the owner by the
    /// entry, or the bind of a session holding such copies there ([`super::manager`]): the
    /// client never sees the answer, which goes to `answers` (as does its loss with the
    /// link).
    Copied {
        session: String,
        asked: Asked,
        answers: Answers,
    },
    /// A request naming `0`, an object of another pipeline than the called object's: the
    /// owner's "not found" of that object is answered as KMS answers the mix of two
    /// pipelines (40004).
    Foreign(String),
}

impl Pending {
    /// What the answer to `req`, a request about an object of pipeline `p` forwarded to its
    /// owner, will tell the entry.
    pub(crate) fn of(req: &Map<String, Value>, p: &str) -> Pending {
        let object = object_of(req);
        let param = |k: &str| {
            req.get("params")
                .and_then(|x| x.get(k))
                .and_then(Value::as_str)
        };
        match req.get("method").and_then(Value::as_str) {
            Some("release") if object == Some(p) => Pending::Release(p.to_string()),
            Some("release") => object.map_or(Pending::Plain, |o| Pending::Released(o.into())),
            Some("subscribe") => match (object, param("type")) {
                (Some(o), Some(lost::ERROR)) => Pending::Subscribe {
                    pipeline: p.to_string(),
                    object: o.to_string(),
                },
                _ => Pending::Hold(p.to_string()),
            },
            Some("unsubscribe") => {
                param("subscription").map_or(Pending::Plain, |s| Pending::Unsubscribe(s.into()))
            }
            Some("create" | "transaction") => Pending::Hold(p.to_string()),
            _ => Pending::Plain,
        }
    }

    /// Whether the request is the entry's own (its answer is not the client's).
    fn own(&self) -> bool {
        matches!(self, Pending::Swallow | Pending::Copied { .. })
    }
}

/// The most pipelines whose owner is remembered (then the memory starts again).
const REMEMBERED: usize = 100_000;

/// What the entry learnt from its links: where each pipeline it forwarded to is owned
/// (ownership only changes when the owner dies: then the entry forgets it), and which owners
/// each client session was forwarded to (they bind it again when the client reconnects).
pub(crate) struct Known {
    owners: Mutex<HashMap<String, Owner>>,
    sessions: Mutex<Sessions>,
    /// The sessions the store did not know lately.
    misses: Mutex<Misses>,
    /// A session came to hold something since the sessions were last written.
    touched: AtomicBool,
    /// Where the pipelines released through this entry are remembered.
    view: Arc<View>,
}

impl Known {
    pub(crate) fn new(view: Arc<View>) -> Known {
        Known {
            owners: Mutex::default(),
            sessions: Mutex::default(),
            misses: Mutex::default(),
            touched: AtomicBool::new(false),
            view,
        }
    }

    pub(crate) fn owner(&self, p: &str) -> Option<Owner> {
        lock(&self.owners).get(p).cloned()
    }

    pub(crate) fn owned(&self, p: &str, o: Owner) {
        let mut owners = lock(&self.owners);
        if owners.len() >= REMEMBERED {
            owners.clear();
        }
        owners.insert(p.to_string(), o);
    }

    pub(crate) fn forget(&self, p: &str) {
        lock(&self.owners).remove(p);
    }

    /// Pipeline `p` was released through this entry: no one's, and remembered as released.
    fn released(&self, p: &str) {
        self.forget(p);
        self.view.released(p);
    }

    /// Session `s` was answered by `o` (only the owners' answers are trusted for this).
    pub(crate) fn session_on(&self, s: &str, o: &Owner) {
        lock(&self.sessions).on(s, o);
    }

    /// The owners that answered for session `s`.
    pub(crate) fn session_owners(&self, s: &str) -> Vec<Owner> {
        lock(&self.sessions).owners(s)
    }

    /// A client session came to hold something on an owner (or here): the sessions the
    /// entry writes to the store changed.
    pub(crate) fn touch(&self) {
        self.touched.store(true, Ordering::Release);
    }

    /// Whether a session came to hold something since the last call.
    pub(crate) fn take_touched(&self) -> bool {
        self.touched.swap(false, Ordering::AcqRel)
    }

    /// The store did not know session `s`.
    pub(crate) fn missed(&self, s: &str) {
        lock(&self.misses).missed(s);
    }

    /// Whether the store did not know session `s` lately.
    pub(crate) fn missed_lately(&self, s: &str) -> bool {
        lock(&self.misses).recent(s)
    }
}

/// A client connection of the entry, as the links know it: where its answers and events go,
/// and how it is closed (as the engine closes a direct client that does not read).
#[derive(Clone)]
pub(crate) struct ClientHandle {
    pub out: mpsc::Sender<String>,
    /// How the connection is asked to close (its task waits on it).
    pub close: Arc<Closer>,
    /// The session the connection was last answered with, as its writer sees it (a client's
    /// WebSocket connection; not the entry's own).
    seen: Option<Arc<crate::ws::Seen>>,
}

/// Asks a client connection to close.
#[derive(Default)]
pub(crate) struct Closer {
    /// Notified when the connection is to be closed.
    pub now: Notify,
    /// Whether it was asked to close for not reading (logged once, not once per message).
    unread: AtomicBool,
}

impl Closer {
    fn notify_one(&self) {
        self.now.notify_one();
    }
}

impl ClientHandle {
    /// The handle of a client connection whose messages go to `out`.
    pub(crate) fn new(out: mpsc::Sender<String>) -> ClientHandle {
        ClientHandle {
            out,
            close: Arc::default(),
            seen: None,
        }
    }

    /// The handle, the connection's session read from `seen` (which its writer keeps).
    pub(crate) fn seeing(mut self, seen: Arc<crate::ws::Seen>) -> ClientHandle {
        self.seen = Some(seen);
        self
    }

    /// The session the connection was last answered with, when it is known here.
    pub(crate) fn session(&self) -> Option<String> {
        self.seen.as_ref().and_then(|s| s.session())
    }

    /// Runs `then` once the connection is answered in session `s` (its writer sees the
    /// answer go out); whether it will be (a connection whose answers are not seen here: no).
    pub(crate) fn when_answered_in(&self, s: &str, then: crate::ws::Waiting) -> bool {
        let Some(seen) = &self.seen else {
            return false;
        };
        seen.when_answered_in(s, then);
        true
    }

    /// Queues `text` for the client; a client whose queue is full is closed.
    pub(crate) fn send(&self, conn: u64, text: String) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.out.try_send(text) {
            if !self.close.unread.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    conn,
                    "link: closing a client connection that does not read its answers"
                );
            }
            self.close.notify_one();
        }
    }
}

/// The entry's links, one per owner node.
pub(crate) struct Links {
    me: NodeId,
    secret: Arc<ClusterSecret>,
    /// How long a link may stay silent before it counts as broken (`--peer-silence-ms`).
    silence: Duration,
    known: Arc<Known>,
    slots: Mutex<HashMap<NodeId, Slot>>,
    /// The last link made to each node (read without waiting for a connect in progress).
    current: Mutex<HashMap<NodeId, Arc<Link>>>,
    /// What the client connections hold on each owner, across its links.
    kept: Arc<Mutex<Kept>>,
}

/// Where the link to one node is kept; locked while it is being made, so that concurrent
/// requests make one.
type Slot = Arc<tokio::sync::Mutex<SlotState>>;

#[derive(Default)]
struct SlotState {
    link: Option<Arc<Link>>,
    /// The last failed attempt: when, to which boot, why.
    failed: Option<(Instant, u64, String)>,
}

/// One authenticated link to an owner.
pub(crate) struct Link {
    node: NodeId,
    boot: u64,
    tx: mpsc::Sender<Frame>,
    alive: AtomicBool,
    state: Mutex<LinkState>,
    /// The [`Links`]' record of what the client connections hold, across links.
    kept: Arc<Mutex<Kept>>,
}

#[derive(Default)]
struct LinkState {
    /// The entry's client connections that opened a mirror on the owner.
    clients: HashMap<u64, Client>,
    /// Answers awaited, by client connection and request id (as JSON text).
    pending: HashMap<(u64, String), Pending>,
    /// The owner's pipelines the client sessions hold something in (made through this link,
    /// or subscribed to), by pipeline: until the pipeline is released.
    held: HashMap<String, HashSet<String>>,
    /// The sessions bound again on the owner by a reconnect (what they hold there is not
    /// known to this link: counted as holding).
    bound: HashSet<String>,
}

/// A client connection with a mirror on the owner.
struct Client {
    handle: ClientHandle,
    /// The session it speaks for (as last sent or answered), or `#conn` before it has one.
    session: String,
    /// Its address (the owner's admission counts it).
    peer: IpAddr,
}

impl LinkState {
    /// Client connection `conn` ended (or its mirror did): its requests in flight, and what
    /// its session held, are no longer its (a reconnect binds the session again).
    fn forget(&mut self, conn: u64) -> Option<Client> {
        let c = self.clients.remove(&conn)?;
        self.pending.retain(|(k, _), _| *k != conn);
        if !self.clients.values().any(|o| o.session == c.session) {
            self.bound.remove(&c.session);
            self.held.retain(|_, s| {
                s.remove(&c.session);
                !s.is_empty()
            });
        }
        Some(c)
    }

    /// Whether the client connection `conn`'s session holds something on the owner: a
    /// pipeline or a subscription made there, or it was bound again there (its session is
    /// bound again on a new link if this one breaks).
    fn holds(&self, conn: u64) -> bool {
        let Some(c) = self.clients.get(&conn) else {
            return false;
        };
        self.bound.contains(&c.session) || self.held.values().any(|s| s.contains(&c.session))
    }
}

/// A request id as a map key.
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// The error answer to request `id`.
pub(crate) fn error_text(id: Option<Value>, code: ErrorCode, message: String) -> String {
    RpcResponse::error(id, KurentoError::new(code, message)).to_text()
}

/// The owner's answer `v` as a client of one KMS gets it for a request naming `foreign`, an
/// object of another pipeline: its 40101 about that object becomes 40004.
fn foreign_error(v: &Value, foreign: &str) -> Option<String> {
    let e = v.get("error")?;
    let about = e.get("message")?.as_str()?.contains(foreign);
    if e.get("code")?.as_i64()? != ErrorCode::MediaObjectNotFound.code() || !about {
        return None;
    }
    let message = format!(
        "Cannot use objects of different media pipelines together: '{foreign}' is of another pipeline"
    );
    Some(error_text(
        v.get("id").cloned(),
        ErrorCode::ConnectError,
        message,
    ))
}

/// The message of an error for a request whose owner `node` cannot be reached now.
pub(crate) fn unreachable(node: &NodeId, why: &str) -> String {
    format!("the node {node} that holds this object is unreachable (try again): {why}")
}

impl Links {
    pub(crate) fn new(
        me: NodeId,
        (secret, silence): (Arc<ClusterSecret>, Duration),
        known: Arc<Known>,
    ) -> Links {
        Links {
            me,
            secret,
            silence,
            known,
            slots: Mutex::default(),
            current: Mutex::default(),
            kept: Arc::default(),
        }
    }

    /// The live link to `node`, connected now if there is none (bounded by [`CONNECT`]; a
    /// failure is answered again without trying for [`RETRY_AFTER`]).
    pub(crate) async fn get(self: &Arc<Self>, node: &NodeRecord) -> Result<Arc<Link>, String> {
        if let Some(l) = lock(&self.current).get(&node.info.id) {
            if l.alive.load(Ordering::Acquire) && l.boot == node.boot {
                return Ok(l.clone());
            }
        }
        let slot = lock(&self.slots)
            .entry(node.info.id.clone())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(l) = slot.link.as_ref() {
            if l.alive.load(Ordering::Acquire) && l.boot == node.boot {
                return Ok(l.clone());
            }
            l.alive.store(false, Ordering::Release);
        }
        if let Some((at, boot, why)) = &slot.failed {
            if *boot == node.boot && at.elapsed() < RETRY_AFTER {
                return Err(why.clone());
            }
        }
        let connect = connect(
            node,
            &self.me,
            (&self.secret.0, self.silence),
            (self.known.clone(), self.kept.clone(), Arc::downgrade(self)),
        );
        let link = match tokio::time::timeout(CONNECT, connect).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return Err(slot.fail(node.boot, e)),
            Err(_) => {
                let e = format!("no answer within {} ms", CONNECT.as_millis());
                return Err(slot.fail(node.boot, e));
            }
        };
        tracing::info!(node = %node.info.id, peer = %node.info.peer, "link: connected");
        slot.link = Some(link.clone());
        slot.failed = None;
        lock(&self.current).insert(node.info.id.clone(), link.clone());
        self.rebind(&link);
        Ok(link)
    }

    /// Binds again, on `link`, the sessions a broken link to the same owner (and boot) left
    /// without a connection there: a `ping` naming the session, from its client
    /// connection's new mirror, as a reconnecting client's would (the answer is the entry's).
    /// One that does not fit waits for the next try.
    fn rebind(&self, link: &Link) {
        let key = (link.node.clone(), link.boot);
        let orphans = lock(&self.kept).take_orphans(&key);
        let mut bound = 0;
        for (conn, handle, peer, session) in orphans {
            let own = rebind_id();
            let text = serde_json::json!({"jsonrpc": "2.0", "id": own, "method": "ping",
                "params": {"sessionId": session}});
            let ask = Ask {
                conn,
                peer,
                client: &handle,
                session: Some(session.clone()),
                text: "",
            };
            match link.send(&ask, Some(&own), Pending::Swallow, text.to_string()) {
                Ok(()) => {
                    link.bound(conn, &session);
                    bound += 1;
                }
                Err(_) => lock(&self.kept).orphan(&key, conn, (&handle, peer, &session)),
            }
        }
        if bound > 0 {
            self.known.touch();
            tracing::info!(node = %link.node, sessions = bound, "link: sessions bound again on the owner after its link broke");
        }
    }

    /// After a link to `node` broke leaving sessions to bind again: tries every
    /// [`RETRY_AFTER`] to link again (to the node as listed, else as it was), until they
    /// are bound, their connections ended, or the node is gone for good (then they are
    /// forgotten with its objects).
    /// (Boxed: it makes links, whose tasks start it.)
    fn revive(
        links: Weak<Links>,
        node: NodeRecord,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(Links::reviving(links, node))
    }

    async fn reviving(links: Weak<Links>, node: NodeRecord) {
        let key = (node.info.id.clone(), node.boot);
        loop {
            tokio::time::sleep(RETRY_AFTER).await;
            let Some(links) = links.upgrade() else {
                return;
            };
            if !lock(&links.kept).has_orphans(&key) {
                return;
            }
            let owner = Owner {
                node: key.0.clone(),
                boot: key.1,
            };
            if gone_for_good(&links.known.view, &owner) {
                lock(&links.kept).gone(&key);
                tracing::info!(node = %key.0, "link: the node is gone for good; its sessions are not bound again");
                return;
            }
            match links.live(&key.0, key.1) {
                Some(link) => links.rebind(&link),
                None => {
                    let record = links.known.view.record(&key.0, key.1);
                    if let Err(e) = links.get(record.as_ref().unwrap_or(&node)).await {
                        tracing::debug!(node = %key.0, "link: not linked again yet: {e}");
                    }
                }
            }
        }
    }

    /// Makes `link` the current one to its node (for tests).
    #[cfg(test)]
    pub(crate) fn put(&self, link: Arc<Link>) {
        lock(&self.current).insert(link.node.clone(), link);
    }

    /// The live link to `node` in `boot`, if there is one (none is made).
    pub(crate) fn live(&self, node: &NodeId, boot: u64) -> Option<Arc<Link>> {
        lock(&self.current)
            .get(node)
            .filter(|l| l.alive.load(Ordering::Acquire) && l.boot == boot)
            .cloned()
    }

    /// How many client connections hold something on an owner (counted once however many
    /// owners they use), on every link still current, alive or not (one marked stale while
    /// its replacement connects keeps its clients), and those whose link broke and whose
    /// sessions wait to be bound again there (the owner may come back with their objects).
    pub(crate) fn holders(&self) -> usize {
        let links: Vec<_> = lock(&self.current).values().cloned().collect();
        let mut conns: HashSet<u64> = lock(&self.kept).orphan_conns().collect();
        for l in &links {
            let st = lock(&l.state);
            conns.extend(st.clients.keys().filter(|c| st.holds(**c)).copied());
        }
        conns.len()
    }

    /// Adds to `out` each session a client connection holds something for on an owner (on
    /// a link still current, or waiting to be bound again there), with those owners: what
    /// the store keeps ([`super::resume`]). Sessions the clients merely named are not.
    pub(crate) fn held_sessions(&self, out: &mut HashMap<String, Vec<Owner>>) {
        fn add(out: &mut HashMap<String, Vec<Owner>>, s: &str, o: &Owner) {
            let owners = out.entry(s.to_string()).or_default();
            if !owners.contains(o) {
                owners.push(o.clone());
            }
        }
        let links: Vec<_> = lock(&self.current).values().cloned().collect();
        for l in &links {
            let owner = l.owner();
            let st = lock(&l.state);
            for s in st.bound.iter().chain(st.held.values().flatten()) {
                add(out, s, &owner);
            }
        }
        for ((node, boot), s) in lock(&self.kept).sessions() {
            let owner = Owner {
                node: node.clone(),
                boot: *boot,
            };
            add(out, s, &owner);
        }
    }

    /// Whether client connection `conn` speaks for session `s` and holds something for it
    /// on an owner (made there through this entry, or bound again there).
    pub(crate) fn holds_session(&self, conn: u64, s: &str) -> bool {
        let links: Vec<_> = lock(&self.current).values().cloned().collect();
        links.iter().any(|l| {
            let st = lock(&l.state);
            st.clients.get(&conn).is_some_and(|c| c.session == s) && st.holds(conn)
        })
    }

    /// The client connection `conn` ended: each owner it used ends its mirror.
    pub(crate) fn closed(&self, conn: u64) {
        lock(&self.kept).closed(conn);
        let links: Vec<_> = lock(&self.current).values().cloned().collect();
        for l in links {
            l.closed(conn);
        }
    }
}

impl SlotState {
    fn fail(&mut self, boot: u64, why: String) -> String {
        self.failed = Some((Instant::now(), boot, why.clone()));
        why
    }
}

impl Link {
    /// The boot of the owner at the other end.
    pub(crate) fn boot(&self) -> u64 {
        self.boot
    }

    /// The owner at the other end.
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            node: self.node.clone(),
            boot: self.boot,
        }
    }

    /// Sends the client connection `conn`'s request `text` (answered as `pending` when it
    /// has an `id`), opening its mirror first. `Err` when the link is down or full. Once
    /// the `open` went out the client is kept (its `close` follows when it ends), whether or
    /// not the request fitted; both are queued under the state's lock, so that a `close`
    /// cannot overtake them.
    pub(crate) fn send(
        &self,
        ask: &Ask<'_>,
        id: Option<&Value>,
        pending: Pending,
        text: String,
    ) -> Result<(), String> {
        let conn = ask.conn;
        let mut st = lock(&self.state);
        if !self.alive.load(Ordering::Acquire) {
            return Err("the link is down".into());
        }
        let congested = || Err("the link is congested".to_string());
        let client = match st.clients.entry(conn) {
            Entry::Occupied(c) => c.into_mut(),
            Entry::Vacant(v) => {
                let peer = ask.peer;
                let internal = super::is_internal(conn);
                let open = Frame::Open {
                    conn,
                    peer,
                    internal,
                };
                if self.tx.try_send(open).is_err() {
                    return congested();
                }
                let session = format!("#{conn}");
                let handle = ask.client.clone();
                v.insert(Client {
                    handle,
                    session,
                    peer,
                })
            }
        };
        if let Some(s) = ask.session.as_deref() {
            if client.session != s {
                client.session = s.to_string();
            }
        }
        if self.tx.try_send(Frame::Text { conn, text }).is_err() {
            return congested();
        }
        if let Some(i) = id {
            st.pending.insert((conn, id_key(i)), pending);
        }
        Ok(())
    }

    /// Session `s` was bound again on the owner through this link by client connection
    /// `conn` (a reconnect): it counts as holding something there.
    pub(crate) fn bound(&self, conn: u64, s: &str) {
        let mut st = lock(&self.state);
        st.bound.insert(s.to_string());
        if let Some(c) = st.clients.get_mut(&conn) {
            c.session = s.to_string();
        }
    }

    /// The client connection `conn` ended: the owner closes its mirror (the close waits for
    /// room in a full queue rather than being lost, which would hold the mirror's session).
    fn closed(&self, conn: u64) {
        let mut st = lock(&self.state);
        if st.forget(conn).is_some() {
            if let Err(mpsc::error::TrySendError::Full(f)) = self.tx.try_send(Frame::Close { conn })
            {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(f).await;
                });
            }
        }
    }

    /// The owner's engine ended the mirror of `conn`: the client connection is closed, as
    /// the engine closes a direct one.
    fn dropped(&self, conn: u64) {
        let client = { lock(&self.state).forget(conn) };
        if let Some(c) = client {
            tracing::warn!(conn, node = %self.node, "link: the owner dropped this client's mirror; closing the client connection");
            c.handle.close.notify_one();
        }
    }

    /// An owner's message for client connection `conn`.
    fn deliver(&self, known: &Known, conn: u64, text: String) {
        let mut st = lock(&self.state);
        let Some(client) = st.clients.get(&conn).map(|c| c.handle.clone()) else {
            return;
        };
        // Answers begin with their id, or with their error (the engine's JSON has its keys
        // in order: `error`, `id`, `jsonrpc`, `result`); events are notifications.
        if text.starts_with("{\"id\"") || text.starts_with("{\"error\"") {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                let done = v
                    .get("id")
                    .and_then(|id| st.pending.remove(&(conn, id_key(id))));
                let swallow = done.as_ref().is_some_and(Pending::own);
                if let Some(Pending::Copied {
                    session,
                    asked,
                    answers,
                }) = &done
                {
                    let outcome = v
                        .get("error")
                        .cloned()
                        .map_or(Outcome::Done, Outcome::Refused);
                    lock(answers).push(Answer {
                        node: self.node.clone(),
                        session: session.clone(),
                        asked: asked.clone(),
                        outcome,
                    });
                }
                if let Some(Pending::Foreign(o)) = &done {
                    tracing::debug!(conn, object = %o, answer = %text, "link: the answer to a request naming another pipeline's object");
                    if let Some(t) = foreign_error(&v, o) {
                        drop(st);
                        client.send(conn, t);
                        return;
                    }
                }
                self.learn(&mut st, known, conn, done, &v);
                if swallow {
                    return;
                }
            }
        }
        drop(st);
        client.send(conn, text);
    }

    /// What an answer to client connection `conn` tells about ownership, sessions and what
    /// the client holds on the owner.
    fn learn(
        &self,
        st: &mut LinkState,
        known: &Known,
        conn: u64,
        done: Option<Pending>,
        answer: &Value,
    ) {
        let Some(result) = answer.get("result") else {
            return;
        };
        let client = st.clients.get_mut(&conn);
        let session = match (result.get("sessionId").and_then(Value::as_str), client) {
            (Some(s), Some(c)) => {
                known.session_on(s, &self.owner());
                if c.session != s {
                    c.session = s.to_string();
                }
                s.to_string()
            }
            (_, Some(c)) => c.session.clone(),
            (_, None) => return,
        };
        let held = match done {
            Some(Pending::Pipeline) => match result["value"].as_str() {
                Some(p) => {
                    known.owned(p, self.owner());
                    p.to_string()
                }
                None => return,
            },
            Some(Pending::Hold(p)) => p,
            Some(Pending::Subscribe { pipeline, object }) => {
                if let (Some(id), Some(c)) = (result["value"].as_str(), st.clients.get(&conn)) {
                    let who = (&c.handle, c.peer, session.as_str());
                    lock(&self.kept).subscribed(&self.key(), conn, who, id, &object);
                }
                pipeline
            }
            Some(Pending::Release(p)) => {
                known.released(&p);
                st.held.remove(&p);
                lock(&self.kept).released(&self.key(), &p);
                return;
            }
            Some(Pending::Released(o)) => {
                lock(&self.kept).released(&self.key(), &o);
                return;
            }
            Some(Pending::Unsubscribe(id)) => {
                lock(&self.kept).unsubscribed(&self.key(), &id);
                return;
            }
            _ => return,
        };
        if st.held.entry(held).or_default().insert(session) {
            known.touch();
        }
    }

    /// The owner at the other end, as [`Kept`] keys it.
    fn key(&self) -> Key {
        (self.node.clone(), self.boot)
    }

    /// The link broke: each `Error` subscription made on the owner (through this link or an
    /// earlier one) gets an `Error` event (`NODE_DOWN`), once per session and object, and
    /// each request in flight here (but the entry's own) is answered `40004 CONNECT_ERROR`
    /// at once; the client connections stay open. The sessions that held something there
    /// are kept to be bound again on a new link (whether there are any is returned).
    /// Clients with nothing in flight and no `Error` subscription there get nothing, as KMS
    /// sends events only to their subscribers.
    fn broke(&self, why: &str) -> bool {
        self.alive.store(false, Ordering::Release);
        let st = std::mem::take(&mut *lock(&self.state));
        let key = self.key();
        let (holders, subscribers) = {
            let mut kept = lock(&self.kept);
            for (conn, c) in st.clients.iter().filter(|(conn, _)| st.holds(**conn)) {
                let who: Who<'_> = (&c.handle, c.peer, &c.session);
                kept.orphan(&key, *conn, who);
            }
            (kept.has_orphans(&key), kept.subscribers(&key))
        };
        let now = lost::wall_ms();
        let mut told = HashSet::new();
        for (conn, handle, session, objects) in &subscribers {
            for object in objects {
                if told.insert((session.as_str(), object.as_str())) {
                    handle.send(*conn, lost::event(object, &self.node, why, now));
                }
            }
        }
        let mut answered = 0;
        for ((conn, id), p) in &st.pending {
            if let Pending::Copied {
                session,
                asked,
                answers,
            } = p
            {
                lock(answers).push(Answer {
                    node: self.node.clone(),
                    session: session.clone(),
                    asked: asked.clone(),
                    outcome: Outcome::Lost,
                });
            }
            let Some(c) = st.clients.get(conn) else {
                continue;
            };
            if !p.own() {
                c.handle.send(*conn, lost::answer(id, &self.node, why));
                answered += 1;
            }
        }
        tracing::warn!(node = %self.node, clients = st.clients.len(), error_events = told.len(), answered, "link: the clients of the broken link told: its requests in flight answered, its Error subscriptions sent an Error event");
        holders
    }
}

/// Connects and authenticates to `node`; the link's reader and writer run as tasks.
async fn connect(
    node: &NodeRecord,
    me: &NodeId,
    (secret, silence): (&[u8], Duration),
    (known, kept, links): (Arc<Known>, Arc<Mutex<Kept>>, Weak<Links>),
) -> Result<Arc<Link>, String> {
    let url = format!("ws://{}/{PATH}", node.info.peer);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(super::ws_config()), true)
            .await
            .map_err(|e| e.to_string())?;
    let nc = auth::nonce();
    let to = auth::Target {
        id: node.info.id.as_str(),
        boot: node.boot,
    };
    let hello = Hello {
        hello: auth::PROTOCOL.into(),
        node: me.to_string(),
        nonce: nc.clone(),
        to: to.id.to_string(),
        boot: to.boot,
    };
    if nc.is_empty() || !write_json(&mut ws, &hello).await {
        return Err("the handshake failed".into());
    }
    let refused = "it refused this node (is the cluster secret the same on both?)";
    let ch: Challenge = read_json(&mut ws).await.ok_or(refused)?;
    if !auth::is_nonce(&ch.nonce)
        || !auth::verify(&auth::owner_mac(secret, &nc, &ch.nonce, &to), &ch.mac)
    {
        return Err("it did not prove it knows the cluster secret".into());
    }
    let proof = Proof {
        mac: auth::entry_mac(secret, &ch.nonce, &nc, me.as_str(), &to),
    };
    if !write_json(&mut ws, &proof).await {
        return Err(refused.into());
    }
    match read_json::<Welcome, _>(&mut ws).await {
        Some(Welcome { ok: true }) => {}
        _ => return Err(refused.into()),
    }
    let (sink, source) = ws.split();
    let (tx, rx) = mpsc::channel::<Frame>(LINK_QUEUE);
    let link = Arc::new(Link {
        node: node.info.id.clone(),
        boot: node.boot,
        tx,
        alive: AtomicBool::new(true),
        state: Mutex::default(),
        kept,
    });
    let record = node.clone();
    let writer = tokio::spawn(super::write_frames(sink, rx));
    let reader = link.clone();
    tokio::spawn(async move {
        let why = read_frames(&reader, &known, source, silence).await;
        writer.abort();
        tracing::warn!(node = %reader.node, "link: lost: {why}");
        if reader.broke(&why) {
            Links::revive(links, record).await;
        }
    });
    Ok(link)
}

/// Hands the owner's frames to the client connections until the link ends or stays silent
/// for `silence` (the owner pings every second); why it ended.
async fn read_frames<S>(link: &Link, known: &Known, mut source: S, silence: Duration) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = match tokio::time::timeout(silence, source.next()).await {
            Ok(m) => m,
            Err(_) => return format!("nothing received for {} ms", silence.as_millis()),
        };
        match m {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<Frame>(t.as_str()) {
                Ok(Frame::Text { conn, text }) => link.deliver(known, conn, text),
                Ok(Frame::Close { conn }) => link.dropped(conn),
                Ok(Frame::Open { .. }) => {}
                Err(e) => tracing::debug!("link: an unreadable frame: {e}"),
            },
            Some(Ok(Message::Close(_))) | None => return "the connection closed".to_string(),
            Some(Err(e)) => {
                tracing::debug!(node = %link.node, "link: read error: {e}");
                return lost_why(&e).to_string();
            }
            Some(Ok(_)) => {}
        }
    }
}

/// What a read error of the link tells a client (the error's own text goes to the log).
fn lost_why(e: &tokio_tungstenite::tungstenite::Error) -> &'static str {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::ConnectionClosed | E::AlreadyClosed => "the connection closed",
        _ => "the connection was reset",
    }
}

/// A link to `node` in `boot` that nothing reads, and what it sends (for tests).
#[cfg(test)]
pub(crate) fn detached(node: &str, boot: u64) -> (Arc<Link>, mpsc::Receiver<Frame>) {
    let (tx, rx) = mpsc::channel(64);
    let link = Link {
        node: NodeId::new(node).unwrap(),
        boot,
        tx,
        alive: AtomicBool::new(true),
        state: Mutex::default(),
        kept: Arc::default(),
    };
    (Arc::new(link), rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::net::IpAddr;

    fn link(queue: usize) -> (Link, mpsc::Receiver<Frame>) {
        link_in(Arc::default(), queue)
    }

    /// A link to node-b (boot 1) recording what its clients hold in `kept`.
    fn link_in(kept: Arc<Mutex<Kept>>, queue: usize) -> (Link, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(queue);
        let link = Link {
            node: NodeId::new("node-b").unwrap(),
            boot: 1,
            tx,
            alive: AtomicBool::new(true),
            state: Mutex::default(),
            kept,
        };
        (link, rx)
    }

    fn client() -> (ClientHandle, mpsc::Receiver<String>) {
        let (out, rx) = mpsc::channel(16);
        (ClientHandle::new(out), rx)
    }

    fn ask<'a>(conn: u64, client: &'a ClientHandle, session: Option<&str>) -> Ask<'a> {
        Ask {
            conn,
            peer: IpAddr::from([127, 0, 0, 1]),
            client,
            session: session.map(str::to_string),
            text: "{}",
        }
    }

    /// Client connection `conn` sends request `id` as `pending`, answered with `result`
    /// (not answered when `None`).
    fn exchange(
        link: &Link,
        known: &Known,
        (conn, id): (u64, u64),
        c: &ClientHandle,
        pending: Pending,
        result: Option<Value>,
    ) {
        let id = Value::from(id);
        let a = ask(conn, c, None);
        link.send(&a, Some(&id), pending, "{}".into()).unwrap();
        if let Some(r) = result {
            let answer = serde_json::json!({"id": id, "jsonrpc": "2.0", "result": r});
            link.deliver(known, conn, answer.to_string());
        }
    }

    fn closed(c: &ClientHandle) -> bool {
        c.close.now.notified().now_or_never().is_some()
    }

    /// What a pending request about pipeline `p` is, from its JSON.
    fn pending(p: &str, req: Value) -> Pending {
        Pending::of(req.as_object().unwrap(), p)
    }

    #[test]
    fn the_engines_answers_begin_as_deliver_expects() {
        // `deliver` tells answers from events by their first key: pinned here, so that a
        // change of serde_json's key order (e.g. its `preserve_order` feature) shows.
        let id = Some(Value::from(7));
        let ok = RpcResponse::result(id.clone(), serde_json::json!({"value": 1})).to_text();
        let err = RpcResponse::error(id, KurentoError::new(ErrorCode::MarshallError, "x"));
        for t in [ok, err.to_text()] {
            assert!(
                t.starts_with("{\"id\"") || t.starts_with("{\"error\""),
                "{t}"
            );
        }
        let event = fluo_api::jsonrpc::notification("onEvent", serde_json::json!({}));
        assert!(!event.starts_with("{\"id\"") && !event.starts_with("{\"error\""));
    }

    #[test]
    fn an_error_answer_ends_its_request_and_a_foreign_objects_40101_becomes_40004() {
        let (link, _rx) = link(64);
        let known = Known::new(Arc::new(View::default()));
        let (c, out) = client();
        let mut outs = [out];
        let foreign = "q_kurento.MediaPipeline/h_kurento.HubPort";
        let a = ask(1, &c, None);
        // As the engine writes errors: keys in order, `error` first.
        let error = |id: u64, code: ErrorCode, m: &str| {
            RpcResponse::error(Some(Value::from(id)), KurentoError::new(code, m)).to_text()
        };
        link.send(&a, Some(&Value::from(1)), Pending::Plain, "{}".into())
            .unwrap();
        link.deliver(&known, 1, error(1, ErrorCode::MarshallError, "bad"));
        let f = Pending::Foreign(foreign.into());
        link.send(&a, Some(&Value::from(2)), f, "{}".into())
            .unwrap();
        let not_found = format!("Object '{foreign}' not found");
        link.deliver(
            &known,
            1,
            error(2, ErrorCode::MediaObjectNotFound, &not_found),
        );
        // A 40101 about the called object itself stays 40101.
        let f = Pending::Foreign(foreign.into());
        link.send(&a, Some(&Value::from(3)), f, "{}".into())
            .unwrap();
        let itself = "Object 'p_kurento.MediaPipeline/d_kurento.Dispatcher' not found";
        link.deliver(&known, 1, error(3, ErrorCode::MediaObjectNotFound, itself));
        let got = received(&mut outs, 0);
        let codes: Vec<_> = got
            .iter()
            .map(|v| (v["id"].clone(), v["error"]["code"].clone()))
            .collect();
        assert_eq!(
            codes,
            [(1, 40001), (2, 40004), (3, 40101)]
                .map(|(i, c)| (Value::from(i), Value::from(c)))
                .to_vec()
        );
        // Each was answered once: nothing is left in flight for the link's end to answer.
        assert!(lock(&link.state).pending.is_empty());
        link.broke("the connection closed");
        assert_eq!(received(&mut outs, 0), Vec::<Value>::new());
    }

    #[test]
    fn requests_tell_what_their_answers_mean() {
        let p = "p_kurento.MediaPipeline";
        let e = format!("{p}/e_kurento.PassThrough");
        let of =
            |m: &str, params: Value| pending(p, serde_json::json!({"method": m, "params": params}));
        assert!(
            matches!(of("release", serde_json::json!({"object": p})), Pending::Release(x) if x == p)
        );
        assert!(
            matches!(of("release", serde_json::json!({"object": e})), Pending::Released(x) if x == e)
        );
        assert!(matches!(
            of("subscribe", serde_json::json!({"object": e, "type": "Error"})),
            Pending::Subscribe { pipeline, object } if pipeline == p && object == e
        ));
        let other = of(
            "subscribe",
            serde_json::json!({"object": e, "type": "EndOfStream"}),
        );
        assert!(matches!(other, Pending::Hold(x) if x == p));
        let un = of(
            "unsubscribe",
            serde_json::json!({"object": e, "subscription": "s1"}),
        );
        assert!(matches!(un, Pending::Unsubscribe(x) if x == "s1"));
        assert!(matches!(
            of("create", serde_json::json!({})),
            Pending::Hold(_)
        ));
        assert!(matches!(
            of("transaction", serde_json::json!({})),
            Pending::Hold(_)
        ));
        assert!(matches!(
            of("invoke", serde_json::json!({"object": e})),
            Pending::Plain
        ));
        assert!(matches!(
            of("unsubscribe", serde_json::json!({"object": e})),
            Pending::Plain
        ));
    }

    /// Everything client connection `i` was sent, as JSON.
    fn received(outs: &mut [mpsc::Receiver<String>], i: usize) -> Vec<Value> {
        std::iter::from_fn(|| outs[i].try_recv().ok())
            .map(|t| serde_json::from_str(&t).unwrap())
            .collect()
    }

    #[test]
    fn a_copied_subscriptions_answer_goes_to_the_manager_not_the_client() {
        let (link, _rx) = link(64);
        let known = Known::new(Arc::new(View::default()));
        let (c, mut out) = client();
        let answers = Answers::default();
        let copied = || Pending::Copied {
            session: "s1".into(),
            asked: Asked::Copy("ObjectCreated".into()),
            answers: answers.clone(),
        };
        exchange(&link, &known, (1, 10), &c, copied(), None);
        let refused = r#"{"error":{"code":40000,"message":"no room"},"id":10,"jsonrpc":"2.0"}"#;
        link.deliver(&known, 1, refused.into());
        exchange(
            &link,
            &known,
            (1, 11),
            &c,
            copied(),
            Some(serde_json::json!({"value": "sub", "sessionId": "s1"})),
        );
        assert!(
            out.try_recv().is_err(),
            "the client saw an answer of the entry's own"
        );
        let got = std::mem::take(&mut *lock(&answers));
        let answer = |outcome: Outcome| Answer {
            node: NodeId::new("node-b").unwrap(),
            session: "s1".into(),
            asked: Asked::Copy("ObjectCreated".into()),
            outcome,
        };
        let error = serde_json::json!({"code": 40000, "message": "no room"});
        assert_eq!(
            got,
            vec![answer(Outcome::Refused(error)), answer(Outcome::Done)]
        );
        // One in flight when the link breaks is not answered to the client either; the
        // manager hears it was lost (R43-cluster 6: it is made again).
        exchange(&link, &known, (1, 12), &c, copied(), None);
        link.broke("the connection closed");
        assert!(
            out.try_recv().is_err(),
            "the client was answered for the entry"
        );
        assert_eq!(*lock(&answers), vec![answer(Outcome::Lost)]);
    }

    #[test]
    fn a_broken_link_answers_requests_in_flight_and_tells_error_subscribers_without_closing() {
        let (link, _rx) = link(64);
        let known = Known::new(Arc::new(View::default()));
        let (clients, mut outs): (Vec<_>, Vec<_>) = (0..11).map(|_| client()).unzip();
        let p1 = "p1_kurento.MediaPipeline";
        let e1 = format!("{p1}/e1_kurento.PassThrough");
        let sub = |o: &str, ty: &str| {
            pending(
                p1,
                serde_json::json!({"method": "subscribe", "params": {"object": o, "type": ty}}),
            )
        };
        let ex = |(conn, id): (u64, u64), pending: Pending, result: Option<Value>| {
            let c = &clients[conn as usize];
            exchange(&link, &known, (conn, id), c, pending, result);
        };
        let made = serde_json::json!({"value": p1, "sessionId": "s1"});
        // 1 made a pipeline there.
        ex((1, 100), Pending::Pipeline, Some(made));
        // 5 subscribed to the pipeline's Error, twice, and to its element's.
        for (id, o) in [(500, p1), (501, p1), (502, &e1)] {
            let r = serde_json::json!({"value": format!("sub-{id}"), "sessionId": "s5"});
            ex((5, id), sub(o, "Error"), Some(r));
        }
        // 8 subscribed to the element's Error, then unsubscribed; 10 subscribed to another
        // element's, then released that element; 9 subscribed to another event only.
        let r = serde_json::json!({"value": "sub-8", "sessionId": "s8"});
        ex((8, 800), sub(&e1, "Error"), Some(r));
        let un = Pending::Unsubscribe("sub-8".into());
        let done = serde_json::json!({"sessionId": "s8"});
        ex((8, 801), un, Some(done));
        let e2 = format!("{p1}/e2_kurento.PassThrough");
        let r = serde_json::json!({"value": "sub-10", "sessionId": "s10"});
        ex((10, 1000), sub(&e2, "Error"), Some(r));
        let gone = Pending::Released(e2);
        let done = serde_json::json!({"sessionId": "s10"});
        ex((10, 1001), gone, Some(done));
        let r = serde_json::json!({"value": "sub-9", "sessionId": "s9"});
        ex((9, 900), sub(&e1, "EndOfStream"), Some(r));
        // 2 made a pipeline there and released it.
        let p2 = "p2_kurento.MediaPipeline";
        let made = serde_json::json!({"value": p2, "sessionId": "s2"});
        ex((2, 200), Pending::Pipeline, Some(made));
        let done = serde_json::json!({"sessionId": "s2"});
        let release = Pending::Release(p2.into());
        ex((2, 7), release, Some(done));
        assert!(known.view.was_released(p2) && known.owner(p2).is_none());
        // 3 only asked for a name (answered); 4 has a request in flight; 6 bound its session
        // again there (a reconnect).
        let name = serde_json::json!({"value": "x", "sessionId": "s3"});
        ex((3, 300), Pending::Plain, Some(name));
        ex((4, 400), Pending::Plain, None);
        ex((6, 600), Pending::Swallow, None);
        link.deliver(
            &known,
            6,
            r#"{"id":600,"jsonrpc":"2.0","result":{"sessionId":"s6"}}"#.into(),
        );
        link.bound(6, "s6");
        // 7's ping naming its session was relayed (the entry's own request, unanswered: the
        // owner froze); it holds nothing there.
        ex((7, 700), Pending::Swallow, None);
        for i in 1..11 {
            received(&mut outs, i);
        }
        assert!(link.broke("the connection closed"));
        assert!(!link.alive.load(Ordering::Acquire));
        assert!(lock(&link.state).clients.is_empty());
        // The sessions that held something there (made, subscribed to anything in a
        // pipeline there, even if unsubscribed since, bound again) are kept to be bound
        // again on a new link; 2 (released its pipeline), 3 (a name), 4 (a request in
        // flight) and 7 (a ping) are not.
        let key = (link.node.clone(), link.boot);
        let mut orphans: Vec<_> = lock(&link.kept)
            .take_orphans(&key)
            .into_iter()
            .map(|(conn, _, _, s)| (conn, s))
            .collect();
        orphans.sort();
        let expected = [1, 5, 6, 8, 9, 10].map(|c| (c, format!("s{c}")));
        assert_eq!(orphans, expected.to_vec());
        // No one is closed.
        let shut: Vec<_> = (1..11).filter(|&i| closed(&clients[i])).collect();
        assert_eq!(shut, Vec::<usize>::new());
        // 4's request in flight: answered at once.
        let got = received(&mut outs, 4);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["id"], 400);
        assert_eq!(got[0]["error"]["code"], 40004);
        // 5: one Error event per object subscribed to.
        let got = received(&mut outs, 5);
        let objects: Vec<_> = got
            .iter()
            .map(|v| v["params"]["value"]["object"].clone())
            .collect();
        assert_eq!(objects, vec![Value::from(p1), Value::from(e1.as_str())]);
        for v in &got {
            assert_eq!(v["method"], "onEvent");
            assert_eq!(v["params"]["value"]["type"], "Error");
            assert_eq!(v["params"]["value"]["data"]["type"], "NODE_DOWN");
        }
        // Nothing for the others.
        for i in [1, 2, 3, 6, 7, 8, 9, 10] {
            assert_eq!(received(&mut outs, i), Vec::<Value>::new(), "client {i}");
        }
    }

    #[tokio::test]
    async fn sessions_are_bound_again_on_a_new_link_and_its_error_subscribers_told_again() {
        let known = Arc::new(Known::new(Arc::new(View::default())));
        let secret = Arc::new(ClusterSecret(b"s".to_vec()));
        let me = NodeId::new("node-a").unwrap();
        let links = Arc::new(Links::new(me, (secret, SILENCE_TEST), known.clone()));
        let (first, _rx1) = link_in(links.kept.clone(), 64);
        let (c, out) = client();
        let mut outs = [out];
        let p = "p_kurento.MediaPipeline";
        let sub =
            serde_json::json!({"method": "subscribe", "params": {"object": p, "type": "Error"}});
        let r = serde_json::json!({"value": "sub-1", "sessionId": "s5"});
        exchange(&first, &known, (5, 50), &c, pending(p, sub), Some(r));
        received(&mut outs, 0);
        let node_down = |got: Vec<Value>| {
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0]["params"]["value"]["object"], p);
            assert_eq!(got[0]["params"]["value"]["data"]["type"], "NODE_DOWN");
        };
        // A false alarm: the subscriber is told, its session kept to be bound again.
        assert!(first.broke("nothing received for 3000 ms"));
        node_down(received(&mut outs, 0));
        // A new link to the same owner and boot: the session is bound again there, on the
        // connection's new mirror, by a `ping` naming it, whose answer the client never sees.
        let (second, mut rx2) = link_in(links.kept.clone(), 64);
        links.rebind(&second);
        assert!(matches!(rx2.try_recv(), Ok(Frame::Open { conn: 5, .. })));
        let Ok(Frame::Text { conn: 5, text }) = rx2.try_recv() else {
            panic!("no ping sent");
        };
        let ping: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(ping["method"], "ping");
        assert_eq!(ping["params"]["sessionId"], "s5");
        let pong = serde_json::json!({"id": ping["id"], "jsonrpc": "2.0",
            "result": {"value": "pong", "sessionId": "s5"}});
        second.deliver(&known, 5, pong.to_string());
        assert_eq!(received(&mut outs, 0), Vec::<Value>::new());
        assert!(lock(&second.state).holds(5));
        assert!(!lock(&links.kept).has_orphans(&second.key()));
        // The real death, later: the subscription made on the first link is told again.
        assert!(second.broke("the connection was reset"));
        node_down(received(&mut outs, 0));
        // The client's connection ends: nothing is kept for it.
        links.closed(5);
        assert!(!lock(&links.kept).has_orphans(&second.key()));
        assert!(lock(&links.kept).subscribers(&second.key()).is_empty());
    }

    const SILENCE_TEST: Duration = Duration::from_secs(3);

    #[test]
    fn read_errors_are_told_as_fixed_phrases() {
        use tokio_tungstenite::tungstenite::error::{Error as E, ProtocolError};
        assert_eq!(lost_why(&E::ConnectionClosed), "the connection closed");
        let reset = E::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(lost_why(&reset), "the connection was reset");
        let io = E::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(lost_why(&io), "the connection was reset");
    }

    #[test]
    fn what_a_client_held_is_forgotten_when_its_connection_ends() {
        let (link, _rx) = link(64);
        let known = Known::new(Arc::new(View::default()));
        let (c, _out) = client();
        let made = serde_json::json!({"value": "p_kurento.MediaPipeline", "sessionId": "s"});
        exchange(&link, &known, (1, 100), &c, Pending::Pipeline, Some(made));
        link.bound(1, "s");
        assert!(lock(&link.state).holds(1));
        link.closed(1);
        let st = lock(&link.state);
        assert!(st.held.is_empty() && st.bound.is_empty() && st.clients.is_empty());
    }

    #[tokio::test]
    async fn a_client_whose_open_went_out_is_closed_on_the_owner_even_if_its_request_did_not_fit() {
        // Room for the `open` only.
        let (link, mut rx) = link(1);
        let (c, _out) = client();
        let a = ask(9, &c, None);
        let id = Value::from(1);
        assert!(link
            .send(&a, Some(&id), Pending::Plain, "{}".into())
            .is_err());
        assert!(matches!(rx.recv().await, Some(Frame::Open { conn: 9, .. })));
        // The client's connection ends: the owner is told, so that the mirror it opened
        // closes (its session starts its grace period).
        link.closed(9);
        let f = tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await;
        assert!(matches!(f, Ok(Some(Frame::Close { conn: 9 }))), "{f:?}");
        assert!(lock(&link.state).pending.is_empty());
    }
}
