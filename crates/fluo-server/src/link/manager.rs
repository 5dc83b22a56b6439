//! The ServerManager through an entry (docs/cluster.md, "ServerManager"). A client of a
//! cluster sees one server where it lists what the server holds: `getPipelines` and
//! `getSessions` asked of any entry list every listed node's (this node's, and each other
//! node's asked at once over the link through the entry's own connection), and a
//! subscription to a ServerManager event (`ObjectCreated`, `ObjectDestroyed`) made through an
//! entry is also made on every other listed node, in the client's session on its mirror
//! there, so that objects made anywhere are announced to it. A task makes those
//! subscriptions, once the client's session is known, on each node listed (later ones too)
//! and again on each new link to it. The rest (`getInfo`, `getKmd`, `getMetadata`, CPU and
//! memory) is the entry's own: it describes the node the client talks to.

use super::entry::{ClientHandle, Link, Pending};
use super::relay::rpc::Rpc;
use super::route::{rebind_id, Ask, Router};
use crate::lock;
use fluo_api::ids::SERVER_MANAGER_ID;
use fluo_cluster::{NodeId, NodeRecord};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How long the entry waits for the other nodes' lists, all asked at once (a node that does
/// not answer in time is left out of the answer, and logged).
const LIST_WAIT: Duration = Duration::from_secs(2);

/// How often the subscriptions are looked at without being woken (nodes listed, links made
/// again).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The ServerManager's lists that span the cluster.
const GATHERED: [&str; 2] = ["getPipelines", "getSessions"];

/// The entry's own connection for the lists (opened once the engine runs), and its client
/// connections' subscriptions to the ServerManager's events.
#[derive(Default)]
pub(crate) struct Manager {
    rpc: OnceLock<Arc<Rpc>>,
    listeners: Mutex<HashMap<u64, Listener>>,
    wake: Notify,
}

/// A client connection's subscriptions to the ServerManager's events (one per event type),
/// and where they were made.
struct Listener {
    client: ClientHandle,
    peer: IpAddr,
    reqs: Vec<Map<String, Value>>,
    /// Per node: the link they were made on, in which session, how many.
    made: HashMap<NodeId, (Weak<Link>, String, usize)>,
}

/// What the task has to make: a connection's subscriptions on one node.
struct Todo {
    conn: u64,
    client: ClientHandle,
    peer: IpAddr,
    session: String,
    /// The subscriptions to make (those not made yet on this link in this session).
    reqs: Vec<Map<String, Value>>,
    /// How many the connection has in all.
    total: usize,
    node: NodeRecord,
}

impl Manager {
    /// Opens the connection the lists are asked through, and starts the task that makes the
    /// event subscriptions on the other nodes (until `shutdown`).
    pub(crate) fn start(
        router: Arc<Router>,
        core: crate::core_loop::Core,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tokio::spawn(async move {
            match Rpc::open(core).await {
                Some(rpc) => {
                    let _ = router.manager.rpc.set(Arc::new(rpc));
                }
                None => tracing::warn!("link: the ServerManager's connection did not open"),
            }
            loop {
                tokio::select! {
                    _ = router.manager.wake.notified() => {}
                    _ = tokio::time::sleep(LOOK_EVERY) => {}
                    _ = shutdown.changed() => return,
                }
                router.subscribe_everywhere().await;
            }
        });
    }

    /// The client connection `conn` ended (its subscriptions end with its mirrors).
    pub(crate) fn closed(&self, conn: u64) {
        lock(&self.listeners).remove(&conn);
    }
}

/// The operation of `req` when it asks the ServerManager for one of the lists that span the
/// cluster.
fn gathered(req: &Map<String, Value>) -> Option<&str> {
    if req.get("method")?.as_str()? != "invoke" {
        return None;
    }
    let params = req.get("params")?;
    if params.get("object")?.as_str()? != SERVER_MANAGER_ID {
        return None;
    }
    let op = params.get("operation")?.as_str()?;
    GATHERED.contains(&op).then_some(op)
}

/// Whether `req` subscribes to an event of the ServerManager.
fn manager_subscribe(req: &Map<String, Value>) -> bool {
    req.get("method").and_then(Value::as_str) == Some("subscribe")
        && req
            .get("params")
            .and_then(|p| p.get("object"))
            .and_then(Value::as_str)
            == Some(SERVER_MANAGER_ID)
}

/// The event type a subscription names.
fn event_type(req: &Map<String, Value>) -> Option<&str> {
    req.get("params")?.get("type")?.as_str()
}

impl Router {
    /// A client's request about the ServerManager that spans the cluster: a list is
    /// answered here (`true`); a subscription is kept to be made on every other listed node
    /// (and goes on to this node's engine: `false`). The entry's own connections (the
    /// relays', the lists') are this node's only.
    pub(super) async fn manager(&self, ask: &Ask<'_>, req: &Map<String, Value>) -> bool {
        if manager_subscribe(req) {
            if !super::is_internal(ask.conn) {
                self.listen(ask, req);
            }
            return false;
        }
        let Some(op) = gathered(req) else {
            return false;
        };
        let Some(rpc) = self
            .manager
            .rpc
            .get()
            .filter(|_| !super::is_internal(ask.conn))
        else {
            return false;
        };
        let value = self.gather(rpc, op).await;
        // As the engine answers: none to a notification, the session the request named.
        let Some(id) = req.get("id").cloned() else {
            return true;
        };
        let mut result = json!({ "value": value });
        let session = req.get("params").and_then(|p| p.get("sessionId"));
        if let Some(s) = session.and_then(Value::as_str).or(ask.session.as_deref()) {
            result["sessionId"] = Value::from(s);
        }
        let text = json!({"jsonrpc": "2.0", "id": id, "result": result});
        ask.client.send(ask.conn, text.to_string());
        true
    }

    /// Keeps `ask`'s subscription `req` (one per event type and connection) and wakes the
    /// task that makes it on the other nodes.
    fn listen(&self, ask: &Ask<'_>, req: &Map<String, Value>) {
        let mut all = lock(&self.manager.listeners);
        let l = all.entry(ask.conn).or_insert_with(|| Listener {
            client: ask.client.clone(),
            peer: ask.peer,
            reqs: vec![],
            made: HashMap::new(),
        });
        if l.reqs.iter().all(|r| event_type(r) != event_type(req)) {
            let mut r = req.clone();
            r.remove("id");
            l.reqs.push(r);
            drop(all);
            self.manager.wake.notify_one();
        }
    }

    /// Operation `op`'s list on this node, then each other listed node's (asked at once,
    /// [`LIST_WAIT`] at most), each item once.
    async fn gather(&self, rpc: &Rpc, op: &str) -> Vec<Value> {
        let params = json!({"object": SERVER_MANAGER_ID, "operation": op});
        let mut all = match rpc.call(self, "invoke", params.clone()).await {
            Ok(v) => list(&v),
            Err(e) => {
                tracing::warn!(op, error = %e, "link: this node's ServerManager did not answer");
                vec![]
            }
        };
        let asks = self.others().into_iter().map(|node| {
            let params = params.clone();
            async move {
                let got = async {
                    let link = self.links.get(&node).await?;
                    let r = rpc.call_on(&link, "invoke", params, LIST_WAIT).await;
                    r.map_err(|e| e.to_string())
                };
                let r = tokio::time::timeout(LIST_WAIT, got).await;
                (node, r.unwrap_or_else(|_| Err("no answer in time".into())))
            }
        });
        let mut seen: HashSet<Value> = all.iter().cloned().collect();
        for (node, r) in futures_util::future::join_all(asks).await {
            match r {
                Ok(v) => all.extend(list(&v).into_iter().filter(|x| seen.insert(x.clone()))),
                Err(e) => {
                    tracing::warn!(node = %node.info.id, op, error = %e, "link: a node left out of the ServerManager's list");
                }
            }
        }
        all
    }

    /// Makes each client connection's subscriptions to the ServerManager's events on every
    /// other listed node where they are not made yet on its current link in the
    /// connection's session (a node listed since, a link made again, a subscription added,
    /// the session learnt), on the client's own mirror there: the events come to its
    /// connection as those of its pipelines do. A connection whose session is not known yet
    /// (its first request was the subscription, not answered yet) is looked at again later.
    pub(super) async fn subscribe_everywhere(&self) {
        for t in self.to_make() {
            let link = match self.links.get(&t.node).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(node = %t.node.info.id, "link: ServerManager subscriptions not made there yet: {e}");
                    continue;
                }
            };
            let ask = Ask {
                conn: t.conn,
                peer: t.peer,
                client: &t.client,
                session: Some(t.session.clone()),
                text: "",
            };
            // Sent under the listeners' lock, and only while the connection still listens:
            // it may have ended while the link was got, and a send then would open a mirror
            // there that nothing closes ([`Router::closed`] forgets the listener before it
            // closes the connection's mirrors, so one opened before that goes with them;
            // review R42-final, A1).
            let mut all = lock(&self.manager.listeners);
            let Some(l) = all.get_mut(&t.conn) else {
                continue;
            };
            if !send_subscriptions(&ask, &link, &t.session, &t.reqs) {
                tracing::debug!(node = %t.node.info.id, "link: ServerManager subscriptions not made there yet (the link refused them)");
                continue;
            }
            let made = (Arc::downgrade(&link), t.session, t.total);
            l.made.insert(t.node.info.id.clone(), made);
        }
    }

    /// Before `ask`'s request goes to `node` over `link`: its connection's subscriptions to
    /// the ServerManager's events not made there yet on this link are sent first, so that a
    /// client's `subscribe` then `create` (or anything) on another node finds the subscription
    /// made there, in that order on the link (the task would make it too, but may come
    /// later). Nothing for a connection without such subscriptions or with no session yet.
    pub(super) fn subscriptions_first(&self, ask: &Ask<'_>, node: &NodeId, link: &Arc<Link>) {
        let mut all = lock(&self.manager.listeners);
        let Some(l) = all.get_mut(&ask.conn) else {
            return;
        };
        let Some(session) = ask.session.clone().or_else(|| l.client.session()) else {
            return;
        };
        let from = match l.made.get(node) {
            Some((made, s, n))
                if *s == session && std::ptr::eq(made.as_ptr(), Arc::as_ptr(link)) =>
            {
                *n
            }
            _ => 0,
        };
        if from < l.reqs.len() && send_subscriptions(ask, link, &session, &l.reqs[from..]) {
            let made = (Arc::downgrade(link), session, l.reqs.len());
            l.made.insert(node.clone(), made);
        }
    }

    /// What [`Router::subscribe_everywhere`] has to make now.
    fn to_make(&self) -> Vec<Todo> {
        let others = self.others();
        let all = lock(&self.manager.listeners);
        let mut todo = vec![];
        for (conn, l) in all.iter() {
            let Some(session) = l.client.session() else {
                continue;
            };
            for node in &others {
                let live = self.links.live(&node.info.id, node.boot);
                // Made on the link there is now, in this session: those added since only.
                let from = match l.made.get(&node.info.id) {
                    Some((link, s, n))
                        if *s == session
                            && live
                                .as_ref()
                                .is_some_and(|x| std::ptr::eq(Arc::as_ptr(x), link.as_ptr())) =>
                    {
                        *n
                    }
                    _ => 0,
                };
                if from < l.reqs.len() {
                    todo.push(Todo {
                        conn: *conn,
                        client: l.client.clone(),
                        peer: l.peer,
                        session: session.clone(),
                        reqs: l.reqs[from..].to_vec(),
                        total: l.reqs.len(),
                        node: node.clone(),
                    });
                }
            }
        }
        todo
    }

    /// The listed nodes but this one (the last listing while Redis does not answer).
    fn others(&self) -> Vec<NodeRecord> {
        let nodes = self.view.nodes().unwrap_or_else(|| self.view.last_listed());
        nodes
            .iter()
            .filter(|n| n.info.id != self.me)
            .cloned()
            .collect()
    }
}

/// Sends the subscriptions `reqs` of `ask`'s connection in `session` over `link`, as the
/// entry's own requests (their answers are not the client's); whether all were sent.
fn send_subscriptions(
    ask: &Ask<'_>,
    link: &Link,
    session: &str,
    reqs: &[Map<String, Value>],
) -> bool {
    reqs.iter().all(|r| {
        let own = rebind_id();
        let mut r = r.clone();
        r.insert("id".into(), own.clone());
        if let Some(Value::Object(p)) = r.get_mut("params") {
            p.insert("sessionId".into(), Value::from(session));
        }
        let text = Value::Object(r).to_string();
        link.send(ask, Some(&own), Pending::Swallow, text).is_ok()
    })
}

/// The list in an answer's `value` (nothing when it is not one).
fn list(result: &Value) -> Vec<Value> {
    result
        .get("value")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn only_the_lists_and_the_managers_subscriptions_span_the_cluster() {
        let inv = |op: &str, object: &str| {
            req(json!({"method": "invoke", "params": {"object": object, "operation": op}}))
        };
        assert_eq!(
            gathered(&inv("getPipelines", SERVER_MANAGER_ID)),
            Some("getPipelines")
        );
        assert_eq!(
            gathered(&inv("getSessions", SERVER_MANAGER_ID)),
            Some("getSessions")
        );
        for op in [
            "getInfo",
            "getKmd",
            "getCpuCount",
            "getUsedMemory",
            "getMetadata",
        ] {
            assert_eq!(gathered(&inv(op, SERVER_MANAGER_ID)), None, "{op}");
        }
        assert_eq!(
            gathered(&inv("getPipelines", "p_kurento.MediaPipeline")),
            None
        );
        let sub = |object: &str| {
            req(
                json!({"method": "subscribe", "params": {"object": object, "type": "ObjectCreated"}}),
            )
        };
        assert!(manager_subscribe(&sub(SERVER_MANAGER_ID)));
        assert!(!manager_subscribe(&sub("p_kurento.MediaPipeline")));
        assert!(!manager_subscribe(&inv("getPipelines", SERVER_MANAGER_ID)));
    }

    #[test]
    fn a_list_is_read_from_an_answers_value() {
        assert_eq!(
            list(&json!({"value": ["a", "b"]})),
            vec![json!("a"), json!("b")]
        );
        assert!(list(&json!({"value": 3})).is_empty());
        assert!(list(&json!(null)).is_empty());
    }
}
