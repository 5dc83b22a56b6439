//! Which node answers a client's request: this one, or the owner of the pipeline the
//! request is about (object ids begin with their pipeline's id), or for a new pipeline the
//! node placement picks. Owners are cached per pipeline; the store is asked only on a miss.

use super::entry::{error_text, Links, Owners, Pending};
use crate::cluster::View;
use crate::config::ClusterSecret;
use fluo_api::ErrorCode;
use fluo_cluster::{Coordinator, NodeId, NodeRecord, Ownership};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The constructor property of MediaPipeline that pins it to a node (a Fluo extension).
pub(crate) const PIN: &str = "fluoNode";

/// The suffix of a pipeline's object id.
const PIPELINE: &str = "_kurento.MediaPipeline";

/// The most pipelines whose owner is cached (then the cache starts again).
const CACHED: usize = 100_000;

/// Routes the requests of this node's clients in a cluster.
pub(crate) struct Router {
    me: NodeId,
    view: Arc<View>,
    store: Coordinator,
    owners: Owners,
    links: Links,
}

/// What a request is about.
enum Target {
    /// An object of this pipeline (or the pipeline).
    Pipeline(String),
    /// A new pipeline, pinned to a node or not.
    Place(Option<String>),
}

/// One client's request, as the connection task hands it.
pub(crate) struct Ask<'a> {
    pub conn: u64,
    pub peer: IpAddr,
    pub out: &'a mpsc::Sender<String>,
    /// The session this connection last spoke for.
    pub session: Option<String>,
    pub text: &'a str,
}

impl Router {
    pub(crate) fn new(
        me: NodeId,
        view: Arc<View>,
        store: Coordinator,
        secret: Arc<ClusterSecret>,
    ) -> Router {
        let owners = Owners::default();
        Router {
            links: Links::new(me.clone(), secret, owners.clone()),
            me,
            view,
            store,
            owners,
        }
    }

    /// The client connection `conn` ended.
    pub(crate) fn closed(&self, conn: u64) {
        self.links.closed(conn);
    }

    /// Routes `ask`: `Some(text)` for this node's engine (the request with the
    /// connection's session when it names none, without the pin), `None` when it was
    /// forwarded or answered here.
    pub(crate) async fn route(&self, ask: Ask<'_>) -> Option<String> {
        let Ok(Value::Object(mut req)) = serde_json::from_str::<Value>(ask.text) else {
            return Some(ask.text.to_string());
        };
        // One session id on every node: the one this connection was last answered with.
        let mut changed = with_session(&mut req, ask.session.as_deref());
        let target = target(&req);
        if let Some(Target::Place(_)) = &target {
            changed |= unpin(&mut req);
        }
        let local = if changed {
            Value::Object(req.clone()).to_string()
        } else {
            ask.text.to_string()
        };
        match target {
            None => Some(local),
            Some(Target::Pipeline(p)) => self.to_owner(ask, req, p, local).await,
            Some(Target::Place(pin)) => self.place(ask, req, pin, local).await,
        }
    }

    /// A request about pipeline `p`'s objects.
    async fn to_owner(
        &self,
        ask: Ask<'_>,
        req: Map<String, Value>,
        p: String,
        local: String,
    ) -> Option<String> {
        if self.view.is_local(&p) {
            return Some(local);
        }
        let cached = lock(&self.owners).get(&p).cloned();
        let owner = match cached {
            Some(o) => o,
            None => match self.store.owner(&p).await {
                Ok(Ownership::Live(o)) if o.node != self.me => {
                    let mut owners = lock(&self.owners);
                    if owners.len() >= CACHED {
                        owners.clear();
                    }
                    owners.insert(p.clone(), o.clone());
                    o
                }
                Ok(Ownership::Gone(o)) => return self.gone(&ask, &req, &p, &o.node),
                // Unowned (or the store is down): this node's engine answers as KMS does.
                _ => return Some(local),
            },
        };
        let Some(node) = self.view.record(&owner.node, owner.boot) else {
            lock(&self.owners).remove(&p);
            return self.gone(&ask, &req, &p, &owner.node);
        };
        let pending = match req.get("method").and_then(Value::as_str) {
            Some("release") if object_of(&req) == Some(p.as_str()) => Pending::Release(p),
            _ => Pending::Plain,
        };
        if let Err(e) = self.forward(&ask, req, &node, pending).await {
            let message = format!(
                "the node {} that holds this object is unreachable: {e}",
                node.info.id
            );
            answer(&ask, &e, ErrorCode::MediaObjectNotFound, message);
        }
        None
    }

    /// A new pipeline: on the node placement picks (this one when it is this node, when
    /// the store is unreachable or lists no node, or when the pick cannot be reached).
    async fn place(
        &self,
        ask: Ask<'_>,
        req: Map<String, Value>,
        pin: Option<String>,
        local: String,
    ) -> Option<String> {
        let Some(nodes) = self.view.nodes().filter(|n| !n.is_empty()) else {
            return Some(local);
        };
        let picked = fluo_cluster::place(&nodes, pin.as_deref());
        let node = match picked {
            Some(id) if id == self.me => return Some(local),
            Some(id) => nodes.iter().find(|n| n.info.id == id).cloned(),
            None => None,
        };
        let Some(node) = node else {
            if let Some(pin) = pin {
                let message =
                    format!("{PIN} '{pin}': no such node is serving (unknown, gone or draining)");
                answer(&ask, "", ErrorCode::NotEnoughResources, message);
                return None;
            }
            // Every node is full: this node's engine answers with its own limits.
            return Some(local);
        };
        match self.forward(&ask, req, &node, Pending::Pipeline).await {
            Ok(()) => None,
            Err(e) if pin.is_some() => {
                let message = format!("{PIN} '{}': the node is unreachable: {e}", node.info.id);
                answer(&ask, &e, ErrorCode::NotEnoughResources, message);
                None
            }
            Err(e) => {
                tracing::warn!(node = %node.info.id, "link: placing a pipeline there failed ({e}); creating it here");
                Some(local)
            }
        }
    }

    /// Sends the request to `node`.
    async fn forward(
        &self,
        ask: &Ask<'_>,
        req: Map<String, Value>,
        node: &NodeRecord,
        pending: Pending,
    ) -> Result<(), String> {
        let link = self.links.get(node).await?;
        let id = req.get("id").cloned();
        let text = Value::Object(req).to_string();
        link.send(ask.conn, ask.peer, ask.out, id.as_ref(), pending, text)
    }

    fn gone(
        &self,
        ask: &Ask<'_>,
        req: &Map<String, Value>,
        p: &str,
        node: &NodeId,
    ) -> Option<String> {
        let object = object_of(req).unwrap_or(p);
        let message = format!("Object '{object}' not found: its node {node} is gone");
        answer(ask, "", ErrorCode::MediaObjectNotFound, message);
        None
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Answers `ask` with an error (a request without an id gets nothing).
fn answer(ask: &Ask<'_>, why: &str, code: ErrorCode, message: String) {
    let id = serde_json::from_str::<Value>(ask.text)
        .ok()
        .and_then(|v| v.get("id").cloned());
    tracing::debug!(conn = ask.conn, "link: answered here: {why}");
    if id.is_some() {
        let _ = ask.out.try_send(error_text(id, code, message));
    }
}

/// The object a request names (`params.object`).
fn object_of(req: &Map<String, Value>) -> Option<&str> {
    req.get("params")?.get("object")?.as_str()
}

/// The pipeline an object id belongs to.
fn pipeline_of(object: &str) -> Option<String> {
    let p = object.split('/').next()?;
    p.ends_with(PIPELINE).then(|| p.to_string())
}

/// What `req` is about, if it is about a pipeline.
fn target(req: &Map<String, Value>) -> Option<Target> {
    let params = req.get("params")?;
    match req.get("method")?.as_str()? {
        "create" if params.get("type")?.as_str()? == "MediaPipeline" => {
            let pin = params
                .get("constructorParams")
                .and_then(|c| c.get(PIN))
                .and_then(Value::as_str)
                .map(str::to_string);
            Some(Target::Place(pin))
        }
        // By the object a constructor parameter names: `mediaPipeline`, or another object
        // of a pipeline (HubPort's `hub`).
        "create" => {
            let c = params.get("constructorParams")?.as_object()?;
            c.get("mediaPipeline")
                .into_iter()
                .chain(c.values())
                .filter_map(Value::as_str)
                .find_map(pipeline_of)
                .map(Target::Pipeline)
        }
        "invoke" | "subscribe" | "unsubscribe" | "release" | "describe" => {
            pipeline_of(params.get("object")?.as_str()?).map(Target::Pipeline)
        }
        _ => None,
    }
}

/// Adds `session` to a request that names none (not to `connect`, where none asks for a
/// new session, nor to `ping`); whether it did.
fn with_session(req: &mut Map<String, Value>, session: Option<&str>) -> bool {
    let Some(s) = session else {
        return false;
    };
    if matches!(
        req.get("method").and_then(Value::as_str),
        Some("connect" | "ping") | None
    ) {
        return false;
    }
    match req.get_mut("params") {
        Some(Value::Object(p)) if !p.contains_key("sessionId") => {
            p.insert("sessionId".into(), Value::from(s));
            true
        }
        _ => false,
    }
}

/// Removes the pin from a MediaPipeline's constructor parameters; whether there was one.
fn unpin(req: &mut Map<String, Value>) -> bool {
    req.get_mut("params")
        .and_then(|p| p.get_mut("constructorParams"))
        .and_then(Value::as_object_mut)
        .is_some_and(|c| c.remove(PIN).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn requests_are_routed_by_the_pipeline_in_their_object_id() {
        let p = "0f3c_kurento.MediaPipeline";
        let el = format!("{p}/9a1b_kurento.WebRtcEndpoint");
        for m in ["invoke", "subscribe", "unsubscribe", "release", "describe"] {
            let r = req(serde_json::json!({"method": m, "params": {"object": el}}));
            assert!(
                matches!(target(&r), Some(Target::Pipeline(x)) if x == p),
                "{m}"
            );
        }
        let r = req(serde_json::json!({"method": "release", "params": {"object": p}}));
        assert!(matches!(target(&r), Some(Target::Pipeline(x)) if x == p));
        let r = req(serde_json::json!({"method": "create", "params": {
            "type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": p}}}));
        assert!(matches!(target(&r), Some(Target::Pipeline(x)) if x == p));
        // HubPort's constructor names its hub, not the pipeline.
        let hub = format!("{p}/77aa_kurento.Composite");
        let r = req(serde_json::json!({"method": "create", "params": {
            "type": "HubPort", "constructorParams": {"hub": hub}}}));
        assert!(matches!(target(&r), Some(Target::Pipeline(x)) if x == p));
        // A parameter that is not an object id does not route (a URI has slashes too).
        let r = req(serde_json::json!({"method": "create", "params": {
            "type": "PlayerEndpoint", "constructorParams": {"uri": "http://h/x_kurento.MediaPipeline/y"}}}));
        assert!(target(&r).is_none());
        let mut r = req(serde_json::json!({"method": "create", "params": {
            "type": "MediaPipeline", "constructorParams": {"fluoNode": "b"}}}));
        assert!(matches!(target(&r), Some(Target::Place(Some(n))) if n == "b"));
        assert!(unpin(&mut r) && !unpin(&mut r));
        assert_eq!(r["params"]["constructorParams"], serde_json::json!({}));
        let r = req(serde_json::json!({"method": "create", "params": {"type": "MediaPipeline"}}));
        assert!(matches!(target(&r), Some(Target::Place(None))));
        // The ServerManager, pings, transactions, odd ids: this node's engine.
        for r in [
            serde_json::json!({"method": "invoke", "params": {"object": "manager_ServerManager"}}),
            serde_json::json!({"method": "ping", "params": {}}),
            serde_json::json!({"method": "transaction", "params": {"operations": []}}),
            serde_json::json!({"method": "invoke", "params": {"object": 7}}),
            serde_json::json!({"method": "invoke"}),
        ] {
            assert!(target(&req(r.clone())).is_none(), "{r}");
        }
    }
}
