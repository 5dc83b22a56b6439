//! The entry's side of the link: one authenticated connection per owner node, made on
//! demand and made again once broken (a failed attempt is remembered for [`RETRY_AFTER`]);
//! the answers and events that come back go to the client connections they are for. A link
//! that breaks (or stays silent for [`SILENCE`]) closes the client connections that still
//! have something there (a request in flight, or a session holding a pipeline or a
//! subscription there), as a KMS that goes away does: they reconnect, their `connect` binds
//! their sessions again on the owners, and their retransmitted requests are answered from
//! the owners' replay caches. A client with nothing left there is not closed.

use super::auth::{self, Challenge, Hello, Proof, Welcome};
use super::route::Ask;
use super::sessions::Sessions;
use super::{read_json, write_json, Frame, CONNECT, LINK_QUEUE, PATH, RETRY_AFTER};
use crate::cluster::View;
use crate::config::ClusterSecret;
use crate::lock;
use fluo_api::jsonrpc::Response as RpcResponse;
use fluo_api::{ErrorCode, KurentoError};
use fluo_cluster::{NodeId, NodeRecord, Owner};
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// A request of the entry's own (a session bound again): the client never sees it.
    Swallow,
}

/// The most pipelines whose owner is remembered (then the memory starts again).
const REMEMBERED: usize = 100_000;

/// What the entry learnt from its links: where each pipeline it forwarded to is owned
/// (ownership only changes when the owner dies: then the entry forgets it), and which owners
/// each client session was forwarded to (they bind it again when the client reconnects).
pub(crate) struct Known {
    owners: Mutex<HashMap<String, Owner>>,
    sessions: Mutex<Sessions>,
    /// Where the pipelines released through this entry are remembered.
    view: Arc<View>,
}

impl Known {
    pub(crate) fn new(view: Arc<View>) -> Known {
        Known {
            owners: Mutex::default(),
            sessions: Mutex::default(),
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
}

/// A client connection of the entry, as the links know it: where its answers and events go,
/// and how it is closed (as the engine closes a direct client that does not read).
#[derive(Clone)]
pub(crate) struct ClientHandle {
    pub out: mpsc::Sender<String>,
    /// How the connection is asked to close (its task waits on it).
    pub close: Arc<Closer>,
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
        }
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

    /// Whether the client connection `conn` still has something on the owner: a request in
    /// flight (its own, not the entry's rebinding ping or connect, which the client never
    /// sees), or a session holding a pipeline or a subscription there.
    fn holds(&self, conn: u64) -> bool {
        let Some(c) = self.clients.get(&conn) else {
            return false;
        };
        self.pending
            .iter()
            .any(|((k, _), p)| *k == conn && !matches!(p, Pending::Swallow))
            || self.bound.contains(&c.session)
            || self.held.values().any(|s| s.contains(&c.session))
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
        }
    }

    /// The live link to `node`, connected now if there is none (bounded by [`CONNECT`]; a
    /// failure is answered again without trying for [`RETRY_AFTER`]).
    pub(crate) async fn get(&self, node: &NodeRecord) -> Result<Arc<Link>, String> {
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
            self.known.clone(),
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
        Ok(link)
    }

    /// The live link to `node` in `boot`, if there is one (none is made).
    pub(crate) fn live(&self, node: &NodeId, boot: u64) -> Option<Arc<Link>> {
        lock(&self.current)
            .get(node)
            .filter(|l| l.alive.load(Ordering::Acquire) && l.boot == boot)
            .cloned()
    }

    /// How many client connections hold something on an owner (counted once however many
    /// owners they use), on every link still current, alive or not: one marked stale while
    /// its replacement connects keeps its clients until it is replaced or broke (which
    /// closes them).
    pub(crate) fn holders(&self) -> usize {
        let links: Vec<_> = lock(&self.current).values().cloned().collect();
        let mut conns = HashSet::new();
        for l in &links {
            let st = lock(&l.state);
            conns.extend(st.clients.keys().filter(|c| st.holds(**c)).copied());
        }
        conns.len()
    }

    /// The client connection `conn` ended: each owner it used ends its mirror.
    pub(crate) fn closed(&self, conn: u64) {
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
                if self.tx.try_send(Frame::Open { conn, peer }).is_err() {
                    return congested();
                }
                let session = format!("#{conn}");
                let handle = ask.client.clone();
                v.insert(Client { handle, session })
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
        // Answers begin with their id (the engine's JSON); events are notifications.
        if text.starts_with("{\"id\"") {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                let done = v
                    .get("id")
                    .and_then(|id| st.pending.remove(&(conn, id_key(id))));
                let swallow = matches!(done, Some(Pending::Swallow));
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
            Some(Pending::Release(p)) => {
                known.released(&p);
                st.held.remove(&p);
                return;
            }
            _ => return,
        };
        st.held.entry(held).or_default().insert(session);
    }

    /// The link broke: the client connections that still have something on the owner are
    /// closed (their requests in flight are not answered: the clients retransmit them once
    /// reconnected); the others are left alone, as a KMS does not close a connection
    /// because another server went away.
    fn broke(&self, why: &str) {
        self.alive.store(false, Ordering::Release);
        let st = std::mem::take(&mut *lock(&self.state));
        let closing: Vec<_> = st
            .clients
            .iter()
            .filter(|(conn, _)| st.holds(**conn))
            .map(|(_, c)| c.handle.clone())
            .collect();
        if !closing.is_empty() {
            tracing::warn!(node = %self.node, clients = closing.len(), "link: closing the client connections that had requests or objects on the lost link ({why}), so that they reconnect");
        }
        for c in closing {
            c.close.notify_one();
        }
    }
}

/// Connects and authenticates to `node`; the link's reader and writer run as tasks.
async fn connect(
    node: &NodeRecord,
    me: &NodeId,
    (secret, silence): (&[u8], Duration),
    known: Arc<Known>,
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
    });
    let writer = tokio::spawn(super::write_frames(sink, rx));
    let reader = link.clone();
    tokio::spawn(async move {
        let why = read_frames(&reader, &known, source, silence).await;
        writer.abort();
        tracing::warn!(node = %reader.node, "link: lost: {why}");
        reader.broke(&why);
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
            Some(Err(e)) => return e.to_string(),
            Some(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::net::IpAddr;

    fn link(queue: usize) -> (Link, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(queue);
        let link = Link {
            node: NodeId::new("node-b").unwrap(),
            boot: 1,
            tx,
            alive: AtomicBool::new(true),
            state: Mutex::default(),
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
        conn: u64,
        c: &ClientHandle,
        pending: Pending,
        result: Option<Value>,
    ) {
        let id = Value::from(conn * 100);
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

    #[test]
    fn a_broken_link_closes_only_the_clients_that_still_hold_something_there() {
        let (link, _rx) = link(64);
        let known = Known::new(Arc::new(View::default()));
        let (clients, _outs): (Vec<_>, Vec<_>) = (0..8).map(|_| client()).unzip();
        let p1 = "p1_kurento.MediaPipeline";
        // 1 made a pipeline there; 5 subscribed to an object in it.
        let made = serde_json::json!({"value": p1, "sessionId": "s1"});
        exchange(&link, &known, 1, &clients[1], Pending::Pipeline, Some(made));
        let sub = serde_json::json!({"value": "sub-1", "sessionId": "s5"});
        exchange(
            &link,
            &known,
            5,
            &clients[5],
            Pending::Hold(p1.into()),
            Some(sub),
        );
        // 2 made a pipeline there and released it.
        let p2 = "p2_kurento.MediaPipeline";
        let made = serde_json::json!({"value": p2, "sessionId": "s2"});
        exchange(&link, &known, 2, &clients[2], Pending::Pipeline, Some(made));
        let done = serde_json::json!({"sessionId": "s2"});
        let c2 = &clients[2];
        let a = ask(2, c2, Some("s2"));
        link.send(
            &a,
            Some(&Value::from(7)),
            Pending::Release(p2.into()),
            "{}".into(),
        )
        .unwrap();
        let answer = serde_json::json!({"id": 7, "jsonrpc": "2.0", "result": done});
        link.deliver(&known, 2, answer.to_string());
        assert!(known.view.was_released(p2) && known.owner(p2).is_none());
        // 3 only asked for a name (answered); 4 has a request in flight; 6 bound its session
        // again there (a reconnect).
        let name = serde_json::json!({"value": "x", "sessionId": "s3"});
        exchange(&link, &known, 3, &clients[3], Pending::Plain, Some(name));
        exchange(&link, &known, 4, &clients[4], Pending::Plain, None);
        exchange(&link, &known, 6, &clients[6], Pending::Swallow, None);
        link.deliver(
            &known,
            6,
            r#"{"id":600,"jsonrpc":"2.0","result":{"sessionId":"s6"}}"#.into(),
        );
        link.bound(6, "s6");
        // 7's ping naming its session was relayed (the entry's own request, unanswered: the
        // owner froze); it holds nothing there.
        exchange(&link, &known, 7, &clients[7], Pending::Swallow, None);
        link.broke("a test");
        let shut: Vec<_> = (1..8).filter(|&i| closed(&clients[i])).collect();
        assert_eq!(shut, vec![1, 4, 5, 6]);
        assert!(!link.alive.load(Ordering::Acquire));
    }

    #[test]
    fn what_a_client_held_is_forgotten_when_its_connection_ends() {
        let (link, _rx) = link(64);
        let known = Known::new(Arc::new(View::default()));
        let (c, _out) = client();
        let made = serde_json::json!({"value": "p_kurento.MediaPipeline", "sessionId": "s"});
        exchange(&link, &known, 1, &c, Pending::Pipeline, Some(made));
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
