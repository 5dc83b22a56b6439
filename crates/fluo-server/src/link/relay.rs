//! Cascade (docs/cluster.md, "Cascade"): in a cluster, `source.connect(sink)` where `sink`
//! is an element of another pipeline (a Fluo extension: KMS answers 40004) is answered by
//! the entry with a *relay*: two hidden WebRtcEndpoints, `relayOut` in the source's pipeline
//! fed by the source and `relayIn` in the sink's pipeline feeding the sink, negotiated with
//! each other (Fluo's descriptions carry their candidates: nothing to trickle; DTLS-SRTP,
//! NACK, PLI and RTCP come with WebRTC). Both pipelines on one node get a relay too.
//!
//! The entry drives it as a client of its own: a virtual connection ([`Rpc`]) whose requests
//! are routed as a client's are ([`Router::route`]: the owner's node over the link, this
//! node's engine for its own pipelines). One relay per (source element, sink pipeline) made
//! by this entry: a second sink in that pipeline only gets `relayIn.connect(sink)`. A janitor
//! asks every relay each second whether it still feeds something; a relay idle at two checks
//! in a row, or with an end gone, is released.

use super::entry::ClientHandle;
use super::route::{pipeline_of, Ask, Router};
use crate::core_loop::{Core, CoreMsg, OUTBOX};
use crate::lock;
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How often the janitor asks each relay whether it still feeds something.
const JANITOR_EVERY: Duration = Duration::from_secs(1);

/// Checks in a row that find a relay feeding nothing before it is released.
const IDLE_CHECKS: u8 = 2;

/// How long one of the relay's requests may wait for its answer.
const CALL_WAIT: Duration = Duration::from_secs(10);

/// How long a new relay's two ends get to connect (ICE and DTLS) before the client's
/// `connect` is answered with an error.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Connects waiting for the relay service.
const JOBS: usize = 1024;

/// How long a client's connect (or disconnect) may take from its queueing to its answer,
/// the wait for its relay's lock included.
const JOB_WAIT: Duration = Duration::from_secs(8);

/// The address the entry's own connection is counted under.
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A `connect` or `disconnect` of a MediaElement whose sink is an element of another
/// pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cross {
    source: String,
    sink: String,
    /// `connect` (else `disconnect`).
    connect: bool,
    /// The operation's other parameters (`mediaType`, the media descriptions).
    params: Map<String, Value>,
}

/// What one relay carries: a source element to the elements of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: String,
    pipeline: String,
}

impl Cross {
    fn key(&self) -> Key {
        Key {
            source: self.source.clone(),
            pipeline: pipeline_of(&self.sink).unwrap_or_default(),
        }
    }
}

/// The cross-pipeline `connect` or `disconnect` `req` is, if it is one. A Dispatcher's
/// `connect(source, sink)` (hub ports of one hub) is not.
pub(crate) fn cross(req: &Map<String, Value>) -> Option<Cross> {
    if req.get("method")?.as_str()? != "invoke" {
        return None;
    }
    let params = req.get("params")?;
    let connect = match params.get("operation")?.as_str()? {
        "connect" => true,
        "disconnect" => false,
        _ => return None,
    };
    let source = params.get("object")?.as_str()?;
    let mut args = params.get("operationParams")?.as_object()?.clone();
    if args.contains_key("source") || source.contains("_kurento.Dispatcher") {
        return None;
    }
    let sink = args.remove("sink")?.as_str()?.to_string();
    // A pipeline's id is not a sink (the engine answers such a connect as KMS does).
    if !sink.contains('/') {
        return None;
    }
    let (p, q) = (pipeline_of(source)?, pipeline_of(&sink)?);
    (p != q).then(|| Cross {
        source: source.to_string(),
        sink,
        connect,
        params: args,
    })
}

/// `e` (as it came, from an owner or this node) with its message prefixed by the relay it
/// is about, so that the client can tell it from an error of its own objects.
fn about(mut e: Value, c: &Cross) -> Value {
    let m = e["message"].as_str().unwrap_or_default();
    let m = format!("relay from {} to {}: {m}", c.source, c.sink);
    if let Some(o) = e.as_object_mut() {
        o.insert("message".into(), Value::from(m));
    }
    e
}

/// What a relay job is doing now (for the answer of a job that ran out of time).
#[derive(Clone)]
struct Step(Arc<Mutex<&'static str>>);

impl Step {
    fn new() -> Step {
        Step(Arc::new(Mutex::new(
            "waiting for another request on this relay",
        )))
    }

    fn set(&self, what: &'static str) {
        *lock(&self.0) = what;
    }

    /// The `40004` answer of job `c` still running at its deadline.
    fn late(&self, c: &Cross) -> Value {
        let m = format!(
            "relay from {} to {}: no answer within {} s (while {})",
            c.source,
            c.sink,
            JOB_WAIT.as_secs(),
            *lock(&self.0)
        );
        KurentoError::new(ErrorCode::ConnectError, m).to_json()
    }
}

/// A relay's two ends, and how many checks in a row found it idle.
#[derive(Debug, Clone, PartialEq)]
struct Ends {
    out: String,
    inp: String,
    idle: u8,
}

/// What the janitor found on a relay.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Probe {
    /// `relayIn` feeds a sink and `relayOut` is fed.
    Feeding,
    /// Nothing connected to one of its ends.
    Idle,
    /// An end (or its pipeline) is gone (40101).
    Gone,
    /// No answer that tells (a node unreachable now): nothing decided.
    Unknown,
}

/// Whether `r` says its object is gone (40101); any other error (a node unreachable now, a
/// request that timed out) tells nothing about it.
fn gone(r: &Result<Value, Value>) -> bool {
    r.as_ref()
        .err()
        .is_some_and(|e| e["code"] == ErrorCode::MediaObjectNotFound.code())
}

impl Probe {
    /// From the answers of `relayIn.getSinkConnections` and `relayOut.getSourceConnections`.
    fn of(sinks: &Result<Value, Value>, sources: &Result<Value, Value>) -> Probe {
        if gone(sinks) || gone(sources) {
            return Probe::Gone;
        }
        match (sinks, sources) {
            (Ok(a), Ok(b)) => {
                let some = |v: &Value| v.as_array().is_some_and(|a| !a.is_empty());
                if some(a) && some(b) {
                    Probe::Feeding
                } else {
                    Probe::Idle
                }
            }
            _ => Probe::Unknown,
        }
    }
}

/// The janitor's decision on a relay.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Keep,
    Release,
}

/// The relays this entry made.
#[derive(Debug, Default)]
struct Table {
    relays: HashMap<Key, Ends>,
}

impl Table {
    fn ends(&self, k: &Key) -> Option<Ends> {
        self.relays.get(k).cloned()
    }

    fn add(&mut self, k: Key, out: String, inp: String) {
        self.relays.insert(k, Ends { out, inp, idle: 0 });
    }

    fn remove(&mut self, k: &Key) -> Option<Ends> {
        self.relays.remove(k)
    }

    fn keys(&self) -> Vec<Key> {
        self.relays.keys().cloned().collect()
    }

    /// Records what the janitor found on relay `k`; a relay to release is removed.
    fn judge(&mut self, k: &Key, probe: Probe) -> Verdict {
        let Some(e) = self.relays.get_mut(k) else {
            return Verdict::Keep;
        };
        let release = match probe {
            Probe::Feeding => {
                e.idle = 0;
                false
            }
            Probe::Idle => {
                e.idle += 1;
                e.idle >= IDLE_CHECKS
            }
            Probe::Gone => true,
            Probe::Unknown => false,
        };
        if release {
            self.relays.remove(k);
            Verdict::Release
        } else {
            Verdict::Keep
        }
    }
}

/// A client's cross-pipeline request, for the relay service.
struct Job {
    /// When the router handed it over.
    queued: Instant,
    conn: u64,
    client: ClientHandle,
    id: Option<Value>,
    session: Option<String>,
    cross: Cross,
}

impl Job {
    /// Answers the client: `Ok` as a void invoke, `Err` with the error as it came.
    fn answer(&self, r: Result<(), Value>) {
        let Some(id) = self.id.clone() else {
            return;
        };
        let mut m = Map::new();
        m.insert("id".into(), id);
        m.insert("jsonrpc".into(), Value::from("2.0"));
        match r {
            Ok(()) => {
                let mut result = json!({"value": null});
                if let Some(s) = &self.session {
                    result["sessionId"] = Value::from(s.clone());
                }
                m.insert("result".into(), result)
            }
            Err(e) => m.insert("error".into(), e),
        };
        self.client.send(self.conn, Value::Object(m).to_string());
    }
}

/// The router's side: hands cross-pipeline requests to the relay service.
pub(crate) struct Hook {
    tx: mpsc::Sender<Job>,
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
    table: Arc<Mutex<Table>>,
}

impl Default for Hook {
    fn default() -> Hook {
        let (tx, rx) = mpsc::channel(JOBS);
        Hook {
            tx,
            rx: Mutex::new(Some(rx)),
            table: Arc::default(),
        }
    }
}

impl Hook {
    /// Takes `c`, the request `req` of `ask` (answered later by the service), unless it is a
    /// `disconnect` no relay of this entry carries: then `false`, and it is routed as any.
    pub(crate) fn take(&self, ask: &Ask<'_>, req: &Map<String, Value>, c: Cross) -> bool {
        if !c.connect && lock(&self.table).ends(&c.key()).is_none() {
            return false;
        }
        let job = Job {
            conn: ask.conn,
            client: ask.client.clone(),
            id: req.get("id").cloned(),
            session: ask.session.clone(),
            cross: c,
            queued: Instant::now(),
        };
        if let Err(e) = self.tx.try_send(job) {
            let job = e.into_inner();
            let e = KurentoError::new(
                ErrorCode::NotEnoughResources,
                "the relays between pipelines are busy or not running; try again",
            );
            job.answer(Err(e.to_json()));
        }
        true
    }
}

/// Starts the relay service of `router`'s entry (once; in a cluster only).
pub(crate) fn start(router: Arc<Router>, core: Core, mut shutdown: watch::Receiver<bool>) {
    let Some(mut jobs) = lock(&router.relays.rx).take() else {
        return;
    };
    let table = router.relays.table.clone();
    tokio::spawn(async move {
        let Some(rpc) = Rpc::open(core).await else {
            return;
        };
        let svc = Arc::new(Service {
            router,
            rpc,
            table,
            keys: Mutex::default(),
        });
        let janitor = {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(JANITOR_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    svc.sweep().await;
                }
            })
        };
        loop {
            tokio::select! {
                j = jobs.recv() => match j {
                    Some(j) => {
                        let svc = svc.clone();
                        tokio::spawn(async move { svc.serve(j).await });
                    }
                    None => break,
                },
                _ = shutdown.changed() => break,
            }
        }
        janitor.abort();
    });
}

/// The relay service: the entry's virtual connection and its relays.
struct Service {
    router: Arc<Router>,
    rpc: Rpc,
    table: Arc<Mutex<Table>>,
    /// One lock per relay: its making, its sinks' connects and its release do not interleave.
    keys: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl Service {
    fn key_lock(&self, k: &Key) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.keys).entry(k.clone()).or_default().clone()
    }

    /// Forgets `k`'s lock when no one else holds it and its relay is gone.
    fn unlock(&self, k: &Key, l: Arc<tokio::sync::Mutex<()>>) {
        let mut keys = lock(&self.keys);
        drop(l);
        let idle = keys.get(k).is_some_and(|a| Arc::strong_count(a) == 1);
        if idle && lock(&self.table).ends(k).is_none() {
            keys.remove(k);
        }
    }

    /// Serves `job`, answered within [`JOB_WAIT`] of its queueing: a job still running then
    /// is answered `40004` naming its step and goes on (what it makes is released on
    /// failure as always); a connect it completes late is undone (the janitor then
    /// releases the relay if it feeds nothing else).
    async fn serve(self: Arc<Self>, job: Job) {
        let step = Step::new();
        let mut work = {
            let (svc, c, step) = (self.clone(), job.cross.clone(), step.clone());
            tokio::spawn(async move { svc.run(&c, &step).await })
        };
        let deadline = tokio::time::Instant::from_std(job.queued + JOB_WAIT);
        let r = tokio::select! {
            r = &mut work => r.unwrap_or_else(|_| {
                Err(KurentoError::new(ErrorCode::ConnectError, "the relay service failed").to_json())
            }),
            _ = tokio::time::sleep_until(deadline) => {
                let late = step.late(&job.cross);
                tracing::info!(source = %job.cross.source, sink = %job.cross.sink, "relay: {}", late["message"]);
                job.answer(Err(late));
                if job.cross.connect {
                    let c = Cross { connect: false, ..job.cross.clone() };
                    tokio::spawn(async move {
                        if let Ok(Ok(())) = work.await {
                            let _ = self.run(&c, &Step::new()).await;
                        }
                    });
                }
                return;
            }
        };
        job.answer(r.map_err(|e| about(e, &job.cross)));
    }

    /// `c`, under its relay's lock.
    async fn run(&self, c: &Cross, step: &Step) -> Result<(), Value> {
        let key = c.key();
        let l = self.key_lock(&key);
        let guard = l.lock().await;
        let t0 = Instant::now();
        let r = if c.connect {
            self.connect(&key, c, step).await
        } else {
            step.set("disconnecting the sink from the relay");
            self.disconnect(&key, c).await
        };
        drop(guard);
        self.unlock(&key, l);
        match &r {
            Ok(()) => {
                tracing::info!(source = %c.source, sink = %c.sink, connect = c.connect, ms = t0.elapsed().as_millis() as u64, "relay: done")
            }
            Err(e) => {
                tracing::info!(source = %c.source, sink = %c.sink, connect = c.connect, "relay: failed: {}", e["message"])
            }
        }
        r
    }

    /// `c.source.connect(c.sink)` through this entry's relay for `k`, made now if there is
    /// none (or its ends are gone).
    async fn connect(&self, k: &Key, c: &Cross, step: &Step) -> Result<(), Value> {
        let existing = lock(&self.table).ends(k);
        if let Some(e) = existing {
            step.set("connecting the sink to the relay");
            let Err(err) = self.feed(&e, c).await else {
                return Ok(());
            };
            step.set("checking the relay's ends");
            if !self.an_end_gone(&e).await {
                return Err(err);
            }
            tracing::info!(source = %c.source, "relay: an end is gone; making it again");
            lock(&self.table).remove(k);
            step.set("releasing a broken relay");
            self.release(&e).await;
        }
        let e = self.build(c, &k.pipeline, step).await?;
        step.set("connecting the sink to the relay");
        if let Err(err) = self.feed(&e, c).await {
            self.release(&e).await;
            return Err(err);
        }
        lock(&self.table).add(k.clone(), e.out, e.inp);
        Ok(())
    }

    /// `relayIn.connect(sink)` with the client's other parameters.
    async fn feed(&self, e: &Ends, c: &Cross) -> Result<(), Value> {
        let mut args = c.params.clone();
        args.insert("sink".into(), Value::from(c.sink.clone()));
        self.invoke(&e.inp, "connect", Value::Object(args))
            .await
            .map(drop)
    }

    async fn disconnect(&self, k: &Key, c: &Cross) -> Result<(), Value> {
        let ends = lock(&self.table).ends(k);
        let Some(e) = ends else {
            // Released by the janitor meanwhile: nothing carries the pair any more.
            return Ok(());
        };
        let mut args = c.params.clone();
        args.insert("sink".into(), Value::from(c.sink.clone()));
        self.invoke(&e.inp, "disconnect", Value::Object(args))
            .await
            .map(drop)
    }

    /// Whether an end of `e` is gone (answered 40101, as [`Probe::of`] counts it); an end
    /// that does not answer now (its node unreachable) is not.
    async fn an_end_gone(&self, e: &Ends) -> bool {
        for o in [&e.inp, &e.out] {
            if gone(&self.invoke(o, "getName", json!({})).await) {
                return true;
            }
        }
        false
    }

    /// Makes a relay from `c.source` to pipeline `q`; what was made is released on failure.
    async fn build(&self, c: &Cross, q: &str, step: &Step) -> Result<Ends, Value> {
        let mut made = Ends {
            out: String::new(),
            inp: String::new(),
            idle: 0,
        };
        let r = self.assemble(c, q, &mut made, step).await;
        if r.is_err() {
            step.set("releasing a relay that failed");
            self.release(&made).await;
        }
        r.map(|()| made)
    }

    async fn assemble(
        &self,
        c: &Cross,
        q: &str,
        made: &mut Ends,
        step: &Step,
    ) -> Result<(), Value> {
        let p = pipeline_of(&c.source).unwrap_or_default();
        step.set("creating relayOut");
        made.out = self
            .endpoint(&p, &format!("fluo-relay-out:{}", c.source))
            .await?;
        step.set("connecting the source to relayOut");
        self.invoke(&c.source, "connect", json!({"sink": made.out}))
            .await?;
        step.set("creating relayIn");
        made.inp = self
            .endpoint(q, &format!("fluo-relay-in:{}", c.source))
            .await?;
        step.set("negotiating the relay's ends");
        let offer = self.invoke(&made.out, "generateOffer", json!({})).await?;
        let answer = self
            .invoke(&made.inp, "processOffer", json!({"offer": offer}))
            .await?;
        self.invoke(&made.out, "processAnswer", json!({"answer": answer}))
            .await?;
        step.set("waiting for the relay's ends to connect");
        self.until_connected(&made.inp, &p, q).await
    }

    /// A hidden WebRtcEndpoint named `name` in pipeline `p`.
    async fn endpoint(&self, p: &str, name: &str) -> Result<String, Value> {
        let params = json!({"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": p}});
        let made = self.rpc.call(&self.router, "create", params).await?;
        let id = made["value"].as_str().unwrap_or_default().to_string();
        if let Err(e) = self.invoke(&id, "setName", json!({"name": name})).await {
            let _ = self.release_one(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Waits until `inp`'s DTLS session with the other end is up ([`CONNECT_WAIT`] at most).
    async fn until_connected(&self, inp: &str, p: &str, q: &str) -> Result<(), Value> {
        let t0 = Instant::now();
        loop {
            let state = self.invoke(inp, "getConnectionState", json!({})).await?;
            if state == "CONNECTED" {
                return Ok(());
            }
            if t0.elapsed() >= CONNECT_WAIT {
                let message = format!(
                    "the relay from pipeline {p} to pipeline {q} did not connect within {} s (can their nodes reach each other's media ports?)",
                    CONNECT_WAIT.as_secs()
                );
                return Err(KurentoError::new(ErrorCode::ConnectError, message).to_json());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `object.op(params)`'s value.
    async fn invoke(&self, object: &str, op: &str, params: Value) -> Result<Value, Value> {
        let p = json!({"object": object, "operation": op, "operationParams": params});
        let r = self.rpc.call(&self.router, "invoke", p).await?;
        Ok(r.get("value").cloned().unwrap_or(Value::Null))
    }

    async fn release_one(&self, object: &str) -> Result<Value, Value> {
        let p = json!({"object": object});
        self.rpc.call(&self.router, "release", p).await
    }

    /// Releases both ends of `e` (those made; errors ignored: an end may be gone).
    async fn release(&self, e: &Ends) {
        for o in [&e.inp, &e.out] {
            if !o.is_empty() {
                let _ = self.release_one(o).await;
            }
        }
    }

    /// One pass of the janitor over every relay.
    async fn sweep(&self) {
        let keys = lock(&self.table).keys();
        for k in keys {
            let l = self.key_lock(&k);
            let guard = l.lock().await;
            let ends = lock(&self.table).ends(&k);
            if let Some(e) = ends {
                let sinks = self.invoke(&e.inp, "getSinkConnections", json!({})).await;
                let sources = self.invoke(&e.out, "getSourceConnections", json!({})).await;
                let probe = Probe::of(&sinks, &sources);
                let verdict = lock(&self.table).judge(&k, probe);
                if verdict == Verdict::Release {
                    tracing::info!(source = %k.source, pipeline = %k.pipeline, ?probe, "relay: released");
                    self.release(&e).await;
                }
            }
            drop(guard);
            self.unlock(&k, l);
        }
    }
}

/// Answers awaited by the virtual connection, by request id.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>>;

/// The entry's own connection: requests routed as a client's, answers matched by id.
struct Rpc {
    conn: u64,
    handle: ClientHandle,
    core: Core,
    session: Arc<Mutex<Option<String>>>,
    waiting: Waiting,
    next: AtomicU64,
}

impl Rpc {
    /// Opens the connection on this node's engine (`None` when the engine is gone).
    async fn open(core: Core) -> Option<Rpc> {
        let conn = crate::ws::NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        let (out, mut rx) = mpsc::channel::<String>(OUTBOX);
        let (kill, _) = oneshot::channel();
        let opened = CoreMsg::Opened {
            conn,
            peer: LOCAL,
            outbox: out.clone(),
            kill,
            internal: true,
        };
        core.tx.send(opened).await.ok()?;
        super::set_internal(conn);
        let session: Arc<Mutex<Option<String>>> = Arc::default();
        let waiting: Waiting = Arc::default();
        let (s, w) = (session.clone(), waiting.clone());
        tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                deliver(&s, &w, &text);
            }
        });
        Some(Rpc {
            conn,
            handle: ClientHandle::new(out),
            core,
            session,
            waiting,
            next: AtomicU64::new(1),
        })
    }

    /// Sends `method(params)` as this connection's request; its result or its error.
    async fn call(&self, router: &Router, method: &str, mut params: Value) -> Result<Value, Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let session = lock(&self.session).clone();
        if let (Some(s), Some(p)) = (&session, params.as_object_mut()) {
            p.insert("sessionId".into(), Value::from(s.clone()));
        }
        let text = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let text = text.to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id, tx);
        let ask = Ask {
            conn: self.conn,
            peer: LOCAL,
            client: &self.handle,
            session,
            text: &text,
        };
        let fail = |m: String| KurentoError::new(ErrorCode::ConnectError, m).to_json();
        if let Some(local) = Box::pin(router.route(ask)).await {
            let msg = CoreMsg::Text {
                conn: self.conn,
                text: local,
            };
            if self.core.tx.send(msg).await.is_err() {
                lock(&self.waiting).remove(&id);
                return Err(fail("the engine is stopping".into()));
            }
        }
        match tokio::time::timeout(CALL_WAIT, rx).await {
            Ok(Ok(r)) => r,
            _ => {
                lock(&self.waiting).remove(&id);
                let why = format!(
                    "relay: {method}: no answer within {} s",
                    CALL_WAIT.as_secs()
                );
                Err(fail(why))
            }
        }
    }
}

/// An answer (or event) for the virtual connection.
fn deliver(session: &Mutex<Option<String>>, waiting: &Waiting, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let Some(id) = v.get("id").and_then(Value::as_u64) else {
        return;
    };
    if let Some(s) = v.pointer("/result/sessionId").and_then(Value::as_str) {
        *lock(session) = Some(s.to_string());
    }
    if let Some(tx) = lock(waiting).remove(&id) {
        let r = match v.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = tx.send(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "p1_kurento.MediaPipeline";
    const Q: &str = "q2_kurento.MediaPipeline";

    fn req(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn invoke(object: &str, op: &str, args: Value) -> Map<String, Value> {
        req(json!({"id": 1, "method": "invoke", "params": {
            "object": object, "operation": op, "operationParams": args}}))
    }

    #[test]
    fn only_a_media_elements_connect_to_another_pipeline_is_relayed() {
        let src = format!("{P}/a_kurento.WebRtcEndpoint");
        let sink = format!("{Q}/b_kurento.WebRtcEndpoint");
        let c = cross(&invoke(
            &src,
            "connect",
            json!({"sink": sink, "mediaType": "VIDEO"}),
        ))
        .expect("relayed");
        assert!(c.connect && c.source == src && c.sink == sink);
        assert_eq!(c.params, req(json!({"mediaType": "VIDEO"})));
        assert_eq!(
            c.key(),
            Key {
                source: src.clone(),
                pipeline: Q.into()
            }
        );
        let d = cross(&invoke(&src, "disconnect", json!({"sink": sink}))).expect("relayed");
        assert!(!d.connect);
        // The same pipeline: the engine's connect, as KMS's.
        let same = format!("{P}/c_kurento.PassThrough");
        assert!(cross(&invoke(&src, "connect", json!({"sink": same}))).is_none());
        // A Dispatcher's connect names hub ports (of another pipeline: still not a relay).
        let hub = format!("{P}/d_kurento.Dispatcher");
        let ports = json!({"source": format!("{P}/e_kurento.HubPort"), "sink": format!("{Q}/f_kurento.HubPort")});
        assert!(cross(&invoke(&hub, "connect", ports)).is_none());
        let one = json!({"sink": format!("{Q}/f_kurento.HubPort")});
        assert!(cross(&invoke(&hub, "connect", one)).is_none());
        // Other operations, other methods, odd sinks.
        assert!(cross(&invoke(&src, "getSinkConnections", json!({"sink": sink}))).is_none());
        assert!(cross(&invoke(&src, "connect", json!({"sink": 7}))).is_none());
        assert!(cross(&invoke(&src, "connect", json!({"sink": "x/y"}))).is_none());
        assert!(cross(&invoke(&src, "connect", json!({"sink": Q}))).is_none());
        let mut r = invoke(&src, "connect", json!({"sink": sink}));
        r.insert("method".into(), Value::from("transaction"));
        assert!(cross(&r).is_none());
    }

    fn key(n: u8) -> Key {
        Key {
            source: format!("{P}/{n}_kurento.WebRtcEndpoint"),
            pipeline: Q.into(),
        }
    }

    #[test]
    fn one_relay_per_source_and_sink_pipeline() {
        let mut t = Table::default();
        assert!(t.ends(&key(1)).is_none());
        t.add(key(1), "out1".into(), "in1".into());
        // A second sink of the same pipeline finds it; another source does not.
        assert_eq!(t.ends(&key(1)).map(|e| e.inp), Some("in1".to_string()));
        assert!(t.ends(&key(2)).is_none());
        let other = Key {
            pipeline: "r3_kurento.MediaPipeline".into(),
            ..key(1)
        };
        assert!(t.ends(&other).is_none());
        assert_eq!(t.keys(), vec![key(1)]);
        assert!(t.remove(&key(1)).is_some() && t.keys().is_empty());
    }

    #[test]
    fn the_janitor_releases_a_relay_idle_twice_in_a_row_or_with_an_end_gone() {
        let mut t = Table::default();
        t.add(key(1), "o".into(), "i".into());
        // Idle once, then feeding again: the count starts over.
        assert_eq!(t.judge(&key(1), Probe::Idle), Verdict::Keep);
        assert_eq!(t.judge(&key(1), Probe::Feeding), Verdict::Keep);
        assert_eq!(t.judge(&key(1), Probe::Idle), Verdict::Keep);
        // An owner that does not answer now decides nothing.
        assert_eq!(t.judge(&key(1), Probe::Unknown), Verdict::Keep);
        assert_eq!(t.judge(&key(1), Probe::Idle), Verdict::Release);
        assert!(t.ends(&key(1)).is_none());
        assert_eq!(t.judge(&key(1), Probe::Idle), Verdict::Keep);
        t.add(key(2), "o".into(), "i".into());
        assert_eq!(t.judge(&key(2), Probe::Gone), Verdict::Release);
        assert!(t.keys().is_empty());
    }

    #[test]
    fn a_relays_errors_name_the_relay_and_keep_their_code() {
        let c = cross(&invoke(
            &format!("{P}/a_kurento.WebRtcEndpoint"),
            "connect",
            json!({"sink": format!("{Q}/b_kurento.WebRtcEndpoint")}),
        ))
        .expect("relayed");
        let e = KurentoError::object_not_found("x").to_json();
        let a = about(e.clone(), &c);
        assert_eq!(a["code"], e["code"]);
        let m = a["message"].as_str().unwrap();
        assert!(
            m.starts_with(&format!("relay from {} to {}: ", c.source, c.sink)),
            "{m}"
        );
        assert!(m.ends_with(e["message"].as_str().unwrap()), "{m}");
    }

    #[test]
    fn a_job_out_of_time_is_answered_40004_naming_its_step() {
        let c = cross(&invoke(
            &format!("{P}/a_kurento.WebRtcEndpoint"),
            "connect",
            json!({"sink": format!("{Q}/b_kurento.WebRtcEndpoint")}),
        ))
        .expect("relayed");
        let step = Step::new();
        let first = step.late(&c);
        assert_eq!(first["code"], ErrorCode::ConnectError.code());
        let m = first["message"].as_str().unwrap();
        assert!(
            m.contains("within 8 s (while waiting for another request on this relay)"),
            "{m}"
        );
        step.clone().set("creating relayIn");
        let m = step.late(&c)["message"].as_str().unwrap().to_string();
        assert!(
            m.starts_with("relay from ") && m.ends_with("(while creating relayIn)"),
            "{m}"
        );
    }

    #[test]
    fn what_the_janitor_reads_from_the_ends_answers() {
        let some = Ok(json!([{"source": "a", "sink": "b"}]));
        let none = Ok(json!([]));
        let gone = Err(KurentoError::object_not_found("x").to_json());
        let down = Err(KurentoError::new(ErrorCode::ConnectError, "unreachable").to_json());
        assert_eq!(Probe::of(&some, &some), Probe::Feeding);
        assert_eq!(Probe::of(&none, &some), Probe::Idle);
        assert_eq!(Probe::of(&some, &none), Probe::Idle);
        assert_eq!(Probe::of(&gone, &some), Probe::Gone);
        assert_eq!(Probe::of(&down, &gone), Probe::Gone);
        assert_eq!(Probe::of(&down, &some), Probe::Unknown);
        assert_eq!(Probe::of(&some, &down), Probe::Unknown);
        // A feed that failed counts the relay broken on 40101 only.
        assert!(super::gone(&gone) && !super::gone(&down) && !super::gone(&some));
    }

    #[test]
    fn answers_and_errors_reach_the_request_that_waits_for_them() {
        let session = Mutex::new(None);
        let waiting: Waiting = Arc::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        lock(&waiting).insert(1, tx1);
        lock(&waiting).insert(2, tx2);
        deliver(
            &session,
            &waiting,
            r#"{"jsonrpc":"2.0","method":"onEvent","params":{}}"#,
        );
        deliver(
            &session,
            &waiting,
            r#"{"id":2,"jsonrpc":"2.0","error":{"code":40101,"message":"gone"}}"#,
        );
        deliver(
            &session,
            &waiting,
            r#"{"id":1,"jsonrpc":"2.0","result":{"value":"x","sessionId":"s"}}"#,
        );
        assert_eq!(
            rx1.try_recv().unwrap(),
            Ok(json!({"value": "x", "sessionId": "s"}))
        );
        assert_eq!(rx2.try_recv().unwrap().unwrap_err()["code"], 40101);
        assert_eq!(lock(&session).as_deref(), Some("s"));
        assert!(lock(&waiting).is_empty());
    }
}
