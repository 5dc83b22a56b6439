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

/// A node the task has something to send for a session (what, [`Listener::plan`] says
/// again over the link it gets).
struct Todo {
    session: String,
    at: At,
    node: NodeRecord,
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
        // Planned again over the link got: the look may have found none (the old one broke)
        // and this one may be to the same boot, where the copies live on (R43-cluster 6).
        let node = &t.node.info.id;
        let (bind, reqs) = l.plan(node, Some(link), t.at.conn, Instant::now());
        if !bind && reqs.is_empty() {
            return;
        }
        match l.send(
            &ask,
            (&t.session, node, link),
            (bind, &reqs),
            &self.manager.answers,
        ) {
            None => {
                tracing::debug!(%node, "link: ServerManager subscriptions not bound there yet (the link refused it)");
            }
            Some(n) if n < reqs.len() => {
                tracing::debug!(%node, sent = n, of = reqs.len(), "link: ServerManager subscriptions not all made there yet (the link refused them)");
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
#[path = "manager_tests.rs"]
mod tests;
