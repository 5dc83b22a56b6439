//! The ServerManager through an entry (docs/cluster.md, "ServerManager"). A client of a
//! cluster sees one server: `getPipelines` and `getSessions` asked of any entry list every
//! listed node's (this node's, then each other node's, asked over the link through the
//! entry's own connection), and a subscription to a ServerManager event (`ObjectCreated`,
//! `ObjectDestroyed`) made through an entry is also made on every other listed node, so
//! that objects made anywhere are announced to it. The rest (`getInfo`, `getKmd`,
//! `getMetadata`, CPU and memory) is the entry's own: it describes the node the client
//! talks to.

use super::entry::Pending;
use super::relay::rpc::Rpc;
use super::route::{rebind_id, Ask, Router};
use crate::lock;
use fluo_api::ids::SERVER_MANAGER_ID;
use fluo_cluster::NodeId;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long the entry waits for each other node's list (a node that does not answer in
/// time is left out of the answer, and logged).
const LIST_WAIT: Duration = Duration::from_secs(2);

/// The ServerManager's lists that span the cluster.
const GATHERED: [&str; 2] = ["getPipelines", "getSessions"];

/// The entry's own connection for the lists (opened once the engine runs), and its client
/// connections' subscriptions to the ServerManager's events.
#[derive(Default)]
pub(crate) struct Manager {
    rpc: OnceLock<Arc<Rpc>>,
    subs: Mutex<HashMap<u64, Subscribed>>,
}

/// A client connection's subscriptions to the ServerManager's events, each with the nodes
/// (in their boot) it was made on.
type Subscribed = Vec<(Map<String, Value>, HashSet<(NodeId, u64)>)>;

impl Manager {
    /// Opens the connection the lists are asked through.
    pub(crate) fn start(router: Arc<Router>, core: crate::core_loop::Core) {
        tokio::spawn(async move {
            match Rpc::open(core).await {
                Some(rpc) => {
                    let _ = router.manager.rpc.set(Arc::new(rpc));
                }
                None => tracing::warn!("link: the ServerManager's connection did not open"),
            }
        });
    }

    /// The client connection `conn` ended (its subscriptions end with its mirrors).
    pub(crate) fn closed(&self, conn: u64) {
        lock(&self.subs).remove(&conn);
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

impl Router {
    /// A client's request about the ServerManager that spans the cluster: a list is
    /// answered here (`true`), a subscription is made on every other listed node too (and
    /// goes on to this node's engine: `false`). The entry's own connections (the relays',
    /// the lists') are this node's only.
    pub(super) async fn manager(&self, ask: &Ask<'_>, req: &Map<String, Value>) -> bool {
        if super::is_internal(ask.conn) {
            return false;
        }
        if manager_subscribe(req) {
            let mut subs = lock(&self.manager.subs);
            let s = subs.entry(ask.conn).or_default();
            s.push((req.clone(), HashSet::new()));
        }
        self.subscribe_everywhere(ask).await;
        let (Some(op), Some(rpc)) = (gathered(req), self.manager.rpc.get()) else {
            return false;
        };
        let value = self.gather(rpc, op).await;
        let mut result = json!({ "value": value });
        if let Some(s) = &ask.session {
            result["sessionId"] = Value::from(s.clone());
        }
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let text = json!({"jsonrpc": "2.0", "id": id, "result": result});
        ask.client.send(ask.conn, text.to_string());
        true
    }

    /// Operation `op`'s list on this node, then on each other listed node (each once, in
    /// the listing's order).
    async fn gather(&self, rpc: &Rpc, op: &str) -> Vec<Value> {
        let params = json!({"object": SERVER_MANAGER_ID, "operation": op});
        let mut all = match rpc.call(self, "invoke", params.clone()).await {
            Ok(v) => list(&v),
            Err(e) => {
                tracing::warn!(op, error = %e, "link: this node's ServerManager did not answer");
                vec![]
            }
        };
        for node in self.others() {
            let link = match self.links.get(&node).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(node = %node.info.id, op, "link: a node left out of the ServerManager's list: {e}");
                    continue;
                }
            };
            match rpc
                .call_on(&link, "invoke", params.clone(), LIST_WAIT)
                .await
            {
                Ok(v) => {
                    for x in list(&v) {
                        if !all.contains(&x) {
                            all.push(x);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %node.info.id, op, error = %e, "link: a node left out of the ServerManager's list");
                }
            }
        }
        all
    }

    /// Makes `ask`'s connection's subscriptions to the ServerManager's events on every other
    /// listed node it has not made them on yet, on the client's own mirror there, in its
    /// session: the events come to its connection as those of its pipelines do. Before the
    /// connection has a session (its first request), nothing: a subscription made on an
    /// owner in a session of its own would not follow the client's (made there later), so it
    /// is made with the connection's next request. A node listed later gets them with the
    /// connection's next request too. Answers are the entry's own (the client gets this
    /// node's).
    async fn subscribe_everywhere(&self, ask: &Ask<'_>) {
        let Some(session) = ask.session.as_deref() else {
            return;
        };
        let todo: Vec<(fluo_cluster::NodeRecord, Vec<Map<String, Value>>)> = {
            let mut subs = lock(&self.manager.subs);
            let Some(s) = subs.get_mut(&ask.conn) else {
                return;
            };
            let others = self.others();
            let mut todo = vec![];
            for n in others {
                let key = (n.info.id.clone(), n.boot);
                let new: Vec<_> = (s.iter_mut())
                    .filter_map(|(r, on)| on.insert(key.clone()).then(|| r.clone()))
                    .collect();
                if !new.is_empty() {
                    todo.push((n, new));
                }
            }
            todo
        };
        for (node, reqs) in todo {
            let link = match self.links.get(&node).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(node = %node.info.id, "link: a ServerManager subscription not made there: {e}");
                    continue;
                }
            };
            for mut r in reqs {
                let own = rebind_id();
                r.insert("id".into(), own.clone());
                if let Some(Value::Object(p)) = r.get_mut("params") {
                    p.insert("sessionId".into(), Value::from(session));
                }
                let text = Value::Object(r).to_string();
                if let Err(e) = link.send(ask, Some(&own), Pending::Swallow, text) {
                    tracing::warn!(node = %node.info.id, "link: a ServerManager subscription not made there: {e}");
                }
            }
        }
    }

    /// The listed nodes but this one.
    fn others(&self) -> Vec<fluo_cluster::NodeRecord> {
        let nodes = self.view.nodes().unwrap_or_default();
        nodes
            .iter()
            .filter(|n| n.info.id != self.me)
            .cloned()
            .collect()
    }
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
