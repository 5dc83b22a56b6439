//! Which node answers a client's request: this one, or the owner of the pipeline the
//! request is about (object ids begin with their pipeline's id), or for a new pipeline the
//! node placement picks. Owners are cached per pipeline; the store is asked only on a miss.
//! A client's `connect` (or `keepAlive`, or `ping`) naming its session binds that session
//! again on each owner the session was forwarded to (through this entry, or, for a client
//! reconnecting from another entry, as the store records it: [`super::resume`]). A
//! MediaElement's `connect` (or `disconnect`) naming an element of another pipeline goes to
//! the relays ([`super::relay`]).

use super::entry::{error_text, unreachable, ClientHandle, Known, Links, Pending};
use super::relay;
use super::GONE_AFTER;
use crate::cluster::View;
use crate::config::ClusterSecret;
use crate::lock;
use fluo_api::ErrorCode;
use fluo_cluster::{Coordinator, NodeId, NodeRecord, Ownership};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The constructor property of MediaPipeline that pins it to a node (a Fluo extension).
pub(crate) const PIN: &str = "fluoNode";

/// The suffix of a pipeline's object id.
const PIPELINE: &str = "_kurento.MediaPipeline";

/// Ids of the entry's own requests (sessions bound again, subscriptions copied).
static REBIND: AtomicU64 = AtomicU64::new(1);

/// This process's mark in those ids: an owner answers a request whose session and id it saw
/// in the last 20 s from its replay cache, so ids that began again at 1 when the entry
/// restarted could be answered there with an answer to the entry's previous run (review
/// R42-final, A7); random, so a client's own ids do not meet them either.
static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Routes the requests of this node's clients in a cluster.
pub(crate) struct Router {
    pub(super) me: NodeId,
    pub(super) view: Arc<View>,
    pub(super) store: Coordinator,
    pub(super) known: Arc<Known>,
    pub(super) links: Arc<Links>,
    /// What this entry writes of its clients' sessions to the store ([`super::resume`]).
    pub(super) publish: super::resume::Publish,
    /// The pipelines this entry placed on each node since the last listing (which does not
    /// show them yet): counted as load, so that a burst of creates does not all go to the
    /// node that looked emptiest.
    placed: std::sync::Mutex<(u64, HashMap<NodeId, u64>)>,
    /// This node's client connections whose session holds something on this node's
    /// engine, with that session (written to the store while they live, [`super::resume`]).
    pub(super) local: std::sync::Mutex<HashMap<u64, String>>,
    /// Where a `connect` to an element of another pipeline goes (a relay, [`relay`]).
    pub(super) relays: relay::Hook,
    /// The ServerManager's lists across the cluster ([`super::manager`]).
    pub(super) manager: super::manager::Manager,
}

/// What a request is about.
enum Target {
    /// An object of this pipeline (or the pipeline).
    Pipeline(String),
    /// A new pipeline, pinned to a node or not.
    Place(Option<String>),
    /// A new pipeline with a pin that is not a node id (not a string).
    BadPin,
}

/// How long a request waits before asking the store again about a pipeline no node owns (a
/// pipeline just made on another node may not be claimed yet).
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// One client's request, as the connection task hands it.
pub(crate) struct Ask<'a> {
    pub conn: u64,
    pub peer: IpAddr,
    pub client: &'a ClientHandle,
    /// The session this connection last spoke for.
    pub session: Option<String>,
    pub text: &'a str,
}

impl Router {
    pub(crate) fn new(
        me: NodeId,
        view: Arc<View>,
        store: Coordinator,
        link: (Arc<ClusterSecret>, std::time::Duration),
        grace: std::time::Duration,
        fanout: usize,
    ) -> Router {
        let known = Arc::new(Known::new(view.clone()));
        Router {
            links: Arc::new(Links::new(me.clone(), link, known.clone())),
            me,
            view,
            store,
            known,
            publish: super::resume::Publish::new(grace),
            placed: Default::default(),
            local: Default::default(),
            relays: relay::Hook::new(fanout),
            manager: super::manager::Manager::new(grace),
        }
    }

    /// The client connection `conn` ended.
    pub(crate) fn closed(&self, conn: u64) {
        lock(&self.local).remove(&conn);
        self.manager.closed(conn);
        self.links.closed(conn);
    }

    /// How many client connections of this node hold objects on other nodes (a drain waits
    /// for none).
    pub(crate) fn holders(&self) -> usize {
        self.links.holders()
    }

    /// Routes `ask`: `Some(text)` for this node's engine (the request with the
    /// connection's session when it names none, without the pin), `None` when it was
    /// forwarded or answered here.
    pub(crate) async fn route(&self, ask: Ask<'_>) -> Option<String> {
        let Ok(Value::Object(mut req)) = serde_json::from_str::<Value>(ask.text) else {
            return Some(ask.text.to_string());
        };
        if let Some(s) = names_session(&req) {
            if !super::is_internal(ask.conn) {
                self.resuming(&ask, &s);
            }
            return self.rebind(&ask, req, &s).await;
        }
        // One session id on every node: the one this connection was last answered with.
        let mut changed = with_session(&mut req, ask.session.as_deref());
        // The ServerManager's lists and events span the cluster.
        if self.manager(&ask, &req).await {
            return None;
        }
        // A MediaElement's connect to an element of another pipeline: a relay (a Fluo
        // extension in a cluster; KMS answers 40004).
        let cross = relay::cross(&req);
        let relayed = cross.is_some();
        if let Some(c) = cross {
            if self.relays.take(&ask, &req, c) {
                return None;
            }
        }
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
            Some(Target::Pipeline(p)) => {
                // An argument of another pipeline (not an element's connect or disconnect,
                // the relays' above): KMS answers 40004; the owner, which may not know that
                // object, says 40101, which the entry turns into 40004 (an answer of the
                // owner's, so that the connection's answers keep their order).
                let foreign = foreign_argument(&req, &p)
                    .filter(|_| !relayed)
                    .map(str::to_string);
                if let Some(o) = &foreign {
                    tracing::debug!(conn = ask.conn, object = %o, "link: a request names an object of another pipeline");
                }
                self.to_owner(ask, req, p, local, foreign).await
            }
            Some(Target::Place(pin)) => self.place(ask, req, pin, local).await,
            Some(Target::BadPin) => {
                let message = format!("{PIN} must be a node id (a string)");
                answer(&ask, "", ErrorCode::MarshallError, message);
                None
            }
        }
    }

    /// A `connect`, `keepAlive` or `ping` naming session `s`: each owner `s` lives on
    /// binds it to this connection (its mirror), so that its events come here and its grace
    /// period ends, as on one KMS. A `connect` or `keepAlive` is answered by the first owner
    /// that takes it (this node's engine may not know the session: it only binds it,
    /// unanswered, if it does); a `ping` by this node's engine.
    async fn rebind(&self, ask: &Ask<'_>, req: Map<String, Value>, s: &str) -> Option<String> {
        let id = req.get("id").cloned();
        let ping = req.get("method").and_then(Value::as_str) == Some("ping");
        let (owners, unsure) = match self.owners_of_session(ask, &req, s).await {
            Ok((o, false)) if o.is_empty() => return Some(ask.text.to_string()),
            Ok(found) => found,
            Err(local) => return Some(local),
        };
        let (answered, unreachable) = self.bind_on(ask, id.as_ref(), ping, &owners, s).await;
        // An owner that may still hold the session cannot be reached now, or the store did
        // not answer which ones do.
        let retry = !answered && (unreachable || unsure) && id.is_some() && !ping;
        if !answered && !retry {
            // Every owner is gone (restarted, or unlisted for longer than [`GONE_AFTER`]),
            // or none was asked: this node's engine answers, 40007 when it does not know
            // the session, as a KMS whose session is gone.
            return Some(ask.text.to_string());
        }
        if retry {
            // Not 40007: kurento-client would drop every object proxy, though the owner
            // may come back with the objects alive. 40004 is "try again"; the client's
            // next request (with sessionId) binds the session on the owner.
            let message = "the nodes holding this session cannot be reached now; try again";
            answer(
                ask,
                "owners unreachable",
                ErrorCode::ConnectError,
                message.into(),
            );
        }
        // This node's engine binds the session too when it knows it, without answering.
        let mut local = req;
        local.remove("id");
        Some(Value::Object(local).to_string())
    }

    /// Binds session `s` on each of `owners` (but this node) for `ask`'s connection: the
    /// client's request (id `id`) goes to the first that takes it, the entry's own to the
    /// others (a `ping` with a ping, anything else with a `connect`). Whether an owner took
    /// the client's request, and whether one that may still hold the session's objects
    /// could not be reached.
    async fn bind_on(
        &self,
        ask: &Ask<'_>,
        id: Option<&Value>,
        ping: bool,
        owners: &[fluo_cluster::Owner],
        s: &str,
    ) -> (bool, bool) {
        let method = if ping { "ping" } else { "connect" };
        let mut relayed = id.is_none() || ping;
        let (mut answered, mut unreachable) = (false, false);
        for o in owners.iter().filter(|o| o.node != self.me) {
            let got = match self.view.record(&o.node, o.boot) {
                Some(node) => self.links.get(&node).await,
                // Not listed: its link while it lives (the owner lost only Redis).
                None => match self.links.live(&o.node, o.boot) {
                    Some(l) => Ok(l),
                    None => {
                        unreachable |= !gone_for_good(&self.view, o);
                        continue;
                    }
                },
            };
            let link = match got {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(node = %o.node, "link: session not bound again there: {e}");
                    unreachable = true;
                    continue;
                }
            };
            let sent = if relayed {
                let own = rebind_id();
                let text = serde_json::json!({"jsonrpc": "2.0", "id": own, "method": method,
                    "params": {"sessionId": s}});
                link.send(ask, Some(&own), Pending::Swallow, text.to_string())
            } else {
                link.send(ask, id, Pending::Plain, ask.text.to_string())
            };
            match sent {
                Ok(()) => {
                    if !ping {
                        link.bound(ask.conn, s);
                        self.known.touch();
                    }
                    answered |= !relayed;
                    relayed = true;
                }
                Err(_) => unreachable = true,
            }
        }
        (answered, unreachable)
    }

    /// The owners session `s` lives on, and whether more may (the store did not answer).
    /// A `connect` or `keepAlive` from a connection that does not hold the session through
    /// this entry already (a reconnect, here or from another entry), or whose owners this
    /// entry no longer remembers (pushed out by newer sessions), gets what this entry
    /// remembers merged with what the store records ([`super::resume`]: the client may have
    /// made objects through another entry since); a `ping` reads the store only when
    /// neither this entry nor the connection knows the session. `Err` when the store does
    /// not answer a `connect` or `keepAlive` with an id and nothing is remembered: answered
    /// 40004 here (not 40007 while owners may hold the session; a ping is this node's
    /// engine's to answer, as ever), and what this node's engine gets.
    pub(super) async fn owners_of_session(
        &self,
        ask: &Ask<'_>,
        req: &Map<String, Value>,
        s: &str,
    ) -> Result<(Vec<fluo_cluster::Owner>, bool), String> {
        let mut owners = self.known.session_owners(s);
        let ping = req.get("method").and_then(Value::as_str) == Some("ping");
        let holds = || {
            lock(&self.local).get(&ask.conn).is_some_and(|x| x == s)
                || self.links.holds_session(ask.conn, s)
        };
        // (A holder's memory may have been pushed out by newer sessions: the store then.)
        let known = if ping {
            !owners.is_empty() || ask.session.as_deref() == Some(s)
        } else {
            !owners.is_empty() && holds()
        };
        if known {
            return Ok((owners, false));
        }
        match self.owners_in_store_of(s).await {
            Ok(found) => {
                for o in found {
                    if !owners.contains(&o) {
                        owners.push(o);
                    }
                }
                Ok((owners, false))
            }
            Err(e) if req.get("id").is_some() && !ping && owners.is_empty() => {
                let message = format!("which nodes hold this session is not known now (the cluster's store does not answer: {e}); try again");
                answer(ask, &e, ErrorCode::ConnectError, message);
                let mut local = req.clone();
                local.remove("id");
                Err(Value::Object(local).to_string())
            }
            Err(_) => Ok((owners, !ping)),
        }
    }

    /// A `create` or `subscribe` of `ask`'s session in a pipeline of this node: the session
    /// lives on this node's engine too, as another entry finds in the store when the client
    /// reconnects there ([`super::resume`]).
    fn holds_here(&self, ask: &Ask<'_>, req: &Map<String, Value>) {
        let (Some(s), Some(boot)) = (ask.session.as_deref(), self.view.boot()) else {
            return;
        };
        if !matches!(
            req.get("method").and_then(Value::as_str),
            Some("create" | "subscribe")
        ) {
            return;
        }
        let me = fluo_cluster::Owner {
            node: self.me.clone(),
            boot,
        };
        self.known.session_on(s, &me);
        let mut local = lock(&self.local);
        if local.get(&ask.conn).is_none_or(|x| x != s) {
            local.insert(ask.conn, s.to_string());
            self.known.touch();
        }
    }

    /// A request about pipeline `p`'s objects.
    async fn to_owner(
        &self,
        ask: Ask<'_>,
        req: Map<String, Value>,
        p: String,
        local: String,
        foreign: Option<String>,
    ) -> Option<String> {
        if self.view.is_local(&p) {
            self.holds_here(&ask, &req);
            return Some(local);
        }
        let owner = match self.known.owner(&p) {
            Some(o) => o,
            // Released through this entry (or on this node): no node holds it, and none will
            // (ids are not reused); this node's engine answers as KMS does for an object
            // that is gone, without asking the store.
            None if self.view.was_released(&p) => return Some(local),
            None => match self.owner_in_store(&p).await {
                Ok(Ownership::Live(o)) if o.node != self.me => {
                    self.known.owned(&p, o.clone());
                    o
                }
                Ok(Ownership::Gone(o)) => o,
                // Unowned: this node's engine answers as KMS does for an unknown object.
                Ok(_) => return Some(local),
                // Its node may well be serving it: not "not found".
                Err(e) => {
                    let message = if e == fluo_cluster::Error::Settling.to_string() {
                        "which node holds this object is not known yet (the cluster's store restarted and the nodes are writing their records again); try again".to_owned()
                    } else {
                        format!("which node holds this object is not known now (the cluster's store does not answer: {e}); try again")
                    };
                    answer(&ask, &e, ErrorCode::ConnectError, message);
                    return None;
                }
            },
        };
        // Only an object whose pipeline this entry knows to be another node's: the owner
        // cannot know it, so its 40101 about it means "another pipeline", not "released"
        // (KMS answers 40101 for a released object, 40004 for a live one of another
        // pipeline); an owner that holds both pipelines answers by itself.
        let elsewhere = |o: &String| {
            let q = pipeline_of(o);
            let node = match q.as_deref() {
                Some(q) if self.view.is_local(q) => Some(self.me.clone()),
                Some(q) => self.known.owner(q).map(|x| x.node),
                None => None,
            };
            node.is_some_and(|n| n != owner.node)
        };
        let pending = match foreign.filter(elsewhere) {
            Some(o) => Pending::Foreign(o),
            None => Pending::of(&req, &p),
        };
        let sent = match self.view.record(&owner.node, owner.boot) {
            Some(node) => self.forward(&ask, &req, local, &node, pending).await,
            // Not listed: its link, while it lives (the owner lost only Redis)...
            None => match self.links.live(&owner.node, owner.boot) {
                Some(link) => {
                    self.subscriptions_first(&ask, &owner.node, &link);
                    link.send(&ask, req.get("id"), pending, local)
                }
                // ..."not found" once it is gone for good (restarted, or unlisted for
                // [`GONE_AFTER`])...
                None if gone_for_good(&self.view, &owner) => {
                    self.known.forget(&p);
                    return self.gone(&ask, &req, &p, &owner.node);
                }
                // ...and "try again" before: a frozen or cut-off owner may come back with its
                // objects (KMS never says "not found" of a live object; kurento-client makes
                // a 40101 a ReferenceError).
                None => Err("it is not listed now (stopped, cut off or restarting)".into()),
            },
        };
        if let Err(e) = sent {
            // Its objects may well be alive (a link blip, a freeze): not "not found".
            let message = unreachable(&owner.node, &e);
            answer(&ask, &e, ErrorCode::ConnectError, message);
        }
        None
    }

    /// Who owns pipeline `p`, as the store says (when no one does, asked again once, a
    /// moment later: a pipeline just made on another node may not be claimed yet; a
    /// `release` waits too, or it could be answered here for a pipeline that exists there).
    async fn owner_in_store(&self, p: &str) -> Result<Ownership, String> {
        let first = self.store.owner(p).await.map_err(|e| e.to_string())?;
        if first != Ownership::Unowned {
            return Ok(first);
        }
        tokio::time::sleep(CLAIM_WAIT).await;
        self.store.owner(p).await.map_err(|e| e.to_string())
    }

    /// A new pipeline: on the node placement picks (this one when it is this node, when
    /// the store is unreachable or lists no node, or when the pick cannot be reached). A
    /// pinned one is placed from the last listing while the store does not answer (the
    /// link does not need the store).
    async fn place(
        &self,
        ask: Ask<'_>,
        req: Map<String, Value>,
        pin: Option<String>,
        local: String,
    ) -> Option<String> {
        let nodes = match (self.view.nodes().filter(|n| !n.is_empty()), &pin) {
            (Some(n), _) => n,
            // Not listed yet (at start) or the store is down: a pin to this node is served
            // here, one to another from the last listing.
            (None, Some(p)) if p == self.me.as_str() => return Some(local),
            (None, Some(_)) => self.view.last_listed(),
            (None, None) => return Some(local),
        };
        let mut nodes = self.with_placed(&nodes);
        // An unpinned create whose node cannot be reached (it died and its record has not
        // expired yet) is placed again among the others, and on this node only when no
        // other is left.
        loop {
            let picked = fluo_cluster::place(&nodes, pin.as_deref());
            if let Some(id) = &picked {
                let mut placed = lock(&self.placed);
                *placed.1.entry(id.clone()).or_default() += 1;
            }
            let node = match picked {
                Some(id) if id == self.me => {
                    self.holds_here(&ask, &req);
                    return Some(local);
                }
                Some(id) => nodes.iter().find(|n| n.info.id == id).cloned(),
                None => None,
            };
            let Some(node) = node else {
                if let Some(pin) = pin {
                    let message = format!(
                        "{PIN} '{pin}': no such node is serving (unknown, gone or draining)"
                    );
                    answer(&ask, "", ErrorCode::NotEnoughResources, message);
                    return None;
                }
                // Every node is full (or unreachable): this node's engine answers with its
                // own limits.
                return Some(local);
            };
            match self
                .forward(&ask, &req, local.clone(), &node, Pending::Pipeline)
                .await
            {
                Ok(()) => return None,
                Err(e) if pin.is_some() => {
                    let message = format!("{PIN} '{}': the node is unreachable: {e}", node.info.id);
                    answer(&ask, &e, ErrorCode::NotEnoughResources, message);
                    return None;
                }
                Err(e) => {
                    tracing::warn!(node = %node.info.id, "link: placing a pipeline there failed ({e}); placing it elsewhere");
                    nodes.retain(|n| n.info.id != node.info.id);
                }
            }
        }
    }

    /// `nodes` with the pipelines placed on each since the listing counted as endpoints.
    fn with_placed(&self, nodes: &[NodeRecord]) -> Vec<NodeRecord> {
        let listings = self.view.listings();
        let mut placed = lock(&self.placed);
        if placed.0 != listings {
            *placed = (listings, HashMap::new());
        }
        let mut nodes = nodes.to_vec();
        for n in &mut nodes {
            n.stats.endpoints += placed.1.get(&n.info.id).copied().unwrap_or(0);
        }
        nodes
    }

    /// Sends the request `req`, as `text`, to `node`.
    async fn forward(
        &self,
        ask: &Ask<'_>,
        req: &Map<String, Value>,
        text: String,
        node: &NodeRecord,
        pending: Pending,
    ) -> Result<(), String> {
        // The session is recorded from the owner's answer (entry.rs learn()), not from the
        // sessionId the client sends.
        let link = self.links.get(node).await?;
        self.subscriptions_first(ask, &node.info.id, &link);
        link.send(ask, req.get("id"), pending, text)
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

/// Whether `o` (not listed now) is gone for good: its node is listed again in another boot
/// (it restarted: its objects are gone), or has been missing from the listings for
/// [`GONE_AFTER`] (killed for good; a shorter freeze or partition is not).
pub(super) fn gone_for_good(view: &View, o: &fluo_cluster::Owner) -> bool {
    let nodes = view.nodes().unwrap_or_else(|| view.last_listed());
    let restarted = nodes
        .iter()
        .any(|n| n.info.id == o.node && n.boot != o.boot);
    restarted
        || view
            .unlisted_for(&o.node, o.boot)
            .is_some_and(|d| d >= GONE_AFTER)
}

/// A new id for one of the entry's own requests (a session bound again).
pub(super) fn rebind_id() -> Value {
    let n = REBIND.fetch_add(1, Ordering::Relaxed);
    Value::from(format!("fluo-rebind-{}-{n}", run_mark()))
}

/// [`RUN`]: 16 random hex digits (should the system's generator fail, the time the process
/// started, in nanoseconds, and its id).
fn run_mark() -> &'static str {
    RUN.get_or_init(|| {
        let random = super::auth::nonce();
        if random.len() >= 16 {
            return random[..16].to_string();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!("{:x}{:x}", now.as_nanos(), std::process::id())
    })
}

/// Answers `ask` with an error (a request without an id gets nothing).
fn answer(ask: &Ask<'_>, why: &str, code: ErrorCode, message: String) {
    let id = serde_json::from_str::<Value>(ask.text)
        .ok()
        .and_then(|v| v.get("id").cloned());
    tracing::debug!(conn = ask.conn, "link: answered here: {why}");
    if id.is_some() {
        ask.client.send(ask.conn, error_text(id, code, message));
    }
}

/// The first object id among `req`'s arguments that the model types as remote objects (an
/// invoke's operation parameters, a create's constructor parameters, single or in lists)
/// and that is of another pipeline than `p`. Other arguments (a name, a URI) are not
/// looked at, whatever they hold; a class the built-in model does not know (a module's) is
/// left to its owner.
fn foreign_argument<'a>(req: &'a Map<String, Value>, p: &str) -> Option<&'a str> {
    use fluo_api::model::{Model, TypeRef};
    let model = Model::builtin();
    let params = req.get("params")?;
    let (defs, args) = match req.get("method")?.as_str()? {
        "invoke" => {
            let object = params.get("object")?.as_str()?;
            let class = object.rsplit('/').next()?.split_once('_')?.1;
            let class = model.class(class)?;
            let op = params.get("operation")?.as_str()?;
            let defs = &model.method(class, op)?.params;
            (defs, params.get("operationParams")?.as_object()?)
        }
        "create" => {
            let class = model.class(params.get("type")?.as_str()?)?;
            (
                class.ctor.as_ref()?,
                params.get("constructorParams")?.as_object()?,
            )
        }
        _ => return None,
    };
    let remote = |t: &TypeRef| {
        let t = match t {
            TypeRef::Array(inner) => inner.as_ref(),
            t => t,
        };
        matches!(t, TypeRef::Named(n) if model.class(n).is_some())
    };
    defs.iter()
        .filter(|d| remote(&d.ty))
        .filter_map(|d| args.get(&d.name))
        .flat_map(|v| match v {
            Value::Array(a) => a.iter().collect::<Vec<_>>(),
            v => vec![v],
        })
        // An object as its id, or (as kurento-client sometimes sends one, e.g. setSource's)
        // as the serialised proxy with its `id`, which the engine takes too.
        .filter_map(|v| v.as_str().or_else(|| v.get("id")?.as_str()))
        .find(|s| pipeline_of(s).is_some_and(|q| q != p))
}

/// The session a `connect`, `keepAlive` or `ping` names.
fn names_session(req: &Map<String, Value>) -> Option<String> {
    let m = req.get("method")?.as_str()?;
    if !matches!(m, "connect" | "keepAlive" | "ping") {
        return None;
    }
    let s = req.get("params")?.get("sessionId")?.as_str()?;
    Some(s.to_string())
}

/// The object a request names (`params.object`).
pub(super) fn object_of(req: &Map<String, Value>) -> Option<&str> {
    req.get("params")?.get("object")?.as_str()
}

/// The pipeline an object id belongs to.
pub(crate) fn pipeline_of(object: &str) -> Option<String> {
    let p = object.split('/').next()?;
    p.ends_with(PIPELINE).then(|| p.to_string())
}

/// What `req` is about, if it is about a pipeline.
fn target(req: &Map<String, Value>) -> Option<Target> {
    let params = req.get("params")?;
    match req.get("method")?.as_str()? {
        "create" if params.get("type")?.as_str()? == "MediaPipeline" => {
            // kurento-client sends a parameter its class does not declare (`create(
            // 'MediaPipeline', {fluoNode})`) in `properties`; a raw client may put it in
            // `constructorParams`.
            let pin = ["constructorParams", "properties"]
                .iter()
                .find_map(|k| params.get(k).and_then(|c| c.get(PIN)));
            match pin {
                None => Some(Target::Place(None)),
                Some(Value::String(n)) => Some(Target::Place(Some(n.clone()))),
                Some(_) => Some(Target::BadPin),
            }
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
        // A transaction whose operations name objects of one pipeline goes to its node
        // (`newref:` ids name objects of the same transaction); any other is this node's.
        "transaction" => {
            let mut one: Option<String> = None;
            for op in params.get("operations")?.as_array()? {
                match op.as_object().and_then(target) {
                    Some(Target::Pipeline(p)) if one.as_ref().is_none_or(|q| *q == p) => {
                        one = Some(p);
                    }
                    Some(_) => return None,
                    None => {}
                }
            }
            one.map(Target::Pipeline)
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

/// Removes the pin from a MediaPipeline's constructor parameters and properties; whether
/// there was one.
fn unpin(req: &mut Map<String, Value>) -> bool {
    let Some(params) = req.get_mut("params").and_then(Value::as_object_mut) else {
        return false;
    };
    let mut found = false;
    for k in ["constructorParams", "properties"] {
        if let Some(c) = params.get_mut(k).and_then(Value::as_object_mut) {
            found |= c.remove(PIN).is_some();
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn an_argument_of_another_pipeline_is_found() {
        let (p, q) = ("0f3c_kurento.MediaPipeline", "77aa_kurento.MediaPipeline");
        let hub = format!("{p}/1_kurento.Dispatcher");
        let mine = format!("{p}/2_kurento.HubPort");
        let theirs = format!("{q}/3_kurento.HubPort");
        let invoke = |args: Value| {
            req(serde_json::json!({"method": "invoke", "params": {
                "object": hub, "operation": "connect", "operationParams": args}}))
        };
        let r = invoke(serde_json::json!({"source": theirs, "sink": mine}));
        assert_eq!(foreign_argument(&r, p), Some(theirs.as_str()));
        let r = invoke(serde_json::json!({"source": mine, "sink": mine}));
        assert_eq!(foreign_argument(&r, p), None);
        // Only arguments the model types as objects: a name that holds another pipeline's
        // id (the relays name their ends so) is a name.
        let r = req(serde_json::json!({"method": "invoke", "params": {
            "object": hub, "operation": "setName",
            "operationParams": {"name": format!("fluo-relay-out:{theirs}")}}}));
        assert_eq!(foreign_argument(&r, p), None);
        let r = req(serde_json::json!({"method": "invoke", "params": {
            "object": format!("{p}/5_kurento.PlayerEndpoint"), "operation": "connect",
            "operationParams": {"sink": theirs}}}));
        assert_eq!(foreign_argument(&r, p), Some(theirs.as_str()));
        // kurento-client's serialised proxy (an object with its id).
        let r = req(serde_json::json!({"method": "invoke", "params": {
            "object": format!("{p}/7_kurento.DispatcherOneToMany"), "operation": "setSource",
            "operationParams": {"source": {"_events": {}, "id": theirs}}}}));
        assert_eq!(foreign_argument(&r, p), Some(theirs.as_str()));
        // A class the built-in model does not know: left to the owner.
        let r = req(serde_json::json!({"method": "invoke", "params": {
            "object": format!("{p}/6_acme.Thing"), "operation": "connect",
            "operationParams": {"sink": theirs}}}));
        assert_eq!(foreign_argument(&r, p), None);
        let r = req(
            serde_json::json!({"method": "create", "params": {"type": "HubPort",
            "constructorParams": {"mediaPipeline": p, "hub": format!("{q}/4_kurento.Composite")}}}),
        );
        assert!(foreign_argument(&r, p).is_some());
        // A pipeline's own id is of that pipeline.
        let r = req(
            serde_json::json!({"method": "create", "params": {"type": "PassThrough",
            "constructorParams": {"mediaPipeline": p}}}),
        );
        assert_eq!(foreign_argument(&r, p), None);
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
        // A transaction about one pipeline's objects (and those it makes).
        let r = req(
            serde_json::json!({"method": "transaction", "params": {"operations": [
                {"id": 0, "method": "create", "params": {"type": "PassThrough", "constructorParams": {"mediaPipeline": p}}},
                {"id": 1, "method": "invoke", "params": {"object": "newref:0", "operation": "connect", "operationParams": {"sink": el}}},
                {"id": 2, "method": "invoke", "params": {"object": el, "operation": "getName"}},
            ]}}),
        );
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
        // As kurento-client sends it: in `properties`.
        let mut r = req(serde_json::json!({"method": "create", "params": {
            "type": "MediaPipeline", "properties": {"fluoNode": "c", "other": 1}}}));
        assert!(matches!(target(&r), Some(Target::Place(Some(n))) if n == "c"));
        assert!(unpin(&mut r) && !unpin(&mut r));
        assert_eq!(r["params"]["properties"], serde_json::json!({"other": 1}));
        let r = req(serde_json::json!({"method": "create", "params": {
            "type": "MediaPipeline", "properties": {"fluoNode": 3}}}));
        assert!(matches!(target(&r), Some(Target::BadPin)));
        let r = req(serde_json::json!({"method": "create", "params": {"type": "MediaPipeline"}}));
        assert!(matches!(target(&r), Some(Target::Place(None))));
        for pin in [
            serde_json::json!(7),
            serde_json::json!(null),
            serde_json::json!(["b"]),
        ] {
            let r = req(serde_json::json!({"method": "create", "params": {
                "type": "MediaPipeline", "constructorParams": {"fluoNode": pin}}}));
            assert!(matches!(target(&r), Some(Target::BadPin)), "{pin}");
        }
        // The ServerManager, pings, transactions, odd ids: this node's engine.
        for r in [
            serde_json::json!({"method": "invoke", "params": {"object": "manager_ServerManager"}}),
            serde_json::json!({"method": "ping", "params": {}}),
            serde_json::json!({"method": "connect", "params": {"sessionId": "s"}}),
            serde_json::json!({"method": "transaction", "params": {"operations": []}}),
            // Operations on two pipelines, or making a pipeline: this node's.
            serde_json::json!({"method": "transaction", "params": {"operations": [
                {"method": "invoke", "params": {"object": el}},
                {"method": "invoke", "params": {"object": "1_kurento.MediaPipeline/2_kurento.PassThrough"}},
            ]}}),
            serde_json::json!({"method": "transaction", "params": {"operations": [
                {"method": "create", "params": {"type": "MediaPipeline"}},
            ]}}),
            serde_json::json!({"method": "invoke", "params": {"object": 7}}),
            serde_json::json!({"method": "invoke"}),
        ] {
            assert!(target(&req(r.clone())).is_none(), "{r}");
        }
    }

    #[test]
    fn the_entrys_own_request_ids_carry_a_mark_of_its_process() {
        let (a, b) = (rebind_id(), rebind_id());
        assert_ne!(a, b);
        for id in [&a, &b] {
            let id = id.as_str().unwrap();
            let rest = id
                .strip_prefix("fluo-rebind-")
                .unwrap_or_else(|| panic!("{id}"));
            let (mark, n) = rest.rsplit_once('-').unwrap_or_else(|| panic!("{id}"));
            assert_eq!(mark, run_mark(), "{id}");
            assert!(n.parse::<u64>().is_ok(), "{id}");
        }
        let mark = run_mark();
        assert!(
            mark.len() >= 16 && mark.chars().all(|c| c.is_ascii_hexdigit()),
            "{mark}"
        );
    }

    #[test]
    fn connect_keep_alive_and_ping_naming_a_session_bind_it_on_the_owners() {
        for m in ["connect", "keepAlive", "ping"] {
            let r = req(serde_json::json!({"method": m, "params": {"sessionId": "s1"}}));
            assert_eq!(names_session(&r).as_deref(), Some("s1"), "{m}");
        }
        for r in [
            serde_json::json!({"method": "connect", "params": {}}),
            serde_json::json!({"method": "ping"}),
            serde_json::json!({"method": "invoke", "params": {"sessionId": "s1"}}),
            serde_json::json!({"method": "connect", "params": {"sessionId": 7}}),
        ] {
            assert!(names_session(&req(r.clone())).is_none(), "{r}");
        }
    }
}
