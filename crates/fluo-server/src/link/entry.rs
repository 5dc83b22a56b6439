//! The entry's side of the link: one authenticated connection per owner node, made on
//! demand and made again once broken; the answers and events that come back go to the
//! client connections they are for, and a link that breaks answers its requests in flight
//! with an error at once.

use super::auth::{self, Challenge, Hello, Proof, Welcome};
use super::{read_json, write_json, Frame, CONNECT, LINK_QUEUE, PATH};
use crate::config::ClusterSecret;
use fluo_api::jsonrpc::Response as RpcResponse;
use fluo_api::{ErrorCode, KurentoError};
use fluo_cluster::{NodeId, NodeRecord};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
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
}

/// Where each pipeline this entry forwarded to is owned (ownership only changes when the
/// owner dies: then the entry drops the entry).
pub(crate) type Owners = Arc<Mutex<HashMap<String, fluo_cluster::Owner>>>;

/// The entry's links, one per owner node.
pub(crate) struct Links {
    me: NodeId,
    secret: Arc<ClusterSecret>,
    owners: Owners,
    slots: Mutex<HashMap<NodeId, Slot>>,
    /// The last link made to each node (read without waiting for a connect in progress).
    current: Mutex<HashMap<NodeId, Arc<Link>>>,
}

/// Where the link to one node is kept; locked while it is being made, so that concurrent
/// requests make one.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;

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
    /// The entry's client connections that opened a mirror on the owner, and their outboxes.
    clients: HashMap<u64, mpsc::Sender<String>>,
    /// Answers awaited, by client connection and request id (as JSON text).
    pending: HashMap<(u64, String), Pending>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request id as a map key.
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// The error answer to request `id`.
pub(crate) fn error_text(id: Option<Value>, code: ErrorCode, message: String) -> String {
    RpcResponse::error(id, KurentoError::new(code, message)).to_text()
}

impl Links {
    pub(crate) fn new(me: NodeId, secret: Arc<ClusterSecret>, owners: Owners) -> Links {
        Links {
            me,
            secret,
            owners,
            slots: Mutex::default(),
            current: Mutex::default(),
        }
    }

    /// The live link to `node`, connected now if there is none (bounded by [`CONNECT`]).
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
        if let Some(l) = slot.as_ref() {
            if l.alive.load(Ordering::Acquire) && l.boot == node.boot {
                return Ok(l.clone());
            }
            l.alive.store(false, Ordering::Release);
        }
        let connect = connect(node, &self.me, &self.secret.0, self.owners.clone());
        let link = match tokio::time::timeout(CONNECT, connect).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("no answer within {} ms", CONNECT.as_millis())),
        };
        tracing::info!(node = %node.info.id, peer = %node.info.peer, "link: connected");
        *slot = Some(link.clone());
        lock(&self.current).insert(node.info.id.clone(), link.clone());
        Ok(link)
    }

    /// The client connection `conn` ended: each owner it used ends its mirror.
    pub(crate) fn closed(&self, conn: u64) {
        let links: Vec<_> = lock(&self.current).values().cloned().collect();
        for l in links {
            l.closed(conn);
        }
    }
}

impl Link {
    /// Sends the client connection `conn`'s request `text` (answered as `pending` when it
    /// has an `id`), opening its mirror first. `Err` when the link is down or full.
    pub(crate) fn send(
        &self,
        conn: u64,
        peer: IpAddr,
        out: &mpsc::Sender<String>,
        id: Option<&Value>,
        pending: Pending,
        text: String,
    ) -> Result<(), String> {
        let key = id.map(|i| (conn, id_key(i)));
        let open = {
            let mut st = lock(&self.state);
            if let Some(k) = &key {
                st.pending.insert(k.clone(), pending);
            }
            st.clients.insert(conn, out.clone()).is_none()
        };
        let sent = self.alive.load(Ordering::Acquire)
            && (!open || self.tx.try_send(Frame::Open { conn, peer }).is_ok())
            && self.tx.try_send(Frame::Text { conn, text }).is_ok();
        if !sent {
            let mut st = lock(&self.state);
            if let Some(k) = &key {
                st.pending.remove(k);
            }
            if open {
                st.clients.remove(&conn);
            }
            return Err(if self.alive.load(Ordering::Acquire) {
                "the link is congested".into()
            } else {
                "the link is down".into()
            });
        }
        Ok(())
    }

    fn closed(&self, conn: u64) {
        let mut st = lock(&self.state);
        if st.clients.remove(&conn).is_some() {
            st.pending.retain(|(c, _), _| *c != conn);
            let _ = self.tx.try_send(Frame::Close { conn });
        }
    }

    /// An owner's message for client connection `conn`.
    fn deliver(&self, owners: &Owners, conn: u64, text: String) {
        let mut st = lock(&self.state);
        let Some(out) = st.clients.get(&conn).cloned() else {
            return;
        };
        // Answers begin with their id (the engine's JSON); events are notifications.
        if text.starts_with("{\"id\"") {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                let done = v
                    .get("id")
                    .and_then(|id| st.pending.remove(&(conn, id_key(id))));
                drop(st);
                self.learn(owners, done, &v);
            }
        } else {
            drop(st);
        }
        let _ = out.try_send(text);
    }

    /// What an answer tells about ownership.
    fn learn(&self, owners: &Owners, done: Option<Pending>, answer: &Value) {
        let ok = answer.get("result").is_some();
        match done {
            Some(Pending::Pipeline) if ok => {
                if let Some(p) = answer["result"]["value"].as_str() {
                    let owner = fluo_cluster::Owner {
                        node: self.node.clone(),
                        boot: self.boot,
                    };
                    lock(owners).insert(p.to_string(), owner);
                }
            }
            Some(Pending::Release(p)) if ok => {
                lock(owners).remove(&p);
            }
            _ => {}
        }
    }

    /// The link broke: every answer in flight is an error now, and the mirrors are gone.
    fn broke(&self, why: &str) {
        self.alive.store(false, Ordering::Release);
        let st = std::mem::take(&mut *lock(&self.state));
        for ((conn, id), _) in st.pending {
            let Some(out) = st.clients.get(&conn) else {
                continue;
            };
            let id = serde_json::from_str::<Value>(&id).ok();
            let message = format!(
                "the node {} that holds this object is unreachable: {why}",
                self.node
            );
            let _ = out.try_send(error_text(id, ErrorCode::MediaObjectNotFound, message));
        }
    }
}

/// Connects and authenticates to `node`; the link's reader and writer run as tasks.
async fn connect(
    node: &NodeRecord,
    me: &NodeId,
    secret: &[u8],
    owners: Owners,
) -> Result<Arc<Link>, String> {
    let url = format!("ws://{}/{PATH}", node.info.peer);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(super::ws_config()), true)
            .await
            .map_err(|e| e.to_string())?;
    let nc = auth::nonce();
    let hello = Hello {
        hello: auth::PROTOCOL.into(),
        node: me.to_string(),
        nonce: nc.clone(),
    };
    if nc.is_empty() || !write_json(&mut ws, &hello).await {
        return Err("the handshake failed".into());
    }
    let refused = "it refused this node (is the cluster secret the same on both?)";
    let ch: Challenge = read_json(&mut ws).await.ok_or(refused)?;
    if !auth::is_nonce(&ch.nonce)
        || !auth::verify(&auth::owner_mac(secret, &nc, &ch.nonce), &ch.mac)
    {
        return Err("it did not prove it knows the cluster secret".into());
    }
    let proof = Proof {
        mac: auth::entry_mac(secret, &ch.nonce, &nc, me.as_str()),
    };
    if !write_json(&mut ws, &proof).await {
        return Err(refused.into());
    }
    match read_json::<Welcome, _>(&mut ws).await {
        Some(Welcome { ok: true }) => {}
        _ => return Err(refused.into()),
    }
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Frame>(LINK_QUEUE);
    let link = Arc::new(Link {
        node: node.info.id.clone(),
        boot: node.boot,
        tx,
        alive: AtomicBool::new(true),
        state: Mutex::default(),
    });
    tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            let Ok(text) = serde_json::to_string(&f) else {
                continue;
            };
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });
    let reader = link.clone();
    tokio::spawn(async move {
        let why = loop {
            match source.next().await {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<Frame>(t.as_str()) {
                    Ok(Frame::Text { conn, text }) => reader.deliver(&owners, conn, text),
                    Ok(_) => {}
                    Err(e) => tracing::debug!("link: an unreadable frame: {e}"),
                },
                Some(Ok(Message::Close(_))) | None => break "the connection closed".to_string(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(_)) => {}
            }
        };
        tracing::warn!(node = %reader.node, "link: lost: {why}");
        reader.broke(&why);
    });
    Ok(link)
}
