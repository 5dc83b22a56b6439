//! The engine: request handling from text frame to response, connections and timers.

use crate::element::Factory;
use crate::graph::Graph;
use crate::host::Host;
use crate::limits::{Origin, Usage};
use crate::media_event::{event_fields, event_name};
use crate::registry::{Object, Registry};
use crate::replay::ReplayCache;
use crate::session::Sessions;
use fluo_api::jsonrpc::{self, Incoming, Request, Response};
use fluo_api::params::{parse_call, Call, Method};
use fluo_api::{ErrorCode, KurentoError, Model};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Identifies one client connection (assigned by the shell).
pub type ConnId = u64;

/// The current time as the engine sees it: a monotonic instant for timers and the wall clock
/// for timestamps that clients read.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time.
    pub mono: Instant,
    /// Milliseconds since the UNIX epoch.
    pub wall_ms: u64,
}

impl Now {
    /// This instant plus `d` (for virtual time in tests).
    pub fn advanced(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall_ms: self.wall_ms + d.as_millis() as u64,
        }
    }
}

/// Engine settings (see the server's configuration for where each comes from).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a session whose connection went away keeps its objects.
    pub session_grace: Duration,
    /// How long a response is kept to answer a retried request id.
    pub replay_ttl: Duration,
    /// Whether the replay cache is on.
    pub replay_enabled: bool,
    /// The `metadata` JSON returned by `ServerManager.getMetadata` (empty: none).
    pub metadata: String,
    /// This server process's id (`connect` result).
    pub server_id: String,
    /// Most media objects (pipelines and elements) alive at once on the server.
    pub max_objects: usize,
    /// Most media pipelines alive at once.
    pub max_pipelines: usize,
    /// Most elements in one pipeline.
    pub max_elements_per_pipeline: usize,
    /// Most objects one session may reference.
    pub max_objects_per_session: usize,
    /// Most live objects created by requests on one connection.
    pub max_objects_per_connection: usize,
    /// Most live objects created from one client address (an IPv6 /64 counts as one).
    pub max_objects_per_address: usize,
    /// Most sessions at once on the server.
    pub max_sessions: usize,
    /// Most live sessions created from one client address.
    pub max_sessions_per_address: usize,
    /// Most event subscriptions held at once on the server.
    pub max_subscriptions: usize,
    /// Most event subscriptions held by the sessions one client address created.
    pub max_subscriptions_per_address: usize,
    /// Most operations in one transaction.
    pub max_transaction_ops: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            session_grace: Duration::from_secs(240),
            replay_ttl: Duration::from_secs(20),
            replay_enabled: true,
            metadata: String::new(),
            server_id: uuid::Uuid::new_v4().to_string(),
            // README.md, Security, has the arithmetic behind these figures.
            max_objects: 20_000,
            max_pipelines: 2_000,
            max_elements_per_pipeline: 2_000,
            max_objects_per_session: 2_000,
            max_objects_per_connection: 2_000,
            max_objects_per_address: 5_000,
            max_sessions: 10_000,
            max_sessions_per_address: 2_000,
            max_subscriptions: 500_000,
            max_subscriptions_per_address: 100_000,
            max_transaction_ops: 10_000,
        }
    }
}

/// Something for the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this text frame on this connection.
    Send {
        /// Target connection.
        conn: ConnId,
        /// JSON text.
        text: String,
    },
}

/// The engine. See the crate docs.
pub struct Engine {
    pub(crate) model: &'static Model,
    pub(crate) config: EngineConfig,
    pub(crate) host: Box<dyn Host>,
    pub(crate) registry: Registry,
    pub(crate) graph: Graph,
    /// Media connections between non-transparent elements (across PassThroughs).
    pub(crate) media_edges: Vec<crate::graph::Edge>,
    /// The connections each media connection that crosses a transparent element or a hub
    /// goes along, found by the same walk (the others are a connection themselves).
    pub(crate) media_paths: HashMap<crate::graph::Edge, Vec<crate::graph::Edge>>,
    /// What the hubs (Dispatcher, DispatcherOneToMany) route between their ports.
    pub(crate) hubs: crate::hub::Hubs,
    pub(crate) sessions: Sessions,
    /// Objects by the connection and address that created them.
    pub(crate) usage: Usage,
    /// Where the request being handled came from.
    pub(crate) origin: Option<Origin>,
    pub(crate) replay: ReplayCache,
    pub(crate) factories: BTreeMap<String, Box<dyn Factory>>,
    pub(crate) out: VecDeque<Output>,
    /// Events raised while handling the current input: (source, event, own fields).
    pub(crate) pending_events: Vec<(String, String, serde_json::Map<String, Value>)>,
    pub(crate) now: Now,
    /// Deferred replies: set up by [`Engine::set_completion_sink`].
    pub(crate) defer: Option<crate::element::DeferState>,
    /// Whether the request running now may be deferred.
    pub(crate) defer_ok: bool,
    /// Requests answered later: token -> (connection, request id, session).
    pub(crate) deferred: std::collections::HashMap<u64, (ConnId, Value, Option<String>)>,
    /// Where elements' output settings go (see [`Engine::set_settings_sink`]).
    pub(crate) settings_sink: Option<crate::SettingsSink>,
    /// The GStreamer pipelines' graphs (see [`Engine::set_pipeline_dot`]).
    pub(crate) pipeline_dot: Option<std::sync::Arc<dyn crate::PipelineDot>>,
    /// WHIP and WHEP endpoints (see [`Engine::set_signalling`]).
    pub(crate) signals: crate::whip::Signals,
    /// Errors answered, the last request's method, draining (see `ops.rs`).
    pub(crate) ops: crate::ops::OpsState,
}

/// How a request is being executed: directly, or as operation of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Direct,
    InTransaction,
}

impl Engine {
    /// A new engine with the built-in model and the built-in factories (MediaPipeline,
    /// PassThrough).
    pub fn new(config: EngineConfig, host: Box<dyn Host>, now: Now) -> Self {
        let mut e = Self {
            model: Model::builtin(),
            config,
            host,
            registry: Registry::default(),
            graph: Graph::default(),
            media_edges: vec![],
            media_paths: HashMap::new(),
            hubs: Default::default(),
            sessions: Sessions::default(),
            usage: Usage::default(),
            origin: None,
            replay: ReplayCache::default(),
            factories: BTreeMap::new(),
            out: VecDeque::new(),
            pending_events: vec![],
            now,
            defer: None,
            defer_ok: false,
            deferred: std::collections::HashMap::new(),
            settings_sink: None,
            pipeline_dot: None,
            signals: Default::default(),
            ops: Default::default(),
        };
        e.registry.insert(Object::server_manager(now.wall_ms));
        e.register_builtin_factories();
        e.register_hub_factories();
        e
    }

    /// Registers (or replaces) the factory of a model class.
    pub fn register_factory(&mut self, class: &str, factory: Box<dyn Factory>) {
        self.factories.insert(class.to_string(), factory);
    }

    /// The names of the classes that can be created.
    pub fn factories(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Uses `model` (the built-in one with more modules, e.g. test-only classes) instead of
    /// the built-in model; before any object is created.
    pub fn set_model(&mut self, model: &'static Model) {
        self.model = model;
    }

    /// The interface model in use.
    pub fn model(&self) -> &'static Model {
        self.model
    }

    /// A connection from `peer` opened: objects and sessions its requests create count
    /// against it and against that address (see the limits in [`EngineConfig`]).
    pub fn connection_opened(&mut self, _now: Now, conn: ConnId, peer: IpAddr) {
        self.usage.open(conn, peer);
        self.sessions.open_conn(conn);
    }

    /// An *internal* connection opened: one of Fluo's own (a cascade relay's, on this node or
    /// mirrored from another node), never a client's. The sessions its requests run in hold
    /// nothing: objects stay held by their users' sessions only.
    pub fn internal_connection_opened(&mut self, now: Now, conn: ConnId, peer: IpAddr) {
        self.connection_opened(now, conn, peer);
        self.sessions.set_internal_conn(conn);
    }

    /// A connection closed: its session keeps its objects for the grace period.
    pub fn connection_closed(&mut self, now: Now, conn: ConnId) {
        self.now = now;
        self.usage.close(conn);
        self.sessions
            .close_conn(conn, now.mono + self.config.session_grace);
    }

    /// Handles one text frame from a connection.
    pub fn handle_text(&mut self, now: Now, conn: ConnId, text: &str) {
        self.now = now;
        // A connection the shell did not announce counts as one from an unknown address.
        self.origin = Some(match self.usage.origin(conn) {
            Some(o) => o,
            None => self
                .usage
                .open(conn, IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED)),
        });
        let response = match jsonrpc::parse(text) {
            Ok(Incoming::Request(req)) => {
                // Fluo's own requests (a cascade relay's probes) are not the clients' load.
                if !self.sessions.is_internal_conn(conn) {
                    self.ops.last_method = Some(crate::ops::method_label(&req.method));
                }
                self.handle_request(conn, req)
            }
            Ok(Incoming::Response) => None,
            Err(resp) => {
                self.ops.last_method = Some("invalid");
                Some(resp)
            }
        };
        self.origin = None;
        if let Some(resp) = response {
            if let Err(e) = &resp.outcome {
                self.count_error(conn, e);
            }
            self.out.push_back(Output::Send {
                conn,
                text: resp.to_text(),
            });
        }
        self.flush_events();
    }

    /// Lets elements answer requests later (see [`crate::ElementCx::defer`]): `sink` must
    /// bring each completion back to [`Engine::complete`].
    pub fn set_completion_sink(&mut self, sink: crate::CompletionSink) {
        self.defer = Some(crate::element::DeferState {
            sink,
            next: 0,
            taken: None,
        });
    }

    /// Answers a deferred request (a `value` for `invoke`), on the connection it came from.
    pub fn complete(&mut self, now: Now, token: u64, outcome: Result<Value, KurentoError>) {
        self.now = now;
        let Some((conn, id, session)) = self.deferred.remove(&token) else {
            return;
        };
        if let Err(e) = &outcome {
            self.count_error(conn, e);
        }
        let outcome = outcome.map(|v| {
            let mut r = json!({ "value": v });
            if let Some(s) = &session {
                r["sessionId"] = Value::from(s.clone());
            }
            r
        });
        let replay = self.config.replay_enabled && !self.sessions.is_internal_conn(conn);
        if let (Some(s), true) = (&session, replay) {
            let expires = self.now.mono + self.config.replay_ttl;
            self.replay.put(s, &key_of(&id), &outcome, expires);
        }
        let resp = Response {
            id: Some(id),
            outcome,
        };
        // To the connection the session is on now (it may have reconnected meanwhile).
        let conn = session
            .as_deref()
            .and_then(|s| self.sessions.conn_of(s))
            .unwrap_or(conn);
        self.out.push_back(Output::Send {
            conn,
            text: resp.to_text(),
        });
        self.flush_events();
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Engine::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.sessions.next_deadline(),
            self.replay.next_expiry(),
            self.signals.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Expires sessions whose grace period ended, old replay entries and WHEP viewers not
    /// connected in time.
    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        self.replay.expire(now.mono);
        for session in self.sessions.expired(now.mono) {
            tracing::info!(%session, "session expired; releasing what only it held");
            self.unref_session(&session);
            self.sessions.remove(&session);
        }
        self.signal_expire();
        self.flush_events();
    }

    /// Raises an event on an object from outside a request (media-plane notifications).
    pub fn emit_event(&mut self, now: Now, source: &str, event: crate::MediaEvent) {
        self.now = now;
        self.pending_events.push((
            source.to_string(),
            event_name(&event).to_string(),
            event_fields(&event),
        ));
        self.flush_events();
    }

    /// Releases every object (graceful shutdown): elements close their sessions and
    /// ObjectDestroyed events go out to whoever still listens.
    pub fn release_all(&mut self, now: Now) {
        self.now = now;
        for p in self.registry.pipeline_ids() {
            self.release(&p);
        }
        self.flush_events();
    }

    /// Number of live objects (ServerManager included).
    pub fn object_count(&self) -> usize {
        self.registry.len()
    }

    /// Number of known sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn handle_request(&mut self, conn: ConnId, mut req: Request) -> Option<Response> {
        // Inject the connection's session into requests that lack one.
        let bound = self.sessions.session_of_conn(conn).map(str::to_string);
        if let Some(s) = &bound {
            match &mut req.params {
                Some(Value::Object(p)) if !p.contains_key("sessionId") => {
                    p.insert("sessionId".into(), Value::from(s.clone()));
                }
                None if req.method == "ping" => {
                    req.params = Some(json!({"sessionId": s}));
                }
                _ => {}
            }
        }
        let id = req.id.clone();
        let call = match parse_call(&req.method, req.params.as_ref()) {
            Ok(c) => c,
            Err(e) => return id.map(|_| Response::error(req.id, e)),
        };
        // Fluo's own connections never send a request twice: nothing of theirs is kept.
        let replay = self.config.replay_enabled && !self.sessions.is_internal_conn(conn);
        let replay_key = match (&id, &call.session_id, &call.method) {
            (_, _, Method::Ping) => None,
            (Some(i), Some(s), _) if replay => Some((s.clone(), key_of(i))),
            _ => None,
        };
        if let Some((s, k)) = &replay_key {
            if let Some(cached) = self.replay.get(s, k) {
                tracing::debug!(session = %s, id = %k, "answering a retried request from the replay cache");
                self.bind(conn, s);
                return Some(Response {
                    id,
                    outcome: cached,
                });
            }
        }
        // Only a direct invoke with an id can be answered later (never inside a transaction).
        self.defer_ok =
            id.is_some() && self.defer.is_some() && matches!(call.method, Method::Invoke(_));
        let span = self.request_span(&call);
        let (session, outcome) = span.in_scope(|| self.execute(Some(conn), call, Mode::Direct));
        self.defer_ok = false;
        if let Some(token) = self.defer.as_mut().and_then(|d| d.taken.take()) {
            if let (Some(s), Some(i)) = (&session, &id) {
                self.bind(conn, s);
                self.deferred
                    .insert(token, (conn, i.clone(), session.clone()));
                return None;
            }
        }
        if let Some(s) = &session {
            self.bind(conn, s);
            if replay {
                if let Some(i) = &id {
                    if !matches!(req.method.as_str(), "ping") {
                        self.replay.put(
                            s,
                            &key_of(i),
                            &outcome,
                            self.now.mono + self.config.replay_ttl,
                        );
                    }
                }
            }
        }
        id.as_ref()?;
        Some(Response { id, outcome })
    }

    fn bind(&mut self, conn: ConnId, session: &str) {
        let grace = self.now.mono + self.config.session_grace;
        let addr = self.origin.map(|o| o.addr);
        self.sessions.bind(conn, session, grace, addr);
    }

    /// Executes one call. Returns the session it ran in (if any) and the outcome.
    pub(crate) fn execute(
        &mut self,
        conn: Option<ConnId>,
        call: Call,
        mode: Mode,
    ) -> (Option<String>, Result<Value, KurentoError>) {
        let Call { method, session_id } = call;
        match method {
            Method::Ping => {
                let mut r = json!({"value": "pong"});
                if let Some(s) = &session_id {
                    r["sessionId"] = Value::from(s.clone());
                }
                (session_id, Ok(r))
            }
            Method::Connect => match session_id {
                Some(s) if self.sessions.is_known(&s) => {
                    let r = json!({"sessionId": s, "serverId": self.config.server_id});
                    (Some(s), Ok(r))
                }
                Some(_) => (
                    None,
                    Err(KurentoError::new(
                        ErrorCode::InvalidSession,
                        "Invalid session",
                    )),
                ),
                None => {
                    let s = new_uuid();
                    let r = json!({"sessionId": s, "serverId": self.config.server_id});
                    (Some(s), Ok(r))
                }
            },
            Method::KeepAlive => {
                let s = session_id.expect("parse_call requires sessionId for keepAlive");
                if self.sessions.is_known(&s) {
                    (Some(s.clone()), Ok(json!({"sessionId": s})))
                } else {
                    (
                        None,
                        Err(KurentoError::new(
                            ErrorCode::InvalidSession,
                            "Invalid session",
                        )),
                    )
                }
            }
            Method::CloseSession(release) => {
                let s = session_id.expect("parse_call requires sessionId for closeSession");
                if release {
                    self.release_session(&s);
                } else {
                    self.unref_session(&s);
                }
                self.sessions.remove(&s);
                if let Some(c) = conn {
                    self.sessions.unbind_conn(c);
                }
                (None, Ok(Value::Null))
            }
            other => {
                let s = session_id.unwrap_or_else(new_uuid);
                if let Err(e) = self.admit_session(&s) {
                    // Not bound either: the connection stays with the session it had.
                    return (None, Err(e));
                }
                if conn.is_some_and(|c| self.sessions.is_internal_conn(c)) {
                    self.sessions.set_internal(&s);
                }
                let r = self.execute_in_session(&s, other, mode).map(|mut v| {
                    if let Value::Object(m) = &mut v {
                        m.insert("sessionId".into(), Value::from(s.clone()));
                    }
                    v
                });
                (Some(s), r)
            }
        }
    }

    fn execute_in_session(
        &mut self,
        session: &str,
        method: Method,
        mode: Mode,
    ) -> Result<Value, KurentoError> {
        match method {
            Method::Create(c) => self.create(session, c, mode).map(|id| json!({"value": id})),
            Method::Invoke(i) => self.invoke(session, i, mode).map(|v| json!({"value": v})),
            Method::Subscribe(s) => self.subscribe(session, &s.object, &s.event, mode),
            Method::Unsubscribe(u) => {
                if let Some(s) = self.registry.unsubscribe(&u.object, &u.subscription) {
                    self.sessions.subs_removed(&s, 1);
                }
                Ok(json!({}))
            }
            Method::Release(id) => {
                check_newref(&id, mode)?;
                self.release(&id);
                Ok(json!({}))
            }
            Method::Describe(id) => self.describe(session, &id, mode),
            Method::Ref(id) => {
                self.lookup(&id, mode)?;
                self.reference(session, &id)?;
                Ok(json!({}))
            }
            Method::Unref(id) => {
                check_newref(&id, mode)?;
                self.unref(session, &id);
                Ok(json!({}))
            }
            Method::Transaction(ops) => {
                if mode == Mode::InTransaction {
                    return Err(KurentoError::new(
                        ErrorCode::MalformedTransaction,
                        "Transactions cannot be nested",
                    ));
                }
                self.transaction(session, ops)
            }
            Method::Ping | Method::Connect | Method::KeepAlive | Method::CloseSession(_) => {
                unreachable!("handled before a session is chosen")
            }
        }
    }

    fn describe(&mut self, session: &str, id: &str, mode: Mode) -> Result<Value, KurentoError> {
        let class = self.lookup(id, mode)?.class.clone();
        self.reference(session, id)?;
        let model = self.model;
        let c = model
            .class(&class)
            .expect("every object's class is in the model");
        let hierarchy: Vec<String> = model
            .lineage(c)
            .skip(1)
            .map(|a| format!("{}.{}", a.prefix, a.name))
            .collect();
        Ok(json!({
            "type": c.name,
            "qualifiedType": format!("{}.{}", c.prefix, c.name),
            "hierarchy": hierarchy,
        }))
    }

    fn subscribe(
        &mut self,
        session: &str,
        id: &str,
        event: &str,
        mode: Mode,
    ) -> Result<Value, KurentoError> {
        let class = self.lookup(id, mode)?.class.clone();
        let model = self.model;
        let c = model
            .class(&class)
            .expect("object classes are in the model");
        if !model.supports_event(c, event) {
            return Err(KurentoError::new(
                ErrorCode::MediaObjectEventNotSupported,
                format!("Event '{event}' not supported"),
            ));
        }
        self.reference(session, id)?;
        self.check_subscription_limits(session, id)?;
        let sub = new_uuid();
        self.registry.subscribe(id, &sub, session, event);
        self.sessions.subs_added(session);
        Ok(json!({"value": sub}))
    }

    /// Resolves an id for a request: `newref:` outside a transaction, unknown ids and
    /// objects no session holds are errors.
    pub(crate) fn lookup(&self, id: &str, mode: Mode) -> Result<&Object, KurentoError> {
        check_newref(id, mode)?;
        self.registry
            .get(id)
            .filter(|o| o.is_server_manager() || !o.sessions.is_empty())
            .ok_or_else(|| KurentoError::object_not_found(id))
    }

    pub(crate) fn push_event(
        &mut self,
        source: &str,
        event: &str,
        fields: serde_json::Map<String, Value>,
    ) {
        self.pending_events
            .push((source.to_string(), event.to_string(), fields));
    }

    pub(crate) fn flush_events(&mut self) {
        while !self.pending_events.is_empty() {
            let batch = std::mem::take(&mut self.pending_events);
            for (source, event, fields) in batch {
                self.signal_event(&source, &event, &fields);
                self.deliver(&source, &event, fields);
            }
        }
    }
}

fn key_of(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn check_newref(id: &str, mode: Mode) -> Result<(), KurentoError> {
    if mode == Mode::Direct && id.starts_with("newref:") {
        return Err(KurentoError::new(
            ErrorCode::MediaObjectNotFoundTransactionNoCommit,
            format!("Object '{id}' not found: 'newref:' references only work inside a transaction"),
        ));
    }
    Ok(())
}

pub(crate) fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
