//! The ServerManager through an entry (docs/cluster.md, "ServerManager"). A client of a
//! cluster sees one server where it lists what the server holds: `getPipelines` and
//! `getSessions` asked of any entry list every listed node's (this node's, and each other
//! node's asked at once over the link through the entry's own connection), and a
//! subscription to a ServerManager event (`ObjectCreated`, `ObjectDestroyed`) made through an
//! entry is also made on every other listed node, in the client's session on its mirror
//! there, so that objects made anywhere are announced to it. A task makes those
//! subscriptions, once the client's session is known, on each node listed (later ones too)
//! and again on a link to a new boot of it (a link made again to the same boot binds the
//! session there, where they live on). They are the session's, as the engine's own are: kept
//! through the session's grace period once its connection ended, and followed to the
//! connection that resumes the session (bound there on each node), ended with the session.
//! The rest (`getInfo`, `getKmd`, `getMetadata`, CPU and memory) is the entry's own: it
//! describes the node the client talks to.

use super::entry::{ClientHandle, Link, Pending};
use super::relay::rpc::Rpc;
use super::route::{rebind_id, Ask, Router};
use crate::lock;
use fluo_api::ids::SERVER_MANAGER_ID;
use fluo_cluster::{NodeId, NodeRecord};
use serde_json::{json, Map, Value};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How long the entry waits for the other nodes' lists, all asked at once (a node that does
/// not answer in time is left out of the answer, and logged).
const LIST_WAIT: Duration = Duration::from_secs(2);

/// How often the subscriptions are looked at without being woken (nodes listed, links made
/// again, refusals to try again, sessions whose grace period ran out).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The longest a copy a node keeps refusing waits before it is made again: the wait doubles
/// from [`LOOK_EVERY`] at each refusal in a row, up to this.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The ServerManager's lists that span the cluster.
const GATHERED: [&str; 2] = ["getPipelines", "getSessions"];

/// The entry's own connection for the lists (opened once the engine runs), and its client
/// sessions' subscriptions to the ServerManager's events.
pub(crate) struct Manager {
    rpc: OnceLock<Arc<Rpc>>,
    listeners: Arc<Mutex<Listeners>>,
    wake: Arc<Notify>,
    /// The other nodes' answers to the copied subscriptions, read at the next look.
    answers: Answers,
}

/// Where the links put the other nodes' answers to the copied subscriptions
/// ([`Pending::Copied`]).
pub(crate) type Answers = Arc<Mutex<Vec<Answer>>>;

/// A node's answer to one of the entry's requests about a session's copies there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub node: NodeId,
    pub session: String,
    pub asked: Asked,
    pub outcome: Outcome,
}

/// What the entry asked a node for a session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Asked {
    /// A copy of the session's subscription to this event type.
    Copy(String),
    /// The session bound to the client connection's mirror (`connect {sessionId}`), its
    /// copies of these event types in it there: made over an earlier link to the same boot
    /// of the node, or for an earlier connection.
    Bind(Vec<String>),
}

/// What came of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Done,
    /// The node's error.
    Refused(Value),
    /// The link broke before the answer came: whether the node got it is not known.
    Lost,
}

/// The client sessions' subscriptions to the ServerManager's events.
struct Listeners {
    /// How long a session outlives its last connection (`--session-grace-secs`, as the
    /// engine keeps the session and its own subscription).
    grace: Duration,
    /// By session.
    sessions: HashMap<String, Listener>,
    /// Those of connections whose session is not known yet (their subscription was their
    /// first request, not answered yet), by connection.
    unsessioned: HashMap<u64, Listener>,
    /// The session each connection with subscriptions speaks for (the sessions' `at`).
    conns: HashMap<u64, String>,
    /// The session with subscriptions each connection asked to resume (`connect`,
    /// `keepAlive` or `ping` naming it), not answered yet: they follow it once it is
    /// accepted (R43-cluster 7), unless the connection ended first.
    resuming: HashMap<u64, String>,
}

/// A client connection: where a session's events go now.
#[derive(Clone)]
struct At {
    conn: u64,
    client: ClientHandle,
    peer: IpAddr,
}

/// A session's subscriptions to the ServerManager's events (one per event type), and where
/// they were made.
struct Listener {
    /// The connection the session is on; `None` once it ended (at `left`).
    at: Option<At>,
    left: Option<Instant>,
    /// As the client sent them, without their ids.
    reqs: Vec<Map<String, Value>>,
    /// Per node: what was made there.
    made: HashMap<NodeId, Made>,
    /// The copies a node refused (node, event type) since they were last made there: each
    /// logged at warn once, then at debug while it keeps refusing, and made again only after
    /// a wait that doubles at each refusal in a row.
    refused: HashMap<(NodeId, String), Refusal>,
}

/// A copy a node refused: how many times in a row, and when it may be made again.
struct Refusal {
    times: u32,
    retry_at: Instant,
}

impl Refusal {
    /// The wait after the `times`-th refusal in a row: 1 s, 2 s, 4 s ... up to [`RETRY_MAX`].
    fn wait(times: u32) -> Duration {
        let doublings = times.saturating_sub(1).min(16);
        LOOK_EVERY.saturating_mul(1 << doublings).min(RETRY_MAX)
    }
}

/// What was made on one node: over which link (to which boot of it), on which client
/// connection's mirror, the subscriptions to which event types. They live in the session
/// there for as long as the node's own session does: a link made again to the same boot
/// finds them (the session is bound to the new mirror), one to a new boot does not.
struct Made {
    link: Weak<Link>,
    boot: u64,
    conn: u64,
    events: HashSet<String>,
}

/// What the task has to send a node for a session.
struct Todo {
    session: String,
    at: At,
    node: NodeRecord,
    /// The session holds copies there, made over an earlier link to the same boot or on
    /// another connection: bind it to this connection's mirror first.
    bind: bool,
    /// The subscriptions not made there.
    reqs: Vec<Map<String, Value>>,
}

impl Manager {
    /// The manager of an entry whose sessions outlive their connections by `grace`.
    pub(crate) fn new(grace: Duration) -> Manager {
        Manager {
            rpc: OnceLock::new(),
            listeners: Arc::new(Mutex::new(Listeners::new(grace))),
            wake: Arc::new(Notify::new()),
            answers: Answers::default(),
        }
    }

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

    /// The client connection `conn` ended: its session's subscriptions wait for the session
    /// to be resumed, through its grace period.
    pub(crate) fn closed(&self, conn: u64) {
        lock(&self.listeners).closed(conn, Instant::now());
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
fn event_type(req: &Map<String, Value>) -> &str {
    req.get("params")
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The session a `closeSession` ends (the connection's when it names none).
fn closes<'a>(req: &'a Map<String, Value>, ask: &'a Ask<'_>) -> Option<&'a str> {
    if req.get("method").and_then(Value::as_str) != Some("closeSession") {
        return None;
    }
    let named = req.get("params").and_then(|p| p.get("sessionId"));
    named.and_then(Value::as_str).or(ask.session.as_deref())
}

impl Router {
    /// A client's request about the ServerManager that spans the cluster: a list is
    /// answered here (`true`); a subscription is kept to be made on every other listed node
    /// (and goes on to this node's engine: `false`). A request in a session whose
    /// subscriptions are on another connection brings them to this one; a `closeSession`
    /// ends them. The entry's own connections (the relays', the lists') are this node's only.
    pub(super) async fn manager(&self, ask: &Ask<'_>, req: &Map<String, Value>) -> bool {
        if super::is_internal(ask.conn) {
            return false;
        }
        if let Some(s) = closes(req, ask) {
            lock(&self.manager.listeners).ended(s);
            return false;
        }
        if let Some(s) = &ask.session {
            self.resumed(ask, s);
        }
        if manager_subscribe(req) {
            self.listen(ask, req);
            return false;
        }
        let (Some(op), Some(rpc)) = (gathered(req), self.manager.rpc.get()) else {
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

    /// `ask`'s connection asks to resume session `s` (a `connect`, `keepAlive` or `ping`
    /// naming it), which the engines may refuse: its subscriptions follow only once an
    /// answer in `s` goes out on the connection ([`Router::resumed`] then), not before
    /// (R43-cluster 7: a refused `connect` moved them and bound the session on the nodes).
    pub(super) fn resuming(&self, ask: &Ask<'_>, s: &str) {
        let conn = ask.conn;
        {
            let mut all = lock(&self.manager.listeners);
            if !all.sessions.contains_key(s) {
                all.resuming.remove(&conn);
                return;
            }
            all.resuming.insert(conn, s.to_string());
        }
        let (listeners, wake) = (self.manager.listeners.clone(), self.manager.wake.clone());
        let (session, to) = (s.to_string(), at(ask));
        let then = Box::new(move || {
            if lock(&listeners).accepted(&session, to) {
                tracing::debug!(conn, session, "link: the ServerManager subscriptions of a session follow it to a new connection");
                wake.notify_one();
            }
        });
        if !ask.client.when_answered_in(s, then) {
            lock(&self.manager.listeners).resuming.remove(&conn);
        }
    }

    /// `ask`'s connection speaks for session `s` (a request in it, as its last answer
    /// said): the session's subscriptions, if it has some on another connection (or on
    /// none, its connection ended), are this one's now, as the engine binds a session to
    /// the connection of its last request, and the task binds the session to it on the
    /// nodes they were made on: at once for a session resumed (it was on no connection),
    /// at the task's next look when it comes from another live connection, so that two
    /// connections of one session taking turns cost at most one bind per node and look,
    /// and none when they end where they were (R43-cluster 3). (Not for the entry's own
    /// connections.)
    pub(super) fn resumed(&self, ask: &Ask<'_>, s: &str) {
        let moved = {
            let mut all = lock(&self.manager.listeners);
            let from_live = all.sessions.get(s).is_some_and(|l| l.at.is_some());
            all.attach(s, at(ask)).then_some(from_live)
        };
        let Some(from_live) = moved else {
            return;
        };
        tracing::debug!(
            conn = ask.conn,
            session = s,
            from_live,
            "link: the ServerManager subscriptions of a session follow it to a new connection"
        );
        if !from_live {
            self.manager.wake.notify_one();
        }
    }

    /// Keeps `ask`'s subscription `req` (one per event type and session) and wakes the
    /// task that makes it on the other nodes.
    fn listen(&self, ask: &Ask<'_>, req: &Map<String, Value>) {
        let session = ask.session.clone().or_else(|| ask.client.session());
        if lock(&self.manager.listeners).listen(at(ask), session, req) {
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

    /// Makes each client session's subscriptions to the ServerManager's events on every
    /// other listed node where they are not made yet on its current link (a node listed
    /// since, a link made again, a subscription added or refused, the session learnt), on
    /// the client's own mirror there: the events come to its connection as those of its
    /// pipelines do. A session made there on an earlier connection (resumed on a new one)
    /// is bound to the new one there first. A connection whose session is not known yet (its
    /// first request was the subscription, not answered yet) is looked at again later. The
    /// nodes' links are got at once (each bounded by the link's connect time), so that an
    /// unreachable node delays no other.
    pub(super) async fn subscribe_everywhere(&self) {
        let answers = std::mem::take(&mut *lock(&self.manager.answers));
        let todo = {
            let mut all = lock(&self.manager.listeners);
            let now = Instant::now();
            all.heard(answers, now);
            all.tidy(now);
            all.due(&self.others(), now, |n| self.links.live(&n.info.id, n.boot))
        };
        let mut nodes: Vec<&NodeRecord> = vec![];
        for t in &todo {
            if nodes.iter().all(|n| n.info.id != t.node.info.id) {
                nodes.push(&t.node);
            }
        }
        let gets = nodes.iter().map(|n| async move {
            let got = self.links.get(n).await;
            (n.info.id.clone(), got)
        });
        let links: HashMap<NodeId, Result<Arc<Link>, String>> =
            futures_util::future::join_all(gets)
                .await
                .into_iter()
                .collect();
        for t in todo {
            match links.get(&t.node.info.id) {
                Some(Ok(link)) => self.make(t, link),
                Some(Err(e)) => {
                    tracing::debug!(node = %t.node.info.id, "link: ServerManager subscriptions not made there yet: {e}");
                }
                None => {}
            }
        }
    }

    /// Sends `t` over `link`, under the listeners' lock and only while its connection still
    /// holds the session: it may have ended while the link was got, and a send then would
    /// open a mirror there that nothing closes ([`Router::closed`] parks the listener before
    /// it closes the connection's mirrors, so one opened before that goes with them; review
    /// R42-final, A1).
    fn make(&self, t: Todo, link: &Arc<Link>) {
        let mut all = lock(&self.manager.listeners);
        let Some(l) = all.sessions.get_mut(&t.session) else {
            return;
        };
        if l.at.as_ref().is_none_or(|a| a.conn != t.at.conn) {
            return;
        }
        let ask = Ask {
            conn: t.at.conn,
            peer: t.at.peer,
            client: &t.at.client,
            session: Some(t.session.clone()),
            text: "",
        };
        let node = &t.node.info.id;
        let plan = (t.bind, &t.reqs[..]);
        match l.send(&ask, (&t.session, node, link), plan, &self.manager.answers) {
            None => {
                tracing::debug!(%node, "link: ServerManager subscriptions not bound there yet (the link refused it)");
            }
            Some(n) if n < t.reqs.len() => {
                tracing::debug!(%node, sent = n, of = t.reqs.len(), "link: ServerManager subscriptions not all made there yet (the link refused them)");
            }
            Some(_) => {}
        }
    }

    /// Before `ask`'s request goes to `node` over `link`: its session's subscriptions to the
    /// ServerManager's events not made there yet on this link are sent first, so that a
    /// client's `subscribe` then `create` (or anything) on another node finds the subscription
    /// made there, in that order on the link (the task would make it too, but may come
    /// later). Nothing for a session without such subscriptions, on another connection, or
    /// a connection with no session yet. (The request itself, in the session, binds it there
    /// to this connection, which is recorded: the task need not bind it there.)
    pub(super) fn subscriptions_first(&self, ask: &Ask<'_>, node: &NodeId, link: &Arc<Link>) {
        let mut all = lock(&self.manager.listeners);
        let Some((session, l)) = all.on(ask.conn, ask.session.clone()) else {
            return;
        };
        let (bind, reqs) = l.plan(node, Some(link), ask.conn, Instant::now());
        // Over the same link the request itself, in the session, binds it there to this
        // connection: no bind of the entry's own (R43-cluster 3).
        let same_link = l.made.get(node).is_some_and(|m| same(link, m));
        let bind = bind && !same_link;
        if bind || !reqs.is_empty() {
            let to = (&session[..], node, link);
            l.send(ask, to, (bind, &reqs), &self.manager.answers);
        }
        if let Some(m) = l.made.get_mut(node).filter(|m| same(link, m)) {
            m.conn = ask.conn;
        }
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

/// Where `ask`'s connection gets its events.
fn at(ask: &Ask<'_>) -> At {
    At {
        conn: ask.conn,
        client: ask.client.clone(),
        peer: ask.peer,
    }
}

impl Listeners {
    fn new(grace: Duration) -> Listeners {
        Listeners {
            grace,
            sessions: HashMap::new(),
            unsessioned: HashMap::new(),
            conns: HashMap::new(),
            resuming: HashMap::new(),
        }
    }

    /// Keeps subscription `req` of the connection `at`, in `session` when it is known;
    /// whether it is new (one per event type).
    fn listen(&mut self, at: At, session: Option<String>, req: &Map<String, Value>) -> bool {
        let l = match session {
            Some(s) => {
                self.learnt(at.conn);
                self.attach(&s, at.clone());
                self.conns.insert(at.conn, s.clone());
                self.sessions.entry(s).or_insert_with(|| Listener::new(at))
            }
            None => self
                .unsessioned
                .entry(at.conn)
                .or_insert_with(|| Listener::new(at)),
        };
        if l.reqs.iter().any(|r| event_type(r) == event_type(req)) {
            return false;
        }
        let mut r = req.clone();
        r.remove("id");
        l.reqs.push(r);
        true
    }

    /// Connection `at` speaks for session `s` now: the subscriptions of `s` follow it, and
    /// those of the session it spoke for before wait for that one to be resumed (as the
    /// engine binds a connection to one session). Whether those of `s` moved.
    fn attach(&mut self, s: &str, at: At) -> bool {
        if let Some(before) = self.conns.get(&at.conn).filter(|b| *b != s).cloned() {
            self.park(&before, Instant::now());
        }
        let Some(l) = self.sessions.get_mut(s) else {
            return false;
        };
        if let Some(a) = &l.at {
            if a.conn == at.conn {
                return false;
            }
            self.conns.remove(&a.conn);
        }
        self.conns.insert(at.conn, s.to_string());
        l.at = Some(at);
        l.left = None;
        true
    }

    /// The resume of session `s` that connection `at` asked for was accepted (an answer in
    /// `s` went out on it): its subscriptions follow it, as [`Listeners::attach`], unless the
    /// connection ended or asked for another since. Whether they moved.
    fn accepted(&mut self, s: &str, at: At) -> bool {
        if self.resuming.get(&at.conn).is_none_or(|x| x != s) {
            return false;
        }
        self.resuming.remove(&at.conn);
        self.attach(s, at)
    }

    /// Session `s` is on no connection since `now`.
    fn park(&mut self, s: &str, now: Instant) {
        if let Some(l) = self.sessions.get_mut(s) {
            if let Some(a) = l.at.take() {
                self.conns.remove(&a.conn);
            }
            l.left = Some(now);
        }
    }

    /// Connection `conn` ended at `now`: the subscriptions of its session wait for it to be
    /// resumed; those of a connection with no session yet end.
    fn closed(&mut self, conn: u64, now: Instant) {
        self.unsessioned.remove(&conn);
        self.resuming.remove(&conn);
        if let Some(s) = self.conns.remove(&conn) {
            self.park(&s, now);
        }
    }

    /// Session `s` ended (`closeSession`).
    fn ended(&mut self, s: &str) {
        if let Some(a) = self.sessions.remove(s).and_then(|l| l.at) {
            self.conns.remove(&a.conn);
        }
    }

    /// The session of connection `conn`, whose subscriptions were kept before it was known,
    /// once its connection learnt it: they are the session's from now on.
    fn learnt(&mut self, conn: u64) -> Option<String> {
        let s = self.unsessioned.get(&conn)?.at.as_ref()?.client.session()?;
        let l = self.unsessioned.remove(&conn)?;
        let at = l.at.clone()?;
        match self.sessions.entry(s.clone()) {
            Entry::Vacant(v) => {
                v.insert(l);
                self.conns.insert(conn, s.clone());
            }
            Entry::Occupied(o) => {
                let kept = o.into_mut();
                for r in l.reqs {
                    if kept.reqs.iter().all(|k| event_type(k) != event_type(&r)) {
                        kept.reqs.push(r);
                    }
                }
                self.attach(&s, at);
            }
        }
        Some(s)
    }

    /// The subscriptions of the session connection `conn` speaks for (`session`, or the one
    /// it learnt), while they are on that connection. Those it kept before its session was
    /// known are the session's first: its next request, in the session the answer gave,
    /// comes before the task's look.
    fn on(&mut self, conn: u64, session: Option<String>) -> Option<(String, &mut Listener)> {
        let learnt = self.learnt(conn);
        let s = session.or(learnt)?;
        let l = self.sessions.get_mut(&s)?;
        l.at.as_ref()
            .is_some_and(|a| a.conn == conn)
            .then_some((s, l))
    }

    /// At `now`: the sessions learnt since are kept by session, and those whose grace
    /// period ran out since their connection ended are forgotten (the nodes' sessions, and
    /// the subscriptions in them, end by themselves).
    fn tidy(&mut self, now: Instant) {
        let conns: Vec<u64> = self.unsessioned.keys().copied().collect();
        for c in conns {
            self.learnt(c);
        }
        let grace = self.grace;
        self.sessions.retain(|_, l| {
            l.left
                .is_none_or(|t| now.saturating_duration_since(t) < grace)
        });
    }

    /// What the nodes answered to copies and binds: a copy refused is logged (at warn the
    /// first time) and made again at a later look, after [`Refusal::wait`]; one whose answer
    /// the link lost is made again (the node may not have got it); a session whose bind was
    /// refused ended there, and its copies are made again.
    fn heard(&mut self, answers: Vec<Answer>, now: Instant) {
        for a in answers {
            let Some(l) = self.sessions.get_mut(&a.session) else {
                continue;
            };
            let (event, error) = match (a.asked, a.outcome) {
                (Asked::Copy(e), Outcome::Refused(error)) => (e, error),
                (Asked::Copy(e), Outcome::Done) => {
                    l.refused.remove(&(a.node, e));
                    continue;
                }
                (Asked::Copy(e), Outcome::Lost) => {
                    l.unmade(&a.node, &[e]);
                    continue;
                }
                (Asked::Bind(events), Outcome::Refused(error)) => {
                    tracing::debug!(node = %a.node, session = %a.session, %error, "link: a session holding ServerManager subscriptions ended on a node; they are made there again");
                    l.unmade(&a.node, &events);
                    continue;
                }
                // A bind lost with its link: the next link to the node binds again.
                (Asked::Bind(_), Outcome::Done | Outcome::Lost) => continue,
            };
            let key = (a.node.clone(), event.clone());
            l.unmade(&a.node, std::slice::from_ref(&event));
            let times = l.refused.get(&key).map_or(1, |r| r.times.saturating_add(1));
            let wait = Refusal::wait(times);
            l.refused.insert(
                key,
                Refusal {
                    times,
                    retry_at: now + wait,
                },
            );
            if times == 1 {
                tracing::warn!(node = %a.node, session = %a.session, %event, %error, "link: a node refused a ServerManager subscription copied there; it is made again later, after a wait that doubles while it keeps refusing");
            } else {
                tracing::debug!(node = %a.node, session = %a.session, %event, %error, times, wait_ms = wait.as_millis() as u64, "link: a node refused a ServerManager subscription copied there again");
            }
        }
    }

    /// What to send each of `others` (its live link, if any, from `live`) for each session
    /// on a connection.
    fn due(
        &self,
        others: &[NodeRecord],
        now: Instant,
        live: impl Fn(&NodeRecord) -> Option<Arc<Link>>,
    ) -> Vec<Todo> {
        let mut todo = vec![];
        for (session, l) in &self.sessions {
            let Some(at) = &l.at else {
                continue;
            };
            for node in others {
                let link = live(node);
                let (bind, reqs) = l.plan(&node.info.id, link.as_ref(), at.conn, now);
                if bind || !reqs.is_empty() {
                    todo.push(Todo {
                        session: session.clone(),
                        at: at.clone(),
                        node: node.clone(),
                        bind,
                        reqs,
                    });
                }
            }
        }
        todo
    }
}

/// Whether `m` was made over `link`.
fn same(link: &Arc<Link>, m: &Made) -> bool {
    std::ptr::eq(Arc::as_ptr(link), m.link.as_ptr())
}

impl Listener {
    fn new(at: At) -> Listener {
        Listener {
            at: Some(at),
            left: None,
            reqs: vec![],
            made: HashMap::new(),
            refused: HashMap::new(),
        }
    }

    /// What to send `node` over `link` (none yet: all of them) for the session on connection
    /// `conn`: whether to bind the session to that connection's mirror first (copies made
    /// there live in the session on the node, made over an earlier link to the same boot or
    /// on another connection), and the subscriptions not made there (all of them in another
    /// boot), less those `node` refused whose wait has not run out at `now`. Copies made
    /// over an earlier link to the same boot are not made again: the node still holds
    /// them, and would hold them twice (R43-cluster 6); the bind tells whether it does.
    fn plan(
        &self,
        node: &NodeId,
        link: Option<&Arc<Link>>,
        conn: u64,
        now: Instant,
    ) -> (bool, Vec<Map<String, Value>>) {
        let kept = self.made.get(node).and_then(|m| {
            let link = link.filter(|l| same(l, m) || m.boot == l.boot())?;
            Some((m, link))
        });
        let bind = kept
            .is_some_and(|(m, link)| !m.events.is_empty() && (m.conn != conn || !same(link, m)));
        let kept = kept.map(|(m, _)| m);
        let waiting = |event: &str| {
            self.refused
                .iter()
                .any(|((n, e), r)| n == node && e == event && r.retry_at > now)
        };
        let reqs = self
            .reqs
            .iter()
            .filter(|r| kept.is_none_or(|m| !m.events.contains(event_type(r))))
            .filter(|r| !waiting(event_type(r)))
            .cloned()
            .collect();
        (bind, reqs)
    }

    /// Sends `plan` (bind first, then the subscriptions) of `session` to `node` over `link`
    /// for `ask`'s connection, and records what went: `None` when the bind was refused (nothing sent),
    /// else how many subscriptions were sent, from the first (the link refuses the rest
    /// once it refuses one). Those sent are recorded even when a later one was refused:
    /// made again, the node would hold them twice (R43-cluster 2).
    fn send(
        &mut self,
        ask: &Ask<'_>,
        (session, node, link): (&str, &NodeId, &Arc<Link>),
        (bind, reqs): (bool, &[Map<String, Value>]),
        answers: &Answers,
    ) -> Option<usize> {
        if bind {
            let m = self.made.get_mut(node)?;
            let events = m.events.iter().cloned().collect();
            if !bind_there(ask, link, session, events, answers) {
                return None;
            }
            m.link = Arc::downgrade(link);
            m.conn = ask.conn;
        }
        let n = send_subscriptions(ask, link, session, reqs, answers);
        if n > 0 {
            self.sent(node, link, ask.conn, &reqs[..n]);
        }
        Some(n)
    }

    /// The copies of `events` are not (or may not be) on `node`: made there again.
    fn unmade(&mut self, node: &NodeId, events: &[String]) {
        if let Some(m) = self.made.get_mut(node) {
            for e in events {
                m.events.remove(e);
            }
        }
    }

    /// `reqs` were sent to `node` over `link` on connection `conn`'s mirror.
    fn sent(&mut self, node: &NodeId, link: &Arc<Link>, conn: u64, reqs: &[Map<String, Value>]) {
        let m = self.made.entry(node.clone()).or_insert_with(|| Made {
            link: Arc::downgrade(link),
            boot: link.boot(),
            conn,
            events: HashSet::new(),
        });
        if !same(link, m) {
            if m.boot != link.boot() {
                m.events.clear();
            }
            m.link = Arc::downgrade(link);
            m.boot = link.boot();
        }
        m.conn = conn;
        m.events
            .extend(reqs.iter().map(|r| event_type(r).to_string()));
    }
}

/// Binds `session`, holding the copies of `events` on the node at the end of `link`, to
/// `ask`'s connection there (a `connect` naming it, the entry's own: answered 40007 when the
/// session ended there, its grace period run out, and then they are made again); whether
/// it was sent.
fn bind_there(
    ask: &Ask<'_>,
    link: &Link,
    session: &str,
    events: Vec<String>,
    answers: &Answers,
) -> bool {
    let own = rebind_id();
    let text = json!({"jsonrpc": "2.0", "id": own, "method": "connect",
        "params": {"sessionId": session}});
    let pending = Pending::Copied {
        session: session.to_string(),
        asked: Asked::Bind(events),
        answers: answers.clone(),
    };
    link.send(ask, Some(&own), pending, text.to_string())
        .is_ok()
}

/// Sends the subscriptions `reqs` of `ask`'s connection in `session` over `link`, as the
/// entry's own requests (the client does not see their answers, which go to `answers`);
/// how many were sent, from the first (the link refuses the rest once it refuses one).
fn send_subscriptions(
    ask: &Ask<'_>,
    link: &Link,
    session: &str,
    reqs: &[Map<String, Value>],
    answers: &Answers,
) -> usize {
    reqs.iter()
        .take_while(|&r| {
            let own = rebind_id();
            let mut r = r.clone();
            r.insert("id".into(), own.clone());
            if let Some(Value::Object(p)) = r.get_mut("params") {
                p.insert("sessionId".into(), Value::from(session));
            }
            let pending = Pending::Copied {
                session: session.to_string(),
                asked: Asked::Copy(event_type(&r).to_string()),
                answers: answers.clone(),
            };
            let text = Value::Object(r).to_string();
            link.send(ask, Some(&own), pending, text).is_ok()
        })
        .count()
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
    use crate::ws::Seen;

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

    fn record(id: &str, boot: u64) -> NodeRecord {
        NodeRecord {
            boot,
            info: fluo_cluster::NodeInfo {
                id: NodeId::new(id).unwrap(),
                signalling: "ws://127.0.0.1:9/kurento".into(),
                peer: "127.0.0.1:9".into(),
                capacity: 10,
            },
            stats: Default::default(),
        }
    }

    /// `seen`'s connection is answered in session `s` (its writer saw the answer).
    fn answered_in(seen: &Seen, s: &str) {
        seen.learn(&json!({"id": 1, "jsonrpc": "2.0", "result": {"sessionId": s}}).to_string());
    }

    /// A request of `at`'s connection, last answered in `session`.
    fn ask<'a>(at: &'a At, session: Option<&str>, text: &'a str) -> Ask<'a> {
        Ask {
            conn: at.conn,
            peer: at.peer,
            client: &at.client,
            session: session.map(str::to_string),
            text,
        }
    }

    /// The router of entry node-a (store in memory, nothing listed, no link).
    fn router() -> Router {
        let secret = Arc::new(crate::config::ClusterSecret(b"s".to_vec()));
        Router::new(
            NodeId::new("node-a").unwrap(),
            Arc::new(crate::cluster::View::default()),
            fluo_cluster::Coordinator::in_process(),
            (secret, Duration::from_secs(3)),
            Duration::from_secs(5),
            crate::link::RELAY_FANOUT,
        )
    }

    /// Client connection `conn` (its handle, what it is sent).
    fn conn(conn: u64) -> (At, tokio::sync::mpsc::Receiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let at = At {
            conn,
            client: ClientHandle::new(tx),
            peer: IpAddr::from([127, 0, 0, 1]),
        };
        (at, rx)
    }

    fn sub(event: &str) -> Map<String, Value> {
        req(json!({"jsonrpc": "2.0", "id": 3, "method": "subscribe",
            "params": {"object": SERVER_MANAGER_ID, "type": event}}))
    }

    /// A todo as (connection, node, bind, event types).
    type Due = (u64, String, bool, Vec<String>);

    /// What is due for each todo.
    fn due(l: &Listeners, others: &[NodeRecord], link: &Arc<Link>) -> Vec<Due> {
        due_at(l, others, link, Instant::now())
    }

    /// What is due for each todo at `now`.
    fn due_at(l: &Listeners, others: &[NodeRecord], link: &Arc<Link>, now: Instant) -> Vec<Due> {
        let todo = l.due(others, now, |_| Some(link.clone()));
        let events = |t: &Todo| -> Vec<String> {
            t.reqs.iter().map(|r| event_type(r).to_string()).collect()
        };
        todo.iter()
            .map(|t| (t.at.conn, t.node.info.id.to_string(), t.bind, events(t)))
            .collect()
    }

    /// Records `l`'s todos as sent over `link`.
    fn send_all(l: &mut Listeners, others: &[NodeRecord], link: &Arc<Link>) {
        send_all_at(l, others, link, Instant::now());
    }

    /// Records `l`'s todos at `now` as sent over `link`.
    fn send_all_at(l: &mut Listeners, others: &[NodeRecord], link: &Arc<Link>, now: Instant) {
        for t in l.due(others, now, |_| Some(link.clone())) {
            let m = l.sessions.get_mut(&t.session).unwrap();
            m.sent(&t.node.info.id, link, t.at.conn, &t.reqs);
        }
    }

    #[test]
    fn a_sessions_subscriptions_follow_it_to_a_new_connection_and_end_with_it() {
        let grace = Duration::from_secs(5);
        let mut l = Listeners::new(grace);
        let b = [record("node-b", 1)];
        let (link, _frames) = super::super::entry::detached("node-b", 1);
        let (at1, _rx1) = conn(1);
        assert!(l.listen(at1.clone(), Some("s".into()), &sub("ObjectCreated")));
        assert!(
            !l.listen(at1, Some("s".into()), &sub("ObjectCreated")),
            "one per type"
        );
        let made = |c, n: &str| vec![(c, n.to_string(), false, vec!["ObjectCreated".to_string()])];
        assert_eq!(due(&l, &b, &link), made(1, "node-b"));
        send_all(&mut l, &b, &link);
        assert!(due(&l, &b, &link).is_empty());
        // The connection ends: kept through the grace period, nothing to make meanwhile.
        let t0 = Instant::now();
        l.closed(1, t0);
        l.tidy(t0 + grace - Duration::from_millis(1));
        assert!(l.sessions.contains_key("s"));
        assert!(due(&l, &b, &link).is_empty());
        // Resumed on connection 2: bound to it where made (nothing made again there); a node
        // listed since gets the subscription on connection 2.
        let (at2, _rx2) = conn(2);
        assert!(l.attach("s", at2.clone()));
        assert!(!l.attach("s", at2.clone()), "already there");
        let (link_c, _frames_c) = super::super::entry::detached("node-c", 1);
        assert_eq!(
            due(&l, &b, &link),
            vec![(2, "node-b".to_string(), true, vec![])]
        );
        assert_eq!(due(&l, &[record("node-c", 1)], &link_c), made(2, "node-c"));
        send_all(&mut l, &b, &link);
        assert!(due(&l, &b, &link).is_empty());
        // A new link to node-b in the same boot (the old one broke): the copies live on in
        // the session there, so the session is bound to the new mirror and nothing is made
        // again (R43-cluster 6); a link to a new boot (the node restarted) makes them again.
        let (link2, _frames2) = super::super::entry::detached("node-b", 1);
        assert_eq!(
            due(&l, &b, &link2),
            vec![(2, "node-b".to_string(), true, vec![])]
        );
        let (link3, _frames3) = super::super::entry::detached("node-b", 2);
        assert_eq!(due(&l, &[record("node-b", 2)], &link3), made(2, "node-b"));
        // Connection 2 ends too; past the grace period the session's subscriptions end, and
        // a later connection speaking for it finds none.
        let t1 = Instant::now();
        l.closed(2, t1);
        l.tidy(t1 + grace);
        assert!(l.sessions.is_empty());
        assert!(!l.attach("s", at2));
        // A closeSession ends them at once.
        let (at3, _rx3) = conn(3);
        l.listen(at3, Some("s3".into()), &sub("ObjectCreated"));
        l.ended("s3");
        assert!(l.sessions.is_empty() && l.conns.is_empty());
        // A connection that speaks for another session leaves the first one's subscriptions
        // waiting for it, as the engine leaves that session.
        let (at4, _rx4) = conn(4);
        l.listen(at4.clone(), Some("s4".into()), &sub("ObjectCreated"));
        assert!(!l.attach("s5", at4.clone()));
        assert!(l.sessions["s4"].at.is_none() && l.conns.is_empty());
        assert!(l.attach("s4", at4));
        assert_eq!(l.conns.get(&4).map(String::as_str), Some("s4"));
    }

    #[test]
    fn a_subscription_kept_before_its_session_was_known_is_the_sessions_once_learnt() {
        let mut l = Listeners::new(Duration::from_secs(5));
        let b = [record("node-b", 1)];
        let (link, _frames) = super::super::entry::detached("node-b", 1);
        let seen = Arc::<Seen>::default();
        let (mut at, _rx) = conn(1);
        at.client = at.client.seeing(seen.clone());
        l.listen(at.clone(), None, &sub("ObjectCreated"));
        // Nothing to make before the session is known; a connection that ends first leaves
        // nothing.
        l.tidy(Instant::now());
        assert!(due(&l, &b, &link).is_empty());
        answered_in(&seen, "s");
        assert_eq!(l.learnt(1).as_deref(), Some("s"));
        l.listen(at, Some("s".into()), &sub("ObjectDestroyed"));
        let events = vec!["ObjectCreated".to_string(), "ObjectDestroyed".to_string()];
        assert_eq!(
            due(&l, &b, &link),
            vec![(1, "node-b".into(), false, events)]
        );
        let (at2, _rx2) = conn(2);
        l.listen(at2, None, &sub("ObjectCreated"));
        l.closed(2, Instant::now());
        assert!(l.unsessioned.is_empty());
    }

    /// A connection's first request was its subscription; the next one, in the session the
    /// answer gave, goes to another node before the task's look: the subscription is the
    /// session's by then, so it is made there first (`subscribe` then `create`).
    #[test]
    fn a_request_in_the_session_finds_a_subscription_kept_before_it_was_known() {
        let mut l = Listeners::new(Duration::from_secs(5));
        let seen = Arc::<Seen>::default();
        let (mut at, _rx) = conn(1);
        at.client = at.client.seeing(seen.clone());
        l.listen(at, None, &sub("ObjectCreated"));
        assert!(l.on(1, None).is_none(), "no session yet");
        answered_in(&seen, "s");
        let (s, got) = l
            .on(1, Some("s".into()))
            .expect("the session's subscriptions");
        assert_eq!(s, "s");
        assert_eq!(got.reqs.len(), 1);
        assert!(l.unsessioned.is_empty());
        assert!(l.on(2, Some("s".into())).is_none(), "another connection's");
        // So is a second subscription, in the session: both the session's at once.
        let seen = Arc::<Seen>::default();
        let (mut at, _rx) = conn(3);
        at.client = at.client.seeing(seen.clone());
        l.listen(at.clone(), None, &sub("ObjectCreated"));
        answered_in(&seen, "s3");
        l.listen(at, Some("s3".into()), &sub("ObjectDestroyed"));
        assert!(l.unsessioned.is_empty());
        assert_eq!(l.sessions["s3"].reqs.len(), 2);
    }

    /// R43-cluster 7: a `connect {sessionId}` from another connection moves the session's
    /// subscriptions (and the binds on the nodes) only once an answer in that session goes
    /// out on it: not when refused, nor when the connection ended first.
    #[tokio::test]
    async fn a_resume_moves_the_subscriptions_only_once_accepted() {
        let r = router();
        let on = |r: &Router| {
            lock(&r.manager.listeners).sessions["s"]
                .at
                .as_ref()
                .map(|a| a.conn)
        };
        let client = |c: u64| {
            let seen = Arc::<Seen>::default();
            let (mut at, rx) = conn(c);
            at.client = at.client.seeing(seen.clone());
            (at, seen, rx)
        };
        let (at1, seen1, _rx1) = client(1);
        answered_in(&seen1, "s");
        assert!(
            !r.manager(&ask(&at1, Some("s"), ""), &sub("ObjectCreated"))
                .await
        );
        assert_eq!(on(&r), Some(1));
        // Connection 2 asks to resume s: nothing moves before the answer, nor on a refusal.
        let (at2, seen2, _rx2) = client(2);
        let connect = r#"{"jsonrpc":"2.0","id":5,"method":"connect","params":{"sessionId":"s"}}"#;
        assert!(
            r.route(ask(&at2, None, connect)).await.is_some(),
            "the engine answers it"
        );
        assert_eq!(on(&r), Some(1), "moved before the answer");
        seen2.learn(
            r#"{"error":{"code":40007,"message":"Invalid session"},"id":5,"jsonrpc":"2.0"}"#,
        );
        assert_eq!(on(&r), Some(1), "moved on a refusal");
        // Accepted: they follow.
        assert!(r.route(ask(&at2, None, connect)).await.is_some());
        answered_in(&seen2, "s");
        assert_eq!(on(&r), Some(2));
        // A connection that ends before its answer goes out gets nothing.
        let (at3, seen3, _rx3) = client(3);
        assert!(r.route(ask(&at3, None, connect)).await.is_some());
        r.closed(3);
        answered_in(&seen3, "s");
        assert_eq!(on(&r), Some(2));
        // A session without subscriptions here: nothing waits.
        let other = r#"{"jsonrpc":"2.0","id":6,"method":"connect","params":{"sessionId":"t"}}"#;
        assert!(r.route(ask(&at3, None, other)).await.is_some());
        assert!(lock(&r.manager.listeners).resuming.is_empty());
    }

    /// R43-cluster 3: two live connections of one session take turns (each request binds
    /// the session to its connection, as on the engine): the task binds it on the nodes at
    /// its next look, not at each turn, and not at all when it ends where it was; a request
    /// that goes to the node binds it there by itself.
    #[tokio::test]
    async fn two_live_connections_of_a_session_taking_turns_cost_no_bind_at_each_turn() {
        use futures_util::FutureExt;
        let r = router();
        r.view
            .listed(Some(vec![record("node-a", 1), record("node-b", 1)]));
        let (link, mut frames) = super::super::entry::detached("node-b", 1);
        r.links.put(link.clone());
        let node = NodeId::new("node-b").unwrap();
        let (at1, _rx1) = conn(1);
        let (at2, _rx2) = conn(2);
        assert!(
            !r.manager(&ask(&at1, Some("s"), ""), &sub("ObjectCreated"))
                .await
        );
        // The task, woken by the subscription.
        assert!(r.manager.wake.notified().now_or_never().is_some());
        r.subscribe_everywhere().await;
        let made = texts(&mut frames);
        assert_eq!(made.len(), 1, "{made:?}");
        assert_eq!(made[0]["method"], "subscribe");
        // The entry's task, woken or at its look: the binds it sent.
        let binds = |frames: &mut tokio::sync::mpsc::Receiver<_>| {
            let sent = texts(frames);
            let binds = sent
                .iter()
                .filter(|t| t["method"] == "connect" || t["method"] == "ping");
            binds.count()
        };
        let cpus = r#"{"jsonrpc":"2.0","id":7,"method":"invoke","params":{"object":"manager_ServerManager","operation":"getCpuCount"}}"#;
        let mut pings = 0;
        for turn in 0..20 {
            let at = if turn % 2 == 0 { &at2 } else { &at1 };
            assert!(r.route(ask(at, Some("s"), cpus)).await.is_some());
            if r.manager.wake.notified().now_or_never().is_some() {
                r.subscribe_everywhere().await;
            }
            pings += binds(&mut frames);
        }
        assert_eq!(pings, 0, "binds sent while the connections took turns");
        // The task's next look: it ended on connection 1, where it was bound: none.
        r.subscribe_everywhere().await;
        assert_eq!(binds(&mut frames), 0);
        // On connection 2: one, at the next look, and no more at the ones after.
        assert!(r.route(ask(&at2, Some("s"), cpus)).await.is_some());
        r.subscribe_everywhere().await;
        r.subscribe_everywhere().await;
        assert_eq!(binds(&mut frames), 1);
        // A request of connection 1 that goes to node-b binds it there itself.
        assert!(r.route(ask(&at1, Some("s"), cpus)).await.is_some());
        r.subscriptions_first(&ask(&at1, Some("s"), cpus), &node, &link);
        r.subscribe_everywhere().await;
        assert_eq!(binds(&mut frames), 0);
    }

    /// R43-cluster 6 through the task: its look found no live link to node-b (the old one
    /// broke) and it makes one to the same boot: the copies are bound there, not made again.
    #[tokio::test]
    async fn the_task_binds_over_a_link_it_made_again_to_the_same_boot() {
        use futures_util::FutureExt;
        let r = router();
        r.view
            .listed(Some(vec![record("node-a", 1), record("node-b", 1)]));
        let (link1, mut frames1) = super::super::entry::detached("node-b", 1);
        r.links.put(link1);
        let (at1, _rx1) = conn(1);
        let (first, req) = (ask(&at1, Some("s"), ""), sub("ObjectCreated"));
        assert!(!r.manager(&first, &req).await);
        assert!(r.manager.wake.notified().now_or_never().is_some());
        r.subscribe_everywhere().await;
        assert_eq!(texts(&mut frames1).len(), 1);
        let todo = lock(&r.manager.listeners).due(&r.others(), Instant::now(), |_| None);
        assert_eq!(todo.len(), 1);
        let (link2, mut frames2) = super::super::entry::detached("node-b", 1);
        for t in todo {
            r.make(t, &link2);
        }
        let sent = texts(&mut frames2);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["method"], "connect", "{sent:?}");
    }

    #[test]
    fn a_copy_a_node_refused_is_made_again_after_a_wait_that_doubles() {
        let mut l = Listeners::new(Duration::from_secs(5));
        let b = [record("node-b", 1)];
        let (link, _frames) = super::super::entry::detached("node-b", 1);
        let (at, _rx) = conn(1);
        l.listen(at.clone(), Some("s".into()), &sub("ObjectCreated"));
        l.listen(at, Some("s".into()), &sub("ObjectDestroyed"));
        send_all(&mut l, &b, &link);
        let answer = |event: &str, error: Option<Value>| Answer {
            node: NodeId::new("node-b").unwrap(),
            session: "s".into(),
            asked: Asked::Copy(event.into()),
            outcome: error.map_or(Outcome::Done, Outcome::Refused),
        };
        let refusal = json!({"code": 40000, "message": "too many subscriptions"});
        let again = vec![(
            1,
            "node-b".to_string(),
            false,
            vec!["ObjectDestroyed".to_string()],
        )];
        let key = (
            NodeId::new("node-b").unwrap(),
            "ObjectDestroyed".to_string(),
        );
        let ms = Duration::from_millis;
        // One made, one refused: only the refused one again, once its wait (1 s, then 2 s,
        // 4 s ... at most RETRY_MAX) has run out, and again while it is refused.
        let t0 = Instant::now();
        l.heard(
            vec![
                answer("ObjectCreated", None),
                answer("ObjectDestroyed", Some(refusal.clone())),
            ],
            t0,
        );
        assert!(l.sessions["s"].refused.contains_key(&key));
        assert!(due_at(&l, &b, &link, t0 + ms(999)).is_empty());
        assert_eq!(due_at(&l, &b, &link, t0 + ms(1000)), again);
        let t1 = t0 + ms(1000);
        l.heard(vec![answer("ObjectDestroyed", Some(refusal.clone()))], t1);
        assert!(due_at(&l, &b, &link, t1 + ms(1999)).is_empty());
        assert_eq!(due_at(&l, &b, &link, t1 + ms(2000)), again);
        let mut t = t1 + ms(2000);
        for _ in 0..20 {
            l.heard(vec![answer("ObjectDestroyed", Some(refusal.clone()))], t);
            t += RETRY_MAX;
        }
        assert_eq!(l.sessions["s"].refused[&key].times, 22);
        assert!(due_at(&l, &b, &link, t - ms(1)).is_empty());
        assert_eq!(due_at(&l, &b, &link, t), again);
        // Made once it is taken: nothing more to make, nothing refused.
        send_all_at(&mut l, &b, &link, t);
        l.heard(vec![answer("ObjectDestroyed", None)], t);
        assert!(due_at(&l, &b, &link, t).is_empty());
        assert!(l.sessions["s"].refused.is_empty());
        // An answer for a session no longer kept is ignored.
        l.heard(
            vec![Answer {
                session: "gone".into(),
                ..answer("ObjectCreated", None)
            }],
            t,
        );
    }

    /// The texts `frames` holds (what a detached link sent).
    fn texts(frames: &mut tokio::sync::mpsc::Receiver<super::super::Frame>) -> Vec<Value> {
        let mut out = vec![];
        while let Ok(f) = frames.try_recv() {
            if let super::super::Frame::Text { text, .. } = f {
                out.push(serde_json::from_str(&text).unwrap());
            }
        }
        out
    }

    /// R43-cluster 6: a link made again to the same boot of a node binds the session there
    /// (a `connect` naming it) instead of making its copies a second time; a copy whose
    /// answer the broken link lost, and every copy of a session that ended there (the bind
    /// answered 40007), are made again.
    #[test]
    fn copies_on_a_link_made_again_are_bound_there_and_made_again_only_when_gone() {
        let mut l = Listeners::new(Duration::from_secs(5));
        let b = [record("node-b", 1)];
        let node = NodeId::new("node-b").unwrap();
        let (link1, _frames1) = super::super::entry::detached("node-b", 1);
        let (at, _rx) = conn(1);
        l.listen(at.clone(), Some("s".into()), &sub("ObjectCreated"));
        l.listen(at.clone(), Some("s".into()), &sub("ObjectDestroyed"));
        // No link to the node yet: all of them are due (the task makes the link).
        let todo = l.due(&b, Instant::now(), |_| None);
        assert_eq!(
            (todo.len(), todo[0].bind, todo[0].reqs.len()),
            (1, false, 2)
        );
        send_all(&mut l, &b, &link1);
        let (link2, mut frames2) = super::super::entry::detached("node-b", 1);
        let ask = Ask {
            conn: 1,
            peer: at.peer,
            client: &at.client,
            session: Some("s".into()),
            text: "",
        };
        let answers = Answers::default();
        let m = l.sessions.get_mut("s").unwrap();
        let (bind, reqs) = m.plan(&node, Some(&link2), 1, Instant::now());
        assert!(bind && reqs.is_empty(), "{bind} {reqs:?}");
        assert_eq!(
            m.send(&ask, ("s", &node, &link2), (bind, &reqs), &answers),
            Some(0)
        );
        let sent = texts(&mut frames2);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["method"], "connect");
        assert_eq!(sent[0]["params"]["sessionId"], "s");
        assert!(due(&l, &b, &link2).is_empty(), "bound there: nothing more");
        let answer = |asked: Asked, outcome: Outcome| Answer {
            node: node.clone(),
            session: "s".into(),
            asked,
            outcome,
        };
        // The bind taken: nothing changes.
        let events = || vec!["ObjectCreated".to_string(), "ObjectDestroyed".to_string()];
        let now = Instant::now();
        l.heard(vec![answer(Asked::Bind(events()), Outcome::Done)], now);
        assert!(due(&l, &b, &link2).is_empty());
        // The first link had lost the answer to a copy: that one is made again.
        let lost = answer(Asked::Copy("ObjectDestroyed".into()), Outcome::Lost);
        l.heard(vec![lost], now);
        let one = vec!["ObjectDestroyed".to_string()];
        assert_eq!(due(&l, &b, &link2), vec![(1, "node-b".into(), false, one)]);
        send_all(&mut l, &b, &link2);
        // The session had ended there (its grace period ran out before the link came back):
        // the bind is answered 40007, and the copies are made again.
        let gone = Outcome::Refused(json!({"code": 40007, "message": "Invalid session"}));
        l.heard(vec![answer(Asked::Bind(events()), gone)], now);
        assert_eq!(
            due(&l, &b, &link2),
            vec![(1, "node-b".into(), false, events())]
        );
        assert!(
            l.sessions["s"].refused.is_empty(),
            "not a refusal to wait on"
        );
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

    #[test]
    fn subscriptions_a_full_link_refused_are_told_apart_from_those_it_took() {
        // A link whose queue (64 frames) has room for three more: conn 1's mirror opening
        // and two of its three copies; the third is refused, and the count says which were
        // sent so that only they are recorded as made (R43-cluster 2).
        let (link, _frames) = super::super::entry::detached("node-b", 1);
        let (other, _rx) = conn(99);
        fn ask_of(at: &At) -> Ask<'_> {
            Ask {
                conn: at.conn,
                peer: at.peer,
                client: &at.client,
                session: Some("s".into()),
                text: "",
            }
        }
        for _ in 0..60 {
            let filler = ask_of(&other);
            link.send(&filler, None, Pending::Swallow, "{}".into())
                .unwrap();
        }
        let (at, _rx) = conn(1);
        let reqs = [sub("ObjectCreated"), sub("ObjectDestroyed"), sub("Other")];
        let answers = Answers::default();
        assert_eq!(
            send_subscriptions(&ask_of(&at), &link, "s", &reqs, &answers),
            2
        );
        assert_eq!(
            send_subscriptions(&ask_of(&at), &link, "s", &reqs, &answers),
            0
        );
    }
}
